r"""Bayesian mixed model for repeated measures (MMRM) of the change in BMD from baseline.

The Bayesian counterpart of :func:`analysis.frequentist.mmrm.fit_mmrm` with
``"change ~ baseline + month * responder"`` and an unstructured covariance (what
``brms.mmrm`` / ``brms`` with ``unstr(visit, patient)`` fit).

The model
---------
Patient :math:`i` (responder indicator :math:`r_i \in \{0, 1\}`, baseline BMD :math:`x_i`) is
observed at a subset :math:`S_i` of the post-baseline visits :math:`v = 1, \dots, m` (visit a
factor). The outcome :math:`y_{iv}` is the change from baseline in g/cm^2 (``measure="abs"``) or
in % of the patient's baseline (``measure="pct"``):

.. math::

    y_{iv} = \alpha_v + \gamma_v r_i + \beta\,(x_i - \bar x) + e_{iv}, \qquad
    e_{i, S_i} \sim \mathrm{MVN}\bigl(0, \Sigma_{S_i S_i}\bigr),

    \Sigma = \mathrm{diag}(\sigma)\, \Omega\, \mathrm{diag}(\sigma), \qquad
    \Omega \sim \mathrm{LKJ}(\eta),

    \alpha_v \sim N(m_{\alpha}, s_{\alpha v}), \quad \gamma_v \sim N(0, s_{\gamma v}), \quad
    \beta \sim N(0, s_\beta), \qquad \sigma_v \sim N^+(0, s_{\sigma v}),

with the prior constants of *Scaling and priors* below.

The visit-by-responder cell means span the same space as R's ``month * responder`` (intercept,
``m - 1`` visit contrasts, responder, ``m - 1`` interactions); :math:`\bar x` is the mean
baseline over the analysed *rows* (emmeans' reference grid puts numeric covariates there), so
the LS-mean of group :math:`g` at visit :math:`v` is simply :math:`\alpha_v + \gamma_v g`.
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
patients (:func:`unrolled_logdet_quad`), so the graph holds no per-pattern shapes: the number of
patients and the missingness patterns are data and can change without recompiling (only the
number of visits is structure). Patients without a baseline or without any post-baseline value
are not analysed (as in the REML fit, whose rows need ``baseline``).

Scaling and priors
------------------
Internally the outcome is centred and scaled, :math:`y^* = (y - \bar y) / s_y` over the
observed values, and the baseline is :math:`x^* = (x - \bar x) / s_x`. All prior scales are
stated on the data's scale in g/cm^2, divided by :math:`s_y` inside the model and held in the
``prior`` / ``prior_visit`` containers (data: new priors need no recompilation; see
:func:`prior_arrays`). For ``measure="pct"`` the g/cm^2 scales are first converted to % at the
mean baseline (times :math:`100 / \bar x`). Two kinds of priors are accepted:

:class:`MmrmPriors` (the default of :func:`build_mmrm_model`)
    The same scale at every visit: :math:`m_\alpha = \bar y` (the mean observed change),
    :math:`s_{\alpha v}` = ``intercept_sd``, :math:`s_{\gamma v}` = ``responder_sd``,
    :math:`s_{\sigma v}` = ``sd_scale``, :math:`s_\beta` = ``baseline_coef_sd`` (g/cm^2 of
    change per g/cm^2 of baseline), :math:`\eta` = ``lkj_eta``.

A named prior set (:class:`models.trajectory.TrajectoryPriors`, :func:`models.priors.prior_set`)
    What ``rajak fit --model mmrm --priors NAME`` uses: the trajectory model's priors translated
    to the visits (:math:`t_v` = month / 12, in years), so every model states the same belief
    about the same quantity. The trajectory model's month-:math:`12 t_v` change is
    :math:`b_1 t_v` for non-responders and its responder contrast :math:`b_3 t_v`, hence

    .. math::

        \alpha_v \sim N(0, \text{slope\_sd}\; t_v), \qquad
        \gamma_v \sim N(0, \text{responder\_slope\_sd}\; t_v),

    centred on no change (the set's slope prior is centred on 0). A change from baseline holds
    two DXA errors and the patient's own slope deviation, so its SD has the prior scale

    .. math::

        s_{\sigma v} = \sqrt{2\,\text{sigma\_scale}^2 + (\text{sd\_slope\_scale}\; t_v)^2}
        \quad (\sigma_v \sim N^+(0, s_{\sigma v})),

    :math:`\Omega \sim \mathrm{LKJ}(\text{lkj\_eta})` (the set's :math:`\eta`: 2 except
    ``vague``, 1 = uniform over correlation matrices), and baseline BMD is a covariate like any
    other, :math:`\beta\, s_x \sim N(0, \text{covariate\_sd})` (change per SD of baseline).
    For the 12-month visit of the ``sceptical`` set :math:`P(|\gamma_{12}| \ge 2\%` of the
    reference BMD) = 5%, as for :math:`b_3` (tested by prior predictive sampling), and with the
    ``vague`` set the posterior means agree with the REML fit (tested).

Reported quantities (original scale, see :data:`REPORTED_VARS`)
-----------------------------------------------------------------
- ``ls_mean`` (dims ``visit, group``): :math:`\alpha_v + \gamma_v g`, the mean change at visit
  :math:`v` in group :math:`g` at the mean baseline, in the outcome's unit;
- ``baseline_coef``: :math:`\beta`; ``sd_visit`` (dims ``visit``): :math:`\sigma_v`;
  ``corr_visit`` (dims ``visit_pair``, labels like ``"6:12"``): the correlations
  :math:`\Omega_{vw}`, :math:`v < w` (the strictly lower triangle, row-major);
- ``change_12m``, ``pct_change_12m`` (dims ``group``), ``diff_change_12m``,
  ``diff_pct_change_12m``: the LS-means at the endpoint (month 12 by default) and the
  responder - non-responder differences, in g/cm^2 and in %. The modelled measure is reported
  as is; the other one is converted at the mean baseline, :math:`\mathrm{pct} = 100\,
  \mathrm{change} / \bar x` (``measure="abs"``) or :math:`\mathrm{change} = \mathrm{pct}\,
  \bar x / 100` (``measure="pct"``). The REML analysis (:mod:`analysis.frequentist.primary`)
  fits one MMRM per measure; fit one model per measure for the same.
- ``baseline_mean`` (dims ``group``): :math:`\bar x` for both groups, the baseline at which
  the LS-means are taken (a constant, kept for consumers that scale by a baseline mean, e.g.
  a ROPE in g/cm^2; not among the diagnostic variables).

With vague priors (:meth:`MmrmPriors.vague` or the ``vague`` prior set) the posterior means of
the LS-means agree with the REML estimates (tested).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from models.lkj import lkj_corr_cholesky
from models.marginal import as_bool_responder
from models.trajectory import TrajectoryPriors

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "GROUP_NAMES",
    "MEASURES",
    "REPORTED_VARS",
    "SITES",
    "MmrmData",
    "MmrmModel",
    "MmrmPriors",
    "PRIOR_FIELDS",
    "PRIOR_VISIT_FIELDS",
    "build_mmrm_model",
    "prior_arrays",
    "mmrm_frame",
    "prepare_mmrm_data",
    "unrolled_logdet_quad",
]

#: Skeletal sites and the data-contract column holding each one's BMD (g/cm^2).
SITES: dict[str, str] = {"spine": "bmd_spine", "femoral_neck": "bmd_femoral_neck"}
#: Outcome measures: change from baseline in g/cm^2 or in % of the patient's baseline.
MEASURES: tuple[str, ...] = ("abs", "pct")
#: Labels of the ``group`` dim (responder indicator 0, 1).
GROUP_NAMES: tuple[str, ...] = ("non-responder", "responder")
#: Original-scale quantities reported by the model.
REPORTED_VARS: tuple[str, ...] = (
    "ls_mean",
    "baseline_coef",
    "sd_visit",
    "corr_visit",
    "change_12m",
    "pct_change_12m",
    "diff_change_12m",
    "diff_pct_change_12m",
)

Measure = Literal["abs", "pct"]
#: Fields of the ``prior`` container (standardised units; the LKJ shape as is).
PRIOR_FIELDS: tuple[str, ...] = ("baseline_coef_sd", "lkj_eta")
#: Rows of the ``prior_visit`` container (dims ``prior_visit_field, visit``; standardised units).
PRIOR_VISIT_FIELDS: tuple[str, ...] = ("alpha_loc", "alpha_sd", "gamma_sd", "sd_scale")

_MODEL_VERSION = 3  # bump when the graph built below changes (part of the compile-cache key); 3: models.lkj


@dataclass(frozen=True)
class MmrmPriors:
    r"""Prior scales on the data's scale (g/cm^2); weakly informative defaults.

    With :math:`\bar y` the mean of the observed outcome:

    .. math::

        \alpha_v \sim N(\bar y, \text{intercept\_sd}), \quad
        \gamma_v \sim N(0, \text{responder\_sd}), \quad
        \beta \sim N(0, \text{baseline\_coef\_sd}),

        \sigma_v \sim N^+(0, \text{sd\_scale}), \quad \Omega \sim \mathrm{LKJ}(\text{lkj\_eta}).

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
class MmrmData:
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
    responder : ndarray of float
        0/1 per patient.
    measure : {"abs", "pct"}
    frame : DataFrame
        The analysed rows in long format (``patient_id, month, baseline, change, pct,
        responder``), ready for :func:`analysis.frequentist.mmrm.fit_mmrm`.
    """

    patient_ids: np.ndarray
    visits: tuple[float, ...]
    y: np.ndarray
    baseline: np.ndarray
    responder: np.ndarray
    measure: str
    frame: pd.DataFrame = field(repr=False)

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


def mmrm_frame(data: pd.DataFrame, site: str = "spine", baseline_month: float = 0) -> pd.DataFrame:
    """Post-baseline rows with ``baseline``, ``change`` (g/cm^2) and ``pct`` columns.

    Parameters
    ----------
    data : DataFrame
        Long format with ``patient_id``, ``month``, the site's BMD column and ``responder``.
    site : {"spine", "femoral_neck"}
    baseline_month : float
        The visit holding the baseline value.

    Returns
    -------
    DataFrame
        Columns ``patient_id`` (str), ``month``, ``bmd``, ``baseline``, ``change``, ``pct``,
        ``responder`` (0.0/1.0), one row per observed post-baseline value of a patient with a
        baseline; the frame :func:`analysis.frequentist.mmrm.fit_mmrm` and the Bayesian model
        both analyse.

    Raises
    ------
    ValueError
        On an unknown site, a missing column, a missing month or responder, a responder status
        that varies within a patient, a duplicated patient-visit or no analysable row.
    """
    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}")
    outcome = SITES[site]
    needed = ["patient_id", "month", outcome, "responder"]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}")
    df = data.loc[data[outcome].notna(), needed].copy()
    if df["month"].isna().any():
        raise ValueError("month is missing for rows with an observed outcome")
    df["patient_id"] = df["patient_id"].astype(str)
    df["month"] = df["month"].astype(float)
    df["responder"] = as_bool_responder(df["responder"]).astype(float)
    if (df.groupby("patient_id")["responder"].nunique() > 1).any():
        raise ValueError("responder status varies within a patient")
    dup = df.duplicated(["patient_id", "month"])
    if dup.any():
        row = df.loc[dup].iloc[0]
        raise ValueError(f"patient {row['patient_id']!r} has more than one {outcome} at month "
                         f"{row['month']:g}")
    df = df.rename(columns={outcome: "bmd"})
    base = df.loc[df["month"] == float(baseline_month)].set_index("patient_id")["bmd"]
    if (base <= 0).any():
        raise ValueError(f"baseline {outcome} must be positive")
    df["baseline"] = df["patient_id"].map(base)
    post = df.loc[(df["month"] > float(baseline_month)) & df["baseline"].notna()].copy()
    if post.empty:
        raise ValueError(f"no post-baseline {outcome} value of a patient with a baseline")
    post["change"] = post["bmd"] - post["baseline"]
    post["pct"] = 100.0 * post["change"] / post["baseline"]
    cols = ["patient_id", "month", "bmd", "baseline", "change", "pct", "responder"]
    return post[cols].sort_values(["patient_id", "month"]).reset_index(drop=True)


def prepare_mmrm_data(
    data: pd.DataFrame,
    site: str = "spine",
    measure: Measure = "abs",
    *,
    baseline_month: float = 0,
    visits: tuple[float, ...] | None = None,
) -> MmrmData:
    """Validate long-format data and turn one site into MMRM arrays.

    Parameters
    ----------
    data : DataFrame
        One row per patient-visit (``patient_id``, ``month``, the site's BMD column,
        ``responder``); see :func:`mmrm_frame`.
    site : {"spine", "femoral_neck"}
    measure : {"abs", "pct"}
        Change in g/cm^2 or in % of the patient's baseline.
    baseline_month : float
    visits : tuple of float, optional
        Required visit months (a built model's); default the post-baseline months in the data.

    Returns
    -------
    MmrmData

    Raises
    ------
    ValueError
        See :func:`mmrm_frame`; also on fewer than two post-baseline visits, visits that differ
        from ``visits``, or a group without patients.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    frame = mmrm_frame(data, site, baseline_month)
    found = tuple(float(v) for v in sorted(frame["month"].unique()))
    if visits is not None and found != tuple(float(v) for v in visits):
        raise ValueError(f"post-baseline visits {found} differ from the model's {tuple(visits)}")
    if len(found) < 2:
        raise ValueError(f"an MMRM needs at least two post-baseline visits, got {found}")
    codes, ids = pd.factorize(frame["patient_id"], sort=True)
    pos = np.searchsorted(np.asarray(found), frame["month"].to_numpy())
    y = np.full((len(ids), len(found)), np.nan)
    y[codes, pos] = frame["change" if measure == "abs" else "pct"].to_numpy()
    per_patient = frame.groupby(codes)[["baseline", "responder"]].first().sort_index()
    responder = per_patient["responder"].to_numpy(dtype=float)
    if responder.min() == responder.max():
        raise ValueError("both responders and non-responders are needed")
    return MmrmData(
        patient_ids=np.asarray(ids, dtype=str),
        visits=found,
        y=y,
        baseline=per_patient["baseline"].to_numpy(dtype=float),
        responder=responder,
        measure=measure,
        frame=frame,
    )


def prior_arrays(
    priors: MmrmPriors | TrajectoryPriors, prep: MmrmData
) -> tuple[np.ndarray, np.ndarray]:
    r"""The model's prior containers for ``priors`` on the data ``prep`` (see the module doc).

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
        gamma_sd = np.full(m, priors.responder_sd)
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


def _data_arrays(
    prep: MmrmData, priors: MmrmPriors | TrajectoryPriors, endpoint_month: float
) -> dict[str, np.ndarray]:
    """Arrays for every ``pm.Data`` container, keyed by container name."""
    x_ref = prep.x_ref
    prior, prior_visit = prior_arrays(priors, prep)
    mask = prep.mask
    y_std = np.where(mask, (np.nan_to_num(prep.y) - prep.y_loc) / prep.y_scale, 0.0)
    return {
        "y_std": y_std,
        "mask": mask.astype(float),
        "responder": prep.responder,
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


def _pair_labels(labels: list[str]) -> list[str]:
    """``"a:b"`` for the strictly lower triangle (row-major, as ``np.tril_indices(k, -1)``)."""
    rows, cols = np.tril_indices(len(labels), -1)
    return [f"{labels[c]}:{labels[r]}" for r, c in zip(rows, cols)]


def unrolled_logdet_quad(a: list[list[Any]], c: list[Any]) -> tuple[Any, Any]:
    r"""Log-determinant and quadratic form of small SPD matrices, elementwise over a batch.

    Parameters
    ----------
    a : list of lists of tensors
        ``a[i][j]`` (``j <= i`` is read) is entry :math:`(i, j)` of a symmetric positive
        definite :math:`k \times k` matrix :math:`A_n` for every batch element :math:`n`;
        entries broadcast (scalars for entries shared by the batch).
    c : list of tensors
        The :math:`k` entries of a vector :math:`c_n`.

    Returns
    -------
    logdet, quad : tensors
        :math:`\log|A_n|` and :math:`c_n^\top A_n^{-1} c_n` per batch element.

    Notes
    -----
    The Cholesky factorisation :math:`A = L L^\top` (:math:`L_{jj} = (a_{jj} - \sum_{l<j}
    L_{jl}^2)^{1/2}`, :math:`L_{ij} = (a_{ij} - \sum_{l<j} L_{il} L_{jl}) / L_{jj}`) and the
    forward solve :math:`L z = c` are written out entry by entry, so the graph is made of
    elementwise operations only (no batched linear-algebra ops, cheap to compile and
    differentiate); :math:`\log|A| = 2\sum_j \log L_{jj}`, :math:`c^\top A^{-1} c = z^\top z`.
    Meant for :math:`k \lesssim 8`.
    """
    import pytensor.tensor as pt

    k = len(c)
    low: dict[tuple[int, int], Any] = {}
    for j in range(k):
        for i in range(j, k):
            s = a[i][j]
            for m in range(j):
                s = s - low[i, m] * low[j, m]
            low[i, j] = pt.sqrt(s) if i == j else s / low[j, j]
    z: list[Any] = []
    for j in range(k):
        s = c[j]
        for m in range(j):
            s = s - low[j, m] * z[m]
        z.append(s / low[j, j])
    logdet = 2.0 * sum(pt.log(low[j, j]) for j in range(k))
    quad = sum(zj * zj for zj in z)
    return logdet, quad


@dataclass
class MmrmModel:
    """A built Bayesian MMRM plus what :func:`analysis.engine.sampling.sample` needs to fit it.

    Attributes
    ----------
    pymc_model : pymc.Model
    site, measure, endpoint_month, priors
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

    @property
    def visits(self) -> tuple[float, ...]:
        return self.prepared.visits

    @property
    def structure_key(self) -> str:
        """Hash of what shapes the graph apart from data: the number of visits only (measure,
        endpoint, priors and visit labels are data or coords)."""
        spec = {"model": "rajak.mmrm", "version": _MODEL_VERSION, "n_visits": len(self.visits)}
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
            prepare_mmrm_data(data, self.site, self.measure, visits=self.visits)
            if data is not None
            else self.prepared
        )
        priors = priors if priors is not None else self.priors
        arrays = _data_arrays(prep, priors, self.endpoint_month)
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
    site: str = "spine",
    measure: Measure = "abs",
    *,
    priors: MmrmPriors | TrajectoryPriors | None = None,
    endpoint_month: float = 12,
) -> MmrmModel:
    r"""Build the Bayesian MMRM for one site (see the module docstring).

    Parameters
    ----------
    data : DataFrame
        Long format, one row per patient-visit (``patient_id``, ``month``, ``bmd_spine`` /
        ``bmd_femoral_neck``, ``responder``); month 0 is the baseline. A missing responder
        status raises.
    site : {"spine", "femoral_neck"}
    measure : {"abs", "pct"}
        Outcome: change from baseline in g/cm^2 or in %.
    priors : MmrmPriors or TrajectoryPriors, optional
        Defaults to ``MmrmPriors()``; ``MmrmPriors.vague()`` for a data-driven posterior. A
        named prior set (``models.priors.prior_set(name, site)``, what ``rajak fit --priors``
        passes) is translated per visit as described under *Prior sets* in the module doc.
    endpoint_month : float
        The visit of ``change_12m`` and friends; must be a post-baseline visit.

    Returns
    -------
    MmrmModel
    """
    import pymc as pm
    import pytensor.tensor as pt

    priors = priors if priors is not None else MmrmPriors()
    prep = prepare_mmrm_data(data, site, measure)
    if float(endpoint_month) not in prep.visits:
        raise ValueError(f"endpoint_month {endpoint_month:g} is not a post-baseline visit "
                         f"{prep.visits}")
    arrays = _data_arrays(prep, priors, endpoint_month)
    m_vis = len(prep.visits)
    visit_labels = [f"{v:g}" for v in prep.visits]
    coords: dict[str, Any] = {
        "patient": prep.patient_ids,
        "visit": visit_labels,
        "visit_pair": _pair_labels(visit_labels),
        "group": list(GROUP_NAMES),
        "prior_field": list(PRIOR_FIELDS),
        "prior_visit_field": list(PRIOR_VISIT_FIELDS),
    }
    with pm.Model(coords=coords) as model:
        y_std = pm.Data("y_std", arrays["y_std"], dims=("patient", "visit"))
        mask = pm.Data("mask", arrays["mask"], dims=("patient", "visit"))
        resp = pm.Data("responder", arrays["responder"], dims="patient")
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
        gamma = pm.Normal("gamma_std", 0.0, pv[2], dims="visit")
        beta = pm.Normal("beta_std", 0.0, ps[0])
        # Sigma = diag(s) L L' diag(s): unit half-normal SDs and the Cholesky factor of an LKJ(eta)
        # correlation from its partial correlations (models.lkj)
        sd_unit = pm.HalfNormal("sd_visit_unit", 1.0, dims="visit")
        corr_l = lkj_corr_cholesky("corr_visit_cpc", m_vis, ps[1]) if m_vis > 1 else pt.ones((1, 1))
        # sd prior N+(0, sd_scale_v): scale row v of the unit-scale factor (the correlation is
        # scale-free)
        chol = (pv[3] * sd_unit)[:, None] * corr_l
        cov = pt.dot(chol, chol.T)

        mu = alpha[None, :] + gamma[None, :] * resp[:, None] + beta * x_std[:, None]
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
        g = pt.as_tensor(np.array([0.0, 1.0]))
        ls = pm.Deterministic(
            "ls_mean",
            y_loc + y_scale * (alpha[:, None] + gamma[:, None] * g[None, :]),
            dims=("visit", "group"),
        )
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
            "change_12m", pt.switch(is_pct, ls_end * x_ref / 100.0, ls_end), dims="group"
        )
        pct = pm.Deterministic(
            "pct_change_12m", pt.switch(is_pct, ls_end, 100.0 * ls_end / x_ref), dims="group"
        )
        pm.Deterministic("diff_change_12m", change[1] - change[0])
        pm.Deterministic("diff_pct_change_12m", pct[1] - pct[0])
        # the reference baseline of the LS-means (a constant: not among the diagnostic vars)
        pm.Deterministic("baseline_mean", x_ref * pt.ones(2), dims="group")

    return MmrmModel(
        pymc_model=model,
        site=site,
        measure=measure,
        endpoint_month=float(endpoint_month),
        priors=priors,
        prepared=prep,
        data_values=arrays,
    )
