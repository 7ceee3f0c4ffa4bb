r"""Compile one numba C callback in a forked child while this process compiles another.

Why
---
With an empty compile cache, nutpie's two callbacks for the primary LMM -- the log density with
its gradient, and the "expand" function that computes the traced variables -- take about 10.5 s
and 2.5 s of numba compilation. Numba compiles under a process-wide lock, and nearly all of the
time is numba's own Python (typing and lowering), so threads cannot overlap the two. A forked
child can: it compiles the expand callback and stores it in numba's disk cache while the parent
compiles the log density, and the parent then loads the expand callback from the cache (about
0.1 s) instead of compiling it.

Safety
------
- The child writes one cache entry only, the callback's own index and data file (unique to the
  callback: its name and source key). Numba's cache numbers the data files of one index by
  reading the index first, so two processes adding *different* signatures to one index at the
  same time can each claim the same data file; the child therefore saves nothing else (the
  entries of the functions it compiles along the way are dropped), and the parent is the only
  writer of everything else.
- The parent never depends on the child, and its wait is bounded: when the parent is done with
  its own compilation it waits at most as long as the child has already been running (at least
  a second; a heuristic -- a child that needs longer than that has little advantage left over
  starting again, and a stuck child costs at most that wait). Then the child is killed and
  the parent compiles the callback itself, exactly as without the child. A child that failed
  is the same, and if the parent's own compilation fails the child is killed at once.
  Draws do not depend on where a callback was compiled (compiled and cached code are the same
  machine code; fast-math is off, :mod:`models.runtime`).
- The child is forked only where that is safe and useful: a POSIX ``fork``, at least two usable
  CPUs, no other Python thread alive in the process (a thread holding a lock at the moment of
  the fork would leave the child deadlocked), and no cache index for the callback yet (an
  index left by another numba version or machine also counts as present: then no child is
  started and the parent compiles as before). The garbage collector's objects are frozen
  across the fork (``gc.freeze``), so the child does not copy the parent's heap by touching it.
  ``RAJAK_PARALLEL_COMPILE=0`` turns it off.
- The child's standard streams go to ``/dev/null`` and it leaves by ``os._exit``: no atexit
  handlers, no flushed copies of the parent's buffers.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import warnings
from typing import Any

__all__ = ["ChildCompile", "compile_cfunc_in_child", "parallel_compile_enabled"]

_MIN_WAIT_S = 1.0


def parallel_compile_enabled() -> bool:
    """Whether this process may fork a compile helper (see the module docstring)."""
    if os.environ.get("RAJAK_PARALLEL_COMPILE", "1") == "0" or not hasattr(os, "fork"):
        return False
    try:
        n_cpu = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n_cpu = os.cpu_count() or 1
    return n_cpu >= 2 and threading.active_count() == 1


def _index_path(fn: Any) -> str:
    from numba.core.caching import FunctionCache

    return FunctionCache(fn)._cache_file._index_path


class ChildCompile:
    """A forked child compiling one C callback into numba's disk cache.

    Attributes
    ----------
    pid : int
    index_path : str
        The cache index file the child writes.
    """

    def __init__(self, pid: int, index_path: str) -> None:
        self.pid = pid
        self.index_path = index_path
        self.started = time.monotonic()
        self._status: str | None = None

    def finish(self, wait_s: float | None = None) -> str:
        """Reap the child: ``"done"``, ``"failed"`` or ``"killed"`` (it took too long).

        Waits at most ``wait_s`` seconds (default: as long as the child has been running, at
        least 1 s; see the module docstring); safe to call more than once.
        """
        if self._status is not None:
            return self._status
        if wait_s is None:
            wait_s = max(_MIN_WAIT_S, time.monotonic() - self.started)
        deadline = time.monotonic() + wait_s
        try:
            while True:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid != 0:
                    self._status = "done" if os.waitstatus_to_exitcode(status) == 0 else "failed"
                    return self._status
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        finally:
            if self._status is None:  # timed out, or interrupted while waiting: kill and reap
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:  # pragma: no cover - exited just now
                    pass
                os.waitpid(self.pid, 0)
                self._status = "killed"
        return self._status


def _child(fn: Any, sig: Any, index_path: str) -> None:  # pragma: no cover - runs in the child
    status = 1
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        warnings.simplefilter("ignore")
        import numba
        from numba.core import caching

        save = caching.IndexDataCacheFile.save

        def save_own_entry_only(self: Any, key: Any, data: Any) -> None:
            if self._index_path == index_path:
                save(self, key, data)

        caching.IndexDataCacheFile.save = save_own_entry_only
        numba.cfunc(sig, cache=True)(fn)
        status = 0
    except BaseException:  # noqa: BLE001 - the parent compiles it instead
        status = 1
    finally:
        os._exit(status)


def compile_cfunc_in_child(fn: Any, sig: Any) -> ChildCompile | None:
    """Fork a child that compiles ``numba.cfunc(sig, cache=True)(fn)`` into the disk cache.

    Parameters
    ----------
    fn : function
        A function registered with PyTensor's numba cache locator
        (``compile_numba_function_src(..., cache_key=...)``), so its cache entry has a fixed
        address.
    sig : numba signature

    Returns
    -------
    ChildCompile or None
        ``None`` when no child was started (disabled, unsafe, or already cached). Call
        :meth:`ChildCompile.finish` before compiling ``fn`` in this process.
    """
    if not parallel_compile_enabled():
        return None
    index_path = _index_path(fn)
    if os.path.exists(index_path):
        return None
    gc.freeze()  # the child's collections then leave the parent's objects (and pages) alone
    pid = -1
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns about fork() when the OS reports more than one thread; native
            # threads (BLAS) are fork-safe, and Python threads were excluded above.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            _child(fn, sig, index_path)
    finally:
        if pid != 0:
            gc.unfreeze()
    return ChildCompile(pid, index_path)
