r"""Pieces of the trajectory model's graph: latent random effects and Student-t precision weights.

Both are called inside :func:`models.trajectory.build_trajectory_model`'s model context (see the
module docstring of :mod:`models.trajectory` for the model and the measurements behind the
choices). In scaled units, with :math:`m_i = (m_{0i}, m_{1i})` patient :math:`i`'s mean
intercept and slope and :math:`\Sigma = L L^\top`,
:math:`L = \begin{pmatrix} L_{00} & 0 \\ L_{10} & L_{11}\end{pmatrix}`:

- :func:`latent_effects` writes the patient effects :math:`u_i = (u_{0i}, u_{1i})` as sampled
  parameters, in one of the latent parameterisations (``"centred_intercept"``, ``"centred"``,
  ``"noncentred"``);
- :func:`student_t_weights` writes Student-t residuals as a normal scale mixture,
  :math:`e_{ij} \mid w_{ij} \sim N(0, \sigma^2 / w_{ij})`,
  :math:`w_{ij} \sim \mathrm{Gamma}(\nu/2, \nu/2)`, with the weights non-centred.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["latent_effects", "student_t_weights"]


def latent_effects(
    parameterisation: str, m0: Any, m1: Any, l00: Any, l10: Any, l11: Any
) -> tuple[Any, Any]:
    r"""Random effects (scaled units) for the latent parameterisations (in a model context).

    Parameters
    ----------
    parameterisation : {"centred_intercept", "centred", "noncentred"}
    m0, m1 : tensors
        Per patient, the mean intercept :math:`m_{0i} = b_0 + b_2 r_i` and slope
        :math:`m_{1i} = b_1 + b_3 r_i`.
    l00, l10, l11 : tensors
        The entries of the Cholesky factor :math:`L` of :math:`\Sigma`.

    Returns
    -------
    u0, u1 : tensors
        The patients' effects, dims ``patient``:

        - ``"noncentred"``: :math:`z_i \sim N(0, I_2)` (``z_patient``), :math:`u_i = L z_i`;
        - ``"centred"``: :math:`(a_{0i}, a_{1i}) \sim \mathrm{MVN}(m_i, \Sigma)`
          (``theta_std``), :math:`u_i = a_i - m_i`;
        - ``"centred_intercept"``: :math:`a_{0i} \sim N(m_{0i}, L_{00})` (``theta0_std``),
          centred in location and scale, :math:`u_{0i} = a_{0i} - m_{0i}`, and the slope
          non-centred given the intercept, :math:`u_{1i} = (L_{10}/L_{00}) u_{0i} + L_{11}
          z_{1i}`, :math:`z_{1i} \sim N(0, 1)` (``z1_patient``).
    """
    import pymc as pm
    import pytensor.tensor as pt

    if parameterisation == "noncentred":
        z = pm.Normal("z_patient", 0.0, 1.0, dims=("patient", "effect"))
        return l00 * z[:, 0], l10 * z[:, 0] + l11 * z[:, 1]
    if parameterisation == "centred":
        chol = pt.stack([pt.stack([l00, pt.zeros_like(l00)]), pt.stack([l10, l11])])
        theta = pm.MvNormal(
            "theta_std", mu=pt.stack([m0, m1], axis=1), chol=chol, dims=("patient", "effect")
        )
        return theta[:, 0] - m0, theta[:, 1] - m1
    # intercept centred in location and scale; slope non-centred given the intercept
    a0 = pm.Normal("theta0_std", mu=m0, sigma=l00, dims="patient")
    z1 = pm.Normal("z1_patient", 0.0, 1.0, dims="patient")
    u0 = a0 - m0
    return u0, (l10 / l00) * u0 + l11 * z1


def student_t_weights(nu: Any) -> Any:
    r"""Precision weights of Student-t residuals as a scale mixture, non-centred (in a model).

    :math:`e_{ij} \sim t_\nu(0, \sigma)` is :math:`e_{ij} \mid w_{ij} \sim N(0, \sigma^2 /
    w_{ij})` with :math:`w_{ij} \sim \mathrm{Gamma}(a, a)`, :math:`a = \nu / 2`. Sampled
    directly, :math:`\log w_{ij}` has prior SD :math:`\sqrt{\psi_1(a)} \approx
    \sqrt{2/\nu}`, which shrinks as :math:`\nu` grows: a funnel (measured on the twin:
    E-BFMI 0.05-0.10, bulk ESS of :math:`\nu` ~100 of 4000). Instead the sampler sees
    :math:`z_{ij}` with

    .. math::

        \log w_{ij} = \mu(a) + s(a)\, z_{ij}, \qquad
        \mu(a) = -\frac{1}{2a} - \frac{1}{12 a^2}, \qquad
        s(a) = \sqrt{\frac{1}{a} + \frac{1}{2a^2}},

    the leading terms of the asymptotic expansions of the mean :math:`\psi(a) - \log a` and SD
    :math:`\sqrt{\psi_1(a)}` of :math:`\log w` (within 1% / 5% of them at :math:`\nu = 2`,
    5% / 10% at :math:`\nu = 1`), so :math:`z_{ij}` has mean near 0 and SD near 1 for every
    :math:`\nu`. (The exact digamma / trigamma would need PyTensor's trigamma and polygamma,
    which numba runs in object mode: 5x slower per gradient and not disk-cacheable.) Any such smooth bijection is exact
    once its Jacobian is included: the density of :math:`z` given :math:`\nu`,

    .. math::

        \log p(z \mid \nu) = a \log a - \log\Gamma(a) + a \log w - a w + \log s(a),

    is added as a potential (``w_prior``) on top of a :math:`N(0, 1)` placeholder prior
    (``z_w``, whose log density is subtracted again), so the model is exactly the Student-t
    one. Returns :math:`w` and stores it as the deterministic ``w_obs`` (dims ``obs``; small
    weights flag outlying observations).
    """
    import pymc as pm
    import pytensor.tensor as pt

    a = 0.5 * nu
    z = pm.Normal("z_w", 0.0, 1.0, dims="obs")
    inv_a = 1.0 / a
    log_s = 0.5 * pt.log(inv_a + 0.5 * inv_a**2)
    log_w = -0.5 * inv_a - inv_a**2 / 12.0 + pt.exp(log_s) * z
    w = pt.exp(log_w)
    log_p = a * pt.log(a) - pt.gammaln(a) + a * log_w - a * w + log_s
    pm.Potential("w_prior", pt.sum(log_p + 0.5 * z**2 + 0.5 * np.log(2.0 * np.pi)))
    return pm.Deterministic("w_obs", w, dims="obs")
