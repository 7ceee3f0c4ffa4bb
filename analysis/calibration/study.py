"""The calibration study: :func:`run_calibration` simulates, fits and summarises, resumably.

For each estimator, data sets ``0 .. R-1`` are split into chunks of ``chunk_size``; the chunks
not yet on disk (``out``, :class:`~analysis.calibration.store.CalibrationStore`) run here, on
local processes or on a Dask scheduler (:func:`~analysis.calibration.execution.execute`), each
written as soon as it finishes. The summary (:func:`~analysis.calibration.summary.summarise`) and
the outputs (:func:`~analysis.calibration.output.write_outputs`) are computed from all rows with
index below ``R``, so an interrupted and resumed study, or one run with other workers, gives the
same table (the timings aside).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.calibration.execution import RAW_COLUMNS, Chunk, execute
from analysis.calibration.registry import get_estimator, registered
from analysis.calibration.spec import Estimator
from analysis.calibration.summary import summarise

__all__ = ["CalibrationResult", "plan_chunks", "resolve_estimators", "run_calibration"]


@dataclass
class CalibrationResult:
    """Raw rows (one per estimator and data set), the summary table and the study's metadata
    (``date``, ``version``, ``seed``, ``datasets``, ``command``)."""

    raw: pd.DataFrame
    summary: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        """The Markdown report (:func:`analysis.calibration.output.markdown_table`)."""
        from analysis.calibration.output import markdown_table

        return markdown_table(self.summary, self.meta)

    def write(self, out: str | Path) -> dict[str, Path]:
        """CSV, Markdown, raw rows and the coverage figure in ``out``."""
        from analysis.calibration.output import write_outputs

        return write_outputs(self.summary, self.raw, self.meta, out)


def resolve_estimators(estimators: Sequence[str | Estimator] | None) -> dict[str, Estimator]:
    """Names or specs -> ``{name: Estimator}`` (``None``: every registered one)."""
    if estimators is None:
        return registered()
    out: dict[str, Estimator] = {}
    for e in estimators:
        est = e if isinstance(e, Estimator) else get_estimator(str(e))
        out[est.name] = est
    if not out:
        raise ValueError("no estimator to calibrate")
    return out


def plan_chunks(estimators: dict[str, Estimator], seed: int, datasets: int, done: dict[str, set[int]],
                chunk_size: int) -> list[Chunk]:
    """Chunks of the data sets ``< datasets`` not in ``done``, ``chunk_size`` at a time per estimator."""
    chunks = []
    for name, est in estimators.items():
        todo = [i for i in range(datasets) if i not in done.get(name, set())]
        chunks += [Chunk(est, int(seed), tuple(todo[k:k + chunk_size])) for k in range(0, len(todo), chunk_size)]
    return chunks


def _version() -> str:
    import importlib.metadata as md

    try:
        return md.version("rajak")
    except md.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def run_calibration(estimators: Sequence[str | Estimator] | None = None, datasets: int = 200, seed: int = 1,
                    out: str | Path | None = None, workers: int = 1, scheduler: str | None = None,
                    chunk_size: int = 10, on_chunk: Callable[[Chunk, pd.DataFrame], None] | None = None,
                    command: str | None = None) -> CalibrationResult:
    """Run (or resume) a calibration study.

    Parameters
    ----------
    estimators : sequence of str or Estimator, optional
        Default: every registered estimator (:func:`analysis.calibration.registry.registered`).
    datasets : int
        :math:`R`, data sets per estimator (the full study: 200).
    seed : int
        Root seed (:func:`analysis.calibration.spec.dataset_rng`).
    out : path, optional
        Directory of resumable raw results and of the outputs; ``None``: in memory only.
    workers : int
        Local processes (1: this process).
    scheduler : str, optional
        Dask scheduler address ``tcp://HOST:PORT``.
    chunk_size : int
        Data sets per chunk (the unit of resumption and of work on a worker).
    on_chunk : callable, optional
        ``on_chunk(chunk, rows)`` after each chunk is stored (progress).
    command : str, optional
        The command line recorded in the Markdown (default: the equivalent ``rajak validate-methods``).

    Returns
    -------
    CalibrationResult

    Raises
    ------
    ValueError
        Bad sizes, an unknown estimator, or ``out`` holding another study.
    """
    if int(datasets) < 1 or int(chunk_size) < 1 or int(workers) < 1:
        raise ValueError(f"datasets, chunk_size and workers must be at least 1, got {datasets}, {chunk_size}, {workers}")
    ests = resolve_estimators(estimators)
    store = None
    if out is not None:
        from analysis.calibration.store import CalibrationStore

        store = CalibrationStore(out, seed)
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in ests}
    done: dict[str, set[int]] = {}
    if store is not None:
        for name in ests:
            held = store.load(name)
            held = held.loc[held["dataset"] < datasets]
            frames[name].append(held)
            done[name] = set(held["dataset"].astype(int))
    chunks = plan_chunks(ests, seed, int(datasets), done, int(chunk_size))
    if chunks:
        gen = execute(chunks, scheduler=scheduler, workers=int(workers))
        try:
            for chunk, rows in gen:
                if store is not None:
                    store.write(chunk, rows)
                frames[chunk.estimator.name].append(rows)
                if on_chunk is not None:
                    on_chunk(chunk, rows)
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
    parts = [f for name in ests for f in frames[name] if len(f)]
    raw = (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=RAW_COLUMNS))
    order = {name: k for k, name in enumerate(ests)}
    raw = (raw.assign(_o=raw["estimator"].map(order)).sort_values(["_o", "dataset"]).drop(columns="_o")
           .reset_index(drop=True))
    meta = {"date": dt.date.today().isoformat(), "version": _version(), "seed": int(seed), "datasets": int(datasets),
            "command": command or (f"rajak validate-methods --estimators {','.join(ests)} --datasets {datasets} "
                                   f"--seed {seed}")}
    result = CalibrationResult(raw, summarise(raw, ests), meta)
    if out is not None:
        result.write(out)
    return result
