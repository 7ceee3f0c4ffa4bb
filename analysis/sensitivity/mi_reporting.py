r"""What the MI-based sensitivity analyses share: the endpoint analysis of every completed dataset,
Rubin's pooling, table and forest rows, the interval figure, the wording of conclusions and the
options read from a run configuration.

Used by :mod:`~analysis.sensitivity.reference_based`, :mod:`~analysis.sensitivity.delta`,
:mod:`~analysis.sensitivity.tipping` and :mod:`~analysis.sensitivity.bayes_delta`.

Analysis and pooling
--------------------
Each completed dataset gives, at the endpoint month, the mean % change of every group :math:`g`
(:math:`U = s_g^2/n_g`, complete-data df :math:`n_g - 1`) and, for every comparison with the
reference :math:`r` (:mod:`analysis.sensitivity.design`), the difference :math:`\bar y_g - \bar y_r`
(Welch: :math:`U = s_g^2/n_g + s_r^2/n_r`), as :func:`analysis.frequentist.imputation.standard_analyses`;
they are pooled with :func:`analysis.frequentist.imputation.rubin_pool` (Barnard-Rubin df). A single
arm has its one group's change and no difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.frequentist.imputation import PooledResult, rubin_pool
from analysis.sensitivity.design import (
    SensitivityDesign,
    design_from_config,
    site_label,
)
from analysis.sensitivity.mmrm_imputation import DEFAULT_M
from analysis.sensitivity.result import FOREST_COLUMNS
from analysis.study.estimands import GROUP_LABELS, difference_name, estimand_name

__all__ = [
    "CI_PHRASE",
    "ci_conclusion",
    "endpoint_analysis",
    "endpoint_estimand_names",
    "estimand_keys",
    "forest_rows",
    "interval_figure",
    "key_group",
    "mi_options_from_config",
    "per_imputation_estimates",
    "pooled_table_rows",
]

#: How a text states a 95% CI's side of 0 (keys: :func:`ci_conclusion`).
CI_PHRASE = {"above 0": "lies above 0", "below 0": "lies below 0", "includes 0": "includes 0"}


def estimand_keys(levels: Sequence[str]) -> list[str]:
    """The keys of the endpoint estimands of groups ``levels`` (reference first): every level, then
    ``"<level> - <reference>"`` for every other level (none for a single group)."""
    levels = list(levels)
    return levels + [f"{lv} - {levels[0]}" for lv in levels[1:]]


def key_group(key: str, levels: Sequence[str]) -> tuple[str, str]:
    """``(group, comparison)`` table columns of a key: ``(level, "")`` or ``("difference", key)``."""
    return (key, "") if key in levels else ("difference", key)


def per_imputation_estimates(pct: np.ndarray, group: np.ndarray,
                             levels: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    r"""The endpoint analysis in every imputation, before pooling.

    Parameters
    ----------
    pct : ndarray, shape (m, n)
        % change at the endpoint in each completed dataset.
    group : ndarray of int, shape (n,)
        Code of each patient's level.
    levels : sequence of str
        The groups in model order, the reference first.

    Returns
    -------
    dict
        ``{key: (Q_l, U_l, df_l)}`` (keys :func:`estimand_keys`), arrays of shape ``(m,)``: each
        group's mean (:math:`U = s_g^2/n_g`, df :math:`n_g - 1`) and each difference
        :math:`\bar y_g - \bar y_r` with the reference (Welch :math:`U` and df).

    Raises
    ------
    ValueError
        A group with fewer than 2 patients.
    """
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    moments = {}
    for code, name in enumerate(levels):
        ys = pct[:, group == code]
        if ys.shape[1] < 2:
            raise ValueError(f"need at least 2 {GROUP_LABELS.get(name, name)} for the analysis, got {ys.shape[1]}")
        v = ys.var(axis=1, ddof=1) / ys.shape[1]
        moments[name] = (ys.mean(axis=1), v, ys.shape[1])
        out[name] = (moments[name][0], v, np.full(pct.shape[0], ys.shape[1] - 1.0))
    (q0, v0, n0) = moments[levels[0]]
    for name in list(levels)[1:]:
        q1, v1, n1 = moments[name]
        u = v1 + v0
        with np.errstate(invalid="ignore", divide="ignore"):
            df = u**2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
        out[f"{name} - {levels[0]}"] = (q1 - q0, u, df)
    return out


def endpoint_estimand_names(site: str, month: float, levels: Sequence[str]) -> dict[str, str]:
    """``{key: estimand name}`` of the % change to ``month`` (:func:`estimand_keys`,
    :mod:`analysis.study.estimands`)."""
    levels = list(levels)
    out = {lv: estimand_name(site, lv, "pct", month) for lv in levels}
    out.update({f"{lv} - {levels[0]}": difference_name(site, "pct", month, groups=(lv, levels[0]))
                for lv in levels[1:]})
    return out


def endpoint_analysis(pct: np.ndarray, group: np.ndarray, site: str, month: float, level: float = 0.95, *,
                      levels: Sequence[str]) -> dict[str, PooledResult]:
    r"""Analyse every completed dataset and pool with Rubin's rules.

    Parameters
    ----------
    pct : ndarray, shape (m, n)
        % change at the endpoint in each completed dataset.
    group : ndarray of int, shape (n,)
        Code of each patient's level.
    site, month
        For the estimand names (:mod:`analysis.study.estimands`).
    level : float
    levels : sequence of str
        The groups in model order, the reference first.

    Returns
    -------
    dict
        ``{estimand name: PooledResult}`` for every group's mean % change
        (:math:`\hat Q = \bar y_g`, :math:`U = s_g^2/n_g`, :math:`\nu_\text{com} = n_g - 1`) and every
        difference with the reference (Welch :math:`U` and df; :math:`\nu_\text{com}` the mean Welch
        df), as :func:`analysis.frequentist.imputation.standard_analyses`.
    """
    pct = np.asarray(pct, dtype=float)
    group = np.asarray(group, dtype=int)
    if pct.ndim != 2 or pct.shape[1] != group.size:
        raise ValueError(f"pct must be (m, n = {group.size}), got shape {pct.shape}")
    if not np.all(np.isfinite(pct)):
        raise ValueError("pct must be finite (every missing value imputed)")
    names = endpoint_estimand_names(site, month, levels)
    out = {}
    for key, (q, u, df) in per_imputation_estimates(pct, group, levels).items():
        dfc = float(np.mean(df))
        out[names[key]] = rubin_pool(q, u, dfc if np.isfinite(dfc) and dfc > 0 else None, conf_level=level)
    return out


def pooled_table_rows(pooled: dict[str, PooledResult], site: str, month: float, group: np.ndarray,
                      imputed: np.ndarray, extra: dict[str, Any], levels: Sequence[str]) -> list[dict[str, Any]]:
    r"""Table rows of :func:`endpoint_analysis`: one per estimand (each group, each difference).

    Parameters
    ----------
    pooled : dict
        :func:`endpoint_analysis` of ``site`` at ``month``.
    site : str
    month : float
    group : ndarray of int, shape (n,)
    imputed : ndarray of bool, shape (n,)
        Endpoint value imputed (counted per group in ``n_imputed``).
    extra : dict
        Columns added to every row (e.g. ``strategy``, ``method``).
    levels : sequence of str

    Returns
    -------
    list of dict
        ``extra`` and ``site, estimand, group, comparison, estimate, se, df, ci_low, ci_high, p, fmi,
        mc_se, m, n, n_imputed``: ``group`` is the level, or ``"difference"`` with ``comparison``
        ``"<level> - <reference>"``; ``mc_se`` :math:`= \sqrt{B/m}`.
    """
    names = endpoint_estimand_names(site, month, levels)
    rows = []
    for key, name in names.items():
        r = pooled[name]
        g, comparison = key_group(key, levels)
        if g == "difference":
            lv = next(lv for lv in levels[1:] if key == f"{lv} - {levels[0]}")
            sel = (group == 0) | (group == list(levels).index(lv))
        else:
            sel = group == list(levels).index(key)
        n, n_imp = int(sel.sum()), int(imputed[sel].sum())
        rows.append({**extra, "site": site, "estimand": name, "group": g, "comparison": comparison,
                     "estimate": r.estimate, "se": r.se, "df": r.df, "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "p": r.p, "fmi": r.fmi, "mc_se": float(np.sqrt(r.between / r.m)), "m": r.m,
                     "n": n, "n_imputed": n_imp})
    return rows


def forest_rows(table: pd.DataFrame, analysis: pd.Series) -> pd.DataFrame:
    """Forest-plot rows (:data:`~analysis.sensitivity.result.FOREST_COLUMNS`, kind ``"frequentist"``)
    of a table with ``estimand, site, estimate, ci_low, ci_high``; ``analysis`` labels each row."""
    return pd.DataFrame({"estimand": table["estimand"], "site": table["site"], "analysis": analysis,
                         "estimate": table["estimate"], "low": table["ci_low"], "high": table["ci_high"],
                         "kind": "frequentist"})[FOREST_COLUMNS]


def interval_figure(table: pd.DataFrame, by: str, order: Sequence[str], sites: Sequence[str], title: str,
                    label: str | None, levels: Sequence[str] | None = None):
    """Point estimates and 95% intervals: rows = sites, columns = every group's change and every
    difference with the reference; one line per value of ``by`` (top to bottom in ``order``).

    Parameters
    ----------
    table : DataFrame
        Rows with ``site, group, estimate, ci_low, ci_high`` (and ``comparison`` for differences) and
        the column ``by``.
    by : str
        Column naming the analysis of a row (e.g. ``"strategy"``, ``"scenario"``).
    order : sequence of str
        Values of ``by``, top to bottom (missing ones are skipped).
    sites : sequence of str
    title : str
    label : str, optional
        Stamped on the figure (e.g. ``"SYNTHETIC (RAJAK digital twin)"``).
    levels : sequence of str, optional
        The groups, reference first (default: the table's, in order of appearance).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from analysis.figures.plots import PALETTE, stamp, style

    if levels is None:
        levels = [g for g in dict.fromkeys(table["group"]) if g != "difference"]
    comps = ([c for c in dict.fromkeys(table.loc[table["group"] == "difference", "comparison"])]
             if "comparison" in table.columns else (["difference"] if (table["group"] == "difference").any() else []))
    panels = [("group", lv, GROUP_LABELS.get(lv, lv)) for lv in levels]
    panels += [("comparison", c, " - ".join(GROUP_LABELS.get(p, p) for p in str(c).split(" - ", 1))) for c in comps]
    cycle = [PALETTE["vermillion"], PALETTE["blue"], PALETTE["green"], PALETTE["orange"], PALETTE["purple"]]
    with style():
        fig, axes = plt.subplots(len(sites), len(panels),
                                 figsize=(3.4 * len(panels) + 0.4, 0.32 * len(order) * len(sites) + 1.4 * len(sites)),
                                 squeeze=False, sharey=True)
        y = np.arange(len(order))[::-1]
        for r, site in enumerate(sites):
            for c, (col, key, head) in enumerate(panels):
                ax = axes[r, c]
                colour = cycle[c % len(cycle)] if col == "group" else PALETTE["black"]
                if col == "group":
                    sub = table[(table["site"] == site) & (table["group"] == key)]
                elif "comparison" in table.columns:
                    sub = table[(table["site"] == site) & (table["comparison"] == key)]
                else:
                    sub = table[(table["site"] == site) & (table["group"] == "difference")]
                sub = sub.set_index(by)
                for yi, lev in zip(y, order):
                    if lev not in sub.index:
                        continue
                    row = sub.loc[lev]
                    ax.hlines(yi, row["ci_low"], row["ci_high"], color=colour, lw=2)
                    ax.plot(row["estimate"], yi, "s", color=colour, ms=5)
                ax.axvline(0.0, color=PALETTE["grey"], lw=0.8)
                ax.set_yticks(y, list(order))
                ax.set_title(f"{site_label(site)}: {head}", fontsize=9)
                if r == len(sites) - 1:
                    ax.set_xlabel("% change to endpoint (95% CI)")
        fig.suptitle(title, fontsize=10)
        stamp(fig, label)
        fig.tight_layout()
    return fig


def ci_conclusion(r: pd.Series) -> str:
    """``"above 0"``, ``"below 0"`` or ``"includes 0"``: where a row's ``ci_low``..``ci_high`` lies."""
    if r["ci_low"] > 0:
        return "above 0"
    if r["ci_high"] < 0:
        return "below 0"
    return "includes 0"


def mi_options_from_config(config: Any, derived: pd.DataFrame | None = None,
                           design: Any = None) -> tuple[dict[str, Any], list[str]]:
    """Common keyword arguments of the MI analyses from a run configuration, and notes.

    Parameters
    ----------
    config : RunConfig
        :class:`analysis.run.config.RunConfig` (read by attribute, with defaults when absent).
    derived : DataFrame, optional
        The derived frame (its design, when ``design`` is not given; without either, the RAJAK
        default).
    design : ResolvedDesign, optional

    Returns
    -------
    opts : dict
        ``sites, undefined, rule, m, seed, endpoint_month, label, design``: the configuration's sites
        and endpoint (else the design's), at least :data:`DEFAULT_M` imputations; an ``"unknown"``
        group becomes ``"last_observed"``; the label is the SYNTHETIC stamp when the run is on the
        embedded twin.
    notes : list of str
        Why a setting was changed.
    """
    notes = []
    sd: SensitivityDesign | None = None
    if derived is not None:
        sd = design_from_config(derived, config, design)
    undefined = getattr(config, "undefined_responders", "last_observed")
    if undefined == "unknown" and (sd is None or sd.kind == "derived"):
        notes.append("The plan keeps undefined responder status as an 'unknown' group; these analyses need two "
                     "groups, so status was classified from the last observed DAS28-CRP instead.")
        undefined = "last_observed"
    responder = getattr(config, "responder", None)
    opts = {"sites": sd.sites if sd is not None else getattr(config, "sites", None), "undefined": undefined,
            "rule": responder.rule() if responder is not None else None,
            "m": max(int(getattr(config, "mi_imputations", DEFAULT_M)), DEFAULT_M),
            "seed": int(getattr(config, "seed", 0)),
            "endpoint_month": sd.endpoint if sd is not None else getattr(config, "endpoint_month", None),
            "label": "SYNTHETIC (RAJAK digital twin)" if getattr(config, "data", None) is None else None,
            "design": None if sd is None else sd.design}
    return opts, notes
