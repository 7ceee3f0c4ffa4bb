"""Two-sample and paired tests that follow R's conventions exactly.

This module re-implements, with numpy/scipy only, the parts of R's ``stats``
package that the completers analysis uses: ``t.test`` (one-sample, paired,
Welch) and ``wilcox.test`` (signed-rank, one-sample or paired; rank-sum /
Mann-Whitney), including R's Hodges-Lehmann estimates and confidence
intervals.  The reference is R 4.2.2 (``stats:::wilcox.test.default`` and
``stats:::t.test.default`` as printed by that version); the test-suite checks
every statistic, p-value, estimate and confidence limit against numbers
produced by R (``tests/analysis/frequentist/fixtures/rtests_reference.R``).

Conventions (R's, and where they differ from :mod:`scipy.stats`)
-----------------------------------------------------------------
Statistics
    * Signed-rank: ``V`` = W+ = sum of the ranks of ``|d|`` over the positive
      differences ``d = x - y - mu`` (ties get average ranks).  scipy's
      ``wilcoxon`` reports ``min(W+, W-)`` for two-sided tests (W+ only for
      one-sided ones).
    * Rank-sum: ``W`` = sum of the ranks of ``x - mu`` in the pooled sample
      minus ``n1 (n1 + 1) / 2``, i.e. the Mann-Whitney U of ``x`` -- the same
      number as scipy's ``mannwhitneyu`` statistic; the exactness rule and
      the estimate/CI (absent in scipy) differ.
    * t-tests: ``t``; Welch uses the Welch-Satterthwaite ``df``.  These agree
      with ``scipy.stats.ttest_*`` up to rounding.
Zeros (signed-rank)
    Differences equal to zero (after subtracting ``mu``) are dropped before
    ranking (scipy's default ``zero_method="wilcox"`` does the same); their
    number is reported in ``n_zero_dropped`` and ``n`` counts only the
    non-zero differences.  A zero or a tie rules out the exact test.
Exactness (``exact=None``)
    * Signed-rank: exact when ``n < 50`` (``n`` after dropping zeros) *and*
      there are no ties among ``|d|`` *and* no zeros were dropped; otherwise
      the normal approximation.  With ``exact=True`` R still falls back to
      the normal approximation when there are ties or zeros and warns; those
      warnings are copied to ``note``.  scipy's ``method="auto"`` is exact
      for ``n <= 50`` and, with ties/zeros, uses permutations for
      ``n <= 13`` -- R (and this module) never does.
    * Rank-sum: exact when ``n1 < 50`` and ``n2 < 50`` and no ties in the
      pooled sample.  scipy's ``mannwhitneyu`` "auto" is exact only when a
      sample has ``<= 8`` observations.
    These are the rules of R 4.2.2 (``stats:::wilcox.test.default`` of the R
    installed when the fixtures were made; ``r_version`` in the fixture
    JSON).  Other R versions may differ in such details; regenerate the
    fixtures with the R script to check.
Normal approximation
    ``z = (S - E[S] - CORRECTION) / SIGMA`` with the tie-corrected variance
    (``- sum(t^3 - t) / 48`` for the signed-rank test, ``- sum(t^3 - t) /
    ((N)(N - 1))`` inside the bracket for the rank-sum test).  The continuity
    correction (``correct=True``, R's default; scipy's ``wilcoxon`` defaults
    to ``correction=False``) is ``sign(z) * 0.5`` for two-sided tests,
    ``+0.5`` for ``"greater"`` and ``-0.5`` for ``"less"``.  The two-sided
    p-value is ``2 * min(P(Z <= z), P(Z >= z))``.  Alternatives are spelled
    as in R: ``"two.sided"`` (not scipy's ``"two-sided"``), ``"less"``,
    ``"greater"``.
Exact p-values
    Two-sided exact p-values are ``min(1, 2 * P(S <= s))`` or
    ``min(1, 2 * P(S >= s))`` depending on the side of the null mean, with the
    distribution functions evaluated by the same summation as R's
    ``psignrank`` / ``pwilcox``.
Estimates and confidence intervals
    * Exact case: the Hodges-Lehmann estimate is the median of the Walsh
      averages (signed-rank) or of all pairwise differences ``x_i - y_j``
      (rank-sum); the confidence limits are order statistics of those
      values picked with ``qsignrank`` / ``qwilcox`` exactly as R does
      (including R's adjustment of ``conf_level`` when the requested level
      is not achievable).
    * Normal-approximation case: R inverts the (continuity- and tie-
      corrected) standardised statistic with ``uniroot(tol = 1e-4)``, and the
      estimate is the root of the *uncorrected* statistic.  Because the
      statistic is a step function of the shift, the answer depends on the
      exact iterates of the root finder; this module ports R's C routine
      ``R_zeroin2`` (Brent's method), and R's ``qnorm`` (AS 241; scipy's
      ``ndtri`` differs in the last bits), so that the same iterates and
      therefore the same numbers are obtained.
Missing values
    NaNs are removed (pairwise for paired tests, i.e. R's ``complete.cases``);
    unlike R, the number removed is reported in ``n_missing_removed`` and in
    ``note``.  The sample sizes in ``n`` are those actually used.
Errors
    Too few observations raise ``ValueError`` with R's message, e.g.
    ``"not enough (non-missing) 'x' observations"``.

Nothing is printed or warned: R's warnings go verbatim into
``TestResult.note``, together with the NaN-removal count and, when an exact
test was requested (or defaulted to) but ties/zeros prevented it, which
approximation was used instead.

Agreement with R (fixtures of R 4.2.2)
--------------------------------------
Wilcoxon statistics, estimates, confidence limits and achieved confidence
levels are identical to R's to the last bit on all fixtures (including the
root-finder based approximate intervals); exact p-values too, and normal-
approximation p-values agree to ~1e-15 relative (scipy's ``ndtr`` is not
R's ``pnorm``).  t-test results agree to ~1e-15 relative (up to ~1e-12 for
a confidence limit close to zero): numpy's mean/variance and scipy's t
distribution are not R's code.  The tests require 1e-6 relative.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as _st
from scipy.stats import rankdata

__all__ = [
    "TestResult",
    "t_test_one_sample",
    "t_test_paired",
    "t_test_welch",
    "wilcoxon_signed_rank",
    "wilcoxon_rank_sum",
    "psignrank",
    "qsignrank",
    "pwilcox",
    "qwilcox",
    "uniroot",
]

_ALTERNATIVES = ("two.sided", "less", "greater")
_DBL_EPS = np.finfo(float).eps
_TOL_ROOT = 1e-4  # R's default ``tol.root`` in wilcox.test


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class TestResult:
    """Result of a test, with R's names and conventions.

    Attributes
    ----------
    method : str
        R's ``method`` string, e.g. ``"Wilcoxon signed rank exact test"``.
    statistic_name : str
        ``"t"``, ``"V"`` (signed-rank) or ``"W"`` (rank-sum).
    statistic : float
        Value of the test statistic.
    df : float or None
        Degrees of freedom (t-tests only).
    p_value : float
        p-value for ``alternative``.
    estimate : float or None
        Mean, mean difference, difference in means, (pseudo)median or
        difference in location; ``None`` when not computed
        (``conf_int=False`` for the Wilcoxon tests, as in R).
    estimate_name : str or None
        R's name of the estimate.
    conf_low, conf_high : float or None
        Confidence limits (``-inf`` / ``inf`` for one-sided intervals).
    conf_level : float or None
        Confidence level actually achieved as R reports it (R lowers it when
        the requested level is not achievable).
    exact : bool or None
        Whether the exact null distribution was used (None for t-tests).
    n : tuple of int
        Sample sizes used: ``(n,)`` for one-sample and paired tests (for the
        signed-rank test: the number of non-zero differences), ``(n_x, n_y)``
        for two-sample tests.
    n_zero_dropped : int
        Zero differences removed by the signed-rank test.
    ties : bool
        Whether tied ranks occurred (``|d|`` for the signed-rank test, the
        pooled sample for the rank-sum test).
    note : str
        R's warnings (and removal of missing values), ``"; "``-separated;
        empty if none.
    alternative : str
        ``"two.sided"``, ``"less"`` or ``"greater"``.
    n_missing_removed : int
        Observations (or pairs, for paired tests) removed because of NaN.
    """

    method: str
    statistic_name: str
    statistic: float
    df: float | None
    p_value: float
    estimate: float | None
    estimate_name: str | None
    conf_low: float | None
    conf_high: float | None
    conf_level: float | None
    exact: bool | None
    n: tuple[int, ...]
    n_zero_dropped: int = 0
    ties: bool = False
    note: str = ""
    alternative: str = "two.sided"
    n_missing_removed: int = 0

    __test__ = False  # not a pytest test class despite the name

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a plain ``dict`` (``n`` as a list)."""
        d = asdict(self)
        d["n"] = list(self.n)
        return d


