r"""Simulated two-arm trials with intercurrent events and a known reference-based truth.

The data-generating model is the imputation model of rbmi (``change ~ baseline * visit + group *
visit``, one unstructured :math:`\Sigma`): patient :math:`i` in arm :math:`g_i \in \{0, 1\}` (0 the
reference, e.g. placebo) with baseline BMD :math:`b_i \sim N(\mu_b, s_b^2)` has changes from baseline
at the post-baseline visits :math:`j = 1, \dots, m`

.. math::

    y_i \sim N(\mu_{g_i} + \gamma\,(b_i - \mu_b),\ \Sigma).

Each patient has an intercurrent event (stopping the study drug) at visit :math:`j` with hazard
:math:`h_g` per visit, independently of everything else (MCAR); the values from the event on are
missing. Under jump to reference (J2R) the bone of a patient after the event follows the reference
arm's mean, so the J2R estimand at visit :math:`j`, the difference in mean change between the arms,
is

.. math::

    \theta^{J2R}_j = (1 - h_1)^{j}\,(\mu_{1j} - \mu_{0j}),

the on-treatment share of the active arm times the arm difference (reference patients follow the
reference either way; :math:`E[y_{iO} - a_{iO}] = 0` under MCAR, so the conditional-mean correction
averages out). Under MAR the estimand is :math:`\mu_{1j} - \mu_{0j}`. :func:`true_effect` gives both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["IceTruth", "simulate_ice_trial", "true_effect"]


@dataclass(frozen=True)
class IceTruth:
    r"""Parameters of :func:`simulate_ice_trial` (g/cm^2, months).

    Attributes
    ----------
    months : tuple of float
        Post-baseline visits.
    mean : dict of int to tuple of float
        :math:`\mu_{gj}`: arm -> mean change at each visit (0 the reference).
    gamma : tuple of float
        Baseline slope per visit.
    sd : tuple of float
        Residual SD per visit.
    rho : float
        Correlation of visits :math:`j, k`: :math:`\rho^{|j - k|}`.
    hazard : dict of int to float
        :math:`h_g`: probability per visit of the event, given none before.
    baseline_mean, baseline_sd : float
    """

    months: tuple[float, ...] = (4.0, 8.0, 12.0)
    mean: dict[int, tuple[float, ...]] = field(default_factory=lambda: {0: (-0.004, -0.008, -0.012),
                                                                       1: (0.006, 0.012, 0.018)})
    gamma: tuple[float, ...] = (-0.01, -0.02, -0.03)
    sd: tuple[float, ...] = (0.012, 0.015, 0.018)
    rho: float = 0.6
    hazard: dict[int, float] = field(default_factory=lambda: {0: 0.08, 1: 0.12})
    baseline_mean: float = 0.90
    baseline_sd: float = 0.10

    @property
    def sigma(self) -> np.ndarray:
        m = len(self.months)
        sd = np.asarray(self.sd)
        corr = self.rho ** np.abs(np.subtract.outer(np.arange(m), np.arange(m)))
        return sd[:, None] * corr * sd[None, :]


def true_effect(truth: IceTruth, strategy: str = "J2R") -> np.ndarray:
    """``(m,)`` true active - reference difference in mean change at each visit under ``"J2R"`` or ``"MAR"``."""
    diff = np.asarray(truth.mean[1]) - np.asarray(truth.mean[0])
    if strategy == "MAR":
        return diff
    if strategy != "J2R":
        raise ValueError(f"strategy must be 'J2R' or 'MAR', got {strategy!r}")
    on = (1.0 - truth.hazard[1]) ** np.arange(1, len(truth.months) + 1)
    return on * diff


def simulate_ice_trial(n: int, truth: IceTruth = IceTruth(), seed: int = 0) -> dict[str, np.ndarray]:
    """One trial (1:1) in wide form.

    Returns
    -------
    dict
        ``y`` (n, m) change from baseline with ``NaN`` from the event on; ``baseline`` (n,); ``group``
        (n,) 0/1; ``ice_index`` (n,) 0-based first affected visit (``m``: no event); ``months`` (m,).
    """
    rng = np.random.default_rng(seed)
    m = len(truth.months)
    group = np.repeat([0, 1], [n - n // 2, n // 2])
    baseline = rng.normal(truth.baseline_mean, truth.baseline_sd, n)
    mu = np.where(group[:, None] == 1, np.asarray(truth.mean[1]), np.asarray(truth.mean[0]))
    mu = mu + np.asarray(truth.gamma)[None, :] * (baseline - truth.baseline_mean)[:, None]
    y = mu + rng.standard_normal((n, m)) @ np.linalg.cholesky(truth.sigma).T
    hazard = np.where(group == 1, truth.hazard[1], truth.hazard[0])
    events = rng.random((n, m)) < hazard[:, None]
    ice_index = np.where(events.any(axis=1), events.argmax(axis=1), m)
    y = np.where(np.arange(m)[None, :] >= ice_index[:, None], np.nan, y)
    return {"y": y, "baseline": baseline, "group": group, "ice_index": ice_index,
            "months": np.asarray(truth.months, dtype=float)}
