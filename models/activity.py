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
Two versions of :math:`I_i(s)` (``activity=``):

``"cumulative"`` (time-varying, default)
    :math:`I_i` is linear between the patient's observed DAS28-CRP visits and carried forward
    after the last one, so :math:`\int_0^{t} I_i` is exact by the trapezoid rule over the visits
    up to :math:`t` (a BMD at month 6 uses the DAS28 at months 0, 3, 6 only).
``"mean_improvement"``
    :math:`I_i(s) \equiv \bar I_i`, the mean improvement over the patient's observed
    post-baseline visits (all of them), so :math:`a_{ij} = (\bar I_i - \bar I)\, t_{ij}`: a
    patient-level modifier of the slope.
``"none"``
    :math:`b_a = 0`: the trajectory model on the same rows, the reference for the comparison.

:math:`A_i = \int_0^1 I_i(s)\,ds` (``"cumulative"``; carried forward beyond the last visit) or
:math:`\bar I_i` (``"mean_improvement"``) is patient :math:`i`'s 12-month activity exposure and
:math:`\bar I` its mean over the patients with a post-baseline DAS28 (the centring constant), so
:math:`b_1` and :math:`b_1 + b_3` are the groups' annual changes *at the cohort's mean
improvement*, and :math:`b_3` is the responder effect at equal disease control. Patients with
no post-baseline BMD need no DAS28; a patient with a follow-up BMD but no baseline or no
post-baseline DAS28 is an error.

Reported on the original scale (in addition to those of :mod:`models.trajectory`, except ``u``
which :meth:`ActivityModel.postprocess` adds):

- ``b`` (``coef`` = intercept, time, responder, time:responder): as in the trajectory model, the
  slopes at the cohort's mean improvement;
- ``b_activity``: :math:`b_a` in g/cm^2/yr per unit of improvement;
- ``change_12m`` (``group``): :math:`b_1 + b_3 g` (at the mean improvement, like ANCOVA-adjusted
  means); ``pct_change_12m``: in % of the group's baseline mean;
- ``diff_change_12m`` :math:`= b_3` and ``diff_pct_change_12m``: the responder difference at equal
  disease control (the *direct* effect; with ``activity="none"`` the total difference);
- ``change_12m_total`` (``group``): :math:`b_1 + b_3 g + b_a (\bar A_g - \bar I)` with
  :math:`\bar A_g` the group's mean exposure (each group at its own disease control), and
  ``pct_change_12m_total``;
- ``diff_change_12m_total`` :math:`= b_3 + b_a (\bar A_1 - \bar A_0)` and
  ``diff_pct_change_12m_total``; ``diff_change_12m_activity`` :math:`= b_a(\bar A_1 - \bar A_0)`,
  the part of the responder difference carried by disease activity.

Interpretation
--------------
:math:`b_3` with activity in the model is the responder effect at equal *observed* disease
control. Two things bias it away from the direct effect of the drug, both measured with
:mod:`models.simulate` (``tests/models/test_activity.py``):

- *measurement error in the mediator*: DAS28-CRP is a noisy measure of the true improvement,
  so adjusting for it is incomplete. With the twin's activity parameters (between-patient
  SD of the improvement fraction 0.15), 150 patients and bone that follows the true improvement
  only, 41-89% of the responder difference remained (4 data sets); with a wider spread of
  improvement (SD 0.3, types overlapping) and 200 patients, 12-47% (``"cumulative"``) and
  4-36% (``"mean_improvement"``) remained (8 data sets), against 86-110% under a pure type
  effect;
