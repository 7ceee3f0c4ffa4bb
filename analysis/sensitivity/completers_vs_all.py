"""Sensitivity 1: the same estimands on the completers only and on all available data (MAR).

Completers analyses are valid when dropout is unrelated to the outcome (MCAR); likelihood-based
mixed models on all observed data (and multiple imputation) are valid under MAR. Where the two
disagree, dropout carries information about BMD.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.study.clinical import ResponderRule
from analysis.study.estimands import difference_name, estimand_name
from analysis.frequentist.primary import frequentist_analysis
from analysis.study.groups import UndefinedStrategy
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult

__all__ = ["completers_vs_all"]


def completers_vs_all(derived: pd.DataFrame, sites=("spine", "femoral_neck"),
                      strategy: UndefinedStrategy = "last_observed", rule: ResponderRule | None = None,
                      mi_imputations: int = 50, seed: int = 0, bayes: Any = None) -> SensitivityResult:
    """Compare completers-only and all-data estimates of the month-12 % change per group and the
    responder - non-responder difference.

    Parameters
    ----------
    bayes
        Optional ``{"draws": .., "tune": .., "chains": ..}``: also fit the Bayesian LMM on both data
        sets.
    """
    sites = tuple(sites)
    all_res = frequentist_analysis(derived, sites, strategy, rule, mi_imputations=mi_imputations, seed=seed)
    comp_ids = derived.loc[derived["completer"], "patient_id"].unique()
    comp = derived[derived["patient_id"].isin(comp_ids)]
    comp_res = frequentist_analysis(comp, sites, strategy, rule)
    keys = [estimand_name(s, g, "pct") for s in sites for g in ("non-responder", "responder")] + \
           [difference_name(s, "pct") for s in sites]
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
    table = pd.DataFrame(rows)
    forest = pd.DataFrame({
        "estimand": table["estimand"], "site": table["site"],
        "analysis": table["method"] + " [" + table["analysis_set"] + "]", "estimate": table["estimate"],
        "low": table["ci_low"], "high": table["ci_high"],
        "kind": ["bayesian" if m.startswith("Bayes") else "frequentist" for m in table["method"]],
    })[FOREST_COLUMNS]
    text = []
    for site in sites:
        key = difference_name(site, "pct")
        c = table[(table["estimand"] == key) & (table["analysis_set"] == "completers") & (table["method"] == "LMM (REML)")]
        a = table[(table["estimand"] == key) & (table["analysis_set"] != "completers") & (table["method"] == "LMM (REML)")]
        if len(c) and len(a):
            text.append(f"{key}: LMM on completers {c['estimate'].iloc[0]:.2f} "
                        f"({c['ci_low'].iloc[0]:.2f} to {c['ci_high'].iloc[0]:.2f}) vs all observed data "
                        f"{a['estimate'].iloc[0]:.2f} ({a['ci_low'].iloc[0]:.2f} to {a['ci_high'].iloc[0]:.2f}).")
    text.append(f"Undefined responder status: {all_res.strategy}.")
    text += [n + ("" if n.endswith(".") else ".") for n in all_res.notes if n.startswith("MI")]
    return SensitivityResult(name="completers_vs_all", title="Completers only vs all available data (MAR)",
                             table=table, text=text, forest_rows=forest,
                             settings={"strategy": strategy, "mi_imputations": mi_imputations, "seed": seed,
                                       "bayes": bayes})
