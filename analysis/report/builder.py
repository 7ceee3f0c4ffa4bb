"""Build the HTML report from sections.

Each analysis contributes :class:`Section` objects (text, tables, figures, a status); the report
iterates over them, so new analyses appear without touching the template. jinja2 renders the
template because it escapes by default and keeps layout out of Python. The result is one file with
inline CSS and figures as base64 data URIs: it needs no network and no other file.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import jinja2
import pandas as pd

__all__ = ["Table", "Section", "Report", "render_report"]

Status = Literal["ok", "warning", "fail"]


@dataclass
class Table:
    """A table with a caption, and the figures that belong with it.

    Attributes
    ----------
    caption : str
        Shown above the table.
    frame : DataFrame
        The rows (numbers to 4 significant digits).
    name : str, optional
        Its CSV under ``tables/`` (the pipeline writes every named table).
    figures : list of (str, str)
        ``(caption, figure name)`` shown right after the table (e.g. a fit's diagnostics plots
        beside its diagnostics row).
    """

    caption: str
    frame: pd.DataFrame
    name: str | None = None
    figures: list[tuple[str, str]] = field(default_factory=list)

    def html(self) -> str:
        """The table as HTML (escaped, no index)."""
        return self.frame.to_html(index=False, classes="tbl", border=0, na_rep="",
                                  float_format=lambda v: f"{v:.4g}", escape=True)


@dataclass
class Section:
    """One report section.

    Attributes
    ----------
    key : str
        Its HTML id.
    title : str
        Its heading.
    paragraphs : list of str
        Text, shown first.
    tables : list of Table
        Shown after the text, each followed by its own figures.
    figures : list of (str, str)
        ``(caption, figure name)``, shown after the tables.
    status : {"ok", "warning", "fail"}
        Colours the heading; ``fail`` adds "(FAILED DIAGNOSTICS)".
    """

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, figure name)
    status: Status = "ok"

    def figure_names(self) -> list[str]:
        """Every figure the section shows: its tables' figures, then its own."""
        return [name for t in self.tables for _, name in t.figures] + [name for _, name in self.figures]


def validation_doc_link() -> str:
    """``file://`` link to docs/validation.md of this installation's sources (the relative path when the
    sources are not beside the package, e.g. an installed wheel)."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "validation.md"
    return doc.as_uri() if doc.is_file() else "docs/validation.md"


@dataclass
class Report:
    """Everything the template shows."""

    title: str
    synthetic: bool
    data_label: str
    summary: list[str]
    sections: list[Section]
    methods: list[str]
    failures: list[str] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)
    run_id: str = ""
    #: Where the calibration of rajak's estimators against known truth is documented: the sources'
    #: docs/validation.md (a file link to this installation's copy).
    validation_link: str = field(default_factory=lambda: validation_doc_link())


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("analysis.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report(report: Report, figures_dir: str | Path) -> str:
    """Render ``report`` to HTML with every figure embedded.

    Parameters
    ----------
    report : Report
        What to show.
    figures_dir : path
        Where the figures are (``<name>.png``, embedded as base64 data URIs).

    Returns
    -------
    str
        One self-contained HTML page (inline CSS, no script, no external resource).

    Raises
    ------
    FileNotFoundError
        Naming a figure that a section (or one of its tables) references but that does not exist.
    """
    figures_dir = Path(figures_dir)
    embedded: dict[str, str] = {}
    for section in report.sections:
        for name in section.figure_names():
            path = figures_dir / f"{name}.png"
            if not path.is_file():
                raise FileNotFoundError(f"report section '{section.key}' references missing figure {path}")
            embedded[name] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    template = _env().get_template("report.html.j2")
    css = resources.files("analysis.report").joinpath("templates/report.css").read_text(encoding="utf-8")
    return template.render(r=report, figures=embedded, css=css)
