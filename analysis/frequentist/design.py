"""Design matrices, complete-case handling and emmeans-style reference grids for the REML models.

Rows with a missing outcome, covariate, subject or time/visit are dropped and *counted*; categorical
variables lose unused levels (as R's ``model.frame(drop.unused.levels = TRUE)``), and the design
must have full column rank.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

__all__ = ["Design", "prepare_design", "coerce_contrast", "reference_grid"]


@dataclass
class Design:
    """Complete-case data and fixed-effects design of a longitudinal model."""

    data: pd.DataFrame  # analysed rows, sorted by subject then time/visit
    y: np.ndarray
    x: np.ndarray
    columns: list[str]
    spec: object  # formulaic ModelSpec of the right-hand side
    outcome: str
    variables: list[str]  # raw right-hand-side variables
    n_excluded: int
    excluded_by: dict[str, int] = field(default_factory=dict)


def _is_factor(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def prepare_design(data: pd.DataFrame, formula: str, subject: str, time: str,
                   categorical: tuple[str, ...] = ()) -> Design:
    """Validate inputs, drop incomplete rows (counting them) and build the fixed-effects design.

    Parameters
    ----------
    data : DataFrame
        Long-format data, one row per subject and time.
    formula : str
        Fixed part, ``"outcome ~ terms"`` (formulaic syntax).
    subject, time : str
        Subject identifier and time (LMM) or visit (MMRM) column.
    categorical : tuple of str
        Columns to treat as factors: a pandas Categorical keeps its level order, other columns
        get their sorted unique values as levels; unused levels are dropped.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if "~" not in formula:
        raise ValueError(f"formula {formula!r} has no '~': write it as 'outcome ~ terms'")
    try:
        parsed = Formula(formula)
        lhs_vars = sorted(parsed.lhs.required_variables)
        rhs_vars = sorted(parsed.rhs.required_variables)
    except Exception as exc:  # formulaic raises several parser exception types
        raise ValueError(f"cannot parse formula {formula!r}: {exc}") from None
    if len(lhs_vars) != 1:
        raise ValueError(f"formula {formula!r} must have exactly one outcome variable")
    outcome = lhs_vars[0]
    needed = [outcome, *rhs_vars, subject, time]
    for col in dict.fromkeys(needed):
        if col not in data.columns:
            raise ValueError(f"column {col!r} (from formula or arguments) is not in the data")
    cols = list(dict.fromkeys(needed))
    df = data[cols].copy()
    missing = df.isna()
    keep = ~missing.any(axis=1)
    excluded_by = {c: int(missing[c].sum()) for c in cols if missing[c].any()}
    df = df.loc[keep].copy()
    if df.empty:
        raise ValueError("no complete rows: every row misses the outcome or a covariate")
    for col in categorical:  # keep a Categorical's own level order, else sort the values
        if not isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = pd.Categorical(df[col], categories=sorted(df[col].unique()))
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].cat.remove_unused_categories()
    df = df.sort_values([subject, time], kind="mergesort").reset_index(drop=True)
    try:
        mm = model_matrix(formula, df, na_action="raise")
    except Exception as exc:
        raise ValueError(f"cannot build the design of {formula!r}: {exc}") from None
    lhs = np.asarray(mm.lhs, dtype=float)
    if lhs.ndim == 2 and lhs.shape[1] != 1:
        raise ValueError(f"outcome of {formula!r} must be a single numeric column")
    x = np.asarray(mm.rhs, dtype=float)
    columns = list(mm.rhs.columns)
    rank = np.linalg.matrix_rank(x)
    if rank < x.shape[1]:
        # name a column that is a linear combination of the preceding ones
        for j in range(1, x.shape[1] + 1):
            if np.linalg.matrix_rank(x[:, :j]) < j:
                raise ValueError(f"design is rank deficient: column {columns[j - 1]!r} is a "
                                 "linear combination of earlier columns in the analysed rows")
    return Design(df, lhs.reshape(-1), x, columns, mm.rhs.model_spec, outcome, rhs_vars,
                  int((~keep).sum()), excluded_by)


