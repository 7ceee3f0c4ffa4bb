r"""Joint multi-site model: BMD trajectories at two or more sites with correlated patient effects.

The data preparation (:func:`prepare_joint_data`, :class:`JointData`, :data:`SITE_NAMES`) is in
:mod:`models.joint_data` and re-exported here.

The model
---------
For patient :math:`i`, site :math:`s = 1, \dots, S` (:math:`S \ge 2`; the twin's are spine and
femoral neck) and visit :math:`j` (time :math:`t_{isj}` in years since baseline, indicators
:math:`g_{ik}` of the non-reference group levels :math:`k = 1, \dots, K - 1`, covariates
:math:`x_{isj}`), each site follows the trajectory model of :mod:`models.trajectory` with its own
fixed effects and residual SD,

.. math::

    \mathrm{bmd}_{isj} = (b_{s0} + u_{is0}) + (b_{s1} + u_{is1})\, t_{isj}
        + \sum_k \bigl(b_{s,2k} g_{ik} + b_{s,2k+1} g_{ik} t_{isj}\bigr)
        + x_{isj}^\top \gamma_s + e_{isj}, \qquad e_{isj} \sim N(0, \sigma_s),

(a responder study: :math:`K = 2`, :math:`b_{s2} r_i + b_{s3} r_i t_{isj}`) and the :math:`2S`
patient effects are correlated within *and across* sites,

.. math::

    u_i = (u_{i1,0},\, u_{i1,1},\, \dots,\, u_{iS,0},\, u_{iS,1})^\top \sim \mathrm{MVN}(0, \Sigma),
    \qquad \Sigma = \mathrm{diag}(\tau)\, \Omega\, \mathrm{diag}(\tau), \qquad
    \Omega \sim \mathrm{LKJ}(\eta).

The between-site correlations of the patients' intercepts (baseline BMD) and of their slopes
are :math:`\Omega_{s0,s'0}` and :math:`\Omega_{s1,s'1}`.
The prior SDs are :math:`\tau_{s0} \sim N^+(0, \text{sd\_intercept\_scale})`,
:math:`\tau_{s1} \sim N^+(0, \text{sd\_slope\_scale})` (see *Covariance parameterisation*).

Marginal likelihood
-------------------
As the trajectory model's default, the patient effects are integrated out analytically; the
sampler sees only :math:`b, \gamma, \sigma` and the factors of :math:`\Sigma` (20 parameters
for two sites and two groups without covariates, whatever the number of patients). Patient
:math:`i`'s observations at all sites, :math:`y_i`, are :math:`\mathrm{MVN}(X_i b, V_i)` with :math:`V_i = R_i + Z_i \Sigma
Z_i^\top`, :math:`R_i = \mathrm{diag}(\sigma_{s(k)}^2)` and :math:`Z_i` block diagonal (rows
:math:`[1, t, 0, 0]` at the first of two sites, :math:`[0, 0, 1, t]` at the second). With
:math:`\Sigma = L L^\top`, fixed-part residuals :math:`\rho_i`,
:math:`D_i = Z_i^\top R_i^{-1} Z_i` (block diagonal: the 2 x 2 blocks
:math:`\sigma_s^{-2} \sum_j (1, t_{isj})^\top (1, t_{isj})`) and
:math:`c_i = Z_i^\top R_i^{-1} \rho_i`, Sylvester's determinant identity and the Woodbury
identity give

.. math::

    B_i = I_4 + L^\top D_i L, \qquad
    \log|V_i| = \sum_s n_{is} \log\sigma_s^2 + \log|B_i|, \qquad
    \rho_i^\top V_i^{-1} \rho_i = \sum_s \frac{\sum_j \rho_{isj}^2}{\sigma_s^2}
        - (L^\top c_i)^\top B_i^{-1} (L^\top c_i).

Only per-patient, per-site sums of :math:`1, t, t^2, \rho, t\rho, \rho^2` enter. :math:`B_i`
has all eigenvalues :math:`\ge 1`, so no :math:`\Sigma^{-1}` is formed and the likelihood stays
smooth as an SD goes to zero; its :math:`2S \times 2S` Cholesky factorisation is unrolled elementwise over
patients (:func:`models.unrolled_cholesky.unrolled_logdet_quad`). Measured on the twin: batched
``pt.linalg.cholesky`` + ``solve_triangular`` gave the same posterior but sampled 4-6x slower
and compiled ~3x slower from an empty cache; forming :math:`\Sigma^{-1} + D_i` unrolled made
PyTensor's graph rewrites take ~30 s on every (even warm-cache) compile, against ~5 s here. A
patient observed at some sites only is handled exactly (the other sites' sums are zero). The
patient effects ``u`` are drawn after sampling from their exact conditional
:math:`N(A_i^{-1} c_i, A_i^{-1})`, :math:`A_i^{-1} = (\Sigma^{-1} + D_i)^{-1} = L B_i^{-1}
L^\top`, given each posterior draw (:meth:`JointModel.postprocess`).

Covariance parameterisation
---------------------------
``covariance="separate"`` (default): :math:`\tau \sim N^+(0, \text{scale})` and the Cholesky
factor of :math:`\Omega \sim \mathrm{LKJ}(\eta)` built from its canonical partial correlations
(:mod:`models.lkj`; ``pm.LKJCorr`` gave the same prior but an unpicklable graph and a slower cold
compile), so :math:`L = \mathrm{diag}(\tau) L_\Omega`. ``covariance="packed"``: ``pm.LKJCholeskyCov`` with
:math:`\mathrm{HalfNormal}(1)` SDs, each row of the factor multiplied by its prior scale. Both
are the same prior. Measured on the twin and four twin-like simulated cohorts (see
:data:`COVARIANCE_BENCHMARK`), both pass the convergence verdict but the packed factor has
about half the effective sample size where an SD's posterior reaches zero (the femoral-neck
slope SD on 30-odd patients): its off-diagonal entries are unconstrained while the row norm
shrinks, whereas :math:`\log\tau` is a single direction in the separate form.

Scaling
-------
Each site's outcome is centred and scaled by its own observed mean and SD, covariates are
standardised per site, and the priors (:class:`models.trajectory.TrajectoryPriors`, on the data's
scale in g/cm^2, the same for every site; ``nu_*`` are unused) are divided by each site's SD.
They are data: one compiled model serves any data set and any priors
(:func:`models.joint_data.joint_data_arrays`).

Reproducibility
---------------
The same data, seed and settings give bit-identical draws within a process and between fresh
processes, whether the compile cache was cold or warm (``tests/models/test_joint.py``). This holds
because :mod:`models.runtime` compiles with PyTensor's ``numba__fastmath=False``. With fast-math
on (PyTensor's default) the first fit after a cold compile did not match later ones: the rewritten
graph was the same (identical ``debugprint``), but the numba-compiled log density and gradient,
called at fixed points, differed in the last bit (3 of 5 points) between a process that compiled
the code and one that loaded it from numba's disk cache (LLVM may reassociate and contract
floating-point operations under fast-math, and the two ended up optimised differently), and NUTS
amplified that (relative difference ~1e-11 after 30 tuning steps, unrelated draws soon after).
Turning fast-math off did not slow the joint model's sampling on the twin. With the default
``"separate"`` covariance the graph has no ``OpFromGraph`` and its rewritten functions go into the
graph cache (:mod:`analysis.engine.graph_cache`); ``"packed"`` (``pm.LKJCholeskyCov``) does not pickle and
is rewritten in every process.

Reported quantities (original scale, see :data:`REPORTED_VARS`)
-----------------------------------------------------------------
- ``b`` (dims ``site, coef``), ``gamma`` (``site, covariate``), ``sigma`` (``site``),
  ``sd_patient`` (``site, effect``), ``corr_patient`` (``site``: intercept-slope correlation
  within the site): as in :mod:`models.trajectory`, per site;
- ``corr_intercepts``, ``corr_slopes``: the between-site correlations of the patients'
  intercepts and of their slopes (scalars for two sites, dims ``site_pair`` for more);
  ``corr_effects`` (dims ``effect_pair``): all :math:`S(2S - 1)` correlations of :math:`\Omega`;
- ``baseline_mean``, ``change_end``, ``pct_change_end`` (dims ``site, group``),
  ``diff_change_end``, ``diff_pct_change_end`` (dims ``site, contrast``): the trajectory model's
  estimands per site at the endpoint (:mod:`models.trajectory`);
- ``u`` (dims ``patient, site, effect``): the patients' effects (added by ``postprocess``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from models.joint_data import (
    SITE_NAMES,
    JointData,
    joint_data_arrays,
    prepare_joint_data,
)
from models.lkj import lkj_corr_cholesky
from models.marginal import update_model_data
from models.marginal_effects import ON_REQUEST_ATTR, SEED_ATTR, per_patient_eager
from models.trajectory import TrajectoryPriors
from models.trajectory_data import COEF_NAMES, coef_names, contrast_names
from models.unrolled_cholesky import unrolled_logdet_quad

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr


__all__ = [  # with the names re-exported from models.joint_data
    "COVARIANCES",
    "COVARIANCE_BENCHMARK",
    "EFFECT_NAMES",
    "EFFECT_PAIRS",
    "REPORTED_VARS",
    "SITE_NAMES",
    "JointData",
    "JointModel",
    "build_joint_model",
    "effect_pairs",
    "prepare_joint_data",
]

#: Labels of the ``effect`` dim (per site).
EFFECT_NAMES: tuple[str, ...] = ("intercept", "slope")


def _pairs(n: int) -> tuple[tuple[int, int], ...]:
    """(row, col) of the strictly lower triangle of an n x n matrix, row-major."""
    return tuple((int(r), int(c)) for r, c in zip(*np.tril_indices(n, -1)))


def effect_pairs(sites: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Labels of ``corr_effects``: the strictly lower triangle of :math:`\\Omega` (effects
    ``<site>:intercept, <site>:slope`` per site), row-major, as ``"col~row"``."""
    eff = [f"{s}:{e}" for s in sites for e in EFFECT_NAMES]
    return tuple(f"{eff[c]}~{eff[r]}" for r, c in _pairs(len(eff)))


