r"""Reference-based strategies and the conditional-normal draw of missing values (pure numpy).

The imputation model (:mod:`analysis.sensitivity.mmrm_imputation`) gives every patient :math:`i`
two mean profiles over the post-baseline DXA visits :math:`j = 1, \dots, m`: :math:`a_j =
\mu_{ij}(g_i)` in their own group and :math:`c_j = \mu_{ij}(r)` in the reference group :math:`r`.
This module turns them into the mean of each strategy and fills the missing values from the
conditional normal given the observed ones.

Post-dropout means
------------------
Let :math:`d_i` be the patient's last observed post-baseline visit (:math:`d_i = 0` if only the
baseline is observed), with :math:`a_0 = c_0 = 0` (no change at baseline). Visits
:math:`j > d_i` are *post-dropout*; their mean under each strategy is

=========  ==============================================  ==========================================
strategy   :math:`j \le d_i`                               :math:`j > d_i`
=========  ==============================================  ==========================================
``MAR``    :math:`a_j`                                     :math:`a_j`
``J2R``    :math:`a_j`                                     :math:`c_j` (jump to reference)
``CR``     :math:`c_j`                                     :math:`c_j` (copy reference, whole profile)
``CIR``    :math:`a_j`                                     :math:`a_{d} + c_j - c_{d}` (copy increments)
``LMCF``   :math:`a_j`                                     :math:`a_{d}` (last mean carried forward)
=========  ==============================================  ==========================================

(rbmi's ``strategy_*`` functions; patients of the reference group have :math:`a = c`, so only
LMCF changes them.) Every missing value of a patient, post-dropout and intermittent (a missed
visit before :math:`d_i`), is drawn jointly from the conditional normal given the observed values
:math:`O`, with the strategy's mean :math:`\mu` and the common :math:`\Sigma`:

.. math::

    y_{iM} \mid y_{iO} \sim N\bigl(\mu_M + \Sigma_{MO}\Sigma_{OO}^{-1}(y_{iO} - \mu_O),\
    \Sigma_{MM} - \Sigma_{MO}\Sigma_{OO}^{-1}\Sigma_{OM}\bigr).

A patient seen only at baseline has :math:`a_0 = c_0 = 0` and no observed :math:`y`, so J2R, CR
and CIR coincide for them and LMCF imputes a mean change of 0. The same standard normal
deviates are used for every strategy within an imputation (common random numbers), so strategies
differ only through their means.

Expected order (2 post-baseline visits, a responder seen at visit 1 and missing at visit 2,
reference declining faster): with :math:`D = a_1 - c_1 > 0` the responders' advantage at dropout
and :math:`b = \Sigma_{21}/\Sigma_{11}` the regression of visit 2 on visit 1, the conditional
means at visit 2 satisfy

.. math::

    \text{CR} - \text{J2R} = b D, \qquad \text{CIR} - \text{CR} = (1 - b) D, \qquad
    \text{MAR} - \text{CIR} = (a_2 - a_1) - (c_2 - c_1),

independent of the observed value. For :math:`0 < b < 1` (the usual case): J2R < CR < CIR < MAR,
i.e. J2R pulls furthest towards the reference and CR *further than* CIR (CR keeps only the part
:math:`b D` of the advantage that the correlation carries forward, CIR keeps all of it); LMCF
exceeds MAR when the own group declines. Only for :math:`b > 1` does CIR fall below CR.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = [
    "STRATEGIES",
    "STRATEGY_TEXT",
    "check_strategy",
    "conditional_normals",
    "fill_missing",
    "impute_missing",
    "last_observed",
    "missingness_patterns",
    "psd_sqrt",
    "strategy_means",
]

STRATEGIES = ("MAR", "J2R", "CR", "CIR", "LMCF")
STRATEGY_TEXT = {
    "MAR": "missing at random: after dropout, patients follow their own group",
    "J2R": "jump to reference: after dropout, the mean jumps to the reference group's",
    "CR": "copy reference: the whole mean profile is the reference group's",
    "CIR": "copy increments in reference: from the mean at dropout, changes as the reference group does",
    "LMCF": "last mean carried forward: the own group's mean at dropout is kept",
}

#: One missingness pattern: the observed visits (bool, shape (m,)) and the rows that share them.
_Pattern = tuple[np.ndarray, np.ndarray]
#: Per pattern with a missing visit: rows, missing visits, observed visits, A (None if nothing is
#: observed) and L (see :func:`conditional_normals`).
_Conditional = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None", np.ndarray]


def check_strategy(strategy: str) -> None:
    """Raise ``ValueError`` unless ``strategy`` is one of :data:`STRATEGIES`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def last_observed(observed: np.ndarray) -> np.ndarray:
    """Index of each row's last ``True`` (``-1`` when none).

    Parameters
    ----------
    observed : ndarray of bool, shape (n, m)

    Returns
    -------
    ndarray of int, shape (n,)
    """
    k = observed.shape[1]
    rev = observed[:, ::-1]
    return np.where(rev.any(axis=1), k - 1 - rev.argmax(axis=1), -1)


