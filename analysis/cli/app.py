"""The ``rajak`` command line: a thin layer over the Python API.

typer (on click) gives typed options, ``--help`` on every command and exit status 2 for usage
errors. Messages and progress go to stderr; results to stdout. Bad input ends with one line
``rajak: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from analysis.run.config import ConfigError, load_config
from analysis.study.data import DataValidationError, load_dataset
from analysis.common.io import FigureWriteError

__all__ = ["app", "main"]

app = typer.Typer(
    name="rajak",
    help="Bayesian and mixed-model reanalysis of longitudinal BMD studies "
         "(default data: a SYNTHETIC twin of the RAJAK baricitinib cohort).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_BAD_INPUT = 2
_PATH_ERRORS = (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)


def _err(msg: str) -> None:
    typer.echo(f"rajak: error: {msg}", err=True)


def _info(msg: str) -> None:
    typer.echo(msg, err=True)


@contextmanager
def _analysis_errors(source: str):
    """An analysis that cannot run on valid but unsuitable data (too few patients, an empty group,
    a rank-deficient design) ends the command with one line and exit status 2, not a traceback.
    ``RAJAK_DEBUG=1`` re-raises, for developers."""
    import numpy as np

    try:
        yield
    except (DataValidationError, ConfigError):
        raise
    except (ValueError, KeyError, IndexError, ZeroDivisionError, np.linalg.LinAlgError) as err:
        if os.environ.get("RAJAK_DEBUG") == "1":
            raise
        what = f"missing {err}" if isinstance(err, KeyError) else str(err).strip().splitlines()[0] if str(err) else ""
        _err(f"{source}: the analysis cannot run on these data ({type(err).__name__}: {what}); "
             f"RAJAK_DEBUG=1 shows where")
        raise typer.Exit(EXIT_BAD_INPUT)


def _parse_map(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--map takes FILE_COLUMN=CONTRACT_COLUMN, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file, one row per patient-visit.")],
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN (repeatable).")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of a CSV file.")] = "utf-8",
    endpoint_month: Annotated[float, typer.Option(help="Month that defines a completer.")] = 12,
    all_problems: Annotated[bool, typer.Option("--all", help="List every problem, one per line.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the validation report as JSON.")] = False,
) -> None:
    """Check a data file against the data contract and summarise it."""
    try:
        ds = load_dataset(file, _parse_map(map_), encoding=encoding, endpoint_month=endpoint_month)
    except DataValidationError as err:
        if all_problems:
            for p in err.problems:
                _err(p.message)
        else:
            _err(str(err))
        raise typer.Exit(EXIT_BAD_INPUT)
    except ConfigError as err:
        _err(str(err))
        raise typer.Exit(EXIT_BAD_INPUT)
    if as_json:
        typer.echo(json.dumps(ds.report.to_dict(), indent=2, default=str))
    else:
        typer.echo(ds.report.to_text())


@app.command()
def twin(
    seed: Annotated[Optional[int], typer.Option(help="Seed (default: the shipped twin's seed).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the twin CSV here (provenance JSON beside it).")] = None,
    report: Annotated[bool, typer.Option("--report", help="Print the calibration table (published | twin).")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Run the calibration search, then write to --out.")] = False,
    seeds: Annotated[int, typer.Option(help="Seeds searched per grid point by --calibrate.")] = 1000,
) -> None:
    """Regenerate the synthetic RAJAK twin, or show how it matches the published figures."""
    from analysis.rajak import twin as tw
    from models.simulate import Design

    if not (report or out or calibrate):
        _err("say what to do: --report, --out FILE (regenerate) or --calibrate --out FILE")
        raise typer.Exit(EXIT_BAD_INPUT)
    if calibrate:
        if out is None:
            _err("--calibrate needs --out FILE (the shipped twin is never overwritten implicitly)")
            raise typer.Exit(EXIT_BAD_INPUT)
        _info(f"calibrating: {len(tw.CALIBRATION_GRID)} grid parameters x {seeds} seeds ...")
        res = tw.calibrate(range(seeds), progress=lambda d, n: _info(f"  {d}/{n}"))
        design, seed = res.best.design, res.best.seed
        search = {"grid": {k: list(v) for k, v in res.grid.items()}, "seeds": list(res.seeds),
                  "n_evaluated": res.n_evaluated, "distance": res.best.distance}
        tw.write_twin(design, seed, out, out.with_suffix(".json"), search=search)
        _info(f"wrote {out} and {out.with_suffix('.json')} (seed {seed}, distance {res.best.distance:.2f})")
    elif out is not None:
        prov = tw.load_provenance()
        design = Design.from_dict(prov["design"])
        use_seed = prov["seed"] if seed is None else seed
        tw.write_twin(design, use_seed, out, out.with_suffix(".json"),
                      search=prov.get("calibration_search") if use_seed == prov["seed"] else None)
        _info(f"wrote {out} and {out.with_suffix('.json')} (SYNTHETIC twin, seed {use_seed})")
    if report:
        from analysis.study.clinical import derive
        from analysis.study.data import load_twin
        from analysis.rajak.published import paper_analysis, replication_table

        ds = load_twin() if out is None else load_dataset(out, synthetic=True)
        table = replication_table(paper_analysis(derive(ds.frame)))
        typer.echo(f"SYNTHETIC RAJAK twin ({ds.source}): published figure vs the paper's analysis on the twin")
        typer.echo(table.rename(columns={"this_analysis": "twin"}).drop(columns=["description", "kind"])
                   .to_string(index=False, float_format=lambda v: f"{v:.4g}"))


@app.command()
def frequentist(
    data: Annotated[Optional[Path], typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Undefined responder status: exclude, last_observed or unknown.")] = None,
    imputations: Annotated[int, typer.Option(help="Multiple imputations (0 = skip MI).")] = 50,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the imputations.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit every table as JSON on stdout.")] = False,
) -> None:
    """The frequentist primary analysis: the replication table, completers tests, LMM, MMRM, MI."""
    from analysis.frequentist.primary import frequentist_analysis
    from analysis.rajak.published import paper_analysis, replication_table

    cfg, ds, derived = _load_derived(data, config, strategy, seed, map_)
    _info(f"{ds.label}: fitting completers tests, LMM and MMRM per site"
          + (f", {imputations} imputations" if imputations else ""))
    with _analysis_errors(ds.source):
        res = frequentist_analysis(derived, cfg.sites, cfg.undefined_responders, cfg.responder.rule(),
                                   cfg.endpoint_month, mi_imputations=imputations, seed=cfg.seed,
                                   mmrm_covariances=cfg.mmrm_covariances)
        rep = replication_table(paper_analysis(derived, cfg.endpoint_month))
    if as_json:
        out = {"data_label": ds.label, "synthetic": ds.synthetic, "responder_rule": _responder_text(cfg, derived),
               "replication": rep.replace({float("nan"): None}).to_dict(orient="records"), **res.to_dict()}
        typer.echo(json.dumps(out, indent=2, default=_json_default))
        return
    fmt = {"float_format": lambda v: f"{v:.4g}", "index": False}
    typer.echo(f"== {ds.label} ==")
    typer.echo(f"responders: {_responder_text(cfg, derived)}; undefined status: {res.strategy}")
    typer.echo("\nPublished figures vs this analysis (completers):")
    typer.echo(rep.drop(columns=["description", "kind"]).to_string(**fmt))
    typer.echo("\nCompleters tests (t and Wilcoxon; 'exact' says which p-values are exact):")
    typer.echo(_completers_text(res.completers.table).to_string(**fmt))
    typer.echo("\nKey estimands (estimate, SE, Satterthwaite/Welch df, 95% CI, p):")
    typer.echo(res.estimands.to_string(**fmt))
    typer.echo(f"\nMMRM LS-means of the change per visit and group ({res.lsmeans['covariance'].iloc[0]}, "
               "g/cm^2 and %):" if len(res.lsmeans) else "")
    primary = res.lsmeans[res.lsmeans["covariance"] == res.lsmeans["covariance"].iloc[0]] if len(res.lsmeans) else None
    if primary is not None:
        typer.echo(primary.drop(columns=["covariance"]).to_string(**fmt))
    for note in res.notes:
        typer.echo(f"WARNING: {note}")


def _completers_text(table):
    """The completers tests in a compact form for the terminal."""
    cols = [c for c in ("site", "measure", "analysis", "group", "test", "n", "estimate", "ci_low", "ci_high", "p",
                        "exact") if c in table.columns]
    return table[cols]


def _responder_text(cfg, derived) -> str:
    """The responder rule, and how many patients' status the user supplied instead."""
    text = cfg.responder.rule().describe()
    src = derived.drop_duplicates("patient_id")["responder_source"]
    given = int((src == "user-supplied").sum())
    return text if not given else f"user-supplied for {given} of {src.size} patients, else {text}"


