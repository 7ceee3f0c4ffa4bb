r"""The Bayesian delta model under MNAR dropout of known delta (:data:`ESTIMATORS`, to be registered
by :mod:`analysis.calibration.registry`).

**What the model estimates.** :func:`analysis.sensitivity.bayes_delta.bayes_delta_analysis` puts the
delta of a pattern mixture on the estimand of the trajectory LMM (marginal form, default priors,
time the scan's own month, fitted by :func:`analysis.bayes.fit.fit_bayes`). Per posterior draw,
group :math:`g`'s % change to month :math:`T` is

.. math::

    \theta_g = \underbrace{100\,\frac{(b_1 + b_{1g})\,T/12}{b_0 + b_{0g}}}_{F_g}
        + \delta_g\,\bar w_g, \qquad \bar w_g = \frac{1}{n_g}\sum_{i \in D_g} \frac{T - t_{d_i}}{12},

(``unit="pct"``, :math:`\kappa_i = 1`, scale :math:`s_g = 1`; :mod:`analysis.sensitivity.bayes_delta`,
item 1): :math:`F_g` is the % change of the group's *mean* BMD (a ratio of means), not a mean of
the patients' % changes, and the dropouts :math:`D_g` (no DXA at :math:`T`, last DXA at nominal
month :math:`t_{d_i}`) follow their MAR prediction shifted by :math:`\delta_g` % of their own
baseline per year after dropout. The estimate is the posterior median of
:math:`\theta_{\text{active}} - \theta_{\text{placebo}}`, the se its posterior SD, the interval the
95% equal-tailed one (the analysis's table row, method ``"Bayesian LMM, delta in the model"``).

**Mechanism.** That is the mechanism of the ``delta_mnar`` data sets of
:mod:`analysis.calibration.estimators_sensitivity` (the simulator's trial, MCAR monotone dropout
with hazard :math:`h` per post-baseline visit, the full-data month-:math:`T` % change of a dropout
shifted by :math:`\delta_g\,(T - t_{d_i})/12`, i.e. its BMD by :math:`\tilde Y_{iT} = Y_{iT} +
\tfrac{\delta_g}{100} Y_{i0} (T - t_{d_i})/12`), so these estimators share the stream and the data
sets with ``delta_mi_true`` / ``delta_mi_mar`` (:data:`DELTA_PLACEBO` :math:`= \delta_0`,
:data:`DELTA_ACTIVE` :math:`= \delta_1`).

**Truth** (:func:`bayes_delta_truth`). The simulator has :math:`E[Y_{i0}] = \mu` in both arms and
:math:`E[Y_{iT}] = \mu + \beta_g T/12`; dropout is independent of :math:`Y_{i0}`, so
:math:`E[\tilde Y_{iT}] = \mu + \beta_g T/12 + \tfrac{\delta_g}{100}\,\mu\,E[(T - t_d)/12]` and the
% change of the full-data group means differs between the arms by

.. math::

    \Delta^{\mathrm{RoM}}_\delta = 100\,\frac{(\beta_1 - \beta_0)\,T/12}{\mu}
        + (\delta_1 - \delta_0)\,E\!\left[\frac{T - t_d}{12}\right],
    \qquad E\!\left[\frac{T - t_d}{12}\right] = \sum_{k=0}^{K-1} (1-h)^k h\,\frac{T - t_k}{12}

(:func:`~analysis.calibration.estimators_sensitivity.expected_years_after_dropout`). It is below
the mean-of-%-changes truth of the MI rows by :math:`100(\beta_1 - \beta_0)(T/12)(E[1/Y_0] - 1/\mu)`
(~0.05 points here). Checked against a large simulation of the shifted full data
(:func:`shifted_group_means`) in the tests.

* ``bayes_delta_true``: the model at the true deltas;
* ``bayes_delta_mar``: the same posterior at :math:`\delta = 0` (the LMM's own estimand), biased by
  :math:`-(\delta_1 - \delta_0)\,E[(T - t_d)/12]` (:func:`mar_bias`).

The model uses the *observed* :math:`\bar w_g`, an unbiased estimate of :math:`E[(T - t_d)/12]` that
its posterior treats as known: the posterior SD of ``bayes_delta_true`` leaves out
:math:`\operatorname{Var}(\delta_1 \bar w_1 - \delta_0 \bar w_0)` (:func:`weight_sd`), which shows as
an SE ratio below 1. With the posterior SD :math:`s` (:data:`POSTERIOR_SD`, measured on these data
sets) the coverage to expect is :math:`2\Phi(1.96\, s / \sqrt{s^2 + v}) - 1`, :math:`v` that variance,
for ``bayes_delta_true`` and :math:`\Phi(1.96 - b/s) - \Phi(-1.96 - b/s)`, :math:`b` the MAR bias,
for ``bayes_delta_mar`` (:func:`predicted_coverage`).

**Refits.** Each worker builds the LMM once, exactly as :func:`~analysis.bayes.fit.fit_bayes` builds
it for :func:`~analysis.sensitivity.bayes_delta.bayes_delta_analysis` (:func:`site_frame`,
:data:`analysis.bayes.fit.MODELS` ``["lmm"]``), and compiles it for refits (``setup()``:
:class:`analysis.engine.refit.Refitter`); every data set's frame and priors are swapped in with the
model's ``set_data`` and sampled with the data set's seed (the analysis's ``seed``), its patient
effects drawn as the fit's post-processing draws them, and the posterior goes through the analysis's
own :func:`~analysis.sensitivity.bayes_delta_site.prepare_site` and
:meth:`~analysis.sensitivity.bayes_delta_site.BayesDeltaSite.estimand_draws`. The tests check that
this gives the analysis's table row on the same data and seed. No figure is made (the analysis's
MI-from-the-posterior-predictive, tipping points and figures are not calibrated here).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np

from analysis.calibration.designs import (
    ENDPOINT,
    TRIAL_N,
    TRIAL_TRUTH,
    slope_difference,
)
from analysis.calibration.estimators_bayes import SAMPLER
from analysis.calibration.estimators_sensitivity import (
    DELTA_ACTIVE,
    DELTA_PLACEBO,
    derived_trial,
    expected_years_after_dropout,
)
from analysis.calibration.spec import Estimator
from models.simulate_trial import TrialTruth, simulate_trial

__all__ = ["ESTIMATORS", "POSTERIOR_SD", "SITE", "VARS", "bayes_delta_estimators", "bayes_delta_truth",
           "fit_bayes_delta", "fit_bayes_delta_mar", "mar_bias", "predicted_coverage", "ratio_of_means_difference",
           "setup_bayes_delta", "shifted_group_means", "site_frame", "var_years_after_dropout", "weight_sd"]

SITE = "spine"
#: What each refit reads: ``b`` and ``sigma`` for :func:`prepare_site`, the standardised parameters
#: the patient effects are drawn from.
VARS = ["b", "sigma", "beta_std", "tau_std", "corr_beta", "sigma_std"]
#: Posterior SD of the active - placebo % change at this design (points; typical of the fits,
#: 0.50-0.56), for :func:`predicted_coverage` in the ``expected`` texts only.
POSTERIOR_SD = 0.53


def ratio_of_means_difference(truth: TrialTruth = TRIAL_TRUTH, month: float = ENDPOINT) -> float:
    r""":math:`100\,(\beta_1 - \beta_0)\,(T/12)/\mu`: active - placebo % change of the group mean BMD
    to ``month`` (MAR, i.e. :math:`\delta = 0`)."""
    return 100.0 * slope_difference(truth) * month / 12.0 / truth.baseline[SITE]


def bayes_delta_truth(delta_placebo: float = DELTA_PLACEBO, delta_active: float = DELTA_ACTIVE,
                      truth: TrialTruth = TRIAL_TRUTH, month: float = ENDPOINT) -> float:
    r""":math:`\Delta^{\mathrm{RoM}}_\delta` of the module docstring: the true active - placebo % change
    of the full-data group means under MCAR dropout followed by the delta shift."""
    return ratio_of_means_difference(truth, month) + (delta_active - delta_placebo) * expected_years_after_dropout(
        truth, month)


def mar_bias(delta_placebo: float = DELTA_PLACEBO, delta_active: float = DELTA_ACTIVE,
             truth: TrialTruth = TRIAL_TRUTH, month: float = ENDPOINT) -> float:
    r"""Bias of the model at :math:`\delta = 0` under the true deltas:
    :math:`-(\delta_1 - \delta_0)\,E[(T - t_d)/12]`."""
    return bayes_delta_truth(0.0, 0.0, truth, month) - bayes_delta_truth(delta_placebo, delta_active, truth, month)


def var_years_after_dropout(truth: TrialTruth = TRIAL_TRUTH, month: float = ENDPOINT) -> float:
    r""":math:`\operatorname{Var}[(T - t_d)/12]` per patient (0 for completers):
    :math:`\sum_k (1-h)^k h ((T - t_k)/12)^2 - E[(T - t_d)/12]^2`."""
    h = truth.dropout_hazard
    before = [t for t in truth.visits if t < month]
    second = sum((1.0 - h) ** k * h * ((month - t) / 12.0) ** 2 for k, t in enumerate(before))
    return float(second - expected_years_after_dropout(truth, month) ** 2)


def weight_sd(delta_placebo: float = DELTA_PLACEBO, delta_active: float = DELTA_ACTIVE,
              truth: TrialTruth = TRIAL_TRUTH, n: int = TRIAL_N, month: float = ENDPOINT) -> float:
    r"""SD over data sets of :math:`\delta_1 \bar w_1 - \delta_0 \bar w_0` (:math:`n/2` patients per
    arm): :math:`\sqrt{(\delta_0^2 + \delta_1^2)\operatorname{Var}[(T - t_d)/12]\,/\,(n/2)}`, the
    variation the model's posterior treats as known."""
    return float(np.sqrt((delta_placebo ** 2 + delta_active ** 2) * var_years_after_dropout(truth, month) / (n / 2)))


