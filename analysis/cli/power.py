"""``rajak power``: sample size and assurance by simulation (a thin layer over :mod:`analysis.power`).

Without ``--data`` the next study is simulated from the SYNTHETIC twin's calibrated design (or a
``--design`` file); with ``--data FILE`` (and the study-design flags every data command takes) it is
drawn like the user's own study (:func:`analysis.power.design_from_data`).

Register with ``app.command()(power)`` in :mod:`analysis.cli.app`. Results go to stdout (a table, or
JSON with ``--json``), messages and the progress bar to stderr; bad input ends with one line
``rajak: error: ...`` and exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from analysis.cli.common import EXIT_BAD_INPUT, DesignFlags, design_options

__all__ = ["power", "power_out_of_memory_text"]


def _err(msg: str) -> None:
    typer.echo(f"rajak: error: {msg}", err=True)


def _info(msg: str) -> None:
    typer.echo(msg, err=True)


def _analyses(values: list[str] | None) -> tuple[str, ...]:
    from analysis.power import ANALYSES

    out: list[str] = []
    for v in values or ["lmm"]:
        out += [a.strip() for a in v.split(",") if a.strip()]
    bad = [a for a in out if a not in ANALYSES]
    if bad or not out:
        raise ValueError(f"unknown analysis {bad[0] if bad else ''!r}; choose from {', '.join(ANALYSES)}")
    return tuple(dict.fromkeys(out))


def _dropout(text: str) -> float | tuple[float, ...]:
    """``--dropout``: one number (fraction without the final visit) or a comma-separated list (hazard
    per scheduled post-baseline visit)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--dropout must be a number or a comma-separated list of per-visit hazards, "
                         f"got {text!r}") from None
    bad = [v for v in values if not 0.0 <= v < 1.0]
    if bad:
        raise ValueError(f"--dropout values must be in [0, 1), got {bad[0]:g}")
    return values[0] if len(values) == 1 else tuple(values)


def _assurance_prior(design, prior_fits: list[Path] | None, seed: int, log, data: Path | None = None):
    """The design prior, one per site of the design: saved fits (``--prior-fit``, one per site, in
    the order of the sites), or the trajectory LMM fitted now to ``--data`` (default: the embedded
    twin) at every site; per-site priors are paired draw by draw (:meth:`DesignPrior.combine`)."""
    from analysis.power import DesignPrior

    sites = list(design.sites)
    if prior_fits:
        from analysis.engine.sampling import load_fit

        if len(prior_fits) != len(sites):
            raise ValueError(f"--prior-fit: give one saved fit per site of the design ({', '.join(sites)}), "
                             f"got {len(prior_fits)}")
        fits = []
        for p in prior_fits:
            if not Path(p).is_file():
                raise ValueError(f"prior fit {p} does not exist")
            fits.append(load_fit(p))
    else:
        from analysis.bayes.fit import analysis_frame
        from analysis.engine.sampling import sample
        from analysis.study.clinical import derive
        from analysis.study.data import load_dataset, load_twin
        from models.trajectory import build_trajectory_model

        ds = load_twin() if data is None else load_dataset(data)
        frame, _ = analysis_frame(derive(ds.frame))
        fits = []
        for site in sites:
            log(f"assurance: fitting the trajectory LMM at {site} to {ds.label} for the design prior")
            fit = sample(build_trajectory_model(frame, site), seed=seed)
            if not fit.passed:
                log(f"WARNING: the design-prior fit at {site} FAILED its diagnostics: "
                    + "; ".join(fit.diagnostics.failures))
            fits.append(fit)
    priors = [DesignPrior.from_fit(f, design.design, site=s, generator=design.generator) for f, s in zip(fits, sites)]
    return priors[0] if len(priors) == 1 else DesignPrior.combine(priors)


