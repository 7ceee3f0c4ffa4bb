r"""Dropout-aware trajectory models: a selection (shared-parameter) model and latent responder status.

Both models extend the trajectory LMM of :mod:`models.trajectory` (one skeletal site, time
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

Selection model (shared parameter)
----------------------------------
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
monotone), so the hazard is evaluated without scatter operations. Priors:
:math:`\psi \sim N(\mu_\psi, s_\psi)`, :math:`\alpha_v \sim N(\mu_\alpha, s_\alpha)`,
:math:`\beta \sim N(0, s_\beta)`, :math:`\kappa \sim N(0, s_\kappa)` (:class:`DropoutPriors`;
they are data, so a user can explore the prior on :math:`\psi` without recompiling).

:math:`\psi` is identified only through the model's assumptions (normal random slopes, linear
trajectories): patients who drop out after baseline only carry no information about their own
slope, and a selection model's :math:`\psi` should be read as a sensitivity parameter.

Reported quantities (original scale) are those of :mod:`models.trajectory` (``b``,
``sd_patient``, ``corr_patient``, ``sigma``, ``baseline_mean``, ``change_12m``,
``pct_change_12m``, ``diff_change_12m``, ``diff_pct_change_12m``) plus ``p_responder``
(dim ``patient``), ``kappa`` (dims ``pattern, kcoef``) and, for the selection model, ``psi``,
``alpha`` (dim ``visit``) and ``beta_das28``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from models.marginal import lmm_parameters, marginal_loglik_per_patient, reported_deterministics
from models.trajectory import COEF_NAMES, GROUP_NAMES, SITES, TrajectoryPriors

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "DEPENDENCES",
    "QUADRATURE_NODES",
    "DAS28_CENTRE",
    "DropoutData",
    "DropoutPriors",
    "LatentStatusModel",
    "SelectionModel",
    "build_latent_status_model",
    "build_selection_model",
    "prepare_dropout_data",
]

#: Quantities the dropout hazard can depend on (see the module docstring).
DEPENDENCES: tuple[str, ...] = ("current_change", "slope")
#: Centre of the last observed DAS28 in the hazard (the simulator's, the DAS28 remission/LDA cut).
DAS28_CENTRE = 3.2
#: Gauss-Hermite nodes of the selection model's hazard integral: along the slope :math:`a_1`
#: and along the intercept given the slope (see the module docstring for the measured error).
QUADRATURE_NODES: tuple[int, int] = (12, 1)
_MODEL_VERSION = 2  # 2: effects integrated out of the selection model (was explicit)

_TRAJECTORY_REPORTED = (
    "b",
    "sd_patient",
    "corr_patient",
    "sigma",
    "baseline_mean",
    "change_12m",
    "pct_change_12m",
    "diff_change_12m",
    "diff_pct_change_12m",
)

Dependence = Literal["current_change", "slope"]


@dataclass(frozen=True)
class DropoutPriors:
    r"""Priors of the dropout and status parts (logit scale).

    .. math::

        \psi \sim N(\text{psi\_mu}, \text{psi\_sd}),\quad
        \alpha_v \sim N(\text{alpha\_mu}, \text{alpha\_sd}),\quad
        \beta \sim N(0, \text{das28\_sd}),\quad
        \kappa_{0,m}, \kappa_{1,m} \sim N(0, \text{kappa\_sd}).

    ``psi`` is per 1 % current change from baseline (``dependence="current_change"``) or per
    1 %/yr of annual change (``"slope"``). The default N(0, 0.5) puts 95 % of its mass on odds
    ratios between 0.38 and 2.7 per 1 % change. ``alpha_mu = -2`` is a visit hazard of ~12 %.
    """

    psi_mu: float = 0.0
    psi_sd: float = 0.5
    alpha_mu: float = -2.0
    alpha_sd: float = 1.5
    das28_sd: float = 1.0
    kappa_sd: float = 2.5

    FIELDS = ("psi_mu", "psi_sd", "alpha_mu", "alpha_sd", "das28_sd", "kappa_sd")

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value):
                raise ValueError(f"prior {name} must be finite, got {value!r}")
            if name.endswith("_sd") and value <= 0:
                raise ValueError(f"prior {name} must be positive, got {value!r}")

    def to_array(self) -> np.ndarray:
        return np.array([getattr(self, f) for f in self.FIELDS], dtype=float)


@dataclass(frozen=True)
class DropoutData:
    """Arrays for one site: BMD rows, status, status-model design and risk sets.

    Attributes
    ----------
    patient_ids : ndarray of str
        Sorted unique ids of patients with at least one observed BMD (the ``patient`` coord).
    patient_idx, t, y : ndarray
        Per BMD row: patient position, time in years, BMD (g/cm^2).
    status : ndarray of float
        Per patient: 1 responder, 0 non-responder, NaN undefined.
    patterns : ndarray of float
        Months at which a last DAS28 can be observed before the response month (``pattern``
        coord; 0 = baseline only).
    pattern_idx, delta : ndarray
        Per patient: position of the last observed DAS28 month in ``patterns`` and the DAS28
        change from baseline there (used for undefined patients).
    delta_at : ndarray, shape (patient, pattern)
        Every patient's DAS28 change at every pattern month (0 where unobserved).
    status_mask : ndarray, shape (patient, pattern)
        1 where a defined patient's change at that month enters the status regression.
    visit_months : ndarray of float
        Post-baseline scheduled months (``visit`` coord).
    risk_patient, risk_visit, risk_t, risk_das28, risk_event : ndarray
        One row per patient-visit at risk of dropout: patient position, visit position, time
        (years), last observed DAS28 minus :data:`DAS28_CENTRE`, 1 if the patient dropped out
        at that visit.
    """

    patient_ids: np.ndarray
    patient_idx: np.ndarray
    t: np.ndarray
    y: np.ndarray
    status: np.ndarray
    patterns: np.ndarray
    pattern_idx: np.ndarray
    delta: np.ndarray
    delta_at: np.ndarray
    status_mask: np.ndarray
    visit_months: np.ndarray
    risk_patient: np.ndarray
    risk_visit: np.ndarray
    risk_t: np.ndarray
    risk_das28: np.ndarray
    risk_event: np.ndarray
    dropout_month: np.ndarray

    @property
    def n_patients(self) -> int:
        return int(self.patient_ids.shape[0])

    @property
    def n_obs(self) -> int:
        return int(self.y.shape[0])

    @property
    def undefined(self) -> np.ndarray:
        return np.isnan(self.status)

    @property
    def y_loc(self) -> float:
        return float(np.mean(self.y))

    @property
    def y_scale(self) -> float:
        sd = float(np.std(self.y))
        return sd if np.isfinite(sd) and sd > 1e-8 else 1.0


def _status_values(values: pd.Series) -> float:
    """One patient's status from a nullable column: 1.0, 0.0 or NaN."""
    vals = values.dropna().unique()
    if len(vals) > 1:
        raise ValueError("responder status varies within a patient")
    if not len(vals):
        return np.nan
    v = vals[0]
    if v in (True, 1, "responder"):
        return 1.0
    if v in (False, 0, "non-responder"):
        return 0.0
    raise ValueError(f"responder must be boolean, 0/1 or missing, got {v!r}")


