"""The registry of estimators: the built-in ones (:mod:`~analysis.calibration.estimators_frequentist`,
:mod:`~analysis.calibration.estimators_ice`,
:mod:`~analysis.calibration.estimators_bayes`,
:mod:`~analysis.calibration.estimators_bayes_models`,
:mod:`~analysis.calibration.estimators_sensitivity`,
:mod:`~analysis.calibration.estimators_dropout_models`,
:mod:`~analysis.calibration.estimators_bayes_delta`, in table order) and any added with :func:`register`."""

from __future__ import annotations

from analysis.calibration import (
    estimators_bayes,
    estimators_bayes_delta,
    estimators_bayes_models,
    estimators_dropout_models,
    estimators_frequentist,
    estimators_ice,
    estimators_sensitivity,
)
from analysis.calibration.spec import Estimator

__all__ = ["estimator_names", "get_estimator", "register", "registered"]

_REGISTRY: dict[str, Estimator] = {e.name: e for mod in (estimators_frequentist, estimators_ice, estimators_bayes,
                                                       estimators_bayes_models, estimators_sensitivity,
                                                       estimators_dropout_models, estimators_bayes_delta)
                                   for e in mod.ESTIMATORS}


def register(estimator: Estimator) -> Estimator:
    """Add ``estimator`` to the registry (a name registered twice is an error)."""
    if estimator.name in _REGISTRY and _REGISTRY[estimator.name] is not estimator:
        raise ValueError(f"estimator {estimator.name!r} is already registered")
    _REGISTRY[estimator.name] = estimator
    return estimator


def registered() -> dict[str, Estimator]:
    """Every registered estimator by name, the built-in ones first, in table order."""
    return dict(_REGISTRY)


def estimator_names() -> list[str]:
    """Names of :func:`registered`."""
    return list(registered())


def get_estimator(name: str) -> Estimator:
    """The registered estimator ``name``.

    Raises
    ------
    ValueError
        Unknown name (one line listing the known ones).
    """
    reg = registered()
    if name not in reg:
        raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(reg)}")
    return reg[name]
