"""Calibration of rajak's estimators: simulate many data sets with a known truth using the project's
own simulators, fit each estimator, and report bias, empirical vs model SE, 95% interval coverage
with its Monte-Carlo SE and the run time (issue #19; ``rajak validate-methods``, ``docs/validation.md``).

Modules
-------
spec, registry
    :class:`Estimator` (``simulate(rng) -> (data, truth)``, ``fit(data) -> (estimate, se, ci_low,
    ci_high)``, the design it is meant for, an optional ``setup()`` for compiled-once refits), seeds
    per data set; the registry.
designs
    The trial designs and the derivation of their truths.
estimators_frequentist, estimators_ice
    The registered estimators: REML LMM (Satterthwaite, Kenward-Roger), MMRM (us, cs, ar1),
    completers Welch test, MI under MAR, type I error under the null; reference-based imputation
    (J2R, CR, CIR) with the conditional-mean jackknife and with Rubin's rules.
estimators_bayes
    The Bayesian trajectory LMM and MMRM (posterior mean, SD, 95% equal-tailed interval; compiled once per
    worker with ``setup()``), on the frequentist LMM/MMRM data sets.
sbc
    Simulation-based calibration (Talts et al. 2018) of the trajectory LMM and the MMRM:
    :func:`~analysis.calibration.sbc.run_sbc` (``rajak validate-methods --sbc lmm``).
execution, store
    Chunks run here, on local processes or on Dask; resumable results on disk.
summary, output, study
    Summaries and verdicts; CSV, Markdown and the coverage figure; :func:`run_calibration`.
"""

from __future__ import annotations

from analysis.calibration.execution import Chunk, execute, run_chunk
from analysis.calibration.registry import (
           estimator_names,
           get_estimator,
           register,
           registered,
)
from analysis.calibration.spec import FAMILIES, Estimator, dataset_rng
from analysis.calibration.study import CalibrationResult, run_calibration
from analysis.calibration.summary import BAND, summarise, verdict

__all__ = ["BAND", "FAMILIES", "CalibrationResult", "Chunk", "Estimator", "dataset_rng", "estimator_names",
           "execute", "get_estimator", "register", "registered", "run_calibration", "run_chunk", "summarise",
           "verdict"]
