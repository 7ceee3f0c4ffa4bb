r"""The trajectory LMM with latent responder status for patients whose status is undefined.

The model extends the trajectory LMM of :mod:`models.trajectory` (one skeletal site, time
:math:`t` in years, outcome centred and scaled internally, priors
:class:`~models.trajectory.TrajectoryPriors` on the data's scale) for patient :math:`i` with
responder status :math:`r_i`:

.. math::

    y_{ij} = a_{0i} + a_{1i} t_{ij} + e_{ij}, \quad e_{ij} \sim N(0, \sigma), \qquad
    a_{0i} = b_0 + b_2 r_i + u_{0i}, \quad a_{1i} = b_1 + b_3 r_i + u_{1i}, \qquad
    u_i \sim \mathrm{MVN}(0, \Sigma).

Latent responder status
-----------------------
Responder status is defined from the DAS28 at the response month (12), so a patient who drops
out before it has an *undefined* status. Instead of excluding such patients, their status is a
latent Bernoulli variable whose probability depends on the disease-activity trajectory observed
before dropout. With :math:`m_i` the patient's last observed DAS28 month before the response
month (pattern :math:`m_i = 0` when only the baseline was observed) and
:math:`\Delta_i = \mathrm{DAS28}_i(m_i) - \mathrm{DAS28}_i(0)`,

.. math::

    \operatorname{logit} \pi_i = \kappa_{0,m_i} + \kappa_{1,m_i} \Delta_i, \qquad
    r_i \sim \mathrm{Bernoulli}(\pi_i),

where :math:`(\kappa_{0,m}, \kappa_{1,m})` is a logistic regression of the *defined* patients'
status on their own :math:`\Delta` at month :math:`m`, one regression per pattern (for
:math:`m = 0` only the intercept, the prevalence, is used). The assumption is that status given
the early trajectory is the same in dropouts and completers. The discrete :math:`r_i` is summed
out so that NUTS can sample,

.. math::

    p(y_i, \dots \mid \theta) = \sum_{r \in \{0,1\}} \pi_i^r (1 - \pi_i)^{1-r}\,
        p(y_i, \dots \mid r, \theta)
    \quad (\text{a } \operatorname{logsumexp} \text{ of the two components}),

and the posterior membership probability
:math:`P(r_i = 1 \mid y, \theta) = \pi_i p_{i}(1) / \sum_r \pi_i^r (1-\pi_i)^{1-r} p_{i}(r)`
is reported per draw (``p_responder``; for patients with a defined status it is that status).
Each undefined patient contributes to both groups' trajectories with these weights.

:func:`build_latent_status_model` integrates the random effects out analytically (the
trajectory model's ``"marginal"`` form, which mixes best), per component.

Reported quantities (original scale) are those of :mod:`models.trajectory` (``b``,
``sd_patient``, ``corr_patient``, ``sigma``, ``baseline_mean``, ``change_end``,
``pct_change_end``, ``diff_change_end``, ``diff_pct_change_end``) plus ``p_responder``
(dim ``patient``) and ``kappa`` (dims ``pattern, kcoef``).

Known groups
------------
With known groups (:func:`models.dropout_data.prepare_dropout_data` with ``group=``: the arms of a
trial, the doses of a dose study, a single arm) nothing is latent: patient :math:`i` of group
:math:`g_i \in \{0, \dots, K-1\}` (the reference 0) has

.. math::

    a_{0i} = b_0 + b_{0 g_i} + u_{0i}, \quad a_{1i} = b_1 + b_{1 g_i} + u_{1i}, \qquad
    b_{00} = b_{10} = 0,

(``b`` = intercept, time, then ``<level>, time:<level>`` for every other level,
:func:`models.dropout_data.group_coef_names`; priors: the intercept's and time's scales of
:class:`~models.trajectory.TrajectoryPriors` for :math:`b_0, b_1`, the responder terms' for every
group's :math:`b_{0g}, b_{1g}`), and the model is the trajectory LMM of the :math:`K` groups (the MAR
reference of the selection model). With :math:`K \ne 2` the reported quantities are ``b``,
``sd_patient``, ``corr_patient`` and ``sigma`` (each group's change to any month follows from ``b``);
with :math:`K = 2` those of :mod:`models.trajectory`.

The pieces shared with the selection model (:mod:`models.dropout_selection`, which adds a
dropout hazard to this model) are public here: :func:`dropout_containers`,
:func:`common_parameters`, :func:`status_regression`, :func:`status_mixture`,
:func:`report_original_scale`, :func:`log_sigmoid` and the model class
:class:`DropoutModelBase`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.dropout_data import (
    DropoutData,
    DropoutPriors,
    dropout_coords,
    dropout_data_arrays,
    prepare_dropout_data,
)
from models.marginal import (
    lmm_parameters,
    marginal_loglik_per_patient,
    reported_deterministics,
)
from models.trajectory import TrajectoryPriors

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "DropoutModelBase",
    "LatentStatusModel",
    "build_latent_status_model",
    "common_parameters",
    "dropout_containers",
    "group_means",
    "log_sigmoid",
    "report_groups",
    "report_original_scale",
    "status_mixture",
    "status_regression",
]

_MODEL_VERSION = 2  # 2: effects integrated out of the selection model (was explicit)

_TRAJECTORY_REPORTED = (
    "b",
    "sd_patient",
    "corr_patient",
    "sigma",
    "baseline_mean",
    "change_end",
    "pct_change_end",
    "diff_change_end",
    "diff_pct_change_end",
)


def log_sigmoid(x: Any) -> Any:
    r""":math:`\log \sigma(x) = -\operatorname{softplus}(-x)`, elementwise."""
    import pytensor.tensor as pt

    return -pt.softplus(-x)


def common_parameters(ps: Any, n_groups: int = 2) -> dict[str, Any]:
    """The LMM's fixed effects, covariance factor and residual SD (scaled units), as in
    models.trajectory (:func:`models.marginal.lmm_parameters`); with ``n_groups`` other than 2 the
    fixed effects are intercept, time and one (level, time:level) pair per non-reference group
    (module docstring, *Known groups*), the rest as there."""
    import pymc as pm
    import pytensor.tensor as pt

    if n_groups == 2:
        c = lmm_parameters(ps)
    else:
        scales = pt.concatenate([ps[:2], pt.tile(ps[2:4], n_groups - 1)]) if n_groups > 1 else ps[:2]
        beta = pm.Normal("beta_std", mu=0.0, sigma=scales, dims="coef")
        tau = pm.HalfNormal("tau_std", sigma=ps[5:7], dims="effect")
        w = pm.Beta("corr_beta", alpha=ps[8], beta=ps[8])
        rho = 2.0 * w - 1.0
        c = {"beta": beta, "tau": tau, "rho": rho, "l00": tau[0], "l10": tau[1] * rho,
             "l11": tau[1] * pt.sqrt(1.0 - rho**2)}
    c["sigma"] = pm.HalfNormal("sigma_std", sigma=ps[7])
    return c


def group_means(beta: Any, n_groups: int) -> tuple[Any, Any]:
    r"""Per group, the mean intercept and slope (scaled units): :math:`b_0 + b_{0g}` and
    :math:`b_1 + b_{1g}` with :math:`b_{00} = b_{10} = 0` (vectors of length ``n_groups``)."""
    import pytensor.tensor as pt

    zero = pt.zeros(1)
    shifts0 = pt.concatenate([zero, beta[2::2]]) if n_groups > 1 else zero
    shifts1 = pt.concatenate([zero, beta[3::2]]) if n_groups > 1 else zero
    return beta[0] + shifts0, beta[1] + shifts1


def report_groups(beta: Any, tau: Any, rho: Any, sigma_std: Any, n_groups: int) -> None:
    """Original-scale ``b``, ``sd_patient``, ``corr_patient`` and ``sigma`` for any number of groups
    (:func:`report_original_scale`, the trajectory model's full set, for two)."""
    import pymc as pm
    import pytensor.tensor as pt

    m = pm.modelcontext(None)
    if n_groups == 2:
        report_original_scale(beta, tau, rho, sigma_std)
        return
    y_loc, y_scale = m["y_loc"], m["y_scale"]
    pm.Deterministic("b", pt.concatenate([(y_loc + y_scale * beta[0])[None], y_scale * beta[1:]]), dims="coef")
    pm.Deterministic("sd_patient", y_scale * tau, dims="effect")
    pm.Deterministic("corr_patient", rho)
    pm.Deterministic("sigma", y_scale * sigma_std)


def status_regression(dps: Any, arrays: dict[str, np.ndarray]) -> tuple[Any, Any]:
    r"""Status regressions: their log-likelihood over defined patients and each patient's logit pi.

    With :math:`\kappa_{\cdot,m} \sim N(0, \text{kappa\_sd})` (``kappa``, dims ``pattern,
    kcoef``), :math:`\eta_{im} = \kappa_{0,m} + \kappa_{1,m} \Delta_{im}` and
    :math:`M_{im} = 1` where defined patient :math:`i`'s change at pattern month :math:`m`
    enters (``status_mask``), returns

    .. math::

        \sum_{i,m} M_{im} \bigl(r_i \log\sigma(\eta_{im}) + (1 - r_i)\log\sigma(-\eta_{im})\bigr)
        \quad\text{and}\quad
        \operatorname{logit}\pi_i = \kappa_{0,m_i} + \kappa_{1,m_i} \Delta_i .
    """
    import pymc as pm
    import pytensor.tensor as pt

    kappa = pm.Normal("kappa", 0.0, dps[5], dims=("pattern", "kcoef"))
    delta_at = pm.Data("delta_at", arrays["delta_at"], dims=("patient", "pattern"))
    mask = pm.Data("status_mask", arrays["status_mask"], dims=("patient", "pattern"))
    status = pm.Data("status", arrays["status"], dims="patient")
    pidx = pm.Data("pattern_idx", arrays["pattern_idx"], dims="patient")
    delta = pm.Data("delta", arrays["delta"], dims="patient")
    eta = kappa[None, :, 0] + kappa[None, :, 1] * delta_at
    ll = pt.sum(mask * (status[:, None] * log_sigmoid(eta) + (1.0 - status[:, None])
                        * log_sigmoid(-eta)))
    logit_pi = kappa[pidx, 0] + kappa[pidx, 1] * delta
    return ll, logit_pi


def status_mixture(lp0: Any, lp1: Any, logit_pi: Any) -> Any:
    r"""Log-likelihood over patients: the status' component when defined, else the mixture.

    With the components :math:`\ell_i(r)` (``lp0``, ``lp1``) and :math:`\pi_i`
    (``logit_pi``), patient :math:`i` contributes :math:`\ell_i(r_i)` when its status is
    defined and :math:`\log\bigl((1 - \pi_i) e^{\ell_i(0)} + \pi_i e^{\ell_i(1)}\bigr)`
    otherwise. Adds ``p_responder`` :math:`= \sigma(\operatorname{logit}\pi_i + \ell_i(1)
    - \ell_i(0))` (the status itself where defined).
    """
    import pymc as pm
    import pytensor.tensor as pt

    m = pm.modelcontext(None)
    status, undefined = m["status"], m["undefined"]
    mix = pt.logaddexp(log_sigmoid(-logit_pi) + lp0, log_sigmoid(logit_pi) + lp1)
    known = status * lp1 + (1.0 - status) * lp0
    post1 = pm.math.sigmoid(logit_pi + lp1 - lp0)
    pm.Deterministic("p_responder", undefined * post1 + (1.0 - undefined) * status, dims="patient")
    return pt.sum(undefined * mix + (1.0 - undefined) * known)


def report_original_scale(beta: Any, tau: Any, rho: Any, sigma_std: Any) -> None:
    """Original-scale deterministics, as in models.trajectory."""
    import pymc as pm

    m = pm.modelcontext(None)
    reported_deterministics(beta, tau, rho, sigma_std, m["y_loc"], m["y_scale"])


@dataclass
class DropoutModelBase:
    """What the latent-status and selection models share: specification, data swap, protocol of
    :func:`analysis.engine.sampling.sample` (``structure_key``, ``diagnostic_vars``,
    ``describe``, ``set_data``, ``postprocess``)."""

    pymc_model: Any
    site: str
    priors: TrajectoryPriors
    dropout_priors: DropoutPriors
    prepared: DropoutData
    response_month: float
    data_values: dict[str, np.ndarray] = field(default_factory=dict)
    trace_vars: list[str] | None = None
    group_column: str | None = None

    _kind = "base"
    _selection = False

    def _spec(self) -> dict[str, Any]:
        return {"model": f"rajak.dropout.{self._kind}", "version": _MODEL_VERSION}

    @property
    def structure_key(self) -> str:
        spec = self._spec()
        spec["patterns"] = [float(m) for m in self.prepared.patterns]
        if not self.prepared.latent:
            spec["groups"] = list(self.prepared.levels)
            spec["das28"] = bool(self.prepared.has_das28)
        if self._selection:
            spec["visits"] = [float(m) for m in self.prepared.visit_months]
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def diagnostic_vars(self) -> list[str]:
        """Reported parameters and estimands (``p_responder`` is constant for defined patients)."""
        extra = ["kappa", "psi", "alpha", "beta_das28"]
        names = set(self.pymc_model.named_vars)
        return [v for v in (*_TRAJECTORY_REPORTED, *extra) if v in names]

    def describe(self) -> dict[str, Any]:
        d = self.prepared
        return {
            **self._spec(),
            "site": self.site,
            "response_month": self.response_month,
            "priors": asdict(self.priors),
            "dropout_priors": asdict(self.dropout_priors),
            "n_obs": d.n_obs,
            "n_patients": d.n_patients,
            "n_undefined": int(d.undefined.sum()),
            "groups": list(d.levels),
            "latent_status": bool(d.latent),
            "n_dropouts": int(np.isfinite(d.dropout_month).sum()),
            "y_loc": d.y_loc,
            "y_scale": d.y_scale,
        }

    def set_data(
        self,
        data: pd.DataFrame | None = None,
        priors: TrajectoryPriors | None = None,
        dropout_priors: DropoutPriors | None = None,
    ) -> None:
        """Swap in new data and/or priors without rebuilding the graph.

        The schedule (patterns and visits) must match the built model's.
        """
        d = (prepare_dropout_data(data, self.site, response_month=self.response_month, group=self.group_column,
                                  levels=None if self.group_column is None else self.prepared.levels)
             if data is not None else self.prepared)
        if not np.array_equal(d.patterns, self.prepared.patterns) or (
            self._selection and not np.array_equal(d.visit_months, self.prepared.visit_months)
        ):
            raise ValueError("the new data's visit schedule differs from the model's; rebuild it")
        priors = priors if priors is not None else self.priors
        dpriors = dropout_priors if dropout_priors is not None else self.dropout_priors
        arrays = {k: v for k, v in dropout_data_arrays(d, priors, dpriors, self._selection).items()
                  if k in self.data_values}  # the containers the model has
        m = self.pymc_model
        m.set_dim("obs", d.n_obs, coord_values=np.arange(d.n_obs))
        m.set_dim("patient", d.n_patients, coord_values=d.patient_ids)
        for name, value in arrays.items():
            m.set_data(name, value)
        self.prepared, self.priors, self.dropout_priors = d, priors, dpriors
        self.data_values = arrays

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        """Nothing to add: every reported quantity is a deterministic of the model."""
        return dt


@dataclass
class LatentStatusModel(DropoutModelBase):
    """The MAR trajectory model with latent status for undefined patients (marginal effects)."""

    _kind = "latent_status"
    _selection = False


def dropout_containers(arrays: dict[str, np.ndarray], selection: bool) -> dict[str, Any]:
    """``pm.Data`` containers of the BMD rows, the status indicator, the priors and (with
    ``selection``) the risk sets, in a model context; the tensors by short name."""
    import pymc as pm

    out = {
        **({"group_idx": pm.Data("group_idx", arrays["group_idx"], dims="patient")} if "group_idx" in arrays
           else {}),
        "y_std": pm.Data("y_std", arrays["y_std"], dims="obs"),
        "t": pm.Data("t", arrays["t"], dims="obs"),
        "pidx": pm.Data("patient_idx", arrays["patient_idx"], dims="obs"),
        "undefined": pm.Data("undefined", arrays["undefined"], dims="patient"),
        "y_loc": pm.Data("y_loc", arrays["y_loc"]),
        "y_scale": pm.Data("y_scale", arrays["y_scale"]),
        "ps": pm.Data("prior", arrays["prior"], dims="prior_field"),
        **({"dps": pm.Data("dropout_prior", arrays["dropout_prior"], dims="dropout_prior_field")}
           if "dropout_prior" in arrays else {}),
    }
    if selection:
        for name in ("risk_mask", "risk_event_w", "risk_das28_w"):
            if name in arrays:
                out[name] = pm.Data(name, arrays[name], dims=("patient", "visit"))
        out["visit_t"] = pm.Data("visit_t", arrays["visit_t"], dims="visit")
    return out


def build_latent_status_model(
    data: pd.DataFrame,
    site: str,
    *,
    priors: TrajectoryPriors | None = None,
    dropout_priors: DropoutPriors | None = None,
    response_month: float = 12,
    group: str | None = None,
    levels: tuple[str, ...] | None = None,
) -> LatentStatusModel:
    r"""The trajectory LMM with undefined responder status as a latent, summed-out variable.

    Random effects are integrated out; patient :math:`i`'s component :math:`r` is
    :math:`\log \mathrm{MVN}(y_i;\ X_i(r) b,\ \sigma^2 I + Z_i \Sigma Z_i^\top)` and undefined
    patients mix the two with :math:`\pi_i` (see the module docstring). With known groups
    (``group``, ``levels``) nothing is latent: the :math:`K`-group LMM (*Known groups*).

    Parameters
    ----------
    data : DataFrame
        See :func:`models.dropout_data.prepare_dropout_data`.
    site : str
        The skeletal site (column ``bmd_<site>``).
    priors : TrajectoryPriors, optional
    dropout_priors : DropoutPriors, optional
        Only ``kappa_sd`` is used.
    response_month : float
    group, levels : optional
        Known groups: the column of each patient's level and the levels, reference first.

    Returns
    -------
    LatentStatusModel
    """
    import pymc as pm

    priors = priors if priors is not None else TrajectoryPriors()
    dpriors = dropout_priors if dropout_priors is not None else DropoutPriors()
    d = prepare_dropout_data(data, site, response_month=response_month, group=group, levels=levels)
    arrays = dropout_data_arrays(d, priors, dpriors, selection=False)
    with pm.Model(coords=dropout_coords(d, selection=False)) as m:
        db = dropout_containers(arrays, selection=False)
        n = db["undefined"].shape[0]
        if not d.latent:
            k = len(d.levels)
            c = common_parameters(db["ps"], k)
            a0, a1 = group_means(c["beta"], k)
            pidx = db["pidx"]
            if k > 1:
                mu = a0[db["group_idx"]][pidx] + a1[db["group_idx"]][pidx] * db["t"]
            else:
                mu = a0[0] + a1[0] * db["t"]
            lp = marginal_loglik_per_patient(db["y_std"] - mu, db["t"], pidx, n, c["l00"], c["l10"], c["l11"],
                                             c["sigma"])
            pm.Potential("y_marginal", lp.sum())
            report_groups(c["beta"], c["tau"], c["rho"], c["sigma"], k)
        else:
            status_ll, logit_pi = status_regression(db["dps"], arrays)
            c = common_parameters(db["ps"])
            beta, t, pidx = c["beta"], db["t"], db["pidx"]
            lps = []
            for r in (0.0, 1.0):
                mu = beta[0] + beta[2] * r + (beta[1] + beta[3] * r) * t
                lps.append(marginal_loglik_per_patient(
                    db["y_std"] - mu, t, pidx, n, c["l00"], c["l10"], c["l11"], c["sigma"]))
            pm.Potential("status_regression", status_ll)
            pm.Potential("y_marginal_mixture", status_mixture(lps[0], lps[1], logit_pi))
            report_original_scale(beta, c["tau"], c["rho"], c["sigma"])
    return LatentStatusModel(
        pymc_model=m, site=site, priors=priors, dropout_priors=dpriors, prepared=d,
        response_month=response_month, data_values=arrays, group_column=group,
    )
