"""The statistical and data-generating models of rajak: the bottom room (``models`` never imports
``analysis``).

Importing ``models`` first configures the compile caches of PyTensor and numba
(:mod:`models.runtime`), before anything imports pytensor. The model modules are not imported
eagerly: the names in ``__all__`` are re-exported lazily (on first attribute access), so
``import models`` does not import PyMC.

Modules
-------
Data-generating models
    :mod:`models.simulate` (the digital twin's simulator), :mod:`models.scores` (DAS28-CRP, CDAI).
The trajectory LMM, one skeletal site at a time
    :mod:`models.trajectory` (the PyMC builder and its priors), :mod:`models.trajectory_data`
    (data preparation), :mod:`models.trajectory_terms` (latent random effects, Student-t
    weights), :mod:`models.marginal` (the marginal likelihood and the pieces every single-site
    model shares), :mod:`models.priors` (named prior sets).
Models built on it
    :mod:`models.activity` (disease activity in the slope; :mod:`models.activity_exposure`,
    :mod:`models.activity_comparison`), :mod:`models.dropout` (latent responder status and the
    selection model; :mod:`models.dropout_data`, :mod:`models.dropout_latent_status`,
    :mod:`models.dropout_selection`), :mod:`models.joint` (both sites with correlated effects;
    :mod:`models.joint_data`), :mod:`models.mmrm` (the Bayesian MMRM; :mod:`models.mmrm_data`).
Multiple imputation
    :mod:`models.imputation_mmrm` (the MMRM of Bayesian multiple imputation, a generic design).
Numerical building blocks
    :mod:`models.lkj` (the LKJ prior from partial correlations), :mod:`models.unrolled_cholesky`
    (log-determinants and quadratic forms of small SPD matrices), :mod:`models.runtime`.
"""

from typing import Any

from models.runtime import configure_compile_cache

configure_compile_cache()

#: Public names re-exported lazily, and the module each comes from.
_LAZY: dict[str, str] = {
    "Design": "models.simulate",
    "DropoutModel": "models.simulate",
    "DropoutPriors": "models.dropout",
    "ImputationMmrmPriors": "models.imputation_mmrm",
    "MmrmPriors": "models.mmrm",
    "TrajectoryPriors": "models.trajectory",
    "build_activity_model": "models.activity",
    "build_imputation_mmrm": "models.imputation_mmrm",
    "build_joint_model": "models.joint",
    "build_latent_status_model": "models.dropout",
    "build_mmrm_model": "models.mmrm",
    "build_selection_model": "models.dropout",
    "build_trajectory_model": "models.trajectory",
    "cdai": "models.scores",
    "das28_crp": "models.scores",
    "prepare_trajectory_data": "models.trajectory_data",
    "prior_set": "models.priors",
    "simulate": "models.simulate",
}

__all__ = [  # configure_compile_cache and the lazily re-exported names of _LAZY
    "Design",
    "DropoutModel",
    "DropoutPriors",
    "ImputationMmrmPriors",
    "MmrmPriors",
    "TrajectoryPriors",
    "build_activity_model",
    "build_imputation_mmrm",
    "build_joint_model",
    "build_latent_status_model",
    "build_mmrm_model",
    "build_selection_model",
    "build_trajectory_model",
    "cdai",
    "configure_compile_cache",
    "das28_crp",
    "prepare_trajectory_data",
    "prior_set",
    "simulate",
]


def __getattr__(name: str) -> Any:
    """Import the module of a lazily re-exported name on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
