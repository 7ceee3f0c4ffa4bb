"""Run sensitivity analyses by name and draw the forest plot across them.

Each analysis is a plain function ``fn(derived, config, cache_dir=None, design=None) ->
SensitivityResult`` in :data:`ANALYSES`; the report and ``rajak sensitivity`` iterate over the
registry, so a new strategy is one function. ``cache_dir`` is the content-addressed fit cache;
analyses that fit no Bayesian model ignore it. ``design`` is the study's resolved design (default:
the derived frame's ``attrs["design"]``; none: the RAJAK default); every analysis reads its sites,
endpoint, groups and reference from it (:mod:`analysis.sensitivity.design`).

Analyses that do not run
------------------------
An analysis that does not apply to the study's design raises
:class:`~analysis.study.applicability.NotApplicable` (latent responder status in a trial, a
reference-based imputation in a single arm); one that applies but cannot be estimated on the data
raises :class:`~analysis.study.applicability.NotEstimable` (or another ``ValueError``: an empty
group, a model that cannot be fitted). :func:`run_sensitivity` returns such an analysis as a
:class:`SensitivityResult` with ``status`` ``"not applicable"`` or ``"not estimable"`` and the
one-line reason (``errors="report"``, the default: a run of several analyses goes on with the
others), or lets the exception through (``errors="raise"``: an analysis asked for by name).

Result cache
------------
With a ``cache_dir``, :func:`run_sensitivity` also keeps each finished :class:`SensitivityResult`
(tables, text, figures, settings) under ``<cache_dir>/sensitivity/``, addressed by the SHA-256 of
the analysis name, the derived data (every value, column and row order), the run configuration
(without its output location, run id, figure workers and sample-size fields, none of which reach a
sensitivity analysis), and the source code of the ``analysis`` and ``models`` packages with the
versions of the numerical libraries. An unchanged analysis is read back instead of recomputed; any
change to data, settings or code makes a new address. The files are pickles of rajak's own objects
in the run's own output directory, so they are read only from there.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.common.provenance import code_digest
from analysis.sensitivity.design import (
    NotApplicable,
    NotEstimable,
    SensitivityDesign,
    from_resolved,
)
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.study.estimands import GROUP_LABELS, difference_name, estimand_name

__all__ = [
    "ANALYSES",
    "MAIN_METHODS",
    "TITLES",
    "available",
    "forest_figure",
    "forest_keys",
    "forest_table",
    "result_cache_key",
    "run_sensitivity",
]


def _completers_vs_all(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None,
                       design: Any = None) -> SensitivityResult:
    from analysis.sensitivity.completers_vs_all import completers_vs_all

    return completers_vs_all(derived, config.sites, config.undefined_responders, config.responder.rule(),
                             mi_imputations=max(config.mi_imputations, 2), seed=config.seed,
                             endpoint_month=config.endpoint_month, design=design)


def _lazy(module: str, function: str) -> Callable[..., SensitivityResult]:
    """An analysis implemented in ``analysis.sensitivity.<module>.<function>(derived, config,
    design=design)`` (no Bayesian fits: ``cache_dir`` is ignored)."""

    def run(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None, design: Any = None) -> SensitivityResult:
        mod = importlib.import_module(f"analysis.sensitivity.{module}")
        return getattr(mod, function)(derived, config, design=design)

    run.module = module  # type: ignore[attr-defined]
    return run


def _priors(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None, design: Any = None) -> SensitivityResult:
    from analysis.sensitivity.priors import prior_sensitivity_analysis

    return prior_sensitivity_analysis(derived, config, cache_dir=cache_dir, design=design)


def _latent_status(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None,
                   design: Any = None) -> SensitivityResult:
    from analysis.sensitivity.latent_status import latent_status_analysis

    return latent_status_analysis(derived, config.sites, response_month=config.responder.month, draws=config.draws,
                                  tune=config.tune, chains=config.chains, seed=config.seed,
                                  cache_dir=cache_dir, endpoint_month=config.endpoint_month, design=design)


def _selection(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None, design: Any = None) -> SensitivityResult:
    from analysis.sensitivity.selection import selection_analysis

    return selection_analysis(derived, config.sites, response_month=config.responder.month, draws=config.draws,
                              tune=config.tune, chains=config.chains, seed=config.seed,
                              cache_dir=cache_dir, endpoint_month=config.endpoint_month, design=design,
                              undefined=config.undefined_responders, rule=config.responder.rule())


def _delta_bayes(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None,
                 design: Any = None) -> SensitivityResult:
    from analysis.sensitivity.bayes_delta import bayes_delta_from_config

    return bayes_delta_from_config(derived, config, cache_dir=cache_dir, design=design)


#: name -> function(derived, config, cache_dir=None, design=None) -> SensitivityResult
ANALYSES: dict[str, Callable[..., SensitivityResult]] = {
    "completers_vs_all": _completers_vs_all,
    "delta": _lazy("delta", "delta_from_config"),
    "delta_bayes": _delta_bayes,
    "tipping": _lazy("tipping", "tipping_from_config"),
    "reference_based": _lazy("reference_based", "reference_based_from_config"),
    "priors": _priors,
    "latent_status": _latent_status,
    "selection": _selection,
}


#: name -> title, for the result of an analysis that did not run.
TITLES = {
    "completers_vs_all": "Completers only vs all available data (MAR)",
    "delta": "Delta-adjusted pattern mixture (MNAR) by multiple imputation",
    "delta_bayes": "Delta-adjusted pattern mixture in the Bayesian model (and Bayesian MI)",
    "tipping": "Tipping-point analysis (delta-adjusted MI over a grid)",
    "reference_based": "Reference-based multiple imputation",
    "priors": "Prior sensitivity (named prior sets)",
    "latent_status": "Latent responder status for dropouts",
    "selection": "Selection model for MNAR dropout",
}

#: Exceptions that mean "cannot be estimated on these data" (not a bug): reported, not raised.
_NOT_ESTIMABLE = (NotEstimable, ValueError, ZeroDivisionError, np.linalg.LinAlgError)


def available() -> list[str]:
    return list(ANALYSES)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_sensitivity(name: str, derived: pd.DataFrame, config: Any, *,
                    cache_dir: str | Path | None = None, design: Any = None,
                    errors: str = "report") -> SensitivityResult:
    """Run one named analysis.

    Parameters
    ----------
    name : str
        One of :func:`available`.
    derived : DataFrame
        From :func:`analysis.study.clinical.derive`.
    config : RunConfig
    cache_dir : path, optional
        Content-addressed fit cache shared with the main Bayesian fits
        (:func:`analysis.bayes.fit.fit_bayes`); the Bayesian analyses (``priors``,
        ``latent_status``, ``selection``) read unchanged fits from it instead of sampling again.
    design : ResolvedDesign, optional
        The study's design (default ``derived.attrs["design"]``; none: the RAJAK default).
    errors : {"report", "raise"}
        ``"report"``: an analysis that does not apply or cannot be estimated is returned as a
        result with ``status`` ``"not applicable"`` / ``"not estimable"`` and its reason (module
        docstring); ``"raise"``: the exception propagates.

    Returns
    -------
    SensitivityResult
    """
    if name not in ANALYSES:
        raise ValueError(f"unknown sensitivity analysis {name!r}; available: {', '.join(available())}")
    if errors not in ("report", "raise"):
        raise ValueError(f"errors must be 'report' or 'raise', got {errors!r}")
    try:
        return _run(name, derived, config, cache_dir, design)
    except NotApplicable as exc:
        if errors == "raise":
            raise
        return SensitivityResult.skipped(name, TITLES.get(name, name), "not applicable", _one_line(exc))
    except _NOT_ESTIMABLE as exc:
        if errors == "raise":
            raise
        return SensitivityResult.skipped(name, TITLES.get(name, name), "not estimable", _one_line(exc))


def _run(name: str, derived: pd.DataFrame, config: Any, cache_dir: str | Path | None,
         design: Any) -> SensitivityResult:
    if cache_dir is None:
        return ANALYSES[name](derived, config, cache_dir=None, design=design)
    cache_dir = Path(cache_dir)
    key = result_cache_key(name, derived, config)
    path = cache_dir / "sensitivity" / f"{name}_{key[:24]}.pkl"
    if path.is_file():
        try:
            result = pickle.loads(path.read_bytes())
        except Exception:
            result = None
        if isinstance(result, SensitivityResult) and result.name == name:
            result.settings = {**result.settings, "result_cache": {"file": str(path), "hit": True}}
            return result
    result = ANALYSES[name](derived, config, cache_dir=cache_dir, design=design)
    from analysis.common.io import atomic_write_bytes

    atomic_write_bytes(path, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    result.settings = {**result.settings, "result_cache": {"file": str(path), "hit": False}}
    return result


#: Configuration fields that never reach a sensitivity analysis (left out of the result address).
_NOT_IN_KEY = ("output_dir", "run_id", "figure_workers")


def result_cache_key(name: str, derived: pd.DataFrame, config: Any) -> str:
    """The content address of a sensitivity result (see the module docstring)."""
    import json

    h = hashlib.sha256()
    h.update(name.encode())
    h.update(repr(list(derived.columns)).encode())
    h.update(repr([str(t) for t in derived.dtypes]).encode())
    h.update(pd.util.hash_pandas_object(derived, index=True).values.tobytes())
    settings = {k: v for k, v in config.model_dump(mode="json").items()
                if k not in _NOT_IN_KEY and not k.startswith("power_")}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(code_digest().encode())
    return h.hexdigest()


#: Main analyses shown after the completers row of the forest plot (frequentist methods by name).
MAIN_METHODS = ("LMM (REML)", "MMRM (us, REML)")


def forest_table(results: list[SensitivityResult], frequentist_estimands: pd.DataFrame, estimand: str,
                 bayes_estimands: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of one estimand across analyses: the frequentist completers result first (the analysis RAJAK published),
    then the main analyses (REML LMM, MMRM, MI, and the Bayesian models of the run when
    ``bayes_estimands`` is given), then every sensitivity analysis."""
    fe = frequentist_estimands[frequentist_estimands["estimand"] == estimand]
    first = fe[fe["method"] == "completers, t-test"]
    rows = [pd.DataFrame({"estimand": estimand, "site": first["site"], "analysis": "completers t-test",
                          "estimate": first["estimate"], "low": first["ci_low"], "high": first["ci_high"],
                          "kind": "frequentist"})]
    main = fe[fe["method"].isin(MAIN_METHODS) | fe["method"].str.startswith("MI (")]
    rows.append(pd.DataFrame({"estimand": estimand, "site": main["site"], "analysis": "main: " + main["method"],
                              "estimate": main["estimate"], "low": main["ci_low"], "high": main["ci_high"],
                              "kind": "frequentist"}))
    if bayes_estimands is not None and len(bayes_estimands):
        b = bayes_estimands[bayes_estimands["estimand"] == estimand]
        rows.append(pd.DataFrame({"estimand": estimand, "site": b["site"], "analysis": "main: Bayesian " + b["model"],
                                  "estimate": b["median"], "low": b["eti_low"], "high": b["eti_high"],
                                  "kind": "bayesian"}))
    for r in results:
        fr = r.forest_rows[r.forest_rows["estimand"] == estimand].copy()
        fr["analysis"] = r.name + ": " + fr["analysis"].astype(str)
        rows.append(fr)
    rows = [r for r in rows if len(r)]
    return (pd.concat(rows, ignore_index=True)[FOREST_COLUMNS] if rows
            else pd.DataFrame(columns=FOREST_COLUMNS))


