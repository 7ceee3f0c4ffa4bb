"""Row-by-row checks of a study file: each row's cells against the data contract.

What can be decided from one row alone is checked here (:func:`check_rows`), so that a file read in
chunks (:meth:`analysis.study.readers.RawTable.chunks`) is validated chunk by chunk with the cells of
one chunk as text at a time: text normalised (patient ids stripped, sex aliases, responder flags),
values coerced to the contract's types (:func:`analysis.study.contract.coercion_schema`) and checked
against its ranges (:func:`~analysis.study.contract.range_schema`). Every problem names the file, the
line or row (:class:`Locate`), the patient, the column and the value. What needs a patient's or the
study's rows together (duplicate visits, baselines, covariates that change) is ``data``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from analysis.study.contract import coercion_schema, range_schema, spec
from analysis.study.problems import Problem
from analysis.study.readers import RawTable

__all__ = ["Locate", "RowChecks", "apply_value_labels", "check_rows", "normalise_text", "schema_problems",
           "show_value"]

_SEX_ALIASES = {"f": "F", "female": "F", "w": "F", "woman": "F", "m": "M", "male": "M", "man": "M"}
_TRUE = {"true", "yes", "1", "responder", "y", "t"}
_FALSE = {"false", "no", "0", "non-responder", "nonresponder", "n", "f"}


@dataclass(frozen=True)
class Locate:
    """Names rows and columns as the file has them: the reader's table knows where each row is
    (line, row, ADaM record) and each column's label; ``inverse`` undoes the column mapping."""

    table: RawTable
    inverse: dict[str, str]

    def at(self, idx: int, column: str | None = None) -> str:
        return self.table.where(idx, self.inverse.get(column, column) if column is not None else None)

    def col(self, column: str) -> str:
        return self.table.describe(self.inverse.get(column, column), as_=column)


def show_value(value: Any) -> str:
    """A value as the user wrote it: numbers plainly (``-2.5``, not ``np.float64(-2.5)``), text
    quoted, a missing value as ``(empty)``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "(empty)"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"{float(value):g}"
    return repr(str(value))


def schema_problems(err: pa.errors.SchemaErrors, df: pd.DataFrame, loc: Locate, name: str,
                     kind: str, sites: tuple[str, ...] = ()) -> list[Problem]:
    problems: list[Problem] = []
    fc = err.failure_cases
    fc = fc[fc["index"].notna()] if "index" in fc else fc
    seen: set[tuple[str, int]] = set()
    for _, r in fc.sort_values(["index", "column"], key=lambda s: s.astype(str) if s.name == "column" else s).iterrows():
        col, idx = str(r["column"]), int(r["index"])
        if (col, idx) in seen:
            continue
        seen.add((col, idx))
        raw_value = df.at[idx, col] if col in df.columns else r["failure_case"]
        pid = df.at[idx, "patient_id"] if "patient_id" in df.columns else None
        s = spec(col, sites)
        shown = show_value(raw_value)
        if col == "month" and shown == "(empty)":
            what = "missing month (every row needs one; 0 = baseline)"
        elif kind == "coerce":
            what = f"non-numeric value {shown}"
        elif s is not None and s.kind == "sex":
            what = f"value {shown} is not a sex (expected F or M)"
        elif col == "month":
            what = f"value {shown} is not a valid month (must be >= 0)"
        elif s is not None and col.startswith("bmd_"):
            what = f"value {shown} outside the physiological range {s.range_text()}"
        elif s is not None and col == "prednisolone_mg" and float(raw_value) < 0:
            what = f"negative dose {shown}"
        elif s is not None:
            what = f"value {shown} outside the allowed range {s.range_text()}"
        else:
            what = f"invalid value {shown}"
        who = f" (patient {pid})" if pid is not None and not pd.isna(pid) else ""
        problems.append(Problem(f"{name}, {loc.at(idx, col)}{who}: {loc.col(col)}: {what}",
                                col, idx, None if pid is None else str(pid), raw_value))
    return problems


def apply_value_labels(df: pd.DataFrame, loc: Locate) -> pd.DataFrame:
    """SPSS/Stata codes of the contract's text columns (sex 1/2 with labels) as their labels."""
    out = df
    for col in df.columns:
        s = spec(col)
        codes = loc.table.value_labels.get(loc.inverse.get(col, col))
        if s is None or s.kind not in ("sex", "bool", "text") or not codes:
            continue
        out = out.copy() if out is df else out
        out[col] = df[col].map(lambda v, codes=codes: codes.get(v, v) if not pd.isna(v) else v)
    return out


