"""The one result type every sensitivity analysis returns, including "this analysis did not run"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["FOREST_COLUMNS", "STATUSES", "SensitivityResult"]

#: Columns of :attr:`SensitivityResult.forest_rows`: one row per (estimand, analysis) for the forest
#: plot across analyses. ``kind`` is "frequentist" or "bayesian"; ``low``/``high`` a 95% interval.
FOREST_COLUMNS = ["estimand", "site", "analysis", "estimate", "low", "high", "kind"]
#: What became of an analysis: it ran (``"ok"``), it does not apply to the study's design, or it
#: applies but cannot be estimated on these data (:mod:`analysis.study.applicability`).
STATUSES = ("ok", "not applicable", "not estimable")


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
        The analysis' full tidy table (written to ``tables/sensitivity_<name>.csv``; empty when the
        analysis did not run).
    text
        Paragraphs for the report: what was assumed, what was found, where conclusions flip (for an
        analysis that did not run: ``"not applicable: <reason>"`` or ``"not estimable: <reason>"``).
    figures
        ``{figure name: matplotlib Figure}`` (written as PNG + SVG).
    forest_rows
        Key estimands in :data:`FOREST_COLUMNS` form for the forest plot across analyses.
    settings
        What was run (recorded in the manifest).
    draws
        Optional posterior/imputation draws per estimand, for users' own summaries.
    status
        One of :data:`STATUSES`.
    reason
        Why the analysis did not run (one line; empty when it ran).
    """

    name: str
    title: str
    table: pd.DataFrame
    text: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    forest_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FOREST_COLUMNS))
    settings: dict[str, Any] = field(default_factory=dict)
    draws: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""

    def __post_init__(self) -> None:
        missing = [c for c in FOREST_COLUMNS if c not in self.forest_rows.columns]
        if missing:
            raise ValueError(f"sensitivity result {self.name!r}: forest_rows lacks column(s) {missing}")
        if self.status not in STATUSES:
            raise ValueError(f"sensitivity result {self.name!r}: status must be one of {STATUSES}, got "
                             f"{self.status!r}")

    @property
    def ran(self) -> bool:
        """Whether the analysis ran (``status == "ok"``)."""
        return self.status == "ok"

    @property
    def summary(self) -> str:
        """``"<status>: <reason>"`` for an analysis that did not run, else ``"ok"``."""
        return "ok" if self.ran else f"{self.status}: {self.reason}"

    @classmethod
    def skipped(cls, name: str, title: str, status: str, reason: str) -> SensitivityResult:
        """The result of an analysis that did not run: an empty table, the reason as its one paragraph
        and in ``settings``.

        Parameters
        ----------
        name, title : str
        status : {"not applicable", "not estimable"}
        reason : str
            One line (further lines are dropped).
        """
        if status == "ok":
            raise ValueError("a skipped analysis has status 'not applicable' or 'not estimable'")
        reason = (str(reason).strip().splitlines() or [""])[0]
        return cls(name=name, title=title, table=pd.DataFrame(), text=[f"{status}: {reason}"],
                   settings={"status": status, "reason": reason}, status=status, reason=reason)
