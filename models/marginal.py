r"""Building blocks shared by the single-site LMMs (trajectory, activity, dropout) and the joint model.

The single-site models share one random-effects structure: patient :math:`i` at visit :math:`j`
(time :math:`t_{ij}` in years, indicators :math:`g_{ik}` of the non-reference group levels
:math:`k = 1, \dots, K - 1`; a responder study has :math:`K = 2`, :math:`g_{i1} = r_i`),

.. math::

    y_{ij} = \Bigl(b_0 + \sum_k b_{2k} g_{ik} + u_{0i}\Bigr)
             + \Bigl(b_1 + \sum_k b_{2k+1} g_{ik} + u_{1i}\Bigr)\, t_{ij} + f_{ij} + e_{ij},
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
  :math:`\Omega` and the factor :math:`L`), :func:`group_means` (each patient's mean intercept
  and slope) and :func:`reported_deterministics` (``b``, ``sd_patient``, ``corr_patient``,
  ``sigma``, ``baseline_mean``, ``change_end``, ``pct_change_end``, ``diff_change_end``,
  ``diff_pct_change_end`` on the original scale, at the endpoint);
- the marginal likelihood with the random effects integrated out,
  :func:`marginal_loglik_per_patient` / :func:`marginal_loglik`, and the exact conditional
  draws of the effects after sampling, :func:`draw_marginal_effects` and
  :func:`effects_dataarray` (in :mod:`models.marginal_effects`: per patient, in chunks of draws,
  re-exported here).

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

from typing import Any

import numpy as np
import pandas as pd

from models.marginal_effects import draw_marginal_effects, effects_dataarray

__all__ = [
    "as_bool_responder",
    "coef_prior_scales",
    "covariate_term",
    "data_containers",
    "draw_marginal_effects",
    "effects_dataarray",
    "group_means",
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


def standardised_arrays(prep: Any, prior: np.ndarray, t_end: float | None = None) -> dict[str, np.ndarray]:
    r"""The arrays of the single-site models' common ``pm.Data`` containers.

    Parameters
    ----------
    prep : models.trajectory_data.PreparedData
        One site's rows.
    prior : ndarray
        The ``prior`` container (already divided by ``prep.y_scale`` where a scale).
    t_end : float, optional
        The endpoint in years (``t_end`` container, read by :func:`reported_deterministics`);
        none: the reported changes are per year.

    Returns
    -------
    dict of str to ndarray
        ``y_std`` :math:`= (y - m)/s`, ``t`` (years), ``patient_idx``, ``group_x`` (patients x
        :math:`K - 1` indicators; for a single group instead ``n_patients``), ``y_loc`` :math:`m`, ``y_scale``
        :math:`s`, ``prior``, ``t_end`` when given and, with covariates, ``x_std``
        (standardised) and ``x_scale``.
    """
    y_loc, y_scale = prep.y_loc, prep.y_scale
    arrays = {
        "y_std": (prep.y - y_loc) / y_scale,
        "t": prep.t_years,
        "patient_idx": prep.patient_idx,
        "group_x": prep.group_x,
        "y_loc": np.asarray(y_loc),
        "y_scale": np.asarray(y_scale),
        "prior": prior,
    }
    if not prep.group_x.shape[1]:  # a single group: the number of patients sizes the sums
        del arrays["group_x"]
        arrays["n_patients"] = np.asarray(prep.n_patients, dtype=np.int64)
    if t_end is not None:
        arrays["t_end"] = np.asarray(float(t_end))
    if prep.covariates:
        arrays["x_std"] = (prep.x - prep.x_loc) / prep.x_scale
        arrays["x_scale"] = prep.x_scale
    return arrays


def data_containers(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """``pm.Data`` containers for the arrays of :func:`standardised_arrays` (in a model context;
    ``group_x`` has dims ``patient, contrast``).

    Returns the tensors by container name; ``x_std`` / ``x_scale`` are left to
    :func:`covariate_term`.
    """
    import pymc as pm

    out = {
        "y_std": pm.Data("y_std", arrays["y_std"], dims="obs"),
        "t": pm.Data("t", arrays["t"], dims="obs"),
        "patient_idx": pm.Data("patient_idx", arrays["patient_idx"], dims="obs"),
    }
    if "group_x" in arrays:
        out["group_x"] = pm.Data("group_x", arrays["group_x"], dims=("patient", "contrast"))
    if "n_patients" in arrays:
        out["n_patients"] = pm.Data("n_patients", arrays["n_patients"])
    out.update({
        "y_loc": pm.Data("y_loc", arrays["y_loc"]),
        "y_scale": pm.Data("y_scale", arrays["y_scale"]),
        "prior": pm.Data("prior", arrays["prior"], dims="prior_field"),
    })
    if "t_end" in arrays:
        out["t_end"] = pm.Data("t_end", arrays["t_end"])
    return out


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


def coef_prior_scales(ps: Any, n_contrasts: int = 1) -> Any:
    r"""Prior SDs of :math:`b^*` from the ``prior`` container: ``ps[0], ps[1]`` for the intercept
    and time, then ``ps[2], ps[3]`` (a level's main effect and its time interaction) for each of
    the ``n_contrasts`` non-reference levels (``ps[:4]`` for two groups, ``ps[:2]`` for one)."""
    import pytensor.tensor as pt

    if n_contrasts == 1:
        return ps[:4]
    if n_contrasts == 0:
        return ps[:2]
    return pt.concatenate([ps[:2], *([ps[2:4]] * n_contrasts)])


def lmm_parameters(ps: Any, n_contrasts: int = 1) -> dict[str, Any]:
    r"""Fixed effects and random-effects covariance of the single-site LMM (in a model context).

    With the ``prior`` container ``ps`` (:attr:`models.trajectory.TrajectoryPriors.FIELDS`
    order, scales in standardised units) and :math:`C` = ``n_contrasts`` non-reference levels:

    .. math::

        b^* = (b^*_0, b^*_1, b^*_2, b^*_3, \dots, b^*_{2C}, b^*_{2C+1}), \quad
        b^*_0 \sim N(0, \text{ps}_0), \quad b^*_1 \sim N(0, \text{ps}_1), \quad
        b^*_{2k} \sim N(0, \text{ps}_2), \quad b^*_{2k+1} \sim N(0, \text{ps}_3),

        \tau^*_e \sim N^+(0, \text{ps}_{5+e}), \quad
        (\rho + 1)/2 \sim \mathrm{Beta}(\eta, \eta), \quad \eta = \text{ps}_8,

    (for a 2 x 2 correlation matrix LKJ(:math:`\eta`) is exactly that Beta, since
    :math:`\det(\Omega)^{\eta - 1} = (1 - \rho^2)^{\eta - 1}`; ``pm.LKJCorr`` gives the same
    prior but adds ~30 s to a cold numba compile), and :math:`L = \begin{pmatrix} \tau_0 & 0 \\
    \tau_1 \rho & \tau_1 \sqrt{1 - \rho^2} \end{pmatrix}`. Two groups (:math:`C = 1`) give the
    four coefficients intercept, time, group, time:group.

    Returns
    -------
    dict
        ``beta`` (``beta_std``, dims ``coef``), ``tau`` (``tau_std``, dims ``effect``),
        ``rho``, ``l00``, ``l10``, ``l11``. The residual SD is left to the caller (its position
        among the free variables differs between the models).
    """
    import pymc as pm
    import pytensor.tensor as pt

    beta = pm.Normal("beta_std", mu=0.0, sigma=coef_prior_scales(ps, n_contrasts), dims="coef")
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


def group_means(beta: Any, group_x: Any, n_contrasts: int) -> tuple[Any, Any]:
    r"""Each patient's mean intercept and slope, :math:`m_{0i} = b_0 + \sum_k b_{2k} g_{ik}` and
    :math:`m_{1i} = b_1 + \sum_k b_{2k+1} g_{ik}`.

    ``beta`` is the coefficient tensor (dims ``coef``) or an array of draws whose last axis is
    ``coef`` (the result then has that array's leading axes and a last axis of patients);
    ``group_x`` is patients x contrasts. A tensor with no contrast gives the scalars
    :math:`b_0, b_1` (every patient alike).
    """
    if getattr(beta, "ndim", 1) == 1:
        m0, m1 = beta[0], beta[1]
        for k in range(n_contrasts):
            g = group_x[:, k]
            m0 = m0 + beta[2 + 2 * k] * g
            m1 = m1 + beta[3 + 2 * k] * g
        return m0, m1
    m0, m1 = beta[..., 0, None], beta[..., 1, None]
    for k in range(n_contrasts):
        g = group_x[:, k]
        m0 = m0 + beta[..., 2 + 2 * k, None] * g
        m1 = m1 + beta[..., 3 + 2 * k, None] * g
    return m0, m1


def _ensure_contrast_coord(n_groups: int) -> None:
    """Give the model a ``contrast`` coord (``"<level> - <reference>"`` from its ``group`` coord)."""
    import pymc as pm

    model = pm.modelcontext(None)
    if "contrast" not in model.coords:
        levels = list(model.coords.get("group") or range(n_groups))
        model.add_coord("contrast", [f"{lv} - {levels[0]}" for lv in levels[1:]])


def reported_deterministics(
    beta: Any, tau: Any, rho: Any, sigma_std: Any, y_loc: Any, y_scale: Any, *,
    n_contrasts: int = 1, t_end: Any = 1.0,
) -> dict[str, Any]:
    r"""The original-scale estimands of a single-site LMM (in a model context).

    With :math:`T` = ``t_end`` (the endpoint in years, 1 for month 12) and group :math:`g` with
    indicators :math:`e_g` (:math:`g = 0` the reference):

    - ``b`` (:math:`b_0 = m + s b^*_0`, :math:`b_k = s b^*_k`), ``sd_patient`` :math:`= s\tau^*`,
      ``corr_patient`` :math:`= \rho`, ``sigma`` :math:`= s\sigma^*`;
    - ``baseline_mean`` (dims ``group``) :math:`= b_0 + b_{2g}` (:math:`b_0` for the reference);
    - ``change_end`` :math:`= (b_1 + b_{2g+1})\,T`, the change from baseline to the endpoint;
    - ``pct_change_end`` :math:`= 100\,\text{change\_end}_g / \text{baseline\_mean}_g`;
    - ``diff_change_end`` (dims ``contrast``) :math:`= b_{2g+1} T` and ``diff_pct_change_end``
      :math:`= \text{pct\_change\_end}_g - \text{pct\_change\_end}_0`, each level minus the
      reference (only with two or more groups).

    Returns
    -------
    dict
        The ``b``, ``baseline_mean``, ``change_end`` and ``pct_change_end`` tensors.
    """
    import pymc as pm
    import pytensor.tensor as pt

    n_coef = 2 + 2 * n_contrasts
    b = pm.Deterministic(
        "b",
        pt.stack([y_loc + y_scale * beta[0], *(y_scale * beta[k] for k in range(1, n_coef))]),
        dims="coef",
    )
    pm.Deterministic("sd_patient", y_scale * tau, dims="effect")
    pm.Deterministic("corr_patient", rho)
    pm.Deterministic("sigma", y_scale * sigma_std)
    if n_contrasts == 1:  # the two-group form as it always was (bit-identical reported values)
        g = pt.as_tensor(np.array([0.0, 1.0]))
        base_g, slope_g = b[0] + b[2] * g, b[1] + b[3] * g
    else:
        base_g = pt.stack([b[0], *(b[0] + b[2 + 2 * k] for k in range(n_contrasts))])
        slope_g = pt.stack([b[1], *(b[1] + b[3 + 2 * k] for k in range(n_contrasts))])
    base = pm.Deterministic("baseline_mean", base_g, dims="group")
    change = pm.Deterministic("change_end", slope_g * t_end, dims="group")
    pct = pm.Deterministic("pct_change_end", 100.0 * change / base, dims="group")
    if n_contrasts:
        _ensure_contrast_coord(n_contrasts + 1)
        pm.Deterministic("diff_change_end", pt.stack([b[3 + 2 * k] for k in range(n_contrasts)]) * t_end,
                         dims="contrast")
        pm.Deterministic("diff_pct_change_end", pct[1:] - pct[0], dims="contrast")
    return {"b": b, "baseline_mean": base, "change_end": change, "pct_change_end": pct}


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
