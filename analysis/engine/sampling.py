r"""Sampling a rajak model's posterior: the one call every Bayesian analysis goes through.

:func:`sample` fits a model with nutpie (default) or PyMC's NUTS and returns a
:class:`~analysis.engine.results.FitResult`: the posterior as an ``xarray.DataTree`` (arviz 1.x
layout: ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data``), the sampler settings,
timings and :class:`~analysis.engine.diagnostics.Diagnostics`.

Models
------
``sample`` accepts a :class:`models.trajectory.TrajectoryModel` (or any rajak model) or a bare
``pymc.Model``. rajak models carry

- ``pymc_model``: the PyMC model;
- ``data_values``: ``{container name: array}``, passed straight to nutpie's
  ``compiled.with_data(**data_values)`` before every fit;
- ``structure_key``: models with equal keys (and equal parameter shapes) share one compiled
  model in this process (``None``: compile per model object);
- ``trace_vars``, ``diagnostic_vars``, ``postprocess(dt, *, seed)`` and ``describe()``.

Compilation is :mod:`analysis.engine.compile`'s job, diagnostics :mod:`analysis.engine.diagnostics`'.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import xarray as xr

from analysis.engine.compile import as_fittable, compile_fittable, initial_point_for, load_data
from analysis.engine.diagnostics import Diagnostics, Thresholds, diagnose, diagnose_public
from analysis.engine.results import FitResult, load_fit

__all__ = ["Diagnostics", "FitResult", "Sampler", "Thresholds", "diagnose", "diagnose_public", "load_fit",
           "sample"]

Sampler = Literal["nutpie", "pymc"]


def _relabel_coords(dt: xr.DataTree, pm_model: Any) -> xr.DataTree:
    """Coordinates as in the current model (nutpie keeps the ones seen at compile time)."""
    for group in ("posterior", "sample_stats"):
        if group not in dt.children:
            continue
        ds = dt[group].to_dataset()
        new = {
            dim: list(values)
            for dim, values in pm_model.coords.items()
            if values is not None and dim in ds.dims and ds.sizes[dim] == len(values)
        }
        if new:
            dt[group] = ds.assign_coords(new)
    return dt


def _new_seed() -> int:
    return int(np.random.SeedSequence().generate_state(1)[0])


def sample(
    model: Any,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    sampler: Sampler = "nutpie",
    target_accept: float = 0.9,
    cores: int = 2,
    low_rank: bool = False,
    *,
    thresholds: Thresholds | None = None,
    progress: bool = False,
    fast_compile: bool | None = None,
) -> FitResult:
    """Sample a model's posterior and judge convergence.

    Parameters
    ----------
    model : TrajectoryModel, BambiLMM or pymc.Model
        Fitted with its current data (``model.data_values``).
    draws, tune, chains : int
        Per chain; the tuning draws are discarded.
    seed : int, optional
        Same seed, same data, same settings => identical draws. ``None`` draws a fresh seed,
        recorded in ``settings["seed"]``.
    sampler : {"nutpie", "pymc"}
        nutpie (``nutpie.sample`` on a cached compiled model) or PyMC's own NUTS
        (``pm.sample(nuts_sampler="pymc")``; slower, no compile cache).
    target_accept : float
        Step-size adaptation target.
    cores : int
        Chains run in parallel: threads for nutpie; for PyMC, ``cores > 1`` forks processes,
        which Python warns against in a process that already runs threads (e.g. after a
        nutpie fit), so prefer ``cores=1`` there.
    low_rank : bool
        nutpie's low-rank modified mass matrix (``adaptation="low_rank"``); nutpie only.
    thresholds : Thresholds, optional
        Pass marks of the verdict.
    progress : bool
        Show the sampler's progress bar.
    fast_compile : bool, optional
        See :func:`compile_model`.

    Returns
    -------
    FitResult
    """
    if sampler not in ("nutpie", "pymc"):
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {sampler!r}")
    if low_rank and sampler != "nutpie":
        raise ValueError("low_rank is a nutpie option")
    if min(draws, tune, chains, cores) < 1:
        raise ValueError("draws, tune, chains and cores must be positive")
    t_start = time.perf_counter()
    fm = as_fittable(model)
    pm_model = fm.pymc_model
    seed = _new_seed() if seed is None else int(seed)
    trace_vars = None if fm.trace_vars is None else list(fm.trace_vars)

    if sampler == "nutpie":
        from analysis.engine.lazy_imports import import_nutpie, warm_imports

        nutpie = import_nutpie()
        from pymc.backends.arviz import patch_nutpie_idata

        compiled, info, owner = compile_fittable(fm, fast_compile)
        compiled = load_data(compiled, fm)
        compiled = initial_point_for(compiled, pm_model, owner)
        warm_imports()  # xarray's lazy imports, while nutpie samples without the GIL
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"adaptation": "low_rank"} if low_rank else {}
        dt = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            target_accept=target_accept,
            save_warmup=False,
            progress_bar=progress,
            **kwargs,
        )
        t_sample = time.perf_counter() - t0
        patch_nutpie_idata(dt, pm_model, sampling_time=t_sample)
        dt = _relabel_coords(dt, pm_model)
        versions = {"nutpie": nutpie.__version__}
    else:
        import pymc as pm

        info = {"cache_hit": False, "compile_path": "pymc", "compile_time": 0.0}
        t0 = time.perf_counter()
        with pm_model:
            dt = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=seed,
                nuts_sampler="pymc",
                target_accept=target_accept,
                var_names=trace_vars,
                progressbar=progress,
                quiet=not progress,
                compute_convergence_checks=False,
            )
        t_sample = time.perf_counter() - t0  # includes PyMC's own compilation
        versions = {}
    t_post = time.perf_counter()
    dt = fm.postprocess(dt, seed=seed)
    diagnostics = diagnose(dt, fm.diagnostic_vars, thresholds)
    t_post = time.perf_counter() - t_post

    import pymc

    settings = {
        "sampler": sampler,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "cores": cores,
        "seed": seed,
        "target_accept": target_accept,
        "low_rank": low_rank,
        "compile_path": info["compile_path"],
        "compile_cache_hit": info["cache_hit"],
        "compile_helper": info.get("compile_helper", "off"),
        "versions": {"pymc": pymc.__version__, **versions},
        "model": fm.describe(),
    }
    total = time.perf_counter() - t_start
    timings = {"compile": info["compile_time"], "sample": t_sample, "postprocess": t_post, "total": total}
    return FitResult(
        posterior=dt, settings=settings, wall_time=total, diagnostics=diagnostics, timings=timings
    )
