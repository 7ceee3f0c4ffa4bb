"""The published RAJAK figures and the paper's completers analysis as rajak reconstructs it.

Only the abstract of Schulz et al. (2025) is public, so the tests behind its p-values are not known.
rajak's reconstruction (an assumption, recorded with every result):

* analysis set: completers (a DXA at month 12) with a defined responder status;
* within-group change of spine BMD to month 12 (in %): two-sided Wilcoxon signed-rank test, exact
  where R would use the exact distribution. The published non-responder p = 0.039 is exactly an
  exact signed-rank p-value (n = 8 with V = 3, or n = 9 with V = 5: 2 x 5/256 = 2 x 10/512 =
  0.039), which makes a rank test the most likely choice;
* between-group comparison of the % change (BMD) and of the absolute T-score change: two-sided
  Wilcoxon rank-sum (Mann-Whitney) test;
* secondary endpoints (DAS28-CRP, cDAI, prednisolone dose, ALP), baseline vs month 12 in all
  completers: two-sided Wilcoxon signed-rank test.

The tests follow R's conventions (:mod:`analysis.frequentist.rtests`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.study.estimands import difference_name, estimand_name
from analysis.frequentist.completers import SECONDARY, completers_analysis
from analysis.study.groups import UndefinedStrategy
from analysis.common.resources import data_path

__all__ = ["PublishedFigure", "published_figures", "paper_analysis", "check_replication", "replication_table",
           "replication_by_method",
           "MODEL_FIGURES", "ANALYSIS_ASSUMPTIONS"]

ANALYSIS_ASSUMPTIONS = (
    "completers (DXA at month 12) with defined responder status",
    "within-group % change: two-sided Wilcoxon signed-rank (R conventions, exact where R is exact)",
    "between groups: two-sided Wilcoxon rank-sum on % change (BMD) and on T-score change",
    "secondary endpoints: two-sided Wilcoxon signed-rank, baseline vs month 12, all completers",
)


@dataclass(frozen=True)
class PublishedFigure:
    """One published figure of the RAJAK abstract."""

    key: str
    description: str
    value: float | None
    kind: str
    direction: str | None = None


def published_figures() -> list[PublishedFigure]:
    """The figures in ``data/published_figures.json``."""
    raw = json.loads(data_path("published_figures.json").read_text())
    return [PublishedFigure(**f) for f in raw["figures"]]


def paper_analysis(derived: pd.DataFrame, endpoint_month: float = 12,
                   strategy: UndefinedStrategy = "exclude", conf_int: bool = False) -> dict[str, Any]:
    """Run the reconstructed paper analysis on an analysis-ready frame (:func:`analysis.study.clinical.derive`).

    Returns a dictionary keyed like :func:`published_figures` (plus group sizes, mean changes and
    the responders' within-group p) with the achieved values. The numbers are read off
    :func:`analysis.frequentist.completers.completers_analysis`, the one implementation of the
    completers tests.
    """
    res = completers_analysis(derived, endpoint_month, sites=("spine",), measures=("pct", "tscore"),
                              strategy=strategy, conf_int=conf_int)
    m = endpoint_month

    def get(estimand: str, test: str, what: str = "p") -> float:
        try:  # a test that could not run (no T-score without a sex column, one patient) is NaN
            value = res.row(estimand, test)[what]
        except KeyError:
            return float("nan")
        return float(value) if value is not None and not pd.isna(value) else float("nan")

    def count(estimand: str) -> int:
        try:
            return int(res.row(estimand, "One Sample t-test")["n"])
        except KeyError:  # too few completers for the t-test
            rows = res.table.loc[res.table["estimand"] == estimand, "n"]
            return int(rows.max()) if len(rows) else 0

    nr, rs = estimand_name("spine", "non-responder", "pct", m), estimand_name("spine", "responder", "pct", m)
    out: dict[str, Any] = {
        "n_recruited": int(derived["patient_id"].nunique()),
        "n_completers": int(derived.drop_duplicates("patient_id")["completer"].sum()),
        "n_responders": count(rs),
        "n_nonresponders": count(nr),
        "spine_pct_change_nonresponders": get(nr, "One Sample", "estimate"),
        "spine_pct_change_responders": get(rs, "One Sample", "estimate"),
        "p_spine_nonresponders": get(nr, "Wilcoxon"),
        "p_spine_responders": get(rs, "Wilcoxon"),
        "p_spine_between_groups": get(difference_name("spine", "pct", m), "Wilcoxon"),
        "p_tscore_spine_between_groups": get(difference_name("spine", "tscore", m), "Wilcoxon"),
    }
    out["spine_responders_stable"] = out["p_spine_responders"]
    for key, col in (("das28_crp", "das28_crp"), ("cdai", "cdai"), ("prednisolone", "prednisolone_mg"),
                     ("alp", "alp_u_l")):
        name = f"{SECONDARY[col]}, all completers, change to month {m:g}"
        if (res.table["estimand"] == name).any():
            out[f"p_{key}"] = get(name, "Wilcoxon")
            out[f"mean_change_{key}"] = get(name, "One Sample", "estimate")
        else:
            out[f"p_{key}"] = out[f"mean_change_{key}"] = float("nan")
    return out


def check_replication(design: Any = None) -> None:
    """Raise :class:`~analysis.study.applicability.NotApplicable` unless the study's design
    (:class:`~analysis.study.design.ResolvedDesign`; ``None``: RAJAK) is one the published figures
    can be compared with: responders vs non-responders derived from disease activity, with a spine
    site."""
    from analysis.study.applicability import NotApplicable

    if design is None:
        return
    if design.design.group.kind != "derived":
        raise NotApplicable("the RAJAK replication compares DAS28-CRP responders with non-responders; this study's "
                            "groups are " + ("a single arm" if design.design.group.kind == "none"
                                             else f"the levels of column {design.design.group.column!r}"))
    if "spine" not in design.sites:
        raise NotApplicable("the RAJAK replication is about the spine; this study's sites are "
                            + ", ".join(design.sites))


def replication_table(achieved: dict[str, Any]) -> pd.DataFrame:
    """Published figure | this analysis | difference, one row per published figure.

    ``close`` is a rough agreement flag: p-values within a factor of 2 (0.3 in log10), the mean
    change within 0.3 points, counts equal, 'stable' meaning p >= 0.05; secondary endpoints must
    also move in the published direction.
    """
    rows = []
    for fig in published_figures():
        a = achieved.get(fig.key)
        a = float("nan") if a is None else float(a)
        detail = ""
        if fig.kind == "not_significant":
            published, close = float("nan"), a >= 0.05
            detail = f"mean change {achieved.get('spine_pct_change_responders', float('nan')):+.2f}%"
        elif fig.kind == "p":
            published = float(fig.value)
            close = bool(np.isfinite(a) and a > 0 and abs(math.log10(a) - math.log10(published)) <= 0.3)
            change = achieved.get("mean_change_" + fig.key.removeprefix("p_"))
            if fig.direction == "decrease" and change is not None:
                detail = f"mean change {change:+.3g}"
                close = close and change < 0
        elif fig.kind == "mean":
            published = float(fig.value)
            close = abs(a - published) <= 0.3
            detail = f"n = {achieved.get('n_nonresponders')}"
        else:
            published = float(fig.value)
            close = a == published
        rows.append({"figure": fig.key, "description": fig.description, "kind": fig.kind,
                     "published": published, "this_analysis": a, "difference": a - published,
                     "detail": detail, "close": bool(close)})
    return pd.DataFrame(rows)


#: Published figures that a model estimand answers: figure key -> (group or "difference", kind).
MODEL_FIGURES = {
    "spine_pct_change_nonresponders": ("non-responder", "estimate"),
    "spine_responders_stable": ("responder", "estimate"),
    "p_spine_between_groups": ("difference", "p"),
}


def replication_by_method(achieved: dict[str, Any], frequentist_estimands: pd.DataFrame,
                          bayes_estimands: pd.DataFrame | None = None, endpoint_month: float = 12) -> pd.DataFrame:
    r"""Published figure vs the completers reconstruction vs every frequentist and Bayesian method.

    For the published figures that a model estimand answers (the spine % change of the
    non-responders and of the responders, and the between-group difference, :data:`MODEL_FIGURES`),
    one row per method: the estimate with its 95% interval and, for the frequentist methods, the
    p-value; for a Bayesian model the posterior median, 95% ETI and the two-sided posterior tail
    probability :math:`2\min(P(<0), P(>0))` (``p``; not a p-value, but what a reader compares
    with one). The paper's reconstruction (rank tests on completers) is the first row of each figure.
    """
    figs = {f.key: f for f in published_figures()}
    rows = []
    for key, (group, kind) in MODEL_FIGURES.items():
        fig = figs.get(key)
        if fig is None:
            continue
        name = (difference_name("spine", "pct", endpoint_month) if group == "difference"
                else estimand_name("spine", group, "pct", endpoint_month))
        published = float(fig.value) if fig.value is not None else float("nan")
        base = {"figure": key, "description": fig.description, "published": published, "estimand": name}
        rows.append({**base, "method": "completers, rank tests (the paper's analysis, reconstructed)",
                     "kind": "frequentist", "estimate": achieved.get("spine_pct_change_" + (
                         "nonresponders" if group == "non-responder" else "responders"), float("nan"))
                     if group != "difference" else float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                     "p": achieved.get({"non-responder": "p_spine_nonresponders", "responder": "p_spine_responders",
                                        "difference": "p_spine_between_groups"}[group], float("nan"))})
        f = frequentist_estimands[frequentist_estimands["estimand"] == name]
        for _, r in f.iterrows():
            rows.append({**base, "method": r["method"], "kind": "frequentist", "estimate": r["estimate"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p": r["p"]})
        if bayes_estimands is not None and len(bayes_estimands):
            b = bayes_estimands[bayes_estimands["estimand"] == name]
            for _, r in b.iterrows():
                rows.append({**base, "method": f"Bayesian {r['model']}", "kind": "bayesian", "estimate": r["median"],
                             "ci_low": r["eti_low"], "ci_high": r["eti_high"],
                             "p": float(min(1.0, 2 * min(r["p_lt_0"], r["p_gt_0"])))})
    return pd.DataFrame(rows, columns=["figure", "description", "published", "estimand", "method", "kind",
                                       "estimate", "ci_low", "ci_high", "p"])
