r"""Posterior summaries of estimands: the summary numbers and the draws themselves.

For draws :math:`\theta^{(1)}, \dots, \theta^{(S)}` of an estimand, :func:`summarise_draws` gives
the mean, median, SD, the 95% highest-density interval (HDI) and equal-tailed interval (ETI)
(arviz-stats' implementations), :math:`P(\theta < 0)`, :math:`P(\theta > 0)`, and with a region of
practical equivalence :math:`[-r, r]`, :math:`P(|\theta| < r)`.

The Savage-Dickey Bayes factor for a point null :math:`\theta = \theta_0` nested in the model is

.. math::

    \mathrm{BF}_{01} = \frac{p(\theta_0 \mid y)}{p(\theta_0)}, \qquad \mathrm{BF}_{10} = 1/\mathrm{BF}_{01},

with the posterior density at :math:`\theta_0` estimated by arviz-stats' KDE and the prior density
given in closed form by the caller.

The default ROPE is the DXA least significant change in RA patients on biologics: 2.4% at the
spine and 1.9% at the femoral neck (shared/literature.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from arviz_stats.base import array_stats

__all__ = ["LSC_PCT", "EstimandDraws", "summarise_draws", "savage_dickey_bf10", "summary_table",
           "SUMMARY_COLUMNS"]

#: Least significant change (%) of DXA in RA patients on biologics: the default ROPE half-width.
LSC_PCT = {"spine": 2.4, "femoral_neck": 1.9}

SUMMARY_COLUMNS = ["estimand", "site", "model", "mean", "median", "sd", "hdi_low", "hdi_high", "eti_low",
                   "eti_high", "p_lt_0", "p_gt_0", "rope", "p_in_rope", "bf10", "n_draws"]


@dataclass
class EstimandDraws:
    """An estimand's posterior draws (chains x draws flattened) and how to summarise them."""

    estimand: str
    site: str
    model: str
    draws: np.ndarray
    rope: float | None = None
    bf10: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, prob: float = 0.95) -> dict[str, Any]:
        return {"estimand": self.estimand, "site": self.site, "model": self.model,
                **summarise_draws(self.draws, rope=self.rope, prob=prob), "bf10": self.bf10}


def summarise_draws(draws: np.ndarray, rope: float | None = None, prob: float = 0.95) -> dict[str, float]:
    """Summary numbers of one estimand's draws (see the module docstring)."""
    x = np.asarray(draws, dtype=float).ravel()
    if x.size < 2 or not np.isfinite(x).all():
        raise ValueError(f"need at least 2 finite draws, got {x.size} ({np.isfinite(x).sum()} finite)")
    hdi = array_stats.hdi(x, prob)
    eti = array_stats.eti(x, prob)
    out = {"mean": float(x.mean()), "median": float(np.median(x)), "sd": float(x.std(ddof=1)),
           "hdi_low": float(hdi[0]), "hdi_high": float(hdi[1]), "eti_low": float(eti[0]), "eti_high": float(eti[1]),
           "p_lt_0": float((x < 0).mean()), "p_gt_0": float((x > 0).mean()),
           "rope": np.nan if rope is None else float(rope),
           "p_in_rope": np.nan if rope is None else float((np.abs(x) < rope).mean()),
           "n_draws": int(x.size)}
    return out


def savage_dickey_bf10(draws: np.ndarray, prior_density_at_null: float, null: float = 0.0) -> float:
    """:math:`\\mathrm{BF}_{10}` by the Savage-Dickey ratio with a KDE of the posterior at ``null``."""
    x = np.asarray(draws, dtype=float).ravel()
    grid, pdf, _ = array_stats.kde(x, grid_len=2048)
    post = float(np.interp(null, grid, pdf, left=0.0, right=0.0))
    if post <= 0:
        return float("inf")
    return float(prior_density_at_null / post)


def summary_table(items: list[EstimandDraws], prob: float = 0.95) -> pd.DataFrame:
    """Tidy table, one row per estimand (the draws stay in the ``EstimandDraws`` objects)."""
    return pd.DataFrame([it.summary(prob) for it in items]).reindex(columns=SUMMARY_COLUMNS)
