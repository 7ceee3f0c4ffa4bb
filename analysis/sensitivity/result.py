"""The one result type every sensitivity analysis returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["SensitivityResult", "FOREST_COLUMNS"]

#: Columns of :attr:`SensitivityResult.forest_rows`: one row per (estimand, analysis) for the forest
#: plot across analyses. ``kind`` is "frequentist" or "bayesian"; ``low``/``high`` a 95% interval.
FOREST_COLUMNS = ["estimand", "site", "analysis", "estimate", "low", "high", "kind"]


@dataclass
class SensitivityResult:
    """What a sensitivity analysis produced.

    Attributes
    ----------
    name
        Short machine name (``rajak sensitivity --analysis NAME``), e.g. ``"delta"``.
    title
        Human title for the report.
    table
        The analysis' full tidy table (written to ``tables/sensitivity_<name>.csv``).
    text
        Paragraphs for the report: what was assumed, what was found, where conclusions flip.
    figures
        ``{figure name: matplotlib Figure}`` (written as PNG + SVG).
    forest_rows
        Key estimands in :data:`FOREST_COLUMNS` form for the forest plot across analyses.
    settings
        What was run (recorded in the manifest).
    draws
        Optional posterior/imputation draws per estimand, for users' own summaries.
    """

    name: str
    title: str
    table: pd.DataFrame
    text: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    forest_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FOREST_COLUMNS))
    settings: dict[str, Any] = field(default_factory=dict)
    draws: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in FOREST_COLUMNS if c not in self.forest_rows.columns]
        if missing:
            raise ValueError(f"sensitivity result {self.name!r}: forest_rows lacks column(s) {missing}")
