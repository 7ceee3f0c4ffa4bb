r"""One DXA site in wide form (patients x post-baseline visits), as the imputation model sees it.

Per DXA site, patient :math:`i` has post-baseline outcomes :math:`y_i = (y_{i1}, \dots, y_{im})` at
the nominal DXA months :math:`t_1 < \dots < t_m` (``outcome="pct"``: % change from baseline,
default; ``"change"``: change in g/cm^2; :math:`m = 1` for a study with a single post-baseline
visit), a baseline BMD :math:`b_i`, a group :math:`g_i \in \{0, \dots, K - 1\}` (the design's
levels in model order, the reference first, :mod:`analysis.sensitivity.design`; :math:`K = 1` in a
single-arm study) and optional numeric baseline covariates :math:`x_i`.

The rows are those of :func:`analysis.frequentist.primary.model_frame`: every scan at the site of a
patient with a group (:func:`analysis.study.groups.assign_groups`) and a baseline scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.sensitivity.design import NotEstimable, site_label
from analysis.sensitivity.imputation_strategies import last_observed
from analysis.study.clinical import ResponderRule
from analysis.study.estimands import GROUP_LABELS
from analysis.study.groups import assign_groups, design_of, group_levels

__all__ = ["OUTCOMES", "SiteData", "site_data", "site_frame"]

OUTCOMES = ("pct", "change")


@dataclass(frozen=True)
class SiteData:
    r"""One DXA site in wide form, as the imputation model sees it.

    Attributes
    ----------
    site : str
    outcome : {"pct", "change"}
        % change from baseline or change in g/cm^2.
    ids : ndarray, shape (n,)
        Patient ids.
    months : ndarray, shape (m,)
        Post-baseline DXA months :math:`t_1 < \dots < t_m`.
    y : ndarray, shape (n, m)
        Outcome, ``NaN`` where missing.
    baseline : ndarray, shape (n,)
        Baseline BMD (g/cm^2).
    group : ndarray of int, shape (n,)
        Code :math:`g_i` of each patient's level in ``levels``.
    levels : tuple of str
        The groups in model order, the reference first.
    covariates : ndarray, shape (n, k)
    covariate_names : tuple of str
    excluded : tuple of str
        Patients left out (no group under the strategy, or no baseline BMD).
    """

    site: str
    outcome: str
    ids: np.ndarray
    months: np.ndarray
    y: np.ndarray
    baseline: np.ndarray
    group: np.ndarray
    levels: tuple[str, ...]
    covariates: np.ndarray
    covariate_names: tuple[str, ...]
    excluded: tuple[str, ...] = ()

    @property
    def n_groups(self) -> int:
        return len(self.levels)

    @property
    def observed(self) -> np.ndarray:
        return ~np.isnan(self.y)

    @property
    def last(self) -> np.ndarray:
        """0-based index of the last observed post-baseline visit (``-1``: baseline only)."""
        return last_observed(self.observed)

    @property
    def last_month(self) -> np.ndarray:
        """Month of the last observed DXA (0 for baseline only)."""
        return np.where(self.last >= 0, self.months[np.maximum(self.last, 0)], 0.0)

    @property
    def post(self) -> np.ndarray:
        """``(n, m)``: visit after the last observed one (post-dropout)."""
        return np.arange(self.months.size)[None, :] > self.last[:, None]

    @property
    def years_since_last(self) -> np.ndarray:
        r"""``(n, m)``: :math:`(t_j - t_{d_i})/12` at post-dropout visits, 0 elsewhere."""
        return np.where(self.post, (self.months[None, :] - self.last_month[:, None]) / 12.0, 0.0)

    def visit_index(self, month: float) -> int:
        """0-based index of the post-baseline DXA ``month`` (``ValueError`` if it is not one)."""
        hit = np.flatnonzero(np.isclose(self.months, float(month)))
        if hit.size == 0:
            raise ValueError(f"month {month:g} is not a post-baseline DXA month of {self.site} "
                             f"({', '.join(f'{t:g}' for t in self.months)})")
        return int(hit[0])

    def design(self, group: np.ndarray | int | None = None) -> np.ndarray:
        r"""``(n, m, p)`` design: the :math:`K m` group-by-visit cells (cell :math:`g m + j`), baseline,
        covariates.

        ``group`` overrides every patient's group (e.g. the reference's code).
        """
        n, k = self.y.shape
        g = self.group if group is None else np.broadcast_to(np.asarray(group, dtype=int), (n,))
        cells = self.n_groups * k
        x = np.zeros((n, k, cells + 1 + self.covariates.shape[1]))
        rows = np.arange(n)
        for j in range(k):
            x[rows, j, g * k + j] = 1.0
        x[:, :, cells] = self.baseline[:, None]
        x[:, :, cells + 1:] = self.covariates[:, None, :]
        return x

    def to_pct(self, values: np.ndarray) -> np.ndarray:
        """Outcome values (last axis: patients) as % change from baseline."""
        values = np.asarray(values, dtype=float)
        return values if self.outcome == "pct" else 100.0 * values / self.baseline


def site_frame(derived: pd.DataFrame, site: str, undefined: str = "last_observed",
               rule: ResponderRule | None = None, design: Any = None) -> pd.DataFrame:
    """The rows of one site with ``analysis_group``, ``bmd``, ``baseline``, ``change`` and ``pct``
    (as :func:`analysis.frequentist.primary.model_frame`): scans of patients with a group."""
    frame = assign_groups(derived, undefined, rule, design=design_of(derived, design)).frame
    col = f"bmd_{site}"
    if col not in frame.columns:
        raise ValueError(f"site {site!r}: no column {col} in the data")
    d = frame[frame[col].notna() & frame["analysis_group"].notna()].copy()
    d["bmd"] = d[col]
    base = d.loc[d["month"] == 0].groupby("patient_id")["bmd"].first()
    d["baseline"] = d["patient_id"].map(base)
    d["change"] = d["bmd"] - d["baseline"]
    d["pct"] = 100.0 * d["change"] / d["baseline"]
    return d.reset_index(drop=True)


def site_data(derived: pd.DataFrame, site: str, undefined: str = "last_observed",
              rule: ResponderRule | None = None, outcome: str = "pct",
              covariates: Sequence[str] = (), design: Any = None) -> SiteData:
    """Wide post-baseline data of one site (:func:`site_frame`).

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    site : str
        DXA site (column ``bmd_<site>``).
    undefined : {"last_observed", "exclude"}
        Strategy for undefined responder status (:func:`analysis.study.groups.assign_groups`; a
        responder study only).
    rule : ResponderRule, optional
    outcome : {"pct", "change"}
    covariates : sequence of str
        Numeric, complete per-patient baseline columns.
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).

    Returns
    -------
    SiteData

    Raises
    ------
    ValueError
        Unknown outcome, the ``"unknown"`` strategy, a non-numeric or incomplete covariate, or no
        post-baseline DXA.
    NotEstimable
        A group without any patient at the site.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    d = design_of(derived, design)
    if undefined == "unknown" and (d is None or d.design.group.kind == "derived"):
        raise ValueError("reference-based imputation needs two groups; use undefined='exclude' or "
                         "'last_observed', not 'unknown'")
    levels = tuple(group_levels(derived, d, "exclude"))
    mf = site_frame(derived, site, undefined, rule, d)
    mf = mf[mf["baseline"].notna()]  # no baseline BMD: no change from baseline
    all_ids = pd.unique(derived["patient_id"])
    kept = pd.unique(mf["patient_id"])
    kept_set = set(kept)
    excluded = tuple(str(p) for p in all_ids if p not in kept_set)
    post = mf[mf["month"] > 0]
    if post.empty:
        raise NotEstimable(f"no post-baseline {site_label(site)} BMD in the data")
    months = np.sort(post["month"].astype(float).unique())
    ids = np.asarray(kept)
    col = "pct" if outcome == "pct" else "change"
    wide = post.pivot_table(index="patient_id", columns="month", values=col, aggfunc="first")
    wide = wide.reindex(index=ids, columns=months)
    per_patient = mf.groupby("patient_id", sort=False).first().reindex(ids)
    group = per_patient["analysis_group"].map({lv: k for k, lv in enumerate(levels)})
    if group.isna().any():  # pragma: no cover - assign_groups gives the design's levels only
        raise ValueError(f"{site}: group {per_patient['analysis_group'][group.isna()].iloc[0]!r} is not a level "
                         f"of the design ({', '.join(levels)})")
    counts = np.bincount(group.to_numpy(dtype=int), minlength=len(levels))
    if (counts == 0).any():
        empty = [GROUP_LABELS.get(lv, lv) for lv, c in zip(levels, counts) if c == 0]
        have = [GROUP_LABELS.get(lv, lv) for lv, c in zip(levels, counts) if c > 0]
        raise NotEstimable(f"no {' or '.join(empty)} with {site_label(site)} BMD (every analysed patient is in "
                           f"{', '.join(have) or 'no group'}): the groups cannot be compared")
    covs = []
    for c in covariates:
        if (not str(c).isidentifier() or c in ("baseline", "month", "outcome_value", "patient_id")
                or str(c).startswith("group_")):
            raise ValueError(f"covariate {c!r} must be a plain column name other than the model's own")
        if c not in per_patient.columns:
            raise ValueError(f"covariate {c!r} is not in the data")
        v = pd.to_numeric(per_patient[c], errors="coerce")
        if v.isna().any():
            raise ValueError(f"covariate {c!r} must be numeric and complete")
        covs.append(v.to_numpy(dtype=float))
    cov = np.column_stack(covs) if covs else np.zeros((ids.size, 0))
    return SiteData(site=site, outcome=outcome, ids=ids, months=months, y=wide.to_numpy(dtype=float),
                    baseline=per_patient["baseline"].to_numpy(dtype=float),
                    group=group.to_numpy(dtype=int), levels=levels, covariates=cov,
                    covariate_names=tuple(covariates), excluded=excluded)