_PAIRS = _pairs(4)  # two sites: (row, col), row > col
#: Labels of ``corr_effects`` of the twin's two sites (:func:`effect_pairs`).
EFFECT_PAIRS: tuple[str, ...] = effect_pairs(SITE_NAMES)
#: Original-scale quantities reported by the model (``gamma`` only with covariates).
REPORTED_VARS: tuple[str, ...] = (
    "b",
    "gamma",
    "sigma",
    "sd_patient",
    "corr_patient",
    "corr_intercepts",
    "corr_slopes",
    "corr_effects",
    "u",
    "baseline_mean",
    "change_end",
    "pct_change_end",
    "diff_change_end",
    "diff_pct_change_end",
)

#: Parameterisations of the random-effects covariance (see the module docstring).
COVARIANCES: tuple[str, ...] = ("separate", "packed")
#: Geometry measurement behind the default (``bench_models.py --joint-geometry --cohorts 4
#: --seeds 2``): nutpie, 4 chains x 1000 draws after 1000 tuning, target_accept 0.9, on the
#: twin and four cohorts from ``simulate(Design(), seed=100..103)`` (46 patients each), two
#: sampler seeds each (10 fits). Per parameterisation: min and median over fits of the min bulk
#: ESS, min tail ESS, max R-hat, total divergences, min E-BFMI, fits passing the verdict. The
#: worst element is nearly always ``sd_patient[femoral_neck, slope]``. An earlier ``packed`` fit
#: of the twin (same posterior, batched-Cholesky likelihood) reached only min bulk ESS 124 and
#: R-hat 1.027.
COVARIANCE_BENCHMARK: dict[str, dict[str, float]] = {
    name: dict(zip(("min_ess_bulk", "median_min_ess_bulk", "min_ess_tail", "max_rhat",
                    "divergences", "min_ebfmi", "passed_of_10"), values))
    for name, values in {
        "separate": (1194, 1434, 816, 1.006, 0, 0.72, 10),
        "packed": (474, 782, 514, 1.008, 0, 0.76, 10),
    }.items()
}

