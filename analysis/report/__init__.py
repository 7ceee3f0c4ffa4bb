"""The self-contained HTML report of a run, and the background drawing of its figures.

:mod:`analysis.report.builder` renders :class:`Report` (its :class:`Section` objects with text,
:class:`Table` objects and figures; a table may carry the figures that belong beside it) through a
jinja2 template into one HTML file with its figures embedded as data URIs. The figures are drawn
and written by :class:`analysis.report.figure_writer.FigureWriter` in worker processes while the
run goes on, and kept in a content-keyed cache (import it from its module: it loads matplotlib).
"""

from analysis.report.builder import Report, Section, Table, render_report

__all__ = ["Report", "Section", "Table", "render_report"]
