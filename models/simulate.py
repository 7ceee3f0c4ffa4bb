r"""The cohort simulator: one design object and one function that draws a longitudinal BMD study.

The same code makes the RAJAK digital twin (``data/rajak_twin.csv``) and the simulated studies of
the sample-size work, so everything a study needs is in :class:`Design`.

Generative model
----------------
Patient :math:`i` has a latent response type :math:`r_i \sim \mathrm{Bernoulli}(\pi)` (``1`` =
responds to treatment). Baseline covariates: age, sex (female with probability ``p_female``), BMI.

*Bone.* For site :math:`s \in \{\text{spine}, \text{femoral neck}\}` the true BMD follows a
straight line in time (months :math:`t`) whose slope is an annual percentage of baseline,

.. math::

    \mu_{is}(t) = b_{is}\,\bigl(1 + g_{is}\,t / 1200\bigr), \qquad
    b_{is} = m_s + \beta^{\text{male}}_s [\text{male}_i] + \beta^{\text{age}}_s(\text{age}_i - 55)
             + \beta^{\text{bmi}}_s(\text{BMI}_i - 26) + \tau_s z_{is},

    g_{is} = \gamma_s^{(r_i)} + \lambda_s \Delta_i + \omega_s w_{is},

with :math:`(z_{i,\text{spine}}, z_{i,\text{fn}})` and :math:`(w_{i,\text{spine}}, w_{i,\text{fn}})`
standard bivariate normal with correlations ``intercept_corr`` and ``slope_corr`` (patient-level
intercepts and slopes correlated across sites), and :math:`\tau_s` chosen so that the marginal
between-patient SD of baseline BMD equals ``baseline_sd``. :math:`\Delta_i = 3.5\,a_{i0} d_i`
is the patient's true improvement of disease activity on the DAS28 scale (below), so
:math:`\lambda_s` (``slope_per_das28_improvement_pct``) lets bone follow disease control, while the
type effect :math:`\gamma_s^{(1)} - \gamma_s^{(0)}` is a response-related effect beyond it. A DXA measurement is
:math:`y_{is}(t) = \mu_{is}(t)(1 + \varepsilon)`, :math:`\varepsilon \sim N(0, (\mathrm{CV}_s/100)^2)`
(short-term precision as a coefficient of variation), reported to 3 decimals as DXA software does.

*Disease activity.* A latent severity :math:`a_i(t) \ge 0` starts at
:math:`a_{i0} \sim N(\mu_a, \sigma_a)` and falls towards :math:`a_{i0}(1 - d_i)` with time
constant ``response_time_months``; the fractional improvement :math:`d_i` is normal with a mean
that depends on :math:`r_i`. The components are drawn from :math:`a_i(t)`:

.. math::

    \text{TJC28} &= \mathrm{round}(9a + N(0, 2^2)), \quad
    \text{SJC28} = \mathrm{round}(6a + N(0, 1.5^2)) \quad (\text{clipped to } 0..28), \\
    \text{CRP} &= \exp(\ln 3 + 1.6a + N(0, 0.6^2)) \text{ mg/l}, \\
    \text{PGA} &= \mathrm{round}(15 + 45a + N(0, 12^2)), \quad
    \text{EGA} = \mathrm{round}(10 + 45a + N(0, 10^2)) \quad (\text{mm, clipped to } 0..100),

so that :math:`a = 1` is a DAS28-CRP of about 5.2 and :math:`a = 0.2` about 2.4. DAS28-CRP and
cDAI are computed from the components (:mod:`models.scores`).

*Treatment and labs.* A fraction of patients take prednisolone at baseline (dose drawn from
common tablet doses); at each later visit a patient on prednisolone tapers by 2.5 mg with a
probability that depends on the response type. Alkaline phosphatase is log-normal at baseline and
moves with disease activity: :math:`\ln \text{ALP}(t) = \ln \text{ALP}_0 + \kappa (a(t) - a_0) + N(0, 0.07^2)`.

*Dropout* (monotone) happens at a scheduled post-baseline visit :math:`v` with hazard

.. math::

    \operatorname{logit} h_{iv} = \operatorname{logit} h_{0v} + \alpha\,(\text{DAS28}_{i,v^-} - 3.2)
        + \delta\,(100\,(\mu_{i,\text{spine}}(v) / b_{i,\text{spine}} - 1)),

where :math:`\text{DAS28}_{i,v^-}` is the last *observed* score (MAR when :math:`\delta = 0`) and
the last term is the patient's current, unobserved true spine change in % (MNAR when
:math:`\delta \ne 0`). The base hazard :math:`h_{0v}` is one value for every visit or one per
visit (``DropoutModel.visit_hazard``); under MCAR (:math:`\alpha = \delta = 0`)
:math:`P(\text{drop at } v \mid \text{present at } v) = h_{0v}`. A patient who drops out at
:math:`v` has no rows from :math:`v` on.
Attending patients miss an intermediate DXA with probability ``p_missed_dxa`` (intermittent).

Every default is documented with its source in :data:`PARAMETER_SOURCES`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from models.scores import cdai, das28_crp

__all__ = [
    "PARAMETER_SOURCES",
    "SIMULATOR_VERSION",
    "ActivityParameters",
    "CovariateParameters",
    "Design",
    "DropoutModel",
    "SimulatedStudy",
    "SiteParameters",
    "TreatmentParameters",
    "simulate",
]

SIMULATOR_VERSION = "1.0.0"

SITES = ("spine", "femoral_neck")


@dataclass(frozen=True)
class SiteParameters:
    """Bone parameters of one DXA site (g/cm^2 and % per year)."""

    baseline_mean: float
    baseline_sd: float
    male_effect: float
    age_effect_per_year: float
    bmi_effect_per_unit: float
    slope_responder_pct: float
    slope_nonresponder_pct: float
    slope_sd_pct: float
    precision_cv_pct: float
    slope_per_das28_improvement_pct: float = 0.0


@dataclass(frozen=True)
class ActivityParameters:
    """Latent disease-activity trajectory (severity scale, 1 ~ DAS28-CRP 5.2)."""

    baseline_mean: float = 0.95
    baseline_sd: float = 0.28
    improvement_responder: float = 0.55
    improvement_nonresponder: float = -0.25
    improvement_sd: float = 0.15
    response_time_months: float = 2.0
    visit_noise_sd: float = 0.08


@dataclass(frozen=True)
class TreatmentParameters:
    """Prednisolone use and tapering; alkaline phosphatase."""

    p_prednisolone: float = 0.62
    prednisolone_doses_mg: tuple[float, ...] = (2.5, 5.0, 5.0, 5.0, 7.5, 10.0)
    p_taper_responder: float = 0.30
    p_taper_nonresponder: float = 0.12
    taper_step_mg: float = 2.5
    alp_baseline_median: float = 78.0
    alp_baseline_log_sd: float = 0.28
    alp_activity_effect: float = 0.16
    alp_noise_log_sd: float = 0.07


@dataclass(frozen=True)
class CovariateParameters:
    """Baseline covariate distributions."""

    age_mean: float = 55.0
    age_sd: float = 12.0
    age_min: float = 25.0
    age_max: float = 85.0
    p_female: float = 0.80
    bmi_mean: float = 26.0
    bmi_sd: float = 4.5


@dataclass(frozen=True)
class DropoutModel:
    r"""Monotone dropout at scheduled post-baseline visits.

    Parameters
    ----------
    mechanism : {"mcar", "mar", "mnar"}
        Descriptive and checked against the coefficients: ``"mcar"`` needs both coefficients
        zero, ``"mar"`` needs ``bmd_log_odds == 0``, ``"mnar"`` a non-zero ``bmd_log_odds``.
    visit_hazard : float or tuple of float
        Base hazard :math:`h_0` (at DAS28-CRP 3.2 and no spine change; under MCAR the hazard
        itself): one value for every scheduled post-baseline visit, or one value per visit
        (:math:`h_{0v}`, in the order of ``Design.activity_months[1:]``; the number of values is
        checked by :class:`Design`). Each in [0, 1); a list is stored as a tuple.
    activity_log_odds, bmd_log_odds : float
        :math:`\alpha` and :math:`\delta` of the module docstring.
    p_missed_dxa : float
        Probability that an attending patient misses an intermediate DXA.
    p_lack_of_efficacy_if_active : float
        Probability that a dropout with DAS28-CRP > 3.2 is recorded as lack of efficacy.
    """

    mechanism: Literal["mcar", "mar", "mnar"] = "mar"
    visit_hazard: float | tuple[float, ...] = 0.09
    activity_log_odds: float = 0.5
    bmd_log_odds: float = 0.0
    p_missed_dxa: float = 0.05
    p_lack_of_efficacy_if_active: float = 0.7

    def __post_init__(self) -> None:
        h = self.visit_hazard
        if isinstance(h, (list, tuple)) or np.ndim(h) > 0:
            h = tuple(float(v) for v in h)
            if not h:
                raise ValueError("visit_hazard needs at least one value")
            object.__setattr__(self, "visit_hazard", h)
            for i, v in enumerate(h):
                if not 0.0 <= v < 1.0:
                    raise ValueError(f"visit_hazard[{i}] must be in [0, 1), got {v:g} "
                                     f"(one hazard per post-baseline visit, {len(h)} given)")
        elif not 0.0 <= h < 1.0:
            raise ValueError(f"visit_hazard must be in [0, 1), got {h}")
        if self.mechanism == "mcar" and (self.activity_log_odds or self.bmd_log_odds):
            raise ValueError("mechanism 'mcar' needs activity_log_odds = bmd_log_odds = 0")
        if self.mechanism == "mar" and self.bmd_log_odds:
            raise ValueError("mechanism 'mar' needs bmd_log_odds = 0 (use 'mnar')")
        if self.mechanism == "mnar" and not self.bmd_log_odds:
            raise ValueError("mechanism 'mnar' needs a non-zero bmd_log_odds")

    @property
    def per_visit(self) -> bool:
        """Whether ``visit_hazard`` gives one value per visit."""
        return isinstance(self.visit_hazard, tuple)

    def hazards(self, n_post_baseline: int) -> tuple[float, ...]:
        """Base hazard at each of ``n_post_baseline`` scheduled post-baseline visits.

        Raises
        ------
        ValueError
            If a per-visit ``visit_hazard`` does not have ``n_post_baseline`` values.
        """
        if not self.per_visit:
            return (float(self.visit_hazard),) * n_post_baseline
        if len(self.visit_hazard) != n_post_baseline:
            raise ValueError(f"dropout visit_hazard has {len(self.visit_hazard)} values "
                             f"{list(self.visit_hazard)} but the schedule has {n_post_baseline} "
                             "post-baseline visits (one hazard per visit)")
        return tuple(self.visit_hazard)


def _default_spine() -> SiteParameters:
    return SiteParameters(
        baseline_mean=0.911, baseline_sd=0.143, male_effect=0.06, age_effect_per_year=-0.002,
        bmi_effect_per_unit=0.006, slope_responder_pct=-0.3, slope_nonresponder_pct=-2.4,
        slope_sd_pct=1.5, precision_cv_pct=1.1, slope_per_das28_improvement_pct=0.5,
    )


def _default_femoral_neck() -> SiteParameters:
    return SiteParameters(
        baseline_mean=0.801, baseline_sd=0.159, male_effect=0.06, age_effect_per_year=-0.004,
        bmi_effect_per_unit=0.007, slope_responder_pct=-0.3, slope_nonresponder_pct=-1.8,
        slope_sd_pct=2.0, precision_cv_pct=1.75, slope_per_das28_improvement_pct=0.3,
    )


@dataclass(frozen=True)
class Design:
    """Everything that defines a simulated study.

    Parameters
    ----------
    n_patients
        Number of patients recruited.
    dxa_months, activity_months
        Visit schedule (months from baseline; both must start at 0). Disease activity and labs are
        recorded at every ``activity_months`` visit, DXA at ``dxa_months`` (a subset).
    responder_fraction
        :math:`\\pi`, the probability of the latent response type.
    spine, femoral_neck
        :class:`SiteParameters` per site.
    intercept_corr, slope_corr
        Between-site correlation of patient-level baseline BMD and annual % change.
    """

    n_patients: int = 46
    dxa_months: tuple[int, ...] = (0, 6, 12)
    activity_months: tuple[int, ...] = (0, 3, 6, 12)
    responder_fraction: float = 0.68
    spine: SiteParameters = field(default_factory=_default_spine)
    femoral_neck: SiteParameters = field(default_factory=_default_femoral_neck)
    intercept_corr: float = 0.6
    slope_corr: float = 0.5
    activity: ActivityParameters = field(default_factory=ActivityParameters)
    treatment: TreatmentParameters = field(default_factory=TreatmentParameters)
    covariates: CovariateParameters = field(default_factory=CovariateParameters)
    dropout: DropoutModel = field(default_factory=DropoutModel)

    def __post_init__(self) -> None:
        if self.n_patients < 2:
            raise ValueError(f"n_patients must be at least 2, got {self.n_patients}")
        if not self.activity_months or self.activity_months[0] != 0 or self.dxa_months[0] != 0:
            raise ValueError("visit schedules must start at month 0 (baseline)")
        if list(self.activity_months) != sorted(set(self.activity_months)):
            raise ValueError(f"activity_months must be increasing: {self.activity_months}")
        if not set(self.dxa_months) <= set(self.activity_months):
            raise ValueError("dxa_months must be a subset of activity_months")
        if not 0.0 <= self.responder_fraction <= 1.0:
            raise ValueError(f"responder_fraction must be in [0, 1], got {self.responder_fraction}")
        for name in ("intercept_corr", "slope_corr"):
            if not -1.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (-1, 1)")
        if self.dropout.per_visit:
            self.dropout.hazards(len(self.activity_months) - 1)  # one hazard per post-baseline visit

    def site(self, name: str) -> SiteParameters:
        """Parameters of site ``name`` ('spine' or 'femoral_neck')."""
        if name not in SITES:
            raise KeyError(f"unknown site {name!r}; expected one of {SITES}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dictionary of the design."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Design":
        """Inverse of :meth:`to_dict` (nested dictionaries become the parameter classes)."""
        d = dict(d)
        nested = {
            "spine": SiteParameters, "femoral_neck": SiteParameters,
            "activity": ActivityParameters, "treatment": TreatmentParameters,
            "covariates": CovariateParameters, "dropout": DropoutModel,
        }
        for key, klass in nested.items():
            if key in d and isinstance(d[key], dict):
                sub = dict(d[key])
                for k, v in sub.items():
                    if isinstance(v, list):
                        sub[k] = tuple(v)
                d[key] = klass(**sub)
        for key in ("dxa_months", "activity_months"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def with_updates(self, **changes: Any) -> "Design":
        """A copy with top-level fields replaced; nested fields as ``"spine.slope_sd_pct"``."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            if "." in key:
                outer, inner = key.split(".", 1)
                nested.setdefault(outer, {})[inner] = value
            else:
                top[key] = value
        for outer, inner in nested.items():
            top[outer] = replace(getattr(self, outer), **inner)
        return replace(self, **top)


