"""Convergence diagnostics figures of a fit, drawn by arviz-plots: rank plots, effective sample size
and energy.

Each takes a fit (anything with a ``posterior`` DataTree, e.g. :class:`analysis.engine.results.FitResult`)
or the DataTree itself. :func:`diagnostics_tree` cuts a fit down to what a figure reads (the
posterior of the main parameters, or the sampler's energy), so that only that travels to the process
that draws it (:class:`analysis.figures.output.DeferredFigure`).
"""

from __future__ import annotations

from typing import Any

import xarray as xr
from matplotlib.figure import Figure

from analysis.figures.output import figure_of
from analysis.figures.theme import PALETTE, stamp, style

__all__ = ["RANK_VARS", "MIN_ESS", "diagnostics_tree", "rank_plot", "ess_plot", "energy_plot"]

#: Parameters shown in the rank and ESS plots (those the model has).
RANK_VARS = ("b", "sigma", "sd_patient")
#: The bulk and tail ESS the convergence checks require (the line drawn in the ESS plots).
MIN_ESS = 400


def _tree(fit: Any) -> xr.DataTree:
    return fit if isinstance(fit, xr.DataTree) else fit.posterior  # (a DataTree has .posterior too)


def _present(dt: xr.DataTree, var_names) -> list[str]:
    names = [v for v in var_names if v in dt["posterior"].data_vars]
    if not names:
        raise ValueError(f"the posterior has none of the variables {list(var_names)}")
    return names


def diagnostics_tree(fit: Any, groups: tuple[str, ...] = ("posterior", "sample_stats"),
                     var_names=RANK_VARS) -> xr.DataTree:
    """The part of a fit the diagnostics figures read.

    Parameters
    ----------
    fit : FitResult or xarray.DataTree
        A fit or its DataTree.
    groups : tuple of str
        ``"posterior"`` keeps the variables ``var_names`` the posterior has (rank and ESS plots);
        ``"sample_stats"`` keeps ``energy`` (energy plot).
    var_names : sequence of str
        Posterior variables kept.

    Returns
    -------
    xarray.DataTree
        With the requested groups, loaded into memory, without the groups' attributes (creation
        time stamps and library versions).

    Raises
    ------
    ValueError
        If a requested group or its variables are missing.
    """
    dt = _tree(fit)
    out = {}
    if "posterior" in groups:
        out["posterior"] = dt["posterior"].to_dataset()[_present(dt, var_names)]
    if "sample_stats" in groups:
        if "sample_stats" not in dt.children or "energy" not in dt["sample_stats"].data_vars:
            raise ValueError("the fit has no sampler energy (sample_stats/energy)")
        out["sample_stats"] = dt["sample_stats"].to_dataset()[["energy"]]
    # without the groups' creation stamps (not content: the figure cache keys on content)
    return xr.DataTree.from_dict({group: ds.load().drop_attrs(deep=False) for group, ds in out.items()})


