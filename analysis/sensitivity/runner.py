"""Run sensitivity analyses by name and draw the forest plot across them.

Each analysis is a plain function ``fn(derived, config, cache_dir=None) -> SensitivityResult`` in
:data:`ANALYSES`; the report and ``rajak sensitivity`` iterate over the registry, so a new strategy is
one function. ``cache_dir`` is the content-addressed fit cache; analyses that fit no Bayesian model
ignore it.

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
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from analysis.common.provenance import code_digest
from analysis.study.estimands import difference_name, estimand_name
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult

__all__ = ["ANALYSES", "MAIN_METHODS", "available", "run_sensitivity", "result_cache_key", "forest_table",
           "forest_figure"]


def _completers_vs_all(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None) -> SensitivityResult:
    from analysis.sensitivity.completers_vs_all import completers_vs_all

    return completers_vs_all(derived, config.sites, config.undefined_responders, config.responder.rule(),
                             mi_imputations=max(config.mi_imputations, 2), seed=config.seed)


def _lazy(module: str, function: str) -> Callable[[pd.DataFrame, Any], SensitivityResult]:
    """An analysis implemented in ``analysis.sensitivity.<module>.<function>(derived, config)`` (no
    Bayesian fits: ``cache_dir`` is ignored)."""

    def run(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None) -> SensitivityResult:
        mod = importlib.import_module(f"analysis.sensitivity.{module}")
        return getattr(mod, function)(derived, config)

    run.module = module  # type: ignore[attr-defined]
    return run


def _priors(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None) -> SensitivityResult:
    from analysis.sensitivity.priors import prior_sensitivity_analysis

    return prior_sensitivity_analysis(derived, config, cache_dir=cache_dir)


def _latent_status(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None) -> SensitivityResult:
    from analysis.sensitivity.latent_status import latent_status_analysis

    return latent_status_analysis(derived, config.sites, response_month=config.responder.month, draws=config.draws,
                                  tune=config.tune, chains=config.chains, seed=config.seed,
                                  cache_dir=cache_dir)


def _selection(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None) -> SensitivityResult:
    from analysis.sensitivity.selection import selection_analysis

    return selection_analysis(derived, config.sites, response_month=config.responder.month, draws=config.draws,
                              tune=config.tune, chains=config.chains, seed=config.seed,
                                  cache_dir=cache_dir)


def _delta_bayes(derived: pd.DataFrame, config: Any, cache_dir: Path | None = None) -> SensitivityResult:
    from analysis.sensitivity.bayes_delta import bayes_delta_from_config

    return bayes_delta_from_config(derived, config, cache_dir=cache_dir)


#: name -> function(derived, config, cache_dir=None) -> SensitivityResult
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


def available() -> list[str]:
    return list(ANALYSES)


def run_sensitivity(name: str, derived: pd.DataFrame, config: Any, *,
                    cache_dir: str | Path | None = None) -> SensitivityResult:
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

    Returns
    -------
    SensitivityResult
    """
    if name not in ANALYSES:
        raise ValueError(f"unknown sensitivity analysis {name!r}; available: {', '.join(available())}")
    if cache_dir is None:
        return ANALYSES[name](derived, config, cache_dir=None)
    cache_dir = Path(cache_dir)
    key = result_cache_key(name, derived, config)
    path = cache_dir / "sensitivity" / f"{name}_{key[:24]}.pkl"
    if path.is_file():
        try:
            result = pickle.loads(path.read_bytes())
        except Exception:  # noqa: BLE001 -- an unreadable entry is recomputed and replaced
            result = None
        if isinstance(result, SensitivityResult) and result.name == name:
            result.settings = {**result.settings, "result_cache": {"file": str(path), "hit": True}}
            return result
    result = ANALYSES[name](derived, config, cache_dir=cache_dir)
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
    """Rows of one estimand across analyses: the frequentist completers result first (as published),
    then the main analyses (REML LMM, MMRM, MI, and the Bayesian models of the run when
    ``bayes_estimands`` is given), then every sensitivity analysis."""
    fe = frequentist_estimands[frequentist_estimands["estimand"] == estimand]
    first = fe[fe["method"] == "completers, t-test"]
    rows = [pd.DataFrame({"estimand": estimand, "site": first["site"], "analysis": "completers t-test (as published)",
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
    return pd.concat([r for r in rows if len(r)], ignore_index=True)[FOREST_COLUMNS]


def forest_figure(results: list[SensitivityResult], frequentist_estimands: pd.DataFrame, site: str,
                  label: str | None = None, bayes_estimands: pd.DataFrame | None = None):
    """Forest plot of the responder - non-responder difference and the non-responders' change across
    the main analyses and every sensitivity analysis (:func:`forest_table`)."""
    from analysis.figures.plots import forest

    keys = [difference_name(site, "pct"), estimand_name(site, "non-responder", "pct")]
    frames = []
    for k in keys:
        t = forest_table(results, frequentist_estimands, k, bayes_estimands)
        t["label"] = [f"{'diff' if k == keys[0] else 'NR'} | {a}" for a in t["analysis"]]
        frames.append(t)
    rows = pd.concat(frames, ignore_index=True)
    return forest(rows, f"Key estimands across models and sensitivity analyses, {site} (diff = responders - "
                        "non-responders, "
                        "NR = non-responders; % change to month 12)", label=label), rows
