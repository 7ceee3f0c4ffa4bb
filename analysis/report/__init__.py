"""The self-contained HTML report of a run, and the background drawing of its figures.

:mod:`analysis.report.builder` renders :class:`Report` (its :class:`Section` objects with text,
:class:`Table` objects and figures; a table may carry the figures that belong beside it) through a
jinja2 template into one HTML file with its figures embedded as data URIs. The figures are drawn
and written by :class:`analysis.report.figure_writer.FigureWriter` in worker processes while the
run goes on, and kept in a content-keyed cache (import it from its module: it loads matplotlib).
:mod:`analysis.report.design_text` says the study's design in its own words (:func:`design_words`:
arm names, sites, endpoint month; RAJAK's words only for the RAJAK design).
"""

from analysis.report.builder import Report, Section, Table, render_report
from analysis.report.design_text import DesignWords, design_words, site_label

__all__ = ["DesignWords", "Report", "Section", "Table", "design_words", "render_report", "site_label"]
