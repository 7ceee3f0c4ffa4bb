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
    """A table with a caption; ``name`` is its CSV under ``tables/``."""

    caption: str
    frame: pd.DataFrame
    name: str | None = None

    def html(self) -> str:
        return self.frame.to_html(index=False, classes="tbl", border=0, na_rep="",
                                  float_format=lambda v: f"{v:.4g}", escape=True)


@dataclass
class Section:
    """One report section."""

    key: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, figure name)
    status: Status = "ok"


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


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("analysis.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report(report: Report, figures_dir: str | Path) -> str:
    """Render ``report`` to HTML; figures are read from ``figures_dir/<name>.png`` and embedded.

    Raises ``FileNotFoundError`` naming a figure that a section references but that does not exist.
    """
    figures_dir = Path(figures_dir)
    embedded: dict[str, str] = {}
    for section in report.sections:
        for _, name in section.figures:
            path = figures_dir / f"{name}.png"
            if not path.is_file():
                raise FileNotFoundError(f"report section '{section.key}' references missing figure {path}")
            embedded[name] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    template = _env().get_template("report.html.j2")
    css = resources.files("analysis.report").joinpath("templates/report.css").read_text(encoding="utf-8")
    return template.render(r=report, figures=embedded, css=css)
