r"""Calibration of the joint two-site model and the activity (mediator) model against known truths
(:data:`ESTIMATORS`, to be registered by :mod:`analysis.calibration.registry`).

Both are fitted to cohorts of the project's own simulator (:func:`models.simulate.simulate`,
module docstring there), at one design (:data:`COHORT_DESIGN`, seed stream ``cohort150_mcar``, so
both rows see the same studies): :data:`COHORT_N` patients, DXA at months 0/6/12, disease activity
at 0/3/6/12, the twin's site, activity and covariate parameters, MCAR monotone dropout
(:data:`COHORT_HAZARD` per post-baseline visit) and 5% missed intermediate DXA (MCAR). The group
indicator is the **latent response type** :math:`r_i` of the simulator (``patients.response_type``),
not an observed (EULAR, DAS28-derived) responder status, so the truths below are properties of
the simulator's parameters alone.

Simulator recap (site :math:`s`, months :math:`m`, years :math:`t = m/12`): the true BMD is
:math:`\mu_{is}(t) = b_{is} + (b_{is} g_{is}/100)\,t` with

.. math::

    g_{is} = \gamma_s^{(r_i)} + \lambda_s \Delta_i + \omega_s w_{is}, \qquad
    \Delta_i = 3.5\, a_{i0} d_i,

:math:`a_{i0} = \operatorname{clip}(N(\mu_a, \sigma_a), 0.2, 1.9)`,
:math:`d_i = \operatorname{clip}(N(\delta_{r_i}, \sigma_d), -0.4, 0.95)`, :math:`w_{is}` standard
normal, and the baseline :math:`b_{is}` a function of sex, age, BMI and a normal residual, all
drawn independently of :math:`(r_i, a_{i0}, d_i, w_{is})`. The measurement is
:math:`y = \mu(1 + \varepsilon)`, :math:`E[\varepsilon] = 0`.

``bayes_joint``
    The joint model (:func:`models.joint.build_joint_model`, spine and femoral neck, default
    priors, groups non-responder/responder by type, endpoint 12 months) reports per site the
    difference of the groups' 12-month % changes, ``diff_pct_change_end``
    :math:`= 100\,(b_1 + b_3)/(b_0 + b_2) - 100\, b_1/b_0`, the ratio of each group's mean
    annual change to its mean baseline. The estimand is the spine's. Because :math:`b_{is}` is
    independent of :math:`(r_i, g_{is})`, :math:`E[b g \mid r] = E[b]\,E[g \mid r]` and the
    ratio is :math:`E[g \mid r]`, so the truth is (:func:`joint_truth`)

    .. math::

        \theta_J = E[g_s \mid r=1] - E[g_s \mid r=0]
          = \gamma_s^{(1)} - \gamma_s^{(0)}
            + 3.5\,\lambda_s\, E[a_0]\,\bigl(E[d \mid r=1] - E[d \mid r=0]\bigr)

    in percentage points per year, with the means of the clipped normals in closed form
    (:func:`clipped_normal_mean`). Each patient's true trajectory is linear in :math:`t`, so the
    model's mean structure is exact; its misspecifications are mild: non-normal patient slopes
    (a mixture through :math:`\Delta_i`, scaled by :math:`b_{is}`) and a measurement SD
    proportional to the BMD (CV 1.1% / 1.75%).

``bayes_activity``
    The activity model (:func:`models.activity.build_activity_model`, spine,
    ``activity="mean_improvement"``, default priors) estimates ``b_activity`` :math:`b_a`, the
    annual BMD change (g/cm^2/yr) per DAS28 unit of improvement, from
    :math:`E[\text{slope}_i \mid r_i, \bar I_i] = b_1 + b_3 r_i + b_a(\bar I_i - \bar I)`. The
    simulator puts the *true* final improvement :math:`\Delta_i` into the slope from baseline on,
    so the activity score given to the model is the error-free ``activity_latent``
    :math:`= -\Delta_i` at every post-baseline visit and 0 at baseline (improvement
    :math:`\bar I_i = \Delta_i` exactly). Then

    .. math::

        E\bigl[b_{is} g_{is}/100 \mid r_i, \Delta_i\bigr]
          = \frac{E[b_s]}{100}\bigl(\gamma_s^{(r_i)} + \lambda_s \Delta_i\bigr),

    linear in :math:`\Delta_i` with the same coefficient in both groups, so the model's mean
    structure is exact and the truth is (:func:`activity_truth`)

    .. math::

        \theta_A = \frac{\lambda_s\, E[b_s]}{100}, \qquad
        E[b_s] = m_s + \beta^{\text{male}}_s (1 - p_{\text{female}})
          + \beta^{\text{age}}_s (E[\text{age}] - \mu_{\text{age}})
          + \beta^{\text{bmi}}_s (E[\text{BMI}] - \mu_{\text{BMI}}),

    age and BMI clipped normals (their rounding to 1 and 0.1 is symmetric and ignored; so is
    the clip of :math:`b_{is}` to [0.35, 1.8], more than 3.9 SD from its mean, a shift below
    :math:`10^{-5}` g/cm^2). With the *observed* DAS28-CRP instead (noisy components, the
    month-3 visit before the response is complete, a noisy baseline shared by every
    improvement) the exposure carries measurement error and :math:`b_a` is attenuated
    (:mod:`models.activity_comparison`): that is not the design the model is meant for and not
    calibrated here. The cumulative (time-varying) exposure would not match this simulator
    either (its improvement acts on the slope from baseline).

Both report the posterior mean, the posterior SD as the ``se`` and the 95% equal-tailed interval,
refitting a model compiled once per worker (:func:`setup_joint`, :func:`setup_activity`,
:func:`analysis.engine.refit.compile_for_refit`; the data are swapped in with the models' own
``set_data``) with a sampler seed from the data's content
(:func:`~analysis.calibration.estimators_bayes.data_seed`). :func:`bayes_model_estimators` makes
them with other sampler settings (the tests use tiny draws).
"""