Covariance = Literal["separate", "packed"]

_MODEL_VERSION = 3  # bump when the graph built below changes (part of the compile-cache key); 3: sites, groups


@dataclass
class JointModel:
    """A built joint multi-site model plus what :func:`analysis.engine.sampling.sample` needs to fit it.

    Attributes
    ----------
    pymc_model : pymc.Model
    covariates, priors, covariance, levels, group_column, time, endpoint_month
        The specification (see :func:`build_joint_model`).
    prepared : JointData
        The data currently in the model (its ``site_names`` are the ``site`` dim).
    data_values : dict of str to ndarray
        Current value of every ``pm.Data`` container, by name.
    trace_vars : None
        Store every variable.
    """

    pymc_model: Any
    covariates: tuple[str, ...]
    priors: TrajectoryPriors
    prepared: JointData
    covariance: str = "separate"
    data_values: dict[str, np.ndarray] = field(default_factory=dict)
    trace_vars: list[str] | None = None
    levels: tuple[str, ...] | None = None
    group_column: str = "analysis_group"
    time: str = "month"
    endpoint_month: float = 12.0

    @property
    def sites(self) -> tuple[str, ...]:
        return self.prepared.site_names

    @property
    def structure_key(self) -> str:
        spec = {"model": "rajak.joint", "version": _MODEL_VERSION, "covariance": self.covariance,
                "covariates": list(self.covariates), "n_sites": len(self.sites),
                "n_groups": len(self.prepared.levels)}  # priors and data are data
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def diagnostic_vars(self) -> list[str]:
        names = set(self.pymc_model.named_vars) | {"u"}  # u is drawn in postprocess
        return [v for v in REPORTED_VARS if v in names]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored with fits)."""
        p = self.prepared
        return {
            "model": "joint_multi_site_lmm",
            "sites": list(self.sites),
            "covariance": self.covariance,
            "covariates": list(self.covariates),
            "groups": list(p.levels),
            "time": self.time,
            "endpoint_month": self.endpoint_month,
            "priors": asdict(self.priors),
            "n_obs": p.n_obs_by_site(),
            "n_patients": p.n_patients,
            "y_loc": {s: p.sites[s].y_loc for s in self.sites},
            "y_scale": {s: p.sites[s].y_scale for s in self.sites},
        }

    def set_data(
        self, data: pd.DataFrame | None = None, priors: TrajectoryPriors | None = None
    ) -> None:
        """Swap in new data and/or priors without rebuilding the graph.

        Parameters
        ----------
        data : DataFrame, optional
            Same contract as for :func:`build_joint_model` (the same sites); any number of rows
            and patients.
        priors : TrajectoryPriors, optional
        """
        prep = (prepare_joint_data(data, self.covariates, sites=self.sites, levels=self.levels,
                                   group_column=self.group_column, time=self.time)
                if data is not None else self.prepared)
        priors = priors if priors is not None else self.priors
        arrays = joint_data_arrays(prep, priors, self.endpoint_month / 12.0)
        update_model_data(self.pymc_model, arrays, prep.n_obs, prep.patient_ids)
        self.prepared, self.priors, self.data_values = prep, priors, arrays

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        r"""Add ``u`` (patient, site, effect; g/cm^2 and g/cm^2/yr), drawn from its exact
        conditional :math:`N(A_i^{-1} c_i, A_i^{-1})` given each posterior draw, with an RNG
        seeded by ``seed``; above :func:`models.marginal_effects.per_patient_eager`'s size, not: the
        posterior's attributes say so and :meth:`patient_effects` draws them on request (as the LMM)."""
        post = dt["posterior"].to_dataset()
        if not per_patient_eager(self.prepared.n_patients, int(post.sizes["chain"] * post.sizes["draw"])):
            post.attrs.update({ON_REQUEST_ATTR: "on request", SEED_ATTR: int(seed)})
        else:
            post["u"] = self.patient_effects(post, seed=seed)
        dt["posterior"] = post
        return dt

    def patient_effects(self, post: xr.Dataset, seed: int | None = None, dtype: Any = np.float64) -> xr.DataArray:
        """The patient effects ``u`` (chain, draw, patient, site, effect): the posterior's own, or drawn
        on request as :meth:`postprocess` draws them (same draws for the same ``seed``, default the
        posterior's ``rajak_effects_seed``), stored as ``dtype``."""
        import xarray as xr

        if "u" in post:
            return post["u"].astype(dtype, copy=False)
        seed = int(post.attrs.get(SEED_ATTR, 0)) if seed is None else int(seed)
        u = _draw_effects(post, self.data_values, np.random.default_rng([seed, 11]))
        return xr.DataArray(u.astype(dtype, copy=False), dims=("chain", "draw", "patient", "site", "effect"),
                            coords={"patient": self.prepared.patient_ids, "site": list(self.sites),
                                    "effect": list(EFFECT_NAMES)})


