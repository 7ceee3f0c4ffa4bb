r"""Delta-adjusted pattern-mixture sensitivity analysis by multiple imputation.

MAR says that a patient who dropped out would have continued like comparable patients who stayed.
The delta adjustment says: *worse (or better) by* :math:`\delta`. The completed datasets of
:mod:`analysis.sensitivity.mmrm_imputation` (MAR by default, or any reference-based strategy) are
adjusted at every post-dropout visit :math:`j` of patient :math:`i` in group :math:`g` (visits after
the last observed DXA month :math:`t_{d_i}`, see :mod:`analysis.sensitivity.imputation_strategies`),
then analysed and pooled as in :mod:`analysis.sensitivity.reference_based`
(:mod:`analysis.sensitivity.mi_reporting`):

.. math::

    \tilde y_{ij} = s_g\,\hat y_{ij} + \delta_g\,\kappa_i\,\frac{t_j - t_{d_i}}{12},

* :math:`g` the patient's group (a level of the design, :mod:`analysis.sensitivity.design`: an
  arm, a dose, responders or non-responders, or the one group of a single-arm study);
* :math:`\delta_g` the *additive* delta of the group, a rate per year after dropout: ``unit="pct"``
  in percentage points of baseline BMD per year (so :math:`\delta = -2` means 2% of baseline BMD
  lost per year beyond what MAR predicts), ``unit="abs"`` in g/cm^2 per year;
* :math:`\kappa_i` converts that unit to the imputation outcome (1 when they agree; :math:`100/b_i`
  for g/cm^2 on the % scale; :math:`b_i/100` for % on the g/cm^2 scale, :math:`b_i` the baseline);
* :math:`s_g \ge 0` the *multiplicative* delta on the imputed change from baseline (``1``: none;
  :math:`1.5`: the imputed change is 50% larger; SAS ``PROC MI``'s ``MNAR ADJUST(SCALE=)``).

A :class:`DeltaScenario` gives one delta (and scale) to the reference group and one to every other
group, optionally overridden per level (``by_level``); in a single-arm study the reference's
values apply to the one group.

Observed values are never changed. As in rbmi (``delta`` of ``impute``/``analyse``), the
adjustment is applied after the imputation and does not propagate to later visits through the
imputation model, so one set of imputations serves every delta (which is what makes the tipping
point grid of :mod:`analysis.sensitivity.tipping` cheap) and :math:`\delta = 0, s = 1` reproduces
the unadjusted analysis exactly.

The pattern-mixture assumption being probed is: the post-dropout distribution of a group is its MAR
prediction shifted by :math:`\delta_g` per year (and scaled by :math:`s_g`). Negative deltas encode
"dropouts lost more bone than similar patients who stayed" (e.g. stopping treatment for lack of
efficacy); positive deltas the opposite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.sensitivity.design import sensitivity_design
from analysis.sensitivity.mi_reporting import (
    CI_PHRASE,
    ci_conclusion,
    endpoint_analysis,
    forest_rows,
    interval_figure,
    mi_options_from_config,
    per_imputation_estimates,
    pooled_table_rows,
)
from analysis.sensitivity.mmrm_imputation import (
    DEFAULT_M,
    check_imputation_args,
    impute_reference_based,
)
from analysis.sensitivity.result import SensitivityResult
from analysis.sensitivity.site_data import SiteData
from analysis.study.clinical import ResponderRule
from analysis.study.estimands import GROUP_LABELS

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_SCENARIOS",
    "UNITS",
    "DeltaScenario",
    "apply_delta",
    "default_scenarios",
    "delta_analysis",
    "delta_from_config",
    "delta_shift",
    "table_columns",
]

UNITS = ("pct", "abs")
UNIT_TEXT = {"pct": "%/yr", "abs": "g/cm^2/yr"}
#: Columns of the delta table around the per-level ``delta_<level>`` and ``scale_<level>`` columns
#: (:func:`table_columns`).
BASE_COLUMNS = ["site", "scenario", "unit", "base_strategy", "estimand", "group", "comparison", "estimate", "se",
                "df", "ci_low", "ci_high", "p", "fmi", "mc_se", "m", "n", "n_imputed", "method"]


def table_columns(levels) -> list[str]:
    """The delta table's columns for groups ``levels``: ``site, scenario``, ``delta_<level>`` and
    ``scale_<level>`` per level, then :data:`BASE_COLUMNS`."""
    return (BASE_COLUMNS[:2] + [f"delta_{lv}" for lv in levels] + [f"scale_{lv}" for lv in levels]
            + BASE_COLUMNS[2:])


@dataclass(frozen=True)
class DeltaScenario:
    r"""One delta adjustment of the post-dropout imputed values.

    Parameters
    ----------
    reference, others : float
        Additive :math:`\delta_g` per year after dropout, in ``unit``: of the reference group (in a
        single-arm study, of the one group) and of every other group.
    scale_reference, scale_others : float
        Multiplicative :math:`s_g \ge 0` on the imputed change from baseline, likewise.
    unit : {"pct", "abs"}
        % of baseline BMD per year, or g/cm^2 per year.
    label : str, optional
        Name in tables and figures (default: built from the values).
    by_level, scale_by_level : tuple of (str, float)
        Per-level deltas and scales that override the two above (e.g. one per dose of a 3-arm study).
    """

    reference: float = 0.0
    others: float = 0.0
    scale_reference: float = 1.0
    scale_others: float = 1.0
    unit: Literal["pct", "abs"] = "pct"
    label: str | None = None
    by_level: tuple[tuple[str, float], ...] = ()
    scale_by_level: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        object.__setattr__(self, "by_level", tuple((str(k), float(v)) for k, v in dict(self.by_level).items()))
        object.__setattr__(self, "scale_by_level",
                           tuple((str(k), float(v)) for k, v in dict(self.scale_by_level).items()))
        deltas = [("reference", self.reference), ("others", self.others)] + [(f"by_level[{k}]", v)
                                                                             for k, v in self.by_level]
        for name, v in deltas:
            if not np.isfinite(v):
                raise ValueError(f"delta for {name} must be finite, got {v}")
        scales = [("scale_reference", self.scale_reference), ("scale_others", self.scale_others)] + [
            (f"scale_by_level[{k}]", v) for k, v in self.scale_by_level]
        for name, v in scales:
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")

    def delta_of(self, level: str, reference: str) -> float:
        r""":math:`\delta_g` of ``level`` when ``reference`` is the reference level."""
        own = dict(self.by_level)
        return own[level] if level in own else (self.reference if level == reference else self.others)

    def scale_of(self, level: str, reference: str) -> float:
        """:math:`s_g` of ``level`` when ``reference`` is the reference level."""
        own = dict(self.scale_by_level)
        return own[level] if level in own else (self.scale_reference if level == reference else self.scale_others)

    def check_levels(self, levels) -> None:
        """``ValueError`` for a per-level value of a level the design does not have."""
        bad = [k for k, _ in (*self.by_level, *self.scale_by_level) if k not in tuple(levels)]
        if bad:
            raise ValueError(f"delta scenario {self.name()!r}: {bad[0]!r} is not a group of the study "
                             f"({', '.join(levels)})")

    def is_null_for(self, levels) -> bool:
        """No adjustment of any of ``levels`` (reference first)."""
        ref = levels[0]
        return all(self.delta_of(lv, ref) == 0 and self.scale_of(lv, ref) == 1 for lv in levels)

    @property
    def is_null(self) -> bool:
        """No adjustment at all (MAR or the base strategy as imputed)."""
        return (self.reference == 0 and self.others == 0 and self.scale_reference == 1 and self.scale_others == 1
                and all(v == 0 for _, v in self.by_level) and all(v == 1 for _, v in self.scale_by_level))

    def settings(self, levels=None) -> dict[str, Any]:
        """The scenario as recorded in a result's settings (its name as ``label``)."""
        out = {"label": self.name(levels), "reference": self.reference, "others": self.others,
               "scale_reference": self.scale_reference, "scale_others": self.scale_others, "unit": self.unit,
               "by_level": dict(self.by_level), "scale_by_level": dict(self.scale_by_level)}
        if levels:
            out["deltas"] = {lv: self.delta_of(lv, levels[0]) for lv in levels}
            out["scales"] = {lv: self.scale_of(lv, levels[0]) for lv in levels}
        return out

    def name(self, levels=None) -> str:
        """The label, else the values: per level when ``levels`` (reference first) are given, else by
        role (``"ref -2, others +0 %/yr"``)."""
        if self.label:
            return self.label
        if self.is_null if levels is None else self.is_null_for(levels):
            return "no adjustment"
        u = UNIT_TEXT[self.unit]
        if levels is None:
            d = [("ref", self.reference), ("others", self.others), *self.by_level]
            s = [("ref", self.scale_reference), ("others", self.scale_others), *self.scale_by_level]
        else:
            d = [(GROUP_LABELS.get(lv, lv), self.delta_of(lv, levels[0])) for lv in levels]
            s = [(GROUP_LABELS.get(lv, lv), self.scale_of(lv, levels[0])) for lv in levels]
        single = levels is not None and len(levels) == 1
        parts = []
        if any(v != 0 for _, v in d):
            parts.append(f"{d[0][1]:+g} {u}" if single else ", ".join(f"{k} {v:+g}" for k, v in d) + f" {u}")
        if any(v != 1 for _, v in s):
            parts.append(f"x{s[0][1]:g}" if single else ", ".join(f"{k} x{v:g}" for k, v in s))
        return "; ".join(parts)


