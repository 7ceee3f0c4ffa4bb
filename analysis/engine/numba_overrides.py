r"""Two process-level fixes to how PyTensor's numba backend compiles and caches.

1. A cheaper numba implementation of ``Alloc`` of a 0-d value (compile time)
----------------------------------------------------------------------------
PyTensor (3.3) lowers ``Alloc(value, *shape)`` with a 0-d ``value`` -- ``pt.zeros(n)``, and the
gradient of every ``sum`` -- to numba source ending in ``res[...] = val``. Numba lowers that
array-to-array assignment through its general broadcasting ``setitem``, which carries a
formatted shape-mismatch error message; compiling the string formatting behind that message
(``str`` of integers, ``join``, concatenation) took 2.5-3 s of the primary LMM's 12 s numba
compile of its log density when the compile cache was empty (measured with a listener on
numba's ``numba:compile`` events; the whole effect is in ``tests/benchmarks/bench_lmm.py``). The assignment can never fail: the value is 0-d
and broadcasts onto any shape.

For ``Alloc`` nodes whose value is 0-d, the override generates source that assigns the value's
single element as a scalar (``res[...] = val.item()``, which numba lowers as a plain fill,
without the broadcasting path). Every other ``Alloc`` is passed to PyTensor's own
implementation unchanged. The override has its own cache key, so numba's disk cache never
mixes the two versions. The results are identical (tested in
``tests/analysis/engine/test_numba_overrides.py``).

2. Serialised writes to numba's disk cache (correctness)
--------------------------------------------------------
Numba's cache keeps one index file per function, mapping each compiled signature to a
numbered data file, and picks the number of a new entry by reading the index first
(``IndexDataCacheFile.save``: read index, choose the first free number, write index, write
data). PyTensor gives many functions one index (the same generated source compiled for
several dtypes: six signatures of ``add`` in one index after one LMM fit). Two processes
sharing the cache -- pytest-xdist workers, parallel power simulations, two ``rajak`` runs --
that add different signatures to one index at the same moment can both pick the same number;
if their writes interleave, the index can send one signature to the other's machine code (a
wrong result or a crash in a later process; reproduced in the tests). The override holds an
exclusive ``flock`` on a lock file in the cache directory for the duration of each save, so
the read-choose-write sequence of one process cannot interleave with another's.

Limits: only processes that installed the override take the lock (other programs sharing the
cache do not); numba's ``flush`` (an index reset when a function is recompiled) is not
locked; reads are not locked -- a reader that sees an index before its data file exists gets
numba's usual "not cached", but after an index reset (a new numba version) a reader holding
the old index could still pick up a renumbered data file, as with numba alone. Where the lock
cannot be had (see :func:`locked_cache_save`) the save runs unlocked. A
``.rajak-cache-save.lock`` file is left in each numba cache directory that is written.

:func:`install_numba_overrides` installs both; :func:`analysis.engine.sampling.sample` /
``compile_model`` and the prior checks call it before anything is compiled. It is idempotent.
"""

from __future__ import annotations

import os
import threading
import time
from hashlib import sha256
from typing import Any

__all__ = ["install_numba_overrides", "locked_cache_save", "overrides_installed"]

_LOCK = threading.Lock()
_INSTALLED = False
_CACHE_VERSION = 1
_SAVE_LOCK_NAME = ".rajak-cache-save.lock"
_SAVE_LOCK_TIMEOUT_S = 30.0


def locked_cache_save(save: Any, timeout_s: float = _SAVE_LOCK_TIMEOUT_S) -> Any:
    """Wrap numba's ``IndexDataCacheFile.save`` in an exclusive ``flock`` (see the module doc).

    The lock file is ``<cache directory>/.rajak-cache-save.lock``. The save runs unlocked, as
    numba's own would, where the lock cannot be had: the file cannot be opened (a read-only
    directory), the file system has no ``flock`` (some network mounts), another process has
    held it for ``timeout_s`` seconds (a stopped process must not stall every compile), or
    this thread already holds it (a nested save).
    """
    import fcntl

    held = threading.local()

    def acquire(path: str) -> int | None:
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):  # flock works on a read-only fd
            try:
                fd = os.open(path, flags, 0o644)
                break
            except OSError:
                continue
        else:
            return None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.005)
            except OSError:  # no flock on this file system
                break
        os.close(fd)
        return None

    def save_locked(self: Any, key: Any, data: Any) -> None:
        if getattr(held, "active", False):
            save(self, key, data)
            return
        fd = acquire(os.path.join(self._cache_path, _SAVE_LOCK_NAME))
        if fd is None:
            save(self, key, data)
            return
        held.active = True
        try:
            save(self, key, data)
        finally:
            held.active = False
            os.close(fd)  # releases the lock

    save_locked.__wrapped__ = save
    return save_locked


def overrides_installed() -> bool:
    """Whether :func:`install_numba_overrides` has run in this process."""
    return _INSTALLED


def install_numba_overrides() -> None:
    """Install the 0-d ``Alloc`` override and the locked cache saves (idempotent)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        import numpy as np
        from numba.core import caching
        from pytensor.link.numba.cache import compile_numba_function_src
        from pytensor.link.numba.dispatch import basic as numba_basic
        from pytensor.link.numba.dispatch import tensor_basic  # noqa: F401  (registers Alloc first)
        from pytensor.link.numba.dispatch.basic import (
            numba_funcify_and_cache_key,
            register_funcify_and_cache_key,
        )
        from pytensor.tensor.basic import Alloc

        original = numba_funcify_and_cache_key.dispatch(Alloc)

        def numba_funcify_Alloc_0d(op, node, **kwargs):
            val, *shape_vars = node.inputs
            if val.type.ndim != 0:
                return original(op, node, **kwargs)
            names = [f"sh{i}" for i in range(len(shape_vars))]
            shape = "".join(f"{n}.item(), " for n in names)
            src = (
                f"def alloc_0d(val, {', '.join(names)}):\n"
                f"    res = np.empty(({shape}), dtype=np.{val.type.dtype})\n"
                f"    res[...] = val.item()\n"
                f"    return res\n"
            )
            fn = compile_numba_function_src(src, "alloc_0d", {"np": np}, write_to_disk=True)
            key = sha256(
                f"rajak-alloc-0d {_CACHE_VERSION} {len(shape_vars)} {val.type.dtype}"
                f"{'' if type(op) is Alloc else ' ' + type(op).__qualname__}".encode()
            ).hexdigest()
            return numba_basic.numba_njit(fn), key

        # RAJAK_NUMBA_OVERRIDES=0 leaves PyTensor's own Alloc (to measure what the override saves;
        # the draws are the same either way); the locked cache saves below are about correctness
        # and always go in
        if os.environ.get("RAJAK_NUMBA_OVERRIDES", "1") != "0":
            register_funcify_and_cache_key(Alloc)(numba_funcify_Alloc_0d)

        if os.name == "posix":
            caching.IndexDataCacheFile.save = locked_cache_save(caching.IndexDataCacheFile.save)
        _INSTALLED = True
