r"""Inference methods for ICE-strategy imputation, each with its own pooling rule (as rbmi's ``method_*``).

Every method fits the imputation model (:mod:`analysis.sensitivity.ice.imputation_model`) by REML
on the values :math:`F_i` of the patients, imputes (:mod:`analysis.sensitivity.ice.imputation`),
applies the analysis model to each completed dataset
(:mod:`analysis.sensitivity.ice.analysis_models`) and pools
(:mod:`analysis.sensitivity.ice.pooling`):

========================  ===============================================  =======================  ====================
method                    parameter samples                                imputation               pooling
========================  ===============================================  =======================  ====================
``condmean_jackknife``    the data, then each patient left out (n + 1)     conditional mean         jackknife SE, normal
``condmean_bootstrap``    the data, then B resamples within groups         conditional mean         bootstrap SE (normal)
                                                                                                    and percentile CI
``approx_bayes``          B resamples within groups (all patients imputed) one random draw each     Rubin's rules
``bayes``                 M posterior draws of the MMRM (MCMC)             one random draw each     Rubin's rules
``bmlmi``                 B resamples, D random imputations of each        D random draws           von Hippel & Bartlett
========================  ===============================================  =======================  ====================

For the conditional-mean and bmlmi methods the resampled patients are imputed and analysed (rbmi's
``use_samp_ids``); for approximate Bayes and Bayes every patient of the data is. Conditional-mean
imputation is deterministic, so its jackknife result is exactly reproducible (Wolbers et al. 2022);
its standard error is frequentist-valid for reference-based strategies, where Rubin's variance
targets the MAR model's and over-covers (Seaman, White & Leacy 2014; Bartlett 2023).

Several strategy sets that fit the same values with the same design share every fit (a jackknife
of five strategies refits the MMRM n times, not 5n), and random imputations use common random
numbers across strategy sets.

References
----------
Wolbers M, Noci A, Delmar P, Gower-Page C, Yiu S, Bartlett JW (2022). Standard and reference-based
conditional mean imputation. *Pharm Stat* 21:1246-1257. von Hippel PT, Bartlett JW (2021).
Maximum likelihood multiple imputation: faster imputations and consistent standard errors without
posterior draws. *Stat Sci* 36:400-420.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from analysis.frequentist.reml import single_threaded_blas
from analysis.sensitivity.ice.imputation import impute
from analysis.sensitivity.ice.imputation_model import design
from analysis.sensitivity.ice.patients import IcePatients
from analysis.sensitivity.ice.pooling import (
    Pooled,
    pool_bmlmi,
    pool_bootstrap,
    pool_jackknife,
    pool_rubin,
)
from analysis.sensitivity.ice.reml_wide import WideReml
from analysis.sensitivity.imputation_draws import MAX_REDRAWS
from analysis.sensitivity.mmrm_imputation import site_seed
from analysis.study.applicability import NotEstimable

__all__ = ["METHODS", "MethodResult", "MethodSettings", "run_method"]

METHODS = ("condmean_jackknife", "condmean_bootstrap", "approx_bayes", "bayes", "bmlmi")

AnalysisFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict]


@dataclass(frozen=True)
class MethodSettings:
    """Sizes and seed of a method.

    Attributes
    ----------
    n_samples : int
        Bootstrap resamples B (``condmean_bootstrap``, ``approx_bayes``, ``bmlmi``) or posterior
        draws M (``bayes``).
    D : int
        Random imputations per resample (``bmlmi``).
    seed : int
    level : float
        Confidence level.
    imputation_model : {"rbmi", "rajak"}
    chains, tune : int
        MCMC settings of ``bayes``.
    """

    n_samples: int = 200
    D: int = 4
    seed: int = 0
    level: float = 0.95
    imputation_model: str = "rbmi"
    chains: int = 2
    tune: int = 500

    def __post_init__(self) -> None:
        if int(self.n_samples) < 2:
            raise ValueError(f"n_samples must be at least 2 (resamples or draws), got {self.n_samples}")
        if int(self.D) < 2:
            raise ValueError(f"D must be at least 2 imputations per resample, got {self.D}")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")


@dataclass
class MethodResult:
    """One method's pooled estimates for each strategy set.

    Attributes
    ----------
    pooled : dict
        ``{label: {estimand key: Pooled}}`` (``condmean_bootstrap`` pools twice, under the keys
        ``"<key>|normal"`` and ``"<key>|percentile"``).
    draws : dict
        ``{label: {estimand key: ndarray}}``: the per-sample estimates (first the full data for
        the conditional-mean methods), so users can compute their own summaries.
    diagnostics : dict
        The Bayesian fit's R-hat, ESS and divergences (``bayes``), the number of refits.
    """

    method: str
    pooled: dict[str, dict[str, Pooled]]
    draws: dict[str, dict[str, np.ndarray]]
    diagnostics: dict = field(default_factory=dict)


def _seed(settings: MethodSettings, site: str, method: str) -> np.random.SeedSequence:
    """The stream of one site and method: the site's (:func:`~analysis.sensitivity.mmrm_imputation.site_seed`,
    independent of the other sites analysed) split by the method's name."""
    return np.random.SeedSequence([*site_seed(settings.seed, site).entropy, zlib.crc32(method.encode())])


