r"""Building blocks shared by the single-site LMMs (trajectory, activity, dropout) and the joint model.

The single-site models share one random-effects structure: patient :math:`i` at visit :math:`j`
(time :math:`t_{ij}` in years, responder indicator :math:`r_i`),

.. math::

    y_{ij} = (b_0 + b_2 r_i + u_{0i}) + (b_1 + b_3 r_i + u_{1i})\, t_{ij} + f_{ij} + e_{ij},
    \qquad u_i \sim \mathrm{MVN}(0, \Sigma), \qquad \Sigma = L L^\top,

with :math:`f_{ij}` any further fixed part (covariates, disease activity) and, written as a
scale mixture, :math:`e_{ij} \sim N(0, \sigma^2 / w_{ij})` (:math:`w_{ij} \equiv 1` for the
normal likelihood; :math:`w_{ij} \sim \mathrm{Gamma}(\nu/2, \nu/2)` gives Student-t residuals).
Everything is in the models' standardised units (outcome centred and scaled by its observed mean
and SD). This module holds

- the data plumbing: :func:`as_bool_responder`, :func:`standardised_arrays` (the ``pm.Data``
  arrays every single-site model starts from), :func:`data_containers`, :func:`covariate_term`
  and :func:`update_model_data` (``set_data`` of a built model);
- the parameters and reported quantities: :func:`lmm_parameters` (:math:`b`, :math:`\tau`,
  :math:`\Omega` and the factor :math:`L`) and :func:`reported_deterministics` (``b``,
  ``sd_patient``, ``corr_patient``, ``sigma``, ``baseline_mean``, ``change_12m``,
  ``pct_change_12m``, ``diff_change_12m``, ``diff_pct_change_12m`` on the original scale);
- the marginal likelihood with the random effects integrated out,
  :func:`marginal_loglik_per_patient` / :func:`marginal_loglik`, and the exact conditional
  draws of the effects after sampling, :func:`draw_marginal_effects` and
  :func:`effects_dataarray`.

Marginal likelihood
-------------------
With :math:`W_i = \mathrm{diag}(w_{ij})`, :math:`Z_i = [1, t_{ij}]` and fixed-part residuals
:math:`r_i`, :math:`y_i \sim \mathrm{MVN}(X_i b, V_i)`,
:math:`V_i = \sigma^2 W_i^{-1} + Z_i \Sigma Z_i^\top`. With
:math:`A_i = \Sigma^{-1} + \sigma^{-2} Z_i^\top W_i Z_i` (2 x 2), the determinant lemma and the
Woodbury identity give

.. math::

    \log|V_i| = n_i \log\sigma^2 - \sum_j \log w_{ij} + \log|\Sigma| + \log|A_i|, \qquad
    r_i^\top V_i^{-1} r_i = \frac{r_i^\top W_i r_i}{\sigma^2}
        - \frac{(Z_i^\top W_i r_i)^\top A_i^{-1} (Z_i^\top W_i r_i)}{\sigma^4},

so only per-patient (weighted) sums of :math:`1, t, t^2, r, t r, r^2` are needed; a patient
without rows contributes exactly zero. Given the parameters (and the weights), the effects are
:math:`u_i \sim N(A_i^{-1} Z_i^\top W_i r_i / \sigma^2,\ A_i^{-1})`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "as_bool_responder",
    "covariate_term",
    "data_containers",
    "draw_marginal_effects",
    "effects_dataarray",
    "lmm_parameters",
    "marginal_loglik",
    "marginal_loglik_per_patient",
    "reported_deterministics",
    "standardised_arrays",
    "update_model_data",
]

_LOG_2PI = np.log(2.0 * np.pi)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def as_bool_responder(values: pd.Series) -> np.ndarray:
    """A boolean (or 0/1) responder column as a boolean array.

    Raises
    ------
    ValueError
        On a missing value or any other value.
    """
    if values.isna().any():
        raise ValueError("responder is missing for some rows; resolve it before modelling")
    if values.dtype == bool:
        return values.to_numpy()
    uniq = set(pd.unique(values))
    if uniq <= {0, 1, True, False}:
        return values.astype(bool).to_numpy()
    raise ValueError(f"responder must be boolean (or 0/1), got values {sorted(map(str, uniq))}")


def standardised_arrays(prep: Any, prior: np.ndarray) -> dict[str, np.ndarray]:
    r"""The arrays of the single-site models' common ``pm.Data`` containers.

    Parameters
    ----------
    prep : models.trajectory_data.PreparedData
        One site's rows.
    prior : ndarray
        The ``prior`` container (already divided by ``prep.y_scale`` where a scale).

    Returns
    -------
    dict of str to ndarray
        ``y_std`` :math:`= (y - m)/s`, ``t`` (years), ``patient_idx``, ``responder`` (per
        patient), ``y_loc`` :math:`m`, ``y_scale`` :math:`s`, ``prior`` and, with covariates,
        ``x_std`` (standardised) and ``x_scale``.
    """
    y_loc, y_scale = prep.y_loc, prep.y_scale
    arrays = {
        "y_std": (prep.y - y_loc) / y_scale,
        "t": prep.t_years,
        "patient_idx": prep.patient_idx,
        "responder": prep.responder,
        "y_loc": np.asarray(y_loc),
        "y_scale": np.asarray(y_scale),
        "prior": prior,
    }
    if prep.covariates:
        arrays["x_std"] = (prep.x - prep.x_loc) / prep.x_scale
        arrays["x_scale"] = prep.x_scale
    return arrays


def data_containers(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``pm.Data`` containers for the arrays of :func:`standardised_arrays` (in a model context).

    Returns the tensors by container name; ``x_std`` / ``x_scale`` are left to
    :func:`covariate_term`.
    """
    import pymc as pm

    return {
        "y_std": pm.Data("y_std", arrays["y_std"], dims="obs"),
        "t": pm.Data("t", arrays["t"], dims="obs"),
        "patient_idx": pm.Data("patient_idx", arrays["patient_idx"], dims="obs"),
        "responder": pm.Data("responder", arrays["responder"], dims="patient"),
        "y_loc": pm.Data("y_loc", arrays["y_loc"]),
        "y_scale": pm.Data("y_scale", arrays["y_scale"]),
        "prior": pm.Data("prior", arrays["prior"], dims="prior_field"),
    }


