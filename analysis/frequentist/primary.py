r"""The frequentist primary analysis in one call, on any study design: the completers tests, the
REML LMM and the MMRM on all observed data (valid under MAR), and multiple imputation; one tidy table
of the key estimands with names the Bayesian side reuses.

Models per site :math:`s`, with the design's groups coded against the reference level
(:mod:`analysis.frequentist.coding`: a responder study's 0/1 ``responder`` indicator, plus
``unknown`` under the ``unknown`` strategy; an arm column's categorical ``group``; nothing for a
single arm) and :math:`T` the design's endpoint:

* LMM: ``bmd ~ month * group + (1 + month | patient)`` (single arm ``bmd ~ month``; adjusted:
  ``+ age + sex + bmi`` or the design's covariates), REML, Satterthwaite df, on the *actual*
  months since baseline (``month_actual``), so unequal schedules use the real times. The change to
  :math:`T` in group :math:`g` is :math:`T(\beta_\text{month} + \beta_{\text{month}:g})` g/cm^2;
  in % of the group's baseline mean,
  :math:`100\,T(\beta_\text{month} + \beta_{\text{month}:g}) / (\beta_0 + \beta_g)` with a
  delta-method SE (df of the numerator contrast); each level minus the reference likewise
  (:mod:`analysis.frequentist.model_estimands`).
* MMRM: ``change ~ baseline + month * group`` on the post-baseline DXA visits (``month`` the
  nominal visit, a factor), REML, Satterthwaite df; LS-means per group at :math:`T` and the level -
  reference contrasts, for the change in g/cm^2 and in %. The covariance structures are
  ``mmrm_covariances`` (default unstructured, the primary, then AR(1) and compound symmetry, as
  sensitivity to the structure); LS-means per group at *every* visit are in
  :attr:`FrequentistResult.lsmeans`. With one post-baseline visit the MMRM is the ANCOVA
  ``change ~ baseline + group`` (one variance: the structures coincide and it is fitted once).

One analysis that cannot be estimated does not stop the others: an LMM on two visits (its random
slope needs a third to be told from noise), an adjusted model with a constant covariate (rank
deficient), a covariance structure that does not converge... each is recorded as "not estimable:
<reason>" in :attr:`FrequentistResult.not_estimable` and the notes. Only when no model at all can be
fitted does the analysis raise :class:`~analysis.study.applicability.NotEstimable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pandas as pd

from analysis.frequentist.coding import GroupCoding, design_defaults, group_coding, model_frame
from analysis.frequentist.completers import CompletersResult, completers_analysis
from analysis.frequentist.lmm import LmmResult, fit_lmm
from analysis.frequentist.mi_estimands import mi_estimands
from analysis.frequentist.mmrm import MmrmResult, fit_mmrm
from analysis.frequentist.model_estimands import (ESTIMAND_COLUMNS, LSMEANS_COLUMNS, completers_estimands,
                                                  lmm_estimands, mmrm_estimands, mmrm_lsmeans)
from analysis.study.applicability import NotEstimable
from analysis.study.clinical import ResponderRule
from analysis.study.groups import UndefinedStrategy, design_of

if TYPE_CHECKING:
    from analysis.study.design import ResolvedDesign

__all__ = ["FrequentistResult", "frequentist_analysis", "model_frame", "lmm_estimands", "mmrm_estimands",
           "mmrm_lsmeans", "mi_estimands", "ESTIMAND_COLUMNS", "LSMEANS_COLUMNS", "MMRM_COVARIANCES"]

MMRM_COVARIANCES = ("us", "cs", "ar1", "csh", "ar1h")
#: What a failed fit raises: recorded as not estimable, the other analyses go on.
_FIT_ERRORS = (ValueError, np.linalg.LinAlgError, RuntimeError)


@dataclass
class FrequentistResult:
    """Everything the frequentist side produces."""

    completers: CompletersResult
    lmm: dict[str, LmmResult]
    lmm_adjusted: dict[str, LmmResult]
    mmrm: dict[str, dict[str, MmrmResult]]
    estimands: pd.DataFrame
    strategy: str
    mi: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    #: MMRMs of the other covariance structures: {site: {structure: {measure: fit}}}
    mmrm_other: dict[str, dict[str, dict[str, MmrmResult]]] = field(default_factory=dict)
    #: LS-means per site, measure, covariance structure, visit and group (:data:`LSMEANS_COLUMNS`)
    lsmeans: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LSMEANS_COLUMNS))
    #: analyses that could not be estimated: ``{"analysis", "site", "reason"}`` each
    not_estimable: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "estimands": self.estimands.replace({np.nan: None}).to_dict(orient="records"),
            "completers": self.completers.to_dict(),
            "lmm": {s: r.to_dict() for s, r in self.lmm.items()},
            "lmm_adjusted": {s: r.to_dict() for s, r in self.lmm_adjusted.items()},
            "mmrm": {s: {k: r.to_dict() for k, r in d.items()} for s, d in self.mmrm.items()},
            "mmrm_other_structures": {s: {c: {k: r.to_dict() for k, r in d.items()} for c, d in by.items()}
                                      for s, by in self.mmrm_other.items()},
            "mmrm_lsmeans": self.lsmeans.replace({np.nan: None}).to_dict(orient="records"),
            "mi": None if self.mi is None else self.mi.replace({np.nan: None}).to_dict(orient="records"),
            "not_estimable": list(self.not_estimable),
            "notes": self.notes,
        }


@dataclass
class _Log:
    """Notes and not-estimable analyses, gathered while fitting."""

    notes: list[str] = field(default_factory=list)
    not_estimable: list[dict[str, str]] = field(default_factory=list)

    def fail(self, analysis: str, site: str, err: BaseException) -> None:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        self.not_estimable.append({"analysis": analysis, "site": site, "reason": reason})
        self.notes.append(f"{analysis} {site}: not estimable: {reason}")

    def attempt(self, analysis: str, site: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, or ``None`` with the failure recorded."""
        try:
            return fn()
        except _FIT_ERRORS as err:
            self.fail(analysis, site, err)
            return None


