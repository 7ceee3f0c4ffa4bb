r"""Dropout-aware trajectory models: a selection (shared-parameter) model and latent responder status.

Both models extend the trajectory LMM of :mod:`models.trajectory` (one skeletal site, time
:math:`t` in years, outcome centred and scaled internally, priors
:class:`~models.trajectory.TrajectoryPriors` on the data's scale) for patient :math:`i` with
responder status :math:`r_i`:

.. math::

    y_{ij} = a_{0i} + a_{1i} t_{ij} + e_{ij}, \quad e_{ij} \sim N(0, \sigma), \qquad
    a_{0i} = b_0 + b_2 r_i + u_{0i}, \quad a_{1i} = b_1 + b_3 r_i + u_{1i}, \qquad
    u_i \sim \mathrm{MVN}(0, \Sigma).

The room's dropout models, one module each, re-exported here:

- :mod:`models.dropout_data`: the data (:func:`prepare_dropout_data`, :class:`DropoutData`:
  BMD rows, responder status and its patterns, risk sets; :func:`risk_wide`) and the priors
  of the dropout and status parts (:class:`DropoutPriors`);
- :mod:`models.dropout_latent_status`: undefined responder status (dropout before the response
  month) as a latent Bernoulli variable summed out of the likelihood, its probability from a
  logistic regression on the disease-activity trajectory observed before dropout
  (:func:`build_latent_status_model`, :class:`LatentStatusModel`; the MAR reference);
- :mod:`models.dropout_selection`: that model plus a discrete-time dropout hazard depending on
  the patient's own (integrated-out) BMD trajectory, :math:`\operatorname{logit} h_{iv} =
  \alpha_v + \beta\,(\mathrm{DAS28}_{i,v^-} - 3.2) + \psi\, x_{iv}`
  (:func:`build_selection_model`, :class:`SelectionModel`; MNAR for :math:`\psi \ne 0`).

The maths of each model is in its module's docstring.
"""

from __future__ import annotations

from models.dropout_data import (
    DAS28_CENTRE,
    DropoutData,
    DropoutPriors,
    prepare_dropout_data,
    risk_wide,
)
from models.dropout_latent_status import LatentStatusModel, build_latent_status_model
from models.dropout_selection import (
    DEPENDENCES,
    QUADRATURE_NODES,
    SelectionModel,
    build_selection_model,
)

__all__ = [
    "DAS28_CENTRE",
    "DEPENDENCES",
    "QUADRATURE_NODES",
    "DropoutData",
    "DropoutPriors",
    "LatentStatusModel",
    "SelectionModel",
    "build_latent_status_model",
    "build_selection_model",
    "prepare_dropout_data",
    "risk_wide",
]
