r"""The frequentist estimators of the calibration study (:data:`ESTIMATORS`, registered by
:mod:`analysis.calibration.registry`).

* ``lmm_satterthwaite``, ``lmm_kenward_roger``: REML LMM ``bmd ~ t * active + (1 + t | id)``,
  Satterthwaite or Kenward-Roger df; truth :math:`\beta_1 - \beta_0` (MCAR trial, shared data sets);
* ``mmrm_us``: MMRM ``chg ~ baseline * visit + visit * arm`` (unstructured), contrast at month 24;
  truth :math:`(\beta_1 - \beta_0)\,24/12`, the same data sets;
* ``mmrm_cs``, ``mmrm_ar1``: the same MMRM with compound symmetry / AR(1), on data with that
  covariance (:mod:`models.simulate_ice`); truth :math:`\mu_{1m} - \mu_{0m}`;
* ``completers_welch``: Welch t-test of the completers' % change; truth the difference in mean %
  change (MCAR);
* ``mi_mar_rubin``: MI (sequential normal regression, 20 imputations), Welch per completed data set,
  Rubin's rules; the same truth under MAR dropout;
* ``*_null``: the LMM (both df) and the MMRM with no arm difference; truth 0, so the coverage is
  1 - the type I error.

(:mod:`analysis.calibration.designs` has the designs and the derivation of each truth.)
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd

from analysis.calibration.designs import (
    ENDPOINT,
    NULL_TRUTH,
    TRIAL_TRUTH,
    endpoint_changes,
    mar_dropout,
    mmrm_frame,
    pct_change_difference,
    simulate_trial_frame,
    slope_difference,
)
from analysis.calibration.spec import Estimator
from models.simulate_ice import IceTruth, simulate_ice_trial, true_effect

__all__ = ["ESTIMATORS", "ICE_MMRM_N", "MMRM_TRUTHS", "fit_completers_welch", "fit_lmm_kr", "fit_lmm_satterthwaite",
           "fit_mi_rubin", "fit_mmrm_ar1", "fit_mmrm_cs", "fit_mmrm_us"]

_TRIAL = "80 patients 1:1, spine at months 0/6/12/24, random intercept and slope, MCAR dropout 7%/visit"
_NULL = _TRIAL.replace("random intercept", "no arm difference, random intercept")
MI_IMPUTATIONS = 20
ICE_MMRM_N = 80
#: Data sets with the covariance each MMRM structure assumes (equal SDs; AR(1) or CS correlation 0.6).
MMRM_TRUTHS = {s: IceTruth(sd=(0.015, 0.015, 0.015), correlation=s, hazard={0: 0.08, 1: 0.08}) for s in ("cs", "ar1")}


def _row(table: pd.DataFrame, term: str) -> tuple[float, float, float, float]:
    r = table.set_index(table.columns[0]).loc[term]
    return float(r["estimate"]), float(r["se"]), float(r["ci_low"]), float(r["ci_high"])


def _simulate_mcar(rng):
    return simulate_trial_frame(rng), slope_difference(TRIAL_TRUTH)


def _simulate_null(rng):
    return simulate_trial_frame(rng, NULL_TRUTH), 0.0


def _lmm(frame: pd.DataFrame, df_method: str) -> tuple[float, float, float, float]:
    from analysis.frequentist.lmm import fit_lmm

    fit = fit_lmm(frame, "bmd_spine ~ t * active", time="t", df_method=df_method, check_nobs=False)
    return _row(fit.fixed, "t:active")


def fit_lmm_satterthwaite(frame: pd.DataFrame) -> tuple[float, float, float, float]:
    """Slope difference of the REML LMM, Satterthwaite df."""
    return _lmm(frame, "satterthwaite")


def fit_lmm_kr(frame: pd.DataFrame) -> tuple[float, float, float, float]:
    """Slope difference of the REML LMM, Kenward-Roger df and covariance."""
    return _lmm(frame, "kenward-roger")


def _mmrm(post: pd.DataFrame, covariance: str) -> tuple[float, float, float, float]:
    from analysis.frequentist.mmrm import fit_mmrm

    fit = fit_mmrm(post, "chg ~ baseline * visit + visit * arm", visit="visit", covariance=covariance)
    pw = fit.pairwise("arm", by="visit")
    last = pw.loc[pw["visit"] == pw["visit"].max()]
    if last["contrast"].iloc[0] != "active - placebo":
        raise RuntimeError(f"unexpected contrast {last['contrast'].iloc[0]!r}")
    r = last.iloc[0]
    return float(r["estimate"]), float(r["se"]), float(r["ci_low"]), float(r["ci_high"])


def _simulate_mmrm_trial(rng):
    return mmrm_frame(simulate_trial_frame(rng)), slope_difference(TRIAL_TRUTH) * ENDPOINT / 12.0


def _simulate_mmrm_null(rng):
    return mmrm_frame(simulate_trial_frame(rng, NULL_TRUTH)), 0.0


def _ice_long(sim: dict) -> pd.DataFrame:
    """A :func:`simulate_ice_trial` trial (events as monotone MCAR dropout) in long form."""
    n, m = sim["y"].shape
    frame = pd.DataFrame({"patient_id": np.repeat(np.arange(n), m), "visit": np.tile(sim["months"], n),
                          "chg": sim["y"].ravel(), "baseline": np.repeat(sim["baseline"], m),
                          "arm": np.repeat(np.where(sim["group"] == 1, "active", "placebo"), m)})
    return frame.dropna(subset=["chg"]).reset_index(drop=True)


def _simulate_structured(structure: str, rng):
    truth = MMRM_TRUTHS[structure]
    sim = simulate_ice_trial(ICE_MMRM_N, truth, seed=int(rng.integers(2**63 - 1)))
    return _ice_long(sim), float(true_effect(truth, "MAR")[-1])


def fit_mmrm_us(post: pd.DataFrame) -> tuple[float, float, float, float]:
    """Endpoint contrast of the MMRM, unstructured covariance."""
    return _mmrm(post, "us")


def fit_mmrm_cs(post: pd.DataFrame) -> tuple[float, float, float, float]:
    """Endpoint contrast of the MMRM, compound symmetry."""
    return _mmrm(post, "cs")


def fit_mmrm_ar1(post: pd.DataFrame) -> tuple[float, float, float, float]:
    """Endpoint contrast of the MMRM, AR(1)."""
    return _mmrm(post, "ar1")


def fit_completers_welch(frame: pd.DataFrame) -> tuple[float, float, float, float]:
    """Welch t-test of the completers' % change at the endpoint (active - placebo)."""
    from scipy import stats

    y1, y0 = endpoint_changes(frame)
    v1, v0 = y1.var(ddof=1) / y1.size, y0.var(ddof=1) / y0.size
    se = float(np.sqrt(v1 + v0))
    df = (v1 + v0) ** 2 / (v1**2 / (y1.size - 1) + v0**2 / (y0.size - 1))
    est = float(y1.mean() - y0.mean())
    q = float(stats.t.ppf(0.975, df))
    return est, se, est - q * se, est + q * se


