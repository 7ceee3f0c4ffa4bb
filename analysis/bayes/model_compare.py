"""PSIS-LOO comparison of Bayesian models fitted to the same observations (arviz-stats' ``loo`` and
``compare``), with the Pareto-k diagnostics reported rather than hidden.

The pointwise log-likelihood is each observation's given the patient's random effects (brms'
default); with two or three DXA visits per patient many observations are influential, so high
Pareto k values are common: the table counts them and the text says when LOO is unreliable.
Models fitted to different outcomes (e.g. the MMRM's change scores, or two sites jointly) are not
comparable this way and must not be passed together.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["loo_table"]


def loo_table(fits: dict[str, Any], k_threshold: float = 0.7) -> tuple[pd.DataFrame, str]:
    """Rank models by expected log predictive density.

    Parameters
    ----------
    fits
        ``{label: FitResult}`` whose posteriors hold a ``log_likelihood`` group over the same
        observations.

    Returns
    -------
    table, text
        One row per model (``elpd_loo, se, p_loo, elpd_diff, dse, weight, n_high_k``) and a
        sentence on reliability.
    """
    import arviz_stats as azs

    missing = [k for k, f in fits.items() if "log_likelihood" not in f.posterior.children]
    if missing:
        raise ValueError(f"model(s) {missing} have no log_likelihood group")
    sizes = {k: f.posterior["log_likelihood"].to_dataset()["bmd"].sizes.get("obs") for k, f in fits.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"models were fitted to different observations: {sizes}")
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loos = {k: azs.loo(f.posterior, pointwise=True) for k, f in fits.items()}
        cmp = azs.compare({k: f.posterior for k, f in fits.items()}) if len(fits) > 1 else None
    for k, lo in loos.items():
        pk = np.asarray(lo.pareto_k).ravel()
        row = {"model": k, "elpd_loo": float(lo.elpd), "se": float(lo.se), "p_loo": float(lo.p),
               "n_obs": int(pk.size), "n_high_k": int((pk > k_threshold).sum())}
        if cmp is not None:
            row.update({"elpd_diff": float(cmp.loc[k, "elpd_diff"]), "dse": float(cmp.loc[k, "dse"]),
                        "weight": float(cmp.loc[k, "weight"]), "rank": int(cmp.loc[k, "rank"])})
        rows.append(row)
    table = pd.DataFrame(rows)
    if "rank" in table:
        table = table.sort_values("rank").reset_index(drop=True)
    worst = table["n_high_k"].max()
    text = ("PSIS-LOO is reliable for every model (all Pareto k <= %.1f)." % k_threshold if worst == 0 else
            f"PSIS-LOO is UNRELIABLE: up to {worst} of {table['n_obs'].iloc[0]} observations have Pareto k > "
            f"{k_threshold} (few visits per patient make each observation influential); treat elpd "
            "differences as indicative only or use K-fold cross-validation.")
    return table, text
