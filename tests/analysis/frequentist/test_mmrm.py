"""Tests of analysis.frequentist.mmrm against nlme/emmeans/lmerTest/pbkrtest and known truth.

The Satterthwaite references for gls fits come from fixtures/reml_reference.R (numerical
derivatives of an independently written REML likelihood, lmerTest's method); for compound
symmetry they are also checked against lmerTest/pbkrtest on the equivalent random-intercept
lmer fit.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from analysis.frequentist.mmrm import fit_mmrm

FORMULA = "bmd ~ month * responder + age"
RTOL = 1e-4
CASES = ["small_us", "small_cs", "small_ar1", "small_csh", "small_ar1h", "medium_us",
         "medium_ar1", "hard_us"]


def r_name(column: str) -> str:
    out = "(Intercept)" if column == "Intercept" else re.sub(r"\[T\.([^\]]+)\]", r"\1", column)
    return re.sub(r"\bmonth(\d)", r"visit\1", out)


def close(actual, expected, what: str, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol,
                               err_msg=what)


@pytest.fixture(scope="module")
def fits(reml_ref, bmd_data):
    out = {}
    for case in CASES:
        ref = reml_ref["mmrm"][case]
        data = bmd_data(ref["data"])
        out[case] = {"satterthwaite": fit_mmrm(data, FORMULA, covariance=ref["covariance"])}
        if "kenward_roger" in ref:
            out[case]["kenward-roger"] = fit_mmrm(data, FORMULA, covariance=ref["covariance"],
                                                  df_method="kenward-roger")
    return out


# ------------------------------------------------------------------------------------------------
# agreement with R
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_fit_matches_gls(case, fits, reml_ref):
    ref = reml_ref["mmrm"][case]
    fit = fits[case]["satterthwaite"]
    assert fit.converged
    assert fit.n_obs == ref["n_obs"]
    assert [r_name(c) for c in fit.fixed.term] == ref["coef"]["term"]
    close(fit.fixed["estimate"], ref["coef"]["estimate"], f"{case}: estimates")
    close(fit.fixed["se"], ref["coef"]["se"], f"{case}: SEs")
    close(fit.fixed["df"], ref["coef"]["df_satterthwaite"], f"{case}: Satterthwaite df")
    close(fit.loglik, ref["loglik"], f"{case}: REML logLik", rtol=1e-8)
    close(fit.loglik, ref["loglik_nlme"], f"{case}: nlme logLik", rtol=1e-8)
    close(fit.covariance.to_numpy(), ref["sigma"], f"{case}: Sigma")
    close(fit.omega, ref["omega"], f"{case}: covariance parameters")


@pytest.mark.parametrize("case", CASES)
def test_lsmeans_and_pairs_match_emmeans(case, fits, reml_ref):
    ref = reml_ref["mmrm"][case]
    fit = fits[case]["satterthwaite"]
    ls = fit.lsmeans("responder", by="month")
    assert list(ls.responder) == ref["lsmeans"]["responder"]
    assert [str(v) for v in ls.month] == ref["lsmeans"]["visit"]
    _, lmat = fit.reference_grid("responder", by="month")
    close(lmat, ref["lsmeans"]["L"], f"{case}: reference grid")
    close(ls["estimate"], ref["lsmeans"]["estimate"], f"{case}: lsmeans")
    close(ls["se"], ref["lsmeans"]["se"], f"{case}: lsmeans SE")
    close(ls["df"], ref["lsmeans"]["df_satterthwaite"], f"{case}: lsmeans df")
    pr = fit.pairwise("responder", by="month")
    assert list(pr.contrast) == ref["pairs"]["contrast"]
    close(pr["estimate"], ref["pairs"]["estimate"], f"{case}: pairs")
    close(pr["se"], ref["pairs"]["se"], f"{case}: pairs SE")
    close(pr["df"], ref["pairs"]["df_satterthwaite"], f"{case}: pairs df")


def test_month12_responder_difference(fits, reml_ref):
    """The headline contrast: responder minus non-responder at month 12."""
    ref = reml_ref["mmrm"]["small_us"]["pairs"]
    i = ref["visit"].index("12")
    fit = fits["small_us"]["satterthwaite"]
    row = fit.pairwise("responder", by="month", reverse=True).set_index("month").loc[12]
    assert row.contrast == "yes - no"
    close([row.estimate, row.se, row.df], [-ref["estimate"][i], ref["se"][i],
                                           ref["df_satterthwaite"][i]], "month-12 difference")
    assert row.ci_low < row.estimate < row.ci_high


@pytest.mark.parametrize("case", ["small_us", "small_cs", "medium_us", "hard_us"])
def test_kenward_roger_matches_pbkrtest(case, fits, reml_ref):
    ref = reml_ref["mmrm"][case]["kenward_roger"]
    fit = fits[case]["kenward-roger"]
    close(fit.fixed["se"], ref["coef"]["se"], f"{case}: KR SE")
    close(fit.fixed["df"], ref["coef"]["df"], f"{case}: KR df")
    vadj = np.asarray(ref["coef"]["vcov_adj"])
    np.testing.assert_allclose(fit.vcov.to_numpy(), vadj, rtol=RTOL,
                               atol=RTOL * np.abs(vadj).max(), err_msg=f"{case}: KR covariance")
    ls = fit.lsmeans("responder", by="month")
    close(ls["se"], ref["lsmeans"]["se"], f"{case}: KR lsmeans SE")
    close(ls["df"], ref["lsmeans"]["df"], f"{case}: KR lsmeans df")
    pr = fit.pairwise("responder", by="month")
    close(pr["se"], ref["pairs"]["se"], f"{case}: KR pairs SE")
    close(pr["df"], ref["pairs"]["df"], f"{case}: KR pairs df")


def test_compound_symmetry_matches_random_intercept_lmer(fits, reml_ref):
    """cs == lmer(... + (1 | id)): lmerTest Satterthwaite and pbkrtest KR, an independent route."""
    ref = reml_ref["mmrm"]["small_cs"]["lmer_equivalent"]
    sat, kr = fits["small_cs"]["satterthwaite"], fits["small_cs"]["kenward-roger"]
    close(sat.loglik, ref["loglik"], "logLik", rtol=1e-8)
    for col in ("estimate", "se", "df", "p"):
        close(sat.fixed[col], ref["satterthwaite"][col], f"Satterthwaite {col}")
        close(kr.fixed[col], ref["kenward_roger"][col], f"Kenward-Roger {col}")
    for fit, key in ((sat, "lsmeans_satterthwaite"), (kr, "lsmeans_kenward_roger")):
        ls = fit.lsmeans("responder", by="month")
        for col in ("estimate", "se", "df"):
            close(ls[col], ref[key][col], f"{key} {col}")


def test_observed_information_kenward_roger_runs_close_to_expected(bmd_data):
    data = bmd_data("bmd_small.csv")
    exp = fit_mmrm(data, FORMULA, df_method="kenward-roger")
    obs = fit_mmrm(data, FORMULA, df_method="kenward-roger", kr_information="observed")
    close(obs.fixed["df"], exp.fixed["df"], "KR df, observed vs expected W", rtol=0.05)
    assert not np.allclose(obs.fixed["df"], exp.fixed["df"], rtol=1e-8)


# ------------------------------------------------------------------------------------------------
# marginal-mean weighting
# ------------------------------------------------------------------------------------------------
def test_lsmeans_weights(fits):
    fit = fits["small_us"]["satterthwaite"]
    cells = fit.lsmeans(["month", "responder"]).set_index(["month", "responder"])["estimate"]
    eq = fit.lsmeans("month").set_index("month")["estimate"]
    prop = fit.lsmeans("month", weights="proportional").set_index("month")["estimate"]
    freq = fit._design.data["responder"].value_counts(normalize=True)
    for v in fit.visits:
        close(eq[v], cells[v].mean(), f"equal weights at {v}", rtol=1e-12)
        close(prop[v], (cells[v] * freq.reindex(cells[v].index)).sum(), f"prop. at {v}",
              rtol=1e-12)
    at50 = fit.lsmeans("responder", by="month", at={"age": 50.0})
    base = fit.lsmeans("responder", by="month")
    shift = fit.coef["age"] * (50.0 - fit._design.data["age"].mean())
    close(at50["estimate"], base["estimate"] + shift, "at age 50", rtol=1e-12)
    with pytest.raises(ValueError, match="'sex' is not in the model"):
        fit.lsmeans("sex")
    with pytest.raises(ValueError, match="weights must be"):
        fit.lsmeans("month", weights="cells")


# ------------------------------------------------------------------------------------------------
# known truth
# ------------------------------------------------------------------------------------------------
def _true_sigma(months, slope_sd_year, corr):
    su = slope_sd_year / 12.0
    t = np.array([[1.0, m] for m in months])
    tcov = np.array([[0.14**2, corr * 0.14 * su], [corr * 0.14 * su, su**2]])
    return t @ tcov @ t.T + 0.01**2 * np.eye(len(months))


def test_recovers_parameters_on_large_data(simulate):
    months = [0, 6, 12, 24]
    data = simulate(600, months, seed=99, p_drop=0.05, slope_sd_year=0.012, corr=0.2)
    fit = fit_mmrm(data, "bmd ~ month * responder + age")
    assert fit.converged
    ls = fit.pairwise("responder", by="month", reverse=True).set_index("month")
    truth = pd.Series({m: 0.01 + 0.00133 * m for m in months})
    z = (ls["estimate"] - truth) / ls["se"]
    assert np.all(np.abs(z) < 3.5), z
    age = fit.fixed.set_index("term").loc["age"]
    assert abs(age.estimate + 0.002) < 3.5 * age.se
    close(fit.covariance.to_numpy(), _true_sigma(months, 0.012, 0.2), "Sigma", rtol=0.15)


def test_confidence_interval_coverage(simulate):
    """95% CIs of the month-12 difference cover the truth in 91-99% of 200 simulated trials."""
    truth = 0.01 + 0.00133 * 12
    hits = []
    for seed in range(200):
        data = simulate(46, [0, 6, 12], seed=5000 + seed, p_drop=0.12)
        fit = fit_mmrm(data, FORMULA)
        row = fit.pairwise("responder", by="month", reverse=True).set_index("month").loc[12]
        hits.append(row.ci_low <= truth <= row.ci_high)
    assert 0.91 <= np.mean(hits) <= 0.99, np.mean(hits)


# ------------------------------------------------------------------------------------------------
# input handling, output, speed
# ------------------------------------------------------------------------------------------------
def test_bad_input_errors(bmd_data):
    data = bmd_data("bmd_small.csv")
    with pytest.raises(ValueError, match="covariance must be one of"):
        fit_mmrm(data, FORMULA, covariance="toeplitz")
    with pytest.raises(ValueError, match="column 'sex'"):
        fit_mmrm(data, "bmd ~ month + sex")
    dup = pd.concat([data, data.iloc[[1]]])
    with pytest.raises(ValueError, match="subject 'P002' has more than one row at month 0"):
        fit_mmrm(dup, FORMULA)
    with pytest.raises(ValueError, match="at least 3 subjects"):
        fit_mmrm(data[data.patient_id.isin(["P002", "P003"])], FORMULA)
    with pytest.raises(ValueError, match="kr_information"):
        fit_mmrm(data, FORMULA, kr_information="both")


def test_counts_and_to_dict(fits):
    fit = fits["small_us"]["satterthwaite"]
    assert (fit.n_excluded, fit.excluded_by, fit.n_subjects) == (4, {"bmd": 1, "age": 3}, 45)
    back = json.loads(json.dumps(fit.to_dict()))
    assert back["model"] == "mmrm" and back["covariance_structure"] == "us"
    assert back["visits"] == ["0", "6", "12"]
    assert np.allclose(back["covariance"], fit.covariance.to_numpy())
    assert set(back["omega"]) == set(fit.omega_names)


def test_visit_order_from_categorical(bmd_data):
    """String visits sort wrongly ("M12" < "M6"); a Categorical fixes the order, as in R."""
    data = bmd_data("bmd_small.csv")
    labels = data["month"].map({0: "M0", 6: "M6", 12: "M12"})
    ordered = data.assign(month=pd.Categorical(labels, categories=["M0", "M6", "M12"]))
    ref = fit_mmrm(data, FORMULA, covariance="ar1")
    fit = fit_mmrm(ordered, FORMULA, covariance="ar1")
    assert fit.visits == ["M0", "M6", "M12"]
    close(fit.loglik, ref.loglik, "same model", rtol=1e-10)
    lexical = fit_mmrm(data.assign(month=labels), FORMULA, covariance="ar1")
    assert lexical.visits == ["M0", "M12", "M6"]
    assert abs(lexical.loglik - ref.loglik) > 1e-3
