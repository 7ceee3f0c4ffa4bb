"""Multiple imputation of BMD by sequential Bayesian regression: :func:`impute_bmd`.

The models, the draws and the MAR assumption are described in
:mod:`analysis.frequentist.imputation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from analysis.frequentist.imputation.completed import ImputationResult, Layout
from analysis.frequentist.imputation.draws import draw, method_name
from analysis.frequentist.imputation.plan import Context, Model, RuleFit, plan_models
from analysis.frequentist.imputation.sequence import (SITES, UNDEFINED_MODES, Group, build_sequence,
                                                      fixed_design, group_codes, group_fixed_columns,
                                                      prepare_group, to_levels)
from analysis.study.clinical import ResponderRule

__all__ = ["impute_bmd"]


def _check_options(m: int, undefined: str, order: str, methods: Mapping[str, str]) -> None:
    if isinstance(m, bool) or int(m) != m or m < 2:
        raise ValueError(f"m must be an integer of at least 2, got {m!r}")
    if undefined not in UNDEFINED_MODES:
        raise ValueError(f"undefined must be one of {list(UNDEFINED_MODES)}, got {undefined!r}")
    if order not in ("activity-first", "visit"):
        raise ValueError(f"order must be 'activity-first' or 'visit', got {order!r}")
    for name, meth in methods.items():
        if meth not in ("norm", "pmm"):
            raise ValueError(f"{name} must be 'norm' or 'pmm', got {meth!r}")


def _check_frame(frame: pd.DataFrame, sites: Sequence[str], covariates: Sequence[str],
                 auxiliary: Sequence[str], group: str | None) -> None:
    if not sites:
        raise ValueError("sites must name at least one DXA site")
    need = {"patient_id", "month", *(f"bmd_{s}" for s in sites), *covariates, *auxiliary}
    if group is not None:
        need.add(group)
    missing = sorted(need - set(frame.columns))
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}")
    if frame.duplicated(["patient_id", "month"]).any():
        raise ValueError("frame has more than one row for some (patient_id, month)")


def impute_bmd(frame: pd.DataFrame, *, m: int = 20, seed: int | None = None,
               group: str | None = "responder_status",
               undefined: Literal["rule", "impute", "level", "exclude", "assign"] = "rule",
               undefined_label: str = "undefined", rule: ResponderRule | None = None,
               assign_to: str = "non-responder", sites: Sequence[str] = SITES,
               covariates: Sequence[str] = ("age", "sex", "bmi"),
               auxiliary: Sequence[str] = ("das28_crp",), cross_site: bool = False,
               stratify: bool = False, auxiliary_method: Literal["pmm", "norm"] = "pmm",
               bmd_method: Literal["norm", "pmm"] = "norm",
               order: Literal["activity-first", "visit"] = "activity-first",
               scale: Literal["change", "level"] = "change") -> ImputationResult:
    r"""Multiply impute missing BMD (and what it is imputed from) by sequential Bayesian regression.

    The models, draws and the MAR assumption are described in :mod:`analysis.frequentist.imputation`.

    Parameters
    ----------
    frame : DataFrame
        Long data, one row per patient-visit (the rajak data contract) with the ``group`` column,
        e.g. from :func:`analysis.study.clinical.derive`. Visits without a row (after dropout) are
        missing; patients need a baseline row.
    m : int
        Number of imputations (at least 2).
    seed : int, optional
        The same data, settings and seed give identical imputations. Imputation ``l`` uses child
        ``l`` of ``numpy.random.SeedSequence(seed)``, so the first imputations stay the same when
        ``m`` grows.
    group : str or None
        Per-patient group column (``None``: no group).
    undefined : {"rule", "impute", "level", "exclude", "assign"}
        Handling of patients whose group is ``undefined_label`` or missing (:mod:`analysis.frequentist.imputation`).
    undefined_label : str
        The label of an undefined group.
    rule : ResponderRule, optional
        For ``undefined="rule"``: the rule that classifies the imputed DAS28 (default EULAR good or
        moderate at month 12, as :func:`analysis.study.clinical.derive`).
    assign_to : str
        For ``undefined="assign"``: the group undefined patients are counted in.
    sites : sequence of str
        DXA sites (columns ``bmd_<site>``).
    covariates : sequence of str
        Complete per-patient covariates (non-numeric ones become indicators).
    auxiliary : sequence of str
        Time-varying variables imputed along (default DAS28-CRP); they carry what drives MAR
        dropout. ``()`` to omit.
    cross_site : bool
        Let each site's BMD models use the other sites' BMD at earlier visits.
    stratify : bool
        Fit the BMD models separately within each group.
    auxiliary_method, bmd_method : {"pmm", "norm"}
        Draws for auxiliaries (default predictive mean matching) and BMD (default Bayesian normal
        regression).
    order : {"activity-first", "visit"}
        The imputation sequence (:mod:`analysis.frequentist.imputation`).
    scale : {"change", "level"}
        Impute follow-up BMD as % change and auxiliaries as change from baseline (default), or
        both as recorded.

    Returns
    -------
    ImputationResult
    """
    _check_options(m, undefined, order, {"auxiliary_method": auxiliary_method, "bmd_method": bmd_method})
    if scale not in ("change", "level"):
        raise ValueError(f"scale must be 'change' or 'level', got {scale!r}")
    sites, covariates, auxiliary = tuple(sites), tuple(covariates), tuple(auxiliary)
    _check_frame(frame, sites, covariates, auxiliary, group)
    frame = frame.assign(month=frame["month"].astype(float))
    if group is not None and undefined == "exclude":
        frame = frame.loc[frame[group].notna() & (frame[group].astype(str) != undefined_label)]
        if frame.empty:
            raise ValueError(f"no patient has a defined {group!r}")
    ids = pd.Index(pd.unique(frame["patient_id"]), name="patient_id")
    g = prepare_group(frame, ids, group, undefined, undefined_label, assign_to, rule or ResponderRule())
    cov_x, cov_names = fixed_design(frame, ids, covariates)
    grp_x, grp_names = group_fixed_columns(g)
    variables, vals0, months = build_sequence(frame, ids, sites, auxiliary, g, order, scale)
    levels0 = build_sequence(frame, ids, sites, auxiliary, g, order, "level")[1]
    ctx = Context(variables, np.column_stack([cov_x, grp_x]), [*cov_names, *grp_names], vals0,
                  ~np.isnan(vals0), {"aux": auxiliary_method, "bmd": bmd_method}, cross_site, g.levels)
    group_var = next((k for k, v in enumerate(variables) if v.kind == "group"), None)
    codes0 = group_codes(g, vals0, group_var) if stratify and group is not None else None
    models = plan_models(ctx, g.rule, codes0)
    layout = Layout.build(frame, ids, months, sites, variables, group, covariates, auxiliary)

    completed = []
    for child in np.random.SeedSequence(seed).spawn(int(m)):
        vals = _impute_once(models, ctx.fixed, vals0, codes0, group_var, np.random.default_rng(child))
        completed.append((to_levels(vals, levels0, variables), _labels_from(vals, group_var, g)))
    observed_labels = np.array([undefined_label if v is None else v for v in g.labels], dtype=object)
    return ImputationResult(
        imputations=tuple(layout.long(v, lab) for v, lab in completed),
        observed=layout.long(None, observed_labels),
        mask=layout.mask(np.array([v is not None for v in g.labels])),
        variables=tuple(v.name for v in variables), predictors=_describe(models, ctx, g), m=int(m),
        seed=seed, group=group, undefined=undefined, _layout=layout, _completed=tuple(completed))


def _impute_once(models: list[Model], fixed: np.ndarray, vals0: np.ndarray, codes0: np.ndarray | None,
                 group_var: int | None, rng: np.random.Generator) -> np.ndarray:
    """One completed wide array: the models in sequence order, each with a fresh parameter draw."""
    vals = vals0.copy()
    for mod in models:
        rows = mod.rows
        if isinstance(mod.fit, RuleFit):
            vals[rows, mod.var] = mod.fit.codes(vals[rows])
            continue
        if mod.stratum is not None:
            codes = vals[:, group_var] if group_var is not None else codes0
            rows = rows[codes[rows] == mod.stratum]
            if rows.size == 0:
                continue
        z = np.column_stack([np.ones(rows.size), fixed[rows], vals[np.ix_(rows, mod.predictors)]])
        vals[rows, mod.var] = draw(mod.fit, z[:, mod.keep], rng)
    return vals


def _labels_from(vals: np.ndarray, group_var: int | None, g: Group) -> np.ndarray:
    """Per-patient group labels of a completed dataset."""
    if group_var is None:
        return g.labels.copy()
    return np.where(vals[:, group_var] == 1.0, g.levels[1], g.levels[0]).astype(object)


def _describe(models: list[Model], ctx: Context, g: Group) -> dict[str, str]:
    """Human-readable imputation models, keyed ``"<variable> #<k>"``."""
    out: dict[str, str] = {}
    for k, mod in enumerate(models, start=1):
        name = ctx.variables[mod.var].name
        if isinstance(mod.fit, RuleFit):
            rhs = f"{mod.fit.rule.describe()} from {ctx.variables[mod.fit.base].name}, {ctx.variables[mod.fit.at].name}"
            out[f"{name} #{k}"] = f"{name} <- {rhs} (derives {mod.rows.size})"
            continue
        used = [n for n, kept in zip(ctx.names(mod.predictors), mod.keep) if kept]
        method = method_name(mod.fit)
        where = "" if mod.stratum is None else f" in {g.column} = {g.levels[int(mod.stratum)]}"
        out[f"{name} #{k}"] = (f"{name} <- {' + '.join(used)} [{method}{where}; fitted in {mod.n_fit}, "
                               f"imputes up to {mod.rows.size}]")
    return out