def _third_visit(d: pd.DataFrame, site: str) -> None:
    """An LMM's random slope needs three or more visits (else NotEstimable)."""
    visits = np.sort(d["month"].dropna().unique())
    if visits.size < 3:
        raise NotEstimable(f"the LMM needs a third visit to separate the random-slope variance from noise "
                           f"({site} is measured at months {' and '.join(f'{v:g}' for v in visits)} only)")


def _fit_unadjusted(d: pd.DataFrame, site: str, coding: GroupCoding, log: _Log) -> LmmResult:
    formula = coding.formula("bmd")
    try:
        return fit_lmm(d, formula, time="month")
    except ValueError as err:
        if "not identifiable" not in str(err):
            raise
        fit = fit_lmm(d, formula, time="month", check_nobs=False)
        log.notes.append(f"LMM {site}: {err}; fitted anyway (lme4's check.nobs.vs.nRE = 'ignore')")
        return fit


def _fit_adjusted(d: pd.DataFrame, coding: GroupCoding, covs: list[str], base: LmmResult | None) -> LmmResult:
    const = [c for c in covs if d[c].nunique(dropna=True) < 2]
    if const:
        raise NotEstimable(f"design is rank deficient ({', '.join(const)} {'is' if len(const) == 1 else 'are'} "
                           "constant)")
    check = base.n_obs > 2 * base.n_subjects if base is not None else True
    try:
        return fit_lmm(d, coding.formula("bmd", after=" + ".join(covs)), time="month", check_nobs=check)
    except ValueError as err:
        if "not identifiable" not in str(err) or not check:
            raise
        return fit_lmm(d, coding.formula("bmd", after=" + ".join(covs)), time="month", check_nobs=False)


