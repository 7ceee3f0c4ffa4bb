r"""Fast REML fit of an unstructured-covariance MMRM on wide arrays, for many refits.

Patient :math:`i` has visits :math:`j = 1, \dots, m`; :math:`S_i` is the set of visits whose
value enters the fit (the mask). With one :math:`m \times m` covariance :math:`\Sigma` shared by
all patients,

.. math::

    y_{i S_i} \sim N\bigl(X_{i S_i}\beta,\ \Sigma_i\bigr), \qquad \Sigma_i = \Sigma_{S_i S_i},
    \qquad \Sigma = \sum_{k=1}^{K} \psi_k G_k, \quad K = m(m+1)/2,

with :math:`\psi = \operatorname{vech}\Sigma` and :math:`G_k` the symmetric unit matrices. A
patient counted :math:`c_i` times (bootstrap resample; :math:`c_i = 0` drops it) weighs each sum
below by :math:`c_i`. The restricted log-likelihood, as ``nlme::gls``/``mmrm``/lme4 and
:func:`analysis.frequentist.mmrm.fit_mmrm` report it, is

.. math::

    \ell_R(\psi) = -\tfrac12\Bigl[\sum_i c_i\log|\Sigma_i| + \log|X^\top V^{-1}X|
        + r^\top V^{-1} r + (N - p)\log 2\pi\Bigr], \qquad r = y - X\hat\beta(\psi).

With :math:`W_i = \Sigma_i^{-1}` (embedded in :math:`m \times m` with zeros), :math:`A_i = W_i X_i`,
:math:`\Phi = (\sum_i c_i X_i^\top A_i)^{-1}`, :math:`u_i = W_i r_i`, :math:`B_i = A_i\Phi A_i^\top`
and :math:`D` the duplication matrix (:math:`\operatorname{vec} G_k` in its columns), every
derivative is a sum over the missingness patterns :math:`s` (patients sharing :math:`S_i` share
:math:`W_s`) of Kronecker products, using :math:`\operatorname{tr}(B G_k W G_l) =
\operatorname{vec}(G_k)^\top (B \otimes W) \operatorname{vec}(G_l)`:

.. math::

    \nabla\ell_R = D^\top \operatorname{vec}\sum_s \tfrac12\bigl(-c_s W_s + \bar B_s + \bar U_s\bigr),
    \qquad
    \nabla^2\ell_R = D^\top\Bigl[\sum_s \bigl(\tfrac12 c_s W_s - \bar B_s - \bar U_s\bigr)
        \otimes W_s\Bigr] D + \tfrac12\operatorname{tr}(\Phi P_k \Phi P_l) + a_k^\top\Phi a_l,

where :math:`c_s = \sum_{i \in s} c_i`, :math:`\bar B_s = \sum_{i\in s} c_i B_i`,
:math:`\bar U_s = \sum_{i\in s} c_i u_i u_i^\top`, :math:`P_k = \sum_i c_i A_i^\top G_k A_i` and
:math:`a_k = \sum_i c_i A_i^\top G_k u_i`. Dropping :math:`\bar U_s` and :math:`a_k` gives the
expected information :math:`\tfrac12\operatorname{tr}(PG_kPG_l)`. The fit takes Newton steps in
:math:`\psi` (Fisher scoring where the observed information is not positive definite), halving
steps that leave the positive-definite cone or lower :math:`\ell_R`, and stops once a Newton step
changes every :math:`\Sigma_{ab}` by less than :math:`10^{-9}\sqrt{\Sigma_{aa}\Sigma_{bb}}` (that
step is taken: quadratic convergence puts the result at rounding level). One iteration costs
:math:`O(\#\text{patterns}\, m^4 + n m^2 p + K^2 p^2)` in a fixed number of numpy calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from analysis.frequentist.reml import single_threaded_blas

__all__ = ["WideFit", "WideReml"]

_LOG2PI = float(np.log(2.0 * np.pi))
_STEP_TOL = 1e-9


@dataclass(frozen=True)
class WideFit:
    """REML fit of :class:`WideReml`.

    Attributes
    ----------
    beta : ndarray, shape (p,)
        GLS estimate :math:`\\hat\\beta(\\hat\\Sigma)`.
    sigma : ndarray, shape (m, m)
        REML estimate :math:`\\hat\\Sigma`.
    loglik : float
        REML log-likelihood (as ``fit_mmrm(...).loglik``).
    converged : bool
        A Newton step below the tolerance was reached (False when the iteration limit is hit
        or no step improves :math:`\\ell_R`, e.g. when the supremum lies on the boundary of
        the positive-definite cone, as in small resamples with many visits).
    n_iter : int
        Number of Newton/Fisher-scoring iterations.
    beta_cov : ndarray, shape (p, p)
        :math:`(\\sum_i c_i X_i^\\top \\Sigma_i^{-1} X_i)^{-1}`.
    """

    beta: np.ndarray
    sigma: np.ndarray
    loglik: float
    converged: bool
    n_iter: int
    beta_cov: np.ndarray


class _Data(NamedTuple):
    """Arrays of one fit: the used patients, their weights and their patterns."""

    x: np.ndarray  # (n, m, p), zero off the mask
    y: np.ndarray  # (n, m), zero off the mask
    mask: np.ndarray  # (n, m)
    c: np.ndarray  # (n,) weights
    pat: np.ndarray  # (n,) pattern index into s
    s: np.ndarray  # (q, m) bool patterns
    e: np.ndarray  # (q, n) weight of patient i in pattern s
    cs: np.ndarray  # (q,) total weight per pattern
    n_obs: float


class _State(NamedTuple):
    """GLS quantities at one :math:`\\Sigma`."""

    sigma: np.ndarray
    loglik: float
    w: np.ndarray  # (q, m, m)
    a: np.ndarray  # (n, m, p)
    phi: np.ndarray
    beta: np.ndarray
    u: np.ndarray  # (n, m)


class WideReml:
    r"""REML fitter of :math:`y_{iS_i} \sim N(X_{iS_i}\beta, \Sigma_{S_iS_i})`, unstructured :math:`\Sigma`.

    Parameters
    ----------
    x : ndarray, shape (n, m, p)
        Design: ``x[i, j]`` is patient ``i``'s covariate row at visit ``j``.
    y : ndarray, shape (n, m)
        Outcomes; values off the mask are ignored (may be NaN).
    mask : ndarray of bool, shape (n, m)
        True where a value enters the fit.

    Attributes
    ----------
    n, m, p : int
        Patients, visits and design columns.
    patterns, pattern_of : ndarray
        The distinct rows of ``mask`` (q, m) and each patient's index into them (n,).
    pairs : list of tuple
        :math:`(a, b)`, :math:`a \ge b`, of :math:`\psi_k = \Sigma_{ab}` (``fit_mmrm``'s order).

    Raises
    ------
    ValueError
        Bad shapes, non-finite values on the mask, a visit with no value, two visits never
        observed together, a rank-deficient design on the mask or too few observations.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        x, y, mask = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(mask)
        if x.ndim != 3 or y.ndim != 2 or mask.shape != y.shape or x.shape[:2] != y.shape:
            raise ValueError(f"need x (n, m, p), y (n, m) and mask (n, m); got {x.shape}, "
                             f"{y.shape} and {mask.shape}")
        if mask.dtype != bool:
            raise ValueError(f"mask must be a boolean array, got dtype {mask.dtype}")
        if not (np.isfinite(y[mask]).all() and np.isfinite(x[mask]).all()):
            raise ValueError("y and x must be finite wherever mask is True")
        self.n, self.m, self.p = x.shape
        self.mask = mask.copy()
        self.x = np.where(mask[:, :, None], x, 0.0)
        self.y = np.where(mask, y, 0.0)
        self.patterns, self.pattern_of = np.unique(mask, axis=0, return_inverse=True)
        self.pattern_of = self.pattern_of.reshape(-1)
        m = self.m
        self.pairs = [(a, b) for b in range(m) for a in range(b, m)]  # fit_mmrm's order
        self.k = len(self.pairs)
        dup = np.zeros((m, m, self.k))
        for k, (a, b) in enumerate(self.pairs):
            dup[a, b, k] = dup[b, a, k] = 1.0
        self._d3, self._d = dup, dup.reshape(m * m, self.k)
        self._check(np.ones(self.n))

    # ----------------------------------------------------------------------------------------
    def _check(self, counts: np.ndarray) -> None:
        used = self.mask & (counts > 0)[:, None]
        seen = np.flatnonzero(~used.any(axis=0))
        if seen.size:
            raise ValueError(f"visit {seen[0]} (0-based) has no value in the fitted rows")
        both = used.T.astype(float) @ used.astype(float)
        if (both == 0).any():
            a, b = np.argwhere(both == 0)[0]
            raise ValueError(f"visits {a} and {b} (0-based) are never observed together: their "
                             "covariance is not identified")
        n_obs = float(counts @ self.mask.sum(axis=1))
        if n_obs - self.p <= self.k:
            raise ValueError(f"too few observations ({n_obs:g}) for {self.p} fixed effects and "
                             f"{self.k} covariance parameters")
        rank = np.linalg.matrix_rank(self.x[used])
        if rank < self.p:
            raise ValueError(f"design restricted to the mask is rank deficient (rank {rank} < "
                             f"{self.p} columns)")

    def _data(self, rows: np.ndarray | None) -> _Data:
        if rows is None:
            counts = np.ones(self.n)
        else:
            rows = np.asarray(rows)
            if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
                raise ValueError("rows must be a non-empty 1-d array of integer patient indices")
            if rows.min() < 0 or rows.max() >= self.n:
                raise ValueError(f"rows must lie in [0, {self.n}), got {rows.min()}..{rows.max()}")
            counts = np.bincount(rows, minlength=self.n).astype(float)
            self._check(counts)
        keep = np.flatnonzero(counts > 0)
        pats, pat = np.unique(self.pattern_of[keep], return_inverse=True)
        c = counts[keep]
        e = np.zeros((pats.size, keep.size))
        e[pat, np.arange(keep.size)] = c
        n_obs = float(c @ self.mask[keep].sum(axis=1))
        return _Data(self.x[keep], self.y[keep], self.mask[keep], c, pat, self.patterns[pats], e, e.sum(axis=1),
                     n_obs)

    # ----------------------------------------------------------------------------------------
    def _evaluate(self, d: _Data, sigma: np.ndarray) -> _State | None:
        """GLS fit and :math:`\\ell_R` at ``sigma`` (``None`` if not positive definite)."""
        ss = d.s[:, :, None] & d.s[:, None, :]
        padded = np.where(ss, sigma, 0.0) + np.eye(self.m) * (~d.s)[:, None, :]
        try:
            np.linalg.cholesky(sigma)
            chol = np.linalg.cholesky(padded)
        except np.linalg.LinAlgError:
            return None
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        w = np.linalg.inv(padded) * ss
        w = 0.5 * (w + w.transpose(0, 2, 1))
        wi = w[d.pat]
        a = wi @ d.x
        n, m, p = a.shape
        ac = (a * d.c[:, None, None]).reshape(n * m, p)
        xs = d.x.reshape(n * m, p)
        xvx = xs.T @ ac
        try:
            cx = np.linalg.cholesky(xvx)
        except np.linalg.LinAlgError:
            return None
        phi = np.linalg.inv(xvx)
        phi = 0.5 * (phi + phi.T)
        beta = phi @ (ac.T @ d.y.reshape(-1))
        r = d.y - d.x @ beta
        u = (wi @ r[:, :, None])[:, :, 0]
        quad = float(d.c @ (r * u).sum(axis=1))
        loglik = -0.5 * (float(d.cs @ logdet) + 2.0 * float(np.log(np.diag(cx)).sum()) + quad
                         + (d.n_obs - p) * _LOG2PI)
        return _State(sigma, loglik, w, a, phi, beta, u)

    def _derivatives(self, d: _Data, st: _State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score, observed Hessian and expected information in :math:`\\psi`."""
        n, m, p = st.a.shape
        q = d.s.shape[0]
        a2 = st.a.reshape(n, m * p)
        ac2 = a2 * d.c[:, None]
        ubar = (d.e @ (st.u[:, :, None] * st.u[:, None, :]).reshape(n, m * m)).reshape(q, m, m)
        bi = np.einsum("nap,nbp->nab", st.a @ st.phi, st.a)
        bbar = (d.e @ bi.reshape(n, m * m)).reshape(q, m, m)
        cw = d.cs[:, None, None] * st.w
        grad = self._d.T @ (0.5 * (bbar + ubar - cw).sum(axis=0)).reshape(-1)
        zf = 0.5 * cw - bbar
        z = np.stack([zf - ubar, zf])  # observed, expected
        kron = np.einsum("hsba,scd->hbcad", z, st.w).reshape(2, m * m, m * m)
        dkd = self._d.T @ kron @ self._d
        gram = (ac2.T @ a2).reshape(m, p, m, p)
        pk = np.einsum("abk,apbq->kpq", self._d3, gram)
        rk = st.phi @ pk
        trpp = 0.5 * np.einsum("kpq,lqp->kl", rk, rk)
        aw = np.einsum("abk,apb->kp", self._d3, (ac2.T @ st.u).reshape(m, p, m))
        hess = dkd[0] + trpp + aw @ st.phi @ aw.T
        info = dkd[1] + trpp
        return grad, 0.5 * (hess + hess.T), 0.5 * (info + info.T)

    def _cold_start(self, d: _Data) -> np.ndarray:
        """Empirical covariance of OLS residuals, eigenvalues floored (as ``fit_mmrm``)."""
        xs, w = d.x.reshape(-1, self.p), np.repeat(d.c, self.m)
        beta = np.linalg.solve(xs.T @ (xs * w[:, None]), xs.T @ (w * d.y.reshape(-1)))
        mk = d.mask.astype(float)
        e = (d.y - d.x @ beta) * mk
        cnt = (mk * d.c[:, None]).T @ mk
        s = (e * d.c[:, None]).T @ e / np.maximum(cnt, 1.0)
        vals, vecs = np.linalg.eigh(0.5 * (s + s.T))
        floor = 1e-3 * max(float(np.mean(np.diag(s))), 1e-300)
        return (vecs * np.maximum(vals, floor)) @ vecs.T

    # ----------------------------------------------------------------------------------------
    @single_threaded_blas
    def fit(self, rows: np.ndarray | None = None, start: np.ndarray | None = None,
            max_iter: int = 200) -> WideFit:
        r"""Maximise :math:`\ell_R` over :math:`\Sigma` (and :math:`\beta` by GLS).

        Parameters
        ----------
        rows : ndarray of int, optional
            Patients to use; a patient listed :math:`c_i` times counts :math:`c_i` times
            (bootstrap), one left out is dropped (jackknife). ``None``: every patient once.
        start : ndarray, shape (m, m), optional
            Positive-definite starting :math:`\Sigma` (e.g. the full-data estimate, to
            warm-start refits). Default: the floored empirical covariance of OLS residuals.
        max_iter : int
            Iteration limit.

        Returns
        -------
        WideFit

        Raises
        ------
        ValueError
            Invalid ``rows`` or ``start``, or the chosen rows do not identify the model.
        """
        d = self._data(rows)
        st = None
        if start is not None:
            start = np.asarray(start, dtype=float)
            if start.shape != (self.m, self.m):
                raise ValueError(f"start must have shape ({self.m}, {self.m}), got {start.shape}")
            st = self._evaluate(d, 0.5 * (start + start.T))
            if st is None:
                raise ValueError("start is not a positive-definite covariance matrix")
        if st is None:
            st = self._evaluate(d, self._cold_start(d))
            if st is None:
                raise RuntimeError("REML fit failed: no valid starting covariance")
        ia, ib = np.array(self.pairs).T
        converged, n_iter = False, 0
        while n_iter < max_iter:
            n_iter += 1
            grad, hess, info = self._derivatives(d, st)
            try:
                chol = np.linalg.cholesky(-hess)
                step, newton = np.linalg.solve(chol.T, np.linalg.solve(chol, grad)), True
            except np.linalg.LinAlgError:
                step, newton = np.linalg.lstsq(info, grad, rcond=None)[0], False
            scale = np.sqrt(np.diag(st.sigma)[ia] * np.diag(st.sigma)[ib])
            small = newton and float(np.max(np.abs(step) / scale)) < _STEP_TOL
            t, new = 1.0, None
            while t > 1e-12:
                psi = st.sigma[ia, ib] + t * step
                sig = np.zeros((self.m, self.m))
                sig[ia, ib] = psi
                sig[ib, ia] = psi
                cand = self._evaluate(d, sig)
                if cand is not None and (small or cand.loglik >= st.loglik
                                         - 1e-13 * max(1.0, abs(st.loglik))):
                    new = cand
                    break
                t *= 0.5
            if new is None:
                converged = newton and float(np.max(np.abs(step) / scale)) < 1e-6
                break
            st = new
            if small:
                converged = True
                break
        return WideFit(st.beta.copy(), st.sigma.copy(), float(st.loglik), converged, n_iter,
                       st.phi.copy())
