"""The data contract: one row per patient-visit, the columns rajak reads, their units and ranges.

The contract is one table (:data:`COLUMNS`); the pandera schemas that check a file are built from
it, so the documentation, the checks and the error messages cannot drift apart. pandera is used
because it is the maintained dataframe-validation library with lazy (collect-all) failure reports,
which we turn into one-line messages naming file, line, patient, column and value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandera.pandas as pa

__all__ = [
    "ColumnSpec",
    "COLUMNS",
    "REQUIRED",
    "BASELINE_COVARIATES",
    "DAS28_COMPONENTS",
    "CDAI_COMPONENTS",
    "MEASUREMENT_COLUMNS",
    "coercion_schema",
    "range_schema",
    "spec",
    "site_spec",
    "ACTIVITY_COLUMNS",
]

Role = Literal["required", "activity", "component", "treatment", "covariate", "optional"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the data contract."""

    name: str
    kind: Literal["id", "number", "sex", "text", "bool"]
    role: Role
    description: str
    low: float | None = None
    high: float | None = None
    unit: str = ""

    def range_text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.low is not None and self.high is not None:
            return f"{self.low:g}-{self.high:g}{unit}"
        if self.low is not None:
            return f">= {self.low:g}{unit}"
        return f"<= {self.high:g}{unit}"


BMD_LOW, BMD_HIGH = 0.2, 2.5  # physiological range of areal BMD, g/cm^2

COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("patient_id", "id", "required", "patient identifier"),
    ColumnSpec("month", "number", "required", "months since baseline (0 = baseline)", 0, 240, "months"),
    ColumnSpec("bmd_spine", "number", "required", "lumbar spine BMD (empty where not measured)",
               BMD_LOW, BMD_HIGH, "g/cm^2"),
    ColumnSpec("bmd_femoral_neck", "number", "required", "femoral neck BMD (empty where not measured)",
               BMD_LOW, BMD_HIGH, "g/cm^2"),
    ColumnSpec("das28_crp", "number", "activity", "DAS28-CRP", 0, 10),
    ColumnSpec("cdai", "number", "activity", "clinical disease activity index", 0, 76),
    ColumnSpec("tjc28", "number", "component", "tender joint count (28 joints)", 0, 28),
    ColumnSpec("sjc28", "number", "component", "swollen joint count (28 joints)", 0, 28),
    ColumnSpec("crp_mg_l", "number", "component", "C-reactive protein", 0, 1000, "mg/l"),
    ColumnSpec("patient_global_mm", "number", "component", "patient global assessment (VAS)", 0, 100, "mm"),
    ColumnSpec("evaluator_global_mm", "number", "component", "evaluator global assessment (VAS)", 0, 100, "mm"),
    ColumnSpec("prednisolone_mg", "number", "treatment", "daily prednisolone dose", 0, 1000, "mg"),
    ColumnSpec("alp_u_l", "number", "treatment", "alkaline phosphatase", 1, 5000, "U/l"),
    ColumnSpec("age", "number", "covariate", "age at baseline", 16, 110, "years"),
    ColumnSpec("sex", "sex", "covariate", "sex, F or M"),
    ColumnSpec("bmi", "number", "covariate", "body-mass index at baseline", 10, 80, "kg/m^2"),
    ColumnSpec("tscore_spine", "number", "optional", "spine T-score (else derived)", -10, 10),
    ColumnSpec("tscore_femoral_neck", "number", "optional", "femoral neck T-score (else derived)", -10, 10),
    ColumnSpec("responder", "bool", "optional", "user's own responder classification (overrides the derived one)"),
    ColumnSpec("dropout_reason", "text", "optional", "why the patient left the study"),
)

REQUIRED = tuple(c.name for c in COLUMNS if c.role == "required")
BASELINE_COVARIATES = ("age", "sex", "bmi")
DAS28_COMPONENTS = ("tjc28", "sjc28", "crp_mg_l", "patient_global_mm")
CDAI_COMPONENTS = ("tjc28", "sjc28", "patient_global_mm", "evaluator_global_mm")
MEASUREMENT_COLUMNS = tuple(c.name for c in COLUMNS
                            if c.kind == "number" and c.role != "covariate" and c.name != "month")

#: Columns that make a file a responder study (disease activity, its components, a responder flag).
ACTIVITY_COLUMNS = ("das28_crp", "cdai", *dict.fromkeys([*DAS28_COMPONENTS, *CDAI_COMPONENTS]), "responder")

_BY_NAME = {c.name: c for c in COLUMNS}


def spec(name: str, sites: tuple[str, ...] | list[str] = ()) -> ColumnSpec | None:
    """The contract entry of ``name`` (``None`` for pass-through columns); ``bmd_<site>`` and
    ``tscore_<site>`` of any of the design's ``sites`` are BMD and T-score columns."""
    return _BY_NAME.get(name) or site_spec(name, sites)


def site_spec(name: str, sites: tuple[str, ...] | list[str]) -> ColumnSpec | None:
    """``bmd_<site>`` (BMD, 0.2-2.5 g/cm^2) or ``tscore_<site>`` (-10 to 10) of a design site."""
    kind, _, site = name.partition("_")
    if site not in sites:
        return None
    if kind == "bmd":
        return ColumnSpec(name, "number", "required", f"{site.replace('_', ' ')} BMD (empty where not measured)",
                          BMD_LOW, BMD_HIGH, "g/cm^2")
    if kind == "tscore":
        return ColumnSpec(name, "number", "optional", f"{site.replace('_', ' ')} T-score (else derived)", -10, 10)
    return None


def coercion_schema(columns: list[str], sites: tuple[str, ...] | list[str] = ()) -> pa.DataFrameSchema:
    """Schema that only coerces the numeric contract columns present in ``columns`` (with the BMD
    and T-score columns of the design's ``sites``) to float; its failures are the non-numeric values."""
    cols = {c: pa.Column(float, coerce=True, nullable=True, required=False)
            for c in columns if (s := spec(c, sites)) is not None and s.kind == "number"}
    return pa.DataFrameSchema(cols, strict=False)


def range_schema(columns: list[str], sites: tuple[str, ...] | list[str] = ()) -> pa.DataFrameSchema:
    """Schema of the value rules (ranges, allowed values) for already-coerced columns."""
    cols: dict[str, pa.Column] = {}
    for c in columns:
        s = spec(c, sites)
        if s is None:
            continue
        if s.kind == "number" and (s.low is not None or s.high is not None):
            check = pa.Check.in_range(s.low, s.high) if s.low is not None and s.high is not None else (
                pa.Check.ge(s.low) if s.low is not None else pa.Check.le(s.high))
            cols[c] = pa.Column(float, check, nullable=s.name not in ("month",), required=False)
        elif s.kind == "sex":
            cols[c] = pa.Column(str, pa.Check.isin(["F", "M"]), nullable=True, required=False)
        elif s.kind == "id":
            cols[c] = pa.Column(str, nullable=False, required=False)
    return pa.DataFrameSchema(cols, strict=False)
