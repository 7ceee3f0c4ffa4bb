r"""Calibrate the cohort simulator's dropout model to a target dropout.

``PowerDesign.dropout`` (:mod:`analysis.power.design`) is either one number, the expected fraction
of patients **without the final visit**, or one hazard per scheduled post-baseline visit
(``design.activity_months[1:]``, e.g. ``(0.1, 0.15, 0.2)`` for months 3, 6, 12):
:math:`h_v = P(\text{drop out at } v \mid \text{present at } v)`, averaged over patients.

For the cohort generator with one number the base hazard :math:`h_0` of
:class:`models.simulate.DropoutModel` (MAR through DAS28, or MNAR through the unobserved spine
change) is calibrated to it by simulating 20,000 patients with common random numbers and solving for
:math:`h_0` (:func:`calibrate_dropout`); with per-visit hazards each visit's base hazard
:math:`h_{0v}` is solved in turn so that the average hazard among the patients still present equals
:math:`h_v` (exact, :math:`h_{0v} = h_v`, under MCAR; :func:`calibrate_dropout_per_visit`).

Calibrations are remembered for the life of the process (one per design, target and settings).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from models.simulate import Design

__all__ = ["calibrate_dropout", "calibrate_dropout_per_visit"]

_CALIBRATION_CACHE: dict[str, Design] = {}


def calibrate_dropout(design: Design, target: float | Sequence[float], n_patients: int = 20_000,
                      seed: int = 20_250_101, tol: float = 1e-4) -> Design:
    r"""The design with ``dropout.visit_hazard`` calibrated to a target dropout.

    With one number, ``visit_hazard`` is set so that a fraction ``target`` of patients miss the
    final visit (a per-visit ``visit_hazard`` of ``design`` is replaced by one base hazard for every
    visit); with one number per post-baseline visit, so that the hazard at each visit is ``target``
    (:func:`calibrate_dropout_per_visit`).

    The fraction :math:`F(h_0)` of simulated patients who drop out before the final visit is
    increasing in the base hazard :math:`h_0` (every visit's logit hazard moves with
    :math:`\operatorname{logit} h_0`); with one seed for every evaluation (common random numbers)
    :math:`F(h_0) = \text{target}` is solved by Brent's method on ``n_patients`` simulated
    patients (Monte-Carlo SE of :math:`F` about :math:`\sqrt{F(1-F)/n}`, 0.0035 at the default).

    Parameters
    ----------
    design : Design
        The cohort design whose dropout model is calibrated.
    target : float or sequence of float
        Fraction without the final visit, or one hazard per post-baseline visit.
    n_patients : int
        Simulated patients of the calibration sample.
    seed : int
        Seed of the calibration sample (common random numbers).
    tol : float
        Tolerance of Brent's method on :math:`h_0`.

    Returns
    -------
    Design

    Raises
    ------
    ValueError
        If ``target`` is outside [0, 1) or cannot be reached.
    """
    from scipy.optimize import brentq

    from models.simulate import simulate

    if isinstance(target, (list, tuple, np.ndarray)):
        return calibrate_dropout_per_visit(design, target, n_patients=n_patients, seed=seed)
    if not 0.0 <= target < 1.0:
        raise ValueError(f"dropout target must be in [0, 1), got {target}")
    key = json.dumps([design.to_dict(), target, n_patients, seed, tol], sort_keys=True, default=str)
    if key in _CALIBRATION_CACHE:
        return _CALIBRATION_CACHE[key]
    if target == 0.0:
        out = design.with_updates(**{"dropout.visit_hazard": 0.0})
        _CALIBRATION_CACHE[key] = out
        return out
    base = design.with_updates(n_patients=n_patients)

    def lost(h: float) -> float:
        d = base.with_updates(**{"dropout.visit_hazard": h})
        return float(simulate(d, seed).patients["dropout_month"].notna().mean()) - target

    hi = 0.999
    if lost(hi) < 0:
        raise ValueError(f"a dropout of {target:g} cannot be reached with this dropout model")
    h = float(brentq(lost, 0.0, hi, xtol=tol))
    out = design.with_updates(**{"dropout.visit_hazard": round(h, 6)})
    _CALIBRATION_CACHE[key] = out
    return out


def calibrate_dropout_per_visit(design: Design, hazards: Sequence[float], n_patients: int = 20_000,
                                seed: int = 20_250_101, tol: float = 1e-6) -> Design:
    r"""The design with one base hazard per post-baseline visit, ``dropout.visit_hazard =
    (h_{01}, ..., h_{0V})``, such that the average hazard at visit :math:`v` among the patients
    still present is ``hazards[v]``.

    Under MCAR (both log-odds zero) :math:`h_{0v} = h_v` exactly. Otherwise one study of
    ``n_patients`` is simulated without dropout; for patient :math:`i` the simulator's hazard at
    visit :math:`v` is :math:`h_{iv} = \operatorname{expit}(\operatorname{logit} h_{0v} +
    \alpha(\text{DAS28}_{i,v-1} - 3.2) + \delta\,g_i t_v / 12)` (:mod:`models.simulate`; :math:`g_i`
    the true annual % spine slope), the probability of being present is
    :math:`S_{iv} = \prod_{u<v}(1 - h_{iu})`, and :math:`\sum_i S_{iv} h_{iv} / \sum_i S_{iv} = h_v`
    is solved for :math:`h_{0v}` one visit after the other (a smooth, increasing function: Brent's
    method, no Monte-Carlo noise beyond the simulated covariates).

    Parameters
    ----------
    design : Design
    hazards : sequence of float
        One hazard per post-baseline visit (``design.activity_months[1:]``).
    n_patients, seed : int
        Size and seed of the simulated covariates.
    tol : float
        Tolerance of Brent's method on :math:`\operatorname{logit} h_{0v}`.

    Returns
    -------
    Design

    Raises
    ------
    ValueError
        If the number of hazards differs from the number of post-baseline visits, a hazard is
        outside [0, 1), or it cannot be reached.
    """
    from scipy.optimize import brentq
    from scipy.special import expit, logit

    from models.simulate import simulate

    months = np.asarray(design.activity_months, dtype=float)
    hz = tuple(float(h) for h in hazards)
    if len(hz) != months.size - 1:
        raise ValueError(f"{len(hz)} per-visit hazards {list(hz)} for {months.size - 1} post-baseline visits")
    bad = [h for h in hz if not 0.0 <= h < 1.0]
    if bad:
        raise ValueError(f"every per-visit dropout hazard must be in [0, 1), got {bad[0]:g}")
    dm = design.dropout
    if not dm.activity_log_odds and not dm.bmd_log_odds:
        return design.with_updates(**{"dropout.visit_hazard": hz})
    key = json.dumps([design.to_dict(), hz, n_patients, seed, tol, "per-visit"], sort_keys=True, default=str)
    if key in _CALIBRATION_CACHE:
        return _CALIBRATION_CACHE[key]
    study = simulate(design.with_updates(n_patients=n_patients, **{"dropout.visit_hazard": 0.0}), seed)
    das = study.complete["das28_crp"].to_numpy(dtype=float).reshape(n_patients, months.size)
    slope = study.patients["true_slope_pct_spine"].to_numpy(dtype=float)
    present = np.ones(n_patients)
    base: list[float] = []
    for v in range(1, months.size):
        shift = dm.activity_log_odds * (das[:, v - 1] - 3.2) + dm.bmd_log_odds * slope * months[v] / 12.0
        target = hz[v - 1]
        if target == 0.0:
            h0 = 0.0
        else:
            def gap(lo: float) -> float:
                return float(np.sum(present * expit(lo + shift)) / np.sum(present)) - target

            lo, hi = -30.0, 30.0
            if gap(hi) < 0 or gap(lo) > 0:
                raise ValueError(f"a dropout hazard of {target:g} at month {months[v]:g} cannot be reached "
                                 "with this dropout model")
            h0 = float(expit(brentq(gap, lo, hi, xtol=tol)))
            h0 = min(round(h0, 6), 0.999999)
        base.append(h0)
        h_i = expit(logit(h0) + shift) if h0 > 0 else np.zeros(n_patients)
        present = present * (1.0 - h_i)
    out = design.with_updates(**{"dropout.visit_hazard": tuple(base)})
    _CALIBRATION_CACHE[key] = out
    return out
