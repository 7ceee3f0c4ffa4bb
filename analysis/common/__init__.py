"""The few utilities every room uses: atomic file writes (``io``), memory that ran out in a worker
process (``memory``), the packaged data files
(``resources``), provenance of a result (library versions and a digest of rajak's source,
``provenance``) and silencing a chatty library logger (``quiet``).

Public names are imported lazily (PEP 562), so importing one module of the room does not import
the others.
"""

from __future__ import annotations

from analysis.common.lazy_exports import lazy_exports


_EXPORTS = {
    "FigureWriteError": "analysis.common.io",
    "atomic_copy": "analysis.common.io",
    "atomic_write_text": "analysis.common.io",
    "atomic_write_bytes": "analysis.common.io",
    "atomic_write_json": "analysis.common.io",
    "WorkerOutOfMemory": "analysis.common.memory",
    "worker_died": "analysis.common.memory",
    "PACKAGES": "analysis.common.provenance",
    "code_digest": "analysis.common.provenance",
    "package_versions": "analysis.common.provenance",
    "quiet_logger": "analysis.common.quiet",
    "data_dir": "analysis.common.resources",
    "data_path": "analysis.common.resources",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
