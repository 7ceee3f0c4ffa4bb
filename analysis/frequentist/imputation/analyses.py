"""Analyses of one completed dataset, for pooling over the imputations: the mean % change of BMD
per group and the difference between two groups, each as ``{estimand: (estimate, variance, df)}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from analysis.frequentist.imputation.sequence import SITES, month_label
from analysis.study.rajak_design import RAJAK_DESIGN

__all__ = ["AnalysisFn", "mean_pct_change", "difference_pct_change", "combine_analyses", "standard_analyses"]

AnalysisFn = Callable[[pd.DataFrame], Mapping[str, Sequence[float]]]


def _endpoint_values(frame: pd.DataFrame, site: str, month: float, group: str | None,
                     level: str | None) -> np.ndarray:
    """Non-missing % changes at ``month`` (in group ``level``)."""
    sel = frame["month"].to_numpy(dtype=float) == month
    if group is not None and level is not None:
        sel &= frame[group].to_numpy(dtype=object) == level
    y = frame[f"pct_change_{site}"].to_numpy(dtype=float)[sel]
    return y[~np.isnan(y)]


def _mean_and_var(y: np.ndarray, what: str) -> tuple[float, float, float]:
    if y.size < 2:
        raise ValueError(f"{what}: need at least 2 values, got {y.size}")
    return float(y.mean()), float(y.var(ddof=1) / y.size), float(y.size - 1)


def mean_pct_change(site: str, month: float = RAJAK_DESIGN.endpoint, group: str | None = "responder_status",
                    levels: Sequence[str] | None = ("responder", "non-responder")) -> AnalysisFn:
    r"""Analysis function: mean % change of BMD at ``site`` from baseline to ``month`` per group.

    For each level :math:`g`: :math:`\hat Q = \bar y_g`, :math:`U = s_g^2/n_g`, df :math:`n_g - 1`
    (the one-sample t of :func:`analysis.frequentist.rtests.t_test_one_sample`). Missing values are
    skipped, so on :attr:`ImputationResult.observed` it is the completers' estimate.

    Parameters
    ----------
    site, month
        The endpoint.
    group, levels
        Group column and levels (``group=None`` or ``levels=None``: all patients together).

    Returns
    -------
    callable
        Estimands ``"<site> m<month> mean % change [<level>]"``.
    """
    lev_list: list[str | None] = list(levels) if (group is not None and levels is not None) else [None]

    def analysis(frame: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
        out = {}
        for lev in lev_list:
            name = f"{site} m{month_label(month)} mean % change [{lev or 'all'}]"
            out[name] = _mean_and_var(_endpoint_values(frame, site, float(month), group, lev), name)
        return out

    return analysis


def difference_pct_change(site: str, month: float = RAJAK_DESIGN.endpoint, group: str = "responder_status",
                          levels: tuple[str, str] = ("responder", "non-responder"),
                          variance: Literal["welch", "pooled"] = "welch") -> AnalysisFn:
    r"""Analysis function: difference in mean % change between two groups (first minus second).

    :math:`\hat Q = \bar y_1 - \bar y_2`. ``variance="welch"``: :math:`U = s_1^2/n_1 + s_2^2/n_2`
    with the Welch-Satterthwaite df :math:`U^2 / \sum_k (s_k^2/n_k)^2/(n_k - 1)`;
    ``"pooled"``: :math:`U = s_p^2(1/n_1 + 1/n_2)`, df :math:`n_1 + n_2 - 2`.

    Returns
    -------
    callable
        Estimand ``"<site> m<month> difference % change [<first> - <second>]"``.
    """
    if variance not in ("welch", "pooled"):
        raise ValueError(f"variance must be 'welch' or 'pooled', got {variance!r}")
    if len(levels) != 2:
        raise ValueError(f"levels must name two groups, got {list(levels)}")
    name = f"{site} m{month_label(month)} difference % change [{levels[0]} - {levels[1]}]"

    def analysis(frame: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
        y1, y2 = (_endpoint_values(frame, site, float(month), group, lev) for lev in levels)
        if min(y1.size, y2.size) < 2:
            raise ValueError(f"{name}: need at least 2 values per group, got {y1.size} and {y2.size}")
        v1, v2 = y1.var(ddof=1), y2.var(ddof=1)
        if variance == "welch":
            u = v1 / y1.size + v2 / y2.size
            df = u**2 / ((v1 / y1.size) ** 2 / (y1.size - 1) + (v2 / y2.size) ** 2 / (y2.size - 1))
        else:
            df = y1.size + y2.size - 2.0
            u = ((y1.size - 1) * v1 + (y2.size - 1) * v2) / df * (1.0 / y1.size + 1.0 / y2.size)
        return {name: (float(y1.mean() - y2.mean()), float(u), float(df))}

    return analysis


def combine_analyses(*fns: AnalysisFn) -> AnalysisFn:
    """One analysis function returning the estimands of all ``fns`` (names must not clash)."""

    def analysis(frame: pd.DataFrame) -> dict[str, tuple[float, ...]]:
        out: dict[str, tuple[float, ...]] = {}
        for fn in fns:
            res = fn(frame)
            clash = set(out) & set(res)
            if clash:
                raise ValueError(f"estimand name(s) {sorted(clash)} returned twice")
            out.update(res)
        return out

    return analysis


def standard_analyses(sites: Sequence[str] = SITES, month: float = RAJAK_DESIGN.endpoint,
                      group: str | None = "responder_status",
                      levels: tuple[str, str] = ("responder", "non-responder"),
                      variance: Literal["welch", "pooled"] = "welch") -> AnalysisFn:
    """Per site: mean % change to ``month`` in each group and the difference between the groups
    (``group=None``: the overall mean only)."""
    fns: list[AnalysisFn] = []
    for s in sites:
        fns.append(mean_pct_change(s, month, group, levels))
        if group is not None:
            fns.append(difference_pct_change(s, month, group, levels, variance))
    return combine_analyses(*fns)