from __future__ import annotations

from functools import cache, partial
from typing import Any

import numpy as np
import pandas as pd

from analysis.calibration.estimators_bayes import SAMPLER, data_seed, posterior_row
from analysis.calibration.spec import Estimator

__all__ = ["ACTIVITY_COLUMN", "COHORT_DESIGN", "COHORT_HAZARD", "COHORT_N", "ESTIMATORS", "SITE", "STREAM",
           "activity_frame", "activity_truth", "bayes_model_estimators", "clipped_normal_mean", "cohort_study",
           "fit_activity", "fit_joint", "joint_frame", "joint_truth", "setup_activity", "setup_joint"]

COHORT_N = 150
COHORT_HAZARD = 0.05
#: The site whose estimands are calibrated.
SITE = "spine"
#: Seed stream of both estimators (the same studies).
STREAM = "cohort150_mcar"
#: The error-free activity score given to the activity model (module docstring).
ACTIVITY_COLUMN = "activity_latent"
_DESIGN_TEXT = (f"{COHORT_N}-patient cohort of models.simulate (twin parameters), DXA months 0/6/12, activity "
                f"0/3/6/12, groups = latent response type, MCAR dropout {COHORT_HAZARD:.0%}/visit, 5% missed DXA")


def _cohort_design() -> Any:
    from models.simulate import Design, DropoutModel

    return Design(n_patients=COHORT_N, dropout=DropoutModel(mechanism="mcar", visit_hazard=COHORT_HAZARD,
                                                            activity_log_odds=0.0, bmd_log_odds=0.0))


#: The design of both estimators (:class:`models.simulate.Design`).
COHORT_DESIGN = _cohort_design()


