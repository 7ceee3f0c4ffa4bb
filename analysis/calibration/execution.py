"""Running chunks of calibration data sets: in this process, on local worker processes, or on Dask.

A :class:`Chunk` is one estimator and a few data-set indices; :func:`run_chunk` simulates and fits
them and returns one row per data set (:data:`RAW_COLUMNS`). A fit that raises is a row with its
error message, not a failure of the study. ``setup()`` of an estimator runs once per process
(:func:`estimator_state`) and its state is reused by every later chunk there (compiled-once refits).

:func:`execute` mirrors :func:`analysis.power.execution.execute`, whose chunks are power studies:
the joblib/loky process pool (fresh interpreters, warm between calls; the estimator travels by
cloudpickle) or one task per chunk on a Dask scheduler (``tcp://HOST:PORT``), each result gathered
as soon as it finishes. Rows depend only on the chunk (:func:`analysis.calibration.spec.dataset_rng`),
so a chunk rerun on another worker, or after an interruption, gives the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.calibration.spec import Estimator, dataset_rng

__all__ = ["RAW_COLUMNS", "Chunk", "estimator_state", "execute", "run_chunk"]

#: One row per data set.
RAW_COLUMNS = ["estimator", "dataset", "truth", "estimate", "se", "ci_low", "ci_high", "fit_seconds",
               "simulate_seconds", "setup_seconds", "error"]

_STATES: dict[str, Any] = {}


@dataclass(frozen=True)
class Chunk:
    """Data sets ``indices`` of ``estimator`` in the study with root ``seed``."""

    estimator: Estimator
    seed: int
    indices: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.estimator.name}-{self.indices[0]}-{self.indices[-1]}-{len(self.indices)}"


def estimator_state(estimator: Estimator) -> tuple[Any, float]:
    """``(state, seconds spent now)``: ``estimator.setup()`` the first time in this process."""
    if estimator.setup is None:
        return None, 0.0
    if estimator.name in _STATES:
        return _STATES[estimator.name], 0.0
    t0 = time.perf_counter()
    _STATES[estimator.name] = estimator.setup()
    return _STATES[estimator.name], time.perf_counter() - t0


def _one(est: Estimator, seed: int, index: int, state: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    data, truth = est.simulate(dataset_rng(seed, est, index))
    t1 = time.perf_counter()
    row = {"estimator": est.name, "dataset": int(index), "truth": float(truth), "estimate": np.nan, "se": np.nan,
           "ci_low": np.nan, "ci_high": np.nan, "simulate_seconds": t1 - t0, "setup_seconds": 0.0, "error": ""}
    try:
        out = est.fit(data) if est.setup is None else est.fit(data, state)
        vals = [float(v) for v in out]
        if len(vals) != 4:
            raise ValueError(f"fit returned {len(vals)} values, not (estimate, se, ci_low, ci_high)")
        if not np.all(np.isfinite(vals)):
            raise ValueError(f"fit returned a non-finite value {vals}")
        row.update(zip(("estimate", "se", "ci_low", "ci_high"), vals))
    except Exception as exc:  # noqa: BLE001 (a failed fit is a result of the study)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        row["error"] = f"{type(exc).__name__}: {msg}"[:300]
    row["fit_seconds"] = time.perf_counter() - t1
    return row


def run_chunk(chunk: Chunk) -> pd.DataFrame:
    """Simulate and fit every data set of ``chunk``: a frame with :data:`RAW_COLUMNS`."""
    from analysis.frequentist.reml import single_threaded_blas

    state, setup_s = estimator_state(chunk.estimator)
    rows = single_threaded_blas(lambda: [_one(chunk.estimator, chunk.seed, i, state) for i in chunk.indices])()
    rows[0]["setup_seconds"] = setup_s
    return pd.DataFrame(rows, columns=RAW_COLUMNS)


def execute(chunks: list[Chunk], scheduler: str | None = None, workers: int = 1) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    """Run ``chunks`` and yield ``(chunk, rows)`` as each finishes (in any order).

    Parameters
    ----------
    chunks : list of Chunk
    scheduler : str, optional
        Dask scheduler address ``tcp://HOST:PORT``; otherwise local.
    workers : int
        Local processes: 1 (or one chunk) runs here, more use a loky pool.
    """
    if scheduler is not None:
        return _dask(chunks, scheduler)
    if workers <= 1 or len(chunks) <= 1:
        return ((c, run_chunk(c)) for c in chunks)
    return _pool(chunks, min(int(workers), len(chunks)))


def _tagged(chunk: Chunk) -> tuple[str, pd.DataFrame]:
    return chunk.key, run_chunk(chunk)


def _pool(chunks: list[Chunk], workers: int) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    from joblib import Parallel, delayed

    by_key = {c.key: c for c in chunks}
    par = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered", batch_size=1)
    gen = par(delayed(_tagged)(c) for c in chunks)
    try:
        for key, df in gen:
            yield by_key[key], df
    finally:
        gen.close()


def _dask(chunks: list[Chunk], scheduler: str, timeout: float = 30.0) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    """One task per chunk (key unique to this run), gathered and released as each finishes; a chunk
    whose task raises is retried twice, then a :class:`RuntimeError` names it."""
    import uuid

    from distributed import Client, as_completed

    client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
    run = uuid.uuid4().hex[:12]
    owner = {f"rajak-calibration-{run}-{c.key}": c for c in chunks}
    pending: dict[str, Any] = {}
    try:
        for key, c in owner.items():
            pending[key] = client.submit(run_chunk, c, key=key, pure=False, retries=2)
        done = as_completed(list(pending.values()), loop=client.loop, with_results=True, raise_errors=False)
        for fut, value in done:
            if pending.pop(fut.key, None) is None:
                continue
            status = fut.status
            fut.release()
            if status != "finished":
                c = owner[fut.key]
                raise RuntimeError(f"calibration chunk {c.key} failed on the Dask cluster: {value!r}")
            yield owner[fut.key], value
    finally:
        if pending:
            client.cancel(list(pending.values()))
        client.close()
