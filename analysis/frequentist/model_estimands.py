r"""Estimands of the fitted LMM and MMRM per group level and level - reference difference, and the
completers' rows of the same table; names from :mod:`analysis.study.estimands`.

LMM (``bmd ~ month * group``): with the emmeans-style reference grid row :math:`l_g(t)` of level
:math:`g` at time :math:`t` (covariates at their means, factors weighted by their frequencies),
the change to the endpoint :math:`T` is :math:`\Delta_g = (l_g(T) - l_g(0))^\top\hat\beta` g/cm^2,
in % of the group's baseline mean :math:`P_g = 100\,\Delta_g / l_g(0)^\top\hat\beta`, with the
delta-method SE :math:`\sqrt{\nabla P_g^\top V \nabla P_g}`,
:math:`\nabla P_g = 100\,[(l_g(T) - l_g(0))/m_0 - l_g(0)\,\Delta_g/m_0^2]`,
:math:`m_0 = l_g(0)^\top\hat\beta` (df of the numerator contrast). A difference
:math:`g - r` is :math:`\Delta_g - \Delta_r` (its own Satterthwaite df) and
:math:`P_g - P_r` with gradient :math:`\nabla P_g - \nabla P_r`.

MMRM (``change ~ baseline + month * group``, visit a factor): LS-means of the change per level at
every visit (baseline at its mean) and the level - reference contrasts at the endpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.frequentist.coding import RAJAK_CODING, GroupCoding
from analysis.frequentist.completers import CompletersResult
from analysis.frequentist.lmm import LmmResult
from analysis.frequentist.mmrm import MmrmResult
from analysis.study.estimands import difference_name, estimand_name
from analysis.study.rajak_design import RAJAK_DESIGN

__all__ = ["ESTIMAND_COLUMNS", "LSMEANS_COLUMNS", "estimand_row", "lmm_estimands", "mmrm_estimands",
           "mmrm_lsmeans", "completers_estimands"]

ESTIMAND_COLUMNS = ["estimand", "site", "method", "estimate", "se", "df", "ci_low", "ci_high", "p", "n"]
LSMEANS_COLUMNS = ["site", "measure", "covariance", "month", "group", "estimate", "se", "df", "ci_low", "ci_high",
                   "p"]


def estimand_row(estimand: str, site: str, method: str, est: float, se: float, df: float, n: int,
                 level: float = 0.95) -> dict[str, Any]:
    """One row of :data:`ESTIMAND_COLUMNS`: t (normal for infinite ``df``) interval and p."""
    q = stats.t.ppf(0.5 + level / 2, df) if np.isfinite(df) else stats.norm.ppf(0.5 + level / 2)
    t = est / se if se > 0 else np.nan
    p = 2 * stats.t.sf(abs(t), df) if np.isfinite(df) else 2 * stats.norm.sf(abs(t))
    return {"estimand": estimand, "site": site, "method": method, "estimate": est, "se": se, "df": df,
            "ci_low": est - q * se, "ci_high": est + q * se, "p": p, "n": n}


def lmm_estimands(fit: LmmResult, site: str, month: float | None = None, method: str = "LMM (REML)",
                  coding: GroupCoding | None = None) -> pd.DataFrame:
    """Change to ``month`` per reported level and each level - reference difference, in g/cm^2
    and % (delta method; see the module docstring).

    ``coding`` (:func:`analysis.frequentist.coding.group_coding`) says how the groups enter the
    model; default the RAJAK responder indicator (and ``month`` the RAJAK endpoint).
    """
    coding = coding or RAJAK_CODING
    month = RAJAK_DESIGN.endpoint if month is None else month
    b = fit.coef.to_numpy()
    v = fit.vcov.to_numpy()
    grid, lmat = fit.reference_grid(list(coding.variables), by=["month"],
                                    at={**coding.grid_at(), "month": [0.0, month]}, weights="proportional")
    at0 = (grid["month"].astype(float) == 0.0).to_numpy()
    at1 = (grid["month"].astype(float) == float(month)).to_numpy()
    rows = []
    deltas, pcts, grads, dfs = {}, {}, {}, {}
    for g in coding.levels:
        sel = coding.rows_of(grid, g)
        l0 = lmat[sel & at0][0]
        l1 = lmat[sel & at1][0]
        deltas[g] = l1 - l0
        c = fit.contrast(deltas[g][None, :], names=[g]).iloc[0]
        num, den = float(deltas[g] @ b), float(l0 @ b)
        grads[g] = 100.0 * (deltas[g] / den - l0 * num / den**2)
        pcts[g], dfs[g] = 100 * num / den, c["df"]
        if g in coding.reported:
            rows.append(estimand_row(estimand_name(site, g, "abs", month), site, method, c["estimate"], c["se"],
                                     c["df"], fit.n_subjects))
            rows.append(estimand_row(estimand_name(site, g, "pct", month), site, method, pcts[g],
                                     float(np.sqrt(grads[g] @ v @ grads[g])), c["df"], fit.n_subjects))
    for g, ref in coding.comparisons:
        c = fit.contrast((deltas[g] - deltas[ref])[None, :], names=["diff"]).iloc[0]
        rows.append(estimand_row(difference_name(site, "abs", month, (g, ref)), site, method, c["estimate"],
                                 c["se"], c["df"], fit.n_subjects))
        g_diff = grads[g] - grads[ref]
        rows.append(estimand_row(difference_name(site, "pct", month, (g, ref)), site, method, pcts[g] - pcts[ref],
                                 float(np.sqrt(g_diff @ v @ g_diff)), c["df"], fit.n_subjects))
    return pd.DataFrame(rows, columns=ESTIMAND_COLUMNS)


def _grid(fit: MmrmResult, coding: GroupCoding) -> tuple[pd.DataFrame, np.ndarray]:
    """The MMRM's reference grid by group level and visit (a one-visit model has no visit term)."""
    by = ["month"] if "month" in fit.variables else []
    grid, lmat = fit.reference_grid(list(coding.variables), by=by, at=coding.grid_at() or None)
    if not by:
        grid = grid.assign(month=float(fit.visits[0]))
    return grid, lmat