def _resample(rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
    """Patients drawn with replacement within each group (rbmi's strata)."""
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(group == c), size=int((group == c).sum()))
                                   for c in np.unique(group)]))


class _FitGroup:
    """Strategy sets that share the imputation model's fits (same values, same design)."""

    def __init__(self, sets: list[IcePatients], model: str) -> None:
        self.sets = sets
        p0 = sets[0]
        self.x_own = design(p0, model)
        self.x_ref = design(p0, model, group=0)  # the reference is the design's first level
        mask = p0.fit_mask
        y = np.where(mask, p0.y, np.nan)
        for c in range(self.x_own.shape[2]):
            if not np.any(self.x_own[:, :, c][mask]):
                raise NotEstimable(f"{p0.data.site}: no value to estimate the imputation model's term "
                                   f"{c + 1} (e.g. a treatment-policy group without BMD observed after its ICE, "
                                   "or a visit without data)")
        self.site = p0.data.site
        try:
            self.reml = WideReml(self.x_own, y, mask)
        except (ValueError, np.linalg.LinAlgError) as err:
            raise NotEstimable(f"{self.site}: the imputation MMRM cannot be fitted: {err}") from None
        self.full = self._checked(lambda: self.reml.fit(), "")

    def _checked(self, fit, what: str):
        """A fit that converged, else :class:`NotEstimable` (rbmi counts a fit that did not converge as
        failed: a bootstrap resample is redrawn, a jackknife sample stops the analysis)."""
        try:
            f = fit()
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:
            raise NotEstimable(f"{self.site}: the imputation MMRM cannot be fitted{what}: {err}") from None
        if not f.converged:
            raise NotEstimable(f"{self.site}: the imputation MMRM did not converge{what} ({f.n_iter} iterations)")
        return f

    def fit(self, rows: np.ndarray, what: str):
        return self._checked(lambda: self.reml.fit(rows, start=self.full.sigma), f" {what}")


def _fitted_resample(rng: np.random.Generator, group: np.ndarray, groups: list[_FitGroup], b: int) -> tuple:
    """A bootstrap resample and every fit group's fit on it; a resample that cannot be fitted (e.g. no
    retrieved dropout drawn in an arm) is redrawn, up to :data:`MAX_REDRAWS` times. Returns ``(rows,
    [fit, ..., number of redraws])``."""
    for attempt in range(MAX_REDRAWS + 1):
        rows = _resample(rng, group)
        try:
            return rows, [g.fit(rows, f"on bootstrap sample {b}") for g in groups] + [attempt]
        except NotEstimable:
            if attempt == MAX_REDRAWS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _groups(sets: Sequence[IcePatients], model: str) -> list[_FitGroup]:
    keyed: dict[bytes, list[IcePatients]] = {}
    for p in sets:
        key = p.fit_mask.tobytes() + p.off_treatment_months.tobytes()
        keyed.setdefault(key, []).append(p)
    return [_FitGroup(v, model) for v in keyed.values()]


def _condmean_samples(method: str, n: int, n_samples: int) -> tuple[Iterator[np.ndarray | None], int]:
    """The rows of each conditional-mean sample, made one at a time, and how many there are: every
    patient, then each patient left out (jackknife: ``n`` more, each made when it is analysed: the
    ``n`` index arrays at once are ``8 n^2`` bytes, 20 GB at 50,000 patients), or ``n_samples``
    ``None`` (bootstrap: drawn by the caller, redrawn when they cannot be fitted)."""
    everyone = np.arange(n)
    if method == "condmean_jackknife":
        return itertools.chain([everyone], (np.delete(everyone, i) for i in range(n))), n + 1
    return itertools.chain([everyone], itertools.repeat(None, n_samples)), n_samples + 1


def _analyse(analysis: AnalysisFn, p: IcePatients, completed: np.ndarray, rows: np.ndarray) -> dict:
    d = p.data
    cov = np.column_stack([d.baseline[rows], d.covariates[rows]])
    return analysis(completed, d.group[rows], cov)


def _collect(store: dict, label: str, estimates: dict, what: Sequence[str] = ("est",)) -> None:
    per = store.setdefault(label, {})
    for key, e in estimates.items():
        for w in what:
            per.setdefault((key, w), []).append(float(getattr(e, w)))


