"""Sensitivity analyses of the dropout (MAR vs MNAR), each returning one :class:`SensitivityResult`
(table + text + figures) so that the report and the forest plot iterate over them uniformly."""

from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.sensitivity.runner import ANALYSES, available, forest_figure, forest_table, run_sensitivity

__all__ = ["SensitivityResult", "FOREST_COLUMNS", "ANALYSES", "available", "run_sensitivity", "forest_table",
           "forest_figure"]
