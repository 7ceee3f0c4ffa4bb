"""Reading a study file, mapping its columns, validating it against the data contract, and the
validation report.

The file is read by ``readers`` (delimited text with its delimiter and decimal mark detected,
Excel, Parquet, SAS, SPSS, Stata) and, when it is a CDISC ADaM BDS file, pivoted by ``adam``; this
module validates what they return. Every problem becomes one line that names the file, the line
(text; "row" for other formats), the patient, the column (with its label where the file has one)
and the value. Nothing is dropped silently: rows excluded by a rule (a visit with no recorded value
at all; an ADaM record not flagged for analysis) are listed in the report. The input file is only
read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pandera.pandas as pa

from analysis.study.contract import (
    ACTIVITY_COLUMNS,
    BASELINE_COVARIATES,
    CDAI_COMPONENTS,
    DAS28_COMPONENTS,
    MEASUREMENT_COLUMNS,
    coercion_schema,
    range_schema,
    spec,
)
from analysis.study.design import (TIME_CANDIDATES, DesignError, GroupSpec, ResolvedDesign, StudyDesign,
                                   canonical_frame, canonical_months, infer_design, resolve)
from analysis.study.problems import DataValidationError, ExcludedRow, Problem
from analysis.study.readers import RawTable, read_file
from analysis.study.validation_report import ValidationReport, build_report

__all__ = [
    "DataValidationError",
    "Problem",
    "ExcludedRow",
    "ValidationReport",
    "Dataset",
    "load_dataset",
    "load_twin",
    "load_for_config",
    "read_table",
]

_SEX_ALIASES = {"f": "F", "female": "F", "w": "F", "woman": "F", "m": "M", "male": "M", "man": "M"}
_TRUE = {"true", "yes", "1", "responder", "y", "t"}
_FALSE = {"false", "no", "0", "non-responder", "nonresponder", "n", "f"}


@dataclass
class Dataset:
    """A validated study: the frame in the data contract, where it came from, and the report."""

    frame: pd.DataFrame
    source: str
    sha256: str
    report: ValidationReport
    synthetic: bool = False
    design: ResolvedDesign | None = None

    @property
    def label(self) -> str:
        """How results on this dataset are labelled."""
        return "SYNTHETIC (RAJAK digital twin)" if self.synthetic else f"data: {Path(self.source).name}"


@dataclass(frozen=True)
class _Locate:
    """Names rows and columns as the file has them: the reader's table knows where each row is
    (line, row, ADaM record) and each column's label; ``inverse`` undoes the column mapping."""

    table: RawTable
    inverse: dict[str, str]

    def at(self, idx: int, column: str | None = None) -> str:
        return self.table.where(idx, self.inverse.get(column, column) if column is not None else None)

    def col(self, column: str) -> str:
        return self.table.describe(self.inverse.get(column, column), as_=column)