# --------------------------------------------------------------------------- helpers


def _check_alternative(alternative: str) -> str:
    if alternative not in _ALTERNATIVES:
        raise ValueError(
            f"'alternative' must be one of {_ALTERNATIVES}, got {alternative!r}"
        )
    return alternative


def _check_conf_level(conf_level: float) -> float:
    cl = float(conf_level)
    if not (math.isfinite(cl) and 0 < cl < 1):
        raise ValueError("'conf.level' must be a single number between 0 and 1")
    return cl


def _check_mu(mu: float) -> float:
    m = float(mu)
    if not math.isfinite(m):
        raise ValueError("'mu' must be a single number")
    return m


def _as_1d(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"'{name}' must be one-dimensional, got shape {arr.shape}")
    return arr


def _drop_nan(a: np.ndarray) -> tuple[np.ndarray, int]:
    ok = ~np.isnan(a)
    return a[ok], int(a.size - ok.sum())


def _paired_diff(x: Any, y: Any) -> tuple[np.ndarray, int]:
    xa, ya = _as_1d(x, "x"), _as_1d(y, "y")
    if xa.size != ya.size:
        raise ValueError("'x' and 'y' must have the same length")
    ok = ~(np.isnan(xa) | np.isnan(ya))
    return xa[ok] - ya[ok], int(xa.size - ok.sum())


