r"""One site's trajectory-LMM posterior as the Bayesian delta adjustment needs it, and its exact
tipping points (the maths is in :mod:`analysis.sensitivity.bayes_delta`).

The LMM (:mod:`models.trajectory`) has, for the design's groups :math:`g = 0, \dots, K - 1` (the
reference first), fixed effects ``b`` = (intercept :math:`b_0`, time :math:`b_1`, then
:math:`b_{0g}, b_{1g}` = ``<level>, time:<level>`` for every other group; :math:`b_{00} = b_{10} =
0`), patient effects ``u`` and the residual SD ``sigma``. Patient :math:`i` of group :math:`g_i` has
:math:`a_{0i} = b_0 + b_{0 g_i} + u_{0i}`, :math:`a_{1i} = b_1 + b_{1 g_i} + u_{1i}` (time in
years), and group :math:`g`'s MAR change to the endpoint :math:`T` (months) is
:math:`F_g = (b_1 + b_{1g})\,T/12` g/cm^2, or :math:`100 F_g / (b_0 + b_{0g})` %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.sensitivity.delta import UNITS, DeltaScenario
from analysis.study.groups import group_levels

__all__ = ["BayesDeltaSite", "prepare_site", "state", "tipping_points"]


def state(low: float, high: float) -> str:
    """The side of 0 of an interval."""
    return "above 0" if low > 0 else ("below 0" if high < 0 else "includes 0")


@dataclass
class BayesDeltaSite:
    """What the adjustments need from one site's LMM posterior (``S`` draws, ``n`` patients).

    Attributes
    ----------
    site : str
    patient_ids : ndarray of str
    group : ndarray of int, (n,)
        Code of each patient's level.
    levels : tuple of str
        The groups, the reference first.
    dropout : ndarray of bool, (n,)
        No DXA at the endpoint month.
    baseline : ndarray, (n,)
        Observed month-0 BMD (g/cm^2).
    observed_end : ndarray, (n,)
        Observed endpoint BMD (NaN for dropouts).
    years_after : ndarray, (n,)
        Years from the last observed DXA to the endpoint (0 for completers).
    fixed : dict
        ``{"pct" | "abs": (S, K)}``: the MAR change of each group per draw.
    expected_end : ndarray, (S, n)
        :math:`a_{0i} + a_{1i} T` per draw.
    sigma : ndarray, (S,)
        Residual SD per draw (g/cm^2).
    endpoint_month : float
    """

    site: str
    patient_ids: np.ndarray
    group: np.ndarray
    levels: tuple[str, ...]
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

    @property
    def keys(self) -> list[str]:
        """Every group, then ``"<level> - <reference>"`` for every other group."""
        return [*self.levels, *(f"{lv} - {self.levels[0]}" for lv in self.levels[1:])]

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
        """(K,): per group, :math:`\\bar w_g = \\sum_{i \\in D_g} w_i / n_g`."""
        w = np.where(self.dropout, self.kappa(unit, measure) * self.years_after, 0.0)
        return np.array([w[self.group == g].sum() / max((self.group == g).sum(), 1) for g in range(len(self.levels))])

    def estimand_draws(self, scenario: DeltaScenario, measure: str = "pct", delta_sd: float = 0.0,
                       rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """``{key: (S,)}`` (:attr:`keys`): the pattern-mixture estimand per draw
        (:mod:`analysis.sensitivity.bayes_delta`, item 1)."""
        if measure not in ("pct", "abs"):
            raise ValueError(f"measure must be 'pct' or 'abs', got {measure!r}")
        ref = self.levels[0]
        deltas = np.array([scenario.delta_of(lv, ref) for lv in self.levels], dtype=float)
        scales = np.array([scenario.scale_of(lv, ref) for lv in self.levels], dtype=float)
        k = len(self.levels)
        if delta_sd > 0:
            rng = rng if rng is not None else np.random.default_rng(0)
            d = deltas[None, :] + delta_sd * rng.standard_normal((self.n_draws, k))
        else:
            d = np.broadcast_to(deltas, (self.n_draws, k))
        wbar = self.weights(scenario.unit, measure)
        change = self.expected_change(measure)
        out = {}
        for g, key in enumerate(self.levels):
            sel = (self.group == g) & self.dropout
            n_g = max(int((self.group == g).sum()), 1)
            scale_term = (scales[g] - 1.0) * change[:, sel].sum(axis=1) / n_g if scales[g] != 1 else 0.0
            out[key] = self.fixed[measure][:, g] + scale_term + d[:, g] * wbar[g]
        for lv in self.levels[1:]:
            out[f"{lv} - {ref}"] = out[lv] - out[ref]
        return out

    def impute(self, scenario: DeltaScenario, m: int, rng: np.random.Generator) -> np.ndarray:
        """(m, n): completed endpoint % changes from ``m`` posterior draws (evenly spaced), dropouts
        drawn from the posterior predictive and adjusted (:mod:`analysis.sensitivity.bayes_delta`,
        item 2)."""
        if m < 2:
            raise ValueError(f"m must be at least 2, got {m}")
        idx = np.linspace(0, self.n_draws - 1, min(m, self.n_draws)).round().astype(int)
        if m > self.n_draws:
            idx = np.resize(idx, m)
        y = self.expected_end[idx] + self.sigma[idx, None] * rng.standard_normal((m, self.group.size))
        pct = 100.0 * (y - self.baseline) / self.baseline
        ref = self.levels[0]
        scale = np.array([scenario.scale_of(lv, ref) for lv in self.levels])[self.group]
        delta = np.array([scenario.delta_of(lv, ref) for lv in self.levels])[self.group]
        adjusted = scale * pct + delta * self.kappa(scenario.unit, "pct") * self.years_after
        observed = 100.0 * (self.observed_end - self.baseline) / self.baseline
        return np.where(self.dropout, adjusted, observed)


def _levels_of(frame: pd.DataFrame, levels) -> tuple[str, ...]:
    if levels is not None:
        return tuple(levels)
    opts = frame.attrs.get("model_options") or {}
    if opts.get("levels"):
        return tuple(opts["levels"])
    return tuple(group_levels(frame, None, "exclude"))


def prepare_site(fit: Any, frame: pd.DataFrame, site: str, endpoint_month: float | None = None,
                 levels=None) -> BayesDeltaSite:
    """Collect :class:`BayesDeltaSite` from a trajectory-LMM fit and the frame it was fitted on.

    Parameters
    ----------
    fit : FitResult
        Of :func:`models.trajectory.build_trajectory_model` (marginal form, no covariates): its
        posterior holds ``b`` (coef), ``u`` (patient, effect) and ``sigma``.
    frame : DataFrame
        The analysis frame the model saw (:func:`analysis.bayes.fit.analysis_frame`: the group of
        each patient in ``analysis_group``, or a responder study's ``responder``).
    site : str
    endpoint_month : float, optional
        Default: the frame's (its ``attrs["model_options"]``), else 12.
    levels : sequence of str, optional
        The model's groups, the reference first (default: the frame's).
    """
    post = fit.posterior["posterior"]
    if "b" not in post:
        raise ValueError("the fit has no coefficients 'b' (a trajectory LMM is needed)")
    built = None
    if "u" not in post:  # a large fit keeps no patient effects: drawn on request, as the fit would have drawn them
        from analysis.bayes.fit import MODELS

        built = MODELS["lmm"](frame, site, None)
        if not hasattr(built, "iter_patient_effects"):
            raise ValueError("the fit has no patient effects 'u' (a trajectory LMM is needed)")
        post = post.to_dataset() if hasattr(post, "to_dataset") else post
    if "gamma" in post:
        raise ValueError("the delta adjustment in the Bayesian model needs the LMM without covariates")
    levels = _levels_of(frame, levels)
    if endpoint_month is None:
        endpoint_month = float((frame.attrs.get("model_options") or {}).get("endpoint_month", 12.0))
    col = f"bmd_{site}"
    obs = frame.loc[frame[col].notna(), ["patient_id", "month", col]].copy()
    obs["patient_id"] = obs["patient_id"].astype(str)
    ids = np.asarray(post["u"].coords["patient"].values if built is None else built.prepared.patient_ids).astype(str)
    if not np.array_equal(ids, np.sort(obs["patient_id"].unique())):
        raise ValueError("the fit's patients differ from the frame's")
    per = frame.assign(patient_id=frame["patient_id"].astype(str)).groupby("patient_id").first().reindex(ids)
    if "analysis_group" in per.columns and per["analysis_group"].notna().all():
        codes = per["analysis_group"].map({lv: k for k, lv in enumerate(levels)})
    else:
        codes = per["responder"].astype(float)
    if codes.isna().any():
        raise ValueError(f"{site}: a patient's group is not one of {levels}")
    g = codes.to_numpy(dtype=int)
    stack = lambda da: np.asarray(da.stack(sample=("chain", "draw")).transpose("sample", ...).values, dtype=float)
    b = stack(post["b"])  # (S, 2K): intercept, time, then (level, time:level) per non-reference level
    k = len(levels)
    if b.shape[1] != 2 * k:
        raise ValueError(f"the fit has {b.shape[1]} coefficients; {2 * k} expected for groups {levels}")
    sigma = stack(post["sigma"]).reshape(-1)
    T = endpoint_month / 12.0
    shift0, shift1 = np.zeros((b.shape[0], k)), np.zeros((b.shape[0], k))
    shift0[:, 1:], shift1[:, 1:] = b[:, 2::2], b[:, 3::2]
    # a_0i + a_1i T per draw, chunk by chunk over the draws: never every draw's patient effects (S x n x 2)
    # and their temporaries at once (a 50,000-patient fit held ~4 GB here; issue #18)
    expected_end = np.empty((b.shape[0], ids.size))
    for lo, hi, u in _effect_chunks(post, built):
        a0 = b[lo:hi, [0]] + shift0[lo:hi][:, g] + u[:, :, 0]
        a1 = b[lo:hi, [1]] + shift1[lo:hi][:, g] + u[:, :, 1]
        expected_end[lo:hi] = a0 + a1 * T
    change = (b[:, [1]] + shift1) * T
    base_mean = b[:, [0]] + shift0
    wide = obs.pivot_table(index="patient_id", columns="month", values=col, aggfunc="first").reindex(ids)
    if 0 not in wide.columns or wide[0].isna().any():
        missing = wide.index[wide[0].isna()].tolist() if 0 in wide.columns else list(ids)
        raise ValueError(f"{site}: patients without a baseline DXA cannot be delta-adjusted: {missing[:5]}")
    baseline = wide[0].to_numpy(dtype=float)
    end = wide[endpoint_month].to_numpy(dtype=float) if endpoint_month in wide.columns else np.full(ids.size, np.nan)
    last = obs.groupby("patient_id")["month"].max().reindex(ids).to_numpy(dtype=float)
    dropout = np.isnan(end)
    return BayesDeltaSite(site=site, patient_ids=ids, group=g, levels=levels, dropout=dropout, baseline=baseline,
                          observed_end=end, years_after=np.where(dropout, (endpoint_month - last) / 12.0, 0.0),
                          fixed={"abs": change, "pct": 100.0 * change / base_mean},
                          expected_end=expected_end, sigma=sigma, endpoint_month=float(endpoint_month))


def _effect_chunks(post: Any, built: Any = None):
    """The patient effects ``(lo, hi, u)`` (``u``: draws ``lo:hi`` of the chain-major flattened draws,
    patient, effect; g/cm^2 and g/cm^2/yr) in chunks: views of the posterior's ``u``, or, without it,
    drawn on request by ``built`` (:meth:`models.trajectory.TrajectoryModel.iter_patient_effects`,
    the same draws as ``patient_effects``)."""
    if built is not None:
        yield from built.iter_patient_effects(post)
        return
    from models.marginal_effects import chunk_draws

    u = np.asarray(post["u"].transpose("chain", "draw", "patient", "effect").values, dtype=float)
    u = u.reshape(-1, *u.shape[2:])
    step = chunk_draws(u.shape[0], u.shape[1] * 2)
    for lo in range(0, u.shape[0], step):
        yield lo, min(u.shape[0], lo + step), u[lo:lo + step]


def tipping_points(data: BayesDeltaSite, unit: str, grid: np.ndarray, names: dict[str, str]
                   ) -> tuple[list[dict[str, Any]], dict[tuple, dict[str, dict[str, np.ndarray]]]]:
    """Exact tipping points on the rays of every comparison (only the reference's dropouts shifted,
    only the group's, both alike; a single arm: its one group), and the grids of ETI bounds for the
    heat map (:func:`analysis.sensitivity.tipping_figure.tipping_heatmap`).

    ``names`` maps each key of :attr:`BayesDeltaSite.keys` to its estimand name. The estimand is
    linear in delta: the quantile :math:`q(\\delta) = q(0) + \\delta\\, \\partial\\theta/\\partial\\delta`
    crosses 0 at :math:`-q(0) / (\\partial\\theta/\\partial\\delta)`.
    """
    base = data.estimand_draws(DeltaScenario(unit=unit), "pct")
    w = data.weights(unit, "pct")  # d theta_g / d delta_g
    q = {k: np.quantile(v, [0.025, 0.5, 0.975]) for k, v in base.items()}
    ref = data.levels[0]
    pairs = [(lv, f"{lv} - {ref}") for lv in data.levels[1:]] or [(None, None)]
    rows, grids = [], {}
    for lv, cmp in pairs:
        if lv is None:  # single arm: one group, one ray
            slope = {ref: {ref: w[0]}}
            keys = [(ref, ref)]
        else:
            wg = w[data.levels.index(lv)]
            slope = {ref: {ref: w[0], lv: 0.0, cmp: -w[0]}, lv: {ref: 0.0, lv: wg, cmp: wg},
                     "both": {ref: w[0], lv: wg, cmp: wg - w[0]}}
            keys = [(ref, ref), (cmp, "difference"), (lv, lv)]
        comparison = ref if lv is None else cmp
        for key, gcol in keys:
            s0 = state(q[key][0], q[key][2])
            for ray, slopes in slope.items():
                k = slopes[key]
                if k == 0:
                    continue
                for direction in (-1.0, 1.0):  # the bound that crosses 0 first, each way along the ray
                    cands = [-bd / k for bd in (q[key][0], q[key][2]) if np.sign(-bd / k) == direction]
                    cands = [c for c in cands if grid.min() <= c <= grid.max()]
                    if not cands:
                        continue
                    t = min(cands, key=abs)
                    eps = 1e-9 * direction
                    lo, hi = q[key][0] + k * (t + eps), q[key][2] + k * (t + eps)
                    rows.append({"site": data.site, "comparison": comparison, "estimand": names[key], "group": gcol,
                                 "ray": ray, "from_state": s0, "to_state": state(lo, hi), "tipping_delta": float(t),
                                 "unit": unit})
        if lv is None:
            grids[(data.site, ref, None)] = {ref: {"estimate": q[ref][1] + w[0] * grid, "ci_low": q[ref][0] + w[0] * grid,
                                                   "ci_high": q[ref][2] + w[0] * grid}}
            continue
        dref, dgrp = np.meshgrid(grid, grid, indexing="ij")
        cell = {}
        for key, _ in keys:
            kr, kg = slope[ref][key], slope[lv][key]
            shift = kr * dref + kg * dgrp
            cell[key] = {"estimate": q[key][1] + shift, "ci_low": q[key][0] + shift, "ci_high": q[key][2] + shift}
        grids[(data.site, ref, lv)] = cell
    return rows, grids
