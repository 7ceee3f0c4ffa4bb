r"""Data of the dropout-aware models: BMD rows, groups (or responder status and its patterns), risk sets.

:func:`prepare_dropout_data` turns a long (derived) frame into :class:`DropoutData` for
:mod:`models.dropout_latent_status` and :mod:`models.dropout_selection`. It has two modes:

*latent status* (a responder study, the default): the groups are responders and non-responders
and a patient's status may be undefined (latent). For patient :math:`i`:

- the BMD rows :math:`(t_{ij}, y_{ij})`, time in years, of every patient with an observed BMD;
- the responder status :math:`r_i` (1, 0, or undefined when the patient dropped out before the
  response month);
- the status pattern: :math:`m_i`, the last month before the response month with an observed
  DAS28 (pattern :math:`m_i = 0` when only the baseline was observed), and
  :math:`\Delta_i = \mathrm{DAS28}_i(m_i) - \mathrm{DAS28}_i(0)`; for the defined patients
  the change :math:`\Delta` at every pattern month, which the status regressions
  :math:`\operatorname{logit} \pi = \kappa_{0,m} + \kappa_{1,m} \Delta` are fitted on;
- the risk set: every post-baseline scheduled visit :math:`v` (month :math:`\tau_v`) at which
  the patient is still at risk of dropping out, with the last observed DAS28 before it minus
  :data:`DAS28_CENTRE` and whether the patient dropped out there. A patient drops out at the
  first scheduled month after the last month with an observed BMD or DAS28. Dropout is
  monotone, so the risk rows also enter the model as dense ``(patient, visit)`` arrays with an
  at-risk mask (:func:`risk_wide`) and the hazard is evaluated without scatter operations.

*known groups* (``group=`` a column and ``levels``: the arms of a trial, the doses of a dose study,
the one group of a single-arm study, or responder status that is known for everyone): every
patient's group :math:`g_i \in \{0, \dots, K - 1\}` (the reference first) is given, nothing is
latent, and the DAS28-CRP is optional (without it, or without a baseline DAS28 for everyone,
:attr:`DropoutData.has_das28` is false and the risk rows carry 0 for it). The BMD rows and risk
sets are as above.

:class:`DropoutPriors` holds the priors of the dropout and status parts (data, like the
trajectory priors: :func:`dropout_data_arrays` puts both into the models' ``pm.Data``
containers, :func:`dropout_coords` names their dims).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.trajectory import TrajectoryPriors
from models.trajectory_data import COEF_NAMES, GROUP_NAMES

__all__ = [
    "DAS28_CENTRE",
    "DropoutData",
    "DropoutPriors",
    "dropout_coords",
    "dropout_data_arrays",
    "group_coef_names",
    "prepare_dropout_data",
    "risk_wide",
]

#: Centre of the last observed DAS28 in the hazard (the simulator's, the DAS28 remission/LDA cut).
DAS28_CENTRE = 3.2


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
    dropout_month : ndarray of float
        Per patient: the scheduled month at which the patient dropped out, NaN if none.
    levels : tuple of str
        The groups in model order, the reference first (latent mode: non-responder, responder).
    latent : bool
        Latent-status mode (``status`` the responder status, NaN undefined); else known groups
        (``status`` the group code, never undefined).
    has_das28 : bool
        Every patient has a baseline DAS28-CRP (the hazard may use the last observed one).
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
    levels: tuple[str, ...] = GROUP_NAMES
    latent: bool = True
    has_das28: bool = True

    @property
    def group(self) -> np.ndarray:
        """Per patient: the group code (-1 where a latent status is undefined)."""
        return np.where(np.isnan(self.status), -1, np.nan_to_num(self.status)).astype(np.int64)

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


def _schedule_risk(df: pd.DataFrame, ids: np.ndarray, schedule: np.ndarray, das_arr: np.ndarray):
    """Risk rows (module docstring) of patients ``ids`` with the DAS28 table ``das_arr`` (patients x
    schedule; NaN where unobserved) and their dropout months."""
    last_month = df.groupby("patient_id")["month"].max().reindex(ids).to_numpy(dtype=float)
    visits = schedule[schedule > 0]
    rp, rv, rt, rd, re = [], [], [], [], []
    drop_month = np.full(ids.size, np.nan)
    for i in range(ids.size):
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
    return visits, {"risk_patient": np.asarray(rp, dtype=np.int64), "risk_visit": np.asarray(rv, dtype=np.int64),
                    "risk_t": np.asarray(rt, dtype=float), "risk_das28": np.asarray(rd, dtype=float),
                    "risk_event": np.asarray(re, dtype=float), "dropout_month": drop_month}


def _outcome_column(data: pd.DataFrame, site: str) -> str:
    col = f"bmd_{site}"
    if col not in data.columns:
        bmd = sorted(c[4:] for c in data.columns if str(c).startswith("bmd_"))
        raise ValueError(f"site {site!r}: no column {col} in the data (sites: {', '.join(bmd) or 'none'})")
    return col


def _columns(data: pd.DataFrame, needed: list[str]) -> pd.DataFrame:
    """A copy of ``needed`` (string patient ids); a missing column or month is a one-line error."""
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}")
    df = data[needed].copy()
    df["patient_id"] = df["patient_id"].astype(str)
    if df["month"].isna().any():
        raise ValueError("month is missing for some rows")
    return df


def prepare_dropout_data(
    data: pd.DataFrame, site: str, *, response_month: float = 12, group: str | None = None,
    levels: tuple[str, ...] | None = None,
) -> DropoutData:
    """Turn a long (derived) frame into the arrays of the dropout-aware models.

    Parameters
    ----------
    data : DataFrame
        One row per attended patient-visit with ``patient_id``, ``month``, the site's BMD column
        ``bmd_<site>`` and, in latent-status mode, ``das28_crp`` and ``responder`` (boolean or 0/1;
        missing = undefined status), e.g. the output of ``analysis.study.clinical.derive``; with
        known groups, the ``group`` column (``das28_crp`` optional). The schedule is the set of months
        in the data; a patient drops out at the first scheduled month after the last month with an
        observed BMD or DAS28 (none if that is the last scheduled month).
    site : str
        The skeletal site (column ``bmd_<site>``).
    response_month : float
        Month at which responder status is defined (latent-status mode).
    group : str, optional
        Known groups (module docstring): the column holding each patient's level; patients without
        one are left out.
    levels : tuple of str, optional
        With ``group``: the levels in model order, the reference first.

    Returns
    -------
    DropoutData

    Raises
    ------
    ValueError
        On a missing column, a status (group) varying within a patient, a level that is not one of
        ``levels``, (latent mode) a patient without a baseline DAS28 or a status defined for a patient
        without a DAS28 at ``response_month``.
    """
    outcome = _outcome_column(data, site)
    if group is not None:
        return _prepare_known(data, outcome, group, tuple(levels or ()))
    df = _columns(data, ["patient_id", "month", outcome, "das28_crp", "responder"])
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

    visits, risk = _schedule_risk(df, ids, schedule, das.to_numpy())
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
        **risk,
    )


def _prepare_known(data: pd.DataFrame, outcome: str, group: str, levels: tuple[str, ...]) -> DropoutData:
    """:func:`prepare_dropout_data` with known groups."""
    if not levels:
        raise ValueError("known groups need their levels (reference first)")
    has_das = "das28_crp" in data.columns
    df = _columns(data, ["patient_id", "month", outcome, group] + (["das28_crp"] if has_das else []))
    per = df.dropna(subset=[group]).groupby("patient_id")[group]
    if (per.nunique() > 1).any():
        raise ValueError(f"the group ({group}) varies within a patient")
    first = per.first()
    bad = sorted(set(map(str, first)) - set(levels))
    if bad:
        raise ValueError(f"group {bad[0]!r} is not one of the levels {levels}")
    df = df.loc[df["patient_id"].isin(first.index)]
    seen = df[outcome].notna() | (df["das28_crp"].notna() if has_das else False)
    df = df.loc[seen]
    schedule = np.sort(df["month"].unique().astype(float))
    if not schedule.size or schedule[0] != 0:
        raise ValueError("the schedule must contain month 0")
    ids = np.sort(df.loc[df[outcome].notna(), "patient_id"].unique())
    if not len(ids):
        raise ValueError(f"no observed {outcome} values")
    df = df.loc[df["patient_id"].isin(ids)]
    pos = {p: k for k, p in enumerate(ids)}
    n = len(ids)
    code = first.reindex(ids).map({lv: k for k, lv in enumerate(levels)}).to_numpy(dtype=float)
    if has_das:
        das = df.pivot_table(index="patient_id", columns="month", values="das28_crp", aggfunc="first")
        das = das.reindex(index=ids, columns=schedule)
        has_das = bool(das[0.0].notna().all())
    das_arr = das.to_numpy() if has_das else np.full((n, schedule.size), DAS28_CENTRE)
    visits, risk = _schedule_risk(df, ids, schedule, das_arr)
    bmd = df.loc[df[outcome].notna()]
    return DropoutData(
        patient_ids=ids.astype(str),
        patient_idx=bmd["patient_id"].map(pos).to_numpy(dtype=np.int64),
        t=bmd["month"].to_numpy(dtype=float) / 12.0,
        y=bmd[outcome].to_numpy(dtype=float),
        status=code,
        patterns=np.array([0.0]),
        pattern_idx=np.zeros(n, dtype=np.int64),
        delta=np.zeros(n),
        delta_at=np.zeros((n, 1)),
        status_mask=np.zeros((n, 1)),
        visit_months=visits,
        **risk,
        levels=levels,
        latent=False,
        has_das28=has_das,
    )


def dropout_data_arrays(
    d: DropoutData, priors: TrajectoryPriors, dpriors: DropoutPriors, selection: bool
) -> dict[str, np.ndarray]:
    """Arrays for every ``pm.Data`` container, keyed by container name.

    The BMD rows standardised as in the trajectory model (``y_std`` :math:`= (y - m)/s`), the
    status and pattern arrays, ``prior`` (:meth:`TrajectoryPriors.to_array`, scales divided by
    :math:`s`) and ``dropout_prior`` (:meth:`DropoutPriors.to_array`); with ``selection`` the
    risk sets as dense arrays (:func:`risk_wide`). With known groups the status model's arrays are
    replaced by ``group_idx``, each patient's group code (none for a single group).
    """
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
    if not d.latent:  # no status model: its containers do not exist
        for name in ("status", "pattern_idx", "delta", "delta_at", "status_mask",
                     *(() if selection else ("dropout_prior",))):
            del arrays[name]
        if len(d.levels) > 1:  # one group: nothing to index
            arrays["group_idx"] = d.group
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


def group_coef_names(levels: tuple[str, ...]) -> list[str]:
    """Labels of the ``coef`` dim for groups ``levels`` (reference first): ``intercept, time``, then
    ``<level>, time:<level>`` for every other level (for non-responder, responder: those of
    :data:`models.trajectory_data.COEF_NAMES`)."""
    out = ["intercept", "time"]
    for lv in levels[1:]:
        out += [lv, f"time:{lv}"]
    return out


def dropout_coords(d: DropoutData, selection: bool) -> dict[str, Any]:
    """The models' coords: rows, patients, effects, coefficients, groups, prior fields, status
    patterns (and, with ``selection``, the visits at risk)."""
    coords: dict[str, Any] = {
        "obs": np.arange(d.n_obs),
        "patient": d.patient_ids,
        "effect": ["intercept", "slope"],
        "coef": list(COEF_NAMES) if d.latent else group_coef_names(d.levels),
        "group": list(GROUP_NAMES) if d.latent else list(d.levels),
        "prior_field": list(TrajectoryPriors.FIELDS),
        "dropout_prior_field": list(DropoutPriors.FIELDS),
        "pattern": [f"month {m:g}" for m in d.patterns],
        "kcoef": ["intercept", "das28_change"],
    }
    if selection:
        coords["visit"] = [f"month {m:g}" for m in d.visit_months]
    return coords
