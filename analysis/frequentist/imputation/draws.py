r"""Proper draws of the missing values from Bayesian regressions (mice's ``norm``, ``pmm``, ``logreg``).

Each ``fit_*`` summarises the regression in the patients with the variable and its predictors
observed (fixed across imputations); each ``draw_*`` makes one proper draw for the patients to
impute: first the parameters from their posterior, then the missing values.

``norm`` (van Buuren 2018, §3.2, Algorithm 3.1): with the design :math:`Z` (:math:`n\times p`),
:math:`\hat\beta = (Z^\top Z)^{-1}Z^\top v` and the residual sum of squares :math:`S`,

.. math::

    \dot\sigma^2 = S / \chi^2_{n-p}, \qquad
    \dot\beta \sim N\!\bigl(\hat\beta,\ \dot\sigma^2 (Z^\top Z)^{-1}\bigr), \qquad
    \dot v_i = z_i^\top\dot\beta + \dot\sigma\,\varepsilon_i,\quad \varepsilon_i \sim N(0, 1).

``pmm`` (§3.4, Algorithm 3.3, type-1 matching): :math:`\dot\beta` as above, then the observed value
of one of the ``donors`` patients whose :math:`z_k^\top\hat\beta` is nearest to
:math:`z_i^\top\dot\beta`. ``logreg`` (§3.6): maximum likelihood on the data augmented with
:math:`4p` pseudo-observations of total weight :math:`p + 1` (White, Daniel & Royston 2010),
:math:`\dot\beta \sim N(\hat\beta, (Z^\top W Z)^{-1})`,
:math:`\dot g_i \sim \text{Bernoulli}(\operatorname{logit}^{-1} z_i^\top \dot\beta)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

__all__ = ["PMM_DONORS", "NormFit", "PmmFit", "LogregFit", "fit_norm", "fit_pmm", "fit_logreg", "draw_norm",
           "draw_pmm", "draw_logreg", "draw", "method_name"]

PMM_DONORS = 5  # mice's default number of donors


@dataclass(frozen=True)
class NormFit:
    r"""Least-squares summary for :func:`draw_norm` (fixed across imputations).

    Attributes
    ----------
    beta_hat : ndarray
        :math:`\hat\beta`.
    r : ndarray
        Upper-triangular :math:`R` of :math:`Z = QR`, so :math:`(Z^\top Z)^{-1} = R^{-1}R^{-\top}`.
    rss : float
        Residual sum of squares :math:`S`.
    df : int
        :math:`n - p`.
    """

    beta_hat: np.ndarray
    r: np.ndarray
    rss: float
    df: int


@dataclass(frozen=True)
class PmmFit:
    """Normal fit plus the observed values sorted by their fitted means (for matching)."""

    norm: NormFit
    yhat_sorted: np.ndarray
    y_sorted: np.ndarray
    donors: int


@dataclass(frozen=True)
class LogregFit:
    r"""Augmented logistic fit for :func:`draw_logreg`: :math:`\hat\beta` and the lower Cholesky
    factor of :math:`(Z^\top W Z)^{-1}`."""

    beta_hat: np.ndarray
    chol_cov: np.ndarray


def fit_norm(z: np.ndarray, y: np.ndarray) -> NormFit:
    """Least squares of ``y`` on the design ``z`` (via QR)."""
    q, r = np.linalg.qr(z)
    beta = linalg.solve_triangular(r, q.T @ y)
    resid = y - z @ beta
    return NormFit(beta_hat=beta, r=r, rss=float(resid @ resid), df=z.shape[0] - z.shape[1])


def draw_norm(fit: NormFit, z_mis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""One proper draw: :math:`\dot\sigma^2`, :math:`\dot\beta`, then the missing values."""
    sigma = np.sqrt(fit.rss / rng.chisquare(fit.df))
    beta = fit.beta_hat + sigma * linalg.solve_triangular(fit.r, rng.standard_normal(fit.beta_hat.size))
    return z_mis @ beta + sigma * rng.standard_normal(z_mis.shape[0])


def fit_pmm(z: np.ndarray, y: np.ndarray, donors: int = PMM_DONORS) -> PmmFit:
    """Least squares, and the observed values ordered by their fitted means."""
    norm = fit_norm(z, y)
    yhat = z @ norm.beta_hat
    order = np.argsort(yhat, kind="stable")
    return PmmFit(norm=norm, yhat_sorted=yhat[order], y_sorted=y[order], donors=min(donors, y.size))


