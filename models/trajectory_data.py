r"""One skeletal site's long-format rows as validated arrays: the trajectory models' data.

The trajectory LMM (:mod:`models.trajectory`) and the models built on it (:mod:`models.activity`,
:mod:`models.joint`) read a study through :func:`prepare_trajectory_data`: one row per
patient-visit with ``patient_id``, ``month``, the site's BMD column (:data:`SITES`),
``responder`` and any covariates. Rows with a missing outcome are dropped; for patient :math:`i`
at visit :math:`j` the result (:class:`PreparedData`) holds

.. math::

    t_{ij} = \mathrm{month}_{ij} / 12 \ \text{(years)}, \qquad y_{ij} = \mathrm{bmd}_{ij}, \qquad
    r_i \in \{0, 1\}, \qquad x_{ij} \ (\texttt{sex}: 1 = \text{male}),

and the centring and scaling constants the models use internally: :math:`m, s` the mean and SD
of the observed outcome (:attr:`PreparedData.y_loc`, :attr:`PreparedData.y_scale`;
:math:`s = 1` when the outcome is constant) and the covariates' means and SDs
(:attr:`PreparedData.x_loc`, :attr:`PreparedData.x_scale`), so that
:math:`y^*_{ij} = (y_{ij} - m)/s` and :math:`x^*_{ij} = (x_{ij} - \bar x)/s_x`
(:func:`models.marginal.standardised_arrays`).

The labels of the models' dims live here too (:data:`COEF_NAMES`, :data:`GROUP_NAMES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.marginal import as_bool_responder

__all__ = [
    "COEF_NAMES",
    "GROUP_NAMES",
    "SITES",
    "PreparedData",
    "prepare_trajectory_data",
]

#: Skeletal sites and the data-contract column holding each one's BMD (g/cm^2).
SITES: dict[str, str] = {"spine": "bmd_spine", "femoral_neck": "bmd_femoral_neck"}
#: Labels of the ``coef`` dim of ``b``.
COEF_NAMES: tuple[str, ...] = ("intercept", "time", "responder", "time:responder")
#: Labels of the ``group`` dim (responder indicator 0, 1).
GROUP_NAMES: tuple[str, ...] = ("non-responder", "responder")


@dataclass(frozen=True)
class PreparedData:
    """Validated arrays for one site (rows with a missing outcome dropped).

    Attributes
    ----------
    patient_ids : ndarray of str
        Sorted unique patient ids (the ``patient`` coord).
    patient_idx : ndarray of int64
        Row -> position in ``patient_ids``.
    months, t_years, y : ndarray of float
        Visit month, time in years, outcome (g/cm^2) per row.
    responder : ndarray of float
        0/1 per patient.
    x : ndarray, shape (n_rows, n_covariates)
        Raw covariates (``sex`` as 1 = "M").
    covariates : tuple of str
    """

    patient_ids: np.ndarray
    patient_idx: np.ndarray
    months: np.ndarray
    t_years: np.ndarray
    y: np.ndarray
    responder: np.ndarray
    x: np.ndarray
    covariates: tuple[str, ...]

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
    data: pd.DataFrame, site: str = "spine", covariates: tuple[str, ...] = ()
) -> PreparedData:
    """Validate long-format data and turn one site into model arrays.

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit with ``patient_id``, ``month``, the site's BMD column (see
        :data:`SITES`), ``responder`` and any ``covariates``.
    site : {"spine", "femoral_neck"}
    covariates : tuple of str
        Columns added linearly; ``"sex"`` ("F"/"M") becomes an indicator of male sex.

    Returns
    -------
    PreparedData

    Raises
    ------
    ValueError
        On a missing column, a missing month/responder/covariate where the outcome is observed,
        a responder status that varies within a patient, or no observed outcome at all.
    """
    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}")
    outcome = SITES[site]
    needed = ["patient_id", "month", outcome, "responder", *covariates]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}")
    df = data.loc[data[outcome].notna(), needed].copy()
    if df.empty:
        raise ValueError(f"no observed {outcome} values")
    if df["month"].isna().any():
        raise ValueError("month is missing for rows with an observed outcome")
    df["patient_id"] = df["patient_id"].astype(str)
    df["responder"] = as_bool_responder(df["responder"])
    if (df.groupby("patient_id")["responder"].nunique() > 1).any():
        raise ValueError("responder status varies within a patient")
    codes, ids = pd.factorize(df["patient_id"], sort=True)
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
    responder = (
        df.groupby(codes)["responder"].first().sort_index().to_numpy().astype(float)
    )
    months = df["month"].to_numpy(dtype=float)
    return PreparedData(
        patient_ids=np.asarray(ids, dtype=str),
        patient_idx=codes.astype(np.int64),
        months=months,
        t_years=months / 12.0,
        y=df[outcome].to_numpy(dtype=float),
        responder=responder,
        x=x,
        covariates=tuple(covariates),
    )
