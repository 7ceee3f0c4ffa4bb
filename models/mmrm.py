r"""Bayesian mixed model for repeated measures (MMRM) of the change in BMD from baseline.

The Bayesian counterpart of :func:`analysis.frequentist.mmrm.fit_mmrm` with
``"change ~ baseline + month * group"`` and an unstructured covariance (what
``brms.mmrm`` / ``brms`` with ``unstr(visit, patient)`` fit).

The model
---------
Patient :math:`i` (group among :math:`K` levels, reference first, with indicators
:math:`g_{ik}` of the non-reference levels :math:`k = 1, \dots, K - 1`; a responder study has
:math:`K = 2`, :math:`g_{i1} = r_i`; baseline BMD :math:`x_i`) is observed at a subset
:math:`S_i` of the post-baseline visits :math:`v = 1, \dots, m` (the nominal visits, a factor).
The outcome :math:`y_{iv}` is the change from baseline in g/cm^2 (``measure="abs"``) or in % of
the patient's baseline (``measure="pct"``):

.. math::

    y_{iv} = \alpha_v + \sum_k \gamma_{vk} g_{ik} + \beta\,(x_i - \bar x) + e_{iv}, \qquad
    e_{i, S_i} \sim \mathrm{MVN}\bigl(0, \Sigma_{S_i S_i}\bigr),

    \Sigma = \mathrm{diag}(\sigma)\, \Omega\, \mathrm{diag}(\sigma), \qquad
    \Omega \sim \mathrm{LKJ}(\eta),

    \alpha_v \sim N(m_{\alpha}, s_{\alpha v}), \quad \gamma_{vk} \sim N(0, s_{\gamma v}), \quad
    \beta \sim N(0, s_\beta), \qquad \sigma_v \sim N^+(0, s_{\sigma v}),

with the prior constants of *Scaling and priors* in :mod:`models.mmrm_data` (which also holds
the data preparation: :func:`mmrm_frame`, :func:`prepare_mmrm_data`, :class:`MmrmData`, and
the priors: :class:`MmrmPriors`, :func:`prior_arrays`; re-exported here).

The visit-by-group cell means span the same space as R's ``month * group`` (intercept,
``m - 1`` visit contrasts, ``K - 1`` group effects, their interactions); :math:`\bar x` is the
mean baseline over the analysed *rows* (emmeans' reference grid puts numeric covariates there),
so the LS-mean of level :math:`k` at visit :math:`v` is simply :math:`\alpha_v + \gamma_{vk}`
(:math:`\alpha_v` for the reference).
:math:`\Sigma = \mathrm{diag}(\sigma) L_\Omega L_\Omega^\top \mathrm{diag}(\sigma)` with
:math:`\sigma_v = s_{\sigma v} \tilde\sigma_v`, :math:`\tilde\sigma_v \sim \mathrm{HalfNormal}(1)`
(so the prior on each :math:`\sigma_v` is :math:`N^+(0, s_{\sigma v})`) and :math:`L_\Omega` the
Cholesky factor of :math:`\Omega \sim \mathrm{LKJ}(\eta)` built from its canonical partial
correlations (:mod:`models.lkj`: the same prior as ``pm.LKJCholeskyCov``, whose graph does not
pickle and compiles slower from an empty cache).

Missing visits
--------------
A patient seen at a subset :math:`S_i` of the visits contributes the marginal density of the
observed visits, :math:`N(y_{i,S_i};\ \mu_{i,S_i}, \Sigma_{S_i S_i})`, for any pattern
(monotone dropout or an intermittently missed visit). It is computed with a *masked* covariance:
with :math:`w_i \in \{0, 1\}^m` the observation mask and :math:`W_i = \mathrm{diag}(w_i)`,

.. math::

    \tilde\Sigma_i = W_i \Sigma W_i + (I - W_i), \qquad \tilde r_i = W_i (y_i - \mu_i),

    \log|\tilde\Sigma_i| = \log|\Sigma_{S_i S_i}|, \qquad
    \tilde r_i^\top \tilde\Sigma_i^{-1} \tilde r_i
        = r_{i,S_i}^\top \Sigma_{S_i S_i}^{-1} r_{i,S_i},

since after a permutation :math:`\tilde\Sigma_i` is block diagonal with blocks
:math:`\Sigma_{S_i S_i}` and :math:`I`. The :math:`m \times m` Cholesky factorisation of
:math:`\tilde\Sigma_i` and the triangular solve are unrolled into elementwise operations over
patients (:func:`models.unrolled_cholesky.unrolled_logdet_quad`), so the graph holds no
per-pattern shapes: the number of patients and the missingness patterns are data and can change
without recompiling (only the number of visits is structure). Patients without a baseline or
without any post-baseline value are not analysed (as in the REML fit, whose rows need
``baseline``).

Reported quantities (original scale, see :data:`REPORTED_VARS`)
-----------------------------------------------------------------
- ``ls_mean`` (dims ``visit, group``): :math:`\alpha_v + \gamma_{vg}`, the mean change at visit
  :math:`v` in group :math:`g` at the mean baseline, in the outcome's unit;
- ``baseline_coef``: :math:`\beta`; ``sd_visit`` (dims ``visit``): :math:`\sigma_v`;
  ``corr_visit`` (dims ``visit_pair``, labels like ``"6:12"``): the correlations
  :math:`\Omega_{vw}`, :math:`v < w` (the strictly lower triangle, row-major);
- ``change_end``, ``pct_change_end`` (dims ``group``), ``diff_change_end``,
  ``diff_pct_change_end`` (dims ``contrast``): the LS-means at the endpoint visit and each
  level's difference from the reference, in g/cm^2 and in %. The modelled measure is reported
  as is; the other one is converted at the mean baseline, :math:`\mathrm{pct} = 100\,
  \mathrm{change} / \bar x` (``measure="abs"``) or :math:`\mathrm{change} = \mathrm{pct}\,
  \bar x / 100` (``measure="pct"``). The REML analysis (:mod:`analysis.frequentist.primary`)
  fits one MMRM per measure; fit one model per measure for the same.
- ``baseline_mean`` (dims ``group``): :math:`\bar x` for every group, the baseline at which
  the LS-means are taken (a constant, kept for consumers that scale by a baseline mean, e.g.
  a ROPE in g/cm^2; not among the diagnostic variables).

With vague priors (:meth:`MmrmPriors.vague` or the ``vague`` prior set) the posterior means of
the LS-means agree with the REML estimates (tested).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.lkj import lkj_corr_cholesky
from models.mmrm_data import (
    MEASURES,
    PRIOR_FIELDS,
    PRIOR_VISIT_FIELDS,
    Measure,
    MmrmData,
    MmrmPriors,
    mmrm_data_arrays,
    mmrm_frame,
    prepare_mmrm_data,
    prior_arrays,
)
from models.trajectory import TrajectoryPriors
from models.trajectory_data import contrast_names
from models.unrolled_cholesky import unrolled_logdet_quad

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [  # with the names re-exported from models.mmrm_data and models.unrolled_cholesky
    "MEASURES",
    "PRIOR_FIELDS",
    "PRIOR_VISIT_FIELDS",
    "REPORTED_VARS",
    "MmrmData",
    "MmrmModel",
    "MmrmPriors",
    "build_mmrm_model",
    "mmrm_frame",
    "prepare_mmrm_data",
    "prior_arrays",
    "unrolled_logdet_quad",
]

#: Original-scale quantities reported by the model.
REPORTED_VARS: tuple[str, ...] = (
    "ls_mean",
    "baseline_coef",
    "sd_visit",
    "corr_visit",
    "change_end",
    "pct_change_end",
    "diff_change_end",
    "diff_pct_change_end",
)

_MODEL_VERSION = 4  # bump when the graph built below changes (part of the compile-cache key); 4: K groups


def _pair_labels(labels: list[str]) -> list[str]:
    """``"a:b"`` for the strictly lower triangle (row-major, as ``np.tril_indices(k, -1)``)."""
    rows, cols = np.tril_indices(len(labels), -1)
    return [f"{labels[c]}:{labels[r]}" for r, c in zip(rows, cols)]


@dataclass
class MmrmModel:
    """A built Bayesian MMRM plus what :func:`analysis.engine.sampling.sample` needs to fit it.

    Attributes
    ----------
    pymc_model : pymc.Model
    site, measure, endpoint_month, priors, levels, group_column, time
        The specification (see :func:`build_mmrm_model`).
    prepared : MmrmData
        The data currently in the model.
    data_values : dict of str to ndarray
        Current value of every ``pm.Data`` container, by name (what nutpie's ``with_data`` gets).
    trace_vars : None
        Store every variable.
    """

    pymc_model: Any
    site: str
    measure: str
    endpoint_month: float
    priors: MmrmPriors | TrajectoryPriors
    prepared: MmrmData
    data_values: dict[str, np.ndarray] = field(default_factory=dict)
    trace_vars: list[str] | None = None
    levels: tuple[str, ...] | None = None
    group_column: str = "analysis_group"
    time: str = "month"

    @property
    def visits(self) -> tuple[float, ...]:
        return self.prepared.visits

    @property
    def structure_key(self) -> str:
        """Hash of what shapes the graph apart from data: the numbers of visits and groups (measure,
        endpoint, priors and labels are data or coords)."""
        spec = {"model": "rajak.mmrm", "version": _MODEL_VERSION, "n_visits": len(self.visits),
                "n_groups": len(self.prepared.levels)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def diagnostic_vars(self) -> list[str]:
        names = set(self.pymc_model.named_vars)
        return [v for v in REPORTED_VARS if v in names]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored with fits)."""
        p = self.prepared
        return {
            "model": "mmrm_bayes",
            "site": self.site,
            "measure": self.measure,
            "visits": list(self.visits),
            "groups": list(self.prepared.levels),
            "endpoint_month": self.endpoint_month,
            "priors": asdict(self.priors),
            "prior_kind": "mmrm" if isinstance(self.priors, MmrmPriors) else "prior_set",
            "n_obs": p.n_obs,
            "n_patients": p.n_patients,
            "patterns": {k: int(v) for k, v in p.patterns().items()},
            "baseline_ref": p.x_ref,
            "y_loc": p.y_loc,
            "y_scale": p.y_scale,
        }

    def set_data(
        self,
        data: pd.DataFrame | None = None,
        priors: MmrmPriors | TrajectoryPriors | None = None,
    ) -> None:
        """Swap in new data and/or priors without rebuilding the graph.

        Parameters
        ----------
        data : DataFrame, optional
            Same contract as for :func:`build_mmrm_model`, with the same post-baseline visits;
            any number of patients and any missingness patterns.
        priors : MmrmPriors or TrajectoryPriors, optional
            See :func:`build_mmrm_model`; priors are data (no recompilation).
        """
        prep = (
            prepare_mmrm_data(data, self.site, self.measure, visits=self.visits, levels=self.levels,
                              group_column=self.group_column, time=self.time)
            if data is not None
            else self.prepared
        )
        priors = priors if priors is not None else self.priors
        arrays = mmrm_data_arrays(prep, priors, self.endpoint_month)
        m = self.pymc_model
        m.set_dim("patient", prep.n_patients, coord_values=prep.patient_ids)
        for name, value in arrays.items():
            m.set_data(name, value)
        self.prepared, self.priors, self.data_values = prep, priors, arrays

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        """Hook called by :func:`analysis.engine.sampling.sample`; nothing to add."""
        return dt


def build_mmrm_model(
    data: pd.DataFrame,
    site: str,
    measure: Measure = "abs",
    *,
    priors: MmrmPriors | TrajectoryPriors | None = None,
    endpoint_month: float = 12,
    levels: tuple[str, ...] | list[str] | None = None,
    group_column: str = "analysis_group",
    time: str = "month",
) -> MmrmModel:
    r"""Build the Bayesian MMRM for one site (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        Long format, one row per patient-visit (``patient_id``, ``time``, ``bmd_<site>``, the
        group); month 0 is the baseline. A missing group raises.
    site : str
        Any site with a ``bmd_<site>`` column.
    measure : {"abs", "pct"}
        Outcome: change from baseline in g/cm^2 or in %.
    priors : MmrmPriors or TrajectoryPriors, optional
        Defaults to ``MmrmPriors()``; ``MmrmPriors.vague()`` for a data-driven posterior. A
        named prior set (``models.priors.prior_set(name, site)``, what ``rajak fit --priors``
        passes) is translated per visit as described under *Scaling and priors* in
        :mod:`models.mmrm_data`.
    endpoint_month : float
        The visit of ``change_end`` and its relatives; must be a post-baseline visit.
    levels : sequence of str, optional
        Group levels, the reference first, read from ``group_column`` (one level: a single arm);
        default a responder study's boolean ``responder``.
    group_column : str
    time : str
        The nominal visit month column (``month``).

    Returns
    -------
    MmrmModel
    """
    import pymc as pm
    import pytensor.tensor as pt

    priors = priors if priors is not None else MmrmPriors()
    levels = None if levels is None else tuple(levels)
    prep = prepare_mmrm_data(data, site, measure, levels=levels, group_column=group_column, time=time)
    if float(endpoint_month) not in prep.visits:
        raise ValueError(f"endpoint_month {endpoint_month:g} is not a post-baseline visit "
                         f"{prep.visits}")
    arrays = mmrm_data_arrays(prep, priors, endpoint_month)
    m_vis = len(prep.visits)
    visit_labels = [f"{v:g}" for v in prep.visits]
    coords: dict[str, Any] = {
        "patient": prep.patient_ids,
        "visit": visit_labels,
        "visit_pair": _pair_labels(visit_labels),
        "group": list(prep.levels),
        "prior_field": list(PRIOR_FIELDS),
        "prior_visit_field": list(PRIOR_VISIT_FIELDS),
    }
    n_con = prep.group_x.shape[1]
    if n_con:
        coords["contrast"] = list(contrast_names(prep.levels))
    with pm.Model(coords=coords) as model:
        y_std = pm.Data("y_std", arrays["y_std"], dims=("patient", "visit"))
        mask = pm.Data("mask", arrays["mask"], dims=("patient", "visit"))
        gx = pm.Data("group_x", arrays["group_x"], dims=("patient", "contrast")) if n_con else None
        x_std = pm.Data("x_std", arrays["x_std"], dims="patient")
        y_loc = pm.Data("y_loc", arrays["y_loc"])
        y_scale = pm.Data("y_scale", arrays["y_scale"])
        x_ref = pm.Data("x_ref", arrays["x_ref"])
        x_scale = pm.Data("x_scale", arrays["x_scale"])
        ps = pm.Data("prior", arrays["prior"], dims="prior_field")
        pv = pm.Data("prior_visit", arrays["prior_visit"], dims=("prior_visit_field", "visit"))
        endpoint = pm.Data("endpoint", arrays["endpoint"], dims="visit")
        is_pct = pm.Data("is_pct", arrays["is_pct"])

        alpha = pm.Normal("alpha_std", pv[0], pv[1], dims="visit")
        gamma = pm.Normal("gamma_std", 0.0, pv[2][:, None], dims=("visit", "contrast")) if n_con else None
        beta = pm.Normal("beta_std", 0.0, ps[0])
        # Sigma = diag(s) L L' diag(s): unit half-normal SDs and the Cholesky factor of an LKJ(eta)
        # correlation from its partial correlations (models.lkj)
        sd_unit = pm.HalfNormal("sd_visit_unit", 1.0, dims="visit")
        corr_l = lkj_corr_cholesky("corr_visit_cpc", m_vis, ps[1]) if m_vis > 1 else pt.ones((1, 1))
        # sd prior N+(0, sd_scale_v): scale row v of the unit-scale factor (the correlation is
        # scale-free)
        chol = (pv[3] * sd_unit)[:, None] * corr_l
        cov = pt.dot(chol, chol.T)

        mu = alpha[None, :]
        for k in range(n_con):
            mu = mu + gamma[:, k][None, :] * gx[:, k][:, None]
        mu = mu + beta * x_std[:, None]
        resid = mask * (y_std - mu)
        cols = [mask[:, j] for j in range(m_vis)]
        a = [
            [cols[i] * cols[j] * cov[i, j] + (1.0 - cols[i] if i == j else 0.0)
             for j in range(m_vis)]
            for i in range(m_vis)
        ]
        logdet, quad = unrolled_logdet_quad(a, [resid[:, j] for j in range(m_vis)])
        n_obs = pt.sum(mask)
        pm.Potential("y_marginal", -0.5 * (n_obs * np.log(2.0 * np.pi) + pt.sum(logdet + quad)))

        # ---- original scale -------------------------------------------------------------
        if n_con == 1:  # the two-group form as it always was
            g = pt.as_tensor(np.array([0.0, 1.0]))
            cells = alpha[:, None] + gamma[:, 0][:, None] * g[None, :]
        else:
            cells = pt.stack([alpha, *(alpha + gamma[:, k] for k in range(n_con))], axis=1)
        ls = pm.Deterministic("ls_mean", y_loc + y_scale * cells, dims=("visit", "group"))
        pm.Deterministic("baseline_coef", y_scale * beta / x_scale)
        sd = pt.sqrt(pt.diag(cov))
        pm.Deterministic("sd_visit", y_scale * sd, dims="visit")
        rows, cols_ = np.tril_indices(m_vis, -1)
        pm.Deterministic("corr_visit", cov[rows, cols_] / (sd[rows] * sd[cols_]),
                         dims="visit_pair")
        # the modelled measure at the endpoint, and the other one converted at the mean baseline
        # (measure and endpoint are data: one compiled model serves both measures)
        ls_end = pt.dot(endpoint, ls)
        change = pm.Deterministic(
            "change_end", pt.switch(is_pct, ls_end * x_ref / 100.0, ls_end), dims="group"
        )
        pct = pm.Deterministic(
            "pct_change_end", pt.switch(is_pct, ls_end, 100.0 * ls_end / x_ref), dims="group"
        )
        if n_con:
            pm.Deterministic("diff_change_end", change[1:] - change[0], dims="contrast")
            pm.Deterministic("diff_pct_change_end", pct[1:] - pct[0], dims="contrast")
        # the reference baseline of the LS-means (a constant: not among the diagnostic vars)
        pm.Deterministic("baseline_mean", x_ref * pt.ones(n_con + 1), dims="group")

    return MmrmModel(
        pymc_model=model,
        site=site,
        measure=measure,
        endpoint_month=float(endpoint_month),
        priors=priors,
        prepared=prep,
        data_values=arrays,
        levels=levels,
        group_column=group_column,
        time=time,
    )
