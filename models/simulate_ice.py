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
averages out). Under MAR the estimand is :math:`\mu_{1j} - \mu_{0j}`.

Copy reference (CR) and copy increments from reference (CIR) are derived the same way. Write
:math:`a = \mu_1`, :math:`c = \mu_0`, :math:`h = h_1`, :math:`P(k) = h(1-h)^k` the probability
that an active patient's first affected visit is :math:`k + 1` (0-based index :math:`k < m`) and
:math:`P(m) = (1-h)^m` that there is none, :math:`O_k = \{1, \dots, k\}` the visits before the
event. Under CR the whole profile is the reference's, so the observed pre-event values (mean
:math:`a_{O_k}`) are conditioned on with the reference mean: for :math:`j > k`

.. math::

    E[y_{ij} \mid k] = c_j + \Sigma_{jO_k}\Sigma_{O_kO_k}^{-1}(a_{O_k} - c_{O_k}),

(:math:`c_j` when :math:`k = 0`). Under CIR the increments after the last pre-event visit
:math:`d = k` are the reference's: :math:`E[y_{ij} \mid k] = a_d + c_j - c_d` (:math:`a_0 = c_0 = 0`,
the baseline; the conditional-mean correction has mean 0 since the pre-event mean is :math:`a`).
Then, with :math:`E[y_{ij} \mid k] = a_j` for :math:`j \le k`,

.. math::

    \theta_j = \sum_{k=0}^{m} P(k)\, E[y_{ij} \mid k] - c_j .

(The baseline terms :math:`\gamma_j(b_i - \mu_b)` cancel in every difference and have mean 0.)
:func:`true_effect` gives all four; :func:`simulate_counterfactual` draws the post-event values
under a strategy's assumption, so that a large sample checks each formula by simulation.

``IceTruth.correlation`` chooses :math:`\Sigma`'s correlation: ``"ar1"`` :math:`\rho^{|j-k|}`
(the default) or ``"cs"`` :math:`\rho` for every pair of visits (compound symmetry; with equal
``sd`` the MMRM's ``cs`` structure, with ``"ar1"`` and equal ``sd`` its ``ar1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["STRATEGIES", "IceTruth", "simulate_counterfactual", "simulate_ice_trial", "true_effect"]

#: The strategies of :func:`true_effect` (``"JR"`` is accepted for ``"J2R"``).
STRATEGIES = ("MAR", "J2R", "CR", "CIR")


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
    correlation : {"ar1", "cs"}
        Correlation of visits :math:`j \ne k`: :math:`\rho^{|j - k|}` or :math:`\rho`.
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
    correlation: str = "ar1"

    def __post_init__(self) -> None:
        if self.correlation not in ("ar1", "cs"):
            raise ValueError(f"correlation must be 'ar1' or 'cs', got {self.correlation!r}")

    @property
    def sigma(self) -> np.ndarray:
        m = len(self.months)
        sd = np.asarray(self.sd)
        lag = np.abs(np.subtract.outer(np.arange(m), np.arange(m)))
        corr = self.rho ** lag if self.correlation == "ar1" else np.where(lag == 0, 1.0, self.rho)
        return sd[:, None] * corr * sd[None, :]


def _strategy(strategy: str) -> str:
    key = {"JR": "J2R"}.get(str(strategy).upper(), str(strategy).upper())
    if key not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return key


def true_effect(truth: IceTruth, strategy: str = "J2R") -> np.ndarray:
    """``(m,)`` true active - reference difference in mean change at each visit under ``"MAR"``,
    ``"J2R"`` (``"JR"``), ``"CR"`` or ``"CIR"`` (the module docstring)."""
    key = _strategy(strategy)
    a, c = np.asarray(truth.mean[1], dtype=float), np.asarray(truth.mean[0], dtype=float)
    if key == "MAR":
        return a - c
    m, h = a.size, truth.hazard[1]
    if key == "J2R":
        return (1.0 - h) ** np.arange(1, m + 1) * (a - c)
    sigma = truth.sigma
    expected = np.zeros(m)
    for k in range(m + 1):
        prob = h * (1.0 - h) ** k if k < m else (1.0 - h) ** m
        mean = a.copy()
        if k < m:
            if key == "CR":
                shift = sigma[k:, :k] @ np.linalg.solve(sigma[:k, :k], a[:k] - c[:k]) if k else 0.0
                mean[k:] = c[k:] + shift
            else:  # CIR
                last_a, last_c = (a[k - 1], c[k - 1]) if k else (0.0, 0.0)
                mean[k:] = last_a + c[k:] - last_c
        expected += prob * mean
    return expected - c


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


def simulate_counterfactual(n: int, truth: IceTruth = IceTruth(), strategy: str = "J2R",
                            seed: int = 0) -> dict[str, np.ndarray]:
    r"""A trial of :func:`simulate_ice_trial` whose post-event values are drawn under ``strategy``.

    For a patient with pre-event visits :math:`O` and post-event visits :math:`M`, the values at
    :math:`M` are drawn from :math:`N(\mu_M + \Sigma_{MO}\Sigma_{OO}^{-1}(y_O - \mu_O),\
    \Sigma_{MM} - \Sigma_{MO}\Sigma_{OO}^{-1}\Sigma_{OM})` with the strategy's mean profile
    :math:`\mu` (rbmi's: MAR the own arm's, J2R own then reference, CR the reference's throughout,
    CIR own then the reference's increments), baseline terms included. The arm difference of the
    means of ``y`` estimates :func:`true_effect` (a check of its formulas by simulation).

    Returns
    -------
    dict
        As :func:`simulate_ice_trial`, with ``y`` complete.
    """
    key = _strategy(strategy)
    sim = simulate_ice_trial(n, truth, seed)
    rng = np.random.default_rng([seed, 1])
    y, group, k_of = sim["y"].copy(), sim["group"], sim["ice_index"]
    m = y.shape[1]
    sigma = truth.sigma
    centred = (sim["baseline"] - truth.baseline_mean)[:, None] * np.asarray(truth.gamma)[None, :]
    a = np.where(group[:, None] == 1, np.asarray(truth.mean[1]), np.asarray(truth.mean[0])) + centred
    c = np.asarray(truth.mean[0])[None, :] + centred
    for k in range(m):
        rows = np.flatnonzero(k_of == k)
        if rows.size == 0:
            continue
        mu = a[rows].copy()
        if key == "CR":
            mu = c[rows].copy()
        elif key == "J2R":
            mu[:, k:] = c[rows, k:]
        elif key == "CIR":
            last = (a[rows, k - 1] - c[rows, k - 1])[:, None] if k else 0.0
            mu[:, k:] = c[rows, k:] + last
        cond = mu[:, k:].copy()
        cov = sigma[k:, k:]
        if k:
            gain = sigma[k:, :k] @ np.linalg.inv(sigma[:k, :k])
            cond += (y[rows, :k] - mu[:, :k]) @ gain.T
            cov = cov - gain @ sigma[:k, k:]
        y[rows, k:] = cond + rng.standard_normal((rows.size, m - k)) @ np.linalg.cholesky(cov).T
    return {**sim, "y": y}
