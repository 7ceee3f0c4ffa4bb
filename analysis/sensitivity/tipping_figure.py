r"""The tipping-point figure: the interval class of each key conclusion over the delta grid.

For a comparison of group :math:`g` with the reference :math:`r` the grid is two-dimensional
(:math:`\delta_r` on the x axis, :math:`\delta_g` on the y axis) and each conclusion (the reference's
change, the difference :math:`g - r`, the group's change) is a heat map of its interval's side of 0
(:mod:`analysis.sensitivity.tipping`). A single-arm study has one delta and one conclusion: the
estimate and its interval are drawn against :math:`\delta`, shaded by the class.

Used by the MI tipping points (:mod:`analysis.sensitivity.tipping`) and the Bayesian ones
(:mod:`analysis.sensitivity.bayes_delta`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.sensitivity.design import site_label
from analysis.study.estimands import GROUP_LABELS

__all__ = ["UNIT_TEXT", "ray_deltas", "tipping_heatmap"]

UNIT_TEXT = {"pct": "%/yr", "abs": "g/cm^2/yr"}


def ray_deltas(ray: str, x, reference: str, group: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(delta of the reference, delta of the compared group)`` at ``x`` along a ray from MAR: only the
    ``reference`` shifted, only the ``group`` shifted, or ``"both"`` alike (a single arm: the one
    group, its delta first)."""
    x = np.asarray(x, dtype=float)
    zero = np.zeros_like(x)
    if ray == "both":
        return x, x
    if ray == reference:
        return x, zero
    if ray == group:
        return zero, x
    raise ValueError(f"unknown ray {ray!r} (rays: {reference}, {group}, both)")


def _edges(v: np.ndarray) -> np.ndarray:
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = 0.5 * (v[1:] + v[:-1])
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _state(res: dict[str, np.ndarray]) -> np.ndarray:
    return np.where(res["ci_low"] > 0, 1, np.where(res["ci_high"] < 0, -1, 0))


