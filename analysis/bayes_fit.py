"""Fit a named Bayesian model to a study and summarise its estimands: what ``rajak fit`` and
``rajak compare`` call.

Models are plain builder functions in a registry (``MODELS``), each taking the analysis frame (one
row per patient-visit with a boolean ``responder``), the site and the prior set, and returning a
model object that :func:`analysis.fitting.sample` fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from analysis.bayesian import bayes_table, compare_table, fit_estimands
from analysis.clinical import ResponderRule
from analysis.groups import UndefinedStrategy, assign_groups
from analysis.posterior import EstimandDraws

__all__ = ["MODELS", "FREQUENTIST_COUNTERPART", "BayesFit", "analysis_frame", "fit_bayes", "model_names"]


def _trajectory(likelihood: str) -> Callable[..., Any]:
    def build(frame: pd.DataFrame, site: str, priors: Any, covariates: tuple[str, ...] = ()) -> Any:
        from models.trajectory import build_trajectory_model

        return build_trajectory_model(frame, site, covariates=covariates, priors=priors, likelihood=likelihood)

    return build


MODELS: dict[str, Callable[..., Any]] = {
    "lmm": _trajectory("normal"),
    "robust": _trajectory("student_t"),
}

#: Which frequentist estimate each Bayesian model is compared with.
FREQUENTIST_COUNTERPART = {"lmm": "LMM (REML)", "robust": "LMM (REML)", "mmrm": "MMRM (us, REML)",
                           "joint": "LMM (REML)", "activity": "LMM (REML)"}


def model_names() -> list[str]:
    return sorted(MODELS)


@dataclass
class BayesFit:
    """One fitted model at one site: the fit, its estimands (with draws) and their summary."""

    model: str
    site: str
    fit: Any
    estimands: list[EstimandDraws]
    table: pd.DataFrame
    strategy: str
    priors: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        import numpy as np

        return {"model": self.model, "site": self.site, "priors": self.priors, "strategy": self.strategy,
                "diagnostics": self.fit.diagnostics.to_dict(), "settings": self.fit.settings,
                "timings": self.fit.timings,
                "estimands": self.table.replace({np.nan: None}).to_dict(orient="records")}


def analysis_frame(derived: pd.DataFrame, strategy: UndefinedStrategy = "last_observed",
                   rule: ResponderRule | None = None) -> tuple[pd.DataFrame, str]:
    """Rows of patients with a resolved group and a boolean ``responder`` (``unknown`` status is
    not modelled by the Bayesian models: those patients are left out and the text says so)."""
    assignment = assign_groups(derived, strategy, rule)
    f = assignment.frame
    keep = f["analysis_group"].isin(["responder", "non-responder"])
    text = assignment.describe()
    if strategy == "unknown" and (~keep & f["analysis_group"].notna()).any():
        text += "; 'unknown' patients are not in the Bayesian models"
    out = f[keep].copy()
    out["responder"] = out["analysis_group"] == "responder"
    return out.reset_index(drop=True), text


def _priors(name: str, site: str) -> Any:
    try:
        from models.priors import prior_set
    except ImportError:  # prior sets not available: only the default
        from models.trajectory import TrajectoryPriors

        if name not in ("default", "weakly_informative"):
            raise ValueError(f"unknown prior set {name!r}") from None
        return TrajectoryPriors()
    return prior_set("weakly_informative" if name == "default" else name, site)


def fit_bayes(derived: pd.DataFrame, model: str = "lmm", site: str = "spine", priors: str = "default",
              strategy: UndefinedStrategy = "last_observed", rule: ResponderRule | None = None,
              draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0, sampler: str = "nutpie",
              target_accept: float = 0.9, cores: int = 2, covariates: tuple[str, ...] = ()) -> BayesFit:
    """Build, sample and summarise one model (see :data:`MODELS`)."""
    from analysis.fitting import sample

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; available: {', '.join(model_names())}")
    frame, text = analysis_frame(derived, strategy, rule)
    built = MODELS[model](frame, site, _priors(priors, site), covariates=covariates)
    fit = sample(built, draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                 target_accept=target_accept, cores=cores)
    items = fit_estimands(fit, site, model)
    return BayesFit(model=model, site=site, fit=fit, estimands=items, table=bayes_table(items), strategy=text,
                    priors=priors)


def compare(fits: list[BayesFit], frequentist_estimands: pd.DataFrame) -> pd.DataFrame:
    """The Bayesian-vs-frequentist table for a list of fits."""
    bayes = pd.concat([f.table for f in fits], ignore_index=True)
    return compare_table(frequentist_estimands, bayes, {f.model: FREQUENTIST_COUNTERPART[f.model] for f in fits})
