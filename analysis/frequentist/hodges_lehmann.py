r"""Hodges-Lehmann estimates and confidence intervals, as R's ``wilcox.test(conf.int = TRUE)``.

scipy's ``wilcoxon`` and ``mannwhitneyu`` give the tests but not these; this module follows R 4.2.2
(``stats:::wilcox.test.default``) line by line.

Exact case (the test used the exact null distribution)
    The estimate is the median of the Walsh averages :math:`(d_i + d_j)/2,\ i \le j` (signed-rank)
    or of all pairwise differences :math:`x_i - y_j` (rank-sum); the confidence limits are order
    statistics of those values picked with ``qsignrank`` / ``qwilcox``
    (:mod:`analysis.frequentist.exact_rank_null`), exactly as R does, including R's report of a
    lower achieved ``conf_level`` when the requested one is not achievable.
Normal-approximation case
    R inverts the (continuity- and tie-corrected) standardised statistic :math:`W(\delta)` of the
    data shifted by :math:`\delta` with ``uniroot(tol = 1e-4)``; the estimate is the root of the
    *uncorrected* statistic. Because :math:`W(\delta)` is a step function, the answer depends on
    the exact iterates of the root finder, so R's ``R_zeroin2`` and ``qnorm`` are used
    (:mod:`analysis.frequentist.r_numerics`) and the limits equal R's to the last bit.

With :math:`n` non-zero differences, the signed-rank statistic standardised at shift
:math:`\delta` is

.. math::

    W(\delta) = \frac{V(\delta) - n(n+1)/4 - c}{\sqrt{n(n+1)(2n+1)/24 - \sum(t^3 - t)/48}},

and the rank-sum one (sizes :math:`n_x, n_y`, :math:`N = n_x + n_y`)

.. math::

    W(\delta) = \frac{U(\delta) - n_x n_y/2 - c}
                     {\sqrt{\tfrac{n_x n_y}{12}\bigl(N + 1 - \sum(t^3 - t)/(N(N - 1))\bigr)}},

with :math:`t` the sizes of the tied groups and the continuity correction :math:`c` equal to
:math:`\operatorname{sign}(z)/2` (two-sided), :math:`+1/2` (``"greater"``), :math:`-1/2`
(``"less"``) or 0 (``correct=False``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from analysis.frequentist.exact_rank_null import psignrank, pwilcox, qsignrank, qwilcox
from analysis.frequentist.r_numerics import qnorm, uniroot

__all__ = ["HodgesLehmann", "signed_rank_interval", "rank_sum_interval"]

_TOL_ROOT = 1e-4  # R's default ``tol.root`` in wilcox.test


@dataclass(frozen=True)
class HodgesLehmann:
    """A Hodges-Lehmann estimate with its confidence interval, as R reports them.

    Attributes
    ----------
    estimate : float
        The (pseudo)median or difference in location (``"midrange"`` in R's degenerate case).
    estimate_name : str
        R's name of the estimate.
    conf_low, conf_high : float
        Confidence limits (``-inf`` / ``inf`` for one-sided intervals, NaN when undefined).
    conf_level : float
        Confidence level as R reports it (lowered when the requested one is not achievable).
    notes : tuple of str
        R's warnings about the interval.
    """

    estimate: float
    estimate_name: str
    conf_low: float
    conf_high: float
    conf_level: float
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- R's arithmetic


def _div(a: float, b: float) -> float:
    """IEEE division as R does it (x/0 -> +-Inf, 0/0 -> NaN)."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _tie_sum(ranks: np.ndarray) -> float:
    """``sum(NTIES^3 - NTIES)`` with ``NTIES <- table(ranks)``."""
    if ranks.size == 0:
        return 0.0
    _, counts = np.unique(ranks, return_counts=True)
    t = counts.astype(float)
    return float(np.sum(t**3 - t))


def _correction(z: float, alternative: str, correct: bool) -> float:
    if not correct:
        return 0.0
    if alternative == "two.sided":
        return float(np.sign(z)) * 0.5
    return 0.5 if alternative == "greater" else -0.5


def _signif2(v: float) -> float:
    """R's ``signif(v, 2)``."""
    return float(f"{v:.1e}") if v != 0 and math.isfinite(v) else v


def _exact_limits(values: np.ndarray, quantile: Callable[[float], int], cdf: Callable[[int], float],
                  conf_level: float, alternative: str) -> tuple[float, float, float]:
    """Order statistics of the sorted ``values`` picked with the null quantiles, and the achieved
    two-sided (or one-sided) error rate, as R's exact branch of ``wilcox.test``."""
    alpha = 1 - conf_level
    if alternative == "two.sided":
        qu = quantile(alpha / 2) or 1
        return float(values[qu - 1]), float(values[values.size - qu]), 2 * cdf(qu - 1)
    qu = quantile(alpha) or 1
    if alternative == "greater":
        return float(values[qu - 1]), math.inf, cdf(qu - 1)
    return -math.inf, float(values[values.size - qu]), cdf(qu - 1)


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


def _signed_rank_exact(xx: np.ndarray, conf_level: float, alternative: str) -> HodgesLehmann:
    n = xx.size
    walsh = np.sort(np.add.outer(xx, xx)[np.triu_indices(n)]) / 2
    lo, hi, achieved = _exact_limits(walsh, lambda p: qsignrank(p, n), lambda q: psignrank(q, n),
                                     conf_level, alternative)
    alpha = 1 - conf_level
    notes: tuple[str, ...] = ()
    if achieved - alpha > alpha / 2:
        notes = ("requested conf.level not achievable",)
        conf_level = 1 - _signif2(achieved)
    return HodgesLehmann(float(np.median(walsh)), "(pseudo)median", lo, hi, conf_level, notes)


def _signed_rank_normal(xx: np.ndarray, correct: bool, conf_level: float,
                        alternative: str) -> HodgesLehmann:
    n = xx.size
    alpha = 1 - conf_level
    notes: list[str] = []
    wmumax = math.nan
    if n > 0:
        mumin, mumax = float(np.min(xx)), float(np.max(xx))
        wmumin = _sr_W(xx, mumin, correct, alternative)
        if math.isfinite(wmumin):
            wmumax = _sr_W(xx, mumax, correct, alternative)
        else:
            notes.append("cannot compute confidence interval when all observations are zero or tied")
    if n == 0 or not math.isfinite(wmumax):
        lo = -math.inf if alternative == "less" else math.nan
        hi = math.inf if alternative == "greater" else math.nan
        if n > 0:
            return HodgesLehmann((mumin + mumax) / 2, "midrange", lo, hi, 0.0, tuple(notes))
        return HodgesLehmann(math.nan, "(pseudo)median", lo, hi, 0.0, tuple(notes))

    def root(zq: float) -> float:
        return uniroot(lambda dd: _sr_W(xx, dd, correct, alternative) - zq, mumin, mumax,
                       f_lower=wmumin - zq, f_upper=wmumax - zq, tol=_TOL_ROOT)

    # R doubles alpha until the requested quantiles lie within W's range at the data's extremes
    if alternative == "two.sided":
        while wmumin - qnorm(alpha / 2, lower=False) < 0 or wmumax - qnorm(alpha / 2) > 0:
            alpha *= 2
    elif alternative == "greater":
        while wmumin - qnorm(alpha, lower=False) < 0:
            alpha *= 2
    else:
        while wmumax - qnorm(alpha / 2) > 0:  # R uses alpha/2 here (sic) and alpha below
            alpha *= 2
    if alpha >= 1 or 1 - conf_level < alpha * 0.75:
        conf_level = 1 - min(1.0, alpha)
        notes.append("requested conf.level not achievable")
    median = float(np.median(xx))
    if alternative == "two.sided":
        lo, hi = ((root(qnorm(alpha / 2, lower=False)), root(qnorm(alpha / 2))) if alpha < 1
                  else (median, median))
    elif alternative == "greater":
        lo, hi = root(qnorm(alpha, lower=False)) if alpha < 1 else median, math.inf
    else:
        lo, hi = -math.inf, root(qnorm(alpha)) if alpha < 1 else median
    est = uniroot(lambda dd: _sr_W(xx, dd, False, alternative), mumin, mumax, tol=_TOL_ROOT)
    return HodgesLehmann(est, "(pseudo)median", lo, hi, conf_level, tuple(notes))


def signed_rank_interval(xx: np.ndarray, *, exact: bool, correct: bool, conf_level: float,
                         alternative: str) -> HodgesLehmann:
    """Hodges-Lehmann (pseudo)median and its interval, as R's one-sample / paired ``wilcox.test``.

    Parameters
    ----------
    xx : ndarray
        The non-zero differences ``x - y - mu`` with ``mu`` added back (R's ``x + mu`` after
        dropping zeros).
    exact : bool
        Whether the test used the exact null distribution (then the interval is exact too).
    correct : bool
        Continuity correction of the approximate interval.
    conf_level : float
        Requested confidence level.
    alternative : {"two.sided", "less", "greater"}
        Two-sided interval, or a one-sided bound.

    Returns
    -------
    HodgesLehmann
    """
    if exact:
        return _signed_rank_exact(xx, conf_level, alternative)
    return _signed_rank_normal(xx, correct, conf_level, alternative)


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


def _rank_sum_exact(x: np.ndarray, y: np.ndarray, conf_level: float, alternative: str) -> HodgesLehmann:
    m, n = x.size, y.size
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    lo, hi, achieved = _exact_limits(diffs, lambda p: qwilcox(p, m, n), lambda q: pwilcox(q, m, n),
                                     conf_level, alternative)
    alpha = 1 - conf_level
    notes: tuple[str, ...] = ()
    if achieved - alpha > alpha / 2:
        notes = ("Requested conf.level not achievable",)
        conf_level = 1 - achieved
    return HodgesLehmann(float(np.median(diffs)), "difference in location", lo, hi, conf_level, notes)


def _rank_sum_normal(x: np.ndarray, y: np.ndarray, correct: bool, conf_level: float,
                     alternative: str) -> HodgesLehmann:
    alpha = 1 - conf_level
    mumin = float(np.min(x) - np.max(y))
    mumax = float(np.max(x) - np.min(y))
    wmumin = _rs_W(x, y, mumin, correct, alternative)
    wmumax = _rs_W(x, y, mumax, correct, alternative)
    if math.isnan(wmumin) or math.isnan(wmumax):
        raise ValueError("cannot compute confidence interval when all observations are tied")

    def root(zq: float) -> float:
        f_lower = wmumin - zq
        if f_lower <= 0:
            return mumin
        f_upper = wmumax - zq
        if f_upper >= 0:
            return mumax
        return uniroot(lambda dd: _rs_W(x, y, dd, correct, alternative) - zq, mumin, mumax,
                       f_lower=f_lower, f_upper=f_upper, tol=_TOL_ROOT)

    if alternative == "two.sided":
        lo, hi = root(qnorm(alpha / 2, lower=False)), root(qnorm(alpha / 2))
    elif alternative == "greater":
        lo, hi = root(qnorm(alpha, lower=False)), math.inf
    else:
        lo, hi = -math.inf, root(qnorm(alpha))
    est = uniroot(lambda dd: _rs_W(x, y, dd, False, alternative), mumin, mumax, tol=_TOL_ROOT)
    return HodgesLehmann(est, "difference in location", lo, hi, conf_level)


def rank_sum_interval(x: np.ndarray, y: np.ndarray, *, exact: bool, correct: bool, conf_level: float,
                      alternative: str) -> HodgesLehmann:
    """Hodges-Lehmann difference in location and its interval, as R's two-sample ``wilcox.test``.

    Parameters
    ----------
    x, y : ndarray
        The two samples without missing values (``x`` not shifted by ``mu``).
    exact : bool
        Whether the test used the exact null distribution (then the interval is exact too).
    correct : bool
        Continuity correction of the approximate interval.
    conf_level : float
        Requested confidence level.
    alternative : {"two.sided", "less", "greater"}
        Two-sided interval, or a one-sided bound.

    Returns
    -------
    HodgesLehmann

    Raises
    ------
    ValueError
        Approximate interval with all observations tied (R's error).
    """
    if exact:
        return _rank_sum_exact(x, y, conf_level, alternative)
    return _rank_sum_normal(x, y, correct, conf_level, alternative)
