r"""Sample size and assurance by simulation, on one machine or on a Dask cluster.

A power study simulates many copies of the next study at each sample size :math:`n` of a grid,
analyses every copy as the real study would be analysed, and reports the fraction of copies in
which an analysis "succeeds" (its decision rule fires). With fixed design parameters that fraction
is the **power**; with parameters drawn from a *design prior* for every simulated study it is the
**assurance** (O'Hagan, Stevens & Campbell 2005), :math:`\int \mathrm{power}(\theta)\,p(\theta)\,d\theta`.

Design
------
:class:`PowerDesign` wraps the cohort simulator's :class:`models.simulate.Design` (visit schedule,
responder fraction, per-site bone parameters, dropout model) and adds the sample-size grid, the
analysed site(s), the data generator, how analysis groups are formed, and a target dropout:

* ``generator="cohort"`` draws each study with :func:`models.simulate.simulate` (the same model as
  the RAJAK twin: latent response type, disease activity, multiplicative bone model, MAR/MNAR
  dropout); groups are then derived from DAS28-CRP as in the real analysis (EULAR response at
  month 12, undefined status by ``strategy``; ``grouping="true"`` uses the latent type instead).
* ``generator="gaussian"`` draws from the linear mixed model that the closed-form formulas assume,
  with parameters read from the same :class:`Design` (linearised at the population mean
  :math:`m_s` = ``baseline_mean``): for patient :math:`i`, group :math:`g_i` (exactly
  :math:`\mathrm{round}(n\pi)` responders, known), DXA months :math:`t_j`,

  .. math::

      y_{ij} = m_s + \tau_s z_i + \Bigl(\frac{m_s \gamma^{(g_i)}_s}{1200}
               + \frac{m_s \omega_s}{1200} w_i\Bigr) t_j + \frac{m_s \mathrm{CV}_s}{100}\,\varepsilon_{ij},

  :math:`\tau_s` = ``baseline_sd``, :math:`\gamma^{(g)}_s` = ``slope_(non)responder_pct``,
  :math:`\omega_s` = ``slope_sd_pct``, :math:`\mathrm{CV}_s` = ``precision_cv_pct``; :math:`z, w,
  \varepsilon` standard normal (intercepts and slopes correlated across sites by
  ``intercept_corr``/``slope_corr``), no rounding; dropout MCAR and monotone (below).

``dropout`` is either one number, the expected fraction of patients **without the final visit**,
or one hazard per scheduled post-baseline visit (``design.activity_months[1:]``, e.g.
``(0.1, 0.15, 0.2)`` for months 3, 6, 12): :math:`h_v = P(\text{drop out at } v \mid \text{present
at } v)`, averaged over patients. For the cohort generator with one number the base hazard
:math:`h_0` of :class:`models.simulate.DropoutModel` (MAR through DAS28, or MNAR through the
unobserved spine change) is calibrated to it by simulating 20,000 patients with common random
numbers and solving for :math:`h_0` (:func:`calibrate_dropout`); with per-visit hazards each
visit's base hazard :math:`h_{0v}` is solved in turn so that the average hazard among the
patients still present equals :math:`h_v` (exact, :math:`h_{0v} = h_v`, under MCAR). For the
Gaussian generator (MCAR) one number gives the hazard :math:`1 - (1 - \text{dropout})^{1/V}` at
each of the :math:`V` post-baseline DXA visits; per-visit hazards apply at the scheduled visits
(a patient leaving at month 3 misses the DXA at months 6 and 12).

Design prior (assurance)
------------------------
:class:`DesignPrior` holds draws of design parameters (columns named as
:meth:`Design.with_updates` keys, e.g. ``"spine.slope_responder_pct"``). Simulation :math:`k` uses
one draw, chosen uniformly with its own seed (the same draw at every :math:`n`). By default the
draws are the posterior of a fitted rajak trajectory LMM (:meth:`DesignPrior.from_fit`, a
:class:`analysis.engine.sampling.FitResult`; time in years, g/cm^2), mapped per draw as

=================================  ===========================================================
design parameter (site :math:`s`)   from the posterior draw
=================================  ===========================================================
``baseline_mean``                    :math:`m = b_0 + \pi b_2` (``b``; :math:`\pi` = responder fraction)
``baseline_sd``                      ``sd_patient[intercept]``
``slope_nonresponder_pct``           ``pct_change_12m[non-responder]`` :math:`- \lambda_s E[\Delta \mid r=0]`
``slope_responder_pct``              ``pct_change_12m[responder]`` :math:`- \lambda_s E[\Delta \mid r=1]`
``slope_sd_pct``                     :math:`100\,` ``sd_patient[slope]`` :math:`/ m`
``precision_cv_pct``                 :math:`100\,` ``sigma`` :math:`/ m`
=================================  ===========================================================

where :math:`\lambda_s E[\Delta \mid r]` is the mean disease-control part of the cohort model's
slope (``slope_per_das28_improvement_pct`` times the expected DAS28 improvement of type
:math:`r`, :func:`disease_control_slope_pct`), subtracted so that each type's *total* mean slope
equals the posterior group slope (zero for the Gaussian generator, which has no such term). The
posterior's groups are derived EULAR groups, taken as the latent types (misclassification is not
undone), and the patient SDs describe the model's additive random effects, used as the cohort
model's multiplicative ones at the mean.

Analyses of each simulated study (raw result rows)
---------------------------------------------------
=========================  =====================================================================
``analysis``               estimate and test
=========================  =====================================================================
``lmm``                    ``bmd ~ month * responder + (1 + month | patient)``, REML; the
                           ``month:responder`` slope difference (g/cm^2 per month), Satterthwaite
                           t-test (:func:`analysis.frequentist.lmm.fit_lmm`)
``mmrm``                   ``change ~ baseline + month * responder`` on post-baseline DXA visits,
                           unstructured, REML; responder - non-responder LS-mean change at the last
                           visit (g/cm^2), Satterthwaite (:func:`~analysis.frequentist.mmrm.fit_mmrm`)
``completers_t``           completers' % change to the last visit, Welch t-test (difference of means)
``completers_wilcoxon``    the same, Wilcoxon rank-sum (Mann-Whitney) test
``bayes``                  the trajectory LMM (:mod:`models.trajectory`, marginal
                           parameterisation) compiled once per worker process and refitted per
                           data set (:class:`analysis.engine.refit.Refitter`, through
                           :class:`BayesRefitter`); posterior of ``estimand`` (default
                           ``diff_pct_change_12m``, percentage points) and convergence diagnostics
=========================  =====================================================================

Decision rules (:func:`summarise`; recomputable from the raw rows for any threshold): a frequentist
analysis succeeds when :math:`p < \alpha` (two-sided); the Bayesian one by
:math:`P(\Delta > 0 \mid y) >` ``prob`` (``direction="less"``: :math:`P(\Delta < 0 \mid y)`), by the
95% equal-tailed credible interval excluding 0, or by that interval lying entirely outside the
region of practical equivalence :math:`[-r, r]` (Kruschke's HDI+ROPE rule with the ETI;
:math:`r` defaults to the DXA least significant change, :data:`analysis.bayes.posterior.LSC_PCT`). A
failed fit counts as no success. Power :math:`\hat p = s/K` over :math:`K` simulations has
Monte-Carlo SE :math:`\sqrt{\hat p(1-\hat p)/K}` and a Wilson 95% interval.

Seeds and reproducibility
-------------------------
Simulation :math:`k` at sample size :math:`n` uses ``SeedSequence(seed).spawn(k + 1)[k]`` and its
children: child 0 picks the design-prior draw, child 1 (then ``spawn(n + 1)[n]``) the data, child 2
(then ``spawn(n + 1)[n]``) the sampler, i.e. ``SeedSequence(seed, spawn_key=(k, 1, n))`` etc.
Every result depends only on ``(seed, k, n)`` and the study, never on the worker, chunking or
order, so local processes, one process and a Dask cluster give identical numbers.

Resuming
--------
With ``out=DIR`` every finished chunk of simulations is written atomically to
``DIR/chunks/*.parquet`` beside ``DIR/manifest.json`` (a hash of everything that determines the
raw results). Re-running the same call after an interruption reads the chunks, skips finished
``(n, k)`` pairs and simulates only the rest; more simulations or more sample sizes extend a study.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from analysis.study.clinical import ResponderRule, eular_response
from models.simulate import SIMULATOR_VERSION, Design, DropoutModel
from models.trajectory import TrajectoryPriors

__all__ = [
    "ANALYSES",
    "check_scheduler",
    "POWER_FORMAT",
    "RAW_COLUMNS",
    "TIMING_COLUMNS",
    "BayesRefit",
    "BayesRefitter",
    "DesignPrior",
    "PowerDesign",
    "PowerResult",
    "PowerSettings",
    "calibrate_dropout",
    "calibrate_dropout_per_visit",
    "closed_form_power",
    "disease_control_slope_pct",
    "load_power_design",
    "parse_n_grid",
    "power_frame",
    "run_power",
    "simulate_gaussian",
    "simulation_seed_sequence",
    "smallest_n",
    "summarise",
]

#: Analyses a power study can run (``completers`` gives the ``completers_t`` and
#: ``completers_wilcoxon`` rows).
ANALYSES: tuple[str, ...] = ("lmm", "mmrm", "completers", "bayes")
#: Version of the raw-result layout (part of the resume key).
POWER_FORMAT = 1

SITES = ("spine", "femoral_neck")
_FREQ_ROWS = ("lmm", "mmrm", "completers_t", "completers_wilcoxon")
_BAYES_CRITERIA = ("P(diff > 0) > prob", "95% CrI excludes 0", "95% CrI outside ROPE")
_FREQ_CRITERION = "p < alpha"
_SUMMARY_VARS = ("b", "sd_patient", "corr_patient", "sigma", "baseline_mean", "change_12m",
                 "pct_change_12m", "diff_change_12m", "diff_pct_change_12m")


# =============================================================================================
# design
# =============================================================================================


@dataclass(frozen=True)
class PowerDesign:
    r"""What is simulated: a cohort :class:`Design` plus the sample-size grid and analysis set-up.

    Parameters
    ----------
    design : Design
        Visit schedule, responder fraction, per-site slopes per type (effect sizes), slope SD and
        baseline SD (variance components), DXA precision (measurement error) and the dropout
        model (mechanism and coefficients). ``design.n_patients`` is ignored.
    n : tuple of int
        Total patients per simulated study (the grid).
    sites : tuple of str
        Sites analysed ('spine', 'femoral_neck').
    generator : {"cohort", "gaussian"}
        See the module docstring.
    grouping : {"derived", "true"}
        Cohort generator: groups derived from DAS28-CRP (as the real analysis) or the latent type.
    strategy : {"last_observed", "exclude"}
        Undefined responder status (:mod:`analysis.study.groups`).
    rule : ResponderRule
        Responder definition for derived groups.
    dropout : float or tuple of float, optional
        One number: expected fraction of patients without the final visit. A tuple (a list is
        accepted): hazard of dropout at each scheduled post-baseline visit,
        ``len(design.activity_months) - 1`` values (module docstring). ``None`` keeps
        ``design.dropout.visit_hazard`` (cohort) or means no dropout (Gaussian).
    calibrated : bool
        Set by :meth:`resolved` once the cohort hazard has been calibrated to ``dropout``.
    """

    design: Design = field(default_factory=Design)
    n: tuple[int, ...] = (46,)
    sites: tuple[str, ...] = ("spine",)
    generator: Literal["cohort", "gaussian"] = "cohort"
    grouping: Literal["derived", "true"] = "derived"
    strategy: Literal["last_observed", "exclude"] = "last_observed"
    rule: ResponderRule = field(default_factory=ResponderRule)
    dropout: float | tuple[float, ...] | None = None
    calibrated: bool = False

    def __post_init__(self) -> None:
        n = tuple(int(v) for v in np.atleast_1d(self.n))
        object.__setattr__(self, "n", tuple(sorted(set(n))))
        object.__setattr__(self, "sites", tuple(self.sites))
        if not self.n:
            raise ValueError("n needs at least one sample size")
        if min(self.n) < 6:
            raise ValueError(f"every sample size must be at least 6, got {min(self.n)}")
        if not self.sites or any(s not in SITES for s in self.sites):
            raise ValueError(f"sites must be a non-empty subset of {SITES}, got {self.sites}")
        if self.generator not in ("cohort", "gaussian"):
            raise ValueError(f"generator must be 'cohort' or 'gaussian', got {self.generator!r}")
        if self.grouping not in ("derived", "true"):
            raise ValueError(f"grouping must be 'derived' or 'true', got {self.grouping!r}")
        if self.strategy not in ("last_observed", "exclude"):
            raise ValueError(f"strategy must be 'last_observed' or 'exclude', got {self.strategy!r}")
        if isinstance(self.dropout, (list, tuple)) or (self.dropout is not None and np.ndim(self.dropout) > 0):
            hz = tuple(float(v) for v in self.dropout)
            object.__setattr__(self, "dropout", hz)
            visits = tuple(self.design.activity_months[1:])
            if len(hz) != len(visits):
                raise ValueError(f"dropout has {len(hz)} per-visit hazards {list(hz)} but the design has "
                                 f"{len(visits)} post-baseline visits (months {', '.join(map(str, visits))})")
            bad = [v for v in hz if not 0.0 <= v < 1.0]
            if bad:
                raise ValueError(f"every per-visit dropout hazard must be in [0, 1), got {bad[0]:g} "
                                 f"(one per post-baseline visit, {len(visits)} visits)")
        elif self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if len(self.design.dxa_months) < 2:
            raise ValueError("the design needs at least two DXA visits")

    @property
    def per_visit_dropout(self) -> bool:
        """Whether ``dropout`` gives one hazard per post-baseline visit."""
        return isinstance(self.dropout, tuple)

    @property
    def endpoint_month(self) -> float:
        """The last DXA visit (completers and MMRM contrast)."""
        return float(max(self.design.dxa_months))

    def with_updates(self, **changes: Any) -> PowerDesign:
        """A copy with :class:`Design` fields replaced (``"spine.slope_sd_pct"`` etc.)."""
        return replace(self, design=self.design.with_updates(**changes), calibrated=False)

    def resolved(self) -> PowerDesign:
        """The design with the cohort dropout hazard calibrated to ``dropout`` (idempotent)."""
        if self.calibrated or self.generator != "cohort" or self.dropout is None:
            return self
        return replace(self, design=calibrate_dropout(self.design, self.dropout), calibrated=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        return {"design": self.design.to_dict(), "n": list(self.n), "sites": list(self.sites),
                "generator": self.generator, "grouping": self.grouping, "strategy": self.strategy,
                "rule": asdict(self.rule),
                "dropout": list(self.dropout) if isinstance(self.dropout, tuple) else self.dropout,
                "calibrated": self.calibrated}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PowerDesign:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if isinstance(d.get("design"), dict):
            d["design"] = Design.from_dict(d["design"])
        if isinstance(d.get("rule"), dict):
            d["rule"] = ResponderRule(**d["rule"])
        for key in ("n", "sites"):
            if key in d:
                d[key] = tuple(np.atleast_1d(d[key]).tolist())
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown power-design field(s) {sorted(unknown)}")
        return cls(**d)

    def key_dict(self) -> dict[str, Any]:
        """What determines a simulation's data (the grid excluded: seeds are per ``n``)."""
        d = self.resolved().to_dict()
        d.pop("n")
        return d


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


