r"""Fitting and convergence diagnostics for rajak's Bayesian models.

:func:`sample` fits a model with nutpie (default) or PyMC's NUTS and returns a :class:`FitResult`:
the posterior as an ``xarray.DataTree`` (arviz 1.x layout: ``posterior``, ``sample_stats``,
``observed_data``, ``constant_data``), the sampler settings, timings and :class:`Diagnostics`.

Models
------
``sample`` accepts a :class:`models.trajectory.TrajectoryModel`, a
:class:`models.trajectory.BambiLMM` or a bare ``pymc.Model``. The first two carry

- ``pymc_model``: the PyMC model;
- ``data_values``: ``{container name: array}``, passed straight to nutpie's
  ``compiled.with_data(**data_values)`` before every fit;
- ``structure_key``: models with equal keys (and equal parameter shapes) share one compiled
  model in this process (``None``: compile per model object);
- ``trace_vars``, ``diagnostic_vars``, ``postprocess(dt, *, seed)`` and ``describe()``.

Compilation
-----------
nutpie's ``compile_pymc_model`` builds a numba C callback around PyTensor's logp+gradient
function. PyTensor caches the inner function on disk, but nutpie's wrapper closes over the data
arrays (numba: "dynamic globals") and is recompiled in every process, ``cache=True`` or not:
6-12 s for the trajectory model. :func:`compile_model` builds the same
:class:`nutpie.compile_pymc.CompiledPyMCModel` with a wrapper generated as source that reads the
data only through nutpie's ``user_data`` pointers and is registered with PyTensor's numba cache
locator (``models.runtime.cache_dir()/pytensor/numba``), and the rewritten PyTensor functions
themselves are kept on disk by :mod:`analysis.graph_cache` (keyed on the unrewritten graph), so a
warm compile in a fresh process skips PyTensor's graph rewriting too (trajectory LMM: 3.1 s without
the graph cache, 2.1 s with it, most of the rest loading numba's cached machine code). Draws are
bit-identical to nutpie's own compilation and with or without the graph cache (tested).
A cold compile (empty cache) is ~13 s for the trajectory LMM, nearly all numba/LLVM; it was ~18 s
before three changes: the 0-d ``Alloc`` override (:mod:`models.numba_overrides`), the wrappers
copying element by element instead of ``out[...] = grad`` (both avoid numba's broadcasting
assignment, whose error-message formatting alone took ~2.5 s to compile), and the expand callback
compiled meanwhile by a forked child (:mod:`analysis.compile_ahead`). Set ``RAJAK_NUTPIE_CACHE=0`` (or
pass ``fast_compile=False``) to use ``nutpie.compile_pymc_model`` unchanged; any failure of the
cached path falls back to it with a warning.

A compiled nutpie model has a fixed number of parameters, so a model whose parameters grow with
the data (latent patient effects) needs a new compilation for a new number of patients: the
in-process cache key contains the lengths of every dim of the free and deterministic variables.
Before each fit the compiled model's data are checked against the PyMC model's containers, so a
stale compiled model (the failure mode of an incomplete ``with_data`` update: it silently refits
the old data) raises instead.

Diagnostics
-----------
Rank-normalised split R-hat, bulk and tail ESS (``arviz.rhat``, ``arviz.ess``) over the model's
``diagnostic_vars``, divergences, and E-BFMI per chain

.. math:: \mathrm{E\text{-}BFMI} = \frac{\sum_{n>1} (E_n - E_{n-1})^2}{\sum_n (E_n - \bar E)^2}.

The verdict passes when R-hat <= 1.01, bulk and tail ESS >= 400, no divergences and every
chain's E-BFMI >= 0.3 (:class:`Thresholds`); failing checks are named in
:attr:`Diagnostics.failures`. nutpie prints nothing about a bad fit: read the verdict.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import models  # noqa: F401  (compile caches before pytensor is imported)
import numpy as np
import xarray as xr

__all__ = [
    "Diagnostics",
    "FitResult",
    "Thresholds",
    "clear_compile_cache",
    "compile_model",
    "diagnose",
    "diagnose_public",
    "load_fit",
    "sample",
]

Sampler = Literal["nutpie", "pymc"]
_FIT_FORMAT = 1
_MAX_CACHED = 8


# ---------------------------------------------------------------------------------------------
# diagnostics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Pass marks of the convergence verdict."""

    rhat_max: float = 1.01
    ess_bulk_min: float = 400.0
    ess_tail_min: float = 400.0
    divergences_max: int = 0
    ebfmi_min: float = 0.3


