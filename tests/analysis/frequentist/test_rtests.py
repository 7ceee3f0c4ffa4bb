"""Tests of analysis.frequentist.rtests against R (textbook values, R-made fixtures,
closed forms)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analysis.frequentist import exact_rank_null as ern
from analysis.frequentist import rtests as rt
from analysis.frequentist.exact_rank_null import psignrank, pwilcox, qsignrank, qwilcox
from analysis.frequentist.r_numerics import qnorm, uniroot
from analysis.frequentist.rtests import (
    TestResult,
    t_test_one_sample,
    t_test_paired,
    t_test_welch,
    wilcoxon_rank_sum,
    wilcoxon_signed_rank,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rtests_reference.json"
RTOL = 1e-6

# Hollander & Wolfe (1973), used in R's ?wilcox.test
HW_X = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
HW_Y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
# ?wilcox.test two-sample example (permeability constants)
PERM_X = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
PERM_Y = [1.15, 0.88, 0.90, 0.74, 1.21]
# datasets::sleep, extra for group 1 and group 2
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


# --------------------------------------------------------------------------- textbook values


def test_wilcox_help_paired_greater():
    r = wilcoxon_signed_rank(HW_X, HW_Y, alternative="greater")
    assert r.statistic_name == "V"
    assert r.statistic == 40
    assert r.p_value == pytest.approx(0.01953125, rel=1e-12)  # R prints 0.01953
    assert r.method == "Wilcoxon signed rank exact test"
    assert r.exact is True
    # R: 95 percent CI 0.175 Inf, (pseudo)median 0.46
    assert r.conf_low == pytest.approx(0.175, rel=1e-12)
    assert r.conf_high == math.inf
    assert r.estimate == pytest.approx(0.46, rel=1e-12)


def test_wilcox_help_two_sample_greater():
    # R: W = 35, p-value = 0.1272; CI -0.08 Inf; difference in location 0.305
    r = wilcoxon_rank_sum(PERM_X, PERM_Y, alternative="greater")
    assert r.statistic_name == "W"
    assert r.statistic == 35
    assert r.p_value == pytest.approx(0.1272061272061272, rel=1e-12)
    assert r.method == "Wilcoxon rank sum exact test"
    assert r.conf_low == pytest.approx(-0.08, rel=1e-12)
    assert r.estimate == pytest.approx(0.305, rel=1e-12)
    assert r.n == (10, 5)


def test_sleep_paired_t():
    r = t_test_paired(SLEEP_1, SLEEP_2)
    assert r.method == "Paired t-test"
    # full-precision values printed by R 4.2.2 (options(digits = 17))
    assert r.statistic == pytest.approx(-4.0621276833820366, rel=1e-12)
    assert r.df == 9
    assert r.p_value == pytest.approx(0.0028328901973842702, rel=1e-9)
    assert r.estimate == pytest.approx(-1.58, rel=1e-12)
    assert r.conf_low == pytest.approx(-2.4598857632769824, rel=1e-12)
    assert r.conf_high == pytest.approx(-0.7001142367230175, rel=1e-12)
    assert (r.statistic, round(r.p_value, 6)) == (pytest.approx(-4.0621, abs=1e-4), 0.002833)


def test_sleep_welch_t():
    # t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939
    r = t_test_welch(SLEEP_1, SLEEP_2)
    assert r.method == "Welch Two Sample t-test"
    assert r.statistic == pytest.approx(-1.860813467486853, rel=1e-12)
    assert r.df == pytest.approx(17.776473516178498, rel=1e-12)
    assert r.p_value == pytest.approx(0.079394140187358173, rel=1e-9)
    assert r.estimate == pytest.approx(-1.58, rel=1e-12)
    assert r.conf_low == pytest.approx(-3.3654832307117104, rel=1e-12)
    assert r.conf_high == pytest.approx(0.20548323071171018, rel=1e-12)


def test_sleep_paired_wilcox_ties_and_zero():
    # wilcox.test(sleep1, sleep2, paired=TRUE): V = 0, p-value = 0.009091 + warnings
    r = wilcoxon_signed_rank(SLEEP_1, SLEEP_2)
    assert r.statistic == 0
    assert r.p_value == pytest.approx(0.0090906980159250559, rel=1e-9)
    assert r.method == "Wilcoxon signed rank test with continuity correction"
    assert r.exact is False
    assert r.ties is True
    assert r.n_zero_dropped == 1
    assert r.n == (9,)
    assert "cannot compute exact p-value with ties" in r.note
    assert "cannot compute exact p-value with zeroes" in r.note


# --------------------------------------------------------------------------- closed forms


def test_psignrank_closed_form():
    # P(V <= 3 | n = 8): subsets of {1..8} with sum <= 3: {}, {1}, {2}, {3}, {1,2}
    assert psignrank(3, 8) == pytest.approx(5 / 256, rel=1e-14)
    assert 2 * psignrank(5, 9) == pytest.approx(2 * 10 / 512, rel=1e-14)
    assert psignrank(36, 8) == 1.0
    assert psignrank(-1, 8) == 0.0
    assert psignrank(32, 8, lower_tail=False) == pytest.approx(5 / 256, rel=1e-14)
    # full distribution sums to 2^n
    assert ern._signrank_counts(10).sum() == 2**10


def _sr_data(n: int, v: int) -> np.ndarray:
    """Differences 1..n with signs chosen so that W+ = v (greedy from the top)."""
    ranks = np.arange(1, n + 1, dtype=float)
    sign = -np.ones(n)
    rest = v
    for k in range(n, 0, -1):
        if k <= rest:
            sign[k - 1] = 1
            rest -= k
    assert rest == 0
    return ranks * sign


@pytest.mark.parametrize(("n", "v", "p"), [(8, 3, 2 * 5 / 256), (9, 5, 2 * 10 / 512), (8, 33, 2 * 5 / 256)])
def test_exact_signed_rank_p_closed_form(n, v, p):
    r = wilcoxon_signed_rank(_sr_data(n, v))
    assert r.statistic == v
    assert r.exact is True
    assert r.p_value == pytest.approx(p, rel=1e-12)


def test_exact_rank_sum_closed_form():
    # x entirely above y, n1 = 3, n2 = 4: W = 12, two-sided p = 2 / choose(7, 3)
    r = wilcoxon_rank_sum([10, 11, 12], [1, 2, 3, 4])
    assert r.statistic == 12
    assert r.p_value == pytest.approx(2 / 35, rel=1e-12)
    assert pwilcox(0, 3, 4) == pytest.approx(1 / 35, rel=1e-14)
    assert ern._wilcox_counts(3, 4).sum() == math.comb(7, 3)


def test_quantiles_match_r():
    # qsignrank(0.025, 9) = 6, qsignrank(0.025, 20) = 53, qwilcox(0.025, 10, 5) = 9
    assert qsignrank(0.025, 9) == 6
    assert qsignrank(0.025, 20) == 53
    assert qwilcox(0.025, 10, 5) == 9
    assert qwilcox(0.975, 10, 5) == 41


def test_qnorm_is_r_bitwise():
    # sprintf("%.17g", qnorm(c(0.025, 0.005, 0.1), lower.tail = ...)) in R 4.2.2
    assert qnorm(0.025, lower=False) == 1.9599639845400538
    assert qnorm(0.005) == -2.5758293035489
    assert qnorm(0.1) == -1.2815515655446008


def test_statistic_is_w_plus_not_scipy_min():
    d = [1.5, -0.2, 2.3, 4.1, -0.7, 3.3, 0.9]
    r = wilcoxon_signed_rank(d)
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    assert r.statistic == ranks[np.array(d) > 0].sum()  # W+ = 24, scipy would report 4


# --------------------------------------------------------------------------- R fixtures


def _num(v):
    if v is None:
        return None
    if v == "NA":
        return math.nan
    return float(v)


def _vec(v):
    return None if v is None else np.array([_num(a) for a in v], dtype=float)


_REF = json.loads(FIXTURES.read_text())
_CASES = _REF["cases"]


def _call(case):
    ds = _REF["datasets"][case["dataset"]]
    x, y = _vec(ds["x"]), _vec(ds["y"])
    args = dict(case["args"])
    fun = getattr(rt, case["fun"])
    if case["fun"] == "t_test_one_sample":
        return fun(x, **args)
    if case["fun"] == "wilcoxon_signed_rank" and ds["kind"] == "one":
        return fun(x, **args)
    return fun(x, y, **args)


def _close(got, exp, what, cid):
    if exp is None:
        assert got is None, f"{cid}: {what} should be None, got {got}"
        return
    if math.isnan(exp):
        assert got is not None and math.isnan(got), f"{cid}: {what} {got} != NaN"
        return
    if math.isinf(exp):
        assert got == exp, f"{cid}: {what} {got} != {exp}"
        return
    assert got == pytest.approx(exp, rel=RTOL, abs=1e-12), f"{cid}: {what} {got!r} != R {exp!r}"


def test_fixture_sanity():
    assert _REF["r_version"].startswith("R version 4.")
    assert len(_CASES) >= 150
    kinds = {d["kind"] for d in _REF["datasets"].values()}
    assert kinds == {"paired", "one", "two"}


@pytest.mark.parametrize("case", _CASES, ids=[c["id"] for c in _CASES])
def test_against_r(case):
    exp = case["expected"]
    cid = case["id"]
    assert "error" not in exp, f"R failed on {cid}: {exp.get('error')}"
    res = _call(case)
    assert isinstance(res, TestResult)
    assert res.method == exp["method"], cid
    assert res.statistic_name == exp["statistic_name"]
    for field in ("statistic", "df", "p_value", "estimate", "conf_low", "conf_high", "conf_level"):
        _close(getattr(res, field), _num(exp.get(field)), field, cid)
    # R's warnings are all reported in note
    for w in exp["warnings"]:
        assert w in res.note, f"{cid}: R warned {w!r}, note is {res.note!r}"
    if not exp["warnings"]:
        assert "not achievable" not in res.note and "cannot" not in res.note
    if exp.get("estimate_name") and case["fun"] != "t_test_welch":
        assert res.estimate_name == exp["estimate_name"]


# --------------------------------------------------------------------------- NaN handling, errors, misc


def test_paired_nan_removed_and_reported():
    x = [1.0, np.nan, 2.5, 3.1, 0.2, 4.4, np.nan]
    y = [0.5, 1.0, np.nan, 1.1, 0.9, 2.0, 1.0]
    for f in (t_test_paired, wilcoxon_signed_rank):
        r = f(x, y)
        assert r.n == (4,)
        assert r.n_missing_removed == 3
        assert "3 incomplete pairs removed" in r.note


def test_two_sample_nan_removed_and_reported():
    r = wilcoxon_rank_sum([1.0, np.nan, 3.0, 4.0], [2.5, np.nan, 0.1])
    assert r.n == (3, 2)
    assert r.n_missing_removed == 2
    r = t_test_welch([1.0, np.nan, 3.0, 4.0], [2.5, 1.7, 0.1])
    assert r.n == (3, 3) and r.n_missing_removed == 1


@pytest.mark.parametrize(
    ("call", "msg"),
    [
        (lambda: wilcoxon_signed_rank([np.nan, np.nan]), "not enough (non-missing) 'x' observations"),
        (lambda: wilcoxon_signed_rank([1, 2], [1, np.nan, 3]), "'x' and 'y' must have the same length"),
        (lambda: wilcoxon_rank_sum([np.nan], [1, 2]), "not enough (non-missing) 'x' observations"),
        (lambda: wilcoxon_rank_sum([1, 2], [np.nan]), "not enough 'y' observations"),
        (lambda: t_test_one_sample([1.0]), "not enough 'x' observations"),
        (lambda: t_test_paired([1.0, np.nan], [2.0, 3.0]), "not enough 'x' observations"),
        (lambda: t_test_welch([1.0, 2.0], [3.0]), "not enough 'y' observations"),
        (lambda: t_test_one_sample([2.0, 2.0, 2.0]), "data are essentially constant"),
        (lambda: wilcoxon_signed_rank([1, 2, 3], alternative="two-sided"), "'alternative' must be"),
        (lambda: wilcoxon_rank_sum([1, 2], [3, 4], conf_level=1.5), "'conf.level' must be"),
    ],
)
def test_errors(call, msg):
    with pytest.raises(ValueError) as ei:
        call()
    assert msg in str(ei.value)
    assert "\n" not in str(ei.value)


def test_all_zero_differences_like_r():
    # R: V = 0, p-value = NA, CI NaN NaN with conf.level 0, estimate NaN
    r = wilcoxon_signed_rank([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert r.n == (0,) and r.n_zero_dropped == 3
    assert math.isnan(r.p_value)
    assert math.isnan(r.conf_low) and math.isnan(r.conf_high)


def test_to_dict_and_frozen():
    r = wilcoxon_rank_sum(PERM_X, PERM_Y)
    d = r.to_dict()
    assert d["statistic"] == 35 and d["n"] == [10, 5]
    assert set(d) >= {
        "method", "statistic_name", "statistic", "df", "p_value", "estimate", "estimate_name",
        "conf_low", "conf_high", "conf_level", "exact", "n", "n_zero_dropped", "ties", "note",
    }  # fmt: skip
    json.dumps(d)
    with pytest.raises(AttributeError):
        r.statistic = 1.0  # type: ignore[misc]


def test_conf_int_false_gives_no_estimate():
    r = wilcoxon_signed_rank(HW_X, HW_Y, conf_int=False)
    assert r.estimate is None and r.conf_low is None and r.conf_level is None
    assert r.p_value == pytest.approx(0.0390625, rel=1e-12)


def test_uniroot_matches_r_on_smooth_function():
    # sprintf("%.17g", uniroot(function(x) x^3 - 2, c(0, 2))$root) in R 4.2.2: the
    # same iterates give the same (inexact, tol = eps^0.25) root to the last bit
    root = uniroot(lambda v: v**3 - 2, 0.0, 2.0)
    assert root == 1.2599338350608136


def test_all_zero_sample_gives_nan_like_r():
    # R: t.test(c(0, 0, 0)) -> t = NaN, p = NaN (stderr 0 is not < 10 eps * |0|)
    res = t_test_one_sample([0.0, 0.0, 0.0])
    assert np.isnan(res.statistic) and np.isnan(res.p_value) and res.estimate == 0.0