def strategy_means(own: np.ndarray, reference: np.ndarray, last: np.ndarray, strategy: str) -> np.ndarray:
    r"""Mean profile of each patient under a reference-based strategy.

    Parameters
    ----------
    own, reference : ndarray, shape (n, m)
        :math:`a_{ij} = \mu_{ij}(g_i)` and :math:`c_{ij} = \mu_{ij}(r)`: the patient's expected
        outcome at post-baseline visit :math:`j` in their own and in the reference group.
    last : ndarray of int, shape (n,)
        :math:`d_i - 1`, the 0-based index of the last observed post-baseline visit (``-1``: only
        the baseline observed, where :math:`a_0 = c_0 = 0`).
    strategy : {"MAR", "J2R", "CR", "CIR", "LMCF"}

    Returns
    -------
    ndarray, shape (n, m)
        :math:`\mu_{ij}` of the table in the module docstring; visits :math:`j \le d_i` keep
        :math:`a_{ij}` (except CR, which uses :math:`c_{ij}` throughout).
    """
    check_strategy(strategy)
    own = np.asarray(own, dtype=float)
    reference = np.asarray(reference, dtype=float)
    last = np.asarray(last, dtype=int)
    if own.shape != reference.shape or own.ndim != 2:
        raise ValueError(f"own and reference must be (n, m) arrays of one shape, got {own.shape} and "
                         f"{reference.shape}")
    n, k = own.shape
    if last.shape != (n,) or np.any(last < -1) or np.any(last >= k):
        raise ValueError(f"last must be n = {n} visit indices in -1..{k - 1}")
    post = np.arange(k)[None, :] > last[:, None]
    rows = np.arange(n)
    a_d = np.where(last >= 0, own[rows, np.maximum(last, 0)], 0.0)[:, None]
    c_d = np.where(last >= 0, reference[rows, np.maximum(last, 0)], 0.0)[:, None]
    if strategy == "MAR":
        return own.copy()
    if strategy == "J2R":
        return np.where(post, reference, own)
    if strategy == "CR":
        return reference.copy()
    if strategy == "CIR":
        return np.where(post, a_d + reference - c_d, own)
    return np.where(post, np.broadcast_to(a_d, own.shape), own)  # LMCF


def missingness_patterns(observed: np.ndarray) -> list[_Pattern]:
    """``[(pattern, rows)]``: each distinct row of ``observed`` and the rows sharing it.

    Parameters
    ----------
    observed : ndarray of bool, shape (n, m)

    Returns
    -------
    list of (ndarray of bool, ndarray of int)
        In the order of :func:`numpy.unique` over the rows.
    """
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    return [(keys[u], np.flatnonzero(inverse == u)) for u in range(keys.shape[0])]


def psd_sqrt(c: np.ndarray) -> np.ndarray:
    r"""A square root :math:`R R^\top = C` of a symmetric positive semi-definite matrix.

    The lower Cholesky factor of :math:`(C + C^\top)/2` (unique, so draws do not depend on the
    LAPACK build), or :math:`V \operatorname{diag}(\sqrt{\max(w, 0)})` from the eigen-decomposition
    :math:`C = V \operatorname{diag}(w) V^\top` when :math:`C` is only semi-definite.
    """
    c = 0.5 * (c + c.T)
    try:
        return linalg.cholesky(c, lower=True)
    except linalg.LinAlgError:
        w, v = np.linalg.eigh(c)
        return v * np.sqrt(np.clip(w, 0.0, None))


