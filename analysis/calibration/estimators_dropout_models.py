r"""The dropout models under the truth each assumes (:data:`ESTIMATORS`, family "sensitivity").

Both estimators fit one site (spine) of studies drawn by the twin simulator
(:func:`models.simulate.simulate`), derived as the analyses derive a user's file
(:func:`analysis.study.clinical.derive`: responder = EULAR good or moderate response, DAS28-CRP at
baseline vs month :math:`M = 12`, undefined without a DAS28 at month 12).

Simulator settings where the models hold
-----------------------------------------
The simulator's bone slope is :math:`g_i = \gamma^{(r_i)} + \lambda \Delta_i + \omega w_i` with
:math:`r_i` the *latent response type* and :math:`\Delta_i` the true DAS28 improvement; the models
are LMMs in the *derived* (EULAR) status with normal random effects, and their dropout part (the
selection model's hazard, the latent-status model's MAR assumption) treats the slope as independent
of the disease-activity course given the status. With the twin's :math:`\lambda = 0.5`
(``slope_per_das28_improvement_pct``) the slope follows the activity that drives dropout, so within a
status group the dropouts lose more bone than the completers in a way neither model sees (MNAR for the
latent-status model, a misspecified hazard for the selection model): biased targets. Both designs
therefore set :math:`\lambda = 0` at both sites, and sharpen the response (``improvement_responder``
0.55 -> :data:`IMPROVEMENT_RESPONDER`, ``improvement_sd`` 0.15 -> :data:`IMPROVEMENT_SD`) so that the
derived status agrees with the type for about 96 % of patients (88 % at the twin's values; the residual
disagreement, DAS28 measurement noise, is the models' remaining, small misspecification: within a status
group the slope is a two-type mixture rather than normal).

``selection_model``
-------------------
:data:`SELECTION_N` patients, the twin's dropout hazard with an MNAR term,

.. math::

    \operatorname{logit} h_{iv} = \operatorname{logit} h_0 + \beta\,(\mathrm{DAS28}_{i,v^-} - 3.2)
        + \psi\, 100\,\bigl(\mu_i(\tau_v)/b_i - 1\bigr),
    \qquad h_0 = 0.09,\ \beta = 0.5,\ \psi = \psi_0 = -0.3,

(patients who lose bone drop out more). The shared-parameter selection model
(:func:`models.dropout.build_selection_model`, ``dependence="current_change"``, DAS28 term, latent status
for dropouts, default priors, :math:`\psi \sim N(0, 0.5)`) has exactly this hazard with
:math:`\alpha_v = \operatorname{logit} h_0` (the mapping in :mod:`models.dropout_selection`), so the
truth is :math:`\psi_0` itself (:data:`PSI_TRUE`; the tests check by brute force that the simulator's
dropout follows this logistic model). Estimate: posterior mean of ``psi``.

``selection_model_known_groups``: the same model and data sets (stream ``dropout_mnar``) with the
groups known, each patient's latent type as the arm of a trial (:mod:`models.dropout_selection`, *Known
groups*): no status regression, and within a group the slope is exactly normal, so the model is correctly
specified up to the multiplicative DXA error. It separates what the hazard part gets right from what the
latent status adds (below).

Latent status under dropout that depends on activity. The status regression of the latent-status part
is fitted on the patients with a defined status, i.e. those still in the study at month 12, and for a
patient seen only at baseline (pattern 0) it is an intercept, the completers' responder prevalence.
Later dropout depends on the DAS28 after month 0 (and, under MNAR, on bone), both of which depend on the
status, so the completers are enriched in responders: in :func:`latent_design` :math:`P(R = 1)` is
0.66 among month-3 dropouts and 0.72 among completers (MNAR design: 0.64 vs 0.77; 100,000 simulated
patients). For the BMD contrast this does not matter (a month-3 dropout has no follow-up DXA and adds
nothing to a slope); for :math:`\psi` it does, because month-3 dropouts enter the hazard with the
wrong status mixture. Measured on the first 12 ``dropout_mnar`` data sets (seed 1), paired: the
posterior mean of :math:`\psi` of ``selection_model`` is 0.15 (MCSE 0.02; 0.03 to 0.26) above that of
``selection_model_known_groups``; on the first 8, with the complete-data EULAR status as known groups
(the slope mixture within a status group alone, 2 x 500 draws) it is 0.07 above the types, so the two
causes contribute about equally. Hence ``selection_model``'s ``expected`` (pulled towards 0), while
``selection_model_known_groups`` is not.

``latent_status``
-----------------
:data:`LATENT_N` patients, the twin's MAR dropout (:math:`\psi = 0`: the hazard depends on the last
observed DAS28 only), so whether a dropout would have been a responder is missing at random given the
activity observed before dropout (the latent-status model's assumption). The estimand is the model's
headline contrast, the responder - non-responder difference in % change of spine BMD to month 12 as the
LMM defines it (ratio of group means, ``diff_pct_change_end``), over the *complete-data* status
:math:`R_i` every patient would have at month 12:

.. math::

    \theta = 100\left(\frac{E[\mu_i(12) - b_i \mid R_i = 1]}{E[b_i \mid R_i = 1]}
        - \frac{E[\mu_i(12) - b_i \mid R_i = 0]}{E[b_i \mid R_i = 0]}\right)
      = \frac{E[b_i g_i \mid R = 1]}{E[b_i \mid R = 1]} - \frac{E[b_i g_i \mid R = 0]}{E[b_i \mid R = 0]},

(:math:`\mu_i(t) = b_i(1 + g_i t/1200)`), which has no closed form (:math:`R` is a noisy EULAR
classification of the type), so :func:`latent_truth` computes it from a complete-data cohort of
:data:`TRUTH_N` patients (cached; the tests compare it with an independent simulation). Estimate:
posterior mean of ``diff_pct_change_end``.

All three report the posterior mean, the posterior SD as the ``se`` and the 95 % equal-tailed interval. The
models are built and compiled once per worker (``setup()``, an
:class:`analysis.engine.refit.Refitter`); each data set goes in through the model's ``set_data``
(integrated random effects: no parameter depends on the number of patients, so nothing recompiles),
with a sampler seed from the data. :func:`dropout_estimators` makes them with other sampler settings.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from analysis.calibration.estimators_bayes import SAMPLER, data_seed, posterior_row
from analysis.calibration.spec import Estimator

__all__ = ["SELECTION_SAMPLER", "ESTIMATORS", "IMPROVEMENT_RESPONDER", "IMPROVEMENT_SD", "LATENT_N", "PSI_TRUE", "RESPONSE_MONTH",
           "SELECTION_N", "SITE", "TRUTH_N", "TYPE_LEVELS", "complete_status", "derived_study", "dropout_estimators",
           "fit_latent_status", "fit_selection", "latent_design", "latent_truth", "ratio_contrast",
           "selection_design", "setup_latent_status", "setup_selection", "setup_selection_known"]

SITE = "spine"
RESPONSE_MONTH = 12
#: Patients per data set.
SELECTION_N = 200
LATENT_N = 200
#: The simulator's ``bmd_log_odds`` (log-odds of dropout per 1 % current spine change): the truth of psi.
PSI_TRUE = -0.3
#: Sharper response than the twin's (module docstring).
IMPROVEMENT_RESPONDER = 0.75
IMPROVEMENT_SD = 0.08
#: Patients of the complete-data cohort that defines the latent-status truth.
TRUTH_N = 400_000
_TRUTH_SEED = 20261207
#: The simulator's latent types, the reference first (known groups of ``selection_model_known_groups``).
TYPE_LEVELS = ("non-responder", "responder")
_SETTINGS = {"spine.slope_per_das28_improvement_pct": 0.0, "femoral_neck.slope_per_das28_improvement_pct": 0.0,
             "activity.improvement_responder": IMPROVEMENT_RESPONDER, "activity.improvement_sd": IMPROVEMENT_SD}


def latent_design(n: int = LATENT_N) -> Any:
    """The twin (MAR dropout on the last observed DAS28) with :math:`\\lambda = 0` and a sharper
    response (module docstring), ``n`` patients."""
    from models.simulate import Design

    return Design(n_patients=n).with_updates(**_SETTINGS)


def selection_design(n: int = SELECTION_N, psi: float = PSI_TRUE) -> Any:
    """:func:`latent_design` with MNAR dropout: ``bmd_log_odds = psi`` on top of the twin's hazard."""
    from models.simulate import DropoutModel

    d = latent_design(n)
    h = d.dropout
    return d.with_updates(dropout=DropoutModel("mnar", h.visit_hazard, h.activity_log_odds, psi, h.p_missed_dxa,
                                               h.p_lack_of_efficacy_if_active))