- *misclassification*: when the responder indicator is itself derived from DAS28 (EULAR
  response), the DAS28 term also absorbs part of a pure type effect (21-79% remained in 4 data
  sets with the twin's parameters).

So a large remaining share is weak evidence for an effect beyond disease control, and a small
one under a derived responder status is weak evidence against it; on the twin's 34 analysable
patients the 95% interval of :math:`b_3` widens 1.5-1.7 times once activity is in the model.

:func:`compare_responder_effect` fits the model with and without the activity term and reports
how much of the responder difference :math:`b_3` remains. ``models`` never imports ``analysis``,
so it takes the sampler as an argument (``analysis.engine.sampling.sample``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import pandas as pd

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
from models.trajectory import (
    COEF_NAMES,
    GROUP_NAMES,
    PreparedData,
    TrajectoryPriors,
    prepare_trajectory_data,
)

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "ACTIVITY_KINDS",
    "ActivityComparison",
    "ActivityData",
    "ActivityModel",
    "build_activity_model",
    "compare_responder_effect",
    "prepare_activity_data",
]

#: Versions of the activity term accepted by :func:`build_activity_model`.
ACTIVITY_KINDS: tuple[str, ...] = ("cumulative", "mean_improvement", "none")
#: Default prior SD of :math:`b_a` (g/cm^2/yr per DAS28 unit of improvement): ~2.2%/yr at
#: 0.911 g/cm^2, several times the 0.3-0.5%/yr per unit the twin's simulator assumes.
DEFAULT_ACTIVITY_SLOPE_SD = 0.02

ActivityKind = Literal["cumulative", "mean_improvement", "none"]

_MODEL_VERSION = 1
_PRIOR_FIELDS = (*TrajectoryPriors.FIELDS, "activity_slope_sd")


@dataclass(frozen=True)
class ActivityData:
    r"""Model arrays for one site plus the activity exposure.

    Attributes
    ----------
    prepared : PreparedData
        As for the trajectory model (rows with an observed outcome).
    activity : str
    exposure : ndarray
        Per row: :math:`\int_0^{t_{ij}} I_i(s) ds` (``"cumulative"``) or
        :math:`\bar I_i t_{ij}` (``"mean_improvement"``), DAS28 units x years; zeros for
        ``"none"``.
    patient_exposure : ndarray
        Per patient: :math:`A_i`, NaN without a post-baseline activity score.
    reference : float
        :math:`\bar I`.
    group_exposure : ndarray, shape (2,)
        :math:`\bar A_g` for non-responders and responders.
    """

    prepared: PreparedData
    activity: str
    exposure: np.ndarray
    patient_exposure: np.ndarray
    reference: float
    group_exposure: np.ndarray

    @property
    def x_activity(self) -> np.ndarray:
        """The centred regressor :math:`a_{ij}`."""
        return self.exposure - self.reference * self.prepared.t_years


def _integral(knots_t: np.ndarray, knots_v: np.ndarray, upto: float) -> float:
    """Integral over [0, upto] of the piecewise-linear interpolant, constant after the last knot."""
    if upto <= 0.0:
        return 0.0
    grid = np.union1d(knots_t[knots_t < upto], [0.0, upto])
    return float(np.trapezoid(np.interp(grid, knots_t, knots_v), grid))


def prepare_activity_data(
    data: pd.DataFrame,
    site: str = "spine",
    covariates: tuple[str, ...] = (),
    activity: ActivityKind = "cumulative",
    activity_column: str = "das28_crp",
) -> ActivityData:
    """Validate long-format data and compute the activity exposure (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit: the trajectory model's columns (``patient_id``, ``month``,
        the site's BMD, a boolean ``responder``, covariates) and ``activity_column`` (rows
        without BMD, e.g. month 3, still contribute their activity score).
    site : {"spine", "femoral_neck"}
    covariates : tuple of str
    activity : {"cumulative", "mean_improvement", "none"}
    activity_column : str
        The activity score; improvement is baseline minus current value.

    Returns
    -------
    ActivityData

    Raises
    ------
    ValueError
        On a bad option, a missing column, or a patient with follow-up BMD but no baseline or no
        post-baseline activity score.
    """
    if activity not in ACTIVITY_KINDS:
        raise ValueError(f"activity must be one of {ACTIVITY_KINDS}, got {activity!r}")
    prep = prepare_trajectory_data(data, site, tuple(covariates))
    n_pat = prep.n_patients
    if activity == "none":
        return ActivityData(prep, activity, np.zeros(prep.n_obs), np.full(n_pat, np.nan), 0.0,
                            np.zeros(2))
    if activity_column not in data.columns:
        raise ValueError(f"data lacks the activity column {activity_column!r}")
    scores = data.loc[data[activity_column].notna() & data["month"].notna(),
                      ["patient_id", "month", activity_column]].copy()
    scores["patient_id"] = scores["patient_id"].astype(str)
    scores = scores.groupby(["patient_id", "month"], as_index=False)[activity_column].mean()
    by_patient = {pid: g.sort_values("month") for pid, g in scores.groupby("patient_id")}

    followed = np.zeros(n_pat, dtype=bool)
    followed[prep.patient_idx[prep.t_years > 0]] = True
    exposure = np.zeros(prep.n_obs)
    patient_exposure = np.full(n_pat, np.nan)
    no_base, no_post = [], []
    for k, pid in enumerate(prep.patient_ids):
        g = by_patient.get(pid)
        months = g["month"].to_numpy(float) if g is not None else np.zeros(0)
        values = g[activity_column].to_numpy(float) if g is not None else np.zeros(0)
        if not np.any(months == 0.0):
            if followed[k]:
                no_base.append(pid)
            continue
        base = values[months == 0.0][0]
        post = months > 0.0
        if not post.any():
            if followed[k]:
                no_post.append(pid)
            continue
        knots_t = np.concatenate([[0.0], months[post] / 12.0])
        knots_v = np.concatenate([[0.0], base - values[post]])
        rows = np.flatnonzero(prep.patient_idx == k)
        if activity == "cumulative":
            patient_exposure[k] = _integral(knots_t, knots_v, 1.0)
            exposure[rows] = [_integral(knots_t, knots_v, t) for t in prep.t_years[rows]]
        else:
            patient_exposure[k] = float(np.mean(knots_v[1:]))
            exposure[rows] = patient_exposure[k] * prep.t_years[rows]
    if no_base:
        raise ValueError(f"{activity_column} at month 0 is missing for patient(s) with follow-up "
                         f"BMD: {', '.join(no_base)}")
    if no_post:
        raise ValueError(f"no post-baseline {activity_column} for patient(s) with follow-up BMD: "
                         f"{', '.join(no_post)}")
    has = ~np.isnan(patient_exposure)
    groups = [has & (prep.responder == g) for g in (0.0, 1.0)]
    if not all(m.any() for m in groups):
        raise ValueError(f"both groups need patients with a post-baseline {activity_column}")
    reference = float(np.mean(patient_exposure[has]))
    group_exposure = np.array([np.mean(patient_exposure[m]) for m in groups])
    return ActivityData(prep, activity, exposure, patient_exposure, reference, group_exposure)


def _data_arrays(
    ad: ActivityData, priors: TrajectoryPriors, activity_slope_sd: float
) -> dict[str, np.ndarray]:
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
    "change_12m",
    "pct_change_12m",
    "diff_change_12m",
    "diff_pct_change_12m",
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
        ``diff_change_12m`` (:math:`b_3`) in every variant, so a Savage-Dickey Bayes factor on
        ``diff_change_12m`` stays valid.
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

    def log_likelihood(self, post: xr.Dataset, u_std: np.ndarray) -> np.ndarray:
        r"""Pointwise log-likelihood (chain, draw, obs) of each observation on the original scale
        given the patient's effects (as :meth:`TrajectoryModel.log_likelihood`, for PSIS-LOO).
        """
        from scipy import stats

        a = self.data_values
        pidx, t = a["patient_idx"], a["t"]
        beta = post["beta_std"].values
        m0 = beta[..., 0, None] + beta[..., 2, None] * a["responder"]
        m1 = beta[..., 1, None] + beta[..., 3, None] * a["responder"]
        mu = (m0[..., pidx] + u_std[..., pidx, 0]) + (m1[..., pidx] + u_std[..., pidx, 1]) * t
        if "gamma_std" in post:
            mu = mu + post["gamma_std"].values @ a["x_std"].T
        if "activity_x" in a:
            mu = mu + post["b_activity_std"].values[..., None] * a["activity_x"]
        sigma = post["sigma_std"].values[..., None]
        return stats.norm.logpdf(a["y_std"], mu, sigma) - np.log(float(a["y_scale"]))

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        """Add ``u`` (patient, effect; g/cm^2 and g/cm^2/yr) drawn from its exact Gaussian
        conditional given each posterior draw, and the ``log_likelihood`` group (``bmd``)."""
        import xarray as xr

        post = dt["posterior"].to_dataset()
        u = self._effects_std(post, seed)
        post["u"] = effects_dataarray(u * float(self.data_values["y_scale"]),
                                      self.prepared.patient_ids)
        dt["posterior"] = post
        ll = self.log_likelihood(post, u)
        dt["log_likelihood"] = xr.Dataset({"bmd": (("chain", "draw", "obs"), ll)})
        return dt


def _check_sd(value: float) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"activity_slope_sd must be a positive finite number, got {value!r}")
    return value


