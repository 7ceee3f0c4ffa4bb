"""``rajak sensitivity``: the dropout sensitivity analyses by name.

Every analysis works on the study's design (sites, endpoint, groups and reference). Run without
``--analysis`` it runs them all: one that does not apply to the design (latent responder status in a
trial) or cannot be estimated on the data is listed with its one-line reason in the output and the
JSON, and the others run (exit status 0). Asked for by name (``--analysis NAME``), such an analysis
ends the command with that one line and exit status 2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

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

__all__ = ["sensitivity"]


@design_options
def sensitivity(
    analysis: Annotated[list[str] | None, typer.Option("--analysis", help="Analysis name (repeatable); default: all available (those that do not apply to the design are listed as skipped).")] = None,
    data: Annotated[Path | None, typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Undefined responder status strategy.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write tables and figures into this directory.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Content-addressed fit and result cache (e.g. outputs/.fit-cache, the one rajak run uses): "
             "unchanged fits and analyses are read back.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit tables and text as JSON.")] = False,
    design: DesignFlags | None = None,
) -> None:
    """Dropout sensitivity analyses (MAR vs MNAR); one result type each: table, text, figures."""
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
    cfg, ds, derived = load_derived(data, config, strategy, seed, map_, design)
    study_design = derived.attrs.get("design") or ds.design
    results = []
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
    ran = [r for r in results if r.ran]
    skipped = [{"name": r.name, "status": r.status, "reason": r.reason} for r in results if not r.ran]
    if out is not None:
        for r in ran:
            atomic_write_text(out / f"sensitivity_{r.name}.csv", r.table.to_csv(index=False, lineterminator="\n"))
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
