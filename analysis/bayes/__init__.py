"""The Bayesian analyses of one study, on its design (any sites, groups and endpoint;
``study_frame``: the analysis frame and whether a model applies): fit a named model (``fit``:
lmm, robust, mmrm, joint, activity) or the user's own model formula (``fit.fit_formula``, a bambi
model: ``formula``),
estimands and contrasts from the draws with their summaries (``estimands``, ``posterior``), the
Bayes-vs-frequentist table, prior predictive checks and prior sensitivity (``prior_checks``) and
PSIS-LOO model comparison (``model_compare``).

Public names are imported lazily (PEP 562), so importing one module of the room does not import
the others.
"""

from __future__ import annotations

from analysis.common.lazy_exports import lazy_exports


_EXPORTS = {
    "fit_estimands": "analysis.bayes.estimands",
    "bayes_table": "analysis.bayes.estimands",
    "compare_table": "analysis.bayes.estimands",
    "COMPARE_COLUMNS": "analysis.bayes.estimands",
    "rope_text": "analysis.bayes.estimands",
    "default_formula": "analysis.bayes.formula",
    "GROUP_COLUMN": "analysis.bayes.study_frame",
    "analysis_levels": "analysis.bayes.study_frame",
    "check_applicable": "analysis.bayes.study_frame",
    "model_options": "analysis.bayes.study_frame",
    "DEFAULT_FORMULA": "analysis.bayes.formula",
    "BambiLMM": "analysis.bayes.formula",
    "FormulaError": "analysis.bayes.formula",
    "bambi_lmm": "analysis.bayes.formula",
    "check_formula": "analysis.bayes.formula",
    "formula_estimands": "analysis.bayes.formula",
    "MODELS": "analysis.bayes.fit",
    "FREQUENTIST_COUNTERPART": "analysis.bayes.fit",
    "BayesFit": "analysis.bayes.fit",
    "analysis_frame": "analysis.bayes.fit",
    "fit_bayes": "analysis.bayes.fit",
    "fit_cache_key": "analysis.bayes.fit",
    "fit_formula": "analysis.bayes.fit",
    "model_names": "analysis.bayes.fit",
    "compare": "analysis.bayes.fit",
    "prior_object": "analysis.bayes.fit",
    "loo_table": "analysis.bayes.model_compare",
    "LSC_PCT": "analysis.bayes.posterior",
    "EstimandDraws": "analysis.bayes.posterior",
    "summarise_draws": "analysis.bayes.posterior",
    "savage_dickey_bf10": "analysis.bayes.posterior",
    "summary_table": "analysis.bayes.posterior",
    "SUMMARY_COLUMNS": "analysis.bayes.posterior",
    "CONTRASTS": "analysis.bayes.prior_checks",
    "LogDensities": "analysis.bayes.prior_checks",
    "PriorCheckResult": "analysis.bayes.prior_checks",
    "add_log_densities": "analysis.bayes.prior_checks",
    "prior_checks": "analysis.bayes.prior_checks",
    "prior_predictive": "analysis.bayes.prior_checks",
    "prior_predictive_figure": "analysis.bayes.prior_checks",
    "prior_sensitivity": "analysis.bayes.prior_checks",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
