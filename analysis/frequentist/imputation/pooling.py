"""Analyse every completed dataset and pool with Rubin's rules: :func:`pool_analyses` and the
one-call :func:`mi_analysis` (impute, analyse, pool)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.frequentist.imputation.analyses import AnalysisFn, standard_analyses
from analysis.frequentist.imputation.completed import ImputationResult
from analysis.frequentist.imputation.impute import impute_bmd
from analysis.frequentist.imputation.rubin import rubin_pool
from analysis.frequentist.imputation.sequence import SITES

__all__ = ["POOLED_COLUMNS", "pool_analyses", "mi_analysis"]

POOLED_COLUMNS = ["estimand", "estimate", "se", "df", "ci_low", "ci_high", "p", "fmi", "m",
                  "riv", "lambda", "within", "between", "total", "df_complete"]


def _estimand_rows(results: list[Mapping[str, Sequence[float]]]) -> dict[str, np.ndarray]:
    names = list(results[0])
    for k, res in enumerate(results[1:], start=2):
        if list(res) != names:
            raise ValueError(f"analysis returned different estimands in imputation {k}: "
                             f"{sorted(res)} vs {sorted(names)}")
    out = {}
    for name in names:
        rows = []
        for k, res in enumerate(results, start=1):
            tup = tuple(float(x) for x in res[name])
            if len(tup) not in (2, 3):
                raise ValueError(f"estimand {name!r} must be (estimate, variance[, df]), got {len(tup)} values")
            rows.append(tup if len(tup) == 3 else (*tup, np.inf))
        out[name] = np.asarray(rows)
    return out


def pool_analyses(result: ImputationResult, analysis_fn: AnalysisFn, *, conf_level: float = 0.95) -> pd.DataFrame:
    """Run ``analysis_fn`` on every completed dataset of ``result`` and pool with Rubin's rules.

    Parameters
    ----------
    result : ImputationResult
    analysis_fn : callable
        ``analysis_fn(completed_long_frame) -> {estimand: (estimate, variance[, df])}``; the
        same estimands every time. ``df`` is the complete-data df (Barnard-Rubin adjustment; when
        it varies between imputations, e.g. Welch's, the mean is used).
    conf_level : float

    Returns
    -------
    DataFrame
        One row per estimand: ``estimand, estimate, se, df, ci_low, ci_high, p, fmi, m, riv,
        lambda, within, between, total, df_complete``.
    """
    table = _estimand_rows([analysis_fn(d) for d in result.imputations])
    rows = []
    for name, arr in table.items():
        if not np.all(np.isfinite(arr[:, :2])):
            raise ValueError(f"estimand {name!r} is not finite in some imputation")
        dfc = float(arr[:, 2].mean())
        pooled = rubin_pool(arr[:, 0], arr[:, 1], None if not np.isfinite(dfc) else dfc, conf_level=conf_level)
        rows.append({"estimand": name, "estimate": pooled.estimate, "se": pooled.se, "df": pooled.df,
                     "ci_low": pooled.ci_low, "ci_high": pooled.ci_high, "p": pooled.p, "fmi": pooled.fmi,
                     "m": pooled.m, "riv": pooled.riv, "lambda": pooled.lambda_, "within": pooled.within,
                     "between": pooled.between, "total": pooled.total, "df_complete": pooled.df_complete})
    return pd.DataFrame(rows, columns=POOLED_COLUMNS)


def mi_analysis(frame: pd.DataFrame, analysis_fn: AnalysisFn | None = None, m: int = 50,
                seed: int | None = None, *, conf_level: float = 0.95, **impute_options) -> pd.DataFrame:
    """Impute (:func:`impute_bmd`), analyse every completed dataset, pool (:func:`pool_analyses`).

    Parameters
    ----------
    frame : DataFrame
        Long data with the group column (see :func:`impute_bmd`).
    analysis_fn : callable, optional
        ``completed_long_frame -> {estimand: (estimate, variance[, df])}``; default
        :func:`standard_analyses` for the group of ``impute_options`` (``"responder_status"``).
    m, seed
        Number of imputations and seed.
    conf_level : float
    **impute_options
        Passed to :func:`impute_bmd` (``group``, ``undefined``, ``covariates``, ...).

    Returns
    -------
    DataFrame
        The tidy pooled table of :func:`pool_analyses`.
    """
    if analysis_fn is None:
        group = impute_options.get("group", "responder_status")
        analysis_fn = standard_analyses(sites=impute_options.get("sites", SITES), group=group)
    result = impute_bmd(frame, m=m, seed=seed, **impute_options)
    return pool_analyses(result, analysis_fn, conf_level=conf_level)
