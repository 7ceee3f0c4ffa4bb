"""Tests of ``analysis/bayes/prior_checks.py`` on the RAJAK twin: the prior predictive draws follow the
swapped-in prior sets (checked against closed forms), the log densities added for power-scaling
equal the model's densities computed by hand, and the sensitivity diagnostic separates an
informative prior from a vague one.

Fits are short (2 chains x 400 draws); one compiled trajectory model serves every prior set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import models  # noqa: F401  (compile caches before pymc)
from analysis.bayes.fit import analysis_frame
from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.engine.sampling import sample
from analysis.figures.plots import figure_png_bytes
from analysis.bayes.prior_checks import (
    CONTRASTS,
    LogDensities,
    PriorCheckResult,
    add_log_densities,
    prior_checks,
    prior_predictive,
    prior_predictive_figure,
    prior_sensitivity,
)
from models.priors import PRIOR_SET_NAMES, prior_set
from models.trajectory import TrajectoryPriors, build_trajectory_model

FAST = {"draws": 400, "tune": 400, "chains": 2, "cores": 2}
#: The twin's one contrast, as power-scaling sensitivity labels it.
DIFF = "diff_pct_change_end[responder - non-responder]"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    out, _ = analysis_frame(derive(load_twin().frame))
    return out


@pytest.fixture(scope="module")
def predictive(frame):
    return prior_predictive(frame, "spine", draws=2000, seed=3)


@pytest.fixture(scope="module")
def marginal_fit(frame):
    tm = build_trajectory_model(frame, "spine")
    return tm, sample(tm, seed=11, **FAST)


@pytest.fixture(scope="module")
def checks(frame):
    return prior_checks(frame, "spine", sets=("sceptical", "vague"), prior_draws=300, seed=5,
                        label="SYNTHETIC", **FAST)


def _row(table, name, quantity, group="all"):
    t = table[(table["set"] == name) & (table["quantity"] == quantity) & (table["group"] == group)]
    assert len(t) == 1
    return t.iloc[0]


# ---------------------------------------------------------------------------------------------
# prior predictive
# ---------------------------------------------------------------------------------------------


def test_prior_predictive_table_shape_and_observed_ranges(frame, predictive):
    table, samples = predictive
    assert list(table["set"].unique()) == list(PRIOR_SET_NAMES) == list(samples)
    qs = table[["q025", "q25", "q50", "q75", "q975"]].to_numpy()
    assert np.all(np.diff(qs, axis=1) >= 0)  # quantiles ordered
    observed = frame[frame["bmd_spine"].notna()]
    base = observed.loc[observed["month"] == 0, "bmd_spine"]
    row = _row(table, "weakly_informative", "baseline BMD")
    assert (row.observed_low, row.observed_high) == (base.min(), base.max())
    # observed 12-month % change of the completers, per group
    wide = observed.pivot_table(index="patient_id", columns="month", values="bmd_spine")
    wide = wide.dropna(subset=[0.0, 12.0])
    pct = 100 * (wide[12.0] - wide[0.0]) / wide[0.0]
    resp = observed.groupby("patient_id")["responder"].first().reindex(pct.index)
    for label, flag in (("responder", True), ("non-responder", False)):
        r = _row(table, "literature", "12-month change, patient", label)
        assert r.observed_low == pytest.approx(pct[resp == flag].min())
        assert r.observed_high == pytest.approx(pct[resp == flag].max())
    assert table.loc[table["kind"] == "parameter", "p_in_observed_range"].isna().all()
    inside = _row(table, "literature", "baseline BMD").p_in_observed_range
    b = samples["literature"]["baseline"]
    assert inside == pytest.approx(np.mean((b >= base.min()) & (b <= base.max())))
    n_completers = len(pct)
    assert samples["vague"]["pct_change"].shape == (2000, n_completers)
    assert samples["vague"]["baseline"].shape == (2000, len(base))


@pytest.mark.parametrize("name", PRIOR_SET_NAMES)
def test_prior_draws_follow_the_swapped_in_set(predictive, name):
    """Prior quantiles of sigma and of the between-patient SDs are half-normal quantiles of the
    set's scales: the set really was swapped in (no stale prior)."""
    table, _ = predictive
    p = prior_set(name, "spine")
    for quantity, scale in (("residual SD (sigma)", p.sigma_scale),
                            ("between-patient SD, baseline", p.sd_intercept_scale),
                            ("between-patient SD, annual change", p.sd_slope_scale)):
        r = _row(table, name, quantity)
        expected = stats.halfnorm.ppf([0.25, 0.5, 0.75], scale=scale)
        np.testing.assert_allclose([r.q25, r.q50, r.q75], expected, rtol=0.12)