# Where each default comes from (shared/literature.md; "assumption" where no source exists).
PARAMETER_SOURCES: dict[str, str] = {
    "n_patients": "RAJAK: 46 recruited (Schulz et al. 2025)",
    "dxa_months": "assumption: DXA at baseline, 6 and 12 months (schedule not published)",
    "activity_months": "assumption: DAS28-CRP, cDAI and labs at 0, 3, 6, 12 months",
    "responder_fraction": "calibrated; EULAR good/moderate response to a JAK inhibitor in ~60-70%",
    "spine.baseline_mean": "Marotte 2007 (RA, Hologic): lumbar spine 0.911 +/- 0.143 g/cm^2",
    "spine.baseline_sd": "Marotte 2007; between-patient SD ~0.14 g/cm^2",
    "femoral_neck.baseline_mean": "Marotte 2007: femoral neck 0.801 +/- 0.159 g/cm^2",
    "femoral_neck.baseline_sd": "Marotte 2007; between-patient SD ~0.16 g/cm^2",
    "*.male_effect": "assumption: men ~0.06 g/cm^2 higher at the same age",
    "*.age_effect_per_year": "assumption: cross-sectional decline ~0.2%/yr (spine), ~0.5%/yr (FN)",
    "*.bmi_effect_per_unit": "assumption: ~0.006-0.007 g/cm^2 per kg/m^2",
    "spine.slope_nonresponder_pct": "calibrated to RAJAK non-responders -2.12%; untreated RA "
                                    "loses 0.5-4%/yr (Marotte 2007, Haugeberg 2009)",
    "spine.slope_responder_pct": "calibrated to RAJAK responders 'stable'; anti-TNF responders "
                                 "+0.7% spine (Vis 2006)",
    "femoral_neck.slope_nonresponder_pct": "assumption: smaller than spine, Vis 2006 hip -0.7% "
                                           "in non-responders, Haugeberg MTX -3.4%",
    "femoral_neck.slope_responder_pct": "Vis 2006: hip +0.8% responders; tofacitinib stable",
    "*.slope_per_das28_improvement_pct": "assumption: bone follows disease control (annual % per DAS28 "
                                         "unit of true improvement); calibrated with the type effect",
    "*.slope_sd_pct": "inferred SD of 12-month % change 2.5-3.5% (spine), 3-4% (FN) minus "
                      "measurement error",
    "spine.precision_cv_pct": "DXA short-term CV 1.0-1.2% at the spine (LSC 2.77 x CV)",
    "femoral_neck.precision_cv_pct": "DXA short-term CV 1.5-2.0% at the femoral neck",
    "intercept_corr": "assumption: spine-hip BMD correlation ~0.6",
    "slope_corr": "assumption: spine-hip change correlation ~0.5",
    "activity.baseline_mean": "DAS28 5.17 +/- 1.07 (Marotte 2007), 5.05 (tofacitinib study)",
    "activity.baseline_sd": "DAS28 SD ~1.1 (Marotte 2007): 0.28 severity units x ~4 DAS28 per unit",
    "activity.improvement_*": "calibrated to DAS28-CRP p = 0.003 and cDAI p = 0.007 (completers)",
    "activity.response_time_months": "assumption: JAK-inhibitor response mostly within 2-3 months "
                                     "(RA-BEAM: DAS28 falls by week 4-12)",
    "activity.visit_noise_sd": "assumption: visit-to-visit DAS28 variability ~0.3 units (0.08 severity)",
    "treatment.prednisolone_doses_mg": "assumption: typical daily doses 2.5-10 mg, median 5 mg (Marotte "
                                       "2007: 5.3 +/- 5.8 mg/day)",
    "treatment.taper_step_mg": "assumption: tapering in 2.5 mg steps (one tablet size)",
    "dropout.mechanism": "assumption: MAR (stopping for non-response, RA-BE-REAL); MNAR only in "
                         "sensitivity studies",
    "dropout.bmd_log_odds": "assumption: 0 in the twin (no dependence on unobserved BMD); a "
                            "sensitivity parameter elsewhere",
    "dropout.p_missed_dxa": "assumption: ~5% of attended visits without a DXA scan",
    "dropout.p_lack_of_efficacy_if_active": "assumption: most stops in active disease are for lack "
                                            "of efficacy (RA-BE-REAL)",
    "lsc_pct": "not a simulator input: least significant change 2.77 x CV, ~2.4% spine and ~1.9% femoral "
               "neck in RA cohorts (the default ROPE of analysis.bayes.posterior)",
    "treatment.p_prednisolone": "Marotte 2007: 62% on glucocorticoids, 5.3 +/- 5.8 mg/day",
    "treatment.p_taper_*": "calibrated to prednisolone p = 0.006",
    "treatment.alp_*": "assumption: ALP ~78 U/l, falls with disease activity; calibrated to p = 0.03",
    "covariates": "Marotte 2007: age 52.5 +/- 14.2, 80% women; tofacitinib 52.8 +/- 10.0, 90% women",
    "dropout.visit_hazard": "calibrated to 20 of 46 lost (43.5%); RA-BE-REAL 16.5% stop by 6 "
                            "months mostly for non-response; RAJAK's loss also includes missed DXA",
    "dropout.activity_log_odds": "assumption: stopping driven by non-response (RA-BE-REAL)",
}


