r"""The analysis models of the closed forms and the REML limit of their working covariance
(:mod:`analysis.power.closed_form_engine`).

:class:`AnalysisModel` holds, for the LMM (``bmd ~ month * group + (1 + month | patient)``, cell
parametrisation: per group an intercept and a slope) or the MMRM (``change ~ baseline + visit *
group``, unstructured: per group a mean change at each post-baseline visit, and one baseline
coefficient), the design rows of a stratum and the family of its working covariance.
:func:`reml_limit` is the member of that family closest in Kullback-Leibler divergence to the
data (the limit of the REML estimate),

.. math::

    \min_\theta \sum_{g,O} \pi_g w_{gO}\,[\log|W_O(\theta)| + \mathrm{tr}(W_O(\theta)^{-1}S_{gO})],
    \qquad S_{gO} = E_{gO}[(y_O - X\beta^*)(y_O - X\beta^*)^\top],

alternated with the GLS limit :math:`\beta^*(W)` (:func:`gls_limit`); the LMM's family is
:math:`Z L L^\top Z^\top + e^{2\eta} I`, the MMRM's :math:`L L^\top` (Cholesky factors, BFGS on
the scale of the data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import optimize

__all__ = ["AnalysisModel", "Stratum", "gls_limit", "prepared_strata", "reml_limit", "residual_moments"]

_NODES, _WEIGHTS = hermegauss(8)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class Stratum:
    """Subjects of one group with one pattern of observed visits.

    Attributes
    ----------
    group : int
        Level (0 the reference).
    weight : float
        :math:`P(\\text{pattern} \\mid \\text{group})`.
    observed : tuple of bool
        Which visits are observed.
    mean, cov : ndarray
        Mean (m,) and covariance (m, m) of the complete outcome vector given group and pattern.
    pct : (float, float), optional
        Mean and variance of the % change from the first to the last visit, where they are known
        beyond the Gaussian moments (a measured reference sample).
    """

    group: int
    weight: float
    observed: tuple[bool, ...]
    mean: np.ndarray
    cov: np.ndarray
    pct: tuple[float, float] | None = None


class AnalysisModel:
    """Columns, nodes and covariance family of one analysis (``"lmm"`` or ``"mmrm"``)."""

    def __init__(self, analysis: str, times: np.ndarray, k: int, endpoint: int) -> None:
        self.analysis, self.t, self.k, self.endpoint = analysis, np.asarray(times, float), int(k), int(endpoint)
        m = self.t.size
        if analysis == "lmm":
            self.dim, self.p = m, 2 * self.k
            one, t = np.ones(m), self.t
            self.derivs = [np.outer(one, one), np.outer(one, t) + np.outer(t, one), np.outer(t, t), np.eye(m)]
        elif analysis == "mmrm":
            self.dim, self.p = m - 1, self.k * (m - 1) + 1
            j = self.dim
            self.derivs = []
            for a in range(j):
                for b in range(a + 1):
                    e = np.zeros((j, j))
                    e[a, b] = e[b, a] = 1.0
                    self.derivs.append(e)
        else:
            raise ValueError(f"analysis must be 'lmm' or 'mmrm', got {analysis!r}")

    def contrast(self, level: int, ref: int | None, base_mean: float) -> np.ndarray:
        c = np.zeros(self.p)
        if self.analysis == "lmm":
            c[2 * level + 1] = 1.0
            if ref is not None:
                c[2 * ref + 1] = -1.0
        else:
            j = self.dim
            c[level * j + self.endpoint - 1] = 1.0
            if ref is not None:
                c[ref * j + self.endpoint - 1] = -1.0
            else:
                c[-1] = base_mean
        return c

    def nodes(self, s: Stratum) -> tuple[np.ndarray, list[tuple[float, np.ndarray, np.ndarray]], np.ndarray] | None:
        """``(obs index into the working covariance, [(weight, X, E[y | node])], Cov(y | node))``."""
        obs = np.asarray(s.observed, dtype=bool)
        mu, sig = np.asarray(s.mean, float), np.asarray(s.cov, float)
        if self.analysis == "lmm":
            idx = np.flatnonzero(obs)
            if idx.size == 0:
                return None
            x = np.zeros((idx.size, self.p))
            x[:, 2 * s.group] = 1.0
            x[:, 2 * s.group + 1] = self.t[idx]
            return idx, [(1.0, x, mu[idx])], sig[np.ix_(idx, idx)]
        if not obs[0]:
            return None
        idx = np.flatnonzero(obs[1:]) + 1
        if idx.size == 0:
            return None
        s00, s0o = sig[0, 0], sig[idx, 0]
        cond = sig[np.ix_(idx, idx)] - np.outer(s0o, s0o) / s00
        out = []
        for z, w in zip(_NODES, _WEIGHTS):
            y0 = mu[0] + np.sqrt(s00) * z
            x = np.zeros((idx.size, self.p))
            x[np.arange(idx.size), s.group * self.dim + idx - 1] = 1.0
            x[:, -1] = y0
            out.append((float(w), x, mu[idx] + s0o / s00 * (y0 - mu[0]) - y0))
        return idx - 1, out, cond

    # --- working covariance family (KL fit) ------------------------------------------------------
    def unpack(self, theta: np.ndarray, scale: float) -> np.ndarray:
        if self.analysis == "lmm":
            tt = self.t / max(np.abs(self.t).max(), 1.0)
            low = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
            z = np.column_stack([np.ones_like(tt), tt])
            return scale * (z @ low @ low.T @ z.T + np.exp(2 * theta[3]) * np.eye(tt.size))
        low = np.zeros((self.dim, self.dim))
        low[np.tril_indices(self.dim)] = theta
        return scale * (low @ low.T + 1e-10 * np.eye(self.dim))

    def start(self, s: np.ndarray, scale: float) -> np.ndarray:
        if self.analysis == "lmm":
            v = float(np.mean(np.diag(s))) / scale
            return np.array([np.sqrt(0.8 * v), 0.0, 0.1 * np.sqrt(v), np.log(np.sqrt(0.2 * v))])
        low = np.linalg.cholesky(s / scale + 1e-8 * np.eye(self.dim))
        return low[np.tril_indices(self.dim)]


def prepared_strata(model: AnalysisModel, strata: Sequence[Stratum]) -> list[tuple[Stratum, Any]]:
    out = []
    for s in strata:
        nd = model.nodes(s)
        if nd is not None and s.weight > 0:
            out.append((s, nd))
    return out


def gls_limit(model: AnalysisModel, prep: list, w: np.ndarray, shares: np.ndarray) -> np.ndarray:
    a = np.zeros((model.p, model.p))
    b = np.zeros(model.p)
    for s, (idx, nodes, _) in prep:
        wi = np.linalg.inv(w[np.ix_(idx, idx)])
        f = shares[s.group] * s.weight
        for q, x, m in nodes:
            a += f * q * x.T @ wi @ x
            b += f * q * x.T @ wi @ m
    return np.linalg.lstsq(a, b, rcond=None)[0]


def residual_moments(prep: list, beta: np.ndarray) -> list[np.ndarray]:
    out = []
    for _, (_, nodes, cond) in prep:
        s = np.zeros_like(cond)
        for q, x, m in nodes:
            r = m - x @ beta
            s += q * (cond + np.outer(r, r))
        out.append(s)
    return out


def _kl_objective(th: np.ndarray, model: AnalysisModel, scale: float, prep: list, mom: list, wts: list) -> float:
    full_w = model.unpack(th, scale)
    val = 0.0
    for (_, (idx, _, _)), sm, f in zip(prep, mom, wts):
        wo = full_w[np.ix_(idx, idx)]
        sign, logdet = np.linalg.slogdet(wo)
        if sign <= 0:
            return 1e300
        val += f * (logdet + np.trace(np.linalg.solve(wo, sm)))
    return val


def reml_limit(model: AnalysisModel, prep: list, shares: np.ndarray, start: np.ndarray | None) -> np.ndarray:
    """The REML limit of the working covariance (module docstring), alternated with beta*."""
    if start is None:
        full = [(shares[s.group] * s.weight, nd[2]) for s, nd in prep if nd[0].size == model.dim]
        if full:
            w = sum(f * c for f, c in full) / max(sum(f for f, _ in full), 1e-300)
        else:
            w = np.mean([np.mean(np.diag(nd[2])) for _, nd in prep]) * np.eye(model.dim)
    else:
        w = start
    scale = float(np.mean(np.diag(w)))
    theta = None
    for _ in range(4):
        beta = gls_limit(model, prep, w, shares)
        mom = residual_moments(prep, beta)
        wts = [shares[s.group] * s.weight for s, _ in prep]

        x0 = model.start(w, scale) if theta is None else theta
        theta = optimize.minimize(_kl_objective, x0, args=(model, scale, prep, mom, wts), method="BFGS",
                                  options={"gtol": 1e-9, "maxiter": 2000}).x
        w = model.unpack(theta, scale)
    return w


