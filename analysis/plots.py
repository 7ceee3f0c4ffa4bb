"""Figures, in one consistent colour-blind-safe style (Okabe-Ito palette), written as PNG and SVG.

Every figure function returns a :class:`matplotlib.figure.Figure` and takes an optional ``label``
that is printed on the figure (the synthetic twin is always labelled SYNTHETIC).
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; figures are written to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.estimands import SITE_LABELS  # noqa: E402
from analysis.io import atomic_write_bytes  # noqa: E402

__all__ = ["PALETTE", "GROUP_COLOURS", "style", "save_figure", "figure_png_bytes", "trajectories",
           "retention"]

# Okabe & Ito (2008) colour-blind-safe palette
PALETTE = {"orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
           "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "black": "#000000",
           "grey": "#999999"}
GROUP_COLOURS = {"responder": PALETTE["blue"], "non-responder": PALETTE["vermillion"],
                 "undefined": PALETTE["grey"], "unknown": PALETTE["grey"]}
GROUP_TITLES = {"responder": "responders", "non-responder": "non-responders", "undefined": "status undefined",
                "unknown": "status unknown"}

_RC = {
    "figure.dpi": 100, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
    "legend.frameon": False, "svg.hashsalt": "rajak", "svg.fonttype": "none",
}


def style():
    """Context manager applying rajak's matplotlib style."""
    return plt.rc_context(_RC)


def _stamp(fig: Figure, label: str | None) -> None:
    if label:
        colour = PALETTE["vermillion"] if "SYNTHETIC" in label.upper() else PALETTE["grey"]
        fig.text(0.995, 0.995, label, ha="right", va="top", fontsize=7, color=colour, weight="bold")


def figure_png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (for embedding)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig: Figure, directory: str | Path, name: str) -> dict[str, Path]:
    """Write ``name.png`` and ``name.svg`` atomically; returns the paths."""
    out: dict[str, Path] = {}
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        out[fmt] = atomic_write_bytes(Path(directory) / f"{name}.{fmt}", buf.getvalue())
    plt.close(fig)
    return out


def trajectories(derived: pd.DataFrame, sites=("spine", "femoral_neck"), label: str | None = None,
                 group_column: str = "responder_status", bands: pd.DataFrame | None = None) -> Figure:
    """Observed % change of BMD per patient, coloured by group, dashed for dropouts, with group means.

    ``bands`` (optional; columns ``site, group, month, mean, low, high``) adds posterior mean
    trajectories and their credible bands per group and site.
    """
    with style():
        fig, axes = plt.subplots(1, len(sites), figsize=(4.2 * len(sites), 3.6), squeeze=False, sharey=True)
        for ax, site in zip(axes[0], sites):
            col = f"pct_change_{site}"
            d = derived[derived[f"bmd_{site}"].notna()]
            for pid, g in d.groupby("patient_id", sort=False):
                grp = g[group_column].iloc[0]
                ax.plot(g["month"], g[col], color=GROUP_COLOURS.get(grp, PALETTE["grey"]), alpha=0.45, lw=0.9,
                        ls="-" if bool(g["completer"].iloc[0]) else "--")
            for grp, g in d.groupby(group_column):
                m = g.groupby("month")[col].mean()
                ax.plot(m.index, m.to_numpy(), color=GROUP_COLOURS.get(grp, PALETTE["grey"]), lw=2.6,
                        marker="o", label=f"{GROUP_TITLES.get(grp, grp)} (observed mean)")
            if bands is not None:
                for grp, b in bands[bands["site"] == site].groupby("group"):
                    c = GROUP_COLOURS.get(grp, PALETTE["grey"])
                    ax.fill_between(b["month"], b["low"], b["high"], color=c, alpha=0.18, lw=0)
                    ax.plot(b["month"], b["mean"], color=c, lw=1.8, ls=":", label=f"{GROUP_TITLES.get(grp, grp)} (posterior)")
            ax.axhline(0, color=PALETTE["black"], lw=0.7)
            ax.set_title(SITE_LABELS.get(site, site))
            ax.set_xlabel("month")
            ax.set_xticks(sorted(d["month"].unique()))
        axes[0][0].set_ylabel("BMD change from baseline (%)")
        handles, labels = axes[0][0].get_legend_handles_labels()
        handles += [plt.Line2D([], [], color=PALETTE["grey"], ls="-"), plt.Line2D([], [], color=PALETTE["grey"], ls="--")]
        labels += ["completer", "dropout"]
        fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.12))
        fig.suptitle("Observed BMD trajectories per patient")
        _stamp(fig, label)
        fig.tight_layout()
    return fig


def retention(derived: pd.DataFrame, label: str | None = None, group_column: str = "responder_status") -> Figure:
    """Patients with a visit at each scheduled month, stacked by responder status (the dropout
    overview); totals printed above the bars."""
    with style():
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        months = np.sort(derived["month"].unique())
        per = derived.drop_duplicates("patient_id")
        x = np.arange(months.size)
        bottom = np.zeros(months.size)
        for grp in ["responder", "non-responder", "unknown", "undefined"]:
            g = per[per[group_column] == grp]
            if g.empty:
                continue
            counts = np.array([(g["last_visit"] >= m).sum() for m in months], dtype=float)
            ax.bar(x, counts, bottom=bottom, color=GROUP_COLOURS.get(grp, PALETTE["grey"]), width=0.6,
                   label=f"{GROUP_TITLES.get(grp, grp)} (n = {len(g)})")
            bottom += counts
        for xi, total in zip(x, bottom):
            ax.text(xi, total + 0.5, f"{int(total)}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, [f"{m:g}" for m in months])
        ax.set_xlabel("month")
        ax.set_ylabel("patients with a visit")
        ax.set_ylim(0, bottom.max() * 1.15)
        ax.set_title("Patients remaining at each visit")
        ax.legend(loc="upper right", fontsize=8)
        _stamp(fig, label)
        fig.tight_layout()
    return fig