def _design_of_results(results: list[SensitivityResult], design: Any) -> SensitivityDesign:
    """The groups and endpoint of the forest plot: ``design`` (a :class:`SensitivityDesign`, or a
    resolved design), else what the results recorded (``settings["groups"]`` and
    ``settings["endpoint_month"]``), else the RAJAK default."""
    if isinstance(design, SensitivityDesign):
        return design
    if design is not None:
        return from_resolved(design)
    for r in results:
        groups, month = r.settings.get("groups"), r.settings.get("endpoint_month")
        if groups and month is not None:
            return SensitivityDesign(sites=tuple(r.settings.get("sites") or ()), endpoint=float(month),
                                     levels=tuple(groups), reference=groups[0] if len(groups) > 1 else None,
                                     kind="column" if len(groups) > 1 else "none")
    return from_resolved(None)


def forest_keys(site: str, design: SensitivityDesign) -> list[tuple[str, str]]:
    """``(estimand, row label prefix)`` of the forest plot of one site: every difference with the
    reference, then the reference's change (a single arm: its one group's change)."""
    if design.single_arm:
        lv = design.levels[0]
        return [(estimand_name(site, lv, "pct", design.endpoint), GROUP_LABELS.get(lv, lv))]
    keys = [(difference_name(site, "pct", design.endpoint, groups=(lv, ref)),
             "diff" if len(design.comparisons) == 1 else f"{lv} - {ref}") for lv, ref in design.comparisons]
    ref = design.reference
    return keys + [(estimand_name(site, ref, "pct", design.endpoint), GROUP_LABELS.get(ref, ref))]