@single_threaded_blas
def run_method(method: str, sets: Sequence[IcePatients], analysis: AnalysisFn,
               settings: MethodSettings = MethodSettings()) -> MethodResult:
    """Run one inference method on every strategy set (module docstring).

    Parameters
    ----------
    method : one of :data:`METHODS`
    sets : sequence of IcePatients
        The same patients of one site under different strategy sets (distinct ``label``).
    analysis : callable
        ``analysis(completed (n, m), group (n,), covariates (n, q)) -> {key: Estimate}`` (baseline
        is the first covariate column).
    settings : MethodSettings

    Raises
    ------
    NotEstimable
        The imputation model cannot be fitted on the data or on a resample.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    site = sets[0].data.site
    n = sets[0].data.y.shape[0]
    group = sets[0].data.group
    stream = _seed(settings, site, method)
    rng = np.random.default_rng(stream)
    store: dict = {}
    diagnostics: dict = {}
    groups = _groups(sets, settings.imputation_model)
    m = sets[0].n_visits
    if method in ("condmean_jackknife", "condmean_bootstrap"):
        samples, n_samples = _condmean_samples(method, n, int(settings.n_samples))
        failures = 0
        for s, rows in enumerate(samples):
            if rows is None:
                rows, fits = _fitted_resample(rng, group, groups, s)
                failures += fits.pop()
            else:
                fits = [g.full if s == 0 else g.fit(rows, f"without patient {sets[0].data.ids[s - 1]}") for g in groups]
            for g, f in zip(groups, fits):
                for p in g.sets:
                    done = impute(p, f.beta, f.sigma, g.x_own, g.x_ref, rows)
                    _collect(store, p.label, _analyse(analysis, p, done, rows))
        diagnostics["refits"] = (n_samples - 1) * len(groups)
        diagnostics["failed_resamples"] = failures
    elif method in ("approx_bayes", "bmlmi"):
        reps = int(settings.D) if method == "bmlmi" else 1
        failures = 0
        for b in range(int(settings.n_samples)):
            rows, fits = _fitted_resample(rng, group, groups, b + 1)
            failures += fits.pop()
            target = rows if method == "bmlmi" else np.arange(n)
            for _ in range(reps):
                z = rng.standard_normal((target.size, m))
                for g, f in zip(groups, fits):
                    for p in g.sets:
                        done = impute(p, f.beta, f.sigma, g.x_own, g.x_ref, target, z=z)
                        _collect(store, p.label, _analyse(analysis, p, done, target),
                                 ("est", "se", "df") if method == "approx_bayes" else ("est",))
        diagnostics["refits"] = int(settings.n_samples) * len(groups)
        diagnostics["failed_resamples"] = failures
    else:  # bayes
        from analysis.sensitivity.ice.bayes_draws import mmrm_posterior_draws

        posts = []
        for g, child in zip(groups, stream.spawn(len(groups))):  # one MCMC seed per site and fit group
            post = mmrm_posterior_draws(g.x_own, np.where(g.sets[0].fit_mask, g.sets[0].y, np.nan),
                                        g.sets[0].fit_mask, int(settings.n_samples),
                                        int(child.generate_state(1)[0] % (2 ** 31)),
                                        chains=settings.chains, tune=settings.tune)
            posts.append(post)
            diagnostics[", ".join(p.label for p in g.sets)] = dict(post.diagnostics)  # one fit, shared by these sets
        everyone = np.arange(n)
        for s in range(int(settings.n_samples)):
            z = rng.standard_normal((n, m))
            for g, post in zip(groups, posts):
                for p in g.sets:
                    done = impute(p, post.beta[s], post.sigma[s], g.x_own, g.x_ref, everyone, z=z)
                    _collect(store, p.label, _analyse(analysis, p, done, everyone), ("est", "se", "df"))
    return _pool(method, store, settings, diagnostics)


def _pool(method: str, store: dict, settings: MethodSettings, diagnostics: dict) -> MethodResult:
    pooled: dict[str, dict[str, Pooled]] = {}
    draws: dict[str, dict[str, np.ndarray]] = {}
    level = settings.level
    for label, per in store.items():
        keys = list(dict.fromkeys(k for k, _ in per))
        out, dr = {}, {}
        for key in keys:
            est = np.asarray(per[(key, "est")])
            dr[key] = est
            if method == "condmean_jackknife":
                out[key] = pool_jackknife(est, level)
            elif method == "condmean_bootstrap":
                out[f"{key}|normal"] = pool_bootstrap(est, level, "normal")
                out[f"{key}|percentile"] = pool_bootstrap(est, level, "percentile")
            elif method == "bmlmi":
                out[key] = pool_bmlmi(est, int(settings.D), level)
            else:
                se = np.asarray(per[(key, "se")])
                df = np.asarray(per[(key, "df")])
                # the complete-data df: the ANCOVA's are equal in every imputation; the MMRM's
                # Satterthwaite df vary slightly, and the smallest is taken (conservative)
                out[key] = pool_rubin(est, se, float(df.min()), level)
        pooled[label], draws[label] = out, dr
    return MethodResult(method=method, pooled=pooled, draws=draws, diagnostics=diagnostics)
