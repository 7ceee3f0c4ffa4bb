"""Loading a study's intercurrent events from the estimand's ICE source (the study layer's entry point).

The source is the first one an ``[estimand.ice]`` table (or the ``--ice`` flags) gives: an ICE
file, columns of the study file, dropout-reason text mapped to ICE types, or -- by default -- the
"discontinued" event derived from missing follow-up (:mod:`analysis.study.ice_sources`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.study.design import ResolvedDesign
from analysis.study.ice import read_ice_file, validate_ice
from analysis.study.ice_sources import (
    derive_discontinued,
    ice_from_columns,
    ice_from_reasons,
)
from analysis.study.ice_table import IceTable

__all__ = ["check_delta_rules", "load_ice_events"]


def load_ice_events(cfg: Any, derived: pd.DataFrame, design: ResolvedDesign, *,
                    source: str = "the study file") -> IceTable | None:
    """The study's intercurrent events from the first source given (ICE file > study-file columns >
    dropout reasons > derived from missing follow-up), validated against the study with the
    estimand's strategies (:func:`analysis.study.ice.validate_ice`).

    Parameters
    ----------
    cfg : EstimandConfig
        The ``[estimand]`` table (:class:`analysis.run.estimand_config.EstimandConfig`; read by
        attribute: ``ice``, ``strategy``, ``default_strategy``).
    derived : DataFrame
        The study's derived long frame.
    design : ResolvedDesign
    source : str
        The study file's name, for messages about its columns.

    Returns
    -------
    IceTable or None
        ``None`` when no source applies (``derive = false`` and nothing else given).

    Raises
    ------
    DataValidationError
        One line naming the file, row, patient and value.
    """
    src = cfg.ice
    kind = src.source
    if kind == "none":
        return None
    if kind == "file":
        return read_ice_file(str(src.file), derived, design, src.subject_column, src.month_column, src.type_column,
                             src.strategy_column, strategies=cfg.strategy, default=cfg.default_strategy)
    if kind == "columns":
        table = ice_from_columns(derived, str(src.type_column), str(src.month_column), design,
                                 strategy_col=src.strategy_column, source=source)
    elif kind == "reasons":
        table = ice_from_reasons(derived, str(src.reason_column), src.reasons, design, source=source)
    else:
        table = derive_discontinued(derived, design)
    return validate_ice(table, derived, design, cfg.strategy, cfg.default_strategy)


def check_delta_rules(cfg: Any, design: ResolvedDesign) -> None:
    """Raise ``DataValidationError`` (one line) for a delta rule of the estimand at a month that is not a
    post-baseline visit of the design, or in a group that is not one of its levels (a typo would
    otherwise shift nothing)."""
    from analysis.study.problems import DataValidationError

    visits = [float(v) for v in design.visits if float(v) > 0]
    for rule in getattr(cfg, "delta", ()) or ():
        if rule.visit is not None and not any(abs(float(rule.visit) - v) < 1e-9 for v in visits):
            raise DataValidationError(f"delta {rule.describe()}: month {float(rule.visit):g} is not a post-baseline "
                                      f"visit of the study ({', '.join(f'{v:g}' for v in visits)})")
        if rule.group is not None and rule.group not in tuple(design.group_levels):
            raise DataValidationError(f"delta {rule.describe()}: group {rule.group!r} is not a group of the study "
                                      f"({', '.join(design.group_levels)})")
