r"""Disease activity as a predictor of the BMD slope: does bone follow disease control, or is there
a responder effect beyond it?

The model
---------
For patient :math:`i` at visit :math:`j` (time :math:`t_{ij}` in years, responder indicator
:math:`r_i`, covariates :math:`x_{ij}`), let :math:`I_i(s) = \mathrm{DAS}_i(0) - \mathrm{DAS}_i(s)`
be the patient's improvement of disease activity (DAS28-CRP units, positive = better) at time
:math:`s`. Disease activity enters the *instantaneous* BMD slope,

.. math::

    \frac{d\,\mathrm{bmd}_i}{ds} = b_1 + u_{1i} + b_3 r_i + b_a\,\bigl(I_i(s) - \bar I\bigr),

so that

.. math::

    \mathrm{bmd}_{ij} = (b_0 + u_{0i}) + (b_1 + u_{1i})\, t_{ij} + b_2 r_i + b_3 r_i t_{ij}
        + b_a\, a_{ij} + x_{ij}^\top\gamma + e_{ij},\qquad
    a_{ij} = \int_0^{t_{ij}} I_i(s)\,ds - \bar I\, t_{ij},

with the random effects, priors and likelihood of :mod:`models.trajectory` (normal likelihood,
random effects integrated out analytically: the ``"marginal"`` parameterisation, the only one
that passed the convergence verdict on twin-like data) and
:math:`b_a \sim N(0, \text{activity\_slope\_sd})` (g/cm^2/yr per DAS28 unit of improvement).

The exposure :math:`a_{ij}` is computed in :mod:`models.activity_exposure`
(:func:`prepare_activity_data`, :class:`ActivityData`; re-exported here), in one of the versions
of :math:`I_i(s)` given by ``activity=``: ``"cumulative"`` (time-varying, the default:
:math:`I_i` linear between the patient's observed DAS28-CRP visits and carried forward after the
last one), ``"mean_improvement"`` (:math:`I_i(s) \equiv \bar I_i`, the patient's mean
improvement, so :math:`a_{ij} = (\bar I_i - \bar I)\, t_{ij}`: a patient-level modifier of the
slope) or ``"none"`` (:math:`b_a = 0`: the trajectory model on the same rows, the reference for
the comparison). With :math:`A_i` patient :math:`i`'s 12-month activity exposure and
:math:`\bar I` its mean over the patients with a post-baseline DAS28 (the centring constant),
:math:`b_1` and :math:`b_1 + b_3` are the groups' annual changes *at the cohort's mean
improvement*, and :math:`b_3` is the responder effect at equal disease control.

Reported on the original scale (in addition to those of :mod:`models.trajectory`, except ``u``
which :meth:`ActivityModel.postprocess` adds):

- ``b`` (``coef`` = intercept, time, responder, time:responder): as in the trajectory model, the
  slopes at the cohort's mean improvement;
- ``b_activity``: :math:`b_a` in g/cm^2/yr per unit of improvement;
- ``change_end`` (``group``): :math:`b_1 + b_3 g` (at the mean improvement, like ANCOVA-adjusted
  means); ``pct_change_end``: in % of the group's baseline mean;
- ``diff_change_end`` :math:`= b_3` and ``diff_pct_change_end``: the responder difference at equal
  disease control (the *direct* effect; with ``activity="none"`` the total difference);
- ``change_12m_total`` (``group``): :math:`b_1 + b_3 g + b_a (\bar A_g - \bar I)` with
  :math:`\bar A_g` the group's mean exposure (each group at its own disease control), and
  ``pct_change_12m_total``;
- ``diff_change_12m_total`` :math:`= b_3 + b_a (\bar A_1 - \bar A_0)` and
  ``diff_pct_change_12m_total``; ``diff_change_12m_activity`` :math:`= b_a(\bar A_1 - \bar A_0)`,
  the part of the responder difference carried by disease activity.

How to read :math:`b_3` with activity in the model (measurement error in the mediator,
misclassification) is in :mod:`models.activity_comparison`, whose
:func:`~models.activity_comparison.compare_responder_effect` fits the model with and without the
activity term and reports how much of the responder difference :math:`b_3` remains.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.activity_exposure import (
    ACTIVITY_KINDS,
    ActivityData,
    ActivityKind,
    prepare_activity_data,
)
from models.marginal import (
    covariate_term,
    data_containers,
    draw_marginal_effects,
    effects_dataarray,
    lmm_parameters,
    marginal_loglik,
    reported_deterministics,
    standardised_arrays,
    update_model_data,
)
from models.marginal_effects import ON_REQUEST_ATTR, SEED_ATTR, per_patient_eager
from models.trajectory import TrajectoryPriors
from models.trajectory_data import COEF_NAMES, GROUP_NAMES, PreparedData

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [  # with the names re-exported from models.activity_exposure
    "ACTIVITY_KINDS",
    "DEFAULT_ACTIVITY_SLOPE_SD",
    "REPORTED_VARS",
    "ActivityData",
    "ActivityModel",
    "build_activity_model",
    "prepare_activity_data",
]

#: Default prior SD of :math:`b_a` (g/cm^2/yr per DAS28 unit of improvement): ~2.2%/yr at
#: 0.911 g/cm^2, several times the 0.3-0.5%/yr per unit the twin's simulator assumes.
DEFAULT_ACTIVITY_SLOPE_SD = 0.02

_MODEL_VERSION = 1
_PRIOR_FIELDS = (*TrajectoryPriors.FIELDS, "activity_slope_sd")


def _data_arrays(
    ad: ActivityData, priors: TrajectoryPriors, activity_slope_sd: float
) -> dict[str, np.ndarray]:
    """Arrays for every ``pm.Data`` container: the trajectory model's (``prior`` extended by the
    scaled ``activity_slope_sd``) plus, with an activity term, ``activity_x`` :math:`a_{ij}` and
    ``activity_group_dev`` :math:`\bar A_g - \bar I`."""
    prep = ad.prepared
    prior = np.append(priors.to_array(prep.y_scale), activity_slope_sd / prep.y_scale)
    arrays = standardised_arrays(prep, prior)
    if ad.activity != "none":
        arrays["activity_x"] = ad.x_activity
        arrays["activity_group_dev"] = ad.group_exposure - ad.reference
    return arrays


#: Original-scale quantities reported (``gamma`` only with covariates; the activity ones only
#: with an activity term; ``u`` is added by ``postprocess``).
REPORTED_VARS: tuple[str, ...] = (
    "b",
    "b_activity",
    "gamma",
    "sigma",
    "sd_patient",
    "corr_patient",
    "u",
    "baseline_mean",
    "change_end",
    "pct_change_end",
    "diff_change_end",
    "diff_pct_change_end",
    "change_12m_total",
    "pct_change_12m_total",
    "diff_change_12m_total",
    "diff_pct_change_12m_total",
    "diff_change_12m_activity",
)


@dataclass
class ActivityModel:
    """A built activity model, following the protocol of :class:`models.trajectory.TrajectoryModel`.

    Attributes
    ----------
    pymc_model : pymc.Model
    site, activity, activity_column, covariates, priors, activity_slope_sd
        The specification (see :func:`build_activity_model`).
    data : ActivityData
        The data currently in the model.
    data_values : dict of str to ndarray
        Current value of every ``pm.Data`` container, by name.
    trace_vars : None
        Store every variable.
    """

    pymc_model: Any
    site: str
    activity: str
    activity_column: str
    covariates: tuple[str, ...]
    priors: TrajectoryPriors
    activity_slope_sd: float
    data: ActivityData
    data_values: dict[str, np.ndarray] = field(default_factory=dict)
    trace_vars: list[str] | None = None

    @property
    def prepared(self) -> PreparedData:
        return self.data.prepared

    @property
    def structure_key(self) -> str:
        spec = {
            "model": "rajak.activity",
            "version": _MODEL_VERSION,
            "activity": self.activity,
            "covariates": list(self.covariates),
        }  # priors and the activity column's values are data
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def diagnostic_vars(self) -> list[str]:
        names = set(self.pymc_model.named_vars) | {"u"}
        return [v for v in REPORTED_VARS if v in names]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored with fits).

        ``priors`` holds the trajectory priors; ``responder_slope_sd`` is the prior SD of
        ``diff_change_end`` (:math:`b_3`) in every variant, so a Savage-Dickey Bayes factor on
        ``diff_change_end`` stays valid.
        """
        return {
            "model": "activity_lmm",
            "site": self.site,
            "activity": self.activity,
            "activity_column": self.activity_column,
            "likelihood": "normal",
            "parameterisation": "marginal",
            "covariates": list(self.covariates),
            "priors": asdict(self.priors),
            "activity_slope_sd": self.activity_slope_sd,
            "n_obs": self.prepared.n_obs,
            "n_patients": self.prepared.n_patients,
            "y_loc": self.prepared.y_loc,
            "y_scale": self.prepared.y_scale,
            "activity_reference": self.data.reference,
            "activity_group_exposure": self.data.group_exposure.tolist(),
        }

    def set_data(
        self,
        data: pd.DataFrame | None = None,
        priors: TrajectoryPriors | None = None,
        activity_slope_sd: float | None = None,
    ) -> None:
        """Swap in new data and/or priors without rebuilding the graph (any number of rows and
        patients: the marginal model's parameters do not grow with the data)."""
        ad = (
            prepare_activity_data(data, self.site, self.covariates, self.activity,
                                  self.activity_column)
            if data is not None
            else self.data
        )
        priors = priors if priors is not None else self.priors
        sd = _check_sd(activity_slope_sd if activity_slope_sd is not None
                       else self.activity_slope_sd)
        arrays = _data_arrays(ad, priors, sd)
        update_model_data(self.pymc_model, arrays, ad.prepared.n_obs, ad.prepared.patient_ids)
        self.data, self.priors, self.activity_slope_sd, self.data_values = ad, priors, sd, arrays

    def _effects_std(self, post: xr.Dataset, seed: int) -> np.ndarray:
        """Draws of the scaled random effects (chain, draw, patient, 2) from their conditional."""
        arrays = self.data_values
        offset = None
        if "activity_x" in arrays:
            offset = post["b_activity_std"].values[..., None] * arrays["activity_x"]
        return draw_marginal_effects(post, arrays, np.random.default_rng([seed, 7]), offset=offset)

    def patient_effects(self, post: xr.Dataset, seed: int | None = None, dtype: Any = np.float64) -> xr.DataArray:
        """The patient effects ``u`` (chain, draw, patient, effect) on the original scale: the
        posterior's own, or drawn on request as :meth:`postprocess` draws them (same draws for the same
        ``seed``, default the posterior's ``rajak_effects_seed``), stored as ``dtype``."""
        if "u" in post:
            return post["u"].astype(dtype, copy=False)
        seed = int(post.attrs.get(SEED_ATTR, 0)) if seed is None else int(seed)
        u = self._effects_std(post, seed) * float(self.data_values["y_scale"])
        return effects_dataarray(u.astype(dtype, copy=False), self.prepared.patient_ids)

    def log_likelihood(self, post: xr.Dataset, u_std: np.ndarray) -> np.ndarray:
        r"""Pointwise log-likelihood (chain, draw, obs) of each observation on the original scale
        given the patient's effects (as :meth:`TrajectoryModel.log_likelihood`, for PSIS-LOO).
        """
        from scipy import stats

        a = self.data_values
        pidx, t = a["patient_idx"], a["t"]
        beta = post["beta_std"].values
        m0 = beta[..., 0, None] + beta[..., 2, None] * a["group_x"][:, 0]
        m1 = beta[..., 1, None] + beta[..., 3, None] * a["group_x"][:, 0]
        mu = (m0[..., pidx] + u_std[..., pidx, 0]) + (m1[..., pidx] + u_std[..., pidx, 1]) * t
        if "gamma_std" in post:
            mu = mu + post["gamma_std"].values @ a["x_std"].T
        if "activity_x" in a:
            mu = mu + post["b_activity_std"].values[..., None] * a["activity_x"]
        sigma = post["sigma_std"].values[..., None]
        return stats.norm.logpdf(a["y_std"], mu, sigma) - np.log(float(a["y_scale"]))

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        """Add ``u`` (patient, effect; g/cm^2 and g/cm^2/yr) drawn from its exact Gaussian
        conditional given each posterior draw, and the ``log_likelihood`` group (``bmd``).

        As the trajectory LMM (:mod:`models.trajectory_patients`): above
        :data:`models.marginal_effects.EAGER_PATIENT_DRAWS` patients x draws
        (:func:`models.marginal_effects.per_patient_eager`) neither is added, the posterior's
        attributes say so (``rajak_per_patient = "on request"``, ``rajak_effects_seed``) and
        :meth:`patient_effects` draws the same effects on request.
        """
        import xarray as xr

        post = dt["posterior"].to_dataset()
        if not per_patient_eager(self.prepared.n_patients, int(post.sizes["chain"] * post.sizes["draw"])):
            post.attrs.update({ON_REQUEST_ATTR: "on request", SEED_ATTR: int(seed)})
            dt["posterior"] = post
            return dt
        u = self._effects_std(post, seed)
        post["u"] = effects_dataarray(u * float(self.data_values["y_scale"]),
                                      self.prepared.patient_ids)
        dt["posterior"] = post
        ll = self.log_likelihood(post, u)
        dt["log_likelihood"] = xr.Dataset({"bmd": (("chain", "draw", "obs"), ll)})
        return dt


