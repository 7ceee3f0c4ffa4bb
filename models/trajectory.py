r"""Hierarchical linear mixed model for BMD trajectories, one skeletal site at a time.

The model
---------
For patient :math:`i` at visit :math:`j` (time :math:`t_{ij}` in **years** since baseline,
``month / 12``), responder indicator :math:`r_i \in \{0, 1\}` and covariates :math:`x_{ij}`:

.. math::

    \mathrm{bmd}_{ij} = (b_0 + u_{0i}) + (b_1 + u_{1i})\, t_{ij} + b_2 r_i + b_3 r_i t_{ij}
                        + x_{ij}^\top \gamma + e_{ij},

    (u_{0i}, u_{1i})^\top \sim \mathrm{MVN}(0, \Sigma), \qquad
    \Sigma = \mathrm{diag}(\tau)\, \Omega\, \mathrm{diag}(\tau), \qquad
    \Omega \sim \mathrm{LKJ}(\eta),

    e_{ij} \sim \mathrm{Normal}(0, \sigma) \quad\text{or}\quad
    e_{ij} \sim \mathrm{StudentT}(\nu, 0, \sigma).

Internally the outcome is centred and scaled, :math:`y^*_{ij} = (\mathrm{bmd}_{ij} - m) / s` with
:math:`m, s` the mean and SD of the observed outcome, and covariates are standardised, so every
sampled parameter is of order one. All priors are stated on the data's scale (g/cm^2) in
:class:`TrajectoryPriors` and divided by :math:`s` inside the model. Everything is reported back
on the original scale as deterministics (see :data:`REPORTED_VARS`):

- ``b`` (dims ``coef`` = intercept, time, responder, time:responder): :math:`b_0` in g/cm^2 (the
  non-responders' baseline mean at the covariates' sample means), :math:`b_1` in g/cm^2/yr (the
  non-responders' slope), :math:`b_2` in g/cm^2, :math:`b_3` in g/cm^2/yr;
- ``gamma`` (dims ``covariate``): g/cm^2 per unit of each covariate (``sex``: male vs female);
- ``sd_patient`` (dims ``effect``): :math:`\tau` in g/cm^2 and g/cm^2/yr; ``corr_patient``:
  :math:`\Omega_{01}`; ``sigma``: residual SD in g/cm^2; ``nu`` (Student-t only);
- ``u`` (dims ``patient, effect``): the patients' random effects on the original scale;
- ``baseline_mean`` (dims ``group`` = non-responder, responder): :math:`b_0 + b_2 g`;
- ``change_12m`` (dims ``group``): the month-12 change :math:`b_1 + b_3 g` in g/cm^2;
- ``pct_change_12m`` (dims ``group``): :math:`100\,(b_1 + b_3 g) / (b_0 + b_2 g)`, the month-12
  change in % of the group's (model-based) baseline mean;
- ``diff_change_12m`` (:math:`b_3`, g/cm^2 over 12 months, the responder x time difference) and
  ``diff_pct_change_12m`` (responders minus non-responders, percentage points).

Parameterisation of the random effects
--------------------------------------
The between-patient intercept SD (~0.14 g/cm^2) is fourteen times the DXA residual SD
(~0.01 g/cm^2), so each patient's intercept is pinned down by the data, and with visits at
0/6/12 months and dropout the slopes are only partly informed. Writing
:math:`\Sigma = L L^\top`, :math:`L = \begin{pmatrix} L_{00} & 0 \\ L_{10} & L_{11}\end{pmatrix}`,
and :math:`m_i = (b_0 + b_2 r_i,\; b_1 + b_3 r_i)` for patient :math:`i`'s mean intercept and
slope, the options are

- ``"marginal"`` (default for the normal likelihood): the random effects are integrated out
  analytically, :math:`y_i \sim \mathrm{MVN}(X_i b, \sigma^2 I + Z_i \Sigma Z_i^\top)` (see
  :func:`_marginal_loglik`); the sampler sees only :math:`b, \tau, \Omega, \sigma, \gamma`. The
  patients' effects ``u`` are drawn afterwards from their exact Gaussian conditional given each
  posterior draw (:meth:`TrajectoryModel.postprocess`), so the draws are from the same joint
  posterior. No parameter depends on the number of patients: one compiled model serves any
  data size.
- ``"centred_intercept"`` (default for Student-t): :math:`a_{0i} \sim N(m_{0i}, L_{00})` centred
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

Swapping data
-------------
All data enter through ``pm.Data`` containers and the ``obs`` / ``patient`` dims are mutable, so
one built model (and one nutpie compilation of it) serves many data sets::

    tm = build_trajectory_model(df_a, site="spine")
    fit_a = sample(tm, seed=1)              # analysis.fitting.sample: compiles once
    tm.set_data(df_b)                       # new rows / patients / priors
    fit_b = sample(tm, seed=1)              # reuses the compiled model via with_data

:meth:`TrajectoryModel.set_data` updates the PyMC model (``Model.set_dim`` + ``Model.set_data``)
and :attr:`TrajectoryModel.data_values` holds the arrays by container name, which
:func:`analysis.fitting.sample` passes straight to nutpie's ``compiled.with_data(**values)``.
The number of rows can always change. With the latent parameterisations a different number of
*patients* changes the length of the parameter vector, which a compiled nutpie model cannot
do: ``sample`` then compiles (and caches) a model for that size; the marginal model, the
default, and the PyMC sampler take any size. Priors are data too (``set_data(priors=...)``).

The bambi path
--------------
:func:`bambi_lmm` builds a bambi model from a user formula (default
``"bmd ~ month * responder + (1 + month | patient_id)"``, time in months, bambi's default priors
and its non-centred group effects without correlation) and returns a wrapper that
:func:`analysis.fitting.sample` samples with nutpie like the model above.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import pymc as pm
    import xarray as xr

__all__ = [
    "COEF_NAMES",
    "GROUP_NAMES",
    "PARAMETERISATIONS",
    "PARAMETERISATION_BENCHMARK",
    "REPORTED_VARS",
    "SITES",
    "BambiLMM",
    "PreparedData",
    "TrajectoryModel",
    "TrajectoryPriors",
    "bambi_lmm",
    "build_trajectory_model",
    "prepare_trajectory_data",
]

#: Skeletal sites and the data-contract column holding each one's BMD (g/cm^2).
SITES: dict[str, str] = {"spine": "bmd_spine", "femoral_neck": "bmd_femoral_neck"}
#: Labels of the ``coef`` dim of ``b``.
COEF_NAMES: tuple[str, ...] = ("intercept", "time", "responder", "time:responder")
#: Labels of the ``group`` dim (responder indicator 0, 1).
GROUP_NAMES: tuple[str, ...] = ("non-responder", "responder")
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
    "change_12m",
    "pct_change_12m",
    "diff_change_12m",
    "diff_pct_change_12m",
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

Likelihood = Literal["normal", "student_t"]
Parameterisation = Literal["marginal", "centred_intercept", "centred", "noncentred"]

_MODEL_VERSION = 1  # bump when the graph built below changes (part of the compile-cache key)


@dataclass(frozen=True)
class TrajectoryPriors:
    r"""Prior scales on the data's scale (g/cm^2, years); weakly informative defaults.

    With :math:`m` the mean of the observed outcome and standardised covariates:

    .. math::

        b_0 \sim N(m, \text{intercept\_sd}),\quad b_1 \sim N(0, \text{slope\_sd}),\quad
        b_2 \sim N(0, \text{responder\_sd}),\quad b_3 \sim N(0, \text{responder\_slope\_sd}),

        \gamma_k\,\mathrm{SD}(x_k) \sim N(0, \text{covariate\_sd}),\quad
        \tau_0 \sim N^+(0, \text{sd\_intercept\_scale}),\quad
        \tau_1 \sim N^+(0, \text{sd\_slope\_scale}),

        \Omega \sim \mathrm{LKJ}(\text{lkj\_eta}),\quad \sigma \sim N^+(0, \text{sigma\_scale}),
        \quad \nu \sim \mathrm{Gamma}(\text{nu\_alpha}, \text{nu\_beta}).

    The defaults are several times wider than anything plausible for DXA BMD (baseline
    0.6-1.3 g/cm^2, changes of a few % a year, a between-patient SD of ~0.14 g/cm^2, precision
    ~0.01 g/cm^2) while still excluding absurd values: a slope SD of 0.05 g/cm^2/yr is ~5%/yr.
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


