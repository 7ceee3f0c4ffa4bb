r"""Selection (shared-parameter) model: the latent-status trajectory LMM plus a dropout hazard.

The model extends the trajectory LMM of :mod:`models.trajectory` (one skeletal site, time
:math:`t` in years, outcome centred and scaled internally, priors
:class:`~models.trajectory.TrajectoryPriors` on the data's scale) for patient :math:`i` with
responder status :math:`r_i`:

.. math::

    y_{ij} = a_{0i} + a_{1i} t_{ij} + e_{ij}, \quad e_{ij} \sim N(0, \sigma), \qquad
    a_{0i} = b_0 + b_2 r_i + u_{0i}, \quad a_{1i} = b_1 + b_3 r_i + u_{1i}, \qquad
    u_i \sim \mathrm{MVN}(0, \Sigma).

:func:`build_selection_model` adds a discrete-time dropout hazard at every post-baseline
scheduled visit :math:`v` (months :math:`\tau_v`, e.g. 3, 6, 12) at which patient :math:`i` is
still at risk:

.. math::

    \operatorname{logit} h_{iv} = \alpha_v + \beta\,(\mathrm{DAS28}_{i,v^-} - 3.2)
        + \psi\, x_{iv}, \qquad
    x_{iv} = \begin{cases}
        100\, a_{1i} \tau_v / a_{0i} & \text{``current\_change'': the current, unobserved \% change}\\
        100\, a_{1i} / a_{0i} & \text{``slope'': the patient's annual \% change}
    \end{cases}

with :math:`\mathrm{DAS28}_{i,v^-}` the last observed DAS28 before visit :math:`v` (optional,
``hazard_das28=True``; the MAR part). A completer contributes :math:`\sum_v \log(1 - h_{iv})`, a
patient who drops out at visit :math:`d_i` contributes
:math:`\sum_{v < d_i} \log(1 - h_{iv}) + \log h_{i d_i}`. With :math:`\psi = 0` the hazard
factorises from the BMD part and the model *is* the MAR latent-status model, which is therefore
the reference against which the selection model's estimands are compared.

Mapping to the simulator. :func:`models.simulate.simulate` drops patient :math:`i` at visit
:math:`v` with :math:`\operatorname{logit} h = \operatorname{logit} h_0
+ \alpha^{\mathrm{sim}} (\mathrm{DAS28}_{v^-} - 3.2) + \delta\, 100\,(\mu_i(\tau_v)/b_i - 1)`, and
its true trajectory :math:`\mu_i(t) = b_i (1 + g_i t / 1200)` (months) is linear with
:math:`a_{0i} = b_i`, :math:`a_{1i} = b_i g_i / 100` per year, so
:math:`100\,(\mu_i(\tau_v)/b_i - 1) = 100\, a_{1i} \tau_v / a_{0i}` exactly: with
``dependence="current_change"``, :math:`\psi` = ``bmd_log_odds`` (log-odds of dropout per 1 %
current change of spine BMD from baseline), :math:`\beta` = ``activity_log_odds`` and
:math:`\alpha_v = \operatorname{logit}` ``visit_hazard`` for every :math:`v`. With
``dependence="slope"`` there is no exact mapping (:math:`\psi_{\text{slope}} \approx \delta\,
\bar\tau`, the mean time at risk in years).

The hazard depends on the patient's effects :math:`a_i = (a_{0i}, a_{1i})`, which are integrated
out rather than sampled (explicit per-patient effects mixed badly: bulk ESS 210-455 of 4000 and
R-hat up to 1.013 on a 400-patient study, failing at the twin's femoral neck). Per component
:math:`r`, with :math:`D_i` the patient's dropout history,

.. math::

    p(y_i, D_i \mid r) = p(y_i \mid r) \int p(D_i \mid a)\, p(a \mid y_i, r)\, da,

where :math:`p(y_i \mid r)` is the marginal normal likelihood of :mod:`models.marginal` (exact)
and :math:`p(a \mid y_i, r) = N(\mu_i, A_i^{-1})` is the Gaussian conditional of the effects
given the patient's BMD rows, :math:`A_i = \Sigma^{-1} + Z_i^\top Z_i / \sigma^2`,
:math:`\mu_i = m_r + A_i^{-1} Z_i^\top (y_i - Z_i m_r) / \sigma^2` (:math:`m_r` the fixed part
:math:`(b_0 + b_2 r, b_1 + b_3 r)`). The integral is a product Gauss-Hermite rule in the
factorisation :math:`p(a_1 \mid y)\, p(a_0 \mid a_1, y)`: :math:`K_1` nodes along the slope and
:math:`K_0` along the intercept given the slope (``quadrature_nodes``, default
:data:`QUADRATURE_NODES` = (12, 1)). One intercept node suffices because :math:`a_0` enters only
the denominator of the % change and is known to about the DXA precision given the baseline scan.
Measured error of the log-likelihood against a (60, 15)-node rule, at 20 posterior draws of fits
on the twin and on a 400-patient MNAR study (both sites): at most 5.4e-3 with the default (12, 1),
nearly all of it from the single intercept node (the same with 7 to 15 slope nodes); (9, 3) nodes
gave at most 2e-5 on one set of draws but 2.3e-2 on another (twin femoral neck, from the slope
direction). Away from the posterior (large :math:`|\psi|` with a wide slope distribution, where
the integrand is a near step) the error grows to order 1, so a prior that puts much mass on
:math:`|\psi| > 1` deserves more nodes. On that study the explicit-effects model (which did not
converge) and the integrated one gave the same :math:`\psi` posterior (mean -0.328 vs -0.332,
spine; -0.281 vs -0.283, femoral neck; 4 x 1000 draws); the integrated one passed every
diagnostic at both sites of the twin and of the study (min bulk ESS 1193-2088 of 4000, R-hat
<= 1.003, no divergences). Sampling cost, 4 x (1000 + 1000), 2 cores, warm: 10-12 s on the twin,
89-95 s on 400 patients.

The risk rows enter as dense ``(patient, visit)`` arrays with an at-risk mask (dropout is
monotone; :func:`models.dropout_data.risk_wide`), so the hazard is evaluated without scatter
operations. Priors: :math:`\psi \sim N(\mu_\psi, s_\psi)`,
:math:`\alpha_v \sim N(\mu_\alpha, s_\alpha)`, :math:`\beta \sim N(0, s_\beta)`,
:math:`\kappa \sim N(0, s_\kappa)` (:class:`~models.dropout_data.DropoutPriors`; they are data,
so a user can explore the prior on :math:`\psi` without recompiling).

Known groups (``group=``, ``levels=``; :mod:`models.dropout_latent_status`, *Known groups*): the
trajectory part is the :math:`K`-group LMM, nothing is latent, and patient :math:`i` contributes
:math:`p(y_i \mid g_i) \int p(D_i \mid a)\, p(a \mid y_i, g_i)\, da` with :math:`m_{g_i}` the group's
fixed part; the hazard has no DAS28 term unless every patient has a baseline DAS28
(``hazard_das28``). This is how the model serves a trial, a dose study or a single arm.

:math:`\psi` is identified only through the model's assumptions (normal random slopes, linear
trajectories): patients who drop out after baseline only carry no information about their own
slope, and a selection model's :math:`\psi` should be read as a sensitivity parameter.

Reported quantities (original scale) are those of the latent-status model
(:mod:`models.dropout_latent_status`: the trajectory model's, ``p_responder`` and ``kappa``)
plus ``psi``, ``alpha`` (dim ``visit``) and ``beta_das28``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from models.dropout_data import (
    DropoutPriors,
    dropout_coords,
    dropout_data_arrays,
    prepare_dropout_data,
)
from models.dropout_latent_status import (
    DropoutModelBase,
    common_parameters,
    dropout_containers,
    group_means,
    log_sigmoid,
    report_groups,
    report_original_scale,
    status_mixture,
    status_regression,
)
from models.marginal import marginal_loglik_per_patient
from models.trajectory import TrajectoryPriors

__all__ = [
    "DEPENDENCES",
    "QUADRATURE_NODES",
    "SelectionModel",
    "build_selection_model",
]

#: Quantities the dropout hazard can depend on (see the module docstring).
DEPENDENCES: tuple[str, ...] = ("current_change", "slope")
#: Gauss-Hermite nodes of the selection model's hazard integral: along the slope :math:`a_1`
#: and along the intercept given the slope (see the module docstring for the measured error).
QUADRATURE_NODES: tuple[int, int] = (12, 1)

Dependence = Literal["current_change", "slope"]


def _per_patient(v: Any, idx: Any, n: Any) -> Any:
    import pytensor.tensor as pt

    return pt.inc_subtensor(pt.zeros(n)[idx], v)


def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss-Hermite rule for a standard normal (sum of w = 1)."""
    x, w = np.polynomial.hermite.hermgauss(n)
    return np.sqrt(2.0) * x, w / w.sum()