def derived_study(design: Any, seed: int) -> pd.DataFrame:
    """The observed data of ``simulate(design, seed)`` derived as an analysis derives them (responder
    status from the observed DAS28-CRP at month 12)."""
    from analysis.study.clinical import derive
    from models.simulate import simulate

    return derive(simulate(design, seed=seed).data)


def complete_status(complete: pd.DataFrame, month: float = RESPONSE_MONTH) -> pd.Series:
    """Per patient (index ``patient_id``), the status every patient *would* have: EULAR good or
    moderate response, DAS28-CRP of the complete data at baseline vs ``month``."""
    from analysis.study.clinical import eular_response

    das = complete.pivot(index="patient_id", columns="month", values="das28_crp")
    eular = eular_response(das[0].to_numpy(), das[month].to_numpy())
    return pd.Series(np.isin(eular, ["good", "moderate"]), index=das.index, name="responder")


def ratio_contrast(baseline: np.ndarray, slope_pct: np.ndarray, responder: np.ndarray,
                   month: float = RESPONSE_MONTH) -> float:
    r"""The responder - non-responder difference in % change to ``month`` as a ratio of group means.

    .. math::

        \hat\theta = \frac{T}{12}\left(\frac{\sum_{R_i = 1} b_i g_i}{\sum_{R_i = 1} b_i}
            - \frac{\sum_{R_i = 0} b_i g_i}{\sum_{R_i = 0} b_i}\right)

    (:math:`\theta` of the module docstring when the sums run over a large complete-data cohort).

    Parameters
    ----------
    baseline : array_like
        True baseline BMD :math:`b_i` (g/cm^2).
    slope_pct : array_like
        True annual % change :math:`g_i`.
    responder : array_like of bool
        Status :math:`R_i`.
    month : float
        :math:`T`.

    Returns
    -------
    float
        Percentage points.
    """
    b, g, r = (np.asarray(x) for x in (baseline, slope_pct, responder))
    r = r.astype(bool)
    return float(month / 12.0 * ((b[r] * g[r]).sum() / b[r].sum() - (b[~r] * g[~r]).sum() / b[~r].sum()))


