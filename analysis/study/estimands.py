"""Names of estimands, shared by the frequentist and Bayesian sides so their tables line up.

A name reads like ``"spine, non-responders, change to month 12, %"`` or
``"spine, responders - non-responders, change to month 12, %"``.
"""

from __future__ import annotations

__all__ = ["SITE_LABELS", "GROUP_LABELS", "UNIT_LABELS", "estimand_name", "difference_name", "site_label"]

SITE_LABELS = {"spine": "spine", "femoral_neck": "femoral neck"}
GROUP_LABELS = {"responder": "responders", "non-responder": "non-responders", "all": "all",
                "unknown": "unknown status"}
UNIT_LABELS = {"pct": "%", "abs": "g/cm^2", "tscore": "T-score"}


def site_label(site: str) -> str:
    """A site as written in estimand names and texts: ``"total_hip"`` -> ``"total hip"``."""
    return SITE_LABELS.get(site, site.replace("_", " "))


def estimand_name(site: str, group: str, measure: str = "pct", month: float = 12) -> str:
    """Within-group change, e.g. ``estimand_name("spine", "non-responder")``."""
    return f"{site_label(site)}, {GROUP_LABELS.get(group, group)}, change to month {month:g}, " \
           f"{UNIT_LABELS.get(measure, measure)}"


def difference_name(site: str, measure: str = "pct", month: float = 12,
                    groups: tuple[str, str] = ("responder", "non-responder")) -> str:
    """Between-group difference in change, first group minus second."""
    a, b = (GROUP_LABELS.get(g, g) for g in groups)
    return f"{site_label(site)}, {a} - {b}, change to month {month:g}, {UNIT_LABELS.get(measure, measure)}"
