"""Intercurrent events (ICH E9(R1)) of a study, as R's rbmi takes them: per patient an event type
and the first visit it affects, and a strategy per type (or per row).

Sources, each giving an :class:`~analysis.study.ice_table.IceTable`:

- an ICE file (:func:`read_ice_file`), rbmi's ``data_ice``: subject, first affected visit, type and
  optionally strategy, as CSV, Excel, Parquet, SAS, SPSS or Stata (the study file's reader,
  :func:`analysis.study.readers.read_file`). The columns are found ignoring case among common
  spellings (:data:`SUBJECT_COLUMNS`, :data:`VISIT_COLUMNS`, :data:`TYPE_COLUMNS`,
  :data:`STRATEGY_COLUMNS`; ADaM's ``USUBJID``/``AVISITN`` among them) or named. A file with a
  strategy column and no type column (rbmi's own ``id, visit, strategy``) has type ``unspecified``.
  The visit is read by :class:`~analysis.study.ice_visits.VisitMap` (a month, a visit label of the
  study, ``"Week 52"``, a study day or date);
- columns of the study file (:func:`~analysis.study.ice_sources.ice_from_columns`);
- a dropout-reason column and a reason -> type map (:func:`~analysis.study.ice_sources.ice_from_reasons`);
- missing follow-up (:func:`~analysis.study.ice_sources.derive_discontinued`).

:func:`validate_ice` checks any of them against the study: every problem is one line of a
:class:`~analysis.study.problems.DataValidationError` (the study loader's error, exit status 2 on the
command line) naming the source, row, patient and value. Nothing is dropped silently and the input
files are only read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.study.design import ResolvedDesign
from analysis.study.ice_sources import (derive_discontinued, empty_cell, find_column, ice_from_columns,
                                        ice_from_reasons, long_frame, patient_key, show_value)
from analysis.study.ice_strategy import (HYPOTHETICAL_IMPUTATIONS, ICE_TYPES_SUGGESTED, STRATEGIES, is_mar,
                                         normalise_ice_type, normalise_strategy, parse_strategy)
from analysis.study.ice_table import IceTable, normalise_strategies
from analysis.study.ice_visits import VisitMap
from analysis.study.problems import DataValidationError, Problem
from analysis.study.readers import read_file

__all__ = ["HYPOTHETICAL_IMPUTATIONS", "ICE_TYPES_SUGGESTED", "STRATEGIES", "STRATEGY_COLUMNS", "SUBJECT_COLUMNS",
           "TYPE_COLUMNS", "UNSPECIFIED", "VISIT_COLUMNS", "DataValidationError", "IceTable", "derive_discontinued",
           "ice_from_columns", "ice_from_reasons", "normalise_strategy", "parse_strategy", "read_ice_file",
           "validate_ice"]

#: Subject columns of an ICE file, in order of preference (after the study's own ``--id`` column).
SUBJECT_COLUMNS = ("patient_id", "subject", "usubjid", "subjid", "subject_id", "id")
#: First-affected-visit columns (then the study's own ``--visit`` column).
VISIT_COLUMNS = ("ice_month", "ice_visit", "month", "visit", "avisitn", "first_visit", "avisit")
#: ICE-type columns.
TYPE_COLUMNS = ("ice_type", "icetype", "type", "event", "reason")
#: Strategy columns (optional).
STRATEGY_COLUMNS = ("strategy", "ice_strategy")
#: The type of the events of a file without a type column.
UNSPECIFIED = "unspecified"


def _at(source: str, where: str, pid: Any) -> str:
    place = f"{source}, {where}" if where else source
    return f"{place} (patient {pid})" if pid is not None else place


def read_ice_file(path: str | Path, derived: pd.DataFrame, design: ResolvedDesign, subject_col: str | None = None,
                  visit_col: str | None = None, type_col: str | None = None, strategy_col: str | None = None, *,
                  encoding: str = "utf-8", sheet: str | int | None = None,
                  strategies: Mapping[str, str] | None = None, default: str | None = None) -> IceTable:
    """Read an ICE file (rbmi's ``data_ice``; see the module docstring) and validate it.

    Parameters
    ----------
    path : str or Path
        The file (any format of :func:`analysis.study.readers.read_file`).
    derived : DataFrame
        The study's derived long frame (:func:`analysis.study.clinical.derive`).
    design : ResolvedDesign
        The study's design.
    subject_col, visit_col, type_col, strategy_col : str, optional
        The columns, instead of finding them (names matched ignoring case).
    encoding, sheet
        As for the study file.
    strategies, default : optional
        The estimand's ICE type -> strategy table and default strategy, for the check of two
        non-MAR events of one patient (:func:`validate_ice`).

    Returns
    -------
    IceTable
        One row per file row; ``where`` the file's line or row.

    Raises
    ------
    DataValidationError
        One line per problem: an unreadable file, a column not found, an empty subject, visit or type
        cell, a visit that is not a visit of the design, and everything :func:`validate_ice` reports.
    """
    name = str(path)
    table = read_file(path, encoding=encoding, sheet=sheet)
    cols = list(table.frame.columns)
    scol = find_column(cols, subject_col, (design.design.id, *SUBJECT_COLUMNS), "subject", "--ice-subject-column",
                       name)
    visit_names = (*VISIT_COLUMNS, *([design.design.visit] if design.design.visit else []))
    mcol = find_column(cols, visit_col, visit_names, "first affected visit", "--ice-month-column", name)
    kcol = find_column(cols, strategy_col, STRATEGY_COLUMNS, "strategy", "--ice-strategy-column", name,
                       required=False)
    tcol = find_column(cols, type_col, TYPE_COLUMNS, "ICE type", "--ice-type-column", name, required=kcol is None)
    long = long_frame(derived, design)
    known = set(long["patient_id"])
    vmap = VisitMap(long, design)
    problems: list[Problem] = []
    rows = []
    for idx, rec in table.frame.iterrows():
        where = table.where(idx)
        raw_pid = rec[scol]
        if empty_cell(raw_pid):
            problems.append(Problem(f"{name}, {where}: {table.describe(scol)}: empty subject", scol, int(idx)))
            continue
        pid = patient_key(raw_pid)
        at = _at(name, where, pid)
        if pid not in known:
            problems.append(_unknown(at, pid, long, int(idx)))
            continue
        cells = {"visit": rec[mcol], "type": rec[tcol] if tcol else UNSPECIFIED,
                 "strategy": rec[kcol] if kcol else None}
        bad = [(c, k) for c, k in ((mcol, "visit"), (tcol, "type")) if c is not None and empty_cell(cells[k])]
        for col, what in bad:
            text = "first affected visit" if what == "visit" else "ICE type"
            problems.append(Problem(f"{at}: {table.describe(col)}: empty {text}", col, int(idx), pid))
        if bad:
            continue
        try:
            month = vmap.month(cells["visit"], pid, mcol)
        except ValueError as exc:
            problems.append(Problem(f"{at}: {table.describe(mcol)}: {exc}", mcol, int(idx), pid, cells["visit"]))
            continue
        try:
            ice_type = normalise_ice_type(cells["type"])
        except DataValidationError as exc:
            problems.append(Problem(f"{at}: {table.describe(str(tcol))}: {exc}", tcol, int(idx), pid, cells["type"]))
            continue
        try:
            strategy = None if empty_cell(cells["strategy"]) else normalise_strategy(cells["strategy"])
        except DataValidationError as exc:
            problems.append(Problem(f"{at}: {table.describe(str(kcol))}: {exc}", kcol, int(idx), pid,
                                    cells["strategy"]))
            continue
        rows.append({"patient_id": pid, "month": month, "ice_type": ice_type, "strategy": strategy, "where": where})
    if problems:
        raise DataValidationError(problems)
    ice = IceTable(pd.DataFrame(rows, columns=["patient_id", "month", "ice_type", "strategy", "where"]), name)
    return validate_ice(ice, derived, design, strategies, default)


def _unknown(at: str, pid: str, long: pd.DataFrame, row: int | None) -> Problem:
    ids = list(dict.fromkeys(long["patient_id"]))
    return Problem(f"{at}: subject {pid!r} is not in the study data ({len(ids)} patients, e.g. "
                   f"{', '.join(ids[:3])})", "patient_id", row, pid)


def validate_ice(table: IceTable, derived: pd.DataFrame, design: ResolvedDesign,
                 strategies: Mapping[str, str] | None = None, default: str | None = None) -> IceTable:
    """Check intercurrent events against the study and return them in canonical form.

    Parameters
    ----------
    table : IceTable
        The events, from any source.
    derived : DataFrame
        The study's derived (or loaded) long frame.
    design : ResolvedDesign
        The study's design.
    strategies : mapping of str to str, optional
        The estimand's ICE type -> strategy table; with ``default``, what a row without its own
        strategy takes, for the check of two non-MAR events of one patient.
    default : str, optional
        The estimand's strategy for types the table does not list.

    Returns
    -------
    IceTable
        The same rows with canonical types and strategies (a new table; ``table`` is not modified).

    Raises
    ------
    DataValidationError
        One line per problem, naming the source, row and patient: an empty subject or visit; a
        subject not in the study; a visit that is the baseline or not a post-baseline visit of the
        design (listing them); an ICE type that is not a name; an unknown strategy (listing the valid
        ones); the same type twice for one patient; two events of one patient whose strategies are
        both other than MAR (rbmi imputes one strategy per patient).
    """
    src = table.source
    try:
        by_type = normalise_strategies(strategies)
        fallback = normalise_strategy(default) if default is not None else None
    except DataValidationError as exc:
        raise DataValidationError(f"the estimand's strategies: {exc}") from None
    long = long_frame(derived, design)
    known = set(long["patient_id"])
    post = tuple(float(v) for v in design.visits[1:])
    shown = ", ".join(f"{v:g}" for v in post)
    problems: list[Problem] = []
    rows = []
    for rec in table.frame.itertuples(index=False):
        where = rec.where
        if empty_cell(rec.patient_id):
            problems.append(Problem(f"{_at(src, where, None)}: empty subject", "patient_id"))
            continue
        pid = patient_key(rec.patient_id)
        at = _at(src, where, pid)
        if pid not in known:
            problems.append(_unknown(at, pid, long, None))
            continue
        month = rec.month
        if empty_cell(month):
            problems.append(Problem(f"{at}: empty first affected visit", "month", None, pid))
            continue
        if abs(float(month) - float(design.visits[0])) < 1e-9:
            problems.append(Problem(f"{at}: first affected visit month {float(month):g} is the baseline: an "
                                    f"intercurrent event affects a post-baseline visit ({shown})", "month", None,
                                    pid, month))
            continue
        if not any(abs(float(month) - v) < 1e-9 for v in post):
            problems.append(Problem(f"{at}: first affected visit month {show_value(month)} is not a post-baseline "
                                    f"visit of the design ({shown})", "month", None, pid, month))
            continue
        try:
            if empty_cell(rec.ice_type):
                raise DataValidationError("empty ICE type")
            ice_type = normalise_ice_type(rec.ice_type)
            strategy = None if empty_cell(rec.strategy) else normalise_strategy(rec.strategy)
        except DataValidationError as exc:
            problems.append(Problem(f"{at}: {exc}", None, None, pid))
            continue
        rows.append({"patient_id": pid, "month": float(month), "ice_type": ice_type, "strategy": strategy,
                     "where": where, "resolved": strategy or by_type.get(ice_type, fallback)})
    frame = pd.DataFrame(rows, columns=["patient_id", "month", "ice_type", "strategy", "where", "resolved"])
    problems += _per_patient_problems(frame, src)
    if problems:
        raise DataValidationError(problems)
    return IceTable(frame.drop(columns=["resolved"]), src)


def _per_patient_problems(frame: pd.DataFrame, src: str) -> list[Problem]:
    """Two events of one patient with non-MAR strategies; the same type twice for one patient (a file
    without types may list a patient's MAR events more than once)."""
    problems: list[Problem] = []
    for pid, grp in frame.sort_values("month", kind="stable").groupby("patient_id", sort=False):
        strong = grp[[not is_mar(s) for s in grp["resolved"]]]
        if len(strong) > 1:
            a, b = strong.iloc[0], strong.iloc[1]
            problems.append(Problem(
                f"{_at(src, b['where'], pid)}: two intercurrent events with non-MAR strategies ({a['ice_type']} at "
                f"month {a['month']:g}: {a['resolved']}; {b['ice_type']} at month {b['month']:g}: {b['resolved']}); "
                f"rbmi imputes one strategy per patient: keep one event, or give the other a MAR strategy",
                "strategy", None, pid, b["resolved"]))
            continue
        typed = grp[grp["ice_type"] != UNSPECIFIED]
        twice = typed[typed.duplicated("ice_type", keep=False)]
        if not twice.empty:
            t = twice.iloc[1]
            problems.append(Problem(
                f"{_at(src, t['where'], pid)}: a second {t['ice_type']!r} event (months "
                f"{' and '.join(f'{m:g}' for m in twice['month'][:2])}); give each patient's first affected visit once",
                "ice_type", None, pid, t["ice_type"]))
    return problems