def prepare_dropout_data(
    data: pd.DataFrame, site: str = "spine", *, response_month: float = 12
) -> DropoutData:
    """Turn a long (derived) frame into the arrays of the dropout-aware models.

    Parameters
    ----------
    data : DataFrame
        One row per attended patient-visit with ``patient_id``, ``month``, the site's BMD column,
        ``das28_crp`` and ``responder`` (boolean or 0/1; missing = undefined status), e.g. the
        output of ``analysis.study.clinical.derive``. The schedule is the set of months in the data;
        a patient drops out at the first scheduled month after the last month with an observed
        BMD or DAS28 (none if that is the last scheduled month).
    site : {"spine", "femoral_neck"}
    response_month : float
        Month at which responder status is defined.

    Returns
    -------
    DropoutData

    Raises
    ------
    ValueError
        On a missing column, a status varying within a patient, a patient without a baseline
        DAS28 or a status defined for a patient without a DAS28 at ``response_month``.
    """
    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}")
    outcome = SITES[site]
    needed = ["patient_id", "month", outcome, "das28_crp", "responder"]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}")
    df = data[needed].copy()
    df["patient_id"] = df["patient_id"].astype(str)
    if df["month"].isna().any():
        raise ValueError("month is missing for some rows")
    df = df.loc[df[outcome].notna() | df["das28_crp"].notna()]
    schedule = np.sort(df["month"].unique().astype(float))
    if schedule[0] != 0 or response_month not in schedule:
        raise ValueError(f"the schedule must contain month 0 and month {response_month:g}")
    ids = np.sort(df.loc[df[outcome].notna(), "patient_id"].unique())
    if not len(ids):
        raise ValueError(f"no observed {outcome} values")
    df = df.loc[df["patient_id"].isin(ids)]
    pos = {p: k for k, p in enumerate(ids)}
    n = len(ids)

    das = df.pivot_table(index="patient_id", columns="month", values="das28_crp", aggfunc="first")
    das = das.reindex(index=ids, columns=schedule)
    if das[0.0].isna().any():
        raise ValueError("every patient needs a baseline DAS28-CRP")
    status = np.array([_status_values(g) for _, g in df.groupby("patient_id")["responder"]])
    has_resp = das[float(response_month)].notna().to_numpy()
    if np.any(~np.isnan(status) & ~has_resp):
        raise ValueError(f"a defined responder status needs a DAS28 at month {response_month:g}")

    patterns = schedule[schedule < response_month]
    delta_at = (das[list(patterns)].to_numpy() - das[[0.0]].to_numpy())
    observed_at = ~np.isnan(delta_at)
    last_pat = np.array([np.flatnonzero(row)[-1] for row in observed_at])
    delta = delta_at[np.arange(n), last_pat]
    defined = ~np.isnan(status)
    status_mask = (observed_at & defined[:, None]).astype(float)
    status_mask[:, 0] = defined  # the prevalence regression
    delta_at = np.nan_to_num(delta_at)

    last_month = df.groupby("patient_id")["month"].max().reindex(ids).to_numpy(dtype=float)
    visits = schedule[schedule > 0]
    rp, rv, rt, rd, re = [], [], [], [], []
    drop_month = np.full(n, np.nan)
    das_arr = das.to_numpy()
    for i in range(n):
        last_das = das_arr[i, 0]
        for v, month in enumerate(visits):
            k = int(np.searchsorted(schedule, month))
            prev = das_arr[i, k - 1]
            last_das = prev if np.isfinite(prev) else last_das
            event = month > last_month[i]
            rp.append(i), rv.append(v), rt.append(month / 12.0)
            rd.append(last_das - DAS28_CENTRE), re.append(float(event))
            if event:
                drop_month[i] = month
                break

    bmd = df.loc[df[outcome].notna()]
    return DropoutData(
        patient_ids=ids.astype(str),
        patient_idx=bmd["patient_id"].map(pos).to_numpy(dtype=np.int64),
        t=bmd["month"].to_numpy(dtype=float) / 12.0,
        y=bmd[outcome].to_numpy(dtype=float),
        status=status,
        patterns=patterns,
        pattern_idx=last_pat.astype(np.int64),
        delta=np.nan_to_num(delta),
        delta_at=delta_at,
        status_mask=status_mask,
        visit_months=visits,
        risk_patient=np.asarray(rp, dtype=np.int64),
        risk_visit=np.asarray(rv, dtype=np.int64),
        risk_t=np.asarray(rt, dtype=float),
        risk_das28=np.asarray(rd, dtype=float),
        risk_event=np.asarray(re, dtype=float),
        dropout_month=drop_month,
    )


