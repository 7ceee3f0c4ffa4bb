r"""Two or more sites' data for the joint multi-site model, patients indexed jointly.

:func:`prepare_joint_data` validates each site's rows as the single-site models do
(:func:`models.trajectory_data.prepare_trajectory_data`) and indexes the patients of all sites
jointly (:class:`JointData`): patient :math:`i` is one position in ``patient_ids`` whether
observed at one site or several, with one group (indicators :math:`g_{ik}` of the non-reference
levels). :func:`joint_data_arrays` stacks the rows of the sites for the model's ``pm.Data``
containers, each site :math:`s` standardised with its own observed mean :math:`m_s` and SD
:math:`s_s`,

.. math::

    y^*_{isj} = (\mathrm{bmd}_{isj} - m_s) / s_s, \qquad
    x^*_{isj} = (x_{isj} - \bar x_s) / s_{x,s},

and the priors (:class:`models.trajectory.TrajectoryPriors`, the same for every site) divided by
each site's :math:`s_s` (rows of the ``prior`` container, dims ``site, prior_field``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.marginal import standardised_arrays
from models.trajectory import TrajectoryPriors
from models.trajectory_data import GROUP_NAMES, GroupIndicators, PreparedData, prepare_trajectory_data

__all__ = [
    "SITE_NAMES",
    "JointData",
    "data_sites",
    "joint_data_arrays",
    "prepare_joint_data",
]

#: The sites of a responder study with spine and femoral-neck DXA (the order of the twin's
#: ``site`` dim); the model takes any two or more sites (:func:`data_sites`).
SITE_NAMES: tuple[str, ...] = ("spine", "femoral_neck")


def data_sites(data: pd.DataFrame) -> tuple[str, ...]:
    """The sites of every ``bmd_<site>`` column of ``data``, in column order."""
    return tuple(str(c)[4:] for c in data.columns if str(c).startswith("bmd_") and len(str(c)) > 4)


@dataclass(frozen=True)
class JointData(GroupIndicators):
    """The sites' validated data, patients indexed jointly.

    Attributes
    ----------
    patient_ids : ndarray of str
        Sorted ids of the patients with at least one observed value at any site.
    group_x : ndarray, shape (n_patients, K - 1)
        Indicators of the non-reference levels per patient.
    sites : dict of str to PreparedData
        Each site's rows (:func:`models.trajectory_data.prepare_trajectory_data`; its
        ``patient_idx`` refers to that site's own patients), in the order of the ``site`` dim.
    site_patient_idx : dict of str to ndarray of int64
        Row -> position in ``patient_ids``, per site.
    covariates : tuple of str
    levels : tuple of str
        The group levels, the reference first.
    """

    patient_ids: np.ndarray
    group_x: np.ndarray
    sites: dict[str, PreparedData]
    site_patient_idx: dict[str, np.ndarray]
    covariates: tuple[str, ...]
    levels: tuple[str, ...] = GROUP_NAMES

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(self.sites)

    @property
    def n_patients(self) -> int:
        return int(self.patient_ids.shape[0])

    @property
    def n_obs(self) -> int:
        return int(sum(p.n_obs for p in self.sites.values()))

    def n_obs_by_site(self) -> dict[str, int]:
        return {s: p.n_obs for s, p in self.sites.items()}


def prepare_joint_data(
    data: pd.DataFrame,
    covariates: tuple[str, ...] = (),
    *,
    sites: Sequence[str] | None = None,
    levels: Sequence[str] | None = None,
    group_column: str = "analysis_group",
    time: str = "month",
) -> JointData:
    """Validate long-format data and turn two or more sites into joint model arrays.

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit with ``patient_id``, ``time``, ``bmd_<site>`` per site, the
        group and any ``covariates`` (see :func:`models.trajectory_data.prepare_trajectory_data`,
        which checks each site).
    covariates : tuple of str
    sites : sequence of str, optional
        The sites, in the order of the ``site`` dim; default every ``bmd_<site>`` column.
    levels, group_column, time
        As for :func:`models.trajectory_data.prepare_trajectory_data` (default: a responder
        study's boolean ``responder``).

    Returns
    -------
    JointData

    Raises
    ------
    ValueError
        Fewer than two sites, or as :func:`models.trajectory_data.prepare_trajectory_data` for any
        site.
    """
    covariates = tuple(covariates)
    sites = tuple(data_sites(data) if sites is None else sites)
    if len(sites) < 2 or len(set(sites)) != len(sites):
        raise ValueError(f"the joint model needs two or more distinct sites, got {', '.join(sites) or 'none'}")
    per_site = {s: prepare_trajectory_data(data, s, covariates, levels=levels, group_column=group_column,
                                           time=time) for s in sites}
    ids = np.unique(np.concatenate([p.patient_ids for p in per_site.values()]))
    first = next(iter(per_site.values()))
    group_x = np.full((ids.shape[0], first.group_x.shape[1]), np.nan)
    site_idx = {}
    for s, p in per_site.items():
        pos = np.searchsorted(ids, p.patient_ids)
        site_idx[s] = pos[p.patient_idx].astype(np.int64)
        prev = group_x[pos]
        if np.any(np.isfinite(prev) & (prev != p.group_x)):
            raise ValueError("the group varies within a patient")
        group_x[pos] = p.group_x
    return JointData(
        patient_ids=ids.astype(str),
        group_x=group_x,
        sites=per_site,
        site_patient_idx=site_idx,
        covariates=covariates,
        levels=first.levels,
    )


def joint_data_arrays(prep: JointData, priors: TrajectoryPriors,
                      t_end: float | None = None) -> dict[str, np.ndarray]:
    """Arrays for every ``pm.Data`` container, keyed by container name (rows stacked by site;
    each site standardised as in the single-site models, :func:`models.marginal.standardised_arrays`;
    ``t_end`` the endpoint in years when given)."""
    names = prep.site_names
    per_site = [
        standardised_arrays(prep.sites[s], priors.to_array(prep.sites[s].y_scale))
        for s in names
    ]
    arrays = {
        "y_std": np.concatenate([a["y_std"] for a in per_site]),
        "t": np.concatenate([a["t"] for a in per_site]),
        "site_idx": np.concatenate(
            [np.full(a["t"].shape[0], k, dtype=np.int64) for k, a in enumerate(per_site)]
        ),
        "patient_idx": np.concatenate([prep.site_patient_idx[s] for s in names]),
        "group_x": prep.group_x,
        "y_loc": np.array([float(a["y_loc"]) for a in per_site]),
        "y_scale": np.array([float(a["y_scale"]) for a in per_site]),
        "prior": np.stack([a["prior"] for a in per_site]),
    }
    if not prep.group_x.shape[1]:  # a single group: the number of patients sizes the sums
        del arrays["group_x"]
        arrays["n_patients"] = np.asarray(prep.n_patients, dtype=np.int64)
    if t_end is not None:
        arrays["t_end"] = np.asarray(float(t_end))
    if prep.covariates:
        arrays["x_std"] = np.concatenate([a["x_std"] for a in per_site])
        arrays["x_scale"] = np.stack([a["x_scale"] for a in per_site])
    return arrays