def tipping_heatmap(grids: dict[tuple[str, str, str | None], dict[str, dict[str, np.ndarray]]],
                    grid_reference: np.ndarray, grid_group: np.ndarray, flips: pd.DataFrame, unit: str,
                    month: float, label: str | None, interval: str = "95% CI", estimate: str = "pooled estimate",
                    title: str = "Tipping points: delta-adjusted MI (shift of post-dropout values per year after "
                                 "the last DXA)"):
    """Heat maps of the interval class over the delta grid: one row per site and comparison.

    Parameters
    ----------
    grids : dict
        ``{(site, reference, group): {key: {"estimate" | "ci_low" | "ci_high": ndarray}}}`` with keys
        ``reference``, ``"<group> - <reference>"`` and ``group``, arrays of shape
        ``(len(grid_reference), len(grid_group))`` (``indexing="ij"``); a single arm has ``group``
        ``None``, the one key ``reference`` and arrays of shape ``(len(grid_reference),)``.
    grid_reference, grid_group : ndarray
        Deltas of the reference (x axis) and of the compared group (y axis).
    flips : DataFrame
        Tipping points with ``site, comparison, group, ray, tipping_delta`` (diamonds on their ray).
    unit : {"pct", "abs"}
    month : float
        Endpoint month (legend).
    label : str, optional
        Stamped on the figure.
    interval, estimate, title : str
        Wording of the legend and the title.

    Returns
    -------
    matplotlib.figure.Figure
        Cells coloured by the interval's side of 0, contours of the estimate, the exact class
        boundaries (a bound equal to 0), MAR at the origin.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    from analysis.figures.plots import PALETTE, stamp, style

    colours = [PALETTE["vermillion"], "#EBEBEB", PALETTE["blue"]]  # below 0 / includes 0 / above 0
    cmap, norm = ListedColormap(colours), BoundaryNorm([-1.5, -0.5, 0.5, 1.5], 3)
    rows = list(grids)
    ncol = max(1 if g is None else 3 for _, _, g in rows)
    u = UNIT_TEXT[unit]
    with style():
        fig, axes = plt.subplots(len(rows), ncol, figsize=(max(4.0 * ncol, 7.0), 3.6 * len(rows) + 0.9),
                                 squeeze=False)
        ex, ey = _edges(grid_reference), _edges(grid_group)
        for r, (site, ref, grp) in enumerate(rows):
            if grp is None:  # single arm: the estimate and its interval against delta
                ax = axes[r, 0]
                res = grids[(site, ref, grp)][ref]
                state = _state(res)
                for k, x in enumerate(grid_reference):
                    ax.axvspan(ex[k], ex[k + 1], color=colours[int(state[k]) + 1], lw=0)
                ax.fill_between(grid_reference, res["ci_low"], res["ci_high"], color=PALETTE["black"], alpha=0.15)
                ax.plot(grid_reference, res["estimate"], color=PALETTE["black"], lw=1.2)
                ax.axhline(0.0, color=PALETTE["grey"], lw=0.8)
                sub = flips[(flips["site"] == site) & flips["tipping_delta"].notna()]
                for _, f in sub.iterrows():
                    ax.axvline(float(f["tipping_delta"]), color=PALETTE["black"], lw=1.4, ls="--")
                ax.set_title(f"{site_label(site)}: {GROUP_LABELS.get(ref, ref)}, % change", fontsize=9)
                ax.set_xlabel(f"delta ({u})")
                ax.set_ylabel(f"{estimate} (%), month {month:g}")
                ax.set_xlim(ex[0], ex[-1])
                for c in range(1, ncol):
                    axes[r, c].set_visible(False)
                continue
            comparison = f"{grp} - {ref}"
            heads = {ref: f"% change, {GROUP_LABELS.get(ref, ref)}",
                     comparison: f"{GROUP_LABELS.get(grp, grp)} - {GROUP_LABELS.get(ref, ref)}",
                     grp: f"% change, {GROUP_LABELS.get(grp, grp)}"}
            for c, key in enumerate((ref, comparison, grp)):
                ax = axes[r, c]
                res = grids[(site, ref, grp)][key]
                ax.pcolormesh(ex, ey, _state(res).T, cmap=cmap, norm=norm, shading="flat")
                if grid_reference.size > 1 and grid_group.size > 1:
                    est = res["estimate"].T
                    levels = np.arange(np.floor(np.nanmin(est)), np.ceil(np.nanmax(est)) + 1.0, 1.0)
                    cs = ax.contour(grid_reference, grid_group, est, levels=levels, colors=PALETTE["black"],
                                    linewidths=0.5, alpha=0.6, linestyles="solid")
                    ax.clabel(cs, fmt="%g", fontsize=6)
                    for bound in ("ci_low", "ci_high"):  # exact boundaries: a CI bound equal to 0
                        b = res[bound].T
                        if np.nanmin(b) < 0 < np.nanmax(b):
                            ax.contour(grid_reference, grid_group, b, levels=[0.0], colors=PALETTE["black"],
                                       linewidths=1.6, linestyles="solid")
                ax.plot(0.0, 0.0, "o", mfc="white", mec=PALETTE["black"], ms=7, zorder=5)
                group_col = "difference" if key == comparison else key
                sel = (flips["site"] == site) & (flips["group"] == group_col) & flips["tipping_delta"].notna()
                if "comparison" in flips.columns:
                    sel &= flips["comparison"] == comparison
                for _, f in flips[sel].iterrows():
                    x, y = ray_deltas(f["ray"], f["tipping_delta"], ref, grp)
                    ax.plot(float(x), float(y), "D", mfc=PALETTE["yellow"], mec=PALETTE["black"], ms=6, zorder=6)
                ax.set_title(f"{site_label(site)}: {heads[key]}", fontsize=9)
                ax.set_xlabel(f"delta {GROUP_LABELS.get(ref, ref)} ({u})")
                ax.set_ylabel(f"delta {GROUP_LABELS.get(grp, grp)} ({u})")
                ax.set_xlim(ex[0], ex[-1])
                ax.set_ylim(ey[0], ey[-1])
                ax.grid(False)
        handles = [Patch(color=colours[0], label=f"{interval} below 0"),
                   Patch(color=colours[1], label=f"{interval} includes 0"),
                   Patch(color=colours[2], label=f"{interval} above 0"),
                   plt.Line2D([], [], marker="o", ls="", mfc="white", mec=PALETTE["black"], label="MAR (delta = 0)"),
                   plt.Line2D([], [], marker="D", ls="", mfc=PALETTE["yellow"], mec=PALETTE["black"],
                              label="tipping point on a ray"),
                   plt.Line2D([], [], color=PALETTE["black"], lw=1.6, label=f"where the {interval} class changes"),
                   plt.Line2D([], [], color=PALETTE["black"], lw=0.5, label=f"{estimate} (%), month {month:g}")]
        if ncol == 1:  # single arm: the estimate against delta, tipping points as dashed lines
            handles = handles[:3] + [plt.Line2D([], [], color=PALETTE["black"], lw=1.2, label=f"{estimate} and "
                                                f"{interval}"),
                                     plt.Line2D([], [], color=PALETTE["black"], lw=1.4, ls="--", label="tipping point")]
        fig.legend(handles=handles, loc="lower center", ncol=4 if ncol > 1 else 3, fontsize=7)
        fig.suptitle(title, fontsize=10)
        stamp(fig, label)
        fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    return fig