@dataclass(frozen=True)
class PreparedData:
    """Validated arrays for one site (rows with a missing outcome dropped).

    Attributes
    ----------
    patient_ids : ndarray of str
        Sorted unique patient ids (the ``patient`` coord).
    patient_idx : ndarray of int64
        Row -> position in ``patient_ids``.
    months, t_years, y : ndarray of float
        Visit month, time in years, outcome (g/cm^2) per row.
    responder : ndarray of float
        0/1 per patient.
    x : ndarray, shape (n_rows, n_covariates)
        Raw covariates (``sex`` as 1 = "M").
    covariates : tuple of str
    """

    patient_ids: np.ndarray
    patient_idx: np.ndarray
    months: np.ndarray
    t_years: np.ndarray
    y: np.ndarray
    responder: np.ndarray
    x: np.ndarray
    covariates: tuple[str, ...]

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_patients(self) -> int:
        return int(self.patient_ids.shape[0])

    @property
    def y_loc(self) -> float:
        return float(np.mean(self.y))

    @property
    def y_scale(self) -> float:
        sd = float(np.std(self.y))
        return sd if np.isfinite(sd) and sd > 1e-8 else 1.0

    @property
    def x_loc(self) -> np.ndarray:
        return self.x.mean(axis=0) if self.x.shape[1] else np.zeros(0)

    @property
    def x_scale(self) -> np.ndarray:
        if not self.x.shape[1]:
            return np.zeros(0)
        sd = self.x.std(axis=0)
        return np.where(sd > 1e-12, sd, 1.0)