def predicted_coverage(posterior_sd: float = POSTERIOR_SD, bias: float = 0.0, extra_sd: float = 0.0) -> float:
    r"""Coverage of a normal 95% interval :math:`\hat\theta \pm 1.96 s` when
    :math:`\hat\theta - \theta \sim N(b, s^2 + e^2)`: :math:`\Phi((1.96 s - b)/r) - \Phi((-1.96 s - b)/r)`,
    :math:`r = \sqrt{s^2 + e^2}` (``posterior_sd`` :math:`s`, ``bias`` :math:`b`, ``extra_sd`` :math:`e`)."""
    from scipy.stats import norm

    r = float(np.hypot(posterior_sd, extra_sd))
    z = 1.959963984540054 * posterior_sd
    return float(norm.cdf((z - bias) / r) - norm.cdf((-z - bias) / r))


def shifted_group_means(n: int, seed: int, delta_placebo: float = DELTA_PLACEBO, delta_active: float = DELTA_ACTIVE,
                        truth: TrialTruth = TRIAL_TRUTH,
                        month: float = ENDPOINT) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    r"""Brute force: ``{arm: (Y_0, Ỹ_T)}``, the *full-data* baseline and shifted month-``month`` BMD of
    a simulated trial of ``n`` patients (complete data from the simulator, MCAR dropout drawn visit by
    visit, :math:`\tilde Y_{iT} = Y_{iT} + \tfrac{\delta_g}{100} Y_{i0} (T - t_{d_i})/12` after it).
    The tests compare the % change of its group means with :func:`bayes_delta_truth`."""
    frame = simulate_trial(n, replace(truth, dropout_hazard=0.0), seed=seed)
    wide = frame.pivot(index="patient_id", columns="visit", values=f"bmd_{SITE}").sort_index(axis=1)
    arm = frame.groupby("patient_id")["arm"].first().reindex(wide.index).to_numpy()
    months = wide.columns.to_numpy(dtype=float)
    y = wide.to_numpy()
    y0, yT = y[:, 0], y[:, months == month][:, 0]
    rng = np.random.default_rng([seed, 2])
    last, stay = np.zeros(len(y0)), np.ones(len(y0), dtype=bool)
    for t in months[1:]:
        stay &= rng.random(len(y0)) >= truth.dropout_hazard
        last = np.where(stay, t, last)
    delta = np.where(arm == "active", delta_active, delta_placebo)
    shifted = yT + delta / 100.0 * y0 * (month - last) / 12.0
    return {a: (y0[arm == a], shifted[arm == a]) for a in ("placebo", "active")}