_CALIBRATION_CACHE: dict[str, Design] = {}


def calibrate_dropout(design: Design, target: float | Sequence[float], n_patients: int = 20_000,
                      seed: int = 20_250_101, tol: float = 1e-4) -> Design:
    r"""The design with ``dropout.visit_hazard`` set so that a fraction ``target`` of patients miss
    the final visit (one number), or so that the hazard at each post-baseline visit is ``target``
    (one number per visit, :func:`calibrate_dropout_per_visit`). With one number, a per-visit
    ``visit_hazard`` of ``design`` is replaced by one base hazard for every visit.

    The fraction :math:`F(h_0)` of simulated patients who drop out before the final visit is
    increasing in the base hazard :math:`h_0` (every visit's logit hazard moves with
    :math:`\operatorname{logit} h_0`); with one seed for every evaluation (common random numbers)
    :math:`F(h_0) = \text{target}` is solved by Brent's method on ``n_patients`` simulated
    patients (Monte-Carlo SE of :math:`F` about :math:`\sqrt{F(1-F)/n}`, 0.0035 at the default).

    Raises
    ------
    ValueError
        If ``target`` is outside [0, 1) or cannot be reached.
    """
    from scipy.optimize import brentq

    from models.simulate import simulate

    if isinstance(target, (list, tuple, np.ndarray)):
        return calibrate_dropout_per_visit(design, target, n_patients=n_patients, seed=seed)
    if not 0.0 <= target < 1.0:
        raise ValueError(f"dropout target must be in [0, 1), got {target}")
    key = json.dumps([design.to_dict(), target, n_patients, seed, tol], sort_keys=True, default=str)
    if key in _CALIBRATION_CACHE:
        return _CALIBRATION_CACHE[key]
    if target == 0.0:
        out = design.with_updates(**{"dropout.visit_hazard": 0.0})
        _CALIBRATION_CACHE[key] = out
        return out
    base = design.with_updates(n_patients=n_patients)

    def lost(h: float) -> float:
        d = base.with_updates(**{"dropout.visit_hazard": h})
        return float(simulate(d, seed).patients["dropout_month"].notna().mean()) - target

    hi = 0.999
    if lost(hi) < 0:
        raise ValueError(f"a dropout of {target:g} cannot be reached with this dropout model")
    h = float(brentq(lost, 0.0, hi, xtol=tol))
    out = design.with_updates(**{"dropout.visit_hazard": round(h, 6)})
    _CALIBRATION_CACHE[key] = out
    return out


def calibrate_dropout_per_visit(design: Design, hazards: Sequence[float], n_patients: int = 20_000,
                                seed: int = 20_250_101, tol: float = 1e-6) -> Design:
    r"""The design with one base hazard per post-baseline visit, ``dropout.visit_hazard =
    (h_{01}, ..., h_{0V})``, such that the average hazard at visit :math:`v` among the patients
    still present is ``hazards[v]``.

    Under MCAR (both log-odds zero) :math:`h_{0v} = h_v` exactly. Otherwise one study of
    ``n_patients`` is simulated without dropout; for patient :math:`i` the simulator's hazard at
    visit :math:`v` is :math:`h_{iv} = \operatorname{expit}(\operatorname{logit} h_{0v} +
    \alpha(\text{DAS28}_{i,v-1} - 3.2) + \delta\,g_i t_v / 12)` (:mod:`models.simulate`; :math:`g_i`
    the true annual % spine slope), the probability of being present is
    :math:`S_{iv} = \prod_{u<v}(1 - h_{iu})`, and :math:`\sum_i S_{iv} h_{iv} / \sum_i S_{iv} = h_v`
    is solved for :math:`h_{0v}` one visit after the other (a smooth, increasing function: Brent's
    method, no Monte-Carlo noise beyond the simulated covariates).

    Raises
    ------
    ValueError
        If the number of hazards differs from the number of post-baseline visits, a hazard is
        outside [0, 1), or it cannot be reached.
    """
    from scipy.optimize import brentq
    from scipy.special import expit, logit

    from models.simulate import simulate

    months = np.asarray(design.activity_months, dtype=float)
    hz = tuple(float(h) for h in hazards)
    if len(hz) != months.size - 1:
        raise ValueError(f"{len(hz)} per-visit hazards {list(hz)} for {months.size - 1} post-baseline visits")
    bad = [h for h in hz if not 0.0 <= h < 1.0]
    if bad:
        raise ValueError(f"every per-visit dropout hazard must be in [0, 1), got {bad[0]:g}")
    dm = design.dropout
    if not dm.activity_log_odds and not dm.bmd_log_odds:
        return design.with_updates(**{"dropout.visit_hazard": hz})
    key = json.dumps([design.to_dict(), hz, n_patients, seed, tol, "per-visit"], sort_keys=True, default=str)
    if key in _CALIBRATION_CACHE:
        return _CALIBRATION_CACHE[key]
    study = simulate(design.with_updates(n_patients=n_patients, **{"dropout.visit_hazard": 0.0}), seed)
    das = study.complete["das28_crp"].to_numpy(dtype=float).reshape(n_patients, months.size)
    slope = study.patients["true_slope_pct_spine"].to_numpy(dtype=float)
    present = np.ones(n_patients)
    base: list[float] = []
    for v in range(1, months.size):
        shift = dm.activity_log_odds * (das[:, v - 1] - 3.2) + dm.bmd_log_odds * slope * months[v] / 12.0
        target = hz[v - 1]
        if target == 0.0:
            h0 = 0.0
        else:
            def gap(lo: float) -> float:
                return float(np.sum(present * expit(lo + shift)) / np.sum(present)) - target

            lo, hi = -30.0, 30.0
            if gap(hi) < 0 or gap(lo) > 0:
                raise ValueError(f"a dropout hazard of {target:g} at month {months[v]:g} cannot be reached "
                                 "with this dropout model")
            h0 = float(expit(brentq(gap, lo, hi, xtol=tol)))
            h0 = min(round(h0, 6), 0.999999)
        base.append(h0)
        h_i = expit(logit(h0) + shift) if h0 > 0 else np.zeros(n_patients)
        present = present * (1.0 - h_i)
    out = design.with_updates(**{"dropout.visit_hazard": tuple(base)})
    _CALIBRATION_CACHE[key] = out
    return out


