r"""One skeletal site's long-format rows as validated arrays: the trajectory models' data.

The trajectory LMM (:mod:`models.trajectory`) and the models built on it (:mod:`models.activity`,
:mod:`models.joint`) read a study through :func:`prepare_trajectory_data`: one row per
patient-visit with ``patient_id``, the time (``month``, months since the patient's baseline), the
site's BMD column ``bmd_<site>``, the patient's group and any covariates. Rows with a missing
outcome are dropped; for patient :math:`i` at visit :math:`j` the result (:class:`PreparedData`)
holds

.. math::

    t_{ij} = \mathrm{month}_{ij} / 12 \ \text{(years)}, \qquad y_{ij} = \mathrm{bmd}_{ij}, \qquad
    g_{ik} = [\text{group}_i = \ell_k] \ (k = 1, \dots, K - 1), \qquad
    x_{ij} \ (\texttt{sex}: 1 = \text{male}),

where :math:`\ell_0, \dots, \ell_{K-1}` are the group levels, the reference :math:`\ell_0`
first (the indicator matrix :math:`G = (g_{ik})` has :math:`K - 1` columns: none for a single-arm
study), and the centring and scaling constants the models use internally: :math:`m, s` the mean
and SD of the observed outcome (:attr:`PreparedData.y_loc`, :attr:`PreparedData.y_scale`;
:math:`s = 1` when the outcome is constant) and the covariates' means and SDs
(:attr:`PreparedData.x_loc`, :attr:`PreparedData.x_scale`), so that
:math:`y^*_{ij} = (y_{ij} - m)/s` and :math:`x^*_{ij} = (x_{ij} - \bar x)/s_x`
(:func:`models.marginal.standardised_arrays`).

Groups
------
``levels`` (reference first) names the groups and ``group_column`` the column holding each
patient's level (:func:`group_indicators`). Without ``levels`` the data are a responder study's:
a boolean ``responder`` column, levels :data:`GROUP_NAMES` (non-responders the reference), the
form the responder-only models (:mod:`models.activity`, :mod:`models.dropout`) use.

The labels of the models' dims live here too (:func:`coef_names`, :func:`contrast_names`; the
responder study's :data:`COEF_NAMES`, :data:`GROUP_NAMES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.marginal import as_bool_responder

__all__ = [
    "COEF_NAMES",
    "GROUP_NAMES",
    "SITES",
    "GroupIndicators",
    "PreparedData",
    "coef_names",
    "contrast_names",
    "group_indicators",
    "outcome_column",
    "prepare_trajectory_data",
    "resolve_levels",
]

#: The sites of a responder study with DXA of the spine and femoral neck, and their BMD columns
#: (what the responder-only models default to; every other model takes any ``bmd_<site>``).
SITES: dict[str, str] = {"spine": "bmd_spine", "femoral_neck": "bmd_femoral_neck"}
#: Labels of the ``group`` dim of a responder study (indicator 0, 1), the reference first.
GROUP_NAMES: tuple[str, ...] = ("non-responder", "responder")
#: Labels of the ``coef`` dim of ``b`` in a responder study (:func:`coef_names` of
#: :data:`GROUP_NAMES` with the historical term name ``responder``).
COEF_NAMES: tuple[str, ...] = ("intercept", "time", "responder", "time:responder")


def coef_names(levels: Sequence[str]) -> tuple[str, ...]:
    """Labels of ``b``: ``intercept, time``, then ``<level>, time:<level>`` per non-reference level
    (``levels[0]`` is the reference; a single level gives ``intercept, time``)."""
    out = ["intercept", "time"]
    for lv in list(levels)[1:]:
        out += [str(lv), f"time:{lv}"]
    return tuple(out)


def contrast_names(levels: Sequence[str]) -> tuple[str, ...]:
    """Labels of the ``contrast`` dim: ``"<level> - <reference>"`` per non-reference level."""
    levels = list(levels)
    return tuple(f"{lv} - {levels[0]}" for lv in levels[1:])


def outcome_column(data: pd.DataFrame, site: str) -> str:
    """The BMD column of ``site`` (``bmd_<site>``); ValueError naming the sites present if absent."""
    col = f"bmd_{site}"
    if col not in data.columns:
        have = sorted(str(c).removeprefix("bmd_") for c in data.columns if str(c).startswith("bmd_"))
        raise ValueError(f"no BMD column {col!r} for site {site!r}; sites in the data: {', '.join(have) or 'none'}")
    return col


def resolve_levels(levels: Sequence[str] | None, group_column: str) -> tuple[tuple[str, ...], str]:
    """``(levels, column)``: the responder study's (:data:`GROUP_NAMES`, ``responder``) when
    ``levels`` is ``None``, else ``levels`` (unique, at least one) read from ``group_column``."""
    if levels is None:
        return GROUP_NAMES, "responder"
    levels = tuple(str(lv) for lv in levels)
    if not levels or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be one or more distinct group names, got {levels!r}")
    return levels, group_column


def group_indicators(per_patient: pd.Series, levels: Sequence[str], column: str = "group") -> np.ndarray:
    r"""The indicator matrix :math:`G` (patients x :math:`K - 1`) of each patient's level.

    Parameters
    ----------
    per_patient : Series
        One value per patient: a level name, or for the responder study (``column ==
        "responder"``) a boolean (or 0/1).
    levels : sequence of str
        The levels, the reference first.
    column : str
        The column the values came from (for messages; ``"responder"`` selects the boolean form).

    Raises
    ------
    ValueError
        A missing value or a value that is not a level.
    """
    levels = list(levels)
    if column == "responder" and tuple(levels) == GROUP_NAMES:
        return as_bool_responder(per_patient).astype(float)[:, None]
    if per_patient.isna().any():
        raise ValueError(f"{column} is missing for some patients; resolve it before modelling")
    values = per_patient.astype(str).to_numpy()
    unknown = sorted(set(values) - set(levels))
    if unknown:
        raise ValueError(f"{column} has value(s) {unknown} that are not among the levels {levels}")
    return np.stack([(values == lv).astype(float) for lv in levels[1:]], axis=1) if len(levels) > 1 \
        else np.zeros((len(values), 0))


class GroupIndicators:
    """What every prepared data set with per-patient group indicators (``group_x``, patients x
    K - 1, and ``levels``, the reference first) offers: the one 0/1 indicator of a two-group study
    (the responder indicator of the RAJAK default) and the number of contrasts."""

    group_x: np.ndarray
    levels: tuple[str, ...]

    @property
    def responder(self) -> np.ndarray:
        """0/1 per patient: the one indicator of a two-group study (ValueError otherwise)."""
        if self.group_x.shape[1] != 1:
            raise ValueError(f"a responder indicator needs two groups, these data have {len(self.levels)}")
        return self.group_x[:, 0]

    @property
    def n_contrasts(self) -> int:
        return int(self.group_x.shape[1])


@dataclass(frozen=True)
class PreparedData(GroupIndicators):
    """Validated arrays for one site (rows with a missing outcome dropped).

    Attributes
    ----------
    patient_ids : ndarray of str
        Sorted unique patient ids (the ``patient`` coord).
    patient_idx : ndarray of int64
        Row -> position in ``patient_ids``.
    months, t_years, y : ndarray of float
        Time in months and in years, outcome (g/cm^2) per row.
    group_x : ndarray, shape (n_patients, K - 1)
        Indicator of each non-reference level per patient.
    x : ndarray, shape (n_rows, n_covariates)
        Raw covariates (``sex`` as 1 = "M").
    covariates : tuple of str
    levels : tuple of str
        The group levels, the reference first (:data:`GROUP_NAMES` for a responder study).
    """

    patient_ids: np.ndarray
    patient_idx: np.ndarray
    months: np.ndarray
    t_years: np.ndarray
    y: np.ndarray
    group_x: np.ndarray
    x: np.ndarray
    covariates: tuple[str, ...]
    levels: tuple[str, ...] = GROUP_NAMES

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_patients(self) -> int:
        return int(self.patient_ids.shape[0])

    @property
    def y_loc(self) -> float:
        return float(np.mean(self.y))

    @property
    def y_scale(self) -> float:
        sd = float(np.std(self.y))
        return sd if np.isfinite(sd) and sd > 1e-8 else 1.0

    @property
    def x_loc(self) -> np.ndarray:
        return self.x.mean(axis=0) if self.x.shape[1] else np.zeros(0)

    @property
    def x_scale(self) -> np.ndarray:
        if not self.x.shape[1]:
            return np.zeros(0)
        sd = self.x.std(axis=0)
        return np.where(sd > 1e-12, sd, 1.0)


def prepare_trajectory_data(
    data: pd.DataFrame,
    site: str,
    covariates: tuple[str, ...] = (),
    *,
    levels: Sequence[str] | None = None,
    group_column: str = "analysis_group",
    time: str = "month",
) -> PreparedData:
    """Validate long-format data and turn one site into model arrays.

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit with ``patient_id``, ``time``, ``bmd_<site>``, the group
        column and any ``covariates``.
    site : str
        Any site with a ``bmd_<site>`` column.
    covariates : tuple of str
        Columns added linearly; ``"sex"`` ("F"/"M") becomes an indicator of male sex.
    levels : sequence of str, optional
        Group levels, the reference first (see the module docstring, *Groups*); default the
        responder study's boolean ``responder``.
    group_column : str
        The column holding each patient's level (with ``levels``).
    time : str
        The time column in months since the patient's baseline (``month``; a design's actual
        times, e.g. ``month_actual``).

    Returns
    -------
    PreparedData

    Raises
    ------
    ValueError
        On a missing column, a missing time/group/covariate where the outcome is observed, a group
        that varies within a patient or is not a level, or no observed outcome at all.
    """
    outcome = outcome_column(data, site)
    levels, gcol = resolve_levels(levels, group_column)
    needed = ["patient_id", time, outcome, *([gcol] if len(levels) > 1 or gcol in data.columns else []),
              *covariates]
    needed = list(dict.fromkeys(needed))
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}")
    df = data.loc[data[outcome].notna(), needed].copy()
    if df.empty:
        raise ValueError(f"no observed {outcome} values")
    if df[time].isna().any():
        raise ValueError(f"{time} is missing for rows with an observed outcome")
    df["patient_id"] = df["patient_id"].astype(str)
    codes, ids = pd.factorize(df["patient_id"], sort=True)
    if gcol in df.columns:
        if df[gcol].isna().any():
            raise ValueError(f"{gcol} is missing for some rows; resolve it before modelling")
        if (df.groupby("patient_id")[gcol].nunique() > 1).any():
            raise ValueError(f"{gcol} varies within a patient")
        per_patient = df.groupby(codes)[gcol].first().sort_index()
        group_x = group_indicators(per_patient, levels, gcol)
    else:  # a single group: every patient in it
        group_x = np.zeros((len(ids), 0))
    x_cols = []
    for cov in covariates:
        col = df[cov]
        if cov == "sex":
            bad = ~col.isin(["F", "M"])
            if bad.any():
                got = sorted(map(str, col[bad].unique()))
                raise ValueError(f"sex must be 'F' or 'M', got {got}")
            col = (col == "M").astype(float)
        col = pd.to_numeric(col, errors="raise").astype(float)
        if col.isna().any():
            raise ValueError(f"covariate {cov!r} is missing for rows with an observed outcome")
        x_cols.append(col.to_numpy())
    x = np.column_stack(x_cols) if x_cols else np.zeros((len(df), 0))
    months = df[time].to_numpy(dtype=float)
    return PreparedData(
        patient_ids=np.asarray(ids, dtype=str),
        patient_idx=codes.astype(np.int64),
        months=months,
        t_years=months / 12.0,
        y=df[outcome].to_numpy(dtype=float),
        group_x=group_x,
        x=x,
        covariates=tuple(covariates),
        levels=levels,
    )