def site_frame(derived: Any) -> tuple[Any, Any, tuple[str, ...]]:
    """``(frame, priors, levels)`` as :func:`~analysis.sensitivity.bayes_delta.bayes_delta_analysis` and
    :func:`~analysis.bayes.fit.fit_bayes` make them (default priors, undefined status ``last_observed``,
    the spine, endpoint month :data:`~analysis.calibration.designs.ENDPOINT`)."""
    from analysis.bayes.fit import analysis_frame, prior_object
    from analysis.sensitivity.design import sensitivity_design

    sd = sensitivity_design(derived, None, (SITE,), ENDPOINT)
    frame, _ = analysis_frame(derived, "last_observed", None, design=sd.design)
    return frame, prior_object("default", SITE, frame), tuple(sd.levels)


def _simulate(rng: np.random.Generator) -> tuple[dict[str, Any], float]:
    """The ``delta_mnar`` data sets (the same draws as ``delta_mi_true``) with this estimand's truth."""
    frame = simulate_trial(TRIAL_N, TRIAL_TRUTH, seed=int(rng.integers(2**63 - 1)))
    return {"derived": derived_trial(frame), "seed": int(rng.integers(2**31 - 1))}, bayes_delta_truth()


def setup_bayes_delta(**sampler: Any) -> Any:
    """The LMM of :func:`~analysis.bayes.fit.fit_bayes` built on a reference ``delta_mnar`` trial and
    compiled for refits (:class:`~analysis.engine.refit.Refitter` reading :data:`VARS`; sampler
    settings :data:`~analysis.calibration.estimators_bayes.SAMPLER` updated by ``sampler``)."""
    from analysis.bayes.fit import MODELS
    from analysis.engine.refit import compile_for_refit

    data, _ = _simulate(np.random.default_rng(20261207))
    frame, priors, _ = site_frame(data["derived"])
    return compile_for_refit(MODELS["lmm"](frame, SITE, priors), var_names=VARS, **{**SAMPLER, **sampler})


