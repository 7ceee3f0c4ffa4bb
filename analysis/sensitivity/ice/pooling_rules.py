r"""rbmi's combining rules for one scalar parameter (rbmi 1.5.2, ``R/pool.R``), used by :mod:`.pooling`.

* :func:`rubin_rules`, :func:`rubin_df`: Rubin's rules with the Barnard & Rubin (1999) df, as
  rbmi's functions of the same names. They equal
  :func:`analysis.frequentist.imputation.rubin.rubin_pool` for a finite or infinite complete-data
  df, but rbmi maps an ``NA`` complete-data df to :math:`\nu = \infty` (``rubin_pool``: Rubin's
  1987 df) and returns NA instead of failing when every SE is NA.
* :func:`bmlmi_estimates`: von Hippel & Bartlett's (2021) pooling of bootstrapped ML multiple
  imputation, rbmi's ``get_ests_bmlmi``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bmlmi_estimates", "rubin_df", "rubin_rules", "vector"]


def vector(x, name: str, min_len: int = 1) -> np.ndarray:
    """``x`` as a flat float array of at least ``min_len`` values (else ValueError naming ``name``)."""
    a = np.asarray(x, dtype=float).reshape(-1)
    if a.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {a.size}")
    return a


def rubin_df(v_com: float | None, var_b: float, var_t: float, m: int) -> float:
    r"""rbmi's ``rubin_df``: the Barnard & Rubin (1999) degrees of freedom.

    Parameters
    ----------
    v_com : float or None
        Complete-data df :math:`\nu_{com}`; None/NaN is R's ``NA``.
    var_b, var_t : float
        Between-imputation variance :math:`B` and total variance :math:`T`.
    m : int
        Number of imputations :math:`M`.

    Returns
    -------
    float
        With :math:`\lambda = (1 + 1/M)B/T`, :math:`\nu_{old} = (M-1)/\lambda^2` and
        :math:`\nu_{obs} = \frac{\nu_{com}+1}{\nu_{com}+3}\nu_{com}(1-\lambda)`:
        :math:`\nu = \nu_{old}\nu_{obs}/(\nu_{old}+\nu_{obs})`; :math:`\nu_{old}` if
        :math:`\nu_{com} = \infty`; :math:`\nu_{obs}` if :math:`\lambda = 0`; ``inf`` if
        :math:`\nu_{com}` is NA, or infinite with :math:`B = 0`.
    """
    if v_com is None or math.isnan(v_com) or (math.isinf(v_com) and var_b == 0):
        return math.inf
    lam = (1 + 1 / m) * var_b / var_t
    v_obs = math.nan if math.isinf(v_com) else (v_com + 1) / (v_com + 3) * v_com * (1 - lam)
    if lam != 0:
        v_old = (m - 1) / lam**2
        return v_old if math.isinf(v_com) else v_old * v_obs / (v_old + v_obs)
    return v_obs


def rubin_rules(ests, ses, v_com: float | None) -> tuple[float, float, float]:
    r"""rbmi's ``rubin_rules``: ``(est_point, var_t, df)``.

    :math:`\bar\theta = M^{-1}\sum_l\hat\theta_l`, :math:`T = \bar U + B + B/M` with
    :math:`\bar U = M^{-1}\sum_l se_l^2`, :math:`B = (M-1)^{-1}\sum_l(\hat\theta_l - \bar\theta)^2`,
    and ``df`` from :func:`rubin_df`. All ``ses`` NaN: ``(mean, nan, nan)``.
    """
    e, s = vector(ests, "ests"), vector(ses, "ses")
    if e.size != s.size:
        raise ValueError(f"ests and ses differ in length: {e.size} != {s.size}")
    m, est = e.size, float(np.mean(e))
    if np.all(np.isnan(s)):
        return est, math.nan, math.nan
    if m < 2:
        raise ValueError("Rubin's rules need at least 2 imputations")
    var_w, var_b = float(np.mean(s**2)), float(np.var(e, ddof=1))
    var_t = var_w + var_b + var_b / m
    return est, var_t, rubin_df(v_com, var_b, var_t, m)


def bmlmi_estimates(ests, D: int) -> tuple[float, float, float]:
    r"""rbmi's ``get_ests_bmlmi``: ``(est_point, est_var, df)`` of von Hippel & Bartlett (2021).

    ``ests`` fill a :math:`B \times D` matrix by row (row :math:`b`: the :math:`D` imputations of
    bootstrap sample :math:`b`); :math:`\hat\theta = \bar\theta_{\cdot\cdot}` and

    .. math::

        MSW = \frac{\sum_{b,d}(\hat\theta_{bd} - \bar\theta_{b\cdot})^2}{B(D-1)},\quad
        MSB = \frac{D\sum_b(\bar\theta_{b\cdot} - \bar\theta_{\cdot\cdot})^2}{B-1},\quad
        \hat V = \Bigl(1 + \frac1B\Bigr)\frac{MSB - MSW}{D} + \frac{MSW}{BD},

        \nu = \max\Bigl(3,\ \hat V^2\Big/\Bigl[\Bigl(\frac{B+1}{BD}\Bigr)^2\frac{MSB^2}{B-1}
        + \frac{MSW^2}{BD^2(D-1)}\Bigr]\Bigr)

    (NaN, as R's ``max(3, NaN)``, when all estimates are equal).
    """
    e = vector(ests, "ests")
    if D <= 1:
        raise ValueError("`D` must be a numeric larger than 1")
    if e.size % D:
        raise ValueError("length of `ests` must be a multiple of `D`")
    b = e.size // D
    if b < 2:
        raise ValueError("BMLMI pooling needs at least 2 bootstrap samples (B >= 2)")
    mat = e.reshape(b, D)  # R: matrix(ests, nrow = B, ncol = D, byrow = TRUE)
    est_point = float(np.mean(mat))
    rows = mat.mean(axis=1)
    msw = float(np.sum((mat - rows[:, None]) ** 2)) / (b * (D - 1))
    msb = D * float(np.sum((rows - est_point) ** 2)) / (b - 1)
    est_var = (1 + 1 / b) * ((msb - msw) / D) + msw / (b * D)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.float64(est_var**2) / (((b + 1) / (b * D)) ** 2 * msb**2 / (b - 1) + msw**2 / (b * D**2 * (D - 1)))
    return est_point, est_var, float(df) if np.isnan(df) else max(3.0, float(df))
