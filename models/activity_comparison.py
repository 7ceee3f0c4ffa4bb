r"""The responder effect with and without disease activity in the activity model.

:func:`compare_responder_effect` fits the activity model (:mod:`models.activity`) with and
without the activity term on the same rows and reports how much of the responder difference
:math:`b_3` remains once disease activity is in the model (:class:`ActivityComparison`).
``models`` never imports ``analysis``, so it takes the sampler as an argument
(``analysis.engine.sampling.sample``).

Interpretation
--------------
:math:`b_3` with activity in the model is the responder effect at equal *observed* disease
control. Two things bias it away from the direct effect of the drug, both measured with
:mod:`models.simulate` (``tests/models/test_activity.py``):

- *measurement error in the mediator*: DAS28-CRP is a noisy measure of the true improvement,
  so adjusting for it is incomplete. With the twin's activity parameters (between-patient
  SD of the improvement fraction 0.15), 150 patients and bone that follows the true improvement
  only, 41-89% of the responder difference remained (4 data sets); with a wider spread of
  improvement (SD 0.3, types overlapping) and 200 patients, 12-47% (``"cumulative"``) and
  4-36% (``"mean_improvement"``) remained (8 data sets), against 86-110% under a pure type
  effect;
- *misclassification*: when the responder indicator is itself derived from DAS28 (EULAR
  response), the DAS28 term also absorbs part of a pure type effect (21-79% remained in 4 data
  sets with the twin's parameters).

So a large remaining share is weak evidence for an effect beyond disease control, and a small
one under a derived responder status is weak evidence against it; on the twin's 34 analysable
patients the 95% interval of :math:`b_3` widens 1.5-1.7 times once activity is in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.activity import (
    DEFAULT_ACTIVITY_SLOPE_SD,
    ActivityModel,
    build_activity_model,
)
from models.activity_exposure import ACTIVITY_KINDS, ActivityKind
from models.trajectory import TrajectoryPriors

__all__ = ["ActivityComparison", "compare_responder_effect"]


@dataclass
class ActivityComparison:
    """The responder effect with and without disease activity in the model.

    Attributes
    ----------
    models : dict
        ``{"without": ActivityModel, "with": ActivityModel}``.
    fits : dict
        The matching fits (whatever ``sample`` returned; ``.posterior`` is a DataTree).
    table : DataFrame
        One row per model and quantity: ``model, quantity, unit, median, eti_low, eti_high,
        p_gt_0, diagnostics``.
    remaining : float
        Posterior median of :math:`b_3` with activity over that without: the share of the
        responder difference that disease activity does not account for.
    remaining_pct : float
        The same for ``diff_pct_change_end``.
    text : str
    """

    models: dict[str, ActivityModel]
    fits: dict[str, Any]
    table: pd.DataFrame
    remaining: float
    remaining_pct: float
    text: str


_QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("diff_change_end", "responder x time (b3)", "g/cm^2/yr"),
    ("diff_pct_change_end", "responder difference in 12-month change", "percentage points"),
    ("diff_change_12m_total", "total responder difference (own disease control)", "g/cm^2/yr"),
    ("diff_change_12m_activity", "part carried by disease activity", "g/cm^2/yr"),
    ("b_activity", "slope per unit of activity improvement (b_a)", "g/cm^2/yr per unit"),
)


def _summary(fit: Any, label: str) -> list[dict[str, Any]]:
    post = fit.posterior["posterior"]
    diag = getattr(fit, "diagnostics", None)
    verdict = "" if diag is None else ("pass" if diag.passed else "FAIL: " + ", ".join(
        diag.failed_checks))
    rows = []
    for var, quantity, unit in _QUANTITIES:
        if var not in post:
            continue
        x = np.asarray(post[var].values, dtype=float).ravel()
        lo, med, hi = np.quantile(x, [0.025, 0.5, 0.975])
        rows.append({"model": label, "variable": var, "quantity": quantity, "unit": unit,
                     "median": med, "eti_low": lo, "eti_high": hi,
                     "p_gt_0": float(np.mean(x > 0)), "diagnostics": verdict})
    return rows


def compare_responder_effect(
    data: pd.DataFrame,
    site: str,
    *,
    sample: Callable[..., Any],
    activity: ActivityKind = "cumulative",
    activity_column: str = "das28_crp",
    priors: TrajectoryPriors | None = None,
    covariates: tuple[str, ...] | list[str] = (),
    activity_slope_sd: float = DEFAULT_ACTIVITY_SLOPE_SD,
    seed: int = 0,
    **sample_kwargs: Any,
) -> ActivityComparison:
    r"""Fit the model without and with the activity term and compare the responder effect.

    Both models see the same rows. The share of the responder difference that remains once
    disease activity is in the model is

    .. math::

        \rho = \frac{\operatorname{median}(b_3 \mid \text{with activity})}
                    {\operatorname{median}(b_3 \mid \text{without})}

    (and the same for ``diff_pct_change_end``): near 1 when the responder effect is beyond
    disease control, near 0 when bone follows disease control. The with-activity fit also
    decomposes its total responder difference into ``diff_change_end`` (direct) and
    ``diff_change_12m_activity``.

    Parameters
    ----------
    data : DataFrame
        As for :func:`models.activity.build_activity_model`.
    site : str
        A site of the study (data column ``bmd_<site>``).
    sample : callable
        ``sample(model, seed=..., **sample_kwargs)`` returning an object with ``.posterior``
        (a DataTree) and ``.diagnostics``: pass ``analysis.engine.sampling.sample``.
    activity : {"cumulative", "mean_improvement"}
    activity_column, priors, covariates, activity_slope_sd
        See :func:`models.activity.build_activity_model`.
    seed : int
        Passed to both fits.
    **sample_kwargs
        E.g. ``draws``, ``tune``, ``chains``, ``cores``.

    Returns
    -------
    ActivityComparison
    """
    if activity == "none" or activity not in ACTIVITY_KINDS:
        raise ValueError(f"activity must be 'cumulative' or 'mean_improvement', got {activity!r}")
    if not callable(sample):
        raise ValueError("sample must be a callable such as analysis.engine.sampling.sample")
    common = dict(priors=priors, activity_column=activity_column, covariates=covariates,
                  activity_slope_sd=activity_slope_sd)
    with_model = build_activity_model(data, site, activity=activity, **common)
    without_model = build_activity_model(data, site, activity="none", **common)
    models = {"without": without_model, "with": with_model}
    fits = {k: sample(mdl, seed=seed, **sample_kwargs) for k, mdl in models.items()}
    rows = _summary(fits["without"], "without activity") + _summary(fits["with"], "with activity")
    table = pd.DataFrame(rows)

    def draws(k: str, var: str) -> np.ndarray:
        return np.asarray(fits[k].posterior["posterior"][var].values, dtype=float).ravel()

    def med(k: str, var: str) -> float:
        return float(np.median(draws(k, var)))

    def eti(k: str, var: str, fmt: str) -> str:
        lo, hi = np.quantile(draws(k, var), [0.025, 0.975])
        return f"95% CrI {lo:{fmt}} to {hi:{fmt}}"

    def ratio(var: str) -> float:
        den = med("without", var)
        return med("with", var) / den if den != 0 else float("nan")

    remaining, remaining_pct = ratio("diff_change_end"), ratio("diff_pct_change_end")
    lo, hi = np.quantile(draws("without", "diff_change_end"), [0.025, 0.975])
    clear = lo > 0 or hi < 0
    via = med("with", "diff_change_12m_activity")
    text = (
        f"{site}: responder x time difference {med('without', 'diff_change_end'):+.4f} g/cm^2/yr "
        f"({med('without', 'diff_pct_change_end'):+.2f} percentage points, "
        f"{eti('without', 'diff_pct_change_end', '+.2f')}) without disease activity; "
        f"{med('with', 'diff_change_end'):+.4f} g/cm^2/yr "
        f"({med('with', 'diff_pct_change_end'):+.2f} points, "
        f"{eti('with', 'diff_pct_change_end', '+.2f')}) with {activity_column} improvement "
        f"({activity}) in the model: {100 * remaining:.0f}% of the difference remains "
        f"(ratio of posterior medians). Disease activity carries {via:+.4f} g/cm^2/yr of the "
        f"total {med('with', 'diff_change_12m_total'):+.4f}; slope per unit of improvement "
        f"{med('with', 'b_activity'):+.4f} g/cm^2/yr ({eti('with', 'b_activity', '+.4f')})."
        + ("" if clear else " Without activity the responder difference is not clearly "
           "non-zero, so the remaining share is not interpretable.")
    )
    return ActivityComparison(models=models, fits=fits, table=table, remaining=remaining,
                              remaining_pct=remaining_pct, text=text)