def _sums(values: Any, pidx: Any, sidx: Any, n_patients: Any, n_sites: int = 2) -> Any:
    """Per (patient, site) sums of a per-row tensor, shape (n_patients, n_sites)."""
    import pytensor.tensor as pt

    return pt.inc_subtensor(pt.zeros((n_patients, n_sites))[pidx, sidx], values)


def _sandwich(
    low: dict[tuple[int, int], Any], d: dict[tuple[int, int], Any], c: list[Any]
) -> tuple[list[list[Any]], list[Any]]:
    r"""Entries of :math:`B = I + L^\top D L` and of :math:`L^\top c`, skipping known zeros.

    ``low`` holds the entries :math:`L_{ij}, j \le i` of a lower-triangular :math:`k \times k`
    factor, ``d`` the non-zero entries of a symmetric :math:`D` (both ways round), ``c`` a
    length-:math:`k` vector; entries broadcast over patients. Returns ``b[i][j]`` for
    :math:`j \le i` (the upper triangle is ``None``) and the list :math:`(L^\top c)_i`.
    """
    k = len(c)
    # M = D L first (each entry a short sum), then B = I + L^T M: fewer nodes for PyTensor
    dl: dict[tuple[int, int], Any] = {}
    for (p, q), dpq in d.items():
        for j in range(q + 1):  # L_qj is zero for j > q
            term = dpq * low[q, j]
            dl[p, j] = dl[p, j] + term if (p, j) in dl else term
    b: list[list[Any]] = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            acc: Any = 1.0 if i == j else 0.0
            for p in range(i, k):  # L_pi is zero for p < i
                if (p, j) in dl:
                    acc = acc + low[p, i] * dl[p, j]
            b[i][j] = acc
    lc = [sum(c[p] * low[p, i] for p in range(i, k)) for i in range(k)]
    return b, lc


