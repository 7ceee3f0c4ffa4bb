r"""REML machinery shared by :mod:`analysis.frequentist.lmm` and :mod:`analysis.frequentist.mmrm`.

Both models are Gaussian marginal models for subjects :math:`i = 1, \dots, n`,

.. math::

    y_i \sim N\bigl(X_i \beta,\; V_i(\psi)\bigr), \qquad
    V_i(\psi) = \sum_{k=1}^{K} \psi_k G_{ik},

whose covariance is *linear* in a vector :math:`\psi` of variance/covariance components
(random-effect (co)variances and the residual variance for the LMM, the unique elements of the
visit covariance matrix for the MMRM) with known per-subject basis matrices :math:`G_{ik}`.
Subjects are stored padded to a common length :math:`m`; padded positions carry a unit
variance and no data so they contribute nothing.

The restricted log-likelihood is

.. math::

    \ell_R(\psi) = -\tfrac12\Bigl[\sum_i \log|V_i| + \log|X^\top V^{-1} X|
        + r^\top V^{-1} r + (N - p)\log 2\pi\Bigr],
    \qquad r = y - X\hat\beta(\psi),

the same as ``logLik()`` of a REML ``lme4::lmer`` fit. With :math:`P = V^{-1} - V^{-1}X\Phi
X^\top V^{-1}`, :math:`\Phi = (X^\top V^{-1}X)^{-1}` and :math:`u = Py = V^{-1} r`, the score
and the observed Hessian are exact:

.. math::

    \partial_k \ell_R = -\tfrac12 \operatorname{tr}(P G_k) + \tfrac12 u^\top G_k u,
    \qquad
    \partial_k\partial_l \ell_R = \tfrac12 \operatorname{tr}(P G_k P G_l) - u^\top G_k P G_l u,

and :math:`\partial \Phi / \partial\psi_k = \Phi P_k \Phi` with
:math:`P_k = X^\top V^{-1} G_k V^{-1} X`. Models are fitted in a profiled form
(:math:`V = \sigma^2 V_0`, with :math:`\sigma^2` and :math:`\beta` profiled out as in lme4), and
inference uses a smooth reparametrisation :math:`\psi = \psi(\omega)` chosen by each model: the
Hessian in :math:`\omega` is :math:`J^\top H_\psi J + \sum_k g_{\psi,k} \nabla^2 \psi_k`, where
:math:`J = \partial\psi/\partial\omega` is taken by complex-step differentiation (exact to rounding)
and :math:`\nabla^2\psi_k` by central differences of that exact Jacobian.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "RemlEngine",
    "Inference",
    "complex_jacobian",
    "second_derivatives",
    "satterthwaite_df",
    "kenward_roger",
    "contrast_table",
    "f_test",
    "newton_polish",
    "single_threaded_blas",
]

_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass
class _Eval:
    """Quantities at one value of the covariance parameters (cached by :class:`RemlEngine`)."""

    vinv: np.ndarray  # (n, m, m)
    logdet_v: float
    a: np.ndarray  # V^{-1} X, (n, m, p)
    phi: np.ndarray  # (X' V^{-1} X)^{-1}
    logdet_xvx: float
    beta: np.ndarray
    u: np.ndarray  # V^{-1} r, (n, m)
    quad: float  # r' V^{-1} r


class RemlEngine:
    r"""Restricted likelihood of :math:`y_i \sim N(X_i\beta, \sum_k \psi_k G_{ik})`.

    Parameters
    ----------
    x : ndarray, shape (n, m, p)
        Padded fixed-effects design (zeros in padded rows).
    y : ndarray, shape (n, m)
        Padded outcome (zeros in padded positions).
    mask : ndarray of bool, shape (n, m)
        True where an observation exists.
    g : ndarray, shape (K, n, m, m)
        Basis matrices :math:`G_{ik}`; zero in padded rows/columns.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, g: np.ndarray) -> None:
        self.x, self.y, self.mask, self.g = x, y, mask, g
        self.n, self.m, self.p = x.shape
        self.k = g.shape[0]
        self.n_obs = int(mask.sum())
        self.pad = np.zeros((self.n, self.m, self.m))
        idx = np.arange(self.m)
        self.pad[:, idx, idx] = (~mask).astype(float)
        self._gflat = g.reshape(self.k, -1)

    # ----------------------------------------------------------------------------------------
    def covariance(self, psi: np.ndarray) -> np.ndarray:
        """Padded subject covariance matrices :math:`V_i(\\psi)`, shape (n, m, m)."""
        return self.pad + np.tensordot(np.asarray(psi, dtype=float), self.g, axes=1)

    def evaluate(self, psi: np.ndarray) -> _Eval | None:
        """GLS fit at ``psi``; ``None`` if some :math:`V_i` is not positive definite."""
        v = self.covariance(psi)
        try:
            chol = np.linalg.cholesky(v)
        except np.linalg.LinAlgError:
            return None
        logdet_v = 2.0 * float(np.log(np.diagonal(chol, axis1=1, axis2=2)).sum())
        eye = np.broadcast_to(np.eye(self.m), v.shape)
        linv = np.linalg.solve(chol, eye)
        vinv = np.einsum("nba,nbc->nac", linv, linv)
        a = vinv @ self.x
        xvx = np.einsum("nap,naq->pq", self.x, a)
        xvy = np.einsum("nap,na->p", a, self.y)
        try:
            cx = np.linalg.cholesky(xvx)
        except np.linalg.LinAlgError:
            return None
        phi = np.linalg.inv(xvx)
        phi = 0.5 * (phi + phi.T)
        beta = phi @ xvy
        r = self.y - np.einsum("nap,p->na", self.x, beta)
        u = np.einsum("nab,nb->na", vinv, r)
        quad = float(np.einsum("na,na->", r, u))
        return _Eval(vinv, logdet_v, a, phi, 2.0 * float(np.log(np.diag(cx)).sum()), beta, u, quad)

    # ----------------------------------------------------------------------------------------
    def profiled(self, psi0: np.ndarray) -> tuple[float, np.ndarray]:
        r"""Profiled REML deviance :math:`-2\ell_R` at :math:`V = \hat\sigma^2 V_0(\psi_0)`.

        :math:`\hat\sigma^2 = r^\top V_0^{-1} r / (N - p)`. Returns the deviance and its
        gradient with respect to :math:`\psi_0` (``inf`` and zeros when not positive definite).
        """
        ev = self.evaluate(psi0)
        nmp = self.n_obs - self.p
        if ev is None or not ev.quad > 0:
            return np.inf, np.zeros(self.k)
        dev = ev.logdet_v + ev.logdet_xvx + nmp * (1.0 + _LOG2PI + np.log(ev.quad / nmp))
        pblock = ev.vinv - ev.a @ ev.phi @ ev.a.transpose(0, 2, 1)
        mat = pblock - (nmp / ev.quad) * np.einsum("na,nb->nab", ev.u, ev.u)
        return float(dev), self._gflat @ mat.reshape(-1)

    def loglik(self, psi: np.ndarray) -> float:
        """REML log-likelihood (``-inf`` outside the positive-definite region)."""
        ev = self.evaluate(psi)
        if ev is None:
            return -np.inf
        return -0.5 * (ev.logdet_v + ev.logdet_xvx + ev.quad + (self.n_obs - self.p) * _LOG2PI)

    def derivatives(self, psi: np.ndarray) -> dict[str, np.ndarray]:
        r"""Exact score, observed and expected information pieces in :math:`\psi`.

        Returns a dict with ``loglik``, ``beta``, ``phi`` (:math:`\Phi`), ``grad``
        (:math:`\partial\ell_R/\partial\psi`), ``hess`` (observed Hessian), ``trpp``
        (:math:`\operatorname{tr}(PG_kPG_l)`, i.e. twice the expected information), ``pk``
        (:math:`P_k`, shape (K, p, p)) and ``qkl`` (:math:`Q_{kl} = X^\top V^{-1} G_k V^{-1}
        G_l V^{-1} X`, shape (K, K, p, p)).
        """
        ev = self.evaluate(psi)
        if ev is None:
            raise ValueError("covariance parameters are not positive definite")
        g, k = self.g, self.k
        pblock = ev.vinv - ev.a @ ev.phi @ ev.a.transpose(0, 2, 1)
        uu = np.einsum("na,nb->nab", ev.u, ev.u)
        grad = self._gflat @ (-0.5 * pblock + 0.5 * uu).reshape(-1)
        # pieces of tr(P G_k P G_l)
        b = np.matmul(ev.vinv[None], g)  # V^{-1} G_k
        tr_vv = b.reshape(k, -1) @ b.transpose(0, 1, 3, 2).reshape(k, -1).T
        ga = np.matmul(g, ev.a[None])  # G_k V^{-1} X, (K, n, m, p)
        vga = np.matmul(ev.vinv[None], ga)
        pk = np.einsum("nap,knaq->kpq", ev.a, ga)
        qkl = np.tensordot(ga, vga, axes=([1, 2], [1, 2])).transpose(0, 2, 1, 3)
        ppk = np.einsum("pq,kqr->kpr", ev.phi, pk)  # Phi P_k
        tr_phiq = np.einsum("pq,klqp->kl", ev.phi, qkl)
        tr_pp = np.einsum("kpq,lqp->kl", ppk, ppk)
        trpp = tr_vv - 2.0 * tr_phiq + tr_pp
        # u' G_k P G_l u
        w = np.einsum("knab,nb->kna", g, ev.u)
        vw = np.einsum("nab,knb->kna", ev.vinv, w)
        aw = np.einsum("nap,kna->kp", ev.a, w)
        upu = np.einsum("kna,lna->kl", w, vw) - aw @ ev.phi @ aw.T
        hess = 0.5 * trpp - upu
        loglik = -0.5 * (ev.logdet_v + ev.logdet_xvx + ev.quad + (self.n_obs - self.p) * _LOG2PI)
        return {"loglik": np.array(loglik), "beta": ev.beta, "phi": ev.phi, "grad": grad,
                "hess": 0.5 * (hess + hess.T), "trpp": 0.5 * (trpp + trpp.T), "pk": pk,
                "qkl": qkl}


