r"""Estimands with intercurrent events: reference-based and other ICE strategies, as R's ``rbmi``.

After an intercurrent event (ICE) -- stopping the study drug, starting another bone-active
therapy, a fracture, death -- what would a patient's bone have done? The estimand names a strategy
for each ICE type (ICH E9(R1)); per patient it becomes a handling and an imputation strategy
(:mod:`analysis.sensitivity.ice.patients`): MAR, jump to reference (JR), copy reference (CR),
copy increments in reference (CIR) or last mean carried forward (LMCF) as rbmi defines them
(reference = the design's reference arm, e.g. placebo, or the non-responders of a responder study),
hypothetical (post-ICE data discarded and imputed), treatment policy with retrieved dropouts
(post-ICE data used, with an off-treatment term in the imputation model), or while on treatment
(the last on-treatment value). A delta shift can be added to imputed post-ICE values of any of them.

Pipeline per DXA site (each step its own module of :mod:`analysis.sensitivity.ice`):

1. the site's wide data and each patient's ICE (:mod:`~analysis.sensitivity.ice.patients`): from
   an ICE file or columns, or derived (the visit after the last scan = "discontinued");
2. the imputation model, an MMRM with one unstructured covariance fitted by REML
   (:mod:`~analysis.sensitivity.ice.imputation_model`; ``imputation_model="rbmi"`` is rbmi's
   ``change ~ baseline * visit + group * visit``, ``"rajak"`` one baseline slope);
3. imputation under each strategy (:mod:`~analysis.sensitivity.ice.imputation`);
4. the analysis model on each completed dataset: ANCOVA at each visit (``outcome ~ group +
   baseline + covariates``, rbmi's ``ancova`` with counterfactual LS-means) or the MMRM
   (:mod:`~analysis.sensitivity.ice.analysis_models`);
5. inference: conditional-mean imputation with jackknife or bootstrap, approximate Bayesian MI,
   Bayesian MI from the MMRM posterior, or bootstrapped MI (von Hippel & Bartlett), each pooled by
   its own rule (:mod:`~analysis.sensitivity.ice.methods`, :mod:`~analysis.sensitivity.ice.pooling`).

With ``imputation_model="rbmi"`` (outcome: change in g/cm^2), the ANCOVA and a conditional-mean
method the results are rbmi's (tests compare with rbmi 1.5 on its own data to 1e-6). Unlike rbmi,
a design with a single post-baseline visit works (the MMRM is a regression then).

A single-arm study has no reference group: the reference-based strategies do not apply
(:class:`~analysis.study.applicability.NotApplicable`); MAR, LMCF, hypothetical, treatment-policy
and while-on-treatment strategies still run.

References
----------
Carpenter JR, Roger JH, Kenward MG (2013). *J Biopharm Stat* 23:1352-1371. Wolbers M et al.
(2022). *Pharm Stat* 21:1246-1257. Gower-Page C, Noci A, Wolbers M (2022). rbmi. *JOSS* 7:4251.
ICH E9(R1) (2019). Addendum on estimands and sensitivity analysis in clinical trials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from analysis.sensitivity.design import NotApplicable, sensitivity_design, site_label
from analysis.sensitivity.ice.analysis_models import ancova, mmrm_analysis
from analysis.sensitivity.ice.imputation_model import IMPUTATION_MODELS
from analysis.sensitivity.ice.methods import METHODS, MethodSettings, run_method
from analysis.sensitivity.ice.patients import IcePatients, normalise_strategy
from analysis.sensitivity.ice.resolve import resolve_ice
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
    forest_rows,
    interval_figure,
    mi_options_from_config,
)
from analysis.sensitivity.mmrm_imputation import (
    DEFAULT_M,
    ReferenceImputation,
    impute_reference_based,
)
from analysis.sensitivity.result import SensitivityResult
from analysis.sensitivity.site_data import SiteData, site_data
from analysis.study.clinical import ResponderRule
from analysis.study.estimands import GROUP_LABELS, difference_name, estimand_name

__all__ = [
    "ANALYSIS_MODELS",
    "DEFAULT_M",
    "DEFAULT_METHODS",
    "DRAW_METHODS",
    "IMPUTATION_MODELS",
    "JACKKNIFE_MAX_PATIENTS",
    "METHODS",
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

ANALYSIS_MODELS = ("ancova", "mmrm")
#: The inference of a default run: conditional-mean imputation with the jackknife (rbmi's default).
DEFAULT_METHODS = ("condmean_jackknife",)
#: Above this many patients at a site a default run's jackknife (n + 1 REML refits: hours at 50,000
#: patients) is replaced by the conditional-mean bootstrap (``n_samples`` + 1 refits); a jackknife
#: asked for by name still runs (issue #18).
JACKKNIFE_MAX_PATIENTS = 5000
#: The ICE strategy sets of a default run: every ICE handled alike (rbmi's vignette set).
DEFAULT_STRATEGIES = ("MAR", "JR", "CR", "CIR", "LMCF")
TEXT = {"MAR": STRATEGY_TEXT["MAR"], "JR": STRATEGY_TEXT["J2R"], "CR": STRATEGY_TEXT["CR"],
        "CIR": STRATEGY_TEXT["CIR"], "LMCF": STRATEGY_TEXT["LMCF"]}
METHOD_TEXT = {
    "condmean_jackknife": "conditional-mean imputation, jackknife SE (normal CI)",
    "condmean_bootstrap|normal": "conditional-mean imputation, bootstrap SE (normal CI)",
    "condmean_bootstrap|percentile": "conditional-mean imputation, bootstrap percentile CI",
    "approx_bayes": "approximate Bayesian MI (bootstrap), Rubin's rules",
    "bayes": "Bayesian MI (MMRM posterior by MCMC), Rubin's rules",
    "bmlmi": "bootstrapped MI (von Hippel & Bartlett)",
}
TABLE_COLUMNS = ["site", "strategy", "method", "estimand", "group", "comparison", "month", "estimate", "se", "df",
                 "ci_low", "ci_high", "p", "n", "n_ice", "n_imputed", "reference", "analysis_model",
                 "imputation_model", "outcome"]


def _keys(levels: Sequence[str], months: Sequence[float]) -> dict[str, tuple[str, str, float]]:
    """``{analysis key: (group, comparison, month)}`` of the analysis models' keys."""
    out = {}
    for t in months:
        for lv in levels[1:]:
            out[f"trt_{lv}_{t:g}"] = ("difference", f"{lv} - {levels[0]}", float(t))
        for lv in levels:
            out[f"lsm_{lv}_{t:g}"] = (lv, "", float(t))
    return out