def _show(value: Any) -> str:
    """A value as the user wrote it: numbers plainly (``-2.5``, not ``np.float64(-2.5)``), text
    quoted, a missing value as ``(empty)``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "(empty)"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"{float(value):g}"
    return repr(str(value))


def read_table(path: str | Path, encoding: str = "utf-8", *, sheet: str | int | None = None
               ) -> tuple[pd.DataFrame, str, bytes]:
    """Read a data file as values without interpretation (any format :func:`read_file` reads).

    Parameters
    ----------
    path
        The file.
    encoding
        Text encoding of a delimited text file.
    sheet
        Excel sheet, by name or 0-based index.

    Returns
    -------
    tuple
        The frame, the format (``csv``, ``xlsx``, ``parquet``, ``xpt``, ``sas7bdat``, ``sav``,
        ``dta``) and the raw bytes (for the hash). :func:`analysis.study.readers.read_file` returns
        the same with column labels and notes.

    Raises
    ------
    DataValidationError
        With one line for every way the file can be unreadable.
    """
    table = read_file(path, encoding=encoding, sheet=sheet)
    return table.frame, table.fmt, table.raw


def _apply_mapping(df: pd.DataFrame, mapping: Mapping[str, str], name: str, adam: bool = False) -> pd.DataFrame:
    missing = [k for k in mapping if k not in df.columns]
    if missing:
        where = (f"the ADaM file as pivoted (columns: {', '.join(map(str, df.columns))}; --map renames them)"
                 if adam else "the file")
        raise DataValidationError(f"{name}: column mapping names column '{missing[0]}', which is not in {where}")
    clash = [v for k, v in mapping.items() if v in df.columns and v not in mapping]
    if clash:
        raise DataValidationError(f"{name}: column mapping would create a second '{clash[0]}' column")
    out = df.rename(columns=dict(mapping))
    dup = out.columns[out.columns.duplicated()].tolist()
    if dup:
        raise DataValidationError(f"{name}: column '{dup[0]}' appears more than once")
    return out


def _schema_problems(err: pa.errors.SchemaErrors, df: pd.DataFrame, loc: _Locate, name: str,
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
        shown = _show(raw_value)
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


def _apply_value_labels(df: pd.DataFrame, loc: _Locate) -> pd.DataFrame:
    """SPSS/Stata codes of the contract's text columns (sex 1/2 with labels) as their labels."""
    out = df
    for col in df.columns:
        s = spec(col)
        codes = loc.table.value_labels.get(loc.inverse.get(col, col))
        if s is None or s.kind not in ("sex", "bool", "text") or not codes:
            continue
        out = out.copy() if out is df else out
        out[col] = df[col].map(lambda v: codes.get(v, v) if not pd.isna(v) else v)
    return out


def _normalise_text(df: pd.DataFrame, name: str, loc: _Locate) -> tuple[pd.DataFrame, list[Problem]]:
    problems: list[Problem] = []
    out = _apply_value_labels(df, loc).copy(deep=False)  # copy-on-write: columns copied when replaced
    if "patient_id" in out.columns:
        pid = out["patient_id"]
        empty = pid.isna() | (pid.astype(str).str.strip() == "")
        for idx in out.index[empty]:
            problems.append(Problem(f"{name}, {loc.at(idx, 'patient_id')}: {loc.col('patient_id')}: empty patient id",
                                    "patient_id", idx))
        out["patient_id"] = pid.astype(str).str.strip().where(~empty, None)
        if pd.api.types.is_float_dtype(pid):  # parquet ids stored as numbers
            out["patient_id"] = pid.map(lambda v: None if pd.isna(v) else f"{v:g}")
    if "sex" in out.columns:
        def _sex(v):
            if pd.isna(v):
                return v
            return _SEX_ALIASES.get(str(v).strip().lower(), str(v).strip())
        out["sex"] = out["sex"].map(_sex)
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
                    f"{_show(v[1])} is not a responder flag (expected true/false, yes/no, 1/0)",
                    "responder", idx, pidv, v[1]))
        out["responder"] = pd.array([None if isinstance(v, tuple) or pd.isna(v) else bool(v) for v in mapped],
                                    dtype="boolean")
    return out, problems


#: An ``age`` that changes within a subject is age at each visit, and taken at baseline, when every
#: value is within this many years of the baseline age plus the time since baseline.
AGE_AT_VISIT_TOLERANCE = 1.0


