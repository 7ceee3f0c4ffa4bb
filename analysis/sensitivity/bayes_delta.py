r"""Delta-adjusted pattern mixture in the Bayesian model, and by MI from its posterior predictive.

The MI version (:mod:`analysis.sensitivity.delta`) imputes from a frequentist MMRM. Here the same
delta scenarios act on the posterior of the Bayesian trajectory LMM (:mod:`models.trajectory`,
marginal form, fitted once per site through the fit cache, so ``rajak run`` reuses its main fit):

1. **In the model** (the posterior of the pattern-mixture estimand). A pattern-mixture model
   leaves the likelihood of the observed data unchanged, so :math:`\delta` needs no refit: it acts
   on the estimand. With :math:`F_g` the MAR (LMM) month-:math:`T` change of group :math:`g` (the
   fixed effects: :math:`100\,(b_1 + b_3 g) T / (b_0 + b_2 g)` in %, :math:`(b_1 + b_3 g) T` in
   g/cm^2), :math:`D_g` the group's dropouts (no DXA at month :math:`T`) among its :math:`n_g`
   patients, :math:`C_i` dropout :math:`i`'s change from its observed baseline :math:`y_{i0}`
   expected under MAR, :math:`C_i = 100\,(a_{0i} + a_{1i} T - y_{i0}) / y_{i0}` (or
   :math:`a_{0i} + a_{1i} T - y_{i0}`), with :math:`a_i` the patient's effects drawn from their
   exact conditional (``u``), and :math:`w_i = \kappa_i (T - t_{d_i})` the years after its last
   DXA times the unit conversion of :mod:`~analysis.sensitivity.delta`, every posterior draw gives

   .. math::

       \theta_g(\delta_g, s_g) = F_g + \frac{1}{n_g} \sum_{i \in D_g}
           \bigl[(s_g - 1)\, C_i + \delta_g\, w_i\bigr],

   the population mean change when the group's dropouts (in the observed proportion) follow their
   MAR prediction scaled by :math:`s_g` and shifted by :math:`\delta_g` per year after dropout.
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
   (group means, Welch difference) and pooled by Rubin's rules
   (:func:`analysis.sensitivity.mi_reporting.endpoint_analysis`).

Patients enter with the groups of the run's strategy for undefined responder status
(:func:`analysis.bayes.fit.analysis_frame`); the LMM is fitted without covariates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.sensitivity.delta import DEFAULT_SCENARIOS, UNITS, DeltaScenario
from analysis.sensitivity.mi_reporting import endpoint_analysis, interval_figure
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.sensitivity.site_data import GROUPS
from analysis.study.clinical import ResponderRule
from analysis.study.estimands import SITE_LABELS, difference_name, estimand_name

__all__ = ["BayesDeltaSite", "prepare_site", "TABLE_COLUMNS", "TIPPING_COLUMNS", "bayes_delta_analysis",
           "bayes_delta_from_config"]

TABLE_COLUMNS = ["site", "scenario", "method", "delta_non_responders", "delta_responders", "scale_non_responders",
                 "scale_responders", "unit", "delta_sd", "estimand", "group", "measure", "estimate", "se", "ci_low",
                 "ci_high", "p_lt_0", "p", "df", "n", "n_dropouts", "m"]
TIPPING_COLUMNS = ["site", "estimand", "group", "ray", "from_state", "to_state", "tipping_delta", "unit"]
METHOD_MODEL = "Bayesian LMM, delta in the model"
KEYS = ("non-responder", "responder", "difference")


@dataclass
class BayesDeltaSite:
    """What the adjustments need from one site's LMM posterior (``S`` draws, ``n`` patients).

    Attributes
    ----------
    site : str
    patient_ids : ndarray of str
    group : ndarray of int, (n,)
        0 non-responder, 1 responder.
    dropout : ndarray of bool, (n,)
        No DXA at the endpoint month.
    baseline : ndarray, (n,)
        Observed month-0 BMD (g/cm^2).
    observed_end : ndarray, (n,)
        Observed endpoint BMD (NaN for dropouts).
    years_after : ndarray, (n,)
        Years from the last observed DXA to the endpoint (0 for completers).
    fixed : dict
        ``{"pct" | "abs": (S, 2)}``: the MAR change of each group per draw.
    expected_end : ndarray, (S, n)
        :math:`a_{0i} + a_{1i} T` per draw.
    sigma : ndarray, (S,)
        Residual SD per draw (g/cm^2).
    endpoint_month : float
    """

    site: str
    patient_ids: np.ndarray
    group: np.ndarray
    dropout: np.ndarray
    baseline: np.ndarray
    observed_end: np.ndarray
    years_after: np.ndarray
    fixed: dict[str, np.ndarray]
    expected_end: np.ndarray
    sigma: np.ndarray
    endpoint_month: float

    @property
    def n_draws(self) -> int:
        return int(self.sigma.shape[0])

    def kappa(self, unit: str, measure: str) -> np.ndarray:
        """Per patient: the outcome change per unit of delta (``unit``) per year on ``measure``."""
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        if unit == "pct":
            return np.ones_like(self.baseline) if measure == "pct" else self.baseline / 100.0
        return 100.0 / self.baseline if measure == "pct" else np.ones_like(self.baseline)

    def expected_change(self, measure: str) -> np.ndarray:
        """(S, n): the MAR-expected change from the observed baseline at the endpoint."""
        diff = self.expected_end - self.baseline[None, :]
        return 100.0 * diff / self.baseline[None, :] if measure == "pct" else diff

    def weights(self, unit: str, measure: str) -> np.ndarray:
        """(2,): per group, :math:`\\bar w_g = \\sum_{i \\in D_g} w_i / n_g`."""
        w = np.where(self.dropout, self.kappa(unit, measure) * self.years_after, 0.0)
        return np.array([w[self.group == g].sum() / max((self.group == g).sum(), 1) for g in (0, 1)])

    def estimand_draws(self, scenario: DeltaScenario, measure: str = "pct", delta_sd: float = 0.0,
                       rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """``{"non-responder", "responder", "difference": (S,)}``: the pattern-mixture estimand per
        draw (module docstring, item 1)."""
        if measure not in ("pct", "abs"):
            raise ValueError(f"measure must be 'pct' or 'abs', got {measure!r}")
        deltas = np.array([scenario.non_responders, scenario.responders], dtype=float)
        scales = np.array([scenario.scale_non_responders, scenario.scale_responders], dtype=float)
        if delta_sd > 0:
            rng = rng if rng is not None else np.random.default_rng(0)
            d = deltas[None, :] + delta_sd * rng.standard_normal((self.n_draws, 2))
        else:
            d = np.broadcast_to(deltas, (self.n_draws, 2))
        wbar = self.weights(scenario.unit, measure)
        change = self.expected_change(measure)
        out = {}
        for g, key in enumerate(GROUPS):
            sel = (self.group == g) & self.dropout
            n_g = max(int((self.group == g).sum()), 1)
            scale_term = (scales[g] - 1.0) * change[:, sel].sum(axis=1) / n_g if scales[g] != 1 else 0.0
            out[key] = self.fixed[measure][:, g] + scale_term + d[:, g] * wbar[g]
        out["difference"] = out["responder"] - out["non-responder"]
        return out

    def impute(self, scenario: DeltaScenario, m: int, rng: np.random.Generator) -> np.ndarray:
        """(m, n): completed endpoint % changes from ``m`` posterior draws (evenly spaced), dropouts
        drawn from the posterior predictive and adjusted (module docstring, item 2)."""
        if m < 2:
            raise ValueError(f"m must be at least 2, got {m}")
        idx = np.linspace(0, self.n_draws - 1, min(m, self.n_draws)).round().astype(int)
        if m > self.n_draws:
            idx = np.resize(idx, m)
        y = self.expected_end[idx] + self.sigma[idx, None] * rng.standard_normal((m, self.group.size))
        pct = 100.0 * (y - self.baseline) / self.baseline
        resp = self.group == 1
        scale = np.where(resp, scenario.scale_responders, scenario.scale_non_responders)
        delta = np.where(resp, scenario.responders, scenario.non_responders)
        adjusted = scale * pct + delta * self.kappa(scenario.unit, "pct") * self.years_after
        observed = 100.0 * (self.observed_end - self.baseline) / self.baseline
        return np.where(self.dropout, adjusted, observed)


def prepare_site(fit: Any, frame: pd.DataFrame, site: str, endpoint_month: float = 12) -> BayesDeltaSite:
    """Collect :class:`BayesDeltaSite` from a trajectory-LMM fit and the frame it was fitted on.

    Parameters
    ----------
    fit : FitResult
        Of :func:`models.trajectory.build_trajectory_model` (marginal form, no covariates): its
        posterior holds ``b`` (coef), ``u`` (patient, effect) and ``sigma``.
    frame : DataFrame
        The analysis frame the model saw (:func:`analysis.bayes.fit.analysis_frame`).
    """
    from models.trajectory import SITES, prepare_trajectory_data

    post = fit.posterior["posterior"]
    if "u" not in post or "b" not in post:
        raise ValueError("the fit has no patient effects 'u' or coefficients 'b' (a trajectory LMM is needed)")
    if "gamma" in post:
        raise ValueError("the delta adjustment in the Bayesian model needs the LMM without covariates")
    prep = prepare_trajectory_data(frame, site)
    ids = np.asarray(post["u"].coords["patient"].values).astype(str)
    if not np.array_equal(ids, prep.patient_ids):
        raise ValueError("the fit's patients differ from the frame's")
    stack = lambda da: np.asarray(da.stack(sample=("chain", "draw")).transpose("sample", ...).values, dtype=float)  # noqa: E731
    b = stack(post["b"])  # (S, 4): intercept, time, responder, time:responder
    u = stack(post["u"])  # (S, n, 2)
    sigma = stack(post["sigma"]).reshape(-1)
    T = endpoint_month / 12.0
    g = prep.responder.astype(int)
    a0 = b[:, [0]] + b[:, [2]] * g[None, :] + u[:, :, 0]
    a1 = b[:, [1]] + b[:, [3]] * g[None, :] + u[:, :, 1]
    change = np.stack([b[:, 1] * T, (b[:, 1] + b[:, 3]) * T], axis=1)
    base_mean = np.stack([b[:, 0], b[:, 0] + b[:, 2]], axis=1)
    col = SITES[site]
    obs = frame.loc[frame[col].notna(), ["patient_id", "month", col]].copy()
    obs["patient_id"] = obs["patient_id"].astype(str)
    wide = obs.pivot_table(index="patient_id", columns="month", values=col, aggfunc="first").reindex(ids)
    if 0 not in wide.columns or wide[0].isna().any():
        missing = wide.index[wide[0].isna()].tolist() if 0 in wide.columns else list(ids)
        raise ValueError(f"{site}: patients without a baseline DXA cannot be delta-adjusted: {missing[:5]}")
    baseline = wide[0].to_numpy(dtype=float)
    end = wide[endpoint_month].to_numpy(dtype=float) if endpoint_month in wide.columns else np.full(ids.size, np.nan)
    last = obs.groupby("patient_id")["month"].max().reindex(ids).to_numpy(dtype=float)
    dropout = np.isnan(end)
    return BayesDeltaSite(site=site, patient_ids=ids, group=g, dropout=dropout, baseline=baseline,
                          observed_end=end, years_after=np.where(dropout, (endpoint_month - last) / 12.0, 0.0),
                          fixed={"abs": change, "pct": 100.0 * change / base_mean},
                          expected_end=a0 + a1 * T, sigma=sigma, endpoint_month=float(endpoint_month))


def _state(low: float, high: float) -> str:
    return "above 0" if low > 0 else ("below 0" if high < 0 else "includes 0")


def _summary_rows(draws: dict[str, np.ndarray], site: str, month: float, measure: str, extra: dict[str, Any],
                  data: BayesDeltaSite) -> list[dict[str, Any]]:
    rows = []
    for key in KEYS:
        x = draws[key]
        lo, hi = np.quantile(x, [0.025, 0.975])
        name = (difference_name(site, measure, month) if key == "difference"
                else estimand_name(site, key, measure, month))
        sel = np.ones_like(data.dropout) if key == "difference" else data.group == GROUPS.index(key)
        rows.append({**extra, "site": site, "estimand": name, "group": key, "measure": measure,
                     "estimate": float(np.median(x)), "se": float(np.std(x, ddof=1)), "ci_low": float(lo),
                     "ci_high": float(hi), "p_lt_0": float(np.mean(x < 0)), "p": np.nan, "df": np.nan,
                     "n": int(sel.sum()), "n_dropouts": int((sel & data.dropout).sum()), "m": data.n_draws})
    return rows


def _tipping(data: BayesDeltaSite, unit: str, grid: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """Exact tipping points on the three rays, and the grid of ETI bounds for the heat map."""
    base = data.estimand_draws(DeltaScenario(unit=unit), "pct")
    w = data.weights(unit, "pct")  # d theta_g / d delta_g
    q = {k: np.quantile(v, [0.025, 0.5, 0.975]) for k, v in base.items()}
    # d theta_key / d delta along each ray, by key
    slope = {"non-responders": {"non-responder": w[0], "responder": 0.0, "difference": -w[0]},
             "responders": {"non-responder": 0.0, "responder": w[1], "difference": w[1]},
             "both": {"non-responder": w[0], "responder": w[1], "difference": w[1] - w[0]}}
    rows = []
    for key in KEYS:
        s0 = _state(q[key][0], q[key][2])
        for ray, slopes in slope.items():
            k = slopes[key]
            if k == 0:
                continue
            # the bound that crosses 0 first, in each direction along the ray
            for direction in (-1.0, 1.0):
                cands = [-b / k for b in (q[key][0], q[key][2]) if np.sign(-b / k) == direction]
                cands = [c for c in cands if grid.min() <= c <= grid.max()]
                if not cands:
                    continue
                t = min(cands, key=abs)
                eps = 1e-9 * direction
                lo, hi = q[key][0] + k * (t + eps), q[key][2] + k * (t + eps)
                name = (difference_name(data.site, "pct", data.endpoint_month) if key == "difference"
                        else estimand_name(data.site, key, "pct", data.endpoint_month))
                rows.append({"site": data.site, "estimand": name, "group": key, "ray": ray, "from_state": s0,
                             "to_state": _state(lo, hi), "tipping_delta": float(t), "unit": unit})
    dnr, dr = np.meshgrid(grid, grid, indexing="ij")
    grids = {}
    for key in KEYS:
        kn, kr = {"non-responder": (w[0], 0.0), "responder": (0.0, w[1]), "difference": (-w[0], w[1])}[key]
        shift = kn * dnr + kr * dr
        grids[key] = {"estimate": q[key][1] + shift, "ci_low": q[key][0] + shift, "ci_high": q[key][2] + shift}
    return rows, grids


def bayes_delta_analysis(derived: pd.DataFrame, scenarios: Sequence[DeltaScenario] = DEFAULT_SCENARIOS,
                         sites: Sequence[str] = ("spine", "femoral_neck"), *, priors: str = "default",
                         undefined: str = "last_observed", rule: ResponderRule | None = None, m: int = 200,
                         delta_sd: float = 0.0, grid: Sequence[float] | None = None, draws: int = 1000,
                         tune: int = 1000, chains: int = 4, seed: int = 0, target_accept: float = 0.9,
                         endpoint_month: float = 12, cache_dir: str | Path | None = None,
                         label: str | None = None) -> SensitivityResult:
    """Delta scenarios in the Bayesian LMM and by MI from its posterior predictive, plus the
    Bayesian tipping points.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    scenarios : sequence of DeltaScenario
        As :mod:`analysis.sensitivity.delta` (additive and multiplicative, per group).
    sites : sequence of str
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
    endpoint_month : float
    label : str, optional
        Printed on the figures.

    Returns
    -------
    SensitivityResult
        Name ``"delta_bayes"``; ``table`` (:data:`TABLE_COLUMNS`) one row per site, scenario, method,
        measure and estimand; ``settings["tipping_points"]`` (:data:`TIPPING_COLUMNS`); the
        posterior draws of every in-model estimand in ``draws``; figures ``sensitivity_delta_bayes``
        and ``sensitivity_tipping_bayes``.
    """
    from analysis.bayes.fit import analysis_frame, fit_bayes
    from analysis.sensitivity.tipping import DEFAULT_GRID, tipping_heatmap

    scenarios, sites = tuple(scenarios), tuple(sites)
    if not scenarios or not all(isinstance(s, DeltaScenario) for s in scenarios):
        raise ValueError("scenarios must be a non-empty sequence of DeltaScenario")
    names = [s.name() for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique, got {names}")
    if not sites:
        raise ValueError("sites must name at least one DXA site")
    if not (np.isfinite(delta_sd) and delta_sd >= 0):
        raise ValueError(f"delta_sd must be >= 0, got {delta_sd}")
    if undefined == "unknown":
        undefined = "last_observed"
    grid_arr = np.unique(np.asarray(DEFAULT_GRID if grid is None else grid, dtype=float))
    rng = np.random.default_rng([seed, 11])
    rows, tip_rows, heat, draws_out, fits, notes = [], [], {}, {}, {}, []
    for k, site in enumerate(sites):
        frame, strategy_text = analysis_frame(derived, undefined, rule)
        bf = fit_bayes(derived, "lmm", site, priors, undefined, rule, draws=draws, tune=tune, chains=chains,
                       seed=seed, target_accept=target_accept, cache_dir=cache_dir)
        fits[site] = bf
        data = prepare_site(bf.fit, frame, site, endpoint_month)
        if data.dropout.sum() == 0:
            notes.append(f"{SITE_LABELS.get(site, site)}: no dropouts among the modelled patients; every scenario "
                         "equals MAR.")
        for sc, name in zip(scenarios, names):
            base = {"scenario": name, "delta_non_responders": sc.non_responders, "delta_responders": sc.responders,
                    "scale_non_responders": sc.scale_non_responders, "scale_responders": sc.scale_responders,
                    "unit": sc.unit, "delta_sd": delta_sd}
            for measure in ("pct", "abs"):
                dr = data.estimand_draws(sc, measure, delta_sd, rng)
                rows += _summary_rows(dr, site, endpoint_month, measure, {**base, "method": METHOD_MODEL}, data)
                for key, x in dr.items():
                    draws_out[f"{name} | {site} | {key} | {measure}"] = x
            pooled = endpoint_analysis(data.impute(sc, m, rng), data.group, site, endpoint_month)
            method = f"MI from the Bayesian posterior predictive (m={m}, Rubin)"
            for key in KEYS:
                ename = (difference_name(site, "pct", endpoint_month) if key == "difference"
                         else estimand_name(site, key, "pct", endpoint_month))
                r = pooled[ename]
                sel = np.ones_like(data.dropout) if key == "difference" else data.group == GROUPS.index(key)
                rows.append({**base, "method": method, "site": site, "estimand": ename, "group": key,
                             "measure": "pct", "estimate": r.estimate, "se": r.se, "ci_low": r.ci_low,
                             "ci_high": r.ci_high, "p_lt_0": np.nan, "p": r.p, "df": r.df, "n": int(sel.sum()),
                             "n_dropouts": int((sel & data.dropout).sum()), "m": r.m})
        t_rows, heat[site] = _tipping(data, "pct", grid_arr)
        tip_rows += t_rows
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    flips = pd.DataFrame(tip_rows, columns=TIPPING_COLUMNS)
    prior_text = f", each with a N(delta, {delta_sd:g}) prior" if delta_sd > 0 else ""
    text = [f"Delta-adjusted pattern mixture in the Bayesian LMM: the posterior of each group's month-"
            f"{endpoint_month:g} change when its dropouts (no DXA at month {endpoint_month:g}) follow their MAR "
            f"prediction scaled by s and shifted by delta per year after their last DXA{prior_text}; the fit is the "
            "model's own (the likelihood of the observed data does not depend on delta), so every scenario and "
            f"grid point is computed from one set of draws. Alongside, MI with {m} imputations drawn from the "
            "model's posterior predictive, analysed as the primary MI and pooled by Rubin's rules. "
            f"Groups: {fits[sites[0]].strategy}."]
    for site in sites:
        sub = table[(table["site"] == site) & (table["method"] == METHOD_MODEL) & (table["measure"] == "pct")]
        for key in ("non-responder", "difference"):
            s = sub[sub["group"] == key]
            states = [_state(r["ci_low"], r["ci_high"]) for _, r in s.iterrows()]
            changed = [f"{r['scenario']} ({r['estimate']:.2f}, {r['ci_low']:.2f} to {r['ci_high']:.2f})"
                       for (_, r), st in zip(s.iterrows(), states) if st != states[0]]
            r0 = s.iloc[0]
            head = (f"{r0['estimand']}: posterior median {r0['estimate']:.2f}, 95% CrI {r0['ci_low']:.2f} to "
                    f"{r0['ci_high']:.2f} under '{r0['scenario']}' (P(< 0) = {r0['p_lt_0']:.3f})")
            text.append(head + ("; the 95% CrI's side of 0 is the same in every scenario." if not changed else
                                "; it changes under " + "; ".join(changed) + "."))
        f = flips[flips["site"] == site]
        for key in ("non-responder", "difference"):
            ff = f[f["group"] == key]
            if ff.empty:
                text.append(f"{SITE_LABELS.get(site, site)}, {key}: no tipping point within the grid.")
                continue
            parts = [f"{r['ray']} at {r['tipping_delta']:+.2f} %/yr (CrI then {r['to_state']})"
                     for _, r in ff.iterrows()]
            text.append(f"{SITE_LABELS.get(site, site)}, {key} (Bayesian tipping points, exact): " + "; ".join(parts)
                        + ".")
    for site, bf in fits.items():
        if not bf.fit.passed:
            text.insert(0, f"CONVERGENCE FAILED for the LMM at {site}: " + "; ".join(bf.fit.diagnostics.failures)
                        + ". The results below rest on a fit that failed its checks.")
    text += notes
    model_rows = table[(table["method"] == METHOD_MODEL) & (table["measure"] == "pct")]
    fig = interval_figure(model_rows, "scenario", names, sites,
                          f"Delta-adjusted pattern mixture in the Bayesian LMM, % change to month {endpoint_month:g} "
                          "(median, 95% CrI)", label)
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
        settings={"sites": list(sites), "scenarios": [s.settings() for s in scenarios],
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


def bayes_delta_from_config(derived: pd.DataFrame, config: Any, cache_dir: str | Path | None = None
                            ) -> SensitivityResult:
    """:func:`bayes_delta_analysis` with the default scenarios and a run configuration's settings
    (the same LMM settings as the run's main fit, so the fit comes from the cache)."""
    undefined = getattr(config, "undefined_responders", "last_observed")
    notes = []
    if undefined == "unknown":
        notes.append("The plan keeps undefined responder status as an 'unknown' group; the delta analysis needs two "
                     "groups, so status was classified from the last observed DAS28-CRP instead.")
    res = bayes_delta_analysis(
        derived, sites=tuple(config.sites), priors=config.priors, undefined=undefined, rule=config.responder.rule(),
        draws=config.draws, tune=config.tune, chains=config.chains, seed=config.seed,
        target_accept=config.target_accept, endpoint_month=float(config.endpoint_month), cache_dir=cache_dir,
        label="SYNTHETIC (RAJAK digital twin)" if config.data is None else None)
    res.text = notes + res.text
    return res
