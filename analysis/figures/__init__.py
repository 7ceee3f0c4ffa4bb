"""Figures, in one colour-blind-safe style (Okabe-Ito palette), written as PNG and SVG.

Every figure function returns a :class:`matplotlib.figure.Figure` and takes an optional ``label``
printed on the figure (the synthetic twin's figures always say SYNTHETIC). Posteriors, posterior
predictive checks and convergence diagnostics are drawn by arviz-plots; the observed data and the
forest plot across analyses by hand in matplotlib.

Modules
-------
theme
    Palette, the colour and name of each group level of the design, matplotlib style, the label stamp.
output
    :func:`save_figure` (PNG + SVG, atomic), :func:`figure_png_bytes`, :class:`DeferredFigure` (a
    figure drawn where it is written), :func:`figure_of` (the figure of an arviz-plots PlotCollection).
observed
    Trajectories per patient and the patients remaining at each visit, per design group and site.
posterior
    Estimand densities with HDI and ROPE, prior vs posterior, posterior predictive checks, forest plot.
diagnostics
    Rank, effective-sample-size and energy plots of a fit.
plots
    The names above under the room's former single module (kept for callers).

Importing this room imports no plotting library: each name below is loaded from its module the
first time it is used (PEP 562).
"""

from __future__ import annotations

from analysis.common.lazy_exports import lazy_exports


#: Public name -> the module of this room that defines it.
_WHERE = {
    **dict.fromkeys(("PALETTE", "GROUP_COLOURS", "GROUP_TITLES", "LEVEL_COLOURS", "group_colours", "group_title",
                     "style", "stamp"), "theme"),
    **dict.fromkeys(("FIGURE_FORMATS", "DeferredFigure", "save_figure", "figure_png_bytes", "figure_of"), "output"),
    **dict.fromkeys(("trajectories", "retention", "plot_groups"), "observed"),
    **dict.fromkeys(("estimand_tree", "contrast_posteriors", "prior_posterior_tree", "prior_posterior",
                     "ppc_change_tree", "ppc_change", "forest"), "posterior"),
    **dict.fromkeys(("RANK_VARS", "MIN_ESS", "diagnostics_tree", "rank_plot", "ess_plot", "energy_plot"),
                    "diagnostics"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _WHERE)
