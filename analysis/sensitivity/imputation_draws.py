r"""The MMRM of one site and its parameter draws :math:`(\beta_l, \Sigma_l)`, one per imputation.

Model
-----
With the notation of :mod:`analysis.sensitivity.site_data`, the MMRM

.. math::

    y_i \sim N\bigl(\mu_i(g_i), \Sigma\bigr), \qquad
    \mu_{ij}(g) = \alpha_{gj} + \gamma\, b_i + \eta^\top x_i,

with :math:`\Sigma` unstructured and :math:`g = 0, \dots, K - 1` the design's groups, is
``change ~ baseline + visit * group`` in cell-means form (:math:`\alpha_{gj}` the :math:`K m`
group-by-visit cells, :meth:`SiteData.design <analysis.sensitivity.site_data.SiteData.design>`),
fitted by REML with :func:`analysis.frequentist.mmrm.fit_mmrm` on every observed post-baseline value
(MAR). REML does not depend on how the fixed effects are coded, so the fit uses treatment coding
(indicators of the non-reference groups; ``change ~ baseline`` alone for a single group, and no
visit term with a single post-baseline visit) and the cells are recovered by GLS below.

Parameter draws (one per imputation :math:`l = 1, \dots, M`)
-----------------------------------------------------------
``draws="normal"`` (default; the large-sample posterior of the REML estimates): with
:math:`\theta(\Sigma)` the log-Cholesky parameters of :math:`\Sigma` (log of the Cholesky diagonal,
then its lower triangle) and :math:`W` the asymptotic covariance of the REML estimate
:math:`\hat\omega = \operatorname{vech}\hat\Sigma` (inverse observed information),

.. math::

    \theta_l \sim N\bigl(\theta(\hat\Sigma),\ J W J^\top\bigr),\quad
    J = \partial\theta/\partial\omega^\top \text{ at } \hat\omega, \qquad
    \beta_l \mid \Sigma_l \sim N\Bigl(\hat\beta(\Sigma_l),\
    \bigl(\textstyle\sum_i X_{iO}^\top \Sigma_{l,OO}^{-1} X_{iO}\bigr)^{-1}\Bigr),

where :math:`\hat\beta(\Sigma)` is the GLS estimate on the observed values :math:`O` of each
patient (the REML :math:`\hat\beta` at :math:`\Sigma = \hat\Sigma`). Drawing on the log-Cholesky
scale keeps every :math:`\Sigma_l` positive definite and is closer to normal than the variances.
``draws="bootstrap"`` is rbmi's ``method_approxbayes``: patients are resampled with replacement
within each group, the MMRM is refitted by REML, and its :math:`(\hat\beta, \hat\Sigma)` are
the draw (a resample that cannot be fitted is redrawn). Both are *proper* in Rubin's sense, so
Rubin's rules apply (rbmi's conditional-mean/jackknife method is not implemented).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import linalg

from analysis.frequentist.mmrm import MmrmResult, fit_mmrm
from analysis.sensitivity.design import NotEstimable
from analysis.sensitivity.imputation_strategies import missingness_patterns, psd_sqrt
from analysis.sensitivity.site_data import SiteData
from analysis.study.estimands import GROUP_LABELS

__all__ = ["DRAW_METHODS", "MAX_REDRAWS", "ParameterDraws"]

DRAW_METHODS = ("normal", "bootstrap")
MAX_REDRAWS = 20  # per imputation, for bootstrap resamples that cannot be fitted


def _check_cells(data: SiteData) -> None:
    obs = data.observed
    for code, name in enumerate(data.levels):
        for j, t in enumerate(data.months):
            if not obs[data.group == code, j].any():
                raise NotEstimable(f"no {GROUP_LABELS.get(name, name)} patient has an observed "
                                   f"{data.site.replace('_', ' ')} BMD at month {t:g}; the MMRM cannot be fitted")


def _gls(x: np.ndarray, y: np.ndarray, patterns, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`\hat\beta(\Sigma)` and :math:`(\sum_i X_{iO}^\top\Sigma_{OO}^{-1}X_{iO})^{-1}`."""
    p = x.shape[2]
    xtx, xty = np.zeros((p, p)), np.zeros(p)
    for pattern, rows in patterns:
        o = np.flatnonzero(pattern)
        if o.size == 0:
            continue
        si = np.linalg.inv(sigma[np.ix_(o, o)])
        xo = x[rows][:, o, :]
        xtx += np.einsum("kap,ab,kbq->pq", xo, si, xo)
        xty += np.einsum("kap,ab,kb->p", xo, si, y[rows][:, o])
    cov = np.linalg.inv(xtx)
    cov = 0.5 * (cov + cov.T)
    return cov @ xty, cov


def _long(data: SiteData, index: np.ndarray | None = None) -> pd.DataFrame:
    """The observed values in long form for :func:`fit_mmrm` (rows ``index`` of a resample, whose
    patients are renamed by their position so that a patient drawn twice counts twice)."""
    idx = np.arange(data.ids.size) if index is None else index
    y = data.y[idx]
    ii, jj = np.nonzero(~np.isnan(y))
    frame = pd.DataFrame({"patient_id": ii if index is not None else data.ids[idx][ii],
                          "month": data.months[jj], "outcome_value": y[ii, jj],
                          "baseline": data.baseline[idx][ii]})
    for k, name in enumerate(_indicators(data), start=1):
        frame[name] = (data.group[idx][ii] == k).astype(float)
    for c, name in enumerate(data.covariate_names):
        frame[name] = data.covariates[idx][ii, c]
    return frame


def _indicators(data: SiteData) -> list[str]:
    """Names of the indicator columns of the non-reference groups in :func:`_long`."""
    return [f"group_{k}" for k in range(1, data.n_groups)]


