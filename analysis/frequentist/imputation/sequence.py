"""The imputation sequence: each patient's wide record (covariates, group, auxiliaries and BMD by
visit) and the order in which the incomplete variables are imputed.

With ``scale="change"`` follow-up BMD enters as the % change from baseline and auxiliaries as the
change from baseline; :func:`to_levels` turns completed values back into recorded ones. The order
(``"activity-first"`` or ``"visit"``) is described in :mod:`analysis.frequentist.imputation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from analysis.study.clinical import ResponderRule
from analysis.study.rajak_design import RAJAK_DESIGN

__all__ = ["SITES", "UNDEFINED_MODES", "RULE_AUXILIARY", "RULE_LEVELS", "Var", "Group", "month_label",
           "per_patient", "fixed_design", "prepare_group", "group_codes", "group_fixed_columns",
           "build_sequence", "to_levels", "may_predict"]

#: Default sites: the RAJAK default design's.
SITES = tuple(RAJAK_DESIGN.sites)
UNDEFINED_MODES = ("rule", "impute", "level", "exclude", "assign")
RULE_AUXILIARY = "das28_crp"
RULE_LEVELS = ("non-responder", "responder")  # sorted, so the code of 'responder' is 1


@dataclass(frozen=True)
class Var:
    """One variable of the imputation sequence (a column of the wide array)."""

    name: str      # in the sequence: "bmd_spine_m6", or on the change scale "pct_change_spine_m6"
    column: str    # long column, e.g. "bmd_spine"
    kind: Literal["aux", "group", "bmd"]
    month: float
    site: str | None = None
    baseline: int | None = None  # change scale: sequence index of the same column at month 0

    @property
    def wide_name(self) -> str:
        return f"{self.column}_m{month_label(self.month)}"


def month_label(month: float) -> str:
    """The month as written in variable names (``12.0`` -> ``"12"``)."""
    return f"{float(month):g}"


def per_patient(frame: pd.DataFrame, column: str, ids: pd.Index) -> pd.Series:
    """One value per patient (the first non-missing one)."""
    return frame.groupby("patient_id", sort=False)[column].first().reindex(ids)


def fixed_design(frame: pd.DataFrame, ids: pd.Index, covariates: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Complete covariates as numeric columns (categoricals as treatment indicators)."""
    cols, names = [], []
    for cov in covariates:
        values = per_patient(frame, cov, ids)
        if values.isna().any():
            raise ValueError(f"covariate {cov!r} is missing for {int(values.isna().sum())} patient(s); "
                             "impute or drop them first")
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            cols.append(values.to_numpy(dtype=float))
            names.append(cov)
            continue
        levels = sorted(values.astype(str).unique())
        for lev in levels[1:]:
            cols.append((values.astype(str) == lev).to_numpy(dtype=float))
            names.append(f"{cov}[{lev}]")
    arr = np.column_stack(cols) if cols else np.empty((len(ids), 0))
    return arr, names


@dataclass(frozen=True)
class Group:
    """The caller's group column, coded for the imputation."""

    column: str | None
    labels: np.ndarray            # per patient, object; None where undefined
    levels: tuple[str, ...]       # defined levels, sorted
    imputed: bool                 # whether the group is a sequence variable
    rule: ResponderRule | None = None  # undefined="rule": derived from the imputed DAS28


def prepare_group(frame: pd.DataFrame, ids: pd.Index, group: str | None, undefined: str,
                   undefined_label: str, assign_to: str, rule: ResponderRule) -> Group:
    """Code the per-patient ``group`` column, handling undefined patients as ``undefined`` says."""
    if group is None:
        return Group(None, np.full(len(ids), None, dtype=object), (), False)
    raw = per_patient(frame, group, ids)
    labels = np.array([None if pd.isna(v) or str(v) == undefined_label else str(v) for v in raw],
                      dtype=object)
    missing = np.array([v is None for v in labels])
    if undefined in ("level", "assign"):
        labels[missing] = undefined_label if undefined == "level" else assign_to
        missing[:] = False
    levels = tuple(sorted({str(v) for v in labels[~missing]}))
    if not levels:
        raise ValueError(f"group column {group!r} has no defined values")
    imputed = undefined in ("impute", "rule") and bool(missing.any())
    if imputed and undefined == "impute" and len(levels) != 2:
        raise ValueError(f"undefined='impute' needs exactly two defined groups in {group!r}, got {list(levels)}")
    if imputed and undefined == "rule" and not set(levels) <= set(RULE_LEVELS):
        raise ValueError(f"undefined='rule' needs groups {list(RULE_LEVELS)} in {group!r}, got {list(levels)}")
    if undefined == "rule":
        levels = RULE_LEVELS
    return Group(group, labels, levels, imputed, rule if undefined == "rule" else None)


def group_codes(g: Group, vals: np.ndarray, group_var: int | None) -> np.ndarray:
    """Index of each patient's group in ``g.levels`` (NaN where still undefined)."""
    if group_var is not None:
        return vals[:, group_var].copy()
    lookup = {lev: float(k) for k, lev in enumerate(g.levels)}
    return np.array([lookup.get(v, np.nan) for v in g.labels])


def group_fixed_columns(g: Group) -> tuple[np.ndarray, list[str]]:
    """Treatment indicators of a group that is known for every patient (none if it is imputed)."""
    if g.column is None or g.imputed:
        return np.empty((g.labels.size, 0)), []
    cols = [(g.labels == lev).astype(float) for lev in g.levels[1:]]
    names = [f"{g.column}[{lev}]" for lev in g.levels[1:]]
    return (np.column_stack(cols) if cols else np.empty((g.labels.size, 0))), names


