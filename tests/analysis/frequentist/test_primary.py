"""The frequentist primary analysis: estimands from the LMM and MMRM, their % delta-method SEs,
recovery of known truth, and the strategy recorded."""

import numpy as np
import pandas as pd
import pytest

from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.study.estimands import difference_name, estimand_name
from analysis.frequentist.lmm import fit_lmm
from analysis.frequentist.primary import frequentist_analysis, lmm_estimands, model_frame
from models.simulate import Design, DropoutModel, simulate


@pytest.fixture(scope="module")
def twin_result():
    return frequentist_analysis(derive(load_twin().frame), strategy="last_observed")


def test_estimand_names_line_up_across_methods(twin_result):
    e = twin_result.estimands
    name = difference_name("spine", "pct")
    methods = set(e.loc[e["estimand"] == name, "method"])
    assert {"completers, t-test", "LMM (REML)", "MMRM (us, REML)"} <= methods
    name = estimand_name("spine", "non-responder", "pct")
    assert {"completers, t-test", "LMM (REML)", "MMRM (us, REML)"} <= set(e.loc[e["estimand"] == name, "method"])
    assert e[["estimate", "se", "df", "ci_low", "ci_high", "p"]].notna().all().all()
    assert "LOCF" in twin_result.strategy


def test_lmm_abs_estimands_are_the_fixed_effect_contrasts(twin_result):
    fit = twin_result.lmm["spine"]
    tab = lmm_estimands(fit, "spine").set_index("estimand")
    assert tab.loc[estimand_name("spine", "non-responder", "abs"), "estimate"] == pytest.approx(12 * fit.coef["month"])
    diff = tab.loc[difference_name("spine", "abs")]
    assert diff["estimate"] == pytest.approx(12 * fit.coef["month:responder"])
    assert diff["se"] == pytest.approx(12 * fit.fixed.set_index("term").loc["month:responder", "se"])
    assert diff["df"] == pytest.approx(fit.fixed.set_index("term").loc["month:responder", "df"])


def test_pct_delta_method_se_matches_simulation(twin_result):
    fit = twin_result.lmm["spine"]
    tab = lmm_estimands(fit, "spine").set_index("estimand")
    row = tab.loc[estimand_name("spine", "non-responder", "pct")]
    rng = np.random.default_rng(1)
    draws = rng.multivariate_normal(fit.coef.to_numpy(), fit.vcov.to_numpy(), size=40000)
    b = pd.DataFrame(draws, columns=fit.coef.index)
    pct = 100 * 12 * b["month"] / b["Intercept"]
    assert row["estimate"] == pytest.approx(100 * 12 * fit.coef["month"] / fit.coef["Intercept"])
    assert row["se"] == pytest.approx(pct.std(), rel=0.03)


def test_mmrm_difference_equals_difference_of_lsmeans(twin_result):
    e = twin_result.estimands
    m = e[e["method"] == "MMRM (us, REML)"].set_index("estimand")
    r = m.loc[estimand_name("spine", "responder", "pct"), "estimate"]
    nr = m.loc[estimand_name("spine", "non-responder", "pct"), "estimate"]
    assert m.loc[difference_name("spine", "pct"), "estimate"] == pytest.approx(r - nr)


def test_recovers_known_group_change_under_mcar():
    """Large study, MCAR dropout: the LMM and MMRM changes per measured group agree with the truth
    (the complete data's mean true % change of the patients in each group)."""
    mcar = DropoutModel(mechanism="mcar", visit_hazard=0.1, activity_log_odds=0.0)
    s = simulate(Design(n_patients=600, dropout=mcar), seed=31)
    derived = derive(s.data)
    res = frequentist_analysis(derived, sites=("spine",), strategy="last_observed")
    groups = model_frame(derived, "spine", "last_observed").drop_duplicates("patient_id").set_index("patient_id")
    truth = s.patients.set_index("patient_id")
    e = res.estimands.set_index(["estimand", "method"])
    for g, flag in (("responder", 1.0), ("non-responder", 0.0)):
        ids = groups.index[groups["responder"] == flag]
        true_pct = truth.loc[ids, "true_slope_pct_spine"].mean()  # annual % = change to month 12
        for method in ("LMM (REML)", "MMRM (us, REML)"):
            row = e.loc[(estimand_name("spine", g, "pct"), method)]
            assert abs(row["estimate"] - true_pct) < 3 * row["se"] + 0.05, (g, method, row["estimate"], true_pct)


def test_strategies_are_recorded_and_change_the_analysis_set():
    d = derive(load_twin().frame)
    ex = frequentist_analysis(d, sites=("spine",), strategy="exclude")
    un = frequentist_analysis(d, sites=("spine",), strategy="unknown")
    assert "excluded" in ex.strategy and "'unknown' group" in un.strategy
    assert ex.lmm["spine"].n_subjects == 26
    assert un.lmm["spine"].n_subjects == 46
    assert "month:unknown" in un.lmm["spine"].coef.index


def test_to_dict_is_json_serialisable(twin_result):
    import json

    from analysis.cli.common import json_default as _json_default

    json.dumps(twin_result.to_dict(), default=_json_default)


def test_mi_estimands_use_shared_names_and_are_reproducible():
    from analysis.frequentist.primary import mi_estimands

    d = derive(load_twin().frame)
    a = mi_estimands(d, sites=("spine",), m=20, seed=5)
    b = mi_estimands(d, sites=("spine",), m=20, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["estimand"]) == {estimand_name("spine", "responder", "pct"),
                                  estimand_name("spine", "non-responder", "pct"), difference_name("spine", "pct")}
    assert (a["method"] == "MI (m=20, Rubin), status imputed by rule").all() and (a["n"] == 46).all()
    ex = mi_estimands(d, sites=("spine",), m=20, seed=5, strategy="exclude")
    assert ex["method"].str.contains("status excluded").all()
    # exclusion drops the patients of undefined status: n says how many were analysed, and on the
    # twin (every undefined patient a non-completer) the note says MI repeats the completers analysis
    status = d.drop_duplicates("patient_id")["responder"]
    assert (ex["n"] == int(status.notna().sum())).all() and int(status.notna().sum()) < 46
    assert "repeats the completers analysis" in ex.attrs["note"]
    est = frequentist_analysis(d, sites=("spine",), strategy="exclude").estimands
    name = estimand_name("spine", "non-responder", "pct")
    cc = est[(est["estimand"] == name) & (est["method"] == "completers, t-test")].iloc[0]
    assert ex.loc[ex["estimand"] == name, "estimate"].iloc[0] == pytest.approx(cc["estimate"], rel=1e-9)


def test_heavy_dropout_lmm_is_fitted_with_a_note():
    """Most patients with a single scan: lme4 would stop (nobs <= random effects); rajak fits with
    the check off, as lme4's 'ignore', and says so."""
    design = Design(n_patients=300, dropout=DropoutModel(mechanism="mar", visit_hazard=0.35, activity_log_odds=1.0))
    d = derive(simulate(design, seed=4).data)
    frame = model_frame(d, "spine", "last_observed")
    with pytest.raises(ValueError, match="not identifiable"):
        fit_lmm(frame, "bmd ~ month * responder", time="month")
    res = frequentist_analysis(d, sites=("spine",), strategy="last_observed")
    assert any("check.nobs.vs.nRE" in n for n in res.notes)
    assert res.lmm["spine"].converged
