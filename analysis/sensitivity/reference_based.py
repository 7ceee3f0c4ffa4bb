r"""Reference-based multiple imputation (Carpenter, Roger & Kenward 2013), as R's ``rbmi``.

After dropout, what would a responder's bone have done? Under MAR it keeps following the
responders; reference-based strategies let it follow the *reference* group (default: the
non-responders, "after dropout, patients follow the non-responders") in one of several ways. The
imputed datasets are analysed as the primary MI (mean % change per group, Welch difference) and
pooled with Rubin's rules.

Imputation model
----------------
Per DXA site, patient :math:`i` has post-baseline outcomes :math:`y_i = (y_{i1}, \dots, y_{im})` at
the DXA months :math:`t_1 < \dots < t_m` (``outcome="pct"``: % change from baseline, default;
``"change"``: change in g/cm^2), a baseline BMD :math:`b_i`, a group :math:`g_i` (0 non-responder,
1 responder) and optional numeric baseline covariates :math:`x_i`. The MMRM

.. math::

    y_i \sim N\bigl(\mu_i(g_i), \Sigma\bigr), \qquad
    \mu_{ij}(g) = \alpha_{gj} + \gamma\, b_i + \eta^\top x_i,

with :math:`\Sigma` unstructured, is ``change ~ baseline + visit * group`` in cell-means form
(:math:`\alpha_{gj}` the group-by-visit cells), fitted by REML with
:func:`analysis.frequentist.mmrm.fit_mmrm` on every observed post-baseline value (MAR).

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

Post-dropout means
------------------
Let :math:`d_i` be the patient's last observed post-baseline visit (:math:`d_i = 0` if only the
baseline is observed) and :math:`a_j = \mu_{ij}(g_i)`, :math:`c_j = \mu_{ij}(r)` the patient's own
and reference-group means, with :math:`a_0 = c_0 = 0` (no change at baseline). Visits
:math:`j > d_i` are *post-dropout*; their mean under each strategy is

=========  ==============================================  ==========================================
strategy   :math:`j \le d_i`                               :math:`j > d_i`
=========  ==============================================  ==========================================
``MAR``    :math:`a_j`                                     :math:`a_j`
``J2R``    :math:`a_j`                                     :math:`c_j` (jump to reference)
``CR``     :math:`c_j`                                     :math:`c_j` (copy reference, whole profile)
``CIR``    :math:`a_j`                                     :math:`a_{d} + c_j - c_{d}` (copy increments)
``LMCF``   :math:`a_j`                                     :math:`a_{d}` (last mean carried forward)
=========  ==============================================  ==========================================

(rbmi's ``strategy_*`` functions; patients of the reference group have :math:`a = c`, so only
LMCF changes them.) Every missing value of a patient, post-dropout and intermittent (a missed
visit before :math:`d_i`), is drawn jointly from the conditional normal given the observed values
:math:`O`, with the strategy's mean :math:`\mu` and the common :math:`\Sigma`:

.. math::

    y_{iM} \mid y_{iO} \sim N\bigl(\mu_M + \Sigma_{MO}\Sigma_{OO}^{-1}(y_{iO} - \mu_O),\
    \Sigma_{MM} - \Sigma_{MO}\Sigma_{OO}^{-1}\Sigma_{OM}\bigr).

A patient seen only at baseline has :math:`a_0 = c_0 = 0` and no observed :math:`y`, so J2R, CR
and CIR coincide for them and LMCF imputes a mean change of 0. The same standard normal
deviates are used for every strategy within an imputation (common random numbers), so strategies
differ only through their means.

Expected order (2 post-baseline visits, a responder seen at visit 1 and missing at visit 2,
reference declining faster): with :math:`D = a_1 - c_1 > 0` the responders' advantage at dropout
and :math:`b = \Sigma_{21}/\Sigma_{11}` the regression of visit 2 on visit 1, the conditional
means at visit 2 satisfy

.. math::

    \text{CR} - \text{J2R} = b D, \qquad \text{CIR} - \text{CR} = (1 - b) D, \qquad
    \text{MAR} - \text{CIR} = (a_2 - a_1) - (c_2 - c_1),

independent of the observed value. For :math:`0 < b < 1` (the usual case): J2R < CR < CIR < MAR,
i.e. J2R pulls furthest towards the reference and CR *further than* CIR (CR keeps only the part
:math:`b D` of the advantage that the correlation carries forward, CIR keeps all of it); LMCF
exceeds MAR when the own group declines. Only for :math:`b > 1` does CIR fall below CR.

Analysis and pooling
--------------------
Each completed dataset gives, at the endpoint month, the mean % change per group
(:math:`U = s_g^2/n_g`, complete-data df :math:`n_g - 1`) and the responder - non-responder
difference (Welch), as :func:`analysis.frequentist.imputation.standard_analyses`; they are
pooled with :func:`analysis.frequentist.imputation.rubin_pool` (Barnard-Rubin df). Rubin's
variance is known to be conservative for reference-based estimators (it targets the variance
under the MAR model; Seaman, White & Leacy 2014), so the intervals are, if anything, wide.

Responder status is a fixed per-patient group (:func:`analysis.study.groups.assign_groups`); the
``"unknown"`` third group is not supported (patients must be in one of the two groups). Patients
the strategy excludes (no responder status) are listed in the result.

References
----------
Carpenter JR, Roger JH, Kenward MG (2013). Analysis of longitudinal trials with protocol deviation:
a framework for relevant, accessible assumptions, and inference via multiple imputation. *J
Biopharm Stat* 23:1352-1371. Gower-Page C, Noci A, Wolbers M (2022). rbmi: a R package for
standard and reference-based multiple imputation methods. *JOSS* 7:4251.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import linalg

from analysis.study.clinical import ResponderRule
from analysis.study.estimands import GROUP_LABELS, SITE_LABELS, difference_name, estimand_name
from analysis.frequentist.imputation import PooledResult, rubin_pool
from analysis.frequentist.reml import single_threaded_blas
from analysis.frequentist.mmrm import MmrmResult, fit_mmrm
from analysis.frequentist.primary import model_frame
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult

__all__ = [
    "STRATEGIES",
    "STRATEGY_TEXT",
    "DRAW_METHODS",
    "GROUPS",
    "TABLE_COLUMNS",
    "DEFAULT_M",
    "strategy_means",
    "impute_missing",
    "SiteData",
    "site_data",
    "ReferenceImputation",
    "impute_reference_based",
    "endpoint_analysis",
    "reference_based_analysis",
    "reference_based_from_config",
]

STRATEGIES = ("MAR", "J2R", "CR", "CIR", "LMCF")
STRATEGY_TEXT = {
    "MAR": "missing at random: after dropout, patients follow their own group",
    "J2R": "jump to reference: after dropout, the mean jumps to the reference group's",
    "CR": "copy reference: the whole mean profile is the reference group's",
    "CIR": "copy increments in reference: from the mean at dropout, changes as the reference group does",
    "LMCF": "last mean carried forward: the own group's mean at dropout is kept",
}
DRAW_METHODS = ("normal", "bootstrap")
GROUPS = ("non-responder", "responder")  # codes 0 and 1
OUTCOMES = ("pct", "change")
TABLE_COLUMNS = ["site", "strategy", "reference", "estimand", "group", "estimate", "se", "df", "ci_low",
                 "ci_high", "p", "fmi", "mc_se", "m", "n", "n_imputed", "method"]
#: Default number of imputations: the Monte-Carlo SE of a pooled estimate is sqrt(B/m) (column
#: ``mc_se``); on the twin B is up to ~0.6 (%)^2, so 500 imputations keep it below 0.04 points.
DEFAULT_M = 500
_MAX_REDRAWS = 20  # per imputation, for bootstrap resamples that cannot be fitted


# ================================================================================================
# the strategies and the conditional draw (pure numpy, tested on hand-computed examples)
# ================================================================================================
def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def _last_observed(observed: np.ndarray) -> np.ndarray:
    """Index of each row's last ``True`` (``-1`` when none)."""
    k = observed.shape[1]
    rev = observed[:, ::-1]
    return np.where(rev.any(axis=1), k - 1 - rev.argmax(axis=1), -1)