def clipped_normal_mean(mu: float, sd: float, lo: float, hi: float) -> float:
    r""":math:`E[\operatorname{clip}(X, l, h)]` for :math:`X \sim N(\mu, \sigma^2)`:

    .. math::

        l\,\Phi(\alpha) + h\,(1 - \Phi(\beta)) + \mu\,(\Phi(\beta) - \Phi(\alpha))
          + \sigma\,(\phi(\alpha) - \phi(\beta)), \qquad
        \alpha = \frac{l - \mu}{\sigma},\ \beta = \frac{h - \mu}{\sigma}.
    """
    from scipy import stats

    a, b = (lo - mu) / sd, (hi - mu) / sd
    cdf, pdf = stats.norm.cdf, stats.norm.pdf
    return float(lo * cdf(a) + hi * stats.norm.sf(b) + mu * (cdf(b) - cdf(a)) + sd * (pdf(a) - pdf(b)))


def _group_growth(design: Any, site: str) -> tuple[float, float]:
    r""":math:`E[g_s \mid r]` for :math:`r = 0, 1` (% per year; module docstring)."""
    p, a = design.site(site), design.activity
    a0 = clipped_normal_mean(a.baseline_mean, a.baseline_sd, 0.2, 1.9)
    d = [clipped_normal_mean(m, a.improvement_sd, -0.4, 0.95)
         for m in (a.improvement_nonresponder, a.improvement_responder)]
    gamma = (p.slope_nonresponder_pct, p.slope_responder_pct)
    g0, g1 = (g + p.slope_per_das28_improvement_pct * 3.5 * a0 * dk for g, dk in zip(gamma, d))
    return float(g0), float(g1)


@cache
def joint_truth(design: Any = COHORT_DESIGN, site: str = SITE) -> float:
    r""":math:`\theta_J = E[g_s \mid r=1] - E[g_s \mid r=0]`: the responder - non-responder
    difference of the 12-month % change at ``site`` (percentage points; module docstring)."""
    g0, g1 = _group_growth(design, site)
    return float(g1 - g0)


def _mean_baseline(design: Any, site: str) -> float:
    r""":math:`E[b_s]` in g/cm^2 (module docstring)."""
    p, c = design.site(site), design.covariates
    age = clipped_normal_mean(c.age_mean, c.age_sd, c.age_min, c.age_max)
    bmi = clipped_normal_mean(c.bmi_mean, c.bmi_sd, 16.0, 45.0)
    return float(p.baseline_mean + p.male_effect * (1.0 - c.p_female) + p.age_effect_per_year * (age - c.age_mean)
                 + p.bmi_effect_per_unit * (bmi - c.bmi_mean))


@cache
def activity_truth(design: Any = COHORT_DESIGN, site: str = SITE) -> float:
    r""":math:`\theta_A = \lambda_s E[b_s] / 100`: g/cm^2/yr per DAS28 unit of true improvement
    (module docstring)."""
    return float(design.site(site).slope_per_das28_improvement_pct * _mean_baseline(design, site) / 100.0)


def cohort_study(rng: np.random.Generator, design: Any = COHORT_DESIGN) -> Any:
    """One :class:`models.simulate.SimulatedStudy` of ``design`` seeded from ``rng``."""
    from models.simulate import simulate

    return simulate(design, seed=int(rng.integers(2**63 - 1)))


def _latent(study: Any) -> pd.DataFrame:
    """Per patient: ``responder`` (the latent type, bool) and the true improvement."""
    p = study.patients.set_index("patient_id")
    return pd.DataFrame({"responder": p["response_type"] == "responder",
                         "improvement": p["true_das28_improvement"]})


def joint_frame(study: Any) -> pd.DataFrame:
    """``patient_id, month, bmd_spine, bmd_femoral_neck, responder`` (the latent type) of the
    observed rows with a DXA at either site."""
    data = study.data
    data = data.loc[data[["bmd_spine", "bmd_femoral_neck"]].notna().any(axis=1),
                    ["patient_id", "month", "bmd_spine", "bmd_femoral_neck"]].reset_index(drop=True)
    return data.assign(responder=data["patient_id"].map(_latent(study)["responder"]).astype(bool))


