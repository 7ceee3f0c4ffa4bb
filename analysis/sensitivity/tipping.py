r"""Tipping-point analysis: how far from MAR must dropouts be before a conclusion changes?

A 2-D grid of additive deltas (:mod:`analysis.sensitivity.delta`) — :math:`\delta_{NR}` for
non-responder dropouts, :math:`\delta_R` for responder dropouts, in % of baseline BMD per year
after the last observed DXA (or g/cm^2 per year) — is laid over one set of MAR imputations. For
every grid point the month-12 estimands are pooled by Rubin's rules and each *key conclusion* is
classified by its 95% CI: below 0, including 0, or above 0. The conclusions are

(a) the non-responders' % change (the paper: they lose BMD — CI below 0),
(b) the responder - non-responder difference (CI excludes 0, i.e. :math:`p < 0.05`),
(c) the responders' % change (the paper: stable — CI includes 0).

A conclusion *flips* where its class differs from that at :math:`\delta = 0` (MAR). Tipping points
are reported on three rays from MAR — only non-responder dropouts shifted
(:math:`\delta_R = 0`), only responder dropouts (:math:`\delta_{NR} = 0`), both alike
(:math:`\delta_{NR} = \delta_R`) — in both directions: the first grid step where the class
changes brackets the point, which is then found exactly (Brent's method on the CI bound that
crosses 0).

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

Monotonicity: :math:`\bar Q` is linear in the deltas (non-responders' mean increasing in
:math:`\delta_{NR}`, responders' in :math:`\delta_R`, the difference decreasing in
:math:`\delta_{NR}` and increasing in :math:`\delta_R`); the between-imputation variance does not
depend on them, the within-imputation variance is quadratic, so in practice the CI classes change at
most once along each ray (the tests check this on the twin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats

from analysis.sensitivity.delta import UNIT_TEXT, UNITS, delta_shift
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
from analysis.sensitivity.site_data import GROUPS, SiteData
from analysis.study.clinical import ResponderRule
from analysis.study.estimands import GROUP_LABELS, SITE_LABELS

__all__ = ["DEFAULT_GRID", "CONCLUSIONS", "RAYS", "TABLE_COLUMNS", "TIPPING_COLUMNS", "rubin_arrays",
           "TippingSurface", "tipping_surface", "tipping_heatmap", "tipping_point_analysis", "tipping_from_config"]

#: Default deltas (%/yr) on both axes: -6 to +6 in steps of 0.5. Negative: dropouts lost more bone
#: than MAR predicts; positive values are needed to challenge the non-responders' decline.
DEFAULT_GRID: tuple[float, ...] = tuple(float(v) for v in np.round(np.arange(-6.0, 6.0 + 1e-9, 0.5), 10))
#: key -> description of the conclusion (keys as the ``group`` column).
CONCLUSIONS = {"non-responder": "(a) non-responders' % change", "difference": "(b) responders - non-responders",
               "responder": "(c) responders' % change"}
RAYS = {"non-responders": "only non-responder dropouts shifted (delta R = 0)",
        "responders": "only responder dropouts shifted (delta NR = 0)",
        "both": "both groups shifted alike (delta NR = delta R)"}
TABLE_COLUMNS = ["site", "delta_non_responders", "delta_responders", "unit", "estimand", "group", "estimate", "se",
                 "df", "ci_low", "ci_high", "p", "mc_se", "state", "flipped"]
TIPPING_COLUMNS = ["site", "estimand", "group", "ray", "direction", "tipping_delta", "unit", "from_state",
                   "to_state", "bracket_low", "bracket_high"]
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
        for code in (0, 1):
            sel = self.data.group == code
            if sel.sum() < 2:
                raise ValueError(f"need at least 2 {GROUP_LABELS[GROUPS[code]]}, got {int(sel.sum())}")
            self._stats[code] = _group_stats(self.pct[:, sel], self.shift[sel])

    def _moments(self, code: int, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        ybar, wbar, syy, syw, sww, n = self._stats[code]
        d = np.asarray(delta, dtype=float)[..., None]
        mean = ybar + d * wbar
        var = (syy + 2.0 * d * syw + d**2 * sww) / (n - 1)
        return mean, var / n, n

    def evaluate(self, delta_non_responders, delta_responders) -> dict[str, dict[str, np.ndarray]]:
        """Pooled estimands at deltas (broadcast against each other).

        Returns
        -------
        dict
            ``{"non-responder" | "responder" | "difference": {estimate, se, df, ci_low, ci_high, p}}``,
            arrays of the broadcast shape.
        """
        d_nr, d_r = np.broadcast_arrays(np.asarray(delta_non_responders, dtype=float),
                                        np.asarray(delta_responders, dtype=float))
        q0, u0, n0 = self._moments(0, d_nr)
        q1, u1, n1 = self._moments(1, d_r)
        with np.errstate(divide="ignore", invalid="ignore"):
            welch = (u1 + u0) ** 2 / (u1**2 / (n1 - 1) + u0**2 / (n0 - 1))
        return {"non-responder": rubin_arrays(q0, u0, np.full(d_nr.shape, n0 - 1.0), self.level),
                "responder": rubin_arrays(q1, u1, np.full(d_r.shape, n1 - 1.0), self.level),
                "difference": rubin_arrays(q1 - q0, u1 + u0, welch.mean(axis=-1), self.level)}

    def state(self, key: str, d_nr, d_r) -> np.ndarray:
        """CI class: -1 below 0, 0 includes 0, +1 above 0."""
        r = self.evaluate(d_nr, d_r)[key]
        return np.where(r["ci_low"] > 0, 1, np.where(r["ci_high"] < 0, -1, 0))


def tipping_surface(derived: pd.DataFrame, site: str = "spine", base_strategy: str = "MAR",
                    reference: str = "non-responder", m: int = DEFAULT_M, seed: int = 0,
                    draws: Literal["normal", "bootstrap"] = "normal", outcome: str = "pct", unit: str = "pct",
                    undefined: str = "last_observed", rule: ResponderRule | None = None,
                    covariates: Sequence[str] = (), endpoint_month: float = 12,
                    level: float = 0.95) -> TippingSurface:
    """Impute one site once (:func:`analysis.sensitivity.mmrm_imputation.impute_reference_based`)
    and return its :class:`TippingSurface`."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    imp = impute_reference_based(derived, site, (base_strategy,), reference, m, seed, draws, outcome, undefined,
                                 rule, covariates)
    d = imp.data
    j = d.visit_index(endpoint_month)
    return TippingSurface(data=d, pct=imp.endpoint_pct(base_strategy, endpoint_month),
                          shift=d.to_pct(delta_shift(d, unit)[:, j]), unit=unit, month=float(endpoint_month),
                          level=level)