def forest_figure(results: list[SensitivityResult], frequentist_estimands: pd.DataFrame, site: str,
                  label: str | None = None, bayes_estimands: pd.DataFrame | None = None, design: Any = None):
    """Forest plot of the key estimands (:func:`forest_keys`: every difference with the reference and
    the reference's change) across the main analyses and every sensitivity analysis that ran
    (:func:`forest_table`); ``design`` as :func:`_design_of_results`."""
    from analysis.figures.plots import forest

    sd = _design_of_results(results, design)
    ran = [r for r in results if r.ran]
    frames = []
    for k, prefix in forest_keys(site, sd):
        t = forest_table(ran, frequentist_estimands, k, bayes_estimands)
        t["label"] = [f"{prefix} | {a}" for a in t["analysis"]]
        frames.append(t)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*FOREST_COLUMNS, "label"])
    if sd.single_arm:
        what = f"{GROUP_LABELS.get(sd.levels[0], sd.levels[0])}: % change to month {sd.endpoint:g}"
    else:
        diffs = "; ".join(f"{GROUP_LABELS.get(lv, lv)} - {GROUP_LABELS.get(ref, ref)}" for lv, ref in sd.comparisons)
        what = (f"diff = {diffs}, {GROUP_LABELS.get(sd.reference, sd.reference)} = the reference's change; % change "
                f"to month {sd.endpoint:g}")
    return forest(rows, f"Key estimands across models and sensitivity analyses, {site} ({what})", label=label), rows
