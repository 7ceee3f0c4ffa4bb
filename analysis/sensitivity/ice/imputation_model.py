r"""The imputation model's design: the mean of patient :math:`i` at post-baseline visit :math:`j`.

Two models (``imputation_model=``), both MMRMs with one unstructured :math:`\Sigma` fitted by REML
to the values :math:`F_i` of :class:`~analysis.sensitivity.ice.patients.IcePatients`:

``"rbmi"``
    rbmi's documented model ``change ~ baseline * visit + group * visit`` (vignettes: ``CHANGE ~
    BASVAL*VISIT + THERAPY*VISIT``): :math:`\mu_{ij}(g) = \alpha_{gj} + \gamma_j b_i + \eta^\top
    x_i`, a group-by-visit cell, a baseline slope per visit and the covariates. Written in cell
    form; its column space, hence the REML fit and every prediction, is R's.
``"rajak"``
    :math:`\mu_{ij}(g) = \alpha_{gj} + \gamma b_i + \eta^\top x_i`, one baseline slope (the
    reference-based MI of :mod:`analysis.sensitivity.imputation_draws`).

With treatment-policy ICEs that have retrieved (post-ICE observed) values, a retrieved-dropout
term is added (rbmi's vignette model RD1, ``+ time_since_ice * group``): :math:`\delta_g
u_{ij}` with :math:`u_{ij}` the months from the last pre-ICE visit to visit :math:`j` at post-ICE
visits (0 before), one slope per group, so the bone of a patient off treatment follows their own
group's off-treatment trajectory.

The *reference* design of a patient is theirs with the group set to the reference (as rbmi's
``dat_ref``); the strategies combine the two means
(:mod:`analysis.sensitivity.ice.imputation`).
"""

from __future__ import annotations

import numpy as np

from analysis.sensitivity.ice.patients import IcePatients

__all__ = ["IMPUTATION_MODELS", "design", "design_names"]

IMPUTATION_MODELS = ("rbmi", "rajak")


def design(patients: IcePatients, model: str = "rbmi", group: int | None = None) -> np.ndarray:
    r"""``(n, m, p)`` design :math:`X_i` of every patient (rows: post-baseline visits).

    Parameters
    ----------
    patients : IcePatients
    model : {"rbmi", "rajak"}
        See the module docstring.
    group : int, optional
        Every patient's group set to this code (the reference design); default their own.
    """
    if model not in IMPUTATION_MODELS:
        raise ValueError(f"imputation model must be one of {IMPUTATION_MODELS}, got {model!r}")
    d = patients.data
    n, m = d.y.shape
    k = d.n_groups
    g = d.group if group is None else np.full(n, int(group))
    if model == "rajak":  # cells, one baseline slope, covariates: the reference-based MI's design
        blocks = [d.design(g)]
    else:
        cells = np.zeros((n, m, k * m))
        rows = np.arange(n)
        for j in range(m):
            cells[rows, j, g * m + j] = 1.0
        base = np.zeros((n, m, m))
        base[:, np.arange(m), np.arange(m)] = d.baseline[:, None]
        blocks = [cells, base]
        if d.covariates.shape[1]:
            blocks.append(np.broadcast_to(d.covariates[:, None, :], (n, m, d.covariates.shape[1])))
    if patients.has_retrieved:
        u = patients.off_treatment_months
        slope = np.zeros((n, m, k))
        for c in range(k):
            slope[:, :, c] = np.where((g == c)[:, None], u, 0.0)
        blocks.append(slope)
    return np.concatenate(blocks, axis=2)


def design_names(patients: IcePatients, model: str = "rbmi") -> list[str]:
    """Column names of :func:`design` (for messages and the manifest)."""
    d = patients.data
    names = [f"{lv}:month{t:g}" for lv in d.levels for t in d.months]
    names += ([f"baseline:month{t:g}" for t in d.months] if model == "rbmi" else ["baseline"])
    names += list(d.covariate_names)
    if patients.has_retrieved:
        names += [f"{lv}:months_off_treatment" for lv in d.levels]
    return names
