r"""The study's design as the sensitivity analyses read it: sites, endpoint, groups and comparisons.

Every analysis of the room works on the design of the study it is given
(:class:`analysis.study.design.ResolvedDesign`, passed in or carried by the derived frame's
``attrs["design"]``; none: the RAJAK default of :mod:`analysis.study.rajak_design`):

* the **groups** :math:`g = 0, \dots, K - 1` in model order, the reference :math:`r = 0` first
  (:func:`analysis.study.groups.group_levels`): responders vs non-responders (reference), the arms
  of a trial (reference e.g. placebo), the doses of a dose study, or one group (``"all"``) in a
  single-arm study;
* the **comparisons** :math:`g - r` for every :math:`g \ne 0` (none in a single arm);
* the **estimands** at the endpoint month :math:`T`: every group's mean % change
  :math:`\theta_g` and every comparison's difference :math:`\theta_g - \theta_r`, named by
  :mod:`analysis.study.estimands`.

:class:`SensitivityDesign` holds them; :func:`sensitivity_design` resolves it from a derived frame
(and, optionally, a run configuration's sites and endpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.study.applicability import NotApplicable, NotEstimable
from analysis.study.estimands import GROUP_LABELS, difference_name, estimand_name, site_label
from analysis.study.groups import design_of, group_levels
from analysis.study.rajak_design import RAJAK_DESIGN

__all__ = [
    "NotApplicable",
    "NotEstimable",
    "SensitivityDesign",
    "check_slope_visits",
    "design_from_config",
    "from_resolved",
    "sensitivity_design",
    "site_label",
]


@dataclass(frozen=True)
class SensitivityDesign:
    """Sites, endpoint and groups of one study (module docstring).

    Attributes
    ----------
    sites : tuple of str
    endpoint : float
        Endpoint month :math:`T` (a nominal visit).
    levels : tuple of str
        Groups in model order, the reference first (codes :math:`0, \\dots, K-1`).
    reference : str or None
        The reference level; ``None`` for a single-arm study.
    kind : {"derived", "column", "none"}
        How the study groups its patients (:class:`analysis.study.design.GroupSpec`).
    design : ResolvedDesign or None
        The resolved design (``None``: the RAJAK default).
    """

    sites: tuple[str, ...]
    endpoint: float
    levels: tuple[str, ...]
    reference: str | None
    kind: str
    design: Any = None

    @property
    def single_arm(self) -> bool:
        return self.reference is None

    @property
    def comparisons(self) -> tuple[tuple[str, str], ...]:
        """``(level, reference)`` for every level other than the reference."""
        if self.reference is None:
            return ()
        return tuple((lv, self.reference) for lv in self.levels if lv != self.reference)

    def comparison_key(self, level: str) -> str:
        """``"<level> - <reference>"``: the key of a difference in tables and draws."""
        return f"{level} - {self.reference}"

    @property
    def keys(self) -> tuple[str, ...]:
        """Every estimand's key: the levels, then the comparisons (:meth:`comparison_key`)."""
        return (*self.levels, *(self.comparison_key(lv) for lv, _ in self.comparisons))

    def code(self, level: str) -> int:
        """The model code of ``level`` (``ValueError`` naming the levels if it is not one)."""
        if level not in self.levels:
            raise ValueError(f"reference must be one of {self.levels}, got {level!r}")
        return self.levels.index(level)

    @staticmethod
    def label(level: str) -> str:
        """A level as written in text (``"non-responders"``, ``"placebo"``)."""
        return GROUP_LABELS.get(level, level)

    def key_label(self, key: str) -> str:
        """A key as written in text: the level, or ``"<level> - <reference>"`` in words."""
        for lv, ref in self.comparisons:
            if key == self.comparison_key(lv):
                return f"{self.label(lv)} - {self.label(ref)}"
        return self.label(key)

    def estimand(self, site: str, key: str, measure: str = "pct") -> str:
        """The estimand name of ``key`` (a level or a comparison) at the endpoint."""
        for lv, ref in self.comparisons:
            if key == self.comparison_key(lv):
                return difference_name(site, measure, self.endpoint, groups=(lv, ref))
        return estimand_name(site, key, measure, self.endpoint)

    def estimands(self, site: str, measure: str = "pct") -> dict[str, str]:
        """``{key: estimand name}`` for every key."""
        return {k: self.estimand(site, k, measure) for k in self.keys}

    def is_difference(self, key: str) -> bool:
        return key not in self.levels

    def describe_groups(self) -> str:
        """One phrase: ``"placebo (reference) and active"``, ``"one group (single arm)"``."""
        if self.single_arm:
            return "one group (single arm)"
        others = [self.label(lv) for lv in self.levels if lv != self.reference]
        return f"{self.label(self.reference)} (reference) and " + ", ".join(others)


