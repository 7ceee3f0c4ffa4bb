"""Reading a study file, mapping its columns, validating it against the data contract, and the
validation report.

The file is read by ``readers`` (delimited text with its delimiter and decimal mark detected,
Excel, Parquet, SAS, SPSS, Stata) and, when it is a CDISC ADaM BDS file, pivoted by ``adam``; this
module validates what they return. Delimited text -- the format of large registry exports -- is
validated as a stream: its cells are parsed and checked row by row (``row_checks``) a chunk of
:data:`~analysis.study.readers.CHUNK_ROWS` rows at a time, so only the validated, typed columns are
held for the whole file; the checks that need a patient's rows together (duplicates, baselines,
covariates, the design) then run on those, grouping patients by integer codes. A time in days, years
or dates takes one more pass over the subject, time and visit columns (months since each subject's
baseline). The problems and the result do not depend on the chunking (tested). Every problem becomes one line that names the file, the line
(text; "row" for other formats), the patient, the column (with its label where the file has one)
and the value. Nothing is dropped silently: rows excluded by a rule (a visit with no recorded value
at all; an ADaM record not flagged for analysis) are listed in the report. The input file is only
read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.study.contract import (
    ACTIVITY_COLUMNS,
    BASELINE_COVARIATES,
    CDAI_COMPONENTS,
    DAS28_COMPONENTS,
    MEASUREMENT_COLUMNS,
)
from analysis.study.design import (
    TIME_CANDIDATES,
    DesignError,
    GroupSpec,
    ResolvedDesign,
    StudyDesign,
    canonical_frame,
    canonical_months,
    infer_design,
    resolve,
)
from analysis.study.problems import DataValidationError, ExcludedRow, Problem
from analysis.study.readers import RawTable, read_file
from analysis.study.row_checks import Locate, check_rows, show_value
from analysis.study.validation_report import ValidationReport, build_report

__all__ = [
    "DataValidationError",
    "Dataset",
    "ExcludedRow",
    "Problem",
    "ValidationReport",
    "load_dataset",
    "load_for_config",
    "load_twin",
    "read_table",
]



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


#: An ``age`` that changes within a subject is age at each visit, and taken at baseline, when every
#: value is within this many years of the baseline age plus the time since baseline.
AGE_AT_VISIT_TOLERANCE = 1.0


def _age_at_visits(df: pd.DataFrame, codes: np.ndarray) -> tuple[pd.Series, pd.Series, pd.Series]:
    """An ``age`` at each visit: per row with an age, whether it is within
    :data:`AGE_AT_VISIT_TOLERANCE` years of the patient's baseline age (at their earliest visit with
    an age) plus the years since that visit, |age_j - age_0 - (month_j - month_0)/12| <= 1; per
    patient whose age changes (by patient code, ``codes`` numbering ``df``'s patients), whether every
    row is; and each patient's baseline age (by code)."""
    ages = pd.to_numeric(df["age"], errors="coerce")
    known = pd.DataFrame({"code": codes, "month": pd.to_numeric(df["month"], errors="coerce"),
                          "age": ages.astype("float64")}, index=df.index)[ages.notna()]
    if known.empty:
        none = pd.Series(dtype=bool)
        return none, none, pd.Series(dtype="float64")
    by_time = known.sort_values("month", kind="stable").groupby("code", sort=False)
    first = by_time[["age", "month"]].transform("first").reindex(known.index)
    within = (known["age"] - first["age"] - (known["month"] - first["month"]) / 12.0).abs() \
        <= AGE_AT_VISIT_TOLERANCE + 1e-9
    changes = known.groupby("code")["age"].nunique() > 1
    follows = within.groupby(known["code"]).all()
    baseline_age = first["age"].groupby(known["code"]).first()
    return within, follows.reindex(changes.index[changes.to_numpy()]), baseline_age


def _structure_problems(df: pd.DataFrame, name: str, loc: Locate
                        ) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    """Duplicate visits, patients without a baseline visit, and baseline covariates that change
    within a patient (one problem each); an ``age`` that grows with the visits (age at each visit)
    is not one: it is replaced by the age at baseline, with a note. Returns the frame, the
    problems and the notes. The patients are grouped by integer codes (numbered in order of first
    appearance), not by their id text, which costs several times the memory and time at scale."""
    problems: list[Problem] = []
    notes: list[str] = []
    codes, ids = pd.factorize(df["patient_id"], use_na_sentinel=False)
    dup = pd.DataFrame({"code": codes, "month": df["month"].to_numpy()}, index=df.index).duplicated(keep=False)
    if dup.any():
        for (pid, month), grp in df[dup].groupby(["patient_id", "month"], sort=False):
            where = " and ".join(loc.at(i) for i in grp.index[:2])
            problems.append(Problem(f"{name}, {where}: duplicate visit for patient {pid} at month {month:g}",
                                    "month", int(grp.index[0]), str(pid), month))
    has_base = (df["month"] == 0).groupby(codes).any().to_numpy()
    for code in np.flatnonzero(~has_base):
        pid = ids[code]
        first = df.index[np.flatnonzero(codes == code)[0]]
        problems.append(Problem(f"{name}: patient {pid} has no baseline visit (month 0; first row at "
                                f"{loc.at(first)})", "month", int(first), str(pid)))
    within = None
    if "age" in df.columns:
        within, follows, baseline_age = _age_at_visits(df, codes)
        at_visits = follows.index[follows.to_numpy()].to_numpy()
        if len(at_visits):
            rows = np.isin(codes, at_visits)
            age = df["age"].copy()  # a new frame with a new age column: the others are not copied
            age[rows] = baseline_age.reindex(codes[rows]).to_numpy()
            df = df.assign(age=age)
            notes.append(f"age changes with the visits: taken at baseline ({loc.col('age')} is the age at each "
                         f"visit in {len(at_visits)} of {len(ids)} patients; each patient's "
                         f"age at their first visit is used)")
    for col in BASELINE_COVARIATES:
        if col not in df.columns:
            continue
        # only the patients whose value changes are looked at one by one (vectorised test first)
        changes = df[col].groupby(codes).nunique().to_numpy() > 1
        if not changes.any():
            continue
        changing = df[np.isin(codes, np.flatnonzero(changes))]
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
                    f"({show_value(vals.at[i0])} at {loc.at(i0, col)}, {show_value(vals.at[i1])} at {loc.at(i1, col)})"
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
    table = read_file(path, encoding=encoding, sheet=sheet, delimiter=delimiter, decimal=decimal, stream=True)
    if is_adam_bds(table.frame.columns):
        table = adam_table(table.whole(), name, param_map)
    elif param_map:
        raise DataValidationError(f"{name}: --param maps ADaM parameters, but this is not an ADaM BDS file "
                                  f"(it needs USUBJID, PARAMCD and AVAL)")
    mapping = dict(column_map or {})
    adam = table.fmt == "adam"
    header = _apply_mapping(table.frame.iloc[:0], mapping, name, adam=adam)
    study = _design_for(header, design, design_flags, endpoint_month, name, table.hint)
    months = _file_months(table, mapping, study, name)
    inverse = {v: k for k, v in mapping.items()}
    renames = {k: v for k, v in _canonical_names(study).items() if k != v}
    inverse.update({canon: inverse.get(orig, orig) for orig, canon in renames.items()})
    loc = Locate(table, inverse)
    sites = tuple(study.sites)

    # row by row, a chunk of the file at a time (the cells of one chunk as text at once)
    problems: list[Problem] = []
    out_of_range: list[Problem] = []
    parts: list[pd.DataFrame] = []
    for chunk in table.chunks():
        part = _rename_to_canonical(_apply_mapping(chunk, mapping, name, adam=adam), study, months)
        checked = check_rows(part, loc, name, sites, ranges=not problems)
        problems += checked.problems
        out_of_range += checked.range_problems
        if not problems:
            parts.append(checked.frame)
    if problems:  # in the file's order, however it was chunked (a row's text problems before its values')
        raise DataValidationError(sorted(problems, key=lambda p: -1 if p.row is None else p.row))
    if out_of_range:
        raise DataValidationError(out_of_range)
    sha256 = hashlib.sha256(table.raw).hexdigest()
    if table.streamed:  # the file's bytes and text are no longer needed: only where its rows are
        table = replace(table, raw=b"", parse=None)
        loc = Locate(table, inverse)
    df = pd.concat(parts) if len(parts) > 1 else parts[0]
    del parts
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
    del df, empty
    try:
        frame = canonical_frame(frame, canon)
        _check_nominal_visits(frame, name)
        resolved = resolve(frame, study, name)
    except DesignError as exc:
        raise _design_error(exc, name) from None

    if resolved.design.group.kind == "none" and design_flags.get("group") is None and design is None:
        notes += _group_candidates(frame)
    report = build_report(frame, name, mapping, excluded, resolved, synthetic, table, notes)
    return Dataset(frame=frame, source=name, sha256=sha256, report=report,
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


def _canonical_names(design: StudyDesign) -> dict[str, str]:
    """``{file column: canonical column}`` for the subject, site and (a time in months) time columns."""
    renames = {design.id: "patient_id", **{c: f"bmd_{s}" for s, c in design.sites.items()}}
    if design.time_unit == "months":
        renames[design.time] = "month"
    return renames


def _file_months(table: RawTable, mapping: Mapping[str, str], design: StudyDesign, name: str) -> pd.Series | None:
    """A time in days, years or dates as months since the subject's baseline
    (:func:`analysis.study.design.canonical_months`), from a pass over the subject, time and visit
    columns only; ``None`` for a time in months (checked row by row)."""
    if design.time_unit == "months":
        return None
    wanted = [c for c in dict.fromkeys([design.id, design.time, design.visit]) if c is not None]
    inverse = {v: k for k, v in mapping.items()}
    cols = [inverse.get(c, c) for c in wanted]
    frame = pd.concat(list(table.chunks(cols))).rename(columns=dict(mapping))
    try:
        return canonical_months(frame, design)
    except DesignError as exc:
        raise _design_error(exc, name) from None


def _rename_to_canonical(df: pd.DataFrame, design: StudyDesign, months: pd.Series | None) -> pd.DataFrame:
    """Rows with the subject, time and site columns under their canonical names (``patient_id``,
    ``month``, ``bmd_<site>``); ``months`` (:func:`_file_months`) is the ``month`` of a time in days,
    years or dates, by row position."""
    renames = _canonical_names(design)
    taken = set(renames.values())
    out = df.drop(columns=[c for c in df.columns if c in taken and c not in renames]).rename(columns=renames)
    if months is not None:
        out["month"] = months.reindex(df.index).to_numpy()
    return out


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