# --------------------------------------------------------------------------------------------
# derivatives of the reparametrisation psi(omega)
# --------------------------------------------------------------------------------------------
def complex_jacobian(fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                     h: float = 1e-30) -> np.ndarray:
    """Jacobian of a complex-analytic ``fun`` at real ``x`` by the complex step (exact)."""
    x = np.asarray(x, dtype=float)
    cols = []
    for j in range(x.size):
        xc = x.astype(complex)
        xc[j] += 1j * h
        cols.append(np.imag(np.asarray(fun(xc))) / h)
    return np.column_stack(cols)


def second_derivatives(fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                       scale: np.ndarray) -> np.ndarray:
    r"""Second derivatives :math:`\partial^2 f_k/\partial x_h\partial x_j`, shape (K, H, H).

    Central differences (with one Richardson step) of the complex-step Jacobian; ``scale``
    sets the step per coordinate.
    """
    x = np.asarray(x, dtype=float)
    hdim = x.size
    out = None
    for j in range(hdim):
        h = 1e-4 * scale[j]
        d = []
        for step in (h, h / 2):
            e = np.zeros(hdim)
            e[j] = step
            d.append((complex_jacobian(fun, x + e) - complex_jacobian(fun, x - e)) / (2 * step))
        dj = (4 * d[1] - d[0]) / 3  # (K, H): d/dx_j of the Jacobian
        if out is None:
            out = np.zeros((dj.shape[0], hdim, hdim))
        out[:, :, j] = dj
    assert out is not None
    return 0.5 * (out + out.transpose(0, 2, 1))


