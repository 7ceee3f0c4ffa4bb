r"""R's type-6 sample quantile and rbmi's percentile-bootstrap p-value (rbmi 1.5.2, ``R/pool.R``).

The type-6 quantile (Hyndman & Fan 1996) of :math:`x_{(1)} \le \dots \le x_{(n)}` is piecewise
linear in :math:`p`: with :math:`j = \lfloor p(n+1)\rfloor` and :math:`h = p(n+1) - j`,

.. math:: Q(p) = (1 - h)\,x_{(j)} + h\,x_{(j+1)},

order statistics clamped to :math:`x_{(1)}` and :math:`x_{(n)}` (so :math:`Q(k/(n+1)) = x_{(k)}`).
The arithmetic is R's own (``quantile.default``), so values agree bit for bit, which matters because
rbmi's p-value is the root of :math:`Q` found by R's ``uniroot`` (ported in
:mod:`analysis.frequentist.r_numerics`), whose iterates depend on the last bits of :math:`Q`.
"""

from __future__ import annotations

import numpy as np

from analysis.frequentist.r_numerics import uniroot

__all__ = ["pval_percentile", "quantile_type6"]

_FUZZ = 4 * np.finfo(float).eps  # R: fuzz <- 4 * .Machine$double.eps


def quantile_type6(x, probs) -> np.ndarray:
    r"""R's ``quantile(x, probs, type = 6, names = FALSE)``.

    Parameters
    ----------
    x : array_like
        Sample (at least one value, no NaN).
    probs : float or array_like
        Probabilities in :math:`[0, 1]`.

    Returns
    -------
    ndarray
        :math:`Q(p)` for each ``p``: :math:`j = \lfloor p(n+1) + 4\epsilon\rfloor`,
        :math:`h = p(n+1) - j` (0 when :math:`|h| < 4\epsilon`), :math:`x_{(j)}` if :math:`h = 0`
        or :math:`x_{(j)} = x_{(j+1)}`, else :math:`(1-h)x_{(j)} + h\,x_{(j+1)}`.
    """
    xs = np.sort(np.asarray(x, dtype=float).reshape(-1))
    n = xs.size
    if n == 0:
        raise ValueError("x is empty")
    p = np.atleast_1d(np.asarray(probs, dtype=float))
    if np.any((p < 0) | (p > 1)):
        raise ValueError("'probs' outside [0,1]")
    nppm = 0.0 + p * (n + 1 - 0.0 - 0.0)  # R: a + probs * (n + 1 - a - b), a = b = 0
    j = np.floor(nppm + _FUZZ)
    h = nppm - j
    h[np.abs(h) < _FUZZ] = 0.0
    pad = np.concatenate([xs[:1], xs[:1], xs, xs[-1:], xs[-1:]])
    ji = j.astype(int)
    lo, hi = pad[ji + 1], pad[ji + 2]  # R's x[j + 2L], x[j + 3L] (1-based)
    qs = lo.copy()
    qs[h == 1] = hi[h == 1]
    other = (0 < h) & (h < 1) & (lo != hi)
    qs[other] = ((1 - h) * lo + h * hi)[other]
    return qs


def pval_percentile(ests) -> tuple[float, float]:
    r"""rbmi's ``pval_percentile``: one-sided p-values of :math:`H_0: \theta = 0` from bootstrap estimates.

    Parameters
    ----------
    ests : array_like
        The bootstrap estimates (without the original-data one).

    Returns
    -------
    tuple of float
        ``(p_greater, p_less)``: :math:`p_> = \alpha^*` with :math:`Q(\alpha^*) = 0` (R's
        ``uniroot`` on :math:`[0, 1]`, default tolerance :math:`\epsilon^{1/4}`) and
        :math:`p_< = 1 - \alpha^*`. All :math:`> 0`: ``(0, 1)``; all :math:`< 0`: ``(1, 0)``; all
        zero: ``(1, 1)``; some zero: with :math:`q_k = r_k/(n+1)` for those (:math:`r_k` the rank,
        ties in order of appearance), ``(min q_k, 1 - max q_k)``.
    """
    e = np.asarray(ests, dtype=float).reshape(-1)
    if np.all(e == 0):
        return 1.0, 1.0
    if e.min() > 0:
        return 0.0, 1.0
    if e.max() < 0:
        return 1.0, 0.0
    if np.any(e == 0):
        ranks = np.empty(e.size)
        ranks[np.argsort(e, kind="stable")] = np.arange(1, e.size + 1)  # rank(ties.method = "first")
        quant = ranks[e == 0] / (e.size + 1)
        return float(quant.min()), float(1 - quant.max())
    x = uniroot(lambda q: float(quantile_type6(e, q)[0]), 0.0, 1.0)
    return float(x), float(1 - x)