@dataclass
class SimulatedStudy:
    """A simulated study: the observed long data, the data before dropout, and the latent truth.

    Attributes
    ----------
    data
        Observed rows in the rajak data contract (one row per attended patient-visit).
    complete
        The same columns for every scheduled visit as if nobody had dropped out (the truth that
        dropout hides; used by sensitivity checks).
    patients
        One row per patient: latent response type, true baseline BMD and annual % change per
        site, dropout month (NaN for completers) and reason.
    design, seed
        What produced it.
    """

    data: pd.DataFrame
    complete: pd.DataFrame
    patients: pd.DataFrame
    design: Design
    seed: int


def _bivariate(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    z = rng.standard_normal((n, 2))
    z[:, 1] = rho * z[:, 0] + np.sqrt(1.0 - rho**2) * z[:, 1]
    return z


def _residual_sd(site: SiteParameters, cov: CovariateParameters) -> float:
    """Between-patient SD left after covariates, so that the marginal SD is ``baseline_sd``."""
    p_male = 1.0 - cov.p_female
    explained = (site.male_effect**2 * p_male * (1 - p_male)
                 + (site.age_effect_per_year * cov.age_sd) ** 2
                 + (site.bmi_effect_per_unit * cov.bmi_sd) ** 2)
    return float(np.sqrt(max(site.baseline_sd**2 - explained, 1e-6)))


def simulate(design: Design | None = None, seed: int = 0, *, patient_prefix: str = "P") -> SimulatedStudy:
    """Draw one study from ``design``.

    Parameters
    ----------
    design
        The study design; the RAJAK-like default when omitted.
    seed
        Seed of a :func:`numpy.random.default_rng`; the same design and seed give identical data.
    patient_prefix
        Patient ids are ``f"{patient_prefix}{i:03d}"``.

    Returns
    -------
    SimulatedStudy
    """
    d = design or Design()
    rng = np.random.default_rng(seed)
    n = d.n_patients
    months = np.asarray(d.activity_months, dtype=float)
    n_visits = months.size
    cov = d.covariates

    # --- baseline covariates and latent type -------------------------------------------------
    age = np.clip(rng.normal(cov.age_mean, cov.age_sd, n), cov.age_min, cov.age_max).round(0)
    male = rng.random(n) >= cov.p_female
    bmi = np.clip(rng.normal(cov.bmi_mean, cov.bmi_sd, n), 16.0, 45.0).round(1)
    rtype = rng.random(n) < d.responder_fraction

    # --- disease activity --------------------------------------------------------------------
    a = d.activity
    a0 = np.clip(rng.normal(a.baseline_mean, a.baseline_sd, n), 0.2, 1.9)
    improve = np.clip(rng.normal(np.where(rtype, a.improvement_responder, a.improvement_nonresponder),
                                 a.improvement_sd), -0.4, 0.95)
    shape = 1.0 - np.exp(-months / a.response_time_months)
    sev = a0[:, None] * (1.0 - improve[:, None] * shape[None, :])
    das_improvement = 3.5 * a0 * improve
    sev = np.clip(sev + a.visit_noise_sd * rng.standard_normal((n, n_visits)) * (months > 0), 0.0, None)
    # --- bone ------------------------------------------------------------------------------
    z = _bivariate(rng, n, d.intercept_corr)
    w = _bivariate(rng, n, d.slope_corr)
    baseline: dict[str, np.ndarray] = {}
    slope: dict[str, np.ndarray] = {}
    for k, s in enumerate(SITES):
        p = d.site(s)
        baseline[s] = (p.baseline_mean + p.male_effect * male
                       + p.age_effect_per_year * (age - cov.age_mean)
                       + p.bmi_effect_per_unit * (bmi - cov.bmi_mean)
                       + _residual_sd(p, cov) * z[:, k])
        baseline[s] = np.clip(baseline[s], 0.35, 1.8)
        slope[s] = (np.where(rtype, p.slope_responder_pct, p.slope_nonresponder_pct)
                    + p.slope_per_das28_improvement_pct * das_improvement + p.slope_sd_pct * w[:, k])
    true_bmd = {s: baseline[s][:, None] * (1.0 + slope[s][:, None] * months[None, :] / 1200.0) for s in SITES}
    meas_err = {s: rng.standard_normal((n, n_visits)) for s in SITES}
    bmd = {s: np.round(true_bmd[s] * (1.0 + d.site(s).precision_cv_pct / 100.0 * meas_err[s]), 3) for s in SITES}

    tjc = np.clip(np.round(9.0 * sev + 2.0 * rng.standard_normal(sev.shape)), 0, 28)
    sjc = np.clip(np.round(6.0 * sev + 1.5 * rng.standard_normal(sev.shape)), 0, 28)
    crp = np.round(np.exp(np.log(3.0) + 1.6 * sev + 0.6 * rng.standard_normal(sev.shape)), 1)
    pga = np.clip(np.round(15.0 + 45.0 * sev + 12.0 * rng.standard_normal(sev.shape)), 0, 100)
    ega = np.clip(np.round(10.0 + 45.0 * sev + 10.0 * rng.standard_normal(sev.shape)), 0, 100)
    das = np.round(das28_crp(tjc, sjc, crp, pga), 2)
    cd = np.round(cdai(tjc, sjc, pga, ega), 1)

    # --- prednisolone and ALP ---------------------------------------------------------------
    t = d.treatment
    on_gc = rng.random(n) < t.p_prednisolone
    dose0 = np.asarray(t.prednisolone_doses_mg)[rng.integers(0, len(t.prednisolone_doses_mg), n)]
    pred = np.zeros((n, n_visits))
    pred[:, 0] = np.where(on_gc, dose0, 0.0)
    p_taper = np.where(rtype, t.p_taper_responder, t.p_taper_nonresponder)
    taper_u = rng.random((n, n_visits))
    for v in range(1, n_visits):
        taper = (taper_u[:, v] < p_taper) & (pred[:, v - 1] > 0)
        pred[:, v] = np.where(taper, np.maximum(pred[:, v - 1] - t.taper_step_mg, 0.0), pred[:, v - 1])
    alp0 = t.alp_baseline_median * np.exp(t.alp_baseline_log_sd * rng.standard_normal(n))
    alp = np.round(alp0[:, None] * np.exp(t.alp_activity_effect * (sev - sev[:, :1])
                                          + t.alp_noise_log_sd * rng.standard_normal(sev.shape)
                                          * (months > 0)), 0)

    # --- dropout -------------------------------------------------------------------------------
    dm = d.dropout
    drop_u = rng.random((n, n_visits))
    reason_u = rng.random(n)
    other_u = rng.random(n)
    missed_u = rng.random((n, n_visits))
    base_logits = [np.log(h0 / (1.0 - h0)) if h0 > 0 else -np.inf for h0 in dm.hazards(n_visits - 1)]
    dropout_visit = np.full(n, -1)
    for v in range(1, n_visits):
        at_risk = dropout_visit < 0
        spine_change = 100.0 * (true_bmd["spine"][:, v] / baseline["spine"] - 1.0)
        logit = base_logits[v - 1] + dm.activity_log_odds * (das[:, v - 1] - 3.2) + dm.bmd_log_odds * spine_change
        h = 1.0 / (1.0 + np.exp(-logit))
        dropout_visit = np.where(at_risk & (drop_u[:, v] < h), v, dropout_visit)
    dropped = dropout_visit > 0
    last_das = np.where(dropped, das[np.arange(n), np.maximum(dropout_visit - 1, 0)], np.nan)
    others = np.array(["adverse event", "lost to follow-up", "missed follow-up DXA"])
    reason = np.where(
        ~dropped, "",
        np.where((last_das > 3.2) & (reason_u < dm.p_lack_of_efficacy_if_active), "lack of efficacy",
                 others[np.minimum((other_u * 3).astype(int), 2)]))
    dropout_month = np.where(dropped, months[np.maximum(dropout_visit, 0)], np.nan)

    # --- assemble long tables ------------------------------------------------------------------
    ids = np.array([f"{patient_prefix}{i + 1:03d}" for i in range(n)])
    is_dxa = np.isin(months, d.dxa_months)
    # an intermediate (not first, not last) DXA may be missed by an attending patient
    intermediate = is_dxa & (months > 0) & (months < max(d.dxa_months))
    missed = (missed_u < dm.p_missed_dxa) & intermediate[None, :]
    rows_complete = {
        "patient_id": np.repeat(ids, n_visits),
        "month": np.tile(months.astype(int), n),
        "bmd_spine": np.where(is_dxa[None, :], bmd["spine"], np.nan).ravel(),
        "bmd_femoral_neck": np.where(is_dxa[None, :], bmd["femoral_neck"], np.nan).ravel(),
        "tjc28": tjc.ravel().astype(int),
        "sjc28": sjc.ravel().astype(int),
        "crp_mg_l": crp.ravel(),
        "patient_global_mm": pga.ravel().astype(int),
        "evaluator_global_mm": ega.ravel().astype(int),
        "das28_crp": das.ravel(),
        "cdai": cd.ravel(),
        "prednisolone_mg": pred.ravel(),
        "alp_u_l": alp.ravel(),
        "age": np.repeat(age, n_visits).astype(int),
        "sex": np.repeat(np.where(male, "M", "F"), n_visits),
        "bmi": np.repeat(bmi, n_visits),
        "dropout_reason": np.repeat(reason, n_visits),
    }
    complete = pd.DataFrame(rows_complete)
    attended = (np.arange(n_visits)[None, :] < np.where(dropped, dropout_visit, n_visits)[:, None]).ravel()
    observed = complete.loc[attended].reset_index(drop=True)
    missed_obs = missed.ravel()[attended]
    observed.loc[missed_obs, ["bmd_spine", "bmd_femoral_neck"]] = np.nan

    patients = pd.DataFrame({
        "patient_id": ids,
        "response_type": np.where(rtype, "responder", "non-responder"),
        "age": age, "sex": np.where(male, "M", "F"), "bmi": bmi,
        "true_baseline_spine": baseline["spine"], "true_baseline_femoral_neck": baseline["femoral_neck"],
        "true_slope_pct_spine": slope["spine"], "true_slope_pct_femoral_neck": slope["femoral_neck"],
        "true_das28_improvement": das_improvement,
        "dropout_month": dropout_month, "dropout_reason": reason,
    })
    return SimulatedStudy(data=observed, complete=complete, patients=patients, design=d, seed=int(seed))