@dataclass
class Inference:
    r"""Everything needed for Wald inference on :math:`\beta` in parameters :math:`\omega`.

    Attributes
    ----------
    beta, vcov : fixed effects and :math:`\Phi(\hat\omega)`.
    omega : fitted covariance parameters.
    grad, hess : score and observed Hessian of :math:`\ell_R` in :math:`\omega`.
    w : :math:`(-H)^{-1}`, the asymptotic covariance of :math:`\hat\omega` (``None`` if the
        Hessian is not negative definite).
    jac : :math:`\partial\Phi/\partial\omega_h`, shape (H, p, p).
    """

    beta: np.ndarray
    vcov: np.ndarray
    omega: np.ndarray
    loglik: float
    grad: np.ndarray
    hess: np.ndarray
    w: np.ndarray | None
    jac: np.ndarray
    deriv: dict
    j_psi: np.ndarray
    d2_psi: np.ndarray

    @classmethod
    def compute(cls, engine: RemlEngine, psi_of: Callable[[np.ndarray], np.ndarray],
                omega: np.ndarray, scale: np.ndarray) -> Inference:
        """Evaluate score, Hessian and :math:`\\partial\\Phi/\\partial\\omega` at ``omega``."""
        psi = np.real(psi_of(omega.astype(complex)))
        der = engine.derivatives(psi)
        jpsi = complex_jacobian(psi_of, omega)
        d2 = second_derivatives(psi_of, omega, scale)
        grad = jpsi.T @ der["grad"]
        hess = jpsi.T @ der["hess"] @ jpsi + np.einsum("k,khj->hj", der["grad"], d2)
        hess = 0.5 * (hess + hess.T)
        w = None
        try:
            np.linalg.cholesky(-hess)
            w = np.linalg.inv(-hess)
            w = 0.5 * (w + w.T)
        except np.linalg.LinAlgError:
            w = None
        phi = der["phi"]
        dphi_psi = np.einsum("pq,kqr,rs->kps", phi, der["pk"], phi)
        jac = np.einsum("kh,kps->hps", jpsi, dphi_psi)
        return cls(der["beta"], phi, np.asarray(omega, float), float(der["loglik"]), grad, hess,
                   w, jac, der, jpsi, d2)

    def newton_decrement(self) -> float:
        r""":math:`g^\top(-H)^{-1}g`: predicted log-likelihood gain of one more Newton step."""
        if self.w is None:
            return np.inf
        return float(self.grad @ self.w @ self.grad)


