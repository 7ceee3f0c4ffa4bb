r"""Delta-adjusted pattern mixture in the Bayesian model, and by MI from its posterior predictive.

The MI version (:mod:`analysis.sensitivity.delta`) imputes from a frequentist MMRM. Here the same
delta scenarios act on the posterior of the Bayesian trajectory LMM (:mod:`models.trajectory`,
marginal form, fitted once per site through the fit cache, so ``rajak run`` reuses its main fit),
on the study's design (:mod:`analysis.sensitivity.design`):

1. **In the model** (the posterior of the pattern-mixture estimand). A pattern-mixture model
   leaves the likelihood of the observed data unchanged, so :math:`\delta` needs no refit: it acts
   on the estimand. With :math:`F_g` the MAR (LMM) month-:math:`T` change of group :math:`g` (a level
   of the design: an arm, a dose, responders or non-responders, the one group of a single arm; the
   fixed effects, :mod:`analysis.sensitivity.bayes_delta_site`: :math:`100\,(b_1 + b_{1g}) T /
   (b_0 + b_{0g})` in %, :math:`(b_1 + b_{1g}) T` in g/cm^2), :math:`D_g` the group's dropouts (no DXA at month :math:`T`) among its :math:`n_g`
   patients, :math:`C_i` dropout :math:`i`'s change from its observed baseline :math:`y_{i0}`
   expected under MAR, :math:`C_i = 100\,(a_{0i} + a_{1i} T - y_{i0}) / y_{i0}` (or
   :math:`a_{0i} + a_{1i} T - y_{i0}`), with :math:`a_i` the patient's effects drawn from their
   exact conditional (``u``), and :math:`w_i = \kappa_i (T - t_{d_i})` the years after its last
   DXA times the unit conversion of :mod:`~analysis.sensitivity.delta`, every posterior draw gives

   .. math::

       \theta_g(\delta_g, s_g) = F_g + \frac{1}{n_g} \sum_{i \in D_g}
           \bigl[(s_g - 1)\, C_i + \delta_g\, w_i\bigr],

   the population mean change when the group's dropouts (in the observed proportion) follow their
   MAR prediction scaled by :math:`s_g` and shifted by :math:`\delta_g` per year after dropout, and
   every group's difference from the reference :math:`\theta_g - \theta_r`.
   :math:`\delta = 0, s = 1` is the LMM's own estimand. :math:`\delta_g` may be a fixed value or
   carry a prior (``delta_sd > 0``: one :math:`\delta_g \sim N(\delta_g, \text{sd})` per draw, the
   sensitivity parameter's uncertainty propagated). The estimand is linear in :math:`\delta`, so
   the tipping points are exact: the posterior quantile :math:`q_\alpha(\delta) = q_\alpha(0) +
   \delta \bar w_g` crosses 0 at :math:`\delta^* = -q_\alpha(0) / \bar w_g`.

2. **MI from the posterior predictive** (a "Bayesian MI", rbmi's ``method_bayes`` idea with this
   model). For :math:`M` posterior draws :math:`l`, every dropout's month-:math:`T` BMD is drawn
   from :math:`N(a^{(l)}_{0i} + a^{(l)}_{1i} T, \sigma^{(l)})`, turned into the % change from the
   observed baseline, adjusted as in :func:`analysis.sensitivity.delta.apply_delta` (scale on the
   change, plus :math:`\delta_g w_i`), and the completed data are analysed like the primary MI
   (group means, Welch differences from the reference) and pooled by Rubin's rules
   (:func:`analysis.sensitivity.mi_reporting.endpoint_analysis`).

Patients enter with the groups of the design (in a responder study, of the run's strategy for
undefined responder status; :func:`analysis.bayes.fit.analysis_frame`); the LMM is fitted without
covariates. A design the random-slope LMM cannot be estimated on (a single post-baseline visit) is
reported as not estimable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.sensitivity.bayes_delta_site import (
    BayesDeltaSite,
    prepare_site,
    state,
    tipping_points,
)
from analysis.sensitivity.delta import DeltaScenario, default_scenarios
from analysis.sensitivity.design import (
    SensitivityDesign,
    sensitivity_design,
    site_label,
)
from analysis.sensitivity.mi_reporting import (
    endpoint_analysis,
    interval_figure,
    key_group,
)
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.sensitivity.tipping_figure import tipping_heatmap
from analysis.study.clinical import ResponderRule

__all__ = [
    "BASE_COLUMNS",
    "METHOD_MODEL",
    "TIPPING_COLUMNS",
    "BayesDeltaSite",
    "bayes_delta_analysis",
    "bayes_delta_from_config",
    "prepare_site",
    "table_columns",
]

#: The table's columns around the per-level ``delta_<level>`` and ``scale_<level>`` (:func:`table_columns`).
BASE_COLUMNS = ["site", "scenario", "method", "unit", "delta_sd", "estimand", "group", "comparison", "measure",
                "estimate", "se", "ci_low", "ci_high", "p_lt_0", "p", "df", "n", "n_dropouts", "m"]
TIPPING_COLUMNS = ["site", "comparison", "estimand", "group", "ray", "from_state", "to_state", "tipping_delta", "unit"]
METHOD_MODEL = "Bayesian LMM, delta in the model"


def table_columns(levels) -> list[str]:
    """``site, scenario, method``, ``delta_<level>`` and ``scale_<level>`` per level, then the rest of
    :data:`BASE_COLUMNS`."""
    return (BASE_COLUMNS[:3] + [f"delta_{lv}" for lv in levels] + [f"scale_{lv}" for lv in levels]
            + BASE_COLUMNS[3:])


def _selection(data: BayesDeltaSite, key: str) -> np.ndarray:
    """The patients a key's estimand is about: the group's, or both groups' of a difference."""
    if key in data.levels:
        return data.group == data.levels.index(key)
    lv = key.rsplit(" - ", 1)[0]
    return (data.group == 0) | (data.group == data.levels.index(lv))


