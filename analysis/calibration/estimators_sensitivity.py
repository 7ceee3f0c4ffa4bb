r"""Sensitivity estimators under the data-generating mechanism each assumes (:data:`ESTIMATORS`,
registered by :mod:`analysis.calibration.registry`).

**Delta-adjusted MI** (:func:`analysis.sensitivity.delta.delta_analysis`, MAR imputation +
delta, :data:`DELTA_M` imputations, Rubin's rules). The trial is the frequentist one
(:data:`~analysis.calibration.designs.TRIAL_TRUTH`, :data:`~analysis.calibration.designs.TRIAL_N`
patients, MCAR monotone dropout with hazard :math:`h` per post-baseline visit), loaded as a user's
file would be. Its *full* data are MNAR with a known delta: after dropout at the last observed
nominal month :math:`t_{d_i}`, patient :math:`i` of group :math:`g` has the % change the model
predicts (the values the simulator would have drawn, i.e. the MAR prediction, since dropout is
MCAR) shifted by :math:`\delta_g` percentage points of baseline per year since dropout,

.. math::

    \tilde p_{ij} = p_{ij} + \delta_g\,\frac{t_j - t_{d_i}}{12}, \qquad t_j > t_{d_i},

exactly the pattern-mixture assumption of :mod:`analysis.sensitivity.delta` (``unit="pct"`` on the
% change scale, :math:`\kappa_i = 1`, nominal months). The observed data do not depend on
:math:`\delta` (which is why it is untestable); the estimand does. Because dropout is independent
of the outcome, the true difference in mean % change to month :math:`T` is

.. math::

    \Delta_\delta = \Delta_0 + (\delta_1 - \delta_0)\,E\!\left[\frac{T - t_{d}}{12}\right],
    \qquad
    E\!\left[\frac{T - t_{d}}{12}\right] = \sum_{k=0}^{K-1} (1-h)^k\,h\,\frac{T - t_k}{12},

:math:`\Delta_0` the MAR truth (:func:`~analysis.calibration.designs.pct_change_difference`),
:math:`t_0 = 0 < t_1 < \dots < t_K = T` the nominal visits and :math:`(1-h)^k h` the probability
that visit :math:`t_k` is the last one attended (:func:`expected_years_after_dropout`,
:func:`delta_truth`; checked against a large simulation of the shifted full data in the tests).

* ``delta_mi_true``: the delta adjustment at the true :math:`\delta` (should cover at 93-97%);
* ``delta_mi_mar``: the same imputations at :math:`\delta = 0` (MAR) on the *same* data sets: its
  bias, :math:`-(\delta_1 - \delta_0)\,E[(T - t_d)/12]`, is what assuming MAR gets wrong here.

**Conditional-mean bootstrap** (``j2r_condmean_bootstrap``): J2R at the design and on the data sets
of :mod:`analysis.calibration.estimators_ice` (stream ``ice_mcar``), conditional-mean imputation
with :data:`BOOT_B` bootstrap resamples, normal interval from the bootstrap SE (Wolbers et al. 2022),
next to ``j2r_condmean_jackknife``.

The Bayesian delta model (:mod:`analysis.sensitivity.bayes_delta`) is calibrated on the same data
sets by :mod:`analysis.calibration.estimators_bayes_delta`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from analysis.calibration.designs import (
    ENDPOINT,
    TRIAL_N,
    TRIAL_TRUTH,
    pct_change_difference,
)
from analysis.calibration.estimators_ice import ICE_N, ICE_TRUTH, ice_patients
from analysis.calibration.spec import Estimator
from models.simulate_ice import simulate_ice_trial, true_effect
from models.simulate_trial import TrialTruth, simulate_trial

__all__ = ["BOOT_B", "DELTA_ACTIVE", "DELTA_M", "DELTA_PLACEBO", "ESTIMATORS", "delta_truth", "derived_trial",
           "expected_years_after_dropout", "fit_condmean_bootstrap", "fit_delta_mar", "fit_delta_mi",
           "shifted_pct_changes"]

#: The true deltas (% of baseline BMD per year after dropout): placebo dropouts lose 1%/yr more than
#: MAR predicts, active dropouts 3%/yr more (e.g. stopping treatment).
DELTA_PLACEBO = -1.0
DELTA_ACTIVE = -3.0
DELTA_M = 20
BOOT_B = 100


def expected_years_after_dropout(truth: TrialTruth = TRIAL_TRUTH, month: float = ENDPOINT) -> float:
    r""":math:`E[(T - t_d)/12]` under the simulator's MCAR monotone dropout (module docstring), 0 for
    completers: :math:`\sum_k (1-h)^k h (T - t_k)/12` over the visits before ``month``."""
    h = truth.dropout_hazard
    before = [t for t in truth.visits if t < month]
    return float(sum((1.0 - h) ** k * h * (month - t) / 12.0 for k, t in enumerate(before)))


def delta_truth(delta_placebo: float = DELTA_PLACEBO, delta_active: float = DELTA_ACTIVE,
                truth: TrialTruth = TRIAL_TRUTH, month: float = ENDPOINT) -> float:
    r"""True active - placebo difference in mean % change to ``month`` under MCAR dropout followed by
    the delta shift: :math:`\Delta_0 + (\delta_1 - \delta_0) E[(T - t_d)/12]` (module docstring)."""
    return pct_change_difference(truth, month) + (delta_active - delta_placebo) * expected_years_after_dropout(
        truth, month)


def shifted_pct_changes(n: int, seed: int, delta_placebo: float = DELTA_PLACEBO, delta_active: float = DELTA_ACTIVE,
                        truth: TrialTruth = TRIAL_TRUTH, month: float = ENDPOINT) -> tuple[np.ndarray, np.ndarray]:
    """The *full-data* % change to ``month`` of a simulated trial (active, placebo): the complete data
    drawn with the simulator, MCAR dropout drawn as the simulator does, the values after it shifted by
    delta per year since the last visit attended (the mechanism of the module docstring, by brute
    force; the tests compare it with :func:`delta_truth`)."""
    from dataclasses import replace

    frame = simulate_trial(n, replace(truth, dropout_hazard=0.0), seed=seed)
    wide = frame.pivot(index="patient_id", columns="visit", values="bmd_spine").sort_index(axis=1)
    arm = frame.groupby("patient_id")["arm"].first().reindex(wide.index).to_numpy()
    months = wide.columns.to_numpy(dtype=float)
    y = wide.to_numpy()
    pct = 100.0 * (y[:, months == month][:, 0] - y[:, 0]) / y[:, 0]
    rng = np.random.default_rng([seed, 1])
    last = np.zeros(len(pct))
    stay = np.ones(len(pct), dtype=bool)
    for t in months[1:]:
        stay &= rng.random(len(pct)) >= truth.dropout_hazard
        last = np.where(stay, t, last)
    delta = np.where(arm == "active", delta_active, delta_placebo)
    pct = pct + delta * (month - last) / 12.0
    return pct[arm == "active"], pct[arm == "placebo"]


def derived_trial(frame) -> object:
    """A :func:`simulate_trial` frame loaded and derived as a user's file would be (CSV, design flags
    ``--group arm --visit visit --time day --time-unit days``)."""
    from analysis.study.clinical import derive
    from analysis.study.data import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trial.csv"
        frame.to_csv(path, index=False)
        ds = load_dataset(path, group="arm", visit="visit", time="day", time_unit="days")
        return derive(ds.frame, design=ds.design)


def _simulate_delta(rng: np.random.Generator):
    frame = simulate_trial(TRIAL_N, TRIAL_TRUTH, seed=int(rng.integers(2**63 - 1)))
    return {"derived": derived_trial(frame), "seed": int(rng.integers(2**31 - 1))}, delta_truth()


def _close(figures: dict) -> None:
    """Close the result's figures (a study fits hundreds of data sets per process)."""
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def fit_delta_mi(data: dict, delta_placebo: float = DELTA_PLACEBO,
                 delta_active: float = DELTA_ACTIVE) -> tuple[float, float, float, float]:
    """Active - placebo difference in % change to month 24 of delta-adjusted MI (MAR + delta)."""
    from analysis.sensitivity.delta import DeltaScenario, delta_analysis

    res = delta_analysis(data["derived"], [DeltaScenario(delta_placebo, delta_active, label="calibration")],
                         sites=("spine",), m=DELTA_M, seed=data["seed"], endpoint_month=ENDPOINT)
    _close(res.figures)
    t = res.table
    r = t.loc[(t["group"] == "difference") & (t["comparison"] == "active - placebo")].iloc[0]
    return float(r["estimate"]), float(r["se"]), float(r["ci_low"]), float(r["ci_high"])


