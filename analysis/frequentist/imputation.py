r"""Multiple imputation of the BMD % change endpoint under MAR, pooled with Rubin's rules.

Imputation model
----------------
Each patient :math:`i` contributes a *wide* record: fixed covariates :math:`x_i` (by default age,
sex and BMI, which must be complete), a group :math:`g_i` (the caller's column, normally the
responder status of :func:`analysis.clinical.derive`), time-varying auxiliaries :math:`a_{it}`
(by default DAS28-CRP) at the scheduled visits before the endpoint, and the BMD :math:`y_{ist}`
at site :math:`s` and DXA month :math:`t`. The variables are put in the order in which they are
observed -- by visit; within a visit auxiliaries, then the group (when it has to be imputed, at
the endpoint visit), then the sites -- and each incomplete variable :math:`v` is imputed in turn
from a regression on everything *before* it:

.. math::

    v_i \mid x_i, h_{i,<v} \;\sim\; N\!\bigl(z_i^\top\beta_v,\ \sigma_v^2\bigr),
    \qquad z_i = (1,\ x_i,\ g_i,\ h_{i,<v}),

where :math:`h_{i,<v}` is the patient's history of earlier variables (observed or already
imputed). For the default BMD endpoint this is the model of the brief:

.. math::

    y_{is6}  &= \beta_0 + \beta_1 y_{is0} + \beta_g g_i + \beta_x^\top x_i
                + \beta_a^\top (a_{i0}, a_{i3}, a_{i6}) + e_{is6}, \\
    y_{is12} &= \gamma_0 + \gamma_1 y_{is0} + \gamma_2 y_{is6} + \gamma_g g_i
                + \gamma_x^\top x_i + \gamma_a^\top (a_{i0}, a_{i3}, a_{i6}) + e_{is12},

with the auxiliaries themselves imputed first (:math:`a_{i3}` from the baseline record,
:math:`a_{i6}` from that and :math:`a_{i3}`). Per site (the default, ``cross_site=False``) a BMD
model uses only the same site's BMD history; shared variables (auxiliaries, the group) use the
history of all sites.

*Proper* draws (Rubin 1987; van Buuren 2018, *Flexible Imputation of Missing Data*, 2nd ed.,
§3.2, Algorithm 3.1, mice's ``"norm"`` method): with :math:`Z` the :math:`n\times p` design of the
:math:`n` patients in whom :math:`v` and all its predictors are *observed*,
:math:`\hat\beta = (Z^\top Z)^{-1}Z^\top v` and residual sum of squares :math:`S`, each imputation
draws

.. math::

    \dot\sigma^2 = S / \chi^2_{n-p}, \qquad
    \dot\beta \sim N\!\bigl(\hat\beta,\ \dot\sigma^2 (Z^\top Z)^{-1}\bigr), \qquad
    \dot v_i = z_i^\top\dot\beta + \dot\sigma\,\varepsilon_i,\ \varepsilon_i \sim N(0, 1),

i.e. from the posterior predictive distribution under the prior
:math:`p(\beta, \sigma^2) \propto \sigma^{-2}`. A binary group with undefined members
(``undefined="impute"``) is drawn like mice's ``"logreg"`` (van Buuren 2018, §3.6, Algorithm 3.4):
the maximum-likelihood logistic fit on data augmented with :math:`2pk` pseudo-observations of
total weight :math:`p + 1` at the predictor means :math:`\pm` half an SD (White, Daniel & Royston
2010, which prevents perfect prediction), :math:`\dot\beta \sim N(\hat\beta, (Z^\top W Z)^{-1})`,
:math:`\dot g_i \sim \text{Bernoulli}(\operatorname{logit}^{-1} z_i^\top \dot\beta)`. Columns
constant among the fitting patients are dropped from that regression (their effect is not
estimable); remaining collinearity is an error.

*Non-monotone (intermittent) gaps*, e.g. a missed month-6 DXA of a patient measured at month 12,
are imputed from the regression on the history **plus the later variables observed in that
patient** (fitted in the patients with all of them observed), so the imputation respects what is
known after the gap. Patterns that share a predictor set share one parameter draw per
imputation.

Assumption
----------
The data are *missing at random conditional on the predictors*: given the covariates, the group
and the observed history (BMD, auxiliaries) up to a visit, whether a patient is still measured at
that visit does not depend on the values that would be observed. This holds for dropout driven by
the last observed DAS28 when DAS28 is an auxiliary (as in :mod:`models.simulate` with
``bmd_log_odds = 0``), and fails when dropout depends on the unobserved BMD itself (MNAR); MI
then inherits the completers' bias in part. Responder status defined at month 12 is *undefined*
for every dropout; ``undefined="impute"`` imputes it (MAR given the history), ``"level"`` keeps
'undefined' as a group of its own, ``"exclude"`` removes those patients.

Pooling (Rubin 1987; Barnard & Rubin 1999; van Buuren 2018, §2.3) -- see :func:`rubin_pool`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import linalg, stats

from analysis.clinical import ResponderRule, eular_response

__all__ = [
    "PooledResult",
    "rubin_pool",
    "ImputationResult",
    "impute_bmd",
    "pool_analyses",
    "mi_analysis",
    "mean_pct_change",
    "difference_pct_change",
    "standard_analyses",
    "combine_analyses",
    "responder_codes",
    "SITES",
]

SITES = ("spine", "femoral_neck")
UNDEFINED_MODES = ("rule", "impute", "level", "exclude", "assign")
RULE_AUXILIARY = "das28_crp"
RULE_LEVELS = ("non-responder", "responder")  # sorted, so the code of 'responder' is 1
PMM_DONORS = 5  # mice's default number of donors
POOLED_COLUMNS = ["estimand", "estimate", "se", "df", "ci_low", "ci_high", "p", "fmi", "m",
                  "riv", "lambda", "within", "between", "total", "df_complete"]

AnalysisFn = Callable[[pd.DataFrame], Mapping[str, Sequence[float]]]


# ================================================================================================
# Rubin's rules
# ================================================================================================
@dataclass(frozen=True)
class PooledResult:
    r"""A scalar estimand pooled over :math:`m` imputations by Rubin's rules.

    Attributes
    ----------
    estimate : float
        :math:`\bar Q = m^{-1}\sum_l \hat Q_l`.
    se : float
        :math:`\sqrt{T}`.
    within : float
        :math:`\bar U = m^{-1}\sum_l U_l`, the mean complete-data variance.
    between : float
        :math:`B = (m-1)^{-1}\sum_l (\hat Q_l - \bar Q)^2`.
    total : float
        :math:`T = \bar U + (1 + m^{-1}) B`.
    riv : float
        Relative increase in variance due to nonresponse, :math:`r = (1 + m^{-1})B/\bar U`.
    lambda_ : float
        Proportion of the total variance due to missingness, :math:`\lambda = (1 + m^{-1})B/T`.
    fmi : float
        Fraction of missing information, :math:`\gamma = (r + 2/(\nu + 3))/(r + 1)`.
    df : float
        :math:`\nu` (Barnard-Rubin when ``df_complete`` is finite, else Rubin's 1987 value;
        ``inf`` when :math:`B = 0` and no complete-data df is given).
    df_complete : float
        :math:`\nu_\text{com}` (``inf`` when not given).
    statistic : float
        :math:`t = (\bar Q - Q_0)/\sqrt T`.
    p : float
        Two-sided p-value of :math:`H_0: Q = Q_0` from :math:`t_\nu`.
    ci_low, ci_high : float
        :math:`\bar Q \mp t_{\nu, 1-\alpha/2}\sqrt T`.
    conf_level : float
        :math:`1 - \alpha`.
    null : float
        :math:`Q_0`.
    m : int
        Number of imputations.
    """

    estimate: float
    se: float
    within: float
    between: float
    total: float
    riv: float
    lambda_: float
    fmi: float
    df: float
    df_complete: float
    statistic: float
    p: float
    ci_low: float
    ci_high: float
    conf_level: float
    null: float
    m: int


def _as_vector(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def rubin_df(m: int, riv: float, lambda_: float, df_complete: float | None = None) -> float:
    r"""Degrees of freedom of the pooled :math:`t` reference distribution.

    Rubin (1987): :math:`\nu_\text{old} = (m - 1)/\lambda^2 = (m - 1)(1 + 1/r)^2`. With finite
    complete-data df :math:`\nu_\text{com}`, Barnard & Rubin (1999):

    .. math::

        \nu_\text{obs} = \frac{\nu_\text{com} + 1}{\nu_\text{com} + 3}\,\nu_\text{com}(1 - \lambda),
        \qquad \nu = \frac{\nu_\text{old}\,\nu_\text{obs}}{\nu_\text{old} + \nu_\text{obs}}

    (van Buuren 2018, §2.3.6; mice's ``barnard.rubin``, which differs only in flooring
    :math:`\lambda` at :math:`10^{-4}`). :math:`\lambda = 0` gives :math:`\nu_\text{old} = \infty`,
    hence :math:`\nu = \nu_\text{obs}` (or :math:`\infty`).
    """
    del riv  # nu_old = (m-1)(1+1/r)^2 = (m-1)/lambda^2; lambda is the numerically safe form
    nu_old = np.inf if lambda_ <= 0 else (m - 1) / lambda_**2
    if df_complete is None or not np.isfinite(df_complete):
        return float(nu_old)
    nu_obs = (df_complete + 1.0) / (df_complete + 3.0) * df_complete * (1.0 - lambda_)
    if not np.isfinite(nu_old):
        return float(nu_obs)
    return float(nu_old * nu_obs / (nu_old + nu_obs))


def rubin_pool(estimates, variances, df_complete: float | None = None, *, conf_level: float = 0.95,
               null: float = 0.0) -> PooledResult:
    r"""Pool :math:`m` complete-data estimates of a scalar with Rubin's rules.

    Parameters
    ----------
    estimates : array_like, shape (m,)
        :math:`\hat Q_l`, the estimate from each completed dataset.
    variances : array_like, shape (m,)
        :math:`U_l`, its squared standard error in that dataset.
    df_complete : float, optional
        :math:`\nu_\text{com}`, the degrees of freedom the analysis would have without missing data
        (e.g. :math:`n - 1` for a mean). Given: the Barnard & Rubin (1999) small-sample df.
        Omitted (or ``inf``): Rubin's (1987) large-sample df.
    conf_level : float
        Confidence level of the interval.
    null : float
        :math:`Q_0` of the reported test.

    Returns
    -------
    PooledResult

    Notes
    -----
    With :math:`\bar Q = m^{-1}\sum_l \hat Q_l`, :math:`\bar U = m^{-1}\sum_l U_l` and
    :math:`B = (m-1)^{-1}\sum_l(\hat Q_l - \bar Q)^2`, the total variance is
    :math:`T = \bar U + (1 + m^{-1})B`; :math:`r = (1 + m^{-1})B/\bar U`,
    :math:`\lambda = (1 + m^{-1})B/T`, the df :math:`\nu` of :func:`rubin_df`, and the fraction of
    missing information :math:`\gamma = (r + 2/(\nu + 3))/(r + 1)` (van Buuren 2018, §2.3;
    identical to ``mice::pool.scalar(Q, U, n = df_complete + 1, k = 1)``, whose ``fmi`` also
    uses the adjusted :math:`\nu`; SAS PROC MIANALYZE uses Rubin's :math:`\nu` there).
    :math:`(\bar Q - Q_0)/\sqrt T \sim t_\nu`.
    """
    q = _as_vector(estimates, "estimates")
    u = _as_vector(variances, "variances")
    if q.size != u.size:
        raise ValueError(f"estimates and variances differ in length: {q.size} != {u.size}")
    if q.size < 2:
        raise ValueError(f"Rubin's rules need at least 2 imputations, got {q.size}")
    if np.any(u < 0):
        raise ValueError(f"variances must be non-negative, got {u.tolist()}")
    if df_complete is not None and not df_complete > 0:
        raise ValueError(f"df_complete must be positive, got {df_complete}")
    if not 0.0 < conf_level < 1.0:
        raise ValueError(f"conf_level must be in (0, 1), got {conf_level}")
    m = q.size
    qbar, ubar, b = float(q.mean()), float(u.mean()), float(q.var(ddof=1))
    if ubar <= 0:
        raise ValueError("within-imputation variances are all zero; Rubin's rules are undefined")
    total = ubar + (1.0 + 1.0 / m) * b
    riv = (1.0 + 1.0 / m) * b / ubar
    lam = (1.0 + 1.0 / m) * b / total
    nu = rubin_df(m, riv, lam, df_complete)
    fmi = (riv + 2.0 / (nu + 3.0)) / (riv + 1.0)
    se = float(np.sqrt(total))
    tstat = (qbar - null) / se
    dist = stats.norm if not np.isfinite(nu) else stats.t(nu)
    half = float(dist.ppf(0.5 + conf_level / 2.0)) * se
    return PooledResult(
        estimate=qbar, se=se, within=ubar, between=b, total=total, riv=riv, lambda_=lam,
        fmi=float(fmi), df=nu, df_complete=float(np.inf if df_complete is None else df_complete),
        statistic=float(tstat), p=float(2.0 * dist.sf(abs(tstat))), ci_low=qbar - half,
        ci_high=qbar + half, conf_level=conf_level, null=null, m=m)


# ================================================================================================
# Bayesian regression draws
# ================================================================================================
@dataclass(frozen=True)
class _NormFit:
    """Least-squares summary for :func:`_draw_norm` (fixed across imputations)."""

    beta_hat: np.ndarray
    r: np.ndarray  # upper-triangular R of Z = QR, so (Z'Z)^-1 = R^-1 R^-T
    rss: float
    df: int


@dataclass(frozen=True)
class _LogregFit:
    """Augmented logistic fit for :func:`_draw_logreg`."""

    beta_hat: np.ndarray
    chol_cov: np.ndarray  # lower Cholesky factor of (Z'WZ)^-1


def _fit_norm(z: np.ndarray, y: np.ndarray) -> _NormFit:
    q, r = np.linalg.qr(z)
    beta = linalg.solve_triangular(r, q.T @ y)
    resid = y - z @ beta
    return _NormFit(beta_hat=beta, r=r, rss=float(resid @ resid), df=z.shape[0] - z.shape[1])


def _draw_norm(fit: _NormFit, z_mis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""One proper draw: :math:`\dot\sigma^2`, :math:`\dot\beta`, then the missing values."""
    sigma = np.sqrt(fit.rss / rng.chisquare(fit.df))
    beta = fit.beta_hat + sigma * linalg.solve_triangular(fit.r, rng.standard_normal(fit.beta_hat.size))
    return z_mis @ beta + sigma * rng.standard_normal(z_mis.shape[0])


@dataclass(frozen=True)
class _PmmFit:
    """Normal fit plus the observed values sorted by their fitted means (for matching)."""

    norm: _NormFit
    yhat_sorted: np.ndarray
    y_sorted: np.ndarray
    donors: int


def _fit_pmm(z: np.ndarray, y: np.ndarray, donors: int) -> _PmmFit:
    norm = _fit_norm(z, y)
    yhat = z @ norm.beta_hat
    order = np.argsort(yhat, kind="stable")
    return _PmmFit(norm=norm, yhat_sorted=yhat[order], y_sorted=y[order], donors=min(donors, y.size))


def _draw_pmm(fit: _PmmFit, z_mis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


def _fit_logreg(z: np.ndarray, y: np.ndarray, name: str) -> _LogregFit:
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
    return _LogregFit(beta_hat=beta, chol_cov=np.linalg.cholesky((cov + cov.T) / 2.0))


def _draw_logreg(fit: _LogregFit, z_mis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    beta = fit.beta_hat + fit.chol_cov @ rng.standard_normal(fit.beta_hat.size)
    prob = 1.0 / (1.0 + np.exp(-np.clip(z_mis @ beta, -30, 30)))
    return (rng.random(z_mis.shape[0]) <= prob).astype(float)


# ================================================================================================
# the wide layout and the imputation sequence
# ================================================================================================
@dataclass(frozen=True)
class _Var:
    """One variable of the imputation sequence (a column of the wide array)."""

    name: str      # wide column name, e.g. "bmd_spine_m6"
    column: str    # long column, e.g. "bmd_spine"
    kind: Literal["aux", "group", "bmd"]
    month: float
    site: str | None = None


@dataclass(frozen=True)
class _Model:
    """A fitted imputation model: variable, predictor columns and the rows it imputes."""

    var: int
    predictors: tuple[int, ...]
    keep: np.ndarray      # columns of [1, fixed, predictors] kept (non-constant among fit rows)
    rows: np.ndarray      # rows imputed with this model
    fit: "_NormFit | _PmmFit | _LogregFit | _RuleFit"
    n_fit: int
    stratum: float | None = None  # stratify=True: imputes only the rows currently in this group code


def _month_label(month: float) -> str:
    return f"{float(month):g}"


def _per_patient(frame: pd.DataFrame, column: str, ids: pd.Index) -> pd.Series:
    """One value per patient (the first non-missing one)."""
    return frame.groupby("patient_id", sort=False)[column].first().reindex(ids)


def _fixed_design(frame: pd.DataFrame, ids: pd.Index, covariates: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Complete covariates as numeric columns (categoricals as treatment indicators)."""
    cols, names = [], []
    for cov in covariates:
        values = _per_patient(frame, cov, ids)
        if values.isna().any():
            raise ValueError(f"covariate {cov!r} is missing for {int(values.isna().sum())} patient(s); "
                             "impute or drop them first")
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            cols.append(values.to_numpy(dtype=float))
            names.append(cov)
            continue
        levels = sorted(values.astype(str).unique())
        for lev in levels[1:]:
            cols.append((values.astype(str) == lev).to_numpy(dtype=float))
            names.append(f"{cov}[{lev}]")
    arr = np.column_stack(cols) if cols else np.empty((len(ids), 0))
    return arr, names


@dataclass(frozen=True)
class _Group:
    """The caller's group column, coded for the imputation."""

    column: str | None
    labels: np.ndarray            # per patient, object; None where undefined
    levels: tuple[str, ...]       # defined levels, sorted
    imputed: bool                 # whether the group is a sequence variable
    rule: ResponderRule | None = None  # undefined="rule": derived from the imputed DAS28


def _prepare_group(frame: pd.DataFrame, ids: pd.Index, group: str | None, undefined: str,
                   undefined_label: str, assign_to: str, rule: ResponderRule) -> _Group:
    if group is None:
        return _Group(None, np.full(len(ids), None, dtype=object), (), False)
    raw = _per_patient(frame, group, ids)
    labels = np.array([None if pd.isna(v) or str(v) == undefined_label else str(v) for v in raw],
                      dtype=object)
    missing = np.array([v is None for v in labels])
    if undefined in ("level", "assign"):
        labels[missing] = undefined_label if undefined == "level" else assign_to
        missing[:] = False
    levels = tuple(sorted({str(v) for v in labels[~missing]}))
    if not levels:
        raise ValueError(f"group column {group!r} has no defined values")
    imputed = undefined in ("impute", "rule") and bool(missing.any())
    if imputed and undefined == "impute" and len(levels) != 2:
        raise ValueError(f"undefined='impute' needs exactly two defined groups in {group!r}, got {list(levels)}")
    if imputed and undefined == "rule" and not set(levels) <= set(RULE_LEVELS):
        raise ValueError(f"undefined='rule' needs groups {list(RULE_LEVELS)} in {group!r}, got {list(levels)}")
    if undefined == "rule":
        levels = RULE_LEVELS
    return _Group(group, labels, levels, imputed, rule if undefined == "rule" else None)


def _group_codes(g: _Group, vals: np.ndarray, group_var: int | None) -> np.ndarray:
    """Index of each patient's group in ``g.levels`` (NaN where still undefined)."""
    if group_var is not None:
        return vals[:, group_var].copy()
    lookup = {lev: float(k) for k, lev in enumerate(g.levels)}
    return np.array([lookup.get(v, np.nan) for v in g.labels])


def _group_fixed_columns(g: _Group) -> tuple[np.ndarray, list[str]]:
    if g.column is None or g.imputed:
        return np.empty((g.labels.size, 0)), []
    cols = [(g.labels == lev).astype(float) for lev in g.levels[1:]]
    names = [f"{g.column}[{lev}]" for lev in g.levels[1:]]
    return (np.column_stack(cols) if cols else np.empty((g.labels.size, 0))), names


def _build_sequence(frame: pd.DataFrame, ids: pd.Index, sites: Sequence[str], auxiliary: Sequence[str],
                    g: _Group) -> tuple[list[_Var], np.ndarray, list[float]]:
    """The ordered variables and their wide values (NaN where missing)."""
    months = sorted(float(v) for v in frame["month"].unique())
    dxa = {s: {float(t) for t in frame.loc[frame[f"bmd_{s}"].notna(), "month"].unique()} for s in sites}
    for s in sites:
        if 0.0 not in dxa[s]:
            raise ValueError(f"bmd_{s} has no baseline (month 0) value in any patient")
    endpoint = max(max(d) for d in dxa.values())
    wide = {col: frame.pivot(index="patient_id", columns="month", values=col).reindex(ids)
            for col in [*(f"bmd_{s}" for s in sites), *auxiliary]}
    for col in wide:
        wide[col].columns = [float(c) for c in wide[col].columns]
    variables: list[_Var] = []
    values: list[np.ndarray] = []

    def add(var: _Var, col: np.ndarray) -> None:
        variables.append(var)
        values.append(col)

    # 1. the baseline record, 2. the auxiliary history up to the endpoint, 3. the group,
    # 4. the follow-up BMD by visit
    for aux in auxiliary:
        if 0.0 in wide[aux].columns:
            add(_Var(f"{aux}_m0", aux, "aux", 0.0), wide[aux][0.0].to_numpy(dtype=float))
    for s in sites:
        add(_Var(f"bmd_{s}_m0", f"bmd_{s}", "bmd", 0.0, s), wide[f"bmd_{s}"][0.0].to_numpy(dtype=float))
    rule_month = None if g.rule is None else float(g.rule.month)
    if g.imputed and g.rule is not None and (RULE_AUXILIARY not in auxiliary or rule_month not in months):
        raise ValueError(f"undefined='rule' needs {RULE_AUXILIARY!r} among the auxiliaries and month "
                         f"{g.rule.month:g} in the schedule")
    for t in months:
        for aux in auxiliary:
            col = wide[aux].get(t)
            wanted = 0.0 < t < endpoint or (g.imputed and aux == RULE_AUXILIARY and t == rule_month)
            if wanted and col is not None and col.notna().any():
                add(_Var(f"{aux}_m{_month_label(t)}", aux, "aux", t), col.to_numpy(dtype=float))
    if g.imputed:
        code = np.array([np.nan if v is None else float(v == g.levels[1]) for v in g.labels])
        add(_Var(str(g.column), str(g.column), "group", endpoint), code)
    for t in months:
        for s in sites:
            if t > 0.0 and t in dxa[s]:
                add(_Var(f"bmd_{s}_m{_month_label(t)}", f"bmd_{s}", "bmd", t, s),
                    wide[f"bmd_{s}"][t].to_numpy(dtype=float))
    return variables, np.column_stack(values), months


def _allowed(target: _Var, other: _Var, cross_site: bool) -> bool:
    """Whether ``other`` may predict ``target`` (per-site BMD models see only their own site)."""
    if target.kind == "bmd" and other.kind == "bmd" and other.site != target.site:
        return cross_site and other.month < target.month
    return True


def _fit_model(var: int, predictors: tuple[int, ...], rows: np.ndarray, variables: list[_Var],
               fixed: np.ndarray, vals: np.ndarray, obs: np.ndarray, methods: Mapping[str, str],
               stratum: tuple[np.ndarray, float] | None = None) -> _Model:
    target = variables[var]
    fit_rows = obs[:, var] & obs[:, list(predictors)].all(axis=1) if predictors else obs[:, var].copy()
    if stratum is not None:
        fit_rows &= stratum[0] == stratum[1]
    z = np.column_stack([np.ones(vals.shape[0]), fixed, vals[:, list(predictors)]])[fit_rows]
    y = vals[fit_rows, var]
    keep = np.concatenate([[True], np.ptp(z[:, 1:], axis=0) > 0]) if z.shape[0] else np.ones(z.shape[1], bool)
    z = z[:, keep]
    n, p = z.shape
    what = f"{target.name} ({rows.size} missing)" + ("" if stratum is None else f" in group code {stratum[1]:g}")
    if n - p < 1:
        raise ValueError(f"cannot impute {what}: {n} patients with it and its predictors observed, "
                         f"{p} regression coefficients")
    if np.linalg.matrix_rank(z) < p:
        raise ValueError(f"cannot impute {what}: its predictors are collinear among the {n} patients "
                         "with observed values")
    if target.kind == "group":
        if np.unique(y).size < 2:
            raise ValueError(f"cannot impute {what}: only one group among the observed patients")
        fit: _NormFit | _PmmFit | _LogregFit = _fit_logreg(z, y, target.name)
    elif methods[target.kind] == "pmm":
        fit = _fit_pmm(z, y, PMM_DONORS)
    else:
        fit = _fit_norm(z, y)
    return _Model(var=var, predictors=predictors, keep=keep, rows=rows, fit=fit, n_fit=n,
                  stratum=None if stratum is None else stratum[1])


@dataclass(frozen=True)
class _RuleFit:
    """Responder status derived from the (imputed) DAS28 by a :class:`ResponderRule`."""

    rule: ResponderRule
    base: int  # column of the baseline DAS28
    at: int    # column of the DAS28 at the rule's month


def responder_codes(rule: ResponderRule, das_base, das_at) -> np.ndarray:
    """1.0 for a responder, 0.0 for a non-responder under ``rule`` (NaN where a score is missing);
    the same classification as :func:`analysis.clinical.classify_responders`."""
    base, at = np.asarray(das_base, dtype=float), np.asarray(das_at, dtype=float)
    if rule.kind == "das28_fall":
        resp = (base - at) > rule.threshold
    else:
        eular = eular_response(base, at)
        resp = np.isin(eular, ["good", "moderate"]) if rule.kind == "eular" else eular == "good"
    return np.where(np.isnan(base) | np.isnan(at), np.nan, resp.astype(float))


def _rule_model(j: int, variables: list[_Var], rule: ResponderRule, rows: np.ndarray) -> _Model:
    def col(month: float) -> int:
        return next(k for k, v in enumerate(variables)
                    if v.kind == "aux" and v.column == RULE_AUXILIARY and v.month == month)
    fit = _RuleFit(rule=rule, base=col(0.0), at=col(float(rule.month)))
    return _Model(var=j, predictors=(fit.base, fit.at), keep=np.ones(0, bool), rows=rows, fit=fit, n_fit=0)


def _plan(variables: list[_Var], fixed: np.ndarray, vals: np.ndarray, obs: np.ndarray,
          cross_site: bool, methods: Mapping[str, str], rule: ResponderRule | None,
          codes: np.ndarray | None) -> list[_Model]:
    """Imputation models in sequence order; one per (variable, set of later observed predictors)
    and, with ``codes`` (stratified BMD models), per group code."""
    models: list[_Model] = []
    for j, target in enumerate(variables):
        missing = np.flatnonzero(~obs[:, j])
        if missing.size == 0:
            continue
        if target.kind == "group" and rule is not None:
            models.append(_rule_model(j, variables, rule, missing))
            continue
        earlier = tuple(k for k in range(j) if _allowed(target, variables[k], cross_site))
        later = [k for k in range(j + 1, len(variables)) if _allowed(target, variables[k], cross_site)]
        keys: dict[tuple[int, ...], list[int]] = {}
        for i in missing:
            keys.setdefault(tuple(k for k in later if obs[i, k]), []).append(i)
        for key, rows in keys.items():
            if codes is None or target.kind != "bmd":
                models.append(_fit_model(j, earlier + key, np.asarray(rows), variables, fixed, vals, obs,
                                          methods))
                continue
            for c in np.unique(codes[~np.isnan(codes)]):
                models.append(_fit_model(j, earlier + key, np.asarray(rows), variables, fixed, vals, obs,
                                          methods, (codes, float(c))))
    return models


# ================================================================================================
# result
# ================================================================================================
@dataclass(frozen=True)
class ImputationResult:
    """Completed datasets from :func:`impute_bmd`.

    Attributes
    ----------
    imputations : tuple of DataFrame
        The ``m`` completed datasets, long: one row per patient and scheduled month with
        ``patient_id``, ``month``, the group column (imputed where undefined, if so requested),
        the covariates, the auxiliaries, ``bmd_<site>`` and ``pct_change_<site>``. BMD stays NaN
        at months without DXA (month 3), and auxiliaries at and after the endpoint are left as
        observed.
    observed : DataFrame
        The same layout without imputation (NaN where missing; undefined groups labelled
        ``undefined_label``): applying an analysis function to it gives the available-case
        (completers) analysis.
    mask : DataFrame
        Boolean, same rows as the completed datasets; for each imputed column ``True`` where the
        value was observed.
    variables : tuple of str
        The imputation sequence (wide names, e.g. ``"bmd_spine_m12"``).
    predictors : dict
        For each imputation model, ``"<variable> <- <predictors>"`` with the number of patients it
        was fitted in and the number it imputes.
    m, seed, group, undefined
        Settings.
    """

    imputations: tuple[pd.DataFrame, ...]
    observed: pd.DataFrame
    mask: pd.DataFrame
    variables: tuple[str, ...]
    predictors: dict[str, str]
    m: int
    seed: int | None
    group: str | None
    undefined: str
    _wide: tuple[pd.DataFrame, ...] = field(repr=False, default=())

    def long(self, i: int) -> pd.DataFrame:
        """The ``i``-th completed dataset, long (a copy)."""
        return self.imputations[i].copy()

    def wide(self, i: int) -> pd.DataFrame:
        """The ``i``-th completed dataset, one row per patient: the imputation-sequence variables
        as ``<column>_m<month>``, ``pct_change_<site>_m<month>``, group and covariates."""
        return self._wide[i].copy()

    def stacked(self) -> pd.DataFrame:
        """All completed datasets stacked with an ``imputation`` column (1..m), like
        ``mice::complete(imp, "long")``."""
        return pd.concat([d.assign(imputation=k + 1) for k, d in enumerate(self.imputations)],
                         ignore_index=True)


def _long_frame(base: pd.DataFrame, ids: pd.Index, months: list[float], variables: list[_Var],
                vals: np.ndarray, long_obs: dict[str, np.ndarray], sites: Sequence[str],
                group_col: str | None, labels: np.ndarray) -> pd.DataFrame:
    """A long frame from the wide values (``long_obs``: observed long columns to start from)."""
    n, t = len(ids), len(months)
    cols = {k: v.copy() for k, v in long_obs.items()}
    month_pos = {m: k for k, m in enumerate(months)}
    for j, v in enumerate(variables):
        if v.kind == "group":
            continue
        cols[v.column][np.arange(n) * t + month_pos[v.month]] = vals[:, j]
    out = base.copy()
    if group_col is not None:
        out[group_col] = np.repeat(labels, t)
    for k, v in cols.items():
        out[k] = v
    for s in sites:
        y = cols[f"bmd_{s}"].reshape(n, t)
        out[f"pct_change_{s}"] = (100.0 * (y - y[:, [month_pos[0.0]]]) / y[:, [month_pos[0.0]]]).ravel()
    return out


def _wide_frame(ids: pd.Index, variables: list[_Var], vals: np.ndarray, fixed_df: pd.DataFrame,
                group_col: str | None, labels: np.ndarray, sites: Sequence[str]) -> pd.DataFrame:
    out = fixed_df.copy()
    if group_col is not None:
        out[group_col] = labels
    for j, v in enumerate(variables):
        if v.kind != "group":
            out[v.name] = vals[:, j]
    for s in sites:
        base = out[f"bmd_{s}_m0"]
        for v in variables:
            if v.kind == "bmd" and v.site == s and v.month > 0:
                out[f"pct_change_{s}_m{_month_label(v.month)}"] = 100.0 * (out[v.name] - base) / base
    return out


# ================================================================================================
# imputation
# ================================================================================================
def _check_frame(frame: pd.DataFrame, sites: Sequence[str], covariates: Sequence[str],
                 auxiliary: Sequence[str], group: str | None) -> None:
    need = {"patient_id", "month", *(f"bmd_{s}" for s in sites), *covariates, *auxiliary}
    if group is not None:
        need.add(group)
    missing = sorted(need - set(frame.columns))
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}")
    if frame.duplicated(["patient_id", "month"]).any():
        raise ValueError("frame has more than one row for some (patient_id, month)")
    if not sites:
        raise ValueError("sites must name at least one DXA site")


def impute_bmd(frame: pd.DataFrame, *, m: int = 20, seed: int | None = None,
               group: str | None = "responder_status",
               undefined: Literal["rule", "impute", "level", "exclude", "assign"] = "rule",
               undefined_label: str = "undefined", rule: ResponderRule | None = None,
               assign_to: str = "non-responder", sites: Sequence[str] = SITES,
               covariates: Sequence[str] = ("age", "sex", "bmi"),
               auxiliary: Sequence[str] = ("das28_crp",), cross_site: bool = False, stratify: bool = False,
               auxiliary_method: Literal["pmm", "norm"] = "pmm",
               bmd_method: Literal["norm", "pmm"] = "norm") -> ImputationResult:
    r"""Multiply impute missing BMD (and what it is imputed from) by sequential Bayesian regression.

    The model, the proper draws and the MAR assumption are described in the module docstring.

    Parameters
    ----------
    frame : DataFrame
        Long data, one row per patient-visit (the rajak data contract), with the ``group`` column
        (e.g. from :func:`analysis.clinical.derive`). Rows absent after dropout are missing visits.
    m : int
        Number of imputations (at least 2).
    seed : int, optional
        Seed; the same data, settings and seed give identical imputations. Imputation ``l`` uses
        the ``l``-th child of ``numpy.random.SeedSequence(seed)``, so the first imputations do not
        change when ``m`` grows.
    group : str or None
        Per-patient group column used as a predictor (``None``: no group).
    undefined : {"impute", "level", "exclude"}
        Handling of patients whose group is ``undefined_label`` or missing: impute it (two defined
        groups only; Bayesian logistic regression at the endpoint visit, so month-6 models use the
        DAS28 history instead of the group), keep it as a group of its own, or drop the patients.
    undefined_label : str
        The label of an undefined group.
    sites : sequence of str
        DXA sites (columns ``bmd_<site>``).
    covariates : sequence of str
        Complete per-patient covariates (categoricals become indicators).
    auxiliary : sequence of str
        Time-varying variables (default DAS28-CRP) that enter the sequence at every visit before
        the endpoint; they carry the information that drives MAR dropout. ``()`` to omit.
    cross_site : bool
        Let each site's BMD model use the other sites' BMD at earlier visits.

    Returns
    -------
    ImputationResult
    """
    if int(m) != m or m < 2:
        raise ValueError(f"m must be an integer of at least 2, got {m}")
    for name, meth in (("auxiliary_method", auxiliary_method), ("bmd_method", bmd_method)):
        if meth not in ("norm", "pmm"):
            raise ValueError(f"{name} must be 'norm' or 'pmm', got {meth!r}")
    if undefined not in UNDEFINED_MODES:
        raise ValueError(f"undefined must be one of {list(UNDEFINED_MODES)}, got {undefined!r}")
    sites, covariates, auxiliary = tuple(sites), tuple(covariates), tuple(auxiliary)
    _check_frame(frame, sites, covariates, auxiliary, group)
    frame = frame.assign(month=frame["month"].astype(float))
    if group is not None and undefined == "exclude":
        gv = frame[group]
        frame = frame.loc[gv.notna() & (gv.astype(str) != undefined_label)]
        if frame.empty:
            raise ValueError(f"no patient has a defined {group!r}")
    ids = pd.Index(pd.unique(frame["patient_id"]), name="patient_id")
    g = _prepare_group(frame, ids, group, undefined, undefined_label, assign_to, rule or ResponderRule())
    cov_x, _ = _fixed_design(frame, ids, covariates)
    grp_x, _ = _group_fixed_columns(g)
    fixed = np.column_stack([cov_x, grp_x])
    variables, vals0, months = _build_sequence(frame, ids, sites, auxiliary, g)
    obs = ~np.isnan(vals0)
    group_var = next((k for k, v in enumerate(variables) if v.kind == "group"), None)
    codes0 = _group_codes(g, vals0, group_var) if stratify and group is not None else None
    models = _plan(variables, fixed, vals0, obs, cross_site,
                   {"aux": auxiliary_method, "bmd": bmd_method}, g.rule, codes0)

    # long scaffolding shared by every completed dataset
    n, t = len(ids), len(months)
    base = pd.DataFrame({"patient_id": np.repeat(ids.to_numpy(), t), "month": np.tile(months, n)})
    cov_df = pd.DataFrame({c: _per_patient(frame, c, ids).to_numpy() for c in covariates}, index=ids)
    for c in covariates:
        base[c] = np.repeat(cov_df[c].to_numpy(), t)
    grid = pd.MultiIndex.from_product([ids, months], names=["patient_id", "month"])
    indexed = frame.set_index(["patient_id", "month"])
    long_cols = [*auxiliary, *(f"bmd_{s}" for s in sites)]
    long_obs = {c: indexed[c].reindex(grid).to_numpy(dtype=float) for c in long_cols}
    observed_labels = np.array([undefined_label if v is None else v for v in g.labels], dtype=object)

    observed = _long_frame(base, ids, months, [], vals0, long_obs, sites, g.column, observed_labels)
    mask = base[["patient_id", "month"]].copy()
    for c in long_cols:
        mask[c] = ~np.isnan(long_obs[c])
    if g.column is not None:
        mask[g.column] = np.repeat([v is not None for v in g.labels], t)

    seq = np.random.SeedSequence(seed)
    completed, wides = [], []
    for child in seq.spawn(int(m)):
        vals = _impute_once(models, fixed, vals0, codes0, group_var, np.random.default_rng(child))
        labels = _labels_from(vals, variables, g)
        completed.append(_long_frame(base, ids, months, variables, vals, long_obs, sites, g.column, labels))
        wides.append(_wide_frame(ids, variables, vals, cov_df, g.column, labels, sites))
    return ImputationResult(
        imputations=tuple(completed), observed=observed, mask=mask,
        variables=tuple(v.name for v in variables), predictors=_describe(models, variables, fixed.shape[1]),
        m=int(m), seed=seed, group=group, undefined=undefined, _wide=tuple(wides))


def _impute_once(models: list[_Model], fixed: np.ndarray, vals0: np.ndarray, codes0: np.ndarray | None,
                 group_var: int | None, rng: np.random.Generator) -> np.ndarray:
    """One completed wide array: the models in sequence order, each with a fresh parameter draw."""
    vals = vals0.copy()
    for mod in models:
        rows = mod.rows
        if isinstance(mod.fit, _RuleFit):
            vals[rows, mod.var] = responder_codes(mod.fit.rule, vals[rows, mod.fit.base], vals[rows, mod.fit.at])
            continue
        if mod.stratum is not None:
            codes = vals[:, group_var] if group_var is not None else codes0
            rows = rows[codes[rows] == mod.stratum]
            if rows.size == 0:
                continue
        z = np.column_stack([np.ones(rows.size), fixed[rows], vals[np.ix_(rows, mod.predictors)]])
        vals[rows, mod.var] = _DRAWS[type(mod.fit)](mod.fit, z[:, mod.keep], rng)
    return vals


_DRAWS: dict[type, Callable] = {_NormFit: _draw_norm, _PmmFit: _draw_pmm, _LogregFit: _draw_logreg}


def _labels_from(vals: np.ndarray, variables: list[_Var], g: _Group) -> np.ndarray:
    if not g.imputed:
        return g.labels.copy()
    j = next(k for k, v in enumerate(variables) if v.kind == "group")
    return np.where(vals[:, j] == 1.0, g.levels[1], g.levels[0]).astype(object)


def _describe(models: list[_Model], variables: list[_Var], n_fixed: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, mod in enumerate(models):
        preds = ", ".join(["covariates/group"] * (n_fixed > 0) + [variables[p].name for p in mod.predictors])
        key = f"{variables[mod.var].name} #{k + 1}"
        out[key] = f"{variables[mod.var].name} <- {preds or '1'} (fitted in {mod.n_fit}, imputes {mod.rows.size})"
    return out


# ================================================================================================
# analyses and pooling
# ================================================================================================
def _estimand_rows(results: list[Mapping[str, Sequence[float]]]) -> dict[str, np.ndarray]:
    names = list(results[0])
    for k, res in enumerate(results[1:], start=2):
        if list(res) != names:
            raise ValueError(f"analysis returned different estimands in imputation {k}: "
                             f"{sorted(res)} vs {sorted(names)}")
    out = {}
    for name in names:
        rows = []
        for k, res in enumerate(results, start=1):
            tup = tuple(float(x) for x in res[name])
            if len(tup) not in (2, 3):
                raise ValueError(f"estimand {name!r} must be (estimate, variance[, df]), got {len(tup)} values")
            rows.append(tup if len(tup) == 3 else (*tup, np.inf))
        out[name] = np.asarray(rows)
    return out


def pool_analyses(result: ImputationResult, analysis_fn: AnalysisFn, *, conf_level: float = 0.95) -> pd.DataFrame:
    """Run ``analysis_fn`` on every completed dataset of ``result`` and pool with Rubin's rules.

    Parameters
    ----------
    result : ImputationResult
    analysis_fn : callable
        ``analysis_fn(completed_long_frame) -> {estimand: (estimate, variance[, df])}``; the
        same estimands every time. ``df`` is the complete-data df (Barnard-Rubin adjustment; when
        it varies between imputations, e.g. Welch's, the mean is used).
    conf_level : float

    Returns
    -------
    DataFrame
        One row per estimand: ``estimand, estimate, se, df, ci_low, ci_high, p, fmi, m, riv,
        lambda, within, between, total, df_complete``.
    """
    table = _estimand_rows([analysis_fn(d) for d in result.imputations])
    rows = []
    for name, arr in table.items():
        if not np.all(np.isfinite(arr[:, :2])):
            raise ValueError(f"estimand {name!r} is not finite in some imputation")
        dfc = float(arr[:, 2].mean())
        pooled = rubin_pool(arr[:, 0], arr[:, 1], None if not np.isfinite(dfc) else dfc, conf_level=conf_level)
        rows.append({"estimand": name, "estimate": pooled.estimate, "se": pooled.se, "df": pooled.df,
                     "ci_low": pooled.ci_low, "ci_high": pooled.ci_high, "p": pooled.p, "fmi": pooled.fmi,
                     "m": pooled.m, "riv": pooled.riv, "lambda": pooled.lambda_, "within": pooled.within,
                     "between": pooled.between, "total": pooled.total, "df_complete": pooled.df_complete})
    return pd.DataFrame(rows, columns=POOLED_COLUMNS)


def mi_analysis(frame: pd.DataFrame, analysis_fn: AnalysisFn | None = None, m: int = 50,
                seed: int | None = None, *, conf_level: float = 0.95, **impute_options) -> pd.DataFrame:
    """Impute (:func:`impute_bmd`), analyse every completed dataset, pool (:func:`pool_analyses`).

    Parameters
    ----------
    frame : DataFrame
        Long data with the group column (see :func:`impute_bmd`).
    analysis_fn : callable, optional
        ``completed_long_frame -> {estimand: (estimate, variance[, df])}``; default
        :func:`standard_analyses` for the group of ``impute_options`` (``"responder_status"``).
    m, seed
        Number of imputations and seed.
    conf_level : float
    **impute_options
        Passed to :func:`impute_bmd` (``group``, ``undefined``, ``covariates``, ...).

    Returns
    -------
    DataFrame
        The tidy pooled table of :func:`pool_analyses`.
    """
    if analysis_fn is None:
        group = impute_options.get("group", "responder_status")
        analysis_fn = standard_analyses(sites=impute_options.get("sites", SITES), group=group)
    result = impute_bmd(frame, m=m, seed=seed, **impute_options)
    return pool_analyses(result, analysis_fn, conf_level=conf_level)


def _endpoint_values(frame: pd.DataFrame, site: str, month: float, group: str | None,
                     level: str | None) -> np.ndarray:
    sel = frame["month"] == month
    if group is not None and level is not None:
        sel &= frame[group].astype(str) == level
    y = frame.loc[sel, f"pct_change_{site}"].to_numpy(dtype=float)
    return y[~np.isnan(y)]


def _mean_and_var(y: np.ndarray, what: str) -> tuple[float, float, float]:
    if y.size < 2:
        raise ValueError(f"{what}: need at least 2 values, got {y.size}")
    return float(y.mean()), float(y.var(ddof=1) / y.size), float(y.size - 1)



def mean_pct_change(site: str, month: float = 12, group: str | None = "responder_status",
                    levels: Sequence[str] | None = ("responder", "non-responder")) -> AnalysisFn:
    r"""Analysis function: mean % change of BMD at ``site`` from baseline to ``month`` per group.

    For each level :math:`g`: :math:`\hat Q = \bar y_g`, :math:`U = s_g^2/n_g`, df :math:`n_g - 1`
    (the one-sample t of :func:`analysis.frequentist.rtests.t_test_one_sample`). Missing values are
    skipped, so on :attr:`ImputationResult.observed` it is the completers' estimate.

    Parameters
    ----------
    site, month
        The endpoint.
    group, levels
        Group column and levels (``group=None`` or ``levels=None``: all patients together).

    Returns
    -------
    callable
        Estimands ``"<site> m<month> mean % change [<level>]"``.
    """
    lev_list: list[str | None] = list(levels) if (group is not None and levels is not None) else [None]

    def analysis(frame: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
        out = {}
        for lev in lev_list:
            name = f"{site} m{_month_label(month)} mean % change [{lev or 'all'}]"
            out[name] = _mean_and_var(_endpoint_values(frame, site, float(month), group, lev), name)
        return out

    return analysis


def difference_pct_change(site: str, month: float = 12, group: str = "responder_status",
                          levels: tuple[str, str] = ("responder", "non-responder"),
                          variance: Literal["welch", "pooled"] = "welch") -> AnalysisFn:
    r"""Analysis function: difference in mean % change between two groups (first minus second).

    :math:`\hat Q = \bar y_1 - \bar y_2`. ``variance="welch"``: :math:`U = s_1^2/n_1 + s_2^2/n_2`
    with the Welch-Satterthwaite df :math:`U^2 / \sum_k (s_k^2/n_k)^2/(n_k - 1)`;
    ``"pooled"``: :math:`U = s_p^2(1/n_1 + 1/n_2)`, df :math:`n_1 + n_2 - 2`.

    Returns
    -------
    callable
        Estimand ``"<site> m<month> difference % change [<first> - <second>]"``.
    """
    if variance not in ("welch", "pooled"):
        raise ValueError(f"variance must be 'welch' or 'pooled', got {variance!r}")
    if len(levels) != 2:
        raise ValueError(f"levels must name two groups, got {list(levels)}")
    name = f"{site} m{_month_label(month)} difference % change [{levels[0]} - {levels[1]}]"

    def analysis(frame: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
        y1, y2 = (_endpoint_values(frame, site, float(month), group, lev) for lev in levels)
        if min(y1.size, y2.size) < 2:
            raise ValueError(f"{name}: need at least 2 values per group, got {y1.size} and {y2.size}")
        v1, v2 = y1.var(ddof=1), y2.var(ddof=1)
        if variance == "welch":
            u = v1 / y1.size + v2 / y2.size
            df = u**2 / ((v1 / y1.size) ** 2 / (y1.size - 1) + (v2 / y2.size) ** 2 / (y2.size - 1))
        else:
            df = y1.size + y2.size - 2.0
            u = ((y1.size - 1) * v1 + (y2.size - 1) * v2) / df * (1.0 / y1.size + 1.0 / y2.size)
        return {name: (float(y1.mean() - y2.mean()), float(u), float(df))}

    return analysis


def combine_analyses(*fns: AnalysisFn) -> AnalysisFn:
    """One analysis function returning the estimands of all ``fns`` (names must not clash)."""

    def analysis(frame: pd.DataFrame) -> dict[str, tuple[float, ...]]:
        out: dict[str, tuple[float, ...]] = {}
        for fn in fns:
            res = fn(frame)
            clash = set(out) & set(res)
            if clash:
                raise ValueError(f"estimand name(s) {sorted(clash)} returned twice")
            out.update(res)
        return out

    return analysis


def standard_analyses(sites: Sequence[str] = SITES, month: float = 12, group: str | None = "responder_status",
                      levels: tuple[str, str] = ("responder", "non-responder"),
                      variance: Literal["welch", "pooled"] = "welch") -> AnalysisFn:
    """Per site: mean % change to ``month`` in each group and the difference between the groups
    (``group=None``: the overall mean only)."""
    fns: list[AnalysisFn] = []
    for s in sites:
        fns.append(mean_pct_change(s, month, group, levels))
        if group is not None:
            fns.append(difference_pct_change(s, month, group, levels, variance))
    return combine_analyses(*fns)