def _covariate_columns(derived: pd.DataFrame, names: Sequence[str]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The covariates as numeric columns: numeric ones as they are, a categorical one as indicators of
    its levels after the first (sorted), named ``<column>_<level>``. Returns a copy of ``derived`` with
    the indicator columns added (the input is not modified) and the names the models use."""
    if not names:
        return derived, ()
    out, used = derived.copy(), []
    for c in names:
        if c not in out.columns:
            raise ValueError(f"covariate {c!r} is not in the data")
        values = out[c]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            used.append(c)
            continue
        levels = sorted(str(v) for v in values.dropna().unique())
        for lv in levels[1:]:
            name = re.sub(r"\W", "_", f"{c}_{lv}")
            out[name] = np.where(values.isna(), np.nan, (values.astype(str) == lv).astype(float))
            used.append(name)
    return out, tuple(used)


def _sets(data: SiteData, strategies: Sequence[str], ice: Mapping[str, tuple],
          delta: Sequence[Any], estimand_set: bool) -> list[IcePatients]:
    """The strategy sets of one site: the estimand's own (per-ICE-type strategies from ``ice``) when
    ``estimand_set``, and every ICE handled by each of ``strategies``."""
    base = IcePatients.from_table(data, ice, "estimand")
    sets = [base] if estimand_set else []
    for s in strategies or ():
        sets.append(base.with_strategy(s))
    return [p.with_delta(delta) if delta else p for p in sets]


def reference_based_analysis(derived: pd.DataFrame, sites: Sequence[str] | None = None,
                             strategies: Sequence[str] | None = None, reference: str | None = None,
                             methods: Sequence[str] | None = None, analysis_model: str = "ancova",
                             imputation_model: str = "rajak", ice: Mapping[str, tuple] | None = None,
                             delta: Sequence[Any] = (), n_samples: int = 200, D: int = 4, seed: int = 0,
                             outcome: str | None = None, undefined: str = "last_observed",
                             rule: ResponderRule | None = None, covariates: Sequence[str] = (),
                             endpoint_month: float | None = None, level: float = 0.95, label: str | None = None,
                             design: Any = None, chains: int = 2, tune: int = 500,
                             estimand_set: bool | None = None,
                             jackknife_max_patients: int | None = None) -> SensitivityResult:
    r"""Every site's estimands under each ICE strategy set and inference method.

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    sites : sequence of str, optional
        Default: the design's.
    strategies : sequence of {"MAR", "JR", "CR", "CIR", "LMCF"}, optional
        Strategy sets in which every ICE is handled by that rbmi strategy (``J2R`` = ``JR``). Default:
        the estimand's own per-type strategies when ``ice`` is given, else all five.
    reference : str, optional
        Must be the design's reference (the group reference-based strategies copy).
    methods : sequence of str, optional
        :data:`~analysis.sensitivity.ice.methods.METHODS`. Default :data:`DEFAULT_METHODS` (the
        jackknife), except at a site with more than ``jackknife_max_patients`` patients, where the
        jackknife's n + 1 refits are replaced by the conditional-mean bootstrap (``n_samples``
        resamples), as the text says. Methods given by name always run as given.
    analysis_model : {"ancova", "mmrm"}
    imputation_model : {"rajak", "rbmi"}
    ice : mapping, optional
        ``{patient_id: (first affected month, ice_type, handling, strategy)}``
        (:func:`analysis.sensitivity.ice.resolve.resolve_ice`); default: derived discontinuation.
    delta : sequence
        Delta rules (``value``, optional ``visit``, ``group``, ``ice_type``) added to imputed
        post-ICE values.
    n_samples, D : int
        Bootstrap resamples or posterior draws; imputations per resample (``bmlmi``).
    seed : int
    outcome : {"pct", "change"}, optional
        Scale of imputation and analysis; default ``"change"`` (g/cm^2) for the rbmi model and
        ``"pct"`` for rajak's.
    undefined, rule, covariates, endpoint_month, level, label, design
        As the other sensitivity analyses (:mod:`analysis.sensitivity.mi_reporting`).
    chains, tune : int
        MCMC settings of the ``bayes`` method.
    estimand_set : bool, optional
        Also run the estimand's own strategy set (each patient's strategy from ``ice``, labelled
        ``"estimand"``); default: when ``ice`` is given and ``strategies`` is not.
    jackknife_max_patients : int, optional
        The size rule's cap; default :data:`JACKKNIFE_MAX_PATIENTS`.

    Returns
    -------
    SensitivityResult
        Name ``"reference_based"``; ``table`` has one row per site, strategy set, method, visit and
        estimand (:data:`TABLE_COLUMNS`: ``estimate, se, ci_low, ci_high, p, method``); ``draws`` the
        per-sample estimates ``"<strategy> | <method> | <estimand>"``; ``settings["methods_used"]``
        the methods run at each site.

    Raises
    ------
    NotApplicable
        A reference-based strategy in a single-arm study.
    """
    sd = sensitivity_design(derived, design, sites, endpoint_month)
    if estimand_set is None:
        estimand_set = ice is not None and not strategies
    if strategies is None and ice is None:
        strategies = DEFAULT_STRATEGIES
    strategies = tuple(normalise_strategy(s) for s in (strategies or ()))
    if not strategies and not estimand_set:
        raise ValueError("no strategy set to run: name strategies, or give the estimand's ICE strategies")
    if estimand_set and ice is None:
        raise ValueError("the estimand's strategy set needs the ICE table (ice=...)")
    derived_ice = ice is None
    if derived_ice:  # "discontinued" at the visit after the last scan at any site (as rajak sensitivity/run)
        from analysis.study.ice_sources import derive_discontinued

        # the design's sites and visits (a frame without one, the RAJAK default: its sites and months)
        where = sd.design if sd.design is not None else SimpleNamespace(
            sites=sd.sites, visits=tuple(sorted(float(v) for v in derived["month"].dropna().unique())))
        ice = resolve_ice(derive_discontinued(derived, where), {}, "MAR")
    visits = [float(v) for v in getattr(sd.design, "visits", ()) if float(v) > 0]
    for rule in delta:
        at = rule.get("visit") if isinstance(rule, Mapping) else getattr(rule, "visit", None)
        if at is not None and visits and not np.isclose(visits, float(at)).any():
            raise ValueError(f"delta visit {float(at):g} is not a post-baseline visit of the study "
                             f"({', '.join(f'{v:g}' for v in visits)})")
    per_patient = {v[3] for v in (ice or {}).values()} if estimand_set else set()
    if sd.single_arm and any(s in ("JR", "CR", "CIR") for s in (*strategies, *per_patient)):
        raise NotApplicable("reference-based imputation (JR, CR, CIR) needs a reference group, and a single-arm "
                            "study has one group; MAR, LMCF, hypothetical and while-on-treatment strategies run")
    if reference is not None and sd.reference is not None and reference != sd.reference:
        raise ValueError(f"reference must be the design's reference {sd.reference!r} (set it when loading the "
                         f"study, --reference), got {reference!r}")
    by_default = methods is None
    methods = DEFAULT_METHODS if by_default else tuple(methods)
    cap = int(JACKKNIFE_MAX_PATIENTS if jackknife_max_patients is None else jackknife_max_patients)
    for meth in methods:
        if meth not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {meth!r}")
    if analysis_model not in ANALYSIS_MODELS:
        raise ValueError(f"analysis model must be one of {ANALYSIS_MODELS}, got {analysis_model!r}")
    if imputation_model not in IMPUTATION_MODELS:
        raise ValueError(f"imputation model must be one of {IMPUTATION_MODELS}, got {imputation_model!r}")
    outcome = outcome or ("change" if imputation_model == "rbmi" else "pct")
    settings = MethodSettings(n_samples=int(n_samples), D=int(D), seed=int(seed), level=level,
                              imputation_model=imputation_model, chains=int(chains), tune=int(tune))
    measure = "pct" if outcome == "pct" else "abs"
    derived, covariates = _covariate_columns(derived, covariates)
    rows, draws_out, diagnostics, text_notes, failed = [], {}, {}, [], []
    counts: dict[str, dict[str, int]] = {}
    used: dict[str, list[str]] = {}
    for site in sd.sites:
        data = site_data(derived, site, undefined, rule, outcome, covariates, sd.design)
        data.visit_index(sd.endpoint)  # the endpoint must be a post-baseline visit of the site
        sets = _sets(data, strategies, ice, delta, estimand_set)
        keys = _keys(data.levels, data.months)
        analysis = partial(mmrm_analysis if analysis_model == "mmrm" else ancova, months=data.months,
                           levels=data.levels)
        for p in sets:
            if "treatment_policy" in set(p.handling) and not p.has_retrieved:
                text_notes.append(f"Note: {site_label(site)} ({p.label}): no treatment-policy patient has a value "
                                  "observed after the event, so there is no off-treatment term to estimate and their "
                                  "missing values are imputed under MAR on the on-treatment trajectory.")

        counts[site] = {"patients": int(data.ids.size), "ice": int((sets[0].ice_index < sets[0].n_visits).sum()),
                        "excluded": len(data.excluded)}
        site_methods = methods
        if by_default and data.ids.size > cap and "condmean_jackknife" in methods:
            site_methods = tuple(dict.fromkeys("condmean_bootstrap" if m == "condmean_jackknife" else m
                                               for m in methods))
            text_notes.append(f"{site_label(site)}: jackknife replaced by bootstrap (B = {settings.n_samples}) above "
                              f"{cap:,} patients ({data.ids.size:,} here): the jackknife needs n + 1 refits (ask for "
                              "condmean_jackknife by name to run it).")
        used[site] = list(site_methods)
        for meth in site_methods:
            res = run_method(meth, sets, analysis, settings)
            if meth == "bayes":  # one MCMC fit per strategy set that fits its own data: its diagnostics, loudly
                for set_label, dg in res.diagnostics.items():
                    if not isinstance(dg, dict):
                        continue
                    name = f"{site} | bayes | {set_label}"
                    diagnostics[name] = dg
                    text_notes.append(f"{site_label(site)}, Bayesian MI ({set_label}): MMRM posterior max R-hat "
                                      f"{dg.get('max_rhat', float('nan')):.3f}, min bulk ESS "
                                      f"{dg.get('min_ess_bulk', float('nan')):.0f}, min tail ESS "
                                      f"{dg.get('min_ess_tail', float('nan')):.0f}, {dg.get('divergences', 0)} "
                                      "divergences.")
                    if not dg.get("ok", True):
                        failed.append(name)
                        text_notes.append(f"WARNING: {site_label(site)}, Bayesian MI ({set_label}): the MMRM posterior "
                                          f"failed its convergence checks ({dg.get('message', '')}); its rows are "
                                          "not to be trusted.")
            else:
                diagnostics[f"{site} | {meth}"] = res.diagnostics
            for p in sets:
                n_imp = (~p.observed).sum(axis=0)
                for full_key, pooled in res.pooled[p.label].items():
                    key, _, ci_kind = full_key.partition("|")
                    grp, cmp, month = keys[key]
                    j = int(np.flatnonzero(np.isclose(data.months, month))[0])
                    name = (difference_name(site, measure, month, groups=tuple(cmp.split(" - ", 1)))
                            if grp == "difference" else estimand_name(site, grp, measure, month))
                    method_name = f"{meth}|{ci_kind}" if ci_kind else meth
                    rows.append({"site": site, "strategy": p.label, "method": method_name, "estimand": name,
                                 "group": grp, "comparison": cmp, "month": month, "estimate": pooled.estimate,
                                 "se": pooled.se, "df": pooled.df, "ci_low": pooled.ci_low,
                                 "ci_high": pooled.ci_high, "p": pooled.p, "n": int(data.ids.size),
                                 "n_ice": counts[site]["ice"], "n_imputed": int(n_imp[j]),
                                 "reference": data.levels[0], "analysis_model": analysis_model,
                                 "imputation_model": imputation_model, "outcome": outcome})
                for key, est in res.draws[p.label].items():
                    draws_out[f"{p.label} | {meth} | {site} {key}"] = est
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    res = _result(table, sd, strategies, methods, analysis_model, imputation_model, outcome,
                  None if derived_ice else ice, delta, settings,
                  counts, draws_out, diagnostics, text_notes, label, undefined, covariates)
    res.settings["failed_fits"] = failed
    res.settings["methods_used"] = used
    return res


def _result(table, sd, strategies, methods, analysis_model, imputation_model, outcome, ice, delta, settings,
            counts, draws_out, diagnostics, text_notes, label, undefined, covariates) -> SensitivityResult:
    ref_label = GROUP_LABELS.get(sd.reference, sd.reference) if sd.reference else "none"
    scale = "% change" if outcome == "pct" else "change in g/cm^2"
    model_text = ("rbmi's change ~ baseline x visit + group x visit" if imputation_model == "rbmi"
                  else "group x visit cells + baseline")
    text = [f"Intercurrent-event strategies as R's rbmi: per site an MMRM of the {scale} ({model_text}"
            f"{' + ' + ' + '.join(covariates) if covariates else ''}, one unstructured covariance, REML) fitted to the data each "
            f"strategy keeps; imputation under the strategy; {analysis_model.upper()} at each visit on every completed "
            "dataset; inference by " + "; ".join(METHOD_TEXT.get(m, m) for m in
                                                 dict.fromkeys(table["method"])) + f". Reference: {ref_label}."]
    if ice is None:
        text.append("Intercurrent events: none given, so every patient with missing scans after their last one has a "
                    "'discontinued' ICE at the visit after it (intermittent gaps before it stay MAR).")
    elif not ice:
        text.append("Intercurrent events: none recorded, so every missing value is imputed under MAR.")
    for s in strategies:
        text.append(f"{s}: {TEXT[s]}.")
    if delta:
        unit = "percentage points of change from baseline" if outcome == "pct" else "the site's units (e.g. g/cm^2)"
        text.append(f"Delta adjustment: {len(delta)} rule(s) added to imputed post-ICE values, in {unit}.")
    end = table[(table["month"] == sd.endpoint) & (table["group"] == "difference")]
    for site in sd.sites:
        c = counts.get(site, {})
        left = f" ({c['excluded']} without a group or baseline left out)" if c.get("excluded") else ""
        text.append(f"{site_label(site)}: {c.get('patients', 0)} patients analysed{left}, {c.get('ice', 0)} with an ICE.")
        for cmp in dict.fromkeys(end.loc[end["site"] == site, "comparison"]):
            sub = end[(end["site"] == site) & (end["comparison"] == cmp)]
            parts = [f"{r['strategy']}/{r['method']} {r['estimate']:.3g} ({r['ci_low']:.3g} to {r['ci_high']:.3g})"
                     for _, r in sub.iterrows()]
            states = {ci_conclusion(r) for _, r in sub.iterrows()}
            verdict = ("the 95% CI " + CI_PHRASE[next(iter(states))] + (" under every strategy and method"
                                                                          if len(sub) > 1 else "")
                       if len(states) == 1 else "the conclusion depends on the strategy or method (95% CI "
                       + ", ".join(sorted(states)) + ")")
            if parts:
                text.append(f"{sub['estimand'].iloc[0]}: " + "; ".join(parts) + f" — {verdict}.")
    text += text_notes
    endpoint_rows = table[table["month"] == sd.endpoint].copy()
    endpoint_rows["analysis"] = endpoint_rows["strategy"] + " / " + endpoint_rows["method"]
    order = list(dict.fromkeys(endpoint_rows["analysis"]))
    figures = {}
    if len(endpoint_rows):
        figures["sensitivity_reference_based"] = interval_figure(
            endpoint_rows, "analysis", order, list(sd.sites),
            f"ICE strategies (reference: {ref_label}), {scale} to month {sd.endpoint:g}", label, levels=sd.levels)
    return SensitivityResult(
        name="reference_based", title=f"Intercurrent events: strategies and inference (reference: {ref_label})",
        table=table, text=text, figures=figures,
        forest_rows=forest_rows(endpoint_rows, endpoint_rows["strategy"] + " (" + endpoint_rows["method"] + ")"),
        settings={"sites": list(sd.sites), "strategies": list(strategies) or ["estimand"], "methods": list(methods),
                  "analysis_model": analysis_model, "imputation_model": imputation_model, "outcome": outcome,
                  "n_samples": settings.n_samples, "D": settings.D, "seed": settings.seed, "level": settings.level,
                  "reference": sd.reference, "undefined": undefined, "covariates": list(covariates),
                  "endpoint_month": sd.endpoint, "groups": list(sd.levels), "counts": counts,
                  "diagnostics": diagnostics, "ice_source": "derived (discontinued)" if ice is None else "given",
                  "delta": [dict(r) if isinstance(r, Mapping) else vars(r) for r in delta]},
        draws=draws_out)


def reference_based_from_config(derived: pd.DataFrame, config: Any, design: Any = None) -> SensitivityResult:
    """:func:`reference_based_analysis` as a run configuration asks for it: its sites, strategy for
    undefined status, responder rule, seed and endpoint; the ``[reference_based]`` table (strategies,
    methods, models, sizes); and the ``[estimand]`` table (the ICE source, each ICE type's strategy,
    the delta rules; without one, "discontinued" derived from missing follow-up).

    Strategy sets: the estimand's own (labelled ``"estimand"``) when it names a strategy for any ICE
    type, and each of ``[reference_based] strategies`` (default: MAR, JR, CR, CIR and LMCF when the
    estimand names none). ``settings`` carries the estimand in ICH E9(R1) terms (``"estimand"``) and
    the ICE table (``"ice_table"``); the text starts with the estimand."""
    from analysis.study.estimand_words import DEFAULT_ESTIMAND, estimand_table, estimand_text
    from analysis.study.ice_load import load_ice_events

    opts, notes = mi_options_from_config(config, derived, design)
    opts.pop("m", None)
    rb = getattr(config, "reference_based", None)
    given = getattr(config, "estimand", None)
    est = given or DEFAULT_ESTIMAND
    resolved = design if design is not None else derived.attrs.get("design")
    ice_table = load_ice_events(est, derived, resolved)
    ice = resolve_ice(ice_table, est.strategy, est.default_strategy) if ice_table is not None else {}
    if rb is not None and rb.strategies is not None:
        strategies = list(rb.strategies)
    else:  # a stated estimand runs as stated; without one, the five strategies side by side
        strategies = [] if given is not None else list(DEFAULT_STRATEGIES)
    explicit = getattr(getattr(resolved, "design", None), "covariates", None)
    kw = {} if rb is None else {"methods": None if rb.methods is None else tuple(rb.methods),
                                "analysis_model": rb.analysis_model,
                                "imputation_model": rb.imputation_model, "n_samples": rb.n_samples, "D": rb.D}
    res = reference_based_analysis(derived, strategies=strategies, ice=ice, estimand_set=given is not None,
                                   delta=tuple(est.delta), chains=int(getattr(config, "chains", 2)),
                                   tune=int(getattr(config, "tune", 500)), covariates=tuple(explicit or ()),
                                   **kw, **opts)
    outcome = res.settings["outcome"]
    words_kw = {"sites": res.settings["sites"], "outcome": outcome}
    res.settings["estimand"] = estimand_table(est, resolved, ice_table, **words_kw).to_dict(orient="records")
    res.settings["ice_table"] = ([] if ice_table is None else
                                 ice_table.frame.drop(columns=["where"], errors="ignore").to_dict(orient="records"))
    res.settings["ice_source"] = "none" if ice_table is None else ice_table.source
    words = estimand_text(est, resolved, ice_table, **words_kw)
    if strategies:
        words.append("Sensitivity strategy sets: " + ", ".join(strategies) + " (each handles every intercurrent event "
                     "alike" + ("; the estimand's own strategies are the row 'estimand'" if given is not None else "")
                     + ").")
    unused = sorted(set(est.strategy) - set(ice_table.types if ice_table is not None else ()))
    if unused:
        words.append("Note: the estimand names a strategy for ICE type(s) " + ", ".join(unused) + " that no patient "
                     "has (check the spelling of the types in the ICE data).")
    res.settings["methods_text"] = words + res.text[:1]  # the estimand, then how it was estimated
    res.text = notes + words + res.text
    return res