def _site_lmms(d: pd.DataFrame, site: str, coding: GroupCoding, covariates: tuple[str, ...], endpoint: float,
               first_site: bool, log: _Log) -> tuple[LmmResult | None, LmmResult | None, list[pd.DataFrame]]:
    """The unadjusted and covariate-adjusted LMMs of one site, on the actual months since baseline."""
    lf = d.assign(month=d["month_actual"]) if "month_actual" in d.columns else d
    parts = []
    def checked(fit: Callable[[], LmmResult]) -> Callable[[], LmmResult]:
        def run() -> LmmResult:
            _third_visit(d, site)  # on the nominal visits
            return fit()
        return run

    lmm = log.attempt("LMM (REML)", site, checked(lambda: _fit_unadjusted(lf, site, coding, log)))
    if lmm is not None:
        parts.append(lmm_estimands(lmm, site, endpoint, coding=coding))
    covs = [c for c in covariates if c in d.columns and d[c].notna().all()]
    incomplete = [c for c in covariates if c in d.columns and not d[c].notna().all()]
    if incomplete and first_site:
        log.notes.append(f"adjusted LMM: covariate(s) {', '.join(incomplete)} left out (missing for some patients)")
    adj = None
    if covs:
        method = "LMM (REML) + " + ", ".join(covs)
        adj = log.attempt(method, site, checked(lambda: _fit_adjusted(lf, coding, covs, lmm)))
        if adj is not None:
            parts.append(lmm_estimands(adj, site, endpoint, method=method, coding=coding))
    return lmm, adj, parts


def _mmrm_pair(post: pd.DataFrame, site: str, coding: GroupCoding, cov: str, one_visit: bool, first: bool,
               log: _Log) -> dict[str, MmrmResult]:
    """The MMRMs of the change in g/cm^2 and in % under one covariance structure."""
    fits: dict[str, MmrmResult] = {}
    for m, col in (("abs", "change"), ("pct", "pct")):
        formula = coding.formula(col, None if one_visit else "month", before="baseline")
        try:
            fits[m] = fit_mmrm(post, formula, visit="month", covariance=cov)
        except ValueError as err:
            if "unknown" not in coding.variables or "rank deficient" not in str(err) or one_visit:
                raise
            # no patient of unknown status reaches every visit: its visit pattern is not estimable
            fits[m] = fit_mmrm(post, f"{col} ~ baseline + month * responder + unknown", visit="month",
                               covariance=cov)
            if m == "abs" and first:
                log.notes.append(f"MMRM {site}: 'unknown' group entered as a main effect only (no "
                                 "unknown-status patient at every visit)")
    return fits


def _site_mmrms(d: pd.DataFrame, site: str, coding: GroupCoding, covariances: tuple[str, ...], endpoint: float,
                log: _Log) -> tuple[dict[str, MmrmResult] | None, dict[str, dict[str, MmrmResult]], list, list]:
    """The MMRMs of one site under every covariance structure (nominal visits)."""
    post = d[d["month"] > 0].copy()
    one_visit = post["month"].nunique() == 1
    if one_visit:
        log.notes.append(f"MMRM {site}: one post-baseline visit, so the MMRM is the ANCOVA change ~ baseline + "
                         "group with one variance; the covariance structures coincide and it is fitted once (us)")
        covariances = ("us",)
    primary, other, parts, lsm = None, {}, [], []
    for cov in covariances:
        method = f"MMRM ({cov}, REML)"
        fits = log.attempt(method, site, lambda cov=cov: _mmrm_pair(post, site, coding, cov, one_visit,
                                                                     cov == covariances[0], log))
        if fits is None:
            continue
        if cov == covariances[0]:
            primary = fits
        else:
            other[cov] = fits
        parts.append(mmrm_estimands(fits, site, endpoint, method=method, coding=coding))
        lsm.append(mmrm_lsmeans(fits, site, cov, coding=coding))
        for k, f in fits.items():
            if not f.converged:
                log.notes.append(f"MMRM ({cov}) {site} {k}: REML optimisation did not converge")
    return primary, other, parts, lsm


def _complete_covariates(derived: pd.DataFrame, covariates: tuple[str, ...]) -> tuple[str, ...]:
    """The covariates present and known for every patient (what the imputation models can use)."""
    out = []
    for c in covariates:
        if c in derived.columns and derived.groupby("patient_id", sort=False)[c].first().notna().all():
            out.append(c)
    return tuple(out)