def _data_arrays(
    d: DropoutData, priors: TrajectoryPriors, dpriors: DropoutPriors, selection: bool
) -> dict[str, np.ndarray]:
    arrays = {
        "y_std": (d.y - d.y_loc) / d.y_scale,
        "t": d.t,
        "patient_idx": d.patient_idx,
        "status": np.nan_to_num(d.status),
        "undefined": d.undefined.astype(float),
        "pattern_idx": d.pattern_idx,
        "delta": d.delta,
        "delta_at": d.delta_at,
        "status_mask": d.status_mask,
        "y_loc": np.asarray(d.y_loc),
        "y_scale": np.asarray(d.y_scale),
        "prior": priors.to_array(d.y_scale),
        "dropout_prior": dpriors.to_array(),
    }
    if selection:
        arrays.update(risk_wide(d))
    return arrays


def risk_wide(d: DropoutData) -> dict[str, np.ndarray]:
    r"""The risk rows as dense ``(patient, visit)`` arrays (monotone dropout: patient :math:`i` is
    at risk at visits :math:`0, \dots, V_i - 1` and nowhere after): ``risk_mask`` 1 where at
    risk, ``risk_event_w`` 1 at the dropout visit, ``risk_das28_w`` the last observed DAS28 minus
    :data:`DAS28_CENTRE` (0 where not at risk), and ``visit_t`` the visits' times in years."""
    shape = (d.n_patients, d.visit_months.shape[0])
    mask, event, das = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    mask[d.risk_patient, d.risk_visit] = 1.0
    event[d.risk_patient, d.risk_visit] = d.risk_event
    das[d.risk_patient, d.risk_visit] = d.risk_das28
    return {"risk_mask": mask, "risk_event_w": event, "risk_das28_w": das,
            "visit_t": d.visit_months / 12.0}


