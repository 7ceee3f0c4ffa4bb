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

* :math:`\delta_g` the *additive* delta, a rate per year after dropout: ``unit="pct"`` in
  percentage points of baseline BMD per year (so :math:`\delta = -2` means 2% of baseline BMD lost
  per year beyond what MAR predicts), ``unit="abs"`` in g/cm^2 per year;
* :math:`\kappa_i` converts that unit to the imputation outcome (1 when they agree; :math:`100/b_i`
  for g/cm^2 on the % scale; :math:`b_i/100` for % on the g/cm^2 scale, :math:`b_i` the baseline);
* :math:`s_g \ge 0` the *multiplicative* delta on the imputed change from baseline (``1``: none;
  :math:`1.5`: the imputed change is 50% larger; SAS ``PROC MI``'s ``MNAR ADJUST(SCALE=)``).

Observed values are never changed. As in rbmi (``delta`` of ``impute``/``analyse``), the
adjustment is applied after the imputation and does not propagate to later visits through the
imputation model, so one set of imputations serves every delta (which is what makes the tipping
point grid of :mod:`analysis.sensitivity.tipping` cheap) and :math:`\delta = 0, s = 1` reproduces
the unadjusted analysis exactly.

The pattern-mixture assumption being probed is: the post-dropout distribution of a group is its MAR
prediction shifted by :math:`\delta_g` per year (and scaled by :math:`s_g`). Negative deltas encode
"dropouts lost more bone than similar patients who stayed" (e.g. stopping baricitinib for lack of
efficacy); positive deltas the opposite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

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

__all__ = ["DeltaScenario", "DEFAULT_SCENARIOS", "UNITS", "TABLE_COLUMNS", "delta_shift", "apply_delta",
           "delta_analysis", "delta_from_config"]

UNITS = ("pct", "abs")
UNIT_TEXT = {"pct": "%/yr", "abs": "g/cm^2/yr"}
TABLE_COLUMNS = ["site", "scenario", "delta_non_responders", "delta_responders", "scale_non_responders",
                 "scale_responders", "unit", "base_strategy", "estimand", "group", "estimate", "se", "df",
                 "ci_low", "ci_high", "p", "fmi", "mc_se", "m", "n", "n_imputed", "method"]


@dataclass(frozen=True)
class DeltaScenario:
    r"""One delta adjustment of the post-dropout imputed values.

    Parameters
    ----------
    non_responders, responders : float
        Additive :math:`\delta_g` per year after dropout, in ``unit``.
    scale_non_responders, scale_responders : float
        Multiplicative :math:`s_g \ge 0` on the imputed change from baseline.
    unit : {"pct", "abs"}
        % of baseline BMD per year, or g/cm^2 per year.
    label : str, optional
        Name in tables and figures (default: built from the values).
    """

    non_responders: float = 0.0
    responders: float = 0.0
    scale_non_responders: float = 1.0
    scale_responders: float = 1.0
    unit: Literal["pct", "abs"] = "pct"
    label: str | None = None

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        for name in ("non_responders", "responders"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"delta for {name} must be finite, got {getattr(self, name)}")
        for name in ("scale_non_responders", "scale_responders"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")

    @property
    def is_null(self) -> bool:
        """No adjustment (MAR or the base strategy as imputed)."""
        return (self.non_responders == 0 and self.responders == 0 and self.scale_non_responders == 1
                and self.scale_responders == 1)

    def settings(self) -> dict[str, Any]:
        """The scenario as recorded in a result's settings (its name as ``label``)."""
        return {"label": self.name(), "non_responders": self.non_responders, "responders": self.responders,
                "scale_non_responders": self.scale_non_responders, "scale_responders": self.scale_responders,
                "unit": self.unit}

    def name(self) -> str:
        if self.label:
            return self.label
        if self.is_null:
            return "no adjustment"
        parts = []
        u = UNIT_TEXT[self.unit]
        if self.non_responders or self.responders:
            parts.append(f"NR {self.non_responders:+g}, R {self.responders:+g} {u}")
        if self.scale_non_responders != 1 or self.scale_responders != 1:
            parts.append(f"NR x{self.scale_non_responders:g}, R x{self.scale_responders:g}")
        return "; ".join(parts)


#: The default scenarios: MAR; everybody worse by 1 and 2 %/yr; only non-responder dropouts worse
#: (lack of efficacy) or better; only responder dropouts worse (challenges the difference); the
#: imputed change 1.5 times larger; everybody worse by 0.01 g/cm^2/yr.
DEFAULT_SCENARIOS: tuple[DeltaScenario, ...] = (
    DeltaScenario(label="MAR (no adjustment)"),
    DeltaScenario(-1.0, -1.0),
    DeltaScenario(-2.0, -2.0),
    DeltaScenario(-2.0, 0.0),
    DeltaScenario(2.0, 0.0),
    DeltaScenario(0.0, -2.0),
    DeltaScenario(scale_non_responders=1.5, scale_responders=1.5),
    DeltaScenario(-0.01, -0.01, unit="abs"),
)


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


def apply_delta(values: np.ndarray, data: SiteData, scenario: DeltaScenario) -> np.ndarray:
    r"""Delta-adjusted copy of completed datasets.

    Parameters
    ----------
    values : ndarray, shape (..., n, m)
        Completed outcome values of ``data`` (e.g. ``ReferenceImputation.values["MAR"]``).
    data : SiteData
    scenario : DeltaScenario

    Returns
    -------
    ndarray
        :math:`s_g \hat y_{ij} + \delta_g \kappa_i (t_j - t_{d_i})/12` at post-dropout visits, the
        input elsewhere.
    """
    values = np.asarray(values, dtype=float)
    if values.shape[-2:] != data.y.shape:
        raise ValueError(f"values must end in the data's shape {data.y.shape}, got {values.shape}")
    resp = data.group == 1
    delta = np.where(resp, scenario.responders, scenario.non_responders)[:, None]
    scale = np.where(resp, scenario.scale_responders, scenario.scale_non_responders)[:, None]
    adjusted = scale * values + delta * delta_shift(data, scenario.unit)
    return np.where(data.post, adjusted, values)


def delta_analysis(derived: pd.DataFrame, scenarios: Sequence[DeltaScenario] = DEFAULT_SCENARIOS,
                   sites: Sequence[str] = ("spine", "femoral_neck"), base_strategy: str = "MAR",
                   reference: str = "non-responder", m: int = DEFAULT_M, seed: int = 0,
                   draws: Literal["normal", "bootstrap"] = "normal", outcome: str = "pct",
                   undefined: str = "last_observed", rule: ResponderRule | None = None,
                   covariates: Sequence[str] = (), endpoint_month: float = 12, level: float = 0.95,
                   label: str | None = None) -> SensitivityResult:
    """Delta-adjusted MI: impute once per site, adjust by every scenario, analyse and pool.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    scenarios : sequence of DeltaScenario
    sites : sequence of str
    base_strategy : {"MAR", "J2R", "CR", "CIR", "LMCF"}
        Imputation the deltas are applied to (MAR: the classical delta-adjusted pattern mixture).
    reference, m, seed, draws, outcome, undefined, rule, covariates
        As :func:`analysis.sensitivity.mmrm_imputation.impute_reference_based`; with the same
        ``seed`` and ``m`` the unadjusted scenario equals the ``base_strategy`` row there.
    endpoint_month, level
        Endpoint and confidence level.
    label : str, optional
        Printed on the figure.

    Returns
    -------
    SensitivityResult
        Name ``"delta"``; ``table`` one row per site, scenario and estimand (:data:`TABLE_COLUMNS`).
    """
    scenarios, sites = tuple(scenarios), tuple(sites)
    if not scenarios:
        raise ValueError("scenarios must hold at least one DeltaScenario")
    if not all(isinstance(s, DeltaScenario) for s in scenarios):
        raise ValueError("scenarios must be DeltaScenario objects")
    if not sites:
        raise ValueError("sites must name at least one DXA site")
    names = [s.name() for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique, got {names}")
    check_imputation_args(m, draws, reference, (base_strategy,))
    rows, draws_out, excluded, notes = [], {}, {}, []
    for site in sites:
        imp = impute_reference_based(derived, site, (base_strategy,), reference, m, seed, draws, outcome,
                                     undefined, rule, covariates)
        d = imp.data
        j = d.visit_index(endpoint_month)
        imputed = ~d.observed[:, j]
        excluded[site] = list(d.excluded)
        notes += [f"{site}: {n}" for n in imp.notes]
        for sc, name in zip(scenarios, names):
            pct = d.to_pct(apply_delta(imp.values[base_strategy], d, sc)[:, :, j])
            pooled = endpoint_analysis(pct, d.group, site, endpoint_month, level)
            extra = {"scenario": name, "delta_non_responders": sc.non_responders, "delta_responders": sc.responders,
                     "scale_non_responders": sc.scale_non_responders, "scale_responders": sc.scale_responders,
                     "unit": sc.unit, "base_strategy": base_strategy,
                     "method": f"MI {base_strategy} + delta ({name}), m={m}"}
            rows += pooled_table_rows(pooled, site, endpoint_month, d.group, imputed, extra)
            for key, (q, _, _) in per_imputation_estimates(pct, d.group).items():
                draws_out[f"{name} | {site} | {key}"] = q
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    text = [f"Delta-adjusted pattern mixture: {m} imputations per site under {base_strategy} (MMRM of the "
            f"{'% change' if outcome == 'pct' else 'change in g/cm^2'}, as the reference-based analysis), then every "
            "post-dropout imputed value shifted by delta per year since the last observed DXA (additive, in % of "
            "baseline or g/cm^2 per year) and/or its change from baseline multiplied by a scale, separately for "
            "non-responders (NR) and responders (R); observed values unchanged; Rubin's rules. Negative deltas: "
            "dropouts lost more bone than MAR predicts."]
    for site in sites:
        for key in ("difference", "non-responder", "responder"):
            sub = table[(table["site"] == site) & (table["group"] == key)]
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
                          f"Delta-adjusted MI ({base_strategy} + delta), % change to month {endpoint_month:g}", label)
    return SensitivityResult(
        name="delta", title="Delta-adjusted pattern mixture (MNAR) by multiple imputation", table=table, text=text,
        figures={"sensitivity_delta": fig},
        forest_rows=forest_rows(table, "MI " + base_strategy + " + delta: " + table["scenario"]),
        settings={"sites": list(sites), "scenarios": [s.settings() for s in scenarios],
                  "base_strategy": base_strategy, "reference": reference, "m": int(m), "seed": int(seed),
                  "draws": draws, "outcome": outcome, "undefined": undefined, "covariates": list(covariates),
                  "endpoint_month": endpoint_month, "level": level, "excluded": excluded},
        draws=draws_out)


def delta_from_config(derived: pd.DataFrame, config: Any) -> SensitivityResult:
    """:func:`delta_analysis` with the default scenarios and a run configuration's settings."""
    opts, notes = mi_options_from_config(config)
    res = delta_analysis(derived, **opts)
    res.text = notes + res.text
    return res

