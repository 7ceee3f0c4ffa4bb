"""``rajak frequentist``, ``rajak fit`` and ``rajak compare``: the primary analyses of one study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from analysis.cli.common import (EXIT_BAD_INPUT, DesignFlags, design_options, analysis_errors, err, info, json_default, load_derived,
                                 responder_text)
from analysis.run.config import ConfigError
from analysis.study.data import DataValidationError

__all__ = ["compare", "fit", "frequentist"]


@design_options
def frequentist(
    data: Annotated[Optional[Path], typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Undefined responder status: exclude, last_observed or unknown.")] = None,
    imputations: Annotated[int, typer.Option(help="Multiple imputations (0 = skip MI).")] = 50,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the imputations.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit every table as JSON on stdout.")] = False,
    design: DesignFlags | None = None,
) -> None:
    """The frequentist primary analysis on the study's design: completers tests, LMM, MMRM, MI (and,
    for a responder study, the replication of the RAJAK paper's figures)."""
    from analysis.frequentist.primary import frequentist_analysis
    from analysis.rajak.published import check_replication, paper_analysis, replication_table
    from analysis.study.applicability import NotApplicable

    cfg, ds, derived = load_derived(data, config, strategy, seed, map_, design)
    responders = ds.design.design.group.kind == "derived"
    info(f"{ds.label}: fitting completers tests, LMM and MMRM per site"
          + (f", {imputations} imputations" if imputations else ""))
    with analysis_errors(ds.source):
        res = frequentist_analysis(derived, cfg.sites, cfg.undefined_responders, cfg.responder.rule(),
                                   cfg.endpoint_month, mi_imputations=imputations, seed=cfg.seed,
                                   mmrm_covariances=cfg.mmrm_covariances, design=ds.design)
        try:
            check_replication(ds.design)
            rep, no_rep = replication_table(paper_analysis(derived, cfg.endpoint_month)), None
        except NotApplicable as exc:
            rep, no_rep = None, str(exc)
    if as_json:
        out = {"data_label": ds.label, "synthetic": ds.synthetic, "design": ds.design.to_dict(),
               "responder_rule": responder_text(cfg, derived) if responders else None,
               "replication": None if rep is None else rep.replace({float("nan"): None}).to_dict(orient="records"),
               **res.to_dict()}
        typer.echo(json.dumps(out, indent=2, default=json_default))
        return
    fmt = {"float_format": lambda v: f"{v:.4g}", "index": False}
    typer.echo(f"== {ds.label} ==")
    typer.echo(_design_line(ds.design))
    if responders:
        typer.echo(f"responders: {responder_text(cfg, derived)}; undefined status: {res.strategy}")
    if rep is not None:
        typer.echo("\nPublished figures vs this analysis (completers):")
        typer.echo(rep.drop(columns=["description", "kind"]).to_string(**fmt))
    elif responders:
        typer.echo(f"\nPublished figures: not applicable: {no_rep}")
    typer.echo("\nCompleters tests (t and Wilcoxon; 'exact' says which p-values are exact):")
    typer.echo(_completers_text(res.completers.table).to_string(**fmt))
    typer.echo("\nKey estimands (estimate, SE, Satterthwaite/Welch df, 95% CI, p):")
    typer.echo(res.estimands.to_string(**fmt))
    typer.echo(f"\nMMRM LS-means of the change per visit and group ({res.lsmeans['covariance'].iloc[0]}, "
               "g/cm^2 and %):" if len(res.lsmeans) else "")
    primary = res.lsmeans[res.lsmeans["covariance"] == res.lsmeans["covariance"].iloc[0]] if len(res.lsmeans) else None
    if primary is not None:
        typer.echo(primary.drop(columns=["covariance"]).to_string(**fmt))
    if res.not_estimable:
        typer.echo("\nNot estimable:")
        for row in res.not_estimable:
            typer.echo(f"  {row['analysis']}, {row['site']}: not estimable: {row['reason']}")
    for note in res.notes:
        if ": not estimable: " not in note:  # listed above
            typer.echo(f"WARNING: {note}")


