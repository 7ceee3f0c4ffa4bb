"""The Bayesian stage of ``rajak run``: fit the configured models at each site, summarise the
estimands, compare with the frequentist analysis, check the fits, set each fit's posterior against
its prior, and describe it all as report sections with figures.

Prior draws
-----------
The prior of the key quantities of a fit (each group's % change to the endpoint, each level - reference
difference in % and in g/cm^2) is drawn by ``pymc.sample_prior_predictive`` from
the same built model with the same priors and data layout as the fit (``PRIOR_DRAWS`` draws, seeded
by the run seed). The models' likelihoods are ``pm.Potential`` terms, which forward sampling
ignores, so these are draws from the prior itself. With a fit cache they are stored beside the fit
(``prior_<model>_<site>_<key>.npz``, keyed on the fit's cache key, the number of draws and the seed).
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis.bayes.fit import (MODELS, FREQUENTIST_COUNTERPART, BayesFit, analysis_frame, compare, fit_bayes,
                                prior_object)
from analysis.bayes.estimands import COMPARE_COLUMNS
from analysis.study.applicability import NotApplicable, NotEstimable
from analysis.study.groups import design_of
from analysis.study.estimands import difference_name, estimand_name, site_label
from analysis.common.io import atomic_copy, atomic_write_bytes
from analysis.bayes.model_compare import loo_table
from analysis.common.quiet import quiet_logger
from analysis.figures.diagnostics import diagnostics_tree, energy_plot, ess_plot, rank_plot
from analysis.figures.observed import trajectories
from analysis.figures.output import DeferredFigure, save_figure
from analysis.figures.posterior import (PPC_DRAWS, contrast_posteriors, forest, ppc_change, ppc_posterior,
                                        prior_posterior)
from analysis.report import Section, Table

__all__ = ["BayesStage", "DIAGNOSTIC_FIGURES", "PRIOR_DRAWS", "PRIOR_POSTERIOR_QUANTITIES", "PriorPosterior",
           "run_bayes_stage", "bayes_sections", "diagnostic_figure_names", "prior_draws", "prior_posterior_items",
           "loo_left_out_reason", "prior_posterior_table"]

#: Prior draws per fit for the prior-vs-posterior figure.
PRIOR_DRAWS = 4000
#: (posterior variable, dim, measure) of the quantities set against their prior: every group's %
#: change, every level - reference difference in % and in g/cm^2 (:func:`prior_posterior_quantities`).
PRIOR_POSTERIOR_QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("pct_change_end", "group", "pct"),
    ("diff_pct_change_end", "contrast", "pct"),
    ("diff_change_end", "contrast", "abs"),
)
_PRIOR_CACHE_VERSION = 2


def prior_posterior_quantities(post: Any) -> list[tuple[str, str, str]]:
    """(variable, group level or contrast label, measure) of :data:`PRIOR_POSTERIOR_QUANTITIES`
    that the posterior ``post`` holds, one per level / contrast of its dims."""
    out = []
    for variable, dim, measure in PRIOR_POSTERIOR_QUANTITIES:
        if variable in post.data_vars and dim in post[variable].dims:
            out += [(variable, str(lv), measure) for lv in post[variable].coords[dim].values]
    return out

#: The convergence diagnostics figures drawn for every fit: (name prefix, builder, fit groups it
#: reads, caption). Each is drawn from :func:`analysis.figures.diagnostics.diagnostics_tree` of the
#: fit in the figure writer's process; the figure is ``<prefix>_<model>_<site>``.
DIAGNOSTIC_FIGURES: tuple[tuple[str, Callable[..., Any], tuple[str, ...], str], ...] = (
    ("rank", rank_plot, ("posterior",), "Rank plots per chain of the main parameters (chains that mix well stay "
                                        "flat and inside the envelope)"),
    ("ess", ess_plot, ("posterior",), "Effective sample size across the posterior of the main parameters, with "
                                      "the required 400"),
    ("energy", energy_plot, ("sample_stats",), "Sampler energy: marginal vs transition density and E-BFMI per "
                                               "chain"),
)

#: One-line description of each registered model (report sections; unknown names fall back to the name).
MODEL_DESCRIPTIONS = {
    "lmm": "hierarchical linear mixed model (random intercept and slope per patient, normal errors)",
    "robust": "the same LMM with Student-t errors (robust to outlying scans)",
    "activity": "LMM with disease activity (DAS28-CRP) as a time-varying predictor of the BMD change",
    "mmrm": "Bayesian MMRM: visit as a factor with an unstructured (LKJ) covariance of the change",
    "joint": "joint spine + femoral-neck LMM with correlated patient effects across sites",
}


@dataclass
class PriorPosterior:
    """Prior and posterior draws of one quantity of one fit.

    Attributes
    ----------
    model, site : str
        The fit.
    variable : str
        Posterior variable (``pct_change_end``, ``diff_pct_change_end``, ``diff_change_end``).
    group : str or None
        Group level (``pct_change_end``) or contrast label (``"active - placebo"``).
    label : str
        Estimand name (panel title and table row).
    prior, posterior : ndarray
        Flat draws.
    """

    model: str
    site: str
    variable: str
    group: str | None
    label: str
    prior: np.ndarray
    posterior: np.ndarray




def _quantity_label(site: str, variable: str, group: str | None, measure: str, month: float = 12) -> str:
    if variable.startswith("diff_") and group is not None and " - " in group:
        level, reference = group.split(" - ", 1)
        return difference_name(site, measure, month, groups=(level, reference))
    return estimand_name(site, group, measure, month)


def _select(ds: Any, variable: str, group: str | None, site: str) -> np.ndarray:
    da = ds[variable]
    if "site" in da.dims:
        da = da.sel(site=site)
    if group is not None:
        dim = "contrast" if "contrast" in da.dims else "group"
        da = da.sel({dim: group})
    return np.asarray(da.values, dtype=float).ravel()


def prior_draws(built: Any, var_names: tuple[str, ...] | list[str], draws: int = PRIOR_DRAWS,
                seed: int = 0) -> Any:
    """Draws of ``var_names`` from the prior of a built model.

    Parameters
    ----------
    built : model object
        What a :data:`analysis.bayes.fit.MODELS` builder returns (has ``pymc_model``).
    var_names : sequence of str
        Variables to draw; those the model lacks are skipped.
    draws : int
        Number of prior draws.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    xarray.Dataset
        The ``prior`` group of ``pymc.sample_prior_predictive`` (dims ``chain``, ``draw``, ...).

    Raises
    ------
    ValueError
        If ``draws < 10`` or the model has none of ``var_names``.
    """
    import pymc as pm

    if draws < 10:
        raise ValueError(f"prior draws must be at least 10, got {draws}")
    model = built.pymc_model
    names = [v for v in var_names if v in model.named_vars]
    if not names:
        raise ValueError(f"the model has none of the variables {list(var_names)}")
    with warnings.catch_warnings(), quiet_logger("pymc.sampling.forward"):
        warnings.simplefilter("ignore")  # "Potentials are ignored": intended, they are the likelihood
        dt = pm.sample_prior_predictive(draws, model=model, var_names=names,
                                        random_seed=np.random.default_rng(seed))
    return dt["prior"].to_dataset()


def _prior_cache_path(cache_dir: Path, bf: BayesFit, draws: int, seed: int) -> Path | None:
    key = bf.extra.get("cache_key")
    if not key:
        return None
    post = bf.fit.posterior["posterior"].to_dataset()
    spec = {"fit": key, "draws": draws, "seed": seed, "version": _PRIOR_CACHE_VERSION,
            "quantities": [list(map(str, q)) for q in prior_posterior_quantities(post)]}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"prior_{bf.model}_{bf.site}_{digest}.npz"


def prior_posterior_items(bf: BayesFit, built: Any, draws: int = PRIOR_DRAWS, seed: int = 0,
                          cache_dir: str | Path | None = None) -> list[PriorPosterior]:
    """Prior and posterior draws of :data:`PRIOR_POSTERIOR_QUANTITIES` for one fit.

    Parameters
    ----------
    bf : BayesFit
        The fit (its posterior supplies the posterior draws).
    built : model object or callable
        The same model as the fit, built on the same data with the same priors (supplies the prior
        draws, :func:`prior_draws`), or a no-argument callable returning it: then the model is
        built only when the prior draws are not in the cache.
    draws, seed : int
        Prior draws and their seed.
    cache_dir : path, optional
        The fit cache: prior draws are read from / written to it when ``bf`` has a cache key
        (``bf.extra["prior_cache"]`` records ``"hit"``, ``"miss"`` or ``"off"``).

    Returns
    -------
    list of PriorPosterior
        One per quantity the posterior holds.
    """
    post = bf.fit.posterior["posterior"].to_dataset()
    wanted = prior_posterior_quantities(post)
    month = _endpoint(bf)
    path = _prior_cache_path(Path(cache_dir), bf, draws, seed) if cache_dir is not None else None
    priors: dict[str, np.ndarray] = {}
    if path is not None and path.is_file():
        with np.load(path) as held:
            priors = {k: held[k] for k in held.files}
        bf.extra["prior_cache"] = "hit"
    if not all(f"{v}|{g or ''}" in priors for v, g, _ in wanted):
        model = built() if callable(built) and not hasattr(built, "pymc_model") else built
        ds = prior_draws(model, sorted({v for v, _, _ in wanted}), draws, seed)
        priors = {f"{v}|{g or ''}": _select(ds, v, g, bf.site) for v, g, _ in wanted if v in ds.data_vars}
        if path is not None:
            buf = io.BytesIO()
            np.savez(buf, **priors)
            atomic_write_bytes(path, buf.getvalue())
        bf.extra["prior_cache"] = "miss" if path is not None else "off"
    items = []
    for variable, group, measure in wanted:
        key = f"{variable}|{group or ''}"
        if key not in priors:
            continue
        items.append(PriorPosterior(bf.model, bf.site, variable, group,
                                    _quantity_label(bf.site, variable, group, measure, month), priors[key],
                                    _select(post, variable, group, bf.site)))
    return items


def prior_posterior_table(items: list[PriorPosterior]) -> pd.DataFrame:
    """Prior and posterior summaries per quantity; ``width_ratio`` is the width of the posterior's
    central 95% interval divided by the prior's (near 0: the data dominate the prior; near 1: the
    prior does). Interval widths rather than SDs, because the priors of % changes (a ratio) have
    heavy tails."""
    rows = []
    for it in items:
        pr, po = it.prior[np.isfinite(it.prior)], it.posterior[np.isfinite(it.posterior)]
        rows.append({"model": it.model, "site": it.site, "estimand": it.label, "prior_median": np.median(pr),
                     "prior_q025": np.quantile(pr, 0.025), "prior_q975": np.quantile(pr, 0.975),
                     "prior_sd": pr.std(), "posterior_median": np.median(po),
                     "posterior_q025": np.quantile(po, 0.025), "posterior_q975": np.quantile(po, 0.975),
                     "posterior_sd": po.std(),
                     "width_ratio": np.subtract(*np.quantile(po, [0.975, 0.025]))
                     / np.subtract(*np.quantile(pr, [0.975, 0.025]))})
    return pd.DataFrame(rows, columns=["model", "site", "estimand", "prior_median", "prior_q025", "prior_q975",
                                       "prior_sd", "posterior_median", "posterior_q025", "posterior_q975",
                                       "posterior_sd", "width_ratio"])


@dataclass
class BayesStage:
    fits: list[BayesFit]
    estimands: pd.DataFrame
    comparison: pd.DataFrame
    loo: dict[str, tuple[pd.DataFrame, str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # (site or '', caption, name)
    prior_posterior: list[PriorPosterior] = field(default_factory=list)
    #: (model, site, "not applicable: ..." / "not estimable: ...") of the fits the design rules out
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    #: (model, site, why) of the fits PSIS-LOO leaves out: a large fit keeps no pointwise log-likelihoods
    loo_left_out: list[tuple[str, str, str]] = field(default_factory=list)


def _endpoint(fit: BayesFit) -> float:
    """The month a fit's reported changes refer to (its model's endpoint; 12 if it does not say)."""
    model = fit.fit.settings.get("model", {}) if isinstance(fit.fit.settings, dict) else {}
    return float(model.get("endpoint_month", 12.0))


def _bands(fit: BayesFit, n: int = 13) -> pd.DataFrame:
    """Posterior mean and 95% band of each group's % change along the straight line of the
    trajectory model, from baseline to the endpoint."""
    post = fit.fit.posterior["posterior"].to_dataset()
    end = _endpoint(fit)
    rows = []
    pct_end = post["pct_change_end"]
    if "site" in pct_end.dims:
        pct_end = pct_end.sel(site=fit.site)
    for g in map(str, pct_end.coords["group"].values):
        pct = pct_end.sel(group=g).values.reshape(-1)
        for m in np.linspace(0, end, n):
            x = pct * m / end
            rows.append({"site": fit.site, "group": g, "month": m, "mean": x.mean(),
                         "low": np.quantile(x, 0.025), "high": np.quantile(x, 0.975)})
    return pd.DataFrame(rows)


def diagnostic_figure_names(model: str, site: str) -> list[str]:
    """The names of the diagnostics figures of the fit of ``model`` at ``site`` (:data:`DIAGNOSTIC_FIGURES`)."""
    return [f"{prefix}_{model}_{site}" for prefix, _, _, _ in DIAGNOSTIC_FIGURES]


def _save_diagnostics(f: BayesFit, site: str, figures_dir: Path, label: str, save: Callable[..., Any],
                      stage: BayesStage, log: Callable[[str], None]) -> None:
    """Queue the diagnostics figures of one fit: each is built in the figure writer's process, and
    only the fit's groups it reads travel there."""
    for prefix, make, groups, caption in DIAGNOSTIC_FIGURES:
        try:
            tree = diagnostics_tree(f.fit, groups)
        except ValueError as exc:  # e.g. a sampler without energy statistics
            log(f"  {f.model} at {site}: no {prefix} plot ({exc})")
            continue
        name = f"{prefix}_{f.model}_{site}"
        save(DeferredFigure(make, (tree,), {"label": label}), figures_dir, name)
        stage.figures.append((site, f"{caption}: {f.model} at {site_label(site)}", name))