def _posterior(refit: Any, model: Any, seed: int) -> Any:
    """The refit's draws as the posterior :func:`prepare_site` reads, with the patient effects ``u``
    drawn from their exact conditional (:meth:`~models.trajectory.TrajectoryModel.patient_effects`)."""
    import xarray as xr

    coords = model.pymc_model.coords
    post = xr.Dataset({v: (("chain", "draw", *refit.dims[v]), a) for v, a in refit.draws.items()},
                      coords={d: list(coords[d]) for v in refit.dims for d in refit.dims[v] if d in coords})
    return post.assign(u=model.patient_effects(post, seed=seed))


def fit_bayes_delta(data: dict, refitter: Any, delta_placebo: float = DELTA_PLACEBO,
                    delta_active: float = DELTA_ACTIVE) -> tuple[float, float, float, float]:
    r"""Posterior median, SD and 95% equal-tailed interval of :math:`\theta_1 - \theta_0` (% change to
    month 24, module docstring) at the given deltas (% of baseline per year after dropout)."""
    from analysis.sensitivity.bayes_delta_site import prepare_site
    from analysis.sensitivity.delta import DeltaScenario

    frame, priors, levels = site_frame(data["derived"])
    refitter.model.set_data(frame, priors=priors)
    r = refitter.refit(None, seed=data["seed"])
    post = _posterior(r, refitter.model, data["seed"])
    site = prepare_site(SimpleNamespace(posterior={"posterior": post}), frame, SITE, ENDPOINT, levels)
    draws = site.estimand_draws(DeltaScenario(delta_placebo, delta_active, unit="pct"), "pct")
    x = draws[f"{levels[1]} - {levels[0]}"]
    lo, hi = np.quantile(x, [0.025, 0.975])
    return float(np.median(x)), float(np.std(x, ddof=1)), float(lo), float(hi)


