"""rbmi's pooling (analysis.sensitivity.ice.pooling, .percentile): hand computations and rbmi 1.5.2's own
numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.frequentist.imputation.rubin import rubin_pool
from analysis.sensitivity.ice.percentile import pval_percentile, quantile_type6
from analysis.sensitivity.ice.pooling import (
    Pooled,
    pool,
    pool_bmlmi,
    pool_bootstrap,
    pool_jackknife,
    pool_rubin,
)
from analysis.sensitivity.ice.pooling_rules import (
    bmlmi_estimates,
    rubin_df,
    rubin_rules,
)
from tests.analysis.sensitivity.ice._rbmi_reference import load, num

Z975 = stats.norm.ppf(0.975)


def _t(r: Pooled) -> tuple:
    return r.estimate, r.se, r.ci_low, r.ci_high, r.p, r.df


def test_jackknife_by_hand():
    r = pool_jackknife([1.0, 0.9, 1.1, 1.3, 0.7])
    se = math.sqrt(3 / 4 * 0.2)  # leave-one-out mean 1.0, sum of squares 0.2, N = 4
    assert _t(r) == pytest.approx((1.0, se, 1 - Z975 * se, 1 + Z975 * se, 2 * stats.norm.sf(1 / se), math.inf))
    assert r.method == "jackknife"


def test_bootstrap_normal_by_hand():
    r = pool_bootstrap([2.5, 1.0, 2.0, 3.0, 4.0], level=0.9, type="normal")
    se = math.sqrt(5 / 3)
    q = stats.norm.ppf(0.95)
    assert (r.estimate, r.se, r.df, r.method) == (2.5, pytest.approx(se), math.inf, "bootstrap (normal)")
    assert (r.ci_low, r.ci_high) == pytest.approx((2.5 - q * se, 2.5 + q * se))
    assert r.p == pytest.approx(2 * stats.norm.sf(2.5 / se))


@pytest.mark.parametrize("n", [1, 2, 5, 19, 200])
def test_quantile_type6_is_numpy_weibull(n):
    rng = np.random.default_rng(n)
    x = np.round(rng.normal(size=n), 1)  # ties
    probs = np.r_[0.0, 1.0, np.arange(1, n + 1) / (n + 1), rng.uniform(size=50)]
    np.testing.assert_allclose(quantile_type6(x, probs), np.quantile(x, probs, method="weibull"),
                               rtol=0, atol=1e-13)


def test_quantile_type6_by_hand():
    # p (n + 1) = 0.5, 2.5, 4.5: clamped below, midway between x(2) and x(3), clamped above
    np.testing.assert_array_equal(quantile_type6([4, 1, 3, 2], [0.1, 0.5, 0.9]), [1.0, 2.5, 4.0])


@pytest.mark.parametrize(("est", "expected"), [  # rbmi's tests/testthat/test-pool.R
    ([0, 1, 1, 1], (0.2, 0.8)), ([0, 0, 0, 0], (1, 1)), ([0, -1, -1, -1], (0.8, 0.2)),
    ([1, 1, 1, 1], (0, 1)), ([-1, -1, -1, -1], (1, 0))])
def test_pval_percentile_special_cases(est, expected):
    assert pval_percentile(est) == pytest.approx(expected)


@pytest.mark.parametrize("k", [1, 3, 6, 9])
def test_pval_percentile_zero_is_kth_order_statistic(k):
    rng = np.random.default_rng(k)
    est = np.r_[-rng.uniform(0.1, 2, k - 1), 0.0, rng.uniform(0.1, 2, 9 - k)]
    rng.shuffle(est)
    assert pval_percentile(est) == pytest.approx((k / 10, 1 - k / 10))  # Q(k / (n + 1)) = x(k) = 0
    est2 = np.r_[est, 0.0]  # tied zeros at ranks k, k + 1: (min, 1 - max) of rank / (n + 1)
    assert pval_percentile(est2) == pytest.approx((k / 11, 1 - (k + 1) / 11))


def test_pval_percentile_inverts_the_quantile_function():
    x = np.random.default_rng(4).normal(0.3, 1.0, 99)
    pg, pl = pval_percentile(x)
    assert pg + pl == pytest.approx(1.0)
    xs = np.sort(x)
    k = int(np.sum(xs < 0))  # Q is linear between x(k) < 0 < x(k+1)
    exact = (k + xs[k - 1] / (xs[k - 1] - xs[k])) / (len(x) + 1)
    assert abs(pg - exact) < 2.0**-13  # uniroot's default tolerance
    assert abs(quantile_type6(x, pg)[0]) < 1e-3
    assert pval_percentile(-x)[1] == pytest.approx(pg, abs=2.0**-13)


def test_percentile_bootstrap_interval_and_p():
    rng = np.random.default_rng(2)
    boot = rng.normal(0.4, 0.3, 300)
    r = pool_bootstrap(np.r_[0.41, boot], level=0.9)
    assert (r.estimate, r.method) == (0.41, "bootstrap (percentile)")
    assert math.isnan(r.se) and math.isnan(r.df)
    assert (r.ci_low, r.ci_high) == tuple(quantile_type6(boot, [0.05, 0.95]))
    assert r.p == 2 * min(pval_percentile(boot))
    assert pool_bootstrap([1.0, 0.5, 0.7, 0.2]).p == 0.0  # all bootstrap estimates > 0
    assert pool_bootstrap([0.0, 0.0, 0.0]).p == 1.0  # min(2 * 1, 1)
    empty = pool_bootstrap([1.0])
    assert empty.estimate == 1.0 and math.isnan(empty.ci_low) and math.isnan(empty.p)


def test_rubin_textbook_case():
    ests, ses = [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]
    t = 1 + 1 + 1 / 3  # U = 1, B = 1
    lam = (4 / 3) / t
    v_old, v_obs = 2 / lam**2, 11 / 13 * 10 * (1 - lam)
    df = v_old * v_obs / (v_old + v_obs)
    r = pool_rubin(ests, ses, df_complete=10)
    q = stats.t.ppf(0.975, df)
    assert _t(r) == pytest.approx((2.0, math.sqrt(t), 2 - q * math.sqrt(t), 2 + q * math.sqrt(t),
                                   2 * stats.t.sf(2 / math.sqrt(t), df), df))
    assert rubin_rules(ests, ses, math.inf)[2] == pytest.approx(v_old)


@pytest.mark.parametrize("v_com", [5.0, 40.0, 1e6, math.inf])
def test_rubin_equals_project_rubin_pool(v_com):
    rng = np.random.default_rng(int(min(v_com, 99)))
    ests, ses = rng.normal(1, 0.3, 12), rng.uniform(0.2, 0.4, 12)
    mine = pool_rubin(ests, ses, v_com)
    theirs = rubin_pool(ests, ses**2, df_complete=v_com)
    assert (mine.estimate, mine.se, mine.df, mine.ci_low, mine.ci_high, mine.p) == pytest.approx(
        (theirs.estimate, theirs.se, theirs.df, theirs.ci_low, theirs.ci_high, theirs.p), rel=1e-12)


def test_rubin_na_vcom_and_no_between_variance():
    ests, ses = [0.5, 0.7, 0.2], [0.1, 0.2, 0.1]
    r = pool_rubin(ests, ses, None)  # rbmi: v_com NA -> df Inf (mice/rubin_pool: Rubin's 1987 df)
    assert r.df == math.inf and r.ci_high - r.estimate == pytest.approx(Z975 * r.se)
    assert rubin_df(math.inf, 0.0, 1.0, 5) == math.inf
    assert rubin_df(30.0, 0.0, 1.0, 5) == pytest.approx(31 / 33 * 30)  # lambda = 0: nu_obs
    nan = pool_rubin(ests, [math.nan] * 3, 10)
    assert nan.estimate == pytest.approx(np.mean(ests)) and math.isnan(nan.se) and math.isnan(nan.p)


def _balanced_layout(b, d, seed):
    rng = np.random.default_rng(seed)
    return (2.0 + rng.normal(0, 0.8, (b, 1)) + rng.normal(0, 0.5, (b, d))).ravel()  # row b = sample b


def test_bmlmi_anova_estimates_by_direct_computation():
    b, d = 7, 4
    x = _balanced_layout(b, d, 1)
    rows = x.reshape(b, d)
    msw = np.mean(np.var(rows, axis=1, ddof=1))  # balanced: mean within-sample variance
    msb = d * np.var(rows.mean(axis=1), ddof=1)
    assert msb / msw == pytest.approx(stats.f_oneway(*rows).statistic)
    var = (msb * (1 + 1 / b) - msw) / d  # rbmi's test-pool.R re-implementation
    df = (msb * (b + 1) - msw * b) ** 2 / (msb**2 * (b + 1) ** 2 / (b - 1) + msw**2 * b / (d - 1))
    est, v, nu = bmlmi_estimates(x, d)
    assert (est, v, nu) == pytest.approx((x.mean(), var, max(3.0, df)), rel=1e-12)
    r = pool_bmlmi(x, d, level=0.9)
    q = stats.t.ppf(0.95, nu)
    assert (r.se, r.df, r.ci_low, r.p) == pytest.approx(
        (math.sqrt(var), nu, est - q * math.sqrt(var), 2 * stats.t.sf(abs(est) / math.sqrt(var), nu)))


def test_bmlmi_rows_are_bootstrap_samples():
    x = np.repeat([1.0, 2.0, 3.0], 2)  # byrow: (1, 1), (2, 2), (3, 3): all between-sample
    est, var, _ = bmlmi_estimates(x, 2)
    assert (est, var) == pytest.approx((2.0, (1 + 1 / 3) * (2 * 1.0 - 0) / 2))


def test_bmlmi_df_floor_degenerate_and_errors():
    x = np.random.default_rng(0).normal(size=60)  # no between-sample variance: small df
    assert bmlmi_estimates(x, 3)[2] == 3.0
    assert math.isnan(bmlmi_estimates(np.ones(6), 3)[2])  # 0 / 0, R's max(3, NaN) = NaN
    with pytest.raises(ValueError, match="multiple"):
        bmlmi_estimates(np.ones(7), 3)
    with pytest.raises(ValueError, match="larger than 1"):
        bmlmi_estimates(np.ones(6), 1)


def test_one_sided_intervals_follow_rbmi():
    ests = [1.0, 0.9, 1.1, 1.3, 0.7]
    two = pool_jackknife(ests)
    q = stats.norm.ppf(0.95)
    greater, less = pool_jackknife(ests, alternative="greater"), pool_jackknife(ests, alternative="less")
    assert (greater.ci_low, greater.ci_high, greater.p) == pytest.approx(
        (-math.inf, 1 + q * two.se, stats.norm.sf(1 / two.se)))
    assert (less.ci_low, less.ci_high, less.p) == pytest.approx(
        (1 - q * two.se, math.inf, stats.norm.cdf(1 / two.se)))


def test_pool_dispatch():
    e = [1.0, 0.9, 1.1, 1.3, 0.7, 1.2]
    assert pool("jackknife", e) == pool_jackknife(e)
    assert pool("bootstrap", e, type="normal") == pool_bootstrap(e, type="normal")
    assert pool("rubin", e, ses=[0.1] * 6, df_complete=20) == pool_rubin(e, [0.1] * 6, 20)
    assert pool("bmlmi", e, D=2) == pool_bmlmi(e, 2)
    with pytest.raises(ValueError, match="method"):
        pool("mice", e)


# ------------------------------------------------------------------------- rbmi's own numbers
CASES = load()["pool"]


def _check(r: Pooled, v: dict) -> None:
    got = [r.estimate, r.se, r.ci_low, r.ci_high, r.p]
    want = [v["est"], v["se"], *v["ci"], v["p"]]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)  # NaN == NaN, inf == inf


@pytest.mark.parametrize("case", CASES, ids=[f"{c['kind']}{i}" for i, c in enumerate(CASES)])
def test_rbmi_reference(case):
    kind, v = case["kind"], num(case["value"])
    if kind == "quantile6":
        np.testing.assert_array_equal(quantile_type6(num(case["x"]), num(case["probs"])), v)  # bit-exact
    elif kind == "pval_percentile":
        assert pval_percentile(num(case["est"])) == tuple(v)  # bit-exact: R's uniroot iterates
    elif kind == "jackknife":
        _check(pool_jackknife(num(case["est"]), case["level"], case["alternative"]), v)
    elif kind == "bootstrap":
        _check(pool_bootstrap(num(case["est"]), case["level"], case["type"], case["alternative"]), v)
    elif kind == "rubin":
        v_com = None if case["v_com_na"] else num(case["v_com"])
        r = pool_rubin(num(case["est"]), num(case["se"]), v_com, case["level"], case["alternative"])
        _check(r, v)
        assert r.df == pytest.approx(v["df"], rel=1e-12)
        assert r.se**2 == pytest.approx(v["var_t"], rel=1e-12)
    elif kind == "bmlmi":
        r = pool_bmlmi(num(case["est"]), int(case["D"]), case["level"], case["alternative"])
        _check(r, v)
        assert bmlmi_estimates(num(case["est"]), int(case["D"]))[1:] == pytest.approx((v["var"], v["df"]))
    else:
        raise AssertionError(kind)