def run_bayes_stage(derived: pd.DataFrame, config: Any, freq_estimands: pd.DataFrame, figures_dir: Path,
                    fits_dir: Path, label: str, log: Callable[[str], None],
                    cache_dir: Path | None = None, save: Callable[..., Any] | None = None,
                    design: Any = None) -> BayesStage:
    """Fit ``config.bayes_models`` at ``config.sites`` and write figures and fits.

    Parameters
    ----------
    derived : DataFrame
        The derived study data.
    config : RunConfig
        Models, sites, priors, sampler settings, seed.
    freq_estimands : DataFrame
        The frequentist estimands (for the comparison and the forest plots).
    figures_dir, fits_dir : Path
        Where figures (PNG + SVG) and fits (``<model>_<site>.nc``) are written.
    label : str
        The dataset's label, printed on every figure.
    log : callable
        Receives progress messages.
    cache_dir : Path, optional
        Content-addressed fit cache: fits (and their prior draws) whose model, data and settings
        are unchanged are read back instead of sampled.
    save : callable, optional
        ``save(fig, directory, name)`` writes a figure or a :class:`~analysis.figures.output.DeferredFigure`
        (default :func:`analysis.figures.output.save_figure`; the pipeline passes
        :meth:`analysis.report.figure_writer.FigureWriter.save`, which draws them in its worker).
    design : ResolvedDesign, optional
        The study's design (default ``derived.attrs["design"]``; none: the RAJAK default).

    Returns
    -------
    BayesStage
        With ``figures``: per site the posterior trajectories, the contrasts, the PPC and the forest
        plot; per fit the prior vs posterior and the diagnostics figures (:data:`DIAGNOSTIC_FIGURES`).
    """
    save = save_figure if save is None else save
    design = design_of(derived, design)
    fits: list[BayesFit] = []
    failures: list[str] = []
    skipped: list[tuple[str, str, str]] = []
    for model in config.bayes_models:
        for site in config.sites:
            log(f"Bayesian {model} at {site} ({config.chains} chains x {config.draws} draws)")
            try:
                bf = fit_bayes(derived, model, site, config.priors, config.undefined_responders,
                               config.responder.rule(), draws=config.draws, tune=config.tune, chains=config.chains,
                               seed=config.seed, target_accept=config.target_accept, cache_dir=cache_dir,
                               design=design)
            except (NotApplicable, NotEstimable) as exc:  # the design rules it out: said, and the run goes on
                why = f"{'not applicable' if isinstance(exc, NotApplicable) else 'not estimable'}: {exc}"
                log(f"  {model} at {site}: {why}")
                skipped.append((model, site, why))
                continue
            log(f"  {model} at {site}: {'read from the fit cache' if bf.extra.get('cache') == 'hit' else 'sampled'}"
                f" ({bf.fit.diagnostics})")
            cached = bf.extra.get("cache_path")
            if bf.extra.get("cache") == "hit" and cached and Path(cached).is_file():
                atomic_copy(cached, fits_dir / f"{model}_{site}.nc")  # the same bytes save() wrote
            else:
                bf.fit.save(fits_dir / f"{model}_{site}.nc")
            if not bf.fit.passed:
                failures.append(f"{model} at {site}: " + "; ".join(bf.fit.diagnostics.failures))
            fits.append(bf)
    estimands = (pd.concat([f.table for f in fits], ignore_index=True) if fits
                 else pd.DataFrame(columns=["estimand", "site", "model", "median", "eti_low", "eti_high", "hdi_low",
                                            "hdi_high", "p_lt_0", "p_gt_0", "rope", "p_in_rope", "bf10",
                                            "diagnostics"]))
    comparison = compare(fits, freq_estimands) if fits else pd.DataFrame(columns=COMPARE_COLUMNS)
    stage = BayesStage(fits=fits, estimands=estimands, comparison=comparison, failures=failures, skipped=skipped)

    frame, _ = analysis_frame(derived, config.undefined_responders, config.responder.rule(), design=design)
    for site in config.sites:
        site_fits = [f for f in fits if f.site == site]
        lmm = next((f for f in site_fits if f.model == "lmm"), site_fits[0] if site_fits else None)
        if lmm is None:
            continue
        save(trajectories(derived, (site,), label=label, bands=_bands(lmm)), figures_dir,
             f"trajectories_posterior_{site}")
        stage.figures.append((site, f"Observed trajectories with the {lmm.model} posterior mean and 95% band per "
                                    f"group, {site_label(site)}", f"trajectories_posterior_{site}"))
        for f in site_fits:
            _save_diagnostics(f, site, figures_dir, label, save, stage, log)
            def build(f=f, site=site):
                return MODELS[f.model](frame, site, prior_object(config.priors, site, frame))

            items = prior_posterior_items(f, build, PRIOR_DRAWS, config.seed, cache_dir)
            if items:
                stage.prior_posterior += items
                save(DeferredFigure(prior_posterior, ([(it.label, it.prior, it.posterior) for it in items],),
                                    {"title": f"Prior (dashed) vs posterior (solid): {f.model} at "
                                              f"{site_label(site)}, priors '{config.priors}'", "label": label}),
                     figures_dir, f"prior_posterior_{f.model}_{site}")
                stage.figures.append((site, f"Prior vs posterior of the key quantities of {f.model} at "
                                            f"{site_label(site)} ({PRIOR_DRAWS} prior draws; the posterior "
                                            "is the fit's)", f"prior_posterior_{f.model}_{site}"))
        pct_items = [it for it in lmm.estimands if it.estimand.endswith("%")]
        save(DeferredFigure(contrast_posteriors, (pct_items,), {"label": label}), figures_dir, f"contrasts_{site}")
        stage.figures.append((site, f"Posterior of the key % estimands with the ROPE (DXA least significant "
                                    f"change, where known for the site) and 95% HDI, {site_label(site)}",
                              f"contrasts_{site}"))
        end = _endpoint(lmm)
        built = MODELS[lmm.model](frame, site, None)
        if hasattr(built, "posterior_predictive"):
            # only the draws the figure shows are replicated (PPC_DRAWS, not every draw x observation);
            # a large fit's patient effects are drawn on request, and its replicates kept in float32
            post = ppc_posterior(lmm.fit.posterior["posterior"].to_dataset(), PPC_DRAWS, seed=0)
            y_rep = (built.posterior_predictive(post, seed=config.seed) if "u" in post else
                     built.posterior_predictive(post, seed=config.seed, dtype=np.float32))
            save(DeferredFigure(ppc_change, (built.prepared, y_rep, site),
                                {"label": label, "seed": 0, "month": end, "n_lines": PPC_DRAWS}),
                 figures_dir, f"ppc_{site}")
            stage.figures.append((site, f"Posterior predictive check of the {lmm.model} model: % change to "
                                        f"month {end:g}, {site_label(site)}", f"ppc_{site}"))
        # forest of every level - reference difference across analyses
        post = lmm.fit.posterior["posterior"].to_dataset()
        contrasts = ([str(c) for c in post["diff_pct_change_end"].coords["contrast"].values]
                     if "diff_pct_change_end" in post else [])
        for k, contrast in enumerate(contrasts):
            level, reference = contrast.split(" - ", 1)
            name = difference_name(site, "pct", end, groups=(level, reference))
            rows = []
            for _, r in freq_estimands[freq_estimands["estimand"] == name].iterrows():
                rows.append({"label": r["method"], "estimate": r["estimate"], "low": r["ci_low"],
                             "high": r["ci_high"], "kind": "frequentist"})
            for _, r in estimands[estimands["estimand"] == name].iterrows():
                rows.append({"label": f"Bayesian {r['model']}", "estimate": r["median"], "low": r["eti_low"],
                             "high": r["eti_high"], "kind": "bayesian"})
            if rows:
                fname = f"forest_{site}" if k == 0 else f"forest_{site}_{k + 1}"
                save(forest(pd.DataFrame(rows), name, label=label), figures_dir, fname)
                stage.figures.append((site, f"{contrast} difference across analyses, {site_label(site)}", fname))
        comparable = {f.model: f.fit for f in site_fits if "log_likelihood" in f.fit.posterior.children}
        for f in site_fits:
            if "log_likelihood" not in f.fit.posterior.children and \
                    f.fit.posterior["posterior"].attrs.get("rajak_per_patient") == "on request":
                why = loo_left_out_reason(f, int(derived["patient_id"].nunique()))
                stage.loo_left_out.append((f.model, site, why))
                log(f"  {f.model} at {site}: PSIS-LOO left out ({why})")
        if len(comparable) >= 1:
            stage.loo[site] = loo_table(comparable)
    return stage