def _as_bool_responder(values: pd.Series) -> np.ndarray:
    if values.isna().any():
        raise ValueError("responder is missing for some rows; resolve it before modelling")
    if values.dtype == bool:
        return values.to_numpy()
    uniq = set(pd.unique(values))
    if uniq <= {0, 1, True, False}:
        return values.astype(bool).to_numpy()
    raise ValueError(f"responder must be boolean (or 0/1), got values {sorted(map(str, uniq))}")


def prepare_trajectory_data(
    data: pd.DataFrame, site: str = "spine", covariates: tuple[str, ...] = ()
) -> PreparedData:
    """Validate long-format data and turn one site into model arrays.

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit with ``patient_id``, ``month``, the site's BMD column (see
        :data:`SITES`), ``responder`` and any ``covariates``.
    site : {"spine", "femoral_neck"}
    covariates : tuple of str
        Columns added linearly; ``"sex"`` ("F"/"M") becomes an indicator of male sex.

    Returns
    -------
    PreparedData

    Raises
    ------
    ValueError
        On a missing column, a missing month/responder/covariate where the outcome is observed,
        a responder status that varies within a patient, or no observed outcome at all.
    """
    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}")
    outcome = SITES[site]
    needed = ["patient_id", "month", outcome, "responder", *covariates]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}")
    df = data.loc[data[outcome].notna(), needed].copy()
    if df.empty:
        raise ValueError(f"no observed {outcome} values")
    if df["month"].isna().any():
        raise ValueError("month is missing for rows with an observed outcome")
    df["patient_id"] = df["patient_id"].astype(str)
    df["responder"] = _as_bool_responder(df["responder"])
    if (df.groupby("patient_id")["responder"].nunique() > 1).any():
        raise ValueError("responder status varies within a patient")
    codes, ids = pd.factorize(df["patient_id"], sort=True)
    x_cols = []
    for cov in covariates:
        col = df[cov]
        if cov == "sex":
            bad = ~col.isin(["F", "M"])
            if bad.any():
                got = sorted(map(str, col[bad].unique()))
                raise ValueError(f"sex must be 'F' or 'M', got {got}")
            col = (col == "M").astype(float)
        col = pd.to_numeric(col, errors="raise").astype(float)
        if col.isna().any():
            raise ValueError(f"covariate {cov!r} is missing for rows with an observed outcome")
        x_cols.append(col.to_numpy())
    x = np.column_stack(x_cols) if x_cols else np.zeros((len(df), 0))
    responder = (
        df.groupby(codes)["responder"].first().sort_index().to_numpy().astype(float)
    )
    months = df["month"].to_numpy(dtype=float)
    return PreparedData(
        patient_ids=np.asarray(ids, dtype=str),
        patient_idx=codes.astype(np.int64),
        months=months,
        t_years=months / 12.0,
        y=df[outcome].to_numpy(dtype=float),
        responder=responder,
        x=x,
        covariates=tuple(covariates),
    )


