"""Tests of ``analysis/engine/sampling.py``: reproducibility, refitting through nutpie's ``with_data``,
the compile cache, the diagnostics verdict on good and bad fits, save/load and the PyMC
fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import models  # noqa: F401  (compile caches before pymc)
import pymc as pm
from analysis.engine import (
    Diagnostics,
    FitResult,
    clear_compile_cache,
    compile_model,
    diagnose,
    load_fit,
    sample,
)
from models.trajectory import build_trajectory_model
from tests.lmm_sim import LMMTruth, simulate_lmm

FAST = {"draws": 300, "tune": 300, "chains": 2, "cores": 2}


def _b(fit: FitResult) -> np.ndarray:
    return fit.posterior["posterior"]["b"].values


@pytest.fixture(scope="module")
def tm():
    return build_trajectory_model(simulate_lmm(46, seed=31), "spine")


@pytest.fixture(scope="module")
def fit(tm):
    return sample(tm, seed=7, **FAST)


def _normal_mean_model(n: int = 50, seed: int = 0) -> pm.Model:
    y = np.random.default_rng(seed).normal(1.0, 2.0, n)
    with pm.Model() as m:
        data = pm.Data("y_data", y)
        mu = pm.Normal("mu", 0.0, 10.0)
        sd = pm.HalfNormal("sd", 5.0)
        pm.Normal("y", mu, sd, observed=data)
    return m


# ---------------------------------------------------------------------------------------------
# reproducibility and refitting
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_draws(tm, fit):
    again = sample(tm, seed=7, **FAST)
    assert again.settings["compile_cache_hit"]
    np.testing.assert_array_equal(_b(fit), _b(again))
    np.testing.assert_array_equal(
        fit.posterior["posterior"]["u"].values, again.posterior["posterior"]["u"].values
    )
    other = sample(tm, seed=8, **FAST)
    assert not np.array_equal(_b(fit), _b(other))


def test_unset_seed_is_drawn_and_recorded(tm):
    first = sample(tm, seed=None, draws=50, tune=50, chains=1, cores=1)
    seed = first.settings["seed"]
    assert isinstance(seed, int)
    np.testing.assert_array_equal(
        _b(first), _b(sample(tm, seed=seed, draws=50, tune=50, chains=1, cores=1))
    )


def test_with_data_refits_the_new_data_set():
    low = LMMTruth(b1=-0.03, b3=0.0)
    high = LMMTruth(b1=0.015, b3=0.0)
    df_low = simulate_lmm(46, low, dropout=0.2, seed=41)
    df_high = simulate_lmm(60, high, dropout=0.2, seed=42)
    tm = build_trajectory_model(df_low, "spine")
    fit_low = sample(tm, seed=1, **FAST)
    tm.set_data(df_high)  # more patients and rows, same compiled (marginal) model
    fit_high = sample(tm, seed=1, **FAST)
    assert fit_high.settings["compile_cache_hit"]
    slope_low = fit_low.posterior["posterior"]["b"].sel(coef="time")
    slope_high = fit_high.posterior["posterior"]["b"].sel(coef="time")
    assert float(slope_high.mean() - slope_low.mean()) > 0.025
    for slope, truth in ((slope_low, low.b1), (slope_high, high.b1)):
        assert abs(float(slope.mean()) - truth) < 3.5 * float(slope.std())
    assert fit_high.posterior["posterior"].sizes["patient"] == 60
    # a fresh model object of the same structure gets the same draws as the refitted one:
    # the cache state never changes results
    fresh = sample(build_trajectory_model(df_high, "spine"), seed=1, **FAST)
    assert fresh.settings["compile_cache_hit"]
    np.testing.assert_array_equal(_b(fresh), _b(fit_high))


def test_latent_model_recompiles_only_for_a_new_patient_count():
    df30, df40 = simulate_lmm(30, seed=51), simulate_lmm(40, seed=52)
    tm = build_trajectory_model(df30, "spine", parameterisation="centred_intercept")
    sample(tm, seed=1, draws=50, tune=50, chains=1, cores=1)
    tm.set_data(simulate_lmm(30, seed=53))
    assert sample(tm, seed=1, draws=50, tune=50, chains=1, cores=1).settings["compile_cache_hit"]
    tm.set_data(df40)
    fit40 = sample(tm, seed=1, draws=50, tune=50, chains=1, cores=1)
    assert not fit40.settings["compile_cache_hit"]  # 40 patients: a longer parameter vector
    ids = list(fit40.posterior["posterior"]["u"].patient.values)
    assert ids == sorted(df40["patient_id"].unique())


def test_stale_or_unknown_data_is_refused(tm):
    class Wrapped:
        """The trajectory model with one extra, unknown data name."""

        def __getattr__(self, name):
            return getattr(tm, name)

        @property
        def data_values(self):
            return {**tm.data_values, "not_a_container": np.zeros(3)}

    with pytest.raises(KeyError, match="not_a_container"):
        sample(Wrapped(), seed=1, draws=20, tune=20, chains=1, cores=1)

    # data changed behind the wrapper's back: the compiled model would refit the old data
    y_old = tm.data_values["y_std"]
    tm.pymc_model.set_data("y_std", y_old + 1.0)
    try:
        with pytest.raises(RuntimeError, match="stale data for 'y_std'"):
            sample(tm, seed=1, draws=20, tune=20, chains=1, cores=1)
    finally:
        tm.pymc_model.set_data("y_std", y_old)


def test_cached_compile_matches_nutpie_compile():
    m = _normal_mean_model()
    fast, info = compile_model(m)
    assert info["compile_path"] == "rajak-cached-cfunc"
    clear_compile_cache()
    a = sample(m, seed=3, draws=200, tune=200, chains=2, cores=2)
    clear_compile_cache()
    b = sample(m, seed=3, draws=200, tune=200, chains=2, cores=2, fast_compile=False)
    assert (a.settings["compile_path"], b.settings["compile_path"]) == ("rajak-cached-cfunc", "nutpie")
    for name in ("mu", "sd"):
        np.testing.assert_array_equal(
            a.posterior["posterior"][name].values, b.posterior["posterior"][name].values
        )


# ---------------------------------------------------------------------------------------------
# diagnostics
# ---------------------------------------------------------------------------------------------


def test_good_fit_passes_and_ebfmi_matches_arviz():
    import arviz as az

    res = sample(_normal_mean_model(), seed=2, draws=1000, tune=500, chains=4, cores=2)
    d = res.diagnostics
    assert d.passed and d.failures == () and "PASS" in str(d)
    assert d.max_rhat <= 1.01 and d.min_ess_bulk >= 400 and d.n_divergences == 0
    assert (d.n_chains, d.n_draws) == (4, 1000)
    ref = az.bfmi(res.posterior)["energy"].values
    np.testing.assert_allclose(d.ebfmi, ref, rtol=1e-10)
    summary = res.summary()
    assert "eti95_lb" in summary.columns and "mu" in summary.index


def test_short_run_is_flagged(tm):
    bad = sample(tm, seed=1, draws=20, tune=20, chains=1, cores=1)
    d = bad.diagnostics
    assert not d.passed
    assert {"ess_bulk", "ess_tail"} <= set(d.failed_checks)
    assert "FAIL" in str(d) and d.n_chains == 1


def test_unidentifiable_model_is_flagged():
    with pm.Model() as ridge:  # only a + b is identified
        a = pm.Normal("a", 0.0, 100.0)
        b = pm.Normal("b", 0.0, 100.0)
        pm.Normal("y", a + b, 0.1, observed=np.array([1.0]))
    d = sample(ridge, seed=1, draws=300, tune=300, chains=2, cores=2).diagnostics
    assert not d.passed
    assert "ess_bulk" in d.failed_checks
    assert d.min_ess_bulk < 100


def test_divergences_are_counted_and_flagged():
    with pm.Model() as funnel:  # Neal's funnel, centred
        v = pm.Normal("v", 0.0, 3.0)
        pm.Normal("x", 0.0, pm.math.exp(v / 2), shape=9)
    # a loose step-size target and enough draws: the centred funnel diverges for every seed tried
    # (1-6: 5 to 153 divergences); with 2 x 300 draws some seeds gave none
    d = sample(funnel, seed=1, draws=1000, tune=300, chains=4, cores=2, target_accept=0.6).diagnostics
    assert d.n_divergences > 0
    assert "divergences" in d.failed_checks


def test_diagnose_respects_thresholds_and_nan(fit):
    from analysis.engine.sampling import Thresholds

    lenient = diagnose(fit.posterior, ["b"], Thresholds(ess_bulk_min=1, ess_tail_min=1, rhat_max=2))
    assert lenient.passed and lenient.var_names == ("b",)
    dt = fit.posterior.copy()
    post = dt["posterior"].to_dataset()
    post["const"] = post["sigma"] * 0.0 + 1.0  # constant: R-hat not computable
    dt["posterior"] = post
    d = diagnose(dt, ["const"], Thresholds(ess_bulk_min=0, ess_tail_min=0))
    assert "rhat" in d.failed_checks and np.isnan(d.max_rhat)


def test_vectorised_diagnostics_equal_arviz_public_api(fit, tm):
    """diagnose (one vectorised rank per statistic) == diagnose_public (arviz_stats.rhat/ess on the
    Dataset): every statistic, worst-element label and verdict, on a good fit, a short failing one
    and with constant (NaN) elements."""
    from analysis.engine.sampling import Thresholds, diagnose_public

    short = sample(tm, seed=3, draws=30, tune=30, chains=2, cores=2)
    for f in (fit, short):
        names = list(f.diagnostics.var_names)
        assert diagnose(f.posterior, names) == diagnose_public(f.posterior, names)
        assert diagnose(f.posterior) == diagnose_public(f.posterior)
    dt = fit.posterior.copy()
    post = dt["posterior"].to_dataset()
    post["const"] = post["sigma"] * 0.0 + 1.0
    dt["posterior"] = post
    th = Thresholds(ess_bulk_min=0, ess_tail_min=0)
    assert diagnose(dt, ["b", "const"], th) == diagnose_public(dt, ["b", "const"], th)


# ---------------------------------------------------------------------------------------------
# settings, save / load, samplers
# ---------------------------------------------------------------------------------------------


def test_settings_and_save_load_roundtrip(fit, tmp_path):
    s = fit.settings
    assert (s["sampler"], s["draws"], s["tune"], s["chains"], s["cores"], s["seed"]) == (
        "nutpie", 300, 300, 2, 2, 7
    )
    assert s["target_accept"] == 0.9 and s["model"]["parameterisation"] == "marginal"
    nutpie_settings = json.loads(fit.posterior["sample_stats"].attrs["inference_library_settings"])
    assert nutpie_settings["settings"]["adapt_options"]["step_size_settings"]["target_accept"] == 0.9
    assert fit.wall_time > 0 and set(fit.timings) == {"compile", "sample", "postprocess", "total"}

    path = fit.save(tmp_path / "fit.nc")
    loaded = load_fit(path)
    assert loaded.settings == json.loads(json.dumps(s))
    assert loaded.diagnostics == fit.diagnostics
    assert isinstance(loaded.diagnostics, Diagnostics)
    assert loaded.wall_time == pytest.approx(fit.wall_time)
    for group in ("posterior", "sample_stats", "observed_data", "constant_data"):
        assert group in loaded.posterior.children
    np.testing.assert_array_equal(loaded.posterior["posterior"]["b"].values, _b(fit))
    np.testing.assert_array_equal(
        loaded.posterior["posterior"]["u"].patient.values,
        fit.posterior["posterior"]["u"].patient.values,
    )
    plain = tmp_path / "plain.nc"
    xr.DataTree(dataset=fit.posterior["posterior"].to_dataset()).to_netcdf(plain, engine="h5netcdf")
    with pytest.raises(ValueError, match="not a rajak fit"):
        load_fit(plain)


def test_low_rank_option_reaches_nutpie(tm):
    res = sample(tm, seed=1, draws=100, tune=100, chains=2, low_rank=True)
    assert res.settings["low_rank"]
    nutpie_settings = json.loads(res.posterior["sample_stats"].attrs["inference_library_settings"])
    assert nutpie_settings["adaptation"] == "low_rank"


def test_pymc_fallback_sampler(tm, fit):
    # cores=1: PyMC runs chains > 1 core in forked processes, unsafe next to nutpie's threads
    res = sample(tm, seed=3, draws=300, tune=300, chains=2, cores=1, sampler="pymc")
    assert res.settings["sampler"] == "pymc"
    again = sample(tm, seed=3, draws=300, tune=300, chains=2, cores=1, sampler="pymc")
    np.testing.assert_array_equal(_b(res), _b(again))
    # same posterior as nutpie's, to Monte Carlo error
    a, b = _b(res).reshape(-1, 4), _b(fit).reshape(-1, 4)
    z = np.abs(a.mean(0) - b.mean(0)) / b.std(0)
    assert np.all(z < 0.5), z
    assert "u" in res.posterior["posterior"]  # postprocess ran


def test_bad_arguments_are_refused(tm):
    with pytest.raises(ValueError, match="sampler"):
        sample(tm, sampler="stan")
    with pytest.raises(ValueError, match="low_rank"):
        sample(tm, sampler="pymc", low_rank=True)
    with pytest.raises(TypeError, match="cannot fit"):
        sample(object())