def activity_frame(study: Any, site: str = SITE) -> pd.DataFrame:
    r"""``patient_id, month, bmd_<site>, responder`` (latent type) and :data:`ACTIVITY_COLUMN`
    (:math:`-\Delta_i` after baseline, 0 at baseline) of every observed visit."""
    data = study.data[["patient_id", "month", f"bmd_{site}"]].reset_index(drop=True)
    lat = _latent(study)
    improvement = data["patient_id"].map(lat["improvement"]).to_numpy(float)
    return data.assign(responder=data["patient_id"].map(lat["responder"]).astype(bool),
                       **{ACTIVITY_COLUMN: np.where(data["month"] > 0, -improvement, 0.0)})


def _simulate_joint(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    return joint_frame(cohort_study(rng)), joint_truth()


def _simulate_activity(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    return activity_frame(cohort_study(rng)), activity_truth()


def _reference_study() -> Any:
    return cohort_study(np.random.default_rng(20261207))


def setup_joint(**sampler: Any) -> Any:
    """The joint model (spine, femoral neck; latent-type groups) built on a reference cohort and
    compiled for refits (reading ``diff_pct_change_end``)."""
    from analysis.engine.refit import compile_for_refit
    from models.joint import build_joint_model

    model = build_joint_model(joint_frame(_reference_study()), sites=("spine", "femoral_neck"), endpoint_month=12.0)
    return compile_for_refit(model, var_names=["diff_pct_change_end"], **{**SAMPLER, **sampler})


def setup_activity(**sampler: Any) -> Any:
    """The activity model (spine, ``mean_improvement`` of :data:`ACTIVITY_COLUMN`) built on a
    reference cohort and compiled for refits (reading ``b_activity``)."""
    from analysis.engine.refit import compile_for_refit
    from models.activity import build_activity_model

    model = build_activity_model(activity_frame(_reference_study()), SITE, activity="mean_improvement",
                                 activity_column=ACTIVITY_COLUMN)
    return compile_for_refit(model, var_names=["b_activity"], **{**SAMPLER, **sampler})


def fit_joint(frame: pd.DataFrame, refitter: Any) -> tuple[float, float, float, float]:
    """Posterior mean, SD and 95% equal-tailed interval of the spine's ``diff_pct_change_end``."""
    r = refitter.refit(frame, seed=data_seed(frame))
    sites = list(refitter.model.pymc_model.coords["site"])
    return posterior_row(r.draws["diff_pct_change_end"][:, :, sites.index(SITE), 0])


def fit_activity(frame: pd.DataFrame, refitter: Any) -> tuple[float, float, float, float]:
    """Posterior mean, SD and 95% equal-tailed interval of ``b_activity``."""
    r = refitter.refit(frame, seed=data_seed(frame))
    return posterior_row(r.draws["b_activity"])


def bayes_model_estimators(suffix: str = "", **sampler: Any) -> tuple[Estimator, ...]:
    """``bayes_joint<suffix>`` and ``bayes_activity<suffix>`` with sampler settings ``sampler``
    (keywords of :class:`~analysis.engine.refit.Refitter`, over
    :data:`~analysis.calibration.estimators_bayes.SAMPLER`)."""
    s = {**SAMPLER, **sampler}
    note = (f"nutpie {s['chains']} chains x {s['draws']} draws after {s['tune']} tuning; posterior mean, SD, "
            "95% equal-tailed interval; truth from the simulator's parameters in closed form")
    return (
        Estimator(f"bayes_joint{suffix}", "bayesian", _simulate_joint, fit_joint, _DESIGN_TEXT,
                  "responder - non-responder (latent type) difference in 12-month % change at the spine "
                  "(percentage points)",
                  "joint two-site LMM (spine + femoral neck, marginal, default priors); " + note,
                  setup=partial(setup_joint, **sampler), stream=STREAM),
        Estimator(f"bayes_activity{suffix}", "bayesian", _simulate_activity, fit_activity, _DESIGN_TEXT,
                  "spine BMD slope per DAS28 unit of true improvement, lambda E[b]/100 (g/cm^2/yr per unit)",
                  "activity LMM (mean_improvement) on the error-free true improvement, groups = latent type, "
                  "default priors; " + note,
                  setup=partial(setup_activity, **sampler), stream=STREAM),
    )


#: This module's estimators, in table order.
ESTIMATORS = bayes_model_estimators()