def test_prior_predictive_orders_the_sets_sensibly(predictive):
    table, _ = predictive

    def width(name, quantity, group="all"):
        r = _row(table, name, quantity, group)
        return r.q975 - r.q025

    base = {n: width(n, "baseline BMD") for n in PRIOR_SET_NAMES}
    assert base["literature"] < base["weakly_informative"] < base["vague"]
    lit = _row(table, "literature", "baseline BMD")
    assert 0.2 < lit.q025 < lit.observed_low and lit.observed_high < lit.q975 < 1.8
    # the literature set keeps individual 12-month changes within about +/-15%
    for g in ("responder", "non-responder"):
        r = _row(table, "literature", "12-month change, patient", g)
        assert -15 < r.q025 < r.observed_low and r.observed_high < r.q975 < 15
    vague = _row(table, "vague", "12-month change, patient", "responder")
    assert vague.q975 - vague.q025 > 500  # absurd by design
    sceptical = width("sceptical", "group difference (diff_pct_change_end)",
                      "responder - non-responder")
    assert sceptical < width("weakly_informative", "group difference (diff_pct_change_end)",
                             "responder - non-responder")


def test_prior_predictive_figure(predictive):
    _, samples = predictive
    fig = prior_predictive_figure(samples, label="SYNTHETIC")
    assert len(fig.axes) == 2
    assert len(fig.axes[1].get_yticklabels()) == 2 * len(PRIOR_SET_NAMES)
    assert figure_png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_prior_predictive_rejects_bad_input(frame):
    with pytest.raises(ValueError, match="unknown prior set"):
        prior_predictive(frame, sets=("weakly_informative", "flat"), draws=20)
    with pytest.raises(ValueError, match="site"):
        prior_predictive(frame, site="hip", draws=20)
    with pytest.raises(ValueError, match="draws"):
        prior_predictive(frame, draws=2)
    with pytest.raises(ValueError, match="at least one prior set"):
        prior_predictive(frame, sets=(), draws=20)


# ---------------------------------------------------------------------------------------------
# log densities
# ---------------------------------------------------------------------------------------------


def test_log_prior_is_the_closed_form_density(marginal_fit):
    tm, fit = marginal_fit
    dt, prior_vars, lik_vars = add_log_densities(fit.posterior, tm)
    assert "log_prior" not in fit.posterior.children  # input untouched
    assert prior_vars == ["beta_std", "tau_std", "corr_beta", "sigma_std"]
    assert lik_vars == ["y_marginal"]
    post, lp = dt["posterior"], dt["log_prior"]
    ps = tm.data_values["prior"]
    np.testing.assert_allclose(lp["beta_std"].values,
                               stats.norm.logpdf(post["beta_std"].values, 0.0, ps[:4]), rtol=1e-9)
    np.testing.assert_allclose(lp["tau_std"].values,
                               stats.halfnorm.logpdf(post["tau_std"].values, scale=ps[5:7]),
                               rtol=1e-9)
    eta = ps[TrajectoryPriors.FIELDS.index("lkj_eta")]
    np.testing.assert_allclose(lp["corr_beta"].values,
                               stats.beta.logpdf(post["corr_beta"].values, eta, eta), rtol=1e-9)
    np.testing.assert_allclose(lp["sigma_std"].values,
                               stats.halfnorm.logpdf(post["sigma_std"].values, scale=ps[7]),
                               rtol=1e-9)