#: The default scenarios for a study with a reference group: MAR; everybody worse by 1 and 2 %/yr;
#: only the reference's dropouts worse (e.g. lack of efficacy) or better; only the other groups'
#: dropouts worse (challenges the differences); the imputed change 1.5 times larger; everybody worse
#: by 0.01 g/cm^2/yr.
DEFAULT_SCENARIOS: tuple[DeltaScenario, ...] = (
    DeltaScenario(label="MAR (no adjustment)"),
    DeltaScenario(-1.0, -1.0),
    DeltaScenario(-2.0, -2.0),
    DeltaScenario(-2.0, 0.0),
    DeltaScenario(2.0, 0.0),
    DeltaScenario(0.0, -2.0),
    DeltaScenario(scale_reference=1.5, scale_others=1.5),
    DeltaScenario(-0.01, -0.01, unit="abs"),
)


def default_scenarios(single_arm: bool = False) -> tuple[DeltaScenario, ...]:
    """:data:`DEFAULT_SCENARIOS`; for a single arm the distinct ones of its one group (MAR, -1, -2 and
    +2 %/yr, x1.5, -0.01 g/cm^2/yr)."""
    if not single_arm:
        return DEFAULT_SCENARIOS
    return (DeltaScenario(label="MAR (no adjustment)"), DeltaScenario(-1.0), DeltaScenario(-2.0), DeltaScenario(2.0),
            DeltaScenario(scale_reference=1.5), DeltaScenario(-0.01, unit="abs"))


