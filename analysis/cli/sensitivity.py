"""``rajak sensitivity``: the dropout sensitivity analyses by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from analysis.cli.common import EXIT_BAD_INPUT, DesignFlags, analysis_errors, design_options, err, info, json_default, load_derived

__all__ = ["sensitivity"]


@design_options
def sensitivity(
    analysis: Annotated[Optional[list[str]], typer.Option("--analysis", help="Analysis name (repeatable); default: all available.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Undefined responder status strategy.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write tables and figures into this directory.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Content-addressed fit and result cache (e.g. outputs/.fit-cache, the one rajak run uses): "
             "unchanged fits and analyses are read back.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit tables and text as JSON.")] = False,
    design: DesignFlags | None = None,
) -> None:
    """Dropout sensitivity analyses (MAR vs MNAR); one result type each: table, text, figures."""
    from analysis.common.io import atomic_write_text
    from analysis.figures.plots import save_figure
    from analysis.sensitivity.runner import available, run_sensitivity

    names = analysis or available()
    bad = [n for n in names if n not in available()]
    if bad:
        err(f"unknown sensitivity analysis {bad[0]!r}; available: {', '.join(available())}")
        raise typer.Exit(EXIT_BAD_INPUT)
    cfg, ds, derived = load_derived(data, config, strategy, seed, map_, design)
    results = []
    with analysis_errors(ds.source):
        for name in names:
            info(f"{ds.label}: sensitivity analysis {name} ...")
            results.append(run_sensitivity(name, derived, cfg, cache_dir=cache_dir))
    if out is not None:
        for r in results:
            atomic_write_text(out / f"sensitivity_{r.name}.csv", r.table.to_csv(index=False, lineterminator="\n"))
            for fname, fig in r.figures.items():
                save_figure(fig, out, fname)
        info(f"wrote tables and figures to {out}")
    if as_json:
        typer.echo(json.dumps({"data_label": ds.label, "synthetic": ds.synthetic, "results": [
            {"name": r.name, "title": r.title, "text": r.text, "settings": r.settings,
             "table": r.table.replace({float("nan"): None}).to_dict(orient="records")} for r in results]},
            indent=2, default=json_default))
        return
    for r in results:
        typer.echo(f"== {ds.label}: {r.title} ==")
        for line in r.text:
            typer.echo(line)
        typer.echo(r.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        typer.echo("")
