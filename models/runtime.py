"""Process-level runtime set-up: where PyTensor and numba keep their compile caches.

The caches live in one project-local directory so that repeated runs (and CI steps within one
run) reuse compiled models instead of recompiling. The directory is chosen, in order, from

1. the ``RAJAK_CACHE_DIR`` environment variable;
2. ``<project root>/.cache`` when running from a source checkout (a ``pyproject.toml`` next to the
   packages);
3. the user's cache directory (``platformdirs.user_cache_dir("rajak")``).

PyTensor must be told ``base_compiledir`` (not ``compiledir``, which it derives per platform and
Python version below the base) before it is first imported; this module therefore sets environment
variables only and imports nothing heavy. It also turns PyTensor's numba fast-math off
(``numba__fastmath=False``) so that draws do not depend on whether a model was compiled in the
process or loaded from the disk cache, and keeps PyTensor's generated numba source in the cache
directory (``generated_src_dir``) instead of a new file in the system temporary directory per
function and process. Settings the user already made in ``PYTENSOR_FLAGS`` or
``NUMBA_CACHE_DIR`` are respected.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "configure_compile_cache"]

_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Return the rajak cache directory (not created)."""
    env = os.environ.get("RAJAK_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    if (_PROJECT_ROOT / "pyproject.toml").is_file():
        return _PROJECT_ROOT / ".cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("rajak"))


def configure_compile_cache() -> Path:
    """Point PyTensor's and numba's compile caches into :func:`cache_dir`.

    Returns the cache directory. Safe to call more than once; it never overrides a
    ``base_compiledir`` or ``NUMBA_CACHE_DIR`` the user set.
    """
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    extras = []
    if "base_compiledir" not in flags:
        extras.append(f"base_compiledir={root / 'pytensor'}")
    if "generated_src_dir" not in flags:
        # PyTensor writes the Python source of every numba function it generates to a file it
        # keeps (tracebacks and numba's type inference read it back); by default one new file in
        # the system temporary directory per function and process, never removed (~5000 files
        # after one test-suite run). In this directory the files are content-addressed: one per
        # distinct source, reused by later processes.
        extras.append(f"generated_src_dir={root / 'pytensor' / 'generated-src'}")
    if "numba__fastmath" not in flags:
        # fast-math lets LLVM reassociate floating point: code compiled in this process and code
        # loaded from numba's disk cache then differ in the last bit of the gradient, and NUTS
        # turns that into different draws (seen with the joint model). Off: the same data, seed and
        # configuration give the same draws whether the cache was cold or warm.
        extras.append("numba__fastmath=False")
    if extras:
        os.environ["PYTENSOR_FLAGS"] = ",".join([flags, *extras] if flags else extras)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(root / "numba"))
    return root
