"""Analysis groups and the strategies for patients whose responder status is undefined.

A patient without a DAS28-CRP at the response month has no responder status. Every analysis that
compares groups takes one documented strategy, recorded with its results:

``exclude``
    Leave such patients out of group comparisons (they are listed).
``last_observed``
    Classify them with the same rule from their last observed post-baseline DAS28-CRP (a
    last-observation-carried-forward classification); patients with no post-baseline DAS28 stay
    undefined and are excluded (listed).
``unknown``
    Keep them as a third group, ``"unknown"``.

:mod:`models.dropout` adds a latent-status model on top of these (``rajak sensitivity --analysis
latent_status``): undefined patients belong to both groups with posterior weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from analysis.study.clinical import ResponderRule, eular_response
from analysis.study.design import RESPONDER_LEVELS

if TYPE_CHECKING:
    from analysis.study.design import ResolvedDesign

__all__ = ["UndefinedStrategy", "GroupAssignment", "assign_groups", "check_groups", "design_of", "group_levels",
           "STRATEGY_TEXT", "SINGLE_GROUP"]

#: The one group of a single-arm study.
SINGLE_GROUP = "all"

UndefinedStrategy = Literal["exclude", "last_observed", "unknown"]

STRATEGY_TEXT = {
    "exclude": "patients with undefined responder status excluded from group comparisons",
    "last_observed": "undefined responder status classified from the last observed DAS28-CRP (LOCF)",
    "unknown": "patients with undefined responder status kept as a separate 'unknown' group",
}


@dataclass
class GroupAssignment:
    """The frame with an ``analysis_group`` column, and what the strategy did."""

    frame: pd.DataFrame
    strategy: str
    excluded: list[str] = field(default_factory=list)
    reclassified: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        text = STRATEGY_TEXT.get(self.strategy, self.strategy)
        if self.reclassified:
            text += f"; {len(self.reclassified)} reclassified"
        if self.excluded:
            text += f"; excluded: {', '.join(self.excluded)}"
        return text


def _classify(base: float, last: float, rule: ResponderRule) -> str | None:
    if np.isnan(base) or np.isnan(last):
        return None
    if rule.kind == "das28_fall":
        ok = (base - last) > rule.threshold
    else:
        cat = eular_response([base], [last])[0]
        ok = cat in (("good",) if rule.kind == "eular_good" else ("good", "moderate"))
    return RESPONDER_LEVELS[1] if ok else RESPONDER_LEVELS[0]


def design_of(derived: pd.DataFrame, design: "ResolvedDesign | None" = None) -> "ResolvedDesign | None":
    """The resolved design of a derived frame: ``design`` if given, else the one
    :func:`analysis.study.clinical.derive` attached (``None``: a responder study, the RAJAK default)."""
    return design if design is not None else derived.attrs.get("design")


def group_levels(derived: pd.DataFrame, design: "ResolvedDesign | None" = None,
                 strategy: UndefinedStrategy = "exclude") -> tuple[str, ...]:
    """The analysis groups in model order: the reference level first, then the others as the design
    lists them (``("non-responder", "responder")`` for a responder study, plus ``"unknown"`` under
    that strategy; ``("all",)`` for a single arm)."""
    d = design_of(derived, design)
    if d is None or d.design.group.kind == "derived":
        ref = d.reference if d is not None and d.reference else RESPONDER_LEVELS[0]
        base = (ref, *[g for g in RESPONDER_LEVELS if g != ref])
        return (*base, "unknown") if strategy == "unknown" else base
    if d.design.group.kind == "none":
        return (SINGLE_GROUP,)
    return (d.reference, *[g for g in d.group_levels if g != d.reference])


def assign_groups(derived: pd.DataFrame, strategy: UndefinedStrategy = "exclude",
                  rule: ResponderRule | None = None, design: "ResolvedDesign | None" = None) -> GroupAssignment:
    """Add ``analysis_group``: the design's group level of each patient (for a responder study
    'responder', 'non-responder', 'unknown' or missing = excluded, by ``strategy``; for a design
    grouped by a column, its lower-cased level; for a single arm, ``"all"``)."""
    if strategy not in STRATEGY_TEXT:
        raise ValueError(f"unknown strategy for undefined responder status {strategy!r}; "
                         f"expected one of {sorted(STRATEGY_TEXT)}")
    d = design_of(derived, design)
    if d is not None and d.design.group.kind != "derived":
        out = derived.copy()
        if d.design.group.kind == "none":
            out["analysis_group"] = SINGLE_GROUP
            return GroupAssignment(frame=out, strategy="single arm: every patient in one group")
        first = out.dropna(subset=["group"]).groupby("patient_id", sort=False)["group"].first()
        out["analysis_group"] = out["patient_id"].map(first)
        excluded = sorted(set(out.loc[out["analysis_group"].isna(), "patient_id"].astype(str)))
        return GroupAssignment(frame=out, strategy=f"groups from column {d.design.group.column!r}",
                               excluded=excluded)
    rule = rule or ResponderRule()
    out = derived.copy()
    status = out.groupby("patient_id", sort=False)["responder_status"].first()
    group = status.where(status != "undefined")
    reclassified: dict[str, str] = {}
    undefined = status.index[status == "undefined"]
    if strategy == "unknown":
        group[undefined] = "unknown"
    elif strategy == "last_observed" and "das28_crp" in out.columns:
        for pid in undefined:
            rows = out[(out["patient_id"] == pid) & out["das28_crp"].notna()].sort_values("month")
            base = rows.loc[rows["month"] == 0, "das28_crp"]
            post = rows[rows["month"] > 0]
            if base.empty or post.empty:
                continue
            g = _classify(float(base.iloc[0]), float(post["das28_crp"].iloc[-1]), rule)
            if g is not None:
                group[pid] = g
                reclassified[pid] = f"{g} (month {post['month'].iloc[-1]:g})"
    excluded = [str(p) for p in group.index[group.isna()]]
    out["analysis_group"] = out["patient_id"].map(group)
    return GroupAssignment(frame=out, strategy=strategy, excluded=excluded, reclassified=reclassified)


def check_groups(derived: pd.DataFrame, strategy: UndefinedStrategy = "exclude", rule: ResponderRule | None = None,
                 design: "ResolvedDesign | None" = None, source: str = "the data") -> None:
    """Raise one line when a responder study's derived groups cannot be compared: every patient
    with a status is in one group (a design grouped by a column is checked when it is resolved).

    Raises
    ------
    ValueError
        ``"<source>: only one group present: ..."``.
    """
    d = design_of(derived, design)
    if d is not None and d.design.group.kind != "derived":
        return
    groups = assign_groups(derived, strategy, rule, design=d).frame
    present = sorted(set(groups["analysis_group"].dropna()) - {"unknown"})
    if len(present) < 2:
        what = f"every patient with a responder status is a {present[0]}" if present else "no patient has a responder status"
        raise ValueError(f"{source}: only one group present ({what}): the groups cannot be compared; "
                         f"use --group none for the within-patient change")
