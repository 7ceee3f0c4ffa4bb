"""The sampling engine: compile a PyMC model for nutpie once per process and from a disk cache
(``compile``), sample it (``sampling``), judge convergence (``diagnostics``), keep the result
(``results``), refit a compiled model to new data (``refit``), and leave the process quickly
(``process_exit``). The ONLY room that touches private APIs of nutpie, PyMC, PyTensor, numba or
arviz; each such use carries a comment saying why and a test that fails when upstream changes it
(``graph_cache``, ``compile_ahead``, ``numba_overrides``, ``lazy_imports``, ``prior_predictive``).

The public face is small: sample a model, judge and keep the result, compile once and refit.
Public names are imported lazily (PEP 562), so importing one module of the room does not import
the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "clean_bambi_posterior": "analysis.engine.bambi_results",
    "clear_compile_cache": "analysis.engine.compile",
    "compile_model": "analysis.engine.compile",
    "Thresholds": "analysis.engine.diagnostics",
    "Diagnostics": "analysis.engine.diagnostics",
    "diagnose": "analysis.engine.diagnostics",
    "diagnose_arrays": "analysis.engine.diagnostics",
    "prior_predictive_sampler": "analysis.engine.prior_predictive",
    "fast_exit": "analysis.engine.process_exit",
    "Refit": "analysis.engine.refit",
    "Refitter": "analysis.engine.refit",
    "compile_for_refit": "analysis.engine.refit",
    "FitResult": "analysis.engine.results",
    "load_fit": "analysis.engine.results",
    "Sampler": "analysis.engine.sampling",
    "sample": "analysis.engine.sampling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