@design_options
def power(
    n: Annotated[str, typer.Option("--n", help="Sample sizes: START:STOP:STEP (stop included), N1,N2,... or N.")] = "20:200:20",
    sims: Annotated[int, typer.Option(help="Simulated studies per sample size.")] = 500,
    analysis: Annotated[Optional[list[str]], typer.Option("--analysis", help="lmm, mmrm, completers or bayes (repeatable or comma-separated).")] = None,
    dropout: Annotated[Optional[str], typer.Option(help="One number: expected fraction of patients without the final visit (0 <= d < 1). A comma-separated list (e.g. 0.1,0.15,0.2): hazard of dropout at each scheduled post-baseline visit (the twin: months 3, 6, 12; --data: the study's visits; default there: the observed retention).")] = None,
    mechanism: Annotated[Optional[str], typer.Option(help="The twin's dropout mechanism: mcar, mar (via DAS28) or mnar (via the unobserved spine change).")] = None,
    bmd_log_odds: Annotated[float, typer.Option(help="MNAR: log-odds of dropout per % of true spine change.")] = -0.2,
    design_file: Annotated[Optional[Path], typer.Option("--design", help="Power design file (JSON or TOML) of the twin's simulator.")] = None,
    generator: Annotated[Optional[str], typer.Option(help="data (with --data, the default: studies like yours), cohort (the twin simulator) or gaussian (the closed form's LMM).")] = None,
    assurance: Annotated[bool, typer.Option("--assurance", help="Draw design parameters from a design prior (a fitted model's posterior).")] = False,
    prior_fit: Annotated[Optional[list[Path]], typer.Option(help="Saved fit (rajak fit --save) for the design prior, one per site (repeatable); default: fit the LMM to --data now.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Your study: the next study is sized from it (its design, allocation, retention, effects and variance components); with --generator cohort/gaussian and --assurance, the study whose LMM posterior is the design prior. Default: the embedded SYNTHETIC twin's calibrated design.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler tcp://HOST:PORT (default: local processes).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Local worker processes (default: CPU count).")] = None,
    seed: Annotated[int, typer.Option(help="Root seed.")] = 1,
    target: Annotated[float, typer.Option(help="Target power / assurance for the smallest n.")] = 0.8,
    alpha: Annotated[float, typer.Option(help="Two-sided level of the frequentist tests.")] = 0.05,
    draws: Annotated[int, typer.Option(help="Bayesian: draws per chain.")] = 1000,
    tune: Annotated[int, typer.Option(help="Bayesian: tuning steps per chain.")] = 1000,
    chains: Annotated[int, typer.Option(help="Bayesian: chains.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Emit the summary, smallest n and closed form as JSON.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output directory: resumable raw results, tables, figure.")] = None,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal).")] = None,
    design: DesignFlags | None = None,
) -> None:
    """Sample size or assurance of the next study, by simulation (power curve, smallest n, MC SEs).

    With --data FILE the next study is drawn like yours: its visits, sites and groups (--group,
    --site, ... as for every command), the observed allocation and retention, and per site the
    effects and variance components of the LMM fitted to your data."""
    from analysis.power import PowerSettings, load_power_design, parse_n_grid, run_power

    design = design or DesignFlags()
    from_data = data is not None and generator in (None, "data")
    try:
        extra: dict = {}
        grid = parse_n_grid(n)
        flags = design.study_overrides()
        if not from_data and set(flags) - {"sites"}:
            flag = "--" + min(set(flags) - {"sites"}).replace("_", "-")
            raise ValueError(f"{flag} describes your study: add --data FILE" if data is None else
                             f"{flag} describes the study sized by --data; it does not apply to --generator {generator}")
        if from_data:
            if design_file is not None:
                raise ValueError("--design describes the twin's simulator; with --data the design is your study's")
            if mechanism is not None:
                raise ValueError("--mechanism sets the twin's dropout model; a design from --data has MCAR dropout "
                                 "at your study's retention (--dropout overrides it)")
            pdz = _design_from_data(data, design, grid, seed, None if dropout is None else _dropout(dropout))
        else:
            pdz = _twin_design(design_file, grid, design, generator, dropout, mechanism, bmd_log_odds)
            if design_file is not None:
                extra = load_power_design(design_file)[1]
        if sims < 1:
            raise ValueError(f"--sims must be at least 1, got {sims}")
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        if not 0.0 < target < 1.0:
            raise ValueError(f"--target must be in (0, 1), got {target:g}")
        analyses = _analyses(analysis)
        if from_data:
            from analysis.power import estimable_analyses

            kept, reasons = estimable_analyses(pdz, analyses)
            if reasons and analysis:  # asked for by name: say why it cannot run
                raise ValueError(reasons[0])
            if reasons:  # the default LMM: the endpoint analysis stands in
                _info(f"{reasons[0]}; simulating the MMRM (the ANCOVA of the change at one post-baseline visit)")
                analyses = kept or ("mmrm",)
        settings_kw = dict(extra.get("settings", {}) or {})
        settings_kw.update(alpha=alpha, draws=draws, tune=tune, chains=chains)
        settings = PowerSettings(**settings_kw)
        if scheduler is not None:
            from analysis.power import check_scheduler

            check_scheduler(scheduler)
        if not prior_fit and isinstance(extra.get("prior"), dict) and extra["prior"].get("fit"):
            given = extra["prior"]["fit"]
            prior_fit = [Path(f) for f in ([given] if isinstance(given, str) else given)]
            prior_fit = [f if f.is_absolute() or design_file is None else design_file.parent / f for f in prior_fit]
        if data is not None and not from_data and not assurance:
            raise ValueError("--data gives the design prior of --assurance; add --assurance")
        if not assurance:
            prior = None
        elif from_data:
            prior = _data_prior(pdz, prior_fit, seed)
            _info(f"assurance: design parameters drawn from the {prior.source}")
        else:
            prior = _assurance_prior(pdz, prior_fit, seed, _info, data)
        if pdz.dropout is not None and pdz.generator == "cohort":
            if pdz.per_visit_dropout:
                _info(f"calibrating the dropout hazards to {', '.join(f'{h:g}' for h in pdz.dropout)} "
                      "at the post-baseline visits ...")
            else:
                _info(f"calibrating the dropout hazard to {pdz.dropout:g} lost before the final visit ...")
        res = run_power(pdz, sims, seed, analyses=analyses, settings=settings, prior=prior, out=out,
                        scheduler=scheduler, workers=workers, progress=progress, log=_info, target=target)
    except (ValueError, TypeError, KeyError) as err:  # DataValidationError is a ValueError: one line too
        _err(str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise typer.Exit(EXIT_BAD_INPUT)
    except OSError as err:
        _err(f"cannot run the power study: {err}")
        raise typer.Exit(EXIT_BAD_INPUT)
    except MemoryError as err:  # one line saying what to ask for instead, not a traceback
        _err(power_out_of_memory_text(err, sims, workers, n, analysis))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    _report(res, sims, seed, target, out, as_json)


def power_out_of_memory_text(exc: MemoryError, sims: int, workers: int | None, n: str,
                             analysis: list[str] | None = None) -> str:
    """The one line ``rajak power`` ends with when memory runs out: where, and what to ask for instead.

    Parameters
    ----------
    exc : MemoryError
        The error; an :class:`analysis.common.memory.WorkerOutOfMemory` says it ran out in (or killed)
        a worker process.
    sims : int
        Simulated studies per sample size asked for.
    workers : int or None
        ``--workers`` as given (``None``: one per CPU).
    n : str
        ``--n`` as given.
    analysis : list of str, optional
        ``--analysis`` as given.

    Returns
    -------
    str
        ``out of memory in <where> (<size>): ask for ...``.
    """
    from analysis.common.memory import WorkerOutOfMemory

    worker = isinstance(exc, WorkerOutOfMemory)
    where = exc.what if worker else "the power study"
    asks = (["one worker process (--workers 1)"] if worker and workers != 1 else []) + [
        f"fewer simulated studies per sample size (--sims {max(1, sims // 4)})",
        f"smaller sample sizes (--n, now {n})"]
    if any("bayes" in a for a in analysis or ()):
        asks.append("no Bayesian analysis of each simulated study (--analysis lmm)")
    return (f"out of memory in {where} ({sims} simulated studies per n): ask for "
            + "; ".join(asks[:-1]) + "; or " + asks[-1])


def _twin_design(design_file: Path | None, grid: tuple[int, ...], design: DesignFlags, generator: str | None,
                 dropout: str | None, mechanism: str | None, bmd_log_odds: float):
    """The twin's power design: a design file or the default, with the command-line changes."""
    from analysis.power import PowerDesign, load_power_design

    if generator == "data":
        raise ValueError("--generator data sizes the next study from your study: add --data FILE")
    pdz = load_power_design(design_file)[0] if design_file is not None else PowerDesign()
    updates: dict = {"n": grid}
    if design.site:
        from analysis.study.design import parse_sites

        updates["sites"] = tuple(parse_sites(design.site))
    if generator is not None:
        updates["generator"] = generator
    if dropout is not None:
        updates["dropout"] = _dropout(dropout)
    pdz = PowerDesign.from_dict({**{k: getattr(pdz, k) for k in ("design", "sites", "generator", "grouping",
                                                                  "strategy", "rule", "dropout")}, **updates})
    if mechanism is not None:
        if mechanism not in ("mcar", "mar", "mnar"):
            raise ValueError(f"--mechanism must be mcar, mar or mnar, got {mechanism!r}")
        dm = {"mcar": {"dropout.activity_log_odds": 0.0, "dropout.bmd_log_odds": 0.0},
              "mar": {"dropout.bmd_log_odds": 0.0},
              "mnar": {"dropout.bmd_log_odds": bmd_log_odds}}[mechanism]
        pdz = pdz.with_updates(**{"dropout.mechanism": mechanism, **dm})
    return pdz


def _design_from_data(data: Path, design: DesignFlags, grid: tuple[int, ...], seed: int, dropout):
    """The power design drawn like the study in ``data`` (its design flags as every command reads them)."""
    from analysis.cli.common import load_derived
    from analysis.power import design_from_data

    cfg, ds, derived = load_derived(data, None, None, seed, None, design)
    _info(f"sizing the next study from {ds.label}: fitting the LMM at {', '.join(cfg.sites)}")
    strategy = cfg.undefined_responders if cfg.undefined_responders in ("last_observed", "exclude") else "exclude"
    pdz = design_from_data(derived, ds.design, n=grid, sites=cfg.sites, strategy=strategy,
                           rule=cfg.responder.rule(), dropout=dropout, source=ds.source)
    _info(f"design: {pdz.describe()}")
    for note in pdz.data_model.notes:
        _info(f"WARNING: {note}")
    return pdz


def _data_prior(pdz, prior_fits: list[Path] | None, seed: int):
    """A design prior of a design from data: saved trajectory-LMM fits mapped to it (two groups), else
    the REML sampling distribution of its slopes."""
    from analysis.power import DesignPrior

    model = pdz.data_model
    if not prior_fits:
        return DesignPrior.from_data_model(model, 1000, seed)
    from analysis.engine.sampling import load_fit

    if len(prior_fits) != len(pdz.sites):
        raise ValueError(f"--prior-fit: give one saved fit per site ({', '.join(pdz.sites)}), got {len(prior_fits)}")
    priors = []
    for p, site in zip(prior_fits, pdz.sites):
        if not Path(p).is_file():
            raise ValueError(f"prior fit {p} does not exist")
        priors.append(DesignPrior.from_fit_data(load_fit(p), model, site=site))
    return priors[0] if len(priors) == 1 else DesignPrior.combine(priors)


def _report(res, sims: int, seed: int, target: float, out: Path | None, as_json: bool) -> None:
    """The result on stdout: JSON, or the design, the power table (each simulated row beside its
    closed form and the z-score of their gap, with a warning line where it exceeds 3) and the
    smallest n."""
    if out is not None:
        _info(f"wrote {out}/ (raw.parquet, summary.csv, smallest_n.csv, power_table.csv, power_curve.png/.svg)")
    failed = int((~res.raw["ok"].astype(bool)).sum())
    if failed:
        _info(f"WARNING: {failed} fits failed (counted as no success); see the 'message' column of raw.parquet")
    if as_json:
        typer.echo(json.dumps(res.to_dict(target), indent=2))
        return
    kind = res.kind
    drop = res.design.dropout
    typer.echo(f"== {kind} by simulation: {sims} studies per n, seed {seed}, generator {res.design.generator}, "
               f"dropout {drop if drop is not None else 'as designed' if res.design.generator != 'data' else 'as observed'} ==")
    typer.echo(f"design: {res.design.describe()}")
    fmt = {"index": False, "float_format": lambda v: f"{v:.3f}", "na_rep": "-"}
    summary = res.closed_form_gap()
    cols = [c for c in ["site", "contrast", "analysis", "criterion", "n", "power", "mc_se", "ci_low", "ci_high",
                        "closed_form_power", "z_gap", "failed"] if c in summary.columns]
    typer.echo(summary[cols].rename(columns={"power": kind, "closed_form_power": "closed_form"}).to_string(**fmt))
    if res.prior is None:
        typer.echo("(closed_form: power of the same test on the same simulated design, analyses lmm and mmrm; "
                   "z_gap = (simulated - closed form) / Monte-Carlo SE)")
        from analysis.power.summary import gap_warnings

        for line in gap_warnings(summary):
            typer.echo(line)
    else:
        typer.echo("(closed_form: power at the design's point values; the assurance averages over the design prior)")
    typer.echo(f"\nSmallest n reaching {kind} {target:g}:")
    typer.echo(res.smallest_n(target).to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    typer.echo("(n_min: estimate reaches the target; n_min_sure: its lower 95% Monte-Carlo limit does; - : not in the grid)")
