r"""Data and priors of the Bayesian MMRM: the change-from-baseline frame, its arrays, the priors.

:func:`mmrm_frame` turns long data into the post-baseline rows with ``baseline``, ``change``
(g/cm^2) and ``pct`` (% of baseline) that both the Bayesian MMRM (:mod:`models.mmrm`) and the
REML fit (:func:`analysis.frequentist.mmrm.fit_mmrm`) analyse; :func:`prepare_mmrm_data` puts one
site and measure into a patients x visits array (:class:`MmrmData`, NaN where a visit is
missing) with the indicators :math:`g_{ik}` of each patient's group (levels reference first, as
in :mod:`models.trajectory_data`; a responder study's boolean ``responder`` by default). For patient :math:`i` with baseline :math:`x_i` and value :math:`\mathrm{bmd}_{iv}`
at post-baseline visit :math:`v`,

.. math::

    \mathrm{change}_{iv} = \mathrm{bmd}_{iv} - x_i, \qquad
    \mathrm{pct}_{iv} = 100\, \mathrm{change}_{iv} / x_i .

Scaling and priors
------------------
Internally the outcome is centred and scaled, :math:`y^* = (y - \bar y) / s_y` over the
observed values, and the baseline is :math:`x^* = (x - \bar x) / s_x`. All prior scales are
stated on the data's scale in g/cm^2, divided by :math:`s_y` inside the model and held in the
``prior`` / ``prior_visit`` containers (data: new priors need no recompilation; see
:func:`prior_arrays`). For ``measure="pct"`` the g/cm^2 scales are first converted to % at the
mean baseline (times :math:`100 / \bar x`). Two kinds of priors are accepted:

:class:`MmrmPriors` (the default of :func:`models.mmrm.build_mmrm_model`)
    The same scale at every visit: :math:`m_\alpha = \bar y` (the mean observed change),
    :math:`s_{\alpha v}` = ``intercept_sd``, :math:`s_{\gamma v}` = ``responder_sd``,
    :math:`s_{\sigma v}` = ``sd_scale``, :math:`s_\beta` = ``baseline_coef_sd`` (g/cm^2 of
    change per g/cm^2 of baseline), :math:`\eta` = ``lkj_eta``.

A named prior set (:class:`models.trajectory.TrajectoryPriors`, :func:`models.priors.prior_set`)
    What ``rajak fit --model mmrm --priors NAME`` uses: the trajectory model's priors translated
    to the visits (:math:`t_v` = month / 12, in years), so every model states the same belief
    about the same quantity. The trajectory model's month-:math:`12 t_v` change is
    :math:`b_1 t_v` for the reference group and a level's contrast :math:`b_{2k+1} t_v`, hence

    .. math::

        \alpha_v \sim N(0, \text{slope\_sd}\; t_v), \qquad
        \gamma_{vk} \sim N(0, \text{responder\_slope\_sd}\; t_v),

    centred on no change (the set's slope prior is centred on 0). A change from baseline holds
    two DXA errors and the patient's own slope deviation, so its SD has the prior scale

    .. math::

        s_{\sigma v} = \sqrt{2\,\text{sigma\_scale}^2 + (\text{sd\_slope\_scale}\; t_v)^2}
        \quad (\sigma_v \sim N^+(0, s_{\sigma v})),

    :math:`\Omega \sim \mathrm{LKJ}(\text{lkj\_eta})` (the set's :math:`\eta`: 2 except
    ``vague``, 1 = uniform over correlation matrices), and baseline BMD is a covariate like any
    other, :math:`\beta\, s_x \sim N(0, \text{covariate\_sd})` (change per SD of baseline).
    At one year (:math:`t_v = 1`) under the ``sceptical`` set :math:`P(|\gamma_{vk}| \ge 2\%` of
    the reference BMD) = 5%, as for :math:`b_3` (tested by prior predictive sampling), and with
    the ``vague`` set the posterior means agree with the REML fit (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from models.trajectory import TrajectoryPriors
from models.trajectory_data import GROUP_NAMES, GroupIndicators, group_indicators, outcome_column, resolve_levels

__all__ = [
    "MEASURES",
    "PRIOR_FIELDS",
    "PRIOR_VISIT_FIELDS",
    "MmrmData",
    "MmrmPriors",
    "mmrm_data_arrays",
    "mmrm_frame",
    "prepare_mmrm_data",
    "prior_arrays",
]

#: Outcome measures: change from baseline in g/cm^2 or in % of the patient's baseline.
MEASURES: tuple[str, ...] = ("abs", "pct")

Measure = Literal["abs", "pct"]
#: Fields of the ``prior`` container (standardised units; the LKJ shape as is).
PRIOR_FIELDS: tuple[str, ...] = ("baseline_coef_sd", "lkj_eta")
#: Rows of the ``prior_visit`` container (dims ``prior_visit_field, visit``; standardised units).
PRIOR_VISIT_FIELDS: tuple[str, ...] = ("alpha_loc", "alpha_sd", "gamma_sd", "sd_scale")


@dataclass(frozen=True)
class MmrmPriors:
    r"""Prior scales on the data's scale (g/cm^2); weakly informative defaults.

    With :math:`\bar y` the mean of the observed outcome:

    .. math::

        \alpha_v \sim N(\bar y, \text{intercept\_sd}), \quad
        \gamma_v \sim N(0, \text{responder\_sd}), \quad
        \beta \sim N(0, \text{baseline\_coef\_sd}),

        \sigma_v \sim N^+(0, \text{sd\_scale}), \quad \Omega \sim \mathrm{LKJ}(\text{lkj\_eta}).

    ``responder_sd`` is the prior SD of every non-reference group's contrast :math:`\gamma_{vk}`.
    A 12-month change in BMD is a few % of ~0.9 g/cm^2 (a few hundredths of a g/cm^2) and DXA
    precision is ~0.01 g/cm^2, so scales of 0.1 g/cm^2 are several times wider than anything
    plausible; ``baseline_coef_sd = 0.5`` allows a change of half the baseline difference.
    For ``measure="pct"`` the g/cm^2 scales are converted at the mean baseline
    (:math:`\times 100 / \bar x`).
    """

    intercept_sd: float = 0.1
    responder_sd: float = 0.1
    baseline_coef_sd: float = 0.5
    sd_scale: float = 0.1
    lkj_eta: float = 2.0

    #: Order of the fields in :meth:`to_array` (the model's containers: :func:`prior_arrays`).
    FIELDS = ("intercept_sd", "responder_sd", "baseline_coef_sd", "sd_scale", "lkj_eta")

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"prior {name} must be a positive finite number, got {value!r}")

    @classmethod
    def vague(cls) -> MmrmPriors:
        """Priors 100 times wider and a uniform LKJ: the posterior is then driven by the data
        (its means match the REML estimates)."""
        return cls(intercept_sd=10.0, responder_sd=10.0, baseline_coef_sd=50.0, sd_scale=10.0,
                   lkj_eta=1.0)

    def to_array(self, y_scale: float, x_scale: float, unit: float = 1.0) -> np.ndarray:
        r"""Scales in the model's standardised units, in :attr:`FIELDS` order.

        ``unit`` converts g/cm^2 to the outcome's unit (1, or :math:`100 / \bar x` for %).
        """
        return np.array(
            [
                self.intercept_sd * unit / y_scale,
                self.responder_sd * unit / y_scale,
                self.baseline_coef_sd * unit * x_scale / y_scale,
                self.sd_scale * unit / y_scale,
                self.lkj_eta,
            ]
        )


@dataclass(frozen=True)
class MmrmData(GroupIndicators):
    """Validated MMRM arrays for one site and measure.

    Attributes
    ----------
    patient_ids : ndarray of str
        Analysed patients (with a baseline and at least one post-baseline value), sorted.
    visits : tuple of float
        Post-baseline visit months, sorted (the ``visit`` coord).
    y : ndarray, shape (n_patients, n_visits)
        Outcome (change in g/cm^2 or %), NaN where not observed.
    baseline : ndarray of float
        Baseline BMD (g/cm^2) per patient.
    group_x : ndarray, shape (n_patients, K - 1)
        Indicators of the non-reference levels per patient.
    measure : {"abs", "pct"}
    frame : DataFrame
        The analysed rows in long format (``patient_id, month, baseline, change, pct, group``
        and, for a responder study, ``responder``), ready for
        :func:`analysis.frequentist.mmrm.fit_mmrm`.
    levels : tuple of str
        The group levels, the reference first.
    """

    patient_ids: np.ndarray
    visits: tuple[float, ...]
    y: np.ndarray
    baseline: np.ndarray
    group_x: np.ndarray
    measure: str
    frame: pd.DataFrame = field(repr=False)
    levels: tuple[str, ...] = GROUP_NAMES

    @property
    def mask(self) -> np.ndarray:
        return np.isfinite(self.y)

    @property
    def n_obs(self) -> int:
        return int(self.mask.sum())

    @property
    def n_patients(self) -> int:
        return int(self.y.shape[0])

    @property
    def y_loc(self) -> float:
        return float(np.mean(self.y[self.mask]))

    @property
    def y_scale(self) -> float:
        sd = float(np.std(self.y[self.mask]))
        return sd if np.isfinite(sd) and sd > 1e-12 else 1.0

    @property
    def x_ref(self) -> float:
        """Mean baseline over the analysed rows (emmeans' reference value)."""
        return float(np.sum(self.baseline * self.mask.sum(axis=1)) / self.n_obs)

    @property
    def x_scale(self) -> float:
        sd = float(np.std(self.baseline))
        return sd if np.isfinite(sd) and sd > 1e-12 else 1.0

    def patterns(self) -> dict[str, int]:
        """Number of patients per missingness pattern, e.g. ``{"6,12": 24, "6,-": 2}``."""
        labels = [
            ",".join(f"{v:g}" if o else "-" for v, o in zip(self.visits, row)) for row in self.mask
        ]
        return dict(pd.Series(labels).value_counts().sort_index())


def mmrm_frame(data: pd.DataFrame, site: str, baseline_month: float = 0, *,
               levels: Sequence[str] | None = None, group_column: str = "analysis_group",
               time: str = "month") -> pd.DataFrame:
    """Post-baseline rows with ``baseline``, ``change`` (g/cm^2) and ``pct`` columns.

    Parameters
    ----------
    data : DataFrame
        Long format with ``patient_id``, ``time``, ``bmd_<site>`` and the group column.
    site : str
        Any site with a ``bmd_<site>`` column.
    baseline_month : float
        The visit holding the baseline value.
    levels : sequence of str, optional
        Group levels, the reference first, read from ``group_column`` (one level: a single arm);
        default a responder study's boolean ``responder``.
    group_column : str
    time : str
        The nominal visit in months (``month``).

    Returns
    -------
    DataFrame
        Columns ``patient_id`` (str), ``month``, ``bmd``, ``baseline``, ``change``, ``pct``,
        ``group`` (the level) and, for a responder study, ``responder`` (0.0/1.0); one row per
        observed post-baseline value of a patient with a baseline; the frame
        :func:`analysis.frequentist.mmrm.fit_mmrm` and the Bayesian model both analyse.

    Raises
    ------
    ValueError
        On a missing column, a missing month or group, a group that varies within a patient or is
        not a level, a duplicated patient-visit or no analysable row.
    """
    outcome = outcome_column(data, site)
    levels, gcol = resolve_levels(levels, group_column)
    legacy = gcol == "responder" and levels == GROUP_NAMES
    has_group = gcol in data.columns
    if len(levels) > 1 and not has_group:
        raise ValueError(f"data lacks column(s) {[gcol]}")
    needed = list(dict.fromkeys(["patient_id", time, outcome, *([gcol] if has_group else [])]))
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}")
    df = data.loc[data[outcome].notna(), needed].copy()
    if df[time].isna().any():
        raise ValueError(f"{time} is missing for rows with an observed outcome")
    df["patient_id"] = df["patient_id"].astype(str)
    df = df.rename(columns={time: "month", outcome: "bmd"})
    df["month"] = df["month"].astype(float)
    if has_group:
        if df[gcol].isna().any():
            raise ValueError(f"{gcol} is missing for some rows; resolve it before modelling")
        if (df.groupby("patient_id")[gcol].nunique() > 1).any():
            raise ValueError(f"{gcol} varies within a patient")
        per_patient = df.groupby("patient_id")[gcol].first()
        gx = group_indicators(per_patient, levels, gcol)  # validates the values
        level = np.asarray(levels)[np.where(gx.any(axis=1), gx.argmax(axis=1) + 1, 0)] if gx.shape[1] \
            else np.full(len(per_patient), levels[0])
        df["group"] = df["patient_id"].map(pd.Series(level, index=per_patient.index))
        if legacy:
            df["responder"] = df["patient_id"].map(pd.Series(gx[:, 0], index=per_patient.index))
    else:
        df["group"] = levels[0]
    dup = df.duplicated(["patient_id", "month"])
    if dup.any():
        row = df.loc[dup].iloc[0]
        raise ValueError(f"patient {row['patient_id']!r} has more than one {outcome} at month "
                         f"{row['month']:g}")
    base = df.loc[df["month"] == float(baseline_month)].set_index("patient_id")["bmd"]
    if (base <= 0).any():
        raise ValueError(f"baseline {outcome} must be positive")
    df["baseline"] = df["patient_id"].map(base)
    post = df.loc[(df["month"] > float(baseline_month)) & df["baseline"].notna()].copy()
    if post.empty:
        raise ValueError(f"no post-baseline {outcome} value of a patient with a baseline")
    post["change"] = post["bmd"] - post["baseline"]
    post["pct"] = 100.0 * post["change"] / post["baseline"]
    cols = ["patient_id", "month", "bmd", "baseline", "change", "pct", "group", *(["responder"] if legacy else [])]
    return post[cols].sort_values(["patient_id", "month"]).reset_index(drop=True)


