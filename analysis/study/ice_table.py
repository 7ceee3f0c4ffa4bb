"""The table of intercurrent events (ICEs) of a study: rbmi's ``data_ice``, one row per patient and
event, with the first visit the event affects and, optionally, the row's own strategy.

A row without a strategy takes the strategy of its type from the estimand's table (``[estimand]``
``strategy.<type>``), else the estimand's default strategy (:meth:`IceTable.resolved`). Several rows
for one patient are allowed when at most one of them has a strategy other than MAR (checked by
:func:`analysis.study.ice.validate_ice`); that row governs the patient's imputation
(:meth:`IceTable.governing`), else the earliest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from analysis.study.ice_strategy import is_mar, normalise_ice_type, normalise_strategy

__all__ = ["ICE_COLUMNS", "IceTable", "normalise_strategies"]

#: The columns of :attr:`IceTable.frame`.
ICE_COLUMNS = ("patient_id", "month", "ice_type", "strategy", "where")


def normalise_strategies(strategies: Mapping[str, str] | None) -> dict[str, str]:
    """An estimand's ``{ICE type: strategy}`` table with canonical types and strategies.

    Raises
    ------
    DataValidationError
        One line naming a type or strategy that cannot be read.
    """
    return {normalise_ice_type(k): normalise_strategy(v) for k, v in (strategies or {}).items()}


@dataclass(frozen=True, eq=False)
class IceTable:
    """A study's intercurrent events.

    Attributes
    ----------
    frame : DataFrame
        ``patient_id`` (str), ``month`` (the first affected nominal visit, float: a post-baseline
        visit of the design), ``ice_type`` (str, a lower-case identifier), ``strategy`` (canonical
        strategy text, or ``None``: the estimand's strategy for the type) and ``where`` (where the row
        came from, for messages: ``"line 3"``, ``""``), sorted by patient and month. A copy of what
        was given; the input is not modified.
    source : str
        Where the table came from (a file name, ``"column 'ice_type' of trial.csv"``,
        ``"missing follow-up"``), for messages and the report.
    """

    frame: pd.DataFrame
    source: str

    def __post_init__(self) -> None:
        f = self.frame.copy()
        if "where" not in f.columns:
            f["where"] = ""
        if "strategy" not in f.columns:
            f["strategy"] = None
        missing = [c for c in ICE_COLUMNS if c not in f.columns]
        if missing:
            raise ValueError(f"an ICE table needs the columns {', '.join(ICE_COLUMNS)}; missing {missing[0]!r}")
        f = f[list(ICE_COLUMNS)]
        f["patient_id"] = f["patient_id"].astype(object)
        f["month"] = pd.to_numeric(f["month"], errors="coerce").astype(float)
        f["strategy"] = f["strategy"].astype(object).where(f["strategy"].notna(), None)
        f["where"] = f["where"].fillna("").astype(str)
        f = f.sort_values(["patient_id", "month"], kind="stable", na_position="last").reset_index(drop=True)
        object.__setattr__(self, "frame", f)

    @classmethod
    def empty(cls, source: str = "no intercurrent events") -> IceTable:
        """A table with no events."""
        return cls(pd.DataFrame({c: pd.Series(dtype=float if c == "month" else object) for c in ICE_COLUMNS}),
                   source)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def patients(self) -> tuple[str, ...]:
        """The patients with at least one event, in order."""
        return tuple(dict.fromkeys(self.frame["patient_id"]))

    @property
    def types(self) -> tuple[str, ...]:
        """The ICE types present, in order of first appearance."""
        return tuple(dict.fromkeys(self.frame["ice_type"]))

    def counts(self) -> pd.Series:
        """Patients per ICE type (a patient counted once per type), in order of first appearance."""
        n = self.frame.groupby("ice_type", sort=False)["patient_id"].nunique()
        return n.reindex(list(self.types)).astype(int)

    def resolved(self, estimand_strategies: Mapping[str, str] | None = None,
                 default: str | None = None) -> pd.DataFrame:
        """The frame with every row's strategy: its own, else the estimand's for its type, else
        ``default`` (``None`` where none applies).

        Parameters
        ----------
        estimand_strategies : mapping of str to str, optional
            ICE type -> strategy (any spelling :func:`~analysis.study.ice_strategy.parse_strategy` reads).
        default : str, optional
            The strategy of types the mapping does not list.

        Returns
        -------
        DataFrame
            :attr:`frame` with ``strategy`` filled in and canonical.
        """
        table = normalise_strategies(estimand_strategies)
        fallback = normalise_strategy(default) if default is not None else None
        out = self.frame.copy()
        own = [None if s is None or pd.isna(s) else normalise_strategy(s) for s in out["strategy"]]
        by_type = [table.get(t, fallback) for t in out["ice_type"]]
        out["strategy"] = pd.Series([o if o is not None else b for o, b in zip(own, by_type)], index=out.index,
                                    dtype=object)
        return out

    def governing(self, estimand_strategies: Mapping[str, str] | None = None,
                  default: str | None = None) -> pd.DataFrame:
        """Per patient, the event that governs the imputation: the one with a non-MAR strategy if
        there is one, else the earliest; indexed by ``patient_id`` with ``month``, ``ice_type`` and
        ``strategy`` (as :meth:`resolved`)."""
        r = self.resolved(estimand_strategies, default)
        if r.empty:
            return r.set_index("patient_id")[["month", "ice_type", "strategy"]]
        r["_mar"] = [is_mar(s) for s in r["strategy"]]
        r = r.sort_values(["patient_id", "_mar", "month"], kind="stable").drop_duplicates("patient_id")
        return r.set_index("patient_id")[["month", "ice_type", "strategy"]].reindex(list(self.patients))

    def strategy_for(self, estimand_strategies: Mapping[str, str] | None = None,
                     default: str | None = None) -> pd.Series:
        """Each patient's strategy (that of the event :meth:`governing` picks), indexed by ``patient_id``.

        Parameters
        ----------
        estimand_strategies : mapping of str to str
            The estimand's ICE type -> strategy table.
        default : str, optional
            The strategy of types it does not list.

        Returns
        -------
        Series
            Canonical strategy text (``None`` where neither the row, the table nor ``default`` gives one).
        """
        s = self.governing(estimand_strategies, default)["strategy"]
        return s.astype(object).where(s.notna(), None).rename("strategy")

    def first_month(self) -> pd.Series:
        """Each patient's earliest first affected visit, indexed by ``patient_id``."""
        return self.frame.groupby("patient_id", sort=False)["month"].min().astype(float)

    def describe(self) -> str:
        """One line: how many events of which types, from where."""
        if self.frame.empty:
            return f"no intercurrent events ({self.source})"
        parts = [f"{t} {n}" for t, n in self.counts().items()]
        return (f"{len(self.patients)} patient{'s' if len(self.patients) != 1 else ''} with intercurrent events "
                f"({', '.join(parts)}) from {self.source}")

