"""Figures of posteriors: estimand densities with HDI and ROPE, prior against posterior, posterior
predictive checks (all three drawn by arviz-plots) and the forest plot of estimates across analyses
(drawn by hand).

arviz-plots takes draws as an ``xarray.DataTree`` with ``chain`` and ``draw`` dimensions; the
``*_tree`` functions here build one from what rajak holds (:class:`~analysis.bayes.posterior.EstimandDraws`,
flat prior and posterior draws, replicated data sets), so that a figure's content can be checked
against the same data.

:func:`forest` stays hand-drawn: ``arviz_plots.plot_forest`` lays its rows out from posterior draws
(it accepts precomputed intervals only for variables of such a DataTree), while rajak's forest sets
frequentist estimates with confidence intervals, which have no draws, beside Bayesian medians with
credible intervals from result tables.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from analysis.figures.output import figure_of
from analysis.figures.theme import PALETTE, group_colours, group_title, stamp, style
from analysis.study.estimands import site_label

__all__ = ["CI_PROB", "PPC_DRAWS", "estimand_tree", "contrast_posteriors", "prior_posterior_tree", "prior_posterior",
           "ppc_posterior", "ppc_change_tree", "ppc_change", "forest"]

#: Probability mass of the credible intervals drawn.
CI_PROB = 0.95


def _sample_dims(x: np.ndarray) -> tuple[tuple[str, str], np.ndarray]:
    return ("chain", "draw"), np.asarray(x, dtype=float).reshape(1, -1)


def _titled(values: Sequence[np.ndarray], titles: Sequence[str], prefix: str) -> xr.Dataset:
    """One ``(chain, draw)`` variable per array, named ``<prefix><i>`` (titles may repeat and hold
    "/", which DataTree variable names may not) with its title as the attribute ``title``."""
    ds = xr.Dataset({f"{prefix}{i}": _sample_dims(v) for i, v in enumerate(values)})
    for i, title in enumerate(titles):
        ds[f"{prefix}{i}"].attrs["title"] = title
    return ds


def _labeller(ds: xr.Dataset) -> Any:
    """arviz labeller printing each variable's ``title`` attribute instead of its name."""
    from arviz_base.labels import MapLabeller

    return MapLabeller(var_name_map={name: da.attrs.get("title", name) for name, da in ds.data_vars.items()})


def _panel_axes(pc: Any) -> dict[str, Any]:
    """Variable name -> its matplotlib axes in a PlotCollection faceted by variable."""
    plots = pc.viz["plot"]
    return {str(name): plots[name].item() for name in plots.data_vars}


def _hide_unused_axes(fig: Figure, used) -> None:
    for ax in fig.axes:
        if ax not in used:
            ax.set_visible(False)


# ---------------------------------------------------------------------------------------------
# estimand densities
# ---------------------------------------------------------------------------------------------


def estimand_tree(items) -> xr.DataTree:
    """A ``posterior`` DataTree with one variable per estimand.

    Parameters
    ----------
    items : sequence of EstimandDraws
        Estimands with their flat draws (the same number each).

    Returns
    -------
    xarray.DataTree
        Group ``posterior`` with variables ``e0``, ``e1``, ... in the order given, each with dims
        ``(chain, draw)`` (one chain) and the attribute ``title`` = ``"<estimand> [<model>]"``.

    Raises
    ------
    ValueError
        If there is no item or the items have different numbers of draws.
    """
    items = list(items)
    if not items:
        raise ValueError("need at least one estimand")
    sizes = {np.asarray(it.draws).size for it in items}
    if len(sizes) != 1:
        raise ValueError(f"the estimands have different numbers of draws: {sorted(sizes)}")
    return xr.DataTree.from_dict({"posterior": _titled([it.draws for it in items],
                                                       [f"{it.estimand} [{it.model}]" for it in items], "e")})


