r"""The MMRM of Bayesian multiple imputation (rbmi's ``method_bayes``), with a generic design.

The imputation model of reference-based and MAR multiple imputation is an MMRM whose design the
caller builds (visit, group, visit-by-group, baseline, covariates, in any coding). This module
fits it by MCMC so that every imputation can use its own posterior draw :math:`(\beta_l,
\Sigma_l)`; :func:`analysis.sensitivity.ice.bayes_draws.mmrm_posterior_draws` does the sampling.
:mod:`models.mmrm` is the Bayesian MMRM of the primary analysis (a fixed formula, its own priors);
this is its generic-design variant and shares its building blocks (:mod:`models.lkj`,
:mod:`models.unrolled_cholesky`).

The model
---------
Patient :math:`i = 1, \dots, n` has covariates :math:`X_i \in \mathbb{R}^{m \times p}` (row
:math:`j` at visit :math:`j`) and values :math:`y_{ij}` at the visits :math:`S_i \subseteq
\{1, \dots, m\}` that enter the likelihood (``mask``):

.. math::

    y_{i, S_i} \sim \mathrm{MVN}\bigl(X_{i, S_i}\, \beta,\ \Sigma_{S_i S_i}\bigr), \qquad
    \Sigma = \mathrm{diag}(\sigma)\, \Omega\, \mathrm{diag}(\sigma),

with an unstructured :math:`\Sigma` (:math:`m(m+1)/2` parameters).

Priors (weakly informative, set from the data's scale)
-------------------------------------------------------
A generic design has no known intercept, scale or coding, so the priors are built from a *pilot
fit* that is invariant to all three: the pooled OLS fit of the values in the likelihood, the
pairwise-complete covariance :math:`\Sigma_0` of its residuals (eigenvalues floored at
:math:`10^{-3}` of their mean), and the GLS fit at :math:`\Sigma_0`,

.. math::

    F_0 = \sum_i X_{i S_i}^\top (\Sigma_{0, S_i S_i})^{-1} X_{i S_i}, \qquad
    b_0 = F_0^{-1} \sum_i X_{i S_i}^\top (\Sigma_{0, S_i S_i})^{-1} y_{i S_i}.

Then, with :math:`n` the number of patients with at least one value and :math:`s_v =
\Sigma_{0, vv}^{1/2}` the pilot residual SD at visit :math:`v` (the pooled residual SD for a visit
with fewer than two values),

.. math::

    \beta \sim \mathrm{N}\bigl(b_0,\ \tfrac{n}{k_\beta}\, F_0^{-1}\bigr), \qquad
    \sigma_v \sim \mathrm{N}^+\bigl(0,\ c_\sigma s_v\bigr), \qquad
    \Omega \sim \mathrm{LKJ}(\eta),

with :class:`ImputationMmrmPriors` defaults :math:`k_\beta = 1`, :math:`c_\sigma = 2.5`,
:math:`\eta = 1`. The prior of :math:`\beta` is the *unit-information* prior (Kass & Wasserman
1995): a normal centred at the pilot estimate whose information is that of :math:`k_\beta`
average patients, i.e. about :math:`1/(n + 1)` of the data's, so on the scale of every
coefficient it is about :math:`\sqrt n` times wider than the posterior; and it is equivariant:
recoding the design (:math:`X \to X A` for an invertible :math:`A`, e.g. another contrast coding
or other units), scaling :math:`y` and shifting it along the design's columns (e.g. by a constant
when the design spans an intercept) transform the prior exactly as they transform the data. The
prior of :math:`\sigma_v` has its median at :math:`1.7\,s_v` and puts 95% below
:math:`4.9\,s_v` (:math:`s_v` is the pilot residual SD, near :math:`\sigma_v`); :math:`\eta = 1`
is uniform over correlation matrices. Centring on a data estimate uses the data twice, but
with weight :math:`1/(n+1)`: the posterior means agree with REML to a small fraction of a
posterior SD (tested).

Parameterisation
----------------
The sampler sees unit-scale parameters: :math:`\beta = b_0 + T z` with :math:`T T^\top =
F_0^{-1}` (lower Cholesky) and :math:`z_k \sim \mathrm{N}(0, (n/k_\beta)^{1/2})`, whose posterior
is close to :math:`\mathrm{N}(\cdot, I)` whatever the design's coding or collinearity;
:math:`\sigma_v = s_v u_v`, :math:`u_v \sim \mathrm{N}^+(0, c_\sigma)`; the Cholesky factor of
:math:`\Omega` from its canonical partial correlations (:func:`models.lkj.lkj_corr_cholesky`, the
prior of ``pm.LKJCholeskyCov`` in a graph that pickles into the engine's graph cache).

Likelihood
----------
Every missingness pattern, intermittent or monotone, and :math:`m = 1` are handled by the masked
covariance of :mod:`models.mmrm`: with :math:`W_i = \mathrm{diag}(w_i)` the mask of patient
:math:`i`,

.. math::

    \tilde\Sigma_i = W_i \Sigma W_i + (I - W_i), \qquad \tilde r_i = W_i (y_i - X_i\beta),
    \qquad \log|\tilde\Sigma_i| = \log|\Sigma_{S_i S_i}|, \quad
    \tilde r_i^\top \tilde\Sigma_i^{-1} \tilde r_i
    = r_{i S_i}^\top \Sigma_{S_i S_i}^{-1} r_{i S_i},

so the log-likelihood is exactly :math:`\sum_i \log \mathrm{MVN}(y_{i S_i}; X_{i S_i}\beta,
\Sigma_{S_i S_i})` (one multivariate normal per distinct pattern on its sub-covariance, summed
over the pattern's patients), computed by the unrolled Cholesky factorisation of
:func:`models.unrolled_cholesky.unrolled_logdet_quad`. The graph therefore holds no per-pattern
shapes: the number of patients, the missingness patterns, the data and the priors are all
``pm.Data``, and only :math:`(m, p)` shape the compiled model (:attr:`ImputationMmrmModel.
structure_key`): every refit with the same numbers of visits and coefficients reuses one
compilation (:func:`analysis.engine.sampling.sample`).

Stored quantities (original scale)
----------------------------------
``beta`` (dims ``coef``), ``Sigma`` (dims ``visit, visit_col``), ``sd_visit`` (dims ``visit``,
:math:`\sigma_v`) and, for :math:`m \ge 2`, ``corr_visit`` (dims ``visit_pair``: the correlations
:math:`\Omega_{vw}`, :math:`v > w`, row-major over the strictly lower triangle, labels
``"a:b"``). ``beta``, ``sd_visit`` and ``corr_visit`` are the diagnostic variables.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from models.lkj import lkj_corr_cholesky
from models.unrolled_cholesky import unrolled_logdet_quad

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "TRACE_VARS",
    "ImputationMmrmData",
    "ImputationMmrmModel",
    "ImputationMmrmPriors",
    "build_imputation_mmrm",
    "imputation_mmrm_arrays",
    "prepare_imputation_mmrm_data",
]

#: The variables stored in the posterior (original scale; ``corr_visit`` only for m >= 2).
TRACE_VARS: tuple[str, ...] = ("beta", "Sigma", "sd_visit", "corr_visit")

_MODEL_VERSION = 1  # bump when the graph built below changes (part of the compile-cache key)


@dataclass(frozen=True)
class ImputationMmrmPriors:
    r"""Prior constants (module docstring, *Priors*); all are data (no recompilation).

    Attributes
    ----------
    beta_patients : float
        :math:`k_\beta`: the prior of :math:`\beta` carries the information of this many
        average patients (1: the unit-information prior); smaller is vaguer.
    sd_scale : float
        :math:`c_\sigma`: :math:`\sigma_v \sim N^+(0, c_\sigma s_v)`.
    lkj_eta : float
        :math:`\eta` of :math:`\Omega \sim \mathrm{LKJ}(\eta)` (1: uniform).
    """

    beta_patients: float = 1.0
    sd_scale: float = 2.5
    lkj_eta: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")


@dataclass(frozen=True)
class ImputationMmrmData:
    r"""The arrays of one fit and the pilot fit its priors come from.

    Attributes
    ----------
    x : ndarray, (n, m, p)
        Covariates, zero where ``mask`` is false.
    y : ndarray, (n, m)
        Values, zero where ``mask`` is false.
    mask : ndarray of bool, (n, m)
    beta_center : ndarray, (p,)
        :math:`b_0`, the GLS estimate at the pilot covariance.
    beta_chol : ndarray, (p, p)
        :math:`T`, lower Cholesky factor of :math:`F_0^{-1}`.
    sigma_pilot : ndarray, (m, m)
        :math:`\Sigma_0`.
    sd_pilot : ndarray, (m,)
        :math:`s_v`.
    n_informative : int
        Patients with at least one value in the likelihood.
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    beta_center: np.ndarray
    beta_chol: np.ndarray
    sigma_pilot: np.ndarray
    sd_pilot: np.ndarray
    n_informative: int

    @property
    def n_patients(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_visits(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_coef(self) -> int:
        return int(self.x.shape[2])

    @property
    def n_obs(self) -> int:
        return int(self.mask.sum())

    def patterns(self) -> dict[str, int]:
        """Number of patients per missingness pattern (``"1101"``: visit 3 not used)."""
        keys, counts = np.unique(self.mask.astype(np.int8), axis=0, return_counts=True)
        return {"".join(map(str, k)): int(c) for k, c in zip(keys, counts)}


def _pairwise_cov(e: np.ndarray, mask: np.ndarray, pooled_var: float) -> np.ndarray:
    """Pairwise-complete second moments of residuals, diagonal from >= 2 values (else the pooled
    variance), eigenvalues floored at 1e-3 of their mean (positive definite)."""
    mf = mask.astype(float)
    cnt = mf.T @ mf
    s = (e * mf).T @ (e * mf) / np.maximum(cnt, 1.0)
    s[cnt == 0] = 0.0
    diag_ok = np.diag(cnt) >= 2
    idx = np.flatnonzero(~diag_ok)
    s[idx, :] = 0.0
    s[:, idx] = 0.0
    s[idx, idx] = pooled_var
    s = 0.5 * (s + s.T)
    w, v = np.linalg.eigh(s)
    floor = 1e-3 * max(float(np.mean(np.diag(s))), np.finfo(float).tiny)
    return (v * np.maximum(w, floor)) @ v.T


def prepare_imputation_mmrm_data(x: Any, y: Any, mask: Any) -> ImputationMmrmData:
    r"""Check the inputs and run the pilot fit of the priors (module docstring).

    Parameters
    ----------
    x : array_like, (n, m, p)
        Row ``j`` of ``x[i]``: the covariates of patient ``i`` at visit ``j`` (may be NaN where
        ``mask`` is false).
    y : array_like, (n, m)
        Values; NaN (or anything) where ``mask`` is false.
    mask : array_like of bool, (n, m)
        The values that enter the likelihood.

    Returns
    -------
    ImputationMmrmData

    Raises
    ------
    ValueError
        Wrong shapes, a non-finite value or covariate under ``mask``, no more values than
        coefficients, or a design whose used rows are rank deficient (:math:`\beta` not
        identified).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    mask = np.asarray(mask)
    if x.ndim != 3:
        raise ValueError(f"x must be (n, m, p), got shape {x.shape}")
    n, m, p = x.shape
    if y.shape != (n, m) or mask.shape != (n, m):
        raise ValueError(f"y and mask must be (n, m) = {(n, m)}, got {y.shape} and {mask.shape}")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must be boolean")
        mask = mask.astype(bool)
    if m < 1 or p < 1:
        raise ValueError(f"need at least one visit and one coefficient, got m={m}, p={p}")
    if not np.isfinite(y[mask]).all():
        raise ValueError("y has non-finite values where mask is true")
    if not np.isfinite(x[mask]).all():
        raise ValueError("x has non-finite covariates where mask is true")
    x = np.where(mask[:, :, None], x, 0.0)
    y = np.where(mask, y, 0.0)
    xo, yo = x[mask], y[mask]
    n_obs = int(mask.sum())
    if n_obs <= p:
        raise ValueError(f"{n_obs} values in the likelihood for {p} coefficients")
    rank = np.linalg.matrix_rank(xo)
    if rank < p:
        raise ValueError(f"the design of the used values has rank {rank} < p = {p}: beta is not "
                         "identified")
    b_ols = np.linalg.lstsq(xo, yo, rcond=None)[0]
    e = np.where(mask, y - x @ b_ols, 0.0)
    pooled = float(np.sum(e**2) / (n_obs - p))
    if not pooled > 0:  # an exact fit: any positive scale will do
        pooled = max(float(np.mean(yo**2)), 1.0) * 1e-12
    sigma0 = _pairwise_cov(e, mask, pooled)

    # GLS at the pilot covariance, pattern by pattern
    info = np.zeros((p, p))
    score = np.zeros(p)
    keys, inverse = np.unique(mask, axis=0, return_inverse=True)
    for k, key in enumerate(keys):
        if not key.any():
            continue
        rows = np.flatnonzero(inverse.reshape(-1) == k)
        sub = np.linalg.inv(sigma0[np.ix_(key, key)])
        xk = x[rows][:, key, :]  # (r, |S|, p)
        sx = np.einsum("st,rtp->rsp", sub, xk)
        info += np.einsum("rsp,rsq->pq", xk, sx)
        score += np.einsum("rsp,rs->p", sx, y[rows][:, key])
    info = 0.5 * (info + info.T)
    chol_info = np.linalg.cholesky(info)
    b0 = np.linalg.solve(info, score)
    # T with T T' = F^-1: F = C C'  =>  F^-1 = C^-T C^-1; lower-triangular T from its Cholesky
    cinv = np.linalg.inv(chol_info)
    t = np.linalg.cholesky(cinv.T @ cinv)
    return ImputationMmrmData(
        x=x,
        y=y,
        mask=mask,
        beta_center=b0,
        beta_chol=t,
        sigma_pilot=sigma0,
        sd_pilot=np.sqrt(np.diag(sigma0)),
        n_informative=int(mask.any(axis=1).sum()),
    )


def imputation_mmrm_arrays(prep: ImputationMmrmData, priors: ImputationMmrmPriors) -> dict[str, np.ndarray]:
    """Values of the model's ``pm.Data`` containers, by name (no ``lkj_eta`` when m = 1)."""
    arrays = {
        "x": prep.x,
        "y": prep.y,
        "mask": prep.mask.astype(float),
        "beta_center": prep.beta_center,
        "beta_chol": prep.beta_chol,
        "sd_pilot": prep.sd_pilot,
        "z_sd": np.asarray(np.sqrt(prep.n_informative / priors.beta_patients)),
        "sd_unit_scale": np.asarray(float(priors.sd_scale)),
    }
    if prep.n_visits > 1:
        arrays["lkj_eta"] = np.asarray(float(priors.lkj_eta))
    return arrays


def _pair_labels(labels: list[str]) -> list[str]:
    """``"a:b"`` for the strictly lower triangle (row-major, as ``np.tril_indices(k, -1)``)."""
    rows, cols = np.tril_indices(len(labels), -1)
    return [f"{labels[c]}:{labels[r]}" for r, c in zip(rows, cols)]


def _labels(given: Any, k: int, what: str, default: str) -> list[str]:
    if given is None:
        return [f"{default}{j}" for j in range(k)]
    out = [str(v) for v in given]
    if len(out) != k or len(set(out)) != k:
        raise ValueError(f"{what} must be {k} distinct labels, got {given!r}")
    return out


@dataclass
class ImputationMmrmModel:
    """A built imputation MMRM plus what :func:`analysis.engine.sampling.sample` needs.

    Attributes
    ----------
    pymc_model : pymc.Model
    prepared : ImputationMmrmData
        The data currently in the model.
    priors : ImputationMmrmPriors
    data_values : dict of str to ndarray
        Current value of every ``pm.Data`` container, by name.
    visit_labels, coef_names : list of str
    """

    pymc_model: Any
    prepared: ImputationMmrmData
    priors: ImputationMmrmPriors
    visit_labels: list[str]
    coef_names: list[str]
    data_values: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def structure_key(self) -> str:
        """Hash of what shapes the graph: the numbers of visits and coefficients (patients,
        patterns, data and priors are data)."""
        spec = {"model": "rajak.imputation_mmrm", "version": _MODEL_VERSION,
                "n_visits": self.prepared.n_visits, "n_coef": self.prepared.n_coef}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def trace_vars(self) -> list[str]:
        names = set(self.pymc_model.named_vars)
        return [v for v in TRACE_VARS if v in names]

    @property
    def diagnostic_vars(self) -> list[str]:
        names = set(self.pymc_model.named_vars)
        return [v for v in ("beta", "sd_visit", "corr_visit") if v in names]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored with fits)."""
        p = self.prepared
        return {
            "model": "imputation_mmrm",
            "n_patients": p.n_patients,
            "n_visits": p.n_visits,
            "n_coef": p.n_coef,
            "n_obs": p.n_obs,
            "visits": list(self.visit_labels),
            "coefs": list(self.coef_names),
            "patterns": p.patterns(),
            "priors": asdict(self.priors),
            "beta_center": p.beta_center.tolist(),
            "sd_pilot": p.sd_pilot.tolist(),
        }

    def set_data(self, x: Any = None, y: Any = None, mask: Any = None, *,
                 priors: ImputationMmrmPriors | None = None) -> None:
        """Swap in new data (all three of ``x``, ``y``, ``mask``; any number of patients and any
        patterns, the same ``m`` and ``p``) and/or priors without rebuilding the graph."""
        given = [v is not None for v in (x, y, mask)]
        if any(given) and not all(given):
            raise ValueError("pass x, y and mask together")
        prep = prepare_imputation_mmrm_data(x, y, mask) if all(given) else self.prepared
        if (prep.n_visits, prep.n_coef) != (self.prepared.n_visits, self.prepared.n_coef):
            raise ValueError(f"the model has (m, p) = {(self.prepared.n_visits, self.prepared.n_coef)}, "
                             f"the data {(prep.n_visits, prep.n_coef)}: build a new model")
        priors = priors if priors is not None else self.priors
        arrays = imputation_mmrm_arrays(prep, priors)
        m = self.pymc_model
        m.set_dim("patient", prep.n_patients, coord_values=[str(i) for i in range(prep.n_patients)])
        for name, value in arrays.items():
            m.set_data(name, value)
        self.prepared, self.priors, self.data_values = prep, priors, arrays

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        """Hook called by :func:`analysis.engine.sampling.sample`; nothing to add."""
        return dt


def build_imputation_mmrm(
    x: Any,
    y: Any,
    mask: Any,
    *,
    priors: ImputationMmrmPriors | None = None,
    visit_labels: Any = None,
    coef_names: Any = None,
) -> ImputationMmrmModel:
    r"""Build the imputation MMRM (module docstring) for a generic design.

    Parameters
    ----------
    x : array_like, (n, m, p)
        Row ``j`` of ``x[i]`` holds the covariates of patient ``i`` at visit ``j``.
    y : array_like, (n, m)
        Values, NaN where not used.
    mask : array_like of bool, (n, m)
        The values that enter the likelihood.
    priors : ImputationMmrmPriors, optional
        Default ``ImputationMmrmPriors()``.
    visit_labels, coef_names : sequence of str, optional
        Coordinates of the ``visit`` and ``coef`` dims (default ``v0, v1, ...`` and
        ``b0, b1, ...``).

    Returns
    -------
    ImputationMmrmModel
        :func:`analysis.engine.sampling.sample` fits it.

    Examples
    --------
    >>> model = build_imputation_mmrm(x, y, mask)  # doctest: +SKIP
    >>> fit = sample(model, draws=500, tune=500, chains=2, seed=1)  # doctest: +SKIP
    """
    import pymc as pm
    import pytensor.tensor as pt

    priors = priors if priors is not None else ImputationMmrmPriors()
    prep = prepare_imputation_mmrm_data(x, y, mask)
    arrays = imputation_mmrm_arrays(prep, priors)
    m_vis, p = prep.n_visits, prep.n_coef
    visits = _labels(visit_labels, m_vis, "visit_labels", "v")
    coefs = _labels(coef_names, p, "coef_names", "b")
    coords: dict[str, Any] = {
        "patient": [str(i) for i in range(prep.n_patients)],
        "visit": visits,
        "visit_col": visits,
        "coef": coefs,
        "coef_col": coefs,
    }
    if m_vis > 1:
        coords["visit_pair"] = _pair_labels(visits)
    with pm.Model(coords=coords) as model:
        xd = pm.Data("x", arrays["x"], dims=("patient", "visit", "coef"))
        yd = pm.Data("y", arrays["y"], dims=("patient", "visit"))
        wd = pm.Data("mask", arrays["mask"], dims=("patient", "visit"))
        b0 = pm.Data("beta_center", arrays["beta_center"], dims="coef")
        tchol = pm.Data("beta_chol", arrays["beta_chol"], dims=("coef", "coef_col"))
        s_v = pm.Data("sd_pilot", arrays["sd_pilot"], dims="visit")
        z_sd = pm.Data("z_sd", arrays["z_sd"])
        c_sd = pm.Data("sd_unit_scale", arrays["sd_unit_scale"])

        z = pm.Normal("beta_white", 0.0, z_sd, dims="coef")
        beta = pm.Deterministic("beta", b0 + pt.dot(tchol, z), dims="coef")
        sd_unit = pm.HalfNormal("sd_visit_unit", c_sd, dims="visit")
        sd = s_v * sd_unit
        if m_vis > 1:
            eta = pm.Data("lkj_eta", arrays["lkj_eta"])
            corr_l = lkj_corr_cholesky("corr_visit_cpc", m_vis, eta)
        else:
            corr_l = pt.ones((1, 1))
        chol = sd[:, None] * corr_l
        cov = pt.dot(chol, chol.T)

        mu = pt.tensordot(xd, beta, axes=[[2], [0]])
        resid = wd * (yd - mu)
        cols = [wd[:, j] for j in range(m_vis)]
        a = [
            [cols[i] * cols[j] * cov[i, j] + (1.0 - cols[i] if i == j else 0.0)
             for j in range(m_vis)]
            for i in range(m_vis)
        ]
        logdet, quad = unrolled_logdet_quad(a, [resid[:, j] for j in range(m_vis)])
        n_obs = pt.sum(wd)
        pm.Potential("y_marginal", -0.5 * (n_obs * np.log(2.0 * np.pi) + pt.sum(logdet + quad)))

        pm.Deterministic("Sigma", cov, dims=("visit", "visit_col"))
        pm.Deterministic("sd_visit", sd, dims="visit")
        if m_vis > 1:
            rows, cols_ = np.tril_indices(m_vis, -1)
            omega = pt.dot(corr_l, corr_l.T)
            pm.Deterministic("corr_visit", omega[rows, cols_], dims="visit_pair")

    return ImputationMmrmModel(
        pymc_model=model,
        prepared=prep,
        priors=priors,
        visit_labels=visits,
        coef_names=coefs,
        data_values=arrays,
    )