def _json_default(obj):
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj.replace({np.nan: None}).to_dict(orient="records")
    if isinstance(obj, (np.floating, np.integer)):
        return None if isinstance(obj, np.floating) and not np.isfinite(obj) else obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return str(obj)


def _load_derived(data, config, strategy, seed, map_):
    """Configuration, dataset and derived frame; bad input ends the command with exit status 2."""
    from analysis.study.clinical import derive
    from analysis.study.data import load_for_config

    try:
        cfg = load_config(config, data=str(data) if data else None, undefined_responders=strategy, seed=seed,
                          column_map=_parse_map(map_) or None)
        ds = load_for_config(cfg)
        with _analysis_errors(ds.source):
            derived = derive(ds.frame, cfg.responder.rule(), cfg.tscore.reference_object(), cfg.endpoint_month)
    except (DataValidationError, ConfigError) as err:
        _err(str(err))
        raise typer.Exit(EXIT_BAD_INPUT)
    return cfg, ds, derived


@app.command()
def fit(
    model: Annotated[str, typer.Option(help="lmm, mmrm, joint, activity or robust.")] = "lmm",
    site: Annotated[str, typer.Option(help="spine or femoral_neck.")] = "spine",
    priors: Annotated[str, typer.Option(help="Prior set: default, weakly_informative, sceptical, literature, vague.")] = "default",
    draws: Annotated[int, typer.Option(min=1, help="Draws per chain.")] = 1000,
    tune: Annotated[int, typer.Option(min=1, help="Tuning steps per chain.")] = 1000,
    chains: Annotated[int, typer.Option(min=1, help="Chains.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed.")] = 1,
    sampler: Annotated[str, typer.Option(help="nutpie (default) or pymc.")] = "nutpie",
    target_accept: Annotated[float, typer.Option(min=0.5, max=0.999, help="Step-size adaptation target.")] = 0.9,
    data: Annotated[Optional[Path], typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Undefined responder status: exclude, last_observed or unknown.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN.")] = None,
    save: Annotated[Optional[Path], typer.Option(help="Save the fit (netCDF DataTree with settings and diagnostics).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit the estimands and diagnostics as JSON.")] = False,
) -> None:
    """Fit a Bayesian model and print its estimands with diagnostics."""
    from analysis.bayes.fit import fit_bayes, model_names

    if model not in model_names():
        _err(f"unknown model {model!r}; available: {', '.join(model_names())}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if site not in ("spine", "femoral_neck"):
        _err(f"unknown site {site!r}; expected spine or femoral_neck")
        raise typer.Exit(EXIT_BAD_INPUT)
    cfg, ds, derived = _load_derived(data, config, strategy, seed, map_)
    _info(f"{ds.label}: fitting {model} at {site} ({chains} chains x {draws} draws, {sampler})")
    try:
        with _analysis_errors(ds.source):
            res = fit_bayes(derived, model, site, priors, cfg.undefined_responders, cfg.responder.rule(),
                            draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                            target_accept=target_accept)
    except (DataValidationError, ConfigError) as err:
        _err(str(err))
        raise typer.Exit(EXIT_BAD_INPUT)
    if save is not None:
        res.fit.save(save)
        _info(f"saved fit to {save}")
    diag = res.fit.diagnostics
    if not diag.passed:
        _info(f"WARNING: DIAGNOSTICS FAILED for {model} at {site}: " + "; ".join(diag.failures))
    if as_json:
        typer.echo(json.dumps({"data_label": ds.label, "synthetic": ds.synthetic, **res.to_dict()},
                              indent=2, default=_json_default))
        return
    typer.echo(f"== {ds.label}: {model} at {site}, priors {priors} ==")
    typer.echo(f"undefined status: {res.strategy}")
    typer.echo(f"diagnostics: {diag}")
    cols = ["estimand", "median", "eti_low", "eti_high", "hdi_low", "hdi_high", "p_lt_0", "p_in_rope", "bf10"]
    typer.echo(res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))


@app.command()
def compare(
    models_: Annotated[Optional[list[str]], typer.Option("--model", help="Bayesian model(s) to compare (repeatable).")] = None,
    sites: Annotated[Optional[list[str]], typer.Option("--site", help="Site(s) (repeatable).")] = None,
    priors: Annotated[str, typer.Option(help="Prior set.")] = "default",
    draws: Annotated[int, typer.Option(min=1)] = 1000,
    tune: Annotated[int, typer.Option(min=1)] = 1000,
    chains: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[int, typer.Option()] = 1,
    data: Annotated[Optional[Path], typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Undefined responder status strategy.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit the table as JSON.")] = False,
) -> None:
    """Bayesian vs frequentist: one table per site (estimate, CI, p | median, CrI, P(direction), P(ROPE), BF)."""
    from analysis.bayes.fit import compare as compare_fits, fit_bayes, model_names
    from analysis.frequentist.primary import frequentist_analysis

    models_ = models_ or ["lmm"]
    sites = sites or ["spine", "femoral_neck"]
    bad = [m for m in models_ if m not in model_names()] + [s for s in sites if s not in ("spine", "femoral_neck")]
    if bad:
        _err(f"unknown model or site {bad[0]!r}")
        raise typer.Exit(EXIT_BAD_INPUT)
    cfg, ds, derived = _load_derived(data, config, strategy, seed, map_)
    with _analysis_errors(ds.source):
        freq = frequentist_analysis(derived, sites, cfg.undefined_responders, cfg.responder.rule(),
                                    cfg.endpoint_month, mmrm_covariances=cfg.mmrm_covariances)
        fits = []
        for m in models_:
            for s in sites:
                _info(f"fitting {m} at {s} ...")
                fits.append(fit_bayes(derived, m, s, priors, cfg.undefined_responders, cfg.responder.rule(),
                                      draws=draws, tune=tune, chains=chains, seed=seed))
        table = compare_fits(fits, freq.estimands)
    if as_json:
        typer.echo(json.dumps({"data_label": ds.label, "synthetic": ds.synthetic,
                               "rows": table.replace({float("nan"): None}).to_dict(orient="records")},
                              indent=2, default=_json_default))
        return
    typer.echo(f"== {ds.label}: Bayesian vs frequentist ==")
    for s in sites:
        typer.echo(f"\n-- {s} --")
        typer.echo(table[table["site"] == s].drop(columns=["site"]).to_string(
            index=False, float_format=lambda v: f"{v:.4g}"))
    for f in fits:
        if not f.fit.passed:
            typer.echo(f"WARNING: {f.model} at {f.site} FAILED diagnostics: " + "; ".join(f.fit.diagnostics.failures))


@app.command()
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
) -> None:
    """Dropout sensitivity analyses (MAR vs MNAR); one result type each: table, text, figures."""
    from analysis.common.io import atomic_write_text
    from analysis.figures.plots import save_figure
    from analysis.sensitivity.runner import available, run_sensitivity

    names = analysis or available()
    bad = [n for n in names if n not in available()]
    if bad:
        _err(f"unknown sensitivity analysis {bad[0]!r}; available: {', '.join(available())}")
        raise typer.Exit(EXIT_BAD_INPUT)
    cfg, ds, derived = _load_derived(data, config, strategy, seed, map_)
    results = []
    with _analysis_errors(ds.source):
        for name in names:
            _info(f"{ds.label}: sensitivity analysis {name} ...")
            results.append(run_sensitivity(name, derived, cfg, cache_dir=cache_dir))
    if out is not None:
        for r in results:
            atomic_write_text(out / f"sensitivity_{r.name}.csv", r.table.to_csv(index=False, lineterminator="\n"))
            for fname, fig in r.figures.items():
                save_figure(fig, out, fname)
        _info(f"wrote tables and figures to {out}")
    if as_json:
        typer.echo(json.dumps({"data_label": ds.label, "synthetic": ds.synthetic, "results": [
            {"name": r.name, "title": r.title, "text": r.text, "settings": r.settings,
             "table": r.table.replace({float("nan"): None}).to_dict(orient="records")} for r in results]},
            indent=2, default=_json_default))
        return
    for r in results:
        typer.echo(f"== {ds.label}: {r.title} ==")
        for line in r.text:
            typer.echo(line)
        typer.echo(r.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        typer.echo("")


@app.command()
def run(
    data: Annotated[Optional[Path], typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML analysis plan.")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="Where run directories go (default: outputs).")] = None,
    run_id: Annotated[Optional[str], typer.Option(help="Name of the run directory.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for everything random in the run.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN (repeatable).")] = None,
    draws: Annotated[Optional[int], typer.Option(help="Posterior draws per chain.")] = None,
    tune: Annotated[Optional[int], typer.Option(help="Tuning steps per chain.")] = None,
    chains: Annotated[Optional[int], typer.Option(help="Chains.")] = None,
    sensitivity_: Annotated[Optional[list[str]], typer.Option("--sensitivity", help="Sensitivity analyses to run (repeatable; default from the plan).")] = None,
    power_sims: Annotated[Optional[int], typer.Option("--power-sims", min=0, help="Simulated studies per n in the sample-size stage (0: skip it; default from the plan).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run directory.")] = False,
) -> None:
    """Run the analysis pipeline and write outputs/<run-id>/."""
    from analysis.run.pipeline import RunExistsError, run as run_pipeline

    try:
        cfg = load_config(config, data=str(data) if data else None,
                          output_dir=str(output_dir) if output_dir else None, run_id=run_id, seed=seed,
                          column_map=_parse_map(map_) or None, draws=draws, tune=tune, chains=chains,
                          sensitivity=tuple(sensitivity_) if sensitivity_ else None, power_sims=power_sims)
        with _analysis_errors(cfg.data or "the embedded twin"):
            result = run_pipeline(cfg, force=force, log=_info)
    except (DataValidationError, ConfigError, RunExistsError) as err:
        _err(str(err))
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(str(result.run_dir))


from analysis.cli.power import power as _power  # noqa: E402

app.command(name="power")(_power)


def main() -> None:
    """Console-script entry point.

    After a command finishes, the process flushes its output, runs the threading exit hooks and
    waits for its non-daemon threads (as the interpreter does), runs the ``atexit`` handlers
    (which stop worker processes and flush logging) and then leaves
    through ``os._exit`` with the command's exit status. What that skips is Python's final
    deallocation of the PyMC/PyTensor/numba object graphs, 1-1.5 s per command with nothing left
    to write (every output file is written atomically and closed before). ``RAJAK_FAST_EXIT=0``
    restores the normal interpreter shutdown.
    """
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    except (OSError, FigureWriteError) as err:
        # a path the user gave that cannot be written (permissions, a file where a directory
        # should be) is bad input: exit status 2; anything else (a full disk) is 1. One line.
        if os.environ.get("RAJAK_DEBUG") == "1":
            raise
        if isinstance(err, OSError) and err.filename:
            what = f"file system error at {err.filename}: {err.strerror or err}"
        else:
            what = str(err)
        _err(f"{what}; the command stopped (RAJAK_DEBUG=1 shows where)")
        code = EXIT_BAD_INPUT if isinstance(err, _PATH_ERRORS) else 1
    else:
        code = 0
    if os.environ.get("RAJAK_FAST_EXIT", "1") == "0":
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    _fast_exit(code)


def _fast_exit(code: int) -> None:
    import atexit
    import threading

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe: nothing left to flush
            pass
    # what the interpreter does at exit, in its order: the threading atexit hooks (they stop worker
    # pools such as loky's reusable executor, whose manager thread would otherwise keep the join
    # below waiting for its idle timeout), then join the non-daemon threads, then atexit handlers
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
