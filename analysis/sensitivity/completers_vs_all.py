"""Sensitivity 1: the same estimands on the completers only and on all available data (MAR).

Completers analyses are valid when dropout is unrelated to the outcome (MCAR); likelihood-based
mixed models on all observed data (and multiple imputation) are valid under MAR. Where the two
disagree, dropout carries information about BMD.

The estimands are the design's (:mod:`analysis.sensitivity.design`): every group's % change to the
endpoint and every group's difference from the reference (a single arm: its one change). A
*completer* has a scan at the endpoint (:func:`analysis.study.clinical.patient_status`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.frequentist.primary import frequentist_analysis
from analysis.sensitivity.design import (
    NotEstimable,
    SensitivityDesign,
    sensitivity_design,
)
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.study.clinical import ResponderRule
from analysis.study.estimands import GROUP_LABELS
from analysis.study.groups import UndefinedStrategy, assign_groups

__all__ = ["check_groups", "completers_vs_all"]


def check_groups(derived: pd.DataFrame, sd: SensitivityDesign, strategy: str = "exclude",
                 rule: ResponderRule | None = None) -> dict[str, int]:
    """Patients per group (:func:`analysis.study.groups.assign_groups`); :class:`NotEstimable` when a
    group of the design has none (e.g. every patient a responder), in one line."""
    groups = assign_groups(derived, strategy if sd.kind == "derived" else "exclude", rule,
                           design=sd.design).frame.groupby("patient_id", sort=False)["analysis_group"].first()
    counts = {lv: int((groups == lv).sum()) for lv in sd.levels}
    empty = [lv for lv, n in counts.items() if n == 0]
    if empty:
        have = [f"{GROUP_LABELS.get(lv, lv)} ({n})" for lv, n in counts.items() if n]
        raise NotEstimable(f"no {' or '.join(GROUP_LABELS.get(lv, lv) for lv in empty)} in the data (patients: "
                           f"{', '.join(have) or 'none with a group'}): the groups cannot be compared")
    return counts


def completers_vs_all(derived: pd.DataFrame, sites=None, strategy: UndefinedStrategy = "last_observed",
                      rule: ResponderRule | None = None, mi_imputations: int = 50, seed: int = 0,
                      bayes: Any = None, endpoint_month: float | None = None, design: Any = None) -> SensitivityResult:
    """Compare completers-only and all-data estimates of the endpoint % change per group and every
    group's difference from the reference.

    Parameters
    ----------
    derived : DataFrame
        From :func:`analysis.study.clinical.derive`.
    sites : sequence of str, optional
        Default: the design's.
    strategy, rule
        Undefined responder status (a responder study only).
    mi_imputations, seed
        Multiple imputation of the all-data analysis (:func:`analysis.frequentist.primary.mi_estimands`).
    bayes
        Optional ``{"draws": .., "tune": .., "chains": ..}``: also fit the Bayesian LMM on both data
        sets.
    endpoint_month : float, optional
        Default: the design's endpoint.
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).
    """
    sd = sensitivity_design(derived, design, sites, endpoint_month)
    sites, month = sd.sites, sd.endpoint
    check_groups(derived, sd, strategy, rule)
    by_design = {"design": sd.design}
    all_res = frequentist_analysis(derived, sites, strategy, rule, endpoint_month=month,
                                   mi_imputations=mi_imputations, seed=seed, **by_design)
    comp_ids = derived.loc[derived["completer"], "patient_id"].unique()
    if len(comp_ids) == 0:
        raise NotEstimable(f"no patient completed month {month:g} (no scan at the endpoint): no completers "
                           "analysis")
    comp = derived[derived["patient_id"].isin(comp_ids)]
    comp_res = frequentist_analysis(comp, sites, strategy, rule, endpoint_month=month, **by_design)
    keys = [sd.estimand(s, k, "pct") for s in sites for k in sd.keys]
    methods_all = ["LMM (REML)", "MMRM (us, REML)"] + sorted(m for m in all_res.estimands["method"].unique()
                                                          if m.startswith("MI"))
    rows = []
    for label, res, methods in (("completers", comp_res, ["completers, t-test", "LMM (REML)", "MMRM (us, REML)"]),
                                ("all observed (MAR)", all_res, methods_all)):
        e = res.estimands
        sel = e[e["estimand"].isin(keys) & e["method"].isin(methods)]
        for _, r in sel.iterrows():
            rows.append({"estimand": r["estimand"], "site": r["site"], "analysis_set": label, "method": r["method"],
                         "estimate": r["estimate"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p": r["p"],
                         "n": r["n"]})
    if bayes:
        from analysis.bayes.fit import fit_bayes

        for label, frame in (("completers", comp), ("all observed (MAR)", derived)):
            for site in sites:
                bf = fit_bayes(frame, "lmm", site, strategy=strategy, rule=rule, seed=seed, **bayes)
                for _, r in bf.table[bf.table["estimand"].isin(keys)].iterrows():
                    rows.append({"estimand": r["estimand"], "site": site, "analysis_set": label, "method": "Bayesian LMM",
                                 "estimate": r["median"], "ci_low": r["eti_low"], "ci_high": r["eti_high"],
                                 "p": float("nan"), "n": float("nan"), "diagnostics": r["diagnostics"]})
    table = pd.DataFrame(rows, columns=["estimand", "site", "analysis_set", "method", "estimate", "ci_low", "ci_high",
                                        "p", "n", *(["diagnostics"] if bayes else [])])
    forest = pd.DataFrame({
        "estimand": table["estimand"], "site": table["site"],
        "analysis": table["method"] + " [" + table["analysis_set"] + "]", "estimate": table["estimate"],
        "low": table["ci_low"], "high": table["ci_high"],
        "kind": ["bayesian" if m.startswith("Bayes") else "frequentist" for m in table["method"]],
    })[FOREST_COLUMNS]
    text = []
    headline = [k for k in sd.keys if sd.is_difference(k)] or list(sd.levels)
    for site in sites:
        for k in headline:
            key = sd.estimand(site, k, "pct")
            c = table[(table["estimand"] == key) & (table["analysis_set"] == "completers")
                      & (table["method"] == "LMM (REML)")]
            a = table[(table["estimand"] == key) & (table["analysis_set"] != "completers")
                      & (table["method"] == "LMM (REML)")]
            if len(c) and len(a):
                text.append(f"{key}: LMM on completers {c['estimate'].iloc[0]:.2f} "
                            f"({c['ci_low'].iloc[0]:.2f} to {c['ci_high'].iloc[0]:.2f}) vs all observed data "
                            f"{a['estimate'].iloc[0]:.2f} ({a['ci_low'].iloc[0]:.2f} to {a['ci_high'].iloc[0]:.2f}).")
    text.append(f"Undefined responder status: {all_res.strategy}." if sd.kind == "derived"
                else f"Groups: {sd.describe_groups()}; {len(comp_ids)} completers of month {month:g}.")
    text += [n + ("" if n.endswith(".") else ".") for n in all_res.notes if n.startswith("MI")]
    return SensitivityResult(name="completers_vs_all", title="Completers only vs all available data (MAR)",
                             table=table, text=text, forest_rows=forest,
                             settings={"strategy": strategy, "mi_imputations": mi_imputations, "seed": seed,
                                       "bayes": bayes, "sites": list(sites), "groups": list(sd.levels),
                                       "endpoint_month": month})
