"""Fit a named Bayesian model to a study and summarise its estimands: what ``rajak fit`` and
``rajak compare`` call.

Models are plain builder functions in a registry (``MODELS``), each taking the analysis frame
(:func:`analysis.bayes.study_frame.analysis_frame`: one row per patient-visit with the patient's
group in ``analysis_group``, and the design's words in ``frame.attrs``), the site and the prior
set, and returning a model object that :func:`analysis.engine.sampling.sample` fits. Every model
works on the study's design: any sites, any groups (a responder study, two or more arms, a single
arm; :math:`K` groups give :math:`K - 1` contrasts with the reference), the design's endpoint.
:func:`analysis.bayes.study_frame.check_applicable` says in one line when a model does not apply
(the activity model needs responder groups from disease activity; the joint model two or more
sites) or cannot be estimated (a random-slope LMM with one post-baseline visit).

A user's own model formula (``rajak fit --formula``) goes through :func:`fit_formula`: a bambi
model (:mod:`analysis.bayes.formula`) sampled by the same engine and summarised into the same
:class:`BayesFit`, one estimand per fixed-effect coefficient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis.bayes.estimands import bayes_table, compare_table, fit_estimands, rope_text
from analysis.bayes.posterior import EstimandDraws
from analysis.bayes.study_frame import (analysis_frame, analysis_levels, check_applicable, design_sites,
                                        model_options)
from analysis.study.clinical import ResponderRule
from analysis.study.groups import UndefinedStrategy, design_of

__all__ = ["MODELS", "FREQUENTIST_COUNTERPART", "BayesFit", "analysis_frame", "analysis_levels", "fit_bayes",
           "fit_cache_key", "fit_formula", "model_names", "compare", "prior_object"]


def _opts(frame: pd.DataFrame, options: dict[str, Any]) -> dict[str, Any]:
    return {**model_options(frame), **options}


def _trajectory(likelihood: str) -> Callable[..., Any]:
    def build(frame: pd.DataFrame, site: str, priors: Any, covariates: tuple[str, ...] = (), **options: Any) -> Any:
        from models.trajectory import build_trajectory_model

        o = _opts(frame, options)
        return build_trajectory_model(frame, site, covariates=covariates, priors=priors, likelihood=likelihood,
                                      levels=o["levels"], group_column=o["group_column"], time=o["time"],
                                      endpoint_month=o["endpoint_month"])

    return build


def _activity(frame: pd.DataFrame, site: str, priors: Any, covariates: tuple[str, ...] = (), **options: Any) -> Any:
    """Responder studies only (a boolean ``responder``); reports the change over one year."""
    from models.activity import build_activity_model

    return build_activity_model(frame, site, priors, covariates=covariates)


def _mmrm(frame: pd.DataFrame, site: str, priors: Any, covariates: tuple[str, ...] = (), **options: Any) -> Any:
    """Bayesian MMRM of the change in g/cm^2 at the nominal visits (no covariates); the prior set is
    translated to the visits (see models.mmrm, *Scaling and priors*)."""
    from models.mmrm import build_mmrm_model

    o = _opts(frame, options)
    return build_mmrm_model(frame, site, "abs", priors=priors, endpoint_month=o["endpoint_month"],
                            levels=o["levels"], group_column=o["group_column"], time="month")


def _joint(frame: pd.DataFrame, site: str, priors: Any, covariates: tuple[str, ...] = (), **options: Any) -> Any:
    """Joint model of the design's sites (all are fitted; the site's estimands are read off)."""
    from models.joint import build_joint_model

    o = _opts(frame, options)
    return build_joint_model(frame, covariates=covariates, priors=priors, sites=o["sites"], levels=o["levels"],
                             group_column=o["group_column"], time=o["time"], endpoint_month=o["endpoint_month"])


MODELS: dict[str, Callable[..., Any]] = {
    "lmm": _trajectory("normal"),
    "robust": _trajectory("student_t"),
    "activity": _activity,
    "mmrm": _mmrm,
    "joint": _joint,
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
        return {"model": self.model, "site": self.site, "priors": self.priors, "strategy": self.strategy,
                "endpoint_month": self.extra.get("endpoint_month"), "rope": self.extra.get("rope"),
                "diagnostics": self.fit.diagnostics.to_dict(), "settings": self.fit.settings,
                "timings": self.fit.timings,
                "estimands": self.table.replace({np.nan: None}).to_dict(orient="records")}


def prior_object(name: str, site: str, frame: pd.DataFrame | None = None) -> Any:
    """The :class:`models.trajectory.TrajectoryPriors` of prior set ``name`` at ``site`` (``"default"``
    is ``"weakly_informative"``). The ``sceptical`` set at a site without a published reference
    BMD scales to the mean baseline BMD of ``frame`` there (:func:`models.priors.prior_set`)."""
    try:
        from models.priors import prior_set
    except ImportError:  # prior sets not available: only the default
        from models.trajectory import TrajectoryPriors

        if name not in ("default", "weakly_informative"):
            raise ValueError(f"unknown prior set {name!r}") from None
        return TrajectoryPriors()
    ref = None
    col = f"bmd_{site}"
    if frame is not None and col in frame.columns:
        when = frame["visit"] if "visit" in frame.columns else frame["month"]
        base = frame.loc[when == 0, col].dropna()
        ref = float(base.mean()) if len(base) else None
    return prior_set("weakly_informative" if name == "default" else name, site, reference_bmd=ref)


def fit_bayes(derived: pd.DataFrame, model: str = "lmm", site: str | None = None, priors: str = "default",
              strategy: UndefinedStrategy = "last_observed", rule: ResponderRule | None = None,
              draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0, sampler: str = "nutpie",
              target_accept: float = 0.9, cores: int = 2, covariates: tuple[str, ...] = (),
              cache_dir: str | Path | None = None, design: Any = None, rope_pct: float | None = None) -> BayesFit:
    """Build, sample and summarise one model (see :data:`MODELS`) on the study's design.

    Parameters
    ----------
    derived : DataFrame
        :func:`analysis.study.clinical.derive`'s frame.
    model : {"lmm", "robust", "mmrm", "joint", "activity"}
    site : str, optional
        One of the design's sites; default the first.
    priors : str
        A prior set (:func:`prior_object`).
    strategy, rule
        Undefined responder status and the responder rule (responder studies).
    draws, tune, chains, seed, sampler, target_accept, cores
        Passed to :func:`analysis.engine.sampling.sample`.
    covariates : tuple of str
        Baseline covariates of the LMMs.
    cache_dir : path, optional
        A fit whose model, priors, data, design, strategy, settings and library versions are
        unchanged is read from this content-addressed cache instead of being sampled again.
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default design).
    rope_pct : float, optional
        ROPE half-width in % (default the site's DXA least significant change where known,
        :data:`analysis.bayes.posterior.LSC_PCT`; none elsewhere: ``extra["rope"]`` says so).

    Returns
    -------
    BayesFit
        Every group's change and every level - reference contrast at the design's endpoint,
        named by :func:`analysis.study.estimands.estimand_name` / ``difference_name``.

    Raises
    ------
    NotApplicable, NotEstimable
        One line (``analysis.study.applicability``): see
        :func:`analysis.bayes.study_frame.check_applicable`.
    ValueError
        An unknown model or a site that is not the design's.
    """
    from analysis.engine.sampling import load_fit, sample

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; available: {', '.join(model_names())}")
    d = design_of(derived, design)
    sites = design_sites(derived, d)
    site = sites[0] if site is None else site
    if site not in sites:
        raise ValueError(f"unknown site {site!r}: the design's sites are {', '.join(sites)}")
    frame, text = analysis_frame(derived, strategy, rule, design=d)
    check_applicable(model, frame, site, d)
    prior_obj = prior_object(priors, site, frame)
    built = MODELS[model](frame, site, prior_obj, covariates=covariates)
    options = model_options(frame)
    month = float(built.describe().get("endpoint_month", 12.0))  # the activity model: one year
    key = None
    if cache_dir is not None:
        key = fit_cache_key(model, site, prior_obj, frame, built, text,
                            dict(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                                 target_accept=target_accept, covariates=list(covariates),
                                 design={k: v for k, v in options.items() if k != "sites"}))
        cached = Path(cache_dir) / f"{model}_{site}_{key}.nc"
        if cached.is_file():
            fit = load_fit(cached)
            items = fit_estimands(fit, site, model, month=month, rope_pct=rope_pct)
            return BayesFit(model=model, site=site, fit=fit, estimands=items, table=bayes_table(items),
                            strategy=text, priors=priors,
                            extra={"cache": "hit", "cache_key": key, "cache_path": str(cached),
                                   "rope": rope_text(site, rope_pct), "endpoint_month": month})
    fit = sample(built, draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                 target_accept=target_accept, cores=cores)
    extra: dict[str, Any] = {"cache": "miss" if key else "off", "cache_key": key,
                             "rope": rope_text(site, rope_pct), "endpoint_month": month}
    if key is not None:
        path = Path(cache_dir) / f"{model}_{site}_{key}.nc"
        fit.save(path)
        extra["cache_path"] = str(path)
    items = fit_estimands(fit, site, model, month=month, rope_pct=rope_pct)
    return BayesFit(model=model, site=site, fit=fit, estimands=items, table=bayes_table(items), strategy=text,
                    priors=priors, extra=extra)


def fit_formula(data: pd.DataFrame, formula: str | None, site: str | None = None,
                priors: dict[str, Any] | None = None, strategy: UndefinedStrategy = "last_observed",
                rule: ResponderRule | None = None, draws: int = 1000, tune: int = 1000, chains: int = 4,
                seed: int = 0, sampler: str = "nutpie", target_accept: float = 0.9, cores: int = 2,
                design: Any = None) -> BayesFit:
    r"""Fit a user's model formula with bambi, sampled by the engine and summarised like every fit.

    The formula's outcome ``bmd`` is the site's BMD column; the analysis frame has ``patient_id``,
    ``month`` (the nominal visit; ``month_actual`` the scan's own time), ``group`` (the patient's
    level, a categorical with the design's reference first) and ``group_<level>`` (0/1 for each
    other level), for a responder study a boolean
    ``responder``, and the other columns of ``data`` (``age``, ``sex``, ``arm``... where present).
    For ``"bmd ~ month * responder + (1 + month | patient_id)"`` the model is

    .. math::

        \mathrm{bmd}_{ij} = \beta_0 + \beta_1 m_{ij} + \beta_2 r_i + \beta_3 r_i m_{ij}
            + u_{0i} + u_{1i} m_{ij} + e_{ij}

    with bambi's priors (see :mod:`analysis.bayes.formula`).

    Parameters
    ----------
    data : DataFrame
        The derived frame (:func:`analysis.study.clinical.derive`; patients are grouped by
        ``strategy`` as in :func:`analysis_frame`), an analysis frame (with ``analysis_group``), or
        any long frame with ``patient_id``, ``month`` and ``bmd_<site>``, used as it is.
    formula : str or None
        bambi formula, e.g. ``"bmd ~ month * group + (1 + month | patient_id)"``; ``None``: the
        trajectory LMM in the design's words (:func:`analysis.bayes.formula.default_formula`).
    site : str, optional
        Any site with a ``bmd_<site>`` column; default the design's first site.
    priors : dict, optional
        ``bambi.Model(priors=...)``; default bambi's own.
    strategy, rule
        Undefined responder status and the responder rule, as in :func:`fit_bayes`.
    draws, tune, chains, seed, sampler, target_accept, cores
        As in :func:`analysis.engine.sampling.sample` (nutpie by default).

    Returns
    -------
    BayesFit
        ``model == "formula"``; one estimand per fixed-effect coefficient (``Intercept``, ``month``,
        ``month:responder``, ``arm[B]``...) with its draws; ``rope``, ``p_in_rope`` and ``bf10``
        are NaN (no natural scale for an arbitrary coefficient); ``extra["formula"]`` and
        ``fit.settings["model"]["formula"]`` hold the formula.

    Raises
    ------
    ValueError
        :class:`analysis.bayes.formula.FormulaError` (one line) for an unknown site or column, or a
        formula that cannot be parsed or that bambi rejects.
    """
    from analysis.bayes.formula import bambi_lmm, formula_estimands
    from analysis.engine.sampling import sample

    d = design_of(data, design)
    if "analysis_group" in data.columns:
        frame, text = data, "analysis frame as given"
    elif "responder_status" in data.columns or d is not None:
        frame, text = analysis_frame(data, strategy, rule, design=d)
    else:
        frame, text = data, "data used as given (no derived responder status)"
    site = design_sites(data, d)[0] if site is None else site
    levels = model_options(frame).get("levels") if "analysis_group" in frame.columns else None
    if levels and len(levels) > 1:  # the group as a categorical (reference first) and 0/1 per other level
        from analysis.bayes.formula import indicator_name

        frame = frame.assign(group=pd.Categorical(frame["analysis_group"], categories=list(levels)),
                             **{indicator_name(lv): (frame["analysis_group"] == lv).astype(float) for lv in levels[1:]})
    built = bambi_lmm(frame, formula, priors, site=site)
    formula = built.formula
    fit = sample(built, draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler,
                 target_accept=target_accept, cores=cores)
    items = formula_estimands(fit, built, site)
    table = bayes_table(items).astype({"bf10": float})  # all None: NaN, as in the other fits' tables
    return BayesFit(model="formula", site=site, fit=fit, estimands=items, table=table, strategy=text,
                    priors="bambi default" if priors is None else "user",
                    extra={"formula": formula, "n_obs": int(len(built.data)), "cache": "off", "cache_key": None})


def fit_cache_key(model: str, site: str, priors: Any, frame: pd.DataFrame, built: Any, strategy_text: str,
                  settings: dict[str, Any]) -> str:
    """Content address of a fit: model and its graph version, site, priors, the exact data the model
    sees, the strategy for undefined status, sampler settings and library versions."""
    import dataclasses
    import hashlib
    import importlib.metadata as md
    import json

    data_values = getattr(built, "data_values", {}) or {}
    h = hashlib.sha256()
    for name in sorted(data_values):
        h.update(name.encode())
        h.update(np.ascontiguousarray(np.asarray(data_values[name], dtype=float)).tobytes())
    spec = {
        "model": model, "site": site, "structure": getattr(built, "structure_key", None),
        "priors": dataclasses.asdict(priors) if dataclasses.is_dataclass(priors) else repr(priors),
        "data": h.hexdigest(), "n_rows": len(frame), "strategy": strategy_text, "settings": settings,
        "versions": {p: md.version(p) for p in ("pymc", "pytensor", "nutpie", "numpy")},
        "rajak": md.version("rajak"),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def compare(fits: list[BayesFit], frequentist_estimands: pd.DataFrame) -> pd.DataFrame:
    """The Bayesian-vs-frequentist table for a list of fits."""
    bayes = pd.concat([f.table for f in fits], ignore_index=True)
    pairing = {f.model: FREQUENTIST_COUNTERPART[f.model] for f in fits
               if f.model in FREQUENTIST_COUNTERPART}  # formula fits have no counterpart: left out
    return compare_table(frequentist_estimands, bayes, pairing)
