"""The sample-size stage of ``rajak run``: the design of the next study, the cached simulation of its
power (and assurance), and the report section that says which design it used.

Without user data (``config.data`` unset) the next study is the SYNTHETIC twin's calibrated design
(:func:`power_design`); with user data it is drawn like the user's study
(:func:`analysis.power.design_from_data`: the design's visits, sites and groups, the observed
allocation and retention, and per site the REML LMM's effects and variance components), and the
manifest and the report say which ("from data: FILE, sites ..., allocation ..., visits ...,
dropout by visit ...").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from analysis.common.provenance import package_versions
from analysis.report import Section, Table, design_words, site_label
from analysis.run.config import RunConfig
from analysis.study.data import Dataset

__all__ = ["PowerStage", "power_design", "power_methods", "power_section", "run_power_stage"]


def _analysis_text(analysis: str, words: Any) -> str:
    """What each simulated study's analysis tests, in the design's words."""
    contrast = words.contrast_text
    return {
        "lmm": f"REML linear mixed model (random intercept and slope), {words.lmm_formula()}; the slope of "
               + (f"{contrast} (group x time), " if words.comparisons else "the single group against 0, ")
               + "Satterthwaite t-test",
        "mmrm": f"REML MMRM (unstructured covariance), {words.mmrm_formula()}; {contrast}: change at "
                f"{words.endpoint_text} (g/cm^2), Satterthwaite t-test",
        "completers_t": f"completers' % change to {words.endpoint_text}, "
                        + ("Welch t-test" if words.comparisons else "one-sample t-test against 0"),
        "completers_wilcoxon": f"completers' % change to {words.endpoint_text}, "
                               + ("Wilcoxon rank-sum test" if words.comparisons else "Wilcoxon signed-rank test"),
        "bayes": "Bayesian trajectory LMM (posterior decision rules)",
    }.get(analysis, analysis)


@dataclass
class PowerStage:
    """The sample-size stage of a run.

    Attributes
    ----------
    result : analysis.power.PowerResult
        Raw rows per simulated study and analysis; summaries are computed from them.
    smallest_n : DataFrame
        Smallest n of the grid reaching the target power, per site, analysis and rule.
    seed : int
        Root seed of the simulations.
    target : float
        Target power.
    cache : str
        ``"hit"`` (every simulation read from the cache), ``"partial"`` or ``"miss"``.
    simulated : int
        Studies simulated in this run (the rest came from the cache).
    cache_dir : Path
        Where the simulations are kept (resumable chunks, keyed on design, analyses and seed).
    seconds : float
        Wall time of the stage.
    not_applicable : tuple of str
        Configured analyses left out, each with its reason (e.g. a random-slope LMM on a design with
        one post-baseline visit; recorded in the manifest and the report).
    """

    result: Any
    smallest_n: pd.DataFrame
    seed: int
    target: float
    cache: str
    simulated: int
    cache_dir: Path
    seconds: float
    not_applicable: tuple[str, ...] = ()

    def smallest_n_sentences(self) -> list[str]:
        """One sentence per site and analysis: the smallest n reaching the target, or that none does."""
        out = []
        for _, r in self.smallest_n.iterrows():
            contrast = f"{r['contrast']}, " if "contrast" in r.index else ""
            what = f"{site_label(r['site'])}, {contrast}{r['analysis']} ({r['criterion']})"
            if pd.isna(r["n_min"]):
                out.append(f"{what}: {self.target:.0%} power is not reached within n <= {int(r['max_n'])} "
                           f"(power {r['power_at_max_n']:.2f} at n = {int(r['max_n'])}).")
            else:
                sure = ("not within the grid" if pd.isna(r["n_min_sure"]) else f"n = {int(r['n_min_sure'])}")
                out.append(f"{what}: smallest n with power >= {self.target:.0%} is {int(r['n_min'])} "
                           f"(power {r['power_at_n_min']:.2f}, Monte-Carlo SE {r['mc_se_at_n_min']:.3f}); "
                           f"with the lower 95% Monte-Carlo limit above {self.target:.0%}: {sure}.")
        return out

    def manifest(self) -> dict[str, Any]:
        """What the manifest records: settings, seed, cache use, timings and the smallest n."""
        res = self.result
        return {"seed": self.seed, "sims": res.sims, "n": list(res.design.n), "sites": list(res.design.sites),
                "analyses": list(res.analyses), "target": self.target, "alpha": res.settings.alpha,
                "dropout": res.design.dropout, "generator": res.design.generator,
                "design_used": res.design.describe(),
                "design": (res.design.data_model.to_dict() if res.design.generator == "data"
                           else res.design.design.to_dict()),
                "not_applicable": list(self.not_applicable),
                "cache": self.cache, "simulated": self.simulated,
                "cache_dir": str(self.cache_dir), "seconds": round(self.seconds, 4),
                "smallest_n": json.loads(self.smallest_n.to_json(orient="records"))}


def power_design(config: RunConfig, derived: pd.DataFrame | None = None, dataset: Dataset | None = None) -> Any:
    """The power study a configuration asks for, at ``config.power_ns`` with ``config.power_dropout``.

    Without user data (``config.data`` unset): the twin's calibrated design
    (``data/rajak_twin.json``), the configured sites and responder rule. Undefined responder status
    is resolved as configured when the power machinery supports it (``last_observed``,
    ``exclude``), else by ``last_observed``.

    With user data: the design from data (:func:`analysis.power.design_from_data`) of ``derived``
    (the run's derived frame and ``dataset``; loaded from ``config`` when not given), at the
    configured sites; ``power_dropout`` (if set) replaces the observed retention.
    """
    from analysis.power import PowerDesign

    strategy = config.undefined_responders if config.undefined_responders in ("last_observed", "exclude") \
        else "last_observed"
    if config.data is not None:
        from analysis.power import design_from_data

        if derived is None:
            derived, dataset = _load(config)
        source = dataset.source if dataset is not None else config.data
        return design_from_data(derived, getattr(dataset, "design", None), n=config.power_ns, sites=config.sites,
                                strategy=strategy, rule=config.responder.rule(), dropout=config.power_dropout,
                                source=source)
    from analysis.rajak.twin import load_provenance
    from models.simulate import Design

    design = Design.from_dict(load_provenance()["design"])
    return PowerDesign(design=design, n=config.power_ns, sites=config.sites, strategy=strategy,
                       rule=config.responder.rule(), dropout=config.power_dropout)


def _load(config: RunConfig) -> tuple[pd.DataFrame, Dataset]:
    """The run's derived frame and dataset, as the pipeline derives them."""
    from analysis.study.clinical import derive
    from analysis.study.data import load_for_config

    ds = load_for_config(config)
    cfg = config.bind(ds.design)
    return derive(ds.frame, cfg.responder.rule(), cfg.tscore.reference_object(), cfg.endpoint_month,
                  design=ds.design), ds


def _power_cache_key(design: Any, analyses: tuple[str, ...], settings: Any, seed: int, prior: Any = None) -> str:
    from analysis.power import POWER_FORMAT
    from models.simulate import SIMULATOR_VERSION

    d = design.to_dict()
    d.pop("n")  # per-n seeds: more sample sizes extend the same study
    spec = {"design": d, "analyses": sorted(analyses), "settings": dataclasses.asdict(settings), "seed": int(seed),
            "format": POWER_FORMAT, "simulator": SIMULATOR_VERSION, "rajak": package_versions().get("rajak"),
            "prior": None if prior is None else prior.key()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def run_power_stage(config: RunConfig, cache_root: Path, log: Callable[[str], None] | None = None,
                    prior_fits: dict[str, Any] | None = None, derived: pd.DataFrame | None = None,
                    dataset: Dataset | None = None) -> PowerStage:
    """Simulate the power (or, with ``config.power_assurance``, assurance) study of ``config``
    (:func:`power_design`) with the run's seed.

    Parameters
    ----------
    config : RunConfig
        ``power_ns``, ``power_sims``, ``power_analyses``, ``power_target``, ``power_dropout``,
        ``power_workers`` (local processes; results do not depend on it) and ``seed``.
    cache_root : Path
        The run's content-addressed cache (``<output_dir>/.fit-cache``); simulations are kept in
        ``power/<key>/`` (key: design, analyses, settings, seed, simulator and rajak versions) and a
        rerun, or a run interrupted part-way, simulates only what is missing.
    log : callable, optional
        Receives progress messages.
    prior_fits : dict, optional
        ``{site: FitResult}`` of the run's trajectory LMM: the design prior of an assurance study
        (:meth:`analysis.power.DesignPrior.from_fit` per site, paired by
        :meth:`~analysis.power.DesignPrior.combine`). For a design from data they are mapped to it
        when it has two groups (:meth:`~analysis.power.DesignPrior.from_fit_data`); otherwise (or
        without them) its slopes are drawn from their REML sampling distribution
        (:meth:`~analysis.power.DesignPrior.from_data_model`).
    derived, dataset : optional
        The run's derived frame and dataset (user data): the design from data is estimated from
        them (loaded from ``config`` when not given).

    Returns
    -------
    PowerStage
    """
    from analysis.power import DesignPrior, PowerSettings, run_power

    say = log or (lambda msg: None)
    t = time.perf_counter()
    design = power_design(config, derived, dataset)
    settings = PowerSettings()
    analyses = tuple(config.power_analyses)
    not_applicable: tuple[str, ...] = ()
    if design.generator == "data":
        say(f"power: the next study drawn like this one: {design.describe()}")
        for note in design.data_model.notes:
            say(f"power: WARNING: {note}")
        from analysis.power import estimable_analyses

        analyses, reasons = estimable_analyses(design, analyses)
        if reasons and not analyses:  # nothing left of the plan: the endpoint analysis stands in
            analyses = ("mmrm",)
            reasons = tuple(reasons) + ("the MMRM (at one post-baseline visit the ANCOVA of the change) is "
                                        "simulated instead",)
        for reason in reasons:
            say(f"power: {reason}")
        not_applicable = tuple(not_applicable) + tuple(reasons)
    prior = None
    if config.power_assurance and design.generator == "data":
        prior = _data_prior(design, prior_fits, config.seed, say)
        say(f"power: assurance, design parameters drawn from {prior.source}")
    elif config.power_assurance:
        missing = [s for s in design.sites if s not in (prior_fits or {})]
        if missing:
            raise ValueError(f"power_assurance needs the run's Bayesian 'lmm' fit at {', '.join(missing)} "
                             "(add 'lmm' to bayes_models)")
        priors = [DesignPrior.from_fit(prior_fits[s], design.design, site=s, generator=design.generator,
                                       max_draws=1000) for s in design.sites]
        prior = priors[0] if len(priors) == 1 else DesignPrior.combine(priors)
        say(f"power: assurance, design parameters drawn from {prior.source}")
    cache_dir = Path(cache_root) / "power" / _power_cache_key(design, analyses, settings, config.seed, prior)
    simulated: set[tuple[int, int]] = set()

    def count(df: pd.DataFrame) -> None:
        simulated.update(zip(df["n"].astype(int), df["sim"].astype(int)))

    say(f"power: {config.power_sims} simulated studies at n = {', '.join(map(str, design.n))} "
        f"({', '.join(analyses)}; seed {config.seed})")
    result = run_power(design, config.power_sims, config.seed, analyses=analyses, settings=settings,
                       out=cache_dir, workers=config.power_workers, progress=False, on_chunk=count,
                       target=config.power_target, prior=prior)
    total = config.power_sims * len(design.n)
    cache = "hit" if not simulated else ("miss" if len(simulated) >= total else "partial")
    if cache == "hit":
        say("power: every simulated study read from the cache")
    else:
        say(f"power: {len(simulated)} of {total} studies simulated"
            + (", the rest read from the cache" if cache == "partial" else ""))
    return PowerStage(result=result, smallest_n=result.smallest_n(config.power_target), seed=config.seed,
                      target=config.power_target, cache=cache, simulated=len(simulated), cache_dir=cache_dir,
                      seconds=time.perf_counter() - t, not_applicable=not_applicable)


def _data_prior(design: Any, prior_fits: dict[str, Any] | None, seed: int, say: Callable[[str], None]) -> Any:
    """The design prior of a design from data: the run's trajectory-LMM posteriors mapped to it (two
    groups, every site fitted), else the REML sampling distribution of its slopes."""
    from analysis.power import DesignPrior

    fits = prior_fits or {}
    if all(s in fits for s in design.sites):
        try:
            priors = [DesignPrior.from_fit_data(fits[s], design.data_model, site=s, max_draws=1000)
                      for s in design.sites]
            return priors[0] if len(priors) == 1 else DesignPrior.combine(priors)
        except (ValueError, KeyError) as err:
            say(f"power: the run's Bayesian LMM does not map to the design from data ({err}); using the REML "
                "sampling distribution of the slopes instead")
    return DesignPrior.from_data_model(design.data_model, 1000, seed)


def _twin_sentences(stage: PowerStage) -> list[str]:
    """The twin's design (generators "cohort" and "gaussian"), in the twin's own words."""
    from analysis.power import disease_control_slope_pct

    pdz = stage.result.design
    d = pdz.design
    parts = []
    for site in pdz.sites:
        p = d.site(site)
        shift = disease_control_slope_pct(d, site)
        parts.append(f"{site_label(site)}: mean annual change {p.slope_responder_pct + shift['responder']:+.2f}% "
                     f"(responders) vs {p.slope_nonresponder_pct + shift['non-responder']:+.2f}% (non-responders), "
                     f"between-patient SD of the annual change {p.slope_sd_pct:g}%, DXA precision "
                     f"{p.precision_cv_pct:g}%")
    lost = stage.result.summary().groupby("site")["lost_fraction"].mean()
    dm = d.dropout
    if pdz.dropout is None:
        drop = (f"the twin's dropout model ({dm.mechanism.upper()}: hazard {dm.visit_hazard:g} per visit, "
                f"log-odds {dm.activity_log_odds:g} per DAS28-CRP point"
                + (f", {dm.bmd_log_odds:g} per % of BMD change" if dm.bmd_log_odds else "") + ")")
    else:
        drop = (f"{dm.mechanism.upper()} dropout calibrated to {pdz.dropout:.0%} of patients without the "
                f"final visit")
    lost_text = ", ".join(f"{site_label(s)} {v:.0%}" for s, v in lost.items())
    return [
        f"Design: each simulated study follows the RAJAK twin's calibrated design (data/rajak_twin.json; "
        f"effect sizes, variance components, DXA at months {', '.join(map(str, d.dxa_months))}, "
        f"responder fraction {d.responder_fraction:g}). " + "; ".join(parts) + ".",
        f"Dropout: {drop}; simulated share of patients without the final DXA: {lost_text}. Responder groups "
        f"are derived from the simulated DAS28-CRP as in the real analysis (undefined status: {pdz.strategy}).",
    ]


def _data_sentences(stage: PowerStage) -> list[str]:
    """A design from data, in the design's own words (levels, sites, visits, endpoint)."""
    pdz = stage.result.design
    m = pdz.data_model
    parts = []
    for site in pdz.sites:
        sm = m.site(site)
        slopes = ", ".join(f"{lv} {sm.slope[lv]:+.4f} g/cm^2 ({sm.pct_per_year(lv):+.2f}%) per year "
                           f"(SE {sm.slope_se[lv]:.4f})" for lv in m.levels)
        parts.append(f"{site_label(site)}: mean slope {slopes}; between-patient SD of the intercept "
                     f"{sm.sd_intercept:.4f} and of the annual slope {sm.sd_slope:.4f} g/cm^2 (correlation "
                     f"{sm.corr:.2f}), residual SD {sm.sigma:.4f} g/cm^2")
    groups = (f"allocation {m.allocation_text()} as observed ({', '.join(f'{lv} {c}' for lv, c in zip(m.levels, m.counts))} "
              f"patients)" if m.reference is not None else f"a single arm ({sum(m.counts)} patients)")
    lost = stage.result.summary().groupby("site")["lost_fraction"].mean()
    if pdz.dropout is None:
        drop = ("the observed retention, " + ", ".join(f"{r:.0%} at month {v:g}" for v, r in
                                                       zip(m.visits[1:], m.retention[1:]))
                + " (monotone, MCAR; hazard per visit " + ", ".join(f"{h:.3f}" for h in m.hazards) + ")")
    elif isinstance(pdz.dropout, tuple):
        drop = "MCAR hazards " + ", ".join(f"{h:g} at month {v:g}" for h, v in zip(pdz.dropout, m.visits[1:]))
    else:
        drop = f"MCAR dropout of {pdz.dropout:.0%} of patients before the final visit (power_dropout)"
    return [
        f"Design: {pdz.describe()}. Each simulated study is drawn like this study: its visits (months "
        f"{', '.join(f'{v:g}' for v in m.visits)}, endpoint month {m.endpoint:g}), {groups}, and per site the "
        "effects and variance components of the REML linear mixed model bmd ~ t * group + (1 + t | patient) "
        "fitted to it (t in years since baseline). " + "; ".join(parts) + ".",
        f"Dropout: {drop}; simulated share of patients without a scan at the endpoint: "
        + ", ".join(f"{site_label(s)} {v:.0%}" for s, v in lost.items()) + ".",
        *[f"Note: {note}." for note in m.notes],
    ]


def power_section(stage: PowerStage, dataset: Dataset, config: RunConfig) -> Section:
    """The report section "Sample size for the next study".

    Parameters
    ----------
    stage : PowerStage
        The simulated power study.
    dataset : Dataset
        The run's data (the text says whose effect sizes were simulated).
    config : RunConfig
        The run configuration.

    Returns
    -------
    Section
        Key ``"power"``: the design (the twin's calibrated design, or the design from the user's
        data in its own words: sites, levels, allocation, visits, retention, effects, variance
        components), the analysis and decision rule, the smallest n reaching the target per site,
        contrast and analysis, the power table, the smallest-n table and the power curve.
    """
    res = stage.result
    from_data = res.design.generator == "data"
    if from_data:
        m = res.design.data_model
        words = design_words(getattr(dataset, "design", None), sites=res.design.sites, endpoint=m.endpoint)
    else:
        words = design_words(None, sites=res.design.sites, endpoint=res.design.endpoint_month)
    what = "; ".join(_analysis_text(a, words) for a in dict.fromkeys(res.summary()["analysis"]))
    paras = (_data_sentences(stage) if from_data else _twin_sentences(stage)) + [
        f"Analysis of each simulated study: {what}; two-sided alpha {res.settings.alpha:g}. {res.sims} simulated "
        f"studies per sample size (seed {stage.seed}); power is the share of studies whose decision rule "
        f"fires (frequentist: p < alpha; Bayesian: the rule in the table), with its Monte-Carlo SE and Wilson "
        f"95% interval.",
        *[f"Not run: {reason}." for reason in stage.not_applicable],
        *stage.smallest_n_sentences(),
    ]
    kind = res.kind  # "power" or "assurance"
    if kind == "assurance":
        paras.append("Assurance: every simulated study draws its effect sizes"
                     + ("" if from_data and res.prior.draws.columns.str.contains("slope").all()
                        else " and variance components")
                     + f" from {res.prior.source} ({dataset.label}); assurance is the power averaged over that "
                       "uncertainty.")
    elif from_data:
        paras.append(f"The effect sizes and variance components are the estimates from {dataset.label}: the "
                     "power is that of a study exactly like it (power_assurance = true averages over their "
                     "uncertainty).")
    elif dataset.synthetic:
        paras.append("The effect sizes come from the SYNTHETIC twin, calibrated to the published aggregates: "
                     "they are assumptions for planning, not estimates from patient data.")
    else:
        paras.append(f"The effect sizes are the twin's (calibrated to the published RAJAK aggregates), not "
                     f"estimates from {dataset.source} (power_assurance = true draws them from this data's "
                     "posterior).")
    summary = res.summary().rename(columns={"power": kind})
    cols = [c for c in ["site", "contrast", "analysis", "criterion", "n", "sims", kind, "mc_se", "ci_low", "ci_high",
                        "lost_fraction"] if c in summary.columns]
    return Section("power", "Sample size for the next study", paragraphs=paras,
                   tables=[Table(f"{kind.capitalize()} by sample size (Monte-Carlo SE, Wilson 95% interval)",
                                 summary[cols], "power"),
                           Table(f"Smallest n reaching {stage.target:.0%} {kind}", stage.smallest_n,
                                 "power_smallest_n")],
                   figures=[(f"{kind.capitalize()} by sample size with 95% Monte-Carlo intervals; dotted: the "
                             f"{stage.target:.0%} target", "power_curve")])


def power_methods(config: RunConfig, stage: PowerStage | None = None) -> str:
    """The methods sentence of the sample-size stage: the twin's simulator, or the design from the
    user's data (named by ``stage`` when given)."""
    if config.data is not None or (stage is not None and stage.result.design.generator == "data"):
        used = (stage.result.design.describe() if stage is not None else f"from data: {config.data}")
        how = ("drawn like the study's own data (analysis.power.design_from_data: the design's visits, sites "
               "and groups, the observed allocation and retention, and per site the effects and variance "
               f"components of a REML LMM fitted to the data; {used})")
    else:
        how = ("with the cohort simulator (models.simulate, the model behind the twin) and the twin's calibrated "
               "parameters")
    analyses = (stage.result.analyses if stage is not None else config.power_analyses)
    return (f"Sample size: {config.power_sims} studies simulated per n in {', '.join(map(str, config.power_ns))} "
            f"{how}; each analysed by {', '.join(analyses)} (analysis.power). Simulation k at "
            f"n uses SeedSequence({config.seed}, spawn_key=(k, 1, n)), so results depend only on the seed; "
            "simulations are cached in the run's content-addressed cache.")