def loo_left_out_reason(f: BayesFit, n_patients: int) -> str:
    """Why PSIS-LOO leaves out a fit whose pointwise log-likelihoods are computed on request.

    Parameters
    ----------
    f : BayesFit
        A fit whose posterior says ``rajak_per_patient = "on request"``.
    n_patients : int
        Patients in the study.

    Returns
    -------
    str
        One sentence: the size, the threshold (or ``RAJAK_PER_PATIENT=on_request``) and how to have it.
    """
    import os

    from models.marginal_effects import EAGER_PATIENT_DRAWS

    post = f.fit.posterior["posterior"]
    n_draws = int(post.sizes.get("chain", 1) * post.sizes.get("draw", 1))
    forced = os.environ.get("RAJAK_PER_PATIENT", "auto").strip().lower() == "on_request"
    size = f"{n_patients:,} patients x {n_draws:,} posterior draws"
    because = ("RAJAK_PER_PATIENT=on_request" if forced
               else f"above the {EAGER_PATIENT_DRAWS:,} patients x draws up to which a fit keeps them")
    most = EAGER_PATIENT_DRAWS // max(n_patients, 1)
    return (f"the fit keeps no pointwise log-likelihoods at {size} ({because}), and PSIS-LOO needs them for "
            "every observation and draw; RAJAK_PER_PATIENT=always keeps them with every fit, given the memory"
            + (f", and so does a fit of at most {most:,} posterior draws in all" if most >= 400 and not forced else ""))


