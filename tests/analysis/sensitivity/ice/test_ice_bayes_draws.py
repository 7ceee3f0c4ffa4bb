r"""Tests of ``analysis/sensitivity/ice/bayes_draws.py`` and ``models/imputation_mmrm.py``: the
posterior draws of Bayesian multiple imputation's MMRM (rbmi's ``method_bayes``).

Data with known truth: :math:`n = 150` patients, :math:`m = 3` visits, design
``y ~ month * trt + base`` (built by the REML fit's own :func:`prepare_design`, so the columns
are those of :func:`fit_mmrm`), an unstructured :math:`\Sigma`, monotone dropout and an
intermittently missed visit (about 20% of the values missing). One compiled model (same
:math:`m, p`) serves every fit with three visits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import models  # noqa: F401  (compile caches before pymc)
from analysis.engine.diagnostics import Thresholds
from analysis.frequentist.design import prepare_design
from analysis.frequentist.mmrm import fit_mmrm
from analysis.sensitivity.ice.bayes_draws import (
    PosteriorDraws,
    draw_thresholds,
    mmrm_posterior_draws,
    retained_indices,
)
from models.imputation_mmrm import build_imputation_mmrm, prepare_imputation_mmrm_data

FORMULA = "y ~ month * trt + base"
MONTHS = (6.0, 12.0, 24.0)
SD = np.array([1.0, 1.5, 2.0])
CORR = np.array([[1.0, 0.6, 0.4], [0.6, 1.0, 0.7], [0.4, 0.7, 1.0]])
SIGMA = SD[:, None] * CORR * SD[None, :]
KEYS = {"max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "ok", "message"}


def simulate(n: int, seed: int, *, p_drop: float = 0.13, p_missed: float = 0.06):
    """``(frame, x, y, mask, beta)``: long data with NaN for missing values and the padded arrays
    (patients sorted by id, visits in order) of the design of :data:`FORMULA`."""
    rng = np.random.default_rng(seed)
    m = len(MONTHS)
    trt = rng.integers(0, 2, n)
    base = rng.normal(0.0, 1.0, n)
    frame = pd.DataFrame({
        "patient_id": np.repeat(np.arange(n), m),
        "month": np.tile(MONTHS, n),
        "trt": np.repeat(trt, m),
        "base": np.repeat(base, m),
        "y": 0.0,
    })
    design = prepare_design(frame, FORMULA, "patient_id", "month", categorical=("month",))
    p = design.x.shape[1]
    x = design.x.reshape(n, m, p)
    # intercept, months 12 and 24, trt, base, month:trt interactions (in the design's order)
    truth = {"Intercept": 0.5, "trt": 0.8, "base": 0.6}
    beta = np.array([truth.get(c, 0.3 if ":" in c else -0.4) for c in design.columns])
    y = x @ beta + rng.multivariate_normal(np.zeros(m), SIGMA, size=n)
    mask = np.ones((n, m), dtype=bool)
    for j in range(1, m):  # monotone dropout after each visit but the last
        mask[:, j] &= mask[:, j - 1] & (rng.random(n) >= p_drop)
    missed = (rng.random(n) < p_missed) & mask[:, 2]  # an attended month 12 missed
    mask[missed, 1] = False
    y_obs = np.where(mask, y, np.nan)
    frame["y"] = y_obs.reshape(-1)
    return frame, x, y_obs, mask, beta


@pytest.fixture(scope="module")
def study():
    return simulate(150, seed=11)


@pytest.fixture(scope="module")
def full_posterior(study) -> PosteriorDraws:
    """1000 draws with the default thinning: every 3rd of 2 chains x 1500."""
    _, x, y, mask, _ = study
    return mmrm_posterior_draws(x, y, mask, n_samples=1000, seed=5, chains=2, tune=500)


def test_simulated_study_has_about_20_percent_missing_and_every_pattern(study):
    mask = study[3]
    assert 0.12 < 1.0 - mask.mean() < 0.28
    patterns = {"".join(map(str, r)) for r in mask.astype(int)}
    assert {"111", "110", "100", "101"} <= patterns


def test_posterior_recovers_the_truth_and_agrees_with_reml(study, full_posterior):
    frame, x, _, _, beta_true = study
    post = full_posterior
    assert post.beta.shape == (1000, x.shape[2]) and post.sigma.shape == (1000, 3, 3)
    mean_b, sd_b = post.beta.mean(axis=0), post.beta.std(axis=0)
    mean_s, sd_s = post.sigma.mean(axis=0), post.sigma.std(axis=0)
    # the truth within a few posterior SDs
    assert np.all(np.abs(mean_b - beta_true) < 3.5 * sd_b), (mean_b - beta_true) / sd_b
    assert np.all(np.abs(mean_s - SIGMA) < 3.5 * sd_s), (mean_s - SIGMA) / sd_s
    # REML (the REML fit of the same design): beta to 0.2 posterior SD; the posterior mean of a
    # variance sits above the REML estimate (a mode-like point) by a fraction of its SD
    reml = fit_mmrm(frame, FORMULA, covariance="us")
    z_beta = (mean_b - reml.coef.to_numpy()) / sd_b
    assert np.all(np.abs(z_beta) < 0.2), z_beta
    z_sigma = (mean_s - reml.covariance.to_numpy()) / sd_s
    assert np.all(np.abs(z_sigma) < 0.5), z_sigma
    # and the posterior SDs of beta are the REML standard errors, to 10%
    ratio = sd_b / reml.fixed["se"].to_numpy()
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio
    # every draw of Sigma is a covariance matrix
    assert np.allclose(post.sigma, np.swapaxes(post.sigma, 1, 2))
    assert np.all(np.linalg.eigvalsh(post.sigma)[:, 0] > 0)
    d = post.diagnostics
    assert KEYS <= set(d) and d["ok"], d["message"]
    assert d["max_rhat"] < 1.01 and d["divergences"] == 0 and d["min_ess_tail"] > 200
    assert d["draws_per_chain"] == 1500 and d["thin"] == 3.0


def test_same_seed_same_draws_and_refits_reuse_the_compiled_model(study, full_posterior):
    _, x, y, mask, _ = study
    kw = {"n_samples": 20, "chains": 2, "tune": 200, "thin": 10}
    a = mmrm_posterior_draws(x, y, mask, seed=3, **kw)
    b = mmrm_posterior_draws(x, y, mask, seed=3, **kw)
    c = mmrm_posterior_draws(x, y, mask, seed=4, **kw)
    assert a.beta.shape == (20, x.shape[2]) and a.sigma.shape == (20, 3, 3)
    np.testing.assert_array_equal(a.beta, b.beta)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    assert not np.array_equal(a.beta, c.beta)
    assert a.diagnostics["draws_per_chain"] == 100
    # the three fits and the module's big one share one compilation (same m and p)
    assert all(f.diagnostics["compile_seconds"] == 0.0 for f in (a, b, c))
    # other patients, other patterns, same m and p: the same compiled model
    _, x2, y2, mask2, _ = simulate(97, seed=12)
    d = mmrm_posterior_draws(x2, y2, mask2, seed=3, **kw)
    assert d.diagnostics["compile_seconds"] == 0.0
    assert (build_imputation_mmrm(x2, y2, mask2).structure_key
            == build_imputation_mmrm(x, y, mask).structure_key)


def test_failed_checks_set_ok_false_with_a_message_instead_of_raising(study):
    _, x, y, mask, _ = study
    strict = Thresholds(ess_bulk_min=1e9)
    out = mmrm_posterior_draws(x, y, mask, n_samples=10, seed=1, tune=100, thin=10, thresholds=strict)
    d = out.diagnostics
    assert KEYS <= set(d)
    assert d["ok"] is False and "ess_bulk" in d["message"] and d["failures"]
    assert isinstance(d["max_rhat"], float) and isinstance(d["divergences"], int)
    assert out.beta.shape == (10, x.shape[2])


def test_one_visit_is_a_linear_regression():
    rng = np.random.default_rng(2)
    n = 120
    x = np.stack([np.ones(n), rng.integers(0, 2, n), rng.normal(size=n)], axis=1)[:, None, :]
    beta = np.array([2.0, 1.0, -0.5])
    y = x @ beta + rng.normal(0.0, 1.5, (n, 1))
    mask = rng.random((n, 1)) > 0.2
    y = np.where(mask, y, np.nan)
    out = mmrm_posterior_draws(x, y, mask, n_samples=1000, seed=7, tune=300)
    assert out.beta.shape == (1000, 3) and out.sigma.shape == (1000, 1, 1)
    assert out.diagnostics["ok"], out.diagnostics["message"]
    # against the exact posterior under flat priors on beta and log sigma: a t around OLS
    xo, yo = x[mask], y[mask]
    ols, rss = np.linalg.lstsq(xo, yo, rcond=None)[:2]
    dof = len(yo) - 3
    se = np.sqrt(np.diag(np.linalg.inv(xo.T @ xo)) * rss[0] / dof)
    sd_b = out.beta.std(axis=0)
    assert np.all(np.abs(out.beta.mean(axis=0) - ols) < 0.2 * sd_b)
    assert np.all(np.abs(sd_b / se - 1.0) < 0.15)
    s2_mean = rss[0] / (dof - 2)  # E[sigma^2 | data] under p(sigma^2) ~ 1/sigma^2
    assert abs(out.sigma[:, 0, 0].mean() / s2_mean - 1.0) < 0.1


def test_likelihood_is_the_sum_of_the_patterns_multivariate_normals(study):
    """The masked-covariance potential equals sum_i log MVN(y_iS; X_iS beta, Sigma_SS)."""
    _, x, y, mask, _ = study
    mask = mask.copy()
    mask[0] = False  # a patient without any value contributes nothing
    model = build_imputation_mmrm(x, y, mask)
    pm_model = model.pymc_model
    inputs = list(pm_model.value_vars)
    outs = pm_model.replace_rvs_by_values([pm_model[v] for v in ("y_marginal", "beta", "Sigma")])
    fn = pm_model.compile_fn(outs, inputs=inputs, mode="FAST_COMPILE", point_fn=False)
    rng = np.random.default_rng(0)
    start = pm_model.initial_point()
    pot, beta, sigma = fn(*[rng.normal(0.0, 0.5, np.shape(start[v.name])) for v in inputs])
    want = 0.0
    for i in range(x.shape[0]):
        s = mask[i]
        if s.any():
            want += stats.multivariate_normal(x[i, s] @ beta, sigma[np.ix_(s, s)]).logpdf(y[i, s])
    assert np.isclose(pot, want, rtol=1e-10, atol=1e-8)


def test_the_prior_follows_a_recoded_design(study):
    """X -> X A (another coding): the prior centre and covariance of beta map by A^-1 and the
    visit-SD scales stay, so the posterior of X beta is unchanged."""
    _, x, y, mask, _ = study
    rng = np.random.default_rng(1)
    p = x.shape[2]
    a = np.eye(p) + 0.3 * rng.normal(size=(p, p))
    ref = prepare_imputation_mmrm_data(x, y, mask)
    rec = prepare_imputation_mmrm_data(x @ a, y * 100.0 + 0.0, mask)
    ainv = np.linalg.inv(a)
    np.testing.assert_allclose(rec.beta_center, 100.0 * ainv @ ref.beta_center, rtol=1e-8, atol=1e-8)
    cov_ref = ref.beta_chol @ ref.beta_chol.T
    cov_rec = rec.beta_chol @ rec.beta_chol.T
    np.testing.assert_allclose(cov_rec, 1e4 * ainv @ cov_ref @ ainv.T, rtol=1e-8, atol=1e-6)
    np.testing.assert_allclose(rec.sd_pilot, 100.0 * ref.sd_pilot, rtol=1e-10)


def test_retained_draws_are_spread_over_every_chain():
    idx = retained_indices(1000, 20)
    assert idx[0] == 49 and idx[-1] == 999 and np.all(np.diff(idx) == 50)
    np.testing.assert_array_equal(retained_indices(100, 10, thin=10), np.arange(9, 100, 10))
    with pytest.raises(ValueError):
        retained_indices(100, 20, thin=10)
    t = draw_thresholds(1000, 2)
    assert t.ess_bulk_min == 1000 and t.ess_tail_min == 200 and t.rhat_max == 1.01


def test_bad_inputs_raise(study):
    _, x, y, mask, _ = study
    bad = y.copy()
    bad[np.flatnonzero(mask[:, 0])[0], 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        prepare_imputation_mmrm_data(x, bad, mask)
    with pytest.raises(ValueError, match="rank"):
        prepare_imputation_mmrm_data(np.concatenate([x, x[:, :, :1]], axis=2), y, mask)
    with pytest.raises(ValueError, match="n_samples"):
        mmrm_posterior_draws(x, y, mask, n_samples=0, seed=1)


def test_set_data_swaps_patients_and_patterns_in_a_built_model(study):
    from analysis.engine.sampling import sample

    _, x, y, mask, _ = study
    model = build_imputation_mmrm(x, y, mask)
    _, x2, y2, mask2, _ = simulate(97, seed=13)
    model.set_data(x2, y2, mask2)
    assert model.describe()["n_patients"] == 97 and model.data_values["y"].shape == (97, 3)
    fit = sample(model, draws=50, tune=50, chains=1, seed=1)  # the engine checks for stale data
    assert fit.settings["compile_cache_hit"]
    with pytest.raises(ValueError, match="build a new model"):
        model.set_data(x2[:, :, :-1], y2, mask2)
    with pytest.raises(ValueError, match="together"):
        model.set_data(x2, y2)
