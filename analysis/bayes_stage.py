"""The Bayesian stage of ``rajak run``: fit the configured models at each site, summarise the
estimands, compare with the frequentist analysis, check the fits, and describe it all as report
sections with figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis.bayes_fit import BayesFit, FREQUENTIST_COUNTERPART, analysis_frame, compare, fit_bayes, MODELS
from analysis.estimands import SITE_LABELS, difference_name, estimand_name
from analysis.model_compare import loo_table
from analysis.plots import contrast_posteriors, forest, ppc_change, rank_plot, save_figure, trajectories
from analysis.report import Section, Table

__all__ = ["BayesStage", "run_bayes_stage", "bayes_sections"]


@dataclass
class BayesStage:
    fits: list[BayesFit]
    estimands: pd.DataFrame
    comparison: pd.DataFrame
    loo: dict[str, tuple[pd.DataFrame, str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # (site or '', caption, name)


def _bands(fit: BayesFit, months=np.linspace(0, 12, 13)) -> pd.DataFrame:
    post = fit.fit.posterior["posterior"].to_dataset()
    rows = []
    for g in ("non-responder", "responder"):
        pct12 = post["pct_change_12m"].sel(group=g).values.reshape(-1)
        for m in months:
            x = pct12 * m / 12.0
            rows.append({"site": fit.site, "group": g, "month": m, "mean": x.mean(),
                         "low": np.quantile(x, 0.025), "high": np.quantile(x, 0.975)})
    return pd.DataFrame(rows)


def run_bayes_stage(derived: pd.DataFrame, config: Any, freq_estimands: pd.DataFrame, figures_dir: Path,
                    fits_dir: Path, label: str, log: Callable[[str], None],
                    cache_dir: Path | None = None) -> BayesStage:
    """Fit ``config.bayes_models`` at ``config.sites`` and write figures and fits; fits found in
    ``cache_dir`` (content-addressed) are reused."""
    fits: list[BayesFit] = []
    failures: list[str] = []
    for model in config.bayes_models:
        for site in config.sites:
            log(f"Bayesian {model} at {site} ({config.chains} chains x {config.draws} draws)")
            bf = fit_bayes(derived, model, site, config.priors, config.undefined_responders,
                           config.responder.rule(), draws=config.draws, tune=config.tune, chains=config.chains,
                           seed=config.seed, target_accept=config.target_accept, cache_dir=cache_dir)
            log(f"  {model} at {site}: {'read from the fit cache' if bf.extra.get('cache') == 'hit' else 'sampled'}"
                f" ({bf.fit.diagnostics})")
            bf.fit.save(fits_dir / f"{model}_{site}.nc")
            if not bf.fit.passed:
                failures.append(f"{model} at {site}: " + "; ".join(bf.fit.diagnostics.failures))
            fits.append(bf)
    estimands = pd.concat([f.table for f in fits], ignore_index=True)
    comparison = compare(fits, freq_estimands)
    stage = BayesStage(fits=fits, estimands=estimands, comparison=comparison, failures=failures)

    frame, _ = analysis_frame(derived, config.undefined_responders, config.responder.rule())
    for site in config.sites:
        site_fits = [f for f in fits if f.site == site]
        lmm = next((f for f in site_fits if f.model == "lmm"), site_fits[0] if site_fits else None)
        if lmm is None:
            continue
        save_figure(trajectories(derived, (site,), label=label, bands=_bands(lmm)), figures_dir,
                    f"trajectories_posterior_{site}")
        stage.figures.append((site, f"Observed trajectories with the {lmm.model} posterior mean and 95% band per "
                                    f"group, {SITE_LABELS[site]}", f"trajectories_posterior_{site}"))
        for f in site_fits:
            save_figure(rank_plot(f.fit, label=label), figures_dir, f"rank_{f.model}_{site}")
            stage.figures.append((site, f"Rank plots of {f.model} at {SITE_LABELS[site]} (diagnostics)",
                                  f"rank_{f.model}_{site}"))
        pct_items = [it for it in lmm.estimands if it.estimand.endswith("%")]
        save_figure(contrast_posteriors(pct_items, label=label), figures_dir, f"contrasts_{site}")
        stage.figures.append((site, f"Posterior of the key % estimands with the ROPE (DXA least significant "
                                    f"change) and 95% HDI, {SITE_LABELS[site]}", f"contrasts_{site}"))
        built = MODELS[lmm.model](frame, site, None)
        if hasattr(built, "posterior_predictive"):
            if True:
                y_rep = built.posterior_predictive(lmm.fit.posterior["posterior"].to_dataset(), seed=config.seed)
                save_figure(ppc_change(built.prepared, y_rep, site, label=label), figures_dir, f"ppc_{site}")
                stage.figures.append((site, f"Posterior predictive check of the % change, {SITE_LABELS[site]}",
                                      f"ppc_{site}"))
        # forest of the responder - non-responder difference across analyses
        name = difference_name(site, "pct")
        rows = []
        for _, r in freq_estimands[freq_estimands["estimand"] == name].iterrows():
            rows.append({"label": r["method"], "estimate": r["estimate"], "low": r["ci_low"], "high": r["ci_high"],
                         "kind": "frequentist"})
        for _, r in estimands[estimands["estimand"] == name].iterrows():
            rows.append({"label": f"Bayesian {r['model']}", "estimate": r["median"], "low": r["eti_low"],
                         "high": r["eti_high"], "kind": "bayesian"})
        if rows:
            save_figure(forest(pd.DataFrame(rows), name, label=label), figures_dir, f"forest_{site}")
            stage.figures.append((site, f"Responder - non-responder difference across analyses, "
                                        f"{SITE_LABELS[site]}", f"forest_{site}"))
        comparable = {f.model: f.fit for f in site_fits if "log_likelihood" in f.fit.posterior.children}
        if len(comparable) >= 1:
            stage.loo[site] = loo_table(comparable)
    return stage


def bayes_sections(stage: BayesStage, config: Any) -> list[Section]:
    """Report sections of the Bayesian stage."""
    cols = ["estimand", "model", "median", "eti_low", "eti_high", "hdi_low", "hdi_high", "p_lt_0", "p_gt_0",
            "rope", "p_in_rope", "bf10", "diagnostics"]
    diag = pd.DataFrame([{"model": f.model, "site": f.site, "verdict": "pass" if f.fit.passed else "FAIL",
                          "max_rhat": f.fit.diagnostics.max_rhat, "min_ess_bulk": f.fit.diagnostics.min_ess_bulk,
                          "min_ess_tail": f.fit.diagnostics.min_ess_tail, "divergences": f.fit.diagnostics.n_divergences,
                          "min_ebfmi": min(f.fit.diagnostics.ebfmi), "wall_s": f.fit.wall_time} for f in stage.fits])
    sections = [
        Section("bayes", "Bayesian hierarchical models",
                paragraphs=[f"Models: {', '.join(config.bayes_models)}; priors: {config.priors}; "
                            f"{config.chains} chains x {config.draws} draws after {config.tune} tuning steps "
                            f"(nutpie). Intervals are 95% (ETI and HDI); ROPE = +/- the DXA least significant "
                            "change; BF10 is the Savage-Dickey Bayes factor of the responder x time interaction."],
                tables=[Table("Posterior summaries", stage.estimands[cols], "bayes_estimands"),
                        Table("Convergence diagnostics (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, "
                              "E-BFMI >= 0.3)", diag, "bayes_diagnostics")],
                figures=[(c, n) for s, c, n in stage.figures if n.startswith(("trajectories", "contrasts", "ppc", "rank"))],
                status="fail" if stage.failures else "ok"),
        Section("compare", "Bayesian vs frequentist",
                paragraphs=["Each Bayesian estimate next to its frequentist counterpart "
                            f"({', '.join(sorted({FREQUENTIST_COUNTERPART[m] for m in config.bayes_models}))})."],
                tables=[Table("Bayesian vs frequentist", stage.comparison, "bayes_vs_frequentist")],
                figures=[(c, n) for s, c, n in stage.figures if n.startswith("forest")]),
    ]
    if stage.loo:
        paras, tabs = [], []
        for site, (tab, text) in stage.loo.items():
            paras.append(f"{SITE_LABELS[site]}: {text}")
            tabs.append(Table(f"PSIS-LOO, {SITE_LABELS[site]}", tab, f"loo_{site}"))
        sections.append(Section("loo", "Model comparison (PSIS-LOO)", paragraphs=paras, tables=tabs,
                                status="warning" if any("UNRELIABLE" in t for _, t in stage.loo.values()) else "ok"))
    return sections
