"""Tests of analysis.frequentist.imputation: Rubin's rules (closed forms, mice::pool.scalar), the
proper draws, the completed datasets, agreement with mice, and simulation studies (bias of MI vs
completers under MAR, CI coverage, MCAR agreement)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.study.clinical import ResponderRule, classify_responders, derive
from analysis.study.data import load_twin
from analysis.frequentist.imputation import draws as imp_draws
from analysis.frequentist.imputation import (
    SITES,
    combine_analyses,
    difference_pct_change,
    impute_bmd,
    mean_pct_change,
    mi_analysis,
    pool_analyses,
    responder_codes,
    rubin_pool,
    standard_analyses,
)
from analysis.frequentist.rtests import t_test_one_sample, t_test_welch
from models.simulate import Design, DropoutModel, simulate

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "imputation_reference.json").read_text())

Q5 = [1.2, 0.8, 1.5, 1.1, 0.9]
U5 = [0.04, 0.05, 0.045, 0.05, 0.04]


# ------------------------------------------------------------------------------------ helpers
def with_status(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus the derived responder status (classify_responders is what derive uses)."""
    status = classify_responders(frame)[["patient_id", "responder_status"]]
    return frame.merge(status, on="patient_id")


def with_pct_change(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for s in SITES:
        base = out.loc[out["month"] == 0].set_index("patient_id")[f"bmd_{s}"]
        out[f"pct_change_{s}"] = 100.0 * (out[f"bmd_{s}"] / out["patient_id"].map(base) - 1.0)
    return out


ALL_ANALYSES = combine_analyses(standard_analyses(), *(mean_pct_change(s, group=None) for s in SITES))


def run_study(design: Design, seeds, m: int, **options) -> pd.DataFrame:
    """Per simulated dataset and estimand: MI estimate and CI, completers estimate, complete-data
    value (the dataset's truth)."""
    rows = []
    for k in seeds:
        sim = simulate(design, int(k))
        result = impute_bmd(with_status(sim.data), m=m, seed=int(k), **options)
        pooled = pool_analyses(result, ALL_ANALYSES).set_index("estimand")
        completers = ALL_ANALYSES(result.observed)
        truth = ALL_ANALYSES(with_pct_change(with_status(sim.complete)))
        for name, row in pooled.iterrows():
            rows.append({"dataset": k, "estimand": name, "mi": row["estimate"], "se": row["se"],
                         "df": row["df"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                         "within": row["within"], "cc": completers[name][0], "truth": truth[name][0]})
    return pd.DataFrame(rows)


def paired_bias(study: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and standard error over datasets of ``column`` minus the dataset's complete-data value."""
    d = study.assign(err=study[column] - study["truth"]).groupby("estimand")["err"]
    return pd.DataFrame({"bias": d.mean(), "se": d.std(ddof=1) / np.sqrt(d.size())})


# ------------------------------------------------------------------------------- Rubin's rules
def test_rubin_pool_hand_computed():
    # Qbar = 1.1, Ubar = 0.045, B = 0.30 / 4 = 0.075, T = 0.045 + 1.2 * 0.075 = 0.135,
    # r = 0.09 / 0.045 = 2, lambda = 0.09 / 0.135 = 2/3, nu_old = 4 / (2/3)^2 = 9,
    # fmi = (2 + 2/12) / 3
    p = rubin_pool(Q5, U5)
    assert p.estimate == pytest.approx(1.1)
    assert p.within == pytest.approx(0.045)
    assert p.between == pytest.approx(0.075)
    assert p.total == pytest.approx(0.135)
    assert p.se == pytest.approx(math.sqrt(0.135))
    assert p.riv == pytest.approx(2.0)
    assert p.lambda_ == pytest.approx(2.0 / 3.0)
    assert p.df == pytest.approx(9.0)
    assert p.fmi == pytest.approx((2.0 + 2.0 / 12.0) / 3.0)
    half = stats.t.ppf(0.975, 9) * math.sqrt(0.135)
    assert (p.ci_low, p.ci_high) == pytest.approx((1.1 - half, 1.1 + half))
    assert p.p == pytest.approx(2 * stats.t.sf(1.1 / math.sqrt(0.135), 9))
    assert p.m == 5 and math.isinf(p.df_complete)


def test_rubin_pool_barnard_rubin_hand_computed():
    # nu_com = 20: nu_obs = 21/23 * 20 * (1 - 2/3) = 6.0870, nu = 9 nu_obs / (9 + nu_obs)
    p = rubin_pool(Q5, U5, df_complete=20)
    nu_obs = 21.0 / 23.0 * 20.0 / 3.0
    nu = 9.0 * nu_obs / (9.0 + nu_obs)
    assert p.df == pytest.approx(nu)
    assert p.df == pytest.approx(3.6311239193, rel=1e-9)
    assert p.fmi == pytest.approx((2.0 + 2.0 / (nu + 3.0)) / 3.0)
    assert p.total == pytest.approx(0.135)  # the df adjustment leaves T alone


@pytest.mark.parametrize("case", REFERENCE["pool_scalar"], ids=lambda c: f"m{len(c['Q'])}-dfcom{c['df_complete']}")
def test_rubin_pool_matches_mice_pool_scalar(case):
    p = rubin_pool(case["Q"], case["U"], df_complete=case["df_complete"])
    assert p.estimate == pytest.approx(case["qbar"], rel=1e-12)
    assert p.within == pytest.approx(case["ubar"], rel=1e-12)
    assert p.between == pytest.approx(case["b"], rel=1e-10)
    assert p.total == pytest.approx(case["t"], rel=1e-12)
    assert p.riv == pytest.approx(case["r"], rel=1e-10)
    assert p.df == pytest.approx(case["df"], rel=1e-10)
    assert p.fmi == pytest.approx(case["fmi"], rel=1e-10)


def test_rubin_pool_no_between_variance():
    p = rubin_pool([2.0, 2.0, 2.0], [0.5, 0.3, 0.4])
    assert (p.between, p.riv, p.lambda_, p.fmi) == (0.0, 0.0, 0.0, 0.0)
    assert p.total == pytest.approx(0.4) and math.isinf(p.df)
    assert p.ci_high - p.estimate == pytest.approx(stats.norm.ppf(0.975) * math.sqrt(0.4))
    q = rubin_pool([2.0, 2.0, 2.0], [0.5, 0.3, 0.4], df_complete=10)
    assert q.df == pytest.approx(11.0 / 13.0 * 10.0)  # nu = nu_obs
    assert q.fmi == pytest.approx(2.0 / (q.df + 3.0))


@pytest.mark.parametrize("dfcom", [3.0, 10.0, 50.0, 1e3, 1e7])
def test_barnard_rubin_df_is_bounded_and_tends_to_rubin(dfcom):
    p_old, p = rubin_pool(Q5, U5), rubin_pool(Q5, U5, df_complete=dfcom)
    assert p.df <= dfcom and p.df <= p_old.df
    if dfcom >= 1e7:
        assert p.df == pytest.approx(p_old.df, rel=1e-5)


@pytest.mark.parametrize(("estimates", "variances", "kwargs", "message"), [
    ([1.0], [0.1], {}, "at least 2 imputations"),
    ([1.0, 2.0], [0.1], {}, "differ in length"),
    ([1.0, 2.0], [0.1, -0.1], {}, "non-negative"),
    ([1.0, np.nan], [0.1, 0.1], {}, "finite"),
    ([1.0, 2.0], [0.0, 0.0], {}, "all zero"),
    ([1.0, 2.0], [0.1, 0.1], {"df_complete": 0}, "df_complete"),
    ([1.0, 2.0], [0.1, 0.1], {"conf_level": 1.5}, "conf_level"),
])
def test_rubin_pool_rejects_bad_input(estimates, variances, kwargs, message):
    with pytest.raises(ValueError, match=message):
        rubin_pool(estimates, variances, **kwargs)


# --------------------------------------------------------------------------------------- draws
def test_norm_draw_is_the_posterior_predictive():
    # y = X b + e with n = 8, p = 2: the posterior predictive of a new y at x0 under
    # p(b, s^2) ~ 1/s^2 is s * sqrt(1 + h) * t_6 (h = x0'(X'X)^-1 x0), variance s^2 (1 + h) 6/4.
    # Drawing without the parameter step would give variance s^2 (or s^2 (1 + h)) -- 1.5x too small.
    rng = np.random.default_rng(1)
    x = np.column_stack([np.ones(8), np.arange(8.0)])
    y = 1.0 + 0.5 * x[:, 1] + rng.normal(0, 1, 8)
    fit = imp_draws.fit_norm(x, y)
    x0 = np.array([[1.0, 10.0]])
    draws = np.array([imp_draws.draw_norm(fit, x0, rng)[0] for _ in range(40_000)])
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    s2 = np.sum((y - x @ beta) ** 2) / 6.0
    h = float((x0 @ np.linalg.inv(x.T @ x) @ x0.T)[0, 0])
    scale = math.sqrt(s2 * (1.0 + h))
    assert draws.mean() == pytest.approx(float((x0 @ beta)[0]), abs=4 * scale * math.sqrt(1.5 / 40_000))
    assert draws.var() == pytest.approx(s2 * (1.0 + h) * 6.0 / 4.0, rel=0.06)
    # the tails are t_6, not normal
    assert np.mean(np.abs(draws - x0 @ beta) > stats.t.ppf(0.995, 6) * scale) == pytest.approx(0.01, abs=0.003)


def test_pmm_imputes_observed_values_of_near_donors():
    rng = np.random.default_rng(2)
    x = np.column_stack([np.ones(200), rng.normal(size=200)])
    y = np.round(2.0 * x[:, 1] + rng.normal(0, 0.3, 200), 2)
    fit = imp_draws.fit_pmm(x, y, donors=5)
    x_mis = np.column_stack([np.ones(50), np.linspace(-2, 2, 50)])
    drawn = imp_draws.draw_pmm(fit, x_mis, rng)
    assert set(drawn) <= set(y)
    assert np.corrcoef(drawn, x_mis[:, 1])[0, 1] > 0.9


def test_logreg_draw_follows_the_fitted_probabilities():
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(2000), rng.normal(size=2000)])
    y = (rng.random(2000) < 1.0 / (1.0 + np.exp(-(0.5 + 1.5 * x[:, 1])))).astype(float)
    fit = imp_draws.fit_logreg(x, y, "y")
    assert fit.beta_hat == pytest.approx([0.5, 1.5], abs=0.25)
    at = np.column_stack([np.ones(20_000), np.zeros(20_000)])
    assert imp_draws.draw_logreg(fit, at, rng).mean() == pytest.approx(1.0 / (1.0 + np.exp(-0.5)), abs=0.04)


# ------------------------------------------------------------------------- completed datasets
@pytest.fixture(scope="module")
def twin() -> pd.DataFrame:
    return derive(load_twin().frame)


@pytest.fixture(scope="module")
def twin_result(twin):
    return impute_bmd(twin, m=5, seed=11)


def test_completed_data_keep_observed_values_and_fill_the_rest(twin, twin_result):
    observed, mask = twin_result.observed, twin_result.mask
    assert len(twin_result.imputations) == 5
    for completed in twin_result.imputations:
        assert list(completed[["patient_id", "month"]].itertuples(index=False)) == \
            list(observed[["patient_id", "month"]].itertuples(index=False))
        for col in ("bmd_spine", "bmd_femoral_neck", "das28_crp"):
            kept = mask[col].to_numpy()
            np.testing.assert_array_equal(completed.loc[kept, col], observed.loc[kept, col])
        dxa = completed["month"].isin([0, 6, 12])
        assert completed.loc[dxa, ["bmd_spine", "bmd_femoral_neck"]].notna().all().all()
        assert completed.loc[completed["month"] == 3, "bmd_spine"].isna().all()
        assert set(completed["responder_status"]) == {"responder", "non-responder"}
        base = completed.loc[completed["month"] == 0].set_index("patient_id")["bmd_spine"]
        expected = 100 * (completed["bmd_spine"] / completed["patient_id"].map(base) - 1)
        np.testing.assert_allclose(completed["pct_change_spine"], expected)
    # the observed layout: every patient at every month, the twin's values where recorded
    assert observed["patient_id"].nunique() == twin["patient_id"].nunique() == 46
    n_undefined = (twin.groupby("patient_id")["responder_status"].first() == "undefined").sum()
    assert (~mask.groupby("patient_id")["responder_status"].first()).sum() == n_undefined == 20
    some = twin.dropna(subset=["bmd_spine"]).iloc[7]
    row = observed[(observed["patient_id"] == some["patient_id"]) & (observed["month"] == some["month"])]
    assert row["bmd_spine"].item() == some["bmd_spine"]


def test_sequence_and_scales(twin):
    change = impute_bmd(twin, m=2, seed=1)
    assert change.variables == ("das28_crp_m0", "bmd_spine_m0", "bmd_femoral_neck_m0", "das28_crp_change_m3",
                                "das28_crp_change_m6", "das28_crp_change_m12", "responder_status",
                                "pct_change_spine_m6", "pct_change_femoral_neck_m6", "pct_change_spine_m12",
                                "pct_change_femoral_neck_m12")
    visit = impute_bmd(twin, m=2, seed=1, order="visit", scale="level", undefined="impute")
    assert visit.variables == ("das28_crp_m0", "bmd_spine_m0", "bmd_femoral_neck_m0", "das28_crp_m3",
                               "das28_crp_m6", "bmd_spine_m6", "bmd_femoral_neck_m6", "responder_status",
                               "bmd_spine_m12", "bmd_femoral_neck_m12")
    # both return completed BMD on the recorded scale
    for res in (change, visit):
        dxa = res.imputations[0].loc[res.imputations[0]["month"] != 3]
        assert dxa["bmd_spine"].between(0.3, 2.0).all() and dxa["bmd_femoral_neck"].between(0.2, 2.0).all()


def test_rule_status_is_the_eular_classification_of_the_imputed_das28(twin_result):
    for k in range(twin_result.m):
        wide = twin_result.wide(k)
        codes = responder_codes(ResponderRule(), wide["das28_crp_m0"], wide["das28_crp_m12"])
        assert (np.where(codes == 1, "responder", "non-responder") == wide["responder_status"]).all()


@pytest.mark.parametrize("rule", [ResponderRule(), ResponderRule(kind="eular_good"),
                                  ResponderRule(kind="das28_fall", threshold=1.0)])
def test_responder_codes_match_classify_responders(rule):
    sim = simulate(Design(n_patients=300), 5)
    status = classify_responders(sim.complete, rule).set_index("patient_id")["responder_status"]
    das = sim.complete.pivot(index="patient_id", columns="month", values="das28_crp")
    codes = responder_codes(rule, das[0], das[int(rule.month)])
    assert (np.where(codes == 1, "responder", "non-responder") == status.reindex(das.index)).all()


def test_seed_reproduces_and_extends():
    frame = with_status(simulate(Design(n_patients=120), 2).data)
    a, b = impute_bmd(frame, m=5, seed=7), impute_bmd(frame, m=5, seed=7)
    for x, y in zip(a.imputations, b.imputations):
        pd.testing.assert_frame_equal(x, y)
    c = impute_bmd(frame, m=3, seed=7)  # the first imputations do not depend on m
    for x, y in zip(c.imputations, a.imputations):
        pd.testing.assert_frame_equal(x, y)
    d = impute_bmd(frame, m=5, seed=8)
    assert not a.imputations[0]["bmd_spine"].equals(d.imputations[0]["bmd_spine"])
    pd.testing.assert_frame_equal(
        pool_analyses(a, standard_analyses()), mi_analysis(frame, standard_analyses(), m=5, seed=7))


def test_intermittent_month6_uses_the_observed_month12():
    sim = simulate(Design(n_patients=600, dropout=DropoutModel(p_missed_dxa=0.25)), 11)
    frame = with_status(sim.data)
    wide = frame.pivot(index="patient_id", columns="month", values="bmd_spine")
    gap = wide.index[wide[6].isna() & wide[12].notna()]
    assert len(gap) > 50
    truth = sim.complete.pivot(index="patient_id", columns="month", values="bmd_spine").loc[gap, 6]
    hidden = frame.copy()
    hidden.loc[hidden["patient_id"].isin(gap) & (hidden["month"] == 12), ["bmd_spine", "bmd_femoral_neck"]] = np.nan

    def error(data):
        res = impute_bmd(data, m=10, seed=1)
        return np.mean([np.abs(res.wide(k).loc[gap, "bmd_spine_m6"] - truth).mean() for k in range(10)])

    with_m12, without_m12 = error(frame), error(hidden)
    assert with_m12 < 0.8 * without_m12
    res = impute_bmd(frame, m=2, seed=1)
    assert any(v.startswith("pct_change_spine_m6 <- ") and " + pct_change_spine_m12 [" in v
               for v in res.predictors.values())
    # month-12 BMD of these patients is observed and untouched
    observed_m12 = frame.loc[frame["patient_id"].isin(gap) & (frame["month"] == 12)].set_index("patient_id")
    np.testing.assert_array_equal(res.wide(0).loc[observed_m12.index, "bmd_spine_m12"], observed_m12["bmd_spine"])


def test_undefined_modes(twin):
    undefined = set(twin.loc[twin["responder_status"] == "undefined", "patient_id"])
    excl = impute_bmd(twin, m=2, seed=1, undefined="exclude")
    assert not set(excl.imputations[0]["patient_id"]) & undefined
    assigned = impute_bmd(twin, m=2, seed=1, undefined="assign")
    labels = assigned.imputations[0].groupby("patient_id")["responder_status"].first()
    assert (labels[list(undefined)] == "non-responder").all()
    logistic = impute_bmd(twin, m=2, seed=1, undefined="impute")
    assert set(logistic.imputations[0]["responder_status"]) == {"responder", "non-responder"}
    assert any(v.startswith("responder_status <- ") and "logreg" in v for v in logistic.predictors.values())
    with pytest.raises(ValueError, match=r"responder_status\[undefined\] is 0 in all"):
        impute_bmd(twin, m=2, seed=1, undefined="level")


def test_stratified_models_need_enough_completers_per_group(twin):
    with pytest.raises(ValueError, match="try stratify=False"):
        impute_bmd(twin, m=2, seed=1, stratify=True)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"m": 1}, "m must be an integer of at least 2"),
    ({"m": 2.5}, "m must be an integer"),
    ({"undefined": "drop"}, "undefined must be one of"),
    ({"order": "random"}, "order must be"),
    ({"bmd_method": "mean"}, "bmd_method must be"),
    ({"scale": "log"}, "scale must be"),
    ({"covariates": ("age", "weight")}, r"lacks column\(s\) \['weight'\]"),
    ({"group": "treatment"}, "lacks column"),
    ({"sites": ()}, "at least one DXA site"),
    ({"undefined": "rule", "auxiliary": ()}, "undefined='rule' needs 'das28_crp'"),
])
def test_impute_rejects_bad_options(twin, kwargs, message):
    with pytest.raises(ValueError, match=message):
        impute_bmd(twin, **{"m": 2, **kwargs})


