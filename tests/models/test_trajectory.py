"""Tests of ``models/trajectory.py`` (with ``trajectory_data.py`` and ``trajectory_terms.py``):
data preparation, the original-scale algebra, parameter recovery, interval coverage over simulated
data sets, agreement of the parameterisations and the Student-t option (the bambi path is tested
in ``tests/analysis/bayes/test_formula.py``).

Data come from ``tests/lmm_sim.py`` (known parameters). Fits are short (2 chains x 300 draws)
and one compiled model is reused across data sets through ``TrajectoryModel.set_data``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import models  # noqa: F401  (compile caches before pymc)
from analysis.engine.sampling import sample
from models.trajectory import (
    COEF_NAMES,
    TrajectoryModel,
    TrajectoryPriors,
    build_trajectory_model,
    prepare_trajectory_data,
)
from tests.lmm_sim import LMMTruth, simulate_lmm

FAST = {"draws": 300, "tune": 300, "chains": 2, "cores": 2}
TRUTH = LMMTruth()


def _post(fit, name):
    return fit.posterior["posterior"][name]


def _eti(draws: np.ndarray, prob: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return lo, hi


def _stacked(fit, name) -> np.ndarray:
    """Draws of ``name`` as (n_draws, ...)."""
    da = _post(fit, name)
    return da.values.reshape(-1, *da.shape[2:])


@pytest.fixture(scope="module")
def twin() -> pd.DataFrame:
    return simulate_lmm(46, dropout=0.43, seed=11)


@pytest.fixture(scope="module")
def twin_fit(twin):
    tm = build_trajectory_model(twin, "spine")
    return tm, sample(tm, seed=5, **FAST)


# ---------------------------------------------------------------------------------------------
# data preparation and priors
# ---------------------------------------------------------------------------------------------


def test_prepare_drops_missing_outcomes_and_uses_years(twin):
    prep = prepare_trajectory_data(twin, "spine")
    observed = twin[twin["bmd_spine"].notna()]
    assert prep.n_obs == len(observed) < len(twin)
    np.testing.assert_allclose(prep.t_years, observed["month"].to_numpy() / 12.0)
    assert list(prep.patient_ids) == sorted(observed["patient_id"].unique())
    resp = observed.groupby("patient_id")["responder"].first()
    np.testing.assert_array_equal(prep.responder, resp.loc[prep.patient_ids].to_numpy(float))
    counts = np.bincount(prep.patient_idx)
    assert counts.sum() == prep.n_obs and set(counts) == {1, 2, 3}  # monotone dropout


def test_prepare_rejects_bad_input(twin):
    with pytest.raises(ValueError, match="site"):
        prepare_trajectory_data(twin, "hip")
    bad = twin.copy()
    bad["responder"] = bad["responder"].astype(object)
    bad.loc[0, "responder"] = None
    with pytest.raises(ValueError, match="responder is missing"):
        prepare_trajectory_data(bad, "spine")
    bad = twin.copy()
    bad.loc[bad.index[1], "responder"] = not bad.loc[bad.index[0], "responder"]
    with pytest.raises(ValueError, match="varies within a patient"):
        prepare_trajectory_data(bad, "spine")
    with pytest.raises(ValueError, match="lacks column"):
        prepare_trajectory_data(twin.drop(columns="month"), "spine")
    bad = twin.copy()
    bad.loc[0, "sex"] = "X"
    with pytest.raises(ValueError, match="sex"):
        prepare_trajectory_data(bad, "spine", covariates=("sex",))
    with pytest.raises(ValueError, match="no observed"):
        prepare_trajectory_data(twin, "femoral_neck")


def test_priors_are_validated_and_scaled():
    with pytest.raises(ValueError, match="slope_sd"):
        TrajectoryPriors(slope_sd=0.0)
    p = TrajectoryPriors()
    arr = p.to_array(y_scale=0.5)
    assert arr.shape == (len(TrajectoryPriors.FIELDS),)
    assert arr[0] == pytest.approx(p.intercept_sd / 0.5)
    assert arr[TrajectoryPriors.FIELDS.index("lkj_eta")] == p.lkj_eta  # not a scale


def test_build_rejects_bad_options(twin):
    with pytest.raises(ValueError, match="likelihood"):
        build_trajectory_model(twin, "spine", likelihood="cauchy")
    with pytest.raises(ValueError, match="parameterisation"):
        build_trajectory_model(twin, "spine", parameterisation="funky")
    robust = build_trajectory_model(twin, "spine", likelihood="student_t")
    assert robust.parameterisation == "marginal"
    assert "w_obs" not in robust.diagnostic_vars and "nu" in robust.diagnostic_vars


# ---------------------------------------------------------------------------------------------
# the fitted default model
# ---------------------------------------------------------------------------------------------


def test_reported_quantities_follow_from_the_coefficients(twin_fit):
    tm, fit = twin_fit
    assert isinstance(tm, TrajectoryModel) and tm.parameterisation == "marginal"
    b = _stacked(fit, "b")
    assert list(_post(fit, "b").coef.values) == list(COEF_NAMES)
    base = b[:, 0, None] + b[:, 2, None] * np.array([0.0, 1.0])
    change = b[:, 1, None] + b[:, 3, None] * np.array([0.0, 1.0])
    np.testing.assert_allclose(_stacked(fit, "baseline_mean"), base, rtol=1e-10)
    np.testing.assert_allclose(_stacked(fit, "change_end"), change, rtol=1e-10)
    pct = 100 * change / base
    np.testing.assert_allclose(_stacked(fit, "pct_change_end"), pct, rtol=1e-10)
    np.testing.assert_allclose(_stacked(fit, "diff_change_end")[:, 0], b[:, 3], rtol=1e-10)
    np.testing.assert_allclose(_stacked(fit, "diff_pct_change_end")[:, 0], pct[:, 1] - pct[:, 0], rtol=1e-9)
    # original scale = location + scale * standardised parameter
    y_loc, y_scale = tm.prepared.y_loc, tm.prepared.y_scale
    beta = _stacked(fit, "beta_std")
    np.testing.assert_allclose(b[:, 0], y_loc + y_scale * beta[:, 0], rtol=1e-10)
    np.testing.assert_allclose(b[:, 1:], y_scale * beta[:, 1:], rtol=1e-10)
    np.testing.assert_allclose(_stacked(fit, "sigma"), y_scale * _stacked(fit, "sigma_std"), rtol=1e-10)
    # on the g/cm^2 scale: baseline near 0.9, change within a few % a year
    assert 0.7 < b[:, 0].mean() < 1.1
    assert np.all(np.abs(change.mean(axis=0)) < 0.06)
    u = _post(fit, "u")
    assert list(u.patient.values) == list(tm.prepared.patient_ids)
    assert set(fit.diagnostics.var_names) >= {"b", "sigma", "sd_patient", "u", "change_end"}


def test_recovery_on_a_large_study():
    df, u_true = simulate_lmm(300, dropout=0.2, seed=3, return_effects=True)
    tm = build_trajectory_model(df, "spine")
    fit = sample(tm, seed=2, draws=500, tune=400, chains=2)
    assert fit.settings["compile_cache_hit"]  # marginal model: any number of patients
    truth = {
        "b": [TRUTH.b0, TRUTH.b1, TRUTH.b2, TRUTH.b3],
        "sd_patient": [TRUTH.sd_u0, TRUTH.sd_u1],
        "sigma": TRUTH.sigma,
        "corr_patient": TRUTH.corr,
    }
    for name, value in truth.items():
        draws = _stacked(fit, name)
        z = (draws.mean(axis=0) - np.asarray(value)) / draws.std(axis=0)
        assert np.all(np.abs(z) < 3.5), (name, draws.mean(axis=0), value)
    # tight enough to mean something
    assert _stacked(fit, "b")[:, 1].std() < 0.006
    assert _stacked(fit, "sigma").std() < 0.001
    # patient effects (drawn from their exact conditional) track the truth; the identified
    # quantities are each patient's own intercept and slope (u shares the error of b). 300 patients
    # x 1000 draws is above the eager budget: the effects are drawn on request
    post = fit.posterior["posterior"].to_dataset()
    assert "u" not in post and post.attrs["rajak_per_patient"] == "on request"
    u = tm.patient_effects(post, dtype=np.float32).values.reshape(-1, tm.prepared.n_patients, 2)
    b = _stacked(fit, "b")
    assert np.corrcoef(u.mean(axis=0)[:, 0], u_true[:, 0])[0, 1] > 0.99
    assert np.corrcoef(u.mean(axis=0)[:, 1], u_true[:, 1])[0, 1] > 0.5
    r = tm.prepared.responder
    own = np.stack(
        [b[:, 0, None] + b[:, 2, None] * r + u[..., 0], b[:, 1, None] + b[:, 3, None] * r + u[..., 1]],
        axis=-1,
    )
    own_true = np.stack(
        [TRUTH.b0 + TRUTH.b2 * r + u_true[:, 0], TRUTH.b1 + TRUTH.b3 * r + u_true[:, 1]], axis=-1
    )
    lo, hi = _eti(own)
    covered = (lo <= own_true) & (own_true <= hi)
    assert np.all(covered.mean(axis=0) > 0.88), covered.mean(axis=0)


def test_95pct_intervals_cover_the_truth(twin_fit):
    tm, _ = twin_fit
    names = {
        "b": np.array([TRUTH.b0, TRUTH.b1, TRUTH.b2, TRUTH.b3]),
        "sd_patient": np.array([TRUTH.sd_u0, TRUTH.sd_u1]),
        "sigma": np.array(TRUTH.sigma),
        "change_end": TRUTH.change_12m,
    }
    hits, widths, n_obs, cache_hits = [], [], set(), []
    for k in range(20):
        df = simulate_lmm(46, dropout=0.43, seed=1000 + k)
        tm.set_data(df)
        n_obs.add(tm.prepared.n_obs)
        fit = sample(tm, seed=k, **FAST)
        cache_hits.append(fit.settings["compile_cache_hit"])
        for name, value in names.items():
            lo, hi = _eti(_stacked(fit, name))
            hits.extend(np.atleast_1d((lo <= value) & (value <= hi)))
        lo, hi = _eti(_stacked(fit, "diff_change_end"))
        widths.append(hi - lo)
    assert all(cache_hits)  # one compiled model, new data through with_data
    assert len(n_obs) > 1  # the data sets differ in their number of rows
    coverage = float(np.mean(hits))
    assert 0.85 <= coverage, coverage
    # and the intervals are informative (the prior's 95% width for b3 is 0.2 g/cm^2/yr)
    assert np.mean(widths) < 0.05


@pytest.mark.parametrize("likelihood", ["normal", "student_t"])
def test_parameterisations_agree(twin, likelihood):
    """The marginal likelihood and the latent model are the same model (for Student-t: the
    non-centred scale mixture with the effects integrated out and the t likelihood with latent
    effects)."""
    fits = {
        p: sample(build_trajectory_model(twin, "spine", parameterisation=p, likelihood=likelihood), seed=3,
                  draws=600, tune=500, chains=2)
        for p in ("marginal", "centred_intercept")
    }
    names = ("b", "sd_patient", "sigma", "change_end", "u") + (("nu",) if likelihood == "student_t" else ())
    for name in names:
        a, b = (_stacked(fits[p], name) for p in ("marginal", "centred_intercept"))
        sd = np.sqrt((a.var(axis=0) + b.var(axis=0)) / 2)
        z = np.abs(a.mean(axis=0) - b.mean(axis=0)) / sd
        assert np.mean(z) < 0.2 and np.max(z) < 0.6, (name, z)
        ratio = a.std(axis=0) / b.std(axis=0)
        assert np.all((ratio > 0.75) & (ratio < 1.33)), (name, ratio)


def test_student_t_option_flags_outliers():
    df = simulate_lmm(46, dropout=0.3, seed=21)
    rows = df.index[df["bmd_spine"].notna()][[3, 20, 41, 60]]
    df.loc[rows, "bmd_spine"] += np.array([0.12, -0.15, 0.13, -0.12])
    fit_t = sample(build_trajectory_model(df, "spine", likelihood="student_t"), seed=1, **FAST)
    fit_n = sample(build_trajectory_model(df, "spine"), seed=1, **FAST)
    nu = _stacked(fit_t, "nu")
    assert np.median(nu) < 5
    # the normal model inflates its residual SD to absorb the outliers; the t model does not
    assert np.median(_stacked(fit_t, "sigma")) < 0.6 * np.median(_stacked(fit_n, "sigma"))
    assert abs(np.median(_stacked(fit_t, "sigma")) - TRUTH.sigma) < 0.005


def _heavy_tailed(n: int, nu: float, seed: int) -> pd.DataFrame:
    """simulate_lmm data whose residuals are sigma * t_nu instead of normal (same effects)."""
    df, u = simulate_lmm(n, dropout=0.2, seed=seed, return_effects=True)
    rng = np.random.default_rng([seed, 99])
    i = df["patient_id"].str[1:].astype(int).to_numpy() - 1
    t, r = df["month"].to_numpy() / 12.0, df["responder"].to_numpy(float)
    mean = TRUTH.b0 + u[i, 0] + (TRUTH.b1 + u[i, 1]) * t + TRUTH.b2 * r + TRUTH.b3 * r * t
    obs = df["bmd_spine"].notna().to_numpy()
    df.loc[obs, "bmd_spine"] = mean[obs] + TRUTH.sigma * rng.standard_t(nu, obs.sum())
    return df


def test_robust_model_recovers_known_parameters_under_heavy_tails():
    """Residuals drawn from sigma * t_3 (sigma = 0.01 g/cm^2, 120 patients): the robust model
    recovers b, the patient SDs, sigma and nu (within 3.5 posterior SDs); the normal model's residual SD absorbs the tails
    (SD of sigma * t_3 = 1.73 sigma). The default settings converge, and the posterior means
    of the weights flag the largest residuals."""
    df = _heavy_tailed(120, 3.0, seed=31)
    robust = build_trajectory_model(df, "spine", likelihood="student_t")
    fit_t = sample(robust, seed=1, draws=500, tune=500, chains=2)
    fit_n = sample(build_trajectory_model(df, "spine"), seed=1, draws=500, tune=500, chains=2)
    d = fit_t.diagnostics
    assert d.n_divergences == 0 and d.max_rhat < 1.02 and d.min_ess_bulk > 200, d
    truth = {"b": [TRUTH.b0, TRUTH.b1, TRUTH.b2, TRUTH.b3],
             "sd_patient": [TRUTH.sd_u0, TRUTH.sd_u1], "sigma": TRUTH.sigma, "nu": 3.0}
    for name, value in truth.items():
        draws = _stacked(fit_t, name)
        z = (draws.mean(axis=0) - np.asarray(value)) / draws.std(axis=0)
        assert np.all(np.abs(z) < 3.5), (name, draws.mean(axis=0), value)
    # (nu itself is weakly identified here: with ~2.6 rows and 2 effects per patient few
    # residual degrees of freedom remain; its posterior, 95% interval ~3.5-55, is the same
    # under the latent-effects parameterisation)
    sigma_t, sigma_n = (np.median(_stacked(f, "sigma")) for f in (fit_t, fit_n))
    assert sigma_n > 1.2 * TRUTH.sigma and sigma_n > sigma_t, (sigma_n, sigma_t)
    # the weights flag the largest residuals
    w = _stacked(fit_t, "w_obs").mean(axis=0)
    u = _stacked(fit_t, "u").mean(axis=0)
    prep = robust.prepared
    b = _stacked(fit_t, "b").mean(axis=0)
    r = prep.responder[prep.patient_idx]
    fitted = (b[0] + b[2] * r + u[prep.patient_idx, 0]
              + (b[1] + b[3] * r + u[prep.patient_idx, 1]) * prep.t_years)
    resid = np.abs(prep.y - fitted)
    assert np.corrcoef(resid, w)[0, 1] < -0.5


def test_covariates_enter_on_their_own_scale():
    truth = LMMTruth(gamma={"bmi": 0.008, "age": -0.003})
    df = simulate_lmm(120, truth, dropout=0.2, seed=8)
    fit = sample(build_trajectory_model(df, "spine", covariates=("age", "sex", "bmi")), seed=4, **FAST)
    gamma = _post(fit, "gamma")
    assert list(gamma.covariate.values) == ["age", "sex", "bmi"]
    mean, sd = gamma.mean(("chain", "draw")).values, gamma.std(("chain", "draw")).values
    z = (mean - np.array([-0.003, 0.0, 0.008])) / sd
    assert np.all(np.abs(z) < 3.5), (mean, sd)
    assert sd[0] < 0.002 and sd[2] < 0.004  # per year of age, per kg/m^2