def _simulate_completers(rng):
    return simulate_trial_frame(rng), pct_change_difference(TRIAL_TRUTH)


def _simulate_mar(rng):
    complete = simulate_trial_frame(rng, replace(TRIAL_TRUTH, dropout_hazard=0.0))
    return mar_dropout(complete, rng), pct_change_difference(TRIAL_TRUTH)


def fit_mi_rubin(frame: pd.DataFrame) -> tuple[float, float, float, float]:
    """MI under MAR (:func:`analysis.frequentist.imputation.impute_bmd`, arm as a predictor), Welch
    difference in % change per completed data set, Rubin's rules (Barnard-Rubin df)."""
    from analysis.frequentist.imputation import (
        difference_pct_change,
        impute_bmd,
        pool_analyses,
    )

    seed = int(np.random.SeedSequence(pd.util.hash_pandas_object(frame, index=False).to_numpy()).generate_state(1)[0])
    res = impute_bmd(frame.drop(columns=["month"]).rename(columns={"visit": "month"}), m=MI_IMPUTATIONS, seed=seed,
                     group="arm", undefined="level", sites=("spine",), covariates=("age",), auxiliary=())
    pooled = pool_analyses(res, difference_pct_change("spine", ENDPOINT, group="arm", levels=("active", "placebo")))
    r = pooled.iloc[0]
    return float(r["estimate"]), float(r["se"]), float(r["ci_low"]), float(r["ci_high"])


def _estimators() -> tuple[Estimator, ...]:
    out: list[Estimator] = []
    add = out.append
    slope = "slope difference active - placebo (g/cm^2/yr)"
    change = f"difference in mean change to month {ENDPOINT:g} (g/cm^2)"
    pct = f"difference in mean % change to month {ENDPOINT:g}"
    for name, fit in (("lmm_satterthwaite", fit_lmm_satterthwaite), ("lmm_kenward_roger", fit_lmm_kr)):
        add(Estimator(name, "frequentist", _simulate_mcar, fit, _TRIAL, slope, stream="trial_mcar"))
    add(Estimator("mmrm_us", "frequentist", _simulate_mmrm_trial, fit_mmrm_us, _TRIAL, change,
                       stream="trial_mcar"))
    for s, fit in (("cs", fit_mmrm_cs), ("ar1", fit_mmrm_ar1)):
        label = "compound symmetry" if s == "cs" else "AR(1)"
        add(Estimator(
            f"mmrm_{s}", "frequentist", partial(_simulate_structured, s), fit,
            f"{ICE_MMRM_N} patients 1:1, change at months 4/8/12, {label} covariance (SD 0.015, rho 0.6), "
            "MCAR dropout 8%/visit", "difference in mean change at month 12 (g/cm^2)", stream=f"mmrm_{s}"))
    add(Estimator("completers_welch", "frequentist", _simulate_completers, fit_completers_welch, _TRIAL, pct,
                       "valid under MCAR only", stream="trial_mcar"))
    add(Estimator("mi_mar_rubin", "frequentist", _simulate_mar, fit_mi_rubin,
                       _TRIAL.replace("MCAR dropout 7%/visit", "MAR dropout (log-odds -0.5 per % change seen "
                                      "at the visit before)"), pct, f"{MI_IMPUTATIONS} imputations"))
    for name, fit in (("lmm_satterthwaite_null", fit_lmm_satterthwaite), ("lmm_kenward_roger_null", fit_lmm_kr)):
        add(Estimator(name, "type I error", _simulate_null, fit, _NULL, "0 (no slope difference)",
                           "coverage of 0 = 1 - type I error", stream="trial_null"))
    add(Estimator("mmrm_us_null", "type I error", _simulate_mmrm_null, fit_mmrm_us, _NULL,
                       "0 (no difference at month 24)", "coverage of 0 = 1 - type I error", stream="trial_null"))
    return tuple(out)


#: This module's estimators, in table order.
ESTIMATORS = _estimators()