def _panels_figsize(dt: xr.DataTree, names, ncols: int = 4, width: float = 2.6, height: float = 2.1):
    n = sum(int(dt["posterior"][v].size // (dt["posterior"].sizes["chain"] * dt["posterior"].sizes["draw"]))
            for v in names)
    cols = min(n, ncols)
    return (width * cols + 0.4, height * -(-n // cols) + 0.6)


def _chain_colours(dt: xr.DataTree) -> list[str]:
    """One Okabe-Ito colour per chain (cycled)."""
    cycle = [PALETTE[c] for c in ("blue", "orange", "green", "vermillion", "purple", "sky", "black", "yellow")]
    return [cycle[i % len(cycle)] for i in range(dt["posterior"].sizes["chain"])]


def rank_plot(fit: Any, var_names=RANK_VARS, label: str | None = None) -> Figure:
    """Fractional-rank Delta-ECDF plots per chain (arviz-plots' ``plot_rank``) of the main parameters.

    Parameters
    ----------
    fit : FitResult or xarray.DataTree
        With a ``posterior`` group of at least two chains.
    var_names : sequence of str
        Parameters to show (those the posterior lacks are skipped).
    label : str, optional
        Printed on the figure.

    Returns
    -------
    Figure
        One panel per parameter (and coordinate): chains that mix well stay inside the
        simultaneous envelope; points that break uniformity are highlighted.
    """
    import arviz_plots as azp

    dt = _tree(fit)
    names = _present(dt, var_names)
    with style():
        pc = azp.plot_rank(dt, var_names=names, backend="matplotlib", col_wrap=4, color=_chain_colours(dt),
                           figure_kwargs={"figsize": _panels_figsize(dt, names)}, visuals={"title": {"size": 8}})
        fig = figure_of(pc)
        fig.suptitle("Rank plots per chain (fractional rank Delta-ECDF; p: multi-chain uniformity test)", x=0.01, ha="left")
        stamp(fig, label)
        fig.tight_layout()
    return fig


def ess_plot(fit: Any, var_names=RANK_VARS, label: str | None = None, kind: str = "local",
             min_ess: int = MIN_ESS) -> Figure:
    """Effective sample size across the posterior (arviz-plots' ``plot_ess``) of the main parameters.

    Parameters
    ----------
    fit : FitResult or xarray.DataTree
        With a ``posterior`` group.
    var_names : sequence of str
        Parameters to show (those the posterior lacks are skipped).
    label : str, optional
        Printed on the figure.
    kind : {"local", "quantile"}
        ESS for small-interval probabilities (``local``) or for quantiles, at 20 points.
    min_ess : int
        The required ESS, drawn as a dash-dotted line.

    Returns
    -------
    Figure
        One panel per parameter (and coordinate) with the ESS at each point and the ESS of the
        mean and SD as horizontal lines.
    """
    import arviz_plots as azp

    dt = _tree(fit)
    names = _present(dt, var_names)
    with style():
        pc = azp.plot_ess(dt, var_names=names, backend="matplotlib", kind=kind, min_ess=min_ess,
                          extra_methods=True, col_wrap=4,
                          figure_kwargs={"figsize": _panels_figsize(dt, names), "sharey": True},
                          visuals={"ess": {"color": PALETTE["blue"]}, "title": {"size": 8}})
        fig = figure_of(pc)
        fig.suptitle(f"Effective sample size ({kind}; dash-dotted: the required {min_ess})", x=0.01, ha="left")
        stamp(fig, label)
        fig.tight_layout()
    return fig


def energy_plot(fit: Any, label: str | None = None) -> Figure:
    """Marginal and transition energy of the sampler with E-BFMI per chain (arviz-plots' ``plot_energy``).

    Parameters
    ----------
    fit : FitResult or xarray.DataTree
        With ``sample_stats/energy``.
    label : str, optional
        Printed on the figure.

    Returns
    -------
    Figure
        E-BFMI per chain against the 0.3 threshold, and the two energy densities (a transition
        density much narrower than the marginal one means the sampler explores poorly).

    Raises
    ------
    ValueError
        If the fit has no sampler energy.
    """
    import arviz_plots as azp

    dt = _tree(fit)
    if "sample_stats" not in dt.children or "energy" not in dt["sample_stats"].data_vars:
        raise ValueError("the fit has no sampler energy (sample_stats/energy)")
    with style():
        pc = azp.plot_energy(dt, backend="matplotlib", kind="kde", threshold=0.3,
                             color=[PALETTE["blue"], PALETTE["orange"]], visuals={"legend": False},
                             figure_kwargs={"figsize": (8.0, 2.8)})
        fig = figure_of(pc)
        lines = pc.viz["dist"]["Energy"]
        for kind in lines["energy"].values:
            lines.sel(energy=kind).item().set_label(f"{kind} energy")
        pc.viz["plot"].sel(column="energy").item().legend(loc="upper right", fontsize=7)
        fig.suptitle("Energy: marginal vs transition, and E-BFMI per chain (threshold 0.3)", x=0.01, ha="left")
        from matplotlib.ticker import MaxNLocator

        for ax in fig.axes:  # chains are whole numbers
            if ax.get_ylabel().lower() == "chain":
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        stamp(fig, label)
        fig.tight_layout()
    return fig
