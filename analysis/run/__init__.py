"""``rajak run``: the validated run configuration (``config``), the pipeline that runs every stage
and writes the run directory atomically (``pipeline``), and the Bayesian stage of a run
(``bayes_stage``).

Public names are imported lazily (PEP 562), so importing one module of the room does not import
the others.
"""

from __future__ import annotations

from analysis.common.lazy_exports import lazy_exports


_EXPORTS = {
    "BayesStage": "analysis.run.bayes_stage",
    "DIAGNOSTIC_FIGURES": "analysis.run.bayes_stage",
    "PRIOR_DRAWS": "analysis.run.bayes_stage",
    "PRIOR_POSTERIOR_QUANTITIES": "analysis.run.bayes_stage",
    "PriorPosterior": "analysis.run.bayes_stage",
    "run_bayes_stage": "analysis.run.bayes_stage",
    "bayes_sections": "analysis.run.bayes_stage",
    "diagnostic_figure_names": "analysis.run.bayes_stage",
    "prior_draws": "analysis.run.bayes_stage",
    "prior_posterior_items": "analysis.run.bayes_stage",
    "prior_posterior_table": "analysis.run.bayes_stage",
    "ResponderConfig": "analysis.run.config",
    "TScoreConfig": "analysis.run.config",
    "RunConfig": "analysis.run.config",
    "ConfigError": "analysis.run.config",
    "load_config": "analysis.run.config",
    "COVARIANCE_NAMES": "analysis.run.methods_text",
    "MODEL_TEXT": "analysis.run.methods_text",
    "bayes_methods": "analysis.run.methods_text",
    "covariances_text": "analysis.run.methods_text",
    "frequentist_methods": "analysis.run.methods_text",
    "prior_text": "analysis.run.methods_text",
    "RunResult": "analysis.run.pipeline",
    "RunExistsError": "analysis.run.pipeline",
    "load_for_config": "analysis.run.pipeline",
    "run": "analysis.run.pipeline",
    "sensitivity_failures": "analysis.run.pipeline",
    "PowerStage": "analysis.run.power_stage",
    "power_design": "analysis.run.power_stage",
    "power_methods": "analysis.run.power_stage",
    "power_section": "analysis.run.power_stage",
    "run_power_stage": "analysis.run.power_stage",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
