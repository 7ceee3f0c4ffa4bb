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
  factor), unstructured covariance, REML, Satterthwaite df; LS-means per group at month 12 and the
  responder - non-responder contrast, for the change in g/cm^2 and in %.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from analysis.clinical import ResponderRule
from analysis.estimands import difference_name, estimand_name
from analysis.frequentist.completers import CompletersResult, completers_analysis
from analysis.frequentist.lmm import LmmResult, fit_lmm
from analysis.frequentist.mmrm import MmrmResult, fit_mmrm
from analysis.groups import UndefinedStrategy, assign_groups

__all__ = ["FrequentistResult", "frequentist_analysis", "model_frame", "lmm_estimands", "mmrm_estimands",
           "mi_estimands", "ESTIMAND_COLUMNS"]

ESTIMAND_COLUMNS = ["estimand", "site", "method", "estimate", "se", "df", "ci_low", "ci_high", "p", "n"]


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "estimands": self.estimands.replace({np.nan: None}).to_dict(orient="records"),
            "completers": self.completers.to_dict(),
            "lmm": {s: r.to_dict() for s, r in self.lmm.items()},
            "lmm_adjusted": {s: r.to_dict() for s, r in self.lmm_adjusted.items()},
            "mmrm": {s: {k: r.to_dict() for k, r in d.items()} for s, d in self.mmrm.items()},
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
                         mi_imputations: int = 0, seed: int = 0) -> FrequentistResult:
    """Run the completers tests, LMMs and MMRMs (and, if ``mi_imputations > 0``, multiple
    imputation) for every site, and collect the key estimands.

    Parameters
    ----------
    strategy
        Handling of undefined responder status (:func:`analysis.groups.assign_groups`); recorded.
    covariates
        Baseline covariates of the adjusted LMM (those present in the data are used).
    """
    sites = tuple(sites)
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
        if covs:
            lmm_adj[site] = fit_lmm(d, f"bmd ~ month * (responder{unknown}) + " + " + ".join(covs), time="month",
                                    check_nobs=lmm[site].n_obs > 2 * lmm[site].n_subjects)
            parts.append(lmm_estimands(lmm_adj[site], site, endpoint_month,
                                       method="LMM (REML) + " + ", ".join(covs)))
        post = d[d["month"] > 0].copy()
        mmrm[site] = {}
        for m, col in (("abs", "change"), ("pct", "pct")):
            try:
                mmrm[site][m] = fit_mmrm(post, f"{col} ~ baseline + month * (responder{unknown})", visit="month")
            except ValueError as err:
                if not unknown or "rank deficient" not in str(err):
                    raise
                # no patient of unknown status reaches every visit: its visit pattern is not estimable
                mmrm[site][m] = fit_mmrm(post, f"{col} ~ baseline + month * responder + unknown", visit="month")
                if m == "abs":
                    notes.append(f"MMRM {site}: 'unknown' group entered as a main effect only (no unknown-status "
                                 "patient at every visit)")
        parts.append(mmrm_estimands(mmrm[site], site, endpoint_month))
        for name, fit in [(f"LMM {site}", lmm[site]), *[(f"MMRM {site} {k}", f) for k, f in mmrm[site].items()]]:
            if not fit.converged:
                notes.append(f"{name}: REML optimisation did not converge")
    mi_table = None
    if mi_imputations > 0:
        try:
            mi_table = mi_estimands(derived, sites=sites, strategy=strategy, rule=rule, m=mi_imputations,
                                    seed=seed, endpoint_month=endpoint_month)
            parts.append(mi_table.reindex(columns=ESTIMAND_COLUMNS))
        except ValueError as err:  # too few patients for the imputation models: said, not hidden
            notes.append(f"multiple imputation not possible on these data: {err}")
    estimands = pd.concat(parts, ignore_index=True)
    return FrequentistResult(completers=completers, lmm=lmm, lmm_adjusted=lmm_adj, mmrm=mmrm,
                             estimands=estimands, strategy=completers.strategy, mi=mi_table, notes=notes)


def mi_estimands(derived: pd.DataFrame, sites: Iterable[str] = ("spine", "femoral_neck"),
                 strategy: UndefinedStrategy = "last_observed", rule: ResponderRule | None = None, m: int = 50,
                 seed: int = 0, endpoint_month: float = 12) -> pd.DataFrame:
    """Multiple imputation of the % change under MAR, pooled by Rubin's rules, under the shared
    estimand names (:mod:`analysis.frequentist.imputation`).

    Responder status is a per-patient group; for patients whose status is undefined it is imputed
    too: their month-12 DAS28-CRP is imputed and classified by the same rule (``strategy`` other than
    ``"exclude"``), or they are excluded (``"exclude"``). The method label records which.
    """
    import re

    from analysis.frequentist.imputation import mi_analysis, standard_analyses

    sites = tuple(sites)
    undefined = "exclude" if strategy == "exclude" else "rule"
    pooled = mi_analysis(derived, standard_analyses(sites=sites, month=endpoint_month), m=m, seed=seed,
                         sites=sites, undefined=undefined, rule=rule)
    method = f"MI (m={m}, Rubin), status {'excluded' if undefined == 'exclude' else 'imputed by rule'}"
    rows = []
    n = int(derived["patient_id"].nunique())
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
    return pd.DataFrame(rows, columns=ESTIMAND_COLUMNS)