def _coords(d: DropoutData, selection: bool) -> dict[str, Any]:
    coords: dict[str, Any] = {
        "obs": np.arange(d.n_obs),
        "patient": d.patient_ids,
        "effect": ["intercept", "slope"],
        "coef": list(COEF_NAMES),
        "group": list(GROUP_NAMES),
        "prior_field": list(TrajectoryPriors.FIELDS),
        "dropout_prior_field": list(DropoutPriors.FIELDS),
        "pattern": [f"month {m:g}" for m in d.patterns],
        "kcoef": ["intercept", "das28_change"],
    }
    if selection:
        coords["visit"] = [f"month {m:g}" for m in d.visit_months]
    return coords


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


def _log_sigmoid(x: Any) -> Any:
    import pytensor.tensor as pt

    return -pt.softplus(-x)


def _common_parameters(ps: Any) -> dict[str, Any]:
    """The LMM's fixed effects, covariance factor and residual SD (scaled units), as in
    models.trajectory (:func:`models.marginal.lmm_parameters`)."""
    import pymc as pm

    c = lmm_parameters(ps)
    c["sigma"] = pm.HalfNormal("sigma_std", sigma=ps[7])
    return c


def _status_part(dps: Any, arrays: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """Status regressions: their log-likelihood over defined patients and each patient's logit pi."""
    import pymc as pm
    import pytensor.tensor as pt

    kappa = pm.Normal("kappa", 0.0, dps[5], dims=("pattern", "kcoef"))
    delta_at = pm.Data("delta_at", arrays["delta_at"], dims=("patient", "pattern"))
    mask = pm.Data("status_mask", arrays["status_mask"], dims=("patient", "pattern"))
    status = pm.Data("status", arrays["status"], dims="patient")
    pidx = pm.Data("pattern_idx", arrays["pattern_idx"], dims="patient")
    delta = pm.Data("delta", arrays["delta"], dims="patient")
    eta = kappa[None, :, 0] + kappa[None, :, 1] * delta_at
    ll = pt.sum(mask * (status[:, None] * _log_sigmoid(eta) + (1.0 - status[:, None])
                        * _log_sigmoid(-eta)))
    logit_pi = kappa[pidx, 0] + kappa[pidx, 1] * delta
    return ll, logit_pi


def _mixture(lp0: Any, lp1: Any, logit_pi: Any) -> Any:
    """Per-patient log-likelihood: the status' component when defined, else the mixture."""
    import pymc as pm
    import pytensor.tensor as pt

    m = pm.modelcontext(None)
    status, undefined = m["status"], m["undefined"]
    mix = pt.logaddexp(_log_sigmoid(-logit_pi) + lp0, _log_sigmoid(logit_pi) + lp1)
    known = status * lp1 + (1.0 - status) * lp0
    post1 = pm.math.sigmoid(logit_pi + lp1 - lp0)
    pm.Deterministic("p_responder", undefined * post1 + (1.0 - undefined) * status, dims="patient")
    return pt.sum(undefined * mix + (1.0 - undefined) * known)


def _reported(beta: Any, tau: Any, rho: Any, sigma_std: Any) -> None:
    """Original-scale deterministics, as in models.trajectory."""
    import pymc as pm

    m = pm.modelcontext(None)
    reported_deterministics(beta, tau, rho, sigma_std, m["y_loc"], m["y_scale"])


@dataclass
class _DropoutModelBase:
    pymc_model: Any
    site: str
    priors: TrajectoryPriors
    dropout_priors: DropoutPriors
    prepared: DropoutData
    response_month: float
    data_values: dict[str, np.ndarray] = field(default_factory=dict)
    trace_vars: list[str] | None = None

    _kind = "base"
    _selection = False

    def _spec(self) -> dict[str, Any]:
        return {"model": f"rajak.dropout.{self._kind}", "version": _MODEL_VERSION}

    @property
    def structure_key(self) -> str:
        spec = self._spec()
        spec["patterns"] = [float(m) for m in self.prepared.patterns]
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
        d = (prepare_dropout_data(data, self.site, response_month=self.response_month)
             if data is not None else self.prepared)
        if not np.array_equal(d.patterns, self.prepared.patterns) or (
            self._selection and not np.array_equal(d.visit_months, self.prepared.visit_months)
        ):
            raise ValueError("the new data's visit schedule differs from the model's; rebuild it")
        priors = priors if priors is not None else self.priors
        dpriors = dropout_priors if dropout_priors is not None else self.dropout_priors
        arrays = _data_arrays(d, priors, dpriors, self._selection)
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
class LatentStatusModel(_DropoutModelBase):
    """The MAR trajectory model with latent status for undefined patients (marginal effects)."""

    _kind = "latent_status"
    _selection = False


@dataclass
class SelectionModel(_DropoutModelBase):
    """The latent-status model plus a dropout hazard depending on the patient's effects."""

    dependence: str = "current_change"
    hazard_das28: bool = True
    quadrature_nodes: tuple[int, int] = QUADRATURE_NODES
    _kind = "selection"
    _selection = True

    def _spec(self) -> dict[str, Any]:
        return {**super()._spec(), "dependence": self.dependence, "hazard_das28": self.hazard_das28,
                "quadrature_nodes": list(self.quadrature_nodes)}


def _data_block(arrays: dict[str, np.ndarray], selection: bool) -> dict[str, Any]:
    import pymc as pm

    out = {
        "y_std": pm.Data("y_std", arrays["y_std"], dims="obs"),
        "t": pm.Data("t", arrays["t"], dims="obs"),
        "pidx": pm.Data("patient_idx", arrays["patient_idx"], dims="obs"),
        "undefined": pm.Data("undefined", arrays["undefined"], dims="patient"),
        "y_loc": pm.Data("y_loc", arrays["y_loc"]),
        "y_scale": pm.Data("y_scale", arrays["y_scale"]),
        "ps": pm.Data("prior", arrays["prior"], dims="prior_field"),
        "dps": pm.Data("dropout_prior", arrays["dropout_prior"], dims="dropout_prior_field"),
    }
    if selection:
        for name in ("risk_mask", "risk_event_w", "risk_das28_w"):
            out[name] = pm.Data(name, arrays[name], dims=("patient", "visit"))
        out["visit_t"] = pm.Data("visit_t", arrays["visit_t"], dims="visit")
    return out


def build_latent_status_model(
    data: pd.DataFrame,
    site: str = "spine",
    *,
    priors: TrajectoryPriors | None = None,
    dropout_priors: DropoutPriors | None = None,
    response_month: float = 12,
) -> LatentStatusModel:
    r"""The trajectory LMM with undefined responder status as a latent, summed-out variable.

    Random effects are integrated out; patient :math:`i`'s component :math:`r` is
    :math:`\log \mathrm{MVN}(y_i;\ X_i(r) b,\ \sigma^2 I + Z_i \Sigma Z_i^\top)` and undefined
    patients mix the two with :math:`\pi_i` (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        See :func:`prepare_dropout_data`.
    site : {"spine", "femoral_neck"}
    priors : TrajectoryPriors, optional
    dropout_priors : DropoutPriors, optional
        Only ``kappa_sd`` is used.
    response_month : float

    Returns
    -------
    LatentStatusModel
    """
    import pymc as pm

    priors = priors if priors is not None else TrajectoryPriors()
    dpriors = dropout_priors if dropout_priors is not None else DropoutPriors()
    d = prepare_dropout_data(data, site, response_month=response_month)
    arrays = _data_arrays(d, priors, dpriors, selection=False)
    with pm.Model(coords=_coords(d, selection=False)) as m:
        db = _data_block(arrays, selection=False)
        n = db["undefined"].shape[0]
        status_ll, logit_pi = _status_part(db["dps"], arrays)
        c = _common_parameters(db["ps"])
        beta, t, pidx = c["beta"], db["t"], db["pidx"]
        lps = []
        for r in (0.0, 1.0):
            mu = beta[0] + beta[2] * r + (beta[1] + beta[3] * r) * t
            lps.append(marginal_loglik_per_patient(
                db["y_std"] - mu, t, pidx, n, c["l00"], c["l10"], c["l11"], c["sigma"]))
        pm.Potential("status_regression", status_ll)
        pm.Potential("y_marginal_mixture", _mixture(lps[0], lps[1], logit_pi))
        _reported(beta, c["tau"], c["rho"], c["sigma"])
    return LatentStatusModel(
        pymc_model=m, site=site, priors=priors, dropout_priors=dpriors, prepared=d,
        response_month=response_month, data_values=arrays,
    )


def build_selection_model(
    data: pd.DataFrame,
    site: str = "spine",
    *,
    dependence: Dependence = "current_change",
    hazard_das28: bool = True,
    priors: TrajectoryPriors | None = None,
    dropout_priors: DropoutPriors | None = None,
    response_month: float = 12,
    quadrature_nodes: tuple[int, int] = QUADRATURE_NODES,
) -> SelectionModel:
    r"""Shared-parameter selection model: trajectory LMM + discrete-time dropout hazard.

    See the module docstring for the model, the integration over the patient effects and the
    mapping of :math:`\psi` to the simulator's ``bmd_log_odds``.

    Parameters
    ----------
    data : DataFrame
        See :func:`prepare_dropout_data`.
    site : {"spine", "femoral_neck"}
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
    d = prepare_dropout_data(data, site, response_month=response_month)
    arrays = _data_arrays(d, priors, dpriors, selection=True)
    nodes = tuple(int(k) for k in quadrature_nodes)
    if len(nodes) != 2 or min(nodes) < 1:
        raise ValueError(f"quadrature_nodes must be two positive integers, got {quadrature_nodes!r}")
    e1, w1 = _gauss_hermite(nodes[0])
    e0, w0 = _gauss_hermite(nodes[1])
    # flattened (slope node, intercept node) grid: K = K1 * K0 points
    e1k, e0k = np.repeat(e1, nodes[1]), np.tile(e0, nodes[0])
    log_w = np.log(np.repeat(w1, nodes[1]) * np.tile(w0, nodes[0]))
    with pm.Model(coords=_coords(d, selection=True)) as m:
        db = _data_block(arrays, selection=True)
        n = db["undefined"].shape[0]
        dps = db["dps"]
        status_ll, logit_pi = _status_part(dps, arrays)
        c = _common_parameters(db["ps"])
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
        for r in (0.0, 1.0):
            m0, m1 = beta[0] + beta[2] * r, beta[1] + beta[3] * r
            lp_y = marginal_loglik_per_patient(y - m0 - m1 * t, t, pidx, n, l00, l10, l11, sigma)
            cond = _effects_conditional(sums, m0, m1, l00, l10, l11, sigma)
            # the effects at the nodes, (patient, node)
            a1 = cond["mu1"][:, None] + cond["sd1"][:, None] * e1k[None, :]
            a0 = (cond["mu0"][:, None] + (cond["k01"] * cond["sd1"])[:, None] * e1k[None, :]
                  + cond["sd0"][:, None] * e0k[None, :])
            pct_slope = 100.0 * y_scale * a1 / (y_loc + y_scale * a0)  # annual % change
            eta = eta0[:, :, None] + scale_v[None, :, None] * pct_slope[:, None, :]  # (patient, visit, node)
            # log h = log sigmoid(eta) at the dropout visit, log(1 - h) = log sigmoid(eta) - eta
            # before it: one softplus per element
            ll = mask[:, :, None] * (_log_sigmoid(eta) - (1.0 - ev[:, :, None]) * eta)
            lp_d = pm.math.logsumexp(ll.sum(axis=1) + log_w[None, :], axis=1)
            lps.append(lp_y + lp_d)
        pm.Potential("status_regression", status_ll)
        pm.Potential("joint_mixture", _mixture(lps[0], lps[1], logit_pi))
        _reported(beta, c["tau"], c["rho"], sigma)
    return SelectionModel(
        pymc_model=m, site=site, priors=priors, dropout_priors=dpriors, prepared=d,
        response_month=response_month, data_values=arrays, dependence=dependence,
        hazard_das28=hazard_das28, quadrature_nodes=nodes,
    )
