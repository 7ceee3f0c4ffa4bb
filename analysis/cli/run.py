"""``rajak run``: the whole pipeline into ``outputs/<run-id>/``."""

from __future__ import annotations

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
    parse_map,
)
from analysis.cli.ice_options import IceFlags, apply_ice, ice_options
from analysis.run.config import ConfigError, load_config
from analysis.study.data import DataValidationError
from analysis.study.design import DesignError

__all__ = ["run", "run_out_of_memory_text"]


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

    cfg = None

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
    except MemoryError as exc:  # one line saying what to ask for instead, not a traceback
        err(run_out_of_memory_text(exc, cfg))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(str(result.run_dir))


def run_out_of_memory_text(exc: MemoryError, cfg) -> str:
    """The one line ``rajak run`` ends with when memory runs out: where, on what, and what to ask for instead.

    Parameters
    ----------
    exc : MemoryError
        The error; a :class:`analysis.run.pipeline.RunOutOfMemory` names the stage it ran out in.
    cfg : RunConfig or None
        The run's configuration (its draws, chains, sites, sensitivity analyses and simulations), when
        it was read before memory ran out.

    Returns
    -------
    str
        ``out of memory in <stage> (<size>): ask for ...``.
    """
    stage = getattr(exc, "stage", None)
    what = getattr(exc, "what", "the run")
    n_pat = getattr(exc, "n_patients", None)
    sites = tuple(getattr(exc, "sites", ()) or (cfg.sites if cfg is not None and cfg.sites else ()))
    draws, chains = (cfg.draws, cfg.chains) if cfg is not None else (1000, 4)
    worker = bool(getattr(exc, "worker", False))  # in a worker process: fewer of them first
    size = ", ".join(x for x in (f"{n_pat} patients" if n_pat else "",
                                 f"{len(sites)} sites" if len(sites) > 1 else "",
                                 f"{chains} chains x {draws} draws"
                                 if stage in ("bayes", "sensitivity", None) or (stage == "figures" and worker) else "")
                     if x)
    one_site = "one --site at a time" if len(sites) != 1 else ""
    fewer = f"fewer draws or chains (e.g. --draws {max(100, draws // 4)} --chains 2)"
    no_bayes = "no Bayesian models (bayes_models = [] in the plan)"
    fewer_sens = "fewer sensitivity analyses (--sensitivity NAME, or sensitivity = [] in the plan)"
    asks = {
        "load": [one_site, "the data split into smaller files"],
        "derive": [one_site],
        "frequentist": ["no multiple imputation (mi_imputations = 0 in the plan)", one_site],
        "figures": (["the figures drawn one at a time in the run's own process (figure_workers = 0 in the plan)",
                     fewer, one_site] if worker else [one_site]),
        "bayes": [fewer, one_site, no_bayes],
        "sensitivity": [fewer_sens, fewer, one_site],
        "power": ((["one worker process (power_workers = 1 in the plan)"] if worker else [])
                  + ["fewer simulated studies (--power-sims 50, or 0 to skip the sample-size stage)"]),
        "report": [fewer_sens, one_site],
    }.get(stage, [fewer, one_site, fewer_sens, no_bayes])
    asks = [a for a in asks if a]
    text = "; ".join(asks[:-1]) + ("; or " if len(asks) > 1 else "") + asks[-1]
    if stage in ("bayes", "sensitivity", None) and os.environ.get("RAJAK_PER_PATIENT", "").strip().lower() == "always":
        text += "; and leave RAJAK_PER_PATIENT unset (per-patient effects and log-likelihoods on request)"
    return f"out of memory in {what}" + (f" ({size})" if size else "") + f": ask for {text}"