def test_impute_rejects_bad_data(twin):
    no_bmi = twin.copy()
    no_bmi.loc[no_bmi["patient_id"] == "P003", "bmi"] = np.nan
    with pytest.raises(ValueError, match="covariate 'bmi' is missing for 1 patient"):
        impute_bmd(no_bmi, m=2)
    with pytest.raises(ValueError, match="more than one row"):
        impute_bmd(pd.concat([twin, twin.iloc[:1]]), m=2)
    with pytest.raises(ValueError, match="exactly two defined groups"):
        impute_bmd(twin.assign(responder_status=twin["responder_status"].replace("responder", "x")
                                .where(twin["patient_id"] != "P001", "y")), m=2, undefined="impute")


# --------------------------------------------------------------------------- analysis functions
def test_mean_pct_change_is_the_one_sample_t(twin):
    est = mean_pct_change("spine")(twin)
    for level in ("responder", "non-responder"):
        y = twin.loc[(twin["month"] == 12) & (twin["responder_status"] == level), "pct_change_spine"].dropna()
        t = t_test_one_sample(y.to_numpy())
        q, u, df = est[f"spine m12 mean % change [{level}]"]
        assert q == pytest.approx(t.estimate) and df == t.df
        assert q / math.sqrt(u) == pytest.approx(t.statistic)
    overall = mean_pct_change("femoral_neck", group=None)(twin)
    assert list(overall) == ["femoral_neck m12 mean % change [all]"]


