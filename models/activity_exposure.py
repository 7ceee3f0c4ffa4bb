r"""The activity exposure: each patient's improvement of disease activity, integrated over time.

For patient :math:`i` at visit :math:`j` (time :math:`t_{ij}` in years), let
:math:`I_i(s) = \mathrm{DAS}_i(0) - \mathrm{DAS}_i(s)` be the patient's improvement of disease
activity (DAS28-CRP units, positive = better) at time :math:`s`. The activity model
(:mod:`models.activity`) adds :math:`b_a\, a_{ij}` to the trajectory model's mean, with the
centred exposure

.. math::

    a_{ij} = \int_0^{t_{ij}} I_i(s)\,ds - \bar I\, t_{ij}.

Two versions of :math:`I_i(s)` (``activity=``):

``"cumulative"`` (time-varying, default)
    :math:`I_i` is linear between the patient's observed DAS28-CRP visits and carried forward
    after the last one, so :math:`\int_0^{t} I_i` is exact by the trapezoid rule over the visits
    up to :math:`t` (a BMD at month 6 uses the DAS28 at months 0, 3, 6 only).
``"mean_improvement"``
    :math:`I_i(s) \equiv \bar I_i`, the mean improvement over the patient's observed
    post-baseline visits (all of them), so :math:`a_{ij} = (\bar I_i - \bar I)\, t_{ij}`: a
    patient-level modifier of the slope.
``"none"``
    :math:`b_a = 0`: the trajectory model on the same rows, the reference for the comparison.

:math:`A_i = \int_0^1 I_i(s)\,ds` (``"cumulative"``; carried forward beyond the last visit) or
:math:`\bar I_i` (``"mean_improvement"``) is patient :math:`i`'s 12-month activity exposure and
:math:`\bar I` its mean over the patients with a post-baseline DAS28 (the centring constant).
Patients with no post-baseline BMD need no DAS28; a patient with a follow-up BMD but no baseline
or no post-baseline DAS28 is an error.

:func:`prepare_activity_data` computes the exposure per row, :math:`A_i`, :math:`\bar I` and the
groups' mean exposures :math:`\bar A_g` (:class:`ActivityData`) on top of the trajectory model's
data (:func:`models.trajectory_data.prepare_trajectory_data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from models.trajectory_data import PreparedData, prepare_trajectory_data

__all__ = [
    "ACTIVITY_KINDS",
    "ActivityData",
    "prepare_activity_data",
]

#: Versions of the activity term accepted by :func:`models.activity.build_activity_model`.
ACTIVITY_KINDS: tuple[str, ...] = ("cumulative", "mean_improvement", "none")

ActivityKind = Literal["cumulative", "mean_improvement", "none"]


@dataclass(frozen=True)
class ActivityData:
    r"""Model arrays for one site plus the activity exposure.

    Attributes
    ----------
    prepared : PreparedData
        As for the trajectory model (rows with an observed outcome).
    activity : str
    exposure : ndarray
        Per row: :math:`\int_0^{t_{ij}} I_i(s) ds` (``"cumulative"``) or
        :math:`\bar I_i t_{ij}` (``"mean_improvement"``), DAS28 units x years; zeros for
        ``"none"``.
    patient_exposure : ndarray
        Per patient: :math:`A_i`, NaN without a post-baseline activity score.
    reference : float
        :math:`\bar I`.
    group_exposure : ndarray, shape (2,)
        :math:`\bar A_g` for non-responders and responders.
    """

    prepared: PreparedData
    activity: str
    exposure: np.ndarray
    patient_exposure: np.ndarray
    reference: float
    group_exposure: np.ndarray

    @property
    def x_activity(self) -> np.ndarray:
        """The centred regressor :math:`a_{ij}`."""
        return self.exposure - self.reference * self.prepared.t_years


def _integral(knots_t: np.ndarray, knots_v: np.ndarray, upto: float) -> float:
    """Integral over [0, upto] of the piecewise-linear interpolant, constant after the last knot."""
    if upto <= 0.0:
        return 0.0
    grid = np.union1d(knots_t[knots_t < upto], [0.0, upto])
    return float(np.trapezoid(np.interp(grid, knots_t, knots_v), grid))


def prepare_activity_data(
    data: pd.DataFrame,
    site: str,
    covariates: tuple[str, ...] = (),
    activity: ActivityKind = "cumulative",
    activity_column: str = "das28_crp",
) -> ActivityData:
    r"""Validate long-format data and compute the activity exposure (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit: the trajectory model's columns (``patient_id``, ``month``,
        the site's BMD, a boolean ``responder``, covariates) and ``activity_column`` (rows
        without BMD, e.g. month 3, still contribute their activity score).
    site : str
        A site of the study (data column ``bmd_<site>``).
    covariates : tuple of str
    activity : {"cumulative", "mean_improvement", "none"}
    activity_column : str
        The activity score; improvement is baseline minus current value.

    Returns
    -------
    ActivityData

    Raises
    ------
    ValueError
        On a bad option, a missing column, or a patient with follow-up BMD but no baseline or no
        post-baseline activity score.
    """
    if activity not in ACTIVITY_KINDS:
        raise ValueError(f"activity must be one of {ACTIVITY_KINDS}, got {activity!r}")
    prep = prepare_trajectory_data(data, site, tuple(covariates))
    n_pat = prep.n_patients
    if activity == "none":
        return ActivityData(prep, activity, np.zeros(prep.n_obs), np.full(n_pat, np.nan), 0.0,
                            np.zeros(2))
    if activity_column not in data.columns:
        raise ValueError(f"data lacks the activity column {activity_column!r}")
    scores = data.loc[data[activity_column].notna() & data["month"].notna(),
                      ["patient_id", "month", activity_column]].copy()
    scores["patient_id"] = scores["patient_id"].astype(str)
    scores = scores.groupby(["patient_id", "month"], as_index=False)[activity_column].mean()
    by_patient = {pid: g.sort_values("month") for pid, g in scores.groupby("patient_id")}

    followed = np.zeros(n_pat, dtype=bool)
    followed[prep.patient_idx[prep.t_years > 0]] = True
    exposure = np.zeros(prep.n_obs)
    patient_exposure = np.full(n_pat, np.nan)
    no_base, no_post = [], []
    for k, pid in enumerate(prep.patient_ids):
        g = by_patient.get(pid)
        months = g["month"].to_numpy(float) if g is not None else np.zeros(0)
        values = g[activity_column].to_numpy(float) if g is not None else np.zeros(0)
        if not np.any(months == 0.0):
            if followed[k]:
                no_base.append(pid)
            continue
        base = values[months == 0.0][0]
        post = months > 0.0
        if not post.any():
            if followed[k]:
                no_post.append(pid)
            continue
        knots_t = np.concatenate([[0.0], months[post] / 12.0])
        knots_v = np.concatenate([[0.0], base - values[post]])
        rows = np.flatnonzero(prep.patient_idx == k)
        if activity == "cumulative":
            patient_exposure[k] = _integral(knots_t, knots_v, 1.0)
            exposure[rows] = [_integral(knots_t, knots_v, t) for t in prep.t_years[rows]]
        else:
            patient_exposure[k] = float(np.mean(knots_v[1:]))
            exposure[rows] = patient_exposure[k] * prep.t_years[rows]
    if no_base:
        raise ValueError(f"{activity_column} at month 0 is missing for patient(s) with follow-up "
                         f"BMD: {', '.join(no_base)}")
    if no_post:
        raise ValueError(f"no post-baseline {activity_column} for patient(s) with follow-up BMD: "
                         f"{', '.join(no_post)}")
    has = ~np.isnan(patient_exposure)
    groups = [has & (prep.responder == g) for g in (0.0, 1.0)]
    if not all(m.any() for m in groups):
        raise ValueError(f"both groups need patients with a post-baseline {activity_column}")
    reference = float(np.mean(patient_exposure[has]))
    group_exposure = np.array([np.mean(patient_exposure[m]) for m in groups])
    return ActivityData(prep, activity, exposure, patient_exposure, reference, group_exposure)
