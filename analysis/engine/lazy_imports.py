"""Import nutpie without the cost it does not need (a fresh ``rajak fit`` spends ~2 s importing).

nutpie's ``sample`` module does ``import arviz``, the ArviZ meta-package, whose ``__init__``
imports ``arviz_plots`` and with it ``matplotlib.pyplot`` (~0.5 s) although nutpie only calls
``arviz.from_dict`` and ``arviz.dict_to_dataset`` (both ``arviz_base``). :func:`import_nutpie`
puts a stand-in module under the name ``arviz`` while nutpie is imported (only if ``arviz`` is not
imported yet): it answers those two names from ``arviz_base`` and, on any other attribute, imports
the real package, takes its place in ``sys.modules`` and forwards to it, so code that later does
``import arviz`` gets the full package behaviour.

:func:`warm_imports` imports, on a daemon thread, the modules that the first conversion of
nutpie's trace to an ``xarray.DataTree`` pulls in lazily (xarray checks whether ``dask.array`` is
a duck-array module the first time it builds a DataArray: ~0.5 s); started before sampling, the
import overlaps with nutpie's sampler, which runs without the GIL.

``RAJAK_LAZY_IMPORTS=0`` turns both off.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from typing import Any

__all__ = ["import_nutpie", "warm_imports"]

_ARVIZ_BASE_NAMES = ("from_dict", "dict_to_dataset")
_warmed = False


def _enabled() -> bool:
    return os.environ.get("RAJAK_LAZY_IMPORTS", "1") != "0"


class _ArvizStandIn(types.ModuleType):
    """``arviz`` until something needs more than ``arviz_base``'s converters."""

    def __getattr__(self, name: str) -> Any:
        if name in _ARVIZ_BASE_NAMES:
            import arviz_base

            return getattr(arviz_base, name)
        if name.startswith("__") and name.endswith("__") and name not in ("__version__", "__all__"):
            raise AttributeError(name)
        return getattr(_real_arviz(self), name)

    def __dir__(self) -> list[str]:
        return dir(_real_arviz(self))


def _real_arviz(stand_in: types.ModuleType) -> types.ModuleType:
    current = sys.modules.get("arviz")
    if current is stand_in or current is None:
        sys.modules.pop("arviz", None)
        current = importlib.import_module("arviz")
    return current


def import_nutpie() -> types.ModuleType:
    """``import nutpie``, with :class:`_ArvizStandIn` for ``arviz`` while it imports (module doc)."""
    if "nutpie" in sys.modules or not _enabled() or "arviz" in sys.modules:
        return importlib.import_module("nutpie")
    spec = importlib.util.find_spec("arviz")
    stand_in = _ArvizStandIn("arviz")
    if spec is not None:
        stand_in.__spec__ = spec
        stand_in.__file__ = spec.origin
        stand_in.__path__ = list(spec.submodule_search_locations or [])
    sys.modules["arviz"] = stand_in
    try:
        return importlib.import_module("nutpie")
    except BaseException:
        if sys.modules.get("arviz") is stand_in:
            del sys.modules["arviz"]
        raise


def _warm() -> None:
    try:
        importlib.import_module("dask.array")
    except Exception:  # noqa: BLE001 - not installed or broken: xarray then does without it
        pass


def warm_imports() -> None:
    """Start the background imports once per process (module doc)."""
    global _warmed
    if _warmed or not _enabled() or "dask.array" in sys.modules:
        return
    _warmed = True
    threading.Thread(target=_warm, name="rajak-warm-imports", daemon=True).start()