def fit_delta_mar(data: dict) -> tuple[float, float, float, float]:
    """:func:`fit_delta_mi` at delta = 0 (MAR)."""
    return fit_delta_mi(data, 0.0, 0.0)


def _simulate_j2r(rng: np.random.Generator):
    sim = simulate_ice_trial(ICE_N, ICE_TRUTH, seed=int(rng.integers(2**63 - 1)))
    return {"sim": sim, "seed": int(rng.integers(2**31 - 1))}, float(true_effect(ICE_TRUTH, "JR")[-1])


def fit_condmean_bootstrap(data: dict, strategy: str = "JR") -> tuple[float, float, float, float]:
    """Month-12 effect of conditional-mean imputation under ``strategy`` (rbmi's name), bootstrap SE
    from :data:`BOOT_B` resamples, normal interval."""
    from analysis.sensitivity.ice import MethodSettings, ancova, run_method

    p = ice_patients(data["sim"], strategy)
    months, levels = p.data.months, p.data.levels
    res = run_method("condmean_bootstrap", [p], lambda y, g, c: ancova(y, g, c, months, levels),
                     MethodSettings(n_samples=BOOT_B, seed=data["seed"]))
    r = res.pooled[strategy][f"trt_active_{months[-1]:g}|normal"]
    return float(r.estimate), float(r.se), float(r.ci_low), float(r.ci_high)


