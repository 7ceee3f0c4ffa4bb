"""Intercurrent events from the study file itself: columns that name them (:func:`ice_from_columns`),
discontinuation derived from missing follow-up (:func:`derive_discontinued`) and a dropout-reason
text mapped to ICE types (:func:`ice_from_reasons`).

The first affected visit of a discontinuation is the first scheduled visit after the patient's last
visit with any BMD at any site of the design; a patient seen at the last visit has none, and a visit
missed in between is not an event (it stays missing at random). Every problem is one line naming the
source, the patient, the column and the value (:class:`~analysis.study.problems.DataValidationError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.study.design import ResolvedDesign
from analysis.study.ice_strategy import normalise_ice_type, normalise_strategy
from analysis.study.ice_table import IceTable
from analysis.study.ice_visits import VisitMap
from analysis.study.problems import DataValidationError, Problem

__all__ = ["NO_ICE", "derive_discontinued", "dropout_months", "empty_cell", "find_column", "ice_from_columns",
           "ice_from_reasons", "long_frame", "patient_key", "show_value"]

#: Reason-map targets that mean "not an intercurrent event" (``completed=none``).
NO_ICE = ("none", "no", "-", "not_an_ice")


def empty_cell(value: Any) -> bool:
    """Whether a cell is empty (missing, or only spaces)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def show_value(value: Any) -> str:
    """A cell as messages show it: numbers plainly, text quoted, ``(empty)``."""
    if empty_cell(value):
        return "(empty)"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{float(value):g}"
    return repr(str(value))


