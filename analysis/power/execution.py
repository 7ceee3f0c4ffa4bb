"""Where the simulations run (this process, local processes, a Dask cluster) and where they are kept.

Execution
---------
:func:`execute` runs chunks of simulations (:class:`analysis.power.simulated_study.Chunk`) in this
process, on joblib/loky worker processes, or on a Dask distributed scheduler
(``"tcp://HOST:PORT"``, :func:`check_scheduler`), and yields each finished chunk's raw rows as it
completes. Results do not depend on which (:mod:`analysis.power.simulated_study`).

On a Dask cluster every chunk is a task of its own, gathered as soon as it finishes; a worker that
dies mid-study has its chunks rerun elsewhere by the scheduler, with the same rows (:func:`_dask`).

A :class:`MemoryError` in a local worker process, or a worker killed by the system (most often for its
memory), ends the study with :class:`~analysis.common.memory.WorkerOutOfMemory` (stage ``"power"``),
which the commands turn into one line saying what to ask for instead.

Resuming
--------
With ``out=DIR`` every finished chunk of simulations is written atomically to
``DIR/chunks/*.parquet`` beside ``DIR/manifest.json`` (a hash of everything that determines the
raw results; :class:`ResultStore`). Re-running the same call after an interruption reads the
chunks, skips finished ``(n, k)`` pairs and simulates only the rest; more simulations or more
sample sizes extend a study.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.common.memory import WorkerOutOfMemory, worker_died
from analysis.power.raw import POWER_FORMAT
from analysis.power.simulated_study import Chunk, StudySpec, run_chunk

__all__ = ["DASK_RETRIES", "ProgressBar", "ResultStore", "check_scheduler", "execute"]


def check_scheduler(address: str) -> str:
    """Return ``address`` if it looks like a Dask scheduler address, ``tcp://HOST:PORT`` (or ``tls://``).

    Raises
    ------
    ValueError
        Otherwise (one line).
    """
    if not re.fullmatch(r"(tcp|tls)://[^\s/:]+:\d{1,5}", address or ""):
        raise ValueError(f"scheduler address must look like tcp://HOST:PORT, got {address!r}")
    return address


def execute(chunks: list[Chunk], scheduler: str | None = None,
            workers: int = 1) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    """Run ``chunks`` and yield ``(chunk, raw rows)`` as each one finishes (in any order).

    Parameters
    ----------
    chunks : list of Chunk
    scheduler : str, optional
        Dask scheduler address; otherwise local.
    workers : int
        Local processes: 1 (or a single chunk) runs in this process, more use a loky process
        pool of at most one process per chunk.

    Returns
    -------
    iterator
        A generator; close it to stop (pending Dask tasks are cancelled, the pool's results dropped).
    """
    if scheduler is not None:
        return _dask(chunks, scheduler)
    if workers == 1 or len(chunks) == 1:
        return _serial(chunks)
    return _process_pool(chunks, min(workers, len(chunks)))


def _serial(chunks: list[Chunk]) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    for c in chunks:
        yield c, run_chunk(c)


def _run_chunk_tagged(chunk: Chunk) -> tuple[int, tuple[int, ...], pd.DataFrame]:
    return chunk.n, chunk.sims, run_chunk(chunk)


def _process_pool(chunks: list[Chunk], workers: int) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    """joblib's loky processes: fresh interpreters that do not re-run the caller's ``__main__`` (no
    ``if __name__ == "__main__"`` guard needed) and stay warm between calls (compiled models are
    kept for ``idle_worker_timeout`` seconds)."""
    from joblib import Parallel, delayed

    by_key = {(c.n, c.sims): c for c in chunks}
    par = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered", batch_size=1)
    gen = par(delayed(_run_chunk_tagged)(c) for c in chunks)
    try:
        for n, sims, df in gen:
            yield by_key[(n, sims)], df
    except Exception as exc:  # noqa: BLE001 -- memory that ran out in a worker: one line, not a traceback
        if not (isinstance(exc, MemoryError) or worker_died(exc)):
            raise
        ns = sorted({c.n for c in chunks})
        raise WorkerOutOfMemory("power", f"the sample-size simulations' worker processes ({workers} processes, "
                                         f"n = {ns[0]}..{ns[-1]})" if len(ns) > 1 else
                                f"the sample-size simulations' worker processes ({workers} processes, n = {ns[0]})",
                                killed=not isinstance(exc, MemoryError)) from None
    finally:
        gen.close()


#: Tries of a chunk whose task *raises* on a Dask worker (a failed fit is a result, not an error).
#: A worker that dies mid-chunk is another matter: the scheduler reruns its chunks elsewhere by
#: itself, up to ``distributed.scheduler.allowed-failures`` deaths per chunk (default 3).
DASK_RETRIES = 2


def _chunk_key(run: str, chunk: Chunk) -> str:
    return f"rajak-power-chunk-{run}-n{chunk.n}-s{chunk.sims[0]}-{chunk.sims[-1]}-{len(chunk.sims)}"


def _dask(chunks: list[Chunk], scheduler: str, timeout: float = 30.0) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    """Run ``chunks`` as tasks of the Dask scheduler at ``scheduler`` and yield each one as it finishes.

    Fault tolerance: every chunk is one task with its own key (unique to this run), computed from
    the chunk alone (seeds from the study's seed and the simulation indices,
    :mod:`analysis.power.simulated_study`), so the scheduler may run it on any worker, in any order,
    as often as needed. A worker that dies (killed, out of memory, its machine lost) takes its
    running and queued chunks with it; the scheduler reruns them on the other workers (or on the
    one its nanny restarts), with identical rows. Each result is gathered to this process as soon as
    its task finishes and the task is then released, so a finished chunk never lives only on a
    worker that may die later, and nothing finished is recomputed. Results are kept by chunk key:
    a chunk is yielded at most once. A chunk whose task raises is retried :data:`DASK_RETRIES`
    times; then (or after too many workers died running it: ``KilledWorker``) a
    :class:`RuntimeError` names it.
    """
    import uuid

    from distributed import Client, as_completed

    client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
    run = uuid.uuid4().hex[:12]
    owner = {_chunk_key(run, c): c for c in chunks}
    pending: dict[str, Any] = {}
    try:
        for key, c in owner.items():
            pending[key] = client.submit(run_chunk, c, key=key, pure=False, retries=DASK_RETRIES)
        done = as_completed(list(pending.values()), loop=client.loop, with_results=True, raise_errors=False)
        for fut, value in done:
            key = fut.key
            if pending.pop(key, None) is None:  # already delivered (defensive: never twice)
                continue
            status = fut.status
            fut.release()  # the rows are here now; the cluster may forget them
            del fut
            if status != "finished":
                c = owner[key]
                err = value[1] if isinstance(value, tuple) and len(value) == 3 else value
                raise RuntimeError(f"simulations {c.sims[0]}..{c.sims[-1]} at n = {c.n} failed on the Dask "
                                   f"cluster ({type(err).__name__}: {err})") from (
                                       err if isinstance(err, BaseException) else None)
            yield owner[key], value
    finally:
        if pending:
            client.cancel(list(pending.values()))
        client.close()


class ProgressBar:
    """A rich progress bar on stderr (or nothing); a context manager.

    Parameters
    ----------
    total, done : int
        Simulations in the study; already finished.
    enabled : bool
    label : str
    """

    def __init__(self, total: int, done: int, enabled: bool, label: str) -> None:
        self.bar = None
        if enabled and total > 0:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                transient=False)
            self.task = self.bar.add_task(label, total=total, completed=done)

    def __enter__(self) -> ProgressBar:
        if self.bar is not None:
            self.bar.start()
        return self

    def advance(self, k: int) -> None:
        """``k`` more simulations finished."""
        if self.bar is not None:
            self.bar.advance(self.task, k)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


class ResultStore:
    """``DIR/manifest.json`` plus one Parquet file per finished chunk in ``DIR/chunks``.

    Parameters
    ----------
    out : path
        The study's directory (created if needed).
    spec : StudySpec
        Its key (:meth:`StudySpec.key`) must match the manifest of an existing directory.
    description : dict
        Written to a new manifest beside the key.

    Raises
    ------
    ValueError
        If ``out`` holds another study, or its manifest is not valid JSON.
    """

    def __init__(self, out: str | os.PathLike, spec: StudySpec, description: dict[str, Any]) -> None:
        from analysis.common.io import atomic_write_json

        self.dir = Path(out)
        self.chunks = self.dir / "chunks"
        self.key = spec.key()
        manifest = self.dir / "manifest.json"
        if manifest.exists():
            try:
                held = json.loads(manifest.read_text(encoding="utf-8"))
            except ValueError as err:
                raise ValueError(f"{manifest} is not valid JSON ({err}); use another output directory") from None
            if held.get("study_key") != self.key:
                raise ValueError(f"{self.dir} holds results of a different power study (key {held.get('study_key')}, "
                                 f"this one {self.key}); use another output directory")
        else:
            self.chunks.mkdir(parents=True, exist_ok=True)
            atomic_write_json(manifest, {"study_key": self.key, "format": POWER_FORMAT, **description})
        self.chunks.mkdir(parents=True, exist_ok=True)

    def load(self) -> pd.DataFrame | None:
        """Every finished simulation on disk (partial temporary files are ignored)."""
        files = sorted(p for p in self.chunks.glob("*.parquet") if not p.name.startswith("."))
        if not files:
            return None
        df = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
        keys = ["n", "sim", "site", "analysis"] + (["contrast"] if "contrast" in df.columns else [])
        return df.drop_duplicates(keys, keep="first").reset_index(drop=True)

    def write(self, df: pd.DataFrame, chunk: Chunk) -> Path:
        """Write one chunk atomically (temporary file in the same directory, then rename)."""
        from analysis.common.io import atomic_write_bytes

        tag = hashlib.sha256(json.dumps(list(chunk.sims)).encode()).hexdigest()[:8]
        name = f"n{chunk.n:05d}-s{chunk.sims[0]:06d}-{chunk.sims[-1]:06d}-{tag}.parquet"
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return atomic_write_bytes(self.chunks / name, buf.getvalue())