def _draw_effects(post: xr.Dataset, arrays: dict[str, np.ndarray], rng: np.random.Generator
                  ) -> np.ndarray:
    """Draws of the patient effects (original scale) given the posterior draws.

    Returns an array of shape (chain, draw, patient, site, effect).
    """
    y_scale = arrays["y_scale"]  # (S,)
    n_sites = y_scale.shape[0]
    n_eff = 2 * n_sites
    beta = post["beta_std"].values  # (C, D, S, 2 + 2 n_contrasts)
    n_con = (beta.shape[-1] - 2) // 2
    sd = post["sd_patient"].values / y_scale[:, None]  # (C, D, S, 2) standardised
    sd_all = sd.reshape(*sd.shape[:2], n_eff)
    pairs = post["corr_effects"].values  # (C, D, n_eff (n_eff - 1) / 2)
    corr = np.broadcast_to(np.eye(n_eff), (*sd.shape[:2], n_eff, n_eff)).copy()
    for k, (r, c) in enumerate(_pairs(n_eff)):
        corr[..., r, c] = corr[..., c, r] = pairs[..., k]
    low = sd_all[..., :, None] * np.linalg.cholesky(corr)  # Sigma = L L^T, standardised
    sigma = post["sigma"].values / y_scale  # (C, D, S)
    t, pidx, sidx = arrays["t"], arrays["patient_idx"], arrays["site_idx"]
    gx = arrays.get("group_x")
    n_pat = gx.shape[0] if gx is not None else int(arrays["n_patients"])
    b = beta[..., sidx, :]  # (C, D, N, coef)
    fixed = b[..., 0] + b[..., 1] * t
    for k in range(n_con):
        g = gx[pidx, k]
        fixed = fixed + b[..., 2 + 2 * k] * g + b[..., 3 + 2 * k] * g * t
    if "gamma_std" in post:
        gam = post["gamma_std"].values[..., sidx, :]  # (C, D, N, K)
        fixed = fixed + np.einsum("cdnk,nk->cdn", gam, arrays["x_std"])
    rho = arrays["y_std"] - fixed  # (C, D, N)
    inv_s2 = 1.0 / sigma**2  # (C, D, S)
    # per (patient, site) sums as a sparse (row -> patient-site cell) map
    n_rows = t.shape[0]
    cell = sparse.csr_matrix(
        (np.ones(n_rows), (np.arange(n_rows), n_sites * pidx + sidx)), shape=(n_rows, n_sites * n_pat)
    )
    n, s1, s2 = ((cell.T @ v).reshape(n_pat, n_sites) for v in (np.ones(n_rows), t, t * t))
    cs = beta.shape[:2]
    r0 = (cell.T @ rho.reshape(-1, n_rows).T).T.reshape(*cs, n_pat, n_sites)
    r1 = (cell.T @ (rho * t).reshape(-1, n_rows).T).T.reshape(*cs, n_pat, n_sites)
    out = np.empty((*cs, n_pat, n_eff))
    for ch in range(cs[0]):  # one chain at a time: (D, P, 2S, 2S) arrays
        w = inv_s2[ch][:, None, :]  # (D, 1, S)
        d_mat = np.zeros((cs[1], n_pat, n_eff, n_eff))
        cvec = np.empty((cs[1], n_pat, n_eff))
        for k in range(n_sites):
            i0, i1 = 2 * k, 2 * k + 1
            d_mat[..., i0, i0] = w[..., k] * n[:, k]
            d_mat[..., i1, i0] = d_mat[..., i0, i1] = w[..., k] * s1[:, k]
            d_mat[..., i1, i1] = w[..., k] * s2[:, k]
            cvec[..., i0] = w[..., k] * r0[ch, ..., k]
            cvec[..., i1] = w[..., k] * r1[ch, ..., k]
        # A^-1 = (Sigma^-1 + D)^-1 = L B^-1 L^T with B = I + L^T D L (no Sigma^-1 needed)
        lo = low[ch][:, None]  # (D, 1, 2S, 2S)
        lt = np.swapaxes(lo, -1, -2)
        b_mat = np.eye(n_eff) + lt @ d_mat @ lo
        chol_b = np.linalg.cholesky(b_mat)
        v = np.linalg.solve(b_mat, (lt @ cvec[..., None]))  # B^-1 L^T c
        eps = rng.standard_normal((cs[1], n_pat, n_eff, 1))
        # chol(B)^-T eps has covariance B^-1
        v = v + np.linalg.solve(np.swapaxes(chol_b, -1, -2), eps)
        out[ch] = (lo @ v)[..., 0]
    return out.reshape(*out.shape[:3], n_sites, 2) * y_scale[:, None]


