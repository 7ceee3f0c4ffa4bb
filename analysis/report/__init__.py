"""The self-contained HTML report (jinja2 template, figures embedded as data URIs)."""

from analysis.report.builder import Report, Section, Table, render_report

__all__ = ["Report", "Section", "Table", "render_report"]
