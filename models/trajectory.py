r"""Hierarchical linear mixed model for BMD trajectories, one skeletal site at a time: the builder.

This module holds the model (:func:`build_trajectory_model`, :class:`TrajectoryModel`) and its
prior scales (:class:`TrajectoryPriors`). The data preparation is in :mod:`models.trajectory_data`
(:func:`prepare_trajectory_data`, :class:`PreparedData`, :data:`SITES`, :data:`COEF_NAMES`,
:data:`GROUP_NAMES`, :func:`coef_names`, :func:`contrast_names`), the latent random effects and
the Student-t weights in :mod:`models.trajectory_terms`; those names are re-exported here.

The model
---------
For patient :math:`i` at visit :math:`j` (time :math:`t_{ij}` in **years** since baseline,
``month / 12``), the patient's group among :math:`K` levels :math:`\ell_0, \dots, \ell_{K-1}`
(:math:`\ell_0` the reference; indicators :math:`g_{ik} = [\text{group}_i = \ell_k]`,
:math:`k = 1, \dots, K - 1`) and covariates :math:`x_{ij}`:

.. math::

    \mathrm{bmd}_{ij} = (b_0 + u_{0i}) + (b_1 + u_{1i})\, t_{ij}
                        + \sum_{k=1}^{K-1} \bigl(b_{2k} g_{ik} + b_{2k+1} g_{ik} t_{ij}\bigr)
                        + x_{ij}^\top \gamma + e_{ij},

    (u_{0i}, u_{1i})^\top \sim \mathrm{MVN}(0, \Sigma), \qquad
    \Sigma = \mathrm{diag}(\tau)\, \Omega\, \mathrm{diag}(\tau), \qquad
    \Omega \sim \mathrm{LKJ}(\eta),

    e_{ij} \sim \mathrm{Normal}(0, \sigma) \quad\text{or}\quad
    e_{ij} \sim \mathrm{StudentT}(\nu, 0, \sigma).

A responder study has :math:`K = 2` (non-responders the reference, :math:`g_{i1} = r_i`):
:math:`b = (b_0, b_1, b_2, b_3)` with :math:`b_2 r_i + b_3 r_i t_{ij}`; a single-arm study
:math:`K = 1`, :math:`b = (b_0, b_1)`. Each level's :math:`b_{2k}` has the prior of
``responder_sd`` and its :math:`b_{2k+1}` that of ``responder_slope_sd``
(:class:`TrajectoryPriors`; the names are historical: they are a group's difference from the
reference in baseline and in slope).

Internally the outcome is centred and scaled, :math:`y^*_{ij} = (\mathrm{bmd}_{ij} - m) / s` with
:math:`m, s` the mean and SD of the observed outcome, and covariates are standardised, so every
sampled parameter is of order one. All priors are stated on the data's scale (g/cm^2) in
:class:`TrajectoryPriors` and divided by :math:`s` inside the model. Everything is reported back
on the original scale as deterministics (see :data:`REPORTED_VARS`):

- ``b`` (dims ``coef`` = intercept, time, then ``<level>, time:<level>`` per non-reference level,
  :func:`coef_names`; ``responder, time:responder`` in a responder study): :math:`b_0` in g/cm^2
  (the reference group's baseline mean at the covariates' sample means), :math:`b_1` in g/cm^2/yr
  (the reference group's slope), :math:`b_{2k}` in g/cm^2, :math:`b_{2k+1}` in g/cm^2/yr;
- ``gamma`` (dims ``covariate``): g/cm^2 per unit of each covariate (``sex``: male vs female);
- ``sd_patient`` (dims ``effect``): :math:`\tau` in g/cm^2 and g/cm^2/yr; ``corr_patient``:
  :math:`\Omega_{01}`; ``sigma``: residual SD in g/cm^2; ``nu`` (Student-t only);
- ``u`` (dims ``patient, effect``): the patients' random effects on the original scale;
- ``baseline_mean`` (dims ``group`` = the levels, reference first): :math:`b_0 + b_{2g}`
  (:math:`b_0` for the reference);
- ``change_end`` (dims ``group``): the change from baseline to the endpoint month :math:`E`
  (``endpoint_month``), :math:`(b_1 + b_{2g+1})\, E / 12` in g/cm^2;
- ``pct_change_end`` (dims ``group``): ``change_end`` in % of the group's (model-based)
  baseline mean;
- ``diff_change_end`` (dims ``contrast`` = ``"<level> - <reference>"``): :math:`b_{2g+1} E/12`,
  g/cm^2 to the endpoint (the level x time difference), and ``diff_pct_change_end`` (the level's
  ``pct_change_end`` minus the reference's, percentage points); only with two or more groups.

Parameterisation of the random effects
--------------------------------------
The between-patient intercept SD (~0.14 g/cm^2) is fourteen times the DXA residual SD
(~0.01 g/cm^2), so each patient's intercept is pinned down by the data, and with visits at
0/6/12 months and dropout the slopes are only partly informed. Writing
:math:`\Sigma = L L^\top`, :math:`L = \begin{pmatrix} L_{00} & 0 \\ L_{10} & L_{11}\end{pmatrix}`,
and :math:`m_i = (b_0 + \sum_k b_{2k} g_{ik},\; b_1 + \sum_k b_{2k+1} g_{ik})` for patient
:math:`i`'s mean intercept and slope, the options are

- ``"marginal"`` (the default): the random effects are integrated out analytically,
  :math:`y_i \sim \mathrm{MVN}(X_i b, \sigma^2 I + Z_i \Sigma Z_i^\top)` (see
  :func:`models.marginal.marginal_loglik`); the sampler sees only :math:`b, \tau, \Omega,
  \sigma, \gamma`. The patients' effects ``u`` are drawn afterwards from their exact Gaussian
  conditional given each posterior draw (:meth:`TrajectoryModel.postprocess`; above
  :data:`models.marginal_effects.EAGER_PATIENT_DRAWS` patients x draws on request, see
  :mod:`models.trajectory_patients`), so the draws are from the same joint posterior. No parameter depends on the number of patients: one
  compiled model serves any data size. With the Student-t likelihood the residuals are written
  as a scale mixture, :math:`e_{ij} \mid w_{ij} \sim N(0, \sigma^2/w_{ij})`,
  :math:`w_{ij} \sim \mathrm{Gamma}(\nu/2, \nu/2)`; given the weights the model is Gaussian
  and the effects are integrated out as before (:math:`V_i = \sigma^2 W_i^{-1} + Z_i \Sigma
  Z_i^\top`), and the weights are sampled in a non-centred form (see
  :func:`models.trajectory_terms.student_t_weights`), one per row (so here a new number of
  *rows* needs a new compilation). See *The robust model* below.
- ``"centred_intercept"``: :math:`a_{0i} \sim N(m_{0i}, L_{00})` centred
  in location and scale, :math:`u_{0i} = a_{0i} - m_{0i}`, and the slope non-centred given the
  intercept, :math:`u_{1i} = (L_{10}/L_{00}) u_{0i} + L_{11} z_{1i}`, :math:`z_{1i} \sim N(0, 1)`;
- ``"centred"``: :math:`(a_{0i}, a_{1i}) \sim \mathrm{MVN}(m_i, \Sigma)`;
- ``"noncentred"``: :math:`z_i \sim N(0, I_2)`, :math:`u_i = L z_i` (bambi's choice).

All four are the same model. Measured on twin-like data (46 patients, visits at 0/6/12 months,
43% monotone dropout; nutpie, 4 chains x 1000 draws after 1000 tuning; data seeds 0-4; ESS and
R-hat over every reported variable including the 46 x 2 patient effects), see
:data:`PARAMETERISATION_BENCHMARK` (``tests/benchmarks/bench_lmm.py --geometry``): only the
marginal form passed the verdict (R-hat <= 1.01, bulk/tail ESS >= 400, no divergences,
E-BFMI >= 0.3) on every data set, with min bulk ESS ~1650 of 4000 and E-BFMI ~1; the latent
forms' weak spots are ``sigma`` and ``sd_patient[slope]``. bambi's default model mixed as the
issue reported (min bulk ESS 48, R-hat up to 1.08), and nutpie's low-rank mass matrix lifted
it to ~240 but not past the verdict. :math:`\Omega \sim \mathrm{LKJ}(\eta)` for a 2 x 2 matrix is
exactly :math:`(\rho + 1)/2 \sim \mathrm{Beta}(\eta, \eta)`, which is how it is written
(``pm.LKJCorr`` adds ~30 s to a cold compile for the same prior).

The robust model
----------------
``likelihood="student_t"`` (``rajak fit --model robust``). Measured on the twin (34 patients,
both sites; nutpie, 4 chains x 1000 draws after 1000 tuning, target_accept 0.9; see
:data:`ROBUST_BENCHMARK`): with latent patient effects (``"centred_intercept"``, the default
until this measurement) min bulk ESS was 264-592 (R-hat up to 1.021, E-BFMI 0.32-0.47; weak
spots ``sigma`` and ``sd_patient[slope]``, as for the latent normal model), and nutpie's
low-rank mass matrix lifted it only to 341-526. The scale mixture with the effects integrated
out but the weights sampled as Gamma variables made it worse (a funnel between :math:`\nu` and
the weights: bulk ESS ~100, E-BFMI 0.05-0.10). With the non-centred weights it passes on every
sampler seed tried (min bulk ESS 1533-2515, R-hat <= 1.005, no divergences, E-BFMI >= 0.87) and
samples in ~1 s. The prior :math:`\nu \sim \mathrm{Gamma}(2, 0.1)` is unchanged.

Swapping data
-------------
All data enter through ``pm.Data`` containers and the ``obs`` / ``patient`` dims are mutable, so
one built model (and one nutpie compilation of it) serves many data sets::

    tm = build_trajectory_model(df_a, site="spine")
    fit_a = sample(tm, seed=1)              # analysis.engine.sampling.sample: compiles once
    tm.set_data(df_b)                       # new rows / patients / priors
    fit_b = sample(tm, seed=1)              # reuses the compiled model via with_data

:meth:`TrajectoryModel.set_data` updates the PyMC model (``Model.set_dim`` + ``Model.set_data``)
and :attr:`TrajectoryModel.data_values` holds the arrays by container name, which
:func:`analysis.engine.sampling.sample` passes straight to nutpie's ``compiled.with_data(**values)``.
The number of rows can always change. With the latent parameterisations a different number of
*patients* changes the length of the parameter vector, which a compiled nutpie model cannot
do: ``sample`` then compiles (and caches) a model for that size; the marginal model, the
default, and the PyMC sampler take any size. Priors are data too (``set_data(priors=...)``).

The bambi path
--------------
A user's own formula (default ``"bmd ~ month * group + (1 + month | patient_id)"`` in the
design's words, time in months, bambi's default priors and its non-centred group effects without correlation) is built
by bambi in ``analysis/bayes/formula.py`` and sampled with nutpie like the model above
(``rajak fit --formula``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from models.marginal import (
    covariate_term,
    data_containers,
    group_means,
    lmm_parameters,
    marginal_loglik,
    reported_deterministics,
    standardised_arrays,
    update_model_data,
)
from models.trajectory_data import (
    COEF_NAMES,
    GROUP_NAMES,
    SITES,
    PreparedData,
    coef_names,
    contrast_names,
    prepare_trajectory_data,
)
from models.trajectory_patients import PerPatientQuantities
from models.trajectory_terms import latent_effects, student_t_weights

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [  # with the names re-exported from models.trajectory_data
    "COEF_NAMES",
    "GROUP_NAMES",
    "PARAMETERISATIONS",
    "PARAMETERISATION_BENCHMARK",
    "REPORTED_VARS",
    "ROBUST_BENCHMARK",
    "SITES",
    "PreparedData",
    "TrajectoryModel",
    "TrajectoryPriors",
    "build_trajectory_model",
    "coef_names",
    "contrast_names",
    "prepare_trajectory_data",
]

#: Random-effect parameterisations accepted by :func:`build_trajectory_model`.
PARAMETERISATIONS: tuple[str, ...] = ("marginal", "centred_intercept", "centred", "noncentred")
#: Original-scale quantities reported by the model (``gamma`` only with covariates, ``nu`` only
#: with the Student-t likelihood).
REPORTED_VARS: tuple[str, ...] = (
    "b",
    "gamma",
    "sigma",
    "nu",
    "sd_patient",
    "corr_patient",
    "u",
    "baseline_mean",
    "change_end",
    "pct_change_end",
    "diff_change_end",
    "diff_pct_change_end",
)

#: Geometry measurement behind the default parameterisation (``bench_lmm.py --geometry``):
#: nutpie, twin-like data (46 patients, 43% monotone dropout), 4 chains x 1000 draws after 1000
#: tuning, target_accept 0.9, data seeds 0-4. Per configuration: min over seeds of the min bulk
#: and tail ESS, max R-hat, total divergences, min E-BFMI, data sets passing the verdict.
#: The latent forms are borderline: re-running ``centred_intercept`` after a float-level change
#: of the graph gave min bulk ESS 462 and 4/5 passing (same seeds), against 286 and 3/5 here.
PARAMETERISATION_BENCHMARK: dict[str, dict[str, float]] = {
    name: dict(zip(("min_ess_bulk", "min_ess_tail", "max_rhat", "divergences", "min_ebfmi",
                    "passed_of_5"), values))
    for name, values in {
        "marginal": (1646, 1115, 1.006, 0, 0.90, 5),
        "centred_intercept": (286, 271, 1.020, 0, 0.30, 3),
        "centred_intercept + low_rank": (322, 224, 1.019, 0, 0.31, 2),
        "centred": (99, 107, 1.043, 88, 0.32, 2),
        "noncentred": (68, 114, 1.067, 0, 0.31, 0),
        "noncentred + low_rank": (287, 412, 1.015, 8, 0.32, 1),
        "bambi default": (48, 63, 1.077, 0, 0.29, 0),
        "bambi default + low_rank": (239, 167, 1.016, 5, 0.30, 0),
    }.items()
}

#: Convergence of the robust (Student-t) model on the twin before and after the non-centred
#: scale mixture (``tests/benchmarks/bench_models.py --robust-geometry``): nutpie, 4 chains x
#: 1000 draws after 1000 tuning, target_accept 0.9, both sites; per configuration: min and max
#: over fits of the min bulk ESS, max R-hat, total divergences, min E-BFMI, fits passing the
#: verdict, fits (sampler seeds 0-2, and 0-4 for the default).
ROBUST_BENCHMARK: dict[str, dict[str, float]] = {
    name: dict(zip(("min_ess_bulk", "max_min_ess_bulk", "max_rhat", "divergences",
                    "min_ebfmi", "passed", "fits"), values))
    for name, values in {
        "centred_intercept": (264, 592, 1.021, 0, 0.32, 2, 6),
        "centred_intercept + low_rank": (341, 526, 1.019, 0, 0.33, 2, 6),
        "marginal, centred Gamma weights": (74, 127, 1.055, 0, 0.05, 0, 6),
        "marginal, non-centred weights": (1533, 2515, 1.005, 0, 0.87, 10, 10),
    }.items()
}

Likelihood = Literal["normal", "student_t"]
Parameterisation = Literal["marginal", "centred_intercept", "centred", "noncentred"]

_MODEL_VERSION = 2  # 2: K groups, the endpoint's change; bump when the graph built below changes (part of the compile-cache key)


@dataclass(frozen=True)
class TrajectoryPriors:
    r"""Prior scales on the data's scale (g/cm^2, years); weakly informative defaults.

    With :math:`m` the mean of the observed outcome and standardised covariates:

    .. math::

        b_0 \sim N(m, \text{intercept\_sd}),\quad b_1 \sim N(0, \text{slope\_sd}),\quad
        b_{2k} \sim N(0, \text{responder\_sd}),\quad b_{2k+1} \sim N(0, \text{responder\_slope\_sd}),

        \gamma_k\,\mathrm{SD}(x_k) \sim N(0, \text{covariate\_sd}),\quad
        \tau_0 \sim N^+(0, \text{sd\_intercept\_scale}),\quad
        \tau_1 \sim N^+(0, \text{sd\_slope\_scale}),

        \Omega \sim \mathrm{LKJ}(\text{lkj\_eta}),\quad \sigma \sim N^+(0, \text{sigma\_scale}),
        \quad \nu \sim \mathrm{Gamma}(\text{nu\_alpha}, \text{nu\_beta}).

    The defaults are several times wider than anything plausible for DXA BMD (baseline
    0.6-1.3 g/cm^2, changes of a few % a year, a between-patient SD of ~0.14 g/cm^2, precision
    ~0.01 g/cm^2) while still excluding absurd values: a slope SD of 0.05 g/cm^2/yr is ~5%/yr.
    ``responder_sd`` and ``responder_slope_sd`` apply to every non-reference group (an arm, a
    dose, responders): its difference from the reference at baseline and in the annual slope.
    ``lkj_eta = 2`` mildly favours small correlations; Gamma(2, 0.1) for :math:`\nu` is the
    Juarez-Steel prior (mean 20).
    """

    intercept_sd: float = 0.5
    slope_sd: float = 0.05
    responder_sd: float = 0.2
    responder_slope_sd: float = 0.05
    covariate_sd: float = 0.1
    sd_intercept_scale: float = 0.3
    sd_slope_scale: float = 0.05
    sigma_scale: float = 0.05
    lkj_eta: float = 2.0
    nu_alpha: float = 2.0
    nu_beta: float = 0.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"prior {name} must be a positive finite number, got {value!r}")

    #: Order of the fields in the ``prior`` data container; the first ``N_SCALES`` are scales
    #: in g/cm^2 (per year for slopes), divided by the outcome's SD inside the model.
    FIELDS = (
        "intercept_sd",
        "slope_sd",
        "responder_sd",
        "responder_slope_sd",
        "covariate_sd",
        "sd_intercept_scale",
        "sd_slope_scale",
        "sigma_scale",
        "lkj_eta",
        "nu_alpha",
        "nu_beta",
    )
    N_SCALES = 8

    def to_array(self, y_scale: float = 1.0) -> np.ndarray:
        """Values in :attr:`FIELDS` order, scales divided by ``y_scale``."""
        values = np.array([getattr(self, f) for f in self.FIELDS], dtype=float)
        values[: self.N_SCALES] /= y_scale
        return values


def _data_arrays(prep: PreparedData, priors: TrajectoryPriors, endpoint_month: float) -> dict[str, np.ndarray]:
    """Arrays for every ``pm.Data`` container, keyed by container name."""
    return standardised_arrays(prep, priors.to_array(prep.y_scale), t_end=endpoint_month / 12.0)


@dataclass
class TrajectoryModel(PerPatientQuantities):
    """A built trajectory model plus what :func:`analysis.engine.sampling.sample` needs to fit it.

    Attributes
    ----------
    pymc_model : pymc.Model
    site, likelihood, parameterisation, covariates, priors, levels, group_column, time, endpoint_month
        The specification (see :func:`build_trajectory_model`).
    prepared : PreparedData
        The data currently in the model.
    data_values : dict of str to ndarray
        Current value of every ``pm.Data`` container, by name (what nutpie's ``with_data`` gets).
    structure_key : str
        Hash of everything that shapes the graph apart from data; models with equal keys (and
        equal numbers of patients) share one compiled nutpie model.
    diagnostic_vars : list of str
        Variables whose R-hat / ESS decide the convergence verdict (the reported ones).
    trace_vars : None
        Store every variable.
    """

    pymc_model: Any
    site: str
    likelihood: str
    parameterisation: str
    covariates: tuple[str, ...]
    priors: TrajectoryPriors
    prepared: PreparedData
    data_values: dict[str, np.ndarray] = field(default_factory=dict)
    trace_vars: list[str] | None = None
    levels: tuple[str, ...] | None = None
    group_column: str = "analysis_group"
    time: str = "month"
    endpoint_month: float = 12.0

    @property
    def structure_key(self) -> str:
        spec = {
            "model": "rajak.trajectory",
            "version": _MODEL_VERSION,
            "likelihood": self.likelihood,
            "parameterisation": self.parameterisation,
            "covariates": list(self.covariates),
            "n_groups": len(self.prepared.levels),
        }  # priors, the endpoint and the level names are data or coords, not structure
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def diagnostic_vars(self) -> list[str]:
        names = set(self.pymc_model.named_vars)
        if self.parameterisation == "marginal":
            names.add("u")  # drawn in postprocess
        return [v for v in REPORTED_VARS if v in names]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored with fits)."""
        return {
            "model": "trajectory_lmm",
            "site": self.site,
            "likelihood": self.likelihood,
            "parameterisation": self.parameterisation,
            "covariates": list(self.covariates),
            "groups": list(self.prepared.levels),
            "time": self.time,
            "endpoint_month": self.endpoint_month,
            "priors": asdict(self.priors),
            "n_obs": self.prepared.n_obs,
            "n_patients": self.prepared.n_patients,
            "y_loc": self.prepared.y_loc,
            "y_scale": self.prepared.y_scale,
        }

    def set_data(
        self, data: pd.DataFrame | None = None, priors: TrajectoryPriors | None = None
    ) -> None:
        """Swap in new data and/or prior scales without rebuilding the graph.

        Parameters
        ----------
        data : DataFrame, optional
            Same contract as for :func:`build_trajectory_model`; any number of rows and patients.
        priors : TrajectoryPriors, optional
            New priors (they are data too: no recompilation).
        """
        prep = (
            prepare_trajectory_data(data, self.site, self.covariates, levels=self.levels,
                                    group_column=self.group_column, time=self.time)
            if data is not None
            else self.prepared
        )
        priors = priors if priors is not None else self.priors
        arrays = _data_arrays(prep, priors, self.endpoint_month)
        update_model_data(self.pymc_model, arrays, prep.n_obs, prep.patient_ids)
        self.prepared, self.priors, self.data_values = prep, priors, arrays


def build_trajectory_model(
    data: pd.DataFrame,
    site: str,
    *,
    covariates: tuple[str, ...] | list[str] = (),
    priors: TrajectoryPriors | None = None,
    likelihood: Likelihood = "normal",
    parameterisation: Parameterisation | Literal["auto"] = "auto",
    levels: tuple[str, ...] | list[str] | None = None,
    group_column: str = "analysis_group",
    time: str = "month",
    endpoint_month: float = 12.0,
) -> TrajectoryModel:
    r"""Build the hierarchical trajectory model for one site (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        Long format, one row per patient-visit (``patient_id``, ``time``, ``bmd_<site>``, the
        group and the covariates). Rows with a missing outcome are dropped; a missing group raises.
    site : str
        Any site with a ``bmd_<site>`` column.
    covariates : sequence of str, default ()
        Extra linear terms, e.g. ``("age", "sex", "bmi")``.
    priors : TrajectoryPriors, optional
        Defaults to ``TrajectoryPriors()``.
    likelihood : {"normal", "student_t"}
    parameterisation : {"auto", "marginal", "centred_intercept", "noncentred", "centred"}
        ``"auto"`` is ``"marginal"`` for both likelihoods (see the module docstring).
    levels : sequence of str, optional
        The group levels, the reference first, read from ``group_column``; one level for a
        single-arm study. Default: a responder study's boolean ``responder`` column
        (:data:`GROUP_NAMES`).
    group_column : str
        The column holding each patient's level (with ``levels``).
    time : str
        Months since the patient's baseline (a design's actual times, e.g. ``month_actual``).
    endpoint_month : float
        The month of ``change_end`` and its relatives (default 12: the change over one year).

    Returns
    -------
    TrajectoryModel
    """
    import pymc as pm
    import pytensor.tensor as pt

    if likelihood not in ("normal", "student_t"):
        raise ValueError(f"likelihood must be 'normal' or 'student_t', got {likelihood!r}")
    if parameterisation == "auto":
        parameterisation = "marginal"
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(f"parameterisation must be 'auto' or one of {PARAMETERISATIONS}")
    if not (np.isfinite(endpoint_month) and endpoint_month > 0):
        raise ValueError(f"endpoint_month must be a positive month, got {endpoint_month!r}")
    covariates = tuple(covariates)
    priors = priors if priors is not None else TrajectoryPriors()
    levels = None if levels is None else tuple(levels)
    prep = prepare_trajectory_data(data, site, covariates, levels=levels, group_column=group_column, time=time)
    arrays = _data_arrays(prep, priors, float(endpoint_month))
    n_con = prep.n_contrasts

    coords: dict[str, Any] = {
        "obs": np.arange(prep.n_obs),
        "patient": prep.patient_ids,
        "effect": ["intercept", "slope"],
        "coef": list(coef_names(prep.levels) if levels is not None else COEF_NAMES),
        "group": list(prep.levels),
        "prior_field": list(TrajectoryPriors.FIELDS),
    }
    if n_con:
        coords["contrast"] = list(contrast_names(prep.levels))
    if covariates:
        coords["covariate"] = list(covariates)

    with pm.Model(coords=coords) as m:
        db = data_containers(arrays)
        y_std, t, pidx = db["y_std"], db["t"], db["patient_idx"]
        y_loc, y_scale, ps = db["y_loc"], db["y_scale"], db["prior"]
        gx = db.get("group_x")
        n_pat = gx.shape[0] if n_con else db["n_patients"]

        c = lmm_parameters(ps, n_con)  # b, tau, Omega (LKJ as a Beta for 2 x 2) and the factor L
        beta, tau, rho = c["beta"], c["tau"], c["rho"]
        l00, l10, l11 = c["l00"], c["l10"], c["l11"]
        # patient-level means of intercept and slope (scaled units; scalars for a single group)
        m0, m1 = group_means(beta, gx, n_con)
        fixed = covariate_term(arrays, ps, y_scale) if covariates else 0.0
        sigma_std = pm.HalfNormal("sigma_std", sigma=ps[7])

        if parameterisation == "marginal":
            mean = (m0[pidx] + m1[pidx] * t) if n_con else (m0 + m1 * t)
            resid = y_std - (mean + fixed)
            weights = None
            if likelihood == "student_t":
                nu = pm.Gamma("nu", alpha=ps[9], beta=ps[10])
                weights = student_t_weights(nu)
            pm.Potential(
                "y_marginal",
                marginal_loglik(resid, t, pidx, n_pat, l00, l10, l11, sigma_std, weights),
            )
        else:
            if not n_con:  # one mean for every patient
                m0, m1 = m0 + pt.zeros(n_pat), m1 + pt.zeros(n_pat)
            u0, u1 = latent_effects(parameterisation, m0, m1, l00, l10, l11)
            mu = (m0 + u0)[pidx] + (m1 + u1)[pidx] * t + fixed
            if likelihood == "student_t":
                nu = pm.Gamma("nu", alpha=ps[9], beta=ps[10])
                pm.StudentT("y", nu=nu, mu=mu, sigma=sigma_std, observed=y_std, dims="obs")
            else:
                pm.Normal("y", mu=mu, sigma=sigma_std, observed=y_std, dims="obs")
            pm.Deterministic(
                "u", y_scale * pt.stack([u0, u1], axis=1), dims=("patient", "effect")
            )

        # ---- original scale -------------------------------------------------------------
        reported_deterministics(beta, tau, rho, sigma_std, y_loc, y_scale, n_contrasts=n_con,
                                t_end=db["t_end"])

    return TrajectoryModel(
        pymc_model=m,
        site=site,
        likelihood=likelihood,
        parameterisation=parameterisation,
        covariates=covariates,
        priors=priors,
        prepared=prep,
        data_values=arrays,
        levels=levels,
        group_column=group_column,
        time=time,
        endpoint_month=float(endpoint_month),
    )