def contrast_posteriors(items, label: str | None = None) -> Figure:
    """Posterior densities of estimands with their 95% HDI, median and ROPE (arviz-plots' ``plot_dist``).

    Parameters
    ----------
    items : sequence of EstimandDraws
        One panel each, titled ``"<estimand> [<model>]"``; ``rope`` (a half-width) shades
        ``[-rope, rope]`` and prints the share of the posterior inside it.
    label : str, optional
        Printed on the figure (the dataset's label).

    Returns
    -------
    Figure
        Per panel: the KDE (blue, filled), the 95% HDI as a thick black line labelled
        ``"95% HDI"``, the median, the ROPE band labelled ``"ROPE"`` and a vermillion line at 0.
    """
    import arviz_plots as azp

    items = list(items)
    dt = estimand_tree(items)
    names = list(dt["posterior"].data_vars)
    ropes = {name: (-float(it.rope), float(it.rope)) for name, it in zip(names, items) if it.rope is not None}
    with style():
        pc = azp.plot_dist(
            dt, backend="matplotlib", kind="kde", ci_kind="hdi", ci_prob=CI_PROB, point_estimate="median",
            rope=ropes or None, cols=["__variable__"], col_wrap=1, labeller=_labeller(dt["posterior"].to_dataset()),
            figure_kwargs={"figsize": (6.0, 1.5 * len(items) + 0.6)},
            visuals={"dist": {"color": PALETTE["blue"], "width": 1.6},
                     "face": {"color": PALETTE["blue"], "alpha": 0.15},
                     "credible_interval": {"color": PALETTE["black"], "width": 3, "label": f"{CI_PROB:.0%} HDI"},
                     "point_estimate": {"color": PALETTE["black"]},
                     "point_estimate_text": {"color": PALETTE["black"], "size": 7},
                     "rope": {"color": PALETTE["grey"], "alpha": 0.25, "label": "ROPE"},
                     "rope_text": {"color": PALETTE["black"], "size": 7},
                     "title": {"size": 8, "loc": "left"}},
            stats={"rope": {"ci_prob": 1}})  # the share of the whole posterior in the ROPE, as the tables
        fig = figure_of(pc)
        axes = _panel_axes(pc)
        for name in names:
            axes[name].axvline(0, color=PALETTE["vermillion"], lw=0.8)
        axes[names[0]].legend(loc="upper right", fontsize=7)
        stamp(fig, label)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# prior against posterior
# ---------------------------------------------------------------------------------------------


def _density_window(prior: np.ndarray, posterior: np.ndarray, prior_mass: float = 0.95) -> tuple[float, float]:
    """x-range holding the central ``prior_mass`` of the prior and all but 0.1% of the posterior."""
    tail = (1.0 - prior_mass) / 2.0
    lo = min(np.quantile(prior, tail), np.quantile(posterior, 0.0005))
    hi = max(np.quantile(prior, 1.0 - tail), np.quantile(posterior, 0.9995))
    return float(lo), float(hi)


def _finite_panels(panels) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for name, prior, post in panels:
        prior = np.asarray(prior, dtype=float).ravel()
        post = np.asarray(post, dtype=float).ravel()
        prior, post = prior[np.isfinite(prior)], post[np.isfinite(post)]
        if prior.size < 10 or post.size < 10:
            raise ValueError(f"panel {name!r}: need at least 10 finite prior and posterior draws")
        out.append((str(name), prior, post))
    if not out:
        raise ValueError("prior_posterior needs at least one panel")
    return out


def prior_posterior_tree(panels) -> xr.DataTree:
    """``prior`` and ``posterior`` groups with one variable per panel.

    Parameters
    ----------
    panels : sequence of (str, array, array)
        ``(panel title, prior draws, posterior draws)``; the draws are flattened.

    Returns
    -------
    xarray.DataTree
        Variables ``p0``, ``p1``, ... in the order given, with the attribute ``title``: the finite
        draws (NaN-padded to a common length), dims ``(chain, draw)`` with one chain.

    Raises
    ------
    ValueError
        If there is no panel or a panel has fewer than 10 finite draws of either kind.
    """
    panels = _finite_panels(panels)
    n = max(max(pr.size, po.size) for _, pr, po in panels)
    titles = [title for title, _, _ in panels]

    def pad(x):
        return np.concatenate([x, np.full(n - x.size, np.nan)])

    return xr.DataTree.from_dict({"prior": _titled([pad(pr) for _, pr, _ in panels], titles, "p"),
                                  "posterior": _titled([pad(po) for _, _, po in panels], titles, "p")})


