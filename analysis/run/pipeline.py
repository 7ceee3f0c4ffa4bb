"""``rajak run``: load -> validate -> derive -> analyse -> write a run directory.

The run directory ``<output_dir>/<run_id>/`` is assembled in a hidden staging directory beside it
and renamed into place when complete, so an interrupted run leaves no half-written run directory
(and every file inside is itself written atomically). An existing run directory is replaced only
with ``force=True``.

Stages: frequentist analysis, Bayesian models (:mod:`analysis.run.bayes_stage`; fits and their prior
draws are kept in the content-addressed cache ``<output_dir>/.fit-cache``), sensitivity analyses,
and the sample size for the next study (:func:`analysis.run.power_stage.run_power_stage`; its simulations are cached in
``<output_dir>/.fit-cache/power/<key>``). A rerun with unchanged model, data and configuration reads
the fits and the simulations back, and so does a run resumed after an interruption.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.common.io import atomic_copy, atomic_write_json, atomic_write_text
from analysis.common.memory import WorkerOutOfMemory
from analysis.common.provenance import package_versions
from analysis.figures.plots import retention, save_figure, trajectories
from analysis.frequentist.primary import frequentist_analysis
from analysis.rajak.published import (
    ANALYSIS_ASSUMPTIONS,
    paper_analysis,
    replication_by_method,
    replication_table,
)
from analysis.report import Report, Section, Table, render_report
from analysis.report.figure_writer import FigureWriter
from analysis.run.bayes_stage import bayes_sections, run_bayes_stage
from analysis.run.config import ConfigError, RunConfig
from analysis.run.methods_text import (
    bayes_methods,
    covariances_text,
    frequentist_methods,
)
from analysis.run.power_stage import (
    PowerStage,
    power_methods,
    power_section,
    run_power_stage,
)
from analysis.sensitivity.runner import forest_figure, run_sensitivity
from analysis.study.clinical import derive
from analysis.study.data import Dataset, DataValidationError, load_for_config
from analysis.study.groups import check_groups

__all__ = ["RunExistsError", "RunOutOfMemory", "RunResult", "load_for_config", "run", "sensitivity_failures"]

def _check_writable(directory: Path) -> None:
    """Raise :class:`ConfigError` naming ``directory`` if run directories cannot be made in it."""
    import tempfile

    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".rajak-write-check-"):
            pass
    except OSError as err:
        raise ConfigError(f"output_dir {directory}: cannot write run directories there "
                          f"({err.strerror or err})") from None


class RunExistsError(FileExistsError):
    """The run directory exists and ``force`` was not given."""


class RunOutOfMemory(MemoryError):
    """Memory ran out during a run: which stage, on how many patients and sites (the CLI turns it into
    one line saying what to ask for instead).

    Parameters
    ----------
    stage : str
        ``"load"``, ``"derive"``, ``"frequentist"``, ``"figures"``, ``"bayes"``, ``"sensitivity"``,
        ``"power"`` or ``"report"``.
    what : str
        The stage in words (e.g. ``"sensitivity analysis delta_bayes"``).
    n_patients : int or None
        Patients in the study, when known by then.
    sites : tuple of str
        The sites analysed, when known by then.
    worker : bool
        It ran out in a worker process (:class:`analysis.common.memory.WorkerOutOfMemory`: the
        figure writer's or the sample-size stage's).
    """

    def __init__(self, stage: str, what: str, n_patients: int | None = None, sites: tuple[str, ...] = (),
                 worker: bool = False):
        super().__init__(f"out of memory in {what}")
        self.stage, self.what, self.n_patients, self.sites = stage, what, n_patients, tuple(sites)
        self.worker = bool(worker)


@dataclass
class RunResult:
    """What a run wrote."""

    run_dir: Path
    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _label(df: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    out = df.copy()
    out.insert(0, "data", dataset.label)
    return out


def run(config: RunConfig, *, force: bool = False, log: Callable[[str], None] | None = None) -> RunResult:
    """Run the pipeline that exists so far and write the run directory.

    Parameters
    ----------
    config
        The validated run configuration (written into ``manifest.json``).
    force
        Replace an existing run directory of the same id.
    log
        Receives progress messages (the CLI prints them on stderr).

    Raises
    ------
    RunOutOfMemory
        Memory ran out (a :class:`MemoryError` naming the stage it ran out in).
    """
    where = {"stage": "load", "what": "loading and validating the data", "n_patients": None, "sites": ()}
    try:
        return _run(config, force=force, log=log, where=where)
    except RunOutOfMemory:
        raise
    except MemoryError as exc:  # a worker's names its own stage (the figures drawn in the background)
        stage, what = (exc.stage, exc.what) if isinstance(exc, WorkerOutOfMemory) else (where["stage"], where["what"])
        raise RunOutOfMemory(stage, what, where["n_patients"], where["sites"], worker=isinstance(
            exc, WorkerOutOfMemory)) from None


def _run(config: RunConfig, *, force: bool, log: Callable[[str], None] | None, where: dict[str, Any]) -> RunResult:
    """:func:`run`, noting in ``where`` the stage it is in (for :class:`RunOutOfMemory`)."""

    def stage(name: str, what: str) -> None:
        where.update(stage=name, what=what)

    say = log or (lambda msg: None)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    started = datetime.now(UTC)
    run_id = config.run_id or f"{started:%Y%m%d-%H%M%S}-{config.digest()[:6]}"
    out_root = Path(config.output_dir)
    run_dir = out_root / run_id
    if run_dir.exists() and not force:
        raise RunExistsError(f"{run_dir}: run directory exists (use --force to replace it)")
    _check_writable(out_root)  # before minutes of computing, not at the first file

    t = time.perf_counter()
    dataset = load_for_config(config)
    timings["load_validate_s"] = time.perf_counter() - t
    config = config.bind(dataset.design)  # the study's sites and endpoint where the plan leaves them open
    where.update(n_patients=dataset.report.n_patients, sites=tuple(config.sites or ()))
    stage("derive", "deriving the analysis data")
    say(f"loaded {dataset.source} ({dataset.label}): {dataset.report.n_patients} patients, "
        f"{dataset.report.completers} completers")

    t = time.perf_counter()
    derived = derive(dataset.frame, config.responder.rule(), config.tscore.reference_object(),
                     config.endpoint_month, design=dataset.design)
    try:
        check_groups(derived, config.undefined_responders, config.responder.rule(), dataset.design, dataset.source)
    except ValueError as exc:
        raise DataValidationError(str(exc)) from None
    if config.estimand is not None and "reference_based" in config.sensitivity:
        from analysis.study.ice_load import load_ice_events

        from analysis.study.ice_load import check_delta_rules

        load_ice_events(config.estimand, derived, dataset.design, source=dataset.source)  # a bad ICE file: exit 2
        check_delta_rules(config.estimand, dataset.design)
    timings["derive_s"] = time.perf_counter() - t

    t = time.perf_counter()
    stage("frequentist", "the frequentist analysis")
    rajak_shaped = _rajak_shaped(dataset)
    achieved = paper_analysis(derived, config.endpoint_month) if rajak_shaped else None
    freq = frequentist_analysis(derived, config.sites, config.undefined_responders, config.responder.rule(),
                                config.endpoint_month, mi_imputations=config.mi_imputations, seed=config.seed,
                                mmrm_covariances=config.mmrm_covariances, design=dataset.design)
    completers = freq.completers
    per_patient = ["patient_id", "group", "responder_status", "responder_source", "eular_response", "completer",
                   "last_visit", "dropout_month", "dropout_reason"]
    patients = derived.drop_duplicates("patient_id")[
        [c for c in per_patient if c in derived.columns]].reset_index(drop=True)
    tables = {
        **({"replication": _label(replication_table(achieved), dataset)} if rajak_shaped else {}),
        "completers_tests": _label(completers.table.assign(undefined_status=completers.strategy), dataset),
        "frequentist_estimands": _label(freq.estimands.assign(undefined_status=completers.strategy), dataset),
        "mmrm_lsmeans": _label(freq.lsmeans, dataset),
        "patients": _label(patients, dataset),
        "derived_data": _label(derived, dataset),
    }
    timings["frequentist_s"] = time.perf_counter() - t
    say("frequentist analysis done (completers tests, LMM, MMRM" + (", MI)" if config.mi_imputations else ")"))

    staging = out_root / f".{run_id}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "tables").mkdir(parents=True)
    cache_root = out_root / ".fit-cache"  # fits, sensitivity results, power studies, figures
    writer = FigureWriter(config.figure_workers, cache_dir=cache_root)  # drawn in the background
    save_figure = writer.save
    try:
        atomic_write_json(staging / "validation.json", dataset.report.to_dict())
        t = time.perf_counter()
        stage("figures", "drawing the figures")
        figs = staging / "figures"
        save_figure(trajectories(derived, config.sites, label=dataset.label), figs, "trajectories_observed")
        save_figure(retention(derived, label=dataset.label), figs, "retention")
        timings["figures_s"] = time.perf_counter() - t
        t = time.perf_counter()
        bayes = None
        if config.bayes_models:
            stage("bayes", "the Bayesian models")
            bayes = run_bayes_stage(derived, config, freq.estimands, figs, staging / "fits", dataset.label, say,
                                    cache_dir=cache_root, save=save_figure, design=dataset.design)
            tables["bayes_estimands"] = _label(bayes.estimands, dataset)
            tables["bayes_vs_frequentist"] = _label(bayes.comparison, dataset)
        if rajak_shaped:
            tables["replication_by_method"] = _label(replication_by_method(
                achieved, freq.estimands, None if bayes is None else bayes.estimands, config.endpoint_month),
                dataset)
        timings["bayesian_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sens_results = []
        for name in config.sensitivity:
            stage("sensitivity", f"sensitivity analysis {name}")
            r = run_sensitivity(name, derived, config, cache_dir=cache_root, design=dataset.design)
            sens_results.append(r)
            say(f"sensitivity analysis {r.name} " + ("done" if r.ran else r.summary))
            tables[f"sensitivity_{r.name}"] = _label(r.table, dataset)
            cached_result = r.settings.get("result_cache", {}).get("file")
            for fname, fig in r.figures.items():  # keyed by the cached result's content address
                save_figure(fig, figs, fname, key=None if cached_result is None else Path(cached_result).name)
            for src in r.settings.get("fit_files") or []:  # its Bayesian fits, beside the main ones
                if Path(src).is_file():
                    atomic_copy(src, staging / "fits" / f"sensitivity_{r.name}" / Path(src).name)
        stage("report", "writing the report")
        report_sections = _sensitivity_sections(sens_results, freq.estimands, config, figs, dataset.label,
                                                None if bayes is None else bayes.estimands, save_figure,
                                                design=dataset.design)
        timings["sensitivity_s"] = time.perf_counter() - t
        t = time.perf_counter()
        stage("power", "the sample-size stage")
        lmm_fits = {} if bayes is None else {f.site: f.fit for f in bayes.fits if f.model == "lmm"}
        power = (run_power_stage(config, cache_root, say, prior_fits=lmm_fits, derived=derived, dataset=dataset)
                 if config.power_enabled else None)
        if power is not None:
            tables["power"] = _label(power.result.summary(), dataset)
            tables["power_smallest_n"] = _label(power.smallest_n, dataset)
            save_figure(power.result.figure(config.power_target, label=dataset.label), figs, "power_curve")
        timings["power_s"] = time.perf_counter() - t
        stage("report", "writing the report")
        report = _report(run_id, dataset, config, tables, completers.strategy, freq.notes,
                         derived.attrs.get("notes", []))
        report.sections += report_sections
        t = time.perf_counter()
        writer.wait()  # every figure on disk before the report embeds them
        timings["figures_wait_s"] = time.perf_counter() - t
        report.methods.append(frequentist_methods(config, dataset.design))
        if bayes is not None:
            report.sections += bayes_sections(bayes, config)
            report.failures += bayes.failures
            report.methods.append(bayes_methods(config, dataset.design))
        report.failures += sensitivity_failures(sens_results)
        report.methods += [f"Sensitivity analysis - {r.title}: {' '.join(r.settings.get('methods_text') or r.text[:1])}"
                           for r in sens_results if r.text]
        if power is not None:
            report.sections.append(power_section(power, dataset, config))
            report.methods.append(power_methods(config, power))
        for section in report.sections:  # every table the report names is written under tables/
            for tab in section.tables:
                if tab.name and tab.name not in tables:
                    tables[tab.name] = _label(tab.frame, dataset)
        for name, table in tables.items():
            atomic_write_text(staging / "tables" / f"{name}.csv", table.to_csv(index=False, lineterminator="\n"))
        skipped = [f"sensitivity analysis {r.name}: {r.summary}" for r in sens_results if not r.ran]
        if bayes is not None:
            skipped += [f"Bayesian {m} at {site}: {why}" for m, site, why in bayes.skipped]
            skipped += [f"PSIS-LOO of {m} at {site}: {why}" for m, site, why in bayes.loo_left_out]
        if power is not None:
            skipped += [f"sample size: {why}" for why in power.not_applicable]
        atomic_write_text(staging / "summary.txt", _summary_text(dataset, config, tables.get("replication"),
                                                                 report.failures, power, freq.estimands,
                                                                 skipped + [f"frequentist: {n}" for n in freq.notes]))
        atomic_write_text(staging / "report.html", render_report(report, figs))
        timings["total_s"] = time.perf_counter() - t_all
        manifest = {
            "run_id": run_id,
            "started_utc": started.isoformat(),
            "synthetic_data": dataset.synthetic,
            "data_label": dataset.label,
            "data_file": dataset.source,
            "data_sha256": dataset.sha256,
            "config": config.model_dump(),
            "study_design": None if dataset.design is None else dataset.design.to_dict(),
            "config_digest": config.digest(),
            "responder_rule": config.responder.rule().describe() if _derived_groups(dataset) else None,
            "undefined_responder_strategy": completers.strategy if _derived_groups(dataset) else None,
            "tscore_reference": config.tscore.reference_object().describe(),
            "paper_analysis_assumptions": list(ANALYSIS_ASSUMPTIONS) if rajak_shaped else None,
            "seeds": {"run": config.seed, "sampler": config.seed, "prior_draws": config.seed,
                      **({"power": power.seed} if power is not None else {})},
            "fit_cache": {} if bayes is None else {f"{f.model}_{f.site}": f.extra for f in bayes.fits},
            "bayes_skipped": [] if bayes is None else [{"model": m, "site": s, "reason": r} for m, s, r in bayes.skipped],
            "loo_left_out": [] if bayes is None else [{"model": m, "site": s, "reason": r}
                                                      for m, s, r in bayes.loo_left_out],
            "figure_cache": dict(writer.cache_stats),  # figures copied from the cache / drawn
            "power": None if power is None else power.manifest(),
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "diagnostics": {
                "failures": report.failures, "notes": freq.notes, "data_notes": derived.attrs.get("notes", []),
                "fits": {} if bayes is None else {f"{f.model}_{f.site}": f.fit.diagnostics.to_dict() for f in bayes.fits},
                "sensitivity_fits": {r.name: r.settings["diagnostics"] for r in sens_results
                                     if isinstance(r.settings.get("diagnostics"), dict)},
            },
            "package_versions": package_versions(),
            "command": " ".join(sys.argv),
            "files": sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()) + ["manifest.json"],
        }
        atomic_write_json(staging / "manifest.json", manifest)
        old = None
        if run_dir.exists():  # created while this run was going, or replaced on purpose
            if not force:
                raise RunExistsError(f"{run_dir}: run directory appeared during the run (use --force to "
                                     f"replace it); this run's results were not written")
            old = out_root / f".{run_id}.replaced-{os.getpid()}"
            os.replace(run_dir, old)  # set aside, so the new run lands in one rename
        os.replace(staging, run_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        writer.close(cancel=True)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        writer.close()
    say(f"wrote {run_dir}")
    return RunResult(run_dir=run_dir, manifest=manifest, tables=tables)


def sensitivity_failures(results) -> list[str]:
    """One line per Bayesian fit of a sensitivity analysis that failed its convergence checks (from
    ``settings["failed_fits"]`` and ``settings["diagnostics"]``), for the top of the report."""
    out = []
    for r in results:
        diag = r.settings.get("diagnostics") if isinstance(r.settings.get("diagnostics"), dict) else {}
        for name in r.settings.get("failed_fits") or []:
            why = diag.get(name, "failed its checks")
            why = why.get("message", "failed its checks") if isinstance(why, dict) else why
            out.append(f"sensitivity analysis '{r.name}', fit {name}: {why}")
    return out


def _derived_groups(dataset: Dataset) -> bool:
    """Whether the study's groups are responder status derived from disease activity (RAJAK's)."""
    return dataset.design is None or dataset.design.design.group.kind == "derived"


def _rajak_shaped(dataset: Dataset) -> bool:
    """Whether the RAJAK paper's figures can be compared with this study: responder groups derived
    from disease activity and a spine site (the twin, or a RAJAK-like cohort)."""
    return _derived_groups(dataset) and (dataset.design is None or "spine" in dataset.design.sites)


def _groups_text(dataset: Dataset, config: RunConfig) -> str:
    """The study's groups in one phrase: the responder rule, the arms with their reference, or one arm."""
    d = dataset.design
    if _derived_groups(dataset):
        return f"responders: {config.responder.rule().describe()}"
    if d.design.group.kind == "none":
        return "groups: none (single arm; within-patient change)"
    others = [lv for lv in d.group_levels if lv != d.reference]
    return (f"groups: {', '.join(d.group_levels)} (column {d.design.group.column!r}; "
            f"{', '.join(others)} vs {d.reference})")