def _effects_conditional(
    sums: dict[str, Any], m0: Any, m1: Any, l00: Any, l10: Any, l11: Any, sigma: Any
) -> dict[str, Any]:
    r"""Per patient, the Gaussian conditional of :math:`(a_0, a_1)` given the BMD rows.

    ``sums`` holds the per-patient :math:`n_i, \sum t, \sum t^2, \sum y, \sum t y`; ``m0, m1``
    the fixed part of the effects (component :math:`r`). Returns the conditional means ``mu0``,
    ``mu1``, the SD of :math:`a_1` (``sd1``), the regression of :math:`a_0` on :math:`a_1`
    (``k01``) and the conditional SD of :math:`a_0` given :math:`a_1` (``sd0``), from
    :math:`A_i` (module docstring): with :math:`A_i = [[a, b], [b, c]]`,
    :math:`\mathrm{Var}(a_1) = a/|A_i|`, :math:`E(a_0 \mid a_1)` has slope :math:`-b/a` and
    :math:`\mathrm{Var}(a_0 \mid a_1) = 1/a`.
    """
    import pytensor.tensor as pt

    s00, s01, s11 = l00**2, l00 * l10, l10**2 + l11**2  # Sigma = L L^T
    det_sigma = (l00 * l11) ** 2
    inv_s2 = 1.0 / sigma**2
    n, s1, s2 = sums["n"], sums["t"], sums["tt"]
    a = s11 / det_sigma + inv_s2 * n
    b = -s01 / det_sigma + inv_s2 * s1
    c = s00 / det_sigma + inv_s2 * s2
    det_a = a * c - b * b
    r0 = sums["y"] - n * m0 - s1 * m1  # Z_i' r_i
    r1 = sums["ty"] - s1 * m0 - s2 * m1
    mu0 = m0 + inv_s2 * (c * r0 - b * r1) / det_a
    mu1 = m1 + inv_s2 * (a * r1 - b * r0) / det_a
    return {"mu0": mu0, "mu1": mu1, "sd1": pt.sqrt(a / det_a), "k01": -b / a,
            "sd0": 1.0 / pt.sqrt(a)}