def _clipped_normal_mean(mu: float, sd: float, lo: float, hi: float) -> float:
    r""":math:`E[\min(\max(X, a), b)]` for :math:`X \sim N(\mu, \sigma^2)`."""
    from scipy import stats

    a, b = (lo - mu) / sd, (hi - mu) / sd
    return float(lo * stats.norm.cdf(a) + hi * stats.norm.sf(b) + mu * (stats.norm.cdf(b) - stats.norm.cdf(a))
                 + sd * (stats.norm.pdf(a) - stats.norm.pdf(b)))


def disease_control_slope_pct(design: Design, site: str) -> dict[str, float]:
    r"""Mean disease-control part of the cohort model's annual % slope per latent type,
    :math:`\lambda_s E[\Delta \mid r]` with :math:`\Delta = 3.5\,a_0 d` (``models.simulate``):
    :math:`E[\Delta \mid r] = 3.5\,E[a_0]\,E[d \mid r]` with the simulator's clipping of
    :math:`a_0` to [0.2, 1.9] and of :math:`d` to [-0.4, 0.95].

    Returns ``{"responder": ..., "non-responder": ...}`` in % per year.
    """
    a = design.activity
    lam = design.site(site).slope_per_das28_improvement_pct
    ea0 = _clipped_normal_mean(a.baseline_mean, a.baseline_sd, 0.2, 1.9)
    out = {}
    for g, mu in (("responder", a.improvement_responder), ("non-responder", a.improvement_nonresponder)):
        out[g] = lam * 3.5 * ea0 * _clipped_normal_mean(mu, a.improvement_sd, -0.4, 0.95)
    return out


def parse_n_grid(text: str) -> tuple[int, ...]:
    """``"20:200:20"`` (start:stop:step, stop included), ``"20,40,80"`` or ``"46"``."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = (*parts, 10)[:3] if len(parts) == 2 else parts
            if step <= 0 or stop < start:
                raise ValueError
            grid = tuple(range(start, stop + 1, step))
        else:
            grid = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ValueError(f"cannot read sample sizes {text!r}; use START:STOP:STEP, a list N1,N2,... or N") from None
    if not grid:
        raise ValueError(f"no sample sizes in {text!r}")
    return grid


def load_power_design(path: str | os.PathLike) -> tuple[PowerDesign, dict[str, Any]]:
    """Read a power design from a JSON or TOML file.

    Top-level keys: ``n`` (list or ``"START:STOP:STEP"``), ``sites``, ``generator``, ``grouping``,
    ``strategy``, ``dropout``, and a ``design`` table of :meth:`Design.with_updates` keys
    (``"spine.slope_sd_pct" = 1.5``, ``"dropout.mechanism" = "mnar"``, ...). Anything under
    ``prior`` (e.g. ``fit = "fit.nc"``, a saved :class:`~analysis.engine.sampling.FitResult`) and
    ``settings`` (fields of :class:`PowerSettings`) is returned as the second element.

    Raises
    ------
    ValueError
        Unreadable file, unknown key or invalid value (one line).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"design file {p} does not exist")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        else:
            raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read design file {p}: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"design file {p} must hold a table/object at the top level")
    raw = dict(raw)
    extra = {k: raw.pop(k) for k in ("prior", "settings") if k in raw}
    updates = raw.pop("design", {}) or {}
    if "n" in raw and isinstance(raw["n"], str):
        raw["n"] = parse_n_grid(raw["n"])
    try:
        base = Design().with_updates(**updates) if updates else Design()
        pd_ = PowerDesign.from_dict({**raw, "design": base})
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise ValueError(f"design file {p}: {err}") from None
    return pd_, extra


# =============================================================================================
# settings, seeds
# =============================================================================================


@dataclass(frozen=True)
class PowerSettings:
    """How each simulated study is analysed and judged.

    Parameters
    ----------
    alpha : float
        Two-sided level of the frequentist tests.
    prob : float
        Posterior-probability threshold of the Bayesian rule.
    rope : float, optional
        ROPE half-width in percentage points (``None``: the site's DXA least significant change).
    draws, tune, chains, target_accept : Bayesian sampler settings per refit (nutpie).
    cores : int, optional
        nutpie threads per refit (``None``: automatic). Does not change any result.
    estimand : {"diff_pct_change_12m", "diff_change_12m"}
        Posterior quantity the Bayesian rules judge.
    direction : {"greater", "less"}
        Sign of the hypothesised difference (responders minus non-responders).
    priors : TrajectoryPriors, optional
        Priors of the Bayesian LMM (default ``TrajectoryPriors()``).
    """

    alpha: float = 0.05
    prob: float = 0.95
    rope: float | None = None
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    cores: int | None = None
    estimand: Literal["diff_pct_change_12m", "diff_change_12m"] = "diff_pct_change_12m"
    direction: Literal["greater", "less"] = "greater"
    priors: TrajectoryPriors | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0.5 <= self.prob < 1.0:
            raise ValueError(f"prob must be in [0.5, 1), got {self.prob}")
        if self.rope is not None and not self.rope >= 0:
            raise ValueError(f"rope must be non-negative, got {self.rope}")
        if min(self.draws, self.tune, self.chains) < 1:
            raise ValueError("draws, tune and chains must be positive")
        if self.chains < 2:
            raise ValueError("the Bayesian diagnostics (R-hat) need at least 2 chains")
        if self.cores is not None and self.cores < 1:
            raise ValueError(f"cores must be positive, got {self.cores}")
        if self.estimand not in ("diff_pct_change_12m", "diff_change_12m"):
            raise ValueError(f"estimand must be 'diff_pct_change_12m' or 'diff_change_12m', got {self.estimand!r}")
        if self.direction not in ("greater", "less"):
            raise ValueError(f"direction must be 'greater' or 'less', got {self.direction!r}")

    def rope_for(self, site: str) -> float:
        """ROPE half-width at ``site`` (percentage points, or g/cm^2 for ``diff_change_12m``)."""
        if self.rope is not None:
            return float(self.rope)
        from analysis.bayes.posterior import LSC_PCT

        return float(LSC_PCT[site]) if self.estimand == "diff_pct_change_12m" else 0.0

    def key_dict(self) -> dict[str, Any]:
        """What determines the raw results (``alpha``, ``prob`` and ``cores`` do not)."""
        d = asdict(self)
        for k in ("alpha", "prob", "cores", "direction"):
            d.pop(k)
        d["priors"] = asdict(self.priors or TrajectoryPriors())
        return d


def simulation_seed_sequence(seed: int, sim: int, n: int | None = None, stream: int = 1) -> np.random.SeedSequence:
    """``SeedSequence`` of simulation ``sim``: ``(seed, spawn_key=(sim, stream, n))``.

    ``stream`` 0 is the design-prior draw (no ``n``), 1 the data, 2 the Bayesian sampler;
    ``SeedSequence(seed, spawn_key=(k, s, n))`` equals ``SeedSequence(seed).spawn(k + 1)[k]
    .spawn(s + 1)[s].spawn(n + 1)[n]``.
    """
    key = (int(sim), int(stream)) if n is None else (int(sim), int(stream), int(n))
    return np.random.SeedSequence(int(seed), spawn_key=key)


def _int_seed(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, np.uint32)[0])


# =============================================================================================
# design prior
# =============================================================================================


