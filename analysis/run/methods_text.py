"""The methods text of a run's report: what each analysis the configuration selects does, in words."""

from __future__ import annotations

from analysis.run.config import RunConfig

__all__ = ["COVARIANCE_NAMES", "MODEL_TEXT", "bayes_methods", "covariances_text", "frequentist_methods", "prior_text"]


COVARIANCE_NAMES = {"us": "unstructured", "cs": "compound symmetry", "ar1": "AR(1)",
                     "csh": "heterogeneous compound symmetry", "ar1h": "heterogeneous AR(1)"}


def covariances_text(config: RunConfig) -> str:
    names = [COVARIANCE_NAMES[c] for c in config.mmrm_covariances]
    return names[0] + (" (primary; " + " and ".join(names[1:]) + " as sensitivity to the structure)"
                       if len(names) > 1 else "")


def frequentist_methods(config: RunConfig) -> str:
    mi = (f"Multiple imputation of the % change under MAR: {config.mi_imputations} imputations by sequential "
          "Bayesian regression (BMD as % change, DAS28-CRP as auxiliary, undefined responder status imputed and "
          "classified by the responder rule; stratified by group where every group has enough patients), "
          "pooled by Rubin's rules with Barnard-Rubin df." if config.mi_imputations else
          "No multiple imputation (mi_imputations = 0).")
    return ("Mixed models on all observed data (valid under MAR): per site the LMM bmd ~ month * responder + "
            "(1 + month | patient) by REML with Satterthwaite df (and the same + age + sex + bmi), the month-"
            f"{config.endpoint_month:g} change per group as a linear contrast and in % by the delta method; an MMRM "
            f"of the change from baseline, change ~ baseline + visit * responder, visit as a factor, residual "
            f"covariance {covariances_text(config)}, REML, Satterthwaite df, least-squares means per visit and "
            f"group. Undefined responder status: strategy '{config.undefined_responders}'. " + mi)


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


def prior_text(config: RunConfig) -> str:
    from dataclasses import asdict

    from analysis.bayes.fit import prior_object

    parts = []
    for site in config.sites:
        p = asdict(prior_object(config.priors, site))
        parts.append(f"{site}: b0 ~ N(mean of y, {p['intercept_sd']:g}), b1 ~ N(0, {p['slope_sd']:g}), "
                     f"b2 ~ N(0, {p['responder_sd']:g}), b3 ~ N(0, {p['responder_slope_sd']:g}), "
                     f"tau0 ~ N+(0, {p['sd_intercept_scale']:g}), tau1 ~ N+(0, {p['sd_slope_scale']:g}), "
                     f"sigma ~ N+(0, {p['sigma_scale']:g}), correlation ~ LKJ({p['lkj_eta']:g}) "
                     "(g/cm^2, per year for slopes)")
    return "; ".join(parts)


def bayes_methods(config: RunConfig) -> str:
    others = [f"{m}: {MODEL_TEXT.get(m, m)}" for m in config.bayes_models if m != "lmm"]
    return (f"Bayesian models ({', '.join(config.bayes_models)}): hierarchical linear mixed model per site, "
            "bmd_ij = b0 + u0_i + (b1 + u1_i) t_ij + b2 r_i + b3 r_i t_ij + e_ij with correlated patient "
            "intercepts and slopes (LKJ prior on their correlation) integrated out analytically (marginal "
            "parameterisation chosen for its sampling geometry), outcome centred and scaled internally, "
            f"prior set '{config.priors}' stated on the data's scale: {prior_text(config)}. "
            + (("Further models - " + "; ".join(others) + ". ") if others else "")
            + f"Sampling: nutpie, {config.chains} chains x "
            f"{config.draws} draws after {config.tune} tuning steps, target acceptance {config.target_accept}, "
            f"seed {config.seed}. Convergence: R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, "
            "E-BFMI >= 0.3; a failing fit is flagged at the top of the report and on every row it feeds.")
