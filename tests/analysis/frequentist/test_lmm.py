"""Tests of analysis.frequentist.lmm against lme4/lmerTest/pbkrtest and against known truth."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from analysis.frequentist.reml import Inference
from analysis.frequentist.lmm import fit_lmm

FORMULA = "bmd ~ month * responder + age"
RTOL = 1e-4  # 4 significant figures
CASES = ["small_slope", "small_intercept", "medium_slope", "singular_slope", "hard_slope"]


def r_name(column: str) -> str:
    return "(Intercept)" if column == "Intercept" else re.sub(r"\[T\.([^\]]+)\]", r"\1", column)


def close(actual, expected, what: str, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol,
                               err_msg=what)


def close_p(actual, expected, what: str) -> None:
    """p-values to 4 significant figures; below 1e-10 to 1e-3 relative.

    A p-value of 1e-31 (t = 15.8) moves by 1.5e-4 relative when the df move by 6e-6, which is
    the precision of lmerTest's numerical derivatives and lme4's optimum on these data.
    """
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    tiny = expected < 1e-10
    close(actual[~tiny], expected[~tiny], what)
    close(actual[tiny], expected[tiny], what + " (p < 1e-10)", rtol=1e-3)


@pytest.fixture(scope="module")
def fits(reml_ref, bmd_data):
    out = {}
    for case in CASES:
        ref = reml_ref["lmm"][case]
        data = bmd_data(ref["data"])
        out[case] = {m: fit_lmm(data, FORMULA, random_slope=ref["slope"], df_method=m)
                     for m in ("satterthwaite", "kenward-roger")}
    return out


# ------------------------------------------------------------------------------------------------
# agreement with R
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_fixed_effects_match_lmertest(case, fits, reml_ref):
    ref = reml_ref["lmm"][case]
    fit = fits[case]["satterthwaite"]
    assert fit.converged
    assert fit.singular == ref["singular"]
    assert [r_name(c) for c in fit.fixed.term] == ref["satterthwaite"]["term"]
    for col in ("estimate", "se", "df", "t"):
        close(fit.fixed[col], ref["satterthwaite"][col], f"{case}: {col}")
    close_p(fit.fixed["p"], ref["satterthwaite"]["p"], f"{case}: p")


@pytest.mark.parametrize("case", CASES)
def test_kenward_roger_matches_pbkrtest(case, fits, reml_ref):
    ref = reml_ref["lmm"][case]["kenward_roger"]
    fit = fits[case]["kenward-roger"]
    for col in ("estimate", "se", "df", "t"):
        close(fit.fixed[col], ref[col], f"{case}: KR {col}")
    close_p(fit.fixed["p"], ref["p"], f"{case}: KR p")


@pytest.mark.parametrize("case", CASES)
def test_variance_components_and_loglik_match_lme4(case, fits, reml_ref):
    ref = reml_ref["lmm"][case]
    fit = fits[case]["satterthwaite"]
    assert fit.n_obs == ref["n_obs"] and fit.n_subjects == ref["n_subjects"]
    close(fit.loglik, ref["loglik"], "REML logLik", rtol=1e-7)
    close(fit.varcomp["variance"], ref["varcorr"]["vcov"], "variance components")
    close(fit.varcomp["sdcor"], ref["varcorr"]["sdcor"], "SDs and correlation")
    close(fit.theta, ref["theta"], "theta")
    close(fit.sigma, ref["sigma"], "sigma")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_contrasts_match_contest(case, method, fits, reml_ref):
    ref = reml_ref["lmm"][case]["contrasts"]
    r = ref[method.replace("-", "_")]
    tab = fits[case][method].contrast(ref["L"], names=ref["names"])
    assert list(tab.term) == ref["names"]
    for col, rcol in [("estimate", "Estimate"), ("se", "Std. Error"), ("df", "df"),
                      ("t", "t value"), ("p", "Pr(>|t|)"), ("ci_low", "lower"),
                      ("ci_high", "upper")]:
        close(tab[col], r[rcol], f"{case} {method}: contrast {col}")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_f_test_matches_contestmd(case, method, fits, reml_ref):
    ref = reml_ref["lmm"][case]["f_test"]
    r = ref[method.replace("-", "_")]
    res = fits[case][method].f_test(ref["L"])
    close([res["f"], res["den_df"], res["p"]], [r["F value"], r["DenDF"], r["Pr(>F)"]],
          f"{case} {method}: F test")
    assert res["num_df"] == r["NumDF"]


def test_contrast_accepts_names_and_dicts(fits):
    fit = fits["small_slope"]["satterthwaite"]
    by_vec = fit.contrast([0, 0, 1, 0, 12], names=["m12"])
    by_dict = fit.contrast({"m12": {"responder[T.yes]": 1, "month:responder[T.yes]": 12}})
    by_frame = fit.contrast(pd.DataFrame({"responder[T.yes]": [1.0],
                                          "month:responder[T.yes]": [12.0]}, index=["m12"]))
    for other in (by_dict, by_frame):
        pd.testing.assert_frame_equal(by_vec, other)
    with pytest.raises(ValueError, match="'nope' is not in the model"):
        fit.contrast({"x": {"nope": 1}})
    with pytest.raises(ValueError, match="3 columns but the model has 5"):
        fit.contrast([1, 0, 0])


# ------------------------------------------------------------------------------------------------
# convergence
# ------------------------------------------------------------------------------------------------
def test_converges_in_months_where_statsmodels_fails(bmd_data, reml_ref):
    """Time in months, BMD in g/cm^2: slopes ~1e-3, between-subject SD 0.14, residual SD 0.01.

    On this data statsmodels' ``MixedLM(..., re_formula="~month").fit(reml=True)`` (0.15)
    stops at REML log-likelihood 70.2 instead of 199.4 and gives an SE of 0.023 for
    ``month:responder`` instead of 0.000505. Here the fit must reach lme4's optimum with months,
    and agree with the fit in years after rescaling.
    """
    data = bmd_data("bmd_small.csv")
    fit_m = fit_lmm(data, FORMULA)
    ref = reml_ref["lmm"]["small_slope"]
    assert fit_m.converged and fit_m.diagnostics["newton_decrement"] < 1e-10
    assert fit_m.diagnostics["hessian_min_eig"] > 0
    close(fit_m.loglik, ref["loglik"], "logLik", rtol=1e-8)
    years = data.assign(year=data["month"] / 12.0)
    fit_y = fit_lmm(years, "bmd ~ year * responder + age", time="year")
    assert fit_y.converged
    scale = np.array([1, 12, 1, 1, 12])  # coefficients per year = 12 x per month
    close(fit_y.fixed["estimate"], fit_m.fixed["estimate"] * scale, "estimates", rtol=1e-7)
    close(fit_y.fixed["se"], fit_m.fixed["se"] * scale, "SEs", rtol=1e-7)
    close(fit_y.fixed["df"], fit_m.fixed["df"], "df", rtol=1e-6)
    close(fit_y.varcomp["sdcor"], fit_m.varcomp["sdcor"] * np.array([1, 12, 1, 1]), "SDs",
          rtol=1e-6)


def test_convergence_check_rejects_a_non_optimum(bmd_data):
    """The criterion behind ``converged`` (Newton decrement) fails away from the optimum."""
    fit = fit_lmm(bmd_data("bmd_small.csv"), FORMULA)
    inf = fit._inf
    assert inf.newton_decrement() < 1e-10
    moved = Inference.compute(fit._engine, fit._psi_of, inf.omega * np.array([1.05, 1, 0.9, 1]),
                              np.abs(inf.omega))
    assert moved.newton_decrement() > 1e-6


def test_singular_fit_is_flagged(fits):
    """No true slope variance: the fit ends on the boundary (correlation -1), as lme4's does.

    lme4's theta_3 = 0 is then a proper optimum in theta (the likelihood depends on theta_3^2),
    so the fit is ``converged`` and ``singular``; agreement with lmerTest there is tested above.
    """
    fit = fits["singular_slope"]["satterthwaite"]
    assert fit.singular and fit.converged
    assert fit.theta[2] == 0.0
    assert fit.varcomp.loc[2, "sdcor"] == pytest.approx(-1.0)
    assert any("singular" in m for m in fit.messages)


# ------------------------------------------------------------------------------------------------
# known truth
# ------------------------------------------------------------------------------------------------
def test_recovers_parameters_on_large_data(simulate):
    data = simulate(600, [0, 6, 12, 24], seed=2024, p_drop=0.05, slope_sd_year=0.012, corr=0.2)
    fit = fit_lmm(data, FORMULA)
    assert fit.converged
    truth = {"Intercept": 1.01, "month": -0.001, "responder[T.yes]": 0.01, "age": -0.002,
             "month:responder[T.yes]": 0.00133}
    z = (fit.fixed.set_index("term")["estimate"] - pd.Series(truth)) / fit.fixed.set_index(
        "term")["se"]
    assert np.all(np.abs(z) < 3.5), z
    sd = fit.varcomp["sdcor"].to_numpy()
    close(sd[0], 0.14, "intercept SD", rtol=0.1)
    close(sd[1], 0.012 / 12, "slope SD", rtol=0.2)
    close(sd[3], 0.01, "residual SD", rtol=0.05)


def test_confidence_interval_coverage(simulate):
    """95% CIs of month:responder cover the truth in 91-99% of 200 simulated 46-patient trials."""
    hits = []
    for seed in range(200):
        data = simulate(46, [0, 6, 12], seed=1000 + seed, p_drop=0.12)
        fit = fit_lmm(data, FORMULA)
        row = fit.fixed.set_index("term").loc["month:responder[T.yes]"]
        hits.append(row.ci_low <= 0.00133 <= row.ci_high)
    assert 0.91 <= np.mean(hits) <= 0.99, np.mean(hits)


# ------------------------------------------------------------------------------------------------
# input handling, output, speed
# ------------------------------------------------------------------------------------------------
def test_missing_rows_are_counted(bmd_data):
    data = bmd_data("bmd_small.csv")
    fit = fit_lmm(data, FORMULA)
    assert fit.n_excluded == 4 and fit.excluded_by == {"bmd": 1, "age": 3}
    assert fit.n_obs == len(data) - 4


@pytest.mark.parametrize("kwargs, message", [
    ({"formula": "bmd ~ month + weight"}, "column 'weight'"),
    ({"formula": "bmd ~ month", "subject": "id"}, "column 'id'"),
    ({"formula": "bmd ~ month", "time": "visit_date"}, "column 'visit_date'"),
    ({"formula": "bmd ~ month", "df_method": "wald"}, "df_method must be one of"),
    ({"formula": "bmd month"}, "has no '~'"),
])
def test_bad_input_errors(bmd_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_lmm(bmd_data("bmd_small.csv"), **kwargs)


def test_too_few_subjects_and_rank_deficiency(bmd_data):
    data = bmd_data("bmd_small.csv")
    few = data[data.patient_id.isin(["P002", "P003"])]
    with pytest.raises(ValueError, match="at least 3 subjects"):
        fit_lmm(few, FORMULA)
    dup = data.assign(month2=data["month"] * 2.0)
    with pytest.raises(ValueError, match="column 'month2' is a linear combination"):
        fit_lmm(dup, "bmd ~ month + month2")
    with pytest.raises(ValueError, match="must be numeric"):
        fit_lmm(data.assign(month=data["month"].astype(str)), "bmd ~ age")


def test_to_dict_is_json(fits):
    d = fits["small_slope"]["kenward-roger"].to_dict()
    text = json.dumps(d)
    back = json.loads(text)
    assert back["model"] == "lmm" and back["n_excluded"] == 4 and back["converged"] is True
    assert [r["term"] for r in back["fixed"]] == list(fits["small_slope"]["kenward-roger"].fixed.term)


def test_lsmeans_with_numeric_time(fits):
    fit = fits["small_slope"]["satterthwaite"]
    ls = fit.lsmeans("responder", by="month", at={"month": [0, 12]})
    assert list(zip(ls.month, ls.responder)) == [(0, "no"), (0, "yes"), (12, "no"), (12, "yes")]
    diff = fit.pairwise("responder", by="month", at={"month": [0, 12]}, reverse=True)
    direct = fit.contrast([[0, 0, 1, 0, 0], [0, 0, 1, 0, 12]])
    for col in ("estimate", "se", "df"):
        close(diff[col], direct[col], col, rtol=1e-10)
    with pytest.raises(ValueError, match="numeric variable 'month' in specs/by needs values"):
        fit.lsmeans("responder", by="month")
