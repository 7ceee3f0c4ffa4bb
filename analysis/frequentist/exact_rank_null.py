"""Exact null distributions of the Wilcoxon statistics, as R's ``psignrank``/``qsignrank`` and
``pwilcox``/``qwilcox``.

The exact Hodges-Lehmann interval of :mod:`analysis.frequentist.hodges_lehmann` picks order
statistics with these quantiles. scipy computes the same distributions inside ``wilcoxon`` and
``mannwhitneyu`` but exposes them only through private classes (``scipy.stats._wilcoxon``,
``scipy.stats._mannwhitneyu``), so the counts are built here, and summed in R's order so that the
discrete quantiles (which R finds with a ``10 * DBL_EPSILON`` fuzz) are R's.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["psignrank", "qsignrank", "pwilcox", "qwilcox"]

_DBL_EPS = np.finfo(float).eps


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
    """R's ``psignrank(q, n, lower.tail)`` (same summation order as R).

    Parameters
    ----------
    q : float
        Value of the signed-rank statistic ``V`` (W+).
    n : int
        Number of non-zero differences.
    lower_tail : bool
        ``True``: ``P(V <= q)``; ``False``: ``P(V > q)``.

    Returns
    -------
    float
        The probability (NaN for ``n <= 0``).
    """
    n = math.floor(n + 0.5)
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
        for i in range(x + 1):
            p += w[i] * f
    else:
        x = u - x
        for i in range(math.ceil(x)):
            p += w[i] * f
        lower_tail = not lower_tail
    return p if lower_tail else 0.5 - p + 0.5


def qsignrank(p: float, n: int) -> int:
    """R's ``qsignrank(p, n)`` (lower tail): the smallest ``q`` with ``P(V <= q) >= p``.

    Parameters
    ----------
    p : float
        Probability in [0, 1].
    n : int
        Number of non-zero differences.

    Returns
    -------
    int
        The quantile of ``V``.
    """
    n = math.floor(n + 0.5)
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
    """R's ``pwilcox(q, m, n, lower.tail)`` (same summation order as R).

    Parameters
    ----------
    q : float
        Value of the rank-sum statistic ``W`` (the Mann-Whitney U of the first sample).
    m, n : int
        Sizes of the two samples.
    lower_tail : bool
        ``True``: ``P(W <= q)``; ``False``: ``P(W > q)``.

    Returns
    -------
    float
        The probability (NaN when a sample is empty).
    """
    m = math.floor(m + 0.5)
    n = math.floor(n + 0.5)
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
        for i in range(x + 1):
            p += w[i] / c
    else:
        x = m * n - x
        for i in range(math.ceil(x)):
            p += w[i] / c
        lower_tail = not lower_tail
    return p if lower_tail else 0.5 - p + 0.5


def qwilcox(p: float, m: int, n: int) -> int:
    """R's ``qwilcox(p, m, n)`` (lower tail): the smallest ``q`` with ``P(W <= q) >= p``.

    Parameters
    ----------
    p : float
        Probability in [0, 1].
    m, n : int
        Sizes of the two samples.

    Returns
    -------
    int
        The quantile of ``W``.
    """
    m = math.floor(m + 0.5)
    n = math.floor(n + 0.5)
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

