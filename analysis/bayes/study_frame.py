r"""What the Bayesian models need to know about a study's design, and whether a model applies.

Every model in :data:`analysis.bayes.fit.MODELS` reads the same *analysis frame*
(:func:`analysis_frame`): the derived rows of the patients with a group, one column
``analysis_group`` holding each patient's level, and the design's words attached as
:func:`model_options`:

``levels``
    The group levels in model order, the reference first (:func:`analysis_levels`): a
    responder study's ``non-responder, responder``; an arm column's levels (``placebo, active``,
    or ``placebo, low, high``); ``all`` for a single arm. With :math:`K` levels the models have
    :math:`K - 1` contrasts, each level minus the reference.
``time``
    The LMMs' time: ``month_actual`` (months since the patient's own baseline, from the scan
    dates) when the derived frame has it, else ``month``; the MMRM uses the nominal visit
    ``month``.
``endpoint_month``
    The design's endpoint (the RAJAK default design's month 12 when the frame has no design).
``sites``
    The design's sites (the joint model fits all of them).

:func:`check_applicable` says in one line why a model does not apply to a design
(:class:`~analysis.study.applicability.NotApplicable`: the activity model without disease
activity and responder groups; the joint model with one site) or cannot be estimated on the data
(:class:`~analysis.study.applicability.NotEstimable`: a random-slope LMM with one post-baseline
visit, an MMRM with fewer than two).

Undefined responder status under the ``unknown`` strategy is not modelled: those patients are
left out of the Bayesian models and the strategy text says so.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.study.applicability import NotApplicable, NotEstimable
from analysis.study.clinical import ResponderRule
from analysis.study.groups import UndefinedStrategy, assign_groups, design_of, group_levels
from analysis.study.rajak_design import RAJAK_DESIGN

__all__ = ["GROUP_COLUMN", "analysis_frame", "analysis_levels", "check_applicable", "design_kind",
           "design_sites", "endpoint_month", "model_options"]

#: The analysis frame's column holding each patient's group level.
GROUP_COLUMN = "analysis_group"
#: Models whose time is continuous with a random slope per patient (need a third visit).
_SLOPE_MODELS = ("lmm", "robust", "joint", "activity")


def design_kind(derived: pd.DataFrame, design: Any = None) -> str:
    """``"derived"`` (responder groups from disease activity, the RAJAK default), ``"column"`` or
    ``"none"`` (single arm)."""
    d = design_of(derived, design)
    return "derived" if d is None else d.design.group.kind


def design_sites(derived: pd.DataFrame, design: Any = None) -> tuple[str, ...]:
    """The design's sites (the RAJAK default design's when the frame has none)."""
    d = design_of(derived, design)
    return tuple(d.sites) if d is not None else tuple(RAJAK_DESIGN.sites)


def endpoint_month(derived: pd.DataFrame, design: Any = None) -> float:
    """The design's endpoint month (the RAJAK default design's when the frame has none)."""
    d = design_of(derived, design)
    return float(d.endpoint if d is not None else RAJAK_DESIGN.endpoint)


def analysis_levels(derived: pd.DataFrame, strategy: UndefinedStrategy = "last_observed",
                    design: Any = None) -> tuple[str, ...]:
    """The modelled group levels, the reference first (:func:`analysis.study.groups.group_levels`
    without the ``unknown`` status, which the Bayesian models do not model)."""
    return tuple(g for g in group_levels(derived, design_of(derived, design), strategy) if g != "unknown")


def analysis_frame(derived: pd.DataFrame, strategy: UndefinedStrategy = "last_observed",
                   rule: ResponderRule | None = None, design: Any = None) -> tuple[pd.DataFrame, str]:
    """The rows of patients with a modelled group, and a sentence on how groups were assigned.

    Parameters
    ----------
    derived : DataFrame
        :func:`analysis.study.clinical.derive`'s frame.
    strategy, rule
        Undefined responder status and the responder rule (responder studies only).
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default design).

    Returns
    -------
    frame : DataFrame
        ``analysis_group`` (the level) on every row and, for a responder study, a boolean
        ``responder``; ``frame.attrs["model_options"]`` holds :func:`model_options`.
    text : str
    """
    d = design_of(derived, design)
    assignment = assign_groups(derived, strategy, rule, design=d)
    f = assignment.frame
    levels = analysis_levels(derived, strategy, d)
    keep = f[GROUP_COLUMN].isin(levels)
    text = assignment.describe()
    if strategy == "unknown" and (~keep & f[GROUP_COLUMN].notna()).any():
        text += "; 'unknown' patients are not in the Bayesian models"
    out = f[keep].copy().reset_index(drop=True)
    if design_kind(derived, d) == "derived":
        out["responder"] = out[GROUP_COLUMN] == "responder"
    out.attrs = {"model_options": _options(out, levels, d), **({"design": d} if d is not None else {})}
    return out, text


def _options(frame: pd.DataFrame, levels: tuple[str, ...], d: Any) -> dict[str, Any]:
    return {"levels": tuple(levels), "group_column": GROUP_COLUMN,
            "time": "month_actual" if "month_actual" in frame.columns else "month",
            "endpoint_month": endpoint_month(frame, d), "sites": design_sites(frame, d)}


def model_options(frame: pd.DataFrame) -> dict[str, Any]:
    """The design's words for the model builders (see the module docstring): what
    :func:`analysis_frame` attached, else a responder study's (boolean ``responder``, time
    ``month``, the RAJAK default endpoint and sites)."""
    opts = frame.attrs.get("model_options")
    if opts:
        return dict(opts)
    return {"levels": None, "group_column": "responder", "time": "month",
            "endpoint_month": float(RAJAK_DESIGN.endpoint), "sites": tuple(RAJAK_DESIGN.sites)}


def _visits(frame: pd.DataFrame, site: str) -> list[float]:
    """The nominal visits (months) with a scan at ``site``."""
    col = f"bmd_{site}"
    if col not in frame.columns:
        return []
    when = frame["visit"] if "visit" in frame.columns else frame["month"].round()
    return sorted(float(v) for v in pd.unique(when[frame[col].notna()].dropna()))


def check_applicable(model: str, frame: pd.DataFrame, site: str, design: Any = None) -> None:
    """Raise :class:`NotApplicable` or :class:`NotEstimable` (one line) when ``model`` does not
    apply to the design or cannot be estimated at ``site`` on the analysis frame ``frame``."""
    d = design_of(frame, design)
    kind = design_kind(frame, d)
    if model == "activity" and kind != "derived":
        grouped = f"grouped by {d.design.group.column!r}" if kind == "column" else "a single-arm study"
        raise NotApplicable("activity model: needs disease activity (DAS28-CRP) and responder groups; "
                            f"this study is {grouped}")
    sites = design_sites(frame, d)
    if model == "joint" and len(sites) < 2:
        raise NotApplicable(f"joint model: needs two or more BMD sites; this study has {', '.join(sites)} only")
    for s in (sites if model == "joint" else (site,)):
        post = [v for v in _visits(frame, s) if v > 0]
        when = ", ".join(f"month {v:g}" for v in post) or "none"
        if model in _SLOPE_MODELS and len(post) < 2:
            raise NotEstimable(f"{model}: {s} has {len(post)} post-baseline visit ({when}): a random-slope LMM "
                               "needs a third visit to separate the slope variance from the noise")
        if model == "mmrm" and len(post) < 1:
            raise NotEstimable(f"mmrm: {s} has no post-baseline visit")
    levels = model_options(frame).get("levels") or ()
    if levels and GROUP_COLUMN in frame.columns:
        n_groups = frame.groupby(GROUP_COLUMN)["patient_id"].nunique()
        empty = [lv for lv in levels if int(n_groups.get(lv, 0)) == 0]
        if empty:
            raise NotEstimable(f"{model}: no patient in group {', '.join(map(repr, empty))}")
