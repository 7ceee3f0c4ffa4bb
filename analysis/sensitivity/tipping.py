r"""Tipping-point analysis: how far from MAR must dropouts be before a conclusion changes?

For every comparison of a group :math:`g` with the design's reference :math:`r`
(:mod:`analysis.sensitivity.design`: an arm vs placebo, each dose vs placebo, responders vs
non-responders), a 2-D grid of additive deltas (:mod:`analysis.sensitivity.delta`) —
:math:`\delta_r` for the reference's dropouts, :math:`\delta_g` for the group's, in % of baseline BMD
per year after the last observed DXA (or g/cm^2 per year) — is laid over one set of MAR imputations.
For every grid point the endpoint estimands are pooled by Rubin's rules and each *key conclusion* is
classified by its 95% CI: below 0, including 0, or above 0. The conclusions are

(a) the reference's % change (RAJAK: the non-responders lose BMD, CI below 0),
(b) the difference :math:`g - r` (CI excludes 0, i.e. :math:`p < 0.05`),
(c) the group's % change (RAJAK: the responders are stable, CI includes 0).

A single-arm study has one group, one delta and one conclusion: its own % change, on a 1-D grid.

A conclusion *flips* where its class differs from that at :math:`\delta = 0` (MAR). Tipping points
are reported on the rays from MAR — only the reference's dropouts shifted (:math:`\delta_g = 0`),
only the group's (:math:`\delta_r = 0`), both alike (:math:`\delta_r = \delta_g`; column ``ray``:
the level shifted, or ``"both"``) — in both directions: the first grid step where the class changes
brackets the point, which is then found exactly (Brent's method on the CI bound that crosses 0).

Computation
-----------
Additive deltas are applied after imputation without feeding back into it, so the imputations are
made once (fixed seed) and each grid point only shifts the imputed endpoint values. With
:math:`Y_{li}` the endpoint % change of patient :math:`i` in imputation :math:`l` and
:math:`w_i = \kappa_i (t_{end} - t_{d_i})/12` its shift per unit delta (0 if observed), a group's
mean and variance at :math:`\delta` are closed-form:

.. math::

    \bar Y_l(\delta) = \bar Y_l + \delta\,\bar w, \qquad
    (n - 1)\,s_l^2(\delta) = \textstyle\sum_i (Y_{li} - \bar Y_l)^2
        + 2\delta \sum_i (Y_{li} - \bar Y_l)(w_i - \bar w) + \delta^2 \sum_i (w_i - \bar w)^2,

so the whole grid is a few array operations followed by a vectorised form of
:func:`analysis.frequentist.imputation.rubin_pool` (same formulas: Barnard-Rubin df, :math:`t`
intervals). Every grid point equals :func:`analysis.sensitivity.delta.delta_analysis` at the same
deltas, seed and number of imputations.

Monotonicity: :math:`\bar Q` is linear in the deltas (each group's mean increasing in its own delta,
the difference :math:`g - r` decreasing in :math:`\delta_r` and increasing in :math:`\delta_g`); the
between-imputation variance does not depend on them, the within-imputation variance is quadratic, so
in practice the CI classes change at most once along each ray (the tests check this on the twin).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats

from analysis.sensitivity.delta import UNITS, delta_shift
from analysis.sensitivity.design import (
    SensitivityDesign,
    sensitivity_design,
    site_label,
)
from analysis.sensitivity.mi_reporting import (
    CI_PHRASE,
    endpoint_estimand_names,
    mi_options_from_config,
)
from analysis.sensitivity.mmrm_imputation import (
    DEFAULT_M,
    check_imputation_args,
    impute_reference_based,
)
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.sensitivity.site_data import SiteData
from analysis.sensitivity.tipping_figure import UNIT_TEXT, ray_deltas, tipping_heatmap
from analysis.study.clinical import ResponderRule
from analysis.study.estimands import GROUP_LABELS

__all__ = [
    "DEFAULT_GRID",
    "STATES",
    "TABLE_COLUMNS",
    "TIPPING_COLUMNS",
    "TippingSurface",
    "rubin_arrays",
    "tipping_from_config",
    "tipping_heatmap",
    "tipping_point_analysis",
    "tipping_surface",
]

#: Default deltas (%/yr) on both axes: -6 to +6 in steps of 0.5. Negative: dropouts lost more bone
#: than MAR predicts; positive values are needed to challenge a group's decline.
DEFAULT_GRID: tuple[float, ...] = tuple(float(v) for v in np.round(np.arange(-6.0, 6.0 + 1e-9, 0.5), 10))
TABLE_COLUMNS = ["site", "comparison", "delta_reference", "delta_group", "unit", "estimand", "group", "estimate",
                 "se", "df", "ci_low", "ci_high", "p", "mc_se", "state", "flipped"]
TIPPING_COLUMNS = ["site", "comparison", "estimand", "group", "ray", "direction", "tipping_delta", "unit",
                   "from_state", "to_state", "bracket_low", "bracket_high"]
STATES = {-1: "below 0", 0: "includes 0", 1: "above 0"}


# ================================================================================================
# vectorised Rubin's rules
# ================================================================================================
def rubin_arrays(q: np.ndarray, u: np.ndarray, df_complete: np.ndarray | float | None = None,
                 level: float = 0.95) -> dict[str, np.ndarray]:
    r"""Rubin's rules over the last axis, for many estimands at once.

    The formulas of :func:`analysis.frequentist.imputation.rubin_pool`: :math:`\bar Q`,
    :math:`T = \bar U + (1 + 1/M)B`, :math:`\lambda = (1 + 1/M)B/T`, :math:`\nu_\text{old} =
    (M - 1)/\lambda^2`, Barnard-Rubin :math:`\nu` when ``df_complete`` is finite, and
    :math:`\bar Q \mp t_{\nu, (1 + \text{level})/2}\sqrt T`.

    Parameters
    ----------
    q, u : ndarray, shape (..., M)
        Estimates and their complete-data variances in each of :math:`M` imputations.
    df_complete : array_like, shape (...), optional
        :math:`\nu_\text{com}` (``None``, ``inf`` or non-positive: Rubin's large-sample df).
    level : float

    Returns
    -------
    dict of ndarray, shape (...)
        ``estimate, se, df, ci_low, ci_high, p`` and the Monte-Carlo SE of the estimate
        ``mc_se`` :math:`= \sqrt{B/M}` (``NaN`` where :math:`\bar U = 0`).
    """
    q = np.asarray(q, dtype=float)
    u = np.asarray(u, dtype=float)
    if q.shape != u.shape or q.shape[-1] < 2:
        raise ValueError(f"q and u must share a shape (..., M) with M >= 2, got {q.shape} and {u.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = q.shape[-1]
    qbar, ubar, b = q.mean(axis=-1), u.mean(axis=-1), q.var(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = ubar + (1.0 + 1.0 / m) * b
        lam = (1.0 + 1.0 / m) * b / total
        nu_old = np.where(lam > 0, (m - 1) / lam**2, np.inf)
        dfc = np.broadcast_to(np.inf if df_complete is None else np.asarray(df_complete, dtype=float), qbar.shape)
        finite = np.isfinite(dfc) & (dfc > 0)
        dfc_safe = np.where(finite, dfc, 1.0)
        nu_obs = (dfc_safe + 1.0) / (dfc_safe + 3.0) * dfc_safe * (1.0 - lam)
        nu_br = np.where(np.isfinite(nu_old), nu_old * nu_obs / (nu_old + nu_obs), nu_obs)
        nu = np.where(finite, nu_br, nu_old)
        se = np.sqrt(total)
        tstat = qbar / se
        big = ~np.isfinite(nu)
        nu_t = np.where(big, 1.0, nu)
        quant = np.where(big, stats.norm.ppf(0.5 + level / 2.0), stats.t.ppf(0.5 + level / 2.0, nu_t))
        p = np.where(big, 2.0 * stats.norm.sf(np.abs(tstat)), 2.0 * stats.t.sf(np.abs(tstat), nu_t))
    bad = ~(ubar > 0)
    out = {"estimate": qbar, "se": se, "df": nu, "ci_low": qbar - quant * se, "ci_high": qbar + quant * se, "p": p,
           "mc_se": np.sqrt(b / m)}
    return {k: np.where(bad, np.nan, v) for k, v in out.items()}


# ================================================================================================
# the surface of one site
# ================================================================================================
def _group_stats(pct: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, float, int]:
    n = w.size
    ybar = pct.mean(axis=1)
    dy = pct - ybar[:, None]
    dw = w - w.mean()
    return ybar, float(w.mean()), (dy**2).sum(axis=1), dy @ dw, float(dw @ dw), n


def _class(r: dict[str, np.ndarray]) -> np.ndarray:
    return np.where(r["ci_low"] > 0, 1, np.where(r["ci_high"] < 0, -1, 0))


@dataclass
class TippingSurface:
    r"""Closed-form delta-adjusted pooled estimands of one site (module docstring).

    Attributes
    ----------
    data : SiteData
    pct : ndarray, shape (M, n)
        Endpoint % change in every unadjusted completed dataset.
    shift : ndarray, shape (n,)
        :math:`w_i`, the endpoint % change added per unit delta (0 where observed).
    unit : {"pct", "abs"}
    month, level : float
    """

    data: SiteData
    pct: np.ndarray
    shift: np.ndarray
    unit: str
    month: float
    level: float
    _stats: dict[int, tuple] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for code, name in enumerate(self.data.levels):
            sel = self.data.group == code
            if sel.sum() < 2:
                raise ValueError(f"need at least 2 {GROUP_LABELS.get(name, name)}, got {int(sel.sum())}")
            self._stats[code] = _group_stats(self.pct[:, sel], self.shift[sel])

    def _moments(self, code: int, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        ybar, wbar, syy, syw, sww, n = self._stats[code]
        d = np.asarray(delta, dtype=float)[..., None]
        mean = ybar + d * wbar
        var = (syy + 2.0 * d * syw + d**2 * sww) / (n - 1)
        return mean, var / n, n

    def evaluate(self, deltas: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        """Pooled estimands at per-group deltas (arrays broadcast against each other; a group not
        named has delta 0).

        Returns
        -------
        dict
            ``{key: {estimate, se, df, ci_low, ci_high, p, mc_se}}`` for every group and every
            difference ``"<group> - <reference>"``, arrays of the broadcast shape.
        """
        levels = self.data.levels
        bad = [k for k in deltas if k not in levels]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a group of the study ({', '.join(levels)})")
        arrays = np.broadcast_arrays(*(np.asarray(deltas.get(lv, 0.0), dtype=float) for lv in levels))
        mom = {lv: self._moments(c, arrays[c]) for c, lv in enumerate(levels)}
        out = {lv: rubin_arrays(q, u, np.full(arrays[0].shape, n - 1.0), self.level) for lv, (q, u, n) in mom.items()}
        q0, u0, n0 = mom[levels[0]]
        for lv in levels[1:]:
            q1, u1, n1 = mom[lv]
            with np.errstate(divide="ignore", invalid="ignore"):
                welch = (u1 + u0) ** 2 / (u1**2 / (n1 - 1) + u0**2 / (n0 - 1))
            out[f"{lv} - {levels[0]}"] = rubin_arrays(q1 - q0, u1 + u0, welch.mean(axis=-1), self.level)
        return out

    def state(self, key: str, deltas: Mapping[str, Any]) -> np.ndarray:
        """CI class of estimand ``key``: -1 below 0, 0 includes 0, +1 above 0."""
        return _class(self.evaluate(deltas)[key])


def tipping_surface(derived: pd.DataFrame, site: str, base_strategy: str = "MAR",
                    reference: str | None = None, m: int = DEFAULT_M, seed: int = 0,
                    draws: Literal["normal", "bootstrap"] = "normal", outcome: str = "pct", unit: str = "pct",
                    undefined: str = "last_observed", rule: ResponderRule | None = None,
                    covariates: Sequence[str] = (), endpoint_month: float | None = None,
                    level: float = 0.95, design: Any = None) -> TippingSurface:
    """Impute one site once (:func:`analysis.sensitivity.mmrm_imputation.impute_reference_based`)
    and return its :class:`TippingSurface` at the endpoint (default: the design's)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if endpoint_month is None:
        endpoint_month = sensitivity_design(derived, design, (site,)).endpoint
    imp = impute_reference_based(derived, site, (base_strategy,), reference, m, seed, draws, outcome, undefined,
                                 rule, covariates, design, keep_month=endpoint_month)
    d = imp.data
    j = d.visit_index(endpoint_month)
    return TippingSurface(data=d, pct=imp.endpoint_pct(base_strategy, endpoint_month),
                          shift=d.to_pct(delta_shift(d, unit)[:, j]), unit=unit, month=float(endpoint_month),
                          level=level)


# ================================================================================================
# flips
# ================================================================================================
def _rays(ref: str, grp: str | None) -> tuple[str, ...]:
    return (ref,) if grp is None else (ref, grp, "both")


def _ray_points(ray: str, ref: str, grid_ref: np.ndarray, grid_grp: np.ndarray) -> np.ndarray:
    if ray == ref:
        return grid_ref
    if ray != "both":
        return grid_grp
    lo, hi = max(grid_ref.min(), grid_grp.min()), min(grid_ref.max(), grid_grp.max())
    both = np.union1d(grid_ref, grid_grp)
    return both[(both >= lo) & (both <= hi)]


def _deltas(ray: str, x, ref: str, grp: str | None) -> dict[str, np.ndarray]:
    a, b = ray_deltas(ray, x, ref, grp)
    return {ref: a} if grp is None else {ref: a, grp: b}


def _find_flips(surface: TippingSurface, key: str, ray: str, points: np.ndarray, ref: str,
                grp: str | None) -> list[dict[str, Any]]:
    base = int(surface.state(key, {}))
    out = []
    for direction, pts in (("positive", np.sort(points[points > 0])), ("negative", -np.sort(-points[points < 0]))):
        row = {"ray": ray, "direction": direction, "tipping_delta": np.nan, "from_state": STATES[base],
               "to_state": "", "bracket_low": np.nan, "bracket_high": np.nan}
        if pts.size:
            states = surface.state(key, _deltas(ray, pts, ref, grp))
            hit = np.flatnonzero(states != base)
            if hit.size:
                k = int(hit[0])
                a, b = (0.0 if k == 0 else float(pts[k - 1])), float(pts[k])
                new = int(states[k])
                # the bound whose crossing of 0 first changes the class
                bound = {1: "ci_low", -1: "ci_high"}[base] if base != 0 else {1: "ci_low", -1: "ci_high"}[new]

                def f(x: float) -> float:
                    return float(surface.evaluate(_deltas(ray, x, ref, grp))[key][bound])

                root = optimize.brentq(f, a, b, xtol=1e-10) if f(a) * f(b) < 0 else b
                row.update({"tipping_delta": root, "to_state": STATES[new], "bracket_low": min(a, b),
                            "bracket_high": max(a, b)})
        out.append(row)
    return out


def _relevant_rays(key: str, ref: str, grp: str | None) -> tuple[str, ...]:
    if grp is None:
        return (ref,)
    return {ref: (ref, "both"), grp: (grp, "both")}.get(key, (ref, grp, "both"))


# ================================================================================================
# the analysis
# ================================================================================================
def _grid(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must hold at least 2 finite deltas")
    return np.unique(v)


def _describe(flips: pd.DataFrame, site: str, comparison: str, group: str, head: str, unit: str,
              grid_text: str) -> str:
    sub = flips[(flips["site"] == site) & (flips["comparison"] == comparison) & (flips["group"] == group)]
    base = sub["from_state"].iloc[0]
    found = sub[sub["tipping_delta"].notna()]
    name = f"{site_label(site)}, {head}: under MAR the 95% CI {CI_PHRASE[base]}."
    if found.empty:
        return f"{name} It does not flip on any ray within the grid ({grid_text})."
    def who(ray: str) -> str:
        return "both groups are shifted alike" if ray == "both" else f"{GROUP_LABELS.get(ray, ray)} dropouts are shifted"

    parts = [f"when {who(r['ray'])}, at delta = {r['tipping_delta']:+.2f} {UNIT_TEXT[unit]} (CI then {r['to_state']})"
             for _, r in found.iterrows()]
    return f"{name} It flips " + "; ".join(parts) + f". No other flip within the grid ({grid_text})."


def _conclusions(sd: SensitivityDesign) -> list[tuple[str, str | None, list[tuple[str, str, str]]]]:
    """Per comparison: ``(reference, group, [(key, group column, heading)])`` in the order (a), (b), (c)."""
    ref = sd.levels[0]
    if sd.single_arm:
        return [(ref, None, [(ref, ref, f"% change, {GROUP_LABELS.get(ref, ref)}")])]
    out = []
    for lv, _ in sd.comparisons:
        k = sd.comparison_key(lv)
        out.append((ref, lv, [(ref, ref, f"(a) % change, {GROUP_LABELS.get(ref, ref)}"),
                              (k, "difference", f"(b) {sd.key_label(k)}"),
                              (lv, lv, f"(c) % change, {GROUP_LABELS.get(lv, lv)}")]))
    return out


def tipping_point_analysis(derived: pd.DataFrame, grid_reference: Sequence[float] = DEFAULT_GRID,
                           grid_group: Sequence[float] = DEFAULT_GRID, sites: Sequence[str] | None = None,
                           base_strategy: str = "MAR", reference: str | None = None, m: int = DEFAULT_M,
                           seed: int = 0, draws: Literal["normal", "bootstrap"] = "normal", outcome: str = "pct",
                           unit: str = "pct", undefined: str = "last_observed", rule: ResponderRule | None = None,
                           covariates: Sequence[str] = (), endpoint_month: float | None = None, level: float = 0.95,
                           label: str | None = None, design: Any = None) -> SensitivityResult:
    """Tipping-point grid of additive deltas per comparison, with flips of the key conclusions.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    grid_reference, grid_group : sequence of float
        Deltas per year after the last observed DXA (``unit``) of the reference's dropouts and of the
        compared group's (a single arm: ``grid_reference`` for its one group); sorted, duplicates
        dropped.
    sites : sequence of str, optional
        Default: the design's.
    base_strategy, reference, m, seed, draws, outcome, undefined, rule, covariates
        The single set of imputations per site (as :func:`analysis.sensitivity.delta.delta_analysis`).
    unit : {"pct", "abs"}
        Deltas in % of baseline BMD per year or in g/cm^2 per year.
    endpoint_month, level
        Endpoint month (default: the design's) and confidence level.
    label : str, optional
        Printed on the heat map.
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).

    Returns
    -------
    SensitivityResult
        Name ``"tipping"``; ``table`` the grid (:data:`TABLE_COLUMNS`: one row per site, comparison,
        grid point and estimand, with the CI class ``state`` and whether it differs from MAR); the
        tipping points (:data:`TIPPING_COLUMNS`) in ``settings["tipping_points"]``; figure
        ``sensitivity_tipping``.
    """
    sd = sensitivity_design(derived, design, sites, endpoint_month)
    grid_ref, grid_grp = _grid(grid_reference, "grid_reference"), _grid(grid_group, "grid_group")
    sites, endpoint_month = sd.sites, sd.endpoint
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    check_imputation_args(m, draws, reference, (base_strategy,), sd.levels)
    rows, flip_rows, grids, draws_out, excluded = [], [], {}, {}, {}
    conclusions = _conclusions(sd)
    for site in sites:
        surf = tipping_surface(derived, site, base_strategy, reference, m, seed, draws, outcome, unit, undefined,
                               rule, covariates, endpoint_month, level, sd.design)
        excluded[site] = list(surf.data.excluded)
        names = endpoint_estimand_names(site, endpoint_month, sd.levels)
        mar = surf.evaluate({})
        for ref, grp, keys in conclusions:
            if grp is None:
                dref, dgrp = grid_ref, np.full(grid_ref.shape, np.nan)
                res = surf.evaluate({ref: grid_ref})
                comparison = ref
            else:
                dref, dgrp = np.meshgrid(grid_ref, grid_grp, indexing="ij")
                res = surf.evaluate({ref: dref, grp: dgrp})
                comparison = sd.comparison_key(grp)
            grids[(site, ref, grp)] = {k: res[k] for k, _, _ in keys}
            for key, gcol, _ in keys:
                r = res[key]
                state = _class(r)
                s0 = int(_class(mar[key]))
                rows.append(pd.DataFrame({
                    "site": site, "comparison": comparison, "delta_reference": dref.ravel(),
                    "delta_group": dgrp.ravel(), "unit": unit, "estimand": names[key], "group": gcol,
                    **{c: r[c].ravel() for c in ("estimate", "se", "df", "ci_low", "ci_high", "p", "mc_se")},
                    "state": [STATES[int(s)] for s in state.ravel()], "flipped": state.ravel() != s0}))
                for ray in _relevant_rays(key, ref, grp):
                    for f in _find_flips(surf, key, ray, _ray_points(ray, ref, grid_ref, grid_grp), ref, grp):
                        flip_rows.append({"site": site, "comparison": comparison, "estimand": names[key],
                                          "group": gcol, "unit": unit, **f})
        draws_out[f"{site} | endpoint % change, unadjusted (m x n)"] = surf.pct
        draws_out[f"{site} | endpoint % change per unit delta (n)"] = surf.shift
    table = pd.concat(rows, ignore_index=True)[TABLE_COLUMNS]
    flips = pd.DataFrame(flip_rows, columns=TIPPING_COLUMNS)
    u = UNIT_TEXT[unit]
    ref_label = GROUP_LABELS.get(sd.levels[0], sd.levels[0])
    grid_text = (f"{grid_ref.min():+g} to {grid_ref.max():+g} {u}" if sd.single_arm else
                 f"{ref_label} {grid_ref.min():+g} to {grid_ref.max():+g}, compared group {grid_grp.min():+g} to "
                 f"{grid_grp.max():+g} {u}")
    shape = f"{grid_ref.size}-point grid" if sd.single_arm else f"{grid_ref.size} x {grid_grp.size} grid per comparison"
    text = [f"Tipping-point analysis: {m} imputations per site under {base_strategy} (the MMRM of the reference-based "
            f"analysis), made once; every imputed month-{endpoint_month:g} value of a dropout shifted by delta x years "
            f"since the last observed DXA, with delta on a {shape} ({grid_text}); pooled by Rubin's rules at every "
            "grid point. Negative delta: dropouts lost more bone than MAR predicts. A conclusion flips where its 95% "
            "CI class (below 0 / includes 0 / above 0) differs from MAR; tipping points are given on the rays from "
            "MAR (one group shifted, or both alike)."]
    for site in sites:
        for ref, grp, keys in conclusions:
            comparison = ref if grp is None else sd.comparison_key(grp)
            for key, gcol, head in keys:
                text.append(_describe(flips, site, comparison, gcol, head, unit, grid_text))
    fig = tipping_heatmap(grids, grid_ref, grid_grp, flips, unit, endpoint_month, label)
    return SensitivityResult(
        name="tipping", title="Tipping-point analysis (delta-adjusted MI over a grid)", table=table, text=text,
        figures={"sensitivity_tipping": fig}, forest_rows=pd.DataFrame(columns=FOREST_COLUMNS),
        settings={"sites": list(sites), "groups": list(sd.levels), "grid_reference": grid_ref.tolist(),
                  "grid_group": grid_grp.tolist(), "unit": unit, "base_strategy": base_strategy,
                  "reference": sd.levels[0] if reference is None else reference, "m": int(m), "seed": int(seed),
                  "draws": draws, "outcome": outcome, "undefined": undefined, "covariates": list(covariates),
                  "endpoint_month": endpoint_month, "level": level, "excluded": excluded,
                  "tipping_points": flips.replace({np.nan: None}).to_dict(orient="records")},
        draws=draws_out)


def tipping_from_config(derived: pd.DataFrame, config: Any, design: Any = None) -> SensitivityResult:
    """:func:`tipping_point_analysis` on the default grid with a run configuration's settings."""
    opts, notes = mi_options_from_config(config, derived, design)
    res = tipping_point_analysis(derived, **opts)
    res.text = notes + res.text
    return res