def _diagnostics_row(f: BayesFit) -> dict[str, Any]:
    d = f.fit.diagnostics
    return {"model": f.model, "site": f.site, "verdict": "pass" if f.fit.passed else "FAIL", "max_rhat": d.max_rhat,
            "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail, "divergences": d.n_divergences,
            "min_ebfmi": min(d.ebfmi), "wall_s": f.fit.wall_time}


def bayes_sections(stage: BayesStage, config: Any) -> list[Section]:
    """Report sections of the Bayesian stage.

    Parameters
    ----------
    stage : BayesStage
        What :func:`run_bayes_stage` returned (its figures written).
    config : RunConfig
        Models, priors and sampler settings (text).

    Returns
    -------
    list of Section
        ``bayes`` (overview: settings, posterior summaries, diagnostics of every fit, posterior
        trajectories and contrasts), one ``bayes_<model>`` per configured model (prior vs posterior
        with its contraction table; then per fit its diagnostics row followed by its rank, ESS and
        energy plots), ``ppc`` (posterior predictive checks), ``compare`` (Bayesian vs frequentist)
        and ``loo`` (PSIS-LOO, when any fit has a pointwise log-likelihood).
    """
    cols = ["estimand", "model", "median", "eti_low", "eti_high", "hdi_low", "hdi_high", "p_lt_0", "p_gt_0",
            "rope", "p_in_rope", "bf10", "diagnostics"]
    diag = pd.DataFrame([_diagnostics_row(f) for f in stage.fits])
    drawn = {n: c for _, c, n in stage.figures}
    skipped = [f"{model} at {site_label(site)}: {why}" for model, site, why in stage.skipped]
    sections = [
        Section("bayes", "Bayesian hierarchical models",
                paragraphs=[*skipped, f"Models: {', '.join(config.bayes_models)}; priors: {config.priors}; "
                            f"{config.chains} chains x {config.draws} draws after {config.tune} tuning steps "
                            f"(nutpie). Intervals are 95% (ETI and HDI); ROPE = +/- the DXA least significant "
                            "change (where known for the site); BF10 is the Savage-Dickey Bayes factor of each "
                            "group x time interaction. "
                            "Each model's prior is set against its posterior in the section that follows."],
                tables=[Table("Posterior summaries", stage.estimands[cols], "bayes_estimands"),
                        Table("Convergence diagnostics (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, "
                              "E-BFMI >= 0.3)", diag, "bayes_diagnostics")],
                figures=[(c, n) for s, c, n in stage.figures if n.startswith(("trajectories", "contrasts"))],
                status="fail" if stage.failures else "warning" if stage.skipped else "ok"),
    ]
    pp_table = prior_posterior_table(stage.prior_posterior)
    for model in config.bayes_models:
        fits = [f for f in stage.fits if f.model == model]
        if not fits:
            continue
        failed = [f.site for f in fits if not f.fit.passed]
        tab = pp_table[pp_table["model"] == model]
        paras = [f"{model}: {MODEL_DESCRIPTIONS.get(model, model)}. Sites: "
                 f"{', '.join(site_label(f.site) for f in fits)}; priors '{config.priors}'."]
        if len(tab):
            weakest = tab.loc[tab["width_ratio"].idxmax()]
            paras.append(f"Prior (dashed) against posterior (solid) of each group's change and each difference "
                         f"from the reference group (in % and in g/cm^2); the prior draws come from the same model and "
                         f"data layout ({PRIOR_DRAWS} draws). width_ratio = width of the posterior 95% interval / "
                         f"width of the prior's: near 0 the data dominate the prior, near 1 the prior does. "
                         f"Largest: {weakest['width_ratio']:.3f} ({weakest['estimand']}).")
        paras.append("Each fit's convergence diagnostics follow, drawn by arviz-plots: rank plots per chain "
                     "(well-mixed chains stay flat, inside the envelope), the effective sample size across the "
                     "posterior against the required 400, and the sampler's energy (the transition density "
                     "should be about as wide as the marginal one; E-BFMI >= 0.3 per chain).")
        if failed:
            paras.append("FAILED diagnostics at " + ", ".join(site_label(s) for s in failed)
                         + ": do not interpret these posteriors.")
        tables = ([Table(f"Prior vs posterior, {model}", tab.reset_index(drop=True), f"bayes_prior_posterior_{model}",
                         figures=[(c, n) for _, c, n in stage.figures if n.startswith(f"prior_posterior_{model}_")])]
                  if len(tab) else [])
        tables += [Table(f"Convergence diagnostics, {model} at {site_label(f.site)}",
                         pd.DataFrame([_diagnostics_row(f)]),
                         figures=[(drawn[n], n) for n in diagnostic_figure_names(model, f.site) if n in drawn])
                   for f in fits]
        sections.append(Section(
            f"bayes_{model}", f"Bayesian model '{model}': prior vs posterior and diagnostics", paragraphs=paras,
            tables=tables, status="fail" if failed else "ok"))
    ppc = [(c, n) for s, c, n in stage.figures if n.startswith("ppc")]
    if ppc:
        sections.append(Section("ppc", "Posterior predictive checks",
                                paragraphs=["Replicated data sets drawn from the posterior predictive distribution "
                                            "against the observed data: the observed ECDF (black) should look like "
                                            "one of the replicated ones. A systematic shift or spread flags misfit."],
                                figures=ppc))
    sections.append(
        Section("compare", "Bayesian vs frequentist",
                paragraphs=["Each Bayesian estimate next to its frequentist counterpart "
                            f"({', '.join(sorted({FREQUENTIST_COUNTERPART[m] for m in config.bayes_models}))})."],
                tables=[Table("Bayesian vs frequentist", stage.comparison, "bayes_vs_frequentist")],
                figures=[(c, n) for s, c, n in stage.figures if n.startswith("forest")]))
    if stage.loo or stage.loo_left_out:
        paras, tabs = [], []
        for site, (tab, text) in stage.loo.items():
            paras.append(f"{site_label(site)}: {text}")
            tabs.append(Table(f"PSIS-LOO, {site_label(site)}", tab, f"loo_{site}"))
        for model, site, why in stage.loo_left_out:
            paras.append(f"NOTE: PSIS-LOO left out {model} at {site_label(site)}: {why}.")
        unreliable = any("UNRELIABLE" in t for _, t in stage.loo.values())
        sections.append(Section("loo", "Model comparison (PSIS-LOO)", paragraphs=paras, tables=tabs,
                                status="warning" if unreliable or stage.loo_left_out else "ok"))
    return sections