# --------------------------------------------------------------------------------------------
# degrees of freedom
# --------------------------------------------------------------------------------------------
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
    """
    phi = engine_der["phi"]
    pk = np.einsum("kh,kpq->hpq", j, engine_der["pk"])
    qk = np.einsum("kh,lj,klpq->hjpq", j, j, engine_der["qkl"])
    rk = np.einsum("khj,kpq->hjpq", d2, engine_der["pk"])
    pphip = np.einsum("hpq,qr,jrs->hjps", pk, phi, pk)
    u = np.einsum("hj,hjpq->pq", w, qk - pphip - 0.25 * rk)
    phi_a = phi + 2.0 * phi @ u @ phi
    phi_a = 0.5 * (phi_a + phi_a.T)

    def df_fun(lmat: np.ndarray) -> tuple[float, float]:
        lmat = np.atleast_2d(lmat)
        c = lmat.shape[0]
        theta = lmat.T @ np.linalg.solve(lmat @ phi @ lmat.T, lmat)
        mphi = [theta @ phi @ pk[h] @ phi for h in range(pk.shape[0])]
        tr = np.array([np.trace(mm) for mm in mphi])
        a1 = float(tr @ w @ tr)
        a2 = float(sum(w[h, k] * np.trace(mphi[h] @ mphi[k])
                       for h in range(len(mphi)) for k in range(len(mphi))))
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


def newton_polish(engine: RemlEngine, psi_of: Callable[[np.ndarray], np.ndarray],
                  omega: np.ndarray, scale: np.ndarray, max_iter: int = 6) -> Inference:
    r"""Refine an optimum with Newton steps :math:`\omega + (-H)^{-1} g` (step-halving).

    Stops when the Newton decrement :math:`g^\top(-H)^{-1}g < 10^{-14}`, when the Hessian is
    not negative definite (e.g. on the boundary), or when no step improves :math:`\ell_R`.
    """
    inf = Inference.compute(engine, psi_of, omega, scale)
    for _ in range(max_iter):
        if inf.w is None or inf.newton_decrement() < 1e-14:
            break
        step = inf.w @ inf.grad
        t, accepted = 1.0, None
        while t > 1e-3:
            cand = inf.omega + t * step
            ll = engine.loglik(np.real(psi_of(cand.astype(complex))))
            if np.isfinite(ll) and ll >= inf.loglik - 1e-10 * abs(inf.loglik):
                accepted = cand
                break
            t /= 2.0
        if accepted is None:
            break
        inf = Inference.compute(engine, psi_of, accepted, scale)
    return inf


def single_threaded_blas(func: Callable) -> Callable:
    """Run ``func`` with BLAS limited to one thread.

    The fits do batched algebra on many tiny matrices, for which OpenBLAS' threading costs far
    more than it saves (a 46-subject fit runs 3-4x faster single-threaded).
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with pymc
            return func(*args, **kwargs)
        with threadpool_limits(1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper
