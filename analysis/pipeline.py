"""``rajak run``: load -> validate -> derive -> analyse -> write a run directory.

The run directory ``<output_dir>/<run_id>/`` is assembled in a hidden staging directory beside it
and renamed into place when complete, so an interrupted run leaves no half-written run directory
(and every file inside is itself written atomically). An existing run directory is replaced only
with ``force=True``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from analysis.clinical import derive
from analysis.config import RunConfig
from analysis.data import Dataset, load_dataset, load_twin
from analysis.io import atomic_write_json, atomic_write_text
from analysis.published import ANALYSIS_ASSUMPTIONS, paper_analysis, replication_table

__all__ = ["RunResult", "RunExistsError", "load_for_config", "run", "package_versions"]

PACKAGES = ("rajak", "numpy", "pandas", "scipy", "statsmodels", "pymc", "pytensor", "bambi", "arviz",
            "nutpie", "xarray", "pandera", "pydantic", "matplotlib")


class RunExistsError(FileExistsError):
    """The run directory exists and ``force`` was not given."""


@dataclass
class RunResult:
    """What a run wrote."""

    run_dir: Path
    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def package_versions() -> dict[str, str | None]:
    """Versions of rajak and the libraries whose numbers shape the results."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def load_for_config(config: RunConfig) -> Dataset:
    """The dataset a configuration names (the embedded twin when ``data`` is unset)."""
    if config.data is None:
        return load_twin(encoding=config.encoding)
    return load_dataset(config.data, config.column_map, encoding=config.encoding,
                        endpoint_month=config.endpoint_month)


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
    tables = {
        "replication": _label(replication_table(achieved), dataset),
        "patients": _label(derived.drop_duplicates("patient_id")[
            ["patient_id", "responder_status", "responder_source", "eular_response", "completer",
             "last_visit", "dropout_month"]].reset_index(drop=True), dataset),
        "derived_data": _label(derived, dataset),
    }
    timings["paper_analysis_s"] = time.perf_counter() - t
    say("paper analysis (completers) done")

    staging = out_root / f".{run_id}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "tables").mkdir(parents=True)
    try:
        for name, table in tables.items():
            atomic_write_text(staging / "tables" / f"{name}.csv", table.to_csv(index=False, lineterminator="\n"))
        atomic_write_json(staging / "validation.json", dataset.report.to_dict())
        atomic_write_text(staging / "summary.txt", _summary_text(dataset, config, tables["replication"]))
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
            "tscore_reference": config.tscore.reference_object().describe(),
            "paper_analysis_assumptions": list(ANALYSIS_ASSUMPTIONS),
            "seeds": {"run": config.seed},
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "package_versions": package_versions(),
            "command": " ".join(sys.argv),
            "files": sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()) + ["manifest.json"],
        }
        atomic_write_json(staging / "manifest.json", manifest)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.replace(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"wrote {run_dir}")
    return RunResult(run_dir=run_dir, manifest=manifest, tables=tables)


def _summary_text(dataset: Dataset, config: RunConfig, replication: pd.DataFrame) -> str:
    lines = []
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
    return "\n".join(lines) + "\n"
