"""Sensitivity 6: the Bayesian LMM under each named prior set (weakly informative, sceptical,
literature, vague), with prior predictive checks and power-scaling prior/likelihood sensitivity
(:mod:`analysis.bayes.prior_checks`), on the study's design (:mod:`analysis.sensitivity.design`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.bayes.fit import analysis_frame
from analysis.sensitivity.bayes_common import (
    FitCache,
    caching_sampler,
    diagnostics_text,
)
from analysis.sensitivity.design import SensitivityDesign, design_from_config
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult

__all__ = ["prior_sensitivity_analysis", "variable_estimand"]


def variable_estimand(sd: SensitivityDesign, site: str, variable: str) -> str | None:
    """The estimand name of a reported posterior variable (``pct_change_<when>[<level>]`` or
    ``diff_pct_change_<when>[<level or contrast>]``, at the design's endpoint), ``None`` for any
    other variable."""
    base, _, label = variable.partition("[")
    label = label.rstrip("]") or None
    if base.startswith("diff_pct_change"):
        if label is None:
            if len(sd.comparisons) != 1:
                return None
            level = sd.comparisons[0][0]
        else:
            level = label.split(" - ", 1)[0].strip()
        if level not in sd.levels or level == sd.reference:
            return None
        return sd.estimand(site, sd.comparison_key(level), "pct")
    if base.startswith("pct_change") and label in sd.levels:
        return sd.estimand(site, label, "pct")
    return None


def prior_sensitivity_analysis(derived: pd.DataFrame, config: Any, label: str | None = None, *,
                               cache_dir: Path | None = None, design: Any = None) -> SensitivityResult:
    """Run :func:`analysis.bayes.prior_checks.prior_checks` at every configured site.

    Parameters
    ----------
    derived : DataFrame
        From :func:`analysis.study.clinical.derive`.
    config : RunConfig
        Sites, undefined-status strategy, responder rule and sampler settings.
    label : str, optional
        Stamp on the figures.
    cache_dir : Path, optional
        Content-addressed fit cache (the pipeline's ``<output_dir>/.fit-cache``): a fit whose model,
        prior set, data and settings are unchanged is read instead of sampled
        (:func:`analysis.sensitivity.bayes_common.cached_sample`).
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).

    Returns
    -------
    SensitivityResult
        ``name="priors"``; ``settings["fit_cache"]`` counts cache hits and new fits;
        ``settings["prior_predictive_sample"]`` says per site when the prior predictive was drawn for
        a random sample of patients (:mod:`analysis.bayes.prior_sample`), else ``None``.
    """
    from analysis.bayes.fit import prior_object
    from analysis.bayes.prior_checks import prior_checks
    from models.priors import PRIOR_SET_NAMES

    sd = design_from_config(derived, config, design)
    frame, strategy = analysis_frame(derived, config.undefined_responders, config.responder.rule(), design=sd.design)
    tables, sens, texts, figures = [], [], [], {}
    cache = FitCache(None if cache_dir is None else Path(cache_dir))
    fits: dict[str, Any] = {}
    drawn: dict[str, str | None] = {}
    for site in sd.sites:
        sets = []
        for name in PRIOR_SET_NAMES:  # a set stated for other sites only (literature values) is left out
            try:
                prior_object(name, site, frame)
            except ValueError as exc:
                texts.append(f"{site}: prior set {name!r} left out ({str(exc).splitlines()[0]})")
                continue
            sets.append(name)
        res = prior_checks(frame, site, sets=sets, draws=config.draws, tune=config.tune, chains=config.chains,
                           seed=config.seed, label=label, sample=caching_sampler(cache, "sens-priors-lmm", site))
        fits.update({f"{site}, priors {k}": f for k, f in res.fits.items()})
        drawn[site] = res.table.attrs.get("sample")  # a random sample of a large study's patients
        tables.append(res.table.assign(site=site))
        sens.append(res.sensitivity.assign(site=site))
        texts.append(f"{site}: {res.text}")
        for name, fig in res.figures.items():
            figures[f"priors_{name}_{site}"] = fig
    sensitivity = pd.concat(sens, ignore_index=True)
    sensitivity["estimand"] = [variable_estimand(sd, s, v) for s, v in zip(sensitivity["site"], sensitivity["variable"])]
    keep = sensitivity[sensitivity["estimand"].notna()]
    forest = pd.DataFrame({"estimand": keep["estimand"], "site": keep["site"],
                           "analysis": "Bayesian LMM, priors: " + keep["set"], "estimate": keep["posterior_median"],
                           "low": keep["eti_low"], "high": keep["eti_high"], "kind": "bayesian"})[FOREST_COLUMNS]
    texts.append(f"Groups: {strategy}.")
    texts.append(diagnostics_text(fits))
    return SensitivityResult(name="priors", title="Prior sensitivity (named prior sets)", table=sensitivity,
                             text=texts, figures=figures, forest_rows=forest.reset_index(drop=True),
                             settings={"sets": sorted(keep["set"].unique()), "draws": config.draws,
                                       "sites": list(sd.sites), "groups": list(sd.levels),
                                       "endpoint_month": sd.endpoint, "fit_cache": cache.summary(),
                                       "prior_predictive_sample": drawn,
                                       "diagnostics": {k: str(f.diagnostics) for k, f in fits.items()},
                                       "failed_fits": [k for k, f in fits.items() if not f.passed],
                                       "fit_files": list(dict.fromkeys(cache.paths))},
                             draws={"prior_predictive": pd.concat(tables, ignore_index=True)})