def _formula(data: SiteData) -> str:
    """``outcome_value ~ baseline + month * (group_1 + ...)`` (treatment coding; see the module
    docstring for one group or one visit)."""
    extra = "".join(f" + {c}" for c in data.covariate_names)
    groups = _indicators(data)
    one_visit = data.months.size == 1
    if not groups:
        return f"outcome_value ~ baseline{'' if one_visit else ' + month'}{extra}"
    g = groups[0] if len(groups) == 1 else "(" + " + ".join(groups) + ")"
    return f"outcome_value ~ baseline + {g if one_visit else 'month * ' + g}{extra}"


def _pairs(k: int) -> list[tuple[int, int]]:
    """vech order of :mod:`analysis.frequentist.mmrm` (R's ``lower.tri`` by column)."""
    return [(i, j) for j in range(k) for i in range(j, k)]


def _sigma_of_omega(omega: np.ndarray, k: int) -> np.ndarray:
    r""":math:`\Sigma` from :math:`\omega = \operatorname{vech}\Sigma`."""
    s = np.zeros((k, k))
    for w, (i, j) in zip(omega, _pairs(k)):
        s[i, j] = s[j, i] = w
    return s


def _theta(sigma: np.ndarray) -> np.ndarray:
    r"""Log-Cholesky parameters :math:`\theta(\Sigma)`: log of the Cholesky diagonal, then its lower triangle."""
    low = linalg.cholesky(sigma, lower=True)
    return np.concatenate([np.log(np.diag(low)), low[np.tril_indices(sigma.shape[0], -1)]])


def _sigma_of_theta(theta: np.ndarray, k: int) -> np.ndarray:
    low = np.diag(np.exp(theta[:k]))
    low[np.tril_indices(k, -1)] = theta[k:]
    return low @ low.T


def _fit(data: SiteData) -> MmrmResult:
    try:
        return fit_mmrm(_long(data), _formula(data), subject="patient_id", visit="month", covariance="us")
    except ValueError as err:
        raise NotEstimable(f"MMRM for {data.site} cannot be fitted: {err}") from None


class ParameterDraws:
    r"""Parameter draws :math:`(\beta_l, \Sigma_l)` for one site (module docstring).

    Parameters
    ----------
    data : SiteData
    method : {"normal", "bootstrap"}

    Attributes
    ----------
    x : ndarray, shape (n, m, p)
        The design of every patient in their own group.
    patterns : list
        :func:`~analysis.sensitivity.imputation_strategies.missingness_patterns` of the data.
    fit : MmrmResult
        The REML fit on the observed data.
    sigma_hat : ndarray, shape (m, m)
    notes : list of str
        The fit's messages.

    Raises
    ------
    ValueError
        A group without an observed value at some visit, an MMRM that cannot be fitted, or (for
        ``"normal"``) a REML Hessian that is not positive definite.
    """

    def __init__(self, data: SiteData, method: str) -> None:
        _check_cells(data)
        self.data, self.method = data, method
        self.x = data.design()
        self.patterns = missingness_patterns(data.observed)
        self.fit = _fit(data)
        k = data.months.size
        self.sigma_hat = _sigma_of_omega(self.fit.omega, k)
        if not np.allclose(self.sigma_hat, self.fit.covariance.to_numpy(), rtol=1e-8, atol=1e-12):
            raise RuntimeError("internal: MMRM covariance parameters are not in vech order")
        self.notes: list[str] = list(self.fit.messages)
        if method == "normal":
            if self.fit.omega_vcov is None:
                raise ValueError(f"{data.site}: the REML Hessian is not positive definite, so the normal "
                                 "approximation is unavailable; use draws='bootstrap'")
            omega = np.asarray(self.fit.omega, dtype=float)
            jac = np.zeros((omega.size, omega.size))
            for c in range(omega.size):
                h = 1e-6 * max(abs(omega[c]), float(np.mean(np.diag(self.sigma_hat))))
                up, dn = omega.copy(), omega.copy()
                up[c] += h
                dn[c] -= h
                jac[:, c] = (_theta(_sigma_of_omega(up, k)) - _theta(_sigma_of_omega(dn, k))) / (2 * h)
            self.theta_hat = _theta(self.sigma_hat)
            self.theta_root = psd_sqrt(jac @ np.asarray(self.fit.omega_vcov) @ jac.T)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        r"""One draw :math:`(\beta_l, \Sigma_l)`, shapes ``(p,)`` and ``(m, m)``."""
        d, k = self.data, self.data.months.size
        if self.method == "normal":
            theta = self.theta_hat + self.theta_root @ rng.standard_normal(self.theta_hat.size)
            sigma = _sigma_of_theta(theta, k)
            beta, cov = _gls(self.x, d.y, self.patterns, sigma)
            return beta + psd_sqrt(cov) @ rng.standard_normal(beta.size), sigma
        for _ in range(MAX_REDRAWS):
            idx = np.concatenate([rng.choice(np.flatnonzero(d.group == c), size=int((d.group == c).sum()))
                                  for c in range(d.n_groups)])
            try:
                fit = fit_mmrm(_long(d, idx), _formula(d), subject="patient_id", visit="month", covariance="us")
            except (ValueError, RuntimeError, np.linalg.LinAlgError):
                continue
            if fit.covariance.shape != (k, k):
                continue
            sigma = fit.covariance.to_numpy()
            beta, _ = _gls(self.x[idx], d.y[idx], missingness_patterns(d.observed[idx]), sigma)
            return beta, sigma
        raise ValueError(f"{d.site}: {MAX_REDRAWS} bootstrap resamples in a row could not be fitted")