def frequentist_analysis(derived: pd.DataFrame, sites: Iterable[str] | None = None,
                         strategy: UndefinedStrategy = "exclude", rule: ResponderRule | None = None,
                         endpoint_month: float | None = None, covariates: Iterable[str] | None = None,
                         mi_imputations: int = 0, seed: int = 0,
                         mmrm_covariances: Iterable[str] = ("us", "ar1", "cs"),
                         design: "ResolvedDesign | None" = None) -> FrequentistResult:
    """Run the completers tests, LMMs and MMRMs (and, if ``mi_imputations > 0``, multiple
    imputation) for every site of the study's design, and collect the key estimands.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive`.
    sites, endpoint_month, covariates
        Default: the design's (the RAJAK default design's without one). Covariates of the adjusted
        LMM are those present and complete in the data (one left out for missing values is named in
        the notes); a constant one makes the adjusted LMM not estimable.
    strategy
        Handling of undefined responder status in a responder study
        (:func:`analysis.study.groups.assign_groups`); recorded.
    mmrm_covariances
        Residual covariance structures of the MMRM (:data:`MMRM_COVARIANCES`); the first is the
        primary (``result.mmrm``), the others are fitted alongside (``result.mmrm_other``) with
        their own estimand rows, method ``"MMRM (<structure>, REML)"``.
    design : ResolvedDesign, optional
        The study's design (default: the one :func:`derive` attached; ``None``: the RAJAK
        responder study).

    Raises
    ------
    NotEstimable
        No LMM and no MMRM could be fitted at any site (the first reason).
    """
    d_design = design_of(derived, design)
    sites, endpoint_month, covariates = design_defaults(derived, d_design, sites, endpoint_month, covariates)
    mmrm_covariances = tuple(dict.fromkeys(mmrm_covariances))
    bad = [c for c in mmrm_covariances if c not in MMRM_COVARIANCES]
    if not mmrm_covariances or bad:
        raise ValueError(f"mmrm_covariances must name one or more of {MMRM_COVARIANCES}, got {bad or '()'}")
    coding = group_coding(derived, d_design, strategy)
    log = _Log()
    completers = completers_analysis(derived, endpoint_month, sites=sites, strategy=strategy, rule=rule,
                                     design=d_design)
    lmm, lmm_adj, mmrm, mmrm_other = {}, {}, {}, {}
    parts = [completers_estimands(completers, single_arm=coding.kind == "none")]
    lsm_parts: list[pd.DataFrame] = []
    for site in sites:
        d = model_frame(derived, site, strategy, rule, design=d_design)
        fit, adj, p = _site_lmms(d, site, coding, covariates, endpoint_month, site == sites[0], log)
        if fit is not None:
            lmm[site] = fit
        if adj is not None:
            lmm_adj[site] = adj
        parts.extend(p)
        primary, other, p, lsm = _site_mmrms(d, site, coding, mmrm_covariances, endpoint_month, log)
        if primary is not None:
            mmrm[site] = primary
        mmrm_other[site] = other
        parts.extend(p)
        lsm_parts.extend(lsm)
        for name, f in ((f"LMM {site}", fit), (f"LMM + covariates {site}", adj)):
            if f is not None and not f.converged:
                log.notes.append(f"{name}: REML optimisation did not converge")
    if not lmm and not lmm_adj and not mmrm and not any(mmrm_other.values()):
        first = log.not_estimable[0] if log.not_estimable else {"analysis": "LMM", "reason": "no data"}
        raise NotEstimable(f"no model could be fitted: {first['analysis']}: {first['reason']}")
    mi_table = None
    if mi_imputations > 0:
        try:
            mi_table = mi_estimands(derived, sites=sites, strategy=strategy, rule=rule, m=mi_imputations,
                                    seed=seed, endpoint_month=endpoint_month, design=d_design,
                                    covariates=_complete_covariates(derived, covariates))
            parts.append(mi_table.reindex(columns=ESTIMAND_COLUMNS))
            if mi_table.attrs.get("note"):
                log.notes.append(mi_table.attrs["note"])
        except ValueError as err:  # too few patients for the imputation models: said, not hidden
            log.notes.append(f"multiple imputation not possible on these data: {err}")
    estimands = pd.concat(parts, ignore_index=True)
    lsmeans = pd.concat(lsm_parts, ignore_index=True) if lsm_parts else pd.DataFrame(columns=LSMEANS_COLUMNS)
    return FrequentistResult(completers=completers, lmm=lmm, lmm_adjusted=lmm_adj, mmrm=mmrm,
                             estimands=estimands, strategy=completers.strategy, mi=mi_table, notes=log.notes,
                             mmrm_other=mmrm_other, lsmeans=lsmeans, not_estimable=log.not_estimable)
