"""The few utilities every room uses: atomic file writes (``io``), the packaged data files
(``resources``), provenance of a result (library versions and a digest of rajak's source,
``provenance``) and silencing a chatty library logger (``quiet``).

Public names are imported lazily (PEP 562), so importing one module of the room does not import
the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FigureWriteError": "analysis.common.io",
    "atomic_copy": "analysis.common.io",
    "atomic_write_text": "analysis.common.io",
    "atomic_write_bytes": "analysis.common.io",
    "atomic_write_json": "analysis.common.io",
    "PACKAGES": "analysis.common.provenance",
    "code_digest": "analysis.common.provenance",
    "package_versions": "analysis.common.provenance",
    "quiet_logger": "analysis.common.quiet",
    "data_dir": "analysis.common.resources",
    "data_path": "analysis.common.resources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
