"""Estimands with intercurrent events (ICH E9(R1)), as R's rbmi: per-patient strategies, imputation
and inference, one small module per step.

- :mod:`~analysis.sensitivity.ice.patients`: a site's patients with their ICE, handling and strategy
  (:class:`IcePatients`); :mod:`~analysis.sensitivity.ice.resolve`: from the study's ICE table and
  the estimand to each patient's handling;
- :mod:`~analysis.sensitivity.ice.imputation_model`: the MMRM's design (``"rbmi"``, ``"rajak"``,
  the retrieved-dropout term); :mod:`~analysis.sensitivity.ice.reml_wide`: its REML fit, built for
  hundreds of refits (:class:`WideReml`); :mod:`~analysis.sensitivity.ice.bayes_draws`: its
  posterior by MCMC;
- :mod:`~analysis.sensitivity.ice.imputation`: the strategies' means, conditional normal, while on
  treatment, delta;
- :mod:`~analysis.sensitivity.ice.analysis_models`: ANCOVA at each visit and the MMRM on a completed
  dataset; :mod:`~analysis.sensitivity.ice.pooling`: jackknife, bootstrap, Rubin, bmlmi;
- :mod:`~analysis.sensitivity.ice.methods`: the inference methods that tie them together
  (:func:`run_method`).

The sensitivity analysis built on them is :mod:`analysis.sensitivity.reference_based`.
"""

from analysis.sensitivity.ice.analysis_models import Estimate, ancova, mmrm_analysis
from analysis.sensitivity.ice.imputation import impute, patient_means
from analysis.sensitivity.ice.imputation_model import (
    IMPUTATION_MODELS,
    design,
    design_names,
)
from analysis.sensitivity.ice.methods import (
    METHODS,
    MethodResult,
    MethodSettings,
    run_method,
)
from analysis.sensitivity.ice.patients import (
    HANDLINGS,
    IMPUTATION_STRATEGIES,
    IcePatients,
    normalise_strategy,
)
from analysis.sensitivity.ice.pooling import (
    Pooled,
    pool_bmlmi,
    pool_bootstrap,
    pool_jackknife,
    pool_rubin,
)
from analysis.sensitivity.ice.reml_wide import WideFit, WideReml
from analysis.sensitivity.ice.resolve import handling_of, resolve_ice

__all__ = [
    "HANDLINGS",
    "IMPUTATION_MODELS",
    "IMPUTATION_STRATEGIES",
    "METHODS",
    "Estimate",
    "IcePatients",
    "MethodResult",
    "MethodSettings",
    "Pooled",
    "WideFit",
    "WideReml",
    "ancova",
    "design",
    "design_names",
    "handling_of",
    "impute",
    "mmrm_analysis",
    "normalise_strategy",
    "patient_means",
    "pool_bmlmi",
    "pool_bootstrap",
    "pool_jackknife",
    "pool_rubin",
    "resolve_ice",
    "run_method",
]
