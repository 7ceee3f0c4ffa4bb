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

from analysis.frequentist.rtests import wilcoxon_rank_sum, wilcoxon_signed_rank
from analysis.resources import data_path

__all__ = ["PublishedFigure", "published_figures", "paper_analysis", "replication_table", "ANALYSIS_ASSUMPTIONS"]

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


def _paired(frame: pd.DataFrame, column: str, ids: pd.Index, month: float) -> tuple[np.ndarray, np.ndarray]:
    wide = frame.pivot_table(index="patient_id", columns="month", values=column, aggfunc="first")
    wide = wide.reindex(ids)
    return wide[0.0].to_numpy(float), wide[float(month)].to_numpy(float)


def paper_analysis(derived: pd.DataFrame, endpoint_month: float = 12) -> dict[str, Any]:
    """Run the reconstructed paper analysis on an analysis-ready frame (:func:`analysis.clinical.derive`).

    Returns a dictionary keyed like :func:`published_figures` (plus group sizes, mean changes and the
    responders' within-group p) with the achieved values.
    """
    end = derived[derived["month"] == endpoint_month]
    comp = end[end["completer"] & end["responder_status"].isin(["responder", "non-responder"])]
    comp = comp.drop_duplicates("patient_id")
    nr = comp.loc[comp["responder_status"] == "non-responder"]
    rs = comp.loc[comp["responder_status"] == "responder"]
    ids = pd.Index(comp["patient_id"])
    out: dict[str, Any] = {
        "n_recruited": int(derived["patient_id"].nunique()),
        "n_completers": int(derived.drop_duplicates("patient_id")["completer"].sum()),
        "n_responders": int(len(rs)),
        "n_nonresponders": int(len(nr)),
    }
    x_nr = nr["pct_change_spine"].dropna().to_numpy()
    x_rs = rs["pct_change_spine"].dropna().to_numpy()
    out["spine_pct_change_nonresponders"] = float(np.mean(x_nr)) if x_nr.size else np.nan
    out["spine_pct_change_responders"] = float(np.mean(x_rs)) if x_rs.size else np.nan
    out["p_spine_nonresponders"] = _p(lambda: wilcoxon_signed_rank(x_nr, conf_int=False))
    out["p_spine_responders"] = _p(lambda: wilcoxon_signed_rank(x_rs, conf_int=False))
    out["spine_responders_stable"] = out["p_spine_responders"]
    out["p_spine_between_groups"] = _p(lambda: wilcoxon_rank_sum(x_rs, x_nr, conf_int=False))
    t_nr = nr["tscore_change_spine"].dropna().to_numpy()
    t_rs = rs["tscore_change_spine"].dropna().to_numpy()
    out["p_tscore_spine_between_groups"] = _p(lambda: wilcoxon_rank_sum(t_rs, t_nr, conf_int=False))
    for key, col in (("das28_crp", "das28_crp"), ("cdai", "cdai"), ("prednisolone", "prednisolone_mg"),
                     ("alp", "alp_u_l")):
        base, follow = _paired(derived, col, ids, endpoint_month)
        ok = ~(np.isnan(base) | np.isnan(follow))
        out[f"p_{key}"] = _p(lambda: wilcoxon_signed_rank(follow[ok] - base[ok], conf_int=False))
        out[f"mean_change_{key}"] = float(np.mean(follow[ok] - base[ok])) if ok.any() else np.nan
    return out


def _p(fn) -> float:
    try:
        return float(fn().p_value)
    except ValueError:
        return float("nan")


def replication_table(achieved: dict[str, Any]) -> pd.DataFrame:
    """Published figure | this analysis, one row per published figure (``close``: within a factor
    of 2 for p-values, 0.3 points for the mean change, equal for counts)."""
    rows = []
    for fig in published_figures():
        a = achieved.get(fig.key)
        if fig.kind == "not_significant":
            target = "not significant (stable)"
            ok = a is not None and a >= 0.05
            shown = f"p = {a:.3f}; mean {achieved.get('spine_pct_change_responders', float('nan')):+.2f}%"
        elif fig.kind == "p":
            target = f"p = {fig.value:g}"
            shown = f"p = {a:.3g}"
            ok = abs(math.log10(a) - math.log10(fig.value)) <= 0.3
            change = achieved.get("mean_change_" + fig.key.removeprefix("p_"))
            if fig.direction == "decrease" and change is not None:
                shown += f"; mean change {change:+.3g}"
                ok = ok and change < 0
        elif fig.kind == "mean":
            target = f"{fig.value:+.2f}%"
            shown = f"{a:+.2f}%"
            ok = abs(a - fig.value) <= 0.3
        else:
            target = f"{fig.value:g}"
            shown = f"{a:g}"
            ok = a == fig.value
        rows.append({"figure": fig.key, "description": fig.description, "published": target,
                     "this_analysis": shown, "close": bool(ok)})
    return pd.DataFrame(rows)