def _estimators() -> tuple[Estimator, ...]:
    design = (f"{TRIAL_N} patients 1:1, spine at months 0/6/12/24, random intercept and slope, MCAR dropout "
              f"{TRIAL_TRUTH.dropout_hazard:.0%}/visit, post-dropout values MNAR: MAR prediction + delta "
              f"(placebo {DELTA_PLACEBO:+g}, active {DELTA_ACTIVE:+g} %/yr since dropout)")
    pct = f"difference in mean % change to month {ENDPOINT:g} under the true delta (full data)"
    mi = f"MI under MAR, {DELTA_M} imputations, delta applied after imputation, Rubin's rules"
    ice = (f"{ICE_N} patients 1:1, change at months 4/8/12 (rbmi's model, AR(1)-type covariance), MCAR "
           "treatment stop 8%/12% per visit, data missing after it")
    bias = (f"assumes MAR (delta = 0) when the true delta is {DELTA_PLACEBO:+g} / {DELTA_ACTIVE:+g} %/yr: biased by "
            f"{delta_truth(0.0, 0.0) - delta_truth():+.2f} points, so it under-covers (what MAR gets wrong)")
    return (
        Estimator("delta_mi_true", "sensitivity", _simulate_delta, fit_delta_mi, design, pct,
                  mi + ", at the true delta", stream="delta_mnar"),
        Estimator("delta_mi_mar", "sensitivity", _simulate_delta, fit_delta_mar, design, pct,
                  mi + ", at delta = 0", expected=bias, stream="delta_mnar"),
        Estimator("j2r_condmean_bootstrap", "reference-based", _simulate_j2r, fit_condmean_bootstrap, ice,
                  "J2R treatment effect at month 12 (g/cm^2)",
                  f"conditional mean imputation, {BOOT_B} bootstrap resamples, normal interval", stream="ice_mcar"),
    )


#: This module's estimators, in table order.
ESTIMATORS = _estimators()