def test_difference_is_welch_or_pooled(twin):
    at12 = twin[twin["month"] == 12]
    y1 = at12.loc[at12["responder_status"] == "responder", "pct_change_femoral_neck"].dropna().to_numpy()
    y2 = at12.loc[at12["responder_status"] == "non-responder", "pct_change_femoral_neck"].dropna().to_numpy()
    q, u, df = difference_pct_change("femoral_neck")(twin)[
        "femoral_neck m12 difference % change [responder - non-responder]"]
    w = t_test_welch(y1, y2)
    assert q == pytest.approx(w.estimate) and df == pytest.approx(w.df) and q / math.sqrt(u) == pytest.approx(w.statistic)
    qp, up, dfp = next(iter(difference_pct_change("femoral_neck", variance="pooled")(twin).values()))
    ref = stats.ttest_ind(y1, y2, equal_var=True)
    assert qp / math.sqrt(up) == pytest.approx(ref.statistic) and dfp == len(y1) + len(y2) - 2


def test_pool_analyses_checks_the_analysis_output(twin_result):
    calls = iter(range(100))

    def changing(frame):
        return {f"e{next(calls)}": (1.0, 0.1)}

    with pytest.raises(ValueError, match="different estimands"):
        pool_analyses(twin_result, changing)
    with pytest.raises(ValueError, match=r"must be \(estimate, variance\[, df\]\)"):
        pool_analyses(twin_result, lambda f: {"e": (1.0,)})
    with pytest.raises(ValueError, match="returned twice"):
        pool_analyses(twin_result, combine_analyses(mean_pct_change("spine"), mean_pct_change("spine")))