@functools.cache
def latent_truth(n: int = TRUTH_N, seed: int = _TRUTH_SEED) -> float:
    """The latent-status truth :math:`\\theta` (module docstring) from a complete-data cohort.

    Parameters
    ----------
    n : int
        Patients of :func:`latent_design` simulated (their status from the complete data,
        :func:`complete_status`; their true trajectories from ``patients``).
    seed : int

    Returns
    -------
    float
        :func:`ratio_contrast` over the cohort (cached per process and arguments).
    """
    from models.simulate import simulate

    sim = simulate(latent_design(n), seed=seed)
    status = complete_status(sim.complete)
    p = sim.patients.set_index("patient_id").loc[status.index]
    return ratio_contrast(p[f"true_baseline_{SITE}"].to_numpy(), p[f"true_slope_pct_{SITE}"].to_numpy(),
                          status.to_numpy())


def _reference(design: Any) -> pd.DataFrame:
    return derived_study(design, _TRUTH_SEED)


def setup_selection(**sampler: Any) -> Any:
    """The selection model built on a reference study and compiled for refits (reading ``psi``)."""
    from analysis.engine.refit import compile_for_refit
    from models.dropout import build_selection_model

    model = build_selection_model(_reference(selection_design()), SITE, dependence="current_change",
                                  hazard_das28=True, response_month=RESPONSE_MONTH)
    return compile_for_refit(model, var_names=["psi"], **{**SAMPLER, **sampler})


def setup_selection_known(**sampler: Any) -> Any:
    """The selection model with known groups (the latent type, column ``response_type``) built on a
    reference study and compiled for refits (reading ``psi``)."""
    from analysis.engine.refit import compile_for_refit
    from models.dropout import build_selection_model

    frame = _simulate_selection_known(np.random.default_rng(_TRUTH_SEED))[0]
    model = build_selection_model(frame, SITE, dependence="current_change", hazard_das28=True, group="response_type",
                                  levels=TYPE_LEVELS)
    return compile_for_refit(model, var_names=["psi"], **{**SAMPLER, **sampler})


def setup_latent_status(**sampler: Any) -> Any:
    """The latent-status model built on a reference study and compiled for refits (reading
    ``diff_pct_change_end``)."""
    from analysis.engine.refit import compile_for_refit
    from models.dropout import build_latent_status_model

    model = build_latent_status_model(_reference(latent_design()), SITE, response_month=RESPONSE_MONTH)
    return compile_for_refit(model, var_names=["diff_pct_change_end"], **{**SAMPLER, **sampler})