def strategy_means(own: np.ndarray, reference: np.ndarray, last: np.ndarray, strategy: str) -> np.ndarray:
    r"""Mean profile of each patient under a reference-based strategy.

    Parameters
    ----------
    own, reference : ndarray, shape (n, m)
        :math:`a_{ij} = \mu_{ij}(g_i)` and :math:`c_{ij} = \mu_{ij}(r)`: the patient's expected
        outcome at post-baseline visit :math:`j` in their own and in the reference group.
    last : ndarray of int, shape (n,)
        :math:`d_i - 1`, the 0-based index of the last observed post-baseline visit (``-1``: only
        the baseline observed, where :math:`a_0 = c_0 = 0`).
    strategy : {"MAR", "J2R", "CR", "CIR", "LMCF"}

    Returns
    -------
    ndarray, shape (n, m)
        :math:`\mu_{ij}` of the table in the module docstring; visits :math:`j \le d_i` keep
        :math:`a_{ij}` (except CR, which uses :math:`c_{ij}` throughout).
    """
    _check_strategy(strategy)
    own = np.asarray(own, dtype=float)
    reference = np.asarray(reference, dtype=float)
    last = np.asarray(last, dtype=int)
    if own.shape != reference.shape or own.ndim != 2:
        raise ValueError(f"own and reference must be (n, m) arrays of one shape, got {own.shape} and "
                         f"{reference.shape}")
    n, k = own.shape
    if last.shape != (n,) or np.any(last < -1) or np.any(last >= k):
        raise ValueError(f"last must be n = {n} visit indices in -1..{k - 1}")
    post = np.arange(k)[None, :] > last[:, None]
    rows = np.arange(n)
    a_d = np.where(last >= 0, own[rows, np.maximum(last, 0)], 0.0)[:, None]
    c_d = np.where(last >= 0, reference[rows, np.maximum(last, 0)], 0.0)[:, None]
    if strategy == "MAR":
        return own.copy()
    if strategy == "J2R":
        return np.where(post, reference, own)
    if strategy == "CR":
        return reference.copy()
    if strategy == "CIR":
        return np.where(post, a_d + reference - c_d, own)
    return np.where(post, np.broadcast_to(a_d, own.shape), own)  # LMCF