@dataclass(frozen=True)
class DesignPrior:
    """Draws of design parameters for assurance (columns are :meth:`Design.with_updates` keys).

    Attributes
    ----------
    draws : DataFrame
    source : str
        Where the draws came from (recorded with the results).
    """

    draws: pd.DataFrame
    source: str = "user"

    def __post_init__(self) -> None:
        if not isinstance(self.draws, pd.DataFrame) or self.draws.empty:
            raise ValueError("a design prior needs a non-empty DataFrame of draws")
        if self.draws.isna().any().any():
            raise ValueError("design-prior draws contain missing values")
        try:
            Design().with_updates(**self.draws.iloc[0].to_dict())
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"design-prior columns are not Design fields: {err}") from None

    def key(self) -> str:
        """Hash of the draws (part of the resume key)."""
        h = hashlib.sha256(json.dumps(list(self.draws.columns)).encode())
        h.update(np.ascontiguousarray(self.draws.to_numpy(dtype=float)).tobytes())
        return h.hexdigest()[:16]

    def draw(self, rng: np.random.Generator) -> tuple[int, dict[str, float]]:
        """One draw, uniformly: its row index and values."""
        i = int(rng.integers(len(self.draws)))
        return i, {k: float(v) for k, v in self.draws.iloc[i].items()}

    @classmethod
    def combine(cls, priors: Sequence[DesignPrior]) -> DesignPrior:
        """One prior from per-site priors (e.g. :meth:`from_fit` at each site): their columns side by
        side, draw ``i`` of each (truncated to the shortest). Separate fits carry no between-site
        dependence of the parameters; a draw pairs the sites' draws of the same index."""
        priors = list(priors)
        if not priors:
            raise ValueError("combine needs at least one design prior")
        cols = [c for p in priors for c in p.draws.columns]
        if len(set(cols)) != len(cols):
            raise ValueError("design priors to combine share columns (one prior per site)")
        k = min(len(p.draws) for p in priors)
        draws = pd.concat([p.draws.iloc[:k].reset_index(drop=True) for p in priors], axis=1)
        return cls(draws=draws, source="; ".join(p.source for p in priors))

    @classmethod
    def from_fit(cls, fit: Any, design: Design | None = None, site: str | None = None,
                 generator: Literal["cohort", "gaussian"] = "cohort", max_draws: int | None = None) -> DesignPrior:
        """Map the posterior draws of a fitted trajectory LMM to design parameters (module docstring).

        Parameters
        ----------
        fit : FitResult
            A fit of :func:`models.trajectory.build_trajectory_model` (``b``, ``sd_patient``,
            ``sigma``, ``pct_change_12m`` in its posterior).
        design : Design, optional
            Supplies the responder fraction and the disease-control slope terms (default ``Design()``).
        site : str, optional
            Default: the fit's site (``fit.settings["model"]["site"]``).
        generator : {"cohort", "gaussian"}
            Whether to subtract the cohort model's disease-control slope.
        max_draws : int, optional
            Keep every k-th draw so that at most this many remain.
        """
        design = design or Design()
        post = fit.posterior["posterior"].to_dataset()
        needed = {"b", "sd_patient", "sigma", "pct_change_12m"}
        if not needed <= set(post.data_vars):
            raise ValueError(f"the fit lacks {sorted(needed - set(post.data_vars))}; "
                             "use a fit of the rajak trajectory LMM")
        model = fit.settings.get("model", {}) if isinstance(fit.settings, dict) else {}
        site = site or model.get("site")
        if site not in SITES:
            raise ValueError(f"cannot tell the fit's site; pass site= one of {SITES}")

        def flat(name: str, **sel: str) -> np.ndarray:
            da = post[name].sel(**sel) if sel else post[name]
            return np.asarray(da.transpose("chain", "draw").values, dtype=float).ravel()

        pi = design.responder_fraction
        m = flat("b", coef="intercept") + pi * flat("b", coef="responder")
        shift = disease_control_slope_pct(design, site) if generator == "cohort" else {"responder": 0.0,
                                                                                       "non-responder": 0.0}
        draws = pd.DataFrame({
            f"{site}.baseline_mean": m,
            f"{site}.baseline_sd": flat("sd_patient", effect="intercept"),
            f"{site}.slope_nonresponder_pct": flat("pct_change_12m", group="non-responder") - shift["non-responder"],
            f"{site}.slope_responder_pct": flat("pct_change_12m", group="responder") - shift["responder"],
            f"{site}.slope_sd_pct": 100.0 * flat("sd_patient", effect="slope") / m,
            f"{site}.precision_cv_pct": 100.0 * flat("sigma") / m,
        })
        if max_draws is not None and len(draws) > max_draws:
            draws = draws.iloc[:: math.ceil(len(draws) / max_draws)].reset_index(drop=True)
        seed = fit.settings.get("seed") if isinstance(fit.settings, dict) else None
        return cls(draws=draws, source=f"posterior of the trajectory LMM at {site} (seed {seed}), "
                                        f"{len(draws)} draws, mapped for the {generator} generator")


# =============================================================================================
# data generation and analysis frames
# =============================================================================================


