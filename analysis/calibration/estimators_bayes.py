r"""The Bayesian estimators of the calibration study (:data:`ESTIMATORS`, registered by
:mod:`analysis.calibration.registry`).

Both are fitted to the *same* data sets as the frequentist LMM and MMRM rows (seed stream
``trial_mcar``, :func:`analysis.calibration.designs.simulate_trial_frame`), so their truths are
shared (:mod:`analysis.calibration.designs`):

* ``bayes_lmm``: the trajectory LMM (:func:`models.trajectory.build_trajectory_model`, marginal
  parameterisation, default :class:`~models.trajectory.TrajectoryPriors`), arms placebo (the
  reference) and active, time the actual visit day in years; estimate the posterior mean of
  ``b[time:active]``, the slope difference, truth :math:`\beta_1 - \beta_0` (g/cm^2 per year);
* ``bayes_mmrm``: the Bayesian MMRM (:func:`models.mmrm.build_mmrm_model`, change from baseline
  in g/cm^2, unstructured covariance, default :class:`~models.mmrm.MmrmPriors`), estimate the
  posterior mean of ``diff_change_end`` at month 24, truth :math:`(\beta_1 - \beta_0)\,24/12`.
* ``bayes_lmm_null``: the trajectory LMM on the null trials of the frequentist type I error rows
  (stream ``trial_null``, no arm difference), truth 0. The share of 95% intervals that exclude 0 is
  the type I error of the Bayesian decision rule :math:`\max(P(\theta > 0 \mid y), P(\theta < 0 \mid y))
  > 0.975`, to be compared with its nominal 5%.

Each reports the posterior mean :math:`\hat\theta = \bar\theta^{(s)}`, the posterior SD as the
``se`` and the 95% equal-tailed interval :math:`[q_{0.025}, q_{0.975}]` of the draws. The model
is built and compiled once per worker process (``setup()`` returns an
:class:`analysis.engine.refit.Refitter`); every data set is swapped in with the model's own
``set_data`` and sampled with nutpie with a sampler seed derived from the data (so a result
depends on the data set only). :func:`bayes_estimators` makes the same estimators with other
sampler settings (the tests use tiny draws).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from analysis.calibration.designs import (
    ENDPOINT,
    NULL_TRUTH,
    TRIAL_TRUTH,
    simulate_trial_frame,
    slope_difference,
)
from analysis.calibration.spec import Estimator

__all__ = ["ESTIMATORS", "LEVELS", "SAMPLER", "bayes_estimators", "bayes_frame", "data_seed", "fit_lmm", "fit_mmrm",
           "posterior_row", "setup_lmm", "setup_mmrm"]

#: Arms, the reference first.
LEVELS = ("placebo", "active")
#: Default sampler settings of the registered estimators (per chain; one core per worker).
SAMPLER = {"draws": 1000, "tune": 1000, "chains": 4, "cores": 1, "target_accept": 0.9}
_TRIAL = "80 patients 1:1, spine at months 0/6/12/24, random intercept and slope, MCAR dropout 7%/visit"
_NULL = _TRIAL.replace("random intercept", "no arm difference, random intercept")


def bayes_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A :func:`simulate_trial_frame` trial with ``month_actual`` (the visit day in months, what the
    LMM's time is) added."""
    return frame.assign(month_actual=frame["day"] / 365.25 * 12.0)


def data_seed(frame: pd.DataFrame) -> int:
    """A sampler seed from the data's content (same data, same draws)."""
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return int(np.random.SeedSequence(h).generate_state(1)[0])


def posterior_row(x: np.ndarray) -> tuple[float, float, float, float]:
    r"""``(mean, sd, q_{0.025}, q_{0.975})`` of the draws ``x`` (any shape, pooled)."""
    x = np.asarray(x, dtype=float).ravel()
    lo, hi = np.quantile(x, [0.025, 0.975])
    return float(x.mean()), float(x.std(ddof=1)), float(lo), float(hi)


def _reference_frame() -> pd.DataFrame:
    return bayes_frame(simulate_trial_frame(np.random.default_rng(20261207)))