def build_activity_model(
    data: pd.DataFrame,
    site: str = "spine",
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
    site : {"spine", "femoral_neck"}
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
        y_std, t, pidx, resp = db["y_std"], db["t"], db["patient_idx"], db["responder"]
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
        base, change = rep["baseline_mean"], rep["change_12m"]
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


# ---------------------------------------------------------------------------------------------
# with vs without the activity term
# ---------------------------------------------------------------------------------------------


@dataclass
class ActivityComparison:
    """The responder effect with and without disease activity in the model.

    Attributes
    ----------
    models : dict
        ``{"without": ActivityModel, "with": ActivityModel}``.
    fits : dict
        The matching fits (whatever ``sample`` returned; ``.posterior`` is a DataTree).
    table : DataFrame
        One row per model and quantity: ``model, quantity, unit, median, eti_low, eti_high,
        p_gt_0, diagnostics``.
    remaining : float
        Posterior median of :math:`b_3` with activity over that without: the share of the
        responder difference that disease activity does not account for.
    remaining_pct : float
        The same for ``diff_pct_change_12m``.
    text : str
    """

    models: dict[str, ActivityModel]
    fits: dict[str, Any]
    table: pd.DataFrame
    remaining: float
    remaining_pct: float
    text: str


_QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("diff_change_12m", "responder x time (b3)", "g/cm^2/yr"),
    ("diff_pct_change_12m", "responder difference in 12-month change", "percentage points"),
    ("diff_change_12m_total", "total responder difference (own disease control)", "g/cm^2/yr"),
    ("diff_change_12m_activity", "part carried by disease activity", "g/cm^2/yr"),
    ("b_activity", "slope per unit of activity improvement (b_a)", "g/cm^2/yr per unit"),
)


