"""Figures, in one consistent colour-blind-safe style (Okabe-Ito palette), written as PNG and SVG.

Every figure function returns a :class:`matplotlib.figure.Figure` and takes an optional ``label``
that is printed on the figure (the synthetic twin is always labelled SYNTHETIC).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; figures are written to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.study.estimands import SITE_LABELS  # noqa: E402
from analysis.common.io import atomic_write_bytes  # noqa: E402

__all__ = ["PALETTE", "GROUP_COLOURS", "FIGURE_FORMATS", "RANK_VARS", "DeferredFigure", "style", "stamp", "save_figure",
           "figure_png_bytes", "trajectories", "retention", "ppc_change", "contrast_posteriors", "prior_posterior", "forest", "rank_plot"]

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


def stamp(fig: Figure, label: str | None) -> None:
    if label:
        colour = PALETTE["vermillion"] if "SYNTHETIC" in label.upper() else PALETTE["grey"]
        fig.text(0.995, 0.995, label, ha="right", va="top", fontsize=7, color=colour, weight="bold")


#: The files :func:`save_figure` writes per figure.
FIGURE_FORMATS = ("png", "svg")

#: Parameters shown in the rank plots (those the model has).
RANK_VARS = ("b", "sigma", "sd_patient")


def figure_png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (for embedding), in rajak's style as :func:`save_figure` writes it."""
    buf = io.BytesIO()
    with style():
        fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


@dataclass(frozen=True)
class DeferredFigure:
    """A figure to be drawn later: ``make(*args, **kwargs)`` returns it.

    For figures whose construction is itself costly (``rank_plot`` computes rank ECDFs over every
    draw): :class:`analysis.report.figure_writer.FigureWriter` builds them in its worker process, and
    :func:`save_figure` builds them on the spot. ``make`` must be importable (a module-level
    function) and the arguments picklable.
    """

    make: Callable[..., Figure]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def build(self) -> Figure:
        return self.make(*self.args, **self.kwargs)


def save_figure(fig: Figure | DeferredFigure, directory: str | Path, name: str) -> dict[str, Path]:
    """Write ``name.png`` and ``name.svg`` atomically, in rajak's style (150 dpi PNG; SVG with
    its text as text); returns the paths. A :class:`DeferredFigure` is built first."""
    if isinstance(fig, DeferredFigure):
        fig = fig.build()
    out: dict[str, Path] = {}
    with style():
        for fmt in FIGURE_FORMATS:
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
        stamp(fig, label)
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
        stamp(fig, label)
        fig.tight_layout()
    return fig


def ppc_change(prepared, y_rep: np.ndarray, site: str, month: float = 12, n_lines: int = 60,
               label: str | None = None, seed: int = 0) -> Figure:
    """Posterior predictive check: the observed distribution (ECDF) of each patient's % change to
    ``month`` against replicated data sets, per group.

    ``prepared`` is the model's :class:`models.trajectory.PreparedData`; ``y_rep`` has shape
    (chain, draw, obs).
    """
    rep = y_rep.reshape(-1, y_rep.shape[-1])
    rng = np.random.default_rng(seed)
    pick = rng.choice(rep.shape[0], size=min(n_lines, rep.shape[0]), replace=False)
    pid = prepared.patient_idx
    base_rows = np.flatnonzero(prepared.months == 0)
    end_rows = np.flatnonzero(prepared.months == month)
    base_of = dict(zip(pid[base_rows], base_rows))
    pairs = [(base_of[pid[e]], e) for e in end_rows if pid[e] in base_of]
    b_idx = np.array([p[0] for p in pairs], dtype=int)
    e_idx = np.array([p[1] for p in pairs], dtype=int)
    grp = prepared.responder[pid[e_idx]]
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), sharex=True, sharey=True)
        for ax, (g, flag) in zip(axes, (("non-responder", 0.0), ("responder", 1.0))):
            sel = grp == flag
            if not sel.any():
                ax.set_title(f"{GROUP_TITLES[g]}: no patient at month {month:g}")
                continue
            colour = GROUP_COLOURS[g]
            for i in pick:
                x = 100 * (rep[i, e_idx[sel]] - rep[i, b_idx[sel]]) / rep[i, b_idx[sel]]
                xs = np.sort(x)
                ax.step(xs, np.arange(1, xs.size + 1) / xs.size, color=colour, alpha=0.12, lw=0.8, where="post")
            obs = np.sort(100 * (prepared.y[e_idx[sel]] - prepared.y[b_idx[sel]]) / prepared.y[b_idx[sel]])
            ax.step(obs, np.arange(1, obs.size + 1) / obs.size, color=PALETTE["black"], lw=2, where="post",
                    label="observed")
            ax.set_title(f"{GROUP_TITLES[g]} (n = {int(sel.sum())})")
            ax.set_xlabel(f"BMD change to month {month:g} (%)")
        axes[0].set_ylabel("ECDF")
        axes[0].legend(loc="upper left")
        fig.suptitle(f"Posterior predictive check, {SITE_LABELS.get(site, site)}: observed (black) vs "
                     f"{pick.size} replicated data sets")
        stamp(fig, label)
        fig.tight_layout()
    return fig


