r"""Reference-based multiple imputation (Carpenter, Roger & Kenward 2013), as R's ``rbmi``.

After dropout, what would a patient's bone have done? Under MAR it keeps following the patient's
own group; reference-based strategies let it follow the design's *reference* group (placebo in a
trial, the non-responders in a responder study: "after dropout, patients follow the reference") in
one of several ways. The imputed datasets are analysed as the primary MI (mean % change per group,
Welch difference of every group with the reference) and pooled with Rubin's rules. A single-arm
study has no reference group, so the analysis does not apply there
(:class:`~analysis.study.applicability.NotApplicable`).

Imputation
----------
Per DXA site, an MMRM of the post-baseline outcomes :math:`y_i` (% change from baseline, or change
in g/cm^2) with group-by-visit cells, the baseline BMD and optional baseline covariates,

.. math::

    y_i \sim N\bigl(\mu_i(g_i), \Sigma\bigr), \qquad
    \mu_{ij}(g) = \alpha_{gj} + \gamma\, b_i + \eta^\top x_i,

:math:`\Sigma` unstructured, is fitted by REML on every observed value (MAR). Each imputation draws
its parameters :math:`(\beta_l, \Sigma_l)` (normal approximation of the REML estimates on the
log-Cholesky scale, or refits on stratified bootstrap resamples), sets the post-dropout means of
each strategy from the patient's own-group means :math:`a_j` and reference-group means :math:`c_j`,

=========  ==============================================  ==========================================
strategy   :math:`j \le d_i`                               :math:`j > d_i`
=========  ==============================================  ==========================================
``MAR``    :math:`a_j`                                     :math:`a_j`
``J2R``    :math:`a_j`                                     :math:`c_j` (jump to reference)
``CR``     :math:`c_j`                                     :math:`c_j` (copy reference, whole profile)
``CIR``    :math:`a_j`                                     :math:`a_{d} + c_j - c_{d}` (copy increments)
``LMCF``   :math:`a_j`                                     :math:`a_{d}` (last mean carried forward)
=========  ==============================================  ==========================================

(:math:`d_i` the last observed visit) and draws every missing value from the conditional normal
given the patient's observed values. The pieces:

* :mod:`analysis.sensitivity.site_data` — the site in wide form (:class:`SiteData`);
* :mod:`analysis.sensitivity.imputation_draws` — the MMRM and the parameter draws;
* :mod:`analysis.sensitivity.imputation_strategies` — the strategies' means, the conditional
  normal draw and the expected order of the strategies (J2R < CR < CIR < MAR for
  :math:`0 < \Sigma_{21}/\Sigma_{11} < 1`);
* :mod:`analysis.sensitivity.mmrm_imputation` — :func:`impute_reference_based`, which runs them.

Analysis and pooling
--------------------
Each completed dataset gives, at the endpoint month, the mean % change per group
(:math:`U = s_g^2/n_g`, complete-data df :math:`n_g - 1`) and every group's difference from the
reference (Welch), as :func:`analysis.frequentist.imputation.standard_analyses`; they are
pooled with :func:`analysis.frequentist.imputation.rubin_pool` (Barnard-Rubin df;
:mod:`analysis.sensitivity.mi_reporting`). Rubin's variance is known to be conservative for
reference-based estimators (it targets the variance under the MAR model; Seaman, White & Leacy
2014), so the intervals are, if anything, wide.

The group is a fixed per-patient level of the design (:func:`analysis.study.groups.assign_groups`);
in a responder study the ``"unknown"`` third group is not supported (patients must be in one of the
two groups), and patients the strategy excludes (no responder status) are listed in the result.

References
----------
Carpenter JR, Roger JH, Kenward MG (2013). Analysis of longitudinal trials with protocol deviation:
a framework for relevant, accessible assumptions, and inference via multiple imputation. *J
Biopharm Stat* 23:1352-1371. Gower-Page C, Noci A, Wolbers M (2022). rbmi: a R package for
standard and reference-based multiple imputation methods. *JOSS* 7:4251.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pandas as pd

from analysis.sensitivity.design import NotApplicable, sensitivity_design, site_label
from analysis.sensitivity.imputation_draws import DRAW_METHODS
from analysis.sensitivity.imputation_strategies import (
    STRATEGIES,
    STRATEGY_TEXT,
    impute_missing,
    strategy_means,
)
from analysis.sensitivity.mi_reporting import (
    CI_PHRASE,
    ci_conclusion,
    endpoint_analysis,
    endpoint_estimand_names,
    forest_rows,
    interval_figure,
    mi_options_from_config,
    per_imputation_estimates,
    pooled_table_rows,
)
from analysis.sensitivity.mmrm_imputation import (
    DEFAULT_M,
    ReferenceImputation,
    check_imputation_args,
    impute_reference_based,
)
from analysis.sensitivity.result import SensitivityResult
from analysis.sensitivity.site_data import SiteData, site_data
from analysis.study.clinical import ResponderRule
from analysis.study.estimands import GROUP_LABELS

__all__ = [
    "DEFAULT_M",
    "DRAW_METHODS",
    "STRATEGIES",
    "STRATEGY_TEXT",
    "TABLE_COLUMNS",
    "ReferenceImputation",
    "SiteData",
    "endpoint_analysis",
    "impute_missing",
    "impute_reference_based",
    "reference_based_analysis",
    "reference_based_from_config",
    "site_data",
    "strategy_means",
]

TABLE_COLUMNS = ["site", "strategy", "reference", "estimand", "group", "comparison", "estimate", "se", "df",
                 "ci_low", "ci_high", "p", "fmi", "mc_se", "m", "n", "n_imputed", "method"]


def reference_based_analysis(derived: pd.DataFrame, sites: Sequence[str] | None = None,
                             strategies: Sequence[str] = STRATEGIES, reference: str | None = None,
                             m: int = DEFAULT_M, seed: int = 0, draws: Literal["normal", "bootstrap"] = "normal",
                             outcome: str = "pct", undefined: str = "last_observed",
                             rule: ResponderRule | None = None, covariates: Sequence[str] = (),
                             endpoint_month: float | None = None, level: float = 0.95,
                             label: str | None = None, design: Any = None) -> SensitivityResult:
    """Reference-based MI of every site under each strategy, pooled by Rubin's rules.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    sites : sequence of str, optional
        Default: the design's.
    strategies, m, seed, draws, outcome, undefined, rule, covariates
        See :func:`analysis.sensitivity.mmrm_imputation.impute_reference_based`.
    reference : str, optional
        The group dropouts follow; default the design's reference level.
    endpoint_month : float, optional
        Month of the estimands (a DXA month); default the design's endpoint.
    level : float
        Confidence level.
    label : str, optional
        Printed on the figure (e.g. ``"SYNTHETIC (RAJAK digital twin)"``).
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).

    Returns
    -------
    SensitivityResult
        Name ``"reference_based"``; ``table`` has one row per site, strategy and estimand
        (:data:`TABLE_COLUMNS`); ``draws`` the per-imputation estimates ``"<strategy> | <estimand>"``.

    Raises
    ------
    NotApplicable
        A single-arm study (no reference group).
    """
    sd = sensitivity_design(derived, design, sites, endpoint_month)
    if sd.single_arm:
        raise NotApplicable("reference-based imputation (J2R, CR, CIR) needs a reference group, and a single-arm "
                            "study has one group; the delta and tipping-point analyses probe its dropout instead")
    sites, strategies, endpoint_month = sd.sites, tuple(strategies), sd.endpoint
    reference = sd.reference if reference is None else reference
    check_imputation_args(m, draws, reference, strategies, sd.levels)
    ref_label = GROUP_LABELS.get(reference, reference)
    others = [GROUP_LABELS.get(lv, lv) for lv in sd.levels if lv != reference]
    rows, draws_out, notes = [], {}, []
    excluded: dict[str, tuple[str, ...]] = {}
    counts: dict[str, dict[str, int]] = {}
    for site in sites:
        imp = impute_reference_based(derived, site, strategies, reference, m, seed, draws, outcome, undefined,
                                     rule, covariates, sd.design)
        d = imp.data
        j = d.visit_index(endpoint_month)
        imputed = ~d.observed[:, j]
        excluded[site] = d.excluded
        counts[site] = {lv: int((d.group == c).sum()) for c, lv in enumerate(d.levels)}
        counts[site].update({f"{lv} imputed": int(imputed[d.group == c].sum()) for c, lv in enumerate(d.levels)})
        notes += [f"{site}: {n}" for n in imp.notes]
        for s in strategies:
            pct = imp.endpoint_pct(s, endpoint_month)
            pooled = endpoint_analysis(pct, d.group, site, endpoint_month, level, levels=d.levels)
            method = (f"MI {s}" + ("" if s in ("MAR", "LMCF") else f" (reference {ref_label})") + f", m={m}")
            rows += pooled_table_rows(pooled, site, endpoint_month, d.group, imputed,
                                      {"strategy": s, "reference": reference, "method": method}, d.levels)
            names = endpoint_estimand_names(site, endpoint_month, d.levels)
            for key, (q, _, _) in per_imputation_estimates(pct, d.group, d.levels).items():
                draws_out[f"{s} | {names[key]}"] = q
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    text = [f"Reference-based multiple imputation (Carpenter, Roger & Kenward 2013; as R's rbmi): per site an "
            f"MMRM of the {'% change' if outcome == 'pct' else 'change in g/cm^2'} (baseline + visit x group, "
            f"unstructured covariance, REML) on all observed DXA; {m} imputations with parameters drawn "
            + ("from the large-sample normal posterior of the REML estimates"
               if draws == "normal" else "by refitting on stratified bootstrap resamples (approximate Bayesian)")
            + f"; missing values drawn from the conditional normal given each patient's observed values; "
            f"Rubin's rules. After dropout, {', '.join(others)} follow the {ref_label} (reference) as each strategy "
            "prescribes: " + "; ".join(f"{s}: {STRATEGY_TEXT[s]}" for s in strategies) + "."]
    for site in sites:
        c = counts[site]
        groups = " and ".join(f"{c[lv]} {GROUP_LABELS.get(lv, lv)} ({c[f'{lv} imputed']} imputed at month "
                              f"{endpoint_month:g})" for lv in sd.levels)
        text.append(f"{site_label(site)}: {groups}; {len(excluded[site])} patients without a group or baseline "
                    "excluded.")
        keys = [("difference", cmp) for cmp in dict.fromkeys(table.loc[table["group"] == "difference",
                                                                       "comparison"])] + \
               [(lv, "") for lv in sd.levels]
        for g, cmp in keys:
            sub = table[(table["site"] == site) & (table["group"] == g) & (table["comparison"] == cmp)]
            parts = [f"{r['strategy']} {r['estimate']:.2f} ({r['ci_low']:.2f} to {r['ci_high']:.2f})"
                     for _, r in sub.iterrows()]
            states = {ci_conclusion(r) for _, r in sub.iterrows()}
            verdict = ("the 95% CI " + CI_PHRASE[next(iter(states))] + " under every strategy" if len(states) == 1
                       else "the conclusion depends on the strategy (95% CI " + ", ".join(sorted(states)) + ")")
            text.append(f"{sub['estimand'].iloc[0]}: " + "; ".join(parts) + f" — {verdict}.")
    text.append("The imputation model is MAR given the group and the observed BMD only (not, for instance, the "
                "disease-activity history a primary MI may use), so its MAR row can differ from the primary MI. "
                "Rubin's variance is conservative for J2R/CR/CIR (Seaman, White & Leacy 2014).")
    text += notes
    fig = interval_figure(table, "strategy", list(strategies), sites,
                          f"Reference-based MI (reference: {ref_label}), % change to month {endpoint_month:g}", label,
                          levels=sd.levels)
    return SensitivityResult(
        name="reference_based", title=f"Reference-based multiple imputation (reference: {ref_label})",
        table=table, text=text, figures={"sensitivity_reference_based": fig},
        forest_rows=forest_rows(table, table["method"]),
        settings={"sites": list(sites), "strategies": list(strategies), "reference": reference, "m": int(m),
                  "seed": int(seed), "draws": draws, "outcome": outcome, "undefined": undefined,
                  "covariates": list(covariates), "endpoint_month": endpoint_month, "level": level,
                  "groups": list(sd.levels), "excluded": {s: list(v) for s, v in excluded.items()},
                  "counts": counts},
        draws=draws_out)


def reference_based_from_config(derived: pd.DataFrame, config: Any, design: Any = None) -> SensitivityResult:
    """:func:`reference_based_analysis` with the sites, strategy for undefined status, responder rule,
    number of imputations, seed and endpoint of a run configuration (for the sensitivity runner)."""
    opts, notes = mi_options_from_config(config, derived, design)
    res = reference_based_analysis(derived, **opts)
    res.text = notes + res.text
    return res
