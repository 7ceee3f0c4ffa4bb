"""The ICE-strategy analysis end to end on simulated trials with known truth: the MAR identity with
the MMRM, the jackknife SE against the MMRM SE, every method on a one-visit design, strategies'
order, per-patient ICE tables, retrieved dropouts and the single-arm rules."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis.frequentist.mmrm import fit_mmrm
from analysis.sensitivity.design import NotApplicable, NotEstimable
from analysis.sensitivity.reference_based import reference_based_analysis
from analysis.sensitivity.site_data import site_frame
from models.simulate_trial import TrialTruth
from tests.analysis.sensitivity._trial import ONE_VISIT, load_trial, trial_csv


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    return load_trial(trial_csv(tmp_path_factory.mktemp("icetrial") / "trial.csv", n=200, seed=11))[1]


@pytest.fixture(scope="module")
def one_visit(tmp_path_factory):
    return load_trial(trial_csv(tmp_path_factory.mktemp("ice1") / "one.csv", n=120, truth=ONE_VISIT, seed=4))[1]


def _diff(table, strategy="MAR", month=24.0, method=None):
    t = table[(table["group"] == "difference") & (table["strategy"] == strategy) & (table["month"] == month)]
    if method is not None:
        t = t[t["method"] == method]
    assert len(t) == 1, t
    return t.iloc[0]


def test_mar_conditional_mean_ancova_is_the_mmrm_and_jackknife_se_is_close(trial):
    """Known identity (Wolbers et al. 2022): under MAR with the imputation model change ~ baseline *
    visit + group * visit, ANCOVA on the conditional-mean-imputed data gives the MMRM's treatment
    effect at every visit; the jackknife SE is close to the MMRM's model-based SE."""
    r = reference_based_analysis(trial, sites=("spine",), strategies=("MAR",), imputation_model="rbmi")
    mf = site_frame(trial, "spine")
    mf = mf[(mf["month"] > 0) & mf["baseline"].notna()].copy()
    mf["arm"] = pd.Categorical(mf["analysis_group"], categories=["placebo", "active"])
    fit = fit_mmrm(mf, "change ~ baseline * month + arm * month", visit="month")
    mmrm = fit.pairwise("arm", by="month", reverse=True).set_index("month")
    for month in (6.0, 12.0, 24.0):
        row = _diff(r.table, month=month)
        assert row["estimate"] == pytest.approx(mmrm.loc[month, "estimate"], abs=1e-8)
        assert row["se"] == pytest.approx(mmrm.loc[month, "se"], rel=0.05)
    assert r.table["outcome"].eq("change").all()


def test_strategies_order_and_reference_is_unchanged(trial):
    r = reference_based_analysis(trial, sites=("spine",), strategies=("MAR", "JR", "CR", "CIR", "LMCF"))
    est = {s: _diff(r.table, s)["estimate"] for s in ("MAR", "JR", "CR", "CIR")}
    assert 0 < est["JR"] < est["CR"] < est["CIR"] < est["MAR"]  # active improves, placebo declines
    placebo = r.table[(r.table["group"] == "placebo") & (r.table["month"] == 24.0)]
    # placebo's imputations are the same under MAR/JR/CR/CIR; its ANCOVA LS-mean moves only through the
    # baseline slope, which the active arm's imputed values share
    np.testing.assert_allclose(placebo.loc[placebo["strategy"] != "LMCF", "estimate"],
                               placebo["estimate"].iloc[0], atol=0.01)
    assert set(r.table["method"]) == {"condmean_jackknife"}
    assert {"estimate", "se", "ci_low", "ci_high", "p", "method"} <= set(r.table.columns)