def fit_bayes_delta_mar(data: dict, refitter: Any) -> tuple[float, float, float, float]:
    """:func:`fit_bayes_delta` at delta = 0 (MAR: the LMM's own estimand)."""
    return fit_bayes_delta(data, refitter, 0.0, 0.0)


def bayes_delta_estimators(suffix: str = "", **sampler: Any) -> tuple[Estimator, ...]:
    """``bayes_delta_true<suffix>`` and ``bayes_delta_mar<suffix>`` with sampler settings ``sampler``
    (keywords of :class:`~analysis.engine.refit.Refitter`, over
    :data:`~analysis.calibration.estimators_bayes.SAMPLER`)."""
    s = {**SAMPLER, **sampler}
    design = (f"{TRIAL_N} patients 1:1, spine at months 0/6/12/24, random intercept and slope, MCAR dropout "
              f"{TRIAL_TRUTH.dropout_hazard:.0%}/visit, post-dropout values MNAR: MAR prediction + delta "
              f"(placebo {DELTA_PLACEBO:+g}, active {DELTA_ACTIVE:+g} %/yr since dropout)")
    estimand = (f"difference in the % change of the group mean BMD to month {ENDPOINT:g} under the true delta "
                "(full data; ratio of means)")
    note = (f"Bayesian trajectory LMM (marginal), default priors, delta in the model (bayes_delta_analysis); nutpie "
            f"{s['chains']} chains x {s['draws']} draws after {s['tune']} tuning; posterior median, SD, 95% ETI")
    ratio = POSTERIOR_SD / np.hypot(POSTERIOR_SD, weight_sd())
    weights = (f"the observed dropout weights are treated as known: their SD over data sets, {weight_sd():.2f} points, "
               f"is not in the posterior SD (~{POSTERIOR_SD:g}), so SE ratio ~{ratio:.2f} "
               f"and coverage ~{predicted_coverage(extra_sd=weight_sd()):.0%} (derived)")
    bias = (f"assumes MAR (delta = 0) when the true delta is {DELTA_PLACEBO:+g} / {DELTA_ACTIVE:+g} %/yr: biased by "
            f"{mar_bias():+.2f} points (-(delta_1 - delta_0) E[(T - t_d)/12]), so it under-covers, "
            f"~{predicted_coverage(bias=mar_bias()):.0%} at a posterior SD of ~{POSTERIOR_SD:g} (what MAR gets wrong)")
    return (
        Estimator(f"bayes_delta_true{suffix}", "sensitivity", _simulate, fit_bayes_delta, design, estimand,
                  note + ", at the true delta", expected=weights, setup=partial(setup_bayes_delta, **sampler),
                  stream="delta_mnar"),
        Estimator(f"bayes_delta_mar{suffix}", "sensitivity", _simulate, fit_bayes_delta_mar, design, estimand,
                  note + ", at delta = 0", expected=bias, setup=partial(setup_bayes_delta, **sampler),
                  stream="delta_mnar"),
    )


#: This module's estimators, in table order.
ESTIMATORS = bayes_delta_estimators()
