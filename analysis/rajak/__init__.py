"""The RAJAK default study (Schulz et al., Calcif Tissue Int 2025): its published figures, the
reconstruction of the paper's analysis (``published``) and the calibration of the synthetic digital
twin (``twin``). The one room where RAJAK's constants live.

Public names are imported lazily (PEP 562), so importing one module of the room does not import
the others.
"""

from __future__ import annotations

from analysis.common.lazy_exports import lazy_exports


_EXPORTS = {
    "PublishedFigure": "analysis.rajak.published",
    "published_figures": "analysis.rajak.published",
    "paper_analysis": "analysis.rajak.published",
    "replication_table": "analysis.rajak.published",
    "replication_by_method": "analysis.rajak.published",
    "MODEL_FIGURES": "analysis.rajak.published",
    "ANALYSIS_ASSUMPTIONS": "analysis.rajak.published",
    "TWIN_DESIGN": "analysis.rajak.twin",
    "CALIBRATION_GRID": "analysis.rajak.twin",
    "Candidate": "analysis.rajak.twin",
    "CalibrationResult": "analysis.rajak.twin",
    "twin_distance": "analysis.rajak.twin",
    "evaluate": "analysis.rajak.twin",
    "calibrate": "analysis.rajak.twin",
    "twin_csv_text": "analysis.rajak.twin",
    "write_twin": "analysis.rajak.twin",
    "load_provenance": "analysis.rajak.twin",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
