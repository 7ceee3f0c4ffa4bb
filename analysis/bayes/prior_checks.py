r"""Prior checks for the trajectory model: prior predictive checks of each named prior set
(:mod:`models.priors`) and power-scaling prior/likelihood sensitivity of the main contrasts.

Prior predictive check
----------------------
For each prior set, :func:`prior_predictive` draws
:math:`\theta \sim p(\theta)` and :math:`\tilde y \sim p(y \mid \theta)` on the study's own design
(its patients, groups, observed visits and endpoint :math:`E`; the analysis frame's
:func:`~analysis.bayes.study_frame.model_options`) with ``pymc.sample_prior_predictive``,
using the trajectory model with latent (``"noncentred"``) random effects, the same model as the
default marginal form but with an observed node to simulate from. It summarises

- the implied baseline BMD (every month-0 row),
- the implied patient-level % change to the endpoint :math:`100(\tilde y_{i,E} - \tilde y_{i,0}) /
  \tilde y_{i,0}` per group (patients with both visits in the data),
- the group-level ``pct_change_end``, each level's ``diff_pct_change_end`` (level minus
  reference), the residual SD and the between-patient SDs,

by prior quantiles next to the observed range of the same quantity.

Power-scaling sensitivity
-------------------------
Kallioinen et al. (2024) perturb the posterior :math:`p(\theta \mid y) \propto p(y \mid
\theta)\, p(\theta)` by raising the prior (or the likelihood) to a power :math:`\alpha` near 1,
:math:`p_\alpha(\theta \mid y) \propto p(y \mid \theta)\, p(\theta)^\alpha`, estimate the
perturbed posteriors by Pareto-smoothed importance sampling with weights
:math:`p(\theta)^{\alpha - 1}`, and report the cumulative Jensen-Shannon distance between
perturbed and unperturbed marginals divided by :math:`|\log_2 \alpha|`; values above 0.05 flag
sensitivity (``arviz_stats.psense_summary``). :func:`add_log_densities` adds what that needs to
a fit from :func:`analysis.engine.sampling.sample`:

- ``log_prior``: ``pymc.stats.compute_log_prior`` over the *top-level* free variables (those
  without a ``patient`` dim), in the constrained space;
- ``log_likelihood``: the density the sampler targeted. For the marginal model that is the
  ``pm.Potential`` :math:`\log p(y \mid \theta)` with the random effects integrated out
  (``pymc.stats.compute_log_likelihood`` only sees observed variables, so the potentials are
  evaluated the same way by :class:`LogDensities`); for latent forms the observed
  node via ``pymc.stats.compute_log_likelihood``. An existing ``log_likelihood`` group (the
  pointwise ``bmd`` for PSIS-LOO) is kept; the sensitivity uses only the added variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import models  # noqa: F401  (compile caches before pytensor is imported)
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from analysis.bayes.study_frame import model_options
from analysis.figures.plots import PALETTE, group_colours, group_title, stamp, style
from analysis.common.quiet import quiet_logger
from analysis.bayes.prior_sample import observed_arrays, patient_sample
from analysis.engine.prior_predictive import prior_predictive_sampler
from analysis.study.estimands import difference_name, estimand_name
from models.priors import PRIOR_SET_NAMES, prior_set
from models.trajectory import build_trajectory_model
from models.trajectory_data import prepare_trajectory_data

__all__ = [
    "CONTRASTS",
    "LogDensities",
    "PriorCheckResult",
    "add_log_densities",
    "prior_checks",
    "prior_predictive",
    "prior_predictive_figure",
    "prior_sensitivity",
]

#: The contrasts whose sensitivity is reported (``diff_pct_change_end`` only with two or more groups).
CONTRASTS: tuple[str, ...] = ("diff_pct_change_end", "pct_change_end")

_QUANTILES = (0.025, 0.25, 0.5, 0.75, 0.975)
_Q_COLS = ("q025", "q25", "q50", "q75", "q975")


@dataclass
class PriorCheckResult:
    """Prior predictive check and power-scaling sensitivity for a set of priors.

    Attributes
    ----------
    table : DataFrame
        Prior predictive summary: ``set, quantity, kind, group, unit, q025 ... q975,
        observed_low, observed_high, p_in_observed_range`` (``kind`` is ``"data"`` for
        predicted observations, with the observed range and the prior predictive share inside
        it; ``"parameter"`` for model quantities, where ``observed_low = observed_high`` is the
        completers' observed mean change when there is one).
    sensitivity : DataFrame
        ``set, variable, estimand, prior, likelihood, diagnosis, posterior_median, eti_low,
        eti_high, fit`` (power-scaling sensitivity of the contrasts and their posterior under each
        set; ``estimand`` is the shared name, :mod:`analysis.study.estimands`).
    text : str
    figures : dict of str to Figure
        ``"prior_predictive"``, ``"posterior_by_set"``.
    fits : dict
        The fit (``analysis.engine.sampling.FitResult``, with ``log_prior`` and ``log_likelihood``
        groups) per set.
    """

    table: pd.DataFrame
    sensitivity: pd.DataFrame
    text: str
    figures: dict[str, Figure] = field(default_factory=dict)
    fits: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# prior predictive
# ---------------------------------------------------------------------------------------------


def _quantile_row(x: np.ndarray, lo: float = np.nan, hi: float = np.nan) -> dict[str, float]:
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    q = np.quantile(x, _QUANTILES) if x.size else np.full(len(_QUANTILES), np.nan)
    inside = float(np.mean((x >= lo) & (x <= hi))) if np.isfinite(lo) and x.size else np.nan
    return {**dict(zip(_Q_COLS, q)), "observed_low": lo, "observed_high": hi,
            "p_in_observed_range": inside}


def _priors(data: pd.DataFrame, site: str, name: str) -> Any:
    """Prior set ``name`` at ``site`` (``sceptical`` at a site without a published reference BMD
    scales to the data's mean baseline there, as in :func:`analysis.bayes.fit.prior_object`)."""
    base = data.loc[(data["month"] == 0) & data[f"bmd_{site}"].notna(), f"bmd_{site}"]
    return prior_set(name, site, reference_bmd=float(base.mean()) if len(base) else None)


def _model(data: pd.DataFrame, site: str, name: str, prior_data: pd.DataFrame | None = None,
           **kwargs: Any) -> Any:
    """The trajectory model on the analysis frame's design (:func:`model_options`) under set ``name``
    (its data-scaled priors from ``prior_data``, default ``data``)."""
    o = model_options(data)
    priors = _priors(data if prior_data is None else prior_data, site, name)
    return build_trajectory_model(data, site, priors=priors, levels=o["levels"],
                                  group_column=o["group_column"], time=o["time"],
                                  endpoint_month=o["endpoint_month"], **kwargs)


def prior_predictive(
    data: pd.DataFrame,
    site: str | None = None,
    sets: Sequence[str] = PRIOR_SET_NAMES,
    *,
    draws: int = 1000,
    seed: int = 0,
    max_patients: int | None = None,
) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Prior predictive summaries of each prior set on the study's design.

    Above ``max_patients`` patients (default
    :data:`~analysis.bayes.prior_sample.PRIOR_PREDICTIVE_MAX_PATIENTS`) the draws are made for a
    seeded random sample of that many, stratified by group; the observed ranges stay the whole
    study's (:func:`~analysis.bayes.prior_sample.patient_sample`).

    Parameters
    ----------
    data : DataFrame
        The analysis frame (``analysis.bayes.fit.analysis_frame``: the groups and the design's
        endpoint), or long data with a boolean ``responder`` (a responder study, endpoint month 12).
    site : str, optional
        Any site of the data; default the design's first (:func:`model_options`).
    sets : sequence of str
        Prior set names (:data:`models.priors.PRIOR_SET_NAMES`).
    draws : int
        Prior predictive draws per set.
    seed : int
        Set ``k`` uses ``numpy.random.default_rng([seed, k])``.
    max_patients : int, optional
        Cap on the patients drawn for.

    Returns
    -------
    table : DataFrame
        See :attr:`PriorCheckResult.table`; ``attrs["sample"]`` says when a sample was drawn for.
    samples : dict
        Per set: ``baseline`` (draws x month-0 rows), ``pct_change`` (draws x patients with
        month 0 and the endpoint), ``pct_group`` (draws x group), ``observed_baseline``,
        ``observed_pct_change``, ``group`` (the level's position, reference 0, per column of
        ``pct_change``), ``levels``, ``endpoint`` and ``sample`` (the sample's note, or ``None``).
    """
    site = model_options(data)["sites"][0] if site is None else site
    if f"bmd_{site}" not in data.columns:
        raise ValueError(f"no BMD column 'bmd_{site}' for site {site!r}")
    if draws < 10:
        raise ValueError(f"draws must be at least 10, got {draws}")
    sets = list(sets)
    if not sets:
        raise ValueError("sets must name at least one prior set")
    for name in sets:
        prior_set(name, site, reference_bmd=1.0)  # validates the name
    o = model_options(data)
    drawn, note = patient_sample(data, site, o["group_column"], seed, max_patients)
    tm = _model(drawn, site, sets[0], prior_data=data, parameterisation="noncentred")
    prep = tm.prepared
    levels, end = prep.levels, tm.endpoint_month
    nominal, i0, i_end, grp, obs_pct, obs_base = observed_arrays(prep, drawn, site, end)
    ogrp = grp
    if note is not None:  # the observed ranges: the whole study's
        whole = prepare_trajectory_data(data, site, levels=o["levels"], group_column=o["group_column"], time=o["time"])
        ogrp, obs_pct, obs_base = observed_arrays(whole, data, site, end)[3:]
    rows: list[dict[str, Any]] = []
    samples: dict[str, dict[str, np.ndarray]] = {}
    draw_prior = prior_predictive_sampler(tm.pymc_model, ("y", "pct_change_end", "sigma", "sd_patient"))
    effects = list(tm.pymc_model.coords["effect"])
    change = f"{end:g}-month change"
    for k, name in enumerate(sets):
        tm.set_data(priors=_priors(data, site, name))
        pp = draw_prior(draws, np.random.default_rng([seed, k]))
        y = prep.y_loc + prep.y_scale * pp["y"].reshape(draws, -1)
        base_pp = y[:, nominal == 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            pct_pp = 100.0 * (y[:, i_end] - y[:, i0]) / y[:, i0]
        pct_group = pp["pct_change_end"].reshape(draws, -1)
        samples[name] = {"baseline": base_pp, "pct_change": pct_pp, "pct_group": pct_group,
                         "observed_baseline": obs_base, "observed_pct_change": obs_pct,
                         "group": grp, "levels": levels, "endpoint": end, "sample": note}

        def add(quantity: str, kind: str, group: str, unit: str, row: dict[str, float]) -> None:
            if kind == "parameter":  # a reference value at most, not a range to fall into
                row["p_in_observed_range"] = np.nan
            rows.append({"set": name, "quantity": quantity, "kind": kind, "group": group,
                         "unit": unit, **row})

        add("baseline BMD", "data", "all", "g/cm^2",
            _quantile_row(base_pp, obs_base.min(), obs_base.max()))
        for g, label in enumerate(levels):
            ob = obs_pct[ogrp == g]
            lo, hi = (ob.min(), ob.max()) if ob.size else (np.nan, np.nan)
            add(f"{change}, patient", "data", label, "%",
                _quantile_row(pct_pp[:, grp == g], lo, hi))
        for g, label in enumerate(levels):
            ob = obs_pct[ogrp == g]
            mean = float(ob.mean()) if ob.size else np.nan
            add(f"{change}, group mean (pct_change_end)", "parameter", label, "%",
                _quantile_row(pct_group[:, g], mean, mean))
        for g, label in enumerate(levels[1:], start=1):
            add("group difference (diff_pct_change_end)", "parameter", f"{label} - {levels[0]}",
                "percentage points", _quantile_row(pct_group[:, g] - pct_group[:, 0]))
        add("residual SD (sigma)", "parameter", "all", "g/cm^2", _quantile_row(pp["sigma"]))
        sd = pp["sd_patient"]
        add("between-patient SD, baseline", "parameter", "all", "g/cm^2",
            _quantile_row(sd[:, effects.index("intercept")]))
        add("between-patient SD, annual change", "parameter", "all", "g/cm^2/yr",
            _quantile_row(sd[:, effects.index("slope")]))
    table = pd.DataFrame(rows)
    table.attrs["sample"] = note
    return table, samples


def _interval_rows(ax: Any, rows: list[tuple[str, np.ndarray, str]], lo: float, hi: float,
                   xlabel: str, title: str, linthresh: float) -> None:
    """Horizontal 50%/95% prior intervals and medians, observed range shaded."""
    ax.axvspan(lo, hi, color=PALETTE["grey"], alpha=0.2, lw=0, label="observed range")
    for k, (label, x, colour) in enumerate(rows):
        x = np.asarray(x, dtype=float).ravel()
        x = x[np.isfinite(x)]
        q = np.quantile(x, [0.025, 0.25, 0.5, 0.75, 0.975])
        ypos = len(rows) - 1 - k
        ax.hlines(ypos, q[0], q[4], color=colour, lw=1.2)
        ax.hlines(ypos, q[1], q[3], color=colour, lw=4.0)
        ax.plot(q[2], ypos, "o", color="white", mec=colour, ms=4.5)
    ax.set_yticks(range(len(rows))[::-1], [r[0] for r in rows])
    # linear inside +/- linthresh (which holds every plausible value), logarithmic outside
    ax.set_xscale("symlog", linthresh=linthresh)
    left, right = ax.get_xlim()
    ticks = [s * linthresh * 10.0**k for s in (-1, 1) for k in range(0, 6)]
    ticks = sorted(t for t in [*ticks, 0.0, linthresh / 2, -linthresh / 2] if left <= t <= right)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlim(left, right)
    ax.set_xlabel(xlabel)
    ax.set_title(title)


def prior_predictive_figure(
    samples: dict[str, dict[str, np.ndarray]], label: str | None = None
) -> Figure:
    """Prior predictive baseline BMD and patient-level % change to the endpoint per set and group
    (median, 50% and 95% intervals, symlog axis) against the observed range (shaded)."""
    import matplotlib.pyplot as plt

    names = list(samples)
    first = samples[names[0]]
    obs_b, obs_p = first["observed_baseline"], first["observed_pct_change"]
    levels = tuple(first.get("levels", ("non-responder", "responder")))
    colours = group_colours(levels)
    change = f"{float(first.get('endpoint', 12.0)):g}-month change"
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.5 + 0.55 * 2 * len(names)),
                                 gridspec_kw={"width_ratios": [1, 1.25]})
        _interval_rows(axes[0], [(n, samples[n]["baseline"], PALETTE["black"]) for n in names],
                       obs_b.min(), obs_b.max(), "baseline BMD (g/cm^2)",
                       "Implied baseline BMD", linthresh=2.0)
        rows = []
        for n in names:
            for g, grp in enumerate(levels):
                rows.append((f"{n}, {group_title(grp)}",
                             samples[n]["pct_change"][:, samples[n]["group"] == g],
                             colours[grp]))
        lo, hi = (obs_p.min(), obs_p.max()) if obs_p.size else (0.0, 0.0)
        _interval_rows(axes[1], rows, lo, hi, f"{change} (%)",
                       f"Implied {change} per patient", linthresh=10.0)
        drawn = f"; {first['sample']}" if first.get("sample") else ""
        fig.suptitle("Prior predictive check: median, 50% and 95% intervals; shaded: observed "
                     f"range\n(axes linear near the observed values, logarithmic beyond{drawn})")
        stamp(fig, label)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# log densities and power-scaling sensitivity
# ---------------------------------------------------------------------------------------------


class LogDensities:
    r"""Compiled log-density functions of one model, reused for every fit of it.

    ``pymc.stats.compute_log_prior`` / ``compute_log_likelihood`` compile a new function on
    every call. Prior sets enter :class:`~models.trajectory.TrajectoryModel` as data, so one
    compiled function per group serves every set: the model's current data, prior values
    included, are copied into the compiled clone before each evaluation. Same recipe as
    ``pymc.stats.compute_log_density`` (value transforms removed, the element-wise log density
    applied over the draws): ``prior``
    is :math:`\log p(\theta)` of the top-level free variables (no ``patient`` dim), ``likelihood``
    the observed variables' :math:`\log p(y \mid \theta)` and each ``pm.Potential``.
    """

    def __init__(self, pm_model: Any) -> None:
        from pymc.backends.arviz import coords_and_dims_for_inferencedata
        from pymc.model.transform.conditioning import remove_value_transforms

        self.model = pm_model
        self.umodel = remove_value_transforms(pm_model)
        self.prior_vars = [rv.name for rv in pm_model.free_RVs
                           if "patient" not in (pm_model.named_vars_to_dims.get(rv.name) or ())]
        self.observed_vars = [rv.name for rv in pm_model.observed_RVs]
        self.potential_vars = [p.name for p in pm_model.potentials]
        if not self.observed_vars and not self.potential_vars:
            raise ValueError("the model has neither observed variables nor potentials")
        self._coords, self._dims = coords_and_dims_for_inferencedata(self.umodel)
        self._fns: dict[str, Any] = {}

    def _fn(self, kind: str) -> Any:
        if kind not in self._fns:
            from analysis.engine.numba_overrides import install_numba_overrides

            install_numba_overrides()
            um = self.umodel
            if kind == "prior":
                outs = um.logp(vars=[um.named_vars[n] for n in self.prior_vars], sum=False)
            elif kind == "observed":
                outs = um.logp(vars=list(um.observed_RVs), sum=False)
            else:  # potentials: the density the sampler targeted, no Jacobian
                outs = um.logp(vars=list(um.potentials), sum=False, jacobian=False)
            self._fns[kind] = um.compile_fn(inputs=um.value_vars, outs=outs, on_unused_input="ignore")
        return self._fns[kind]

    def _sync_data(self) -> None:
        """Copy the model's current data (and data-backed priors) into the transform-free clone,
        whose shared variables are copies made when it was built."""
        from pytensor.compile import SharedVariable

        for name, var in self.model.named_vars.items():
            twin = self.umodel.named_vars.get(name)
            if isinstance(var, SharedVariable) and isinstance(twin, SharedVariable):
                twin.set_value(var.get_value(borrow=True), borrow=True)

    def evaluate(self, dt: xr.DataTree, kind: str) -> xr.Dataset:
        """``kind`` in ``{"prior", "observed", "potentials"}`` at every posterior draw of ``dt``."""
        from pymc.backends.arviz import apply_function_over_dataset

        names = {"prior": self.prior_vars, "observed": self.observed_vars,
                 "potentials": self.potential_vars}[kind]
        um = self.umodel
        self._sync_data()
        free = [rv.name for rv in self.model.free_RVs]
        ds = dt["posterior"].to_dataset()[free]
        ds = ds.astype({um.rvs_to_values[rv].name: um.rvs_to_values[rv].type.dtype for rv in um.free_RVs},
                       copy=False)
        dims, coords = (({}, {}) if kind == "potentials" else (self._dims, self._coords))
        return apply_function_over_dataset(self._fn(kind), ds, output_var_names=names,
                                           sample_dims=("chain", "draw"), dims=dims, coords=coords,
                                           progressbar=False)


def _check_same_data(dt: xr.DataTree, model: Any) -> None:
    if "constant_data" not in dt.children:
        return
    held = dt["constant_data"].to_dataset()
    for name, value in getattr(model, "data_values", {}).items():
        if name in held and not np.array_equal(np.asarray(held[name].values, dtype=float),
                                               np.asarray(value, dtype=float)):
            raise ValueError(f"the model's data ({name!r}) differ from the fit's; set_data back first")


def add_log_densities(dt: xr.DataTree, model: Any,
                      densities: LogDensities | None = None) -> tuple[xr.DataTree, list[str], list[str]]:
    """Add ``log_prior`` and ``log_likelihood`` groups for power-scaling sensitivity.

    Parameters
    ----------
    dt : DataTree
        A fit's posterior (``FitResult.posterior``); not modified.
    model : TrajectoryModel or another rajak model
        The model that produced ``dt``, holding the same data (checked against
        ``constant_data``).
    densities : LogDensities, optional
        The model's compiled log densities, to reuse across fits of the same model (built when
        not given).

    Returns
    -------
    dt : DataTree
        A copy with ``log_prior`` (top-level free variables) and ``log_likelihood`` (the
        model's observed variables and potentials, added next to any existing variables).
    prior_vars, likelihood_vars : list of str
        The variables of each group that define the prior and the likelihood.
    """
    pm_model = getattr(model, "pymc_model", model)
    _check_same_data(dt, model)
    if densities is None:
        densities = LogDensities(pm_model)
    elif densities.model is not pm_model:
        raise ValueError("densities were compiled for another model")
    dt = dt.copy()
    dt["log_prior"] = densities.evaluate(dt, "prior")
    parts = []
    if densities.observed_vars:
        parts.append(densities.evaluate(dt, "observed"))
    if densities.potential_vars:
        parts.append(densities.evaluate(dt, "potentials"))
    new = xr.merge(parts)
    lik_vars = list(new.data_vars)
    if "log_likelihood" in dt.children:
        old = dt["log_likelihood"].to_dataset()
        clash = [v for v in lik_vars if v in old]
        if clash:
            old = old.drop_vars(clash)
        new = xr.merge([old, new])
    dt["log_likelihood"] = new
    return dt, list(densities.prior_vars), lik_vars


def prior_sensitivity(
    fit: Any,
    model: Any,
    var_names: Sequence[str] = CONTRASTS,
    *,
    alphas: tuple[float, float] = (0.99, 1.01),
    threshold: float = 0.05,
) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity (``arviz_stats.psense_summary``).

    Parameters
    ----------
    fit : FitResult or DataTree
        From :func:`analysis.engine.sampling.sample`.
    model
        The model that produced it, with the same data.
    var_names : sequence of str
        Posterior variables to judge (default :data:`CONTRASTS`).
    alphas, threshold
        Passed to ``psense_summary``.

    Returns
    -------
    DataFrame
        Index: variable labels (e.g. ``pct_change_end[responder]``); columns ``prior``,
        ``likelihood``, ``diagnosis``.
    """
    dt = getattr(fit, "posterior", fit)
    missing = [v for v in var_names if v not in dt["posterior"].data_vars]
    if missing:
        raise ValueError(f"variable(s) {missing} are not in the posterior")
    dt, prior_vars, lik_vars = add_log_densities(dt, model)
    return _psense(dt, var_names, prior_vars, lik_vars, alphas, threshold)


def _psense(dt: xr.DataTree, var_names: Sequence[str], prior_vars: list[str],
            lik_vars: list[str], alphas: tuple[float, float], threshold: float) -> pd.DataFrame:
    from arviz_stats import psense_summary

    with quiet_logger("arviz_stats.psense"):  # the diagnosis column says it; no warning on stderr
        return psense_summary(dt, var_names=list(var_names), prior_var_names=prior_vars,
                              likelihood_var_names=lik_vars, alphas=alphas, threshold=threshold)


# ---------------------------------------------------------------------------------------------
# all together
# ---------------------------------------------------------------------------------------------


def _posterior_figure(post: dict[str, xr.Dataset], label: str | None, endpoint: float) -> Figure:
    import matplotlib.pyplot as plt

    names = list(post)
    first = post[names[0]]
    levels = [str(g) for g in first["group"].values]
    colours = group_colours(levels)
    panels = [("diff_pct_change_end", {"contrast": str(c)}, f"{c} (points)", PALETTE["black"])
              for c in (first["contrast"].values if "contrast" in first.coords else [])]
    panels += [("pct_change_end", {"group": g}, f"{group_title(g)} (%)", colours[g]) for g in levels]
    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 0.8 + 0.45 * len(names)),
                                 sharey=True, squeeze=False)
        for ax, (var, sel, title, colour) in zip(axes[0], panels):
            for k, n in enumerate(names):
                x = post[n][var].sel(sel).values.ravel()
                q = np.quantile(x, [0.025, 0.25, 0.5, 0.75, 0.975])
                y = len(names) - 1 - k
                ax.hlines(y, q[0], q[4], color=colour, lw=1.2)
                ax.hlines(y, q[1], q[3], color=colour, lw=4.0)
                ax.plot(q[2], y, "o", color="white", mec=colour, ms=4.5)
            ax.axvline(0, color=PALETTE["grey"], lw=0.8)
            ax.set_title(title)
        axes[0][0].set_yticks(range(len(names))[::-1], names)
        fig.suptitle(f"{endpoint:g}-month change under each prior set (posterior median, 50% and 95% intervals)")
        stamp(fig, label)
        fig.tight_layout()
    return fig


def prior_checks(
    data: pd.DataFrame,
    site: str | None = None,
    sets: Sequence[str] = PRIOR_SET_NAMES,
    *,
    prior_draws: int = 1000,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int = 2,
    seed: int = 0,
    label: str | None = None,
    sample: Callable[..., Any] | None = None,
) -> PriorCheckResult:
    """Prior predictive check, fit and power-scaling sensitivity for every prior set.

    One marginal trajectory model is built and compiled once; the prior sets are swapped in as
    data (``TrajectoryModel.set_data(priors=...)``).

    Parameters
    ----------
    data : DataFrame
        The analysis frame (``analysis.bayes.fit.analysis_frame``), or long data with a boolean
        ``responder``.
    site : str, optional
        Default the design's first site.
    sets : sequence of str
    prior_draws : int
        Prior predictive draws per set.
    draws, tune, chains, cores, seed
        Passed to :func:`analysis.engine.sampling.sample` (same seed for every set).
    label : str, optional
        Printed on the figures (e.g. the dataset's SYNTHETIC label).
    sample : callable, optional
        Fits one model: ``sample(model, draws=, tune=, chains=, cores=, seed=) -> FitResult``
        (default :func:`analysis.engine.sampling.sample`); e.g. a function that reads unchanged fits from
        a cache.

    Returns
    -------
    PriorCheckResult
    """
    if sample is None:
        from analysis.engine.sampling import sample

    site = model_options(data)["sites"][0] if site is None else site
    table, samples = prior_predictive(data, site, sets, draws=prior_draws, seed=seed)
    tm = _model(data, site, list(sets)[0])
    end = tm.endpoint_month
    levels = tm.prepared.levels
    names = {f"pct_change_end[{g}]": estimand_name(site, g, "pct", end) for g in levels}
    names.update({f"diff_pct_change_end[{c} - {levels[0]}]": difference_name(site, "pct", end, groups=(c, levels[0]))
                  for c in levels[1:]})
    contrasts = [v for v in CONTRASTS if v in tm.pymc_model.named_vars]
    densities = LogDensities(tm.pymc_model)  # compiled once, evaluated under every set
    rows, fits, post = [], {}, {}
    for name in sets:
        tm.set_data(priors=_priors(data, site, name))
        fit = sample(tm, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed)
        fit.posterior, prior_vars, lik_vars = add_log_densities(fit.posterior, tm, densities)
        sens = _psense(fit.posterior, contrasts, prior_vars, lik_vars, (0.99, 1.01), 0.05)
        fits[name] = fit
        ds = fit.posterior["posterior"].to_dataset()
        post[name] = ds
        verdict = "pass" if fit.passed else "FAIL: " + ", ".join(fit.diagnostics.failed_checks)
        for var_label, r in sens.iterrows():
            var, _, coord = str(var_label).partition("[")
            da = ds[var]
            if coord:
                dim = next(d for d in da.dims if d not in ("chain", "draw"))
                da = da.sel({dim: coord.rstrip("]")})
            x = da.values.ravel()
            lo, med, hi = np.quantile(x, [0.025, 0.5, 0.975])
            rows.append({"set": name, "variable": str(var_label), "estimand": names.get(str(var_label)),
                         "prior": float(r["prior"]),
                         "likelihood": float(r["likelihood"]), "diagnosis": r["diagnosis"],
                         "posterior_median": med, "eti_low": lo, "eti_high": hi,
                         "fit": verdict})
    sensitivity = pd.DataFrame(rows)
    text = _summary_text(table, sensitivity, site, end)
    figures = {"prior_predictive": prior_predictive_figure(samples, label),
               "posterior_by_set": _posterior_figure(post, label, end)}
    return PriorCheckResult(table=table, sensitivity=sensitivity, text=text, figures=figures,
                            fits=fits)


def _summary_text(table: pd.DataFrame, sensitivity: pd.DataFrame, site: str, endpoint: float) -> str:
    lines = [f"Prior checks, {site}" + (f" ({table.attrs['sample']})." if table.attrs.get("sample") else ".")]
    change = f"{endpoint:g}-month change"
    for name, t in table.groupby("set", sort=False):
        b = t[t["quantity"] == "baseline BMD"].iloc[0]
        p = t[t["quantity"] == f"{change}, patient"]
        lines.append(
            f"{name}: 95% of implied baseline BMD in [{b.q025:.2f}, {b.q975:.2f}] g/cm^2 "
            f"(observed {b.observed_low:.2f}-{b.observed_high:.2f}); implied patient {change} "
            f"in [{p.q025.min():.1f}, {p.q975.max():.1f}]% (observed "
            f"{p.observed_low.min():.1f} to {p.observed_high.max():.1f}%)."
        )
    for name, s in sensitivity.groupby("set", sort=False):
        d = s[s["variable"].str.startswith("diff_pct_change_end")]
        if d.empty:
            continue
        r = d.iloc[0]
        contrast = str(r.variable).partition("[")[2].rstrip("]")
        flagged = s.loc[s["diagnosis"] != "✓", "variable"].tolist()
        lines.append(
            f"{name}: {contrast} difference {r.posterior_median:+.2f} points "
            f"(95% CrI {r.eti_low:+.2f} to {r.eti_high:+.2f}); power-scaling sensitivity prior "
            f"{r.prior:.3f}, likelihood {r.likelihood:.3f}"
            + (f"; flagged: {', '.join(flagged)}" if flagged else "; nothing flagged")
            + f" (fit {r.fit})."
        )
    return "\n".join(lines)