def prepare_mmrm_data(
    data: pd.DataFrame,
    site: str,
    measure: Measure = "abs",
    *,
    baseline_month: float = 0,
    visits: tuple[float, ...] | None = None,
    levels: Sequence[str] | None = None,
    group_column: str = "analysis_group",
    time: str = "month",
) -> MmrmData:
    """Validate long-format data and turn one site into MMRM arrays.

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit (``patient_id``, ``time``, ``bmd_<site>``, the group column);
        see :func:`mmrm_frame`.
    site : str
    measure : {"abs", "pct"}
        Change in g/cm^2 or in % of the patient's baseline.
    baseline_month : float
    visits : tuple of float, optional
        Required visit months (a built model's); default the post-baseline months in the data.
    levels, group_column, time
        See :func:`mmrm_frame`.

    Returns
    -------
    MmrmData

    Raises
    ------
    ValueError
        See :func:`mmrm_frame`; also without a post-baseline visit, visits that differ
        from ``visits``, or a group without patients.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    levels, gcol = resolve_levels(levels, group_column)
    frame = mmrm_frame(data, site, baseline_month, levels=levels if gcol != "responder" else None,
                       group_column=gcol, time=time)
    found = tuple(float(v) for v in sorted(frame["month"].unique()))
    if visits is not None and found != tuple(float(v) for v in visits):
        raise ValueError(f"post-baseline visits {found} differ from the model's {tuple(visits)}")
    if len(found) < 1:
        raise ValueError("an MMRM needs a post-baseline visit, the data have none")
    codes, ids = pd.factorize(frame["patient_id"], sort=True)
    pos = np.searchsorted(np.asarray(found), frame["month"].to_numpy())
    y = np.full((len(ids), len(found)), np.nan)
    y[codes, pos] = frame["change" if measure == "abs" else "pct"].to_numpy()
    per_patient = frame.groupby(codes)[["baseline", "group"]].first().sort_index()
    group_x = np.stack([(per_patient["group"] == lv).to_numpy(dtype=float) for lv in levels[1:]], axis=1) \
        if len(levels) > 1 else np.zeros((len(ids), 0))
    empty = [lv for lv in levels if not (per_patient["group"] == lv).any()]
    if empty:
        raise ValueError(f"every group needs patients with a baseline and a post-baseline value; none in "
                         f"{', '.join(map(repr, empty))} (groups {', '.join(levels)})")
    return MmrmData(
        patient_ids=np.asarray(ids, dtype=str),
        visits=found,
        y=y,
        baseline=per_patient["baseline"].to_numpy(dtype=float),
        group_x=group_x,
        measure=measure,
        frame=frame,
        levels=levels,
    )


def prior_arrays(
    priors: MmrmPriors | TrajectoryPriors, prep: MmrmData
) -> tuple[np.ndarray, np.ndarray]:
    r"""The model's prior containers for ``priors`` on the data ``prep`` (see the module doc,
    *Scaling and priors*).

    Parameters
    ----------
    priors : MmrmPriors or TrajectoryPriors
        The MMRM's own scales, or a named prior set (:func:`models.priors.prior_set`),
        translated per visit at :math:`t_v` = month / 12 years.
    prep : MmrmData

    Returns
    -------
    prior : ndarray, shape (2,)
        :data:`PRIOR_FIELDS`: the baseline coefficient's prior SD and the LKJ shape.
    prior_visit : ndarray, shape (4, n_visits)
        :data:`PRIOR_VISIT_FIELDS`: prior mean and SD of :math:`\alpha_v`, SD of
        :math:`\gamma_v` and scale of :math:`\sigma_v`, standardised (divided by
        :math:`s_y`; the location also shifted by :math:`\bar y`).
    """
    unit = 1.0 if prep.measure == "abs" else 100.0 / prep.x_ref
    m = len(prep.visits)
    ys = prep.y_scale
    if isinstance(priors, MmrmPriors):
        loc = np.zeros(m)  # alpha_v ~ N(mean observed change, intercept_sd)
        alpha_sd = np.full(m, priors.intercept_sd)
        gamma_sd = np.full(m, priors.responder_sd)  # every contrast alike
        sd_scale = np.full(m, priors.sd_scale)
        beta_sd = priors.baseline_coef_sd * prep.x_scale  # per g/cm^2 of baseline
        eta = priors.lkj_eta
    elif isinstance(priors, TrajectoryPriors):
        t = np.asarray(prep.visits, dtype=float) / 12.0
        loc = np.full(m, -prep.y_loc / ys)  # alpha_v ~ N(0, slope_sd t_v): no change
        alpha_sd = priors.slope_sd * t
        gamma_sd = priors.responder_slope_sd * t
        sd_scale = np.sqrt(2.0 * priors.sigma_scale**2 + (priors.sd_slope_scale * t) ** 2)
        beta_sd = priors.covariate_sd  # per SD of baseline, as every covariate
        eta = priors.lkj_eta
    else:
        raise TypeError(f"priors must be MmrmPriors or TrajectoryPriors, got {type(priors).__name__}")
    prior = np.array([beta_sd * unit / ys, eta])
    prior_visit = np.stack([loc, alpha_sd * unit / ys, gamma_sd * unit / ys,
                            sd_scale * unit / ys])
    return prior, prior_visit


def mmrm_data_arrays(
    prep: MmrmData, priors: MmrmPriors | TrajectoryPriors, endpoint_month: float
) -> dict[str, np.ndarray]:
    """Arrays for every ``pm.Data`` container, keyed by container name."""
    x_ref = prep.x_ref
    prior, prior_visit = prior_arrays(priors, prep)
    mask = prep.mask
    y_std = np.where(mask, (np.nan_to_num(prep.y) - prep.y_loc) / prep.y_scale, 0.0)
    arrays = {
        "y_std": y_std,
        "mask": mask.astype(float),
        "group_x": prep.group_x,
        "x_std": (prep.baseline - x_ref) / prep.x_scale,
        "y_loc": np.asarray(prep.y_loc),
        "y_scale": np.asarray(prep.y_scale),
        "x_ref": np.asarray(x_ref),
        "x_scale": np.asarray(prep.x_scale),
        "prior": prior,
        "prior_visit": prior_visit,
        "endpoint": (np.asarray(prep.visits) == float(endpoint_month)).astype(float),
        "is_pct": np.asarray(float(prep.measure == "pct")),
    }
    if not prep.group_x.shape[1]:
        del arrays["group_x"]
    return arrays
