r"""Filling in one dataset: each patient's strategy mean, the conditional normal, ICE rules and delta.

Given imputation-model parameters :math:`(\beta, \Sigma)`, patient :math:`i` has own-group means
:math:`a_i = X_i\beta` and reference means :math:`c_i = X_i^{(r)}\beta`
(:mod:`analysis.sensitivity.ice.imputation_model`). With :math:`d_i = k_i - 1` the last pre-ICE
visit (:math:`a_{i0} = c_{i0} = 0`: no change at baseline), the strategy's mean :math:`\mu_i` is
rbmi's (:func:`analysis.sensitivity.imputation_strategies.strategy_means`):

=========  ==================  =====================================================
strategy   :math:`j < k_i`     :math:`j \ge k_i`
=========  ==================  =====================================================
``MAR``    :math:`a_{ij}`      :math:`a_{ij}`
``JR``     :math:`a_{ij}`      :math:`c_{ij}`
``CR``     :math:`c_{ij}`      :math:`c_{ij}`
``CIR``    :math:`a_{ij}`      :math:`a_{id} + c_{ij} - c_{id}`
``LMCF``   :math:`a_{ij}`      :math:`a_{id}`
=========  ==================  =====================================================

(rbmi stops LMCF for an ICE at the first visit; here the carried mean is the baseline's, a change of
0, so a design with one post-baseline visit works). The missing values :math:`M_i` (all visits not
in :math:`O_i`, :mod:`analysis.sensitivity.ice.patients`) are, given the kept observed values,

.. math::

    y_{iM} = \mu_{iM} + \Sigma_{MO}\Sigma_{OO}^{-1}(y_{iO} - \mu_{iO}) + L z_{iM},
    \qquad LL^\top = \Sigma_{MM} - \Sigma_{MO}\Sigma_{OO}^{-1}\Sigma_{OM},

with :math:`z = 0` for the conditional mean (rbmi's ``method_condmean``) and :math:`z \sim N(0, I)`
for a random imputation. (With one :math:`\Sigma` for all groups, rbmi's ``compute_sigma`` is
:math:`\Sigma` itself.) Then

* **while on treatment**: visits :math:`j \ge k_i` take the value at :math:`d_i` (0, the baseline's
  change, when the ICE precedes the first post-baseline scan);
* **delta**: :math:`\delta_{ij}` is added to every imputed post-ICE value (rbmi's ``delta``).
"""

from __future__ import annotations

import numpy as np

from analysis.sensitivity.ice.patients import IcePatients
from analysis.sensitivity.imputation_strategies import (
    conditional_normals,
    fill_missing,
    missingness_patterns,
    strategy_means,
)

__all__ = ["impute", "patient_means"]

_OLD_NAMES = {"JR": "J2R"}


def patient_means(patients: IcePatients, own: np.ndarray, reference: np.ndarray,
                  rows: np.ndarray | None = None) -> np.ndarray:
    """``(len(rows), m)`` strategy mean :math:`\\mu_i` of each patient (module docstring)."""
    rows = np.arange(own.shape[0]) if rows is None else rows
    last = patients.ice_index[rows] - 1
    strat = patients.strategy[rows]
    mu = np.empty_like(own)
    for s in np.unique(strat):
        sel = strat == s
        mu[sel] = strategy_means(own[sel], reference[sel], last[sel], _OLD_NAMES.get(s, s))
    return mu


def impute(patients: IcePatients, beta: np.ndarray, sigma: np.ndarray, x_own: np.ndarray, x_ref: np.ndarray,
           rows: np.ndarray | None = None, z: np.ndarray | None = None) -> np.ndarray:
    r"""One completed dataset of the patients ``rows``.

    Parameters
    ----------
    patients : IcePatients
    beta, sigma : ndarray
        Imputation-model parameters, shapes ``(p,)`` and ``(m, m)``.
    x_own, x_ref : ndarray, shape (n, m, p)
        Own and reference designs of all patients.
    rows : ndarray of int, optional
        Patients to impute (repeats allowed: a bootstrap sample); default all.
    z : ndarray, shape (len(rows), m), optional
        Standard normal deviates; ``None``: conditional means.

    Returns
    -------
    ndarray, shape (len(rows), m)
        Observed values kept, the others filled in.
    """
    n = patients.data.y.shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=int)
    y = patients.y[rows]
    own, ref = x_own[rows] @ beta, x_ref[rows] @ beta
    mu = patient_means(patients, own, ref, rows)
    observed = ~np.isnan(y)
    out = fill_missing(y, mu, conditional_normals(missingness_patterns(observed), sigma), z)
    post = patients.post_ice[rows]
    if patients.delta is not None:  # added to imputed post-ICE values
        shift = np.where(~observed & post & ~patients.carried[rows], patients.delta[rows], 0.0)
        out = out + shift
    carried = patients.carried[rows]
    if carried.any():
        k = patients.ice_index[rows]
        at_d = np.where(k > 0, out[np.arange(rows.size), np.maximum(k - 1, 0)], 0.0)
        out = np.where(carried, at_d[:, None], out)
    return out