def _age_at_visits(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """An ``age`` at each visit: per row with an age, whether it is within
    :data:`AGE_AT_VISIT_TOLERANCE` years of the patient's baseline age (at their earliest visit with
    an age) plus the years since that visit, |age_j - age_0 - (month_j - month_0)/12| <= 1; per
    patient whose age changes, whether every row is; and each patient's baseline age."""
    ages = pd.to_numeric(df["age"], errors="coerce")
    known = pd.DataFrame({"patient_id": df["patient_id"], "month": pd.to_numeric(df["month"], errors="coerce"),
                          "age": ages.astype("float64")})[ages.notna()]
    if known.empty:
        none = pd.Series(dtype=bool)
        return none, none, pd.Series(dtype="float64")
    first = known.sort_values("month", kind="stable").groupby("patient_id", sort=False).first()
    age0 = known["patient_id"].map(first["age"])
    month0 = known["patient_id"].map(first["month"])
    within = (known["age"] - age0 - (known["month"] - month0) / 12.0).abs() <= AGE_AT_VISIT_TOLERANCE + 1e-9
    changes = known.groupby("patient_id", sort=False)["age"].nunique() > 1
    follows = within.groupby(known["patient_id"], sort=False).all()
    return within, follows.reindex(changes.index[changes.to_numpy()]), first["age"]


def _structure_problems(df: pd.DataFrame, name: str, loc: _Locate
                        ) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    """Duplicate visits, patients without a baseline visit, and baseline covariates that change
    within a patient (one problem each); an ``age`` that grows with the visits (age at each visit)
    is not one: it is replaced by the age at baseline, with a note. Returns the frame, the
    problems and the notes."""
    problems: list[Problem] = []
    notes: list[str] = []
    dup = df.duplicated(["patient_id", "month"], keep=False)
    if dup.any():
        for (pid, month), grp in df[dup].groupby(["patient_id", "month"], sort=False):
            where = " and ".join(loc.at(i) for i in grp.index[:2])
            problems.append(Problem(f"{name}, {where}: duplicate visit for patient {pid} at month {month:g}",
                                    "month", int(grp.index[0]), str(pid), month))
    has_base = (df["month"] == 0).groupby(df["patient_id"], sort=False).any()
    for pid in has_base.index[~has_base.to_numpy()]:
        first = df.index[df["patient_id"] == pid][0]
        problems.append(Problem(f"{name}: patient {pid} has no baseline visit (month 0; first row at "
                                f"{loc.at(first)})", "month", int(first), str(pid)))
    within = None
    if "age" in df.columns:
        within, follows, baseline_age = _age_at_visits(df)
        at_visits = follows.index[follows.to_numpy()]
        if len(at_visits):
            rows = df["patient_id"].isin(at_visits)
            age = df["age"].copy()  # a new frame with a new age column: the others are not copied
            age.loc[rows] = df.loc[rows, "patient_id"].map(baseline_age)
            df = df.assign(age=age)
            notes.append(f"age changes with the visits: taken at baseline ({loc.col('age')} is the age at each "
                         f"visit in {len(at_visits)} of {df['patient_id'].nunique()} patients; each patient's "
                         f"age at their first visit is used)")
    for col in BASELINE_COVARIATES:
        if col not in df.columns:
            continue
        # only the patients whose value changes are looked at one by one (vectorised test first)
        changes = df.groupby("patient_id", sort=False)[col].nunique() > 1
        if not changes.any():
            continue
        changing = df[df["patient_id"].isin(changes.index[changes.to_numpy()])]
        for pid, grp in changing.groupby("patient_id", sort=False):
            vals = grp[col].dropna()
            if vals.nunique() > 1:
                i0 = vals.index[0]
                i1 = vals.index[(vals != vals.iloc[0]).to_numpy()][0]
                why = ""
                if col == "age" and within is not None:  # baseline age, and the first that does not follow
                    i0 = grp.loc[vals.index, "month"].idxmin()
                    i1 = vals.index[~within.reindex(vals.index, fill_value=True).to_numpy()][0]
                    why = (f" (an age at each visit grows with the time since baseline, within "
                           f"{AGE_AT_VISIT_TOLERANCE:g} year)")
                problems.append(Problem(
                    f"{name}, {loc.at(i1, col)}: {loc.col(col)} changes within patient {pid} "
                    f"({_show(vals.at[i0])} at {loc.at(i0, col)}, {_show(vals.at[i1])} at {loc.at(i1, col)})"
                    + why, col, int(i1), str(pid), vals.at[i1]))
    return df, problems, notes


def load_dataset(path: str | Path, column_map: Mapping[str, str] | None = None, *,
                 encoding: str = "utf-8", sheet: str | int | None = None,
                 param_map: Mapping[str, str] | None = None, delimiter: str | None = None,
                 decimal: str | None = None, endpoint_month: float = 12, synthetic: bool = False,
                 design: StudyDesign | None = None, **design_flags: Any) -> Dataset:
    """Read, map and validate a study file.

    Parameters
    ----------
    path
        One row per patient-visit (see :mod:`analysis.study.contract`): delimited text
        (``.csv``, ``.tsv``, ``.txt``; delimiter and decimal mark detected), ``.xlsx``,
        ``.parquet``, SAS ``.xpt``/``.sas7bdat``, SPSS ``.sav``, Stata ``.dta``; or a CDISC ADaM
        BDS file in any of these formats (one row per subject x parameter x visit), pivoted by
        :func:`analysis.study.adam.pivot_adam`.
    column_map
        ``{name in the file: contract name}`` for files that use other names (for an ADaM file:
        names after pivoting, e.g. ``{"TRT01P": "arm"}``).
    encoding
        Text encoding of a delimited text file.
    sheet
        Excel sheet by name or 0-based index (default: the first).
    param_map
        ADaM files: ``{PARAMCD: site}`` (or ``"tscore_<site>"``, ``"ignore"``) overriding the
        default parameter mapping; giving it for a file that is not ADaM is an error.
    delimiter, decimal
        Delimited text: the delimiter and decimal mark, instead of detecting them.
    endpoint_month
        The month that defines a completer.
    synthetic
        Mark the data as the synthetic twin (labels every result).
    design
        The study design, instead of inferring it (:func:`analysis.study.design.infer_design`).
    **design_flags
        What the user said of the design (``id``, ``time``, ``time_unit``, ``visit``, ``sites``,
        ``group``, ``reference``, ``endpoint``, ``covariates``; ``None`` values are ignored): the
        command-line flags of the same names. Not given, a file with disease-activity columns is a
        RAJAK-style responder study (:data:`analysis.study.rajak_design.RAJAK_DESIGN` for the twin).

    Returns
    -------
    Dataset
        The validated frame in canonical form (with ``visit``, and ``group`` for a design grouped by a
        column), its source, hash, validation report and resolved design.

    Raises
    ------
    DataValidationError
        With a one-line message naming the file, line/row, patient, column and value.
    """
    from analysis.study.adam import adam_table, is_adam_bds

    unknown = sorted(set(design_flags) - set(_DESIGN_FLAGS))
    if unknown:
        raise TypeError(f"load_dataset() got an unexpected keyword argument {unknown[0]!r}")
    name = str(path)
    table = read_file(path, encoding=encoding, sheet=sheet, delimiter=delimiter, decimal=decimal)
    if is_adam_bds(table.frame.columns):
        table = adam_table(table, name, param_map)
    elif param_map:
        raise DataValidationError(f"{name}: --param maps ADaM parameters, but this is not an ADaM BDS file "
                                  f"(it needs USUBJID, PARAMCD and AVAL)")
    mapping = dict(column_map or {})
    df = _apply_mapping(table.frame, mapping, name, adam=table.fmt == "adam")
    study = _design_for(df, design, design_flags, endpoint_month, name, table.hint)
    df, renames = _rename_to_canonical(df, study, name)
    inverse = {v: k for k, v in mapping.items()}
    inverse.update({canon: inverse.get(orig, orig) for orig, canon in renames.items()})
    loc = _Locate(table, inverse)
    sites = tuple(study.sites)

    df, problems = _normalise_text(df, name, loc)
    try:
        df = coercion_schema(list(df.columns), sites).validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        problems += _schema_problems(err, df, loc, name, "coerce", sites)
    if problems:
        raise DataValidationError(problems)
    try:
        range_schema(list(df.columns), sites).validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        problems += _schema_problems(err, df, loc, name, "range", sites)
    if problems:
        raise DataValidationError(problems)
    df, structure, notes = _structure_problems(df, name, loc)
    problems += structure
    if problems:
        raise DataValidationError(problems)
    has_activity = ("das28_crp" in df.columns or set(DAS28_COMPONENTS) <= set(df.columns)
                    or "cdai" in df.columns or set(CDAI_COMPONENTS) <= set(df.columns)
                    or "responder" in df.columns)
    if study.group.kind == "derived" and not has_activity:
        raise DataValidationError(
            f"{name}: no disease activity: need column 'das28_crp' or 'cdai', their components "
            f"({', '.join(dict.fromkeys([*DAS28_COMPONENTS, *CDAI_COMPONENTS]))}) or a 'responder' column "
            f"(or name the study's group: --group COLUMN, or --group none for a single arm)")

    canon = study.model_copy(update={"id": "patient_id", "time": "month", "time_unit": "months",
                                     "visit": renames.get(study.visit, study.visit) if study.visit else None,
                                     "sites": {s: f"bmd_{s}" for s in sites}})
    try:  # the design on the rows as read: a site or endpoint left empty is named, not excluded away
        resolve(canonical_frame(df, canon), study, name)
    except DesignError as exc:
        raise _design_error(exc, name) from None

    # exclusion rule: a visit row with no recorded value at all carries no information
    site_cols = [f"{k}_{s}" for s in sites for k in ("bmd", "tscore")]
    measured = [c for c in dict.fromkeys([*MEASUREMENT_COLUMNS, *site_cols]) if c in df.columns]
    empty = df[measured].isna().all(axis=1) & (df["month"] != 0)
    excluded = [*table.excluded,
                *(ExcludedRow(loc.at(i), str(df.at[i, "patient_id"]), float(df.at[i, "month"]),
                              "no value recorded at this visit") for i in df.index[empty])]
    frame = df.loc[~empty].sort_values(["patient_id", "month"], kind="stable").reset_index(drop=True)
    try:
        frame = canonical_frame(frame, canon)
        _check_nominal_visits(frame, name)
        resolved = resolve(frame, study, name)
    except DesignError as exc:
        raise _design_error(exc, name) from None

    if resolved.design.group.kind == "none" and design_flags.get("group") is None and design is None:
        notes += _group_candidates(frame)
    report = build_report(frame, name, mapping, excluded, resolved, synthetic, table, notes)
    return Dataset(frame=frame, source=name, sha256=hashlib.sha256(table.raw).hexdigest(), report=report,
                   synthetic=synthetic, design=resolved)


#: Columns that usually hold a study's arms: named in a note when the design has no group.
_GROUP_LIKE = ("TRT01P", "TRT01A", "ARM", "ACTARM", "ARMCD", "arm", "group", "treatment", "trt", "TRT", "dose")


def _group_candidates(frame: pd.DataFrame) -> list[str]:
    """A note for each arm-like column a single-arm design leaves unused (2-10 levels, one per
    subject): the user may have meant ``--group`` it."""
    out = []
    for col in [c for c in frame.columns if c in _GROUP_LIKE or c.lower() in _GROUP_LIKE]:
        per = frame.dropna(subset=[col]).groupby("patient_id")[col].nunique()
        levels = sorted(map(str, frame[col].dropna().unique()))
        if 2 <= len(levels) <= 10 and (per <= 1).all():
            out.append(f"column {col!r} has {len(levels)} levels ({', '.join(levels)}) and is not used: the study is "
                       f"analysed as a single arm; --group {col} compares them")
    return out


def _design_error(exc: DesignError, name: str) -> DataValidationError:
    """A design that does not fit: the same one line, prefixed by the file name."""
    text = str(exc)
    return DataValidationError(text if text.startswith(f"{name}: ") else f"{name}: {text}")


#: Keywords of :func:`load_dataset` that describe the study design.
_DESIGN_FLAGS = ("id", "time", "time_unit", "visit", "sites", "group", "reference", "endpoint", "covariates")
#: The RAJAK sites a responder study needs when no ``--site`` is named.
_RAJAK_SITE_COLUMNS = ("bmd_spine", "bmd_femoral_neck")


def _check_nominal_visits(frame: pd.DataFrame, name: str) -> None:
    """Two scans of one subject at one nominal visit cannot both be that visit: one line."""
    dup = frame.duplicated(["patient_id", "visit"], keep=False)
    if dup.any():
        first = frame[dup].iloc[0]
        times = frame.loc[dup & (frame["patient_id"] == first["patient_id"]) & (frame["visit"] == first["visit"]),
                          "month"]
        raise DataValidationError(
            f"{name}: patient {first['patient_id']} has two scans at the month-{first['visit']:g} visit (at "
            f"{' and '.join(f'{m:.1f}' for m in times)} months): name the visits with --visit COLUMN")


def _design_for(df: pd.DataFrame, design: StudyDesign | None, flags: Mapping[str, Any], endpoint_month: float,
                name: str, hint: str) -> StudyDesign:
    """The study's design: ``design`` as given, else inferred from the columns and the user's flags.

    Without flags the contract speaks as it always has: ``patient_id`` and a time column are
    required, and a file with disease-activity columns is a responder study (derived groups,
    reference ``non-responder``) that needs both RAJAK sites, with ``endpoint_month`` as its endpoint
    and the baseline covariates present as its covariates.
    """
    cols = list(df.columns)

    def missing(col: str, flag: str) -> DataValidationError:
        return DataValidationError(f"{name}: missing required column '{col}' "
                                   f"(columns found: {', '.join(map(str, cols))}){hint}"
                                   + ("" if hint else f"; name it with {flag}"))

    if design is not None:
        given: dict[str, Any] = {"id": design.id, "time": design.time, "time_unit": design.time_unit,
                                 "visit": design.visit, "sites": design.sites, "group": design.group,
                                 "endpoint": design.endpoint, "covariates": design.covariates}
    else:
        given = {k: v for k, v in flags.items() if v is not None}
        if "id" not in given:
            if "patient_id" not in cols:
                raise missing("patient_id", "--id COLUMN")
            given["id"] = "patient_id"
        if "time" not in given and not any(c in cols for c in TIME_CANDIDATES):
            raise missing("month", "--time COLUMN")
        group = given.get("group")
        if isinstance(group, GroupSpec):
            derived = group.kind == "derived"
        elif group is None:
            derived = any(c in cols for c in ACTIVITY_COLUMNS)
        else:
            derived = str(group).strip().lower() == "responder"
        if derived:
            reference = given.pop("reference", None)
            given["group"] = GroupSpec(kind="derived", reference=reference or "non-responder")
            if not given.get("sites"):
                for col in _RAJAK_SITE_COLUMNS:
                    if col not in cols:
                        raise missing(col, "--site NAME=COLUMN")
            given.setdefault("endpoint", float(endpoint_month))
            given.setdefault("covariates", tuple(c for c in BASELINE_COVARIATES if c in cols))
    try:
        return infer_design(cols, **given)
    except DesignError as exc:
        raise _design_error(exc, name) from None


def _rename_to_canonical(df: pd.DataFrame, design: StudyDesign, name: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The subject, time and site columns under their canonical names (``patient_id``, ``month``,
    ``bmd_<site>``); a time in days, years or dates becomes months since the subject's baseline
    (:func:`analysis.study.design.canonical_frame`), a time in months is checked row by row below.
    Returns the frame and ``{file column: canonical column}``."""
    renames = {design.id: "patient_id", **{c: f"bmd_{s}" for s, c in design.sites.items()}}
    if design.time_unit == "months":
        renames[design.time] = "month"
    else:
        try:
            months = canonical_months(df, design).to_numpy()
        except DesignError as exc:
            raise _design_error(exc, name) from None
    taken = set(renames.values())
    out = df.drop(columns=[c for c in df.columns if c in taken and c not in renames]).rename(columns=renames)
    if design.time_unit != "months":
        out["month"] = months
    return out, {k: v for k, v in renames.items() if k != v}


def load_twin(encoding: str = "utf-8") -> Dataset:
    """The embedded RAJAK digital twin (synthetic), validated like any user file."""
    from analysis.common.resources import data_path

    return load_dataset(data_path("rajak_twin.csv"), encoding=encoding, synthetic=True)


def load_for_config(config: Any, **design_flags: Any) -> Dataset:
    """The dataset a run configuration (:class:`analysis.run.config.RunConfig`) names: the embedded
    twin when ``config.data`` is unset, else that file with the configuration's column map,
    encoding, ``[study]`` design (its sheet and ADaM parameter map) and endpoint; ``design_flags``
    (the command line's) override the ``[study]`` table."""
    if config.data is None:
        return load_twin(encoding=config.encoding)
    study = config.study
    flags = {**study.design_flags(), **{k: v for k, v in design_flags.items() if v is not None}}
    if config.endpoint is not None:
        flags.setdefault("endpoint", float(config.endpoint))
    return load_dataset(config.data, config.column_map, encoding=config.encoding, sheet=study.sheet,
                        param_map=study.param or None, endpoint_month=flags.get("endpoint", 12), **flags)