def _patterns(observed: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(pattern, rows)]``: each distinct row of ``observed`` and the rows sharing it."""
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    return [(keys[u], np.flatnonzero(inverse == u)) for u in range(keys.shape[0])]


def _sym_cholesky(c: np.ndarray) -> np.ndarray:
    c = 0.5 * (c + c.T)
    try:
        return linalg.cholesky(c, lower=True)
    except linalg.LinAlgError:
        w, v = np.linalg.eigh(c)
        return v * np.sqrt(np.clip(w, 0.0, None))


def _conditionals(patterns, sigma: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                                                              np.ndarray]]:
    r"""Per missingness pattern: rows, missing and observed visits, :math:`A = \Sigma_{MO}\Sigma_{OO}^{-1}`
    (``None`` if nothing is observed) and :math:`L` with :math:`LL^\top` the conditional covariance."""
    out = []
    for pattern, rows in patterns:
        mis, obs = np.flatnonzero(~pattern), np.flatnonzero(pattern)
        if mis.size == 0:
            continue
        s_mm, a = sigma[np.ix_(mis, mis)], None
        if obs.size:
            s_oo, s_om = sigma[np.ix_(obs, obs)], sigma[np.ix_(obs, mis)]
            a = linalg.solve(s_oo, s_om, assume_a="pos").T
            s_mm = s_mm - a @ s_om
        out.append((rows, mis, obs, a, _sym_cholesky(s_mm)))
    return out


def _fill(y: np.ndarray, mu: np.ndarray, conditionals, z: np.ndarray | None) -> np.ndarray:
    out = y.copy()
    for rows, mis, obs, a, low in conditionals:
        mean = mu[np.ix_(rows, mis)]
        if a is not None:
            mean = mean + (y[np.ix_(rows, obs)] - mu[np.ix_(rows, obs)]) @ a.T
        if z is not None:
            mean = mean + z[np.ix_(rows, mis)] @ low.T
        out[np.ix_(rows, mis)] = mean
    return out


def impute_missing(y: np.ndarray, own: np.ndarray, reference: np.ndarray, sigma: np.ndarray,
                   strategy: str = "MAR", z: np.ndarray | None = None) -> np.ndarray:
    r"""Fill the missing values of ``y`` from the conditional normal under a strategy.

    Parameters
    ----------
    y : ndarray, shape (n, m)
        Post-baseline outcomes, ``NaN`` where missing.
    own, reference : ndarray, shape (n, m)
        Own-group and reference-group means (:func:`strategy_means`).
    sigma : ndarray, shape (m, m)
        Residual covariance :math:`\Sigma`.
    strategy : {"MAR", "J2R", "CR", "CIR", "LMCF"}
    z : ndarray, shape (n, m), optional
        Standard normal deviates; entry :math:`(i, j)` is used when :math:`y_{ij}` is missing.
        ``None`` returns the conditional means.

    Returns
    -------
    ndarray, shape (n, m)
        A copy of ``y`` with every missing value :math:`y_{iM}` replaced by
        :math:`\mu_M + \Sigma_{MO}\Sigma_{OO}^{-1}(y_{iO} - \mu_O) + L z_{iM}`, where
        :math:`LL^\top = \Sigma_{MM} - \Sigma_{MO}\Sigma_{OO}^{-1}\Sigma_{OM}` and :math:`\mu`
        is the strategy's mean (the last observed visit is found from ``y``).
    """
    y = np.asarray(y, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"y must be an (n, m) array, got shape {y.shape}")
    n, k = y.shape
    if sigma.shape != (k, k):
        raise ValueError(f"sigma must be ({k}, {k}), got {sigma.shape}")
    if z is not None:
        z = np.asarray(z, dtype=float)
        if z.shape != (n, k):
            raise ValueError(f"z must have the shape of y {(n, k)}, got {z.shape}")
    observed = ~np.isnan(y)
    mu = strategy_means(own, reference, _last_observed(observed), strategy)
    return _fill(y, mu, _conditionals(_patterns(observed), sigma), z)


# ================================================================================================
# one site's data in wide form
# ================================================================================================
@dataclass(frozen=True)
class SiteData:
    r"""One DXA site in wide form, as the imputation model sees it.

    Attributes
    ----------
    site : str
    outcome : {"pct", "change"}
        % change from baseline or change in g/cm^2.
    ids : ndarray, shape (n,)
        Patient ids.
    months : ndarray, shape (m,)
        Post-baseline DXA months :math:`t_1 < \dots < t_m`.
    y : ndarray, shape (n, m)
        Outcome, ``NaN`` where missing.
    baseline : ndarray, shape (n,)
        Baseline BMD (g/cm^2).
    group : ndarray of int, shape (n,)
        0 non-responder, 1 responder.
    covariates : ndarray, shape (n, k)
    covariate_names : tuple of str
    excluded : tuple of str
        Patients left out (no responder status under the strategy, or no baseline BMD).
    """

    site: str
    outcome: str
    ids: np.ndarray
    months: np.ndarray
    y: np.ndarray
    baseline: np.ndarray
    group: np.ndarray
    covariates: np.ndarray
    covariate_names: tuple[str, ...]
    excluded: tuple[str, ...] = ()

    @property
    def observed(self) -> np.ndarray:
        return ~np.isnan(self.y)

    @property
    def last(self) -> np.ndarray:
        """0-based index of the last observed post-baseline visit (``-1``: baseline only)."""
        return _last_observed(self.observed)

    @property
    def last_month(self) -> np.ndarray:
        """Month of the last observed DXA (0 for baseline only)."""
        return np.where(self.last >= 0, self.months[np.maximum(self.last, 0)], 0.0)

    @property
    def post(self) -> np.ndarray:
        """``(n, m)``: visit after the last observed one (post-dropout)."""
        return np.arange(self.months.size)[None, :] > self.last[:, None]

    @property
    def years_since_last(self) -> np.ndarray:
        r"""``(n, m)``: :math:`(t_j - t_{d_i})/12` at post-dropout visits, 0 elsewhere."""
        return np.where(self.post, (self.months[None, :] - self.last_month[:, None]) / 12.0, 0.0)

    def visit_index(self, month: float) -> int:
        hit = np.flatnonzero(np.isclose(self.months, float(month)))
        if hit.size == 0:
            raise ValueError(f"month {month:g} is not a post-baseline DXA month of {self.site} "
                             f"({', '.join(f'{t:g}' for t in self.months)})")
        return int(hit[0])

    def design(self, group: np.ndarray | int | None = None) -> np.ndarray:
        r"""``(n, m, p)`` design: the :math:`2m` group-by-visit cells, baseline, covariates.

        ``group`` overrides every patient's group (e.g. the reference's code).
        """
        n, k = self.y.shape
        g = self.group if group is None else np.broadcast_to(np.asarray(group, dtype=int), (n,))
        x = np.zeros((n, k, 2 * k + 1 + self.covariates.shape[1]))
        rows = np.arange(n)
        for j in range(k):
            x[rows, j, g * k + j] = 1.0
        x[:, :, 2 * k] = self.baseline[:, None]
        x[:, :, 2 * k + 1:] = self.covariates[:, None, :]
        return x

    def to_pct(self, values: np.ndarray) -> np.ndarray:
        """Outcome values (last axis: patients) as % change from baseline."""
        values = np.asarray(values, dtype=float)
        return values if self.outcome == "pct" else 100.0 * values / self.baseline


def site_data(derived: pd.DataFrame, site: str, undefined: str = "last_observed",
              rule: ResponderRule | None = None, outcome: str = "pct",
              covariates: Sequence[str] = ()) -> SiteData:
    """Wide post-baseline data of one site (:func:`analysis.frequentist.primary.model_frame`).

    Raises
    ------
    ValueError
        Unknown outcome, the ``"unknown"`` strategy, a non-numeric or incomplete covariate, or no
        post-baseline DXA.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    if undefined == "unknown":
        raise ValueError("reference-based imputation needs two groups; use undefined='exclude' or "
                         "'last_observed', not 'unknown'")
    mf = model_frame(derived, site, undefined, rule)
    mf = mf[mf["baseline"].notna()]  # no baseline BMD: no change from baseline
    all_ids = pd.unique(derived["patient_id"])
    kept = pd.unique(mf["patient_id"])
    kept_set = set(kept)
    excluded = tuple(str(p) for p in all_ids if p not in kept_set)
    post = mf[mf["month"] > 0]
    if post.empty:
        raise ValueError(f"no post-baseline {site} BMD in the data")
    months = np.sort(post["month"].astype(float).unique())
    ids = np.asarray(kept)
    col = "pct" if outcome == "pct" else "change"
    wide = post.pivot_table(index="patient_id", columns="month", values=col, aggfunc="first")
    wide = wide.reindex(index=ids, columns=months)
    per_patient = mf.groupby("patient_id", sort=False).first().reindex(ids)
    covs = []
    for c in covariates:
        if not str(c).isidentifier() or c in ("baseline", "month", "responder", "outcome_value", "patient_id"):
            raise ValueError(f"covariate {c!r} must be a plain column name other than the model's own")
        if c not in per_patient.columns:
            raise ValueError(f"covariate {c!r} is not in the data")
        v = pd.to_numeric(per_patient[c], errors="coerce")
        if v.isna().any():
            raise ValueError(f"covariate {c!r} must be numeric and complete")
        covs.append(v.to_numpy(dtype=float))
    cov = np.column_stack(covs) if covs else np.zeros((ids.size, 0))
    return SiteData(site=site, outcome=outcome, ids=ids, months=months, y=wide.to_numpy(dtype=float),
                    baseline=per_patient["baseline"].to_numpy(dtype=float),
                    group=per_patient["responder"].to_numpy(dtype=float).astype(int), covariates=cov,
                    covariate_names=tuple(covariates), excluded=excluded)