def _prior_posterior_densities(panels, names) -> tuple[xr.Dataset, dict[str, tuple[float, float]]]:
    """The densities drawn (arviz-plots' precomputed-``dist`` layout) and each panel's x-range."""
    from arviz_stats.base import array_stats

    dens, windows = {}, {}
    for name, (_, prior, post) in zip(names, panels):
        lo, hi = _density_window(prior, post)
        inside = prior[(prior >= lo) & (prior <= hi)]
        g_prior, d_prior, _ = array_stats.kde(inside, grid_len=512)
        d_prior = d_prior * inside.size / prior.size
        g_post, d_post, _ = array_stats.kde(post, grid_len=512, bound_correction=False, extend=True,
                                            extend_fct=0.5)
        dens[name] = (("plot_axis", "group", "kde_dim"),
                      np.stack([np.stack([g_prior, g_post]), np.stack([d_prior, d_post])]))
        windows[name] = (lo, hi)
    ds = xr.Dataset(dens, coords={"plot_axis": ["x", "y"], "group": ["prior", "posterior"]})
    for var in ds.data_vars:
        ds[var].attrs["kind"] = "kde"
    return ds, windows


def prior_posterior(panels, title: str | None = None, label: str | None = None, ncols: int = 2) -> Figure:
    """Prior density (dashed, orange) and posterior density (solid, blue) of each quantity
    (arviz-plots' ``plot_prior_posterior``).

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
        heavy prior tails do not blur it; arviz-plots draws these densities as given). Each panel
        states both central 95% intervals.

    Raises
    ------
    ValueError
        If there is no panel or a panel has fewer than 10 finite draws of either kind.
    """
    import arviz_plots as azp

    panels = _finite_panels(panels)
    dt = prior_posterior_tree(panels)
    names = list(dt["posterior"].data_vars)
    density, windows = _prior_posterior_densities(panels, names)
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    with style():
        pc = azp.plot_prior_posterior(
            dt, backend="matplotlib", kind="kde", stats={"dist": density}, col_wrap=ncols,
            labeller=_labeller(dt["posterior"].to_dataset()),
            aes={"color": ["group"], "linestyle": ["group"]}, color=[PALETTE["orange"], PALETTE["blue"]],
            linestyle=["--", "-"], figure_kwargs={"figsize": (4.2 * ncols, 2.6 * nrows + 0.5)},
            visuals={"dist": {"width": 1.6}, "face": {"alpha": 0.15}, "title": {"size": 8, "loc": "left"}})
        fig = figure_of(pc)
        for legend in pc.viz["legend"].to_dataset().data_vars.values():  # a figure legend: one per axis instead
            legend.item().remove()
        axes = _panel_axes(pc)
        _hide_unused_axes(fig, set(axes.values()))
        for name, (_, prior, post) in zip(names, panels):
            ax = axes[name]
            for group in ("prior", "posterior"):
                pc.viz["dist"][name].sel(group=group).item().set_label(group)
            ax.axvline(0, color=PALETTE["black"], lw=0.7)
            ax.set_xlim(*windows[name])
            q_pr, q_po = np.quantile(prior, [0.025, 0.975]), np.quantile(post, [0.025, 0.975])
            ax.text(0.99, 0.97, f"95%: prior [{q_pr[0]:.3g}, {q_pr[1]:.3g}]\nposterior [{q_po[0]:.3g}, {q_po[1]:.3g}]",
                    transform=ax.transAxes, ha="right", va="top", fontsize=7)
        axes[names[0]].legend(loc="upper left", fontsize=7)
        if title:
            fig.suptitle(title)
        stamp(fig, label)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# posterior predictive check
# ---------------------------------------------------------------------------------------------


def _patient_levels(prepared) -> tuple[tuple[str, ...], np.ndarray]:
    """The model's group levels (reference first) and each patient's level index: from
    ``levels``/``group_x`` (:class:`models.trajectory.PreparedData`), or a 0/1 ``responder`` (the
    levels of a responder study)."""
    from models.trajectory_data import GROUP_NAMES

    levels = tuple(getattr(prepared, "levels", GROUP_NAMES))
    gx = getattr(prepared, "group_x", None)
    if gx is None:
        return levels, np.asarray(prepared.responder, dtype=float).astype(int)
    gx = np.asarray(gx, dtype=float).reshape(len(gx), -1)
    idx = np.where(gx.sum(axis=1) > 0, gx.argmax(axis=1) + 1, 0) if gx.shape[1] else np.zeros(len(gx), int)
    return levels, idx.astype(int)


#: How far (months) a scan may lie from the endpoint and still count as the endpoint visit in the PPC.
ENDPOINT_WINDOW_MONTHS = 1.5


#: Posterior draws replicated for the posterior predictive check (the figure's replicated data sets).
PPC_DRAWS = 60


