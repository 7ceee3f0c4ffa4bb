"""One study's data, from file to analysis-ready frame: reading and validating a file against the
data contract (``data``, ``contract``), the clinical derivations (scores, responder status, %
change, T-scores: ``clinical``), the grouping strategies for undefined status (``groups``) and the
estimand names every analysis shares (``estimands``).

Public names are imported lazily (PEP 562), so importing one module of the room does not import
the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "das28_crp": "analysis.study.clinical",
    "cdai": "analysis.study.clinical",
    "eular_response": "analysis.study.clinical",
    "ResponderRule": "analysis.study.clinical",
    "classify_responders": "analysis.study.clinical",
    "percent_change": "analysis.study.clinical",
    "TScoreReference": "analysis.study.clinical",
    "tscores": "analysis.study.clinical",
    "patient_status": "analysis.study.clinical",
    "derive": "analysis.study.clinical",
    "SITES": "analysis.study.clinical",
    "ColumnSpec": "analysis.study.contract",
    "COLUMNS": "analysis.study.contract",
    "REQUIRED": "analysis.study.contract",
    "BASELINE_COVARIATES": "analysis.study.contract",
    "DAS28_COMPONENTS": "analysis.study.contract",
    "CDAI_COMPONENTS": "analysis.study.contract",
    "MEASUREMENT_COLUMNS": "analysis.study.contract",
    "coercion_schema": "analysis.study.contract",
    "range_schema": "analysis.study.contract",
    "spec": "analysis.study.contract",
    "DataValidationError": "analysis.study.data",
    "Problem": "analysis.study.data",
    "ExcludedRow": "analysis.study.data",
    "ValidationReport": "analysis.study.data",
    "Dataset": "analysis.study.data",
    "load_dataset": "analysis.study.data",
    "load_twin": "analysis.study.data",
    "load_for_config": "analysis.study.data",
    "read_table": "analysis.study.data",
    "SITE_LABELS": "analysis.study.estimands",
    "GROUP_LABELS": "analysis.study.estimands",
    "UNIT_LABELS": "analysis.study.estimands",
    "estimand_name": "analysis.study.estimands",
    "difference_name": "analysis.study.estimands",
    "UndefinedStrategy": "analysis.study.groups",
    "GroupAssignment": "analysis.study.groups",
    "assign_groups": "analysis.study.groups",
    "STRATEGY_TEXT": "analysis.study.groups",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
