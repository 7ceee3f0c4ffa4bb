r"""Both sites' data for the joint two-site model, patients indexed jointly.

:func:`prepare_joint_data` validates each site's rows as the single-site models do
(:func:`models.trajectory_data.prepare_trajectory_data`) and indexes the patients of both sites
jointly (:class:`JointData`): patient :math:`i` is one position in ``patient_ids`` whether
observed at one site or both, with one responder status :math:`r_i`. :func:`joint_data_arrays`
stacks the rows of both sites for the model's ``pm.Data`` containers, each site :math:`s`
standardised with its own observed mean :math:`m_s` and SD :math:`s_s`,

.. math::

    y^*_{isj} = (\mathrm{bmd}_{isj} - m_s) / s_s, \qquad
    x^*_{isj} = (x_{isj} - \bar x_s) / s_{x,s},

and the priors (:class:`models.trajectory.TrajectoryPriors`, the same for both sites) divided by
each site's :math:`s_s` (rows of the ``prior`` container, dims ``site, prior_field``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.marginal import standardised_arrays
from models.trajectory import TrajectoryPriors
from models.trajectory_data import PreparedData, prepare_trajectory_data

__all__ = [
    "SITE_NAMES",
    "JointData",
    "joint_data_arrays",
    "prepare_joint_data",
]

#: Sites in the order of the ``site`` dim.
SITE_NAMES: tuple[str, ...] = ("spine", "femoral_neck")


@dataclass(frozen=True)
class JointData:
    """Both sites' validated data, patients indexed jointly.

    Attributes
    ----------
    patient_ids : ndarray of str
        Sorted ids of the patients with at least one observed value at either site.
    responder : ndarray of float
        0/1 per patient.
    sites : dict of str to PreparedData
        Each site's rows (:func:`models.trajectory_data.prepare_trajectory_data`; its
        ``patient_idx`` refers to that site's own patients).
    site_patient_idx : dict of str to ndarray of int64
        Row -> position in ``patient_ids``, per site.
    covariates : tuple of str
    """

    patient_ids: np.ndarray
    responder: np.ndarray
    sites: dict[str, PreparedData]
    site_patient_idx: dict[str, np.ndarray]
    covariates: tuple[str, ...]

    @property
    def n_patients(self) -> int:
        return int(self.patient_ids.shape[0])

    @property
    def n_obs(self) -> int:
        return int(sum(p.n_obs for p in self.sites.values()))

    def n_obs_by_site(self) -> dict[str, int]:
        return {s: p.n_obs for s, p in self.sites.items()}


def prepare_joint_data(data: pd.DataFrame, covariates: tuple[str, ...] = ()) -> JointData:
    """Validate long-format data and turn both sites into joint model arrays.

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit with ``patient_id``, ``month``, ``bmd_spine``,
        ``bmd_femoral_neck``, ``responder`` and any ``covariates`` (see
        :func:`models.trajectory_data.prepare_trajectory_data`, which checks each site).
    covariates : tuple of str

    Returns
    -------
    JointData

    Raises
    ------
    ValueError
        As :func:`models.trajectory_data.prepare_trajectory_data` for either site.
    """
    covariates = tuple(covariates)
    sites = {s: prepare_trajectory_data(data, s, covariates) for s in SITE_NAMES}
    ids = np.unique(np.concatenate([p.patient_ids for p in sites.values()]))
    responder = np.full(ids.shape[0], np.nan)
    site_idx = {}
    for s, p in sites.items():
        pos = np.searchsorted(ids, p.patient_ids)
        site_idx[s] = pos[p.patient_idx].astype(np.int64)
        prev = responder[pos]
        if np.any(np.isfinite(prev) & (prev != p.responder)):
            raise ValueError("responder status varies within a patient")
        responder[pos] = p.responder
    return JointData(
        patient_ids=ids.astype(str),
        responder=responder,
        sites=sites,
        site_patient_idx=site_idx,
        covariates=covariates,
    )


def joint_data_arrays(prep: JointData, priors: TrajectoryPriors) -> dict[str, np.ndarray]:
    """Arrays for every ``pm.Data`` container, keyed by container name (rows stacked by site;
    each site standardised as in the single-site models, :func:`models.marginal.standardised_arrays`)."""
    per_site = [
        standardised_arrays(prep.sites[s], priors.to_array(prep.sites[s].y_scale))
        for s in SITE_NAMES
    ]
    arrays = {
        "y_std": np.concatenate([a["y_std"] for a in per_site]),
        "t": np.concatenate([a["t"] for a in per_site]),
        "site_idx": np.concatenate(
            [np.full(a["t"].shape[0], k, dtype=np.int64) for k, a in enumerate(per_site)]
        ),
        "patient_idx": np.concatenate([prep.site_patient_idx[s] for s in SITE_NAMES]),
        "responder": prep.responder,
        "y_loc": np.array([float(a["y_loc"]) for a in per_site]),
        "y_scale": np.array([float(a["y_scale"]) for a in per_site]),
        "prior": np.stack([a["prior"] for a in per_site]),
    }
    if prep.covariates:
        arrays["x_std"] = np.concatenate([a["x_std"] for a in per_site])
        arrays["x_scale"] = np.stack([a["x_scale"] for a in per_site])
    return arrays