def coerce_contrast(lmat, columns: list[str], names=None) -> tuple[np.ndarray, list[str]]:
    """Turn a contrast specification into an ``(c, p)`` matrix and row names.

    Accepts a vector of length p, a ``(c, p)`` array, a DataFrame whose columns are coefficient
    names (missing ones are 0), or a dict ``{name: vector or {coefficient: weight}}``.
    """
    p = len(columns)
    if isinstance(lmat, dict):
        rows, rnames = [], []
        for key, val in lmat.items():
            if isinstance(val, dict):
                rows.append(_row_from_mapping(val, columns))
            else:
                arr = coerce_contrast(val, columns)[0]
                if arr.shape[0] != 1:
                    raise ValueError(f"contrast {key!r} must be a single row")
                rows.append(arr[0])
            rnames.append(str(key))
        return np.vstack(rows), rnames if names is None else list(names)
    if isinstance(lmat, pd.DataFrame):
        unknown = [c for c in lmat.columns if c not in columns]
        if unknown:
            raise ValueError(f"contrast column {unknown[0]!r} is not a coefficient; "
                             f"coefficients are {columns}")
        arr = lmat.reindex(columns=columns, fill_value=0.0).to_numpy(dtype=float)
        rnames = [str(i) for i in lmat.index] if names is None else list(names)
        return arr, rnames
    arr = np.atleast_2d(np.asarray(lmat, dtype=float))
    if arr.shape[1] != p:
        raise ValueError(f"contrast has {arr.shape[1]} columns but the model has {p} "
                         f"coefficients {columns}")
    rnames = [f"c{i + 1}" for i in range(arr.shape[0])] if names is None else list(names)
    if len(rnames) != arr.shape[0]:
        raise ValueError(f"{len(rnames)} names given for {arr.shape[0]} contrast rows")
    return arr, rnames


def _row_from_mapping(val: dict, columns: list[str]) -> np.ndarray:
    row = np.zeros(len(columns))
    for k, w in val.items():
        if k not in columns:
            raise ValueError(f"contrast coefficient {k!r} is not in the model; "
                             f"coefficients are {columns}")
        row[columns.index(k)] = float(w)
    return row


def _factor_variables(design: Design) -> list[str]:
    """Right-hand-side variables treated as factors in the reference grid."""
    out = []
    enc = getattr(design.spec, "encoder_state", {}) or {}
    for var in design.variables:
        s = design.data[var]
        as_cat = any(
            getattr(kind, "value", str(kind)) == "categorical"
            and (key == var or re.search(rf"\bC\(\s*{re.escape(var)}\b", key))
            for key, (kind, _state) in enc.items())
        if _is_factor(s) or as_cat:
            out.append(var)
    return out


def reference_grid(design: Design, specs: list[str], by: list[str], at: dict | None,
                   weights: str) -> tuple[pd.DataFrame, np.ndarray]:
    """emmeans-style marginal means: rows of the grid and the matrix mapping beta to them.

    The reference grid crosses all levels of every factor in the model with each numeric
    covariate at its mean over the analysed rows (or at the values in ``at``). Predictions are
    then averaged over the factors not in ``specs + by``: with equal weights
    (``weights="equal"``, emmeans' default) or with weights proportional to how often each
    combination of those factors occurs in the analysed rows (``weights="proportional"``).
    """
    at = dict(at or {})
    factors = _factor_variables(design)
    keep_vars = list(dict.fromkeys([*specs, *by]))
    for v in [*keep_vars, *at]:
        if v not in design.variables:
            raise ValueError(f"variable {v!r} is not in the model formula; "
                             f"formula variables are {design.variables}")
    if weights not in ("equal", "proportional"):
        raise ValueError(f"weights must be 'equal' or 'proportional', got {weights!r}")
    values: dict[str, list] = {}
    for var in design.variables:
        s = design.data[var]
        if var in at:
            values[var] = list(np.atleast_1d(at[var]))
            if var in factors:
                known = set(s.unique())
                bad = [v for v in values[var] if v not in known]
                if bad:
                    raise ValueError(f"value {bad[0]!r} of {var!r} does not occur in the data")
        elif var in factors:
            values[var] = (list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype)
                           else sorted(s.unique()))
        else:
            if var in keep_vars:
                raise ValueError(f"numeric variable {var!r} in specs/by needs values in `at`")
            values[var] = [float(s.mean())]
    names = list(values)
    grid = pd.DataFrame(list(itertools.product(*values.values())), columns=names)
    for var in names:
        src = design.data[var]
        if isinstance(src.dtype, pd.CategoricalDtype):
            grid[var] = pd.Categorical(grid[var], categories=src.cat.categories)
    xg = np.asarray(design.spec.get_model_matrix(grid), dtype=float)
    avg = [v for v in names if v not in keep_vars and len(values[v]) > 1]
    if weights == "proportional" and avg:
        counts = design.data.groupby(avg, observed=True).size()
        key = pd.MultiIndex.from_frame(grid[avg].astype(object)) if len(avg) > 1 else grid[avg[0]]
        w = np.asarray(counts.reindex(key).fillna(0.0), dtype=float)
    else:
        w = np.ones(len(grid))
    out_rows, lrows = [], []
    group_cols = [v for v in keep_vars]
    groups = grid.groupby(group_cols, observed=True, sort=False, dropna=False) if group_cols \
        else [((), grid)]
    for key, sub in groups:
        ww = w[sub.index]
        if ww.sum() <= 0:
            continue
        lrows.append((ww / ww.sum()) @ xg[sub.index])
        key = key if isinstance(key, tuple) else (key,)
        out_rows.append(dict(zip(group_cols, key)))
    return pd.DataFrame(out_rows), np.vstack(lrows)
