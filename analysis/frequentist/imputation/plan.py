"""The imputation plan: one fitted model per incomplete variable and pattern of later observed
variables (and per group with ``stratify=True``), fitted once and drawn from in every imputation.

A predictor that is constant among the fitting patients is dropped from that regression if it
takes the same value in the patients to impute, and is an error otherwise (no extrapolation);
remaining collinearity is an error. A responder status derived by a rule (``undefined="rule"``) is
not a regression but :class:`RuleFit`, the rule applied to the imputed DAS28.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from analysis.frequentist.imputation.draws import LogregFit, NormFit, PmmFit, fit_logreg, fit_norm, fit_pmm
from analysis.frequentist.imputation.sequence import RULE_AUXILIARY, Var, may_predict
from analysis.study.clinical import ResponderRule, eular_response

__all__ = ["Model", "Context", "RuleFit", "responder_codes", "fit_model", "plan_models"]


@dataclass(frozen=True)
class Model:
    """A fitted imputation model: variable, predictor columns and the rows it imputes."""

    var: int
    predictors: tuple[int, ...]
    keep: np.ndarray      # columns of [1, fixed, predictors] kept (non-constant among fit rows)
    rows: np.ndarray      # rows imputed with this model
    fit: NormFit | PmmFit | LogregFit | RuleFit
    n_fit: int
    stratum: float | None = None  # stratify=True: imputes only the rows currently in this group code


@dataclass(frozen=True)
class Context:
    """What the imputation models are fitted from."""

    variables: list[Var]
    fixed: np.ndarray        # complete per-patient predictors (covariates, a known group)
    fixed_names: list[str]
    vals: np.ndarray         # wide values, NaN where missing
    obs: np.ndarray          # ~isnan(vals)
    methods: Mapping[str, str]
    cross_site: bool
    group_levels: tuple[str, ...] = ()

    def names(self, predictors: tuple[int, ...]) -> list[str]:
        return ["(intercept)", *self.fixed_names, *(self.variables[k].name for k in predictors)]


def _check_extrapolation(ctx: Context, predictors: tuple[int, ...], keep: np.ndarray, constants: np.ndarray,
                         rows: np.ndarray, what: str, n: int) -> None:
    """A predictor constant among the fitting patients must take that value in the patients to impute."""
    z = np.column_stack([np.ones(rows.size), ctx.fixed[rows], ctx.vals[np.ix_(rows, predictors)]])
    names = ctx.names(predictors)
    for k in np.flatnonzero(~keep):
        known = z[:, k][~np.isnan(z[:, k])]
        if np.any(known != constants[k]):
            raise ValueError(f"cannot impute {what}: {names[k]} is {constants[k]:g} in all {n} patients with "
                             "observed values but not in the patients to impute")


def fit_model(ctx: Context, var: int, predictors: tuple[int, ...], rows: np.ndarray,
               stratum: tuple[np.ndarray, float] | None = None) -> Model:
    """Fit the imputation model of ``var`` on ``predictors`` in the patients with all of them observed."""
    target = ctx.variables[var]
    cols = list(predictors)
    fit_rows = ctx.obs[:, var] & ctx.obs[:, cols].all(axis=1)
    check_rows = rows
    if stratum is not None:
        fit_rows &= stratum[0] == stratum[1]
        check_rows = rows[stratum[0][rows] == stratum[1]]
    z = np.column_stack([np.ones(ctx.vals.shape[0]), ctx.fixed, ctx.vals[:, cols]])[fit_rows]
    y = ctx.vals[fit_rows, var]
    n = z.shape[0]
    what = f"{target.name} ({rows.size} missing" + (
        ")" if stratum is None else f", group {ctx.group_levels[int(stratum[1])]!r}; try stratify=False)")
    if n == 0:
        raise ValueError(f"cannot impute {what}: no patient has it and its predictors observed")
    keep = np.concatenate([[True], np.ptp(z[:, 1:], axis=0) > 0])
    _check_extrapolation(ctx, predictors, keep, z[0], check_rows, what, n)
    z = z[:, keep]
    p = z.shape[1]
    if n - p < 1:
        raise ValueError(f"cannot impute {what}: {n} patients with it and its predictors observed, "
                         f"{p} regression coefficients")
    if np.linalg.matrix_rank(z) < p:
        raise ValueError(f"cannot impute {what}: its predictors are collinear among the {n} patients "
                         "with observed values")
    if target.kind == "group":
        if np.unique(y).size < 2:
            raise ValueError(f"cannot impute {what}: only one group among the observed patients")
        fit: NormFit | PmmFit | LogregFit = fit_logreg(z, y, target.name)
    elif ctx.methods[target.kind] == "pmm":
        fit = fit_pmm(z, y)
    else:
        fit = fit_norm(z, y)
    return Model(var=var, predictors=predictors, keep=keep, rows=rows, fit=fit, n_fit=n,
                  stratum=None if stratum is None else stratum[1])


@dataclass(frozen=True)
class RuleFit:
    """Responder status derived from the (imputed) DAS28 by a :class:`ResponderRule`."""

    rule: ResponderRule
    base: int  # column of the baseline DAS28
    at: int    # column of the DAS28 at the rule's month
    at_is_change: bool  # that column holds the change from baseline (scale="change")

    def codes(self, vals: np.ndarray) -> np.ndarray:
        base, at = vals[:, self.base], vals[:, self.at]
        return responder_codes(self.rule, base, base + at if self.at_is_change else at)


def responder_codes(rule: ResponderRule, das_base, das_at) -> np.ndarray:
    """1.0 for a responder, 0.0 for a non-responder under ``rule`` (NaN where a score is missing);
    the classification of :func:`analysis.study.clinical.classify_responders`."""
    base, at = np.asarray(das_base, dtype=float), np.asarray(das_at, dtype=float)
    if rule.kind == "das28_fall":
        resp = (base - at) > rule.threshold
    else:
        eular = eular_response(base, at)
        resp = np.isin(eular, ["good", "moderate"]) if rule.kind == "eular" else eular == "good"
    return np.where(np.isnan(base) | np.isnan(at), np.nan, np.asarray(resp, dtype=float))


def _rule_model(ctx: Context, var: int, rule: ResponderRule, rows: np.ndarray) -> Model:
    def col(month: float) -> int:
        return next(k for k, v in enumerate(ctx.variables)
                    if v.kind == "aux" and v.column == RULE_AUXILIARY and v.month == month)
    at = col(float(rule.month))
    fit = RuleFit(rule=rule, base=col(0.0), at=at, at_is_change=ctx.variables[at].baseline is not None)
    return Model(var=var, predictors=(fit.base, fit.at), keep=np.ones(0, bool), rows=rows, fit=fit, n_fit=0)


def plan_models(ctx: Context, rule: ResponderRule | None, codes: np.ndarray | None) -> list[Model]:
    """Imputation models in sequence order; one per (variable, set of later observed predictors)
    and, with ``codes`` (stratified BMD models), per group code."""
    models: list[Model] = []
    for j, target in enumerate(ctx.variables):
        missing = np.flatnonzero(~ctx.obs[:, j])
        if missing.size == 0:
            continue
        if target.kind == "group" and rule is not None:
            models.append(_rule_model(ctx, j, rule, missing))
            continue
        allowed = [k for k, v in enumerate(ctx.variables) if k != j and may_predict(target, v, ctx.cross_site)]
        earlier = tuple(k for k in allowed if k < j)
        later = [k for k in allowed if k > j]
        keys: dict[tuple[int, ...], list[int]] = {}
        for i in missing:
            keys.setdefault(tuple(k for k in later if ctx.obs[i, k]), []).append(i)
        for key, rows in keys.items():
            if codes is None or target.kind != "bmd":
                models.append(fit_model(ctx, j, earlier + key, np.asarray(rows)))
                continue
            for c in np.unique(codes[~np.isnan(codes)]):
                models.append(fit_model(ctx, j, earlier + key, np.asarray(rows), (codes, float(c))))
    return models
