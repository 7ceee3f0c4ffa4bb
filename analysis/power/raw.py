"""The raw-result layout of a power study: one row per simulation, site and analysis.

Every summary (:mod:`analysis.power.summary`) is computed from these rows, and the resumable store
(:mod:`analysis.power.execution`) keeps them as Parquet chunks. :func:`tidy_rows` gives every row
list the same columns and dtypes, so that chunks from any worker concatenate to identical frames.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["POWER_FORMAT", "RAW_COLUMNS", "TIMING_COLUMNS", "tidy_rows"]

#: Version of the raw-result layout (part of the resume key).
POWER_FORMAT = 1

#: Columns of the raw results, in order (assurance adds ``prior_draw`` and ``prior.*`` after them; a
#: design from data adds ``contrast``, e.g. ``"active - placebo"``, and its ``n_responders`` /
#: ``n_nonresponders`` count the contrast's level and its reference).
RAW_COLUMNS = ["n", "sim", "site", "analysis", "ok", "estimate", "se", "df", "statistic", "p", "converged",
               "singular", "q025", "q05", "q50", "q95", "q975", "p_gt_0", "p_lt_0", "p_in_rope", "rope",
               "max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "min_ebfmi", "diag_passed",
               "diag_failures", "n_analysed", "n_responders", "n_nonresponders", "n_completers",
               "lost_fraction", "message", "seconds", "sample_seconds"]
_BOOL_COLUMNS = ("converged", "singular", "diag_passed")
_STR_COLUMNS = ("site", "analysis", "diag_failures", "message", "contrast")
_INT_COLUMNS = ("n", "sim", "n_analysed", "n_responders", "n_nonresponders", "n_completers")
#: Columns that measure time (they differ between runs; everything else is reproducible).
TIMING_COLUMNS = ("seconds", "sample_seconds")


def tidy_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Raw result rows as a frame with :data:`RAW_COLUMNS` (then any extra columns, sorted) and
    fixed dtypes: nullable booleans, strings (missing as ``""``), int64 counts, float otherwise."""
    df = pd.DataFrame(rows)
    extra = sorted(c for c in df.columns if c not in RAW_COLUMNS)
    df = df.reindex(columns=RAW_COLUMNS + extra)
    for c in df.columns:
        if c in _BOOL_COLUMNS:
            df[c] = df[c].astype("boolean")
        elif c in _STR_COLUMNS:
            df[c] = df[c].astype(object).where(df[c].notna(), "").astype(str)
        elif c in _INT_COLUMNS or c == "prior_draw":
            df[c] = df[c].astype("int64")
        elif c == "ok":
            df[c] = df[c].fillna(False).astype(bool)
        else:
            df[c] = df[c].astype(float)
    return df
