"""Sensitivity analyses of the dropout (MAR vs MNAR), each returning one :class:`SensitivityResult`
(table + text + figures) so that the report and the forest plot iterate over them uniformly."""

from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult

__all__ = ["SensitivityResult", "FOREST_COLUMNS"]