def test_every_method_runs_on_one_post_baseline_visit(one_visit):
    """rbmi needs two post-baseline visits; here months 0 and 12 only are enough."""
    for method in ("condmean_jackknife", "condmean_bootstrap", "approx_bayes", "bmlmi"):
        r = reference_based_analysis(one_visit, sites=("spine",), strategies=("MAR", "JR", "CIR", "LMCF"),
                                     methods=(method,), n_samples=30, D=3, seed=2)
        assert set(r.table["month"]) == {12.0}
        mar = r.table[(r.table["strategy"] == "MAR") & (r.table["group"] == "difference")].iloc[0]
        jr = r.table[(r.table["strategy"] == "JR") & (r.table["group"] == "difference")].iloc[0]
        assert jr["estimate"] < mar["estimate"], method
        cir = r.table[(r.table["strategy"] == "CIR") & (r.table["group"] == "difference")].iloc[0]
        assert cir["estimate"] == pytest.approx(jr["estimate"], abs=1e-9 if method.startswith("cond") else 1e-6)


def test_same_seed_same_numbers_and_draws_returned(trial):
    kw = dict(sites=("spine",), strategies=("JR",), methods=("approx_bayes", "condmean_bootstrap"), n_samples=20,
              seed=7)
    a = reference_based_analysis(trial, **kw)
    b = reference_based_analysis(trial, **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    key = next(k for k in a.draws if k.startswith("JR | approx_bayes | spine trt_active_24"))
    assert a.draws[key].shape == (20,)
    c = reference_based_analysis(trial, **{**kw, "seed": 8})
    assert not np.allclose(a.table["estimate"], c.table["estimate"])


def test_ice_table_per_patient_strategies_and_retrieved_dropouts(trial):
    spine = site_frame(trial, "spine")
    complete = [p for p, g in spine.groupby("patient_id") if g["month"].max() == 24.0 and len(g) == 4]
    # events at month 12 for 30 completers: their month-12 and month-24 values are post-ICE and observed
    ice = {str(p): (12.0, "bone_therapy", "treatment_policy", "MAR") for p in complete[:30]}
    r = reference_based_analysis(trial, sites=("spine",), strategies=(), ice=ice)
    assert set(r.table["strategy"]) == {"estimand"}
    hypo = {p: (m, t, "hypothetical", "MAR") for p, (m, t, _, _) in ice.items()}
    h = reference_based_analysis(trial, sites=("spine",), strategies=(), ice=hypo)
    # hypothetical:MAR is MAR on the data with the post-event values deleted
    cut = trial.copy()
    cut.loc[cut["patient_id"].astype(str).isin(hypo) & (cut["month"] >= 12.0), "bmd_spine"] = np.nan
    deleted = reference_based_analysis(cut, sites=("spine",), strategies=("MAR",))
    assert _diff(h.table, "estimand")["estimate"] == pytest.approx(_diff(deleted.table, "MAR")["estimate"], abs=1e-10)
    # treatment policy uses the retrieved values the hypothetical strategy discards
    assert _diff(r.table, "estimand")["estimate"] != pytest.approx(_diff(h.table, "estimand")["estimate"], abs=1e-6)
    # treatment policy without any retrieved value: the off-treatment term cannot be estimated
    dropouts = [p for p, g in spine.groupby("patient_id") if g["month"].max() < 24.0]
    none_retrieved = {str(p): (24.0, "discontinued", "treatment_policy", "MAR") for p in dropouts}
    mixed = {**none_retrieved, **{str(complete[0]): (24.0, "discontinued", "treatment_policy", "MAR")}}
    out = reference_based_analysis(trial, sites=("spine",), strategies=(), ice=none_retrieved)
    mar = reference_based_analysis(trial, sites=("spine",), strategies=("MAR",))
    # no post-ICE data at all: no off-treatment term, so it is MAR, and the text says so
    assert _diff(out.table, "estimand")["estimate"] == pytest.approx(_diff(mar.table, "MAR")["estimate"], abs=1e-10)
    assert any("no off-treatment term" in t for t in out.text)
    with pytest.raises(NotEstimable, match="imputation model"):
        # one retrieved value in one arm only: the other arm's off-treatment slope has no data
        reference_based_analysis(trial, sites=("spine",), strategies=(), ice=mixed)


def test_while_on_treatment_and_delta(trial):
    spine = site_frame(trial, "spine")
    dropouts = [str(p) for p, g in spine.groupby("patient_id") if 0 < g["month"].max() < 24.0]
    last = spine.groupby("patient_id")["month"].max()
    wot = {p: (float({6.0: 12.0, 12.0: 24.0}[last[p]]), "death", "while_on_treatment", "MAR") for p in dropouts
           if last[p] in (6.0, 12.0)}
    r = reference_based_analysis(trial, sites=("spine",), strategies=(), ice=wot)
    mar = reference_based_analysis(trial, sites=("spine",), strategies=("MAR",))
    # carrying the last on-treatment value forward pulls both arms' month-24 change towards 0
    for arm in ("placebo", "active"):
        a = r.table[(r.table["group"] == arm) & (r.table["month"] == 24.0)]["estimate"].iloc[0]
        b = mar.table[(mar.table["group"] == arm) & (mar.table["month"] == 24.0)]["estimate"].iloc[0]
        assert abs(a) < abs(b), arm
    shifted = reference_based_analysis(trial, sites=("spine",), strategies=("MAR",),
                                       delta=[{"value": -2.0, "group": "active"}])
    # the ANCOVA is linear in the outcome: the shift of the arm difference is -2 times the group
    # coefficient of the regression of the shifted-value indicator on (1, group, baseline)
    from analysis.sensitivity.site_data import site_data

    d = site_data(trial, "spine")
    shifted_values = (d.group == 1) & np.isnan(d.y[:, -1])  # every missing month-24 value is post-ICE
    x = np.column_stack([np.ones(d.group.size), d.group == 1, d.baseline])
    coef = np.linalg.lstsq(x, shifted_values.astype(float), rcond=None)[0][1]
    assert shifted_values.sum() > 0
    assert _diff(shifted.table)["estimate"] - _diff(mar.table)["estimate"] == pytest.approx(-2.0 * coef, abs=1e-9)


def test_single_arm_rules(tmp_path):
    truth = TrialTruth(arms={"active": 1.0})
    single = load_trial(trial_csv(tmp_path / "single.csv", n=80, truth=truth, seed=1), group="none")[1]
    with pytest.raises(NotApplicable, match="reference group"):
        reference_based_analysis(single, sites=("spine",), strategies=("JR",))
    r = reference_based_analysis(single, sites=("spine",), strategies=("MAR", "LMCF"))
    assert set(r.table["group"]) == {"all"}


def test_bad_arguments(trial):
    with pytest.raises(ValueError, match="method must be one of"):
        reference_based_analysis(trial, sites=("spine",), methods=("rubin",))
    with pytest.raises(ValueError, match="unknown imputation strategy"):
        reference_based_analysis(trial, sites=("spine",), strategies=("J3R",))
    with pytest.raises(ValueError, match="design's reference"):
        reference_based_analysis(trial, sites=("spine",), reference="active")


def test_a_failing_bayesian_fit_is_reported_loudly(trial, monkeypatch):
    from analysis.sensitivity.ice import bayes_draws

    def fake(x, y, mask, n_samples, seed, **kw):
        from analysis.sensitivity.ice.reml_wide import WideReml

        f = WideReml(x, y, mask).fit()
        return bayes_draws.PosteriorDraws(beta=np.tile(f.beta, (n_samples, 1)), sigma=np.tile(f.sigma, (n_samples, 1, 1)),
                                          diagnostics={"ok": False, "message": "R-hat 1.2 > 1.01", "max_rhat": 1.2})

    monkeypatch.setattr(bayes_draws, "mmrm_posterior_draws", fake)
    r = reference_based_analysis(trial, sites=("spine",), strategies=("MAR", "JR"), methods=("bayes",), n_samples=5)
    assert r.table["estimate"].notna().all()
    assert r.settings["failed_fits"] == ["spine | bayes | MAR, JR"]
    assert any(t.startswith("WARNING: spine, Bayesian MI") and "R-hat 1.2" in t for t in r.text)


def test_reduced_coverage_under_a_jump_to_reference_truth():
    """The benchmark tests/benchmarks/bench_ice.py in small: 40 trials simulated under J2R (known truth);
    the conditional-mean jackknife covers near 95% and Rubin's rules (approximate Bayes) give wider
    intervals than the jackknife for the same data (the known over-coverage of Rubin's variance)."""
    from functools import partial

    from analysis.sensitivity.ice.analysis_models import ancova
    from analysis.sensitivity.ice.methods import MethodSettings, run_method
    from analysis.sensitivity.ice.patients import IcePatients
    from models.simulate_ice import IceTruth, simulate_ice_trial, true_effect

    truth = IceTruth()
    theta = true_effect(truth, "J2R")[-1]
    hits, ratio = [], []
    for r in range(40):
        sim = simulate_ice_trial(160, truth, seed=300 + r)
        p = IcePatients.from_simulation(sim, "JR")
        data = p.data
        fn = partial(ancova, months=data.months, levels=data.levels)
        out = {meth: run_method(meth, [p], lambda y, g, c: fn(y, g, c),
                                MethodSettings(n_samples=20, imputation_model="rbmi", seed=r)).pooled["JR"]["trt_active_12"]
               for meth in ("condmean_jackknife", "approx_bayes")}
        jk = out["condmean_jackknife"]
        hits.append(jk.ci_low <= theta <= jk.ci_high)
        ratio.append(out["approx_bayes"].se / jk.se)
    assert 0.85 <= np.mean(hits) <= 1.0
    assert np.mean(ratio) > 1.05


def test_every_handling_on_one_post_baseline_visit(one_visit):
    """Hypothetical, treatment policy (with retrieved values), while on treatment and a delta on a
    design with visits at months 0 and 12 only."""
    spine = site_frame(one_visit, "spine")
    seen = spine.groupby("patient_id")["month"].max()
    done = [str(p) for p in seen.index[seen == 12.0]]
    drop = [str(p) for p in seen.index[seen == 0.0]]
    arm = spine.groupby("patient_id")["analysis_group"].first()
    # retrieved: completers of both arms with an event at month 12 (their month-12 scan is off treatment)
    retrieved = [p for p in done if arm[p] == "placebo"][:6] + [p for p in done if arm[p] == "active"][:6]
    ice = {p: (12.0, "bone_therapy", "treatment_policy", "MAR") for p in retrieved}
    ice.update({p: (12.0, "death", "while_on_treatment", "MAR") for p in drop[:3]})
    ice.update({p: (12.0, "discontinued", "hypothetical", "JR") for p in drop[3:]})
    r = reference_based_analysis(one_visit, sites=("spine",), strategies=(), ice=ice, delta=[{"value": -1.0}],
                                 methods=("condmean_jackknife", "approx_bayes"), n_samples=20)
    t = r.table[r.table["group"] == "difference"]
    assert set(t["month"]) == {12.0} and len(t) == 2 and np.isfinite(t["estimate"]).all()
    # while on treatment before the first post-baseline scan: no change (0) for those patients
    plain = reference_based_analysis(one_visit, sites=("spine",), strategies=(), ice=ice,
                                     methods=("condmean_jackknife",))
    active = reference_based_analysis(one_visit, sites=("spine",), strategies=(), ice=ice,
                                      methods=("condmean_jackknife",), delta=[{"value": -1.0, "group": "active"}])
    assert (_diff(active.table, "estimand", 12.0)["estimate"] < _diff(plain.table, "estimand", 12.0)["estimate"])
    # while on treatment before the first post-baseline scan: the patient's change is 0 (baseline kept)
    wot_only = {p: v for p, v in ice.items() if v[2] == "while_on_treatment"}
    w = reference_based_analysis(one_visit, sites=("spine",), strategies=(), ice=wot_only, methods=("condmean_jackknife",))
    assert np.isfinite(_diff(w.table, "estimand", 12.0)["estimate"])
