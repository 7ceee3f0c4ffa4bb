r"""Closed-form power of the completers' t-test of the % change to the endpoint, on the strata of
a simulated design (:mod:`analysis.power.closed_form_engine`).

Among the completers of group :math:`g` (baseline and endpoint observed; a share :math:`q_g`) the %
change :math:`x = 100(y_J - y_0)/y_0` has mean :math:`m_g` and variance :math:`s_g^2`, computed per
stratum from the Gaussian :math:`y_J \mid y_0` and integrated over :math:`y_0` by Gauss-Hermite
quadrature, or taken from the stratum where it carries them (the twin's measured reference cohort,
whose bone changes are proportional to the baseline, not Gaussian given it). With :math:`c_g` completers Welch's statistic is approximately noncentral t,

.. math::

    \lambda = \frac{m_1 - m_0}{\sqrt{s_1^2/c_1 + s_0^2/c_0}},\qquad
    \nu = \frac{(s_1^2/c_1 + s_0^2/c_0)^2}{\frac{(s_1^2/c_1)^2}{c_1 - 1} + \frac{(s_0^2/c_0)^2}{c_0 - 1}}

(a single arm: the one-sample t, :math:`\nu = c - 1`), and the power is averaged over the numbers
of completers: binomial :math:`(n_g, q_g)` within exact group counts, multinomial with shares
:math:`\pi_g q_g` under a random allocation. Fewer than two completers in a compared group count as
no success (the test cannot be computed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import stats

from analysis.power.closed_form_engine import (
    Allocation,
    ContrastPower,
    Stratum,
    noncentral_power,
)

__all__ = ["completers_power", "pct_change_moments"]


def pct_change_moments(strata: Sequence[Stratum], group: int, end: int) -> tuple[float, float, float]:
    r"""``(P(completer | group), mean, variance)`` of :math:`100(y_J - y_0)/y_0` among the group's
    completers (baseline and visit ``end`` observed): Gaussian :math:`y_J \mid y_0` per pattern,
    integrated over :math:`y_0` by Gauss-Hermite quadrature (40 nodes)."""
    z, w = hermegauss(40)
    w = w / w.sum()
    q = m1 = m2 = 0.0
    for s in strata:
        if s.group != group or not (s.observed[0] and s.observed[end]) or s.weight <= 0:
            continue
        if s.pct is not None and end == len(s.observed) - 1:
            q += s.weight
            m1 += s.weight * s.pct[0]
            m2 += s.weight * (s.pct[1] + s.pct[0] ** 2)
            continue
        mu, sig = np.asarray(s.mean, float), np.asarray(s.cov, float)
        y0 = mu[0] + np.sqrt(sig[0, 0]) * z
        mean = 100.0 * ((mu[end] + sig[end, 0] / sig[0, 0] * (y0 - mu[0])) / y0 - 1.0)
        var = 1e4 * (sig[end, end] - sig[end, 0] ** 2 / sig[0, 0]) / y0**2
        q += s.weight
        m1 += s.weight * float(w @ mean)
        m2 += s.weight * float(w @ (var + mean**2))
    if q == 0:
        return 0.0, np.nan, np.nan
    return q, m1 / q, m2 / q - (m1 / q) ** 2


def completers_power(strata: Sequence[Stratum], allocation: Allocation, n: Sequence[int],
                     contrasts: Sequence[tuple[int, int | None]], *, endpoint: int, alpha: float = 0.05,
                     tol: float = 1e-10) -> list[ContrastPower]:
    r"""Power of the completers' t-test of the % change to visit ``endpoint``: Welch's test of level
    against reference (one-sample t against 0 for ``ref=None``), noncentral t with Welch's df at the
    group moments of :func:`pct_change_moments`, averaged over the numbers of completers (binomial within
    exact group counts, multinomial with a random allocation); fewer than two completers in a
    compared group counts as no success (the test cannot be computed).

    Returns
    -------
    list of ContrastPower
        ``se_model`` equals ``se`` (Welch's SE is unbiased for the variance).
    """
    k = 1 + max(max(lv, rf if rf is not None else 0) for lv, rf in contrasts)
    mom = [pct_change_moments(strata, g, endpoint) for g in range(k)]
    out = []
    for lv, rf in contrasts:
        groups = [lv] if rf is None else [lv, rf]
        delta = mom[lv][1] - (0.0 if rf is None else mom[rf][1])
        pw, se, dfs = [], [], []
        for nn in n:
            total = 0.0
            for prob, counts in _completer_counts(allocation, mom, groups, int(nn), tol):
                if np.any(counts < 2):
                    continue
                parts = np.array([mom[g][2] for g in groups]) / counts
                v = float(parts.sum())
                df = v**2 / float(np.sum(parts**2 / (counts - 1)))
                total += prob * noncentral_power(delta, v, v, df, alpha, "t")
            pw.append(total)
            exp = np.array([allocation.expected(nn)[g] * mom[g][0] for g in groups])
            parts = np.array([mom[g][2] for g in groups]) / np.maximum(exp, 1e-9)
            se.append(np.sqrt(parts.sum()))
            dfs.append(parts.sum() ** 2 / np.sum(parts**2 / np.maximum(exp - 1, 1e-9)))
        out.append(ContrastPower(power=np.array(pw), estimand=float(delta), se=np.array(se), se_model=np.array(se),
                                 df=np.array(dfs)))
    return out


def _completer_counts(allocation: Allocation, mom: list, groups: list[int], n: int,
                      tol: float) -> list[tuple[float, np.ndarray]]:
    """Distribution of the completers of ``groups``: binomial within exact counts, else multinomial."""
    if allocation.counts is None:
        shares = tuple(allocation.shares[g] * mom[g][0] if g < len(allocation.shares) else 0.0
                       for g in range(len(mom)))
        return [(p, c[groups]) for p, c in Allocation(shares).distribution(n, tol)]
    ng = allocation.expected(n)
    dist = [(1.0, [])]
    for g in groups:
        ks = np.arange(int(ng[g]) + 1)
        pmf = stats.binom.pmf(ks, int(ng[g]), mom[g][0])
        dist = [(p * float(pmf[j]), [*c, float(j)]) for p, c in dist for j in ks if p * pmf[j] > tol]
    return [(p, np.asarray(c)) for p, c in dist]
