"""The joint two-site and activity-model calibration estimators in reduced form: the closed-form
truths against an independent large simulation, the simulated data against the models' data
preparation, and tiny-draw fits through the calibration runner (the calibration itself is a
benchmark run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.calibration.estimators_bayes_models import (
    ACTIVITY_COLUMN,
    COHORT_DESIGN,
    COHORT_N,
    STREAM,
    activity_frame,
    activity_truth,
    bayes_model_estimators,
    clipped_normal_mean,
    cohort_study,
    fit_activity,
    fit_joint,
    joint_frame,
    joint_truth,
)
from analysis.calibration.execution import Chunk, estimator_state, run_chunk
from analysis.calibration.spec import dataset_rng
from models.simulate import simulate
from tests.calibration_rows import assert_sane_rows

TINY = {"draws": 100, "tune": 100, "chains": 2}
BIG = 200_000


@pytest.fixture(scope="module")
def big_cohort():
    """Complete-data truth of a large cohort (an independent seed, no model involved)."""
    return simulate(COHORT_DESIGN.with_updates(n_patients=BIG), seed=918273).patients


def test_clipped_normal_mean_against_quadrature():
    from scipy import integrate, stats

    for mu, sd, lo, hi in [(0.95, 0.28, 0.2, 1.9), (-0.25, 0.15, -0.4, 0.95), (26.0, 4.5, 16.0, 45.0)]:
        body, _ = integrate.quad(lambda x, m=mu, s=sd: x * stats.norm.pdf(x, m, s), lo, hi)
        ref = body + lo * stats.norm.cdf(lo, mu, sd) + hi * stats.norm.sf(hi, mu, sd)
        assert clipped_normal_mean(mu, sd, lo, hi) == pytest.approx(ref, rel=1e-9)
    assert clipped_normal_mean(0.0, 1.0, -40.0, 40.0) == pytest.approx(0.0, abs=1e-12)


def test_joint_truth_against_a_large_simulation(big_cohort):
    """The model's estimand is a ratio of group means, 100 E[slope | r] / E[b | r], whose difference
    the closed form gives as E[g | 1] - E[g | 0]; checked with a delta-method Monte-Carlo SE."""
    p = big_cohort
    resp = (p["response_type"] == "responder").to_numpy()
    b, g = p["true_baseline_spine"].to_numpy(), p["true_slope_pct_spine"].to_numpy()
    ratios, variances = [], []
    for m in (~resp, resp):
        ratio = np.mean(b[m] * g[m]) / np.mean(b[m])
        psi = (b[m] * g[m] - ratio * b[m]) / np.mean(b[m])
        ratios.append(ratio)
        variances.append(psi.var(ddof=1) / m.sum())
    mcse = float(np.sqrt(sum(variances)))
    assert abs(ratios[1] - ratios[0] - joint_truth()) < 4 * mcse, (ratios[1] - ratios[0], joint_truth(), mcse)
    assert mcse < 0.02  # the check is sharp: 4 MCSE is under 3% of the 3.4-point truth


def test_activity_truth_against_a_large_simulation(big_cohort):
    """OLS of the true annual change (g/cm^2/yr) on (1, latent type, true improvement) in a large
    complete cohort estimates b_a without error in the exposure; heteroscedasticity-robust SE."""
    p = big_cohort
    slope = (p["true_baseline_spine"] * p["true_slope_pct_spine"] / 100.0).to_numpy()
    x = np.column_stack([np.ones(len(p)), (p["response_type"] == "responder").to_numpy(float),
                         p["true_das28_improvement"].to_numpy()])
    xtx_inv = np.linalg.inv(x.T @ x)
    coef = xtx_inv @ x.T @ slope
    resid = slope - x @ coef
    cov = xtx_inv @ (x.T * resid**2) @ x @ xtx_inv
    se = float(np.sqrt(cov[2, 2]))
    assert abs(coef[2] - activity_truth()) < 4 * se, (coef[2], activity_truth(), se)
    assert se < 0.03 * activity_truth()
    # sharper: the mean baseline E[b] behind it (m_s alone would be 37 MCSE off)
    base = p["true_baseline_spine"].to_numpy()
    mean_b = activity_truth() * 100.0 / COHORT_DESIGN.spine.slope_per_das28_improvement_pct
    assert abs(base.mean() - mean_b) < 4 * base.std(ddof=1) / np.sqrt(len(base)), (base.mean(), mean_b)


def test_truths_follow_the_simulator_parameters():
    """Without bone following disease activity the joint truth is the type effect alone and b_a is 0;
    doubling lambda doubles b_a."""
    flat = COHORT_DESIGN.with_updates(**{"spine.slope_per_das28_improvement_pct": 0.0})
    spine = COHORT_DESIGN.spine
    assert joint_truth(flat) == pytest.approx(spine.slope_responder_pct - spine.slope_nonresponder_pct)
    assert activity_truth(flat) == 0.0
    steep = COHORT_DESIGN.with_updates(**{"spine.slope_per_das28_improvement_pct":
                                          2 * spine.slope_per_das28_improvement_pct})
    assert activity_truth(steep) == pytest.approx(2 * activity_truth())
    assert joint_truth(steep) - joint_truth(flat) == pytest.approx(2 * (joint_truth() - joint_truth(flat)))


def test_simulated_data_are_what_the_models_take():
    from models.activity_exposure import prepare_activity_data
    from models.joint_data import prepare_joint_data

    joint, activity = bayes_model_estimators()
    assert joint.seed_stream == activity.seed_stream == STREAM
    assert joint.family == activity.family == "bayesian" and joint.setup and activity.setup
    j_data, j_truth = joint.simulate(dataset_rng(4, joint, 2))
    a_data, a_truth = activity.simulate(dataset_rng(4, activity, 2))
    assert (j_truth, a_truth) == (joint_truth(), activity_truth())
    study = cohort_study(dataset_rng(4, joint, 2))  # the same study behind both frames
    pd.testing.assert_frame_equal(j_data, joint_frame(study))
    pd.testing.assert_frame_equal(a_data, activity_frame(study))
    latent = study.patients.set_index("patient_id")
    # groups are the latent response type
    resp = a_data.groupby("patient_id")["responder"].first()
    assert (resp == (latent.loc[resp.index, "response_type"] == "responder")).all() and 0 < resp.mean() < 1
    # dropout happened (MCAR, some patients lost) but every patient has a baseline DXA
    assert 0 < study.patients["dropout_month"].notna().sum() < COHORT_N
    jp = prepare_joint_data(j_data, (), sites=("spine", "femoral_neck"))
    assert jp.n_patients == COHORT_N
    ad = prepare_activity_data(a_data, "spine", (), "mean_improvement", ACTIVITY_COLUMN)
    has = ~np.isnan(ad.patient_exposure)
    truth_imp = latent.loc[list(ad.prepared.patient_ids), "true_das28_improvement"].to_numpy()
    np.testing.assert_allclose(ad.patient_exposure[has], truth_imp[has], rtol=1e-12)
    assert has.sum() > 0.8 * COHORT_N


@pytest.mark.parametrize("index", [0, 1])
def test_bayes_model_estimator_reduced(index):
    est = bayes_model_estimators("_test", **TINY)[index]
    rows = run_chunk(Chunk(est, seed=19, indices=(0, 1)))
    assert_sane_rows(rows)


@pytest.mark.parametrize("index", [0, 1])
def test_bayes_model_recovers_the_truth_on_a_large_cohort(index):
    """One 1,000-patient cohort: the posterior mean within 3 posterior SDs of the truth, and the
    posterior SD about what 150 patients give over sqrt(1000/150)."""
    est = bayes_model_estimators("_test", **TINY)[index]
    refitter, _ = estimator_state(est)
    study = cohort_study(np.random.default_rng(555), COHORT_DESIGN.with_updates(n_patients=1000))
    if index == 0:
        mean, sd, lo, hi = fit_joint(joint_frame(study), refitter)
        truth = joint_truth()
    else:
        mean, sd, lo, hi = fit_activity(activity_frame(study), refitter)
        truth = activity_truth()
    assert abs(mean - truth) < 3 * sd and lo < truth < hi, (mean, sd, truth)
    assert sd < 0.3 * abs(truth)
