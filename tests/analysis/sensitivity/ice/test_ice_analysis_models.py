"""Analysis models of one completed dataset (analysis.sensitivity.ice.analysis_models): rbmi's ANCOVA
against lstsq, closed forms and rbmi 1.5.2's own numbers; the MMRM against fit_mmrm and the ANCOVA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.frequentist.mmrm import fit_mmrm
from analysis.sensitivity.ice.analysis_models import Estimate, ancova, mmrm_analysis
from tests.analysis.sensitivity.ice._rbmi_reference import load, num


def _data(n=41, m=3, k=2, q=2, seed=0):
    rng = np.random.default_rng(seed)
    g = np.arange(n) % k
    rng.shuffle(g)
    c = rng.normal(size=(n, q))
    y = rng.normal(size=(n, m)) * np.arange(1, m + 1) + 0.4 * g[:, None] + c.sum(axis=1)[:, None] * 0.3
    return y, g, c


def _close(a: Estimate, b: Estimate, tol=1e-10):
    assert (a.est, a.se, a.df) == pytest.approx((b.est, b.se, b.df), rel=tol, abs=tol)


@pytest.mark.parametrize("k", [2, 3])
def test_ancova_equals_lstsq_and_counterfactual_prediction(k):
    y, g, c = _data(k=k)
    n = len(y)
    levels, months = ["ref", "a", "b"][:k], [6, 12, 24]
    res = ancova(y, g, c, months, levels)
    x = np.column_stack([np.ones(n), *[(g == j).astype(float) for j in range(1, k)], c])
    p = x.shape[1]
    xtx_inv = np.linalg.inv(x.T @ x)
    for j, month in enumerate(months):
        beta = np.linalg.lstsq(x, y[:, j], rcond=None)[0]
        s2 = np.sum((y[:, j] - x @ beta) ** 2) / (n - p)
        for lv in range(1, k):
            _close(res[f"trt_{levels[lv]}_{month}"], Estimate(beta[lv], np.sqrt(s2 * xtx_inv[lv, lv]), n - p))
        for lv in range(k):
            xk = x.copy()  # every patient set to level lv: rbmi's ls_design_counterfactual
            xk[:, 1:k] = 0.0
            if lv:
                xk[:, lv] = 1.0
            lvec = xk.mean(axis=0)
            assert res[f"lsm_{levels[lv]}_{month}"].est == pytest.approx(np.mean(xk @ beta), rel=1e-12)
            _close(res[f"lsm_{levels[lv]}_{month}"], Estimate(lvec @ beta, np.sqrt(s2 * lvec @ xtx_inv @ lvec), n - p))
    assert list(res)[: 2 * k - 1] == [*(f"trt_{lv}_6" for lv in levels[1:]), *(f"lsm_{lv}_6" for lv in levels)]


@pytest.mark.parametrize("k", [2, 3])
def test_ancova_without_covariates_is_the_pooled_variance_comparison_of_means(k):
    y, g, _ = _data(n=23, m=2, k=k, q=0, seed=3)
    res = ancova(y, g, None, [3, 6.5], [f"g{j}" for j in range(k)])
    for j, month in enumerate(["3", "6.5"]):
        groups = [y[g == lv, j] for lv in range(k)]
        df = len(y) - k
        sp2 = sum(np.sum((v - v.mean()) ** 2) for v in groups) / df
        for lv, v in enumerate(groups):
            _close(res[f"lsm_g{lv}_{month}"], Estimate(v.mean(), np.sqrt(sp2 / len(v)), df))
            if lv:
                se = np.sqrt(sp2 * (1 / len(v) + 1 / len(groups[0])))
                _close(res[f"trt_g{lv}_{month}"], Estimate(v.mean() - groups[0].mean(), se, df))


def test_ancova_one_visit_and_single_arm():
    y, g, c = _data(m=1, q=1)
    assert ancova(y[:, 0], g, c[:, 0], [12.0], ["P", "A"]) == ancova(y, g, c, [12], ["P", "A"])
    one = ancova(y, np.zeros(len(y), dtype=int), None, [12], ["all"])
    assert list(one) == ["lsm_all_12"]
    _close(one["lsm_all_12"], Estimate(y.mean(), y.std(ddof=1) / np.sqrt(len(y)), len(y) - 1))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"group": np.r_[np.zeros(40, dtype=int), 2]}, "no patient"), ({"group": np.full(41, 0.5)}, "integer"),
    ({"y": np.full((41, 3), np.nan)}, "complete"), ({"months": [6, 12]}, "months"),
    ({"covariates": np.ones((41, 1))}, "rank deficient")])
def test_ancova_rejects_bad_input(kwargs, match):
    y, g, c = _data()
    args = {"y": y, "group": g, "covariates": c, "months": [6, 12, 24], "levels": ["P", "A", "B"][:2]} | kwargs
    if match == "no patient":
        args["levels"] = ["P", "A", "B"]
    with pytest.raises(ValueError, match=match):
        ancova(**args)


# ------------------------------------------------------------------------- rbmi's own numbers
REF = load()


def test_ancova_equals_rbmi_two_arms_with_factor_covariate():
    a = REF["ancova2"]
    cov = np.column_stack([num(a["base"]), np.asarray(a["male"], float)])  # sex as its dummy
    y = np.column_stack([num(v) for v in a["y"]])
    res = ancova(y, np.asarray(a["group"]), cov, a["months"], a["levels"])
    ref, alt = a["levels"]
    for month in ["6", "12", "24"]:
        for ours, theirs in [(f"trt_{alt}", "trt"), (f"lsm_{ref}", "lsm_ref"), (f"lsm_{alt}", "lsm_alt")]:
            want = a["results"][f"{theirs}_{month}"]
            _close(res[f"{ours}_{month}"], Estimate(want["est"], want["se"], want["df"]), tol=1e-9)


def test_ancova_equals_rbmi_lsmeans_three_arms():
    a = REF["ancova3"]
    res = ancova(num(a["y"]), np.asarray(a["group"]), num(a["base"]), [1], a["levels"])
    for lv, want in a["lsm"].items():
        _close(res[f"lsm_{lv}_1"], Estimate(want["est"], want["se"], want["df"]), tol=1e-9)
    for lv, want in a["trt"].items():
        _close(res[f"trt_{lv}_1"], Estimate(want["est"], want["se"], want["df"]), tol=1e-9)


# -------------------------------------------------------------------------------------- MMRM
@pytest.mark.parametrize(("k", "q"), [(2, 1), (3, 2), (1, 1)])
def test_mmrm_one_visit_is_the_ancova(k, q):
    y, g, c = _data(m=1, k=k, q=q, seed=k)
    levels = ["P", "A", "B"][:k]
    a, b = ancova(y, g, c, [12], levels), mmrm_analysis(y, g, c, [12], levels)
    assert list(a) == list(b)
    for key in a:
        _close(a[key], b[key], tol=1e-8)


def test_mmrm_complete_data_without_covariates_is_the_per_visit_ancova():
    y, g, _ = _data(m=3, k=3, q=0, seed=5)
    a, b = ancova(y, g, None, [6, 12, 24], list("PAB")), mmrm_analysis(y, g, None, [6, 12, 24], list("PAB"))
    for key in a:  # identical regressors at every visit: GLS = OLS, REML Sigma = E'E / (n - p)
        _close(a[key], b[key], tol=1e-6)


def _long(y, g, c, mask, levels):
    sid, vis = np.nonzero(mask)
    vl = [f"v{j}" for j in range(y.shape[1])]
    return pd.DataFrame({"sid": sid, "visit": pd.Categorical(np.asarray(vl)[vis], categories=vl),
                         "arm": pd.Categorical(np.asarray(levels)[g[sid]], categories=levels),
                         "x0": c[sid, 0], "change": y[sid, vis]})


@pytest.mark.parametrize("with_missing", [False, True])
def test_mmrm_equals_fit_mmrm_contrasts(with_missing):
    y, g, c = _data(n=50, m=3, k=2, q=1, seed=7)
    mask = np.ones(y.shape, dtype=bool)
    if with_missing:
        mask[np.arange(50) % 5 == 0, 2] = False
        mask[np.arange(50) % 7 == 0, 1:] = False
        y = np.where(mask, y, np.nan)
    res = mmrm_analysis(y, g, c, [6, 12, 24], ["P", "A"], observed=mask if with_missing else None)
    fit = fit_mmrm(_long(y, g, c, mask, ["P", "A"]), "change ~ x0 + visit * arm", subject="sid", visit="visit")
    fixed = fit.fixed.set_index("term")
    first = fixed.loc["arm[T.A]"]  # group effect at the reference visit
    _close(res["trt_A_6"], Estimate(first["estimate"], first["se"], first["df"]))
    for j, month in [(1, 12), (2, 24)]:
        d = fit.contrast({"d": {"arm[T.A]": 1.0, f"visit[T.v{j}]:arm[T.A]": 1.0}}).iloc[0]
        _close(res[f"trt_A_{month}"], Estimate(d["estimate"], d["se"], d["df"]))
    cbar = c[:, 0].mean()  # over all patients, also those with missing visits
    lsm = fit.lsmeans(["arm"], by=["visit"], at={"x0": [cbar]})
    for _, r in lsm.iterrows():
        month = {"v0": 6, "v1": 12, "v2": 24}[r["visit"]]
        _close(res[f"lsm_{r['arm']}_{month}"], Estimate(r["estimate"], r["se"], r["df"]))
    b = fit.coef
    assert res["lsm_P_6"].est == pytest.approx(b["Intercept"] + b["x0"] * cbar, rel=1e-12)


def test_mmrm_single_arm_and_input_checks():
    y, g, c = _data(m=2, k=1, q=1)
    res = mmrm_analysis(y, g, c, [6, 12], ["all"])
    assert list(res) == ["lsm_all_6", "lsm_all_12"]
    y[0, 1] = np.nan
    with pytest.raises(ValueError, match="complete"):
        mmrm_analysis(y, g, c, [6, 12], ["all"])
    with pytest.raises(ValueError, match="NaN in an observed cell"):
        mmrm_analysis(y, g, c, [6, 12], ["all"], observed=np.ones(y.shape, dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        mmrm_analysis(y, g, c, [6, 12], ["all"], observed=np.ones((3, 2), dtype=bool))