def test_log_likelihood_is_the_marginal_normal_density(marginal_fit):
    """y_i ~ MVN(X_i beta, sigma^2 I + Z_i Sigma Z_i^T), summed over patients, at a few draws."""
    tm, fit = marginal_fit
    dt, _, _ = add_log_densities(fit.posterior, tm)
    ll = dt["log_likelihood"]["y_marginal"].values
    assert ll.shape == (2, 400)
    a = tm.data_values
    post = dt["posterior"]
    for c, d in ((0, 0), (1, 123), (0, 399)):
        beta = post["beta_std"].values[c, d]
        tau = post["tau_std"].values[c, d]
        rho = 2 * post["corr_beta"].values[c, d] - 1
        sig = post["sigma_std"].values[c, d]
        cov_u = np.array([[tau[0] ** 2, rho * tau[0] * tau[1]], [rho * tau[0] * tau[1], tau[1] ** 2]])
        total = 0.0
        for i, r in enumerate(a["group_x"][:, 0]):
            rows = a["patient_idx"] == i
            t = a["t"][rows]
            z = np.column_stack([np.ones_like(t), t])
            mean = (beta[0] + beta[2] * r) + (beta[1] + beta[3] * r) * t
            cov = sig**2 * np.eye(t.size) + z @ cov_u @ z.T
            total += stats.multivariate_normal.logpdf(a["y_std"][rows], mean, cov)
        assert ll[c, d] == pytest.approx(total, rel=1e-9)


def test_existing_log_likelihood_is_kept_and_stale_data_refused(frame, marginal_fit):
    tm, fit = marginal_fit
    dt, _, lik_vars = add_log_densities(fit.posterior, tm)
    existing = set(fit.posterior["log_likelihood"].data_vars) if "log_likelihood" in \
        fit.posterior.children else set()
    assert set(dt["log_likelihood"].data_vars) == existing | set(lik_vars)
    other = build_trajectory_model(frame[frame["patient_id"] != frame["patient_id"].iloc[0]], "spine")
    with pytest.raises(ValueError, match="differ from the fit"):
        add_log_densities(fit.posterior, other)
    with pytest.raises(ValueError, match="not in the posterior"):
        prior_sensitivity(fit, tm, var_names=["nope"])


def test_log_densities_compiled_once_follow_the_prior_set(frame, marginal_fit):
    """One LogDensities serves every prior set (priors are data): after set_data it must give what
    a fresh evaluation under that set gives, and the closed-form normal prior of beta."""
    tm, fit = marginal_fit
    dens = LogDensities(tm.pymc_model)
    first, _, _ = add_log_densities(fit.posterior, tm, dens)
    try:
        tm.set_data(priors=prior_set("sceptical", "spine"))
        ps = tm.data_values["prior"]
        # the same draws, recorded as if fitted under the sceptical set (the densities only read
        # the draws; the data check compares constant_data with the model's)
        dt = fit.posterior.copy()
        held = dt["constant_data"].to_dataset()
        dt["constant_data"] = held.assign(prior=(held["prior"].dims, np.asarray(ps, dtype=float)))
        reused, _, _ = add_log_densities(dt, tm, dens)
        fresh, _, _ = add_log_densities(dt, tm)
    finally:
        tm.set_data(priors=prior_set("weakly_informative", "spine"))
    for group in ("log_prior", "log_likelihood"):
        for v in fresh[group].data_vars:
            np.testing.assert_array_equal(reused[group][v].values, fresh[group][v].values)
    np.testing.assert_allclose(reused["log_prior"]["beta_std"].values,
                               stats.norm.logpdf(fit.posterior["posterior"]["beta_std"].values, 0.0, ps[:4]),
                               rtol=1e-9)
    assert not np.allclose(first["log_prior"]["beta_std"].values, reused["log_prior"]["beta_std"].values)
    with pytest.raises(ValueError, match="another model"):
        add_log_densities(fit.posterior, tm, LogDensities(build_trajectory_model(frame, "spine").pymc_model))