def delta_shift(data: SiteData, unit: str = "pct") -> np.ndarray:
    r"""``(n, m)``: the shift of each value per unit of :math:`\delta`, on the outcome scale.

    :math:`\kappa_i (t_j - t_{d_i})/12` at post-dropout visits, 0 at observed and intermittently
    missing visits (module docstring).
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if unit == "pct":
        kappa = np.ones_like(data.baseline) if data.outcome == "pct" else data.baseline / 100.0
    else:
        kappa = 100.0 / data.baseline if data.outcome == "pct" else np.ones_like(data.baseline)
    return data.years_since_last * kappa[:, None]


def apply_delta(values: np.ndarray, data: SiteData, scenario: DeltaScenario, visit: int | None = None) -> np.ndarray:
    r"""Delta-adjusted copy of completed datasets.

    Parameters
    ----------
    values : ndarray, shape (..., n, m), or (..., n) with ``visit``
        Completed outcome values of ``data`` (e.g. ``ReferenceImputation.values["MAR"]``), or their
        values at one visit.
    data : SiteData
    scenario : DeltaScenario
    visit : int, optional
        ``values`` are those of this visit (its index in ``data.months``) only: the adjustment of one
        visit depends on that visit alone, so an analysis of the endpoint adjusts the endpoint's
        values (``M x n``) rather than every visit's (``M x n x m``, and its temporaries: 500
        imputations of 50,000 patients at four visits are 0.8 GB each).

    Returns
    -------
    ndarray
        :math:`s_g \hat y_{ij} + \delta_g \kappa_i (t_j - t_{d_i})/12` at post-dropout visits, the
        input elsewhere.
    """
    values = np.asarray(values, dtype=float)
    shape = data.y.shape if visit is None else data.y.shape[:1]
    if values.shape[values.ndim - len(shape):] != shape:
        raise ValueError(f"values must end in the data's shape {shape}, got {values.shape}")
    ref = data.levels[0]
    deltas = np.array([scenario.delta_of(lv, ref) for lv in data.levels])
    scales = np.array([scenario.scale_of(lv, ref) for lv in data.levels])
    delta, scale = deltas[data.group], scales[data.group]
    shift, post = delta_shift(data, scenario.unit), data.post
    if visit is None:
        delta, scale = delta[:, None], scale[:, None]
    else:
        shift, post = shift[:, visit], post[:, visit]
    adjusted = scale * values + delta * shift
    return np.where(post, adjusted, values)


def delta_analysis(derived: pd.DataFrame, scenarios: Sequence[DeltaScenario] | None = None,
                   sites: Sequence[str] | None = None, base_strategy: str = "MAR",
                   reference: str | None = None, m: int = DEFAULT_M, seed: int = 0,
                   draws: Literal["normal", "bootstrap"] = "normal", outcome: str = "pct",
                   undefined: str = "last_observed", rule: ResponderRule | None = None,
                   covariates: Sequence[str] = (), endpoint_month: float | None = None, level: float = 0.95,
                   label: str | None = None, design: Any = None) -> SensitivityResult:
    """Delta-adjusted MI: impute once per site, adjust by every scenario, analyse and pool.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    scenarios : sequence of DeltaScenario, optional
        Default :func:`default_scenarios` of the design.
    sites : sequence of str, optional
        Default: the design's.
    base_strategy : {"MAR", "J2R", "CR", "CIR", "LMCF"}
        Imputation the deltas are applied to (MAR: the classical delta-adjusted pattern mixture).
    reference, m, seed, draws, outcome, undefined, rule, covariates
        As :func:`analysis.sensitivity.mmrm_imputation.impute_reference_based`; with the same
        ``seed`` and ``m`` the unadjusted scenario equals the ``base_strategy`` row there.
    endpoint_month, level
        Endpoint (default: the design's) and confidence level.
    label : str, optional
        Printed on the figure.
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).

    Returns
    -------
    SensitivityResult
        Name ``"delta"``; ``table`` one row per site, scenario and estimand (:func:`table_columns`).
    """
    sd = sensitivity_design(derived, design, sites, endpoint_month)
    scenarios = tuple(default_scenarios(sd.single_arm) if scenarios is None else scenarios)
    sites, endpoint_month = sd.sites, sd.endpoint
    if not scenarios:
        raise ValueError("scenarios must hold at least one DeltaScenario")
    if not all(isinstance(s, DeltaScenario) for s in scenarios):
        raise ValueError("scenarios must be DeltaScenario objects")
    for sc in scenarios:
        sc.check_levels(sd.levels)
    names = [s.name(sd.levels) for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique, got {names}")
    reference = sd.levels[0] if reference is None else reference
    check_imputation_args(m, draws, reference, (base_strategy,), sd.levels)
    columns = table_columns(sd.levels)
    rows, draws_out, excluded, notes = [], {}, {}, []
    for site in sites:
        imp = impute_reference_based(derived, site, (base_strategy,), reference, m, seed, draws, outcome,
                                     undefined, rule, covariates, sd.design, keep_month=endpoint_month)
        d = imp.data
        j = d.visit_index(endpoint_month)
        imputed = ~d.observed[:, j]
        excluded[site] = list(d.excluded)
        notes += [f"{site}: {n}" for n in imp.notes]
        for sc, name in zip(scenarios, names):
            pct = d.to_pct(apply_delta(imp.at_visit(base_strategy, endpoint_month), d, sc, visit=j))
            pooled = endpoint_analysis(pct, d.group, site, endpoint_month, level, levels=d.levels)
            extra = {"scenario": name, "unit": sc.unit, "base_strategy": base_strategy,
                     "method": f"MI {base_strategy} + delta ({name}), m={m}",
                     **{f"delta_{lv}": sc.delta_of(lv, d.levels[0]) for lv in d.levels},
                     **{f"scale_{lv}": sc.scale_of(lv, d.levels[0]) for lv in d.levels}}
            rows += pooled_table_rows(pooled, site, endpoint_month, d.group, imputed, extra, d.levels)
            for key, (q, _, _) in per_imputation_estimates(pct, d.group, d.levels).items():
                draws_out[f"{name} | {site} | {key}"] = q
    table = pd.DataFrame(rows, columns=columns)
    who = ("for the dropouts of the one group" if sd.single_arm else
           "separately for the " + " and ".join(GROUP_LABELS.get(lv, lv) for lv in sd.levels) + " (the reference "
           "first in the scenario names)")
    text = [f"Delta-adjusted pattern mixture: {m} imputations per site under {base_strategy} (MMRM of the "
            f"{'% change' if outcome == 'pct' else 'change in g/cm^2'}, as the reference-based analysis), then every "
            "post-dropout imputed value shifted by delta per year since the last observed DXA (additive, in % of "
            f"baseline or g/cm^2 per year) and/or its change from baseline multiplied by a scale, {who}; observed "
            "values unchanged; Rubin's rules. Negative deltas: dropouts lost more bone than MAR predicts."]
    keys = [("difference", lv + " - " + sd.levels[0]) for lv in sd.levels[1:]] + [(lv, "") for lv in sd.levels]
    for site in sites:
        for g, cmp in keys:
            sub = table[(table["site"] == site) & (table["group"] == g) & (table["comparison"] == cmp)]
            states = [ci_conclusion(r) for _, r in sub.iterrows()]
            base = states[0]
            changed = [f"{r['scenario']} ({r['estimate']:.2f}, {r['ci_low']:.2f} to {r['ci_high']:.2f})"
                       for (_, r), st in zip(sub.iterrows(), states) if st != base]
            head = (f"{sub['estimand'].iloc[0]}: under '{sub['scenario'].iloc[0]}' {sub['estimate'].iloc[0]:.2f} "
                    f"({sub['ci_low'].iloc[0]:.2f} to {sub['ci_high'].iloc[0]:.2f}), 95% CI {CI_PHRASE[base]}")
            text.append(head + ("; the same in every scenario." if not changed else
                                "; the conclusion changes under " + "; ".join(changed) + "."))
    text.append("Each adjustment is applied after imputation and does not feed back into the imputation of later "
                "visits (as rbmi's delta); the tipping-point analysis maps the additive deltas on a grid.")
    text += notes
    fig = interval_figure(table, "scenario", names, sites,
                          f"Delta-adjusted MI ({base_strategy} + delta), % change to month {endpoint_month:g}", label,
                          levels=sd.levels)
    return SensitivityResult(
        name="delta", title="Delta-adjusted pattern mixture (MNAR) by multiple imputation", table=table, text=text,
        figures={"sensitivity_delta": fig},
        forest_rows=forest_rows(table, "MI " + base_strategy + " + delta: " + table["scenario"]),
        settings={"sites": list(sites), "scenarios": [s.settings(sd.levels) for s in scenarios],
                  "groups": list(sd.levels), "base_strategy": base_strategy, "reference": reference, "m": int(m),
                  "seed": int(seed), "draws": draws, "outcome": outcome, "undefined": undefined,
                  "covariates": list(covariates), "endpoint_month": endpoint_month, "level": level,
                  "excluded": excluded},
        draws=draws_out)


def delta_from_config(derived: pd.DataFrame, config: Any, design: Any = None) -> SensitivityResult:
    """:func:`delta_analysis` with the default scenarios and a run configuration's settings."""
    opts, notes = mi_options_from_config(config, derived, design)
    res = delta_analysis(derived, **opts)
    res.text = notes + res.text
    return res