def _bivariate(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    z = rng.standard_normal((n, 2))
    z[:, 1] = rho * z[:, 0] + np.sqrt(1.0 - rho**2) * z[:, 1]
    return z


def simulate_gaussian(design: Design, n: int, seed: int,
                      dropout: float | Sequence[float] | None = None) -> pd.DataFrame:
    r"""One study from the linear mixed model of the closed-form formulas (module docstring).

    Returns long data (``patient_id``, ``month``, ``bmd_spine``, ``bmd_femoral_neck``,
    ``responder``) at the DXA months; ``responder`` is the known group (exactly
    :math:`\mathrm{round}(n\pi)` responders, randomly placed). Dropout is MCAR and monotone: one
    number gives hazard :math:`1 - (1 - \text{dropout})^{1/V}` at each of the :math:`V`
    post-baseline DXA visits; a sequence gives the hazard at each scheduled post-baseline visit
    (``design.activity_months[1:]``), and a patient leaving at month :math:`t` has no DXA from
    :math:`t` on.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    rng = np.random.default_rng(seed)
    months = np.asarray(design.dxa_months, dtype=float)
    m = months.size
    n_resp = int(round(n * design.responder_fraction))
    resp = np.zeros(n, dtype=bool)
    resp[rng.permutation(n)[:n_resp]] = True
    z = _bivariate(rng, n, design.intercept_corr)
    w = _bivariate(rng, n, design.slope_corr)
    eps = rng.standard_normal((2, n, m))
    per_visit = isinstance(dropout, (list, tuple, np.ndarray))
    sched = np.asarray(design.activity_months, dtype=float)
    drop_u = rng.random((n, sched.size if per_visit else m))
    out: dict[str, Any] = {
        "patient_id": np.repeat(np.array([f"G{i + 1:04d}" for i in range(n)]), m),
        "month": np.tile(months.astype(int), n),
    }
    for k, s in enumerate(SITES):
        p = design.site(s)
        mean = p.baseline_mean
        slope = mean * np.where(resp, p.slope_responder_pct, p.slope_nonresponder_pct) / 1200.0
        b0 = mean + p.baseline_sd * z[:, k]
        b1 = slope + mean * p.slope_sd_pct / 1200.0 * w[:, k]
        y = b0[:, None] + b1[:, None] * months[None, :] + mean * p.precision_cv_pct / 100.0 * eps[k]
        out[f"bmd_{s}"] = y.ravel()
    out["responder"] = np.repeat(resp, m)
    frame = pd.DataFrame(out)
    if per_visit:
        hz = np.asarray(dropout, dtype=float)
        if hz.shape != (sched.size - 1,) or not np.all((hz >= 0) & (hz < 1)):
            raise ValueError(f"per-visit dropout hazards {hz.tolist()} must be {sched.size - 1} values in [0, 1)")
        hit = np.zeros((n, sched.size), dtype=bool)
        hit[:, 1:] = drop_u[:, 1:] < hz[None, :]
        first = np.where(hit.any(axis=1), sched[hit.argmax(axis=1)], np.inf)  # month of leaving
        keep = (months[None, :] < first[:, None]).ravel()
        return frame.loc[keep].reset_index(drop=True)
    d = float(dropout or 0.0)
    if d > 0:
        h = 1.0 - (1.0 - d) ** (1.0 / (m - 1))
        hit = drop_u < h
        hit[:, 0] = False
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), m)
        keep = (np.arange(m)[None, :] < first[:, None]).ravel()
        frame = frame.loc[keep].reset_index(drop=True)
    return frame


def _first_by_patient(codes: np.ndarray, values: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Per patient code, the first value (in row order) among rows in ``mask`` (NaN if none)."""
    idx = np.flatnonzero(mask)
    out = np.full(n, np.nan)
    if idx.size:
        c, pos = np.unique(codes[idx], return_index=True)
        out[c] = values[idx[pos]]
    return out


def _classify(base: np.ndarray, last: np.ndarray, rule: ResponderRule) -> np.ndarray:
    """1.0 responder, 0.0 non-responder, NaN undefined (as :mod:`analysis.study.groups`)."""
    base = np.asarray(base, dtype=float)
    last = np.asarray(last, dtype=float)
    out = np.full(base.shape, np.nan)
    ok = ~(np.isnan(base) | np.isnan(last))
    if rule.kind == "das28_fall":
        out[ok] = ((base - last) > rule.threshold)[ok]
        return out
    cat = eular_response(base, last)
    good = ("good",) if rule.kind == "eular_good" else ("good", "moderate")
    out[ok] = np.isin(cat[ok].astype(str), good)
    return out


def power_frame(data: pd.DataFrame, site: str, strategy: str = "last_observed",
                rule: ResponderRule | None = None) -> pd.DataFrame:
    """The model frame of one site for one simulated study (a fast, vectorised equivalent of
    ``model_frame(derive(data), site, strategy, rule)`` for the columns used here).

    Responder status: EULAR response (``rule``) from the DAS28-CRP at month 0 and at
    ``rule.month``; a ``responder`` column overrides it where given (as in
    :func:`analysis.study.clinical.classify_responders`); undefined status is reclassified from the last
    post-baseline DAS28-CRP (``"last_observed"``) or the patient is excluded (``"exclude"``, and
    patients still undefined).

    Returns
    -------
    DataFrame
        ``patient_id, month, bmd, bmd_<site>, responder`` (0/1), ``baseline, change, pct`` for rows
        with a BMD at ``site`` and a group, in the input order.
    """
    if strategy not in ("last_observed", "exclude"):
        raise ValueError(f"strategy must be 'last_observed' or 'exclude', got {strategy!r}")
    rule = rule or ResponderRule()
    col = f"bmd_{site}"
    if col not in data.columns:
        raise ValueError(f"data lack column {col!r}")
    codes, patients = pd.factorize(data["patient_id"], sort=False)
    n_pat = len(patients)
    month = data["month"].to_numpy(dtype=float)
    status = np.full(n_pat, np.nan)
    base = np.full(n_pat, np.nan)
    has_das = "das28_crp" in data.columns
    if has_das:
        das = data["das28_crp"].to_numpy(dtype=float)
        ok = ~np.isnan(das)
        base = _first_by_patient(codes, das, ok & (month == 0), n_pat)
        at = _first_by_patient(codes, das, ok & (month == float(rule.month)), n_pat)
        status = _classify(base, at, rule)
    if "responder" in data.columns and data["responder"].notna().any():
        user = data["responder"]
        given = user.notna().to_numpy()
        vals = np.zeros(len(user))
        vals[given] = user[given].astype(bool).to_numpy(dtype=float)
        first = _first_by_patient(codes, vals, given, n_pat)
        status = np.where(np.isnan(first), status, first)
    if strategy == "last_observed" and has_das and np.isnan(status).any():
        idx = np.flatnonzero(ok & (month > 0))
        order = idx[np.argsort(month[idx], kind="stable")][::-1]  # last visit first
        last = np.full(n_pat, np.nan)
        if order.size:
            c, pos = np.unique(codes[order], return_index=True)
            last[c] = das[order[pos]]
        undefined = np.isnan(status)
        status[undefined] = _classify(base, last, rule)[undefined]
    group = status[codes]
    bmd = data[col].to_numpy(dtype=float)
    keep = ~np.isnan(bmd) & ~np.isnan(group)
    kc = codes[keep]
    b0 = _first_by_patient(kc, bmd[keep], month[keep] == 0, n_pat)[kc]
    d = pd.DataFrame({"patient_id": data["patient_id"].to_numpy()[keep], "month": data["month"].to_numpy()[keep],
                      "bmd": bmd[keep], "responder": group[keep]})
    d[col] = d["bmd"]
    d["baseline"] = b0
    d["change"] = d["bmd"] - b0
    d["pct"] = 100.0 * d["change"] / b0
    return d


# =============================================================================================
# analyses of one data set
# =============================================================================================


def _row_error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text[:300]


def _lmm_row(frame: pd.DataFrame) -> dict[str, Any]:
    from analysis.frequentist.lmm import fit_lmm

    fit = fit_lmm(frame, "bmd ~ month * responder", time="month")
    r = fit.fixed.set_index("term").loc["month:responder"]
    return {"estimate": r["estimate"], "se": r["se"], "df": r["df"], "statistic": r["t"], "p": r["p"],
            "converged": bool(fit.converged), "singular": bool(fit.singular)}


def _mmrm_row(frame: pd.DataFrame, endpoint: float) -> dict[str, Any]:
    from analysis.frequentist.mmrm import fit_mmrm

    post = frame[(frame["month"] > 0) & frame["change"].notna()]
    fit = fit_mmrm(post, "change ~ baseline + month * responder", visit="month")
    grid, lmat = fit.reference_grid(["responder"], by=["month"], at={"responder": [0.0, 1.0]})
    at = grid["month"].astype(float).to_numpy() == endpoint
    r = grid["responder"].astype(float).to_numpy()
    i1, i0 = np.flatnonzero(at & (r == 1.0)), np.flatnonzero(at & (r == 0.0))
    if not (i1.size and i0.size):
        raise ValueError(f"no month-{endpoint:g} visit in the MMRM")
    c = fit.contrast(lmat[i1[:1]] - lmat[i0[:1]], names=["diff"]).iloc[0]
    return {"estimate": c["estimate"], "se": c["se"], "df": c["df"], "statistic": c["t"], "p": c["p"],
            "converged": bool(fit.converged)}


def _completer_changes(frame: pd.DataFrame, endpoint: float) -> tuple[np.ndarray, np.ndarray]:
    """% change to ``endpoint`` of patients with a BMD at 0 and ``endpoint``: (responders, others)."""
    end = frame.loc[frame["month"].astype(float) == endpoint]
    end = end.loc[end["baseline"].notna()].drop_duplicates("patient_id")
    pct = end["pct"].to_numpy(dtype=float)
    resp = end["responder"].to_numpy(dtype=float) == 1.0
    return pct[resp], pct[~resp]


def _completers_rows(frame: pd.DataFrame, endpoint: float) -> list[tuple[str, dict[str, Any]]]:
    from analysis.frequentist.rtests import t_test_welch, wilcoxon_rank_sum

    xr, xn = _completer_changes(frame, endpoint)
    rows = []
    for name, fn, kw in (("completers_t", t_test_welch, {}),
                         ("completers_wilcoxon", wilcoxon_rank_sum, {"conf_int": False})):
        t0 = time.perf_counter()
        try:
            res = fn(xr, xn, **kw)
            # Welch: difference of means and its SE; rank-sum without conf_int: no estimate
            est = np.nan if res.estimate is None else float(res.estimate)
            se = abs(est / res.statistic) if name == "completers_t" and res.statistic not in (0.0,) else np.nan
            rows.append((name, {"ok": True, "estimate": est, "se": se,
                                "df": np.nan if res.df is None else float(res.df),
                                "statistic": float(res.statistic), "p": float(res.p_value),
                                "seconds": time.perf_counter() - t0}))
        except Exception as err:  # noqa: BLE001 - a failed test is a result (no success)
            rows.append((name, {"ok": False, "message": _row_error(err), "seconds": time.perf_counter() - t0}))
    return rows


# ---------------------------------------------------------------------------------------------
# Bayesian refits
# ---------------------------------------------------------------------------------------------


@dataclass
class BayesRefit:
    """Draws of the reported quantities from one refit, its diagnostics and timings.

    Attributes
    ----------
    draws : dict of str to ndarray
        ``(chain, draw, ...)`` arrays of :data:`_SUMMARY_VARS`.
    diagnostics : analysis.engine.sampling.Diagnostics
        R-hat, bulk/tail ESS over the reported variables (patient effects are not drawn in power
        refits), divergences, E-BFMI and the verdict.
    seconds, compile_seconds : float
        Wall time of the refit; compilation (zero unless this refit compiled).
    sample_seconds : float
        Wall time inside ``nutpie.sample``.
    """

    draws: dict[str, np.ndarray]
    diagnostics: Any
    seconds: float
    compile_seconds: float
    sample_seconds: float = float("nan")


class BayesRefitter:
    """The trajectory LMM of one site, built and compiled once, refitted to one data set after another.

    A thin layer over :class:`analysis.engine.refit.Refitter`: the first :meth:`fit` builds
    :func:`models.trajectory.build_trajectory_model` (marginal parameterisation: no parameter
    depends on the number of patients) and compiles it; every later fit swaps the data with the
    model's ``set_data`` and samples the same compiled model. The draws equal
    :func:`analysis.engine.sampling.sample`'s for the same data and seed; only :data:`_SUMMARY_VARS` are
    read (no arviz ``DataTree``, no patient effects, no pointwise log-likelihood).

    Parameters
    ----------
    site : str
    draws, tune, chains, target_accept, cores : sampler settings
    priors : TrajectoryPriors, optional
    thresholds : analysis.engine.sampling.Thresholds, optional
    """

    def __init__(self, site: str = "spine", *, draws: int = 1000, tune: int = 1000, chains: int = 4,
                 target_accept: float = 0.9, cores: int = 1, priors: TrajectoryPriors | None = None,
                 thresholds: Any = None) -> None:
        if site not in SITES:
            raise ValueError(f"site must be one of {SITES}, got {site!r}")
        self.site, self.draws, self.tune, self.chains = site, int(draws), int(tune), int(chains)
        self.target_accept, self.cores = float(target_accept), int(cores)
        self.priors = priors or TrajectoryPriors()
        self.thresholds = thresholds
        self.refitter: Any = None
        self.n_fits = 0
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The trajectory model (``None`` before the first fit)."""
        return None if self.refitter is None else self.refitter.model

    @property
    def n_compiles(self) -> int:
        """Compilations so far (at most 1 for the marginal model)."""
        return 0 if self.refitter is None else self.refitter.n_compiles

    def _frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        col = f"bmd_{self.site}"
        if col not in frame.columns:
            frame = frame.assign(**{col: frame["bmd"]})
        return frame[["patient_id", "month", col, "responder"]]

    def fit(self, frame: pd.DataFrame, seed: int) -> BayesRefit:
        """Refit to ``frame`` (a :func:`power_frame`, or any frame with ``patient_id``, ``month``,
        ``bmd_<site>`` and a 0/1 ``responder``) with sampler seed ``seed``."""
        from analysis.engine.refit import Refitter
        from models.trajectory import build_trajectory_model

        with self._lock:
            df = self._frame(frame)
            data: Any = df
            if self.refitter is None:
                self.refitter = Refitter(build_trajectory_model(df, self.site, priors=self.priors), draws=self.draws,
                                         tune=self.tune, chains=self.chains, cores=self.cores,
                                         target_accept=self.target_accept, var_names=_SUMMARY_VARS,
                                         thresholds=self.thresholds)
                data = None  # built with these data
            self.refitter.cores = self.cores
            r = self.refitter.refit(data, seed)
            self.n_fits += 1
            return BayesRefit(draws=r.draws, diagnostics=r.diagnostics, seconds=r.seconds,
                              compile_seconds=r.compile_seconds, sample_seconds=r.sample_seconds)


_REFITTERS: dict[tuple, BayesRefitter] = {}
_REFITTERS_LOCK = threading.Lock()


def _refitter(site: str, settings: PowerSettings, cores: int) -> BayesRefitter:
    key = (site, settings.draws, settings.tune, settings.chains, settings.target_accept,
           json.dumps(asdict(settings.priors or TrajectoryPriors()), sort_keys=True))
    with _REFITTERS_LOCK:
        r = _REFITTERS.get(key)
        if r is None:
            r = _REFITTERS[key] = BayesRefitter(site, draws=settings.draws, tune=settings.tune,
                                                chains=settings.chains, target_accept=settings.target_accept,
                                                cores=cores, priors=settings.priors)
        r.cores = cores
        return r


def _bayes_row(frame: pd.DataFrame, site: str, settings: PowerSettings, seed: int, cores: int) -> dict[str, Any]:
    refit = _refitter(site, settings, cores).fit(frame, seed)
    x = refit.draws[settings.estimand].ravel()
    rope = settings.rope_for(site)
    q = np.quantile(x, [0.025, 0.05, 0.5, 0.95, 0.975])
    d = refit.diagnostics
    return {"estimate": float(x.mean()), "se": float(x.std(ddof=1)), "q025": q[0], "q05": q[1], "q50": q[2],
            "q95": q[3], "q975": q[4], "p_gt_0": float((x > 0).mean()), "p_lt_0": float((x < 0).mean()),
            "p_in_rope": float((np.abs(x) < rope).mean()), "rope": rope,
            "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail,
            "divergences": float(d.n_divergences), "min_ebfmi": float(min(d.ebfmi)) if d.ebfmi else np.nan,
            "diag_passed": bool(d.passed), "diag_failures": "; ".join(d.failed_checks),
            "sample_seconds": refit.seconds}


# =============================================================================================
# one simulated study
# =============================================================================================


@dataclass(frozen=True)
class _StudySpec:
    """Everything a worker needs (pickled to processes and Dask workers)."""

    design: PowerDesign
    analyses: tuple[str, ...]
    settings: PowerSettings
    prior: DesignPrior | None
    seed: int
    cores: int = 1

    def key(self) -> str:
        spec = {"format": POWER_FORMAT, "simulator": SIMULATOR_VERSION, "design": self.design.key_dict(),
                "analyses": sorted(self.analyses),
                "settings": self.settings.key_dict() if "bayes" in self.analyses else {},
                "prior": None if self.prior is None else self.prior.key(), "seed": int(self.seed)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _study_rows(spec: _StudySpec, n: int, sim: int) -> list[dict[str, Any]]:
    """Simulate study ``sim`` with ``n`` patients and run every analysis at every site."""
    from models.simulate import simulate

    pdz = spec.design
    design = pdz.design
    prior_info: dict[str, Any] = {}
    if spec.prior is not None:
        idx, values = spec.prior.draw(np.random.default_rng(simulation_seed_sequence(spec.seed, sim, None, 0)))
        design = design.with_updates(**values)
        prior_info = {"prior_draw": idx, **{f"prior.{k}": v for k, v in values.items()}}
    data_seed = _int_seed(simulation_seed_sequence(spec.seed, sim, n, 1))
    sampler_seed = _int_seed(simulation_seed_sequence(spec.seed, sim, n, 2))
    if pdz.generator == "gaussian":
        data = simulate_gaussian(design, n, data_seed, pdz.dropout)
    else:
        study = simulate(design.with_updates(n_patients=n), data_seed)
        data = study.data
        if pdz.grouping == "true":
            truth = study.patients.set_index("patient_id")["response_type"] == "responder"
            data = data.assign(responder=data["patient_id"].map(truth))
    endpoint = pdz.endpoint_month
    rows: list[dict[str, Any]] = []
    for site in pdz.sites:
        frame = power_frame(data, site, pdz.strategy, pdz.rule)
        by_patient = frame.drop_duplicates("patient_id")
        n_completers = int(((frame["month"].astype(float) == endpoint) & frame["baseline"].notna()).sum())
        end_ids = data.loc[(data["month"].astype(float) == endpoint) & data[f"bmd_{site}"].notna(), "patient_id"]
        base = {"n": n, "sim": sim, "site": site, "n_analysed": int(len(by_patient)),
                "n_responders": int((by_patient["responder"] == 1.0).sum()),
                "n_nonresponders": int((by_patient["responder"] == 0.0).sum()),
                "n_completers": n_completers, "lost_fraction": 1.0 - end_ids.nunique() / n, **prior_info}
        for analysis in spec.analyses:
            if analysis == "completers":
                for name, res in _completers_rows(frame, endpoint):
                    rows.append({**base, "analysis": name, **res})
                continue
            t0 = time.perf_counter()
            try:
                if analysis == "lmm":
                    res = _lmm_row(frame)
                elif analysis == "mmrm":
                    res = _mmrm_row(frame, endpoint)
                else:
                    res = _bayes_row(frame, site, spec.settings, sampler_seed, spec.cores)
                res = {"ok": True, **res}
            except Exception as err:  # noqa: BLE001 - a failed fit is a result (no success)
                res = {"ok": False, "message": _row_error(err)}
            rows.append({**base, "analysis": analysis, **res, "seconds": time.perf_counter() - t0})
    return rows


RAW_COLUMNS = ["n", "sim", "site", "analysis", "ok", "estimate", "se", "df", "statistic", "p", "converged",
               "singular", "q025", "q05", "q50", "q95", "q975", "p_gt_0", "p_lt_0", "p_in_rope", "rope",
               "max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "min_ebfmi", "diag_passed",
               "diag_failures", "n_analysed", "n_responders", "n_nonresponders", "n_completers",
               "lost_fraction", "message", "seconds", "sample_seconds"]
_BOOL_COLUMNS = ("converged", "singular", "diag_passed")
_STR_COLUMNS = ("site", "analysis", "diag_failures", "message")
_INT_COLUMNS = ("n", "sim", "n_analysed", "n_responders", "n_nonresponders", "n_completers")
#: Columns that measure time (they differ between runs; everything else is reproducible).
TIMING_COLUMNS = ("seconds", "sample_seconds")


def _tidy(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    extra = sorted(c for c in df.columns if c not in RAW_COLUMNS)
    df = df.reindex(columns=RAW_COLUMNS + extra)
    for c in df.columns:
        if c in _BOOL_COLUMNS:
            df[c] = df[c].astype("boolean")
        elif c in _STR_COLUMNS:
            df[c] = df[c].astype(object).where(df[c].notna(), "").astype(str)
        elif c in _INT_COLUMNS or c == "prior_draw":
            df[c] = df[c].astype("int64")
        elif c == "ok":
            df[c] = df[c].fillna(False).astype(bool)
        else:
            df[c] = df[c].astype(float)
    return df


@dataclass(frozen=True)
class _Chunk:
    spec: _StudySpec
    n: int
    sims: tuple[int, ...]


def _run_chunk(chunk: _Chunk) -> pd.DataFrame:
    """Worker entry point: every simulation of ``chunk`` (picklable, importable on Dask workers)."""
    rows: list[dict[str, Any]] = []
    for sim in chunk.sims:
        rows.extend(_study_rows(chunk.spec, chunk.n, sim))
    return _tidy(rows)


# =============================================================================================
# results on disk (resumable)
# =============================================================================================


class _ResultStore:
    """``DIR/manifest.json`` plus one Parquet file per finished chunk in ``DIR/chunks``."""

    def __init__(self, out: str | os.PathLike, spec: _StudySpec, description: dict[str, Any]) -> None:
        from analysis.common.io import atomic_write_json

        self.dir = Path(out)
        self.chunks = self.dir / "chunks"
        self.key = spec.key()
        manifest = self.dir / "manifest.json"
        if manifest.exists():
            try:
                held = json.loads(manifest.read_text(encoding="utf-8"))
            except ValueError as err:
                raise ValueError(f"{manifest} is not valid JSON ({err}); use another output directory") from None
            if held.get("study_key") != self.key:
                raise ValueError(f"{self.dir} holds results of a different power study (key {held.get('study_key')}, "
                                 f"this one {self.key}); use another output directory")
        else:
            self.chunks.mkdir(parents=True, exist_ok=True)
            atomic_write_json(manifest, {"study_key": self.key, "format": POWER_FORMAT, **description})
        self.chunks.mkdir(parents=True, exist_ok=True)

    def load(self) -> pd.DataFrame | None:
        """Every finished simulation on disk (partial temporary files are ignored)."""
        files = sorted(p for p in self.chunks.glob("*.parquet") if not p.name.startswith("."))
        if not files:
            return None
        df = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
        return df.drop_duplicates(["n", "sim", "site", "analysis"], keep="first").reset_index(drop=True)

    def write(self, df: pd.DataFrame, chunk: _Chunk) -> Path:
        """Write one chunk atomically (temporary file in the same directory, then rename)."""
        from analysis.common.io import atomic_write_bytes

        tag = hashlib.sha256(json.dumps(list(chunk.sims)).encode()).hexdigest()[:8]
        name = f"n{chunk.n:05d}-s{chunk.sims[0]:06d}-{chunk.sims[-1]:06d}-{tag}.parquet"
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return atomic_write_bytes(self.chunks / name, buf.getvalue())


# =============================================================================================
# execution backends
# =============================================================================================


def check_scheduler(address: str) -> str:
    import re

    if not re.fullmatch(r"(tcp|tls)://[^\s/:]+:\d{1,5}", address or ""):
        raise ValueError(f"scheduler address must look like tcp://HOST:PORT, got {address!r}")
    return address


def _serial(chunks: list[_Chunk]) -> Iterator[tuple[_Chunk, pd.DataFrame]]:
    for c in chunks:
        yield c, _run_chunk(c)


def _run_chunk_tagged(chunk: _Chunk) -> tuple[int, tuple[int, ...], pd.DataFrame]:
    return chunk.n, chunk.sims, _run_chunk(chunk)


def _process_pool(chunks: list[_Chunk], workers: int) -> Iterator[tuple[_Chunk, pd.DataFrame]]:
    """joblib's loky processes: fresh interpreters that do not re-run the caller's ``__main__`` (no
    ``if __name__ == "__main__"`` guard needed) and stay warm between calls (compiled models are
    kept for ``idle_worker_timeout`` seconds)."""
    from joblib import Parallel, delayed

    by_key = {(c.n, c.sims): c for c in chunks}
    par = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered", batch_size=1)
    gen = par(delayed(_run_chunk_tagged)(c) for c in chunks)
    try:
        for n, sims, df in gen:
            yield by_key[(n, sims)], df
    finally:
        gen.close()


def _dask(chunks: list[_Chunk], scheduler: str, timeout: float = 30.0) -> Iterator[tuple[_Chunk, pd.DataFrame]]:
    from distributed import Client, as_completed

    client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
    futures = []
    try:
        futures = [client.submit(_run_chunk, c, pure=False) for c in chunks]
        owner = {f.key: c for f, c in zip(futures, chunks)}
        for fut in as_completed(futures, loop=client.loop):
            yield owner[fut.key], fut.result()
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        client.close()


class _Progress:
    """A rich progress bar on stderr (or nothing)."""

    def __init__(self, total: int, done: int, enabled: bool, label: str) -> None:
        self.bar = None
        if enabled and total > 0:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                transient=False)
            self.task = self.bar.add_task(label, total=total, completed=done)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def advance(self, k: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, k)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


# =============================================================================================
# the study
# =============================================================================================


def run_power(design: PowerDesign, sims: int, seed: int = 0, *, analyses: Sequence[str] = ("lmm",),
              settings: PowerSettings | None = None, prior: DesignPrior | None = None,
              out: str | os.PathLike | None = None, scheduler: str | None = None, workers: int | None = None,
              chunk_size: int | None = None, progress: bool | None = None,
              on_chunk: Callable[[pd.DataFrame], None] | None = None,
              log: Callable[[str], None] | None = None, target: float = 0.8) -> PowerResult:
    """Simulate ``sims`` studies at every sample size of ``design`` and analyse each one.

    Parameters
    ----------
    design : PowerDesign
    sims : int
        Simulated studies per sample size.
    seed : int
        Root seed (module docstring: one ``SeedSequence`` child per simulation).
    analyses : sequence of str
        Any of :data:`ANALYSES`.
    settings : PowerSettings, optional
    prior : DesignPrior, optional
        Draw the design parameters per simulation (assurance) instead of fixing them (power).
    out : path, optional
        Directory for resumable results and the outputs (:meth:`PowerResult.save`).
    scheduler : str, optional
        ``"tcp://HOST:PORT"`` of a Dask distributed scheduler; otherwise local processes.
    workers : int, optional
        Local processes (default: CPU count; 1 runs in this process).
    chunk_size : int, optional
        Simulations per task (default 10 with ``bayes``, else 25).
    progress : bool, optional
        Progress bar on stderr (default: when stderr is a terminal).
    on_chunk : callable, optional
        Called with each finished chunk's rows (after they are saved).
    log : callable, optional
        Receives one-line messages (e.g. how many simulations were already done).
    target : float
        Target power for the smallest-n table written to ``out``.

    Returns
    -------
    PowerResult

    Raises
    ------
    ValueError
        On invalid arguments, or an ``out`` directory holding another study.
    """
    import sys

    settings = settings or PowerSettings()
    analyses = tuple(dict.fromkeys(analyses))
    if not analyses or any(a not in ANALYSES for a in analyses):
        raise ValueError(f"analyses must be a non-empty subset of {ANALYSES}, got {list(analyses)}")
    if int(sims) < 1:
        raise ValueError(f"sims must be at least 1, got {sims}")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if scheduler is not None:
        check_scheduler(scheduler)
    if prior is not None:
        for col in prior.draws.columns:
            site = col.split(".", 1)[0]
            if site in SITES and site not in design.sites and log:
                log(f"note: the design prior sets {col}, a site that is not analysed")
    sims = int(sims)
    design = design.resolved()
    cpu = os.cpu_count() or 1
    workers = int(workers) if workers is not None else cpu
    if settings.cores is not None:
        cores = settings.cores
    elif scheduler is not None:
        cores = 1
    else:
        cores = max(1, cpu // workers)
    spec = _StudySpec(design, analyses, settings, prior, int(seed), cores)
    description = {"design": design.to_dict(), "analyses": list(analyses), "settings": _settings_dict(settings),
                   "prior": None if prior is None else {"source": prior.source, "key": prior.key(),
                                                        "n_draws": len(prior.draws)},
                   "seed": int(seed), "simulator_version": SIMULATOR_VERSION}
    store = _ResultStore(out, spec, description) if out is not None else None
    existing = store.load() if store is not None else None
    done: set[tuple[int, int]] = set()
    if existing is not None:
        done = set(zip(existing["n"].astype(int), existing["sim"].astype(int)))
    size = int(chunk_size) if chunk_size else (10 if "bayes" in analyses else 25)
    chunks: list[_Chunk] = []
    for n in design.n:
        todo = [k for k in range(sims) if (n, k) not in done]
        chunks += [_Chunk(spec, n, tuple(todo[i:i + size])) for i in range(0, len(todo), size)]
    total = sims * len(design.n)
    n_todo = sum(len(c.sims) for c in chunks)
    if log and existing is not None:
        log(f"{total - n_todo} of {total} simulations already done in {store.dir}; running {n_todo}")
    if progress is None:
        progress = sys.stderr.isatty()
    frames: list[pd.DataFrame] = []
    if chunks:
        if scheduler is not None:
            runner = _dask(chunks, scheduler)
        elif workers == 1 or len(chunks) == 1:
            runner = _serial(chunks)
        else:
            runner = _process_pool(chunks, min(workers, len(chunks)))
        kind = "assurance" if prior is not None else "power"
        with _Progress(total, total - n_todo, bool(progress), f"{kind} ({', '.join(analyses)})") as bar:
            try:
                for chunk, df in runner:
                    if store is not None:
                        store.write(df, chunk)
                    frames.append(df)
                    bar.advance(len(chunk.sims))
                    if on_chunk is not None:
                        on_chunk(df)
            finally:
                close = getattr(runner, "close", None)
                if close is not None:
                    close()
    parts = ([existing] if existing is not None else []) + frames
    raw = pd.concat(parts, ignore_index=True) if parts else _tidy([])
    raw = raw[raw["n"].isin(design.n) & (raw["sim"] < sims)]
    raw = raw.sort_values(["n", "sim", "site", "analysis"], kind="stable").reset_index(drop=True)
    result = PowerResult(raw=raw, design=design, analyses=analyses, settings=settings, prior=prior,
                         seed=int(seed), sims=sims)
    if out is not None:
        result.save(out, target)
    return result


def _settings_dict(settings: PowerSettings) -> dict[str, Any]:
    d = asdict(settings)
    d["priors"] = asdict(settings.priors or TrajectoryPriors())
    return d


# =============================================================================================
# summaries
# =============================================================================================


def _wilson(successes: np.ndarray, k: np.ndarray, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    p = successes / k
    den = 1.0 + z**2 / k
    centre = (p + z**2 / (2 * k)) / den
    half = z * np.sqrt(p * (1 - p) / k + z**2 / (4 * k**2)) / den
    # exact bounds are 0 at p = 0 and 1 at p = 1; clip the rounding so that lo <= p <= hi holds
    return np.clip(centre - half, 0.0, p), np.clip(centre + half, p, 1.0)


def _successes(rows: pd.DataFrame, analysis: str, criterion: str, alpha: float, prob: float,
               rope: float | None, direction: str) -> np.ndarray:
    ok = rows["ok"].to_numpy(dtype=bool)
    if analysis != "bayes":
        return ok & (rows["p"].to_numpy(dtype=float) < alpha)
    lo, hi = rows["q025"].to_numpy(dtype=float), rows["q975"].to_numpy(dtype=float)
    if criterion == _BAYES_CRITERIA[0]:
        p = rows["p_gt_0" if direction == "greater" else "p_lt_0"].to_numpy(dtype=float)
        return ok & (p > prob)
    if criterion == _BAYES_CRITERIA[1]:
        return ok & ((lo > 0) | (hi < 0))
    r = rows["rope"].to_numpy(dtype=float) if rope is None else np.full(len(rows), float(rope))
    return ok & ((lo > r) | (hi < -r))


def summarise(raw: pd.DataFrame, alpha: float = 0.05, prob: float = 0.95, rope: float | None = None,
              direction: str = "greater") -> pd.DataFrame:
    r"""Power (or assurance) per sample size, site, analysis and decision rule, from raw rows.

    Parameters
    ----------
    raw : DataFrame
        :attr:`PowerResult.raw` (or the Parquet chunks of a study).
    alpha, prob : float
        Frequentist level; Bayesian posterior-probability threshold.
    rope : float, optional
        ROPE half-width (default: the value stored with each Bayesian row).
    direction : {"greater", "less"}

    Returns
    -------
    DataFrame
        ``site, analysis, criterion, n, sims, successes, power, mc_se, ci_low, ci_high, failed,
        mean_estimate, diag_pass_rate, lost_fraction``; ``mc_se`` is
        :math:`\sqrt{\hat p(1-\hat p)/K}`, ``ci_*`` the Wilson 95% interval, ``failed`` the fits
        that raised (counted as no success).
    """
    cols = ["site", "analysis", "criterion", "n", "sims", "successes", "power", "mc_se", "ci_low", "ci_high",
            "failed", "mean_estimate", "diag_pass_rate", "lost_fraction"]
    out = []
    for (site, analysis, n), rows in raw.groupby(["site", "analysis", "n"], sort=True):
        k = int(rows["sim"].nunique())
        criteria = _BAYES_CRITERIA if analysis == "bayes" else (_FREQ_CRITERION,)
        for crit in criteria:
            s = int(_successes(rows, analysis, crit, alpha, prob, rope, direction).sum())
            p = s / k
            lo, hi = _wilson(np.array([s], float), np.array([k], float))
            diag = rows["diag_passed"].astype("float").mean() if analysis == "bayes" else np.nan
            out.append({"site": site, "analysis": analysis, "criterion": crit, "n": int(n), "sims": k,
                        "successes": s, "power": p, "mc_se": math.sqrt(p * (1 - p) / k), "ci_low": float(lo[0]),
                        "ci_high": float(hi[0]), "failed": int((~rows["ok"].astype(bool)).sum()),
                        "mean_estimate": float(rows["estimate"].mean()), "diag_pass_rate": float(diag),
                        "lost_fraction": float(rows["lost_fraction"].mean())})
    df = pd.DataFrame(out, columns=cols)
    if not df.empty:
        rank = df["analysis"].map({a: i for i, a in enumerate((*_FREQ_ROWS, "bayes"))})
        df = (df.assign(_rank=rank).sort_values(["site", "_rank", "criterion", "n"], kind="stable")
              .drop(columns="_rank").reset_index(drop=True))
    return df


def smallest_n(summary: pd.DataFrame, target: float = 0.8) -> pd.DataFrame:
    """Smallest sample size of the grid whose power reaches ``target``, per site, analysis, rule.

    ``n_min``: the estimate reaches it; ``n_min_sure``: the lower Wilson 95% limit does (``NaN``
    when no sample size of the grid does).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target}")
    rows = []
    for (site, analysis, crit), g in summary.groupby(["site", "analysis", "criterion"], sort=False):
        g = g.sort_values("n")
        hit = g[g["power"] >= target]
        sure = g[g["ci_low"] >= target]
        rows.append({"site": site, "analysis": analysis, "criterion": crit, "target": target,
                     "n_min": int(hit["n"].iloc[0]) if len(hit) else np.nan,
                     "power_at_n_min": float(hit["power"].iloc[0]) if len(hit) else np.nan,
                     "mc_se_at_n_min": float(hit["mc_se"].iloc[0]) if len(hit) else np.nan,
                     "n_min_sure": int(sure["n"].iloc[0]) if len(sure) else np.nan,
                     "max_n": int(g["n"].max()), "power_at_max_n": float(g["power"].iloc[-1])})
    out = pd.DataFrame(rows, columns=["site", "analysis", "criterion", "target", "n_min", "power_at_n_min",
                                      "mc_se_at_n_min", "n_min_sure", "max_n", "power_at_max_n"])
    for c in ("n_min", "n_min_sure"):
        out[c] = out[c].astype("Int64")
    return out