def covariate_term(arrays: dict[str, np.ndarray], ps: Any, y_scale: Any) -> Any:
    r"""Covariates' linear term :math:`x^{*\top}\gamma^*` (standardised units), in a model context.

    Creates the ``x_std`` / ``x_scale`` containers, :math:`\gamma^*_k \sim N(0,
    \text{covariate\_sd}/s)` (``gamma_std``, prior scale ``ps[4]``) and the original-scale
    ``gamma`` (g/cm^2 per unit of covariate :math:`k`).
    """
    import pymc as pm
    import pytensor.tensor as pt

    x_std = pm.Data("x_std", arrays["x_std"], dims=("obs", "covariate"))
    x_scale = pm.Data("x_scale", arrays["x_scale"], dims="covariate")
    gamma_std = pm.Normal("gamma_std", 0.0, ps[4], dims="covariate")
    pm.Deterministic("gamma", y_scale * gamma_std / x_scale, dims="covariate")
    return pt.dot(x_std, gamma_std)


def update_model_data(
    pm_model: Any, arrays: dict[str, np.ndarray], n_obs: int, patient_ids: np.ndarray
) -> None:
    """Resize the ``obs`` and ``patient`` dims of a built model and set every container."""
    pm_model.set_dim("obs", n_obs, coord_values=np.arange(n_obs))
    pm_model.set_dim("patient", len(patient_ids), coord_values=patient_ids)
    for name, value in arrays.items():
        pm_model.set_data(name, value)


# ---------------------------------------------------------------------------------------------
# parameters and reported quantities
# ---------------------------------------------------------------------------------------------


