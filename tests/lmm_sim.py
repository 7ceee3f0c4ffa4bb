r"""Small numpy simulator for the trajectory LMM, for tests and benchmarks only.

Not the twin simulator (``models/simulate.py``): this draws straight from the model in
``models/trajectory.py`` with known parameters, in the long data contract

.. math::

    \mathrm{bmd}_{ij} = b_0 + u_{0i} + (b_1 + u_{1i}) t_{ij} + b_2 r_i + b_3 r_i t_{ij}
                        + x_i^\top\gamma + e_{ij},\quad
    (u_{0i}, u_{1i}) \sim \mathrm{MVN}(0, \Sigma),\quad e_{ij} \sim N(0, \sigma),

with visits at months 0, 6, 12 and monotone dropout: a patient drops out with probability
``dropout``, after the month-0 or the month-6 visit with equal probability, and the visits after
dropout are kept as rows with a missing BMD. ``b0`` is the mean at the covariates' population
means (covariates enter centred at those means).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["COVARIATE_MEANS", "LMMTruth", "simulate_lmm"]

#: Population means of the simulated covariates (the simulator centres covariates here).
COVARIATE_MEANS = {"age": 56.0, "bmi": 26.0, "sex": 0.15, "das28_crp": 4.0}


@dataclass(frozen=True)
class LMMTruth:
    """Known parameters on the original scale (g/cm^2, years); twin-like defaults for the spine.

    Non-responders lose 2%/yr of 0.91 g/cm^2, responders hold steady; the between-patient SD of
    the annual change is 2.5% of 0.91.
    """

    b0: float = 0.91
    b1: float = -0.0182
    b2: float = 0.0
    b3: float = 0.0182
    sd_u0: float = 0.14
    sd_u1: float = 0.0228
    corr: float = 0.2
    sigma: float = 0.01
    gamma: dict[str, float] = field(default_factory=dict)

    @property
    def change_12m(self) -> np.ndarray:
        return np.array([self.b1, self.b1 + self.b3])

    @property
    def baseline_mean(self) -> np.ndarray:
        return np.array([self.b0, self.b0 + self.b2])


def simulate_lmm(
    n_patients: int = 46,
    truth: LMMTruth | None = None,
    *,
    dropout: float = 0.43,
    responder_fraction: float = 0.5,
    seed: int = 0,
    site: str = "spine",
    return_effects: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Simulate one long-format data set (columns of the rajak data contract).

    Parameters
    ----------
    n_patients : int
    truth : LMMTruth, optional
    dropout : float
        Probability that a patient misses the month-12 visit (monotone dropout).
    responder_fraction : float
        Expected share of responders (the count is fixed at the rounded share).
    seed : int
    site : {"spine", "femoral_neck"}
        Which BMD column carries the simulated outcome; the other one is all missing.

    return_effects : bool
        Also return the patients' true random effects.

    Returns
    -------
    DataFrame
        ``patient_id, month, bmd_spine, bmd_femoral_neck, responder, age, sex, bmi, das28_crp``
        (patient ids ``P001``, ``P002``, ... sort in simulation order).
    ndarray, shape (n_patients, 2)
        Only with ``return_effects``: :math:`(u_{0i}, u_{1i})` in g/cm^2 and g/cm^2/yr.
    """
    truth = truth if truth is not None else LMMTruth()
    rng = np.random.default_rng(seed)
    n = n_patients
    n_resp = int(round(responder_fraction * n))
    responder = np.zeros(n, dtype=bool)
    responder[rng.permutation(n)[:n_resp]] = True
    age = rng.normal(COVARIATE_MEANS["age"], 11.0, n)
    sex = np.where(rng.random(n) < COVARIATE_MEANS["sex"], "M", "F")
    bmi = rng.normal(COVARIATE_MEANS["bmi"], 4.5, n)
    cov = np.array(
        [
            [truth.sd_u0**2, truth.corr * truth.sd_u0 * truth.sd_u1],
            [truth.corr * truth.sd_u0 * truth.sd_u1, truth.sd_u1**2],
        ]
    )
    u = rng.multivariate_normal(np.zeros(2), cov, size=n)
    xs = {
        "age": age - COVARIATE_MEANS["age"],
        "bmi": bmi - COVARIATE_MEANS["bmi"],
        "sex": (sex == "M") - COVARIATE_MEANS["sex"],
    }
    shift = np.zeros(n)
    for name, coef in truth.gamma.items():
        shift += coef * xs[name]
    drops = rng.random(n) < dropout
    last = np.where(drops, rng.choice([0, 6], size=n), 12)
    rows = []
    for i in range(n):
        das_base = rng.normal(5.3, 0.8)
        for month in (0, 6, 12):
            t = month / 12.0
            mean = (
                truth.b0
                + u[i, 0]
                + shift[i]
                + (truth.b1 + u[i, 1]) * t
                + truth.b2 * responder[i]
                + truth.b3 * responder[i] * t
            )
            bmd = mean + rng.normal(0.0, truth.sigma) if month <= last[i] else np.nan
            das = das_base - (2.2 if responder[i] else 0.6) * min(t * 2, 1.0) + rng.normal(0, 0.4)
            rows.append(
                {
                    "patient_id": f"P{i + 1:03d}",
                    "month": month,
                    "bmd_spine": bmd if site == "spine" else np.nan,
                    "bmd_femoral_neck": bmd if site == "femoral_neck" else np.nan,
                    "responder": bool(responder[i]),
                    "age": age[i],
                    "sex": sex[i],
                    "bmi": bmi[i],
                    "das28_crp": das,
                }
            )
    df = pd.DataFrame(rows)
    return (df, u) if return_effects else df