def normalise_text(df: pd.DataFrame, name: str, loc: Locate) -> tuple[pd.DataFrame, list[Problem]]:
    problems: list[Problem] = []
    out = apply_value_labels(df, loc).copy(deep=False)  # copy-on-write: columns copied when replaced
    if "patient_id" in out.columns:
        pid = out["patient_id"]
        empty = pid.isna() | (pid.astype(str).str.strip() == "")
        for idx in out.index[empty]:
            problems.append(Problem(f"{name}, {loc.at(idx, 'patient_id')}: {loc.col('patient_id')}: empty patient id",
                                    "patient_id", idx))
        out["patient_id"] = pid.astype(str).str.strip().where(~empty, None)
        if pd.api.types.is_float_dtype(pid):  # parquet ids stored as numbers
            out["patient_id"] = pid.map(lambda v: None if pd.isna(v) else f"{v:g}")
    if "sex" in out.columns:  # an alias (F, female, w, ...) as F or M, other text stripped (vectorised)
        text = out["sex"].astype("str").str.strip()
        out["sex"] = text.str.lower().map(_SEX_ALIASES).fillna(text).where(out["sex"].notna(), np.nan)
    if "responder" in out.columns:
        def _bool(v):
            if pd.isna(v) or isinstance(v, (bool, np.bool_)):
                return v
            s = str(v).strip().lower()
            return True if s in _TRUE else False if s in _FALSE else ("?", v)
        mapped = out["responder"].map(_bool)
        for idx, v in mapped.items():
            if isinstance(v, tuple):
                pidv = out.at[idx, "patient_id"] if "patient_id" in out.columns else None
                problems.append(Problem(
                    f"{name}, {loc.at(idx, 'responder')} (patient {pidv}): {loc.col('responder')}: value "
                    f"{show_value(v[1])} is not a responder flag (expected true/false, yes/no, 1/0)",
                    "responder", idx, pidv, v[1]))
        out["responder"] = pd.array([None if isinstance(v, tuple) or pd.isna(v) else bool(v) for v in mapped],
                                    dtype="boolean")
    return out, problems


@dataclass
class RowChecks:
    """What :func:`check_rows` found in a chunk of rows.

    Attributes
    ----------
    frame
        The rows with the contract's columns coerced to their types (``None`` where a value could not be).
    problems
        Text and coercion problems (reported first, and the range problems only without them).
    range_problems
        Values outside the contract's ranges.
    """

    frame: pd.DataFrame | None
    problems: list[Problem]
    range_problems: list[Problem]


def check_rows(df: pd.DataFrame, loc: Locate, name: str, sites: tuple[str, ...], ranges: bool = True) -> RowChecks:
    """Normalise, coerce and range-check rows of a file in canonical column names.

    Parameters
    ----------
    df
        The rows, indexed by their position in the file (:meth:`RawTable.chunks`).
    loc
        Names the rows and columns as the file has them.
    name
        The file's name, for messages.
    sites
        The design's sites (their ``bmd_``/``tscore_`` columns are checked).
    ranges
        Check the ranges too (a file whose earlier rows had coercion problems reports those only).

    Returns
    -------
    RowChecks
    """
    df, problems = normalise_text(df, name, loc)
    try:
        df = coercion_schema(list(df.columns), sites).validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        return RowChecks(None, problems + schema_problems(err, df, loc, name, "coerce", sites), [])
    if problems or not ranges:
        return RowChecks(None if problems else df, problems, [])
    try:
        range_schema(list(df.columns), sites).validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        return RowChecks(df, [], schema_problems(err, df, loc, name, "range", sites))
    return RowChecks(df, [], [])