def _simulate_selection(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    return derived_study(selection_design(), int(rng.integers(2**63 - 1))), PSI_TRUE


def _simulate_selection_known(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    """:func:`_simulate_selection`'s study (same draws) with each patient's latent type as a known group."""
    from analysis.study.clinical import derive
    from models.simulate import simulate

    sim = simulate(selection_design(), seed=int(rng.integers(2**63 - 1)))
    frame = derive(sim.data)
    frame["response_type"] = frame["patient_id"].map(sim.patients.set_index("patient_id")["response_type"])
    return frame, PSI_TRUE


def _simulate_latent(rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    return derived_study(latent_design(), int(rng.integers(2**63 - 1))), latent_truth()


def fit_selection(frame: pd.DataFrame, refitter: Any) -> tuple[float, float, float, float]:
    """Posterior mean, SD and 95% equal-tailed interval of :math:`\\psi`."""
    r = refitter.refit(frame, seed=data_seed(frame))
    return posterior_row(r.draws["psi"])


def fit_latent_status(frame: pd.DataFrame, refitter: Any) -> tuple[float, float, float, float]:
    """Posterior mean, SD and 95% equal-tailed interval of ``diff_pct_change_end`` (month 12)."""
    r = refitter.refit(frame, seed=data_seed(frame))
    return posterior_row(r.draws["diff_pct_change_end"][..., 0])


_SELECTION_BIAS = ("psi is pulled towards 0 (about +0.15, paired with selection_model_known_groups on the same "
                   "data sets): the groups are the derived EULAR status, a noisy classification of the type that "
                   "drives bone (non-normal slopes within a status group, about half), and the latent status of "
                   "dropouts comes from status regressions fitted on completers, whom activity- and bone-driven "
                   "dropout enriches in responders (the other half); may under-cover")


def dropout_estimators(suffix: str = "", **sampler: Any) -> tuple[Estimator, ...]:
    """``selection_model<suffix>``, ``selection_model_known_groups<suffix>`` and ``latent_status<suffix>`` with sampler settings ``sampler``
    (module docstring).

    Parameters
    ----------
    suffix : str
        Appended to every name (tests use ``"_test"`` with tiny draws).
    **sampler
        Keywords of :class:`~analysis.engine.refit.Refitter` over
        :data:`analysis.calibration.estimators_bayes.SAMPLER` (4 chains x 1000 draws after 1000 tuning).

    Returns
    -------
    tuple of Estimator
        In table order.
    """
    s = {**SAMPLER, **sampler}
    note = (f"nutpie {s['chains']} chains x {s['draws']} draws after {s['tune']} tuning; posterior mean, SD, "
            "95% equal-tailed interval; default priors")
    sim = (f"twin simulator, spine at months 0/6/12, DAS28 at 0/3/6/12, status = EULAR response at month "
           f"{RESPONSE_MONTH}, bone slope independent of DAS28 improvement (lambda = 0), sharper response "
           f"(improvement {IMPROVEMENT_RESPONDER:g} +/- {IMPROVEMENT_SD:g})")
    return (
        Estimator(f"selection_model{suffix}", "sensitivity", _simulate_selection, fit_selection,
                  f"{SELECTION_N} patients, {sim}; MNAR dropout logit h = logit 0.09 + 0.5 (DAS28 - 3.2) "
                  f"{PSI_TRUE:+g} x current % spine change",
                  "psi, log-odds of dropout per 1 % current change of spine BMD (= the simulator's bmd_log_odds)",
                  "shared-parameter selection model, current_change, DAS28 term, latent status; " + note,
                  expected=_SELECTION_BIAS,
                  setup=partial(setup_selection, **sampler), stream="dropout_mnar"),
        Estimator(f"selection_model_known_groups{suffix}", "sensitivity", _simulate_selection_known, fit_selection,
                  f"{SELECTION_N} patients, the selection_model data sets (MNAR, psi {PSI_TRUE:+g}) with each "
                  "patient's latent response type known (as the arms of a trial)",
                  "psi, log-odds of dropout per 1 % current change of spine BMD (= the simulator's bmd_log_odds)",
                  "shared-parameter selection model with known groups (the types): correctly specified up to the "
                  "multiplicative DXA error; " + note,
                  setup=partial(setup_selection_known, **sampler), stream="dropout_mnar"),
        Estimator(f"latent_status{suffix}", "sensitivity", _simulate_latent, fit_latent_status,
                  f"{LATENT_N} patients, {sim}; MAR dropout logit h = logit 0.09 + 0.5 (DAS28 - 3.2)",
                  "responder - non-responder difference in % change of spine BMD to month 12 (ratio of group "
                  "means), over the status every patient would have at month 12",
                  "latent-status LMM (undefined status of dropouts summed out; month-3 dropouts get the completers' "
                  "responder rate, harmless here: they have no follow-up DXA); " + note,
                  setup=partial(setup_latent_status, **sampler), stream="dropout_mar"),
    )


#: Sampler of the registered selection rows: 4 chains x 500 draws after 500 tuning, half the default, because
#: a selection-model fit at 200 patients costs 13 s (known groups) and 31 s (latent status) at these settings on one
#: core (Gauss-Hermite integration per patient; the default sampler takes twice the iterations) and the
#: full study must fit 2 x 200 of them within the 3-hour budget; 2,000 draws still give tail ESS in the
#: hundreds for the 2.5% and 97.5% quantiles of psi.
SELECTION_SAMPLER = {"draws": 500, "tune": 500}

#: This module's estimators, in table order.
ESTIMATORS = (*dropout_estimators(**SELECTION_SAMPLER)[:2], dropout_estimators()[2])