def _design_line(design) -> str:
    """The study's design in one line: groups, sites, visits, endpoint, covariates."""
    kind = design.design.group.kind
    groups = {"derived": "responders vs non-responders (derived from disease activity)",
              "none": "single arm"}.get(kind, f"{', '.join(design.group_levels)} from column "
                                              f"{design.design.group.column!r} (reference {design.reference})")
    visits = ", ".join(f"{v:g}" for v in design.visits)
    return (f"design: {groups}; sites {', '.join(design.sites)}; visits (months) {visits}; endpoint month "
            f"{design.endpoint:g}; covariates {', '.join(design.covariates) or 'none'}")


def _completers_text(table):
    """The completers tests in a compact form for the terminal."""
    cols = [c for c in ("site", "measure", "analysis", "group", "test", "n", "estimate", "ci_low", "ci_high", "p",
                        "exact") if c in table.columns]
    return table[cols]


def _out_of_memory_text(what: str, site: str, derived, draws: int, chains: int, saving: bool = False) -> str:
    """The one line ``rajak fit`` ends with when memory runs out: the size and what to ask for instead."""
    n_pat = int(derived["patient_id"].nunique()) if "patient_id" in derived.columns else 0
    fewer = max(100, draws // 4)
    step = "saving the fit" if saving else "fitting"
    return (f"out of memory {step} {what} at {site} ({n_pat} patients, {chains} chains x {draws} draws): "
            f"ask for fewer draws or chains (e.g. --draws {fewer} --chains 2), "
            + ("or leave out --save" if saving else "one --site at a time")
            + ", and leave RAJAK_PER_PATIENT unset (per-patient effects and log-likelihoods on request)")


def _compare_out_of_memory_text(what: str, site: str, sites: list[str], models: list[str], derived, draws: int,
                                chains: int) -> str:
    """The one line ``rajak compare`` ends with when memory runs out: where, the size, what to ask for instead."""
    n_pat = int(derived["patient_id"].nunique()) if "patient_id" in derived.columns else 0
    where = what if what == "the frequentist analysis" else f"fitting {what} at {site}"
    asks = [f"fewer draws or chains (e.g. --draws {max(100, draws // 4)} --chains 2)"]
    if len(sites) > 1:
        asks.append("one --site at a time")
    if len(models) > 1:
        asks.append("one --model at a time")
    return (f"out of memory {where} ({n_pat} patients, {len(sites)} site{'s' if len(sites) > 1 else ''}, "
            f"{chains} chains x {draws} draws): ask for " + ", ".join(asks)
            + ", and leave RAJAK_PER_PATIENT unset (per-patient effects and log-likelihoods on request)")


@design_options
def fit(
    model: Annotated[str, typer.Option(help="lmm, mmrm, joint, activity or robust (leave at lmm with --formula).")] = "lmm",
    formula: Annotated[Optional[str], typer.Option(
        help="Your own model formula, fitted with bambi and sampled like every model, e.g. "
             "\"bmd ~ month * group_active + (1 + month | patient_id)\": bmd is the site's BMD, group_<level> is 1 "
             "for a level other than the reference (group: the level), and any column of the data (month, "
             "month_actual, responder, age, sex, arm...) may be used; 'default' is the LMM in the design's words. "
             "One estimand per fixed-effect coefficient. "
             "--model and --priors must stay at their defaults (bambi's default priors).")] = None,
    priors: Annotated[str, typer.Option(help="Prior set: default, weakly_informative, sceptical, literature, vague.")] = "default",
    rope: Annotated[Optional[float], typer.Option(min=0.0, help="ROPE half-width in % (default: the DXA least "
                                                  "significant change at spine / femoral neck; none elsewhere).")] = None,
    draws: Annotated[int, typer.Option(min=1, help="Draws per chain.")] = 1000,
    tune: Annotated[int, typer.Option(min=1, help="Tuning steps per chain.")] = 1000,
    chains: Annotated[int, typer.Option(min=1, help="Chains.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed.")] = 1,
    sampler: Annotated[str, typer.Option(help="nutpie (default) or pymc.")] = "nutpie",
    target_accept: Annotated[float, typer.Option(min=0.5, max=0.999, help="Step-size adaptation target.")] = 0.9,
    data: Annotated[Optional[Path], typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Undefined responder status: exclude, last_observed or unknown.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN.")] = None,
    save: Annotated[Optional[Path], typer.Option(help="Save the fit (netCDF DataTree with settings and diagnostics).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit the estimands and diagnostics as JSON.")] = False,
    design: DesignFlags | None = None,
) -> None:
    """Fit a Bayesian model (or your own formula, --formula) at one of the design's sites (--site; default
    the first) and print every group's change and every contrast at the design's endpoint, with diagnostics."""
    from analysis.bayes.fit import fit_bayes, fit_formula, model_names
    from analysis.bayes.formula import FormulaError
    from analysis.study.applicability import NotApplicable, NotEstimable

    if formula is not None:
        if model != "lmm" or priors != "default":
            err("--formula fits your formula with bambi's default priors: leave --model and --priors at their defaults")
            raise typer.Exit(EXIT_BAD_INPUT)
    elif model not in model_names():
        err(f"unknown model {model!r}; available: {', '.join(model_names())}")
        raise typer.Exit(EXIT_BAD_INPUT)
    what = model if formula is None else f"formula {formula!r}"
    cfg, ds, derived = load_derived(data, config, strategy, seed, map_, design)
    if len(cfg.sites) > 1 and design is not None and len(design.site) > 1:
        err("rajak fit fits one site: give one --site (the design's sites are " + ", ".join(cfg.sites) + ")")
        raise typer.Exit(EXIT_BAD_INPUT)
    site = cfg.sites[0]
    info(f"{ds.label}: fitting {what} at {site} ({chains} chains x {draws} draws, {sampler})")
    settings = dict(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler, target_accept=target_accept)
    try:
        with analysis_errors(ds.source):
            try:
                if formula is None:
                    res = fit_bayes(derived, model, site, priors, cfg.undefined_responders, cfg.responder.rule(),
                                    design=ds.design, rope_pct=rope, **settings)
                else:
                    res = fit_formula(derived, None if formula == "default" else formula, site,
                                      strategy=cfg.undefined_responders, rule=cfg.responder.rule(),
                                      design=ds.design, **settings)
            except FormulaError as exc:  # the formula, not the data: say what is wrong with it
                err(str(exc))
                raise typer.Exit(EXIT_BAD_INPUT) from None
            except (NotApplicable, NotEstimable) as exc:  # the design or the data rule the model out
                err(f"{'not applicable' if isinstance(exc, NotApplicable) else 'not estimable'}: {exc}")
                raise typer.Exit(EXIT_BAD_INPUT) from None
    except (DataValidationError, ConfigError) as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)
    except MemoryError:  # one line saying what to ask for instead, not a traceback
        err(_out_of_memory_text(what, site, derived, draws, chains))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if save is not None:
        try:
            res.fit.save(save)
        except MemoryError:
            err(_out_of_memory_text(what, site, derived, draws, chains, saving=True))
            raise typer.Exit(EXIT_BAD_INPUT) from None
        info(f"saved fit to {save}")
    diag = res.fit.diagnostics
    if not diag.passed:
        info(f"WARNING: DIAGNOSTICS FAILED for {what} at {site}: " + "; ".join(diag.failures))
    if as_json:
        head = {"data_label": ds.label, "synthetic": ds.synthetic,
                "design": None if ds.design is None else ds.design.to_dict()}
        if formula is not None:
            head["formula"] = res.extra.get("formula", formula)
        typer.echo(json.dumps({**head, **res.to_dict()}, indent=2, default=json_default))
        return
    typer.echo(f"== {ds.label}: {what} at {site}, priors {res.priors} ==")
    typer.echo(f"groups: {res.strategy}")
    typer.echo(f"diagnostics: {diag}")
    cols = ["estimand", "median", "eti_low", "eti_high", "hdi_low", "hdi_high", "p_lt_0", "p_in_rope", "bf10"]
    typer.echo(res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if formula is not None:
        typer.echo("(a formula's coefficients have no natural ROPE or prior scale: p_in_rope and bf10 are empty)")
    elif res.extra.get("rope"):
        typer.echo(res.extra["rope"])


@design_options
def compare(
    models_: Annotated[Optional[list[str]], typer.Option("--model", help="Bayesian model(s) to compare (repeatable).")] = None,
    priors: Annotated[str, typer.Option(help="Prior set.")] = "default",
    rope: Annotated[Optional[float], typer.Option(min=0.0, help="ROPE half-width in % (default: the DXA least "
                                                  "significant change at spine / femoral neck; none elsewhere).")] = None,
    draws: Annotated[int, typer.Option(min=1)] = 1000,
    tune: Annotated[int, typer.Option(min=1)] = 1000,
    chains: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[int, typer.Option()] = 1,
    data: Annotated[Optional[Path], typer.Option(help="Your data file (default: the embedded SYNTHETIC twin).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML analysis plan.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Undefined responder status strategy.")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping FILE_COLUMN=CONTRACT_COLUMN.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit the table as JSON.")] = False,
    design: DesignFlags | None = None,
) -> None:
    """Bayesian vs frequentist: one table per site of the design (estimate, CI, p | median, CrI, P(direction),
    P(ROPE), BF) for every group and contrast at the design's endpoint."""
    from analysis.bayes.fit import compare as compare_fits, fit_bayes, model_names
    from analysis.frequentist.primary import frequentist_analysis
    from analysis.study.applicability import NotApplicable, NotEstimable

    models_ = models_ or ["lmm"]
    bad = [m for m in models_ if m not in model_names()]
    if bad:
        err(f"unknown model {bad[0]!r}; available: {', '.join(model_names())}")
        raise typer.Exit(EXIT_BAD_INPUT)
    cfg, ds, derived = load_derived(data, config, strategy, seed, map_, design)
    sites = list(cfg.sites)
    m, s = models_[0], sites[0]
    try:
        with analysis_errors(ds.source):
            try:
                fits = []
                for m in models_:
                    for s in sites:
                        info(f"fitting {m} at {s} ...")
                        fits.append(fit_bayes(derived, m, s, priors, cfg.undefined_responders, cfg.responder.rule(),
                                              draws=draws, tune=tune, chains=chains, seed=seed, design=ds.design,
                                              rope_pct=rope))
            except (NotApplicable, NotEstimable) as exc:  # the design or the data rule the model out: one line
                err(f"{'not applicable' if isinstance(exc, NotApplicable) else 'not estimable'}: {exc}")
                raise typer.Exit(EXIT_BAD_INPUT) from None
            m = "the frequentist analysis"
            freq = frequentist_analysis(derived, sites, cfg.undefined_responders, cfg.responder.rule(),
                                        cfg.endpoint_month, mmrm_covariances=cfg.mmrm_covariances, design=ds.design)
            table = compare_fits(fits, freq.estimands)
    except MemoryError:  # one line saying what to ask for instead, not a traceback
        err(_compare_out_of_memory_text(m, s, sites, models_, derived, draws, chains))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        typer.echo(json.dumps({"data_label": ds.label, "synthetic": ds.synthetic,
                               "design": None if ds.design is None else ds.design.to_dict(),
                               "rows": table.replace({float("nan"): None}).to_dict(orient="records")},
                              indent=2, default=json_default))
        return
    typer.echo(f"== {ds.label}: Bayesian vs frequentist ==")
    for s in sites:
        typer.echo(f"\n-- {s} --")
        typer.echo(table[table["site"] == s].drop(columns=["site"]).to_string(
            index=False, float_format=lambda v: f"{v:.4g}"))
    for f in fits:
        if not f.fit.passed:
            typer.echo(f"WARNING: {f.model} at {f.site} FAILED diagnostics: " + "; ".join(f.fit.diagnostics.failures))