def _summary_text(dataset: Dataset, config: RunConfig, replication: pd.DataFrame | None,
                  failures: list[str] | None = None, power: PowerStage | None = None,
                  estimands: pd.DataFrame | None = None, skipped: list[str] | None = None) -> str:
    lines = [f"!!! DIAGNOSTICS FAILED: {f}" for f in failures or []]
    if dataset.synthetic:
        lines += ["*** SYNTHETIC DATA: results below are from the RAJAK digital twin, a simulation ***",
                  "*** calibrated to the published aggregates; they are not patient data.            ***", ""]
    lines.append(f"rajak run on {dataset.source}")
    if dataset.design is not None:
        lines.append("design: " + dataset.design.design.describe())
        lines.append("sites: " + ", ".join(dataset.design.sites) + f"; endpoint: month {config.endpoint_month:g}")
    lines.append(_groups_text(dataset, config))
    lines.append(f"T-scores: {config.tscore.reference_object().describe()}")
    lines.append("")
    lines.append(dataset.report.to_text())
    lines.append("")
    if replication is not None:
        lines.append("Published figures vs this analysis (completers; tests as reconstructed, see manifest):")
        lines.append(replication.drop(columns=["data", "description", "kind"])
                     .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if estimands is not None and len(estimands) and replication is None:
        key = estimands[estimands["estimand"].str.endswith(", %")
                        & estimands["method"].isin(["LMM (REML)", "MMRM (us, REML)", "MMRM (us, REML) = ANCOVA"])]
        if len(key):
            lines.append("Key estimands (% change to the endpoint; estimate, 95% CI, p):")
            lines += [f"  {r.estimand} [{r.method}]: {r.estimate:+.2f} ({r.ci_low:+.2f} to {r.ci_high:+.2f}), "
                      f"p = {r.p:.3g}" for r in key.itertuples()]
    if skipped:
        lines += ["", "Not run or not estimable (the rest of the run is unaffected):"]
        lines += [f"  {s}" for s in skipped]
    if power is not None:
        lines += ["", "Sample size for the next study (simulated from "
                  + ("the twin's design" if dataset.synthetic else f"the design of {Path(dataset.source).name}")
                  + "):"]
        lines += [f"  {line}" for line in power.smallest_n_sentences()]
    return "\n".join(lines) + "\n"


def _report(run_id: str, dataset: Dataset, config: RunConfig, tables: dict[str, pd.DataFrame],
            strategy: str, notes: list[str], data_notes: list[str] | None = None) -> Report:
    rep = dataset.report
    rule = config.responder.rule().describe()
    derived_groups = _derived_groups(dataset)
    groups = _groups_text(dataset, config)
    summary = [
        f"{rep.n_patients} patients, {rep.completers} completed month {config.endpoint_month:g} "
        f"({rep.n_patients - rep.completers} did not). {groups[0].upper()}{groups[1:]}."
        + ("" if dataset.design is None else " Sites: " + ", ".join(dataset.design.sites) + "."),
    ]
    if "replication" in tables:
        summary.append("The paper's completers analysis was reconstructed (rank tests; see Methods) and compared "
                       "with the published figures below.")
    if dataset.synthetic:
        summary.insert(0, "The data are the SYNTHETIC RAJAK digital twin; no result here is evidence about patients.")
    visits = pd.DataFrame({"month": list(rep.visits_per_month), "visits": list(rep.visits_per_month.values()),
                           "DXA scans": [rep.dxa_per_month.get(m, 0) for m in rep.visits_per_month]})
    patients = tables["patients"]
    reasons = (patients.loc[~patients["completer"], "dropout_reason"].fillna("not given").replace("", "not given")
               .value_counts().rename_axis("reason").reset_index(name="patients")
               if "dropout_reason" in patients.columns else pd.DataFrame())
    sections = [
        Section("data", "Data and dropout",
                paragraphs=[f"Source: {dataset.source} (sha256 {dataset.sha256[:12]}...).",
                            *[f"Note: {n}." for n in (data_notes or [])],
                            f"Excluded rows: {len(rep.excluded)}." + (" " + "; ".join(
                                f"{e.where} ({e.patient}, month {e.month:g}): {e.reason}" for e in rep.excluded)
                                if rep.excluded else "")],
                tables=[Table("Visits per month", visits)] + ([Table("Dropout reasons", reasons)] if len(reasons) else []),
                figures=[("Patients remaining at each visit by " + ("responder status" if derived_groups else "group"),
                          "retention"),
                         ("Observed BMD change per patient; dashed lines are dropouts", "trajectories_observed")]),
    ]
    if "replication" in tables:
        sections.append(Section("replication", "Published figures vs this analysis",
                paragraphs=["Each published figure of the RAJAK abstract next to the same quantity computed here "
                            "on the completers. 'close' flags p-values within a factor of 2 and the mean change "
                            "within 0.3 points."],
                tables=[Table("Replication table", tables["replication"].drop(columns=["data"]), "replication")]
                + ([Table("Published vs frequentist vs Bayesian: the figures a model answers, by method (for a "
                          "Bayesian model: posterior median, 95% ETI and p = 2 min(P(<0), P(>0)))",
                          tables["replication_by_method"].drop(columns=["data", "description"]),
                          "replication_by_method")] if "replication_by_method" in tables else [])))
    undefined = f" Undefined responder status: {strategy}." if derived_groups else ""
    sections += [
        Section("completers", "Completers analysis (frequentist)",
                paragraphs=[f"Analysis set: completers (a scan at month {config.endpoint_month:g}).{undefined}"],
                tables=[Table("Within- and between-group tests of the % change and the secondary endpoints "
                              "(all measures, incl. g/cm^2 and T-score, in the CSV)",
                              _compact_tests(tables["completers_tests"]), "completers_tests")]),
        Section("mixed_models", "Mixed models on all observed data (MAR)",
                paragraphs=[f"Reference LMM (random intercept and slope, REML, Satterthwaite df), the same with "
                            f"baseline covariates, and an MMRM (visit as a factor, REML, Satterthwaite df) of the "
                            f"change from baseline with residual covariance {covariances_text(config)}."
                            f"{undefined}"] + [f"WARNING: {n}" for n in notes],
                tables=[Table("Key estimands by method", tables["frequentist_estimands"].drop(columns=["data"]),
                              "frequentist_estimands"),
                        Table("MMRM least-squares means of the change per visit and group",
                              tables["mmrm_lsmeans"].drop(columns=["data"]), "mmrm_lsmeans")],
                status="warning" if notes else "ok"),
    ]
    end = f"month {config.endpoint_month:g}"
    methods = [
        (f"Responder definition: {rule}. " if derived_groups else f"{groups[0].upper()}{groups[1:]}. ")
        + f"T-scores: {config.tscore.reference_object().describe()}.",
        f"Completers analysis: within-group one-sample t-tests and Wilcoxon signed-rank tests on the change "
        f"to {end} (exact where R is exact; Hodges-Lehmann pseudomedian and CI); between groups Welch "
        f"t-tests and Wilcoxon rank-sum tests (Hodges-Lehmann shift and CI); secondary endpoints baseline vs "
        f"{end} by paired t and signed-rank tests. Tests follow R's t.test and wilcox.test conventions.",
    ]
    if "replication" in tables:
        methods.append("Reconstruction of the paper's analysis: " + "; ".join(ANALYSIS_ASSUMPTIONS) + ".")
    return Report(title="rajak reanalysis of a longitudinal BMD study", synthetic=dataset.synthetic,
                  data_label=dataset.label, summary=summary, sections=sections, methods=methods,
                  versions=package_versions(), run_id=run_id)


def _compact_tests(table: pd.DataFrame) -> pd.DataFrame:
    keep = table[table["measure"].isin(["pct"]) | (table["analysis"] == "secondary")]
    return keep[["estimand", "test", "n", "estimate", "ci_low", "ci_high", "statistic", "p"]]


def _sensitivity_sections(results, freq_estimands: pd.DataFrame, config: RunConfig, figs: Path,
                          label: str, bayes_estimands: pd.DataFrame | None = None,
                          save_figure: Callable[..., Any] = save_figure, design: Any = None) -> list[Section]:
    if not results:
        return []
    sections = []
    for r in results:  # the estimand in ICH E9(R1) terms heads the sensitivity analyses
        if r.ran and r.settings.get("estimand"):
            frame = pd.DataFrame(r.settings["estimand"])
            sections.append(Section("estimand", "Estimand (ICH E9(R1)) and intercurrent events",
                                    paragraphs=[p for p in r.text if p.startswith(("The estimand follows",
                                                                                    "Intercurrent events and",
                                                                                    "No intercurrent events",
                                                                                    "Delta adjustment"))],
                                    tables=[Table("The estimand's five attributes", frame, "estimand")]))
            break
    for r in results:
        if not r.ran:  # not applicable to this design, or not estimable on these data: the reason only
            sections.append(Section(f"sensitivity_{r.name}", f"Sensitivity: {r.title}", paragraphs=list(r.text),
                                    status="warning"))
            continue
        if len(r.table) <= 120:
            tables = [Table(r.title, r.table, f"sensitivity_{r.name}")]
        else:  # e.g. the tipping grid: show the key rows, the full table is in the CSV
            tables = [Table(f"{r.title}: key rows ({len(r.table)} rows in the CSV)", r.forest_rows,
                            f"sensitivity_{r.name}")]
        sections.append(Section(f"sensitivity_{r.name}", f"Sensitivity: {r.title}", paragraphs=list(r.text),
                                tables=tables, figures=[(name, name) for name in r.figures]))
    figures = []
    for site in config.sites:
        fig, rows = forest_figure(results, freq_estimands, site, label=label, bayes_estimands=bayes_estimands,
                                  design=design)
        save_figure(fig, figs, f"forest_sensitivity_{site}")
        figures.append((f"Key estimands across the main models and the sensitivity analyses, {site}; the first "
                        "row is the frequentist completers analysis, then the main frequentist and "
                        "Bayesian analyses", f"forest_sensitivity_{site}"))
    sections.append(Section("sensitivity_forest", "Sensitivity: all analyses side by side", figures=figures))
    return sections


# ---------------------------------------------------------------------------------------------
# sample size for the next study (analysis.power)
# ---------------------------------------------------------------------------------------------
