"""The estimand in ICH E9(R1) words: its attributes as a table and a paragraph for the methods text.

Reads an ``[estimand]`` table (:class:`analysis.run.estimand_config.EstimandConfig`) by attribute
(``population``, ``variable``, ``treatment``, ``summary``, ``strategy``, ``default_strategy``,
``delta``); unset attributes are written from the study's design.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.study.estimands import site_label
from analysis.study.ice_strategy import strategy_words
from analysis.study.ice_table import IceTable

__all__ = ["ATTRIBUTES", "DEFAULT_ESTIMAND", "estimand_table", "estimand_text"]

ATTRIBUTES = ("treatment", "population", "variable", "intercurrent events", "summary")


class _DerivedIce:
    """The ICE source of an estimand that names none: "discontinued" derived from missing follow-up."""

    source = "derived"


class _Defaults:
    """An ``[estimand]`` table with nothing set."""

    population = variable = treatment = summary = None
    strategy: dict[str, str] = {}  # noqa: RUF012 - read only
    default_strategy = "MAR"
    delta: tuple = ()
    ice = _DerivedIce()


#: The estimand of a plan without an ``[estimand]`` table (read-only; duck-types ``EstimandConfig``).
DEFAULT_ESTIMAND = _Defaults()


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _defaults(design: Any, sites: Any = None, outcome: str | None = None) -> dict[str, str]:
    levels = list(design.group_levels)
    comparisons = list(design.comparisons)
    measure = {"pct": "percentage change", "change": "change"}.get(outcome or "", "change")
    sites = _and([site_label(s) for s in (sites or design.sites)])
    return {
        "population": (f"all patients with a baseline and a group ({', '.join(levels)})" if levels
                       else "all patients with a baseline visit"),
        "variable": f"{measure} from baseline in {sites} BMD at month {float(design.endpoint):g}",
        "treatment": (f"{', '.join(lvl for lvl, _ in comparisons)} vs {design.reference}" if comparisons
                      else "the study treatment (single arm)"),
        "summary": ("; ".join(f"difference in means ({lvl} \u2212 {ref})" for lvl, ref in comparisons)
                    if comparisons else "mean change from baseline"),
    }


def _ice_lines(cfg: Any, ice: IceTable | None) -> list[tuple[str, int, str]]:
    """(type, patients, strategy text) per ICE type present, then per type the plan lists."""
    out = []
    seen = set()
    if ice is not None and len(ice):
        r = ice.resolved(cfg.strategy, cfg.default_strategy)
        for ice_type, grp in r.groupby("ice_type", sort=False):
            per = grp.drop_duplicates("patient_id")["strategy"].value_counts(sort=False)
            text = (strategy_words(per.index[0]) if len(per) == 1
                    else ", ".join(f"{s} for {n}" for s, n in per.items()))
            out.append((str(ice_type), int(grp["patient_id"].nunique()), text))
            seen.add(ice_type)
    for ice_type, strategy in cfg.strategy.items():
        if ice_type not in seen:
            out.append((ice_type, 0, strategy_words(strategy)))
    return out


def _plural(n: int) -> str:
    return "no patients" if n == 0 else f"{n} patient{'s' if n != 1 else ''}"


def estimand_table(cfg: Any, design: Any, ice: IceTable | None, *, sites: Any = None,
                   outcome: str | None = None) -> pd.DataFrame:
    """The estimand's attributes (ICH E9(R1)) as a table.

    Parameters
    ----------
    cfg : EstimandConfig, optional
        The ``[estimand]`` table (``None``: all defaults).
    design : ResolvedDesign
        The study's design: unset attributes are written from its group levels, reference, sites and
        endpoint.
    ice : IceTable, optional
        The study's intercurrent events.
    sites : sequence of str, optional
        The analysed sites (default: the design's).
    outcome : {"pct", "change"}, optional
        The variable's scale: % change or change from baseline (default: change).

    Returns
    -------
    DataFrame
        Columns ``attribute`` (one of :data:`ATTRIBUTES`) and ``description``; ``intercurrent
        events`` has one row per ICE type present (with its number of patients) and per type the plan
        names, with its strategy, or one row "none recorded".
    """
    cfg = cfg or _Defaults()
    auto = _defaults(design, sites, outcome)
    rows = [("treatment", cfg.treatment or auto["treatment"]),
            ("population", cfg.population or auto["population"]),
            ("variable", cfg.variable or auto["variable"])]
    lines = _ice_lines(cfg, ice)
    ice_rows = [("intercurrent events", f"{t} ({_plural(n)}): {text}") for t, n, text in lines]
    rows += ice_rows or [("intercurrent events", "none recorded")]
    rows.append(("summary", cfg.summary or auto["summary"]))
    return pd.DataFrame(rows, columns=["attribute", "description"])


def estimand_text(cfg: Any, design: Any, ice: IceTable | None, *, sites: Any = None,
                  outcome: str | None = None) -> list[str]:
    """The estimand for the methods section: one paragraph of its attributes, one of the intercurrent
    events and their strategies, and one of the delta adjustments when there are any.

    Parameters
    ----------
    cfg, design, ice
        As :func:`estimand_table`.

    Returns
    -------
    list of str
        The paragraphs.
    """
    cfg = cfg or _Defaults()
    table = estimand_table(cfg, design, ice, sites=sites, outcome=outcome)
    attr = dict(zip(table["attribute"], table["description"]))
    out = [(f"The estimand follows ICH E9(R1). Treatment: {attr['treatment']}. Population: {attr['population']}. "
            f"Variable: {attr['variable']}. Population-level summary: {attr['summary']}.")]
    lines = _ice_lines(cfg, ice)
    source = f" Events were taken from {ice.source}." if ice is not None and len(ice) else ""
    if lines:
        parts = [f"{t} ({_plural(n)}): {text}" for t, n, text in lines]
        out.append(f"Intercurrent events and their strategies: {'; '.join(parts)}; events of other types: "
                   f"{strategy_words(cfg.default_strategy)}.{source} The first affected visit of each "
                   f"event is the first scheduled visit it can influence; missing values before it are missing at "
                   f"random.")
    else:
        out.append(f"No intercurrent events were recorded; missing values were imputed under the default strategy, "
                   f"{strategy_words(cfg.default_strategy)}.")
    if cfg.delta:
        out.append("Delta adjustment (sensitivity): imputed values after an intercurrent event were shifted by "
                   + "; ".join(d.describe() for d in cfg.delta) + ".")
    return out