# ================================================================================================
# flips
# ================================================================================================
def _ray_points(ray: str, grid_nr: np.ndarray, grid_r: np.ndarray) -> np.ndarray:
    if ray == "non-responders":
        return grid_nr
    if ray == "responders":
        return grid_r
    lo, hi = max(grid_nr.min(), grid_r.min()), min(grid_nr.max(), grid_r.max())
    both = np.union1d(grid_nr, grid_r)
    return both[(both >= lo) & (both <= hi)]


def _on_ray(ray: str, x):
    x = np.asarray(x, dtype=float)
    zero = np.zeros_like(x)
    return {"non-responders": (x, zero), "responders": (zero, x), "both": (x, x)}[ray]


def _find_flips(surface: TippingSurface, key: str, ray: str, points: np.ndarray) -> list[dict[str, Any]]:
    base = int(surface.state(key, 0.0, 0.0))
    out = []
    for direction, pts in (("positive", np.sort(points[points > 0])), ("negative", -np.sort(-points[points < 0]))):
        row = {"ray": ray, "direction": direction, "tipping_delta": np.nan, "from_state": STATES[base],
               "to_state": "", "bracket_low": np.nan, "bracket_high": np.nan}
        if pts.size:
            states = surface.state(key, *_on_ray(ray, pts))
            hit = np.flatnonzero(states != base)
            if hit.size:
                k = int(hit[0])
                a, b = (0.0 if k == 0 else float(pts[k - 1])), float(pts[k])
                new = int(states[k])
                # the bound whose crossing of 0 first changes the class
                bound = {1: "ci_low", -1: "ci_high"}[base] if base != 0 else {1: "ci_low", -1: "ci_high"}[new]

                def f(x: float) -> float:
                    return float(surface.evaluate(*_on_ray(ray, x))[key][bound])

                root = optimize.brentq(f, a, b, xtol=1e-10) if f(a) * f(b) < 0 else b
                row.update({"tipping_delta": root, "to_state": STATES[new], "bracket_low": min(a, b),
                            "bracket_high": max(a, b)})
        out.append(row)
    return out


