"""Figures of the observed data: BMD trajectories per patient and the patients remaining at each visit.

Drawn by hand in matplotlib: arviz-plots draws posteriors and diagnostics, not raw longitudinal data.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures.theme import GROUP_COLOURS, GROUP_TITLES, PALETTE, stamp, style
from analysis.study.estimands import SITE_LABELS

__all__ = ["trajectories", "retention"]


def trajectories(derived: pd.DataFrame, sites=("spine", "femoral_neck"), label: str | None = None,
                 group_column: str = "responder_status", bands: pd.DataFrame | None = None) -> Figure:
    """Observed % change of BMD per patient, coloured by group, dashed for dropouts, with group means.

    Parameters
    ----------
    derived : DataFrame
        The derived study data (``patient_id``, ``month``, ``completer``, ``bmd_<site>``,
        ``pct_change_<site>`` and ``group_column``).
    sites : sequence of str
        One panel per site.
    label : str, optional
        Printed on the figure (the dataset's label; SYNTHETIC for the twin).
    group_column : str
        Column holding each patient's group (colours: :data:`GROUP_COLOURS`).
    bands : DataFrame, optional
        Columns ``site, group, month, mean, low, high``: posterior mean trajectories (dotted) and
        their credible bands per group and site.

    Returns
    -------
    Figure
        One thin line per patient (solid: completer, dashed: dropout), one thick line with markers
        per group mean, the bands if given.
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
        stamp(fig, label)
        fig.tight_layout()
    return fig


def retention(derived: pd.DataFrame, label: str | None = None, group_column: str = "responder_status") -> Figure:
    """Patients with a visit at each scheduled month, stacked by responder status (the dropout overview).

    Parameters
    ----------
    derived : DataFrame
        The derived study data (``patient_id``, ``month``, ``last_visit`` and ``group_column``).
    label : str, optional
        Printed on the figure.
    group_column : str
        Column holding each patient's group.

    Returns
    -------
    Figure
        Stacked bars per month (legend: group and its number of patients), totals above the bars.
    """
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
        stamp(fig, label)
        fig.tight_layout()
    return fig