def build_joint_model(
    data: pd.DataFrame,
    *,
    covariates: tuple[str, ...] | list[str] = (),
    priors: TrajectoryPriors | None = None,
    covariance: Covariance = "separate",
    sites: tuple[str, ...] | list[str] | None = None,
    levels: tuple[str, ...] | list[str] | None = None,
    group_column: str = "analysis_group",
    time: str = "month",
    endpoint_month: float = 12.0,
) -> JointModel:
    r"""Build the joint model of two or more sites (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        Long format, one row per patient-visit (``patient_id``, ``time``, ``bmd_<site>`` per
        site, the group and the covariates). Rows with a missing value at a site are dropped for
        that site only; a missing group raises.
    covariates : sequence of str, default ()
        Extra linear terms per site, e.g. ``("age", "sex", "bmi")``.
    priors : TrajectoryPriors, optional
        Defaults to ``TrajectoryPriors()``; applied to every site (``nu_*`` unused).
    covariance : {"separate", "packed"}
        Parameterisation of :math:`\Sigma` (same prior; see the module docstring).
    sites : sequence of str, optional
        Two or more sites, the order of the ``site`` dim; default every ``bmd_<site>`` column.
    levels, group_column, time, endpoint_month
        As for :func:`models.trajectory.build_trajectory_model` (default: a responder study's
        boolean ``responder``; ``change_end`` over 12 months).

    Returns
    -------
    JointModel
    """
    import pymc as pm
    import pytensor.tensor as pt

    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
    if not (np.isfinite(endpoint_month) and endpoint_month > 0):
        raise ValueError(f"endpoint_month must be a positive month, got {endpoint_month!r}")

    covariates = tuple(covariates)
    priors = priors if priors is not None else TrajectoryPriors()
    levels = None if levels is None else tuple(levels)
    prep = prepare_joint_data(data, covariates, sites=None if sites is None else tuple(sites), levels=levels,
                              group_column=group_column, time=time)
    arrays = joint_data_arrays(prep, priors, float(endpoint_month) / 12.0)
    names = prep.site_names
    n_sites, n_eff = len(names), 2 * len(names)
    n_con = prep.group_x.shape[1]
    pairs = _pairs(n_eff)
    coords: dict[str, Any] = {
        "obs": np.arange(prep.n_obs),
        "patient": prep.patient_ids,
        "site": list(names),
        "effect": list(EFFECT_NAMES),
        "effect_pair": list(effect_pairs(names)),
        "coef": list(coef_names(prep.levels) if levels is not None else COEF_NAMES),
        "group": list(prep.levels),
        "prior_field": list(TrajectoryPriors.FIELDS),
    }
    if n_con:
        coords["contrast"] = list(contrast_names(prep.levels))
    if n_sites > 2:
        coords["site_pair"] = [f"{names[c]}~{names[r]}" for r, c in _pairs(n_sites)]
    if covariates:
        coords["covariate"] = list(covariates)
    fld = {name: k for k, name in enumerate(TrajectoryPriors.FIELDS)}

    with pm.Model(coords=coords) as m:
        y_std = pm.Data("y_std", arrays["y_std"], dims="obs")
        t = pm.Data("t", arrays["t"], dims="obs")
        sidx = pm.Data("site_idx", arrays["site_idx"], dims="obs")
        pidx = pm.Data("patient_idx", arrays["patient_idx"], dims="obs")
        gx = pm.Data("group_x", arrays["group_x"], dims=("patient", "contrast")) if n_con else None
        n_pat = gx.shape[0] if n_con else pm.Data("n_patients", arrays["n_patients"])
        y_loc = pm.Data("y_loc", arrays["y_loc"], dims="site")
        y_scale = pm.Data("y_scale", arrays["y_scale"], dims="site")
        ps = pm.Data("prior", arrays["prior"], dims=("site", "prior_field"))
        t_end = pm.Data("t_end", arrays["t_end"])

        if n_con == 1:
            coef_sd = ps[:, :4]
        else:
            coef_sd = pt.concatenate([ps[:, :2], *([ps[:, 2:4]] * n_con)], axis=1)
        beta = pm.Normal("beta_std", 0.0, coef_sd, dims=("site", "coef"))
        scale = ps[:, [fld["sd_intercept_scale"], fld["sd_slope_scale"]]]
        eta = ps[0, fld["lkj_eta"]]
        if covariance == "separate":
            tau = pm.HalfNormal("tau_std", sigma=scale, dims=("site", "effect"))
            chol_corr = lkj_corr_cholesky("corr_cpc", n_eff, eta)  # LKJ(eta) via partial correlations
            chol = tau.reshape((n_eff,))[:, None] * chol_corr
        else:
            chol01, _, _ = pm.LKJCholeskyCov(
                "chol_effects",
                n=n_eff,
                eta=eta,
                sd_dist=pm.HalfNormal.dist(1.0, shape=n_eff),
                store_in_trace=False,
            )
            # sd prior N+(0, scale): scale each row of the unit-scale factor
            chol = scale.reshape((n_eff,))[:, None] * chol01
        sigma_std = pm.HalfNormal("sigma_std", sigma=ps[:, fld["sigma_scale"]], dims="site")

        b_row = beta[sidx]  # (obs, coef)
        fixed = b_row[:, 0] + b_row[:, 1] * t
        for k in range(n_con):
            r_row = gx[:, k][pidx]
            fixed = fixed + b_row[:, 2 + 2 * k] * r_row + b_row[:, 3 + 2 * k] * r_row * t
        if covariates:
            x_std = pm.Data("x_std", arrays["x_std"], dims=("obs", "covariate"))
            x_scale = pm.Data("x_scale", arrays["x_scale"], dims=("site", "covariate"))
            gamma_std = pm.Normal(
                "gamma_std", 0.0, ps[:, fld["covariate_sd"], None], dims=("site", "covariate")
            )
            fixed = fixed + pt.sum(x_std * gamma_std[sidx], axis=1)
            pm.Deterministic(
                "gamma", y_scale[:, None] * gamma_std / x_scale, dims=("site", "covariate")
            )
        rho = y_std - fixed

        # ---- marginal likelihood (see the module docstring) -----------------------------
        n = _sums(pt.ones_like(t), pidx, sidx, n_pat, n_sites)
        s1, s2 = _sums(t, pidx, sidx, n_pat, n_sites), _sums(t * t, pidx, sidx, n_pat, n_sites)
        r0, r1 = _sums(rho, pidx, sidx, n_pat, n_sites), _sums(t * rho, pidx, sidx, n_pat, n_sites)
        rr = _sums(rho * rho, pidx, sidx, n_pat, n_sites)
        inv_s2 = 1.0 / sigma_std**2
        low = {(i, j): chol[i, j] for i in range(n_eff) for j in range(i + 1)}
        d_blocks = {}
        for k in range(n_sites):  # Z^T R^-1 Z: one 2 x 2 block per site
            i0, i1 = 2 * k, 2 * k + 1
            d_blocks[i0, i0] = inv_s2[k] * n[:, k]
            d_blocks[i1, i0] = d_blocks[i0, i1] = inv_s2[k] * s1[:, k]
            d_blocks[i1, i1] = inv_s2[k] * s2[:, k]
        c = [v for k in range(n_sites) for v in (inv_s2[k] * r0[:, k], inv_s2[k] * r1[:, k])]
        b_mat, lc = _sandwich(low, d_blocks, c)
        logdet_b, quad_b = unrolled_logdet_quad(b_mat, lc)
        n_i = n.sum(axis=1)
        per_patient = (
            n_i * np.log(2.0 * np.pi)
            + pt.sum(n * pt.log(sigma_std**2)[None, :], axis=1)
            + logdet_b
            + pt.sum(rr * inv_s2[None, :], axis=1)
            - quad_b
        )
        pm.Potential("y_marginal", -0.5 * pt.sum(per_patient))

        # ---- original scale -------------------------------------------------------------
        _report(beta, chol, sigma_std, y_loc, y_scale, t_end, pairs, n_sites, n_con)

    return JointModel(
        pymc_model=m,
        covariates=covariates,
        priors=priors,
        prepared=prep,
        covariance=covariance,
        data_values=arrays,
        levels=levels,
        group_column=group_column,
        time=time,
        endpoint_month=float(endpoint_month),
    )


