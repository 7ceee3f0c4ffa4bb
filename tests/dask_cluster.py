"""A real local Dask cluster for the power tests and benchmarks, a count of chunk runs, a worker killer.

:func:`local_cluster` starts a ``distributed.LocalCluster`` whose workers are separate processes
(each under a nanny that restarts it if it dies) on 127.0.0.1 only, with a scheduler plugin
(:class:`ChunkRuns`) that counts how often the scheduler sent each power-study chunk
(``rajak-power-chunk-*`` tasks, :mod:`analysis.power.execution`) to a worker and how many workers
it lost. :class:`WorkerKiller` SIGKILLs, from a background thread, a worker process that is running
a chunk, once the study has delivered its first chunk.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["ChunkRuns", "WorkerKiller", "chunk_runs", "local_cluster"]

PREFIX = "rajak-power-chunk-"


class ChunkRuns(SchedulerPlugin):
    """Scheduler plugin: how often each chunk task went to ``processing``, and workers removed."""

    name = "rajak-chunk-runs"

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.removed: list[str] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """Count a chunk's (re)starts."""
        if finish == "processing" and isinstance(key, str) and key.startswith(PREFIX):
            self.runs[key] += 1

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """Record a lost worker."""
        self.removed.append(worker)


def chunk_runs(client: Client) -> tuple[dict[str, int], list[str]]:
    """``({chunk key: times sent to a worker}, [removed workers])`` so far (and reset both)."""

    def read(dask_scheduler):
        plugin = dask_scheduler.plugins[ChunkRuns.name]
        out = dict(plugin.runs), list(plugin.removed)
        plugin.runs.clear()
        plugin.removed.clear()
        return out

    return client.run_on_scheduler(read)


@contextmanager
def local_cluster(n_workers: int = 2) -> Iterator[tuple[str, Client]]:
    """``(scheduler address, client)`` of a LocalCluster of ``n_workers`` processes x 1 thread."""
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit=0, silence_logs=logging.ERROR) as cluster:
        with Client(cluster, set_as_default=False) as client:
            client.register_plugin(ChunkRuns())
            client.wait_for_workers(n_workers, timeout=120)
            yield cluster.scheduler_address, client


class WorkerKiller(threading.Thread):
    """SIGKILL one worker process that is running a chunk, after :meth:`arm` (e.g. the first chunk).

    Attributes
    ----------
    killed : dict
        ``worker``, ``pid`` and ``chunks`` (the chunk keys it was running or holding) once done.
    """

    def __init__(self, client: Client, timeout: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.timeout = timeout
        self.armed = threading.Event()
        self.killed: dict[str, Any] = {}
        self.error: BaseException | None = None

    def arm(self, *_: Any) -> None:
        """Let the thread kill (usable as ``run_power(on_chunk=...)``)."""
        self.armed.set()

    def run(self) -> None:  # noqa: D102 - threading.Thread.run
        try:
            if not self.armed.wait(self.timeout):
                return
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline and not self.killed:
                busy = {w: [k for k in keys if str(k).startswith(PREFIX)]
                        for w, keys in self.client.processing().items()}
                busy = {w: k for w, k in busy.items() if k}
                if busy:
                    worker = min(busy)
                    pid = self.client.run(os.getpid, workers=[worker])[worker]
                    if self.client.processing(workers=[worker]).get(worker):  # still busy: kill it now
                        os.kill(pid, signal.SIGKILL)
                        self.killed = {"worker": worker, "pid": pid, "chunks": busy[worker]}
                        return
                time.sleep(0.02)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err
