"""Tests of ``models/activity.py``, ``models/activity_exposure.py`` and
``models/activity_comparison.py``: the activity exposure against hand computations, input
errors, the reported algebra, agreement of the no-activity variant with the trajectory model, and
recovery on simulated studies with known truth: bone that follows disease control only (the
responder effect must shrink towards 0 once DAS28 improvement is in the model) and a pure
response-type effect (it must stay).

The known-truth designs (``models.simulate``) use the latent response type as the responder
indicator, 200 patients, little dropout and a wider between-patient spread of DAS28 improvement
(``improvement_sd`` 0.3 instead of 0.15, types overlapping) than the twin. With the twin's
defaults the observed DAS28 improvement is too noisy a measure of the true improvement within
a type for the adjustment to be complete (measurement error in the mediator): most of a pure
disease-control effect then stays with the responder indicator (see the report).

Fits are short (2 chains x 400 draws); compiled models are shared through
``analysis.engine.sampling``'s cache (one per activity variant).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import models  # noqa: F401  (compile caches before pymc)
from analysis.engine.sampling import sample
from models.activity import ACTIVITY_KINDS, build_activity_model, prepare_activity_data
from models.activity_comparison import ActivityComparison, compare_responder_effect
from models.simulate import Design, simulate
from models.trajectory import build_trajectory_model

FAST = {"draws": 400, "tune": 400, "chains": 2, "cores": 2}
LAMBDA = 1.5  # %/yr of baseline per DAS28 unit of true improvement (the "control" design)


def _design(kind: str) -> Design:
    base = Design(n_patients=200).with_updates(**{
        "activity.improvement_sd": 0.3,
        "activity.improvement_responder": 0.45,
        "activity.improvement_nonresponder": 0.0,
        "dropout.visit_hazard": 0.05,
    })
    if kind == "control":  # equal type slopes; bone follows the true DAS28 improvement
        return base.with_updates(**{"spine.slope_responder_pct": -1.5,
                                    "spine.slope_nonresponder_pct": -1.5,
                                    "spine.slope_per_das28_improvement_pct": LAMBDA})
    return base.with_updates(**{"spine.slope_responder_pct": 0.0,  # pure type effect
                                "spine.slope_nonresponder_pct": -2.4,
                                "spine.slope_per_das28_improvement_pct": 0.0})


def _frame(kind: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    sim = simulate(_design(kind), seed=seed)
    f = sim.data.copy()
    f["responder"] = f["patient_id"].map(
        sim.patients.set_index("patient_id")["response_type"] == "responder")
    return f, sim.patients


def _toy() -> pd.DataFrame:
    """Three patients: full DAS28 (A), DAS28 stops at month 3 but BMD at month 6 (B), baseline only (C)."""
    rows = [
        ("A", 0, 0.90, 5.0, True), ("A", 3, np.nan, 4.0, True), ("A", 6, 0.91, 3.0, True),
        ("A", 12, 0.92, 3.0, True),
        ("B", 0, 0.80, 6.0, False), ("B", 3, np.nan, 5.5, False), ("B", 6, 0.79, np.nan, False),
        ("C", 0, 1.00, 4.0, False),
    ]
    return pd.DataFrame(rows, columns=["patient_id", "month", "bmd_spine", "das28_crp", "responder"])


def _flat(fit, name) -> np.ndarray:
    da = fit.posterior["posterior"][name]
    return da.values.reshape(-1, *da.shape[2:])


@pytest.fixture(scope="module")
def control():
    frame, patients = _frame("control")
    return frame, patients, compare_responder_effect(frame, "spine", sample=sample, seed=3, **FAST)


@pytest.fixture(scope="module")
def type_only():
    frame, patients = _frame("type")
    return frame, patients, compare_responder_effect(frame, "spine", sample=sample, seed=3, **FAST)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def test_exposure_matches_hand_computation():
    cum = prepare_activity_data(_toy(), "spine", activity="cumulative")
    prep = cum.prepared
    assert list(prep.patient_ids) == ["A", "B", "C"]
    ex = dict(zip(zip(prep.patient_ids[prep.patient_idx], prep.months), cum.exposure))
    # A: improvement 0, 1, 2, 2 at 0, 0.25, 0.5, 1 yr (trapezoid over the visits up to t)
    assert ex[("A", 0.0)] == 0.0
    assert ex[("A", 6.0)] == pytest.approx(0.25 * 0.5 + 0.25 * 1.5)
    assert ex[("A", 12.0)] == pytest.approx(0.5 + 0.5 * 2.0)
    # B: improvement 0.5 at 3 months, carried forward to 6 months
    assert ex[("B", 6.0)] == pytest.approx(0.25 * 0.25 + 0.25 * 0.5)
    np.testing.assert_allclose(cum.patient_exposure[:2], [1.5, 0.0625 + 0.75 * 0.5])
    assert np.isnan(cum.patient_exposure[2])  # no post-baseline DAS28 and no follow-up BMD
    assert cum.reference == pytest.approx(np.mean(cum.patient_exposure[:2]))
    np.testing.assert_allclose(cum.group_exposure, cum.patient_exposure[[1, 0]])
    np.testing.assert_allclose(cum.x_activity, cum.exposure - cum.reference * prep.t_years)

    mean = prepare_activity_data(_toy(), "spine", activity="mean_improvement")
    np.testing.assert_allclose(mean.patient_exposure[:2], [5 / 3, 0.5])
    mex = dict(zip(zip(prep.patient_ids[prep.patient_idx], prep.months), mean.exposure))
    assert mex[("A", 6.0)] == pytest.approx(0.5 * 5 / 3)
    assert mex[("B", 6.0)] == pytest.approx(0.5 * 0.5)

    none = prepare_activity_data(_toy(), "spine", activity="none")
    assert not none.exposure.any() and none.reference == 0.0


def test_bad_input_fails_with_one_line():
    toy = _toy()
    with pytest.raises(ValueError, match="activity must be one of"):
        prepare_activity_data(toy, "spine", activity="smoothed")
    with pytest.raises(ValueError, match="lacks the activity column 'cdai'"):
        prepare_activity_data(toy, "spine", activity_column="cdai")
    no_base = toy.copy()
    no_base.loc[(no_base.patient_id == "A") & (no_base.month == 0), "das28_crp"] = np.nan
    with pytest.raises(ValueError, match="month 0 is missing for patient.*: A$"):
        prepare_activity_data(no_base, "spine")
    no_post = toy.copy()
    no_post.loc[(no_post.patient_id == "B") & (no_post.month > 0), "das28_crp"] = np.nan
    with pytest.raises(ValueError, match="no post-baseline das28_crp for patient.*: B$"):
        prepare_activity_data(no_post, "spine")
    one_group = toy.assign(responder=True)
    with pytest.raises(ValueError, match="both groups"):
        prepare_activity_data(one_group, "spine")
    with pytest.raises(ValueError, match="activity_slope_sd"):
        build_activity_model(toy, "spine", activity_slope_sd=0.0)
    with pytest.raises(ValueError, match="'cumulative' or 'mean_improvement'"):
        compare_responder_effect(toy, "spine", sample=sample, activity="none")
    with pytest.raises(ValueError, match="callable"):
        compare_responder_effect(toy, "spine", sample=None)
    # without an activity term no DAS28 is needed
    assert build_activity_model(toy.drop(columns="das28_crp"), "spine", activity="none").activity == "none"


# ---------------------------------------------------------------------------------------------
# the fitted model
# ---------------------------------------------------------------------------------------------


def test_reported_algebra_and_log_likelihood(control):
    _, _, cmp = control
    model, fit = cmp.models["with"], cmp.fits["with"]
    b, b_act = _flat(fit, "b"), _flat(fit, "b_activity")
    dev = model.data.group_exposure - model.data.reference
    change = _flat(fit, "change_end")
    np.testing.assert_allclose(change, b[:, [1]] + b[:, [3]] * np.array([0.0, 1.0]), rtol=1e-10)
    total = _flat(fit, "change_12m_total")
    np.testing.assert_allclose(total, change + b_act[:, None] * dev, rtol=1e-10)
    np.testing.assert_allclose(_flat(fit, "diff_change_end")[:, 0], b[:, 3], rtol=1e-10)
    np.testing.assert_allclose(_flat(fit, "diff_change_12m_total"),
                               _flat(fit, "diff_change_end")[:, 0] + _flat(fit, "diff_change_12m_activity"),
                               rtol=1e-9, atol=1e-12)
    base = _flat(fit, "baseline_mean")
    np.testing.assert_allclose(_flat(fit, "diff_pct_change_12m_total"),
                               100 * (total[:, 1] / base[:, 1] - total[:, 0] / base[:, 0]), rtol=1e-9)
    # pointwise log-likelihood on the original scale, given the patient effects
    prep = model.prepared
    u = _flat(fit, "u")
    r = prep.responder[prep.patient_idx]
    mu = (b[:, [0]] + b[:, [2]] * r + (b[:, [1]] + b[:, [3]] * r) * prep.t_years
          + b_act[:, None] * model.data.x_activity
          + u[:, prep.patient_idx, 0] + u[:, prep.patient_idx, 1] * prep.t_years)
    expected = stats.norm.logpdf(prep.y, mu, _flat(fit, "sigma")[:, None])
    ll = fit.posterior["log_likelihood"]["bmd"].values.reshape(expected.shape)
    np.testing.assert_allclose(ll, expected, rtol=1e-8)
    assert set(fit.diagnostics.var_names) >= {"b", "b_activity", "u", "diff_change_12m_total"}
    assert model.describe()["priors"]["responder_slope_sd"] == 0.05


def test_no_activity_variant_is_the_trajectory_model(control):
    frame, _, cmp = control
    fit = cmp.fits["without"]
    assert "b_activity" not in fit.posterior["posterior"]
    tm = build_trajectory_model(frame, "spine")
    ref = sample(tm, seed=3, **FAST)
    for name in ("b", "sigma", "sd_patient"):
        a, r = _flat(fit, name), _flat(ref, name)
        # same model: posterior medians agree to Monte Carlo error
        np.testing.assert_array_less(np.abs(np.median(a, 0) - np.median(r, 0)), 0.2 * r.std(0))


def test_set_data_swaps_studies_without_recompiling(control):
    _, _, cmp = control
    model = cmp.models["with"]
    frame2, _ = _frame("control", seed=1)
    model.set_data(frame2, activity_slope_sd=0.01)
    assert model.data_values["prior"][-1] == pytest.approx(0.01 / model.prepared.y_scale)
    fit = sample(model, seed=1, **FAST)
    assert fit.settings["compile_cache_hit"] is True
    assert fit.posterior["posterior"]["u"].sizes["patient"] == model.prepared.n_patients
    ex = prepare_activity_data(frame2, "spine")
    np.testing.assert_allclose(model.data_values["activity_x"], ex.x_activity)


# ---------------------------------------------------------------------------------------------
# known truth
# ---------------------------------------------------------------------------------------------


def _eti(fit, name) -> tuple[float, float]:
    return tuple(np.quantile(_flat(fit, name), [0.025, 0.975]))


def test_bone_following_disease_control_loses_the_responder_effect(control):
    _, patients, cmp = control
    assert isinstance(cmp, ActivityComparison)
    without, with_ = cmp.fits["without"], cmp.fits["with"]
    # without activity the types differ (through their DAS28 improvement) ...
    assert _eti(without, "diff_change_end")[0] > 0
    # ... with it the responder effect shrinks towards 0 and activity takes it over
    assert cmp.remaining < 0.5
    assert np.median(_flat(with_, "diff_change_end")) < _eti(without, "diff_change_end")[0]
    truth = LAMBDA / 100 * patients["true_baseline_spine"].mean()  # g/cm^2/yr per DAS28 unit
    lo, hi = _eti(with_, "b_activity")
    assert 0 < lo < truth < hi
    via = np.median(_flat(with_, "diff_change_12m_activity"))
    assert via > 0.5 * np.median(_flat(with_, "diff_change_12m_total"))
    t = cmp.table
    assert set(t["model"]) == {"without activity", "with activity"}
    assert len(t) == 2 + 5 and {"median", "eti_low", "eti_high", "p_gt_0"} <= set(t.columns)
    assert f"{100 * cmp.remaining:.0f}% of the difference remains" in cmp.text


def test_a_pure_type_effect_is_kept(type_only):
    _, patients, cmp = type_only
    with_ = cmp.fits["with"]
    assert cmp.remaining > 0.7
    assert _eti(with_, "diff_change_end")[0] > 0
    lo, hi = _eti(with_, "b_activity")
    assert lo < 0 < hi
    # the responder difference is the simulated type difference, 2.4%/yr of baseline
    truth = 0.024 * patients["true_baseline_spine"].mean()
    lo, hi = _eti(with_, "diff_change_end")
    assert lo < truth < hi


def test_mean_improvement_variant_also_separates_the_designs(control, type_only):
    results = {}
    for name, (frame, _, _) in (("control", control), ("type", type_only)):
        results[name] = compare_responder_effect(frame, "spine", sample=sample, seed=4,
                                                 activity="mean_improvement", **FAST).remaining
    assert results["control"] < 0.5 < 0.7 < results["type"]
    assert ACTIVITY_KINDS == ("cumulative", "mean_improvement", "none")


def test_a_large_fit_draws_its_patient_effects_on_request(control, monkeypatch):
    """Above EAGER_PATIENT_DRAWS patients x draws (or RAJAK_PER_PATIENT=on_request) the activity LMM
    stores neither ``u`` nor the log-likelihood, says so, and draws the same ``u`` on request (as the
    trajectory LMM; issue #18)."""
    import xarray as xr

    from models.marginal_effects import ON_REQUEST_ATTR, SEED_ATTR

    _, _, cmp = control
    model, fit = cmp.models["with"], cmp.fits["with"]
    raw = fit.posterior["posterior"].to_dataset().drop_vars("u")
    raw.attrs = {}
    monkeypatch.setenv("RAJAK_PER_PATIENT", "on_request")
    lazy = model.postprocess(xr.DataTree.from_dict({"posterior": raw.copy()}), seed=9)
    post = lazy["posterior"].to_dataset()
    assert "u" not in post and "log_likelihood" not in lazy.children
    assert post.attrs[ON_REQUEST_ATTR] == "on request" and post.attrs[SEED_ATTR] == 9
    monkeypatch.setenv("RAJAK_PER_PATIENT", "always")
    eager = model.postprocess(xr.DataTree.from_dict({"posterior": raw.copy()}), seed=9)["posterior"].to_dataset()
    u = model.patient_effects(post)
    assert u.dims == ("chain", "draw", "patient", "effect")
    np.testing.assert_array_equal(u.values, eager["u"].values)
    assert model.patient_effects(post, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(model.patient_effects(eager).values, eager["u"].values)
