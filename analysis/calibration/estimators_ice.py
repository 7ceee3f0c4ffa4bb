r"""Reference-based imputation under data generated from its own assumption (:data:`ESTIMATORS`,
registered by :mod:`analysis.calibration.registry`).

Trials of :func:`models.simulate_ice.simulate_ice_trial` (:data:`ICE_N` patients 1:1, change from
baseline at months 4, 8, 12, MCAR treatment discontinuation with hazards 8% / 12% per visit, the
values from the event on missing) analysed as rbmi does (:func:`analysis.sensitivity.ice.run_method`:
the ``"rbmi"`` imputation MMRM, ANCOVA on baseline at month 12), each strategy's ICEs imputed under
that strategy, with two inference methods side by side on the *same* data sets:

* ``condmean_jackknife``: conditional-mean imputation with the jackknife SE (Wolbers et al. 2022),
  frequentist-valid, so it should cover at 93-97%;
* ``approx_bayes``: :data:`ICE_DRAWS` bootstrap fits, one random imputation each, Rubin's rules.
  Rubin's variance estimates the MAR model's variance, larger than the reference-based
  estimator's, so it is expected to *over*-cover (Seaman, White & Leacy 2014; Bartlett 2023).

The truth is :func:`models.simulate_ice.true_effect` for the strategy (J2R, CR, CIR; derived in
:mod:`models.simulate_ice`, checked by simulation in the tests).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from analysis.calibration.spec import Estimator
from models.simulate_ice import IceTruth, simulate_ice_trial, true_effect

__all__ = ["ESTIMATORS", "ICE_DRAWS", "ICE_N", "ICE_TRUTH", "fit_reference_based", "ice_patients"]

ICE_N = 100
ICE_DRAWS = 50
ICE_TRUTH = IceTruth()
_STRATEGIES = {"j2r": "JR", "cr": "CR", "cir": "CIR"}
_RUBIN_OVERCOVERS = ("Rubin's rules over-cover for reference-based MI: their variance targets the MAR "
                     "model's, not the reference-based estimator's (Seaman, White & Leacy 2014)")


def ice_patients(sim: dict, strategy: str):
    """The :class:`~analysis.sensitivity.ice.IcePatients` of a simulated trial, every event under
    ``strategy`` (rbmi's name)."""
    from analysis.sensitivity.ice import IcePatients

    return IcePatients.from_simulation(sim, strategy)


def _simulate(strategy: str, rng: np.random.Generator):
    sim = simulate_ice_trial(ICE_N, ICE_TRUTH, seed=int(rng.integers(2**63 - 1)))
    return {"sim": sim, "seed": int(rng.integers(2**31 - 1))}, float(true_effect(ICE_TRUTH, strategy)[-1])


def fit_reference_based(strategy: str, method: str, data: dict) -> tuple[float, float, float, float]:
    """The month-12 treatment effect of one strategy and inference method (module docstring)."""
    from analysis.sensitivity.ice import MethodSettings, ancova, run_method

    p = ice_patients(data["sim"], strategy)
    months, levels = p.data.months, p.data.levels
    res = run_method(method, [p], lambda y, g, c: ancova(y, g, c, months, levels),
                     MethodSettings(n_samples=ICE_DRAWS, seed=data["seed"]))
    r = res.pooled[strategy][f"trt_active_{months[-1]:g}"]
    return float(r.estimate), float(r.se), float(r.ci_low), float(r.ci_high)


def _estimators() -> tuple[Estimator, ...]:
    out: list[Estimator] = []
    add = out.append
    design = (f"{ICE_N} patients 1:1, change at months 4/8/12 (rbmi's model, AR(1)-type covariance), MCAR "
              "treatment stop 8%/12% per visit, data missing after it")
    for key, strategy in _STRATEGIES.items():
        truth = f"{key.upper()} treatment effect at month 12 (g/cm^2)"
        simulate = partial(_simulate, strategy)
        add(Estimator(f"{key}_condmean_jackknife", "reference-based", simulate,
                           partial(fit_reference_based, strategy, "condmean_jackknife"), design, truth,
                           "conditional mean imputation, jackknife SE", stream="ice_mcar"))
        add(Estimator(f"{key}_rubin", "reference-based", simulate,
                           partial(fit_reference_based, strategy, "approx_bayes"), design, truth,
                           f"approximate Bayes, {ICE_DRAWS} bootstrap imputations, Rubin's rules",
                           expected=_RUBIN_OVERCOVERS, stream="ice_mcar"))
    return tuple(out)


#: This module's estimators, in table order.
ESTIMATORS = _estimators()