@dataclass(frozen=True)
class Diagnostics:
    """Convergence summary of one fit.

    Attributes
    ----------
    max_rhat, min_ess_bulk, min_ess_tail : float
        Worst values over every element of the diagnostic variables (NaN when not computable).
    worst_rhat, worst_ess_bulk, worst_ess_tail : str
        Which element, e.g. ``"b[intercept]"``.
    n_divergences : int
    ebfmi : tuple of float
        E-BFMI per chain.
    n_max_treedepth : int
        Draws whose trajectory hit the maximum tree depth (reported, not judged).
    n_draws, n_chains : int
    var_names : tuple of str
        The variables judged.
    passed : bool
    failures : tuple of str
        One line per failing check, starting with its name (``rhat``, ``ess_bulk``,
        ``ess_tail``, ``divergences``, ``ebfmi``).
    thresholds : Thresholds
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    worst_rhat: str
    worst_ess_bulk: str
    worst_ess_tail: str
    n_divergences: int
    ebfmi: tuple[float, ...]
    n_max_treedepth: int
    n_draws: int
    n_chains: int
    var_names: tuple[str, ...]
    passed: bool
    failures: tuple[str, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Names of the failing checks."""
        return tuple(f.split(":", 1)[0] for f in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnostics:
        d = dict(d)
        d["thresholds"] = Thresholds(**d["thresholds"])
        for key in ("ebfmi", "var_names", "failures"):
            d[key] = tuple(d[key])
        return cls(**d)

    def __str__(self) -> str:
        head = "PASS" if self.passed else "FAIL (" + ", ".join(self.failed_checks) + ")"
        return (
            f"{head}: max R-hat {self.max_rhat:.3f} ({self.worst_rhat}), "
            f"min bulk ESS {self.min_ess_bulk:.0f} ({self.worst_ess_bulk}), "
            f"min tail ESS {self.min_ess_tail:.0f} ({self.worst_ess_tail}), "
            f"{self.n_divergences} divergences, E-BFMI "
            + ", ".join(f"{e:.2f}" for e in self.ebfmi)
        )


def _worst(stat: xr.Dataset, mode: Literal["max", "min"]) -> tuple[float, str]:
    """Worst element over all variables of a per-element statistic; NaN wins."""
    best_val, best_label = (-np.inf if mode == "max" else np.inf), ""
    for name, da in stat.data_vars.items():
        vals = np.asarray(da.values, dtype=float)
        flat = vals.reshape(-1)
        if flat.size == 0:
            continue
        if np.isnan(flat).any():
            pos = int(np.flatnonzero(np.isnan(flat))[0])
            val = np.nan
        else:
            pos = int(np.argmax(flat) if mode == "max" else np.argmin(flat))
            val = float(flat[pos])
        label = name
        if vals.ndim:
            idx = np.unravel_index(pos, vals.shape)
            parts = [
                str(da[d].values[i]) if d in da.coords else str(i) for d, i in zip(da.dims, idx)
            ]
            label = f"{name}[{', '.join(parts)}]"
        if np.isnan(val):
            return np.nan, label
        if (mode == "max" and val > best_val) or (mode == "min" and val < best_val):
            best_val, best_label = val, label
    return float(best_val), best_label


def _ebfmi(energy: np.ndarray) -> np.ndarray:
    """E-BFMI per chain from an energy array of shape (chain, draw)."""
    energy = np.asarray(energy, dtype=float)
    num = np.sum(np.diff(energy, axis=1) ** 2, axis=1)
    den = np.sum((energy - energy.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def diagnose(
    dt: xr.DataTree, var_names: list[str] | None = None, thresholds: Thresholds | None = None
) -> Diagnostics:
    """Convergence diagnostics and verdict for a posterior ``DataTree``.

    The statistics are ``arviz_stats``' rank-normalised split R-hat and bulk/tail ESS, computed
    with every element ranked in one vectorised call (:func:`analysis.refit.diagnose_arrays`;
    ~0.35 s less per fit of the trajectory LMM than ``arviz_stats.rhat``/``ess`` element by element,
    identical values, tested against :func:`diagnose_public`).

    Parameters
    ----------
    dt : DataTree
        With ``posterior`` and ``sample_stats`` (``diverging``, ``energy``) groups.
    var_names : list of str, optional
        Variables to judge; default every posterior variable. Names not in the posterior are
        ignored.
    thresholds : Thresholds, optional

    Returns
    -------
    Diagnostics
    """
    from analysis.refit import _element_labels, diagnose_arrays

    post = dt["posterior"].to_dataset()
    names = [v for v in (var_names or list(post.data_vars)) if v in post.data_vars]
    if not names:
        raise ValueError("none of the diagnostic variables is in the posterior")
    stats = dt["sample_stats"].to_dataset() if "sample_stats" in dt.children else xr.Dataset()
    if "energy" not in stats or "diverging" not in stats or any(
            post[v].dims[:2] != ("chain", "draw") for v in names):
        return diagnose_public(dt, names, thresholds)
    draws, labels = {}, {}
    for v in names:
        da = post[v]
        draws[v] = np.asarray(da.values, dtype=float)
        labels[v] = _element_labels(v, da.dims[2:], da.shape[2:],
                                    {d: da[d].values for d in da.dims[2:] if d in da.coords})
    depth_var = next((v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None)
    arrays = {"diverging": stats["diverging"].values, "energy": stats["energy"].values}
    if depth_var:
        arrays["maxdepth_reached"] = stats[depth_var].values
    return diagnose_arrays(draws, arrays, labels, thresholds)


def diagnose_public(
    dt: xr.DataTree, var_names: list[str] | None = None, thresholds: Thresholds | None = None
) -> Diagnostics:
    """:func:`diagnose` through ``arviz_stats``' public ``rhat``/``ess`` on the Dataset (the reference
    the vectorised path is tested against, and the fallback for unusual layouts)."""
    import arviz_stats as az  # the statistics only: the arviz meta-package also imports matplotlib

    thresholds = thresholds if thresholds is not None else Thresholds()
    post = dt["posterior"].to_dataset()
    names = [v for v in (var_names or list(post.data_vars)) if v in post.data_vars]
    if not names:
        raise ValueError("none of the diagnostic variables is in the posterior")
    ds = post[names]
    with warnings.catch_warnings():
        # constant elements give 0/0 inside arviz; they come out as NaN and fail the check
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(ds)
        ess_bulk = az.ess(ds, method="bulk")
        ess_tail = az.ess(ds, method="tail")
    max_rhat, worst_rhat = _worst(rhat, "max")
    min_bulk, worst_bulk = _worst(ess_bulk, "min")
    min_tail, worst_tail = _worst(ess_tail, "min")

    stats = dt["sample_stats"].to_dataset() if "sample_stats" in dt.children else xr.Dataset()
    n_div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    ebfmi = tuple(float(e) for e in _ebfmi(stats["energy"].values)) if "energy" in stats else ()
    depth_var = next(
        (v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None
    )
    n_depth = int(stats[depth_var].sum()) if depth_var else 0

    failures = []
    if not max_rhat <= thresholds.rhat_max:
        failures.append(f"rhat: max {max_rhat:.3f} > {thresholds.rhat_max} ({worst_rhat})")
    if not min_bulk >= thresholds.ess_bulk_min:
        failures.append(
            f"ess_bulk: min {min_bulk:.0f} < {thresholds.ess_bulk_min:.0f} ({worst_bulk})"
        )
    if not min_tail >= thresholds.ess_tail_min:
        failures.append(
            f"ess_tail: min {min_tail:.0f} < {thresholds.ess_tail_min:.0f} ({worst_tail})"
        )
    if n_div > thresholds.divergences_max:
        failures.append(f"divergences: {n_div} > {thresholds.divergences_max}")
    if not ebfmi or not all(e >= thresholds.ebfmi_min for e in ebfmi):
        failures.append(
            "ebfmi: "
            + (", ".join(f"{e:.2f}" for e in ebfmi) if ebfmi else "no energy stats")
            + f" (min {thresholds.ebfmi_min})"
        )
    return Diagnostics(
        max_rhat=max_rhat,
        min_ess_bulk=min_bulk,
        min_ess_tail=min_tail,
        worst_rhat=worst_rhat,
        worst_ess_bulk=worst_bulk,
        worst_ess_tail=worst_tail,
        n_divergences=n_div,
        ebfmi=ebfmi,
        n_max_treedepth=n_depth,
        n_draws=int(post.sizes.get("draw", 0)),
        n_chains=int(post.sizes.get("chain", 0)),
        var_names=tuple(names),
        passed=not failures,
        failures=tuple(failures),
        thresholds=thresholds,
    )


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    return str(obj)


@dataclass
class FitResult:
    """A posterior with the settings that produced it and its diagnostics.

    Attributes
    ----------
    posterior : xarray.DataTree
        ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data`` groups.
    settings : dict
        Sampler, draws, tune, chains, cores, seed, target_accept, low_rank, library versions,
        compile path and the model's description.
    wall_time : float
        Seconds spent in :func:`sample` (compile + sampling + post-processing + diagnostics).
    diagnostics : Diagnostics
    timings : dict of str to float
        ``compile``, ``sample`` and ``total`` seconds.
    """

    posterior: xr.DataTree
    settings: dict[str, Any]
    wall_time: float
    diagnostics: Diagnostics
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.diagnostics.passed

    def summary(self, var_names: list[str] | None = None, ci_prob: float = 0.95) -> Any:
        """``arviz.summary`` (equal-tailed ``ci_prob`` interval) of the diagnostic variables."""
        import arviz as az

        names = var_names or list(self.diagnostics.var_names)
        return az.summary(self.posterior, var_names=names, ci_prob=ci_prob, ci_kind="eti")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fit atomically as netCDF-4 (h5netcdf); settings and diagnostics go to root attrs.

        Object-typed sampler statistics (nutpie's ``divergence_message``) are stored as strings.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        dt = self.posterior.copy()
        for group in list(dt.children):
            ds = dt[group].to_dataset()
            obj = [n for n, v in ds.data_vars.items() if v.dtype == object]
            if obj:
                as_str = np.vectorize(lambda x: "" if x is None else str(x), otypes=[str])
                ds = ds.assign({n: ds[n].copy(data=as_str(ds[n].values)) for n in obj})
                dt[group] = ds
        dt.attrs = {
            **dt.attrs,
            "rajak_fit_format": _FIT_FORMAT,
            "rajak_settings": json.dumps(_jsonable(self.settings)),
            "rajak_diagnostics": json.dumps(_jsonable(self.diagnostics.to_dict())),
            "rajak_timings": json.dumps(_jsonable(self.timings)),
            "rajak_wall_time": float(self.wall_time),
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            dt.to_netcdf(tmp, engine="h5netcdf")  # written beside the target, then renamed: atomic
            os.replace(tmp, path)
        except ImportError as err:  # h5netcdf >= 1.8 needs h5py installed separately
            raise ImportError(f"saving fits needs h5py next to h5netcdf: {err}") from err
        finally:
            tmp.unlink(missing_ok=True)
        return path


def load_fit(path: str | os.PathLike) -> FitResult:
    """Read a fit written by :meth:`FitResult.save`."""
    dt = xr.open_datatree(Path(path), engine="h5netcdf")
    try:
        dt = dt.load()
    finally:
        dt.close()
    attrs = dict(dt.attrs)
    if "rajak_settings" not in attrs:
        raise ValueError(f"{path} is not a rajak fit (no rajak_settings attribute)")
    for key in [k for k in attrs if k.startswith("rajak_")]:
        dt.attrs.pop(key, None)
    return FitResult(
        posterior=dt,
        settings=json.loads(attrs["rajak_settings"]),
        wall_time=float(attrs["rajak_wall_time"]),
        diagnostics=Diagnostics.from_dict(json.loads(attrs["rajak_diagnostics"])),
        timings=json.loads(attrs.get("rajak_timings", "{}")),
    )


# ---------------------------------------------------------------------------------------------
# models and compilation
# ---------------------------------------------------------------------------------------------


@dataclass
class _BareModel:
    """Adapter giving a bare ``pymc.Model`` the attributes :func:`sample` reads."""

    pymc_model: Any
    structure_key: str | None = None
    trace_vars: list[str] | None = None
    diagnostic_vars: list[str] | None = None

    @property
    def data_values(self) -> dict[str, np.ndarray]:
        return {v.name: np.asarray(v.get_value()) for v in self.pymc_model.data_vars}

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        return dt

    def describe(self) -> dict[str, Any]:
        return {"model": "pymc.Model", "free_RVs": [v.name for v in self.pymc_model.free_RVs]}


def _as_fittable(model: Any) -> Any:
    if hasattr(model, "pymc_model"):
        return model
    import pymc as pm

    if isinstance(model, pm.Model):
        return _BareModel(model)
    raise TypeError(f"cannot fit a {type(model).__name__}: pass a pymc.Model or a rajak model")


def _dim_length(pm_model: Any, dim: str) -> int:
    length = pm_model.dim_lengths[dim]
    return int(length.get_value() if hasattr(length, "get_value") else length.eval())


def _shape_signature(pm_model: Any) -> tuple[tuple[str, int], ...]:
    """Lengths of every dim used by a free or deterministic variable."""
    dims: set[str] = set()
    for var in [*pm_model.free_RVs, *pm_model.deterministics]:
        dims.update(d for d in (pm_model.named_vars_to_dims.get(var.name) or ()) if d)
    return tuple(sorted((d, _dim_length(pm_model, d)) for d in dims))


@dataclass
class _CacheEntry:
    compiled: Any
    path: str
    owner: weakref.ref
    keepalive: Any = None  # the owning model, for entries keyed by object id


_CACHE: OrderedDict[tuple, _CacheEntry] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_INIT_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def clear_compile_cache() -> None:
    """Forget every compiled model held by this process (the on-disk caches stay)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cached_compile(pm_model: Any, var_names: list[str] | None) -> tuple[Any, str, str]:
    """nutpie's ``CompiledPyMCModel`` with a disk-cacheable numba wrapper (see module doc).

    Returns the compiled model, the graph-cache status (:mod:`analysis.graph_cache`) and the
    status of the child that compiled the expand callback (:mod:`analysis.compile_ahead`:
    ``"off"`` when none was started, else ``"done"``, ``"failed"`` or ``"killed"``).
    """
    import numba
    import nutpie
    import nutpie.compile_pymc as ncp
    from pymc.initial_point import make_initial_point_fn
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    init = make_initial_point_fn(
        model=pm_model,
        overrides=None,
        default_strategy="support_point",
        jitter_rvs=set(pm_model.free_RVs),
        return_transformed=True,
    )
    from analysis.compile_ahead import compile_cfunc_in_child
    from analysis.graph_cache import rewritten_functions

    functions, graph_status = rewritten_functions(pm_model, init, var_names, _shape_signature(pm_model))
    (n_dim, n_expanded, logp_pt, expand_pt, init_fn, shape_info, reparam) = functions
    inner = {"logp": logp_pt.vm.jit_fn, "expand": expand_pt.vm.jit_fn}
    inner_keys = {k: CACHED_SRC_FUNCTIONS.get(f.py_func) for k, f in inner.items()}
    if None in inner_keys.values():
        raise RuntimeError("PyTensor could not cache the model's numba function")

    shared_data: dict[str, np.ndarray] = {}
    shared_var_keys: dict[Any, str] = {}
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        if var in shared_var_keys:
            continue
        key = f"s{len(shared_var_keys)}"  # deterministic: the key is baked into the callback
        arr = np.array(var.get_value(), order="C", copy=True)
        arr.flags.writeable = False
        shared_data[key], shared_var_keys[var] = arr, key
    user_data = ncp.make_user_data(shared_var_keys, shared_data)

    def unpack(fn_pt: Any) -> tuple[str, str]:
        lines, args = [], ""
        for j, var in enumerate(fn_pt.get_shared()):
            k = shared_var_keys[var]
            arr = shared_data[k]
            shape = "".join(f"sh['shape']['{k}'][{i}], " for i in range(arr.ndim))
            lines.append(
                f"        a{j} = numba.carray(address_as_void_pointer(sh['data']['{k}'][()]), "
                f"(sh['size']['{k}'][()],), np.{arr.dtype.name}).reshape(({shape}))"
            )
            args += f", a{j}"
        return "\n".join(lines), args

    lines, args = unpack(logp_pt)
    logp_src = f"""
def rajak_logp_cfunc(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        sh = numba.carray(user_data_, (), record_dtype)['shared']
{lines}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        logp = numba.carray(logp_, ())
        logp_val, grad = inner(x{args})
        if grad.shape[0] != {n_dim}:
            return 1
        logp[()] = logp_val
        finite = True
        for i in range({n_dim}):  # not out[...] = grad (see models.numba_overrides)
            g = grad[i]
            out[i] = g
            finite = finite and np.isfinite(g)
        if not finite:
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""
    lines, args = unpack(expand_pt)
    expand_src = f"""
def rajak_expand_cfunc(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        sh = numba.carray(user_data_, (), record_dtype)['shared']
{lines}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_expanded},))
        (values,) = inner(x{args})
        if values.shape[0] != {n_expanded}:
            return -2
        for i in range({n_expanded}):
            out[i] = values[i]
    except Exception:
        return -2
    return 0
"""
    t, dptr = numba.types, numba.types.CPointer(numba.types.double)
    sigs = {  # nutpie's C signatures for the logp and expand callbacks
        "logp": t.int64(t.uint64, dptr, dptr, dptr, t.voidptr),
        "expand": t.int64(t.uint64, t.uint64, dptr, dptr, t.voidptr),
    }
    fns = {}
    for kind, src in (("logp", logp_src), ("expand", expand_src)):
        key = hashlib.sha256(
            "\n".join(
                [
                    src,
                    inner_keys[kind],
                    str(user_data.dtype.descr),
                    nutpie.__version__,
                    numba.__version__,
                ]
            ).encode()
        ).hexdigest()
        fns[kind] = compile_numba_function_src(
            src,
            f"rajak_{kind}_cfunc",
            global_env={
                # the numba environment is rebuilt from this module name when loading from disk
                "__name__": "nutpie.compile_pymc",
                "numba": numba,
                "np": np,
                "record_dtype": user_data.dtype,
                "address_as_void_pointer": ncp.address_as_void_pointer,
                "inner": inner[kind],
            },
            cache_key=key,
        )
    # empty cache: a forked child compiles the expand callback into the disk cache meanwhile
    helper = compile_cfunc_in_child(fns["expand"], sigs["expand"])
    try:
        cfuncs = {"logp": numba.cfunc(sigs["logp"], cache=True)(fns["logp"])}
    except BaseException:
        if helper is not None:
            helper.finish(wait_s=0.0)
        raise
    helper_status = "off" if helper is None else helper.finish()
    cfuncs["expand"] = numba.cfunc(sigs["expand"], cache=True)(fns["expand"])

    dims, coords = ncp._prepare_dims_and_coords(pm_model, shape_info, reparam)
    compiled = ncp.CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=cfuncs["logp"],
        compiled_expand_func=cfuncs["expand"],
        initial_point_func=init_fn,
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
        reparameterized_names=reparam,
    )
    return compiled, graph_status, helper_status


def compile_model(model: Any, *, fast_compile: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """Compile (or fetch from the in-process cache) the nutpie model for ``model``.

    Parameters
    ----------
    model : TrajectoryModel, BambiLMM or pymc.Model
    fast_compile : bool, optional
        Use the disk-cacheable wrapper (default unless ``RAJAK_NUTPIE_CACHE=0``).

    Returns
    -------
    compiled : nutpie.compile_pymc.CompiledPyMCModel
        Not yet loaded with ``model``'s current data (:func:`sample` does that).
    info : dict
        ``cache_hit`` (bool), ``compile_path`` ("rajak-cached-cfunc" or "nutpie"),
        ``graph_cache`` ("hit", "miss" or "off": :mod:`analysis.graph_cache`) and
        ``compile_helper`` ("off", "done", "failed" or "killed": :mod:`analysis.compile_ahead`),
        both only on a compilation, and ``compile_time`` (s).
    """
    compiled, info, _ = _compile(_as_fittable(model), fast_compile)
    return compiled, info


def _compile(fm: Any, fast_compile: bool | None) -> tuple[Any, dict[str, Any], Any]:
    """:func:`compile_model`, also returning the model the compiled object was built from."""
    from analysis._imports import import_nutpie

    nutpie = import_nutpie()

    from models.numba_overrides import install_numba_overrides

    install_numba_overrides()
    pm_model = fm.pymc_model
    if fast_compile is None:
        fast_compile = os.environ.get("RAJAK_NUTPIE_CACHE", "1") != "0"
    trace_vars = None if fm.trace_vars is None else list(fm.trace_vars)
    ident = fm.structure_key if fm.structure_key is not None else f"id:{id(pm_model)}"
    key = (ident, _shape_signature(pm_model), tuple(trace_vars or ()), bool(fast_compile))
    t0 = time.perf_counter()
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None and fm.structure_key is None and entry.owner() is not pm_model:
            entry = None  # id reused by a new object
        if entry is not None:
            _CACHE.move_to_end(key)
            info = {"cache_hit": True, "compile_path": entry.path, "compile_time": 0.0}
            return entry.compiled, info, entry.owner()
    compiled, path, graph_status, helper_status = None, "nutpie", "off", "off"
    if fast_compile:
        try:
            compiled, graph_status, helper_status = _cached_compile(pm_model, trace_vars)
            path = "rajak-cached-cfunc"
        except Exception as err:  # noqa: BLE001 - any failure: use nutpie's own compile
            warnings.warn(
                f"cached nutpie compile failed ({err!r}); using nutpie.compile_pymc_model",
                stacklevel=3,
            )
    if compiled is None:
        compiled = nutpie.compile_pymc_model(pm_model, var_names=trace_vars)
    entry = _CacheEntry(
        compiled=compiled,
        path=path,
        owner=weakref.ref(pm_model),
        keepalive=pm_model if fm.structure_key is None else None,
    )
    with _CACHE_LOCK:
        _CACHE[key] = entry
        while len(_CACHE) > _MAX_CACHED:
            _CACHE.popitem(last=False)
    info = {
        "cache_hit": False,
        "compile_path": path,
        "graph_cache": graph_status,
        "compile_helper": helper_status,
        "compile_time": time.perf_counter() - t0,
    }
    return compiled, info, pm_model


def _current_shared_value(pm_model: Any, name: str) -> np.ndarray | None:
    var = pm_model.named_vars.get(name)
    if var is None:
        var = pm_model.dim_lengths.get(name)
    if var is None or not hasattr(var, "get_value"):
        return None
    return np.asarray(var.get_value())


def _load_data(compiled: Any, fm: Any) -> Any:
    """Put ``fm``'s current data into ``compiled`` and check that nothing is stale."""
    pm_model = fm.pymc_model
    updates = dict(fm.data_values)
    if isinstance(fm, _BareModel):  # bare models may hold containers the graph never uses
        known = {v.name for v in compiled.shared_var_keys}
        updates = {k: v for k, v in updates.items() if k in known}
    if updates:
        try:
            compiled = compiled.with_data(**updates)
        except KeyError as err:
            raise KeyError(
                f"the compiled model has no data container {err}; its containers are "
                f"{sorted(v.name for v in compiled.shared_var_keys)}"
            ) from err
    for var, key in compiled.shared_var_keys.items():
        current = _current_shared_value(pm_model, var.name)
        if current is None:
            raise RuntimeError(f"cannot check data {var.name!r} of the compiled model")
        held = compiled.shared_data[key]
        nan_ok = held.dtype.kind in "fc"
        if held.shape != current.shape or not np.array_equal(
            held, current.astype(held.dtype), equal_nan=nan_ok
        ):
            raise RuntimeError(
                f"the compiled model holds stale data for {var.name!r}; include it in data_values"
            )
    return compiled


def _initial_point_for(compiled: Any, pm_model: Any, owner: Any) -> Any:
    """Use ``pm_model``'s own initial-point function (identical draws whatever compiled first)."""
    if owner is pm_model:
        return compiled
    fn = _INIT_FNS.get(pm_model)
    if fn is None:
        import nutpie.compile_pymc as ncp
        from pymc.initial_point import make_initial_point_fn

        names, _, shapes = compiled.shape_info
        n_free = len(pm_model.free_RVs)
        init = make_initial_point_fn(
            model=pm_model,
            overrides=None,
            default_strategy="support_point",
            jitter_rvs=set(pm_model.free_RVs),
            return_transformed=True,
        )
        fn = ncp._rv_dict_to_flat_array_wrapper(
            ncp._wrap_with_lock(init), names=names[:n_free], shapes=shapes[:n_free]
        )
        _INIT_FNS[pm_model] = fn
    return dataclasses.replace(compiled, initial_point_func=fn)


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
    fm = _as_fittable(model)
    pm_model = fm.pymc_model
    seed = _new_seed() if seed is None else int(seed)
    trace_vars = None if fm.trace_vars is None else list(fm.trace_vars)

    if sampler == "nutpie":
        from analysis._imports import import_nutpie, warm_imports

        nutpie = import_nutpie()
        from pymc.backends.arviz import patch_nutpie_idata

        compiled, info, owner = _compile(fm, fast_compile)
        compiled = _load_data(compiled, fm)
        compiled = _initial_point_for(compiled, pm_model, owner)
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
    dt = fm.postprocess(dt, seed=seed)
    diagnostics = diagnose(dt, fm.diagnostic_vars, thresholds)

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
    timings = {"compile": info["compile_time"], "sample": t_sample, "total": total}
    return FitResult(
        posterior=dt, settings=settings, wall_time=total, diagnostics=diagnostics, timings=timings
    )

