r"""How a study's groups enter the frequentist models, and the per-site model frame.

A design's groups (:mod:`analysis.study.groups`) are coded in the fixed effects by treatment
contrasts against the reference level :math:`r`: for subject :math:`i` in group :math:`g(i)`,

.. math:: x_i^\top\beta = \beta_0 + \sum_{g \ne r} \beta_g\,[g(i) = g] + \dots

* a responder study (the RAJAK default, group *derived* from disease activity) keeps its 0/1
  ``responder`` indicator (and ``unknown`` under the ``unknown`` strategy), so its coefficients
  are ``responder``, ``month:responder``, ...;
* a study grouped by a column (arms, doses) uses the categorical ``group`` column with the levels
  in model order, reference first (coefficients ``group[T.active]``, ``month:group[T.active]``);
* a single-arm study has no group term.

:class:`GroupCoding` says which model variables code the groups and which values each level takes,
so the estimands of every design are read off the same emmeans-style reference grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from analysis.study.clinical import ResponderRule
from analysis.study.rajak_design import RAJAK_DESIGN
from analysis.study.groups import SINGLE_GROUP, UndefinedStrategy, assign_groups, design_of, group_levels

if TYPE_CHECKING:
    from analysis.study.design import ResolvedDesign

__all__ = ["GroupCoding", "group_coding", "model_frame", "design_defaults", "RAJAK_CODING"]

_UNKNOWN = "unknown"


@dataclass(frozen=True)
class GroupCoding:
    """The groups of a design as model terms.

    Attributes
    ----------
    kind : {"derived", "column", "none"}
        The design's kind of group.
    levels : tuple of str
        Every level in the model, reference first.
    reported : tuple of str
        The levels whose within-group estimands are reported (a responder study's ``unknown``
        group is modelled but not reported, as in the paper's analysis).
    comparisons : tuple of (str, str)
        ``(level, reference)`` pairs reported as differences.
    terms : str or None
        The group's terms in a formula (``"responder"``, ``"responder + unknown"``, ``"group"``);
        ``None`` for a single arm.
    variables : tuple of str
        The model variables coding the group.
    """

    kind: str
    levels: tuple[str, ...]
    reported: tuple[str, ...]
    comparisons: tuple[tuple[str, str], ...]
    terms: str | None
    variables: tuple[str, ...]

    @property
    def reference(self) -> str:
        """The reference level (the only level of a single arm)."""
        return self.levels[0]

    def value(self, level: str) -> dict[str, Any]:
        """The values of :attr:`variables` for ``level``."""
        if self.kind == "none":
            return {}
        if self.kind == "column":
            return {"group": level}
        out = {"responder": 1.0 if level == "responder" else 0.0}
        if _UNKNOWN in self.variables:
            out[_UNKNOWN] = 1.0 if level == _UNKNOWN else 0.0
        return out

    def grid_at(self) -> dict[str, list]:
        """Values of :attr:`variables` for a reference grid covering every level."""
        if self.kind == "column":
            return {"group": list(self.levels)}
        return {v: [0.0, 1.0] for v in self.variables}

    def rows_of(self, grid: pd.DataFrame, level: str) -> np.ndarray:
        """Boolean mask of the reference-grid rows of ``level``."""
        sel = np.ones(len(grid), dtype=bool)
        for var, val in self.value(level).items():
            col = grid[var]
            sel &= (col.astype(str) == val).to_numpy() if isinstance(val, str) else \
                (col.astype(float) == val).to_numpy()
        return sel

    def formula(self, outcome: str, time: str | None = "month", before: str = "", after: str = "") -> str:
        """``outcome ~ [before +] time * (terms) [+ after]``; ``time=None``: the group main effect
        only; a single arm: ``time`` alone."""
        if time is None:
            rhs = self.terms or ""
        else:
            rhs = f"{time} * ({self.terms})" if self.terms else time
        parts = [p for p in (before, rhs, after) if p]
        return f"{outcome} ~ " + (" + ".join(parts) if parts else "1")


#: The RAJAK default: responders vs non-responders, no unknown group.
RAJAK_CODING = GroupCoding(kind="derived", levels=("non-responder", "responder"),
                           reported=("non-responder", "responder"),
                           comparisons=(("responder", "non-responder"),), terms="responder",
                           variables=("responder",))


def design_defaults(derived: pd.DataFrame, design: "ResolvedDesign | None" = None,
                    sites: Iterable[str] | None = None, endpoint_month: float | None = None,
                    covariates: Iterable[str] | None = None) -> tuple[tuple[str, ...], float, tuple[str, ...]]:
    """Sites, endpoint month and covariates: those given, else the design's (the RAJAK default
    design's without one)."""
    d = design_of(derived, design)
    sites = tuple(sites) if sites is not None else (tuple(d.sites) if d is not None else tuple(RAJAK_DESIGN.sites))
    if endpoint_month is None:
        endpoint_month = d.endpoint if d is not None else RAJAK_DESIGN.endpoint
    if covariates is None:
        covariates = d.covariates if d is not None else RAJAK_DESIGN.covariates
    return sites, float(endpoint_month), tuple(covariates)


def group_coding(derived: pd.DataFrame, design: "ResolvedDesign | None" = None,
                 strategy: UndefinedStrategy = "exclude") -> GroupCoding:
    """The :class:`GroupCoding` of a derived frame's design (``None``: the RAJAK default)."""
    d = design_of(derived, design)
    levels = group_levels(derived, d, strategy)
    kind = "derived" if d is None else d.design.group.kind
    if kind == "none":
        return GroupCoding("none", (SINGLE_GROUP,), (SINGLE_GROUP,), (), None, ())
    ref = levels[0]
    if kind == "column":
        return GroupCoding("column", levels, levels, tuple((g, ref) for g in levels[1:]), "group", ("group",))
    reported = tuple(g for g in levels if g != _UNKNOWN)
    status = derived["responder_status"] if "responder_status" in derived.columns else None
    unknown = strategy == _UNKNOWN and (status is None or bool(status.eq("undefined").any()))
    levels = levels if unknown else reported
    return GroupCoding("derived", levels, reported, tuple((g, ref) for g in reported[1:]),
                       "responder + unknown" if unknown else "responder",
                       ("responder", _UNKNOWN) if unknown else ("responder",))


def model_frame(derived: pd.DataFrame, site: str, strategy: UndefinedStrategy = "exclude",
                rule: ResponderRule | None = None, design: "ResolvedDesign | None" = None) -> pd.DataFrame:
    r"""One site's rows for the models.

    Rows with a BMD at ``site`` and an analysis group (patients excluded by the strategy are
    dropped), with ``bmd``, ``baseline`` (the subject's month-0 BMD), ``change``
    (:math:`y - y_0`), ``pct`` (:math:`100\,(y - y_0)/y_0`), a categorical ``group`` (the
    design's levels in model order, reference first) and, for a responder study, today's 0/1
    ``responder`` indicator (and ``unknown`` under that strategy). ``month`` is the nominal visit;
    ``month_actual`` (the actual months since baseline) is kept where :func:`derive` made it.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive`.
    site : str
        The site (column ``bmd_<site>``).
    strategy, rule
        Undefined responder status (:func:`analysis.study.groups.assign_groups`).
    design : ResolvedDesign, optional
        Default: the one :func:`derive` attached (``None``: the RAJAK default).
    """
    d_design = design_of(derived, design)
    frame = assign_groups(derived, strategy, rule, design=d_design).frame
    col = f"bmd_{site}"
    if col not in frame.columns:
        raise KeyError(f"no column {col!r} for site {site!r}")
    d = frame[frame[col].notna() & frame["analysis_group"].notna()].copy()
    d["bmd"] = d[col]
    levels = group_levels(derived, d_design, strategy)
    if d_design is None or d_design.design.group.kind == "derived":
        d["responder"] = (d["analysis_group"] == "responder").astype(float)
        if strategy == _UNKNOWN:
            d[_UNKNOWN] = (d["analysis_group"] == _UNKNOWN).astype(float)
    d["group"] = pd.Categorical(d["analysis_group"], categories=list(levels))
    base = d.loc[d["month"] == 0].groupby("patient_id")["bmd"].first()
    d["baseline"] = d["patient_id"].map(base)
    d["change"] = d["bmd"] - d["baseline"]
    d["pct"] = 100.0 * d["change"] / d["baseline"]
    return d.reset_index(drop=True)
