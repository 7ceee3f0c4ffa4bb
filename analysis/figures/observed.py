"""Figures of the observed data: BMD trajectories per patient and the patients remaining at each visit,
per group of the study's design and per site.

Drawn by hand in matplotlib: arviz-plots draws posteriors and diagnostics, not raw longitudinal data.
The groups, their order and colours, and the sites come from the design the derived frame carries
(``derived.attrs["design"]``, :func:`analysis.study.clinical.derive`): responders and
non-responders for a responder study, the arms (reference first) for a trial, one group for a
single arm.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures.theme import PALETTE, group_colours, group_title, stamp, style
from analysis.study.estimands import site_label

__all__ = ["MAX_PATIENT_LINES", "plot_groups", "retention", "trajectories"]

#: The single group of a frame without groups.
_ALL = "all"

#: Patients drawn as lines per panel of :func:`trajectories`: a larger study draws a seeded random
#: sample of this many (the group means are over every patient). One line per patient of a registry
#: (50,000) costs ~1 GB of matplotlib artists per panel and draws an unreadable blot.
MAX_PATIENT_LINES = 1000


def _line_patients(d: pd.DataFrame, most: int, seed: int = 0) -> tuple[pd.DataFrame, int]:
    """The rows of the patients drawn as lines (all, or a seeded random ``most`` of them, in the
    frame's order) and the number of patients in ``d``."""
    ids = pd.unique(d["patient_id"])
    if ids.size <= most:
        return d, int(ids.size)
    keep = np.random.default_rng(seed).choice(ids.size, size=most, replace=False)
    return d[d["patient_id"].isin(ids[np.sort(keep)])], int(ids.size)


def plot_groups(derived: pd.DataFrame, group_column: str | None = None) -> tuple[str | None, list[str]]:
    """The column holding each patient's group and the groups in the design's order.

    ``group_column`` (default: ``responder_status`` for a responder study, else ``analysis_group``
    or the design's ``group`` column; ``None``: one group). The order is the design's levels,
    reference first (:func:`analysis.study.groups.group_levels`), then any other value (e.g. an
    undefined status) in sort order.
    """
    from analysis.study.groups import design_of, group_levels

    if group_column is None:
        group_column = next((c for c in ("responder_status", "analysis_group", "group") if c in derived.columns), None)
    if group_column is None:
        return None, [_ALL]
    design = design_of(derived)
    levels = [lv for lv in group_levels(derived, design)] if design is not None or group_column == "responder_status" \
        else []
    present = [str(v) for v in pd.unique(derived[group_column].dropna())]
    return group_column, [lv for lv in levels if lv in present] + sorted(v for v in present if v not in levels)


def _sites(derived: pd.DataFrame, sites) -> tuple[str, ...]:
    if sites is not None:
        return tuple(sites)
    design = derived.attrs.get("design")
    if design is not None:
        return tuple(design.sites)
    return tuple(c[len("bmd_"):] for c in derived.columns if c.startswith("bmd_"))


def trajectories(derived: pd.DataFrame, sites=None, label: str | None = None, group_column: str | None = None,
                 bands: pd.DataFrame | None = None, max_lines: int = MAX_PATIENT_LINES) -> Figure:
    """Observed % change of BMD per patient, coloured by group, dashed for dropouts, with group means.

    Parameters
    ----------
    derived : DataFrame
        The derived study data (``patient_id``, ``month``, ``completer``, ``bmd_<site>``,
        ``pct_change_<site>`` and the group column).
    sites : sequence of str, optional
        One panel per site (default: the design's sites).
    label : str, optional
        Printed on the figure (the dataset's label; SYNTHETIC for the twin).
    group_column : str, optional
        Column holding each patient's group (default: :func:`plot_groups`); colours by
        :func:`~analysis.figures.theme.group_colours` in the design's order.
    bands : DataFrame, optional
        Columns ``site, group, month, mean, low, high``: posterior mean trajectories (dotted) and
        their credible bands per group and site.
    max_lines : int
        Most patients drawn as lines per panel (:data:`MAX_PATIENT_LINES`); a panel with more draws
        a seeded random sample of them, and the title says so.

    Returns
    -------
    Figure
        One thin line per patient (solid: completer, dashed: dropout; at most ``max_lines`` per
        panel), one thick line with markers per group mean (over every patient), the bands if given.
    """
    sites = _sites(derived, sites)
    column, groups = plot_groups(derived, group_column)
    if column is None:
        derived, column = derived.assign(_group=_ALL), "_group"
    colours = group_colours(groups + ([] if bands is None else sorted(set(bands["group"]) - set(groups))))
    with style():
        fig, axes = plt.subplots(1, len(sites), figsize=(4.2 * len(sites), 3.6), squeeze=False, sharey=True)
        sampled = []
        for ax, site in zip(axes[0], sites):
            col = f"pct_change_{site}"
            d = derived[derived[f"bmd_{site}"].notna()]
            lines, n_patients = _line_patients(d, max_lines)
            if len(lines) < len(d):
                sampled.append(n_patients)
            for pid, g in lines.groupby("patient_id", sort=False):
                grp = g[column].iloc[0]
                ax.plot(g["month"], g[col], color=colours.get(grp, PALETTE["grey"]), alpha=0.45, lw=0.9,
                        ls="-" if bool(g["completer"].iloc[0]) else "--")
            for grp in groups:
                g = d[d[column] == grp]
                if g.empty:
                    continue
                m = g.groupby("month")[col].mean()
                ax.plot(m.index, m.to_numpy(), color=colours.get(grp, PALETTE["grey"]), lw=2.6,
                        marker="o", label=f"{group_title(grp)} (observed mean)")
            if bands is not None:
                for grp, b in bands[bands["site"] == site].groupby("group"):
                    c = colours.get(grp, PALETTE["grey"])
                    ax.fill_between(b["month"], b["low"], b["high"], color=c, alpha=0.18, lw=0)
                    ax.plot(b["month"], b["mean"], color=c, lw=1.8, ls=":", label=f"{group_title(grp)} (posterior)")
            ax.axhline(0, color=PALETTE["black"], lw=0.7)
            ax.set_title(site_label(site))
            ax.set_xlabel("month")
            ax.set_xticks(sorted(d["month"].unique()))
        axes[0][0].set_ylabel("BMD change from baseline (%)")
        handles, labels = axes[0][0].get_legend_handles_labels()
        handles += [plt.Line2D([], [], color=PALETTE["grey"], ls="-"), plt.Line2D([], [], color=PALETTE["grey"], ls="--")]
        labels += ["completer", "dropout"]
        fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.12))
        fig.suptitle("Observed BMD trajectories per patient" + (
            f" (lines: a random {max_lines:,} of {max(sampled):,} patients; means: all)" if sampled else ""))
        stamp(fig, label)
        fig.tight_layout()
    return fig