def from_resolved(design: Any = None, sites: Sequence[str] | None = None,
                  endpoint_month: float | None = None) -> SensitivityDesign:
    """The :class:`SensitivityDesign` of a resolved design (``None``: the RAJAK default,
    :data:`analysis.study.rajak_design.RAJAK_DESIGN`), with optional sites and endpoint."""
    if design is None:
        default_sites, default_end, kind = tuple(RAJAK_DESIGN.sites), float(RAJAK_DESIGN.endpoint), "derived"
    else:
        default_sites, default_end, kind = tuple(design.sites), float(design.endpoint), design.design.group.kind
    sites = tuple(sites) if sites else default_sites
    if not sites:
        raise ValueError("sites must name at least one DXA site")
    levels = tuple(group_levels(pd.DataFrame(), design, "exclude"))
    return SensitivityDesign(sites=sites, endpoint=float(endpoint_month if endpoint_month is not None else default_end),
                             levels=levels, reference=None if kind == "none" else levels[0], kind=kind, design=design)


def sensitivity_design(derived: pd.DataFrame, design: Any = None, sites: Sequence[str] | None = None,
                       endpoint_month: float | None = None) -> SensitivityDesign:
    """The :class:`SensitivityDesign` of a derived frame.

    Parameters
    ----------
    derived : DataFrame
        From :func:`analysis.study.clinical.derive`.
    design : ResolvedDesign, optional
        Default: ``derived.attrs["design"]``; none there either: the RAJAK default
        (:data:`analysis.study.rajak_design.RAJAK_DESIGN`).
    sites, endpoint_month : optional
        Override the design's sites and endpoint (e.g. a run configuration's).

    Raises
    ------
    ValueError
        A site with no ``bmd_<site>`` column in the data.
    """
    sd = from_resolved(design_of(derived, design), sites, endpoint_month)
    missing = [s for s in sd.sites if f"bmd_{s}" not in derived.columns]
    if missing:
        raise ValueError(f"site {missing[0]!r}: no column bmd_{missing[0]} in the data")
    return sd


def design_from_config(derived: pd.DataFrame, config: Any, design: Any = None) -> SensitivityDesign:
    """:func:`sensitivity_design` with a run configuration's ``sites`` and ``endpoint_month`` (either
    ``None`` before :meth:`analysis.run.config.RunConfig.bind`: the design's)."""
    return sensitivity_design(derived, design, getattr(config, "sites", None), getattr(config, "endpoint_month", None))


def check_slope_visits(derived: pd.DataFrame, sites: Sequence[str], what: str) -> None:
    """:class:`NotEstimable` (one line) when a site has fewer than two post-baseline visits with a
    scan: a model with a random slope per patient (``what``) cannot separate the slope variance from
    the noise."""
    for site in sites:
        col = f"bmd_{site}"
        post = sorted(float(v) for v in pd.unique(derived.loc[derived[col].notna() & (derived["month"] > 0), "month"]))
        if len(post) < 2:
            when = ", ".join(f"month {v:g}" for v in post) or "none"
            raise NotEstimable(f"{what}: {site_label(site)} has {len(post)} post-baseline visit ({when}); its "
                               "random-slope LMM needs a third visit to separate the slope variance from the noise")
