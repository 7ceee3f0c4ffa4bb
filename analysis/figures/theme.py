"""How rajak's figures look: one colour-blind-safe palette (Okabe & Ito 2008), the colour and name
of each responder group, the matplotlib style every figure is drawn and written in, and the label
stamped on every figure (vermillion when it says SYNTHETIC).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; figures are written to files

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["PALETTE", "GROUP_COLOURS", "GROUP_TITLES", "style", "stamp"]

#: Okabe & Ito (2008) colour-blind-safe palette.
PALETTE = {"orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
           "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "black": "#000000",
           "grey": "#999999"}
#: Colour of each responder group.
GROUP_COLOURS = {"responder": PALETTE["blue"], "non-responder": PALETTE["vermillion"],
                 "undefined": PALETTE["grey"], "unknown": PALETTE["grey"]}
#: Plural name of each responder group (titles and legends).
GROUP_TITLES = {"responder": "responders", "non-responder": "non-responders", "undefined": "status undefined",
                "unknown": "status unknown"}

_RC = {
    "figure.dpi": 100, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
    "legend.frameon": False, "svg.hashsalt": "rajak", "svg.fonttype": "none",
}


def style():
    """Context manager applying rajak's matplotlib style (fonts, grid, 150 dpi PNG, SVG text as
    text, a fixed SVG hash salt so that SVG files are reproducible)."""
    return plt.rc_context(_RC)


def stamp(fig: Figure, label: str | None) -> None:
    """Print ``label`` in the figure's top right corner (vermillion and bold when it says SYNTHETIC,
    grey otherwise); nothing when ``label`` is empty."""
    if label:
        colour = PALETTE["vermillion"] if "SYNTHETIC" in label.upper() else PALETTE["grey"]
        fig.text(0.995, 0.995, label, ha="right", va="top", fontsize=7, color=colour, weight="bold")
