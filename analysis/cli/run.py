"""``rajak run``: the whole pipeline into ``outputs/<run-id>/``."""

from __future__ import annotations

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
    parse_map,
)
from analysis.cli.ice_options import IceFlags, apply_ice, ice_options
from analysis.run.config import ConfigError, load_config
from analysis.study.data import DataValidationError
from analysis.study.design import DesignError

__all__ = ["run"]


@ice_options
@design_options
def run(
    data: Annotated[Path | None, typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML analysis plan.")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Where run directories go (default: outputs).")] = None,
    run_id: Annotated[str | None, typer.Option(help="Name of the run directory.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for everything random in the run.")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN (repeatable).")] = None,
    draws: Annotated[int | None, typer.Option(help="Posterior draws per chain.")] = None,
    tune: Annotated[int | None, typer.Option(help="Tuning steps per chain.")] = None,
    chains: Annotated[int | None, typer.Option(help="Chains.")] = None,
    sensitivity_: Annotated[list[str] | None, typer.Option("--sensitivity", help="Sensitivity analyses to run (repeatable; default from the plan).")] = None,
    power_sims: Annotated[int | None, typer.Option("--power-sims", min=0, help="Simulated studies per n in the sample-size stage (0: skip it; default from the plan).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run directory.")] = False,
    design: DesignFlags | None = None,
    ice: IceFlags | None = None,
) -> None:
    """Run the analysis pipeline and write outputs/<run-id>/."""
    from analysis.run.pipeline import RunExistsError
    from analysis.run.pipeline import run as run_pipeline

    try:
        design = design or DesignFlags()
        sites = None
        if design.site:
            from analysis.study.design import parse_sites

            sites = tuple(parse_sites(design.site))
        cfg = load_config(config, data=str(data) if data else None, study_overrides=design.study_overrides(),
                          sites=sites,
                          output_dir=str(output_dir) if output_dir else None, run_id=run_id, seed=seed,
                          column_map=parse_map(map_) or None, draws=draws, tune=tune, chains=chains,
                          sensitivity=tuple(sensitivity_) if sensitivity_ else None, power_sims=power_sims)
        cfg = apply_ice(cfg, ice)
        with analysis_errors(cfg.data or "the embedded twin"):
            result = run_pipeline(cfg, force=force, log=info)
    except (DataValidationError, ConfigError, DesignError, RunExistsError) as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(str(result.run_dir))