# ================================================================================================
# fit and parameter draws
# ================================================================================================
def _check_cells(data: SiteData) -> None:
    obs = data.observed
    for code, name in enumerate(GROUPS):
        for j, t in enumerate(data.months):
            if not obs[data.group == code, j].any():
                raise ValueError(f"no {name} has an observed {data.site} BMD at month {t:g}; the MMRM "
                                 "cannot be fitted")


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
    idx = np.arange(data.ids.size) if index is None else index
    y = data.y[idx]
    ii, jj = np.nonzero(~np.isnan(y))
    frame = pd.DataFrame({"patient_id": ii if index is not None else data.ids[idx][ii],
                          "month": data.months[jj], "outcome_value": y[ii, jj],
                          "baseline": data.baseline[idx][ii], "responder": data.group[idx][ii].astype(float)})
    for c, name in enumerate(data.covariate_names):
        frame[name] = data.covariates[idx][ii, c]
    return frame


def _formula(data: SiteData) -> str:
    extra = "".join(f" + {c}" for c in data.covariate_names)
    return f"outcome_value ~ baseline + month * responder{extra}"


def _pairs(k: int) -> list[tuple[int, int]]:
    """vech order of :mod:`analysis.frequentist.mmrm` (R's ``lower.tri`` by column)."""
    return [(i, j) for j in range(k) for i in range(j, k)]


