"""Names of estimands, shared by the frequentist and Bayesian sides so their tables line up.

A name reads like ``"spine, non-responders, change to month 12, %"`` or
``"spine, responders - non-responders, change to month 12, %"``.
"""

from __future__ import annotations

__all__ = ["SITE_LABELS", "GROUP_LABELS", "UNIT_LABELS", "estimand_name", "difference_name"]

SITE_LABELS = {"spine": "spine", "femoral_neck": "femoral neck"}
GROUP_LABELS = {"responder": "responders", "non-responder": "non-responders", "all": "all",
                "unknown": "unknown status"}
UNIT_LABELS = {"pct": "%", "abs": "g/cm^2", "tscore": "T-score"}


def estimand_name(site: str, group: str, measure: str = "pct", month: float = 12) -> str:
    """Within-group change, e.g. ``estimand_name("spine", "non-responder")``."""
    return f"{SITE_LABELS.get(site, site)}, {GROUP_LABELS.get(group, group)}, change to month {month:g}, " \
           f"{UNIT_LABELS.get(measure, measure)}"


def difference_name(site: str, measure: str = "pct", month: float = 12,
                    groups: tuple[str, str] = ("responder", "non-responder")) -> str:
    """Between-group difference in change, first group minus second."""
    a, b = (GROUP_LABELS.get(g, g) for g in groups)
    return f"{SITE_LABELS.get(site, site)}, {a} - {b}, change to month {month:g}, {UNIT_LABELS.get(measure, measure)}"
