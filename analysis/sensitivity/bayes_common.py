"""Shared plumbing of the Bayesian sensitivity analyses (latent status, selection, priors).

* :func:`check_sites` and :func:`sampler_settings`: the argument checks and sampler settings that
  :mod:`~analysis.sensitivity.latent_status` and :mod:`~analysis.sensitivity.selection` share.
* :class:`FitCache` / :func:`cached_sample`: route a fit through the content-addressed fit cache of
  :func:`analysis.bayes.fit.fit_bayes` (same directory, same key function
  :func:`analysis.bayes.fit.fit_cache_key`, same file format :meth:`FitResult.save`), so a rerun
  with unchanged model, priors, data and settings reads the draws instead of sampling again.
* :func:`diagnostics_rows` / :func:`diagnostics_text`: every fit's convergence verdict, for the
  result table and, loudly, for the report text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FitCache",
    "cached_sample",
    "caching_sampler",
    "check_sites",
    "diagnostics_rows",
    "diagnostics_text",
    "sampler_settings",
]


def check_sites(sites: Sequence[str]) -> list[str]:
    """The sites as a list; at least one is required."""
    if not sites:
        raise ValueError("sites must name at least one site")
    return list(sites)


def sampler_settings(draws: int, tune: int, chains: int, cores: int) -> dict[str, int]:
    """Keyword arguments of :func:`analysis.engine.sampling.sample` shared by every fit of an analysis."""
    return {"draws": int(draws), "tune": int(tune), "chains": int(chains), "cores": int(cores)}


@dataclass
class FitCache:
    """Where fits are cached (``None``: no cache) and what happened: ``hits``/``misses`` count
    reads and new samples, ``paths`` the files used.

    Parameters
    ----------
    cache_dir : Path or None
        The fit cache directory (the pipeline passes ``<output_dir>/.fit-cache``, the directory of
        the main fits).
    """

    cache_dir: Path | None = None
    hits: int = 0
    misses: int = 0
    paths: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """``{"cache_dir", "hits", "misses"}`` for the result's settings."""
        return {"cache_dir": None if self.cache_dir is None else str(self.cache_dir), "hits": self.hits,
                "misses": self.misses}


def cached_sample(model: Any, *, cache: FitCache | None, tag: str, site: str, priors: Any = None,
                  extra: dict[str, Any] | None = None, seed: int, sampler: Any = None, **settings: Any) -> Any:
    """Sample ``model`` with :func:`analysis.engine.sampling.sample`, or read the fit from the cache.

    Parameters
    ----------
    model : model object
        Anything :func:`analysis.engine.sampling.sample` fits; its ``data_values`` (all data and
        data-backed priors) and ``structure_key`` enter the content address.
    cache : FitCache or None
        ``None`` or ``FitCache(None)``: always sample.
    tag : str
        Names the analysis and model (e.g. ``"sens-selection"``); part of the key and the file name.
    site : str
    priors : object, optional
        Prior settings that are not in ``model.data_values`` (hashed by value).
    extra : dict, optional
        Any other setting that changes the fit (e.g. the psi prior), hashed into the key.
    seed : int
    sampler : callable, optional
        The sampling function (default :func:`analysis.engine.sampling.sample`).
    **settings
        ``draws``, ``tune``, ``chains``, ``cores`` (and any other :func:`sample` keyword).

    Returns
    -------
    FitResult
    """
    from analysis.bayes.fit import fit_cache_key
    from analysis.engine import sampling as fitting
    
    sample = sampler or fitting.sample
    load_fit = fitting.load_fit
    if cache is None or cache.cache_dir is None:
        if cache is not None:
            cache.misses += 1
        return sample(model, seed=seed, **settings)
    key_settings = {**{k: v for k, v in settings.items() if k != "cores"}, "seed": seed, "extra": extra or {}}
    n_rows = len(next(iter((getattr(model, "data_values", None) or {"": []}).values())))
    key = fit_cache_key(tag, site, priors, range(n_rows), model, tag, key_settings)
    path = Path(cache.cache_dir) / f"{tag}_{site}_{key}.nc"
    cache.paths.append(str(path))
    if path.is_file():
        cache.hits += 1
        return load_fit(path)
    cache.misses += 1
    fit = sample(model, seed=seed, **settings)
    fit.save(path)
    return fit


def caching_sampler(cache: FitCache, tag: str, site: str) -> Callable[..., Any]:
    """A drop-in for :func:`analysis.engine.sampling.sample` that goes through :func:`cached_sample`.

    For code that takes a sampling function (``analysis.bayes.prior_checks.prior_checks(sample=...)``,
    which swaps prior sets in as data, so the priors are part of ``model.data_values`` and of the
    key). Unseeded fits are not reproducible and are never cached.
    """
    from analysis.engine import sampling as fitting

    def sample(model: Any, draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int | None = None,
               **kw: Any) -> Any:
        if seed is None:
            return fitting.sample(model, draws=draws, tune=tune, chains=chains, seed=seed, **kw)
        return cached_sample(model, cache=cache, tag=tag, site=site, seed=seed, sampler=fitting.sample,
                             draws=draws, tune=tune, chains=chains, **kw)

    return sample


def diagnostics_rows(fits: dict[str, Any], site_of: dict[str, str]) -> list[dict[str, Any]]:
    """One ``section="diagnostics"`` row per fit: worst R-hat, smallest bulk/tail ESS, divergences
    and ``failed`` (True when any convergence check failed)."""
    rows = []
    for name, fit in fits.items():
        d = fit.diagnostics
        rows.append({"section": "diagnostics", "site": site_of[name], "item": "convergence", "model": name,
                     "r_hat": d.max_rhat, "ess_bulk": d.min_ess_bulk, "ess_tail": d.min_ess_tail,
                     "divergences": d.n_divergences, "failed": not fit.passed,
                     "failed_checks": ", ".join(d.failed_checks)})
    return rows


def diagnostics_text(fits: dict[str, Any]) -> str:
    """A report paragraph: FAILED fits first and in capitals, then the passing ones."""
    failed = {k: f for k, f in fits.items() if not f.passed}
    parts = []
    if failed:
        parts.append("CONVERGENCE FAILED for " + "; ".join(
            f"{k} ({', '.join(f.diagnostics.failed_checks)}): {f.diagnostics}" for k, f in failed.items())
            + ". Do not read the estimates of these fits as results.")
    ok = {k: f for k, f in fits.items() if f.passed}
    if ok:
        parts.append("Converged: " + "; ".join(f"{k}: {f.diagnostics}" for k, f in ok.items()))
    return " ".join(parts)