def _check_sd(value: float) -> float:
    """``value`` as a float, or ValueError unless positive and finite."""
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"activity_slope_sd must be a positive finite number, got {value!r}")
    return value


def build_activity_model(
    data: pd.DataFrame,
    site: str,
    priors: TrajectoryPriors | None = None,
    *,
    activity: ActivityKind = "cumulative",
    activity_column: str = "das28_crp",
    covariates: tuple[str, ...] | list[str] = (),
    activity_slope_sd: float = DEFAULT_ACTIVITY_SLOPE_SD,
) -> ActivityModel:
    r"""Build the activity model for one site (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        Long format with a boolean ``responder`` and ``activity_column``.
    site : str
        A site of the study (data column ``bmd_<site>``).
    priors : TrajectoryPriors, optional
        The trajectory priors (e.g. ``models.priors.prior_set(name, site)``); default
        ``TrajectoryPriors()``.
    activity : {"cumulative", "mean_improvement", "none"}
    activity_column : str
        Default ``"das28_crp"``; ``activity_slope_sd`` is per unit of this score.
    covariates : sequence of str
    activity_slope_sd : float
        Prior SD of :math:`b_a`, g/cm^2/yr per unit of improvement.

    Returns
    -------
    ActivityModel
    """
    import pymc as pm

    priors = priors if priors is not None else TrajectoryPriors()
    sd = _check_sd(activity_slope_sd)
    covariates = tuple(covariates)
    ad = prepare_activity_data(data, site, covariates, activity, activity_column)
    prep = ad.prepared
    arrays = _data_arrays(ad, priors, sd)
    coords: dict[str, Any] = {
        "obs": np.arange(prep.n_obs),
        "patient": prep.patient_ids,
        "effect": ["intercept", "slope"],
        "coef": list(COEF_NAMES),
        "group": list(GROUP_NAMES),
        "prior_field": list(_PRIOR_FIELDS),
    }
    if covariates:
        coords["covariate"] = list(covariates)

    with pm.Model(coords=coords) as m:
        db = data_containers(arrays)
        y_std, t, pidx, resp = db["y_std"], db["t"], db["patient_idx"], db["group_x"][:, 0]
        y_scale, ps = db["y_scale"], db["prior"]

        c = lmm_parameters(ps)  # as the trajectory model's
        beta = c["beta"]
        m0 = beta[0] + beta[2] * resp
        m1 = beta[1] + beta[3] * resp
        fixed = m0[pidx] + m1[pidx] * t
        if covariates:
            fixed = fixed + covariate_term(arrays, ps, y_scale)
        if activity != "none":
            ax = pm.Data("activity_x", arrays["activity_x"], dims="obs")
            dev = pm.Data("activity_group_dev", arrays["activity_group_dev"], dims="group")
            b_act_std = pm.Normal("b_activity_std", 0.0, ps[len(TrajectoryPriors.FIELDS)])
            fixed = fixed + b_act_std * ax
        sigma_std = pm.HalfNormal("sigma_std", sigma=ps[7])
        pm.Potential(
            "y_marginal",
            marginal_loglik(y_std - fixed, t, pidx, resp.shape[0], c["l00"], c["l10"], c["l11"],
                            sigma_std),
        )

        # ---- original scale -------------------------------------------------------------
        rep = reported_deterministics(beta, c["tau"], c["rho"], sigma_std, db["y_loc"], y_scale)
        base, change = rep["baseline_mean"], rep["change_end"]
        if activity != "none":
            b_act = pm.Deterministic("b_activity", y_scale * b_act_std)
            total = pm.Deterministic("change_12m_total", change + b_act * dev, dims="group")
            pct_total = pm.Deterministic(
                "pct_change_12m_total", 100.0 * total / base, dims="group"
            )
            pm.Deterministic("diff_change_12m_total", total[1] - total[0])
            pm.Deterministic("diff_pct_change_12m_total", pct_total[1] - pct_total[0])
            pm.Deterministic("diff_change_12m_activity", b_act * (dev[1] - dev[0]))

    return ActivityModel(
        pymc_model=m,
        site=site,
        activity=activity,
        activity_column=activity_column,
        covariates=covariates,
        priors=priors,
        activity_slope_sd=sd,
        data=ad,
        data_values=arrays,
    )
