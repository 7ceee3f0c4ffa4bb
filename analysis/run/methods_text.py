"""The methods text of a run's report: what each analysis the configuration selects does, in the
words of the study's design (:func:`analysis.report.design_text.design_words`: its group levels or
arms, sites and endpoint month; a responder study's words only for a responder study)."""

from __future__ import annotations

from typing import Any

from analysis.report.design_text import design_words
from analysis.run.config import RunConfig

__all__ = ["COVARIANCE_NAMES", "MODEL_TEXT", "bayes_methods", "covariances_text", "frequentist_methods", "prior_text"]


COVARIANCE_NAMES = {"us": "unstructured", "cs": "compound symmetry", "ar1": "AR(1)",
                     "csh": "heterogeneous compound symmetry", "ar1h": "heterogeneous AR(1)"}


def covariances_text(config: RunConfig) -> str:
    names = [COVARIANCE_NAMES[c] for c in config.mmrm_covariances]
    return names[0] + (" (primary; " + " and ".join(names[1:]) + " as sensitivity to the structure)"
                       if len(names) > 1 else "")


def _design(config: RunConfig, design: Any = None) -> Any:
    """``design``, else the design of the run's data (``config.data``; ``None``: the RAJAK twin's)."""
    if design is not None or config.data is None:
        return design
    from analysis.study.data import load_for_config

    return load_for_config(config).design


def _words(config: RunConfig, design: Any = None) -> Any:
    return design_words(_design(config, design), sites=config.sites, endpoint=config.endpoint_month)


def _covariates(design: Any) -> tuple[str, ...]:
    if design is not None:
        return tuple(design.covariates)
    from analysis.study.rajak_design import RAJAK_DESIGN

    return tuple(RAJAK_DESIGN.covariates or ())


def frequentist_methods(config: RunConfig, design: Any = None) -> str:
    """The frequentist methods paragraph.

    Parameters
    ----------
    config : RunConfig
        The run's configuration, bound to the design (``sites``, ``endpoint_month``).
    design : ResolvedDesign, optional
        The study's design (``Dataset.design``); ``None``: the design of ``config.data`` (read
        again), or for the twin the RAJAK default design.
    """
    design = _design(config, design)
    w = _words(config, design)
    derived = w.kind == "derived"
    if not config.mi_imputations:
        mi = "No multiple imputation (mi_imputations = 0)."
    else:
        aux = ("BMD as % change, DAS28-CRP as auxiliary, undefined responder status imputed and classified by the "
               "responder rule; stratified by group where every group has enough patients" if derived else
               "BMD as % change; stratified by group where every group has enough patients" if w.comparisons else
               "BMD as % change")
        mi = (f"Multiple imputation of the % change under MAR: {config.mi_imputations} imputations by sequential "
              f"Bayesian regression ({aux}), pooled by Rubin's rules with Barnard-Rubin df.")
    cov = _covariates(design)
    adjusted = f" (and the same + {' + '.join(cov)})" if cov else ""
    per_group = "per group" if w.comparisons else "of the single group"
    groups = (f"Groups: {w.groups_text}; compared: {w.contrast_text}. " if w.comparisons else
              "A single arm: the change from baseline is tested against 0. ")
    undefined = (f"Undefined responder status: strategy '{config.undefined_responders}'. " if derived else "")
    return (f"{groups}Mixed models on all observed data (valid under MAR): per site ({w.sites_text}) the LMM "
            f"{w.lmm_formula()} by REML with Satterthwaite df{adjusted}, the {w.endpoint_text} change {per_group} "
            f"as a linear contrast and in % by the delta method; an MMRM of the change from baseline, "
            f"{w.mmrm_formula()}, visit as a factor, residual covariance {covariances_text(config)}, REML, "
            f"Satterthwaite df, least-squares means per visit{' and group' if w.comparisons else ''}. "
            + undefined + mi)


MODEL_TEXT = {
    "lmm": "the hierarchical LMM above",
    "robust": "the same LMM with Student-t residuals (a scale mixture with non-centred weights, the patient "
              "effects integrated out given the weights; nu ~ Gamma(2, 0.1))",
    "mmrm": "a Bayesian MMRM of the change from baseline (visit as a factor, unstructured covariance with an LKJ "
            "prior on the correlations, missing visits masked), the prior set translated to the visits",
    "joint": "a joint model of both sites with patient intercepts and slopes correlated across sites (4 x 4 "
             "covariance, LKJ prior)",
    "activity": "the LMM with the time-varying DAS28-CRP as a predictor of the BMD slope, with and without the "
                "responder indicator (how much of the responder difference remains once disease activity is in "
                "the model)",
}


def prior_text(config: RunConfig, design: Any = None) -> str:
    """The priors per site on the data's scale (group terms only when the design has groups)."""
    from dataclasses import asdict

    from analysis.bayes.fit import prior_object
    from analysis.report.design_text import site_label

    groups = bool(_words(config, design).comparisons)
    parts = []
    for site in config.sites:
        p = asdict(prior_object(config.priors, site))
        group = (f"b2 ~ N(0, {p['responder_sd']:g}), b3 ~ N(0, {p['responder_slope_sd']:g}) (each level's "
                 "difference from the reference), " if groups else "")
        parts.append(f"{site_label(site)}: b0 ~ N(mean of y, {p['intercept_sd']:g}), b1 ~ N(0, {p['slope_sd']:g}), "
                     f"{group}tau0 ~ N+(0, {p['sd_intercept_scale']:g}), tau1 ~ N+(0, {p['sd_slope_scale']:g}), "
                     f"sigma ~ N+(0, {p['sigma_scale']:g}), correlation ~ LKJ({p['lkj_eta']:g}) "
                     "(g/cm^2, per year for slopes)")
    return "; ".join(parts)


def bayes_methods(config: RunConfig, design: Any = None) -> str:
    """The Bayesian methods paragraph (``design`` as in :func:`frequentist_methods`)."""
    design = _design(config, design)
    w = _words(config, design)
    k = len(w.levels)
    if w.comparisons:
        group_terms = (" + b2 r_i + b3 r_i t_ij" if w.kind == "derived" else
                       " + sum_k (b2k g_ik + b2k+1 g_ik t_ij)")
        groups = ("; r_i = 1 for responders" if w.kind == "derived" else
                  f"; g_ik indicates level k of {k - 1} non-reference level(s) of {w.groups_text}")
    else:
        group_terms, groups = "", "; a single arm"
    others = [f"{m}: {MODEL_TEXT.get(m, m)}" for m in config.bayes_models if m != "lmm"]
    return (f"Bayesian models ({', '.join(config.bayes_models)}): hierarchical linear mixed model per site "
            f"({w.sites_text}), bmd_ij = b0 + u0_i + (b1 + u1_i) t_ij{group_terms} + e_ij{groups}, with correlated "
            "patient intercepts and slopes (LKJ prior on their correlation) integrated out analytically (marginal "
            "parameterisation chosen for its sampling geometry), outcome centred and scaled internally, "
            f"prior set '{config.priors}' stated on the data's scale: {prior_text(config, design)}; estimands: the change "
            f"to {w.endpoint_text} per group" + (f" and {w.contrast_text}" if w.comparisons else " against 0") + ". "
            + (("Further models - " + "; ".join(others) + ". ") if others else "")
            + f"Sampling: nutpie, {config.chains} chains x "
            f"{config.draws} draws after {config.tune} tuning steps, target acceptance {config.target_accept}, "
            f"seed {config.seed}. Convergence: R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, "
            "E-BFMI >= 0.3; a failing fit is flagged at the top of the report and on every row it feeds.")
