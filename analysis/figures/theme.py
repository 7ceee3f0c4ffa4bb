"""How rajak's figures look: one colour-blind-safe palette (Okabe & Ito 2008), the colour and name
of each group level of the study's design (:func:`group_colours`, :func:`group_title`: the
reference vermillion, the next level blue, then green, orange, ...; a responder study's groups are
its two levels, so responders are blue and non-responders vermillion), the matplotlib style every
figure is drawn and written in, and the label stamped on every figure (vermillion when it says
SYNTHETIC).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; figures are written to files

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["PALETTE", "GROUP_COLOURS", "GROUP_TITLES", "LEVEL_COLOURS", "group_colours", "group_title", "style",
           "stamp"]

#: Okabe & Ito (2008) colour-blind-safe palette.
PALETTE = {"orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
           "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "black": "#000000",
           "grey": "#999999"}
#: Colour of each group of a responder study (what :func:`group_colours` gives its two levels).
GROUP_COLOURS = {"responder": PALETTE["blue"], "non-responder": PALETTE["vermillion"],
                 "undefined": PALETTE["grey"], "unknown": PALETTE["grey"]}
#: Plural name of each group of a responder study (titles and legends; :func:`group_title`).
GROUP_TITLES = {"responder": "responders", "non-responder": "non-responders", "undefined": "status undefined",
                "unknown": "status unknown"}

#: Colours of a design's group levels in order, the reference first.
LEVEL_COLOURS = tuple(PALETTE[c] for c in ("vermillion", "blue", "green", "orange", "purple", "sky", "yellow"))
#: Groups outside the design's levels (a status that could not be determined).
_NO_LEVEL = ("undefined", "unknown")


def group_colours(levels) -> dict[str, str]:
    """Colour of each group level, in the design's order (reference first): :data:`LEVEL_COLOURS` by
    position (a single arm: blue), grey for an undefined or unknown status."""
    levels = list(dict.fromkeys(levels))
    real = [lv for lv in levels if lv not in _NO_LEVEL]
    out = {lv: (PALETTE["blue"] if len(real) == 1 else LEVEL_COLOURS[i % len(LEVEL_COLOURS)])
           for i, lv in enumerate(real)}
    out.update({lv: PALETTE["grey"] for lv in levels if lv in _NO_LEVEL})
    return out


def group_title(level: str) -> str:
    """A group level in titles and legends: the plural of a responder study's groups
    (:data:`GROUP_TITLES`), else the level as the design names it (an arm: ``"placebo"``)."""
    return GROUP_TITLES.get(level, level)


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
