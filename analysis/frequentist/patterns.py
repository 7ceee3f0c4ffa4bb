r"""Restricted likelihood of the MMRM, summed over missingness patterns (cost linear in patients).

Patient :math:`i` is observed at the visits :math:`S_i \subseteq \{1, \dots, m\}` and
:math:`y_i \sim N(X_i\beta, \Sigma_{S_iS_i})` with one :math:`m\times m` covariance

.. math::

    \Sigma = \sum_{k=1}^{K} \psi_k G_k, \qquad \psi = \operatorname{vech}\Sigma,
    \quad K = m(m+1)/2,

:math:`G_k` the symmetric unit matrices (the order of ``_Structure.pairs`` in
:mod:`analysis.frequentist.mmrm`, R's ``lower.tri``). The marginal covariance
:math:`V = \operatorname{diag}_i \Sigma_{S_iS_i}` is block diagonal and patients sharing a pattern
:math:`s` (:math:`S_i = s`, :math:`c_s` of them) share :math:`W_s = \Sigma_{ss}^{-1}` (embedded in
:math:`m\times m` with zeros): one Cholesky factorisation per pattern, then batched products per
patient. With :math:`A_i = W_{s(i)}X_i`, :math:`\Phi = (\sum_i X_i^\top A_i)^{-1}`,
:math:`r_i = y_i - X_i\hat\beta`, :math:`u_i = W_{s(i)} r_i`, :math:`B_i = A_i\Phi A_i^\top` and the
pattern sums :math:`\bar B_s = \sum_{i\in s} B_i`, :math:`\bar U_s = \sum_{i \in s} u_iu_i^\top`,

.. math::

    \ell_R(\psi) &= -\tfrac12\Bigl[\sum_s c_s\log|\Sigma_{ss}| + \log|X^\top V^{-1}X|
        + \sum_i r_i^\top u_i + (N - p)\log 2\pi\Bigr],\\
    \frac{\partial\ell_R}{\partial\psi_k} &= \tfrac12\operatorname{tr}\Bigl[G_k
        \sum_s\bigl(-c_sW_s + \bar B_s + \bar U_s\bigr)\Bigr],\\
    \frac{\partial^2\ell_R}{\partial\psi_k\partial\psi_l} &= \sum_s \operatorname{tr}\bigl(
        Z_s G_k W_s G_l\bigr) + \tfrac12\operatorname{tr}(\Phi P_k\Phi P_l)
        + a_k^\top\Phi a_l, \qquad Z_s = \tfrac12 c_sW_s - \bar B_s - \bar U_s,

with :math:`P_k = \sum_i A_i^\top G_k A_i` and :math:`a_k = \sum_i A_i^\top G_k u_i`; and
:math:`\operatorname{tr}(\Pi G_k\Pi G_l) = \sum_s\operatorname{tr}\bigl((c_sW_s - 2\bar B_s)G_kW_s
G_l\bigr) + \operatorname{tr}(\Phi P_k\Phi P_l)` (:math:`\Pi = V^{-1} - V^{-1}X\Phi X^\top V^{-1}`;
twice the expected information). Each :math:`\sum_s\operatorname{tr}(Z_sG_kW_sG_l)` is
:math:`D^\top(\sum_s Z_s\otimes W_s)D` with :math:`D` the duplication matrix (columns
:math:`\operatorname{vec}G_k`): :math:`O(q m^4)` for :math:`q` patterns, never a
:math:`(K, n, m, m)` tensor. Kenward-Roger's :math:`\sum_{kl}\tilde W_{kl} Q_{kl}`,
:math:`Q_{kl} = X^\top V^{-1}G_kV^{-1}G_lV^{-1}X`, is
:math:`\sum_i A_i^\top M_{s(i)}A_i` with :math:`M_s = \sum_{kl}\tilde W_{kl} G_kW_sG_l`, again one
:math:`m\times m` matrix per pattern.

:class:`PatternEngine` has the interface of :class:`analysis.frequentist.reml.RemlEngine`
(``evaluate``, ``profiled``, ``loglik``, ``derivatives``) and gives the same numbers to rounding;
:func:`newton_reml` maximises :math:`\ell_R` over :math:`\psi` (unstructured :math:`\Sigma`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PatternEngine", "PatternEval", "newton_reml"]

_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass
class PatternEval:
    """GLS quantities at one :math:`\\psi` (patients in the engine's pattern order)."""

    w: np.ndarray  # (q, m, m) W_s, zero off the pattern
    wi: np.ndarray  # (n, m, m) W_{s(i)}
    logdet_v: float
    a: np.ndarray  # (n, m, p) A_i = W_s X_i
    phi: np.ndarray
    logdet_xvx: float
    beta: np.ndarray
    u: np.ndarray  # (n, m)
    quad: float


class PatternEngine:
    r"""Restricted likelihood of :math:`y_i \sim N(X_i\beta, \Sigma_{S_iS_i})`, :math:`\Sigma = \sum_k\psi_kG_k`.

    Parameters
    ----------
    x : ndarray, shape (n, m, p)
        Padded design (zeros at unobserved visits).
    y : ndarray, shape (n, m)
        Padded outcome (zeros at unobserved visits).
    mask : ndarray of bool, shape (n, m)
        True where an observation exists.

    Attributes
    ----------
    patterns : ndarray of bool, shape (q, m)
        The distinct rows of ``mask``; ``counts`` the patients with each.
    pairs : list of tuple
        :math:`(a, b)`, :math:`a \ge b`, of :math:`\psi_k = \Sigma_{ab}`.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.n, self.m, self.p = x.shape
        m = self.m
        self.patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        self.x = np.ascontiguousarray(x[order], dtype=float)
        self.y = np.ascontiguousarray(y[order], dtype=float)
        self.mask = mask[order]
        self.counts = np.bincount(inverse, minlength=len(self.patterns))
        self._starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self._cf = self.counts.astype(float)
        self.n_obs = int(mask.sum())
        self.pairs = [(i, j) for j in range(m) for i in range(j, m)]
        self.k = len(self.pairs)
        d3 = np.zeros((m, m, self.k))
        for k, (i, j) in enumerate(self.pairs):
            d3[i, j, k] = d3[j, i, k] = 1.0
        self._d3, self._d2 = d3, d3.reshape(m * m, self.k)
        self._ia, self._ib = (np.array(v, dtype=int) for v in zip(*self.pairs))
        s = self.patterns
        self._ss = s[:, :, None] & s[:, None, :]
        self._pad = np.eye(m)[None] * (~s)[:, None, :].astype(float)
        self._xf = self.x.reshape(self.n * m, self.p)
        self._eye = np.broadcast_to(np.eye(m), self._ss.shape)

    # ----------------------------------------------------------------------------------------
    def sigma(self, psi: np.ndarray) -> np.ndarray:
        """:math:`\\Sigma(\\psi)`, shape (m, m)."""
        s = np.zeros((self.m, self.m))
        s[self._ia, self._ib] = psi
        s[self._ib, self._ia] = psi
        return s

    def _repeat(self, per_pattern: np.ndarray) -> np.ndarray:
        return np.repeat(per_pattern, self.counts, axis=0)

    def _pattern_sum(self, per_patient: np.ndarray) -> np.ndarray:
        return np.add.reduceat(per_patient, self._starts, axis=0)

    def _kron_form(self, z: np.ndarray, w: np.ndarray) -> np.ndarray:
        r""":math:`[\sum_s\operatorname{tr}(Z_sG_kW_sG_l)]_{kl}` for a stack ``z`` (J, q, m, m)."""
        m, q = self.m, w.shape[0]
        big = np.matmul(z.reshape(z.shape[0], q, m * m).transpose(0, 2, 1), w.reshape(q, m * m))
        # big[j, (d, a), (b, c)] = sum_s Z_s[d, a] W_s[b, c]; reorder to [(a, b), (c, d)]
        t = big.reshape(-1, m, m, m, m).transpose(0, 2, 3, 4, 1).reshape(-1, m * m, m * m)
        return np.matmul(np.matmul(self._d2.T, t), self._d2)

    # ----------------------------------------------------------------------------------------
    def evaluate(self, psi: np.ndarray) -> PatternEval | None:
        """GLS fit at ``psi``; ``None`` if some :math:`\\Sigma_{ss}` is not positive definite."""
        sig = self.sigma(np.asarray(psi, dtype=float))
        padded = np.where(self._ss, sig, 0.0) + self._pad
        try:
            chol = np.linalg.cholesky(padded)
        except np.linalg.LinAlgError:
            return None
        logdet_v = 2.0 * float(self._cf @ np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1))
        linv = np.linalg.solve(chol, self._eye)
        w = np.matmul(linv.transpose(0, 2, 1), linv) * self._ss
        wi = self._repeat(w)
        a = np.matmul(wi, self.x)
        af = a.reshape(-1, self.p)
        xvx = self._xf.T @ af
        xvy = af.T @ self.y.reshape(-1)
        try:
            cx = np.linalg.cholesky(xvx)
        except np.linalg.LinAlgError:
            return None
        phi = np.linalg.inv(xvx)
        phi = 0.5 * (phi + phi.T)
        beta = phi @ xvy
        r = self.y - (self._xf @ beta).reshape(self.n, self.m)
        u = np.matmul(wi, r[:, :, None])[:, :, 0]
        quad = float(np.einsum("na,na->", r, u))
        return PatternEval(w, wi, logdet_v, a, phi, 2.0 * float(np.log(np.diag(cx)).sum()), beta, u,
                           quad)

    def _sums(self, ev: PatternEval) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r""":math:`\sum_i W_i`, :math:`\sum_i B_i` and :math:`\sum_i u_iu_i^\top` (each m x m)."""
        sw = np.tensordot(self._cf, ev.w, axes=1)
        sb = np.tensordot(ev.a @ ev.phi, ev.a, axes=([0, 2], [0, 2]))
        return sw, 0.5 * (sb + sb.T), ev.u.T @ ev.u

    def profiled(self, psi0: np.ndarray) -> tuple[float, np.ndarray]:
        r"""Profiled REML deviance :math:`-2\ell_R` at :math:`V = \hat\sigma^2 V_0(\psi_0)` and its gradient in :math:`\psi_0`.

        :math:`\hat\sigma^2 = r^\top V_0^{-1}r/(N - p)`; ``inf`` and zeros when not positive
        definite (as :meth:`RemlEngine.profiled`).
        """
        ev = self.evaluate(psi0)
        nmp = self.n_obs - self.p
        if ev is None or not ev.quad > 0:
            return np.inf, np.zeros(self.k)
        dev = ev.logdet_v + ev.logdet_xvx + nmp * (1.0 + _LOG2PI + np.log(ev.quad / nmp))
        sw, sb, su = self._sums(ev)
        return float(dev), self._d2.T @ (sw - sb - (nmp / ev.quad) * su).reshape(-1)

    def loglik(self, psi: np.ndarray) -> float:
        """REML log-likelihood (``-inf`` outside the positive-definite region)."""
        ev = self.evaluate(psi)
        if ev is None:
            return -np.inf
        return self._loglik(ev)

    def _loglik(self, ev: PatternEval) -> float:
        return -0.5 * (ev.logdet_v + ev.logdet_xvx + ev.quad + (self.n_obs - self.p) * _LOG2PI)

    def derivatives(self, psi: np.ndarray) -> dict:
        r"""Exact score, observed Hessian and expected-information pieces in :math:`\psi`.

        Returns a dict with ``loglik``, ``beta``, ``phi`` (:math:`\Phi`), ``grad``, ``hess``
        (of :math:`\ell_R`), ``trpp`` (:math:`\operatorname{tr}(\Pi G_k\Pi G_l)`), ``pk``
        (:math:`P_k`, shape (K, p, p)) and ``qsum``, a function of a symmetric (K, K) weight
        matrix :math:`\tilde W` returning :math:`\sum_{kl}\tilde W_{kl}Q_{kl}` (p, p).
        """
        ev = self.evaluate(psi)
        if ev is None:
            raise ValueError("covariance parameters are not positive definite")
        n, m, p = ev.a.shape
        aphi = ev.a @ ev.phi
        bbar = self._pattern_sum(np.matmul(aphi, ev.a.transpose(0, 2, 1)))
        ubar = self._pattern_sum(ev.u[:, :, None] * ev.u[:, None, :])
        cw = self._cf[:, None, None] * ev.w
        bbar = 0.5 * (bbar + bbar.transpose(0, 2, 1))
        grad = 0.5 * self._d2.T @ (bbar + ubar - cw).sum(axis=0).reshape(-1)
        z = np.stack([0.5 * cw - bbar - ubar, cw - 2.0 * bbar])
        hess_w, trpp_w = self._kron_form(z, ev.w)
        a2 = ev.a.reshape(n, m * p)
        gram = (a2.T @ a2).reshape(m, p, m, p)
        pk = np.einsum("abk,apbq->kpq", self._d3, gram)
        pk = 0.5 * (pk + pk.transpose(0, 2, 1))
        rk = np.matmul(ev.phi, pk)
        tr_pp = np.einsum("kpq,lqp->kl", rk, rk)
        au = np.tensordot(ev.a, ev.u, axes=([0], [0]))  # (m, p, m): sum_i A_i[a, p] u_i[b]
        ak = np.einsum("abk,apb->kp", self._d3, au)
        hess = hess_w + 0.5 * tr_pp + ak @ ev.phi @ ak.T
        trpp = trpp_w + tr_pp

        def qsum(wt: np.ndarray) -> np.ndarray:
            w4 = (self._d2 @ wt @ self._d2.T).reshape(m, m, m, m)  # [a, b, c, d]
            ms = np.einsum("abcd,sbc->sad", w4, ev.w)
            out = np.tensordot(ev.a, np.matmul(self._repeat(ms), ev.a), axes=([0, 1], [0, 1]))
            return 0.5 * (out + out.T)

        return {"loglik": np.array(self._loglik(ev)), "beta": ev.beta, "phi": ev.phi, "grad": grad,
                "hess": 0.5 * (hess + hess.T), "trpp": 0.5 * (trpp + trpp.T), "pk": pk,
                "qsum": qsum}


def newton_reml(engine: PatternEngine, sigma0: np.ndarray, max_iter: int = 100,
                tol: float = 1e-10) -> tuple[np.ndarray, dict]:
    r"""Maximise :math:`\ell_R` over :math:`\psi = \operatorname{vech}\Sigma` (unstructured) by Newton steps.

    From the positive-definite ``sigma0``: Newton steps :math:`\psi + t(-H)^{-1}g`, or Fisher
    scoring :math:`\psi + t\,\mathcal I^{-1}g` (:math:`\mathcal I = \tfrac12
    \operatorname{tr}(\Pi G_k\Pi G_l)`) where the observed :math:`-H` is not positive definite,
    with :math:`t` halved until :math:`\Sigma` stays positive definite and :math:`\ell_R` does
    not decrease. Stops once a Newton step has decrement :math:`g^\top(-H)^{-1}g <` ``tol``
    (left to :func:`analysis.frequentist.reml.newton_polish` to finish).

    Returns
    -------
    psi : ndarray
        The last iterate.
    info : dict
        ``n_function_evals``, ``n_iter``, ``optimizer_message``, ``optimizer_success``.
    """
    psi = np.asarray(sigma0, dtype=float)[engine._ia, engine._ib].copy()
    ll = engine.loglik(psi)
    if not np.isfinite(ll):
        return psi, {"n_function_evals": 1, "n_iter": 0, "optimizer_success": False,
                     "optimizer_message": "Newton: starting covariance not positive definite"}
    n_eval, success, message = 1, False, f"Newton: iteration limit {max_iter} reached"
    it = 0
    for it in range(1, max_iter + 1):
        der = engine.derivatives(psi)
        grad = der["grad"]
        try:
            chol = np.linalg.cholesky(-der["hess"])
            step, newton = np.linalg.solve(chol.T, np.linalg.solve(chol, grad)), True
        except np.linalg.LinAlgError:
            step, newton = np.linalg.lstsq(0.5 * der["trpp"], grad, rcond=None)[0], False
        if newton and float(grad @ step) < tol:
            success, message = True, f"Newton: decrement below {tol:g} after {it - 1} steps"
            break
        t, accepted = 1.0, False
        while t > 1e-10:
            cand = psi + t * step
            n_eval += 1
            if _positive_definite(engine.sigma(cand)):
                ll_c = engine.loglik(cand)
                if np.isfinite(ll_c) and ll_c >= ll - 1e-13 * max(1.0, abs(ll)):
                    psi, ll, accepted = cand, ll_c, True
                    break
            t *= 0.5
        if not accepted:
            message = "Newton: no step improves the restricted likelihood"
            break
    return psi, {"n_function_evals": n_eval, "n_iter": it, "optimizer_success": success,
                 "optimizer_message": message}


def _positive_definite(s: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(s)
    except np.linalg.LinAlgError:
        return False
    return True
