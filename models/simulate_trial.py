r"""A randomised BMD trial with known truth: any arms, sites and visit schedule, monotone dropout.

For patient :math:`i` in arm :math:`a(i)` at site :math:`s`, scanned at times :math:`t_{ij}` (years
since baseline; the nominal visits jittered by a few days):

.. math::

    y_{ijs} = \mu_s + u_{is} + (\beta_{s,a(i)} + v_{is})\, t_{ij} + \varepsilon_{ijs}, \qquad
    u_{is} \sim N(0, \sigma_{u,s}^2),\; v_{is} \sim N(0, \sigma_{v,s}^2),\;
    \varepsilon_{ijs} \sim N(0, \sigma_{e,s}^2),

all independent. Under this model the expected change to month :math:`T` in arm :math:`a` is
:math:`\beta_{s,a} T / 12` g/cm^2, :math:`100\,\beta_{s,a} T / (12 \mu_s)` % of the baseline mean,
and the arm difference in % change :math:`100 (\beta_{s,a} - \beta_{s,r}) T / (12 \mu_s)`
(:meth:`TrialTruth.pct_change`, :meth:`TrialTruth.pct_difference`), which the LMM estimates directly
and the MMRM (change from baseline, nominal visits, unstructured covariance) estimates without bias
under MCAR and MAR dropout.

Dropout is monotone: at each post-baseline visit a patient still in the study leaves with
probability ``dropout_hazard`` (MCAR).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["TrialTruth", "simulate_trial"]


@dataclass(frozen=True)
class TrialTruth:
    r"""The parameters of :func:`simulate_trial` (and so the truth its data estimate).

    Attributes
    ----------
    arms : dict of str to float
        Arm name -> allocation weight (``{"placebo": 1, "active": 1}`` is 1:1).
    slopes : dict of str to dict of str to float
        Site -> arm -> mean slope :math:`\beta_{s,a}` in g/cm^2 per year.
    baseline : dict of str to float
        Site -> baseline mean :math:`\mu_s` (g/cm^2).
    visits : tuple of float
        Nominal visit months, the first 0.
    """

    arms: dict[str, float] = field(default_factory=lambda: {"placebo": 1.0, "active": 1.0})
    slopes: dict[str, dict[str, float]] = field(default_factory=lambda: {
        "spine": {"placebo": -0.012, "active": 0.010},
        "total_hip": {"placebo": -0.008, "active": 0.006},
        "femoral_neck": {"placebo": -0.007, "active": 0.004}})
    baseline: dict[str, float] = field(default_factory=lambda: {"spine": 0.95, "total_hip": 0.85,
                                                                "femoral_neck": 0.75})
    visits: tuple[float, ...] = (0.0, 6.0, 12.0, 24.0)
    sd_intercept: float = 0.10
    sd_slope: float = 0.008
    sd_noise: float = 0.010
    dropout_hazard: float = 0.07
    jitter_days: float = 12.0

    def pct_change(self, site: str, arm: str, month: float) -> float:
        """True % change of the arm's mean from the baseline mean to ``month``."""
        return 100.0 * self.slopes[site][arm] * month / 12.0 / self.baseline[site]

    def pct_difference(self, site: str, arm: str, reference: str, month: float) -> float:
        """True difference in % change, ``arm`` minus ``reference``."""
        return self.pct_change(site, arm, month) - self.pct_change(site, reference, month)


def simulate_trial(n: int = 240, truth: TrialTruth | None = None, seed: int = 0) -> pd.DataFrame:
    """One simulated trial in long form: ``patient_id``, ``arm``, ``visit`` (nominal month),
    ``day`` (study day, 0 at baseline), ``age``, ``sex`` and ``bmd_<site>`` per site; one row per
    attended visit (monotone dropout, :class:`TrialTruth`).
    """
    truth = truth or TrialTruth()
    rng = np.random.default_rng(seed)
    arms = list(truth.arms)
    w = np.array([truth.arms[a] for a in arms], dtype=float)
    counts = np.floor(n * w / w.sum()).astype(int)
    counts[: n - counts.sum()] += 1  # the remainder to the first arms
    arm = np.repeat(arms, counts)
    rng.shuffle(arm)
    visits = np.asarray(truth.visits, dtype=float)
    rows = []
    for i in range(n):
        last = len(visits) - 1
        for j in range(1, len(visits)):
            if rng.random() < truth.dropout_hazard:
                last = j - 1
                break
        age = float(np.round(rng.normal(62, 8)))
        sex = "F" if rng.random() < 0.8 else "M"
        effects = {s: (rng.normal(0, truth.sd_intercept), rng.normal(0, truth.sd_slope)) for s in truth.slopes}
        for j in range(last + 1):
            day = 0.0 if j == 0 else float(np.round(visits[j] * 30.4375 + rng.uniform(-1, 1) * truth.jitter_days))
            t = day / 365.25
            row = {"patient_id": f"S{i + 1:04d}", "arm": arm[i], "visit": visits[j], "day": day, "age": age,
                   "sex": sex}
            for s, (u, v) in effects.items():
                mean = truth.baseline[s] + u + (truth.slopes[s][arm[i]] + v) * t
                row[f"bmd_{s}"] = round(float(mean + rng.normal(0, truth.sd_noise)), 4)
            rows.append(row)
    return pd.DataFrame(rows)