@dataclass
class SelectionModel(DropoutModelBase):
    """The latent-status model plus a dropout hazard depending on the patient's effects."""

    dependence: str = "current_change"
    hazard_das28: bool = True
    quadrature_nodes: tuple[int, int] = QUADRATURE_NODES
    _kind = "selection"
    _selection = True

    def _spec(self) -> dict[str, Any]:
        return {**super()._spec(), "dependence": self.dependence, "hazard_das28": self.hazard_das28,
                "quadrature_nodes": list(self.quadrature_nodes)}


def build_selection_model(
    data: pd.DataFrame,
    site: str,
    *,
    dependence: Dependence = "current_change",
    hazard_das28: bool = True,
    priors: TrajectoryPriors | None = None,
    dropout_priors: DropoutPriors | None = None,
    response_month: float = 12,
    quadrature_nodes: tuple[int, int] = QUADRATURE_NODES,
    group: str | None = None,
    levels: tuple[str, ...] | None = None,
) -> SelectionModel:
    r"""Shared-parameter selection model: trajectory LMM + discrete-time dropout hazard.

    See the module docstring for the model, the integration over the patient effects and the
    mapping of :math:`\psi` to the simulator's ``bmd_log_odds``.

    Parameters
    ----------
    data : DataFrame
        See :func:`models.dropout_data.prepare_dropout_data`.
    site : str
        The skeletal site (column ``bmd_<site>``).
    dependence : {"current_change", "slope"}
        What the hazard depends on: the current % change from baseline at the visit, or the
        patient's annual % change.
    hazard_das28 : bool
        Add the last observed DAS28 (minus 3.2) to the hazard.
    priors : TrajectoryPriors, optional
    dropout_priors : DropoutPriors, optional
        Including the prior on :math:`\psi`.
    response_month : float
    quadrature_nodes : (int, int)
        Gauss-Hermite nodes along the slope and along the intercept given the slope (module
        docstring; the default's error is measured there).
    group, levels : optional
        Known groups (module docstring): the column of each patient's level and the levels,
        reference first.

    Returns
    -------
    SelectionModel
    """
    import pymc as pm
    import pytensor.tensor as pt

    if dependence not in DEPENDENCES:
        raise ValueError(f"dependence must be one of {DEPENDENCES}, got {dependence!r}")
    priors = priors if priors is not None else TrajectoryPriors()
    dpriors = dropout_priors if dropout_priors is not None else DropoutPriors()
    d = prepare_dropout_data(data, site, response_month=response_month, group=group, levels=levels)
    if hazard_das28 and not d.has_das28:
        raise ValueError("hazard_das28 needs a baseline DAS28-CRP for every patient; use hazard_das28=False")
    arrays = dropout_data_arrays(d, priors, dpriors, selection=True)
    if not hazard_das28:
        del arrays["risk_das28_w"]  # no DAS28 term: no container for it
    nodes = tuple(int(k) for k in quadrature_nodes)
    if len(nodes) != 2 or min(nodes) < 1:
        raise ValueError(f"quadrature_nodes must be two positive integers, got {quadrature_nodes!r}")
    e1, w1 = _gauss_hermite(nodes[0])
    e0, w0 = _gauss_hermite(nodes[1])
    # flattened (slope node, intercept node) grid: K = K1 * K0 points
    e1k, e0k = np.repeat(e1, nodes[1]), np.tile(e0, nodes[0])
    log_w = np.log(np.repeat(w1, nodes[1]) * np.tile(w0, nodes[0]))
    with pm.Model(coords=dropout_coords(d, selection=True)) as m:
        db = dropout_containers(arrays, selection=True)
        n = db["undefined"].shape[0]
        dps = db["dps"]
        if d.latent:
            status_ll, logit_pi = status_regression(dps, arrays)
        k = len(d.levels)
        c = common_parameters(db["ps"], 2 if d.latent else k)
        beta, t, pidx, y = c["beta"], db["t"], db["pidx"], db["y_std"]
        l00, l10, l11, sigma = c["l00"], c["l10"], c["l11"], c["sigma"]
        y_loc, y_scale = db["y_loc"], db["y_scale"]

        psi = pm.Normal("psi", dps[0], dps[1])
        alpha = pm.Normal("alpha", dps[2], dps[3], dims="visit")
        mask, ev = db["risk_mask"], db["risk_event_w"]
        eta0 = alpha[None, :] * pt.ones_like(mask)  # (patient, visit)
        if hazard_das28:
            beta_das = pm.Normal("beta_das28", 0.0, dps[4])
            eta0 = eta0 + beta_das * db["risk_das28_w"]
        # psi times the patient's annual % change gives the logit term, per visit
        scale_v = psi * (db["visit_t"] if dependence == "current_change" else pt.ones_like(db["visit_t"]))
        sums = {"n": _per_patient(pt.ones_like(t), pidx, n), "t": _per_patient(t, pidx, n),
                "tt": _per_patient(t * t, pidx, n), "y": _per_patient(y, pidx, n),
                "ty": _per_patient(t * y, pidx, n)}
        lps = []
        if d.latent:
            means = [(beta[0] + beta[2] * r, beta[1] + beta[3] * r) for r in (0.0, 1.0)]
        else:
            g0, g1 = group_means(beta, k)
            means = [(g0[db["group_idx"]], g1[db["group_idx"]]) if k > 1 else (g0[0], g1[0])]  # per patient
        for m0, m1 in means:
            m0_row, m1_row = (m0, m1) if d.latent or k == 1 else (m0[pidx], m1[pidx])
            lp_y = marginal_loglik_per_patient(y - m0_row - m1_row * t, t, pidx, n, l00, l10, l11, sigma)
            cond = _effects_conditional(sums, m0, m1, l00, l10, l11, sigma)
            # the effects at the nodes, (patient, node)
            a1 = cond["mu1"][:, None] + cond["sd1"][:, None] * e1k[None, :]
            a0 = (cond["mu0"][:, None] + (cond["k01"] * cond["sd1"])[:, None] * e1k[None, :]
                  + cond["sd0"][:, None] * e0k[None, :])
            pct_slope = 100.0 * y_scale * a1 / (y_loc + y_scale * a0)  # annual % change
            eta = eta0[:, :, None] + scale_v[None, :, None] * pct_slope[:, None, :]  # (patient, visit, node)
            # log h = log sigmoid(eta) at the dropout visit, log(1 - h) = log sigmoid(eta) - eta
            # before it: one softplus per element
            ll = mask[:, :, None] * (log_sigmoid(eta) - (1.0 - ev[:, :, None]) * eta)
            lp_d = pm.math.logsumexp(ll.sum(axis=1) + log_w[None, :], axis=1)
            lps.append(lp_y + lp_d)
        if d.latent:
            pm.Potential("status_regression", status_ll)
            pm.Potential("joint_mixture", status_mixture(lps[0], lps[1], logit_pi))
            report_original_scale(beta, c["tau"], c["rho"], sigma)
        else:
            pm.Potential("joint", lps[0].sum())
            report_groups(beta, c["tau"], c["rho"], sigma, k)
    return SelectionModel(
        pymc_model=m, site=site, priors=priors, dropout_priors=dpriors, prepared=d,
        response_month=response_month, data_values=arrays, dependence=dependence,
        hazard_das28=hazard_das28, quadrature_nodes=nodes, group_column=group,
    )
