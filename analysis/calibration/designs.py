r"""The designs the frequentist estimators are calibrated at, drawn with the project's simulators.

**Trial** (:func:`models.simulate_trial.simulate_trial`): :data:`TRIAL_N` patients 1:1 to placebo
and active, spine BMD at months 0, 6, 12, 24 from the random-intercept-and-slope model of
:class:`~models.simulate_trial.TrialTruth`,

.. math::

    y_{ij} = \mu + u_i + (\beta_{a(i)} + v_i)\,t_{ij} + \varepsilon_{ij},

with MCAR monotone dropout (hazard :data:`MCAR_HAZARD` per post-baseline visit) or, for multiple
imputation, MAR dropout (:func:`mar_dropout`). Truths:

* slope difference :math:`\beta_1 - \beta_0` (g/cm^2 per year): the LMM's ``t:active``;
* difference in mean change to month :math:`T`: :math:`(\beta_1 - \beta_0)\,T/12` (the visit
  jitter is uniform over a whole number of days, so :math:`E[t_{iT}] = T/12` exactly): the MMRM;
* difference in mean *% change* to month :math:`T` (:func:`pct_change_difference`),

  .. math::

      100\,(\beta_1 - \beta_0)\,\frac{T}{12}\,E\!\left[\frac{1}{Y_0}\right],
      \qquad Y_0 \sim N(\mu,\ \sigma_u^2 + \sigma_e^2),

  because :math:`v_i`, :math:`\varepsilon_{iT}` and :math:`t_{iT}` are independent of the
  baseline :math:`Y_0 = \mu + u_i + \varepsilon_{i0}` and the :math:`-\varepsilon_{i0}/Y_0` term
  is the same in both arms (the expectation is taken over :math:`|Y_0 - \mu| < 10` SD, where all
  of the mass is): the completers t-test and MI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.simulate_trial import TrialTruth, simulate_trial

__all__ = ["ENDPOINT", "MAR_LOG_ODDS", "MCAR_HAZARD", "NULL_TRUTH", "TRIAL_N", "TRIAL_TRUTH", "endpoint_changes",
           "mar_dropout", "mmrm_frame", "pct_change_difference", "simulate_trial_frame", "slope_difference"]

TRIAL_N = 80
MCAR_HAZARD = 0.07
ENDPOINT = 24.0
#: Spine only (the fits use one site); slopes as :class:`TrialTruth`'s default.
TRIAL_TRUTH = TrialTruth(slopes={"spine": {"placebo": -0.012, "active": 0.010}}, baseline={"spine": 0.95},
                         dropout_hazard=MCAR_HAZARD)
#: The null: both arms lose bone at the placebo rate.
NULL_TRUTH = TrialTruth(slopes={"spine": {"placebo": -0.012, "active": -0.012}}, baseline={"spine": 0.95},
                        dropout_hazard=MCAR_HAZARD)
#: MAR dropout: log-odds of leaving before a visit per % of BMD change observed at the visit before.
MAR_LOG_ODDS = -0.5


def slope_difference(truth: TrialTruth) -> float:
    r""":math:`\beta_1 - \beta_0` at the spine (g/cm^2 per year)."""
    return truth.slopes["spine"]["active"] - truth.slopes["spine"]["placebo"]


def pct_change_difference(truth: TrialTruth, month: float = ENDPOINT) -> float:
    """True active - placebo difference in the mean of the patients' % change to ``month`` (module
    docstring)."""
    from scipy import integrate, stats

    mu, sd = truth.baseline["spine"], float(np.hypot(truth.sd_intercept, truth.sd_noise))
    inv, _ = integrate.quad(lambda y: stats.norm.pdf(y, mu, sd) / y, mu - 10 * sd, mu + 10 * sd,
                            epsabs=1e-13, epsrel=1e-12, limit=200)
    return 100.0 * slope_difference(truth) * month / 12.0 * inv


def simulate_trial_frame(rng: np.random.Generator, truth: TrialTruth = TRIAL_TRUTH, n: int = TRIAL_N) -> pd.DataFrame:
    """One trial of :func:`simulate_trial` (seeded from ``rng``) with ``month`` (the nominal visit),
    ``t`` (years) and ``active`` (0/1) columns."""
    frame = simulate_trial(n, truth, seed=int(rng.integers(2**63 - 1)))
    return frame.assign(month=frame["visit"], t=frame["day"] / 365.25,
                        active=(frame["arm"] == "active").astype(float))


def mar_dropout(frame: pd.DataFrame, rng: np.random.Generator, base_hazard: float = MCAR_HAZARD,
                log_odds: float = MAR_LOG_ODDS) -> pd.DataFrame:
    r"""Monotone MAR dropout imposed on a complete trial: a patient still in the study at visit
    :math:`j - 1` misses visit :math:`j` and all later ones with probability

    .. math::

        \operatorname{logit}^{-1}\bigl(\operatorname{logit} h + \kappa\, p_{i,j-1}\bigr),

    :math:`p_{i,j-1}` the % change of spine BMD observed at the visit before (0 at baseline),
    :math:`h` = ``base_hazard``, :math:`\kappa` = ``log_odds``: patients losing bone leave sooner.
    It depends on observed values only (MAR)."""
    wide = frame.pivot(index="patient_id", columns="visit", values="bmd_spine").sort_index(axis=1)
    y = wide.to_numpy()
    pct = 100.0 * (y - y[:, [0]]) / y[:, [0]]
    stay = np.ones(y.shape, dtype=bool)
    logit_h = np.log(base_hazard / (1.0 - base_hazard))
    for j in range(1, y.shape[1]):
        leave = rng.random(y.shape[0]) < 1.0 / (1.0 + np.exp(-(logit_h + log_odds * pct[:, j - 1])))
        stay[:, j] = stay[:, j - 1] & ~leave
    kept = pd.DataFrame(stay, index=wide.index, columns=wide.columns).stack()
    keys = pd.MultiIndex.from_frame(frame[["patient_id", "visit"]])
    return frame.loc[kept.reindex(keys).to_numpy()].reset_index(drop=True)


def mmrm_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Post-baseline rows with ``baseline`` (spine BMD at month 0) and ``chg`` (change from it)."""
    base = frame.loc[frame["visit"] == 0].set_index("patient_id")["bmd_spine"]
    post = frame.loc[frame["visit"] > 0].copy()
    post["baseline"] = post["patient_id"].map(base).to_numpy()
    post["chg"] = post["bmd_spine"] - post["baseline"]
    return post


def endpoint_changes(frame: pd.DataFrame, month: float = ENDPOINT) -> tuple[np.ndarray, np.ndarray]:
    """Completers' % change to ``month``: (active, placebo)."""
    post = mmrm_frame(frame)
    post = post.loc[post["visit"] == month]
    pct = 100.0 * post["chg"] / post["baseline"]
    return pct[post["arm"] == "active"].to_numpy(), pct[post["arm"] == "placebo"].to_numpy()
