"""Memory that ran out in a worker process, carried back to the command as one line.

A :class:`MemoryError` raised inside a worker process (the figure writer's, the power study's) reaches
the parent as the worker's exception, and a worker the operating system kills for its memory
(the OOM killer) as a broken pool; either way the command should end with one line saying where
memory ran out and what to ask for instead, not a traceback (issue #18).
:class:`WorkerOutOfMemory` is that error: a :class:`MemoryError` that names the stage and the
worker, which the commands turn into their one line.
"""

from __future__ import annotations

__all__ = ["WorkerOutOfMemory", "worker_died"]


class WorkerOutOfMemory(MemoryError):
    """Memory ran out in a worker process (or the worker was killed, most likely for its memory).

    Parameters
    ----------
    stage : str
        The stage of ``rajak run`` it belongs to: ``"figures"`` or ``"power"``.
    what : str
        Where, in words (e.g. ``"drawing the figure 'ppc_spine' in a figure worker process"``).
    killed : bool
        The worker died (killed by the system, most likely out of memory) rather than raising
        :class:`MemoryError`.
    """

    def __init__(self, stage: str, what: str, *, killed: bool = False) -> None:
        self.stage, self.killed = stage, bool(killed)
        self.what = what + (" (the worker process was killed, most likely out of memory)" if killed else "")
        super().__init__(f"out of memory in {self.what}")


def worker_died(exc: BaseException) -> bool:
    """Whether ``exc`` says a worker process died under its pool (``concurrent.futures``'
    ``BrokenProcessPool``, joblib/loky's ``TerminatedWorkerError``), which the operating system's
    out-of-memory killer is the usual cause of."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):
        return True
    return any(cls.__name__ in ("TerminatedWorkerError", "BrokenProcessPool") for cls in type(exc).__mro__)
