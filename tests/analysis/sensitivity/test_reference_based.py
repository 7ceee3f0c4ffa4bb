"""Reference-based MI: hand-computed conditional means, the order of the strategies, the MMRM engine,
the analysis of the completed data, and the SensitivityResult on the twin."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis.frequentist.imputation import standard_analyses
from analysis.sensitivity import imputation_draws
from analysis.sensitivity.imputation_strategies import missingness_patterns
from analysis.sensitivity.mi_reporting import per_imputation_estimates
from analysis.sensitivity.reference_based import (
    STRATEGIES,
    endpoint_analysis,
    impute_missing,
    impute_reference_based,
    reference_based_analysis,
    site_data,
    strategy_means,
)
from analysis.sensitivity.result import FOREST_COLUMNS
from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.study.estimands import difference_name, estimand_name
from tests.analysis.sensitivity._mvn_study import mvn_study

NAN = np.nan


@pytest.fixture(scope="module")
def twin():
    return derive(load_twin().frame)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------ hand-computed examples, 2 visits
# A responder seen at visit 1 (y1 = 0.3), missing at visit 2. Own (responder) means a = (-0.2, -0.4),
# reference (non-responder) means c = (-1, -2), Sigma = [[4, 2], [2, 9]]: b = Sigma21/Sigma11 = 0.5,
# D = a1 - c1 = 0.8. Conditional mean mu2 + b (y1 - mu1) with mu from each strategy:
#   MAR : -0.4 + 0.5 (0.3 + 0.2)                    = -0.15
#   J2R : mu = (a1, c2):   -2 + 0.5 (0.3 + 0.2)     = -1.75
#   CR  : mu = (c1, c2):   -2 + 0.5 (0.3 + 1.0)     = -1.35
#   CIR : mu2 = a1 + c2 - c1 = -1.2: -1.2 + 0.25    = -0.95
#   LMCF: mu2 = a1 = -0.2:  -0.2 + 0.25             =  0.05
HAND_2 = {"MAR": -0.15, "J2R": -1.75, "CR": -1.35, "CIR": -0.95, "LMCF": 0.05}
OWN_2, REF_2 = np.array([[-0.2, -0.4]]), np.array([[-1.0, -2.0]])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_visit_conditional_means_by_hand(strategy):
    out = impute_missing(np.array([[0.3, NAN]]), OWN_2, REF_2, np.array([[4.0, 2.0], [2.0, 9.0]]), strategy)
    assert out[0, 0] == 0.3  # observed value untouched
    assert out[0, 1] == pytest.approx(HAND_2[strategy], abs=1e-12)


def test_order_of_strategies_for_a_declining_reference():
    """With 0 < b < 1 and D > 0: J2R < CR < CIR < MAR (< LMCF as the responders decline), with
    CR - J2R = b D and CIR - CR = (1 - b) D; for b > 1 CIR falls below CR."""
    v = HAND_2
    assert v["J2R"] < v["CR"] < v["CIR"] < v["MAR"] < v["LMCF"]
    b, d = 0.5, 0.8
    assert v["CR"] - v["J2R"] == pytest.approx(b * d)
    assert v["CIR"] - v["CR"] == pytest.approx((1 - b) * d)
    # b = 1.5 (Sigma = [[1, 1.5], [1.5, 4]]): CIR - CR = (1 - 1.5) 0.8 = -0.4
    sig = np.array([[1.0, 1.5], [1.5, 4.0]])
    w = {s: impute_missing(np.array([[0.3, NAN]]), OWN_2, REF_2, sig, s)[0, 1] for s in STRATEGIES}
    assert w["J2R"] == pytest.approx(-1.25) and w["CIR"] == pytest.approx(-0.45) and w["CR"] == pytest.approx(-0.05)
    assert w["J2R"] < w["CIR"] < w["CR"]


def test_baseline_only_dropout():
    """Nothing observed after baseline: a_0 = c_0 = 0, so J2R = CR = CIR = the reference means and
    LMCF carries a mean change of 0."""
    mu = {s: strategy_means(OWN_2, REF_2, np.array([-1]), s)[0] for s in STRATEGIES}
    for s in ("J2R", "CR", "CIR"):
        np.testing.assert_array_equal(mu[s], REF_2[0])
    np.testing.assert_array_equal(mu["LMCF"], [0.0, 0.0])
    np.testing.assert_array_equal(mu["MAR"], OWN_2[0])


# ------------------------------------------------------------------ 3 visits, intermittent gap
SIG_3 = np.array([[4.0, 2.0, 1.0], [2.0, 5.0, 3.0], [1.0, 3.0, 6.0]])
OWN_3, REF_3 = np.array([[-0.5, -1.0, -1.5]]), np.array([[-1.0, -2.0, -3.0]])


def test_three_visits_with_intermittent_gap_by_hand():
    """Missing at visits 1 and 3, observed y2 = -0.4 (last observed visit 2). Both missing values
    are conditioned on y2 alone: y_k = mu_k + Sigma_k2/Sigma_22 (y2 - mu2), Sigma_12/Sigma_22 = 0.4,
    Sigma_32/Sigma_22 = 0.6; visit 1 keeps the own mean (before dropout) except under CR."""
    y = np.array([[NAN, -0.4, NAN]])
    expected = {  # (y1, y3)
        "MAR": (-0.5 + 0.4 * 0.6, -1.5 + 0.6 * 0.6),
        "J2R": (-0.5 + 0.4 * 0.6, -3.0 + 0.6 * 0.6),   # mu = (a1, a2, c3)
        "CR": (-1.0 + 0.4 * 1.6, -3.0 + 0.6 * 1.6),    # mu = c, residual y2 - c2 = 1.6
        "CIR": (-0.5 + 0.4 * 0.6, -2.0 + 0.6 * 0.6),   # mu3 = a2 + c3 - c2 = -2
        "LMCF": (-0.5 + 0.4 * 0.6, -1.0 + 0.6 * 0.6),  # mu3 = a2
    }
    for s, (y1, y3) in expected.items():
        out = impute_missing(y, OWN_3, REF_3, SIG_3, s)
        assert out[0, 1] == -0.4
        assert out[0, [0, 2]] == pytest.approx([y1, y3], abs=1e-12), s


def test_three_visits_two_observed_mean_and_variance_by_hand():
    """Observed (0.1, -0.4), missing visit 3, MAR. Sigma_OO^-1 = [[5, -2], [-2, 4]]/16, so
    A = Sigma_3O Sigma_OO^-1 = (-1, 10)/16; residuals (0.6, 0.6) give y3 = -1.5 + 0.3375; the
    conditional variance is 6 - A Sigma_O3 = 6 - (-1 + 30)/16 = 4.1875; a deviate z adds
    sqrt(4.1875) z."""
    y = np.array([[0.1, -0.4, NAN], [0.1, -0.4, NAN]])
    own = np.repeat(OWN_3, 2, axis=0)
    z = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 1.0]])  # deviates at observed cells are ignored
    out = impute_missing(y, own, own, SIG_3, "MAR", z)
    assert out[0, 2] == pytest.approx(-1.1625, abs=1e-12)
    assert out[1, 2] == pytest.approx(-1.1625 + np.sqrt(4.1875), abs=1e-12)
    np.testing.assert_array_equal(out[:, :2], y[:, :2])


def test_conditional_draws_have_the_conditional_covariance():
    rng = np.random.default_rng(4)
    n = 40000
    y = np.tile([[NAN, -0.4, NAN]], (n, 1))
    own = np.tile(OWN_3, (n, 1))
    out = impute_missing(y, own, own, SIG_3, "MAR", rng.standard_normal((n, 3)))
    s_mo = SIG_3[np.ix_([0, 2], [1])]
    cond = SIG_3[np.ix_([0, 2], [0, 2])] - s_mo @ s_mo.T / SIG_3[1, 1]
    np.testing.assert_allclose(np.cov(out[:, [0, 2]].T), cond, rtol=0.03, atol=0.03)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="strategy must be one of"):
        strategy_means(OWN_2, REF_2, np.array([0]), "J2X")
    with pytest.raises(ValueError, match="sigma must be"):
        impute_missing(np.array([[0.3, NAN]]), OWN_2, REF_2, np.eye(3))
    with pytest.raises(ValueError, match="last must be"):
        strategy_means(OWN_2, REF_2, np.array([2]), "MAR")


# ------------------------------------------------------------------ the engine on simulated data
@pytest.fixture(scope="module")
def study():
    frame, truth, info = mvn_study(250, seed=7)
    return frame, truth, info


@pytest.mark.parametrize("covariates", [(), ("age",)])
def test_engine_gls_reproduces_the_reml_fit(study, covariates):
    """The cell-means GLS at the REML covariance gives the REML LS-means of mmrm's parametrisation
    (change ~ baseline + visit * group [+ age]) at the covariate means over the observations."""
    frame, _, _ = study
    ages = pd.Series(np.random.default_rng(1).normal(55, 10, frame["patient_id"].nunique()),
                     index=frame["patient_id"].unique())
    frame = frame.assign(age=frame["patient_id"].map(ages))
    d = site_data(frame, "spine", covariates=covariates)
    fit = imputation_draws._fit(d)
    sigma = imputation_draws._sigma_of_omega(fit.omega, 2)
    beta, _ = imputation_draws._gls(d.design(), d.y, missingness_patterns(d.observed), sigma)
    assert beta.size == 5 + len(covariates)
    ls = fit.lsmeans(["group_1"], by=["month"], at={"group_1": [0.0, 1.0]})
    per_obs = np.column_stack([d.baseline, d.covariates])
    means = np.array([np.broadcast_to(c[:, None], d.y.shape)[d.observed].mean() for c in per_obs.T])
    for _, r in ls.iterrows():
        cell = int(r["group_1"]) * 2 + list(d.months).index(float(r["month"]))
        assert beta[cell] + beta[4:] @ means == pytest.approx(r["estimate"], abs=1e-6)


def test_keeping_the_endpoint_only_keeps_the_same_numbers(study):
    """``keep_month``: the completed values of one visit, m x n per strategy instead of m x n x visits
    (an analysis of the endpoint needs no other; 0.6 GB at 50,000 patients; issue #18), equal to
    that visit of the whole imputation."""
    frame, _, _ = study
    whole = impute_reference_based(frame, "spine", ("MAR", "J2R"), m=6, seed=3)
    kept = impute_reference_based(frame, "spine", ("MAR", "J2R"), m=6, seed=3, keep_month=12.0)
    n = whole.data.y.shape[0]
    assert kept.values["MAR"].shape == (6, n, 1) and kept.kept_month == 12.0
    for s in ("MAR", "J2R"):
        np.testing.assert_array_equal(kept.at_visit(s), whole.at_visit(s, 12.0))
        np.testing.assert_array_equal(kept.endpoint_pct(s, 12.0), whole.endpoint_pct(s, 12.0))
    np.testing.assert_array_equal(whole.at_visit("MAR", 6.0), whole.values["MAR"][:, :, 0])
    with pytest.raises(ValueError, match="month 6 was not kept; the imputation kept month 12 only"):
        kept.at_visit("MAR", 6.0)


def test_engine_orders_strategies_for_responder_dropouts(study):
    """Responders who dropped out after month 6: per imputation, CR - J2R = b_l D_l and
    CIR - CR = (1 - b_l) D_l exactly (b_l = Sigma_l[12, 6]/Sigma_l[6, 6], D_l the responders'
    advantage in the month-6 cell); on average J2R < CR < CIR < MAR < LMCF. Baseline-only
    dropouts get the same value under J2R, CR and CIR."""
    frame, _, _ = study
    imp = impute_reference_based(frame, "spine", m=20, seed=3)
    d = imp.data
    after6 = (d.group == 1) & (d.last == 0)
    base_only = (d.group == 1) & (d.last == -1)
    assert after6.sum() > 10 and base_only.sum() > 10
    v = {s: imp.values[s][:, after6, 1] for s in STRATEGIES}
    b = imp.sigma[:, 1, 0] / imp.sigma[:, 0, 0]
    dd = imp.beta[:, 2] - imp.beta[:, 0]  # responder cell minus non-responder cell at month 6
    np.testing.assert_allclose(v["CR"] - v["J2R"], (b * dd)[:, None] * np.ones_like(v["CR"]), atol=1e-10)
    np.testing.assert_allclose(v["CIR"] - v["CR"], ((1 - b) * dd)[:, None] * np.ones_like(v["CR"]), atol=1e-10)
    means = {s: x.mean() for s, x in v.items()}
    assert means["J2R"] < means["CR"] < means["CIR"] < means["MAR"] < means["LMCF"]
    for s in ("CR", "CIR"):
        np.testing.assert_allclose(imp.values[s][:, base_only], imp.values["J2R"][:, base_only], atol=1e-12)
    # observed values are never changed; reference-group patients are MAR under J2R/CR/CIR
    obs = d.observed
    for s in STRATEGIES:
        np.testing.assert_array_equal(imp.values[s][:, obs], np.broadcast_to(d.y[obs], (20, obs.sum())))
    for s in ("J2R", "CR", "CIR"):
        np.testing.assert_allclose(imp.values[s][:, d.group == 0], imp.values["MAR"][:, d.group == 0], atol=1e-12)


def test_mar_recovers_the_truth_and_j2r_pulls_responders_down(study):
    frame, truth, _ = study
    r = reference_based_analysis(frame, sites=("spine",), strategies=("MAR", "J2R"))
    t = r.table[r.table["month"] == 12.0].set_index(["strategy", "group"])
    for g in ("non-responder", "responder", "difference"):
        assert abs(t.loc[("MAR", g), "estimate"] - truth[g]) < 2.5 * t.loc[("MAR", g), "se"], g
    assert t.loc[("JR", "responder"), "estimate"] < t.loc[("MAR", "responder"), "estimate"] - 0.2
    # the reference's imputations do not change; its ANCOVA mean moves only through the shared baseline slope
    assert t.loc[("JR", "non-responder"), "estimate"] == pytest.approx(t.loc[("MAR", "non-responder"), "estimate"],
                                                                      abs=0.1)


def test_endpoint_analysis_matches_standard_analyses(study):
    """Per completed dataset, the same (estimate, variance, df) as the primary MI's analysis."""
    frame, _, _ = study
    imp = impute_reference_based(frame, "spine", ("MAR",), m=3, seed=1)
    d = imp.data
    pct = imp.endpoint_pct("MAR")
    per = per_imputation_estimates(pct, d.group, d.levels)
    assert d.levels == ("non-responder", "responder")  # the reference first
    long = pd.DataFrame({"month": 12.0, "pct_change_spine": pct[1],
                         "responder_status": np.where(d.group == 1, "responder", "non-responder")})
    ref = standard_analyses(sites=("spine",))(long)
    assert per["responder"][0][1] == pytest.approx(ref["spine m12 mean % change [responder]"][0])
    assert per["non-responder"][1][1] == pytest.approx(ref["spine m12 mean % change [non-responder]"][1])
    diff = ref["spine m12 difference % change [responder - non-responder]"]
    dk = "responder - non-responder"
    assert (per[dk][0][1], per[dk][1][1], per[dk][2][1]) == pytest.approx(diff)
    pooled = endpoint_analysis(pct, d.group, "spine", 12, levels=d.levels)
    assert set(pooled) == {estimand_name("spine", "responder", "pct"), estimand_name("spine", "non-responder", "pct"),
                           difference_name("spine", "pct")}


# ------------------------------------------------------------------ the SensitivityResult on the twin
def test_twin_result(twin):
    before = twin.copy()
    r = reference_based_analysis(twin, seed=5, label="SYNTHETIC")
    pd.testing.assert_frame_equal(twin, before)  # input not modified
    assert r.name == "reference_based"
    strategies = ("MAR", "JR", "CR", "CIR", "LMCF")
    end = r.table[r.table["month"] == 12.0]
    assert len(end) == 2 * len(strategies) * 3
    assert list(r.forest_rows.columns) == FOREST_COLUMNS and len(r.forest_rows) == len(end)
    assert set(end["estimand"]) == {estimand_name(s, g, "pct") for s in ("spine", "femoral_neck")
                                    for g in ("responder", "non-responder")} | \
        {difference_name(s, "pct") for s in ("spine", "femoral_neck")}
    assert "sensitivity_reference_based" in r.figures and r.text
    # a site's result does not depend on which other sites are analysed, random methods included
    kw = dict(strategies=("MAR", "JR"), methods=("approx_bayes",), n_samples=10, seed=5)
    both = reference_based_analysis(twin, **kw)
    alone = reference_based_analysis(twin, sites=("spine",), **kw)
    pd.testing.assert_frame_equal(alone.table, both.table[both.table["site"] == "spine"].reset_index(drop=True))


def test_methods_agree_under_mar(twin):
    kw = dict(sites=("spine",), strategies=("MAR",), seed=2, n_samples=60)
    r = reference_based_analysis(twin, methods=("condmean_jackknife", "approx_bayes", "condmean_bootstrap"), **kw)
    t = r.table[r.table["month"] == 12.0].set_index(["method", "group"])
    for g in ("non-responder", "responder", "difference"):
        jk = t.loc[("condmean_jackknife", g)]
        for other in ("approx_bayes", "condmean_bootstrap|normal"):
            assert abs(t.loc[(other, g), "estimate"] - jk["estimate"]) < 0.3, (g, other)
            assert t.loc[(other, g), "se"] == pytest.approx(jk["se"], rel=0.3), (g, other)


@pytest.mark.parametrize("kwargs, message", [
    ({"strategies": ("J2X",)}, "unknown imputation strategy"),
    ({"reference": "placebo"}, "design's reference"),
    ({"methods": ("mcmc",)}, "method must be one of"),
    ({"analysis_model": "glm"}, "analysis model must be one of"),
    ({"undefined": "unknown"}, "needs two groups"),
    ({"endpoint_month": 9}, "not a post-baseline DXA month"),
    ({"outcome": "tscore"}, "outcome must be one of"),
])
def test_reference_based_errors(twin, kwargs, message):
    with pytest.raises(ValueError, match=message):
        reference_based_analysis(twin, **{"sites": ("spine",), **kwargs})


# ------------------------------------------------------------------ the jackknife's size rule (issue #18)
def test_default_jackknife_becomes_bootstrap_above_the_cap_unless_asked_for(twin, monkeypatch):
    import analysis.sensitivity.reference_based as rb
    from analysis.cli.ice_options import apply_ice
    from analysis.run.config import RunConfig

    kw = {"sites": ("spine",), "strategies": ("MAR",), "seed": 3, "n_samples": 8}
    below = reference_based_analysis(twin, **kw)
    assert set(below.table["method"]) == {"condmean_jackknife"}
    monkeypatch.setattr(rb, "JACKKNIFE_MAX_PATIENTS", 10)
    above = reference_based_analysis(twin, **kw)
    assert set(above.table["method"]) == {"condmean_bootstrap|normal", "condmean_bootstrap|percentile"}
    assert above.settings["methods_used"] == {"spine": ["condmean_bootstrap"]}
    assert above.settings["diagnostics"]["spine | condmean_bootstrap"]["refits"] == 8
    assert any("jackknife replaced by bootstrap (B = 8) above 10 patients" in t and "n + 1 refits" in t
               for t in above.text)
    asked = reference_based_analysis(twin, methods=("condmean_jackknife",), **kw)  # named: honoured
    assert set(asked.table["method"]) == {"condmean_jackknife"}
    assert not any("jackknife replaced" in t for t in asked.text)
    assert reference_based_analysis(twin, jackknife_max_patients=1000, **kw).settings["methods_used"] == \
        {"spine": ["condmean_jackknife"]}
    # the plan: unset methods take the size rule; --method condmean_jackknife is a name
    cfg = RunConfig()
    assert cfg.reference_based.methods is None
    assert apply_ice(cfg, None, {"n_samples": 50}).reference_based.methods is None
    assert apply_ice(cfg, None, {"methods": ["condmean_jackknife"]}).reference_based.methods == ("condmean_jackknife",)
