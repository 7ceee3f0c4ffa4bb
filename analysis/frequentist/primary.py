r"""The frequentist primary analysis in one call: the paper's completers tests, the reference REML
LMM and the MMRM on all observed data (valid under MAR), and multiple imputation; one tidy table of
the key estimands with names the Bayesian side reuses.

Models per site :math:`s` (``group`` coded as a 0/1 ``responder`` indicator, plus an ``unknown``
indicator under the ``unknown`` strategy):

* LMM: ``bmd ~ month * responder + (1 + month | patient)`` (and ``+ age + sex + bmi``), REML,
  Satterthwaite df. The change to month 12 in group :math:`g` is
  :math:`12(\beta_\text{month} + \beta_{\text{month}:g})` g/cm^2; in % of the group's baseline
  mean, :math:`100 \cdot 12(\beta_\text{month} + \beta_{\text{month}:g}) / (\beta_0 + \beta_g)`
  with a delta-method SE (df of the numerator contrast).
* MMRM: ``change ~ baseline + month * responder`` on the post-baseline DXA visits (``month`` a
  factor), REML, Satterthwaite df; LS-means per group at month 12 and the responder -
  non-responder contrast, for the change in g/cm^2 and in %. The covariance structures are
  ``mmrm_covariances`` (default unstructured, the primary, then AR(1) and compound symmetry, as
  sensitivity to the structure); LS-means per group at *every* visit are in
  :attr:`FrequentistResult.lsmeans`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd
from scipy import stats

from analysis.study.clinical import ResponderRule
from analysis.study.estimands import difference_name, estimand_name
from analysis.frequentist.completers import CompletersResult, completers_analysis
from analysis.frequentist.lmm import LmmResult, fit_lmm
from analysis.frequentist.mmrm import MmrmResult, fit_mmrm
from analysis.study.groups import UndefinedStrategy, assign_groups

__all__ = ["FrequentistResult", "frequentist_analysis", "model_frame", "lmm_estimands", "mmrm_estimands",
           "mmrm_lsmeans", "mi_estimands", "ESTIMAND_COLUMNS", "LSMEANS_COLUMNS", "MMRM_COVARIANCES"]

ESTIMAND_COLUMNS = ["estimand", "site", "method", "estimate", "se", "df", "ci_low", "ci_high", "p", "n"]
LSMEANS_COLUMNS = ["site", "measure", "covariance", "month", "group", "estimate", "se", "df", "ci_low", "ci_high",
                   "p"]
MMRM_COVARIANCES = ("us", "cs", "ar1", "csh", "ar1h")


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
            "notes": self.notes,
        }


def model_frame(derived: pd.DataFrame, site: str, strategy: UndefinedStrategy = "exclude",
                rule: ResponderRule | None = None) -> pd.DataFrame:
    """Rows with a BMD at ``site``, a 0/1 ``responder`` (and ``unknown``) indicator, ``bmd``,
    ``baseline``, ``change`` and ``pct`` columns; patients excluded by the strategy are dropped."""
    frame = assign_groups(derived, strategy, rule).frame
    col = f"bmd_{site}"
    d = frame[frame[col].notna() & frame["analysis_group"].notna()].copy()
    d["bmd"] = d[col]
    d["responder"] = (d["analysis_group"] == "responder").astype(float)
    if strategy == "unknown":
        d["unknown"] = (d["analysis_group"] == "unknown").astype(float)
    base = d.loc[d["month"] == 0].groupby("patient_id")["bmd"].first()
    d["baseline"] = d["patient_id"].map(base)
    d["change"] = d["bmd"] - d["baseline"]
    d["pct"] = 100.0 * d["change"] / d["baseline"]
    return d.reset_index(drop=True)


def _row(estimand: str, site: str, method: str, est: float, se: float, df: float, n: int,
         level: float = 0.95) -> dict[str, Any]:
    q = stats.t.ppf(0.5 + level / 2, df) if np.isfinite(df) else stats.norm.ppf(0.5 + level / 2)
    t = est / se if se > 0 else np.nan
    p = 2 * stats.t.sf(abs(t), df) if np.isfinite(df) else 2 * stats.norm.sf(abs(t))
    return {"estimand": estimand, "site": site, "method": method, "estimate": est, "se": se, "df": df,
            "ci_low": est - q * se, "ci_high": est + q * se, "p": p, "n": n}


def lmm_estimands(fit: LmmResult, site: str, month: float = 12, method: str = "LMM (REML)") -> pd.DataFrame:
    """Month-``month`` change per group and the difference, in g/cm^2 and % (delta method).

    Group means come from the model's reference grid at ``month`` 0 and ``month`` with covariates
    at their means (factors weighted by their frequencies), so the % is relative to the group's
    baseline mean in the analysed population.
    """
    b = fit.coef.to_numpy()
    v = fit.vcov.to_numpy()
    grid, lmat = fit.reference_grid(["responder"], by=["month"], at={"responder": [0.0, 1.0], "month": [0.0, month]},
                                    weights="proportional")
    rows = []
    deltas, pcts, grads = {}, {}, {}
    for g, flag in (("non-responder", 0.0), ("responder", 1.0)):
        sel = grid["responder"].astype(float) == flag
        l0 = lmat[(sel & (grid["month"].astype(float) == 0.0)).to_numpy()][0]
        l1 = lmat[(sel & (grid["month"].astype(float) == float(month))).to_numpy()][0]
        deltas[g] = l1 - l0
        c = fit.contrast(deltas[g][None, :], names=[g]).iloc[0]
        rows.append(_row(estimand_name(site, g, "abs", month), site, method, c["estimate"], c["se"], c["df"],
                         fit.n_subjects))
        num, den = float(deltas[g] @ b), float(l0 @ b)
        grad = 100.0 * (deltas[g] / den - l0 * num / den**2)
        pcts[g], grads[g] = 100 * num / den, grad
        rows.append(_row(estimand_name(site, g, "pct", month), site, method, pcts[g],
                         float(np.sqrt(grad @ v @ grad)), c["df"], fit.n_subjects))
    c = fit.contrast((deltas["responder"] - deltas["non-responder"])[None, :], names=["diff"]).iloc[0]
    rows.append(_row(difference_name(site, "abs", month), site, method, c["estimate"], c["se"], c["df"],
                     fit.n_subjects))
    g_diff = grads["responder"] - grads["non-responder"]
    rows.append(_row(difference_name(site, "pct", month), site, method, pcts["responder"] - pcts["non-responder"],
                     float(np.sqrt(g_diff @ v @ g_diff)), c["df"], fit.n_subjects))
    return pd.DataFrame(rows, columns=ESTIMAND_COLUMNS)


def mmrm_estimands(fits: dict[str, MmrmResult], site: str, month: float = 12,
                   method: str = "MMRM (us, REML)") -> pd.DataFrame:
    """LS-means of the change at ``month`` per group and their difference, in g/cm^2 and %."""
    rows = []
    for measure, fit in fits.items():
        grid = fit.lsmeans(["responder"], by=["month"], at={"responder": [0.0, 1.0]})
        at = grid[grid["month"].astype(float) == float(month)]
        for g, flag in (("non-responder", 0.0), ("responder", 1.0)):
            r = at[at["responder"].astype(float) == flag].iloc[0]
            rows.append(_row(estimand_name(site, g, measure, month), site, method, r["estimate"], r["se"],
                             r["df"], fit.n_subjects))
        r0 = at[at["responder"].astype(float) == 0.0].index[0]
        r1 = at[at["responder"].astype(float) == 1.0].index[0]
        _, lmat = fit.reference_grid(["responder"], by=["month"], at={"responder": [0.0, 1.0]})
        c = fit.contrast(lmat[[r1]] - lmat[[r0]], names=["diff"]).iloc[0]
        rows.append(_row(difference_name(site, measure, month), site, method, c["estimate"], c["se"], c["df"],
                         fit.n_subjects))
    return pd.DataFrame(rows, columns=ESTIMAND_COLUMNS)


def mmrm_lsmeans(fits: dict[str, MmrmResult], site: str, covariance: str = "us") -> pd.DataFrame:
    """LS-means of the change per group at every visit (:data:`LSMEANS_COLUMNS`)."""
    rows = []
    for measure, fit in fits.items():
        grid = fit.lsmeans(["responder"], by=["month"], at={"responder": [0.0, 1.0]})
        for _, r in grid.iterrows():
            rows.append({"site": site, "measure": measure, "covariance": covariance, "month": float(r["month"]),
                         "group": "responder" if float(r["responder"]) == 1.0 else "non-responder",
                         **{k: r[k] for k in ("estimate", "se", "df", "ci_low", "ci_high", "p")}})
    return pd.DataFrame(rows, columns=LSMEANS_COLUMNS)


def _completers_estimands(res: CompletersResult) -> pd.DataFrame:
    t = res.table
    keep = t[(t["analysis"].isin(["within", "between"])) & t["measure"].isin(["pct", "abs"])
             & t["group"].ne("all") & t["test"].str.contains("t-test")]
    out = pd.DataFrame({"estimand": keep["estimand"], "site": keep["site"], "method": "completers, t-test",
                        "estimate": keep["estimate"], "se": keep["se"], "df": keep["df"],
                        "ci_low": keep["ci_low"], "ci_high": keep["ci_high"], "p": keep["p"], "n": keep["n"]})
    return out.reset_index(drop=True)


def frequentist_analysis(derived: pd.DataFrame, sites: Iterable[str] = ("spine", "femoral_neck"),
                         strategy: UndefinedStrategy = "exclude", rule: ResponderRule | None = None,
                         endpoint_month: float = 12, covariates: tuple[str, ...] = ("age", "sex", "bmi"),
                         mi_imputations: int = 0, seed: int = 0,
                         mmrm_covariances: Iterable[str] = ("us", "ar1", "cs")) -> FrequentistResult:
    """Run the completers tests, LMMs and MMRMs (and, if ``mi_imputations > 0``, multiple
    imputation) for every site, and collect the key estimands.

    Parameters
    ----------
    strategy
        Handling of undefined responder status (:func:`analysis.study.groups.assign_groups`); recorded.
    covariates
        Baseline covariates of the adjusted LMM (those present and complete in the data are used;
        one left out for missing values is named in the notes).
    mmrm_covariances
        Residual covariance structures of the MMRM (:data:`MMRM_COVARIANCES`); the first is the
        primary (``result.mmrm``), the others are fitted alongside (``result.mmrm_other``) with
        their own estimand rows, method ``"MMRM (<structure>, REML)"``.
    """
    sites = tuple(sites)
    mmrm_covariances = tuple(dict.fromkeys(mmrm_covariances))
    bad = [c for c in mmrm_covariances if c not in MMRM_COVARIANCES]
    if not mmrm_covariances or bad:
        raise ValueError(f"mmrm_covariances must name one or more of {MMRM_COVARIANCES}, got {bad or '()'}")
    mmrm_other: dict[str, dict[str, dict[str, MmrmResult]]] = {}
    lsm_parts: list[pd.DataFrame] = []
    completers = completers_analysis(derived, endpoint_month, sites=sites, strategy=strategy, rule=rule)
    lmm, lmm_adj, mmrm = {}, {}, {}
    parts = [_completers_estimands(completers)]
    notes: list[str] = []
    unknown = " + unknown" if strategy == "unknown" else ""
    for site in sites:
        d = model_frame(derived, site, strategy, rule)
        try:
            lmm[site] = fit_lmm(d, f"bmd ~ month * (responder{unknown})", time="month")
        except ValueError as err:
            if "not identifiable" not in str(err):
                raise
            lmm[site] = fit_lmm(d, f"bmd ~ month * (responder{unknown})", time="month", check_nobs=False)
            notes.append(f"LMM {site}: {err}; fitted anyway (lme4's check.nobs.vs.nRE = 'ignore')")
        parts.append(lmm_estimands(lmm[site], site, endpoint_month))
        covs = [c for c in covariates if c in d.columns and d[c].notna().all()]
        incomplete = [c for c in covariates if c in d.columns and not d[c].notna().all()]
        if incomplete and site == sites[0]:
            notes.append(f"adjusted LMM: covariate(s) {', '.join(incomplete)} left out (missing for some patients)")
        if covs:
            lmm_adj[site] = fit_lmm(d, f"bmd ~ month * (responder{unknown}) + " + " + ".join(covs), time="month",
                                    check_nobs=lmm[site].n_obs > 2 * lmm[site].n_subjects)
            parts.append(lmm_estimands(lmm_adj[site], site, endpoint_month,
                                       method="LMM (REML) + " + ", ".join(covs)))
        post = d[d["month"] > 0].copy()
        mmrm_other[site] = {}
        for cov in mmrm_covariances:
            fits: dict[str, MmrmResult] = {}
            for m, col in (("abs", "change"), ("pct", "pct")):
                try:
                    fits[m] = fit_mmrm(post, f"{col} ~ baseline + month * (responder{unknown})", visit="month",
                                       covariance=cov)
                except ValueError as err:
                    if not unknown or "rank deficient" not in str(err):
                        raise
                    # no patient of unknown status reaches every visit: its visit pattern is not estimable
                    fits[m] = fit_mmrm(post, f"{col} ~ baseline + month * responder + unknown", visit="month",
                                       covariance=cov)
                    if m == "abs" and cov == mmrm_covariances[0]:
                        notes.append(f"MMRM {site}: 'unknown' group entered as a main effect only (no "
                                     "unknown-status patient at every visit)")
            if cov == mmrm_covariances[0]:
                mmrm[site] = fits
            else:
                mmrm_other[site][cov] = fits
            parts.append(mmrm_estimands(fits, site, endpoint_month, method=f"MMRM ({cov}, REML)"))
            lsm_parts.append(mmrm_lsmeans(fits, site, cov))
            for k, f in fits.items():
                if not f.converged:
                    notes.append(f"MMRM ({cov}) {site} {k}: REML optimisation did not converge")
        checks = [(f"LMM {site}", lmm[site])] + ([(f"LMM + covariates {site}", lmm_adj[site])] if site in lmm_adj
                                                  else [])
        for name, fit in checks:
            if not fit.converged:
                notes.append(f"{name}: REML optimisation did not converge")
    mi_table = None
    if mi_imputations > 0:
        try:
            mi_table = mi_estimands(derived, sites=sites, strategy=strategy, rule=rule, m=mi_imputations,
                                    seed=seed, endpoint_month=endpoint_month)
            parts.append(mi_table.reindex(columns=ESTIMAND_COLUMNS))
            if mi_table.attrs.get("note"):
                notes.append(mi_table.attrs["note"])
        except ValueError as err:  # too few patients for the imputation models: said, not hidden
            notes.append(f"multiple imputation not possible on these data: {err}")
    estimands = pd.concat(parts, ignore_index=True)
    lsmeans = pd.concat(lsm_parts, ignore_index=True) if lsm_parts else pd.DataFrame(columns=LSMEANS_COLUMNS)
    return FrequentistResult(completers=completers, lmm=lmm, lmm_adjusted=lmm_adj, mmrm=mmrm,
                             estimands=estimands, strategy=completers.strategy, mi=mi_table, notes=notes,
                             mmrm_other=mmrm_other, lsmeans=lsmeans)


def mi_estimands(derived: pd.DataFrame, sites: Iterable[str] = ("spine", "femoral_neck"),
                 strategy: UndefinedStrategy = "last_observed", rule: ResponderRule | None = None, m: int = 50,
                 seed: int = 0, endpoint_month: float = 12,
                 stratify: bool | Literal["auto"] = "auto") -> pd.DataFrame:
    """Multiple imputation of the % change under MAR, pooled by Rubin's rules, under the shared
    estimand names (:mod:`analysis.frequentist.imputation`).

    Responder status is a per-patient group; for patients whose status is undefined it is imputed
    too: their month-12 DAS28-CRP is imputed and classified by the same rule (``strategy`` other than
    ``"exclude"``), or they are excluded (``"exclude"``). The method label records which.

    ``stratify``: fit the BMD imputation models separately per (imputed) responder group, so the
    imputation is congenial with the analysis' group x time interaction (``True``); pool the groups
    (``False``); or ``"auto"`` (default): stratify where every group has enough patients for its
    regressions, else pool them. Stratified imputation is labelled ``"MI (m=.., Rubin,
    stratified)"``; after an ``"auto"`` fallback the table's ``attrs["note"]`` says why. On data
    simulated with DAS28-driven MAR dropout (2000 patients, 62-87 % undefined status) the pooled
    models attenuate both groups' changes towards each other and the responders' 95 % CI can miss the
    complete-data truth, while the stratified ones cover both groups
    (``tests/analysis/sensitivity/test_completers_vs_all.py``).
    """
    import re

    from analysis.frequentist.imputation import mi_analysis, standard_analyses

    sites = tuple(sites)
    undefined = "exclude" if strategy == "exclude" else "rule"
    analyses = standard_analyses(sites=sites, month=endpoint_month)
    note = None
    strat = stratify is True or stratify == "auto"
    try:
        pooled = mi_analysis(derived, analyses, m=m, seed=seed, sites=sites, undefined=undefined, rule=rule,
                             stratify=strat)
    except ValueError as err:
        if stratify != "auto" or "try stratify=False" not in str(err):
            raise
        strat, note = False, f"MI not stratified by responder group: {err}"
        pooled = mi_analysis(derived, analyses, m=m, seed=seed, sites=sites, undefined=undefined, rule=rule,
                             stratify=False)
    method = (f"MI (m={m}, Rubin{', stratified' if strat else ''}), "
              f"status {'excluded' if undefined == 'exclude' else 'imputed by rule'}")
    rows = []
    status = derived.groupby("patient_id", sort=False)["responder"].first()
    n = int(status.size if undefined != "exclude" else status.notna().sum())  # the patients imputed and analysed
    if undefined == "exclude" and n < status.size:
        excl = f"MI excludes the {status.size - n} patient(s) of undefined responder status"
        dropouts = derived.drop_duplicates("patient_id").set_index("patient_id")
        if "completer" in dropouts and not (~dropouts.loc[status.notna(), "completer"]).any():
            excl += (" - every non-completer among them, so it imputes nothing at the endpoint and repeats "
                     "the completers analysis; use strategy 'last_observed' or 'unknown' to include dropouts")
        note = f"{note}; {excl}" if note else excl
    for _, r in pooled.iterrows():
        mean = re.match(r"(\w+) m[\d.]+ mean % change \[(.+)\]$", r["estimand"])
        diff = re.match(r"(\w+) m[\d.]+ difference % change", r["estimand"])
        if mean:
            name, site = estimand_name(mean.group(1), mean.group(2), "pct", endpoint_month), mean.group(1)
        elif diff:
            name, site = difference_name(diff.group(1), "pct", endpoint_month), diff.group(1)
        else:
            continue
        rows.append({"estimand": name, "site": site, "method": method, "estimate": r["estimate"], "se": r["se"],
                     "df": r["df"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p": r["p"], "n": n})
    out = pd.DataFrame(rows, columns=ESTIMAND_COLUMNS)
    if note:
        out.attrs["note"] = note
    return out
