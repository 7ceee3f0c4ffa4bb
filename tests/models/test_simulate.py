"""The cohort simulator: determinism, the visit schedule, recovery of its parameters, and the
dropout mechanisms behaving as specified."""

import numpy as np
import pandas as pd
import pytest

from models.simulate import Design, DropoutModel, simulate

NO_DROPOUT = DropoutModel(mechanism="mcar", visit_hazard=0.0, activity_log_odds=0.0, p_missed_dxa=0.0)


def test_same_seed_same_data_other_seed_differs():
    a = simulate(Design(), seed=5).data
    b = simulate(Design(), seed=5).data
    c = simulate(Design(), seed=6).data
    pd.testing.assert_frame_equal(a, b)
    assert not a["bmd_spine"].equals(c["bmd_spine"])


def test_schedule_and_contract_columns():
    s = simulate(Design(n_patients=30), seed=1)
    d = s.data
    assert set(d["month"]) <= {0, 3, 6, 12}
    assert d.loc[d.month == 3, ["bmd_spine", "bmd_femoral_neck"]].isna().all().all()
    assert (d.groupby("patient_id")["month"].min() == 0).all()
    for col in ("patient_id", "month", "bmd_spine", "bmd_femoral_neck", "das28_crp", "cdai", "tjc28", "sjc28",
                "crp_mg_l", "patient_global_mm", "evaluator_global_mm", "prednisolone_mg", "alp_u_l", "age",
                "sex", "bmi", "dropout_reason"):
        assert col in d.columns
    # BMD reported to 3 decimals, as DXA software does
    b = d["bmd_spine"].dropna()
    assert np.allclose(b, b.round(3))
    # monotone dropout: the observed visits are a prefix of the schedule
    sched = [0, 3, 6, 12]
    for _, g in d.groupby("patient_id"):
        assert list(g["month"]) == sched[: len(g)]


def test_complete_data_hold_every_visit():
    s = simulate(Design(n_patients=20), seed=2)
    assert len(s.complete) == 20 * 4
    # observed rows agree with the complete data where observed (apart from intermittent missed DXA)
    m = s.data.merge(s.complete, on=["patient_id", "month"], suffixes=("", "_c"))
    ok = m["bmd_spine"].notna()
    assert np.array_equal(m.loc[ok, "bmd_spine"], m.loc[ok, "bmd_spine_c"])


def test_baseline_distribution_recovered():
    d = Design(n_patients=6000, dropout=NO_DROPOUT)
    s = simulate(d, seed=11)
    base = s.data[s.data.month == 0]
    # marginal mean at the covariate means and the documented marginal SD (Marotte 2007 values)
    assert base["bmd_spine"].mean() == pytest.approx(0.911 + 0.06 * 0.2, abs=0.006)
    assert base["bmd_spine"].std() == pytest.approx(0.143, rel=0.05)
    assert base["bmd_femoral_neck"].std() == pytest.approx(0.159, rel=0.05)
    r = np.corrcoef(s.patients["true_baseline_spine"], s.patients["true_baseline_femoral_neck"])[0, 1]
    assert 0.5 < r < 0.75  # 0.6 between the residuals, a little more with shared covariates


def test_slopes_and_measurement_error_recovered():
    d = Design(n_patients=8000, dropout=NO_DROPOUT)
    s = simulate(d, seed=12)
    p = s.patients
    spine = d.spine
    for rtype, gamma in (("responder", spine.slope_responder_pct), ("non-responder", spine.slope_nonresponder_pct)):
        g = p[p.response_type == rtype]
        expected = gamma + spine.slope_per_das28_improvement_pct * g["true_das28_improvement"].mean()
        assert g["true_slope_pct_spine"].mean() == pytest.approx(expected, abs=0.08)
        resid = g["true_slope_pct_spine"] - spine.slope_per_das28_improvement_pct * g["true_das28_improvement"]
        assert resid.std() == pytest.approx(spine.slope_sd_pct, rel=0.05)
    assert (p.response_type == "responder").mean() == pytest.approx(d.responder_fraction, abs=0.015)
    # observed 12-month % change = true change + measurement error with CV 1.1% at each visit
    wide = s.data.pivot(index="patient_id", columns="month", values="bmd_spine")
    pct = 100 * (wide[12] / wide[0] - 1)
    true = p.set_index("patient_id")["true_slope_pct_spine"]
    err_sd = (pct - true.reindex(pct.index)).std()
    assert err_sd == pytest.approx(np.sqrt(2) * spine.precision_cv_pct, rel=0.06)


