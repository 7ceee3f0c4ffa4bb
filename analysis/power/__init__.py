r"""Sample size and assurance of the next study, by simulation and in closed form.

A power study simulates many copies of the next study at each sample size :math:`n` of a grid,
analyses every copy as the real study would be analysed, and reports the fraction of copies in
which an analysis "succeeds" (its decision rule fires). With fixed design parameters that fraction
is the **power**; with parameters drawn from a *design prior* for every simulated study it is the
**assurance** (O'Hagan, Stevens & Campbell 2005), :math:`\int \mathrm{power}(\theta)\,p(\theta)\,d\theta`.
It runs on one machine or on a Dask cluster, and resumes after an interruption.

Modules, in the order a study uses them:

==============================  ==================================================================
``design``                      :class:`PowerDesign` (what is simulated), grids, design files,
                                :func:`design_from_data` (the next study drawn like the user's own)
``data_model``                  :class:`DataModel`: the user's design, allocation, retention and
                                REML LMM per site, estimated from their derived frame
``data_generator``              one study like the user's; the closed form per contrast
``data_study``                  the analyses of such a study, one row per contrast of the design
``dropout``                     calibration of the simulator's dropout hazard to a target
``prior``                       :class:`DesignPrior` (assurance), from a fitted LMM's posterior
``settings``                    :class:`PowerSettings` (thresholds, Bayesian sampler settings)
``gaussian``, ``frames``        the Gaussian data generator; one study's analysis frame
``analyses``, ``bayes_rule``    the per-study frequentist analyses; the Bayesian refit
``simulated_study``, ``raw``    one simulated study (seeds, rows); the raw-result layout
``execution``                   this process, local processes or Dask; resumable results on disk
``study``                       :func:`run_power`, the loop
``summary``, ``results``        decision rules and summaries; :class:`PowerResult`
``closed_form``                 Diggle et al. and Liu & Liang closed forms
``closed_form_dropout``         Lu, Luo & Chen (MMRM) and Edland (LMM) with monotone dropout
``closed_form_engine``          large-sample power of the LMM / MMRM tests on a design's strata
``closed_form_model``           their analysis models and the REML limit of the working covariance
``closed_form_completers``      the completers' Welch t-test on a design's strata
``closed_form_design``          the closed form of a :class:`PowerDesign`, on the simulated design
==============================  ==================================================================

Every public name below is importable from here (``from analysis.power import PowerDesign,
run_power``); the submodule holding it is imported on first use, so importing one piece does not
import them all.
"""

from __future__ import annotations

from analysis.common.lazy_exports import lazy_exports

from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analysis.power.analyses import ANALYSES
    from analysis.power.bayes_rule import BayesRefit, BayesRefitter
    from analysis.power.closed_form import (PowerCalculation, diggle_linear_power, liu_liang_linear_power,
                                            random_slope_covariance, slope_difference_power,
                                            slope_difference_sample_size)
    from analysis.power.closed_form_design import closed_form_power, closed_form_table
    from analysis.power.closed_form_dropout import edland_linear_power, lu_luo_chen_phi, power_mmrm
    from analysis.power.data_generator import closed_form_data_power, simulate_from_data
    from analysis.power.data_model import DataModel, SiteModel, estimate_data_model
    from analysis.power.design import (PowerDesign, design_from_data, disease_control_slope_pct, load_power_design,
                                       parse_n_grid)
    from analysis.power.dropout import calibrate_dropout, calibrate_dropout_per_visit
    from analysis.power.execution import check_scheduler
    from analysis.power.frames import power_frame
    from analysis.power.gaussian import simulate_gaussian
    from analysis.power.prior import DesignPrior
    from analysis.power.raw import POWER_FORMAT, RAW_COLUMNS, TIMING_COLUMNS
    from analysis.power.results import PowerResult
    from analysis.power.settings import PowerSettings
    from analysis.power.simulated_study import simulation_seed_sequence
    from analysis.power.study import run_power
    from analysis.power.summary import closed_form_gap, smallest_n, summarise, wilson_interval

# public name -> the submodule that defines it
_HOME = MappingProxyType({
    "ANALYSES": "analyses",
    "BayesRefit": "bayes_rule",
    "BayesRefitter": "bayes_rule",
    "DataModel": "data_model",
    "DesignPrior": "prior",
    "POWER_FORMAT": "raw",
    "PowerCalculation": "closed_form",
    "PowerDesign": "design",
    "PowerResult": "results",
    "PowerSettings": "settings",
    "RAW_COLUMNS": "raw",
    "SiteModel": "data_model",
    "TIMING_COLUMNS": "raw",
    "calibrate_dropout": "dropout",
    "calibrate_dropout_per_visit": "dropout",
    "check_scheduler": "execution",
    "closed_form_data_power": "data_generator",
    "closed_form_gap": "summary",
    "closed_form_power": "closed_form_design",
    "closed_form_table": "closed_form_design",
    "edland_linear_power": "closed_form_dropout",
    "lu_luo_chen_phi": "closed_form_dropout",
    "power_mmrm": "closed_form_dropout",
    "estimate_data_model": "data_model",
    "estimable_analyses": "data_model",
    "design_from_data": "design",
    "diggle_linear_power": "closed_form",
    "disease_control_slope_pct": "design",
    "liu_liang_linear_power": "closed_form",
    "load_power_design": "design",
    "parse_n_grid": "design",
    "power_frame": "frames",
    "random_slope_covariance": "closed_form",
    "run_power": "study",
    "simulate_from_data": "data_generator",
    "simulate_gaussian": "gaussian",
    "simulation_seed_sequence": "simulated_study",
    "slope_difference_power": "closed_form",
    "slope_difference_sample_size": "closed_form",
    "smallest_n": "summary",
    "summarise": "summary",
    "wilson_interval": "summary",
})

__getattr__, __dir__, __all__ = lazy_exports(__name__, _HOME)