def draw_pmm(fit: PmmFit, z_mis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""Predictive mean matching, type-1 matching (van Buuren 2018, §3.4, Algorithm 3.3).

    The target :math:`z_i^\top\dot\beta` (with a proper draw :math:`\dot\beta`) is matched to the
    observed fitted means :math:`z_k^\top\hat\beta`; one of the ``donors`` closest observed
    patients is chosen at random and its observed value imputed.
    """
    sigma = np.sqrt(fit.norm.rss / rng.chisquare(fit.norm.df))
    beta = fit.norm.beta_hat + sigma * linalg.solve_triangular(
        fit.norm.r, rng.standard_normal(fit.norm.beta_hat.size))
    target = z_mis @ beta
    n, d = fit.yhat_sorted.size, fit.donors
    pos = np.searchsorted(fit.yhat_sorted, target)
    # the d nearest lie within d places on either side of the insertion point
    window = np.clip(pos[:, None] + np.arange(-d, d)[None, :], 0, n - 1)
    dist = np.abs(fit.yhat_sorted[window] - target[:, None])
    dist[:, 1:][window[:, 1:] == window[:, :-1]] = np.inf  # clipped duplicates at the ends
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :d]
    pick = nearest[np.arange(target.size), rng.integers(0, d, target.size)]
    return fit.y_sorted[window[np.arange(target.size), pick]]


def _augment(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mice's ``augment`` for a binary outcome: 2 pseudo-rows per predictor and class."""
    x = z[:, 1:]
    p = x.shape[1]
    w = np.ones(y.size)
    if p == 0:
        return z, y, w
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    lo, hi = x.min(axis=0), x.max(axis=0)
    rows, ys = [], []
    for j in range(p):
        for cls in (0.0, 1.0):
            for sign in (0.5, -0.5):
                row = mean.copy()
                row[j] = np.clip(mean[j] + sign * sd[j], lo[j], hi[j])
                rows.append(row)
                ys.append(cls)
    xa = np.vstack([x, np.asarray(rows)])
    za = np.column_stack([np.ones(xa.shape[0]), xa])
    wa = np.concatenate([w, np.full(len(rows), (p + 1.0) / len(rows))])
    return za, np.concatenate([y, ys]), wa


def fit_logreg(z: np.ndarray, y: np.ndarray, name: str) -> LogregFit:
    """Logistic regression of the 0/1 ``y`` on ``z`` (augmented; ``name`` for the error message)."""
    za, ya, wa = _augment(z, y)
    beta = np.zeros(za.shape[1])
    for _ in range(100):
        eta = np.clip(za @ beta, -30, 30)
        mu = 1.0 / (1.0 + np.exp(-eta))
        wt = wa * mu * (1.0 - mu)
        info = za.T @ (wt[:, None] * za)
        step = np.linalg.solve(info, za.T @ (wa * (ya - mu)))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:  # pragma: no cover - the augmentation makes the likelihood strictly concave
        raise ValueError(f"cannot impute {name}: the logistic regression did not converge")
    eta = np.clip(za @ beta, -30, 30)
    mu = 1.0 / (1.0 + np.exp(-eta))
    info = za.T @ ((wa * mu * (1.0 - mu))[:, None] * za)
    cov = np.linalg.inv(info)
    return LogregFit(beta_hat=beta, chol_cov=np.linalg.cholesky((cov + cov.T) / 2.0))


def draw_logreg(fit: LogregFit, z_mis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""One proper draw of the 0/1 values: :math:`\dot\beta`, then Bernoulli draws."""
    beta = fit.beta_hat + fit.chol_cov @ rng.standard_normal(fit.beta_hat.size)
    prob = 1.0 / (1.0 + np.exp(-np.clip(z_mis @ beta, -30, 30)))
    return (rng.random(z_mis.shape[0]) <= prob).astype(float)


def draw(fit: NormFit | PmmFit | LogregFit, z_mis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One proper draw with the method of ``fit``."""
    if isinstance(fit, PmmFit):
        return draw_pmm(fit, z_mis, rng)
    if isinstance(fit, LogregFit):
        return draw_logreg(fit, z_mis, rng)
    return draw_norm(fit, z_mis, rng)


def method_name(fit: NormFit | PmmFit | LogregFit) -> str:
    """mice's name of the method of ``fit``: ``"norm"``, ``"pmm"`` or ``"logreg"``."""
    return "pmm" if isinstance(fit, PmmFit) else "logreg" if isinstance(fit, LogregFit) else "norm"