def contrast_posteriors(items, label: str | None = None) -> Figure:
    """Posterior densities of estimands (``EstimandDraws``) with their ROPE shaded and the 95% HDI."""
    from arviz_stats.base import array_stats

    n = len(items)
    with style():
        fig, axes = plt.subplots(n, 1, figsize=(6.0, 1.5 * n + 0.6), squeeze=False)
        for ax, it in zip(axes[:, 0], items):
            grid, pdf, _ = array_stats.kde(np.asarray(it.draws, dtype=float), grid_len=512)
            ax.plot(grid, pdf, color=PALETTE["blue"], lw=1.6)
            ax.fill_between(grid, pdf, color=PALETTE["blue"], alpha=0.15, lw=0)
            if it.rope is not None:
                ax.axvspan(-it.rope, it.rope, color=PALETTE["grey"], alpha=0.25, lw=0, label="ROPE")
            lo, hi = array_stats.hdi(np.asarray(it.draws, dtype=float), 0.95)
            ax.hlines(0, lo, hi, color=PALETTE["black"], lw=3, label="95% HDI")
            ax.axvline(0, color=PALETTE["vermillion"], lw=0.8)
            ax.set_yticks([])
            ax.set_title(f"{it.estimand} [{it.model}]", fontsize=8, loc="left")
        axes[0, 0].legend(loc="upper right", fontsize=7)
        stamp(fig, label)
        fig.tight_layout()
    return fig


def _density_window(prior: np.ndarray, posterior: np.ndarray, prior_mass: float = 0.95) -> tuple[float, float]:
    """x-range holding the central ``prior_mass`` of the prior and all but 0.1% of the posterior."""
    tail = (1.0 - prior_mass) / 2.0
    lo = min(np.quantile(prior, tail), np.quantile(posterior, 0.0005))
    hi = max(np.quantile(prior, 1.0 - tail), np.quantile(posterior, 0.9995))
    return float(lo), float(hi)


