"""From the study's ICE table and the estimand's strategies to what each patient's imputation does.

:class:`analysis.study.ice_table.IceTable` holds the events (patient, first affected visit, type,
optionally a strategy); the estimand (:class:`analysis.run.estimand_config.EstimandConfig`) names
a strategy per type. :func:`resolve_ice` picks each patient's governing event
(:meth:`~analysis.study.ice_table.IceTable.governing`: the one with a non-MAR strategy, else the
earliest) and turns its strategy into the ``(handling, imputation strategy)`` pair of
:class:`analysis.sensitivity.ice.patients.IcePatients`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.study.ice_strategy import parse_strategy

__all__ = ["handling_of", "resolve_ice"]


def handling_of(strategy: str) -> tuple[str, str]:
    """``(handling, imputation strategy)`` of a strategy's text.

    ``"JR"`` -> ``("rbmi", "JR")``; ``"hypothetical:CIR"`` -> ``("hypothetical", "CIR")``;
    ``"treatment_policy"`` -> ``("treatment_policy", "MAR")``; ``"while_on_treatment"`` ->
    ``("while_on_treatment", "MAR")`` (MAR fills only gaps before the event).
    """
    kind, imputation = parse_strategy(strategy)
    if kind in ("hypothetical", "treatment_policy"):
        return kind, str(imputation)
    if kind == "while_on_treatment":
        return kind, "MAR"
    return "rbmi", kind


def resolve_ice(table: Any, strategies: Mapping[str, str] | None = None,
                default: str | None = "MAR") -> dict[str, tuple[float, str, str, str]]:
    """``{patient_id: (first affected month, ice_type, handling, imputation strategy)}``.

    Parameters
    ----------
    table : IceTable
    strategies : mapping, optional
        The estimand's ICE type -> strategy (an event's own strategy wins).
    default : str, optional
        The strategy of types ``strategies`` does not list.
    """
    out = {}
    gov = table.governing(strategies, default)
    for pid, row in gov.iterrows():
        strategy = row["strategy"] if row["strategy"] is not None else (default or "MAR")
        handling, imputation = handling_of(strategy)
        out[str(pid)] = (float(row["month"]), str(row["ice_type"]), handling, imputation)
    return out
