"""Frequentist analyses of a longitudinal BMD study: the paper's completers tests with R's
conventions (t-tests, Wilcoxon tests with Hodges-Lehmann intervals), REML linear mixed models and
MMRM with Satterthwaite / Kenward-Roger df, multiple imputation pooled with Rubin's rules, and the
one-call :func:`frequentist_analysis` that gathers them into one table of estimands, on any study
design (responder groups, arms, a single arm; :mod:`analysis.frequentist.coding` says how a design's
groups enter the models, :mod:`analysis.frequentist.model_estimands` reads the estimands off them).

The names below are loaded lazily (PEP 562): ``import analysis.frequentist.reml`` does not import
the other modules of the room.
"""

from __future__ import annotations

from analysis.common.lazy_exports import lazy_exports

from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.frequentist.coding import GroupCoding, group_coding
    from analysis.frequentist.completers import CompletersResult, completers_analysis
    from analysis.frequentist.imputation import (ImputationResult, PooledResult, impute_bmd, mi_analysis,
                                                 rubin_pool)
    from analysis.frequentist.lmm import LmmResult, fit_lmm
    from analysis.frequentist.mi_estimands import mi_estimands
    from analysis.frequentist.mmrm import MmrmResult, fit_mmrm
    from analysis.frequentist.primary import FrequentistResult, frequentist_analysis, model_frame
    from analysis.frequentist.rtests import (TestResult, t_test_one_sample, t_test_paired, t_test_welch,
                                             wilcoxon_rank_sum, wilcoxon_signed_rank)

#: public name -> module of the room that defines it
_EXPORTS = MappingProxyType({
    "frequentist_analysis": "primary", "FrequentistResult": "primary", "model_frame": "primary",
    "completers_analysis": "completers", "CompletersResult": "completers",
    "GroupCoding": "coding", "group_coding": "coding", "mi_estimands": "mi_estimands",
    "fit_lmm": "lmm", "LmmResult": "lmm",
    "fit_mmrm": "mmrm", "MmrmResult": "mmrm",
    "mi_analysis": "imputation", "impute_bmd": "imputation", "ImputationResult": "imputation",
    "rubin_pool": "imputation", "PooledResult": "imputation",
    "TestResult": "rtests", "t_test_one_sample": "rtests", "t_test_paired": "rtests",
    "t_test_welch": "rtests", "wilcoxon_signed_rank": "rtests", "wilcoxon_rank_sum": "rtests",
})

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
