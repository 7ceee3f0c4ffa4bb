"""Tests of the user-formula path (``analysis/bayes/formula.py``, ``analysis.bayes.fit.fit_formula``
and ``analysis/engine/bambi_results.py``): a bambi model built from a formula, sampled by the
engine, summarised like every fit, against known truth.

Data come from ``tests/lmm_sim.py`` (known parameters, time in years there, in months in the
formulas). Fits are short (2 chains x 200 draws): they check recovery within a few posterior SDs,
not convergence (the diagnostics verdict of such short fits may well be FAIL).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import models  # noqa: F401  (compile caches before pymc)
from analysis.bayes.estimands import bayes_table
from analysis.bayes.fit import BayesFit, fit_formula
from analysis.bayes.formula import DEFAULT_FORMULA, BambiLMM, FormulaError, bambi_lmm, check_formula
from analysis.bayes.posterior import EstimandDraws
from tests.lmm_sim import LMMTruth, simulate_lmm

FAST = {"draws": 200, "tune": 200, "chains": 2}
#: Patient effects weak relative to the residual, so that bambi's parameterisation mixes at 2 x 200.
TRUTH = LMMTruth(sd_u0=0.03, sd_u1=0.006, sigma=0.015)
#: The same in months, by bambi's coefficient names.
COEFS = {"Intercept": TRUTH.b0, "month": TRUTH.b1 / 12, "responder": TRUTH.b2, "month:responder": TRUTH.b3 / 12}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulate_lmm(80, TRUTH, dropout=0.2, seed=21)


@pytest.fixture(scope="module")
def formula_fit(frame) -> BayesFit:
    return fit_formula(frame, DEFAULT_FORMULA, site="spine", seed=4, **FAST)


# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------


def test_bambi_lmm_builds_a_model_the_engine_can_sample(frame):
    bm = bambi_lmm(frame)
    assert isinstance(bm, BambiLMM)
    assert bm.pymc_model is bm.bambi_model.backend.model
    assert "mu" not in bm.trace_vars  # per-row likelihood parameter not stored
    assert bm.describe()["formula"] == DEFAULT_FORMULA and bm.describe()["model"] == "formula"
    assert len(bm.data) == frame["bmd_spine"].notna().sum()  # rows without a BMD are dropped
    # any formula over the data's columns is accepted
    bm2 = bambi_lmm(frame, "bmd ~ month + age + C(sex) + (1 | patient_id)")
    assert "age" in bm2.pymc_model.named_vars


def test_site_selects_its_bmd_column(frame):
    df = frame.assign(bmd_total_hip=frame["bmd_spine"] - 0.1)
    bm = bambi_lmm(df, site="total_hip")  # any site with a bmd_<site> column
    np.testing.assert_allclose(bm.data["bmd"], df["bmd_spine"].dropna() - 0.1)
    with pytest.raises(ValueError, match="no BMD column 'bmd_wrist'.*total_hip"):
        bambi_lmm(df, site="wrist")


@pytest.mark.parametrize("formula, message", [
    ("bmd ~ month * arm + (1 + month | patient_id)", "'arm', not a column of the data"),
    ("bmd ~ month + (1 | clinic)", "'clinic', not a column"),
    ("bmd ~ month +", "cannot parse formula"),
    ("bmd month", "has no '~'"),
    ("bmd ~ month + (1 | patient_id) + (month | )", "cannot parse formula"),
])
def test_bad_formula_is_a_one_line_value_error(frame, formula, message):
    with pytest.raises(ValueError, match=message) as info:
        bambi_lmm(frame, formula)
    assert isinstance(info.value, FormulaError)
    assert len(str(info.value).splitlines()) == 1


def test_formula_bambi_rejects_is_a_one_line_value_error(frame):
    with pytest.raises(FormulaError, match="bambi cannot fit formula") as info:
        bambi_lmm(frame, "bmd ~ month", family="no_such_family")
    assert len(str(info.value).splitlines()) == 1


def test_missing_covariate_is_named(frame):
    df = frame.copy()
    df.loc[df.index[df["bmd_spine"].notna()][:3], "age"] = np.nan
    with pytest.raises(FormulaError, match="column 'age' .* missing in 3 of"):
        bambi_lmm(df, "bmd ~ month + age + (1 | patient_id)")
    kept = df.dropna(subset=["bmd_spine"])
    assert check_formula("bmd_spine ~ month * responder", kept) == ["bmd_spine", "month", "responder"]


def test_postprocess_drops_offsets_and_uncentres_the_intercept_exactly(frame):
    """The engine's clean-up of a posterior we write by hand: intercept = centred - mean(X) . beta."""
    bm = bambi_lmm(frame)
    rng = np.random.default_rng(0)
    n_pat = bm.data["patient_id"].nunique()
    coefs = {k: rng.normal(size=(1, 5)) for k in ("month", "responder", "month:responder")}
    centred = rng.normal(size=(1, 5))
    post = xr.Dataset(
        {"Intercept": (("chain", "draw"), centred),
         **{k: (("chain", "draw"), v) for k, v in coefs.items()},
         "sigma": (("chain", "draw"), np.ones((1, 5))),
         "1|patient_id_offset": (("chain", "draw", "patient_id__factor_dim"), rng.normal(size=(1, 5, n_pat)))},
        coords={"chain": [0], "draw": np.arange(5)})
    dt = bm.postprocess(xr.DataTree.from_dict({"posterior": post}))
    out = dt["posterior"].to_dataset()
    assert "1|patient_id_offset" not in out.data_vars
    month = bm.data["month"].to_numpy(float)
    resp = bm.data["responder"].to_numpy(float)
    shift = (month.mean() * coefs["month"] + resp.mean() * coefs["responder"]
             + (month * resp).mean() * coefs["month:responder"])
    np.testing.assert_allclose(out["Intercept"].values, centred - shift, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# fitting and summarising
# ---------------------------------------------------------------------------------------------


def test_fit_formula_recovers_the_fixed_effects(formula_fit):
    by_name = {e.estimand: e.draws for e in formula_fit.estimands}
    assert list(by_name) == list(COEFS)
    for name, truth in COEFS.items():
        d = by_name[name]
        z = (np.median(d) - truth) / d.std()
        assert abs(z) < 4, (name, np.median(d), d.std(), truth)


def test_intercept_is_on_the_uncentred_scale():
    """With age in the formula, bambi's centred intercept is the mean at mean age (~0.91); the
    reported one is at age 0: b0 - 56 * gamma_age = 0.91 + 0.168."""
    truth = LMMTruth(sd_u0=0.03, sd_u1=0.006, sigma=0.015, gamma={"age": -0.003})
    df = simulate_lmm(80, truth, dropout=0.2, seed=22)
    bf = fit_formula(df, "bmd ~ month * responder + age + (1 + month | patient_id)", seed=5, **FAST)
    d = {e.estimand: e.draws for e in bf.estimands}
    assert list(d) == ["Intercept", "month", "responder", "month:responder", "age"]
    uncentred = truth.b0 - 56.0 * truth.gamma["age"]
    assert abs(np.median(d["Intercept"]) - uncentred) < 4 * d["Intercept"].std()
    assert abs(np.median(d["Intercept"]) - truth.b0) > 6 * d["Intercept"].std()
    assert abs(np.median(d["age"]) - truth.gamma["age"]) < 4 * d["age"].std()


def test_fit_formula_is_summarised_like_every_fit(formula_fit):
    bf = formula_fit
    assert isinstance(bf, BayesFit) and bf.model == "formula" and bf.site == "spine"
    reference = bayes_table([EstimandDraws("x", "spine", "lmm", np.arange(10.0), rope=2.4)])
    assert list(bf.table.columns) == list(reference.columns)
    assert list(bf.table["estimand"]) == list(COEFS)
    assert (bf.table["model"] == "formula").all() and (bf.table["n_draws"] == 400).all()
    # no natural ROPE or prior scale for an arbitrary coefficient
    assert bf.table[["rope", "p_in_rope"]].isna().all().all() and bf.table["bf10"].isna().all()
    # draws returned, the fit's verdict on every row
    assert all(isinstance(e, EstimandDraws) and e.draws.shape == (400,) for e in bf.estimands)
    verdict = "pass" if bf.fit.passed else "FAIL: " + "; ".join(bf.fit.diagnostics.failures)
    assert (bf.table["diagnostics"] == verdict).all()
    diag = bf.fit.diagnostics
    assert np.isfinite(diag.max_rhat) and diag.n_chains == 2 and diag.n_draws == 200
    assert {"Intercept", "1|patient_id"} <= set(diag.var_names)  # judged like every fit: all variables
    # the formula is recorded; the posterior as bambi.Model.fit would return it
    assert bf.extra["formula"] == DEFAULT_FORMULA
    assert bf.fit.settings["model"]["formula"] == DEFAULT_FORMULA
    assert bf.fit.settings["sampler"] == "nutpie"
    post = bf.fit.posterior["posterior"]
    assert {"Intercept", "month", "responder", "month:responder", "sigma"} <= set(post.data_vars)
    assert not [v for v in post.data_vars if v.endswith("_offset")]
    # the JSON form of every fit
    out = json.loads(json.dumps(bf.to_dict(), default=str))
    assert {"model", "site", "diagnostics", "settings", "estimands"} <= set(out)
    assert [r["estimand"] for r in out["estimands"]] == list(COEFS)


def test_categorical_term_gives_one_estimand_per_level(frame):
    df = frame.assign(arm=frame["patient_id"].map(lambda p: "ABC"[int(p[1:]) % 3]))
    bf = fit_formula(df, "bmd ~ month * arm + (1 | patient_id)", seed=1, **FAST)
    assert list(bf.table["estimand"]) == ["Intercept", "month", "arm[B]", "arm[C]", "month:arm[B]", "month:arm[C]"]
    post = bf.fit.posterior["posterior"]
    arm_b = next(e for e in bf.estimands if e.estimand == "arm[B]")
    np.testing.assert_array_equal(arm_b.draws, post["arm"].sel(arm_dim="B").values.reshape(-1))