def lmm_parameters(ps: Any) -> dict[str, Any]:
    r"""Fixed effects and random-effects covariance of the single-site LMM (in a model context).

    With the ``prior`` container ``ps`` (:attr:`models.trajectory.TrajectoryPriors.FIELDS`
    order, scales in standardised units):

    .. math::

        b^*_k \sim N(0, \text{ps}_k)\ (k < 4), \quad \tau^*_e \sim N^+(0, \text{ps}_{5+e}), \quad
        (\rho + 1)/2 \sim \mathrm{Beta}(\eta, \eta), \quad \eta = \text{ps}_8,

    (for a 2 x 2 correlation matrix LKJ(:math:`\eta`) is exactly that Beta, since
    :math:`\det(\Omega)^{\eta - 1} = (1 - \rho^2)^{\eta - 1}`; ``pm.LKJCorr`` gives the same
    prior but adds ~30 s to a cold numba compile), and :math:`L = \begin{pmatrix} \tau_0 & 0 \\
    \tau_1 \rho & \tau_1 \sqrt{1 - \rho^2} \end{pmatrix}`.

    Returns
    -------
    dict
        ``beta`` (``beta_std``, dims ``coef``), ``tau`` (``tau_std``, dims ``effect``),
        ``rho``, ``l00``, ``l10``, ``l11``. The residual SD is left to the caller (its position
        among the free variables differs between the models).
    """
    import pymc as pm
    import pytensor.tensor as pt

    beta = pm.Normal("beta_std", mu=0.0, sigma=ps[:4], dims="coef")
    tau = pm.HalfNormal("tau_std", sigma=ps[5:7], dims="effect")
    w = pm.Beta("corr_beta", alpha=ps[8], beta=ps[8])
    rho = 2.0 * w - 1.0
    return {
        "beta": beta,
        "tau": tau,
        "rho": rho,
        "l00": tau[0],
        "l10": tau[1] * rho,
        "l11": tau[1] * pt.sqrt(1.0 - rho**2),
    }


def reported_deterministics(
    beta: Any, tau: Any, rho: Any, sigma_std: Any, y_loc: Any, y_scale: Any
) -> dict[str, Any]:
    r"""The original-scale estimands of a single-site LMM (in a model context).

    ``b`` (:math:`b_0 = m + s b^*_0`, :math:`b_k = s b^*_k`), ``sd_patient`` :math:`= s\tau^*`,
    ``corr_patient`` :math:`= \rho`, ``sigma`` :math:`= s\sigma^*`, ``baseline_mean``
    :math:`= b_0 + b_2 g`, ``change_12m`` :math:`= b_1 + b_3 g`, ``pct_change_12m``
    :math:`= 100\,(b_1 + b_3 g)/(b_0 + b_2 g)`, ``diff_change_12m`` :math:`= b_3` and
    ``diff_pct_change_12m`` (responders minus non-responders), :math:`g \in \{0, 1\}`.

    Returns
    -------
    dict
        The ``b``, ``baseline_mean``, ``change_12m`` and ``pct_change_12m`` tensors.
    """
    import pymc as pm
    import pytensor.tensor as pt

    b = pm.Deterministic(
        "b",
        pt.stack([y_loc + y_scale * beta[0], *(y_scale * beta[k] for k in (1, 2, 3))]),
        dims="coef",
    )
    pm.Deterministic("sd_patient", y_scale * tau, dims="effect")
    pm.Deterministic("corr_patient", rho)
    pm.Deterministic("sigma", y_scale * sigma_std)
    g = pt.as_tensor(np.array([0.0, 1.0]))
    base = pm.Deterministic("baseline_mean", b[0] + b[2] * g, dims="group")
    change = pm.Deterministic("change_12m", b[1] + b[3] * g, dims="group")
    pct = pm.Deterministic("pct_change_12m", 100.0 * change / base, dims="group")
    pm.Deterministic("diff_change_12m", b[3])
    pm.Deterministic("diff_pct_change_12m", pct[1] - pct[0])
    return {"b": b, "baseline_mean": base, "change_12m": change, "pct_change_12m": pct}