def _relative(values: np.ndarray, base: np.ndarray, column: str, month: float, kind: str) -> np.ndarray:
    """Change from baseline: % for BMD, difference for auxiliaries."""
    if np.any(np.isnan(base) & ~np.isnan(values)):
        raise ValueError(f"{column} is observed at month {month:g} without a baseline in some patient; "
                         "use scale='level'")
    return 100.0 * (values / base - 1.0) if kind == "bmd" else values - base


def _wide_columns(frame: pd.DataFrame, ids: pd.Index, columns: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Per column a patients x months table (float month labels)."""
    out = {}
    for col in columns:
        table = frame.pivot(index="patient_id", columns="month", values=col).reindex(ids)
        table.columns = [float(c) for c in table.columns]
        out[col] = table
    return out


def _entry(kind: str, column: str, month: float, values: np.ndarray, base: np.ndarray | None,
           scale: str, site: str | None = None) -> tuple[Var, np.ndarray]:
    """A sequence variable on the requested scale (follow-up values relative to ``base``)."""
    stem = column if kind == "aux" else f"pct_change_{site}"
    if scale == "change" and month > 0:
        name = f"{column}_change_m{month_label(month)}" if kind == "aux" else f"{stem}_m{month_label(month)}"
        return (Var(name, column, kind, month, site, baseline=-1),
                _relative(values, base, column, month, kind))
    return Var(f"{column}_m{month_label(month)}", column, kind, month, site), values


def _sort_key(var: Var, order: str, site_index: int) -> tuple:
    """Position in the sequence: by visit, or baseline / DAS28 history / group / follow-up BMD."""
    rank = {"aux": 0, "group": 1, "bmd": 2}[var.kind]
    if order == "visit":
        return (var.month, rank, site_index)
    if var.kind == "group":
        return (2,)
    if var.month == 0:
        return (0, rank, site_index)
    return (1 if var.kind == "aux" else 3, var.month, site_index)


def build_sequence(frame: pd.DataFrame, ids: pd.Index, sites: Sequence[str], auxiliary: Sequence[str],
                    g: Group, order: str, scale: str) -> tuple[list[Var], np.ndarray, list[float]]:
    """The ordered sequence variables and their wide values (NaN where missing)."""
    months = sorted(float(v) for v in frame["month"].unique())
    dxa = {s: sorted({float(t) for t in frame.loc[frame[f"bmd_{s}"].notna(), "month"]}) for s in sites}
    for s in sites:
        if not dxa[s] or dxa[s][0] != 0.0:
            raise ValueError(f"bmd_{s} has no baseline (month 0) value in any patient")
    endpoint = max(d[-1] for d in dxa.values())
    wide = _wide_columns(frame, ids, [*(f"bmd_{s}" for s in sites), *auxiliary])
    rule_month = float(g.rule.month) if g.imputed and g.rule is not None else None
    if rule_month is not None:
        das = wide.get(RULE_AUXILIARY)
        if das is None or {0.0, rule_month} - set(das.columns) or das[rule_month].isna().all():
            raise ValueError(f"undefined='rule' needs {RULE_AUXILIARY!r} among the auxiliaries, observed at "
                             f"months 0 and {rule_month:g}")
    entries: list[tuple[tuple, Var, np.ndarray]] = []

    def add(var_values: tuple[Var, np.ndarray], site_index: int = 0) -> None:
        entries.append((_sort_key(var_values[0], order, site_index), *var_values))

    for aux in auxiliary:
        table = wide[aux]
        base = table[0.0].to_numpy(dtype=float) if 0.0 in table.columns else np.full(len(ids), np.nan)
        for t in table.columns:
            wanted = t < endpoint or (aux == RULE_AUXILIARY and t == rule_month)
            if wanted and table[t].notna().any():
                add(_entry("aux", aux, t, table[t].to_numpy(dtype=float), base, scale))
    for k, s in enumerate(sites):
        table = wide[f"bmd_{s}"]
        for t in dxa[s]:
            add(_entry("bmd", f"bmd_{s}", t, table[t].to_numpy(dtype=float), table[0.0].to_numpy(dtype=float),
                       scale, s), k)
    if g.imputed:
        code = np.array([np.nan if v is None else float(v == g.levels[1]) for v in g.labels])
        add((Var(str(g.column), str(g.column), "group", endpoint if rule_month is None else rule_month), code))
    entries.sort(key=lambda e: e[0])
    variables = [e[1] for e in entries]
    base_index = {v.column: k for k, v in enumerate(variables) if v.month == 0.0 and v.kind != "group"}
    variables = [replace(v, baseline=base_index[v.column]) if v.baseline is not None else v for v in variables]
    return variables, np.column_stack([e[2] for e in entries]), months


def to_levels(vals: np.ndarray, levels0: np.ndarray, variables: list[Var]) -> np.ndarray:
    """Completed values on the recorded scale: observed values as recorded, imputed changes
    converted with the patient's (observed or imputed) baseline."""
    out = vals.copy()
    for j, v in enumerate(variables):
        if v.baseline is None:
            continue
        base = vals[:, v.baseline]
        level = base * (1.0 + vals[:, j] / 100.0) if v.kind == "bmd" else base + vals[:, j]
        out[:, j] = np.where(np.isnan(levels0[:, j]), level, levels0[:, j])
    return out


def may_predict(target: Var, other: Var, cross_site: bool) -> bool:
    """Whether ``other`` may predict ``target`` (per-site BMD models see only their own site)."""
    if target.kind == "bmd" and other.kind == "bmd" and other.site != target.site:
        return cross_site and other.month < target.month
    return True
