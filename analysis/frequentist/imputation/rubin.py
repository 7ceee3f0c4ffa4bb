r"""Rubin's rules: pool :math:`m` complete-data estimates of a scalar (Rubin 1987; Barnard & Rubin
1999; van Buuren 2018, §2.3).

:math:`\bar Q = m^{-1}\sum_l \hat Q_l`, :math:`\bar U = m^{-1}\sum_l U_l`,
:math:`B = (m-1)^{-1}\sum_l(\hat Q_l - \bar Q)^2`, total variance :math:`T = \bar U + (1 + m^{-1})B`,
and :math:`(\bar Q - Q_0)/\sqrt T \sim t_\nu` with the df :math:`\nu` of :func:`rubin_df`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["PooledResult", "rubin_pool", "rubin_df"]


@dataclass(frozen=True)
class PooledResult:
    r"""A scalar estimand pooled over :math:`m` imputations by Rubin's rules.

    Attributes
    ----------
    estimate : float
        :math:`\bar Q = m^{-1}\sum_l \hat Q_l`.
    se : float
        :math:`\sqrt{T}`.
    within : float
        :math:`\bar U = m^{-1}\sum_l U_l`, the mean complete-data variance.
    between : float
        :math:`B = (m-1)^{-1}\sum_l (\hat Q_l - \bar Q)^2`.
    total : float
        :math:`T = \bar U + (1 + m^{-1}) B`.
    riv : float
        Relative increase in variance due to nonresponse, :math:`r = (1 + m^{-1})B/\bar U`.
    lambda_ : float
        Proportion of the total variance due to missingness, :math:`\lambda = (1 + m^{-1})B/T`.
    fmi : float
        Fraction of missing information, :math:`\gamma = (r + 2/(\nu + 3))/(r + 1)`.
    df : float
        :math:`\nu` (Barnard-Rubin when ``df_complete`` is finite, else Rubin's 1987 value;
        ``inf`` when :math:`B = 0` and no complete-data df is given).
    df_complete : float
        :math:`\nu_\text{com}` (``inf`` when not given).
    statistic : float
        :math:`t = (\bar Q - Q_0)/\sqrt T`.
    p : float
        Two-sided p-value of :math:`H_0: Q = Q_0` from :math:`t_\nu`.
    ci_low, ci_high : float
        :math:`\bar Q \mp t_{\nu, 1-\alpha/2}\sqrt T`.
    conf_level : float
        :math:`1 - \alpha`.
    null : float
        :math:`Q_0`.
    m : int
        Number of imputations.
    """

    estimate: float
    se: float
    within: float
    between: float
    total: float
    riv: float
    lambda_: float
    fmi: float
    df: float
    df_complete: float
    statistic: float
    p: float
    ci_low: float
    ci_high: float
    conf_level: float
    null: float
    m: int


def _as_vector(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def rubin_df(m: int, riv: float, lambda_: float, df_complete: float | None = None) -> float:
    r"""Degrees of freedom of the pooled :math:`t` reference distribution.

    Rubin (1987): :math:`\nu_\text{old} = (m - 1)/\lambda^2 = (m - 1)(1 + 1/r)^2`. With finite
    complete-data df :math:`\nu_\text{com}`, Barnard & Rubin (1999):

    .. math::

        \nu_\text{obs} = \frac{\nu_\text{com} + 1}{\nu_\text{com} + 3}\,\nu_\text{com}(1 - \lambda),
        \qquad \nu = \frac{\nu_\text{old}\,\nu_\text{obs}}{\nu_\text{old} + \nu_\text{obs}}

    (van Buuren 2018, §2.3.6; mice's ``barnard.rubin``, which differs only in flooring
    :math:`\lambda` at :math:`10^{-4}`). :math:`\lambda = 0` gives :math:`\nu_\text{old} = \infty`,
    hence :math:`\nu = \nu_\text{obs}` (or :math:`\infty`).

    Parameters
    ----------
    m : int
        Number of imputations.
    riv : float
        Relative increase in variance :math:`r` (unused: :math:`\lambda` is the numerically safe form).
    lambda_ : float
        Proportion of the total variance due to missingness, :math:`\lambda`.
    df_complete : float, optional
        :math:`\nu_\text{com}`; omitted or infinite: Rubin's (1987) :math:`\nu_\text{old}`.

    Returns
    -------
    float
        :math:`\nu` (``inf`` when :math:`\lambda = 0` and no complete-data df is given).
    """
    del riv  # nu_old = (m-1)(1+1/r)^2 = (m-1)/lambda^2; lambda is the numerically safe form
    nu_old = np.inf if lambda_ <= 0 else (m - 1) / lambda_**2
    if df_complete is None or not np.isfinite(df_complete):
        return float(nu_old)
    nu_obs = (df_complete + 1.0) / (df_complete + 3.0) * df_complete * (1.0 - lambda_)
    if not np.isfinite(nu_old):
        return float(nu_obs)
    return float(nu_old * nu_obs / (nu_old + nu_obs))


def rubin_pool(estimates, variances, df_complete: float | None = None, *, conf_level: float = 0.95,
               null: float = 0.0) -> PooledResult:
    r"""Pool :math:`m` complete-data estimates of a scalar with Rubin's rules.

    Parameters
    ----------
    estimates : array_like, shape (m,)
        :math:`\hat Q_l`, the estimate from each completed dataset.
    variances : array_like, shape (m,)
        :math:`U_l`, its squared standard error in that dataset.
    df_complete : float, optional
        :math:`\nu_\text{com}`, the degrees of freedom the analysis would have without missing data
        (e.g. :math:`n - 1` for a mean). Given: the Barnard & Rubin (1999) small-sample df.
        Omitted (or ``inf``): Rubin's (1987) large-sample df.
    conf_level : float
        Confidence level of the interval.
    null : float
        :math:`Q_0` of the reported test.

    Returns
    -------
    PooledResult

    Notes
    -----
    With :math:`\bar Q = m^{-1}\sum_l \hat Q_l`, :math:`\bar U = m^{-1}\sum_l U_l` and
    :math:`B = (m-1)^{-1}\sum_l(\hat Q_l - \bar Q)^2`, the total variance is
    :math:`T = \bar U + (1 + m^{-1})B`; :math:`r = (1 + m^{-1})B/\bar U`,
    :math:`\lambda = (1 + m^{-1})B/T`, the df :math:`\nu` of :func:`rubin_df`, and the fraction of
    missing information :math:`\gamma = (r + 2/(\nu + 3))/(r + 1)` (van Buuren 2018, §2.3;
    identical to ``mice::pool.scalar(Q, U, n = df_complete + 1, k = 1)``, whose ``fmi`` also
    uses the adjusted :math:`\nu`; SAS PROC MIANALYZE uses Rubin's :math:`\nu` there).
    :math:`(\bar Q - Q_0)/\sqrt T \sim t_\nu`.
    """
    q = _as_vector(estimates, "estimates")
    u = _as_vector(variances, "variances")
    if q.size != u.size:
        raise ValueError(f"estimates and variances differ in length: {q.size} != {u.size}")
    if q.size < 2:
        raise ValueError(f"Rubin's rules need at least 2 imputations, got {q.size}")
    if np.any(u < 0):
        raise ValueError(f"variances must be non-negative, got {u.tolist()}")
    if df_complete is not None and not df_complete > 0:
        raise ValueError(f"df_complete must be positive, got {df_complete}")
    if not 0.0 < conf_level < 1.0:
        raise ValueError(f"conf_level must be in (0, 1), got {conf_level}")
    m = q.size
    qbar, ubar, b = float(q.mean()), float(u.mean()), float(q.var(ddof=1))
    if ubar <= 0:
        raise ValueError("within-imputation variances are all zero; Rubin's rules are undefined")
    total = ubar + (1.0 + 1.0 / m) * b
    riv = (1.0 + 1.0 / m) * b / ubar
    lam = (1.0 + 1.0 / m) * b / total
    nu = rubin_df(m, riv, lam, df_complete)
    fmi = (riv + 2.0 / (nu + 3.0)) / (riv + 1.0)
    se = float(np.sqrt(total))
    tstat = (qbar - null) / se
    dist = stats.norm if not np.isfinite(nu) else stats.t(nu)
    half = float(dist.ppf(0.5 + conf_level / 2.0)) * se
    return PooledResult(
        estimate=qbar, se=se, within=ubar, between=b, total=total, riv=riv, lambda_=lam,
        fmi=float(fmi), df=nu, df_complete=float(np.inf if df_complete is None else df_complete),
        statistic=float(tstat), p=float(2.0 * dist.sf(abs(tstat))), ci_low=qbar - half,
        ci_high=qbar + half, conf_level=conf_level, null=null, m=m)
