"""The study's design in words, for the report, the methods text and the figures' captions.

Everything the text says about groups, sites and the endpoint comes from one :class:`DesignWords`,
built from the study's :class:`~analysis.study.design.ResolvedDesign` (:func:`design_words`). The
RAJAK default (responders vs non-responders, spine and femoral neck, month 12) is only what the
RAJAK design says: with no design the words are those of :data:`analysis.study.rajak_design.RAJAK_DESIGN`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.study.estimands import site_label  # re-exported: how a site is written in text

__all__ = ["DesignWords", "design_words", "site_label"]


@dataclass(frozen=True)
class DesignWords:
    """How the text names the study's design.

    Attributes
    ----------
    kind : {"derived", "column", "none"}
        Groups derived from disease activity (responders), from a column (arms), or a single arm.
    levels : tuple of str
        Group levels, the reference first.
    reference : str or None
    sites : tuple of str
    endpoint : float
        Endpoint month.
    visits : tuple of float
    column : str or None
        The group column (``kind == "column"``).
    """

    kind: str
    levels: tuple[str, ...]
    reference: str | None
    sites: tuple[str, ...]
    endpoint: float
    visits: tuple[float, ...] = ()
    column: str | None = None

    @property
    def group_term(self) -> str:
        """The model term of the group: ``responder``, ``group`` (a column) or ``""`` (single arm)."""
        return {"derived": "responder", "column": "group"}.get(self.kind, "")

    @property
    def comparisons(self) -> tuple[tuple[str, str], ...]:
        """(level, reference) per compared level."""
        if self.reference is None:
            return ()
        return tuple((lv, self.reference) for lv in self.levels if lv != self.reference)

    def plural(self, level: str) -> str:
        """A level as a group of patients (``"responders"``, ``"placebo"``)."""
        from analysis.study.estimands import GROUP_LABELS

        return GROUP_LABELS.get(level, level) if self.kind == "derived" else level

    @property
    def contrast_text(self) -> str:
        """``"responders - non-responders"``, ``"active - placebo and high - placebo"``, or for a single
        arm ``"the change from baseline (against 0)"``."""
        if not self.comparisons:
            return "the change from baseline (against 0)"
        return " and ".join(f"{self.plural(a)} - {self.plural(b)}" for a, b in self.comparisons)

    @property
    def groups_text(self) -> str:
        """``"responder status (non-responders as reference)"``, ``"arm (placebo, active; reference
        placebo)"`` or ``"a single arm"``."""
        if self.kind == "derived":
            return f"responder status ({self.plural(self.reference or self.levels[0])} as reference)"
        if self.kind == "none":
            return "a single arm"
        return (f"{self.column or 'group'} ({', '.join(self.levels)}; reference {self.reference})")

    @property
    def endpoint_text(self) -> str:
        return f"month {self.endpoint:g}"

    @property
    def sites_text(self) -> str:
        return ", ".join(site_label(s) for s in self.sites)

    def lmm_formula(self) -> str:
        """``bmd ~ month * responder + (1 + month | patient)`` in the design's words."""
        fixed = f"month * {self.group_term}" if self.group_term else "month"
        return f"bmd ~ {fixed} + (1 + month | patient)"

    def mmrm_formula(self) -> str:
        fixed = f"visit * {self.group_term}" if self.group_term else "visit"
        return f"change ~ baseline + {fixed}"


def design_words(design: Any = None, sites: Any = None, endpoint: float | None = None) -> DesignWords:
    """The words of a resolved design (``None``: the RAJAK default design).

    Parameters
    ----------
    design : ResolvedDesign, optional
    sites : sequence of str, optional
        The sites analysed (default: the design's).
    endpoint : float, optional
        The endpoint month (default: the design's).
    """
    import pandas as pd

    from analysis.study.groups import group_levels

    if design is None:
        from analysis.study.rajak_design import RAJAK_DESIGN

        spec = RAJAK_DESIGN
        levels = tuple(group_levels(pd.DataFrame(), None))  # a responder study's groups, reference first
        return DesignWords(kind=spec.group.kind, levels=levels, reference=levels[0],
                           sites=tuple(sites or spec.sites), endpoint=float(endpoint or spec.endpoint))
    kind = design.design.group.kind
    levels = tuple(group_levels(pd.DataFrame(), design))
    reference = None if kind == "none" else levels[0]
    return DesignWords(kind=kind, levels=tuple(levels), reference=reference, sites=tuple(sites or design.sites),
                       endpoint=float(design.endpoint if endpoint is None else endpoint),
                       visits=tuple(design.visits), column=design.design.group.column)