def _summary_rows(draws: dict[str, np.ndarray], sd: SensitivityDesign, site: str, measure: str,
                  extra: dict[str, Any], data: BayesDeltaSite) -> list[dict[str, Any]]:
    rows = []
    for key in data.keys:
        x = draws[key]
        lo, hi = np.quantile(x, [0.025, 0.975])
        sel = _selection(data, key)
        g, comparison = key_group(key, data.levels)
        rows.append({**extra, "site": site, "estimand": sd.estimand(site, key, measure), "group": g,
                     "comparison": comparison, "measure": measure,
                     "estimate": float(np.median(x)), "se": float(np.std(x, ddof=1)), "ci_low": float(lo),
                     "ci_high": float(hi), "p_lt_0": float(np.mean(x < 0)), "p": np.nan, "df": np.nan,
                     "n": int(sel.sum()), "n_dropouts": int((sel & data.dropout).sum()), "m": data.n_draws})
    return rows


def bayes_delta_analysis(derived: pd.DataFrame, scenarios: Sequence[DeltaScenario] | None = None,
                         sites: Sequence[str] | None = None, *, priors: str = "default",
                         undefined: str = "last_observed", rule: ResponderRule | None = None, m: int = 200,
                         delta_sd: float = 0.0, grid: Sequence[float] | None = None, draws: int = 1000,
                         tune: int = 1000, chains: int = 4, seed: int = 0, target_accept: float = 0.9,
                         endpoint_month: float | None = None, cache_dir: str | Path | None = None,
                         label: str | None = None, design: Any = None) -> SensitivityResult:
    """Delta scenarios in the Bayesian LMM and by MI from its posterior predictive, plus the
    Bayesian tipping points.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    scenarios : sequence of DeltaScenario, optional
        As :mod:`analysis.sensitivity.delta` (additive and multiplicative, per group); default
        :func:`analysis.sensitivity.delta.default_scenarios` of the design.
    sites : sequence of str, optional
        Default: the design's.
    priors, undefined, rule, draws, tune, chains, seed, target_accept, cache_dir
        The LMM fit (:func:`analysis.bayes.fit.fit_bayes`; one per site, from the cache when it
        exists, e.g. the main fit of ``rajak run``).
    m : int
        Imputations of the posterior-predictive MI (posterior draws, evenly spaced).
    delta_sd : float
        SD of a normal prior on each delta (0: fixed deltas).
    grid : sequence of float, optional
        Deltas (%/yr) of the tipping-point heat map (default that of
        :mod:`analysis.sensitivity.tipping`).
    endpoint_month : float, optional
        Default: the design's endpoint.
    label : str, optional
        Printed on the figures.
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).

    Returns
    -------
    SensitivityResult
        Name ``"delta_bayes"``; ``table`` (:func:`table_columns`) one row per site, scenario, method,
        measure and estimand; ``settings["tipping_points"]`` (:data:`TIPPING_COLUMNS`); the
        posterior draws of every in-model estimand in ``draws``; figures ``sensitivity_delta_bayes``
        and ``sensitivity_tipping_bayes``.
    """
    from analysis.bayes.fit import analysis_frame, fit_bayes
    from analysis.sensitivity.tipping import DEFAULT_GRID

    sd = sensitivity_design(derived, design, sites, endpoint_month)
    sites, endpoint_month = sd.sites, sd.endpoint
    scenarios = tuple(default_scenarios(sd.single_arm) if scenarios is None else scenarios)
    if not scenarios or not all(isinstance(s, DeltaScenario) for s in scenarios):
        raise ValueError("scenarios must be a non-empty sequence of DeltaScenario")
    for sc in scenarios:
        sc.check_levels(sd.levels)
    names = [s.name(sd.levels) for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique, got {names}")
    if not (np.isfinite(delta_sd) and delta_sd >= 0):
        raise ValueError(f"delta_sd must be >= 0, got {delta_sd}")
    if undefined == "unknown":
        undefined = "last_observed"
    grid_arr = np.unique(np.asarray(DEFAULT_GRID if grid is None else grid, dtype=float))
    rng = np.random.default_rng([seed, 11])
    rows, tip_rows, heat, draws_out, fits, notes = [], [], {}, {}, {}, []
    for k, site in enumerate(sites):
        frame, _ = analysis_frame(derived, undefined, rule, design=sd.design)
        bf = fit_bayes(derived, "lmm", site, priors, undefined, rule, draws=draws, tune=tune, chains=chains,
                       seed=seed, target_accept=target_accept, cache_dir=cache_dir, design=sd.design)
        fits[site] = bf
        data = prepare_site(bf.fit, frame, site, endpoint_month, sd.levels)
        if data.dropout.sum() == 0:
            notes.append(f"{site_label(site)}: no dropouts among the modelled patients; every scenario equals MAR.")
        for sc, name in zip(scenarios, names):
            base = {"scenario": name, "unit": sc.unit, "delta_sd": delta_sd,
                    **{f"delta_{lv}": sc.delta_of(lv, sd.levels[0]) for lv in sd.levels},
                    **{f"scale_{lv}": sc.scale_of(lv, sd.levels[0]) for lv in sd.levels}}
            for measure in ("pct", "abs"):
                dr = data.estimand_draws(sc, measure, delta_sd, rng)
                rows += _summary_rows(dr, sd, site, measure, {**base, "method": METHOD_MODEL}, data)
                for key, x in dr.items():
                    draws_out[f"{name} | {site} | {key} | {measure}"] = x
            pooled = endpoint_analysis(data.impute(sc, m, rng), data.group, site, endpoint_month,
                                       levels=data.levels)
            method = f"MI from the Bayesian posterior predictive (m={m}, Rubin)"
            for key in data.keys:
                ename = sd.estimand(site, key, "pct")
                r = pooled[ename]
                sel = _selection(data, key)
                g, comparison = key_group(key, data.levels)
                rows.append({**base, "method": method, "site": site, "estimand": ename, "group": g,
                             "comparison": comparison, "measure": "pct", "estimate": r.estimate, "se": r.se,
                             "ci_low": r.ci_low, "ci_high": r.ci_high, "p_lt_0": np.nan, "p": r.p, "df": r.df,
                             "n": int(sel.sum()), "n_dropouts": int((sel & data.dropout).sum()), "m": r.m})
        t_rows, grids = tipping_points(data, "pct", grid_arr, sd.estimands(site, "pct"))
        tip_rows += t_rows
        heat.update(grids)
    table = pd.DataFrame(rows, columns=table_columns(sd.levels))
    flips = pd.DataFrame(tip_rows, columns=TIPPING_COLUMNS)
    prior_text = f", each with a N(delta, {delta_sd:g}) prior" if delta_sd > 0 else ""
    text = [f"Delta-adjusted pattern mixture in the Bayesian LMM: the posterior of each group's month-"
            f"{endpoint_month:g} change when its dropouts (no DXA at month {endpoint_month:g}) follow their MAR "
            f"prediction scaled by s and shifted by delta per year after their last DXA{prior_text}; the fit is the "
            "model's own (the likelihood of the observed data does not depend on delta), so every scenario and "
            f"grid point is computed from one set of draws. Alongside, MI with {m} imputations drawn from the "
            "model's posterior predictive, analysed as the primary MI and pooled by Rubin's rules. "
            f"Groups: {fits[sites[0]].strategy}."]
    headline = [sd.comparison_key(lv) for lv, _ in sd.comparisons] + [sd.levels[0]]
    for site in sites:
        sub = table[(table["site"] == site) & (table["method"] == METHOD_MODEL) & (table["measure"] == "pct")]
        for key in headline:
            s = sub[sub["estimand"] == sd.estimand(site, key, "pct")]
            states = [state(r["ci_low"], r["ci_high"]) for _, r in s.iterrows()]
            changed = [f"{r['scenario']} ({r['estimate']:.2f}, {r['ci_low']:.2f} to {r['ci_high']:.2f})"
                       for (_, r), st in zip(s.iterrows(), states) if st != states[0]]
            r0 = s.iloc[0]
            head = (f"{r0['estimand']}: posterior median {r0['estimate']:.2f}, 95% CrI {r0['ci_low']:.2f} to "
                    f"{r0['ci_high']:.2f} under '{r0['scenario']}' (P(< 0) = {r0['p_lt_0']:.3f})")
            text.append(head + ("; the 95% CrI's side of 0 is the same in every scenario." if not changed else
                                "; it changes under " + "; ".join(changed) + "."))
        f = flips[flips["site"] == site]
        for key in headline:
            ff = f[f["estimand"] == sd.estimand(site, key, "pct")]
            if ff.empty:
                text.append(f"{site_label(site)}, {sd.key_label(key)}: no tipping point within the grid.")
                continue
            parts = [f"{r['ray']} at {r['tipping_delta']:+.2f} %/yr (CrI then {r['to_state']})"
                     for _, r in ff.iterrows()]
            text.append(f"{site_label(site)}, {sd.key_label(key)} (Bayesian tipping points, exact): "
                        + "; ".join(parts) + ".")
    for site, bf in fits.items():
        if not bf.fit.passed:
            text.insert(0, f"CONVERGENCE FAILED for the LMM at {site}: " + "; ".join(bf.fit.diagnostics.failures)
                        + ". The results below rest on a fit that failed its checks.")
    text += notes
    model_rows = table[(table["method"] == METHOD_MODEL) & (table["measure"] == "pct")]
    fig = interval_figure(model_rows, "scenario", names, sites,
                          f"Delta-adjusted pattern mixture in the Bayesian LMM, % change to month {endpoint_month:g} "
                          "(median, 95% CrI)", label, levels=sd.levels)
    fig_tip = tipping_heatmap(heat, grid_arr, grid_arr, flips, "pct", endpoint_month, label, interval="95% CrI",
                              estimate="posterior median",
                              title="Tipping points in the Bayesian LMM (95% CrI of the pattern-mixture estimand; "
                                    "delta per year after the last DXA)")
    forest = pd.DataFrame({"estimand": model_rows["estimand"], "site": model_rows["site"],
                           "analysis": "Bayesian LMM + delta: " + model_rows["scenario"],
                           "estimate": model_rows["estimate"], "low": model_rows["ci_low"],
                           "high": model_rows["ci_high"], "kind": "bayesian"})[FOREST_COLUMNS]
    return SensitivityResult(
        name="delta_bayes", title="Delta-adjusted pattern mixture in the Bayesian model (and Bayesian MI)",
        table=table, text=text, figures={"sensitivity_delta_bayes": fig, "sensitivity_tipping_bayes": fig_tip},
        forest_rows=forest.reset_index(drop=True),
        settings={"sites": list(sites), "groups": list(sd.levels), "scenarios": [s.settings(sd.levels) for s in scenarios],
                  "priors": priors, "undefined": undefined, "m": int(m), "delta_sd": float(delta_sd),
                  "grid": grid_arr.tolist(), "sampler": {"draws": draws, "tune": tune, "chains": chains,
                                                         "seed": seed, "target_accept": target_accept},
                  "endpoint_month": endpoint_month,
                  "fit_cache": {s: f.extra.get("cache") for s, f in fits.items()},
                  "diagnostics": {s: str(f.fit.diagnostics) for s, f in fits.items()},
                  "failed_fits": [s for s, f in fits.items() if not f.fit.passed],
                  "fit_files": [f.extra["cache_path"] for f in fits.values() if f.extra.get("cache_path")],
                  "tipping_points": flips.replace({np.nan: None}).to_dict(orient="records")},
        draws=draws_out)


def bayes_delta_from_config(derived: pd.DataFrame, config: Any, cache_dir: str | Path | None = None,
                            design: Any = None) -> SensitivityResult:
    """:func:`bayes_delta_analysis` with the default scenarios and a run configuration's settings
    (the same LMM settings as the run's main fit, so the fit comes from the cache)."""
    sd = sensitivity_design(derived, design, getattr(config, "sites", None), getattr(config, "endpoint_month", None))
    undefined = getattr(config, "undefined_responders", "last_observed")
    notes = []
    if undefined == "unknown" and sd.kind == "derived":
        notes.append("The plan keeps undefined responder status as an 'unknown' group; the delta analysis needs two "
                     "groups, so status was classified from the last observed DAS28-CRP instead.")
    res = bayes_delta_analysis(
        derived, sites=sd.sites, priors=config.priors, undefined=undefined, rule=config.responder.rule(),
        draws=config.draws, tune=config.tune, chains=config.chains, seed=config.seed,
        target_accept=config.target_accept, endpoint_month=sd.endpoint, cache_dir=cache_dir,
        label="SYNTHETIC (RAJAK digital twin)" if config.data is None else None, design=sd.design)
    res.text = notes + res.text
    return res