# ---------------------------------------------------------------------------------------------
# marginal likelihood and the effects' conditional
# ---------------------------------------------------------------------------------------------


def _per_patient_terms(
    resid: Any,
    t: Any,
    pidx: Any,
    n_patients: Any,
    l00: Any,
    l10: Any,
    l11: Any,
    sigma: Any,
    weights: Any = None,
) -> Any:
    r""":math:`n_i \log 2\pi + \log|V_i| + r_i^\top V_i^{-1} r_i` per patient (see the module doc)."""
    import pytensor.tensor as pt

    def per_patient(v: Any) -> Any:
        return pt.inc_subtensor(pt.zeros(n_patients)[pidx], v)

    n = per_patient(pt.ones_like(t))
    if weights is None:
        sw, s1, s2 = n, per_patient(t), per_patient(t * t)
        r0, r1, rr = per_patient(resid), per_patient(t * resid), per_patient(resid * resid)
    else:
        wr = weights * resid
        sw, s1, s2 = per_patient(weights), per_patient(weights * t), per_patient(weights * t * t)
        r0, r1, rr = per_patient(wr), per_patient(t * wr), per_patient(wr * resid)
    s00, s01, s11 = l00**2, l00 * l10, l10**2 + l11**2  # Sigma = L L^T
    det_sigma = (l00 * l11) ** 2
    inv_s2 = 1.0 / sigma**2
    a = s11 / det_sigma + inv_s2 * sw
    b = -s01 / det_sigma + inv_s2 * s1
    c = s00 / det_sigma + inv_s2 * s2
    det_a = a * c - b * b
    quad = inv_s2 * rr - inv_s2**2 * (c * r0**2 - 2.0 * b * r0 * r1 + a * r1**2) / det_a
    logdet = n * pt.log(sigma**2) + pt.log(det_sigma) + pt.log(det_a)
    if weights is not None:
        logdet = logdet - per_patient(pt.log(weights))
    return n * _LOG_2PI + logdet + quad


def marginal_loglik_per_patient(
    resid: Any,
    t: Any,
    pidx: Any,
    n_patients: Any,
    l00: Any,
    l10: Any,
    l11: Any,
    sigma: Any,
    weights: Any = None,
) -> Any:
    r"""Per-patient :math:`\log \mathrm{MVN}(r_i;\ 0,\ \sigma^2 W_i^{-1} + Z_i \Sigma Z_i^\top)`.

    Parameters
    ----------
    resid, t : tensor, shape (n_obs,)
        Fixed-part residuals and time (standardised units, years).
    pidx : tensor of int, shape (n_obs,)
        Row -> patient.
    n_patients : int or scalar tensor
    l00, l10, l11 : scalar tensors
        The factor :math:`L` of :math:`\Sigma` (see :func:`lmm_parameters`).
    sigma : scalar tensor
        Residual scale :math:`\sigma`.
    weights : tensor, shape (n_obs,), optional
        Precision weights :math:`w_{ij}` (residual variance :math:`\sigma^2 / w_{ij}`); none for
        homoscedastic residuals.

    Returns
    -------
    tensor, shape (n_patients,)
        See the module docstring (determinant lemma and Woodbury identity).
    """
    terms = _per_patient_terms(resid, t, pidx, n_patients, l00, l10, l11, sigma, weights)
    return -0.5 * terms


def marginal_loglik(
    resid: Any,
    t: Any,
    pidx: Any,
    n_patients: Any,
    l00: Any,
    l10: Any,
    l11: Any,
    sigma: Any,
    weights: Any = None,
) -> Any:
    r"""Log-likelihood with the random effects integrated out: the sum over patients of
    :func:`marginal_loglik_per_patient` (same parameters)."""
    import pytensor.tensor as pt

    terms = _per_patient_terms(resid, t, pidx, n_patients, l00, l10, l11, sigma, weights)
    return -0.5 * pt.sum(terms)