def _sigma_of_omega(omega: np.ndarray, k: int) -> np.ndarray:
    s = np.zeros((k, k))
    for w, (i, j) in zip(omega, _pairs(k)):
        s[i, j] = s[j, i] = w
    return s


def _theta(sigma: np.ndarray) -> np.ndarray:
    low = linalg.cholesky(sigma, lower=True)
    return np.concatenate([np.log(np.diag(low)), low[np.tril_indices(sigma.shape[0], -1)]])


def _sigma_of_theta(theta: np.ndarray, k: int) -> np.ndarray:
    low = np.diag(np.exp(theta[:k]))
    low[np.tril_indices(k, -1)] = theta[k:]
    return low @ low.T


def _sqrt_psd(v: np.ndarray) -> np.ndarray:
    r"""A square root :math:`R R^\top = V`: the Cholesky factor (unique, so draws do not depend on
    the LAPACK build), or from the eigen-decomposition when :math:`V` is only semi-definite."""
    return _sym_cholesky(v)


def _fit(data: SiteData) -> MmrmResult:
    try:
        return fit_mmrm(_long(data), _formula(data), subject="patient_id", visit="month", covariance="us")
    except ValueError as err:
        raise ValueError(f"MMRM for {data.site} cannot be fitted: {err}") from None


class _Draws:
    """Parameter draws :math:`(\\beta_l, \\Sigma_l)` for one site."""

    def __init__(self, data: SiteData, method: str) -> None:
        self.data, self.method = data, method
        self.x = data.design()
        self.patterns = _patterns(data.observed)
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
            self.theta_root = _sqrt_psd(jac @ np.asarray(self.fit.omega_vcov) @ jac.T)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        d, k = self.data, self.data.months.size
        if self.method == "normal":
            theta = self.theta_hat + self.theta_root @ rng.standard_normal(self.theta_hat.size)
            sigma = _sigma_of_theta(theta, k)
            beta, cov = _gls(self.x, d.y, self.patterns, sigma)
            return beta + _sqrt_psd(cov) @ rng.standard_normal(beta.size), sigma
        for _ in range(_MAX_REDRAWS):
            idx = np.concatenate([rng.choice(np.flatnonzero(d.group == c), size=int((d.group == c).sum()))
                                  for c in (0, 1)])
            try:
                fit = fit_mmrm(_long(d, idx), _formula(d), subject="patient_id", visit="month", covariance="us")
            except (ValueError, RuntimeError, np.linalg.LinAlgError):
                continue
            if fit.covariance.shape != (k, k):
                continue
            sigma = fit.covariance.to_numpy()
            beta, _ = _gls(self.x[idx], d.y[idx], _patterns(d.observed[idx]), sigma)
            return beta, sigma
        raise ValueError(f"{d.site}: {_MAX_REDRAWS} bootstrap resamples in a row could not be fitted")


# ================================================================================================
# imputation
# ================================================================================================
def _site_seed(seed: int, site: str) -> np.random.SeedSequence:
    """Seed of one site, independent of which other sites are analysed."""
    return np.random.SeedSequence([int(seed), zlib.crc32(site.encode())])


def _check_common(m: int, draws: str, reference: str, strategies: Sequence[str]) -> None:
    if int(m) != m or m < 2:
        raise ValueError(f"m must be an integer of at least 2 imputations, got {m}")
    if draws not in DRAW_METHODS:
        raise ValueError(f"draws must be one of {DRAW_METHODS}, got {draws!r}")
    if reference not in GROUPS:
        raise ValueError(f"reference must be one of {GROUPS}, got {reference!r}")
    if not strategies:
        raise ValueError("strategies must name at least one strategy")
    for s in strategies:
        _check_strategy(s)


@dataclass
class ReferenceImputation:
    """Completed datasets of one site under several strategies (shared parameter draws).

    Attributes
    ----------
    data : SiteData
    strategies : tuple of str
    reference : str
        Reference group (``"non-responder"`` or ``"responder"``).
    values : dict
        ``{strategy: ndarray (m, n, visits)}``: the completed outcome (observed values unchanged).
    beta, sigma : ndarray
        The parameter draws, shapes ``(m, p)`` and ``(m, visits, visits)``.
    fit : MmrmResult
        The REML fit on the observed data.
    m, seed, draws
        What was run.
    notes : list of str
    """

    data: SiteData
    strategies: tuple[str, ...]
    reference: str
    values: dict[str, np.ndarray]
    beta: np.ndarray
    sigma: np.ndarray
    fit: MmrmResult
    m: int
    seed: int
    draws: str
    notes: list[str] = field(default_factory=list)

    def endpoint_pct(self, strategy: str, month: float = 12) -> np.ndarray:
        """``(m, n)`` % change from baseline at ``month`` in every completed dataset."""
        if strategy not in self.values:
            raise ValueError(f"strategy {strategy!r} was not imputed; have {list(self.values)}")
        return self.data.to_pct(self.values[strategy][:, :, self.data.visit_index(month)])


