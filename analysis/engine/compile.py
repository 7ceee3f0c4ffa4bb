r"""Compiling rajak's Bayesian models for nutpie, once per process and from a disk cache.

Used by :func:`analysis.engine.sampling.sample` and :class:`analysis.engine.refit.Refitter`;
:func:`as_fittable` wraps a bare ``pymc.Model`` in the attributes they read (:class:`BareModel`).

Compilation
-----------
nutpie's ``compile_pymc_model`` builds a numba C callback around PyTensor's logp+gradient
function. PyTensor caches the inner function on disk, but nutpie's wrapper closes over the data
arrays (numba: "dynamic globals") and is recompiled in every process, ``cache=True`` or not:
6-12 s for the trajectory model. :func:`compile_model` builds the same
:class:`nutpie.compile_pymc.CompiledPyMCModel` with a wrapper generated as source that reads the
data only through nutpie's ``user_data`` pointers and is registered with PyTensor's numba cache
locator (``models.runtime.cache_dir()/pytensor/numba``), and the rewritten PyTensor functions
themselves are kept on disk by :mod:`analysis.engine.graph_cache` (keyed on the unrewritten graph), so a
warm compile in a fresh process skips PyTensor's graph rewriting too (trajectory LMM: 3.1 s without
the graph cache, 2.1 s with it, most of the rest loading numba's cached machine code). Draws are
bit-identical to nutpie's own compilation and with or without the graph cache (tested).
A cold compile (empty cache) is ~13 s for the trajectory LMM, nearly all numba/LLVM; it was ~18 s
before three changes: the 0-d ``Alloc`` override (:mod:`analysis.engine.numba_overrides`), the wrappers
copying element by element instead of ``out[...] = grad`` (both avoid numba's broadcasting
assignment, whose error-message formatting alone took ~2.5 s to compile), and the expand callback
compiled meanwhile by a forked child (:mod:`analysis.engine.compile_ahead`). Set ``RAJAK_NUTPIE_CACHE=0`` (or
pass ``fast_compile=False``) to use ``nutpie.compile_pymc_model`` unchanged; any failure of the
cached path falls back to it with a warning.

A compiled nutpie model has a fixed number of parameters, so a model whose parameters grow with
the data (latent patient effects) needs a new compilation for a new number of patients: the
in-process cache key contains the lengths of every dim of the free and deterministic variables.
Before each fit the compiled model's data are checked against the PyMC model's containers, so a
stale compiled model (the failure mode of an incomplete ``with_data`` update: it silently refits
the old data) raises instead.

"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import models  # noqa: F401  (compile caches before pytensor is imported)
import numpy as np

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["BareModel", "as_fittable", "clear_compile_cache", "compile_fittable", "compile_model",
           "initial_point_for", "load_data", "shape_signature"]

#: Compiled models kept per process (least recently used dropped first).
MAX_CACHED = 8

@dataclass
class BareModel:
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


def as_fittable(model: Any) -> Any:
    if hasattr(model, "pymc_model"):
        return model
    import pymc as pm

    if isinstance(model, pm.Model):
        return BareModel(model)
    raise TypeError(f"cannot fit a {type(model).__name__}: pass a pymc.Model or a rajak model")


def _dim_length(pm_model: Any, dim: str) -> int:
    length = pm_model.dim_lengths[dim]
    return int(length.get_value() if hasattr(length, "get_value") else length.eval())


def shape_signature(pm_model: Any) -> tuple[tuple[str, int], ...]:
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

    Returns the compiled model, the graph-cache status (:mod:`analysis.engine.graph_cache`) and the
    status of the child that compiled the expand callback (:mod:`analysis.engine.compile_ahead`:
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
    from analysis.engine.compile_ahead import compile_cfunc_in_child
    from analysis.engine.graph_cache import rewritten_functions

    functions, graph_status = rewritten_functions(pm_model, init, var_names, shape_signature(pm_model))
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
        for i in range({n_dim}):  # not out[...] = grad (see analysis.engine.numba_overrides)
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

    # private nutpie API (the why: nutpie's public compile_pymc_model recompiles its numba wrapper in
    # every process; these are the pieces it assembles its CompiledPyMCModel from, fed here with the
    # disk-cacheable callbacks above; tests/analysis/engine/test_upstream_private_apis.py guards them)
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
        ``graph_cache`` ("hit", "miss" or "off": :mod:`analysis.engine.graph_cache`) and
        ``compile_helper`` ("off", "done", "failed" or "killed": :mod:`analysis.engine.compile_ahead`),
        both only on a compilation, and ``compile_time`` (s).
    """
    compiled, info, _ = compile_fittable(as_fittable(model), fast_compile)
    return compiled, info


def compile_fittable(fm: Any, fast_compile: bool | None) -> tuple[Any, dict[str, Any], Any]:
    """:func:`compile_model`, also returning the model the compiled object was built from."""
    from analysis.engine.lazy_imports import import_nutpie

    nutpie = import_nutpie()

    from analysis.engine.numba_overrides import install_numba_overrides

    install_numba_overrides()
    pm_model = fm.pymc_model
    if fast_compile is None:
        fast_compile = os.environ.get("RAJAK_NUTPIE_CACHE", "1") != "0"
    trace_vars = None if fm.trace_vars is None else list(fm.trace_vars)
    ident = fm.structure_key if fm.structure_key is not None else f"id:{id(pm_model)}"
    key = (ident, shape_signature(pm_model), tuple(trace_vars or ()), bool(fast_compile))
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
        while len(_CACHE) > MAX_CACHED:
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


def load_data(compiled: Any, fm: Any) -> Any:
    """Put ``fm``'s current data into ``compiled`` and check that nothing is stale."""
    pm_model = fm.pymc_model
    updates = dict(fm.data_values)
    if isinstance(fm, BareModel):  # bare models may hold containers the graph never uses
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


def initial_point_for(compiled: Any, pm_model: Any, owner: Any) -> Any:
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
        # private nutpie API: nutpie's own wrapping of an initial-point function, so that a model
        # sharing a compiled object starts from its own initial points (identical draws)
        fn = ncp._rv_dict_to_flat_array_wrapper(
            ncp._wrap_with_lock(init), names=names[:n_free], shapes=shapes[:n_free]
        )
        _INIT_FNS[pm_model] = fn
    return dataclasses.replace(compiled, initial_point_func=fn)