def test_prior_predictive_sampler_compiled_once_follows_the_prior_set(frame):
    """Draws under a set after switching from another equal those of a sampler built for that set
    (same seed), and they follow the set's priors."""
    from analysis.engine.prior_predictive import prior_predictive_sampler as _prior_predictive_sampler

    def model(name):
        return build_trajectory_model(frame, "spine", priors=prior_set(name, "spine"),
                                      parameterisation="noncentred")

    tm = model("weakly_informative")
    draw = _prior_predictive_sampler(tm.pymc_model, ("y", "sigma"))
    draw(30, np.random.default_rng([1, 0]))
    tm.set_data(priors=prior_set("vague", "spine"))
    switched = draw(400, np.random.default_rng([1, 1]))
    fresh = _prior_predictive_sampler(model("vague").pymc_model, ("y", "sigma"))(400, np.random.default_rng([1, 1]))
    np.testing.assert_array_equal(switched["y"], fresh["y"])
    np.testing.assert_array_equal(switched["sigma"], fresh["sigma"])
    again = draw(400, np.random.default_rng([1, 1]))
    np.testing.assert_array_equal(again["sigma"], fresh["sigma"])  # reseeded: no carried state


def test_sensitivity_of_a_latent_parameterisation_uses_top_level_priors(frame):
    tm = build_trajectory_model(frame, "spine", parameterisation="centred_intercept")
    fit = sample(tm, seed=2, draws=300, tune=300, chains=2, cores=2)
    dt, prior_vars, lik_vars = add_log_densities(fit.posterior, tm)
    assert "theta0_std" not in prior_vars and "z1_patient" not in prior_vars
    assert lik_vars == ["y"] and dt["log_likelihood"]["y"].shape == (2, 300, tm.prepared.n_obs)
    sens = prior_sensitivity(fit, tm)
    assert list(sens.columns) == ["prior", "likelihood", "diagnosis"]
    assert sens.loc[DIFF, "likelihood"] > 0.05  # the data inform it


# ---------------------------------------------------------------------------------------------
# all together
# ---------------------------------------------------------------------------------------------


def test_prior_checks_flags_the_sceptical_prior_not_the_vague_one(checks):
    assert isinstance(checks, PriorCheckResult)
    s = checks.sensitivity.set_index(["set", "variable"])
    labels = [DIFF, "pct_change_end[non-responder]", "pct_change_end[responder]"]
    assert set(s.index) == {(n, v) for n in ("sceptical", "vague") for v in labels}
    assert set(CONTRASTS) == {v.split("[")[0] for v in labels}
    # a vague prior has no influence; the sceptical one pulls the contrast towards 0
    assert (s.loc["vague", "prior"] < 0.01).all()
    assert s.loc[("sceptical", DIFF), "prior"] > 0.05
    assert s.loc[("sceptical", DIFF), "diagnosis"] != "✓"
    shrunk = s.loc[("sceptical", DIFF), "posterior_median"]
    free = s.loc[("vague", DIFF), "posterior_median"]
    assert 0 < shrunk < free
    for name, fit in checks.fits.items():
        assert {"log_prior", "log_likelihood"} <= set(fit.posterior.children), name


def test_prior_checks_text_and_figures(checks):
    assert "sceptical" in checks.text and "vague" in checks.text
    assert "flagged" in checks.text
    assert set(checks.figures) == {"prior_predictive", "posterior_by_set"}
    for fig in checks.figures.values():
        assert figure_png_bytes(fig)[:4] == b"\x89PNG"
    assert set(checks.table["set"]) == {"sceptical", "vague"}
