"""``rajak run``: load -> validate -> derive -> analyse -> write a run directory.

The run directory ``<output_dir>/<run_id>/`` is assembled in a hidden staging directory beside it
and renamed into place when complete, so an interrupted run leaves no half-written run directory
(and every file inside is itself written atomically). An existing run directory is replaced only
with ``force=True``.

Stages: frequentist analysis, Bayesian models (:mod:`analysis.run.bayes_stage`; fits and their prior
draws are kept in the content-addressed cache ``<output_dir>/.fit-cache``), sensitivity analyses,
and the sample size for the next study (:func:`run_power_stage`; its simulations are cached in
``<output_dir>/.fit-cache/power/<key>``). A rerun with unchanged model, data and configuration reads
the fits and the simulations back, and so does a run resumed after an interruption.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from analysis.study.clinical import derive
from analysis.run.config import ConfigError, RunConfig
from analysis.study.data import Dataset, load_for_config
from analysis.study.estimands import SITE_LABELS
from analysis.common.provenance import package_versions
from analysis.common.io import atomic_copy, atomic_write_json, atomic_write_text
from analysis.run.bayes_stage import bayes_sections, run_bayes_stage
from analysis.sensitivity.runner import forest_figure, run_sensitivity
from analysis.frequentist.primary import frequentist_analysis
from analysis.report.figure_writer import FigureWriter
from analysis.figures.plots import retention, save_figure, trajectories
from analysis.rajak.published import ANALYSIS_ASSUMPTIONS, paper_analysis, replication_by_method, replication_table
from analysis.report import Report, Section, Table, render_report

__all__ = ["RunResult", "RunExistsError", "PowerStage", "load_for_config", "run", "run_power_stage",
           "power_design", "power_section"]

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
    """
    say = log or (lambda msg: None)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    started = datetime.now(timezone.utc)
    run_id = config.run_id or f"{started:%Y%m%d-%H%M%S}-{config.digest()[:6]}"
    out_root = Path(config.output_dir)
    run_dir = out_root / run_id
    if run_dir.exists() and not force:
        raise RunExistsError(f"{run_dir}: run directory exists (use --force to replace it)")
    _check_writable(out_root)  # before minutes of computing, not at the first file

    t = time.perf_counter()
    dataset = load_for_config(config)
    timings["load_validate_s"] = time.perf_counter() - t
    say(f"loaded {dataset.source} ({dataset.label}): {dataset.report.n_patients} patients, "
        f"{dataset.report.completers} completers")

    t = time.perf_counter()
    derived = derive(dataset.frame, config.responder.rule(), config.tscore.reference_object(),
                     config.endpoint_month)
    timings["derive_s"] = time.perf_counter() - t

    t = time.perf_counter()
    achieved = paper_analysis(derived, config.endpoint_month)
    freq = frequentist_analysis(derived, config.sites, config.undefined_responders, config.responder.rule(),
                                config.endpoint_month, mi_imputations=config.mi_imputations, seed=config.seed,
                                mmrm_covariances=config.mmrm_covariances)
    completers = freq.completers
    patients = derived.drop_duplicates("patient_id")[
        ["patient_id", "responder_status", "responder_source", "eular_response", "completer",
         "last_visit", "dropout_month"] + (["dropout_reason"] if "dropout_reason" in derived.columns else [])
    ].reset_index(drop=True)
    tables = {
        "replication": _label(replication_table(achieved), dataset),
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
        figs = staging / "figures"
        save_figure(trajectories(derived, config.sites, label=dataset.label), figs, "trajectories_observed")
        save_figure(retention(derived, label=dataset.label), figs, "retention")
        timings["figures_s"] = time.perf_counter() - t
        t = time.perf_counter()
        bayes = None
        if config.bayes_models:
            bayes = run_bayes_stage(derived, config, freq.estimands, figs, staging / "fits", dataset.label, say,
                                    cache_dir=cache_root, save=save_figure)
            tables["bayes_estimands"] = _label(bayes.estimands, dataset)
            tables["bayes_vs_frequentist"] = _label(bayes.comparison, dataset)
        tables["replication_by_method"] = _label(replication_by_method(
            achieved, freq.estimands, None if bayes is None else bayes.estimands, config.endpoint_month), dataset)
        timings["bayesian_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sens_results = []
        for name in config.sensitivity:
            r = run_sensitivity(name, derived, config, cache_dir=cache_root)
            sens_results.append(r)
            say(f"sensitivity analysis {r.name} done")
            tables[f"sensitivity_{r.name}"] = _label(r.table, dataset)
            cached_result = r.settings.get("result_cache", {}).get("file")
            for fname, fig in r.figures.items():  # keyed by the cached result's content address
                save_figure(fig, figs, fname, key=None if cached_result is None else Path(cached_result).name)
            for src in r.settings.get("fit_files") or []:  # its Bayesian fits, beside the main ones
                if Path(src).is_file():
                    atomic_copy(src, staging / "fits" / f"sensitivity_{r.name}" / Path(src).name)
        report_sections = _sensitivity_sections(sens_results, freq.estimands, config, figs, dataset.label,
                                                None if bayes is None else bayes.estimands, save_figure)
        timings["sensitivity_s"] = time.perf_counter() - t
        t = time.perf_counter()
        lmm_fits = {} if bayes is None else {f.site: f.fit for f in bayes.fits if f.model == "lmm"}
        power = (run_power_stage(config, cache_root, say, prior_fits=lmm_fits)
                 if config.power_enabled else None)
        if power is not None:
            tables["power"] = _label(power.result.summary(), dataset)
            tables["power_smallest_n"] = _label(power.smallest_n, dataset)
            save_figure(power.result.figure(config.power_target, label=dataset.label), figs, "power_curve")
        timings["power_s"] = time.perf_counter() - t
        report = _report(run_id, dataset, config, tables, completers.strategy, freq.notes)
        report.sections += report_sections
        t = time.perf_counter()
        writer.wait()  # every figure on disk before the report embeds them
        timings["figures_wait_s"] = time.perf_counter() - t
        report.methods.append(_frequentist_methods(config))
        if bayes is not None:
            report.sections += bayes_sections(bayes, config)
            report.failures += bayes.failures
            report.methods.append(_bayes_methods(config))
        report.failures += sensitivity_failures(sens_results)
        report.methods += [f"Sensitivity analysis - {r.title}: {r.text[0]}" for r in sens_results if r.text]
        if power is not None:
            report.sections.append(power_section(power, dataset, config))
            report.methods.append(_power_methods(config))
        for section in report.sections:  # every table the report names is written under tables/
            for tab in section.tables:
                if tab.name and tab.name not in tables:
                    tables[tab.name] = _label(tab.frame, dataset)
        for name, table in tables.items():
            atomic_write_text(staging / "tables" / f"{name}.csv", table.to_csv(index=False, lineterminator="\n"))
        atomic_write_text(staging / "summary.txt", _summary_text(dataset, config, tables["replication"],
                                                                 report.failures, power))
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
            "config_digest": config.digest(),
            "responder_rule": config.responder.rule().describe(),
            "undefined_responder_strategy": completers.strategy,
            "tscore_reference": config.tscore.reference_object().describe(),
            "paper_analysis_assumptions": list(ANALYSIS_ASSUMPTIONS),
            "seeds": {"run": config.seed, "sampler": config.seed, "prior_draws": config.seed,
                      **({"power": power.seed} if power is not None else {})},
            "fit_cache": {} if bayes is None else {f"{f.model}_{f.site}": f.extra for f in bayes.fits},
            "figure_cache": dict(writer.cache_stats),  # figures copied from the cache / drawn
            "power": None if power is None else power.manifest(),
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "diagnostics": {
                "failures": report.failures, "notes": freq.notes,
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
            out.append(f"sensitivity analysis '{r.name}', fit {name}: {diag.get(name, 'failed its checks')}")
    return out


def _summary_text(dataset: Dataset, config: RunConfig, replication: pd.DataFrame,
                  failures: list[str] | None = None, power: PowerStage | None = None) -> str:
    lines = [f"!!! DIAGNOSTICS FAILED: {f}" for f in failures or []]
    if dataset.synthetic:
        lines += ["*** SYNTHETIC DATA: results below are from the RAJAK digital twin, a simulation ***",
                  "*** calibrated to the published aggregates; they are not patient data.            ***", ""]
    lines.append(f"rajak run on {dataset.source}")
    lines.append(f"responders: {config.responder.rule().describe()}")
    lines.append(f"T-scores: {config.tscore.reference_object().describe()}")
    lines.append("")
    lines.append(dataset.report.to_text())
    lines.append("")
    lines.append("Published figures vs this analysis (completers; tests as reconstructed, see manifest):")
    lines.append(replication.drop(columns=["data", "description", "kind"])
                 .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if power is not None:
        lines += ["", "Sample size for the next study (simulated from the twin's design):"]
        lines += [f"  {line}" for line in power.smallest_n_sentences()]
    return "\n".join(lines) + "\n"


def _report(run_id: str, dataset: Dataset, config: RunConfig, tables: dict[str, pd.DataFrame],
            strategy: str, notes: list[str]) -> Report:
    rep = dataset.report
    rule = config.responder.rule().describe()
    summary = [
        f"{rep.n_patients} patients, {rep.completers} completed month {config.endpoint_month:g} "
        f"({rep.n_patients - rep.completers} did not). Responders: {rule}.",
        "The paper's completers analysis was reconstructed (rank tests; see Methods) and compared with "
        "the published figures below.",
    ]
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
                            f"Excluded rows: {len(rep.excluded)}." + (" " + "; ".join(
                                f"{e.where} ({e.patient}, month {e.month:g}): {e.reason}" for e in rep.excluded)
                                if rep.excluded else "")],
                tables=[Table("Visits per month", visits)] + ([Table("Dropout reasons", reasons)] if len(reasons) else []),
                figures=[("Patients remaining at each visit by responder status", "retention"),
                         ("Observed BMD change per patient; dashed lines are dropouts", "trajectories_observed")]),
        Section("replication", "Published figures vs this analysis",
                paragraphs=["Each published figure of the RAJAK abstract next to the same quantity computed here "
                            "on the completers. 'close' flags p-values within a factor of 2 and the mean change "
                            "within 0.3 points."],
                tables=[Table("Replication table", tables["replication"].drop(columns=["data"]), "replication")]
                + ([Table("Published vs frequentist vs Bayesian: the figures a model answers, by method (for a "
                          "Bayesian model: posterior median, 95% ETI and p = 2 min(P(<0), P(>0)))",
                          tables["replication_by_method"].drop(columns=["data", "description"]),
                          "replication_by_method")] if "replication_by_method" in tables else [])),
        Section("completers", "Completers analysis (frequentist)",
                paragraphs=[f"Analysis set: completers. Undefined responder status: {strategy}."],
                tables=[Table("Within- and between-group tests of the % change and the secondary endpoints "
                              "(all measures, incl. g/cm^2 and T-score, in the CSV)",
                              _compact_tests(tables["completers_tests"]), "completers_tests")]),
        Section("mixed_models", "Mixed models on all observed data (MAR)",
                paragraphs=[f"Reference LMM (random intercept and slope, REML, Satterthwaite df), the same with "
                            f"baseline covariates, and an MMRM (visit as a factor, REML, Satterthwaite df) of the "
                            f"change from baseline with residual covariance {_covariances_text(config)}. "
                            f"Undefined responder status: {strategy}."] + [f"WARNING: {n}" for n in notes],
                tables=[Table("Key estimands by method", tables["frequentist_estimands"].drop(columns=["data"]),
                              "frequentist_estimands"),
                        Table("MMRM least-squares means of the change per visit and group",
                              tables["mmrm_lsmeans"].drop(columns=["data"]), "mmrm_lsmeans")],
                status="warning" if notes else "ok"),
    ]
    methods = [
        f"Responder definition: {rule}. T-scores: {config.tscore.reference_object().describe()}.",
        "Completers analysis: within-group one-sample t-tests and Wilcoxon signed-rank tests on the change "
        "to month 12 (exact where R is exact; Hodges-Lehmann pseudomedian and CI); between groups Welch "
        "t-tests and Wilcoxon rank-sum tests (Hodges-Lehmann shift and CI); secondary endpoints baseline vs "
        "month 12 by paired t and signed-rank tests. Tests follow R's t.test and wilcox.test conventions.",
        "Reconstruction of the paper's analysis: " + "; ".join(ANALYSIS_ASSUMPTIONS) + ".",
    ]
    return Report(title="rajak reanalysis of a longitudinal BMD study", synthetic=dataset.synthetic,
                  data_label=dataset.label, summary=summary, sections=sections, methods=methods,
                  versions=package_versions(), run_id=run_id)


_COVARIANCE_NAMES = {"us": "unstructured", "cs": "compound symmetry", "ar1": "AR(1)",
                     "csh": "heterogeneous compound symmetry", "ar1h": "heterogeneous AR(1)"}


def _covariances_text(config: RunConfig) -> str:
    names = [_COVARIANCE_NAMES[c] for c in config.mmrm_covariances]
    return names[0] + (" (primary; " + " and ".join(names[1:]) + " as sensitivity to the structure)"
                       if len(names) > 1 else "")


def _frequentist_methods(config: RunConfig) -> str:
    mi = (f"Multiple imputation of the % change under MAR: {config.mi_imputations} imputations by sequential "
          "Bayesian regression (BMD as % change, DAS28-CRP as auxiliary, undefined responder status imputed and "
          "classified by the responder rule; stratified by group where every group has enough patients), "
          "pooled by Rubin's rules with Barnard-Rubin df." if config.mi_imputations else
          "No multiple imputation (mi_imputations = 0).")
    return ("Mixed models on all observed data (valid under MAR): per site the LMM bmd ~ month * responder + "
            "(1 + month | patient) by REML with Satterthwaite df (and the same + age + sex + bmi), the month-"
            f"{config.endpoint_month:g} change per group as a linear contrast and in % by the delta method; an MMRM "
            f"of the change from baseline, change ~ baseline + visit * responder, visit as a factor, residual "
            f"covariance {_covariances_text(config)}, REML, Satterthwaite df, least-squares means per visit and "
            f"group. Undefined responder status: strategy '{config.undefined_responders}'. " + mi)


_MODEL_TEXT = {
    "lmm": "the hierarchical LMM above",
    "robust": "the same LMM with Student-t residuals (a scale mixture with non-centred weights, the patient "
              "effects integrated out given the weights; nu ~ Gamma(2, 0.1))",
    "mmrm": "a Bayesian MMRM of the change from baseline (visit as a factor, unstructured covariance with an LKJ "
            "prior on the correlations, missing visits masked), the prior set translated to the visits",
    "joint": "a joint model of both sites with patient intercepts and slopes correlated across sites (4 x 4 "
             "covariance, LKJ prior)",
    "activity": "the LMM with the time-varying DAS28-CRP as a predictor of the BMD slope, with and without the "
                "responder indicator (how much of the responder difference remains once disease activity is in "
                "the model)",
}


def _prior_text(config: RunConfig) -> str:
    from dataclasses import asdict

    from analysis.bayes.fit import prior_object

    parts = []
    for site in config.sites:
        p = asdict(prior_object(config.priors, site))
        parts.append(f"{site}: b0 ~ N(mean of y, {p['intercept_sd']:g}), b1 ~ N(0, {p['slope_sd']:g}), "
                     f"b2 ~ N(0, {p['responder_sd']:g}), b3 ~ N(0, {p['responder_slope_sd']:g}), "
                     f"tau0 ~ N+(0, {p['sd_intercept_scale']:g}), tau1 ~ N+(0, {p['sd_slope_scale']:g}), "
                     f"sigma ~ N+(0, {p['sigma_scale']:g}), correlation ~ LKJ({p['lkj_eta']:g}) "
                     "(g/cm^2, per year for slopes)")
    return "; ".join(parts)


def _bayes_methods(config: RunConfig) -> str:
    others = [f"{m}: {_MODEL_TEXT.get(m, m)}" for m in config.bayes_models if m != "lmm"]
    return (f"Bayesian models ({', '.join(config.bayes_models)}): hierarchical linear mixed model per site, "
            "bmd_ij = b0 + u0_i + (b1 + u1_i) t_ij + b2 r_i + b3 r_i t_ij + e_ij with correlated patient "
            "intercepts and slopes (LKJ prior on their correlation) integrated out analytically (marginal "
            "parameterisation chosen for its sampling geometry), outcome centred and scaled internally, "
            f"prior set '{config.priors}' stated on the data's scale: {_prior_text(config)}. "
            + (("Further models - " + "; ".join(others) + ". ") if others else "")
            + f"Sampling: nutpie, {config.chains} chains x "
            f"{config.draws} draws after {config.tune} tuning steps, target acceptance {config.target_accept}, "
            f"seed {config.seed}. Convergence: R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, "
            "E-BFMI >= 0.3; a failing fit is flagged at the top of the report and on every row it feeds.")


def _compact_tests(table: pd.DataFrame) -> pd.DataFrame:
    keep = table[table["measure"].isin(["pct"]) | (table["analysis"] == "secondary")]
    return keep[["estimand", "test", "n", "estimate", "ci_low", "ci_high", "statistic", "p"]]


def _sensitivity_sections(results, freq_estimands: pd.DataFrame, config: RunConfig, figs: Path,
                          label: str, bayes_estimands: pd.DataFrame | None = None,
                          save_figure: Callable[..., Any] = save_figure) -> list[Section]:
    if not results:
        return []
    sections = []
    for r in results:
        if len(r.table) <= 120:
            tables = [Table(r.title, r.table, f"sensitivity_{r.name}")]
        else:  # e.g. the tipping grid: show the key rows, the full table is in the CSV
            tables = [Table(f"{r.title}: key rows ({len(r.table)} rows in the CSV)", r.forest_rows,
                            f"sensitivity_{r.name}")]
        sections.append(Section(f"sensitivity_{r.name}", f"Sensitivity: {r.title}", paragraphs=list(r.text),
                                tables=tables, figures=[(name, name) for name in r.figures]))
    figures = []
    for site in config.sites:
        fig, rows = forest_figure(results, freq_estimands, site, label=label, bayes_estimands=bayes_estimands)
        save_figure(fig, figs, f"forest_sensitivity_{site}")
        figures.append((f"Key estimands across the main models and the sensitivity analyses, {site}; the first "
                        "row is the frequentist completers analysis as published, then the main frequentist and "
                        "Bayesian analyses", f"forest_sensitivity_{site}"))
    sections.append(Section("sensitivity_forest", "Sensitivity: all analyses side by side", figures=figures))
    return sections


# ---------------------------------------------------------------------------------------------
# sample size for the next study (analysis.power.simulation)
# ---------------------------------------------------------------------------------------------

_POWER_ANALYSIS_TEXT = {
    "lmm": "REML linear mixed model (random intercept and slope), responder x time slope difference, "
           "Satterthwaite t-test",
    "mmrm": "REML MMRM (unstructured covariance), responder - non-responder change at the last visit, "
            "Satterthwaite t-test",
    "completers_t": "completers' % change, Welch t-test",
    "completers_wilcoxon": "completers' % change, Wilcoxon rank-sum test",
    "bayes": "Bayesian trajectory LMM (posterior decision rules)",
}


@dataclass
class PowerStage:
    """The sample-size stage of a run.

    Attributes
    ----------
    result : analysis.power.simulation.PowerResult
        Raw rows per simulated study and analysis; summaries are computed from them.
    smallest_n : DataFrame
        Smallest n of the grid reaching the target power, per site, analysis and rule.
    seed : int
        Root seed of the simulations.
    target : float
        Target power.
    cache : str
        ``"hit"`` (every simulation read from the cache), ``"partial"`` or ``"miss"``.
    simulated : int
        Studies simulated in this run (the rest came from the cache).
    cache_dir : Path
        Where the simulations are kept (resumable chunks, keyed on design, analyses and seed).
    seconds : float
        Wall time of the stage.
    """

    result: Any
    smallest_n: pd.DataFrame
    seed: int
    target: float
    cache: str
    simulated: int
    cache_dir: Path
    seconds: float

    def smallest_n_sentences(self) -> list[str]:
        """One sentence per site and analysis: the smallest n reaching the target, or that none does."""
        out = []
        for _, r in self.smallest_n.iterrows():
            what = f"{SITE_LABELS.get(r['site'], r['site'])}, {r['analysis']} ({r['criterion']})"
            if pd.isna(r["n_min"]):
                out.append(f"{what}: {self.target:.0%} power is not reached within n <= {int(r['max_n'])} "
                           f"(power {r['power_at_max_n']:.2f} at n = {int(r['max_n'])}).")
            else:
                sure = ("not within the grid" if pd.isna(r["n_min_sure"]) else f"n = {int(r['n_min_sure'])}")
                out.append(f"{what}: smallest n with power >= {self.target:.0%} is {int(r['n_min'])} "
                           f"(power {r['power_at_n_min']:.2f}, Monte-Carlo SE {r['mc_se_at_n_min']:.3f}); "
                           f"with the lower 95% Monte-Carlo limit above {self.target:.0%}: {sure}.")
        return out

    def manifest(self) -> dict[str, Any]:
        """What the manifest records: settings, seed, cache use, timings and the smallest n."""
        res = self.result
        return {"seed": self.seed, "sims": res.sims, "n": list(res.design.n), "sites": list(res.design.sites),
                "analyses": list(res.analyses), "target": self.target, "alpha": res.settings.alpha,
                "dropout": res.design.dropout, "generator": res.design.generator,
                "design": res.design.design.to_dict(), "cache": self.cache, "simulated": self.simulated,
                "cache_dir": str(self.cache_dir), "seconds": round(self.seconds, 4),
                "smallest_n": json.loads(self.smallest_n.to_json(orient="records"))}


def power_design(config: RunConfig) -> Any:
    """The power study a configuration asks for: the twin's calibrated design (``data/rajak_twin.json``)
    at ``config.power_ns``, the configured sites, responder rule and dropout.

    Undefined responder status is resolved as configured when the power machinery supports it
    (``last_observed``, ``exclude``), else by ``last_observed``.
    """
    from analysis.power.simulation import PowerDesign
    from analysis.rajak.twin import load_provenance
    from models.simulate import Design

    design = Design.from_dict(load_provenance()["design"])
    strategy = config.undefined_responders if config.undefined_responders in ("last_observed", "exclude") \
        else "last_observed"
    return PowerDesign(design=design, n=config.power_ns, sites=config.sites, strategy=strategy,
                       rule=config.responder.rule(), dropout=config.power_dropout)


def _power_cache_key(design: Any, analyses: tuple[str, ...], settings: Any, seed: int, prior: Any = None) -> str:
    from analysis.power.simulation import POWER_FORMAT
    from models.simulate import SIMULATOR_VERSION

    d = design.to_dict()
    d.pop("n")  # per-n seeds: more sample sizes extend the same study
    spec = {"design": d, "analyses": sorted(analyses), "settings": dataclasses.asdict(settings), "seed": int(seed),
            "format": POWER_FORMAT, "simulator": SIMULATOR_VERSION, "rajak": package_versions().get("rajak"),
            "prior": None if prior is None else prior.key()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def run_power_stage(config: RunConfig, cache_root: Path, log: Callable[[str], None] | None = None,
                    prior_fits: dict[str, Any] | None = None) -> PowerStage:
    """Simulate the power (or, with ``config.power_assurance``, assurance) study of ``config``
    (:func:`power_design`) with the run's seed.

    Parameters
    ----------
    config : RunConfig
        ``power_ns``, ``power_sims``, ``power_analyses``, ``power_target``, ``power_dropout``,
        ``power_workers`` (local processes; results do not depend on it) and ``seed``.
    cache_root : Path
        The run's content-addressed cache (``<output_dir>/.fit-cache``); simulations are kept in
        ``power/<key>/`` (key: design, analyses, settings, seed, simulator and rajak versions) and a
        rerun, or a run interrupted part-way, simulates only what is missing.
    log : callable, optional
        Receives progress messages.
    prior_fits : dict, optional
        ``{site: FitResult}`` of the run's trajectory LMM: the design prior of an assurance study
        (:meth:`analysis.power.simulation.DesignPrior.from_fit` per site, paired by
        :meth:`~analysis.power.simulation.DesignPrior.combine`).

    Returns
    -------
    PowerStage
    """
    from analysis.power.simulation import DesignPrior, PowerSettings, run_power

    say = log or (lambda msg: None)
    t = time.perf_counter()
    design = power_design(config)
    settings = PowerSettings()
    analyses = tuple(config.power_analyses)
    prior = None
    if config.power_assurance:
        missing = [s for s in design.sites if s not in (prior_fits or {})]
        if missing:
            raise ValueError(f"power_assurance needs the run's Bayesian 'lmm' fit at {', '.join(missing)} "
                             "(add 'lmm' to bayes_models)")
        priors = [DesignPrior.from_fit(prior_fits[s], design.design, site=s, generator=design.generator,
                                       max_draws=1000) for s in design.sites]
        prior = priors[0] if len(priors) == 1 else DesignPrior.combine(priors)
        say(f"power: assurance, design parameters drawn from {prior.source}")
    cache_dir = Path(cache_root) / "power" / _power_cache_key(design, analyses, settings, config.seed, prior)
    simulated: set[tuple[int, int]] = set()

    def count(df: pd.DataFrame) -> None:
        simulated.update(zip(df["n"].astype(int), df["sim"].astype(int)))

    say(f"power: {config.power_sims} simulated studies at n = {', '.join(map(str, design.n))} "
        f"({', '.join(analyses)}; seed {config.seed})")
    result = run_power(design, config.power_sims, config.seed, analyses=analyses, settings=settings,
                       out=cache_dir, workers=config.power_workers, progress=False, on_chunk=count,
                       target=config.power_target, prior=prior)
    total = config.power_sims * len(design.n)
    cache = "hit" if not simulated else ("miss" if len(simulated) >= total else "partial")
    if cache == "hit":
        say("power: every simulated study read from the cache")
    else:
        say(f"power: {len(simulated)} of {total} studies simulated"
            + (", the rest read from the cache" if cache == "partial" else ""))
    return PowerStage(result=result, smallest_n=result.smallest_n(config.power_target), seed=config.seed,
                      target=config.power_target, cache=cache, simulated=len(simulated), cache_dir=cache_dir,
                      seconds=time.perf_counter() - t)


def _design_sentences(stage: PowerStage) -> list[str]:
    from analysis.power.simulation import disease_control_slope_pct

    pdz = stage.result.design
    d = pdz.design
    parts = []
    for site in pdz.sites:
        p = d.site(site)
        shift = disease_control_slope_pct(d, site)
        parts.append(f"{SITE_LABELS[site]}: mean annual change {p.slope_responder_pct + shift['responder']:+.2f}% "
                     f"(responders) vs {p.slope_nonresponder_pct + shift['non-responder']:+.2f}% (non-responders), "
                     f"between-patient SD of the annual change {p.slope_sd_pct:g}%, DXA precision "
                     f"{p.precision_cv_pct:g}%")
    lost = stage.result.summary().groupby("site")["lost_fraction"].mean()
    dm = d.dropout
    if pdz.dropout is None:
        drop = (f"the twin's dropout model ({dm.mechanism.upper()}: hazard {dm.visit_hazard:g} per visit, "
                f"log-odds {dm.activity_log_odds:g} per DAS28-CRP point"
                + (f", {dm.bmd_log_odds:g} per % of BMD change" if dm.bmd_log_odds else "") + ")")
    else:
        drop = (f"{dm.mechanism.upper()} dropout calibrated to {pdz.dropout:.0%} of patients without the "
                f"final visit")
    lost_text = ", ".join(f"{SITE_LABELS[s]} {v:.0%}" for s, v in lost.items())
    return [
        f"Design: each simulated study follows the RAJAK twin's calibrated design (data/rajak_twin.json; "
        f"effect sizes, variance components, DXA at months {', '.join(map(str, d.dxa_months))}, "
        f"responder fraction {d.responder_fraction:g}). " + "; ".join(parts) + ".",
        f"Dropout: {drop}; simulated share of patients without the final DXA: {lost_text}. Responder groups "
        f"are derived from the simulated DAS28-CRP as in the real analysis (undefined status: {pdz.strategy}).",
    ]


def power_section(stage: PowerStage, dataset: Dataset, config: RunConfig) -> Section:
    """The report section "Sample size for the next study".

    Parameters
    ----------
    stage : PowerStage
        The simulated power study.
    dataset : Dataset
        The run's data (the text says whose effect sizes were simulated).
    config : RunConfig
        The run configuration.

    Returns
    -------
    Section
        Key ``"power"``: the design (twin-calibrated effect sizes, variance components, dropout),
        the analysis and decision rule, the smallest n reaching the target per site and analysis,
        the power table, the smallest-n table and the power curve.
    """
    res = stage.result
    what = "; ".join(_POWER_ANALYSIS_TEXT.get(a, a) for a in
                     dict.fromkeys(res.summary()["analysis"]))
    paras = _design_sentences(stage) + [
        f"Analysis of each simulated study: {what}; two-sided alpha {res.settings.alpha:g}. {res.sims} simulated "
        f"studies per sample size (seed {stage.seed}); power is the share of studies whose decision rule "
        f"fires (frequentist: p < alpha; Bayesian: the rule in the table), with its Monte-Carlo SE and Wilson "
        f"95% interval.",
        *stage.smallest_n_sentences(),
    ]
    kind = res.kind  # "power" or "assurance"
    if kind == "assurance":
        paras.append(f"Assurance: every simulated study draws its effect sizes and variance components from the "
                     f"posterior of this run's Bayesian LMM on {dataset.label} ({res.prior.source}); assurance is "
                     "the power averaged over that uncertainty.")
    elif dataset.synthetic:
        paras.append("The effect sizes come from the SYNTHETIC twin, calibrated to the published aggregates: "
                     "they are assumptions for planning, not estimates from patient data.")
    else:
        paras.append(f"The effect sizes are the twin's (calibrated to the published RAJAK aggregates), not "
                     f"estimates from {dataset.source} (power_assurance = true draws them from this data's "
                     "posterior).")
    cols = ["site", "analysis", "criterion", "n", "sims", "power", "mc_se", "ci_low", "ci_high", "lost_fraction"]
    summary = res.summary().rename(columns={"power": kind})
    cols = [kind if c == "power" else c for c in cols]
    return Section("power", "Sample size for the next study", paragraphs=paras,
                   tables=[Table(f"{kind.capitalize()} by sample size (Monte-Carlo SE, Wilson 95% interval)",
                                 summary[cols], "power"),
                           Table(f"Smallest n reaching {stage.target:.0%} {kind}", stage.smallest_n,
                                 "power_smallest_n")],
                   figures=[(f"{kind.capitalize()} by sample size with 95% Monte-Carlo intervals; dotted: the "
                             f"{stage.target:.0%} target", "power_curve")])


def _power_methods(config: RunConfig) -> str:
    return (f"Sample size: {config.power_sims} studies simulated per n in {', '.join(map(str, config.power_ns))} "
            "with the cohort simulator (models.simulate, the model behind the twin) and the twin's calibrated "
            f"parameters; each analysed by {', '.join(config.power_analyses)} (analysis.power.simulation). Simulation k at "
            f"n uses SeedSequence({config.seed}, spawn_key=(k, 1, n)), so results depend only on the seed; "
            "simulations are cached in the run's content-addressed cache.")
