"""Sensitivity analyses of the dropout (MAR vs MNAR), each returning one :class:`SensitivityResult`
(table + text + figures) so that the report and the forest plot iterate over them uniformly.

One strategy per module, run by name through :mod:`~analysis.sensitivity.runner`:
``completers_vs_all``, ``reference_based``, ``delta``, ``tipping``, ``bayes_delta``, ``priors``,
``latent_status``, ``selection``. What several of them share lives beside them: the MMRM-based
multiple imputation (``site_data``, ``imputation_draws``, ``imputation_strategies``,
``mmrm_imputation``), the pooling and reporting of the MI analyses (``mi_reporting``), the fit cache
and diagnostics of the Bayesian ones (``bayes_common``) and the result type (``result``).
"""

from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.sensitivity.runner import ANALYSES, available, forest_figure, forest_table, run_sensitivity

__all__ = ["SensitivityResult", "FOREST_COLUMNS", "ANALYSES", "available", "run_sensitivity", "forest_table",
           "forest_figure"]