@single_threaded_blas
def impute_reference_based(derived: pd.DataFrame, site: str = "spine", strategies: Sequence[str] = STRATEGIES,
                           reference: str = "non-responder", m: int = DEFAULT_M, seed: int = 0,
                           draws: Literal["normal", "bootstrap"] = "normal", outcome: str = "pct",
                           undefined: str = "last_observed", rule: ResponderRule | None = None,
                           covariates: Sequence[str] = ()) -> ReferenceImputation:
    """Impute one site ``m`` times under each strategy (module docstring).

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    site : str
        DXA site (column ``bmd_<site>``).
    strategies : sequence of {"MAR", "J2R", "CR", "CIR", "LMCF"}
    reference : {"non-responder", "responder"}
        The group dropouts of the other group follow.
    m : int
        Number of imputations.
    seed : int
        Seed; the site's stream is ``SeedSequence([seed, crc32(site)])``.
    draws : {"normal", "bootstrap"}
        Parameter draws (module docstring).
    outcome : {"pct", "change"}
        Scale of the MMRM: % change (default) or change in g/cm^2.
    undefined : {"last_observed", "exclude"}
        Strategy for undefined responder status (:func:`analysis.study.groups.assign_groups`).
    rule : ResponderRule, optional
    covariates : sequence of str
        Numeric per-patient baseline covariates added to the MMRM.

    Returns
    -------
    ReferenceImputation
    """
    strategies = tuple(strategies)
    _check_common(m, draws, reference, strategies)
    data = site_data(derived, site, undefined, rule, outcome, covariates)
    _check_cells(data)
    engine = _Draws(data, draws)
    ref_code = GROUPS.index(reference)
    x_ref = data.design(ref_code)
    n, k = data.y.shape
    values = {s: np.empty((int(m), n, k)) for s in strategies}
    last = data.last
    betas, sigmas = [], []
    for l, child in enumerate(_site_seed(seed, site).spawn(int(m))):
        rng = np.random.default_rng(child)
        beta, sigma = engine.draw(rng)
        z = rng.standard_normal((n, k))
        own, ref = engine.x @ beta, x_ref @ beta
        conditionals = _conditionals(engine.patterns, sigma)
        for s in strategies:
            values[s][l] = _fill(data.y, strategy_means(own, ref, last, s), conditionals, z)
        betas.append(beta)
        sigmas.append(sigma)
    return ReferenceImputation(data=data, strategies=strategies, reference=reference, values=values,
                               beta=np.asarray(betas), sigma=np.asarray(sigmas), fit=engine.fit, m=int(m),
                               seed=int(seed), draws=draws, notes=engine.notes)