def _type_slopes_pct(design: Design, site: str, generator: str) -> dict[str, float]:
    p = design.site(site)
    shift = disease_control_slope_pct(design, site) if generator == "cohort" else {"responder": 0.0,
                                                                                   "non-responder": 0.0}
    return {"responder": p.slope_responder_pct + shift["responder"],
            "non-responder": p.slope_nonresponder_pct + shift["non-responder"]}


def closed_form_power(design: PowerDesign, n: Iterable[int] | None = None, site: str | None = None,
                      alpha: float = 0.05) -> np.ndarray:
    r"""Liu & Liang power of the LMM slope-difference test for ``design`` (linearised; no dropout).

    The Gaussian generator's model (module docstring) at the DXA months: random intercept SD
    ``baseline_sd``, slope SD :math:`m\,\omega/1200` (g/cm^2/month), residual SD
    :math:`m\,\mathrm{CV}/100`, slope difference :math:`m(\gamma^{(1)} - \gamma^{(0)})/1200`
    (for the cohort generator the types' mean slopes include the disease-control term), responder
    share :math:`\mathrm{round}(n\pi)/n` (Gaussian) or :math:`\pi` (cohort). Dropout and
    misclassification of groups are ignored.
    """
    from analysis.power.closed_form import random_slope_covariance, slope_difference_power

    site = site or design.sites[0]
    d = design.design
    p = d.site(site)
    m = p.baseline_mean
    t = np.asarray(d.dxa_months, dtype=float)
    v = random_slope_covariance(t, p.baseline_sd**2, (m * p.slope_sd_pct / 1200.0) ** 2, 0.0,
                                (m * p.precision_cv_pct / 100.0) ** 2)
    slopes = _type_slopes_pct(d, site, design.generator)
    delta = m * (slopes["responder"] - slopes["non-responder"]) / 1200.0
    ns = np.asarray(list(design.n if n is None else n), dtype=float)
    out = []
    for nn in ns:
        frac = round(nn * d.responder_fraction) / nn if design.generator == "gaussian" else d.responder_fraction
        out.append(float(slope_difference_power(nn, delta, t, v, fraction=frac, sig_level=alpha)[0]))
    return np.array(out)


