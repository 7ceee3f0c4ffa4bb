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
and :math:`\nabla^2\psi_k` by central differences of that exact Jacobian (or, where the model knows
them, e.g. :math:`\psi = \omega` for the unstructured MMRM, exactly).

:class:`RemlEngine` keeps the basis as a dense (K, n, m, m) tensor, which suits the LMM (per-subject
times, K = 4); the MMRM, whose :math:`V_i` depend only on the missingness pattern, uses
:class:`analysis.frequentist.patterns.PatternEngine`, which has the same interface.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Inference",
    "PsiDerivatives",
    "RemlEngine",
    "complex_jacobian",
    "minimise_profiled",
    "newton_polish",
    "second_derivatives",
    "single_threaded_blas",
]

_LOG2PI = float(np.log(2.0 * np.pi))

#: ``omega -> (d psi / d omega (K, H), d2 psi / d omega^2 (K, H, H))``, exact
PsiDerivatives = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Eval:
    """Quantities of one GLS fit at given covariance parameters."""

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
    deriv : the :meth:`RemlEngine.derivatives` dict (in :math:`\psi`).
    j_psi, d2_psi : :math:`\partial\psi/\partial\omega` and :math:`\nabla^2\psi_k`.
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
    def compute(cls, engine, psi_of: Callable[[np.ndarray], np.ndarray], omega: np.ndarray,
                scale: np.ndarray, psi_derivatives: PsiDerivatives | None = None) -> Inference:
        """Evaluate score, Hessian and :math:`\\partial\\Phi/\\partial\\omega` at ``omega``.

        ``engine`` is a :class:`RemlEngine` or anything with its ``derivatives`` (e.g.
        :class:`analysis.frequentist.patterns.PatternEngine`). ``psi_derivatives(omega)``, if
        given, returns the exact :math:`(\\partial\\psi/\\partial\\omega,\\ \\nabla^2\\psi)`
        (e.g. the identity and zeros when :math:`\\psi = \\omega`) instead of the complex-step
        Jacobian and its central differences.
        """
        psi = np.real(psi_of(omega.astype(complex)))
        der = engine.derivatives(psi)
        if psi_derivatives is not None:
            jpsi, d2 = psi_derivatives(omega)
        else:
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
        dphi_psi = np.matmul(np.matmul(phi, der["pk"]), phi)  # Phi P_k Phi
        jac = np.tensordot(jpsi, dphi_psi, axes=([0], [0]))
        return cls(der["beta"], phi, np.asarray(omega, float), float(der["loglik"]), grad, hess,
                   w, jac, der, jpsi, d2)

    def newton_decrement(self) -> float:
        r""":math:`g^\top(-H)^{-1}g`: predicted log-likelihood gain of one more Newton step."""
        if self.w is None:
            return np.inf
        return float(self.grad @ self.w @ self.grad)


def newton_polish(engine, psi_of: Callable[[np.ndarray], np.ndarray], omega: np.ndarray,
                  scale: np.ndarray, max_iter: int = 6,
                  psi_derivatives: PsiDerivatives | None = None) -> Inference:
    r"""Refine an optimum with Newton steps :math:`\omega + (-H)^{-1} g` (step-halving).

    Stops when the Newton decrement :math:`g^\top(-H)^{-1}g < 10^{-14}`, when the Hessian is
    not negative definite (e.g. on the boundary), or when no step improves :math:`\ell_R`.
    ``engine`` and ``psi_derivatives`` as in :meth:`Inference.compute`.
    """
    inf = Inference.compute(engine, psi_of, omega, scale, psi_derivatives)
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
        inf = Inference.compute(engine, psi_of, accepted, scale, psi_derivatives)
    return inf


class _BlasLimit(threading.local):
    """Per-thread nesting depth of :func:`single_threaded_blas` (only the outermost call limits)."""

    depth = 0


_BLAS_LIMIT = _BlasLimit()


@functools.cache
def _blas_controller():
    """One ``threadpoolctl.ThreadpoolController`` per process (finding the loaded BLAS libraries
    takes milliseconds, so it is done once, not on every fit)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with pymc
        return None
    return ThreadpoolController()


def single_threaded_blas(func: Callable) -> Callable:
    """Run ``func`` with BLAS limited to one thread.

    The fits do batched algebra on many tiny matrices, for which OpenBLAS' threading costs far
    more than it saves (a 46-subject fit runs 3-4x faster single-threaded). Nested calls (a
    jackknife of hundreds of refits inside one limited block) cost nothing.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        controller = _blas_controller()
        if controller is None or _BLAS_LIMIT.depth:
            return func(*args, **kwargs)
        _BLAS_LIMIT.depth += 1
        try:
            with controller.limit(limits=1, user_api="blas"):
                return func(*args, **kwargs)
        finally:
            _BLAS_LIMIT.depth -= 1

    return wrapper


def minimise_profiled(engine: RemlEngine, psi0: Callable[[np.ndarray], np.ndarray],
                      jac0: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
                      bounds: list | None = None) -> tuple[np.ndarray, dict]:
    r"""Minimise the profiled REML deviance over relative parameters :math:`\phi`.

    L-BFGS-B (exact gradients; ``bounds`` optional) gets close, then a trust-region Newton
    method (``trust-exact``, Hessian by central differences of the exact gradient) finishes:
    L-BFGS-B alone can stall on the long, curved valleys that near-singular covariance
    matrices (correlations near 1) produce.
    """
    from scipy import optimize

    def objective(phi):
        dev, grad = engine.profiled(np.real(psi0(phi)))
        if not np.isfinite(dev):
            return 1e300, np.zeros_like(phi)
        return dev, jac0(phi).T @ grad

    def hessian(phi):
        k = phi.size
        hmat = np.zeros((k, k))
        for j in range(k):
            h = 1e-6 * max(1.0, abs(phi[j]))
            e = np.zeros(k)
            e[j] = h
            hmat[:, j] = (objective(phi + e)[1] - objective(phi - e)[1]) / (2 * h)
        return 0.5 * (hmat + hmat.T)

    res1 = optimize.minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                             options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-8})
    res2 = optimize.minimize(objective, res1.x, jac=True, hess=hessian, method="trust-exact",
                             options={"gtol": 1e-9, "maxiter": 200})
    best = res2 if res2.fun <= res1.fun else res1
    info = {"n_function_evals": int(res1.nfev + res2.nfev),
            "optimizer_message": f"L-BFGS-B: {res1.message}; trust-exact: {res2.message}",
            "optimizer_success": bool(res2.success or res1.success),
            "deviance": float(best.fun)}
    return best.x, info