def mmrm_estimands(fits: dict[str, MmrmResult], site: str, month: float | None = None,
                   method: str = "MMRM (us, REML)", coding: GroupCoding | None = None) -> pd.DataFrame:
    """LS-means of the change at ``month`` per reported level and each level - reference contrast,
    for every measure in ``fits`` (``{"abs": fit, "pct": fit}``)."""
    coding = coding or RAJAK_CODING
    month = RAJAK_DESIGN.endpoint if month is None else month
    rows = []
    for measure, fit in fits.items():
        grid, lmat = _grid(fit, coding)
        at = (grid["month"].astype(float) == float(month)).to_numpy()
        idx = {g: int(np.flatnonzero(coding.rows_of(grid, g) & at)[0]) for g in coding.levels}
        tab = fit.contrast(lmat[[idx[g] for g in coding.reported]], names=list(coding.reported))
        for g, (_, r) in zip(coding.reported, tab.iterrows(), strict=True):
            rows.append(estimand_row(estimand_name(site, g, measure, month), site, method, r["estimate"], r["se"],
                                     r["df"], fit.n_subjects))
        for g, ref in coding.comparisons:
            c = fit.contrast(lmat[[idx[g]]] - lmat[[idx[ref]]], names=["diff"]).iloc[0]
            rows.append(estimand_row(difference_name(site, measure, month, (g, ref)), site, method, c["estimate"],
                                     c["se"], c["df"], fit.n_subjects))
    return pd.DataFrame(rows, columns=ESTIMAND_COLUMNS)


def mmrm_lsmeans(fits: dict[str, MmrmResult], site: str, covariance: str = "us",
                 coding: GroupCoding | None = None) -> pd.DataFrame:
    """LS-means of the change per reported level at every visit (:data:`LSMEANS_COLUMNS`)."""
    coding = coding or RAJAK_CODING
    rows = []
    for measure, fit in fits.items():
        grid, lmat = _grid(fit, coding)
        label = np.full(len(grid), None, dtype=object)
        for g in coding.reported:
            label[coding.rows_of(grid, g)] = g
        keep = np.flatnonzero(label != None)  # noqa: E711 - element-wise
        tab = fit.contrast(lmat[keep], names=[str(label[i]) for i in keep])
        for i, (_, r) in zip(keep, tab.iterrows(), strict=True):
            rows.append({"site": site, "measure": measure, "covariance": covariance,
                         "month": float(grid["month"].iloc[i]), "group": label[i],
                         **{k: r[k] for k in ("estimate", "se", "df", "ci_low", "ci_high", "p")}})
    return pd.DataFrame(rows, columns=LSMEANS_COLUMNS)


def completers_estimands(res: CompletersResult, single_arm: bool = False) -> pd.DataFrame:
    """The completers' t-test rows (within each group and between groups, % and g/cm^2) in
    :data:`ESTIMAND_COLUMNS` (the all-completers rows only for a single arm, where they are the
    group)."""
    t = res.table
    groups = t["group"].eq("all") if single_arm else t["group"].ne("all")
    keep = t[(t["analysis"].isin(["within", "between"])) & t["measure"].isin(["pct", "abs"]) & groups
             & t["test"].str.contains("t-test")]
    out = pd.DataFrame({"estimand": keep["estimand"], "site": keep["site"], "method": "completers, t-test",
                        "estimate": keep["estimate"], "se": keep["se"], "df": keep["df"],
                        "ci_low": keep["ci_low"], "ci_high": keep["ci_high"], "p": keep["p"], "n": keep["n"]})
    return out.reset_index(drop=True)
