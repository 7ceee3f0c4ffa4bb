"""The sample-size stage of ``rajak run``: the design of the next study, the cached simulation of its
power (and assurance), and the report section that says which design it used."""

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
from analysis.report import Section, Table
from analysis.run.config import RunConfig
from analysis.study.data import Dataset
from analysis.study.estimands import SITE_LABELS

__all__ = ["PowerStage", "power_design", "power_methods", "power_section", "run_power_stage"]


_POWER_ANALYSIS_TEXT = {
    "lmm": "REML linear mixed model (random intercept and slope), responder x time slope difference, "
           "Satterthwaite t-test",
    "mmrm": "REML MMRM (unstructured covariance), responder - non-responder change at the last visit, "
            "Satterthwaite t-test",
    "completers_t": "completers' % change, Welch t-test",
    "completers_wilcoxon": "completers' % change, Wilcoxon rank-sum test",
    "bayes": "Bayesian trajectory LMM (posterior decision rules)",
}


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
    """

    result: Any
    smallest_n: pd.DataFrame
    seed: int
    target: float
    cache: str
    simulated: int
    cache_dir: Path
    seconds: float

    def smallest_n_sentences(self) -> list[str]:
        """One sentence per site and analysis: the smallest n reaching the target, or that none does."""
        out = []
        for _, r in self.smallest_n.iterrows():
            what = f"{SITE_LABELS.get(r['site'], r['site'])}, {r['analysis']} ({r['criterion']})"
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
                "design": res.design.design.to_dict(), "cache": self.cache, "simulated": self.simulated,
                "cache_dir": str(self.cache_dir), "seconds": round(self.seconds, 4),
                "smallest_n": json.loads(self.smallest_n.to_json(orient="records"))}


def power_design(config: RunConfig) -> Any:
    """The power study a configuration asks for: the twin's calibrated design (``data/rajak_twin.json``)
    at ``config.power_ns``, the configured sites, responder rule and dropout.

    Undefined responder status is resolved as configured when the power machinery supports it
    (``last_observed``, ``exclude``), else by ``last_observed``.
    """
    from analysis.power import PowerDesign
    from analysis.rajak.twin import load_provenance
    from models.simulate import Design

    design = Design.from_dict(load_provenance()["design"])
    strategy = config.undefined_responders if config.undefined_responders in ("last_observed", "exclude") \
        else "last_observed"
    return PowerDesign(design=design, n=config.power_ns, sites=config.sites, strategy=strategy,
                       rule=config.responder.rule(), dropout=config.power_dropout)


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
                    prior_fits: dict[str, Any] | None = None) -> PowerStage:
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
        :meth:`~analysis.power.DesignPrior.combine`).

    Returns
    -------
    PowerStage
    """
    from analysis.power import DesignPrior, PowerSettings, run_power

    say = log or (lambda msg: None)
    t = time.perf_counter()
    design = power_design(config)
    settings = PowerSettings()
    analyses = tuple(config.power_analyses)
    prior = None
    if config.power_assurance:
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
                      seconds=time.perf_counter() - t)


def _design_sentences(stage: PowerStage) -> list[str]:
    from analysis.power import disease_control_slope_pct

    pdz = stage.result.design
    d = pdz.design
    parts = []
    for site in pdz.sites:
        p = d.site(site)
        shift = disease_control_slope_pct(d, site)
        parts.append(f"{SITE_LABELS[site]}: mean annual change {p.slope_responder_pct + shift['responder']:+.2f}% "
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
    lost_text = ", ".join(f"{SITE_LABELS[s]} {v:.0%}" for s, v in lost.items())
    return [
        f"Design: each simulated study follows the RAJAK twin's calibrated design (data/rajak_twin.json; "
        f"effect sizes, variance components, DXA at months {', '.join(map(str, d.dxa_months))}, "
        f"responder fraction {d.responder_fraction:g}). " + "; ".join(parts) + ".",
        f"Dropout: {drop}; simulated share of patients without the final DXA: {lost_text}. Responder groups "
        f"are derived from the simulated DAS28-CRP as in the real analysis (undefined status: {pdz.strategy}).",
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
        Key ``"power"``: the design (twin-calibrated effect sizes, variance components, dropout),
        the analysis and decision rule, the smallest n reaching the target per site and analysis,
        the power table, the smallest-n table and the power curve.
    """
    res = stage.result
    what = "; ".join(_POWER_ANALYSIS_TEXT.get(a, a) for a in
                     dict.fromkeys(res.summary()["analysis"]))
    paras = _design_sentences(stage) + [
        f"Analysis of each simulated study: {what}; two-sided alpha {res.settings.alpha:g}. {res.sims} simulated "
        f"studies per sample size (seed {stage.seed}); power is the share of studies whose decision rule "
        f"fires (frequentist: p < alpha; Bayesian: the rule in the table), with its Monte-Carlo SE and Wilson "
        f"95% interval.",
        *stage.smallest_n_sentences(),
    ]
    kind = res.kind  # "power" or "assurance"
    if kind == "assurance":
        paras.append(f"Assurance: every simulated study draws its effect sizes and variance components from the "
                     f"posterior of this run's Bayesian LMM on {dataset.label} ({res.prior.source}); assurance is "
                     "the power averaged over that uncertainty.")
    elif dataset.synthetic:
        paras.append("The effect sizes come from the SYNTHETIC twin, calibrated to the published aggregates: "
                     "they are assumptions for planning, not estimates from patient data.")
    else:
        paras.append(f"The effect sizes are the twin's (calibrated to the published RAJAK aggregates), not "
                     f"estimates from {dataset.source} (power_assurance = true draws them from this data's "
                     "posterior).")
    cols = ["site", "analysis", "criterion", "n", "sims", "power", "mc_se", "ci_low", "ci_high", "lost_fraction"]
    summary = res.summary().rename(columns={"power": kind})
    cols = [kind if c == "power" else c for c in cols]
    return Section("power", "Sample size for the next study", paragraphs=paras,
                   tables=[Table(f"{kind.capitalize()} by sample size (Monte-Carlo SE, Wilson 95% interval)",
                                 summary[cols], "power"),
                           Table(f"Smallest n reaching {stage.target:.0%} {kind}", stage.smallest_n,
                                 "power_smallest_n")],
                   figures=[(f"{kind.capitalize()} by sample size with 95% Monte-Carlo intervals; dotted: the "
                             f"{stage.target:.0%} target", "power_curve")])


def power_methods(config: RunConfig) -> str:
    return (f"Sample size: {config.power_sims} studies simulated per n in {', '.join(map(str, config.power_ns))} "
            "with the cohort simulator (models.simulate, the model behind the twin) and the twin's calibrated "
            f"parameters; each analysed by {', '.join(config.power_analyses)} (analysis.power). Simulation k at "
            f"n uses SeedSequence({config.seed}, spawn_key=(k, 1, n)), so results depend only on the seed; "
            "simulations are cached in the run's content-addressed cache.")