def _data_arrays(prep: PreparedData, priors: TrajectoryPriors) -> dict[str, np.ndarray]:
    """Arrays for every ``pm.Data`` container, keyed by container name."""
    y_loc, y_scale = prep.y_loc, prep.y_scale
    arrays = {
        "y_std": (prep.y - y_loc) / y_scale,
        "t": prep.t_years,
        "patient_idx": prep.patient_idx,
        "responder": prep.responder,
        "y_loc": np.asarray(y_loc),
        "y_scale": np.asarray(y_scale),
        "prior": priors.to_array(y_scale),
    }
    if prep.covariates:
        arrays["x_std"] = (prep.x - prep.x_loc) / prep.x_scale
        arrays["x_scale"] = prep.x_scale
    return arrays


@dataclass
class TrajectoryModel:
    """A built trajectory model plus what :func:`analysis.fitting.sample` needs to fit it.

    Attributes
    ----------
    pymc_model : pymc.Model
    site, likelihood, parameterisation, covariates, priors
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

    @property
    def structure_key(self) -> str:
        spec = {
            "model": "rajak.trajectory",
            "version": _MODEL_VERSION,
            "likelihood": self.likelihood,
            "parameterisation": self.parameterisation,
            "covariates": list(self.covariates),
        }  # priors are data, not structure
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
            prepare_trajectory_data(data, self.site, self.covariates)
            if data is not None
            else self.prepared
        )
        priors = priors if priors is not None else self.priors
        arrays = _data_arrays(prep, priors)
        m = self.pymc_model
        m.set_dim("obs", prep.n_obs, coord_values=np.arange(prep.n_obs))
        m.set_dim("patient", prep.n_patients, coord_values=prep.patient_ids)
        for name, value in arrays.items():
            m.set_data(name, value)
        self.prepared, self.priors, self.data_values = prep, priors, arrays

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        r"""Hook called by :func:`analysis.fitting.sample` on the raw sampler output.

        For the marginal parameterisation, adds ``u`` (patient, effect; g/cm^2 and g/cm^2/yr)
        drawn from its exact conditional :math:`N(A_i^{-1} Z_i^\top r_i / \sigma^2, A_i^{-1})`
        given each posterior draw (see :func:`_marginal_loglik`), with an RNG seeded by
        ``seed``: together the draws are from the joint posterior.
        """
        import xarray as xr

        if self.parameterisation == "marginal":
            post = dt["posterior"].to_dataset()
            u = _draw_marginal_effects(post, self.data_values, np.random.default_rng([seed, 7]))
            post["u"] = xr.DataArray(
                u * float(self.data_values["y_scale"]),
                dims=("chain", "draw", "patient", "effect"),
                coords={"patient": self.prepared.patient_ids, "effect": ["intercept", "slope"]},
            )
            dt["posterior"] = post
        dt["log_likelihood"] = xr.Dataset({"bmd": self.log_likelihood(dt["posterior"].to_dataset())})
        return dt

    def log_likelihood(self, post: xr.Dataset) -> xr.DataArray:
        r"""Pointwise log-likelihood of each observation given the patient's effects,

        .. math::

            \log p(y_{ij} \mid \theta, u_i) = \log f(y_{ij};\ \mu_{ij}, \sigma[, \nu]),\quad
            \mu_{ij} = b_0 + b_2 r_i + (b_1 + b_3 r_i) t_{ij} + (x_{ij} - \bar x)^\top\gamma
                       + u_{0i} + u_{1i} t_{ij},

        on the original scale (dims ``chain, draw, obs``), for PSIS-LOO (conditional on the
        patient effects, as brms' default ``loo``).
        """
        import xarray as xr
        from scipy import stats

        prep = self.prepared
        mu = self._mu(post)
        sigma = post["sigma"].values[..., None]
        if self.likelihood == "student_t":
            ll = stats.t.logpdf(prep.y, post["nu"].values[..., None], loc=mu, scale=sigma)
        else:
            ll = stats.norm.logpdf(prep.y, loc=mu, scale=sigma)
        return xr.DataArray(ll, dims=("chain", "draw", "obs"))

    def _mu(self, post: xr.Dataset) -> np.ndarray:
        prep = self.prepared
        b = post["b"].transpose("chain", "draw", "coef").values
        u = post["u"].transpose("chain", "draw", "patient", "effect").values
        r = prep.responder[prep.patient_idx]
        t = prep.t_years
        mu = (b[..., 0, None] + b[..., 2, None] * r + (b[..., 1, None] + b[..., 3, None] * r) * t
              + u[..., prep.patient_idx, 0] + u[..., prep.patient_idx, 1] * t)
        if prep.covariates:
            mu = mu + post["gamma"].transpose("chain", "draw", "covariate").values @ (prep.x - prep.x_loc).T
        return mu

    def posterior_predictive(self, post: xr.Dataset, seed: int = 0) -> np.ndarray:
        """Replicated observations (chain, draw, obs) in g/cm^2, given each draw's patient effects."""
        rng = np.random.default_rng([seed, 11])
        mu = self._mu(post)
        sigma = post["sigma"].values[..., None]
        if self.likelihood == "student_t":
            eps = rng.standard_t(post["nu"].values[..., None], size=mu.shape)
        else:
            eps = rng.standard_normal(mu.shape)
        return mu + sigma * eps


def _latent_effects(
    parameterisation: str, m0: Any, m1: Any, l00: Any, l10: Any, l11: Any
) -> tuple[Any, Any]:
    """Random effects (scaled units) for the latent parameterisations; see the module doc."""
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


def _marginal_loglik(
    resid: Any, t: Any, pidx: Any, n_patients: Any, l00: Any, l10: Any, l11: Any, sigma: Any
) -> Any:
    r"""Log-likelihood with the random effects integrated out (scaled units).

    For patient :math:`i` with :math:`n_i` rows, design :math:`Z_i = [1, t_{ij}]` and fixed-part
    residuals :math:`r_i`, :math:`y_i \sim \mathrm{MVN}(X_i b, V_i)`,
    :math:`V_i = \sigma^2 I + Z_i \Sigma Z_i^\top`. With
    :math:`A_i = \Sigma^{-1} + \sigma^{-2} Z_i^\top Z_i` (2 x 2),

    .. math::

        \log|V_i| = n_i \log\sigma^2 + \log|\Sigma| + \log|A_i|, \qquad
        r_i^\top V_i^{-1} r_i = \frac{r_i^\top r_i}{\sigma^2}
            - \frac{(Z_i^\top r_i)^\top A_i^{-1} (Z_i^\top r_i)}{\sigma^4},

    (determinant lemma and Woodbury), so only per-patient sums of :math:`1, t, t^2, r, t r,
    r^2` are needed. A patient without rows contributes exactly zero.
    """
    import pytensor.tensor as pt

    def per_patient(v: Any) -> Any:
        return pt.inc_subtensor(pt.zeros(n_patients)[pidx], v)

    n, s1, s2 = per_patient(pt.ones_like(t)), per_patient(t), per_patient(t * t)
    r0, r1, rr = per_patient(resid), per_patient(t * resid), per_patient(resid * resid)
    s00, s01, s11 = l00**2, l00 * l10, l10**2 + l11**2  # Sigma = L L^T
    det_sigma = (l00 * l11) ** 2
    inv_s2 = 1.0 / sigma**2
    a = s11 / det_sigma + inv_s2 * n
    b = -s01 / det_sigma + inv_s2 * s1
    c = s00 / det_sigma + inv_s2 * s2
    det_a = a * c - b * b
    quad = inv_s2 * rr - inv_s2**2 * (c * r0**2 - 2.0 * b * r0 * r1 + a * r1**2) / det_a
    logdet = n * pt.log(sigma**2) + pt.log(det_sigma) + pt.log(det_a)
    return -0.5 * pt.sum(n * np.log(2.0 * np.pi) + logdet + quad)


def _draw_marginal_effects(
    post: xr.Dataset, arrays: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Draws of the scaled random effects given the marginal model's posterior draws.

    Returns an array of shape (chain, draw, patient, 2).
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
    r = arrays["y_std"] - fixed  # (C, D, N)
    onehot = np.zeros((t.shape[0], n_pat))
    onehot[np.arange(t.shape[0]), pidx] = 1.0
    n, s1, s2 = onehot.sum(0), t @ onehot, (t * t) @ onehot
    r0, r1 = r @ onehot, (r * t) @ onehot
    l00, l10, l11 = tau[..., 0], tau[..., 1] * rho, tau[..., 1] * np.sqrt(1.0 - rho**2)
    s00, s01, s11 = l00**2, l00 * l10, l10**2 + l11**2
    det_s = (l00 * l11) ** 2
    inv_s2 = 1.0 / sigma**2
    a = (s11 / det_s)[..., None] + inv_s2[..., None] * n
    b = (-s01 / det_s)[..., None] + inv_s2[..., None] * s1
    c = (s00 / det_s)[..., None] + inv_s2[..., None] * s2
    det_a = a * c - b * b
    # A^{-1} = [[c, -b], [-b, a]] / det_a; mean = A^{-1} Z^T r / sigma^2
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


def build_trajectory_model(
    data: pd.DataFrame,
    site: str = "spine",
    *,
    covariates: tuple[str, ...] | list[str] = (),
    priors: TrajectoryPriors | None = None,
    likelihood: Likelihood = "normal",
    parameterisation: Parameterisation | Literal["auto"] = "auto",
) -> TrajectoryModel:
    r"""Build the hierarchical trajectory model for one site (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        Long format, one row per patient-visit (``patient_id``, ``month``, ``bmd_spine`` /
        ``bmd_femoral_neck``, ``responder`` and the covariates). Rows with a missing outcome are
        dropped; a missing responder status raises.
    site : {"spine", "femoral_neck"}
    covariates : sequence of str, default ()
        Extra linear terms, e.g. ``("age", "sex", "bmi")``.
    priors : TrajectoryPriors, optional
        Defaults to ``TrajectoryPriors()``.
    likelihood : {"normal", "student_t"}
    parameterisation : {"centred_intercept", "noncentred", "centred"}

    Returns
    -------
    TrajectoryModel
    """
    import pymc as pm
    import pytensor.tensor as pt

    if likelihood not in ("normal", "student_t"):
        raise ValueError(f"likelihood must be 'normal' or 'student_t', got {likelihood!r}")
    if parameterisation == "auto":
        parameterisation = "marginal" if likelihood == "normal" else "centred_intercept"
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(f"parameterisation must be 'auto' or one of {PARAMETERISATIONS}")
    if parameterisation == "marginal" and likelihood != "normal":
        raise ValueError("the marginal parameterisation needs the normal likelihood")
    covariates = tuple(covariates)
    priors = priors if priors is not None else TrajectoryPriors()
    prep = prepare_trajectory_data(data, site, covariates)
    arrays = _data_arrays(prep, priors)

    coords: dict[str, Any] = {
        "obs": np.arange(prep.n_obs),
        "patient": prep.patient_ids,
        "effect": ["intercept", "slope"],
        "coef": list(COEF_NAMES),
        "group": list(GROUP_NAMES),
        "prior_field": list(TrajectoryPriors.FIELDS),
    }
    if covariates:
        coords["covariate"] = list(covariates)

    with pm.Model(coords=coords) as m:
        y_std = pm.Data("y_std", arrays["y_std"], dims="obs")
        t = pm.Data("t", arrays["t"], dims="obs")
        pidx = pm.Data("patient_idx", arrays["patient_idx"], dims="obs")
        resp = pm.Data("responder", arrays["responder"], dims="patient")
        y_loc = pm.Data("y_loc", arrays["y_loc"])
        y_scale = pm.Data("y_scale", arrays["y_scale"])
        ps = pm.Data("prior", arrays["prior"], dims="prior_field")

        beta = pm.Normal("beta_std", mu=0.0, sigma=ps[:4], dims="coef")
        # Sigma = diag(tau) Omega diag(tau); for a 2x2 correlation matrix LKJ(eta) is exactly
        # (rho + 1) / 2 ~ Beta(eta, eta), since det(Omega)^(eta - 1) = (1 - rho^2)^(eta - 1).
        # (pm.LKJCorr gives the same prior but adds ~30 s to a cold numba compile.)
        tau = pm.HalfNormal("tau_std", sigma=ps[5:7], dims="effect")
        w = pm.Beta("corr_beta", alpha=ps[8], beta=ps[8])
        rho = 2.0 * w - 1.0
        l00, l10, l11 = tau[0], tau[1] * rho, tau[1] * pt.sqrt(1.0 - rho**2)
        # patient-level means of intercept and slope (scaled units)
        m0 = beta[0] + beta[2] * resp
        m1 = beta[1] + beta[3] * resp
        fixed = 0.0
        if covariates:
            x_std = pm.Data("x_std", arrays["x_std"], dims=("obs", "covariate"))
            x_scale = pm.Data("x_scale", arrays["x_scale"], dims="covariate")
            gamma_std = pm.Normal("gamma_std", 0.0, ps[4], dims="covariate")
            fixed = pt.dot(x_std, gamma_std)
            pm.Deterministic("gamma", y_scale * gamma_std / x_scale, dims="covariate")
        sigma_std = pm.HalfNormal("sigma_std", sigma=ps[7])

        if parameterisation == "marginal":
            resid = y_std - (m0[pidx] + m1[pidx] * t + fixed)
            pm.Potential(
                "y_marginal",
                _marginal_loglik(resid, t, pidx, resp.shape[0], l00, l10, l11, sigma_std),
            )
        else:
            u0, u1 = _latent_effects(parameterisation, m0, m1, l00, l10, l11)
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

    return TrajectoryModel(
        pymc_model=m,
        site=site,
        likelihood=likelihood,
        parameterisation=parameterisation,
        covariates=covariates,
        priors=priors,
        prepared=prep,
        data_values=arrays,
    )


# ---------------------------------------------------------------------------------------------
# bambi
# ---------------------------------------------------------------------------------------------


@dataclass
class BambiLMM:
    """A built bambi model, in the shape :func:`analysis.fitting.sample` expects.

    Attributes
    ----------
    bambi_model : bambi.Model
        Built (``bambi_model.build()`` has run); its PyMC model is
        ``bambi_model.backend.model``.
    formula : str
    data : DataFrame
        The rows bambi saw (outcome column ``bmd``).
    """

    bambi_model: Any
    formula: str
    data: pd.DataFrame
    site: str
    priors: dict[str, Any] | None = None
    data_values: dict[str, np.ndarray] = field(default_factory=dict)
    structure_key: str | None = None  # data are baked in as constants: compile per object

    @property
    def pymc_model(self) -> Any:
        return self.bambi_model.backend.model

    @property
    def trace_vars(self) -> list[str]:
        """Everything but the per-row likelihood parameters (bambi drops them too)."""
        m = self.pymc_model
        lik_params = set(self.bambi_model.family.likelihood.params)
        return [
            v.name
            for v in m.free_RVs + m.deterministics
            if not (v.name in lik_params and v in m.deterministics)
        ]

    @property
    def diagnostic_vars(self) -> None:
        return None  # every variable left after postprocess

    def describe(self) -> dict[str, Any]:
        return {
            "model": "bambi_lmm",
            "formula": self.formula,
            "site": self.site,
            "priors": None if self.priors is None else {k: str(v) for k, v in self.priors.items()},
            "n_obs": int(len(self.data)),
        }

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        """Drop the ``_offset`` variables and undo bambi's predictor centring of the intercept.

        This is what ``bambi.Model.fit`` does after sampling (its backend's ``_clean_results``).
        """
        return self.bambi_model.backend._clean_results(
            dt, omit_offsets=True, include_response_params=False
        )


def bambi_lmm(
    data: pd.DataFrame,
    formula: str = "bmd ~ month * responder + (1 + month | patient_id)",
    priors: dict[str, Any] | None = None,
    *,
    site: str = "spine",
    **model_kwargs: Any,
) -> BambiLMM:
    """Build a bambi mixed model from a user formula, to sample with ``analysis.fitting.sample``.

    Parameters
    ----------
    data : DataFrame
        Long format (see :func:`build_trajectory_model`). A ``bmd`` column is added from the
        site's column when absent; rows with a missing ``bmd`` are dropped.
    formula : str
        Any bambi formula. The default has time in months and bambi's default (weakly
        informative, data-scaled) priors; its group effects are non-centred and uncorrelated.
    priors : dict, optional
        Passed to ``bambi.Model(priors=...)``.
    site : {"spine", "femoral_neck"}
    **model_kwargs
        Passed to ``bambi.Model`` (e.g. ``family``, ``center_predictors``).

    Returns
    -------
    BambiLMM
    """
    import bambi as bmb

    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}")
    df = data.copy()
    if "bmd" not in df.columns:
        df["bmd"] = df[SITES[site]]
    df = df.loc[df["bmd"].notna()].reset_index(drop=True)
    if "responder" in df.columns:
        df["responder"] = _as_bool_responder(df["responder"])
    if "patient_id" in df.columns:
        df["patient_id"] = df["patient_id"].astype(str)
    model = bmb.Model(formula, df, priors=priors, **model_kwargs)
    model.build()
    return BambiLMM(bambi_model=model, formula=formula, data=df, site=site, priors=priors)