def retention(derived: pd.DataFrame, label: str | None = None, group_column: str | None = None) -> Figure:
    """Patients with a visit at each scheduled month, stacked by group (the dropout overview).

    Parameters
    ----------
    derived : DataFrame
        The derived study data (``patient_id``, ``month``, ``last_visit`` and the group column).
    label : str, optional
        Printed on the figure.
    group_column : str, optional
        Column holding each patient's group (default: :func:`plot_groups`).

    Returns
    -------
    Figure
        Stacked bars per month (legend: group and its number of patients, the design's last level
        at the bottom), totals above the bars.
    """
    column, groups = plot_groups(derived, group_column)
    if column is None:
        derived, column = derived.assign(_group=_ALL), "_group"
    colours = group_colours(groups)
    real = [g for g in groups if colours[g] != PALETTE["grey"]]
    order = real[::-1] + [g for g in groups if g not in real]  # a responder study: responders first, as drawn before
    with style():
        fig, ax = plt.subplots(figsize=(5.0, 3.4))
        months = np.sort(derived["month"].unique())
        per = derived.drop_duplicates("patient_id")
        x = np.arange(months.size)
        bottom = np.zeros(months.size)
        for grp in order:
            g = per[per[column] == grp]
            if g.empty:
                continue
            counts = np.array([(g["last_visit"] >= m).sum() for m in months], dtype=float)
            ax.bar(x, counts, bottom=bottom, color=colours.get(grp, PALETTE["grey"]), width=0.6,
                   label=f"{group_title(grp)} (n = {len(g)})")
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