def ppc_posterior(post: Any, draws: int = PPC_DRAWS, seed: int = 0) -> Any:
    """The posterior thinned to the draws a posterior predictive check replicates.

    Parameters
    ----------
    post : xarray.Dataset
        A posterior (dims ``chain``, ``draw``, ...); its attributes are kept (a large fit's
        ``rajak_per_patient`` and effects seed, :mod:`models.trajectory_patients`).
    draws : int
        Draws kept: a seeded random choice without replacement among all chains' draws, in their
        order; a posterior of at most ``draws`` draws is returned as it is.
    seed : int
        Seed of the choice.

    Returns
    -------
    xarray.Dataset
        One chain of ``min(draws, chains x draws)`` draws, so that the replicates cost
        ``draws x observations`` whatever the number of posterior draws.
    """
    n_chain, n_draw = int(post.sizes["chain"]), int(post.sizes["draw"])
    if n_chain * n_draw <= draws:
        return post
    pick = np.sort(np.random.default_rng(seed).choice(n_chain * n_draw, size=draws, replace=False))
    chain, draw = np.divmod(pick, n_draw)
    thin = post.isel(chain=xr.DataArray(chain, dims="_ppc"), draw=xr.DataArray(draw, dims="_ppc"))
    thin = thin.drop_vars([c for c in ("chain", "draw") if c in thin.coords])
    thin = thin.rename({"_ppc": "draw"}).expand_dims(chain=1)
    thin = thin.assign_coords(chain=[0], draw=np.arange(draws)).transpose("chain", "draw", ...)
    thin.attrs = dict(post.attrs)
    return thin



def ppc_change_tree(prepared, y_rep: np.ndarray, month: float | None = None, n_lines: int = 60,
                    seed: int = 0) -> xr.DataTree:
    """Observed and replicated % change of BMD to ``month`` per patient, as arviz-plots' PPC layout.

    Parameters
    ----------
    prepared : PreparedData
        The model's data (:class:`models.trajectory.PreparedData`): ``patient_idx``, ``months``,
        ``y`` and the patients' groups (``levels`` and ``group_x``, or a 0/1 ``responder``).
    y_rep : ndarray
        Replicated observations, shape (chain, draw, obs).
    month : float, optional
        Visit of the change from baseline (default: the last visit in the data; pass the
        design's endpoint).
    n_lines : int
        Replicated data sets kept (drawn at random without replacement).
    seed : int
        Seed of that choice.

    Returns
    -------
    xarray.DataTree
        ``posterior_predictive`` and ``observed_data`` groups with variable ``pct_change``; its
        ``patient`` coordinate is the patient's group title with its number of patients (e.g.
        ``"responders (n = 12)"``, ``"placebo (n = 40)"``), so that arviz-plots facets by group.
    """
    month = float(np.max(prepared.months)) if month is None else float(month)
    rep = y_rep.reshape(-1, y_rep.shape[-1])
    rng = np.random.default_rng(seed)
    pick = rng.choice(rep.shape[0], size=min(n_lines, rep.shape[0]), replace=False)
    pid = prepared.patient_idx
    months = np.asarray(prepared.months, dtype=float)
    base_rows = np.flatnonzero(months == 0)
    # scans at actual times (day 350-380 for a month-12 visit): each patient's scan nearest the
    # endpoint, within a window of +-1.5 months around it
    near = np.flatnonzero(np.abs(months - month) <= ENDPOINT_WINDOW_MONTHS)
    best: dict[int, int] = {}
    for r in near:
        if pid[r] not in best or abs(months[r] - month) < abs(months[best[pid[r]]] - month):
            best[pid[r]] = r
    end_rows = np.array(sorted(best.values()), dtype=int)
    base_of = dict(zip(pid[base_rows], base_rows))
    pairs = [(base_of[pid[e]], e) for e in end_rows if pid[e] in base_of]
    b_idx = np.array([p[0] for p in pairs], dtype=int)
    e_idx = np.array([p[1] for p in pairs], dtype=int)
    levels, of_patient = _patient_levels(prepared)
    group = np.asarray(levels, dtype=object)[of_patient[pid[e_idx]]] if len(e_idx) else np.array([], dtype=object)
    counts = {g: int((group == g).sum()) for g in levels}
    coord = [f"{group_title(g)} (n = {counts[g]})" for g in group]
    replicated = 100 * (rep[pick][:, e_idx] - rep[pick][:, b_idx]) / rep[pick][:, b_idx]
    observed = 100 * (prepared.y[e_idx] - prepared.y[b_idx]) / prepared.y[b_idx]
    tree = xr.DataTree.from_dict({
        "posterior_predictive": xr.Dataset({"pct_change": (("chain", "draw", "patient"), replicated[None])},
                                           coords={"patient": coord}),
        "observed_data": xr.Dataset({"pct_change": (("patient",), observed)}, coords={"patient": coord})})
    tree.attrs["levels"] = list(levels)
    tree.attrs["month"] = month
    return tree


