r"""The completers analysis of the paper, in full: within-group change, between-group comparison and
secondary endpoints, each with the parametric and the rank test (R's conventions, see
:mod:`analysis.frequentist.rtests`).

For site :math:`s`, measure :math:`m` (% change, change in g/cm^2, change in T-score) and group
:math:`g`, the changes :math:`\Delta_i = y_i(T) - y_i(0)` to the endpoint visit :math:`T` (or
:math:`100\,\Delta_i / y_i(0)`) of the completers are tested

* within groups: one-sample t-test of :math:`E\Delta = 0` (estimate: mean, SE
  :math:`s/\sqrt n`, df :math:`n-1`) and Wilcoxon signed-rank test (estimate: Hodges-Lehmann
  pseudomedian with its CI; exact when R would be exact);
* between groups (each level of the design minus its reference: responders minus non-responders,
  active minus placebo, ...): Welch t-test (Welch-Satterthwaite df) and Wilcoxon rank-sum
  (Mann-Whitney) test with the Hodges-Lehmann shift and its CI; a single-arm study has no
  between-group tests;
* secondary endpoints (DAS28-CRP, cDAI, prednisolone dose, ALP, where present), baseline vs :math:`T`, all
  completers: paired t-test and Wilcoxon signed-rank.

The analysis set is the completers (a DXA at the endpoint's nominal visit); in a responder study
patients with undefined responder status are handled by a strategy of :mod:`analysis.study.groups`
and the choice is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from analysis.study.clinical import ResponderRule
from analysis.study.estimands import difference_name, estimand_name
from analysis.frequentist.rtests import (
    TestResult,
    t_test_one_sample,
    t_test_welch,
    wilcoxon_rank_sum,
    wilcoxon_signed_rank,
)
from analysis.frequentist.coding import GroupCoding, design_defaults, group_coding
from analysis.study.groups import UndefinedStrategy, assign_groups, design_of

if TYPE_CHECKING:
    from analysis.study.design import ResolvedDesign

__all__ = ["CompletersResult", "completers_analysis", "SECONDARY", "MEASURES"]

MEASURES = {"pct": "pct_change_{site}", "abs": None, "tscore": "tscore_change_{site}"}
SECONDARY = {"das28_crp": "DAS28-CRP", "cdai": "cDAI", "prednisolone_mg": "prednisolone dose (mg/day)",
             "alp_u_l": "alkaline phosphatase (U/l)"}
COLUMNS = ["estimand", "analysis", "site", "measure", "group", "test", "n", "estimate", "estimate_type",
           "se", "ci_low", "ci_high", "df", "statistic_name", "statistic", "p", "exact", "note"]


@dataclass
class CompletersResult:
    """Tidy table of every test, and how the analysis set was formed."""

    table: pd.DataFrame
    analysis_set: list[str]
    strategy: str
    excluded: list[str] = field(default_factory=list)

    def row(self, estimand: str, test_prefix: str) -> pd.Series:
        """The row of ``estimand`` whose test name starts with ``test_prefix`` (e.g. 'Wilcoxon')."""
        sel = self.table[(self.table["estimand"] == estimand) & self.table["test"].str.startswith(test_prefix)]
        if sel.empty:
            raise KeyError(f"no {test_prefix!r} row for estimand {estimand!r}")
        return sel.iloc[0]

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "analysis_set": self.analysis_set, "excluded": self.excluded,
                "rows": self.table.replace({np.nan: None}).to_dict(orient="records")}


def _row(estimand: str, analysis: str, site: str, measure: str, group: str, res: TestResult | None,
         note: str = "") -> dict[str, Any]:
    if res is None:
        return {"estimand": estimand, "analysis": analysis, "site": site, "measure": measure, "group": group,
                "test": "not computed", "n": 0, "note": note}
    se = np.nan
    if res.statistic_name == "t" and res.estimate is not None and res.statistic not in (0.0,):
        se = abs(res.estimate / res.statistic) if np.isfinite(res.statistic) else np.nan
    return {
        "estimand": estimand, "analysis": analysis, "site": site, "measure": measure, "group": group,
        "test": res.method, "n": int(sum(res.n)) + int(getattr(res, "n_zero_dropped", 0)),
        "estimate": res.estimate, "estimate_type": res.estimate_name, "se": se,
        "ci_low": res.conf_low, "ci_high": res.conf_high, "df": res.df,
        "statistic_name": res.statistic_name, "statistic": res.statistic, "p": res.p_value,
        "exact": res.exact, "note": res.note,
    }


def _safe(fn, *args, **kw) -> tuple[TestResult | None, str]:
    try:
        return fn(*args, **kw), ""
    except ValueError as err:
        return None, str(err)


def _change(frame: pd.DataFrame, column: str, endpoint_month: float, percent: bool = False) -> pd.Series:
    wide = frame.pivot_table(index="patient_id", columns="month", values=column, aggfunc="first")
    if 0 not in wide.columns or endpoint_month not in wide.columns:
        return pd.Series(dtype=float)
    d = wide[endpoint_month] - wide[0]
    return 100.0 * d / wide[0] if percent else d


def _groups(change: pd.Series, group_of: pd.Series, coding: GroupCoding) -> dict[str, pd.Series]:
    """The changes of each group's completers, in the table's order (and ``"all"``)."""
    of = group_of.reindex(change.index)
    if coding.kind == "none":
        return {"all": change}
    if coding.kind == "derived":  # the paper's order: responders, non-responders, all (unknown)
        out = {"responder": change[of == "responder"], "non-responder": change[of == "non-responder"],
               "all": change}
        if (group_of == "unknown").any():
            out["unknown"] = change[of == "unknown"]
        return out
    return {**{g: change[of == g] for g in coding.levels}, "all": change}


def completers_analysis(derived: pd.DataFrame, endpoint_month: float | None = None,
                        sites: Iterable[str] | None = None,
                        measures: Iterable[str] = ("pct", "abs", "tscore"),
                        strategy: UndefinedStrategy = "exclude", rule: ResponderRule | None = None,
                        secondary: bool = True, conf_int: bool = True,
                        design: "ResolvedDesign | None" = None) -> CompletersResult:
    """Run the completers analysis on an analysis-ready frame (:func:`analysis.study.clinical.derive`).

    Parameters
    ----------
    endpoint_month, sites
        Default: the design's (the RAJAK default design's without one).
    strategy
        How patients with undefined responder status are handled (:func:`analysis.study.groups.assign_groups`).
    conf_int
        Compute Hodges-Lehmann estimates and CIs for the rank tests (slower; the twin calibration
        turns it off).
    design : ResolvedDesign, optional
        The study's design (default: the one :func:`derive` attached; ``None``: the RAJAK
        responder study). Within-group tests run in every level and in all completers, between-group
        tests for every level against the reference; a single arm has the within-patient change only.
        A measure that is missing (no T-score without a sex column) gives ``"not computed"`` rows
        that say why.
    """
    d_design = design_of(derived, design)
    sites, endpoint_month, _ = design_defaults(derived, d_design, sites, endpoint_month, ())
    coding = group_coding(derived, d_design, strategy)
    assignment = assign_groups(derived, strategy, rule, design=d_design)
    frame = assignment.frame
    comp_ids = frame.loc[frame["completer"], "patient_id"].unique()
    comp = frame[frame["patient_id"].isin(comp_ids)]
    group_of = comp.groupby("patient_id", sort=False)["analysis_group"].first()
    rows: list[dict[str, Any]] = []
    for site in sites:
        for measure in measures:
            if measure == "abs":
                change = _change(comp, f"bmd_{site}", endpoint_month)
            elif measure == "pct":
                change = _change(comp, f"bmd_{site}", endpoint_month, percent=True)
            else:
                change = _change(comp, f"tscore_{site}", endpoint_month) if f"tscore_{site}" in comp else \
                    pd.Series(dtype=float)
            change = change.dropna()
            groups = _groups(change, group_of, coding)
            for g, x in groups.items():
                name = estimand_name(site, g, measure, endpoint_month)
                for fn, kw in ((t_test_one_sample, {}), (wilcoxon_signed_rank, {"conf_int": conf_int})):
                    res, why = _safe(fn, x.to_numpy(), **kw)
                    rows.append(_row(name, "within", site, measure, g, res, why))
            for g, ref in coding.comparisons:
                name = difference_name(site, measure, endpoint_month, (g, ref))
                xr, xn = groups[g].to_numpy(), groups[ref].to_numpy()
                for fn, kw in ((t_test_welch, {}), (wilcoxon_rank_sum, {"conf_int": conf_int})):
                    res, why = _safe(fn, xr, xn, **kw)
                    rows.append(_row(name, "between", site, measure, f"{g} - {ref}", res, why))
    if secondary:
        for col, label in SECONDARY.items():
            if col not in comp.columns:
                continue
            d = _change(comp, col, endpoint_month).dropna()
            name = f"{label}, all completers, change to month {endpoint_month:g}"
            for fn, kw in ((t_test_one_sample, {}), (wilcoxon_signed_rank, {"conf_int": conf_int})):
                res, why = _safe(fn, d.to_numpy(), **kw)
                rows.append(_row(name, "secondary", "", col, "all", res, why))
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    return CompletersResult(table=table, analysis_set=[str(p) for p in comp_ids],
                            strategy=assignment.describe(), excluded=assignment.excluded)