def conditional_normals(patterns: list[_Pattern], sigma: np.ndarray) -> list[_Conditional]:
    r"""The conditional normal of the missing given the observed visits, per missingness pattern.

    Parameters
    ----------
    patterns : list
        :func:`missingness_patterns`.
    sigma : ndarray, shape (m, m)
        :math:`\Sigma`.

    Returns
    -------
    list of tuple
        For every pattern with a missing visit: ``(rows, missing, observed, A, L)`` with
        :math:`A = \Sigma_{MO}\Sigma_{OO}^{-1}` (``None`` if nothing is observed) and
        :math:`LL^\top = \Sigma_{MM} - \Sigma_{MO}\Sigma_{OO}^{-1}\Sigma_{OM}`.
    """
    out = []
    for pattern, rows in patterns:
        mis, obs = np.flatnonzero(~pattern), np.flatnonzero(pattern)
        if mis.size == 0:
            continue
        s_mm, a = sigma[np.ix_(mis, mis)], None
        if obs.size:
            s_oo, s_om = sigma[np.ix_(obs, obs)], sigma[np.ix_(obs, mis)]
            a = linalg.solve(s_oo, s_om, assume_a="pos").T
            s_mm = s_mm - a @ s_om
        out.append((rows, mis, obs, a, psd_sqrt(s_mm)))
    return out


def fill_missing(y: np.ndarray, mu: np.ndarray, conditionals: list[_Conditional], z: np.ndarray | None) -> np.ndarray:
    r"""A copy of ``y`` with the missing values drawn from the conditional normals.

    Parameters
    ----------
    y : ndarray, shape (n, m)
        Outcomes, ``NaN`` where missing.
    mu : ndarray, shape (n, m)
        The strategy's means (:func:`strategy_means`).
    conditionals : list
        :func:`conditional_normals` of ``y``'s missingness patterns.
    z : ndarray, shape (n, m) or None
        Standard normal deviates (``None``: the conditional means).

    Returns
    -------
    ndarray, shape (n, m)
        :math:`y_{iM} = \mu_M + A(y_{iO} - \mu_O) + L z_{iM}` where missing, ``y`` elsewhere.
    """
    out = y.copy()
    for rows, mis, obs, a, low in conditionals:
        mean = mu[np.ix_(rows, mis)]
        if a is not None:
            mean = mean + (y[np.ix_(rows, obs)] - mu[np.ix_(rows, obs)]) @ a.T
        if z is not None:
            mean = mean + z[np.ix_(rows, mis)] @ low.T
        out[np.ix_(rows, mis)] = mean
    return out


def impute_missing(y: np.ndarray, own: np.ndarray, reference: np.ndarray, sigma: np.ndarray,
                   strategy: str = "MAR", z: np.ndarray | None = None) -> np.ndarray:
    r"""Fill the missing values of ``y`` from the conditional normal under a strategy.

    Parameters
    ----------
    y : ndarray, shape (n, m)
        Post-baseline outcomes, ``NaN`` where missing.
    own, reference : ndarray, shape (n, m)
        Own-group and reference-group means (:func:`strategy_means`).
    sigma : ndarray, shape (m, m)
        Residual covariance :math:`\Sigma`.
    strategy : {"MAR", "J2R", "CR", "CIR", "LMCF"}
    z : ndarray, shape (n, m), optional
        Standard normal deviates; entry :math:`(i, j)` is used when :math:`y_{ij}` is missing.
        ``None`` returns the conditional means.

    Returns
    -------
    ndarray, shape (n, m)
        A copy of ``y`` with every missing value :math:`y_{iM}` replaced by
        :math:`\mu_M + \Sigma_{MO}\Sigma_{OO}^{-1}(y_{iO} - \mu_O) + L z_{iM}`, where
        :math:`LL^\top = \Sigma_{MM} - \Sigma_{MO}\Sigma_{OO}^{-1}\Sigma_{OM}` and :math:`\mu`
        is the strategy's mean (the last observed visit is found from ``y``).
    """
    y = np.asarray(y, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"y must be an (n, m) array, got shape {y.shape}")
    n, k = y.shape
    if sigma.shape != (k, k):
        raise ValueError(f"sigma must be ({k}, {k}), got {sigma.shape}")
    if z is not None:
        z = np.asarray(z, dtype=float)
        if z.shape != (n, k):
            raise ValueError(f"z must have the shape of y {(n, k)}, got {z.shape}")
    observed = ~np.isnan(y)
    mu = strategy_means(own, reference, last_observed(observed), strategy)
    return fill_missing(y, mu, conditional_normals(missingness_patterns(observed), sigma), z)
