r"""A cheaper numba implementation of PyTensor's ``Alloc`` of a 0-d value (a compile-time fix).

Why
---
PyTensor (3.3) lowers ``Alloc(value, *shape)`` with a 0-d ``value`` -- ``pt.zeros(n)``, and the
gradient of every ``sum`` -- to numba source ending in ``res[...] = val``. Numba lowers that
array-to-array assignment through its general broadcasting ``setitem``, which carries a
formatted shape-mismatch error message; compiling the string formatting behind that message
(``str`` of integers, ``join``, concatenation) took 2.5-3 s of the primary LMM's 12 s numba
compile of its log density when the compile cache was empty (measured with numba's compile
events, ``tests/benchmarks/bench_lmm.py``). The assignment can never fail: the value is 0-d
and broadcasts onto any shape.

What
----
:func:`install_numba_overrides` registers, for ``Alloc`` nodes whose value is 0-d, source
that assigns the value's single element as a scalar (``res[...] = val.item()``, which numba
lowers as a plain fill, without the broadcasting path). Every other ``Alloc`` is passed to PyTensor's own implementation
unchanged. The override has its own cache key, so numba's disk cache never mixes the two
versions. The results are identical (tested in ``tests/models/test_numba_overrides.py``).
It is installed by :func:`analysis.fitting.sample` / ``compile_model`` before anything is
compiled, is idempotent, and changes nothing but the numba code of that one case.
"""

from __future__ import annotations

import threading
from hashlib import sha256

__all__ = ["install_numba_overrides", "overrides_installed"]

_LOCK = threading.Lock()
_INSTALLED = False
_CACHE_VERSION = 1


def overrides_installed() -> bool:
    """Whether :func:`install_numba_overrides` has run in this process."""
    return _INSTALLED


def install_numba_overrides() -> None:
    """Register the 0-d ``Alloc`` override with PyTensor's numba dispatch (idempotent)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        import numpy as np
        from pytensor.link.numba.cache import compile_numba_function_src
        from pytensor.link.numba.dispatch import basic as numba_basic
        from pytensor.link.numba.dispatch import tensor_basic  # noqa: F401  (registers Alloc first)
        from pytensor.link.numba.dispatch.basic import (
            numba_funcify_and_cache_key,
            register_funcify_and_cache_key,
        )
        from pytensor.tensor.basic import Alloc

        original = numba_funcify_and_cache_key.dispatch(Alloc)

        @register_funcify_and_cache_key(Alloc)
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
            key = sha256(f"rajak-alloc-0d {_CACHE_VERSION} {len(shape_vars)}".encode()).hexdigest()
            return numba_basic.numba_njit(fn), key

        _INSTALLED = True