def _report(beta: Any, chol: Any, sigma_std: Any, y_loc: Any, y_scale: Any, t_end: Any,
            pairs: tuple[tuple[int, int], ...], n_sites: int, n_con: int) -> None:
    """The original-scale deterministics (see the module docstring), in the model context."""
    import pymc as pm
    import pytensor.tensor as pt

    b = pm.Deterministic(
        "b",
        pt.concatenate(
            [(y_loc + y_scale * beta[:, 0])[:, None], y_scale[:, None] * beta[:, 1:]], axis=1
        ),
        dims=("site", "coef"),
    )
    pm.Deterministic("sigma", y_scale * sigma_std, dims="site")
    cov = pt.dot(chol, chol.T)
    sd_all = pt.sqrt(pt.diag(cov))
    pm.Deterministic("sd_patient", y_scale[:, None] * sd_all.reshape((n_sites, 2)),
                     dims=("site", "effect"))
    rows, cols = (np.array(v) for v in zip(*pairs))
    corr = cov[rows, cols] / (sd_all[rows] * sd_all[cols])
    pm.Deterministic("corr_effects", corr, dims="effect_pair")
    pair = {p: k for k, p in enumerate(pairs)}
    pm.Deterministic("corr_patient", pt.stack([corr[pair[2 * k + 1, 2 * k]] for k in range(n_sites)]),
                     dims="site")
    site_pairs = _pairs(n_sites)
    icpt = [corr[pair[2 * r, 2 * c]] for r, c in site_pairs]
    slope = [corr[pair[2 * r + 1, 2 * c + 1]] for r, c in site_pairs]
    if n_sites == 2:
        pm.Deterministic("corr_intercepts", icpt[0])
        pm.Deterministic("corr_slopes", slope[0])
    else:
        pm.Deterministic("corr_intercepts", pt.stack(icpt), dims="site_pair")
        pm.Deterministic("corr_slopes", pt.stack(slope), dims="site_pair")
    if n_con == 1:  # the two-group form as it always was
        g = pt.as_tensor(np.array([0.0, 1.0]))
        base_g = b[:, 0, None] + b[:, 2, None] * g[None, :]
        slope_g = b[:, 1, None] + b[:, 3, None] * g[None, :]
    else:
        base_g = pt.stack([b[:, 0], *(b[:, 0] + b[:, 2 + 2 * k] for k in range(n_con))], axis=1)
        slope_g = pt.stack([b[:, 1], *(b[:, 1] + b[:, 3 + 2 * k] for k in range(n_con))], axis=1)
    base = pm.Deterministic("baseline_mean", base_g, dims=("site", "group"))
    change = pm.Deterministic("change_end", slope_g * t_end, dims=("site", "group"))
    pct = pm.Deterministic("pct_change_end", 100.0 * change / base, dims=("site", "group"))
    if n_con:
        diff = pt.stack([b[:, 3 + 2 * k] for k in range(n_con)], axis=1) * t_end
        pm.Deterministic("diff_change_end", diff, dims=("site", "contrast"))
        pm.Deterministic("diff_pct_change_end", pct[:, 1:] - pct[:, :1], dims=("site", "contrast"))