@dataclass
class PowerResult:
    """A finished power (or assurance) study.

    Attributes
    ----------
    raw : DataFrame
        One row per simulation, site and analysis (:data:`RAW_COLUMNS`, plus ``prior_draw`` and
        ``prior.*`` for assurance): estimates, SEs, df, p-values, posterior quantiles, diagnostics.
        Every summary is computed from it.
    design, analyses, settings, prior, seed, sims
        What produced it.
    """

    raw: pd.DataFrame
    design: PowerDesign
    analyses: tuple[str, ...]
    settings: PowerSettings
    prior: DesignPrior | None
    seed: int
    sims: int

    @property
    def kind(self) -> str:
        """``"assurance"`` with a design prior, else ``"power"``."""
        return "assurance" if self.prior is not None else "power"

    def summary(self, alpha: float | None = None, prob: float | None = None, rope: float | None = None) -> pd.DataFrame:
        """:func:`summarise` with the study's settings unless overridden."""
        s = self.settings
        return summarise(self.raw, s.alpha if alpha is None else alpha, s.prob if prob is None else prob,
                         rope if rope is not None else s.rope, s.direction)

    def smallest_n(self, target: float = 0.8) -> pd.DataFrame:
        """:func:`smallest_n` of :meth:`summary`."""
        return smallest_n(self.summary(), target)

    def closed_form(self) -> pd.DataFrame:
        """The closed-form LMM power per site and ``n`` (:func:`closed_form_power`)."""
        rows = []
        for site in self.design.sites:
            for n, p in zip(self.design.n, closed_form_power(self.design, site=site, alpha=self.settings.alpha)):
                rows.append({"site": site, "n": int(n), "closed_form_power": p})
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        """Wide table: one row per ``n``, one column per site/analysis/rule, ``power (MC SE)``."""
        s = self.summary()
        s = s.assign(label=s["site"] + " | " + s["analysis"] + " | " + s["criterion"],
                     cell=[f"{p:.3f} ({se:.3f})" for p, se in zip(s["power"], s["mc_se"])])
        wide = s.pivot(index="n", columns="label", values="cell")
        wide.columns.name = None
        return wide.reset_index()

    def figure(self, target: float = 0.8, label: str | None = None) -> Any:
        """Power curves with Wilson 95% Monte-Carlo intervals and the target (dotted); for the
        Gaussian generator without dropout also the closed-form LMM power (dashed)."""
        import matplotlib.pyplot as plt

        from analysis.figures.plots import PALETTE, style

        s = self.summary()
        cf = self.closed_form()
        colours = [PALETTE[c] for c in ("blue", "vermillion", "green", "orange", "sky", "purple", "black")]
        with style():
            fig, axes = plt.subplots(1, len(self.design.sites), figsize=(5.2 * len(self.design.sites), 3.8),
                                     squeeze=False, sharey=True)
            for ax, site in zip(axes[0], self.design.sites):
                ss = s[s["site"] == site]
                for i, ((analysis, crit), g) in enumerate(ss.groupby(["analysis", "criterion"], sort=False)):
                    g = g.sort_values("n")
                    c = colours[i % len(colours)]
                    name = analysis if analysis != "bayes" else f"bayes: {crit}"
                    ax.errorbar(g["n"], g["power"], yerr=[g["power"] - g["ci_low"], g["ci_high"] - g["power"]],
                                color=c, marker="o", ms=3.5, lw=1.4, capsize=2, label=name)
                cs = cf[cf["site"] == site]
                if (len(cs) and "lmm" in self.analyses and self.prior is None and self.design.generator == "gaussian"
                        and not np.any(np.atleast_1d(self.design.dropout or 0.0))):
                    ax.plot(cs["n"], cs["closed_form_power"], color=PALETTE["black"], ls="--", lw=1,
                            label="closed form (Liu & Liang)")
                ax.axhline(target, color=PALETTE["grey"], ls=":", lw=1)
                ax.set_ylim(0, 1.02)
                ax.set_xlabel("patients per study (n)")
                ax.set_title(site.replace("_", " "))
            axes[0][0].set_ylabel(self.kind + " (95% MC interval)")
            axes[0][-1].legend(loc="lower right", fontsize=7)
            fig.suptitle(f"{self.kind.capitalize()} by simulation ({self.sims} studies per n, seed {self.seed})",
                         fontsize=10)
            if label:
                fig.text(0.995, 0.995, label, ha="right", va="top", fontsize=7, color=PALETTE["grey"])
            fig.tight_layout()
        return fig

    def to_dict(self, target: float = 0.8) -> dict[str, Any]:
        """JSON-serialisable summary (no raw rows)."""
        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(df.to_json(orient="records"))

        return {"kind": self.kind, "sims": self.sims, "seed": self.seed, "analyses": list(self.analyses),
                "design": self.design.to_dict(), "settings": _settings_dict(self.settings),
                "prior": None if self.prior is None else {"source": self.prior.source, "n_draws": len(self.prior.draws)},
                "target": target, "summary": records(self.summary()), "smallest_n": records(self.smallest_n(target)),
                "closed_form": records(self.closed_form()),
                "failed_fits": int((~self.raw["ok"].astype(bool)).sum()) if len(self.raw) else 0}

    def save(self, out: str | os.PathLike, target: float = 0.8) -> dict[str, Path]:
        """Write ``raw.parquet``, ``summary.csv``, ``smallest_n.csv``, ``power_table.csv``,
        ``power_curve.png/.svg`` and ``result.json`` to ``out`` (each atomically)."""
        from analysis.common.io import atomic_write_bytes, atomic_write_json, atomic_write_text
        from analysis.figures.plots import save_figure

        out = Path(out)
        buf = io.BytesIO()
        self.raw.to_parquet(buf, index=False)
        paths = {"raw": atomic_write_bytes(out / "raw.parquet", buf.getvalue()),
                 "summary": atomic_write_text(out / "summary.csv", self.summary().to_csv(index=False)),
                 "smallest_n": atomic_write_text(out / "smallest_n.csv", self.smallest_n(target).to_csv(index=False)),
                 "table": atomic_write_text(out / "power_table.csv", self.table().to_csv(index=False)),
                 "result": atomic_write_json(out / "result.json", self.to_dict(target))}
        if len(self.raw):
            for fmt, p in save_figure(self.figure(target), out, "power_curve").items():
                paths[f"figure_{fmt}"] = p
        return paths
