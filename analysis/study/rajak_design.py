"""The RAJAK default design: the one place where the default study's shape is written down.

RAJAK (Schulz et al., Calcif Tissue Int 2025;116:101): DXA of the lumbar spine and the femoral neck
at months 0, 6 and 12; patients grouped by EULAR DAS28-CRP response at month 12 (reference:
non-responders); the endpoint is month 12; age, sex and BMI as baseline covariates.
"""

from __future__ import annotations

from analysis.study.design import GroupSpec, StudyDesign

__all__ = ["RAJAK_DESIGN", "rajak_design"]

#: The embedded twin's design (and the RAJAK cohort's).
RAJAK_DESIGN = StudyDesign(
    id="patient_id",
    time="month",
    time_unit="months",
    sites={"spine": "bmd_spine", "femoral_neck": "bmd_femoral_neck"},
    group=GroupSpec(kind="derived", reference="non-responder"),
    endpoint=12.0,
    covariates=("age", "sex", "bmi"),
)


def rajak_design() -> StudyDesign:
    """:data:`RAJAK_DESIGN` (a frozen object; copy with ``model_copy(update=...)`` to vary it)."""
    return RAJAK_DESIGN
