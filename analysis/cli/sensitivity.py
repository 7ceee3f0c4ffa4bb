"""``rajak sensitivity``: the dropout sensitivity analyses by name.

Every analysis works on the study's design (sites, endpoint, groups and reference). Run without
``--analysis`` it runs them all: one that does not apply to the design (latent responder status in a
trial) or cannot be estimated on the data is listed with its one-line reason in the output and the
JSON, and the others run (exit status 0). Asked for by name (``--analysis NAME``), such an analysis
ends the command with that one line and exit status 2.

The ICE-strategy analysis (``--analysis reference_based``) takes the estimand's intercurrent events
(``--ice FILE``, ``--ice-strategy TYPE=STRATEGY``, ``--delta ...``: :mod:`analysis.cli.ice_options`),
the strategies each ICE is handled by in turn (``--strategy MAR,JR,CR,CIR,LMCF``), the inference
methods (``--method condmean_jackknife,condmean_bootstrap,approx_bayes,bayes,bmlmi``), the analysis
model (``--analysis-model ancova|mmrm``) and the imputation model (``--imputation-model rbmi|rajak``).
``--strategy`` also still takes the strategy for undefined responder status (``last_observed``,
``exclude``, ``unknown``): the two vocabularies do not overlap.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from analysis.cli.common import (
    EXIT_BAD_INPUT,
    DesignFlags,
    analysis_errors,
    design_options,
    err,
    info,
    json_default,
    load_derived,
)
from analysis.cli.ice_options import (
    IceFlags,
    apply_ice,
    flags_given,
    ice_options,
    load_ice,
)

__all__ = ["sensitivity", "sensitivity_out_of_memory_text"]


RESPONDER_STRATEGIES = ("last_observed", "exclude", "unknown")


def _split_strategy(strategy: str | None) -> tuple[tuple[str, ...] | None, str | None]:
    """``--strategy``: ICE strategies (``MAR,JR``) or the undefined-responder strategy."""
    if strategy is None or strategy.strip() in RESPONDER_STRATEGIES:
        return None, strategy
    return tuple(s.strip() for s in strategy.split(",") if s.strip()), None


def _list(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip()) if values else None


@ice_options
@design_options
def sensitivity(
    analysis: Annotated[list[str] | None, typer.Option("--analysis", help="Analysis name (repeatable); default: all available (those that do not apply to the design are listed as skipped).")] = None,
    data: Annotated[Path | None, typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[str | None, typer.Option(help="ICE strategies for --analysis reference_based, comma-separated (MAR,JR,CR,CIR,LMCF), or the undefined responder status strategy (last_observed, exclude, unknown).")] = None,
    method: Annotated[list[str] | None, typer.Option("--method", help="Inference methods of reference_based: condmean_jackknife, condmean_bootstrap, approx_bayes, bayes, bmlmi (comma-separated or repeated).")] = None,
    analysis_model: Annotated[str | None, typer.Option("--analysis-model", help="Analysis model of reference_based: ancova (each visit) or mmrm.")] = None,
    imputation_model: Annotated[str | None, typer.Option("--imputation-model", help="Imputation model of reference_based: rajak (% change, one baseline slope) or rbmi (change ~ baseline*visit + group*visit, results equal R rbmi's).")] = None,
    n_samples: Annotated[int | None, typer.Option("--n-samples", help="Bootstrap resamples or posterior draws of reference_based's methods.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write tables and figures into this directory.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Content-addressed fit and result cache (e.g. outputs/.fit-cache, the one rajak run uses): "
             "unchanged fits and analyses are read back.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit tables and text as JSON.")] = False,
    design: DesignFlags | None = None,
    ice: IceFlags | None = None,
) -> None:
    """Dropout sensitivity analyses (MAR vs MNAR, ICE strategies); one result type each: table, text, figures."""
    from analysis.common.io import atomic_write_text
    from analysis.figures.plots import save_figure
    from analysis.sensitivity.runner import available, run_sensitivity
    from analysis.study.applicability import NotApplicable, NotEstimable

    names = analysis or available()
    bad = [n for n in names if n not in available()]
    if bad:
        err(f"unknown sensitivity analysis {bad[0]!r}; available: {', '.join(available())}")
        raise typer.Exit(EXIT_BAD_INPUT)
    explicit = bool(analysis)
    debug = os.environ.get("RAJAK_DEBUG") == "1"
    ice_strategies, strategy = _split_strategy(strategy)
    cfg, ds, derived = load_derived(data, config, strategy, seed, map_, design)
    study_design = derived.attrs.get("design") or ds.design
    from analysis.run.config import ConfigError
    from analysis.study.ice_load import check_delta_rules
    from analysis.study.problems import DataValidationError

    try:
        cfg = apply_ice(cfg, ice, {"strategies": ice_strategies, "methods": _list(method),
                                   "analysis_model": analysis_model, "imputation_model": imputation_model,
                                   "n_samples": n_samples})
        if cfg.estimand is not None and "reference_based" in names:  # a bad ICE file ends here, before any fit
            load_ice(cfg.estimand, derived, study_design, source=ds.source)
            check_delta_rules(cfg.estimand, study_design)
    except (ConfigError, DataValidationError) as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)
    if flags_given(ice) and "reference_based" not in names:
        info("note: the intercurrent-event flags are read by --analysis reference_based only")
    results = []
    name = names[0] if names else ""
    try:
        with analysis_errors(ds.source):
            for name in names:
                info(f"{ds.label}: sensitivity analysis {name} ...")
                try:
                    r = run_sensitivity(name, derived, cfg, cache_dir=cache_dir, design=study_design,
                                        errors="raise" if explicit or debug else "report")
                except (NotApplicable, NotEstimable) as exc:
                    if debug:
                        raise
                    status = "not applicable" if isinstance(exc, NotApplicable) else "not estimable"
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    err(f"{ds.source}: sensitivity analysis {name} is {status}: {reason}")
                    raise typer.Exit(EXIT_BAD_INPUT)
                if not r.ran:
                    info(f"{ds.label}: sensitivity analysis {name} skipped ({r.summary})")
                results.append(r)
    except MemoryError:  # one line saying what to ask for instead, not a traceback
        if debug:
            raise
        err(sensitivity_out_of_memory_text(name, names, derived, cfg))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    ran = [r for r in results if r.ran]
    skipped = [{"name": r.name, "status": r.status, "reason": r.reason} for r in results if not r.ran]
    if out is not None:
        for r in ran:  # every table names its data (SYNTHETIC for the twin), as rajak run's do
            labelled = r.table.assign(data=ds.label)
            atomic_write_text(out / f"sensitivity_{r.name}.csv", labelled.to_csv(index=False, lineterminator="\n"))
            if r.settings.get("estimand"):
                est = pd.DataFrame(r.settings["estimand"]).assign(data=ds.label)
                atomic_write_text(out / "estimand.csv", est.to_csv(index=False, lineterminator="\n"))
            for fname, fig in r.figures.items():
                save_figure(fig, out, fname)
        info(f"wrote tables and figures to {out}")
    if as_json:
        typer.echo(json.dumps({"data_label": ds.label, "synthetic": ds.synthetic,
                               "design": None if ds.design is None else ds.design.to_dict(),
                               "skipped": skipped, "results": [
            {"name": r.name, "title": r.title, "status": r.status, "reason": r.reason, "text": r.text,
             "settings": r.settings, "table": r.table.replace({float("nan"): None}).to_dict(orient="records")}
            for r in results]}, indent=2, default=json_default))
        return
    for r in ran:
        typer.echo(f"== {ds.label}: {r.title} ==")
        for line in r.text:
            typer.echo(line)
        typer.echo(r.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        typer.echo("")
    if skipped:
        typer.echo(f"== {ds.label}: skipped ==")
        for s in skipped:
            typer.echo(f"{s['name']}: {s['status']}: {s['reason']}")


def sensitivity_out_of_memory_text(name: str, names: list[str], derived, cfg) -> str:
    """The one line ``rajak sensitivity`` ends with when memory runs out.

    Parameters
    ----------
    name : str
        The analysis memory ran out in.
    names : list of str
        The analyses asked for.
    derived : pandas.DataFrame
        The derived data (its patients give the size).
    cfg : RunConfig
        The configuration (its sites, draws and chains).

    Returns
    -------
    str
        ``out of memory in sensitivity analysis <name> (<size>): ask for ...``.
    """
    n_pat = int(derived["patient_id"].nunique()) if "patient_id" in derived.columns else 0
    sites = list(cfg.sites or ())
    asks = []
    if len(names) > 1:
        others = [n for n in names if n != name]
        asks.append(f"fewer analyses (--analysis NAME, one at a time; e.g. --analysis {others[0]} without {name})")
    if len(sites) > 1:
        asks.append("one --site at a time")
    asks.append(f"fewer posterior draws or chains in the plan (e.g. draws = {max(100, cfg.draws // 4)}, chains = 2)")
    if name == "reference_based":
        asks.append("fewer --n-samples")
    return (f"out of memory in sensitivity analysis {name} ({n_pat} patients, {len(sites)} "
            f"site{'s' if len(sites) != 1 else ''}): ask for " + "; ".join(asks[:-1])
            + ("; or " if len(asks) > 1 else "") + asks[-1])
