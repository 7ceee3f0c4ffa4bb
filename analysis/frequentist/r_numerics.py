"""Two numerical routines of R ported bit for bit: ``qnorm`` and ``uniroot``.

R's approximate Hodges-Lehmann confidence interval (``wilcox.test(conf.int = TRUE)`` without the
exact distribution) is the root, found by ``uniroot(tol = 1e-4)``, of a *step* function of the
shift: the answer depends on the exact iterates of the root finder, which depend on the last bits
of the target quantile. scipy's ``special.ndtri`` differs from R's ``qnorm`` in those bits and
``scipy.optimize.brentq`` takes other steps than R's ``R_zeroin2``, so both are ported here, and
:mod:`analysis.frequentist.hodges_lehmann` obtains R's limits to the last bit.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["qnorm", "uniroot"]

_DBL_EPS = np.finfo(float).eps


def _sign(v: float) -> float:
    return float(np.sign(v))


def qnorm(p: float, lower: bool = True) -> float:
    """R's ``qnorm(p, lower.tail = lower)`` (Wichura's AS 241, as in R's nmath).

    scipy's ``ndtri`` differs from R in the last few bits; those bits feed
    the root finder of the approximate confidence intervals, so R's
    algorithm is reproduced here for 0 < p < 1.

    Parameters
    ----------
    p : float
        Probability.
    lower : bool
        ``True``: the quantile with ``P(Z <= q) = p``; ``False``: ``P(Z > q) = p``.

    Returns
    -------
    float
        The standard normal quantile (``-inf``/``inf`` at 0 and 1, NaN outside [0, 1]).
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

