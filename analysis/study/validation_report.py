"""The validation report of a study file: what was read and what the analyses will see, in the
study design's words (its sites, nominal visits, endpoint and groups)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.study.clinical import patient_status
from analysis.study.contract import spec
from analysis.study.design import ResolvedDesign
from analysis.study.problems import ExcludedRow
from analysis.study.readers import RawTable

__all__ = ["CANONICAL_COLUMNS", "ValidationReport", "build_report"]

#: Columns the canonical frame adds (not listed as passed through; ``group`` only for a design
#: grouped by a column).
CANONICAL_COLUMNS = ("visit", "group")


@dataclass
class ValidationReport:
    """What was read and what the analyses will see.

    ``completers_at`` (the design's endpoint) and ``patients_per_group`` are set only for designs
    other than RAJAK's derived responder groups, whose report is unchanged.
    """

    file: str
    n_rows: int
    n_patients: int
    visits_per_month: dict[float, int]
    dxa_per_month: dict[float, int]
    completers: int
    dropouts_by_month: dict[float, int]
    missing_per_column: dict[str, int]
    column_mapping: dict[str, str]
    passthrough_columns: list[str]
    excluded: list[ExcludedRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    synthetic: bool = False
    file_format: str = "csv"
    column_labels: dict[str, str] = field(default_factory=dict)
    completers_at: float | None = None
    patients_per_group: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["excluded"] = [e.__dict__ for e in self.excluded]
        d["visits_per_month"] = {f"{k:g}": v for k, v in self.visits_per_month.items()}
        d["dxa_per_month"] = {f"{k:g}": v for k, v in self.dxa_per_month.items()}
        d["dropouts_by_month"] = {f"{k:g}": v for k, v in self.dropouts_by_month.items()}
        for k in ("completers_at", "patients_per_group"):
            if not d[k]:
                d.pop(k)
        return d

    def to_text(self) -> str:
        """Human-readable summary (what ``rajak validate`` prints)."""
        lines = [f"{self.file}: valid"]
        if self.synthetic:
            lines.append("  SYNTHETIC DATA: the RAJAK digital twin, not patient data")
        at = f" (scan at month {self.completers_at:g})" if self.completers_at is not None else ""
        lines.append(f"  patients: {self.n_patients}   rows: {self.n_rows}   completers{at}: {self.completers}"
                     f"   dropouts: {self.n_patients - self.completers}")
        if self.patients_per_group:
            lines.append("  patients per group: " + ", ".join(f"{k}: {v}" for k, v in self.patients_per_group.items()))
        lines.append("  visits per month:    " + ", ".join(f"{k:g}: {v}" for k, v in self.visits_per_month.items()))
        lines.append("  DXA scans per month: " + ", ".join(f"{k:g}: {v}" for k, v in self.dxa_per_month.items()))
        drops = ", ".join(f"{k:g}: {v}" for k, v in self.dropouts_by_month.items()) or "none"
        lines.append(f"  dropouts by month (first missed visit): {drops}")
        miss = [f"{k}: {v}" for k, v in self.missing_per_column.items() if v]
        lines.append("  missing values: " + (", ".join(miss) if miss else "none"))
        if self.column_mapping:
            lines.append("  column mapping: " + ", ".join(f"{k} -> {v}" for k, v in self.column_mapping.items()))
        if self.passthrough_columns:
            lines.append("  passed through: " + ", ".join(self.passthrough_columns))
        if self.excluded:
            lines.append(f"  excluded rows ({len(self.excluded)}):")
            lines += [f"    {e.where} (patient {e.patient}, month {'?' if np.isnan(e.month) else f'{e.month:g}'}): "
                      f"{e.reason}" for e in self.excluded]
        else:
            lines.append("  excluded rows: none")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def build_report(frame: pd.DataFrame, name: str, mapping: dict[str, str], excluded: list[ExcludedRow],
                 resolved: ResolvedDesign, synthetic: bool, table: RawTable,
                 notes: list[str] | None = None) -> ValidationReport:
    """The report of a validated canonical frame (visits are the nominal ``visit``; completers have a
    scan of a design site at the design's endpoint); ``notes`` are what validation adds to the
    reader's notes (an age at each visit taken at baseline)."""
    sites = resolved.sites
    bmd_cols = [f"bmd_{s}" for s in sites]
    endpoint = resolved.endpoint
    derived = resolved.design.group.kind == "derived"
    status = patient_status(frame, endpoint, time="visit", bmd_columns=bmd_cols)
    bmd = frame[bmd_cols].notna().any(axis=1)
    drops = status.loc[~status["completer"], "dropout_month"]
    notes = [*table.notes, *(notes or [])]
    if drops.isna().any():
        notes.append(f"{int(drops.isna().sum())} non-completer(s) attended the last scheduled visit "
                     f"but had no DXA at month {endpoint:g}")
    if derived and "responder" in frame.columns and frame["responder"].notna().any():
        given = int(frame.groupby("patient_id")["responder"].first().notna().sum())
        notes.append(f"responder status user-supplied for {given} of {frame['patient_id'].nunique()} patients "
                     f"(column 'responder'; overrides the derived status and is reported as user-supplied)")
    known = {c for c in frame.columns if spec(c, sites) is not None}
    added = CANONICAL_COLUMNS if resolved.design.group.kind == "column" else ("visit",)
    groups: dict[str, int] = {}
    if resolved.design.group.kind == "column":
        per = frame.dropna(subset=["group"]).groupby("group")["patient_id"].nunique()
        groups = {str(k): int(v) for k, v in per.items()}
    return ValidationReport(
        file=name,
        n_rows=int(frame.shape[0]),
        n_patients=int(frame["patient_id"].nunique()),
        visits_per_month={float(k): int(v) for k, v in frame.groupby("visit").size().items()},
        dxa_per_month={float(k): int(v) for k, v in frame[bmd].groupby("visit").size().items()},
        completers=int(status["completer"].sum()),
        dropouts_by_month={float(k): int(v) for k, v in drops.dropna().value_counts().sort_index().items()},
        missing_per_column={c: int(frame[c].isna().sum()) for c in frame.columns if c in known},
        column_mapping=mapping,
        passthrough_columns=[c for c in frame.columns if c not in known and c not in added],
        excluded=excluded,
        notes=notes,
        synthetic=synthetic,
        file_format=table.fmt,
        column_labels=dict(table.labels),
        completers_at=None if derived else endpoint,
        patients_per_group=groups,
    )