def patient_key(value: Any) -> str:
    """A subject identifier as the study's ``patient_id`` holds it: text stripped, whole numbers
    without ``.0`` (an Excel or SAS file stores ``1001`` as ``1001.0``)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def find_column(columns: Sequence[Any], given: str | None, candidates: Iterable[str], what: str, flag: str,
                source: str, required: bool = True) -> str | None:
    """The column holding ``what``: ``given`` (exactly, else ignoring case), else the first of
    ``candidates`` present (ignoring case).

    Raises
    ------
    DataValidationError
        One line: the given column is not in the file, or (``required``) no candidate is, naming the
        columns found and the flag that names it.
    """
    cols = [str(c) for c in columns]
    lower = {c.lower(): c for c in reversed(cols)}
    shown = ", ".join(cols[:20]) + (" ..." if len(cols) > 20 else "")
    if given is not None:
        if given in cols:
            return given
        if given.lower() in lower:
            return lower[given.lower()]
        raise DataValidationError(f"{source}: {flag} {given!r}: no such column (columns: {shown})")
    found = next((lower[c.lower()] for c in candidates if c.lower() in lower), None)
    if found is None and required:
        raise DataValidationError(f"{source}: no {what} column (looked for {', '.join(dict.fromkeys(candidates))}; "
                                  f"columns: {shown}); name it with {flag}")
    return found


def long_frame(frame: pd.DataFrame, design: ResolvedDesign) -> pd.DataFrame:
    """A study frame with ``patient_id`` (str), ``month`` the nominal visit and ``month_actual``:
    the derived frame as it is; a loaded frame (``Dataset.frame``: ``month`` actual, ``visit``
    nominal) or a raw file (the design's id column) renamed. The input is not modified."""
    out = frame
    if "patient_id" not in out.columns and design.design.id in out.columns:
        out = out.rename(columns={design.design.id: "patient_id"})
    if "patient_id" not in out.columns:
        raise DataValidationError(f"the study data have no subject column ('patient_id' or {design.design.id!r})")
    if "month" not in out.columns:
        raise DataValidationError("the study data have no 'month' column: load the study first (load_dataset)")
    if "month_actual" not in out.columns:
        out = out.assign(month_actual=out["month"]) if "visit" not in out.columns else \
            out.drop(columns=["month"]).rename(columns={"visit": "month"}).assign(
                month_actual=pd.to_numeric(frame["month"], errors="coerce").to_numpy())
    return out.assign(patient_id=out["patient_id"].map(patient_key))


def dropout_months(derived: pd.DataFrame, design: ResolvedDesign) -> pd.Series:
    """Per patient (all of them, in order), the first scheduled visit after the last visit with any
    BMD at a design site; NaN for a patient seen at the last visit. A patient with no BMD at all
    drops out at the first post-baseline visit."""
    long = long_frame(derived, design)
    cols = [f"bmd_{s}" for s in design.sites if f"bmd_{s}" in long.columns]
    ids = pd.Index(pd.unique(long["patient_id"]))
    seen = long[long[cols].notna().any(axis=1)] if cols else long.iloc[0:0]
    last = seen.groupby("patient_id")["month"].max().reindex(ids).fillna(design.visits[0])
    visits = np.asarray(design.visits, dtype=float)

    def after(m: float) -> float:
        later = visits[visits > m + 1e-9]
        return float(later[0]) if later.size else np.nan

    return pd.Series([after(float(m)) for m in last], index=ids, name="month", dtype=float)


def derive_discontinued(derived: pd.DataFrame, design: ResolvedDesign | None = None) -> IceTable:
    """``discontinued`` at the first scheduled visit after each patient's last visit with any BMD
    (see the module docstring); patients seen at the last visit have none.

    Parameters
    ----------
    derived : DataFrame
        The derived long frame (:func:`analysis.study.clinical.derive`) or a loaded one.
    design : ResolvedDesign, optional
        The study's design, its sites and visits (default: ``derived.attrs["design"]``).

    Returns
    -------
    IceTable
    """
    months = dropout_months(derived, _design_of(derived, design)).dropna()
    frame = pd.DataFrame({"patient_id": months.index.astype(str), "month": months.to_numpy(),
                          "ice_type": "discontinued", "strategy": None, "where": ""})
    return IceTable(frame, "missing follow-up (no BMD from that visit on)")


def _per_patient(long: pd.DataFrame, col: str, key) -> dict[str, list[Any]]:
    """Each patient's distinct non-empty values of ``col`` (distinct by ``key``), in order."""
    out: dict[str, list[Any]] = {}
    for pid, value in zip(long["patient_id"], long[col]):
        if empty_cell(value):
            continue
        vals = out.setdefault(pid, [])
        if all(key(v) != key(value) for v in vals):
            vals.append(value)
    return out


def _design_of(frame: pd.DataFrame, design: ResolvedDesign | None) -> ResolvedDesign:
    """``design``, else the one :func:`analysis.study.clinical.derive` left in ``frame.attrs``."""
    found = design if design is not None else frame.attrs.get("design")
    if found is None:
        raise DataValidationError("the study's design is needed (pass design=, or a frame from derive(..., design=))")
    return found


def ice_from_columns(frame: pd.DataFrame, type_col: str, month_col: str, design: ResolvedDesign | None = None, *,
                     strategy_col: str | None = None, source: str = "the study file") -> IceTable:
    """Intercurrent events given in columns of the study file: each patient's type, first affected
    visit and optional strategy, on one row or repeated on every row.

    Parameters
    ----------
    frame : DataFrame
        The derived frame, the loaded frame or the raw file (see :func:`long_frame`).
    type_col, month_col : str
        The columns of the ICE type and its first affected visit (names matched ignoring case; the
        visit as :class:`~analysis.study.ice_visits.VisitMap` reads it). A patient with both empty
        has no event.
    design : ResolvedDesign, optional
        The study's design (default: ``frame.attrs["design"]``, set by ``derive``).
    strategy_col : str, optional
        A column of per-patient strategies (empty: the estimand's).
    source : str
        The study file's name, for messages.

    Raises
    ------
    DataValidationError
        One line per problem: a column that is not there; two different values for one patient
        (naming both); a type without a visit or a visit without a type; a value that is not a visit.
    """
    design = _design_of(frame, design)
    long = long_frame(frame, design)
    cols = list(long.columns)
    tcol = find_column(cols, type_col, (), "ICE type", "--ice-type-column", source)
    mcol = find_column(cols, month_col, (), "ICE visit", "--ice-month-column", source)
    scol = find_column(cols, strategy_col, (), "strategy", "--ice-strategy-column", source) if strategy_col else None
    vmap = VisitMap(long, design)
    problems: list[Problem] = []

    def norm_type(v: Any) -> str:
        try:
            return normalise_ice_type(v)
        except DataValidationError:
            return str(v).strip().lower()

    types = _per_patient(long, tcol, norm_type)
    months = _per_patient(long, mcol, lambda v: str(v).strip().lower())
    strategies = _per_patient(long, scol, lambda v: str(v).strip().lower()) if scol else {}
    rows = []
    for pid in dict.fromkeys(long["patient_id"]):
        t, m, s = types.get(pid, []), months.get(pid, []), strategies.get(pid, [])
        for col, vals in ((tcol, t), (mcol, m), (scol, s)):
            if len(vals) > 1:
                problems.append(Problem(f"{source} (patient {pid}): column {col!r}: two values for one patient "
                                        f"({show_value(vals[0])} and {show_value(vals[1])})", col, None, pid, vals[1]))
        if len(t) > 1 or len(m) > 1 or len(s) > 1 or not (t or m or s):
            continue
        if not t or not m:
            have, lack = (tcol, mcol) if t else (mcol, tcol)
            problems.append(Problem(f"{source} (patient {pid}): column {have!r} is set but column {lack!r} is empty "
                                    f"for every row", lack, None, pid))
            continue
        try:
            ice_type = normalise_ice_type(t[0])
            strategy = normalise_strategy(s[0]) if s else None
            month = vmap.month(m[0], pid, mcol)
        except ValueError as exc:
            problems.append(Problem(f"{source} (patient {pid}): {exc}", None, None, pid))
            continue
        rows.append({"patient_id": pid, "month": month, "ice_type": ice_type, "strategy": strategy,
                     "where": f"column {mcol!r}"})
    if problems:
        raise DataValidationError(problems)
    return IceTable(pd.DataFrame(rows, columns=["patient_id", "month", "ice_type", "strategy", "where"]),
                    f"columns {tcol!r} and {mcol!r} of {source}")


def ice_from_reasons(derived: pd.DataFrame, reason_col: str, mapping: Mapping[str, str],
                     design: ResolvedDesign | None = None, *, source: str = "the study file") -> IceTable:
    """Intercurrent events from a dropout-reason text, mapped to ICE types by the user's table.

    Each patient's reason (one non-empty text, on any of their rows) is looked up in ``mapping``
    ignoring case and surrounding spaces; the first affected visit is the first scheduled visit after
    the last visit with any BMD (:func:`dropout_months`). A reason mapped to ``none`` (``completed=none``)
    is no event; a patient who stopped being seen without a reason is ``discontinued``.

    Parameters
    ----------
    derived : DataFrame
        The derived (or loaded) study frame.
    reason_col : str
        The reason column (matched ignoring case).
    mapping : mapping of str to str
        Reason text -> ICE type (or ``none``).
    design : ResolvedDesign, optional
        The study's design (default: ``derived.attrs["design"]``, set by ``derive``).
    source : str
        The study file's name, for messages.

    Raises
    ------
    DataValidationError
        One line per problem: a reason not in the map (naming the text and the patient), two
        reasons for one patient, a reason mapped to an event for a patient seen at every visit.
    """
    design = _design_of(derived, design)
    long = long_frame(derived, design)
    col = find_column(list(long.columns), reason_col, (), "dropout reason", "--dropout-reason-column", source)
    table: dict[str, str | None] = {}
    for text, target in mapping.items():
        target_word = str(target).strip().lower()
        table[str(text).strip().lower()] = None if target_word in NO_ICE else normalise_ice_type(target)
    reasons = _per_patient(long, col, lambda v: str(v).strip().lower())
    dropout = dropout_months(long, design)
    problems: list[Problem] = []
    rows = []
    for pid in dropout.index:
        texts = reasons.get(pid, [])
        if len(texts) > 1:
            problems.append(Problem(f"{source} (patient {pid}): column {col!r}: two dropout reasons for one patient "
                                    f"({show_value(texts[0])} and {show_value(texts[1])})", col, None, pid, texts[1]))
            continue
        month = dropout[pid]
        if not texts:
            if not np.isnan(month):
                rows.append((pid, month, "discontinued", f"column {col!r} (no reason)"))
            continue
        key = str(texts[0]).strip().lower()
        if key not in table:
            known = ", ".join(repr(k) for k in table) or "none"
            problems.append(Problem(f"{source} (patient {pid}): column {col!r}: dropout reason {show_value(texts[0])} "
                                    f"is not in the reason map (mapped: {known}); add --reason-map "
                                    f"'{str(texts[0]).strip()}=TYPE' (or =none)", col, None, pid, texts[0]))
            continue
        if table[key] is None:
            continue
        if np.isnan(month):
            problems.append(Problem(f"{source} (patient {pid}): column {col!r}: dropout reason {show_value(texts[0])} "
                                    f"({table[key]}), but the patient has BMD at the last visit: give the event's "
                                    f"first affected visit in an ICE file (--ice)", col, None, pid, texts[0]))
            continue
        rows.append((pid, month, table[key], f"column {col!r}"))
    if problems:
        raise DataValidationError(problems)
    frame = pd.DataFrame(rows, columns=["patient_id", "month", "ice_type", "where"]).assign(strategy=None)
    return IceTable(frame, f"dropout reasons in column {col!r} of {source}")