def _summary(fit: Any, label: str) -> list[dict[str, Any]]:
    post = fit.posterior["posterior"]
    diag = getattr(fit, "diagnostics", None)
    verdict = "" if diag is None else ("pass" if diag.passed else "FAIL: " + ", ".join(
        diag.failed_checks))
    rows = []
    for var, quantity, unit in _QUANTITIES:
        if var not in post:
            continue
        x = np.asarray(post[var].values, dtype=float).ravel()
        lo, med, hi = np.quantile(x, [0.025, 0.5, 0.975])
        rows.append({"model": label, "variable": var, "quantity": quantity, "unit": unit,
                     "median": med, "eti_low": lo, "eti_high": hi,
                     "p_gt_0": float(np.mean(x > 0)), "diagnostics": verdict})
    return rows


def compare_responder_effect(
    data: pd.DataFrame,
    site: str = "spine",
    *,
    sample: Callable[..., Any],
    activity: ActivityKind = "cumulative",
    activity_column: str = "das28_crp",
    priors: TrajectoryPriors | None = None,
    covariates: tuple[str, ...] | list[str] = (),
    activity_slope_sd: float = DEFAULT_ACTIVITY_SLOPE_SD,
    seed: int = 0,
    **sample_kwargs: Any,
) -> ActivityComparison:
    r"""Fit the model without and with the activity term and compare the responder effect.

    Both models see the same rows. The share of the responder difference that remains once
    disease activity is in the model is

    .. math::

        \rho = \frac{\operatorname{median}(b_3 \mid \text{with activity})}
                    {\operatorname{median}(b_3 \mid \text{without})}

    (and the same for ``diff_pct_change_12m``): near 1 when the responder effect is beyond
    disease control, near 0 when bone follows disease control. The with-activity fit also
    decomposes its total responder difference into ``diff_change_12m`` (direct) and
    ``diff_change_12m_activity``.

    Parameters
    ----------
    data : DataFrame
        As for :func:`build_activity_model`.
    site : {"spine", "femoral_neck"}
    sample : callable
        ``sample(model, seed=..., **sample_kwargs)`` returning an object with ``.posterior``
        (a DataTree) and ``.diagnostics``: pass ``analysis.engine.sampling.sample``.
    activity : {"cumulative", "mean_improvement"}
    activity_column, priors, covariates, activity_slope_sd
        See :func:`build_activity_model`.
    seed : int
        Passed to both fits.
    **sample_kwargs
        E.g. ``draws``, ``tune``, ``chains``, ``cores``.

    Returns
    -------
    ActivityComparison
    """
    if activity == "none" or activity not in ACTIVITY_KINDS:
        raise ValueError(f"activity must be 'cumulative' or 'mean_improvement', got {activity!r}")
    if not callable(sample):
        raise ValueError("sample must be a callable such as analysis.engine.sampling.sample")
    common = dict(priors=priors, activity_column=activity_column, covariates=covariates,
                  activity_slope_sd=activity_slope_sd)
    with_model = build_activity_model(data, site, activity=activity, **common)
    without_model = build_activity_model(data, site, activity="none", **common)
    models = {"without": without_model, "with": with_model}
    fits = {k: sample(mdl, seed=seed, **sample_kwargs) for k, mdl in models.items()}
    rows = _summary(fits["without"], "without activity") + _summary(fits["with"], "with activity")
    table = pd.DataFrame(rows)

    def draws(k: str, var: str) -> np.ndarray:
        return np.asarray(fits[k].posterior["posterior"][var].values, dtype=float).ravel()

    def med(k: str, var: str) -> float:
        return float(np.median(draws(k, var)))

    def eti(k: str, var: str, fmt: str) -> str:
        lo, hi = np.quantile(draws(k, var), [0.025, 0.975])
        return f"95% CrI {lo:{fmt}} to {hi:{fmt}}"

    def ratio(var: str) -> float:
        den = med("without", var)
        return med("with", var) / den if den != 0 else float("nan")

    remaining, remaining_pct = ratio("diff_change_12m"), ratio("diff_pct_change_12m")
    lo, hi = np.quantile(draws("without", "diff_change_12m"), [0.025, 0.975])
    clear = lo > 0 or hi < 0
    via = med("with", "diff_change_12m_activity")
    text = (
        f"{site}: responder x time difference {med('without', 'diff_change_12m'):+.4f} g/cm^2/yr "
        f"({med('without', 'diff_pct_change_12m'):+.2f} percentage points, "
        f"{eti('without', 'diff_pct_change_12m', '+.2f')}) without disease activity; "
        f"{med('with', 'diff_change_12m'):+.4f} g/cm^2/yr "
        f"({med('with', 'diff_pct_change_12m'):+.2f} points, "
        f"{eti('with', 'diff_pct_change_12m', '+.2f')}) with {activity_column} improvement "
        f"({activity}) in the model: {100 * remaining:.0f}% of the difference remains "
        f"(ratio of posterior medians). Disease activity carries {via:+.4f} g/cm^2/yr of the "
        f"total {med('with', 'diff_change_12m_total'):+.4f}; slope per unit of improvement "
        f"{med('with', 'b_activity'):+.4f} g/cm^2/yr ({eti('with', 'b_activity', '+.4f')})."
        + ("" if clear else " Without activity the responder difference is not clearly "
           "non-zero, so the remaining share is not interpretable.")
    )
    return ActivityComparison(models=models, fits=fits, table=table, remaining=remaining,
                              remaining_pct=remaining_pct, text=text)