def test_mi_analysis_on_the_twin(twin):
    table = mi_analysis(twin, m=20, seed=3)
    assert list(table.columns[:9]) == ["estimand", "estimate", "se", "df", "ci_low", "ci_high", "p", "fmi", "m"]
    assert len(table) == 6 and (table["m"] == 20).all()
    assert ((table["ci_low"] < table["estimate"]) & (table["estimate"] < table["ci_high"])).all()
    assert table["fmi"].between(0, 1).all() and (table["df"] < table["df_complete"]).all()
    # 20 of 46 patients lack month 12: the missing information is substantial
    assert (table["fmi"] > 0.2).all()


# ------------------------------------------------------------------------------ agreement with R
def _wide_to_long(wide: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for month in (0, 3, 6, 12):
        parts.append(pd.DataFrame({
            "patient_id": wide["patient_id"], "month": month, "age": wide["age"], "sex": wide["sex"],
            "bmi": wide["bmi"], "responder_status": wide["responder_status"],
            "das28_crp": wide[f"das28_crp_m{month}"],
            **{f"bmd_{s}": wide.get(f"bmd_{s}_m{month}", np.nan) for s in SITES}}))
    long = pd.concat(parts, ignore_index=True)
    return long[long[["das28_crp", "bmd_spine", "bmd_femoral_neck"]].notna().any(axis=1)]


def test_imputation_agrees_with_mice():
    ref = REFERENCE["mice"]
    wide = pd.read_csv(FIXTURES / "imputation_mice_data.csv", keep_default_na=False, na_values=[""])
    frame = _wide_to_long(wide.assign(responder_status=wide["responder_status"].fillna("undefined")))
    m = 500
    result = impute_bmd(frame, m=m, seed=5, undefined="impute", scale="level")  # mice imputes levels
    assert result.variables == ("das28_crp_m0", "bmd_spine_m0", "bmd_femoral_neck_m0", "das28_crp_m3",
                                "das28_crp_m6", "responder_status", "bmd_spine_m6", "bmd_femoral_neck_m6",
                                "bmd_spine_m12", "bmd_femoral_neck_m12")
    ours = pool_analyses(result, ALL_ANALYSES).set_index("estimand")
    assert set(ours.index) == set(ref["pooled"])
    for name, r in ref["pooled"].items():
        o = ours.loc[name]
        mc_sd = math.sqrt(o["between"] / m + r["b"] / ref["m"])
        assert abs(o["estimate"] - r["qbar"]) < 4 * mc_sd, name
        assert o["within"] == pytest.approx(r["ubar"], rel=0.03), name
        assert o["between"] == pytest.approx(r["b"], rel=0.3), name
        assert o["total"] == pytest.approx(r["t"], rel=0.15), name
        assert o["fmi"] == pytest.approx(r["fmi"], abs=0.08), name
        assert o["df_complete"] == pytest.approx(r["df_complete"], rel=0.02), name


# ----------------------------------------------------------------------------- simulation studies
MAR = Design(n_patients=400)  # dropout at each visit: logit h = logit 0.09 + 0.5 (last DAS28 - 3.2)
MCAR = Design(n_patients=400, dropout=DropoutModel(mechanism="mcar", visit_hazard=0.15, activity_log_odds=0.0))
OVERALL = [f"{s} m12 mean % change [all]" for s in SITES]
NONRESPONDERS = [f"{s} m12 mean % change [non-responder]" for s in SITES]
DIFFERENCES = [f"{s} m12 difference % change [responder - non-responder]" for s in SITES]


@pytest.fixture(scope="module")
def mar_study() -> pd.DataFrame:
    return run_study(MAR, range(1000, 1100), m=20, stratify=True)


def test_mar_completers_are_biased_as_theory_predicts(mar_study):
    # dropout is more likely with active disease, and bone is lost faster with active disease: the
    # completers over-represent patients who keep their bone -> completers' mean % change too high,
    # and too high most among non-responders -> responder minus non-responder difference too low
    cc = paired_bias(mar_study, "cc")
    assert (cc.loc[OVERALL + NONRESPONDERS, "bias"] > 4 * cc.loc[OVERALL + NONRESPONDERS, "se"]).all()
    assert (cc.loc[DIFFERENCES, "bias"] < -4 * cc.loc[DIFFERENCES, "se"]).all()


def test_mar_multiple_imputation_recovers_the_truth(mar_study):
    mi, cc = paired_bias(mar_study, "mi"), paired_bias(mar_study, "cc")
    # the overall mean: unbiased
    assert (mi.loc[OVERALL, "bias"].abs() < 3 * mi.loc[OVERALL, "se"]).all()
    assert (mi.loc[OVERALL, "bias"].abs() < 0.05).all()
    # per responder group: most of the completers' bias removed (the linear imputation models only
    # approximate a mixture of response types, module docstring)
    groupwise = NONRESPONDERS + DIFFERENCES
    assert (mi.loc[groupwise, "bias"].abs() < 0.5 * cc.loc[groupwise, "bias"].abs()).all()


def test_mar_confidence_intervals_cover(mar_study):
    d = mar_study.copy()
    d["population"] = d.groupby("estimand")["truth"].transform("mean")  # 100 x 400 patients
    d["covered"] = (d["ci_low"] <= d["population"]) & (d["population"] <= d["ci_high"])
    half_within = stats.t.ppf(0.975, d["df"]) * np.sqrt(d["within"])
    d["covered_within_only"] = (d["mi"] - d["population"]).abs() <= half_within
    by = d.groupby("estimand")
    coverage = by["covered"].mean()
    assert coverage.between(0.87, 1.0).all(), coverage
    assert 0.92 <= coverage.mean() <= 0.99
    # Rubin's variance matches the spread of the MI estimates; ignoring B would under-cover
    ratio = by["se"].mean() / by["mi"].std(ddof=1)
    assert ratio.between(0.8, 1.35).all(), ratio
    assert by["covered_within_only"].mean().mean() < coverage.mean() - 0.04


def test_mcar_multiple_imputation_and_completers_agree(mar_study):
    study = run_study(MCAR, range(2000, 2040), m=10, stratify=True)

    def mi_minus_cc(s):
        diff = s.assign(d=s["mi"] - s["cc"]).groupby("estimand")["d"]
        return diff.mean(), diff.mean() / (diff.std(ddof=1) / np.sqrt(diff.size()))

    mean, z = mi_minus_cc(study)
    assert (z[OVERALL].abs() < 3).all(), z
    # per group a small systematic difference remains (about 0.04 percentage points, a tenth of a
    # standard error); under MAR the same comparison differs by 0.15-0.2 points
    assert (mean.abs() < 0.1).all(), mean
    mar_mean, mar_z = mi_minus_cc(mar_study)
    assert (mar_mean[OVERALL + NONRESPONDERS] < -0.1).all() and (mar_z[OVERALL].abs() > 5).all()


@pytest.mark.slow
@pytest.mark.parametrize("stratify", [True, False])
def test_mar_large_study(stratify, full_studies):
    k = 400 if full_studies else 200
    study = run_study(MAR, range(5000, 5000 + k), m=20, stratify=stratify)
    mi, cc = paired_bias(study, "mi"), paired_bias(study, "cc")
    # 400 studies resolve a residual of about 0.02 percentage points (completers: 0.1-0.2); the
    # reduced form's 200 studies resolve sqrt(2) times less
    assert (mi.loc[OVERALL, "bias"].abs() < 0.04 * np.sqrt(400 / k)).all()
    assert (mi.loc[OVERALL, "bias"].abs() < 0.2 * cc.loc[OVERALL, "bias"].abs()).all()
    assert (mi.loc[NONRESPONDERS + DIFFERENCES, "bias"].abs()
            < (0.5 if stratify else 0.85) * cc.loc[NONRESPONDERS + DIFFERENCES, "bias"].abs()).all()
    study["population"] = study.groupby("estimand")["truth"].transform("mean")
    covered = (study["ci_low"] <= study["population"]) & (study["population"] <= study["ci_high"])
    coverage = covered.groupby(study["estimand"]).mean()
    assert coverage.loc[OVERALL].between(0.92, 0.98).all(), coverage
    assert coverage.between(0.90, 0.995).all(), coverage