def _relevant_rays(key: str) -> tuple[str, ...]:
    return {"non-responder": ("non-responders", "both"), "responder": ("responders", "both"),
            "difference": ("non-responders", "responders", "both")}[key]


# ================================================================================================
# figure
# ================================================================================================
def _edges(v: np.ndarray) -> np.ndarray:
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = 0.5 * (v[1:] + v[:-1])
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def tipping_heatmap(grids: dict[str, dict[str, dict[str, np.ndarray]]], grid_nr: np.ndarray, grid_r: np.ndarray,
                    flips: pd.DataFrame, unit: str, month: float, label: str | None, interval: str = "95% CI",
                    estimate: str = "pooled estimate",
                    title: str = "Tipping points: delta-adjusted MI (shift of post-dropout values per year after "
                                 "the last DXA)"):
    """Heat map of the interval class over the delta grid: rows = sites, columns = :data:`CONCLUSIONS`.

    Also used for the Bayesian tipping points (:mod:`analysis.sensitivity.bayes_delta`).

    Parameters
    ----------
    grids : dict
        ``{site: {key: {"estimate" | "ci_low" | "ci_high": ndarray (len(grid_nr), len(grid_r))}}}``,
        e.g. :meth:`TippingSurface.evaluate` on the meshgrid (``indexing="ij"``).
    grid_nr, grid_r : ndarray
        Deltas of the non-responders (x axis) and responders (y axis).
    flips : DataFrame
        Tipping points with ``site, group, ray, tipping_delta`` (drawn as diamonds on their ray).
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
    sites = list(grids)
    keys = list(CONCLUSIONS)
    u = UNIT_TEXT[unit]
    with style():
        fig, axes = plt.subplots(len(sites), len(keys), figsize=(4.0 * len(keys), 3.6 * len(sites) + 0.6),
                                 squeeze=False)
        ex, ey = _edges(grid_nr), _edges(grid_r)
        for r, site in enumerate(sites):
            for c, key in enumerate(keys):
                ax = axes[r, c]
                res = grids[site][key]
                state = np.where(res["ci_low"] > 0, 1, np.where(res["ci_high"] < 0, -1, 0))  # (nr, r)
                ax.pcolormesh(ex, ey, state.T, cmap=cmap, norm=norm, shading="flat")
                if grid_nr.size > 1 and grid_r.size > 1:
                    est = res["estimate"].T
                    levels = np.arange(np.floor(np.nanmin(est)), np.ceil(np.nanmax(est)) + 1.0, 1.0)
                    cs = ax.contour(grid_nr, grid_r, est, levels=levels, colors=PALETTE["black"], linewidths=0.5,
                                    alpha=0.6, linestyles="solid")
                    ax.clabel(cs, fmt="%g", fontsize=6)
                    for bound in ("ci_low", "ci_high"):  # exact boundaries: a CI bound equal to 0
                        b = res[bound].T
                        if np.nanmin(b) < 0 < np.nanmax(b):
                            ax.contour(grid_nr, grid_r, b, levels=[0.0], colors=PALETTE["black"], linewidths=1.6,
                                       linestyles="solid")
                ax.plot(0.0, 0.0, "o", mfc="white", mec=PALETTE["black"], ms=7, zorder=5)
                sub = flips[(flips["site"] == site) & (flips["group"] == key) & flips["tipping_delta"].notna()]
                for _, f in sub.iterrows():
                    x, y = _on_ray(f["ray"], f["tipping_delta"])
                    ax.plot(float(x), float(y), "D", mfc=PALETTE["yellow"], mec=PALETTE["black"], ms=6, zorder=6)
                ax.set_title(f"{SITE_LABELS.get(site, site)}: {CONCLUSIONS[key]}", fontsize=9)
                ax.set_xlabel(f"delta non-responders ({u})")
                ax.set_ylabel(f"delta responders ({u})")
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
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7)
        fig.suptitle(title, fontsize=10)
        stamp(fig, label)
        fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    return fig


# ================================================================================================
# the analysis
# ================================================================================================
def _grid(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must hold at least 2 finite deltas")
    return np.unique(v)


def _describe(flips: pd.DataFrame, site: str, key: str, unit: str, grid_text: str) -> str:
    sub = flips[(flips["site"] == site) & (flips["group"] == key)]
    base = sub["from_state"].iloc[0]
    found = sub[sub["tipping_delta"].notna()]
    name = f"{SITE_LABELS.get(site, site)}, {CONCLUSIONS[key]}: under MAR the 95% CI {CI_PHRASE[base]}."
    if found.empty:
        return f"{name} It does not flip on any ray within the grid ({grid_text})."
    who = {"non-responders": "only non-responder dropouts are shifted", "responders": "only responder dropouts are "
           "shifted", "both": "both groups are shifted alike"}
    parts = [f"when {who[r['ray']]}, at delta = {r['tipping_delta']:+.2f} {UNIT_TEXT[unit]} (CI then {r['to_state']})"
             for _, r in found.iterrows()]
    return f"{name} It flips " + "; ".join(parts) + f". No other flip within the grid ({grid_text})."


def tipping_point_analysis(derived: pd.DataFrame, grid_non_responders: Sequence[float] = DEFAULT_GRID,
                           grid_responders: Sequence[float] = DEFAULT_GRID,
                           sites: Sequence[str] = ("spine", "femoral_neck"), base_strategy: str = "MAR",
                           reference: str = "non-responder", m: int = DEFAULT_M, seed: int = 0,
                           draws: Literal["normal", "bootstrap"] = "normal", outcome: str = "pct",
                           unit: str = "pct", undefined: str = "last_observed", rule: ResponderRule | None = None,
                           covariates: Sequence[str] = (), endpoint_month: float = 12, level: float = 0.95,
                           label: str | None = None) -> SensitivityResult:
    """Tipping-point grid of additive deltas per group, with flips of the key conclusions.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    grid_non_responders, grid_responders : sequence of float
        Deltas per year after the last observed DXA (``unit``); sorted, duplicates dropped.
    sites : sequence of str
    base_strategy, reference, m, seed, draws, outcome, undefined, rule, covariates
        The single set of imputations per site (as :func:`analysis.sensitivity.delta.delta_analysis`).
    unit : {"pct", "abs"}
        Deltas in % of baseline BMD per year or in g/cm^2 per year.
    endpoint_month, level
        Endpoint month and confidence level.
    label : str, optional
        Printed on the heat map.

    Returns
    -------
    SensitivityResult
        Name ``"tipping"``; ``table`` the grid (:data:`TABLE_COLUMNS`: one row per site, grid point
        and estimand, with the CI class ``state`` and whether it differs from MAR); the tipping points
        (:data:`TIPPING_COLUMNS`) in ``settings["tipping_points"]``; figure ``sensitivity_tipping``.
    """
    grid_nr, grid_r = _grid(grid_non_responders, "grid_non_responders"), _grid(grid_responders, "grid_responders")
    sites = tuple(sites)
    if not sites:
        raise ValueError("sites must name at least one DXA site")
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    check_imputation_args(m, draws, reference, (base_strategy,))
    rows, flip_rows, grids, draws_out, excluded = [], [], {}, {}, {}
    dnr, dr = np.meshgrid(grid_nr, grid_r, indexing="ij")
    for site in sites:
        surf = tipping_surface(derived, site, base_strategy, reference, m, seed, draws, outcome, unit, undefined,
                               rule, covariates, endpoint_month, level)
        excluded[site] = list(surf.data.excluded)
        names = endpoint_estimand_names(site, endpoint_month)
        res = surf.evaluate(dnr, dr)
        grids[site] = res
        mar = surf.evaluate(0.0, 0.0)
        for key, r in res.items():
            state = np.where(r["ci_low"] > 0, 1, np.where(r["ci_high"] < 0, -1, 0))
            s0 = 1 if mar[key]["ci_low"] > 0 else (-1 if mar[key]["ci_high"] < 0 else 0)
            frame = pd.DataFrame({"site": site, "delta_non_responders": dnr.ravel(), "delta_responders": dr.ravel(),
                                  "unit": unit, "estimand": names[key], "group": key,
                                  **{c: r[c].ravel() for c in ("estimate", "se", "df", "ci_low", "ci_high", "p", "mc_se")},
                                  "state": [STATES[int(s)] for s in state.ravel()], "flipped": state.ravel() != s0})
            rows.append(frame)
            for ray in _relevant_rays(key):
                for f in _find_flips(surf, key, ray, _ray_points(ray, grid_nr, grid_r)):
                    flip_rows.append({"site": site, "estimand": names[key], "group": key, "unit": unit, **f})
        draws_out[f"{site} | endpoint % change, unadjusted (m x n)"] = surf.pct
        draws_out[f"{site} | endpoint % change per unit delta (n)"] = surf.shift
    table = pd.concat(rows, ignore_index=True)[TABLE_COLUMNS]
    flips = pd.DataFrame(flip_rows, columns=TIPPING_COLUMNS)
    u = UNIT_TEXT[unit]
    grid_text = (f"non-responders {grid_nr.min():+g} to {grid_nr.max():+g}, responders {grid_r.min():+g} to "
                 f"{grid_r.max():+g} {u}")
    text = [f"Tipping-point analysis: {m} imputations per site under {base_strategy} (the MMRM of the reference-based "
            f"analysis), made once; every imputed month-{endpoint_month:g} value of a dropout shifted by delta x years "
            f"since the last observed DXA, with delta on a {grid_nr.size} x {grid_r.size} grid ({grid_text}); pooled by "
            "Rubin's rules at every grid point. Negative delta: dropouts lost more bone than MAR predicts. A conclusion "
            "flips where its 95% CI class (below 0 / includes 0 / above 0) differs from MAR; tipping points are given on "
            "three rays from MAR (one group shifted, or both alike)."]
    for site in sites:
        for key in ("non-responder", "difference", "responder"):
            text.append(_describe(flips, site, key, unit, grid_text))
    fig = tipping_heatmap(grids, grid_nr, grid_r, flips, unit, endpoint_month, label)
    return SensitivityResult(
        name="tipping", title="Tipping-point analysis (delta-adjusted MI over a grid)", table=table, text=text,
        figures={"sensitivity_tipping": fig}, forest_rows=pd.DataFrame(columns=FOREST_COLUMNS),
        settings={"sites": list(sites), "grid_non_responders": grid_nr.tolist(), "grid_responders": grid_r.tolist(),
                  "unit": unit, "base_strategy": base_strategy, "reference": reference, "m": int(m), "seed": int(seed),
                  "draws": draws, "outcome": outcome, "undefined": undefined, "covariates": list(covariates),
                  "endpoint_month": endpoint_month, "level": level, "excluded": excluded,
                  "tipping_points": flips.replace({np.nan: None}).to_dict(orient="records")},
        draws=draws_out)


def tipping_from_config(derived: pd.DataFrame, config: Any) -> SensitivityResult:
    """:func:`tipping_point_analysis` on the default grid with a run configuration's settings."""
    opts, notes = mi_options_from_config(config)
    res = tipping_point_analysis(derived, **opts)
    res.text = notes + res.text
    return res