def ppc_change(prepared, y_rep: np.ndarray, site: str, month: float | None = None, n_lines: int = 60,
               label: str | None = None, seed: int = 0) -> Figure:
    """Posterior predictive check (arviz-plots' ``plot_ppc_dist``): the observed distribution (ECDF)
    of each patient's % change to ``month`` against replicated data sets, per group.

    Parameters
    ----------
    prepared : PreparedData
        The model's :class:`models.trajectory.PreparedData`.
    y_rep : ndarray
        Replicated observations, shape (chain, draw, obs).
    site : str
        Site of the model (title).
    month : float, optional
        Visit of the change from baseline (default: the last visit; pass the design's endpoint).
    n_lines : int
        Replicated data sets drawn.
    label : str, optional
        Printed on the figure.
    seed : int
        Seed of the choice of replicated data sets.

    Returns
    -------
    Figure
        One panel per group with patients at ``month`` (title: group and n), in the design's order
        (reference first): the ECDF of each replicated data set in the group's colour
        (:func:`~analysis.figures.theme.group_colours`) and the observed ECDF in black.
    """
    import arviz_plots as azp

    dt = ppc_change_tree(prepared, y_rep, month, n_lines, seed)
    month = float(dt.attrs["month"])
    levels = list(dt.attrs["levels"])
    colour_of = group_colours(levels)
    n_rep = dt["posterior_predictive"].sizes["draw"]
    panels = list(dict.fromkeys(dt["observed_data"]["patient"].values.tolist()))  # in order of first row
    level_of = {p: next(lv for lv in levels if p.startswith(group_title(lv) + " (")) for p in panels}
    colours = [colour_of[level_of[p]] for p in sorted(panels)]
    missing = [group_title(g) for g in levels if not any(level_of[p] == g for p in panels)]
    with style():
        pc = azp.plot_ppc_dist(
            dt, backend="matplotlib", kind="ecdf", num_samples=n_rep, cols=["patient"], col_wrap=2,
            aes={"color": ["patient"]}, color=colours,
            aes_by_visuals={"predictive_dist": ["color", "overlay_ppc"], "observed_dist": []},
            figure_kwargs={"figsize": (8.4, 3.4), "sharex": True, "sharey": True},
            visuals={"predictive_dist": {"alpha": 0.15, "width": 0.8},
                     "observed_dist": {"color": PALETTE["black"], "width": 2, "label": "observed"},
                     "title": {"size": 10}, "remove_axis": False})
        fig = figure_of(pc)
        axes = [pc.viz["plot"].sel(patient=p).item() for p in sorted(panels)]
        for ax in axes:
            ax.set_xlabel(f"BMD change to month {month:g} (%)")
        axes[0].set_ylabel("ECDF")
        axes[0].legend(handles=[ln for ln in axes[0].get_lines() if ln.get_label() == "observed"],
                       loc="upper left")
        note = f"; no {' or '.join(missing)} at month {month:g}" if missing else ""
        fig.suptitle(f"Posterior predictive check, {site_label(site)}: observed "
                     f"(black) vs {n_rep} replicated data sets{note}")
        stamp(fig, label)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# forest plot across analyses
# ---------------------------------------------------------------------------------------------


def forest(rows: pd.DataFrame, title: str, label: str | None = None) -> Figure:
    """Forest plot of one estimand across analyses (hand-drawn; see the module docstring).

    Parameters
    ----------
    rows : DataFrame
        One row per analysis, top to bottom in the order given: ``label, estimate, low, high`` and
        optionally ``kind`` (``"frequentist"``: square marker, vermillion; otherwise a dot, blue).
    title : str
        Figure title (wrapped at 80 characters).
    label : str, optional
        Printed on the figure.

    Returns
    -------
    Figure
        One interval with its estimate per row, a line at 0, the row labels on the y axis.
    """
    import textwrap

    import matplotlib.pyplot as plt

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