def _div(a: float, b: float) -> float:
    """IEEE division as R does it (x/0 -> +-Inf, 0/0 -> NaN)."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _sign(v: float) -> float:
    return float(np.sign(v))


def _pnorm(z: float, lower: bool = True) -> float:
    return float(special.ndtr(z if lower else -z))


def _qnorm(p: float, lower: bool = True) -> float:
    """R's ``qnorm(p, lower.tail = lower)`` (Wichura's AS 241, as in R's nmath).

    scipy's ``ndtri`` differs from R in the last few bits; those bits feed
    the root finder of the approximate confidence intervals, so R's
    algorithm is reproduced here for 0 < p < 1.
    """
    if not 0 < p < 1:
        if p == 0:
            return -math.inf if lower else math.inf
        if p == 1:
            return math.inf if lower else -math.inf
        return math.nan
    p_ = p if lower else 0.5 - p + 0.5
    q = p_ - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return (
            q
            * (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r
                    + 67265.770927008700853) * r + 45921.953931549871457) * r
                  + 13731.693765509461125) * r + 1971.5909503065514427) * r
                + 133.14166789178437745) * r + 3.387132872796366608)
            / (((((((r * 5226.495278852854561 + 28729.085735721942674) * r
                    + 39307.89580009271061) * r + 21213.794301586595867) * r
                  + 5394.1960214247511077) * r + 687.1870074920579083) * r
                + 42.313330701600911252) * r + 1.0)
        )  # fmt: skip
    # r = min(p, 1 - p) computed on the original scale, as R does
    if q > 0:
        r = (0.5 - p + 0.5) if lower else p
    else:
        r = p_
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r += -1.6
        val = (
            (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r
                  + 0.24178072517745061177) * r + 1.27045825245236838258) * r
                + 3.64784832476320460504) * r + 5.7694972214606914055) * r
              + 4.6303378461565452959) * r + 1.42343711074968357734)
            / (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r
                    + 0.0151986665636164571966) * r + 0.14810397642748007459) * r
                  + 0.68976733498510000455) * r + 1.6763848301838038494) * r
                + 2.05319162663775882187) * r + 1.0)
        )  # fmt: skip
    else:
        r += -5.0
        val = (
            (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r
                  + 0.0012426609473880784386) * r + 0.026532189526576123093) * r
                + 0.29656057182850489123) * r + 1.7848265399172913358) * r
              + 5.4637849111641143699) * r + 6.6579046435011037772)
            / (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r
                    + 1.8463183175100546818e-5) * r + 7.868691311456132591e-4) * r
                  + 0.0148753612908506148525) * r + 0.13692988092273580531) * r
                + 0.59983220655588793769) * r + 1.0)
        )  # fmt: skip
    return -val if q < 0 else val


def _missing_note(k: int, paired: bool) -> str:
    if k == 0:
        return ""
    what = "incomplete pair" if paired else "missing value"
    return f"{k} {what}{'s' if k != 1 else ''} removed"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _signif2(v: float) -> float:
    return float(f"{v:.1e}") if v != 0 and math.isfinite(v) else v


# --------------------------------------------------------------------------- R's root finder


def _zeroin2(f, ax: float, bx: float, fa: float, fb: float, tol: float, maxit: int):
    """Port of R's ``R_zeroin2`` (src/library/stats/src/zeroin.c).

    Returns ``(root, iterations, estim_prec)``; iterations is -1 when
    ``maxit`` was reached.
    """
    a, b = ax, bx
    c, fc = a, fa
    it_left = maxit + 1
    if fa == 0.0:
        return a, 0, 0.0
    if fb == 0.0:
        return b, 0, 0.0
    while it_left:
        it_left -= 1
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * _DBL_EPS * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b, maxit - it_left, abs(c - b)
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b, -1, abs(c - b)


def uniroot(
    f,
    lower: float,
    upper: float,
    f_lower: float | None = None,
    f_upper: float | None = None,
    tol: float = _DBL_EPS**0.25,
    maxiter: int = 1000,
) -> float:
    """R's ``uniroot`` (``extendInt = "no"``): Brent's method as in ``R_zeroin2``.

    Parameters
    ----------
    f : callable
        Function of one float.
    lower, upper : float
        Bracketing interval, ``lower < upper``.
    f_lower, f_upper : float, optional
        ``f(lower)``, ``f(upper)`` if already known.
    tol : float
        Convergence tolerance (R's default ``.Machine$double.eps^0.25``).
    maxiter : int
        Maximum number of iterations.

    Returns
    -------
    float
        The root, as R's ``uniroot(...)$root``.

    Raises
    ------
    ValueError
        If ``lower >= upper``, an end value is NaN, or the end values do not
        have opposite signs.
    """
    if not lower < upper:
        raise ValueError("lower < upper  is not fulfilled")
    fl = f(lower) if f_lower is None else f_lower
    fu = f(upper) if f_upper is None else f_upper
    if math.isnan(fl):
        raise ValueError("f.lower = f(lower) is NA")
    if math.isnan(fu):
        raise ValueError("f.upper = f(upper) is NA")
    if _sign(fl) * _sign(fu) > 0:
        raise ValueError("f() values at end points not of opposite sign")
    root, _, _ = _zeroin2(f, lower, upper, fl, fu, tol, maxiter)
    return root


# --------------------------------------------------------------------------- exact distributions


@lru_cache(maxsize=256)
def _signrank_counts(n: int) -> np.ndarray:
    """Number of subsets of {1..n} with each sum 0..n(n+1)/2 (float, as R's csignrank)."""
    u = n * (n + 1) // 2
    c = np.zeros(u + 1, dtype=object)
    c[0] = 1
    top = 0
    for k in range(1, n + 1):
        c[k : top + k + 1] = c[k : top + k + 1] + c[0 : top + 1]
        top += k
    return np.array([float(v) for v in c])


@lru_cache(maxsize=256)
def _wilcox_counts(m: int, n: int) -> np.ndarray:
    """Counts of the Mann-Whitney U statistic (coefficients of the q-binomial)."""
    # [m+n choose m]_q built up as prod_{i=1..m} (1 - q^{n+i}) / (1 - q^i)
    size = m * n + 1
    c = np.zeros(size, dtype=object)
    c[0] = 1
    top = 0  # current degree
    for i in range(1, m + 1):
        a = n + i
        # multiply by (1 - q^a)
        newtop = top + a
        d = np.zeros(newtop + 1, dtype=object)
        d[: top + 1] = c[: top + 1]
        d[a : newtop + 1] = d[a : newtop + 1] - c[: top + 1]
        # divide by (1 - q^i): c_k = d_k + c_{k-i}
        for r in range(i):
            d[r::i] = np.cumsum(d[r::i])
        top = newtop - i
        c = np.zeros(size, dtype=object)
        c[: top + 1] = d[: top + 1]
    return np.array([float(v) for v in c])


def _r_choose(nn: int, k: int) -> float:
    # R's choose() for integer arguments: exact for k < 30 (after symmetry),
    # else round(exp(lfastchoose)).  math.comb rounded to double is within
    # an ulp of that and exact in the first case.
    return float(math.comb(nn, k))


def psignrank(q: float, n: int, lower_tail: bool = True) -> float:
    """R's ``psignrank(q, n, lower.tail)`` (same summation order as R)."""
    n = int(math.floor(n + 0.5))
    if n <= 0:
        return math.nan
    x = math.floor(q + 1e-7)
    u = n * (n + 1) / 2
    if x < 0:
        return 0.0 if lower_tail else 1.0
    if x >= u:
        return 1.0 if lower_tail else 0.0
    w = _signrank_counts(n)
    f = math.exp(-n * math.log(2.0))
    p = 0.0
    if x <= n * (n + 1) / 4:
        for i in range(int(x) + 1):
            p += w[i] * f
    else:
        x = u - x
        for i in range(int(math.ceil(x))):
            p += w[i] * f
        lower_tail = not lower_tail
    return p if lower_tail else 0.5 - p + 0.5


def qsignrank(p: float, n: int) -> int:
    """R's ``qsignrank(p, n)`` (lower tail)."""
    n = int(math.floor(n + 0.5))
    if p == 0:
        return 0
    if p == 1:
        return n * (n + 1) // 2
    w = _signrank_counts(n)
    f = math.exp(-n * math.log(2.0))
    acc = 0.0
    q = 0
    if p <= 0.5:
        x = p - 10 * _DBL_EPS
        while True:
            acc += w[q] * f
            if acc >= x:
                break
            q += 1
    else:
        x = 1 - p + 10 * _DBL_EPS
        while True:
            acc += w[q] * f
            if acc > x:
                q = n * (n + 1) // 2 - q
                break
            q += 1
    return q


def pwilcox(q: float, m: int, n: int, lower_tail: bool = True) -> float:
    """R's ``pwilcox(q, m, n, lower.tail)`` (same summation order as R)."""
    m = int(math.floor(m + 0.5))
    n = int(math.floor(n + 0.5))
    if m <= 0 or n <= 0:
        return math.nan
    x = math.floor(q + 1e-7)
    if x < 0:
        return 0.0 if lower_tail else 1.0
    if x >= m * n:
        return 1.0 if lower_tail else 0.0
    w = _wilcox_counts(min(m, n), max(m, n))
    c = _r_choose(m + n, n)
    p = 0.0
    if x <= m * n / 2:
        for i in range(int(x) + 1):
            p += w[i] / c
    else:
        x = m * n - x
        for i in range(int(math.ceil(x))):
            p += w[i] / c
        lower_tail = not lower_tail
    return p if lower_tail else 0.5 - p + 0.5


def qwilcox(p: float, m: int, n: int) -> int:
    """R's ``qwilcox(p, m, n)`` (lower tail)."""
    m = int(math.floor(m + 0.5))
    n = int(math.floor(n + 0.5))
    if p == 0:
        return 0
    if p == 1:
        return m * n
    w = _wilcox_counts(min(m, n), max(m, n))
    c = _r_choose(m + n, n)
    acc = 0.0
    q = 0
    if p <= 0.5:
        x = p - 10 * _DBL_EPS
        while True:
            acc += w[q] / c
            if acc >= x:
                break
            q += 1
    else:
        x = 1 - p + 10 * _DBL_EPS
        while True:
            acc += w[q] / c
            if acc > x:
                q = m * n - q
                break
            q += 1
    return q


def _tie_sum(ranks: np.ndarray) -> float:
    """``sum(NTIES^3 - NTIES)`` with ``NTIES <- table(ranks)``."""
    if ranks.size == 0:
        return 0.0
    _, counts = np.unique(ranks, return_counts=True)
    t = counts.astype(float)
    return float(np.sum(t**3 - t))


def _norm_p(z: float, alternative: str) -> float:
    if math.isnan(z):
        return math.nan
    if alternative == "less":
        return _pnorm(z)
    if alternative == "greater":
        return _pnorm(z, lower=False)
    return 2 * min(_pnorm(z), _pnorm(z, lower=False))


def _correction(z: float, alternative: str, correct: bool) -> float:
    if not correct:
        return 0.0
    if alternative == "two.sided":
        return _sign(z) * 0.5
    return 0.5 if alternative == "greater" else -0.5


# --------------------------------------------------------------------------- t-tests


def _t_finish(
    tstat: float, df: float, stderr: float, mu: float, alternative: str, conf_level: float
) -> tuple[float, float, float]:
    t = _st.t
    if alternative == "less":
        pval = float(t.cdf(tstat, df))
        lo, hi = -math.inf, tstat + float(t.ppf(conf_level, df))
    elif alternative == "greater":
        pval = float(t.sf(tstat, df))
        lo, hi = tstat - float(t.ppf(conf_level, df)), math.inf
    else:
        pval = 2 * float(t.cdf(-abs(tstat), df))
        alpha = 1 - conf_level
        q = float(t.ppf(1 - alpha / 2, df))
        lo, hi = tstat - q, tstat + q
    return pval, mu + lo * stderr, mu + hi * stderr


def _t_one(
    x: np.ndarray,
    mu: float,
    conf_level: float,
    alternative: str,
    paired: bool,
    n_missing: int,
) -> TestResult:
    nx = x.size
    if nx < 2:
        raise ValueError("not enough 'x' observations")
    mx = float(np.mean(x))
    vx = float(np.var(x, ddof=1))
    df = float(nx - 1)
    stderr = math.sqrt(vx / nx)
    if stderr < 10 * _DBL_EPS * abs(mx):
        raise ValueError("data are essentially constant")
    tstat = _div(mx - mu, stderr)  # 0/0 -> NaN as in R
    pval, lo, hi = _t_finish(tstat, df, stderr, mu, alternative, conf_level)
    return TestResult(
        method="Paired t-test" if paired else "One Sample t-test",
        statistic_name="t",
        statistic=tstat,
        df=df,
        p_value=pval,
        estimate=mx,
        estimate_name="mean difference" if paired else "mean of x",
        conf_low=lo,
        conf_high=hi,
        conf_level=conf_level,
        exact=None,
        n=(nx,),
        note=_missing_note(n_missing, paired),
        alternative=alternative,
        n_missing_removed=n_missing,
    )


def t_test_one_sample(
    x: Any, mu: float = 0.0, conf_level: float = 0.95, alternative: str = "two.sided"
) -> TestResult:
    """One-sample t-test, as R ``t.test(x, mu = mu)``.

    Parameters
    ----------
    x : array_like
        Sample; NaNs are removed (count in ``n_missing_removed``).
    mu : float
        Hypothesised mean.
    conf_level : float
        Confidence level of the interval for the mean.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``statistic`` t, ``df`` n - 1, ``estimate`` the mean.

    Raises
    ------
    ValueError
        Fewer than 2 non-missing observations ("not enough 'x' observations")
        or essentially constant data.
    """
    alternative = _check_alternative(alternative)
    conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    xa, k = _drop_nan(_as_1d(x, "x"))
    return _t_one(xa, mu, conf_level, alternative, False, k)


def t_test_paired(
    x: Any,
    y: Any,
    mu: float = 0.0,
    conf_level: float = 0.95,
    alternative: str = "two.sided",
) -> TestResult:
    """Paired t-test, as R ``t.test(x, y, paired = TRUE)``: one-sample on ``x - y``.

    Parameters
    ----------
    x, y : array_like
        Paired samples of equal length; incomplete pairs are removed (count in
        ``n_missing_removed``).
    mu : float
        Hypothesised mean difference.
    conf_level : float
        Confidence level.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``estimate`` is the mean difference ``mean(x - y)``.

    Raises
    ------
    ValueError
        Unequal lengths, fewer than 2 complete pairs, constant differences.
    """
    alternative = _check_alternative(alternative)
    conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    d, k = _paired_diff(x, y)
    return _t_one(d, mu, conf_level, alternative, True, k)


def t_test_welch(
    x: Any,
    y: Any,
    mu: float = 0.0,
    conf_level: float = 0.95,
    alternative: str = "two.sided",
) -> TestResult:
    """Welch two-sample t-test, as R ``t.test(x, y)`` (``var.equal = FALSE``).

    Parameters
    ----------
    x, y : array_like
        Independent samples; NaNs removed from each.
    mu : float
        Hypothesised difference in means.
    conf_level : float
        Confidence level.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``estimate`` is ``mean(x) - mean(y)`` (R reports the two means
        separately; their difference is what the interval is for),
        ``df`` the Welch-Satterthwaite degrees of freedom.

    Raises
    ------
    ValueError
        Fewer than 2 observations in either sample, or constant data.
    """
    alternative = _check_alternative(alternative)
    conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    xa, kx = _drop_nan(_as_1d(x, "x"))
    ya, ky = _drop_nan(_as_1d(y, "y"))
    nx, ny = xa.size, ya.size
    if nx < 2:
        raise ValueError("not enough 'x' observations")
    if ny < 2:
        raise ValueError("not enough 'y' observations")
    mx, my = float(np.mean(xa)), float(np.mean(ya))
    vx, vy = float(np.var(xa, ddof=1)), float(np.var(ya, ddof=1))
    sx = math.sqrt(vx / nx)
    sy = math.sqrt(vy / ny)
    stderr = math.sqrt(sx**2 + sy**2)
    df = _div(stderr**4, sx**4 / (nx - 1) + sy**4 / (ny - 1))
    if stderr < 10 * _DBL_EPS * max(abs(mx), abs(my)):
        raise ValueError("data are essentially constant")
    tstat = _div(mx - my - mu, stderr)
    pval, lo, hi = _t_finish(tstat, df, stderr, mu, alternative, conf_level)
    return TestResult(
        method="Welch Two Sample t-test",
        statistic_name="t",
        statistic=tstat,
        df=df,
        p_value=pval,
        estimate=mx - my,
        estimate_name="difference in means",
        conf_low=lo,
        conf_high=hi,
        conf_level=conf_level,
        exact=None,
        n=(nx, ny),
        note=_missing_note(kx + ky, False),
        alternative=alternative,
        n_missing_removed=kx + ky,
    )


# --------------------------------------------------------------------------- signed rank


def _sr_W(x: np.ndarray, d: float, correct: bool, alternative: str) -> float:
    """R's ``W(d)`` closure of the signed-rank CI code."""
    xd = x - d
    xd = xd[xd != 0]
    nx = xd.size
    dr = rankdata(np.abs(xd))
    zd = float(np.sum(dr[xd > 0])) - nx * (nx + 1) / 4
    sigma = math.sqrt(nx * (nx + 1) * (2 * nx + 1) / 24 - _tie_sum(dr) / 48)
    corr = _correction(zd, alternative, correct)
    return _div(zd - corr, sigma)


def wilcoxon_signed_rank(
    x: Any,
    y: Any = None,
    mu: float = 0.0,
    exact: bool | None = None,
    correct: bool = True,
    conf_int: bool = True,
    conf_level: float = 0.95,
    alternative: str = "two.sided",
) -> TestResult:
    """Wilcoxon signed-rank test, as R ``wilcox.test(x, y, paired = TRUE, ...)``.

    With ``y=None`` it is the one-sample test of ``x`` against ``mu``
    (R ``wilcox.test(x, mu = mu)``).

    Parameters
    ----------
    x : array_like
        Sample, or first member of the pairs.
    y : array_like, optional
        Second member of the pairs (same length as ``x``); the test is on
        ``x - y``.  Incomplete pairs are removed and counted.
    mu : float
        Hypothesised location (of ``x - y``).
    exact : bool or None
        Use the exact null distribution.  ``None``: exact when the number of
        non-zero differences is < 50; in any case the exact distribution is
        only used without ties and zeros (R 4.2 rule).
    correct : bool
        Continuity correction in the normal approximation.
    conf_int : bool
        Compute the Hodges-Lehmann (pseudo)median and its confidence interval.
    conf_level : float
        Confidence level.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``statistic`` V (= W+), ``estimate`` the (pseudo)median.

    Raises
    ------
    ValueError
        No non-missing observation ("not enough (non-missing) 'x'
        observations"), unequal lengths, invalid arguments.
    """
    alternative = _check_alternative(alternative)
    if conf_int:
        conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    if y is not None:
        d, n_missing = _paired_diff(x, y)
        paired = True
    else:
        d, n_missing = _drop_nan(_as_1d(x, "x"))
        paired = False
    if d.size < 1:
        raise ValueError("not enough (non-missing) 'x' observations")
    notes = [_missing_note(n_missing, paired)]

    xs = d - mu
    zeroes = bool(np.any(xs == 0))
    n_zero = int(np.sum(xs == 0))
    if zeroes:
        xs = xs[xs != 0]
    n = xs.size
    if exact is None:
        exact = n < 50
    r = rankdata(np.abs(xs))
    stat = float(np.sum(r[xs > 0]))
    ties = bool(np.unique(r).size != r.size)
    method = "Wilcoxon signed rank test"
    est = lo = hi = None
    est_name = None
    cl_out: float | None = conf_level if conf_int else None

    if exact and not ties and not zeroes:
        method = "Wilcoxon signed rank exact test"
        used_exact = True
        if alternative == "two.sided":
            if stat > n * (n + 1) / 4:
                p = psignrank(stat - 1, n, lower_tail=False)
            else:
                p = psignrank(stat, n)
            pval = min(2 * p, 1.0)
        elif alternative == "greater":
            pval = psignrank(stat - 1, n, lower_tail=False)
        else:
            pval = psignrank(stat, n)
        if conf_int:
            xx = xs + mu
            alpha = 1 - conf_level
            iu = np.triu_indices(n)
            diffs = np.sort(np.add.outer(xx, xx)[iu]) / 2
            tot = n * (n + 1) // 2
            if alternative == "two.sided":
                qu = qsignrank(alpha / 2, n)
                qu = qu if qu != 0 else 1
                ql = tot - qu
                achieved = 2 * psignrank(qu - 1, n)
                lo, hi = float(diffs[qu - 1]), float(diffs[ql])
            elif alternative == "greater":
                qu = qsignrank(alpha, n)
                qu = qu if qu != 0 else 1
                achieved = psignrank(qu - 1, n)
                lo, hi = float(diffs[qu - 1]), math.inf
            else:
                qu = qsignrank(alpha, n)
                qu = qu if qu != 0 else 1
                ql = tot - qu
                achieved = psignrank(qu - 1, n)
                lo, hi = -math.inf, float(diffs[ql])
            if achieved - alpha > alpha / 2:
                notes.append("requested conf.level not achievable")
                cl_out = 1 - _signif2(achieved)
            est = float(np.median(diffs))
            est_name = "(pseudo)median"
    else:
        used_exact = False
        z = stat - n * (n + 1) / 4
        sigma = math.sqrt(n * (n + 1) * (2 * n + 1) / 24 - _tie_sum(r) / 48)
        corr = _correction(z, alternative, correct)
        if correct:
            method += " with continuity correction"
        z = _div(z - corr, sigma)
        pval = _norm_p(z, alternative)
        if conf_int:
            xx = xs + mu
            alpha = 1 - conf_level
            wmumax = math.nan
            if n > 0:
                mumin, mumax = float(np.min(xx)), float(np.max(xx))
                wmumin = _sr_W(xx, mumin, correct, alternative)
                if math.isfinite(wmumin):
                    wmumax = _sr_W(xx, mumax, correct, alternative)
                else:
                    notes.append(
                        "cannot compute confidence interval when all observations are zero or tied"
                    )
            if n == 0 or not math.isfinite(wmumax):
                lo = -math.inf if alternative == "less" else math.nan
                hi = math.inf if alternative == "greater" else math.nan
                cl_out = 0.0
                if n > 0:
                    est, est_name = (mumin + mumax) / 2, "midrange"
                else:
                    est, est_name = math.nan, "(pseudo)median"
            else:

                def root(zq: float) -> float:
                    return uniroot(
                        lambda dd: _sr_W(xx, dd, correct, alternative) - zq,
                        mumin,
                        mumax,
                        f_lower=wmumin - zq,
                        f_upper=wmumax - zq,
                        tol=_TOL_ROOT,
                    )

                not_achievable = False
                if alternative == "two.sided":
                    while True:
                        mindiff = wmumin - _qnorm(alpha / 2, lower=False)
                        maxdiff = wmumax - _qnorm(alpha / 2)
                        if mindiff < 0 or maxdiff > 0:
                            alpha *= 2
                        else:
                            break
                    if alpha >= 1 or 1 - conf_level < alpha * 0.75:
                        cl_out = 1 - min(1.0, alpha)
                        not_achievable = True
                    if alpha < 1:
                        lo = root(_qnorm(alpha / 2, lower=False))
                        hi = root(_qnorm(alpha / 2))
                    else:
                        lo = hi = float(np.median(xx))
                elif alternative == "greater":
                    while True:
                        mindiff = wmumin - _qnorm(alpha, lower=False)
                        if mindiff < 0:
                            alpha *= 2
                        else:
                            break
                    if alpha >= 1 or 1 - conf_level < alpha * 0.75:
                        cl_out = 1 - min(1.0, alpha)
                        not_achievable = True
                    lo = root(_qnorm(alpha, lower=False)) if alpha < 1 else float(np.median(xx))
                    hi = math.inf
                else:
                    while True:
                        # R uses alpha/2 here (sic) and alpha below
                        maxdiff = wmumax - _qnorm(alpha / 2)
                        if maxdiff > 0:
                            alpha *= 2
                        else:
                            break
                    if alpha >= 1 or 1 - conf_level < alpha * 0.75:
                        cl_out = 1 - min(1.0, alpha)
                        not_achievable = True
                    lo = -math.inf
                    hi = root(_qnorm(alpha)) if alpha < 1 else float(np.median(xx))
                if not_achievable:
                    notes.append("requested conf.level not achievable")
                est = uniroot(
                    lambda dd: _sr_W(xx, dd, False, alternative), mumin, mumax, tol=_TOL_ROOT
                )
                est_name = "(pseudo)median"
        if exact and ties:
            notes.append("cannot compute exact p-value with ties")
            if conf_int:
                notes.append("cannot compute exact confidence interval with ties")
        if exact and zeroes:
            notes.append("cannot compute exact p-value with zeroes")
            if conf_int:
                notes.append("cannot compute exact confidence interval with zeroes")
        if exact and (ties or zeroes):
            notes.append(
                "normal approximation"
                + (" with continuity correction" if correct else "")
                + " used"
            )

    return TestResult(
        method=method,
        statistic_name="V",
        statistic=stat,
        df=None,
        p_value=float(pval),
        estimate=est,
        estimate_name=est_name,
        conf_low=lo,
        conf_high=hi,
        conf_level=cl_out,
        exact=used_exact,
        n=(n,),
        n_zero_dropped=n_zero,
        ties=ties,
        note=_join(*notes),
        alternative=alternative,
        n_missing_removed=n_missing,
    )


# --------------------------------------------------------------------------- rank sum


def _rs_W(x: np.ndarray, y: np.ndarray, d: float, correct: bool, alternative: str) -> float:
    """R's ``W(d)`` closure of the rank-sum CI code."""
    nx, ny = float(x.size), float(y.size)
    dr = rankdata(np.concatenate([x - d, y]))
    dz = float(np.sum(dr[: x.size])) - nx * (nx + 1) / 2 - nx * ny / 2
    corr = _correction(dz, alternative, correct)
    sigma = math.sqrt(
        (nx * ny / 12) * ((nx + ny + 1) - _tie_sum(dr) / ((nx + ny) * (nx + ny - 1)))
    )
    return _div(dz - corr, sigma)


def wilcoxon_rank_sum(
    x: Any,
    y: Any,
    mu: float = 0.0,
    exact: bool | None = None,
    correct: bool = True,
    conf_int: bool = True,
    conf_level: float = 0.95,
    alternative: str = "two.sided",
) -> TestResult:
    """Wilcoxon rank-sum (Mann-Whitney) test, as R ``wilcox.test(x, y, ...)``.

    Parameters
    ----------
    x, y : array_like
        Independent samples; NaNs removed from each (count reported).
    mu : float
        Hypothesised location shift of ``x`` relative to ``y``.
    exact : bool or None
        Use the exact null distribution.  ``None``: exact when both samples
        have fewer than 50 observations; never with ties (R rule).
    correct : bool
        Continuity correction in the normal approximation.
    conf_int : bool
        Compute the Hodges-Lehmann location shift and its confidence interval.
    conf_level : float
        Confidence level.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``statistic`` W (Mann-Whitney U of ``x``), ``estimate`` the
        difference in location.

    Raises
    ------
    ValueError
        No non-missing observation in ``x`` or ``y``, invalid arguments,
        or (approximate CI) all observations tied.
    """
    alternative = _check_alternative(alternative)
    if conf_int:
        conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    xa, kx = _drop_nan(_as_1d(x, "x"))
    ya, ky = _drop_nan(_as_1d(y, "y"))
    if xa.size < 1:
        raise ValueError("not enough (non-missing) 'x' observations")
    if ya.size < 1:
        raise ValueError("not enough 'y' observations")
    notes = [_missing_note(kx + ky, False)]
    r = rankdata(np.concatenate([xa - mu, ya]))
    nx, ny = float(xa.size), float(ya.size)
    if exact is None:
        exact = nx < 50 and ny < 50
    stat = float(np.sum(r[: xa.size])) - nx * (nx + 1) / 2
    ties = bool(np.unique(r).size != r.size)
    method = "Wilcoxon rank sum test"
    est = lo = hi = None
    est_name = None
    cl_out: float | None = conf_level if conf_int else None
    m_, n_ = xa.size, ya.size

    if exact and not ties:
        method = "Wilcoxon rank sum exact test"
        used_exact = True
        if alternative == "two.sided":
            if stat > nx * ny / 2:
                p = pwilcox(stat - 1, m_, n_, lower_tail=False)
            else:
                p = pwilcox(stat, m_, n_)
            pval = min(2 * p, 1.0)
        elif alternative == "greater":
            pval = pwilcox(stat - 1, m_, n_, lower_tail=False)
        else:
            pval = pwilcox(stat, m_, n_)
        if conf_int:
            alpha = 1 - conf_level
            diffs = np.sort(np.subtract.outer(xa, ya).ravel())
            tot = m_ * n_
            if alternative == "two.sided":
                qu = qwilcox(alpha / 2, m_, n_)
                qu = qu if qu != 0 else 1
                ql = tot - qu
                achieved = 2 * pwilcox(qu - 1, m_, n_)
                lo, hi = float(diffs[qu - 1]), float(diffs[ql])
            elif alternative == "greater":
                qu = qwilcox(alpha, m_, n_)
                qu = qu if qu != 0 else 1
                achieved = pwilcox(qu - 1, m_, n_)
                lo, hi = float(diffs[qu - 1]), math.inf
            else:
                qu = qwilcox(alpha, m_, n_)
                qu = qu if qu != 0 else 1
                ql = tot - qu
                achieved = pwilcox(qu - 1, m_, n_)
                lo, hi = -math.inf, float(diffs[ql])
            if achieved - alpha > alpha / 2:
                notes.append("Requested conf.level not achievable")
                cl_out = 1 - achieved
            est = float(np.median(diffs))
            est_name = "difference in location"
    else:
        used_exact = False
        z = stat - nx * ny / 2
        sigma = math.sqrt(
            (nx * ny / 12) * ((nx + ny + 1) - _tie_sum(r) / ((nx + ny) * (nx + ny - 1)))
        )
        corr = _correction(z, alternative, correct)
        if correct:
            method += " with continuity correction"
        z = _div(z - corr, sigma)
        pval = _norm_p(z, alternative)
        if conf_int:
            alpha = 1 - conf_level
            mumin = float(np.min(xa) - np.max(ya))
            mumax = float(np.max(xa) - np.min(ya))
            wmumin = _rs_W(xa, ya, mumin, correct, alternative)
            wmumax = _rs_W(xa, ya, mumax, correct, alternative)
            if math.isnan(wmumin) or math.isnan(wmumax):
                raise ValueError(
                    "cannot compute confidence interval when all observations are tied"
                )

            def root(zq: float) -> float:
                f_lower = wmumin - zq
                if f_lower <= 0:
                    return mumin
                f_upper = wmumax - zq
                if f_upper >= 0:
                    return mumax
                return uniroot(
                    lambda dd: _rs_W(xa, ya, dd, correct, alternative) - zq,
                    mumin,
                    mumax,
                    f_lower=f_lower,
                    f_upper=f_upper,
                    tol=_TOL_ROOT,
                )

            if alternative == "two.sided":
                lo = root(_qnorm(alpha / 2, lower=False))
                hi = root(_qnorm(alpha / 2))
            elif alternative == "greater":
                lo, hi = root(_qnorm(alpha, lower=False)), math.inf
            else:
                lo, hi = -math.inf, root(_qnorm(alpha))
            est = uniroot(
                lambda dd: _rs_W(xa, ya, dd, False, alternative), mumin, mumax, tol=_TOL_ROOT
            )
            est_name = "difference in location"
        if exact and ties:
            notes.append("cannot compute exact p-value with ties")
            if conf_int:
                notes.append("cannot compute exact confidence intervals with ties")
            notes.append(
                "normal approximation"
                + (" with continuity correction" if correct else "")
                + " used"
            )

    return TestResult(
        method=method,
        statistic_name="W",
        statistic=stat,
        df=None,
        p_value=float(pval),
        estimate=est,
        estimate_name=est_name,
        conf_low=lo,
        conf_high=hi,
        conf_level=cl_out,
        exact=used_exact,
        n=(m_, n_),
        n_zero_dropped=0,
        ties=ties,
        note=_join(*notes),
        alternative=alternative,
        n_missing_removed=kx + ky,
    )