def draw_marginal_effects(
    post: xr.Dataset,
    arrays: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    offset: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    r"""Draws of the standardised random effects given each posterior draw of a marginal model.

    Parameters
    ----------
    post : xarray.Dataset
        Posterior with ``beta_std`` (chain, draw, coef), ``tau_std``, ``corr_beta``,
        ``sigma_std`` and, with covariates, ``gamma_std``.
    arrays : dict
        The model's data (``y_std``, ``t``, ``patient_idx``, ``responder``, ``x_std``).
    rng : numpy.random.Generator
    offset : ndarray, shape (chain, draw, obs), optional
        Further fixed part of the mean (standardised units), e.g. disease activity.
    weights : ndarray, shape (chain, draw, obs), optional
        Precision weights of the scale-mixture (Student-t) residuals.

    Returns
    -------
    ndarray, shape (chain, draw, patient, 2)
        :math:`u_i \sim N(A_i^{-1} Z_i^\top W_i r_i / \sigma^2, A_i^{-1})` per draw.
    """
    beta = post["beta_std"].values  # (C, D, 4)
    tau = post["tau_std"].values  # (C, D, 2)
    rho = 2.0 * post["corr_beta"].values - 1.0
    sigma = post["sigma_std"].values
    t, pidx, resp = arrays["t"], arrays["patient_idx"], arrays["responder"]
    n_pat = resp.shape[0]
    m0 = beta[..., 0, None] + beta[..., 2, None] * resp  # (C, D, P)
    m1 = beta[..., 1, None] + beta[..., 3, None] * resp
    fixed = m0[..., pidx] + m1[..., pidx] * t
    if "gamma_std" in post:
        fixed = fixed + post["gamma_std"].values @ arrays["x_std"].T
    if offset is not None:
        fixed = fixed + offset
    r = arrays["y_std"] - fixed  # (C, D, N)
    onehot = np.zeros((t.shape[0], n_pat))
    onehot[np.arange(t.shape[0]), pidx] = 1.0
    if weights is None:
        n, s1, s2 = onehot.sum(0), t @ onehot, (t * t) @ onehot
        r0, r1 = r @ onehot, (r * t) @ onehot
    else:
        n, s1, s2 = weights @ onehot, (weights * t) @ onehot, (weights * t * t) @ onehot
        r0, r1 = (weights * r) @ onehot, (weights * r * t) @ onehot
    l00, l10, l11 = tau[..., 0], tau[..., 1] * rho, tau[..., 1] * np.sqrt(1.0 - rho**2)
    s00, s01, s11 = l00**2, l00 * l10, l10**2 + l11**2
    det_s = (l00 * l11) ** 2
    inv_s2 = 1.0 / sigma**2
    a = (s11 / det_s)[..., None] + inv_s2[..., None] * n
    b = (-s01 / det_s)[..., None] + inv_s2[..., None] * s1
    c = (s00 / det_s)[..., None] + inv_s2[..., None] * s2
    det_a = a * c - b * b
    # A^{-1} = [[c, -b], [-b, a]] / det_a; mean = A^{-1} Z^T W r / sigma^2
    z0, z1 = inv_s2[..., None] * r0, inv_s2[..., None] * r1
    mean0, mean1 = (c * z0 - b * z1) / det_a, (a * z1 - b * z0) / det_a
    v00, v01, v11 = c / det_a, -b / det_a, a / det_a
    c00 = np.sqrt(v00)
    c10 = v01 / c00
    c11 = np.sqrt(np.maximum(v11 - c10**2, 0.0))
    eps = rng.standard_normal((*mean0.shape, 2))
    u0 = mean0 + c00 * eps[..., 0]
    u1 = mean1 + c10 * eps[..., 0] + c11 * eps[..., 1]
    return np.stack([u0, u1], axis=-1)


def effects_dataarray(u: np.ndarray, patient_ids: np.ndarray) -> xr.DataArray:
    """Patient effects (chain, draw, patient, effect) on the original scale as a DataArray."""
    import xarray as xr

    return xr.DataArray(
        u,
        dims=("chain", "draw", "patient", "effect"),
        coords={"patient": patient_ids, "effect": ["intercept", "slope"]},
    )