def prior_posterior(panels, title: str | None = None, label: str | None = None, ncols: int = 2) -> Figure:
    """Prior density (dashed, orange) and posterior density (solid, blue) of each quantity.

    Parameters
    ----------
    panels : sequence of (str, array, array)
        ``(panel title, prior draws, posterior draws)`` per quantity; the draws are flattened.
    title : str, optional
        Figure title.
    label : str, optional
        Printed on the figure (e.g. the dataset's SYNTHETIC label).
    ncols : int
        Panels per row.

    Returns
    -------
    Figure
        One axis per panel with two lines labelled ``"prior"`` and ``"posterior"`` (their data are
        the plotted densities). Both densities are on the same scale and integrate to 1 over the
        real line; the x-range shows the central 95% of the prior and 99.9% of the posterior (the
        prior density is estimated from its draws inside that range and scaled by their share, so
        heavy prior tails do not blur it). Each panel states both central 95% intervals.

    Raises
    ------
    ValueError
        If there is no panel or a panel has fewer than 10 finite draws of either kind.
    """
    from arviz_stats.base import array_stats

    panels = list(panels)
    if not panels:
        raise ValueError("prior_posterior needs at least one panel")
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows + 0.5), squeeze=False)
        for ax in axes.ravel()[len(panels):]:
            ax.set_visible(False)
        for ax, (name, prior, post) in zip(axes.ravel(), panels):
            prior = np.asarray(prior, dtype=float).ravel()
            post = np.asarray(post, dtype=float).ravel()
            prior, post = prior[np.isfinite(prior)], post[np.isfinite(post)]
            if prior.size < 10 or post.size < 10:
                raise ValueError(f"panel {name!r}: need at least 10 finite prior and posterior draws")
            lo, hi = _density_window(prior, post)
            inside = prior[(prior >= lo) & (prior <= hi)]
            g_prior, d_prior, _ = array_stats.kde(inside, grid_len=512)
            d_prior = d_prior * inside.size / prior.size
            g_post, d_post, _ = array_stats.kde(post, grid_len=512, bound_correction=False, extend=True,
                                             extend_fct=0.5)
            ax.plot(g_prior, d_prior, color=PALETTE["orange"], lw=1.6, ls="--", label="prior")
            ax.fill_between(g_prior, d_prior, color=PALETTE["orange"], alpha=0.12, lw=0)
            ax.plot(g_post, d_post, color=PALETTE["blue"], lw=1.6, label="posterior")
            ax.fill_between(g_post, d_post, color=PALETTE["blue"], alpha=0.18, lw=0)
            ax.axvline(0, color=PALETTE["black"], lw=0.7)
            ax.set_xlim(lo, hi)
            ax.set_yticks([])
            ax.set_title(name, fontsize=8, loc="left")
            q_pr, q_po = np.quantile(prior, [0.025, 0.975]), np.quantile(post, [0.025, 0.975])
            ax.text(0.99, 0.97, f"95%: prior [{q_pr[0]:.3g}, {q_pr[1]:.3g}]\nposterior [{q_po[0]:.3g}, {q_po[1]:.3g}]",
                    transform=ax.transAxes, ha="right", va="top", fontsize=7)
        axes[0, 0].legend(loc="upper left", fontsize=7)
        if title:
            fig.suptitle(title)
        stamp(fig, label)
        fig.tight_layout()
    return fig


def forest(rows: pd.DataFrame, title: str, label: str | None = None) -> Figure:
    """Forest plot: one row per analysis with ``label, estimate, low, high`` (and optional ``kind``
    'frequentist'/'bayesian' for the marker), top to bottom in the order given."""
    import textwrap

    longest = max((len(str(x)) for x in rows["label"]), default=10)
    width = 4.5 + 0.075 * min(longest, 90)
    with style():
        fig, ax = plt.subplots(figsize=(width, 0.38 * len(rows) + 1.4))
        y = np.arange(len(rows))[::-1]
        for yi, (_, r) in zip(y, rows.iterrows()):
            freq = r.get("kind", "bayesian") == "frequentist"
            c = PALETTE["vermillion"] if freq else PALETTE["blue"]
            ax.hlines(yi, r["low"], r["high"], color=c, lw=2)
            ax.plot(r["estimate"], yi, "s" if freq else "o", color=c, ms=6)
        ax.axvline(0, color=PALETTE["black"], lw=0.8)
        ax.set_yticks(y, rows["label"].tolist())
        ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)
        ax.set_xlabel("estimate with 95% interval (squares: frequentist CI; dots: Bayesian CrI)")
        stamp(fig, label)
        fig.tight_layout()
        fig.subplots_adjust(left=max(0.1, 1 - 4.2 / width))
    return fig


def rank_plot(fit, var_names=RANK_VARS, label: str | None = None) -> Figure:
    """Fractional-rank ECDF plots per chain (arviz-plots' ``plot_rank``) of the main parameters: chains
    that mix well stay inside the simultaneous envelope. ``fit`` is a fit (with a ``posterior``
    DataTree) or the DataTree itself."""
    import arviz_plots as azp

    import xarray as xr

    dt = fit if isinstance(fit, xr.DataTree) else fit.posterior  # (a DataTree has .posterior too)
    names = [v for v in var_names if v in dt["posterior"].data_vars]
    with style():
        pc = azp.plot_rank(dt, var_names=names, backend="matplotlib")
        fig = pc.viz.ds["figure"].item()
        stamp(fig, label)
    return fig
