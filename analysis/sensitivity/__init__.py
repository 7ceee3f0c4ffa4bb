"""Sensitivity analyses of the dropout (MAR vs MNAR), each returning one :class:`SensitivityResult`
(table + text + figures, or the one-line reason it did not run) so that the report and the forest
plot iterate over them uniformly.

One strategy per module, run by name through :mod:`~analysis.sensitivity.runner`:
``completers_vs_all``, ``reference_based``, ``delta``, ``tipping``, ``delta_bayes``, ``priors``,
``latent_status``, ``selection``. Every one works on the study's design (sites, endpoint, groups,
reference: :mod:`~analysis.sensitivity.design`); one that does not apply to a design (latent
responder status in a trial) says so. What several of them share lives beside them: the
MMRM-based multiple imputation (``site_data``, ``imputation_draws``, ``imputation_strategies``,
``mmrm_imputation``), the pooling and reporting of the MI analyses (``mi_reporting``), the tipping
figure (``tipping_figure``), the Bayesian delta's posterior per site (``bayes_delta_site``), the fit
cache and diagnostics of the Bayesian ones (``bayes_common``) and the result type (``result``).
"""

from analysis.sensitivity.design import SensitivityDesign, sensitivity_design
from analysis.sensitivity.result import FOREST_COLUMNS, STATUSES, SensitivityResult
from analysis.sensitivity.runner import (
           ANALYSES,
           available,
           forest_figure,
           forest_table,
           run_sensitivity,
)

__all__ = [
           "ANALYSES",
           "FOREST_COLUMNS",
           "STATUSES",
           "SensitivityDesign",
           "SensitivityResult",
           "available",
           "forest_figure",
           "forest_table",
           "run_sensitivity",
           "sensitivity_design",
]
