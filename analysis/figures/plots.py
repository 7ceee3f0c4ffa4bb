"""The figure functions under the room's former single module name.

Kept so that ``from analysis.figures.plots import save_figure, contrast_posteriors`` (README, older
scripts) keeps working; the functions live in :mod:`analysis.figures.theme`, :mod:`~analysis.figures.output`,
:mod:`~analysis.figures.observed`, :mod:`~analysis.figures.posterior` and :mod:`~analysis.figures.diagnostics`.
"""

from __future__ import annotations

from analysis.figures.diagnostics import MIN_ESS, RANK_VARS, diagnostics_tree, energy_plot, ess_plot, rank_plot
from analysis.figures.observed import plot_groups, retention, trajectories
from analysis.figures.posterior import (contrast_posteriors, estimand_tree, forest, ppc_change, ppc_change_tree,
                                        prior_posterior, prior_posterior_tree)
from analysis.figures.output import FIGURE_FORMATS, DeferredFigure, figure_of, figure_png_bytes, save_figure
from analysis.figures.theme import (GROUP_COLOURS, GROUP_TITLES, LEVEL_COLOURS, PALETTE, group_colours, group_title,
                                    stamp, style)

__all__ = ["PALETTE", "GROUP_COLOURS", "GROUP_TITLES", "LEVEL_COLOURS", "group_colours", "group_title", "plot_groups",
           "FIGURE_FORMATS", "RANK_VARS", "MIN_ESS", "DeferredFigure",
           "style", "stamp", "save_figure", "figure_png_bytes", "figure_of", "trajectories", "retention",
           "estimand_tree", "contrast_posteriors", "prior_posterior_tree", "prior_posterior", "ppc_change_tree",
           "ppc_change", "forest", "diagnostics_tree", "rank_plot", "ess_plot", "energy_plot"]
