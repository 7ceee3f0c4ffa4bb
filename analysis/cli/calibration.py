"""``rajak validate-methods``: the calibration study of rajak's estimators (a thin layer over
:mod:`analysis.calibration`).

Every estimator simulates ``--datasets`` data sets with a known truth, fits them, and the table
(bias, empirical vs model SE, coverage with its Monte-Carlo SE, time per data set, verdict) goes to
stdout; with ``--out DIR`` the run is resumable and writes ``calibration.csv``, ``calibration.md``,
``raw.csv`` and ``calibration_coverage.png``/``.svg``. ``--sbc lmm`` (or ``mmrm``) runs the
simulation-based calibration of :mod:`analysis.calibration.sbc` instead (``--datasets`` simulations).
Register with ``app.command(name=
"validate-methods")(validate_methods)``. Bad input ends with one line and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from analysis.cli.common import EXIT_BAD_INPUT, err, info

__all__ = ["validate_methods"]


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from analysis.calibration import get_estimator

    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ValueError("--estimators names no estimator")
    for n in names:
        get_estimator(n)
    return names


def validate_methods(
    estimators: Annotated[Optional[str], typer.Option(help="Comma-separated estimators (default: all; --list shows them).")] = None,
    datasets: Annotated[int, typer.Option(help="Simulated data sets per estimator (the full study: 200).")] = 200,
    out: Annotated[Optional[Path], typer.Option(help="Output directory: resumable raw results, CSV, Markdown, figure.")] = None,
    workers: Annotated[int, typer.Option(help="Local worker processes (1: this process).")] = 1,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler tcp://HOST:PORT (default: local).")] = None,
    seed: Annotated[int, typer.Option(help="Root seed (data set r of estimator e is seeded by (seed, e, r)).")] = 1,
    chunk_size: Annotated[int, typer.Option(help="Data sets per chunk (the unit of resumption).")] = 10,
    list_: Annotated[bool, typer.Option("--list", help="List the estimators with their designs and stop.")] = False,
    sbc: Annotated[Optional[str], typer.Option(help="Instead: simulation-based calibration of a model (lmm or mmrm) "
                                               "with --datasets simulations.")] = None,
) -> None:
    """Calibrate rajak's estimators by simulation: bias, SE, 95% coverage (with Monte-Carlo SE), run time."""
    from analysis.calibration import registered, run_calibration

    if sbc is not None:
        _run_sbc(sbc, datasets, seed, out)
        return
    if list_:
        for name, est in registered().items():
            typer.echo(f"{name:26s} {est.family:16s} {est.design}")
        return
    try:
        names = _names(estimators)
        if datasets < 1:
            raise ValueError(f"--datasets must be at least 1, got {datasets}")
        if workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        if chunk_size < 1:
            raise ValueError(f"--chunk-size must be at least 1, got {chunk_size}")
        if scheduler is not None:
            from analysis.power import check_scheduler

            check_scheduler(scheduler)
        command = " ".join(["rajak validate-methods", *([f"--estimators {','.join(names)}"] if names else []),
                            f"--datasets {datasets}", f"--seed {seed}"])
        info(f"calibrating {len(names) if names else len(registered())} estimators x {datasets} data sets ...")
        res = run_calibration(names, datasets=datasets, seed=seed, out=out, workers=workers, scheduler=scheduler,
                              chunk_size=chunk_size, command=command)
    except ValueError as exc:
        err(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise typer.Exit(EXIT_BAD_INPUT)
    except OSError as exc:
        err(f"cannot run the calibration study: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    _print(res)
    if out is not None:
        info(f"wrote {out}/ (calibration.csv, calibration.md, raw.csv, calibration_coverage.png/.svg, chunks/)")


def _run_sbc(model: str, sims: int, seed: int, out: Path | None) -> None:
    """``--sbc MODEL``: :func:`analysis.calibration.sbc.run_sbc` with its default sampler settings."""
    from analysis.calibration.sbc import SBC_MODELS, run_sbc

    if model not in SBC_MODELS:
        err(f"--sbc must be one of {', '.join(SBC_MODELS)}, got {model!r}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if sims < 1:
        err(f"--datasets must be at least 1, got {sims}")
        raise typer.Exit(EXIT_BAD_INPUT)
    info(f"simulation-based calibration of {model}: {sims} simulations ...")
    res = run_sbc(model, sims, seed=seed, out=out)
    typer.echo(f"== SBC {model}: {sims} simulations, rank of the truth among L = {res.n_ranks} draws, seed {seed} ==")
    typer.echo(res.uniformity.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if out is not None:
        info(f"wrote {out}/ (sbc_{model}_ranks.csv, sbc_{model}_uniformity.csv, sbc_{model}_ranks.png/.svg)")


def _print(res) -> None:
    s = res.summary
    cols = ["estimator", "datasets", "failed", "truth", "bias", "empirical_se", "model_se", "se_ratio", "coverage",
            "coverage_mcse", "excludes_zero", "seconds_per_dataset"]
    typer.echo(f"== calibration: {res.meta['datasets']} data sets per estimator, seed {res.meta['seed']}, "
               f"rajak {res.meta['version']}, {res.meta['date']} ==")
    typer.echo(s[cols].rename(columns={"seconds_per_dataset": "s/dataset", "excludes_zero": "excl0"})
               .to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))
    typer.echo("\nverdicts (93-97% coverage of the nominal 95% interval):")
    for r in s.itertuples(index=False):
        typer.echo(f"  {r.estimator}: {r.verdict}")
    total = float((res.raw["fit_seconds"] + res.raw["simulate_seconds"]).sum())
    typer.echo(f"(fitting and simulating these rows took {total:.1f} s, resumed rows included)")
