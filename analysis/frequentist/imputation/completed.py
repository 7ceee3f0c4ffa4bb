"""The completed datasets: their long and wide layout and :class:`ImputationResult`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.frequentist.imputation.sequence import Var, month_label, per_patient

__all__ = ["Layout", "ImputationResult"]


@dataclass(frozen=True)
class Layout:
    """Everything needed to turn a completed wide array into long and wide data frames."""

    ids: pd.Index
    months: list[float]
    sites: tuple[str, ...]
    variables: list[Var]
    group: str | None
    covariates: pd.DataFrame          # per patient, indexed by patient_id
    long_obs: dict[str, np.ndarray]   # observed long columns (auxiliaries, BMD) on the full grid
    base: dict[str, np.ndarray]       # patient_id, month and covariates on the full grid

    @classmethod
    def build(cls, frame: pd.DataFrame, ids: pd.Index, months: list[float], sites: tuple[str, ...],
              variables: list[Var], group: str | None, covariates: Sequence[str],
              auxiliary: Sequence[str]) -> Layout:
        grid = pd.MultiIndex.from_product([ids, months], names=["patient_id", "month"])
        indexed = frame.set_index(["patient_id", "month"])
        long_obs = {c: indexed[c].reindex(grid).to_numpy(dtype=float)
                    for c in [*auxiliary, *(f"bmd_{s}" for s in sites)]}
        cov = pd.DataFrame({c: per_patient(frame, c, ids).to_numpy() for c in covariates}, index=ids)
        t = len(months)
        base = {"patient_id": np.repeat(ids.to_numpy(), t), "month": np.tile(np.asarray(months), len(ids)),
                **{c: np.repeat(cov[c].to_numpy(), t) for c in covariates}}
        return cls(ids, months, sites, variables, group, cov, long_obs, base)

    def long(self, vals: np.ndarray | None, labels: np.ndarray) -> pd.DataFrame:
        """Long frame: observed values, overwritten by the sequence variables of ``vals``."""
        n, t = len(self.ids), len(self.months)
        cols = {k: v.copy() for k, v in self.long_obs.items()}
        pos = {m: k for k, m in enumerate(self.months)}
        if vals is not None:
            for j, v in enumerate(self.variables):
                if v.kind != "group":
                    cols[v.column][np.arange(n) * t + pos[v.month]] = vals[:, j]
        out = dict(self.base)
        if self.group is not None:
            out[self.group] = np.repeat(labels, t)
        out.update(cols)
        for s in self.sites:
            y = cols[f"bmd_{s}"].reshape(n, t)
            y0 = y[:, [pos[0.0]]]
            out[f"pct_change_{s}"] = (100.0 * (y - y0) / y0).ravel()
        return pd.DataFrame(out)

    def wide(self, vals: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
        """One row per patient: covariates, group, ``<column>_m<month>``, ``pct_change_<site>_m<month>``."""
        out = self.covariates.copy()
        if self.group is not None:
            out[self.group] = labels
        for j, v in enumerate(self.variables):
            if v.kind != "group":
                out[v.wide_name] = vals[:, j]
        for s in self.sites:
            y0 = out[f"bmd_{s}_m0"]
            for v in self.variables:
                if v.kind == "bmd" and v.site == s and v.month > 0:
                    out[f"pct_change_{s}_m{month_label(v.month)}"] = 100.0 * (out[v.wide_name] - y0) / y0
        return out

    def mask(self, group_observed: np.ndarray) -> pd.DataFrame:
        """``True`` where a value was observed (auxiliaries, BMD, group)."""
        out = {"patient_id": self.base["patient_id"], "month": self.base["month"]}
        out.update({c: ~np.isnan(v) for c, v in self.long_obs.items()})
        if self.group is not None:
            out[self.group] = np.repeat(group_observed, len(self.months))
        return pd.DataFrame(out)


@dataclass(frozen=True)
class ImputationResult:
    """Completed datasets from :func:`impute_bmd`.

    Attributes
    ----------
    imputations : tuple of DataFrame
        The ``m`` completed datasets, long: one row per patient and scheduled month with
        ``patient_id``, ``month``, the covariates, the group column (imputed where undefined, if so
        requested), the auxiliaries, ``bmd_<site>`` and ``pct_change_<site>``. BMD stays NaN at
        months without DXA (month 3); auxiliaries outside the imputation sequence stay as observed.
    observed : DataFrame
        The same layout without imputation (NaN where missing; an undefined group labelled
        ``undefined_label``). An analysis function applied to it gives the available-case
        (completers) analysis.
    mask : DataFrame
        Boolean, the rows of :attr:`imputations`; ``True`` where the auxiliary, BMD or group value
        was observed.
    variables : tuple of str
        The imputation sequence (wide names, e.g. ``"bmd_spine_m12"``).
    predictors : dict of str
        Every imputation model: variable, predictors, method, number of patients it was fitted in
        and number of patients it imputes.
    m, seed, group, undefined
        The settings.
    """

    imputations: tuple[pd.DataFrame, ...]
    observed: pd.DataFrame
    mask: pd.DataFrame
    variables: tuple[str, ...]
    predictors: dict[str, str]
    m: int
    seed: int | None
    group: str | None
    undefined: str
    _layout: Layout = field(repr=False, compare=False)
    _completed: tuple[tuple[np.ndarray, np.ndarray], ...] = field(repr=False, compare=False)

    def long(self, i: int) -> pd.DataFrame:
        """The ``i``-th completed dataset (0-based), long (a copy)."""
        return self.imputations[i].copy()

    def wide(self, i: int) -> pd.DataFrame:
        """The ``i``-th completed dataset (0-based), one row per patient: covariates, group, the
        sequence variables as ``<column>_m<month>`` and ``pct_change_<site>_m<month>``."""
        return self._layout.wide(*self._completed[i])

    def stacked(self) -> pd.DataFrame:
        """All completed datasets stacked with an ``imputation`` column (1..m), like
        ``mice::complete(imp, "long")``."""
        return pd.concat([d.assign(imputation=k + 1) for k, d in enumerate(self.imputations)],
                         ignore_index=True)