def test_mcar_dropout_rate_matches_hazard():
    h = 0.15
    d = Design(n_patients=6000, dropout=DropoutModel(mechanism="mcar", visit_hazard=h, activity_log_odds=0.0,
                                                     p_missed_dxa=0.0))
    s = simulate(d, seed=4)
    completers = (s.data.groupby("patient_id")["month"].max() == 12).mean()
    se = np.sqrt((1 - h) ** 3 * (1 - (1 - h) ** 3) / 6000)
    assert completers == pytest.approx((1 - h) ** 3, abs=4 * se)


def test_mar_dropout_depends_on_observed_activity():
    d = Design(n_patients=4000, dropout=DropoutModel(mechanism="mar", visit_hazard=0.15, activity_log_odds=1.0))
    s = simulate(d, seed=8)
    base = s.data[s.data.month == 0].set_index("patient_id")["das28_crp"]
    dropped = s.patients.set_index("patient_id")["dropout_month"].eq(3)
    # the first dropout depends on the baseline DAS28 only: higher activity, more dropout
    hi, lo = dropped[base > 5.5].mean(), dropped[base < 4.5].mean()
    assert hi > lo + 0.1


def test_mnar_dropout_depends_on_unobserved_bmd():
    # patients losing bone leave more often: completers' true slopes are higher than everyone's
    mnar = DropoutModel(mechanism="mnar", visit_hazard=0.15, activity_log_odds=0.0, bmd_log_odds=-0.8)
    s = simulate(Design(n_patients=4000, dropout=mnar), seed=9)
    p = s.patients
    comp = p["dropout_month"].isna()
    assert p.loc[comp, "true_slope_pct_spine"].mean() > p["true_slope_pct_spine"].mean() + 0.3
    # and MAR with no activity effect does not select on bone
    s2 = simulate(Design(n_patients=4000, dropout=NO_DROPOUT.__class__(
        mechanism="mcar", visit_hazard=0.15, activity_log_odds=0.0)), seed=9)
    p2 = s2.patients
    c2 = p2["dropout_month"].isna()
    assert abs(p2.loc[c2, "true_slope_pct_spine"].mean() - p2["true_slope_pct_spine"].mean()) < 0.15


def test_dropout_reasons():
    s = simulate(Design(n_patients=500), seed=3)
    p = s.patients
    assert (p.loc[p.dropout_month.isna(), "dropout_reason"] == "").all()
    reasons = set(p.loc[p.dropout_month.notna(), "dropout_reason"])
    assert reasons <= {"lack of efficacy", "adverse event", "lost to follow-up", "missed follow-up DXA"}
    assert "lack of efficacy" in reasons


@pytest.mark.parametrize("kwargs,match", [
    (dict(mechanism="mcar", activity_log_odds=0.5), "mcar"),
    (dict(mechanism="mar", bmd_log_odds=0.5), "mnar"),
    (dict(mechanism="mnar", bmd_log_odds=0.0), "non-zero"),
    (dict(visit_hazard=1.2), "visit_hazard"),
])
def test_dropout_model_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DropoutModel(**kwargs)


def test_design_validation_and_round_trip():
    with pytest.raises(ValueError, match="subset"):
        Design(dxa_months=(0, 9))
    with pytest.raises(ValueError, match="responder_fraction"):
        Design(responder_fraction=1.5)
    d = Design().with_updates(**{"spine.slope_sd_pct": 3.0, "n_patients": 100, "dropout.visit_hazard": 0.2})
    assert d.spine.slope_sd_pct == 3.0 and d.n_patients == 100 and d.dropout.visit_hazard == 0.2
    assert Design.from_dict(d.to_dict()) == d


def test_simulated_data_pass_validation(tmp_path):
    from analysis.study.data import load_dataset

    s = simulate(Design(n_patients=60), seed=21)
    path = tmp_path / "sim.csv"
    s.data.to_csv(path, index=False)
    ds = load_dataset(path)
    assert ds.report.n_patients == 60
