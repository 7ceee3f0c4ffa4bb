"""Sensitivity 6: the Bayesian LMM under each named prior set (weakly informative, sceptical,
literature, vague), with prior predictive checks and power-scaling prior/likelihood sensitivity
(:mod:`analysis.prior_checks`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.bayes_fit import analysis_frame
from analysis.estimands import difference_name, estimand_name
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult

__all__ = ["prior_sensitivity_analysis"]


def _estimand(site: str, variable: str) -> str | None:
    if variable == "diff_pct_change_12m":
        return difference_name(site, "pct")
    if variable.startswith("pct_change_12m["):
        return estimand_name(site, variable.split("[", 1)[1].rstrip("]"), "pct")
    return None


def prior_sensitivity_analysis(derived: pd.DataFrame, config: Any, label: str | None = None) -> SensitivityResult:
    """Run :func:`analysis.prior_checks.prior_checks` at every configured site."""
    from analysis.prior_checks import prior_checks

    frame, strategy = analysis_frame(derived, config.undefined_responders, config.responder.rule())
    tables, sens, texts, figures = [], [], [], {}
    for site in config.sites:
        res = prior_checks(frame, site, draws=config.draws, tune=config.tune, chains=config.chains,
                           seed=config.seed, label=label)
        tables.append(res.table.assign(site=site))
        sens.append(res.sensitivity.assign(site=site))
        texts.append(f"{site}: {res.text}")
        for name, fig in res.figures.items():
            figures[f"priors_{name}_{site}"] = fig
    sensitivity = pd.concat(sens, ignore_index=True)
    sensitivity["estimand"] = [_estimand(s, v) for s, v in zip(sensitivity["site"], sensitivity["variable"])]
    keep = sensitivity[sensitivity["estimand"].notna()]
    forest = pd.DataFrame({"estimand": keep["estimand"], "site": keep["site"],
                           "analysis": "Bayesian LMM, priors: " + keep["set"], "estimate": keep["posterior_median"],
                           "low": keep["eti_low"], "high": keep["eti_high"], "kind": "bayesian"})[FOREST_COLUMNS]
    texts.append(f"Undefined responder status: {strategy}.")
    return SensitivityResult(name="priors", title="Prior sensitivity (named prior sets)", table=sensitivity,
                             text=texts, figures=figures, forest_rows=forest.reset_index(drop=True),
                             settings={"sets": sorted(keep["set"].unique()), "draws": config.draws},
                             draws={"prior_predictive": pd.concat(tables, ignore_index=True)})