def setup_lmm(**sampler: Any) -> Any:
    """The trajectory LMM built on a reference trial and compiled for refits
    (:class:`analysis.engine.refit.Refitter` reading ``b``)."""
    from analysis.engine.refit import compile_for_refit
    from models.trajectory import build_trajectory_model

    model = build_trajectory_model(_reference_frame(), "spine", levels=LEVELS, group_column="arm",
                                   time="month_actual", endpoint_month=ENDPOINT)
    return compile_for_refit(model, var_names=["b"], **{**SAMPLER, **sampler})


def setup_mmrm(**sampler: Any) -> Any:
    """The Bayesian MMRM built on a reference trial and compiled for refits (reading
    ``diff_change_end``)."""
    from analysis.engine.refit import compile_for_refit
    from models.mmrm import build_mmrm_model

    model = build_mmrm_model(_reference_frame(), "spine", "abs", endpoint_month=ENDPOINT, levels=LEVELS,
                             group_column="arm", time="month")
    return compile_for_refit(model, var_names=["diff_change_end"], **{**SAMPLER, **sampler})


def _simulate_slope(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    return bayes_frame(simulate_trial_frame(rng)), slope_difference(TRIAL_TRUTH)


def _simulate_endpoint(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    return bayes_frame(simulate_trial_frame(rng)), slope_difference(TRIAL_TRUTH) * ENDPOINT / 12.0


def _simulate_slope_null(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    return bayes_frame(simulate_trial_frame(rng, NULL_TRUTH)), 0.0


def fit_lmm(frame: pd.DataFrame, refitter: Any) -> tuple[float, float, float, float]:
    """Posterior mean, SD and 95% equal-tailed interval of the slope difference ``b[time:active]``."""
    r = refitter.refit(frame, seed=data_seed(frame))
    coef = list(refitter.model.pymc_model.coords["coef"])
    return posterior_row(r.draws["b"][..., coef.index("time:active")])


def fit_mmrm(frame: pd.DataFrame, refitter: Any) -> tuple[float, float, float, float]:
    """Posterior mean, SD and 95% equal-tailed interval of ``diff_change_end`` (month 24)."""
    r = refitter.refit(frame, seed=data_seed(frame))
    return posterior_row(r.draws["diff_change_end"][..., 0])


def bayes_estimators(suffix: str = "", **sampler: Any) -> tuple[Estimator, ...]:
    """The Bayesian estimators with sampler settings ``sampler`` (keywords of
    :class:`~analysis.engine.refit.Refitter`, over :data:`SAMPLER`), named ``bayes_lmm<suffix>`` and
    ``bayes_mmrm<suffix>``."""
    settings = {**SAMPLER, **sampler}
    note = (f"nutpie {settings['chains']} chains x {settings['draws']} draws after {settings['tune']} tuning; "
            "posterior mean, SD, 95% equal-tailed interval")
    rule = ("decision rule: the 95% equal-tailed interval excludes 0, i.e. P(difference > 0) > 0.975 or "
            "P(difference < 0) > 0.975 (rajak power's posterior-probability rule at prob 0.975, either "
            "direction); coverage of 0 = 1 - its type I error")
    return (
        Estimator(f"bayes_lmm{suffix}", "bayesian", _simulate_slope, fit_lmm, _TRIAL,
                  "slope difference active - placebo (g/cm^2/yr)",
                  "trajectory LMM (marginal), default priors; " + note,
                  setup=partial(setup_lmm, **sampler), stream="trial_mcar"),
        Estimator(f"bayes_mmrm{suffix}", "bayesian", _simulate_endpoint, fit_mmrm, _TRIAL,
                  f"difference in mean change to month {ENDPOINT:g} (g/cm^2)",
                  "Bayesian MMRM (unstructured), default priors; " + note,
                  setup=partial(setup_mmrm, **sampler), stream="trial_mcar"),
        Estimator(f"bayes_lmm_null{suffix}", "type I error", _simulate_slope_null, fit_lmm, _NULL,
                  "0 (no slope difference)", "trajectory LMM (marginal), default priors; " + note + "; " + rule,
                  setup=partial(setup_lmm, **sampler), stream="trial_null"),
    )


#: This module's estimators, in table order.
ESTIMATORS = bayes_estimators()
