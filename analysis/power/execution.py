"""Where the simulations run (this process, local processes, a Dask cluster) and where they are kept.

Execution
---------
:func:`execute` runs chunks of simulations (:class:`analysis.power.simulated_study.Chunk`) in this
process, on joblib/loky worker processes, or on a Dask distributed scheduler
(``"tcp://HOST:PORT"``, :func:`check_scheduler`), and yields each finished chunk's raw rows as it
completes. Results do not depend on which (:mod:`analysis.power.simulated_study`).

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

from analysis.power.raw import POWER_FORMAT
from analysis.power.simulated_study import Chunk, StudySpec, run_chunk

__all__ = ["ProgressBar", "ResultStore", "check_scheduler", "execute"]


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
    finally:
        gen.close()


def _dask(chunks: list[Chunk], scheduler: str, timeout: float = 30.0) -> Iterator[tuple[Chunk, pd.DataFrame]]:
    from distributed import Client, as_completed

    client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
    futures = []
    try:
        futures = [client.submit(run_chunk, c, pure=False) for c in chunks]
        owner = {f.key: c for f, c in zip(futures, chunks)}
        for fut in as_completed(futures, loop=client.loop):
            yield owner[fut.key], fut.result()
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
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