# ================================================================================================
# analysis of the completed datasets
# ================================================================================================
def _per_imputation(pct: np.ndarray, group: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{group or 'difference': (Q_l, U_l, df_l)}`` of the endpoint analysis in every imputation."""
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    moments = {}
    for code, name in enumerate(GROUPS):
        ys = pct[:, group == code]
        if ys.shape[1] < 2:
            raise ValueError(f"need at least 2 {GROUP_LABELS[name]} for the analysis, got {ys.shape[1]}")
        v = ys.var(axis=1, ddof=1) / ys.shape[1]
        moments[name] = (ys.mean(axis=1), v, ys.shape[1])
        out[name] = (moments[name][0], v, np.full(pct.shape[0], ys.shape[1] - 1.0))
    (q1, v1, n1), (q0, v0, n0) = moments["responder"], moments["non-responder"]
    u = v1 + v0
    with np.errstate(invalid="ignore", divide="ignore"):
        df = u**2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
    out["difference"] = (q1 - q0, u, df)
    return out


def _names(site: str, month: float) -> dict[str, str]:
    return {"non-responder": estimand_name(site, "non-responder", "pct", month),
            "responder": estimand_name(site, "responder", "pct", month),
            "difference": difference_name(site, "pct", month)}


def endpoint_analysis(pct: np.ndarray, group: np.ndarray, site: str, month: float = 12,
                      level: float = 0.95) -> dict[str, PooledResult]:
    r"""Analyse every completed dataset and pool with Rubin's rules.

    Parameters
    ----------
    pct : ndarray, shape (m, n)
        % change at the endpoint in each completed dataset.
    group : ndarray of int, shape (n,)
        0 non-responder, 1 responder.
    site, month
        For the estimand names (:mod:`analysis.study.estimands`).
    level : float

    Returns
    -------
    dict
        ``{estimand name: PooledResult}`` for the non-responders' and responders' mean % change
        (:math:`\hat Q = \bar y_g`, :math:`U = s_g^2/n_g`, :math:`\nu_\text{com} = n_g - 1`) and the
        responder - non-responder difference (Welch :math:`U` and df; :math:`\nu_\text{com}` the
        mean Welch df), as :func:`analysis.frequentist.imputation.standard_analyses`.
    """
    pct = np.asarray(pct, dtype=float)
    group = np.asarray(group, dtype=int)
    if pct.ndim != 2 or pct.shape[1] != group.size:
        raise ValueError(f"pct must be (m, n = {group.size}), got shape {pct.shape}")
    if not np.all(np.isfinite(pct)):
        raise ValueError("pct must be finite (every missing value imputed)")
    names = _names(site, month)
    out = {}
    for key, (q, u, df) in _per_imputation(pct, group).items():
        dfc = float(np.mean(df))
        out[names[key]] = rubin_pool(q, u, dfc if np.isfinite(dfc) and dfc > 0 else None, conf_level=level)
    return out


def _table_rows(pooled: dict[str, PooledResult], site: str, month: float, group: np.ndarray,
                imputed: np.ndarray, extra: dict[str, Any]) -> list[dict[str, Any]]:
    names = _names(site, month)
    rows = []
    for key, name in names.items():
        r = pooled[name]
        if key == "difference":
            n, n_imp = group.size, int(imputed.sum())
        else:
            sel = group == GROUPS.index(key)
            n, n_imp = int(sel.sum()), int(imputed[sel].sum())
        rows.append({**extra, "site": site, "estimand": name, "group": key, "estimate": r.estimate, "se": r.se,
                     "df": r.df, "ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p, "fmi": r.fmi,
                     "mc_se": float(np.sqrt(r.between / r.m)), "m": r.m,
                     "n": n, "n_imputed": n_imp})
    return rows


def _forest(table: pd.DataFrame, analysis: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"estimand": table["estimand"], "site": table["site"], "analysis": analysis,
                         "estimate": table["estimate"], "low": table["ci_low"], "high": table["ci_high"],
                         "kind": "frequentist"})[FOREST_COLUMNS]


def _interval_figure(table: pd.DataFrame, by: str, order: Sequence[str], sites: Sequence[str], title: str,
                     label: str | None):
    """Point estimates and 95% intervals: rows = sites, columns = NR, R, difference; one line per
    value of ``by`` (top to bottom in ``order``)."""
    import matplotlib.pyplot as plt

    from analysis.figures.plots import PALETTE, stamp, style

    keys = [("non-responder", "non-responders"), ("responder", "responders"),
            ("difference", "responders - non-responders")]
    colours = {"non-responder": PALETTE["vermillion"], "responder": PALETTE["blue"], "difference": PALETTE["black"]}
    with style():
        fig, axes = plt.subplots(len(sites), 3, figsize=(10, 0.32 * len(order) * len(sites) + 1.4 * len(sites)),
                                 squeeze=False, sharey=True)
        y = np.arange(len(order))[::-1]
        for r, site in enumerate(sites):
            for c, (key, head) in enumerate(keys):
                ax = axes[r, c]
                sub = table[(table["site"] == site) & (table["group"] == key)].set_index(by)
                for yi, lev in zip(y, order):
                    if lev not in sub.index:
                        continue
                    row = sub.loc[lev]
                    ax.hlines(yi, row["ci_low"], row["ci_high"], color=colours[key], lw=2)
                    ax.plot(row["estimate"], yi, "s", color=colours[key], ms=5)
                ax.axvline(0.0, color=PALETTE["grey"], lw=0.8)
                ax.set_yticks(y, list(order))
                ax.set_title(f"{SITE_LABELS.get(site, site)}: {head}", fontsize=9)
                if r == len(sites) - 1:
                    ax.set_xlabel("% change to endpoint (95% CI)")
        fig.suptitle(title, fontsize=10)
        stamp(fig, label)
        fig.tight_layout()
    return fig


_CI_PHRASE = {"above 0": "lies above 0", "below 0": "lies below 0", "includes 0": "includes 0"}


def _conclusion(r: pd.Series) -> str:
    if r["ci_low"] > 0:
        return "above 0"
    if r["ci_high"] < 0:
        return "below 0"
    return "includes 0"


def reference_based_analysis(derived: pd.DataFrame, sites: Sequence[str] = ("spine", "femoral_neck"),
                             strategies: Sequence[str] = STRATEGIES, reference: str = "non-responder",
                             m: int = DEFAULT_M, seed: int = 0, draws: Literal["normal", "bootstrap"] = "normal",
                             outcome: str = "pct", undefined: str = "last_observed",
                             rule: ResponderRule | None = None, covariates: Sequence[str] = (),
                             endpoint_month: float = 12, level: float = 0.95,
                             label: str | None = None) -> SensitivityResult:
    """Reference-based MI of every site under each strategy, pooled by Rubin's rules.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    sites, strategies, reference, m, seed, draws, outcome, undefined, rule, covariates
        See :func:`impute_reference_based`.
    endpoint_month : float
        Month of the estimands (a DXA month).
    level : float
        Confidence level.
    label : str, optional
        Printed on the figure (e.g. ``"SYNTHETIC (RAJAK digital twin)"``).

    Returns
    -------
    SensitivityResult
        Name ``"reference_based"``; ``table`` has one row per site, strategy and estimand
        (:data:`TABLE_COLUMNS`); ``draws`` the per-imputation estimates ``"<strategy> | <estimand>"``.
    """
    sites, strategies = tuple(sites), tuple(strategies)
    _check_common(m, draws, reference, strategies)
    if not sites:
        raise ValueError("sites must name at least one DXA site")
    other = GROUPS[1 - GROUPS.index(reference)]
    rows, draws_out, notes = [], {}, []
    excluded: dict[str, tuple[str, ...]] = {}
    counts: dict[str, dict[str, int]] = {}
    for site in sites:
        imp = impute_reference_based(derived, site, strategies, reference, m, seed, draws, outcome, undefined,
                                     rule, covariates)
        d = imp.data
        j = d.visit_index(endpoint_month)
        imputed = ~d.observed[:, j]
        excluded[site] = d.excluded
        counts[site] = {f"{g}s": int((d.group == c).sum()) for c, g in enumerate(GROUPS)}
        counts[site].update({f"{g}s imputed at month {endpoint_month:g}": int(imputed[d.group == c].sum())
                             for c, g in enumerate(GROUPS)})
        notes += [f"{site}: {n}" for n in imp.notes]
        for s in strategies:
            pct = imp.endpoint_pct(s, endpoint_month)
            pooled = endpoint_analysis(pct, d.group, site, endpoint_month, level)
            method = (f"MI {s}" + ("" if s in ("MAR", "LMCF") else f" (reference {GROUP_LABELS[reference]})")
                      + f", m={m}")
            rows += _table_rows(pooled, site, endpoint_month, d.group, imputed,
                                {"strategy": s, "reference": reference, "method": method})
            for key, (q, _, _) in _per_imputation(pct, d.group).items():
                draws_out[f"{s} | {_names(site, endpoint_month)[key]}"] = q
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    text = [f"Reference-based multiple imputation (Carpenter, Roger & Kenward 2013; as R's rbmi): per site an "
            f"MMRM of the {'% change' if outcome == 'pct' else 'change in g/cm^2'} (baseline + visit x group, "
            f"unstructured covariance, REML) on all observed DXA; {m} imputations with parameters drawn "
            + ("from the large-sample normal posterior of the REML estimates"
               if draws == "normal" else "by refitting on stratified bootstrap resamples (approximate Bayesian)")
            + f"; missing values drawn from the conditional normal given each patient's observed values; "
            f"Rubin's rules. After dropout, {GROUP_LABELS[other]} follow the {GROUP_LABELS[reference]} "
            "(reference) as each strategy prescribes: "
            + "; ".join(f"{s}: {STRATEGY_TEXT[s]}" for s in strategies) + "."]
    for site in sites:
        c = counts[site]
        text.append(f"{SITE_LABELS.get(site, site)}: {c['non-responders']} non-responders "
                    f"({c[f'non-responders imputed at month {endpoint_month:g}']} imputed at month "
                    f"{endpoint_month:g}) and {c['responders']} responders "
                    f"({c[f'responders imputed at month {endpoint_month:g}']} imputed); "
                    f"{len(excluded[site])} patients without responder status or baseline excluded.")
        for key in ("difference", "non-responder", "responder"):
            sub = table[(table["site"] == site) & (table["group"] == key)]
            parts = [f"{r['strategy']} {r['estimate']:.2f} ({r['ci_low']:.2f} to {r['ci_high']:.2f})"
                     for _, r in sub.iterrows()]
            states = {_conclusion(r) for _, r in sub.iterrows()}
            verdict = ("the 95% CI " + _CI_PHRASE[next(iter(states))] + " under every strategy" if len(states) == 1
                       else "the conclusion depends on the strategy (95% CI " + ", ".join(sorted(states)) + ")")
            text.append(f"{sub['estimand'].iloc[0]}: " + "; ".join(parts) + f" — {verdict}.")
    text.append("The imputation model is MAR given the group and the observed BMD only (not the disease-activity "
                "history used by the primary MI), so its MAR row can differ from the primary MI. Rubin's variance "
                "is conservative for J2R/CR/CIR (Seaman, White & Leacy 2014).")
    text += notes
    order = list(strategies)
    fig = _interval_figure(table, "strategy", order, sites,
                           f"Reference-based MI (reference: {GROUP_LABELS[reference]}), % change to month "
                           f"{endpoint_month:g}", label)
    return SensitivityResult(
        name="reference_based", title=f"Reference-based multiple imputation (reference: {GROUP_LABELS[reference]})",
        table=table, text=text, figures={"sensitivity_reference_based": fig},
        forest_rows=_forest(table, table["method"]),
        settings={"sites": list(sites), "strategies": list(strategies), "reference": reference, "m": int(m),
                  "seed": int(seed), "draws": draws, "outcome": outcome, "undefined": undefined,
                  "covariates": list(covariates), "endpoint_month": endpoint_month, "level": level,
                  "excluded": {s: list(v) for s, v in excluded.items()}, "counts": counts},
        draws=draws_out)


def _config_options(config: Any) -> tuple[dict[str, Any], list[str]]:
    """Common keyword arguments from a :class:`analysis.run.config.RunConfig` (and notes)."""
    notes = []
    undefined = getattr(config, "undefined_responders", "last_observed")
    if undefined == "unknown":
        notes.append("The plan keeps undefined responder status as an 'unknown' group; these analyses need two "
                     "groups, so status was classified from the last observed DAS28-CRP instead.")
        undefined = "last_observed"
    responder = getattr(config, "responder", None)
    opts = {"sites": tuple(getattr(config, "sites", ("spine", "femoral_neck"))), "undefined": undefined,
            "rule": responder.rule() if responder is not None else None,
            "m": max(int(getattr(config, "mi_imputations", DEFAULT_M)), DEFAULT_M), "seed": int(getattr(config, "seed", 0)),
            "endpoint_month": float(getattr(config, "endpoint_month", 12)),
            "label": "SYNTHETIC (RAJAK digital twin)" if getattr(config, "data", None) is None else None}
    return opts, notes


def reference_based_from_config(derived: pd.DataFrame, config: Any) -> SensitivityResult:
    """:func:`reference_based_analysis` with the sites, strategy for undefined status, responder rule,
    number of imputations, seed and endpoint of a run configuration (for the sensitivity runner)."""
    opts, notes = _config_options(config)
    res = reference_based_analysis(derived, **opts)
    res.text = notes + res.text
    return res
