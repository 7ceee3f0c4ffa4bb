r"""Denominator degrees of freedom and Wald tables for the REML models.

Satterthwaite (as lmerTest, with exact derivatives) and Kenward-Roger (as pbkrtest) for
contrasts :math:`L\beta` of the fixed effects of a fit summarised by
:class:`analysis.frequentist.reml.Inference`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from analysis.frequentist.reml import Inference

__all__ = ["satterthwaite_df", "kenward_roger", "contrast_table", "f_test"]


def satterthwaite_df(l: np.ndarray, inf: Inference) -> float:
    r"""Satterthwaite df of :math:`l^\top\hat\beta`: :math:`2 (l^\top\Phi l)^2 / (f^\top W f)`.

    :math:`f_h = l^\top (\partial\Phi/\partial\omega_h) l` and :math:`W` the inverse observed
    information of :math:`\omega` (Satterthwaite 1946; Kuznetsova et al. 2017, lmerTest).
    """
    var = float(l @ inf.vcov @ l)
    if inf.w is None:
        return np.nan
    f = np.einsum("p,hpq,q->h", l, inf.jac, l)
    denom = float(f @ inf.w @ f)
    return 2.0 * var**2 / denom if denom > 0 else np.inf


def kenward_roger(engine_der: dict, j: np.ndarray, d2: np.ndarray, w: np.ndarray,
                  ) -> tuple[np.ndarray, Callable[[np.ndarray], tuple[float, float]]]:
    r"""Kenward-Roger (1997) adjusted covariance :math:`\hat\Phi_A` and a df function.

    In the parameters :math:`\omega` of ``j`` (:math:`\partial\psi/\partial\omega`) and ``d2``
    (:math:`\nabla^2\psi`), with :math:`P_h = -X^\top \partial_h V^{-1} X`,
    :math:`Q_{hj} = X^\top \partial_h V^{-1}\, V\, \partial_j V^{-1} X`,
    :math:`R_{hj} = X^\top V^{-1}\partial_h\partial_j V\, V^{-1} X`,

    .. math::

        \hat\Phi_A = \Phi + 2\Phi\Bigl\{\sum_{h,j} W_{hj}\bigl(Q_{hj} - P_h\Phi P_j
            - \tfrac14 R_{hj}\bigr)\Bigr\}\Phi .

    Returns ``(Phi_A, df_fun)``; ``df_fun(L)`` gives ``(scale lambda, denominator df m)`` for
    the hypothesis :math:`L\beta = 0` (formulae of Kenward & Roger 1997, as in pbkrtest).

    The engine's pieces are in :math:`\psi` (``pk``: :math:`P_k`; ``qsum``: a function
    :math:`\tilde W \mapsto \sum_{kl}\tilde W_{kl}Q_{kl}`, or ``qkl`` the (K, K, p, p) tensor),
    so with :math:`J = \partial\psi/\partial\omega` the sums are taken in :math:`\psi` with
    :math:`\tilde W = JWJ^\top`: :math:`\sum_{hj}W_{hj}Q_{hj} = \sum_{kl}\tilde W_{kl}Q_{kl}`,
    :math:`\sum_{hj}W_{hj}R_{hj} = \sum_k(\sum_{hj}W_{hj}\partial_h\partial_j\psi_k)P_k`,
    never forming :math:`O(H^2p^2)` tensors of pairs beyond :math:`\sum_{hj}W_{hj}P_h\Phi P_j`.
    """
    phi = engine_der["phi"]
    pk = np.tensordot(j, engine_der["pk"], axes=([0], [0]))  # (H, p, p) in omega
    wt = j @ w @ j.T
    wt = 0.5 * (wt + wt.T)
    if "qsum" in engine_der:
        qsum = engine_der["qsum"](wt)
    else:
        qsum = np.tensordot(wt, engine_der["qkl"], axes=([0, 1], [0, 1]))
    rsum = np.tensordot(np.einsum("khj,hj->k", d2, w), engine_der["pk"], axes=1)
    wpk = np.tensordot(w, pk, axes=([1], [0]))  # sum_j W_hj P_j
    psum = np.einsum("hpq,hqs->ps", pk, phi @ wpk)
    u = qsum - psum - 0.25 * rsum
    phi_a = phi + 2.0 * phi @ u @ phi
    phi_a = 0.5 * (phi_a + phi_a.T)

    def df_fun(lmat: np.ndarray) -> tuple[float, float]:
        lmat = np.atleast_2d(lmat)
        c = lmat.shape[0]
        theta = lmat.T @ np.linalg.solve(lmat @ phi @ lmat.T, lmat)
        mphi = np.matmul(theta @ phi, pk) @ phi  # Theta Phi P_h Phi, (H, p, p)
        tr = np.trace(mphi, axis1=1, axis2=2)
        a1 = float(tr @ w @ tr)
        a2 = float(np.einsum("hk,hk->", w, np.einsum("hab,kba->hk", mphi, mphi)))
        b = (a1 + 6.0 * a2) / (2.0 * c)
        g = ((c + 1) * a1 - (c + 4) * a2) / ((c + 2) * a2)
        den = 3 * c + 2 * (1 - g)
        c1, c2, c3 = g / den, (c - g) / den, (c + 2 - g) / den
        e_star = 1.0 / (1.0 - a2 / c)
        v_star = (2.0 / c) * (1 + c1 * b) / ((1 - c2 * b) ** 2 * (1 - c3 * b))
        rho = v_star / (2.0 * e_star**2)
        m = 4.0 + (c + 2.0) / (c * rho - 1.0)
        lam = m / (e_star * (m - 2.0))
        return float(lam), float(m)

    return phi_a, df_fun


# --------------------------------------------------------------------------------------------
# result tables
# --------------------------------------------------------------------------------------------
def contrast_table(names: list[str], est: np.ndarray, se: np.ndarray, df: np.ndarray,
                   level: float = 0.95) -> pd.DataFrame:
    """Table of Wald t-tests: ``term, estimate, se, df, t, p, ci_low, ci_high``."""
    est, se, df = (np.asarray(a, dtype=float) for a in (est, se, df))
    t = est / se
    p = 2.0 * stats.t.sf(np.abs(t), df)
    q = stats.t.ppf(0.5 + level / 2.0, df)
    return pd.DataFrame({"term": names, "estimate": est, "se": se, "df": df, "t": t, "p": p,
                         "ci_low": est - q * se, "ci_high": est + q * se})


def f_test(lmat: np.ndarray, beta: np.ndarray, inf: Inference) -> dict[str, float]:
    r"""Satterthwaite F-test of :math:`L\beta = 0` (the method of lmerTest's ``contestMD``).

    :math:`L\Phi L^\top = U D U^\top`; each of the :math:`q` independent :math:`t^2` along the
    eigenvectors gets Satterthwaite df :math:`\nu_j`, and the F denominator df is
    :math:`2E/(E-q)` with :math:`E = \sum_j \nu_j/(\nu_j - 2)` (2 if any :math:`\nu_j \le 2`).
    """
    lmat = np.atleast_2d(np.asarray(lmat, dtype=float))
    q = lmat.shape[0]
    vl = lmat @ inf.vcov @ lmat.T
    d, uvec = np.linalg.eigh(vl)
    if d.min() <= 1e-12 * d.max():
        raise ValueError("contrast matrix L is not of full row rank")
    ptl = uvec.T @ lmat
    f_stat = float(((ptl @ beta) ** 2 / d).sum() / q)
    nu = np.array([satterthwaite_df(row, inf) for row in ptl])
    if q == 1:
        ddf = float(nu[0])
    elif np.all(np.abs(np.diff(nu)) < 1e-8):
        ddf = float(nu.mean())
    elif np.any(nu <= 2):
        ddf = 2.0
    else:
        e = float((nu / (nu - 2)).sum())
        ddf = 2 * e / (e - q)
    return {"f": f_stat, "num_df": float(q), "den_df": ddf, "p": float(stats.f.sf(f_stat, q, ddf))}
