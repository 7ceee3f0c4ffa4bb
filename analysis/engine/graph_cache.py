"""Disk cache of the rewritten PyTensor functions nutpie samples from.

With numba's and PyTensor's caches warm, most of a fresh process's compile time (about 3 s of
3.5 s for the trajectory LMM) is PyTensor's graph rewriting of the model's log density, its
gradient and the "expand" function that computes the traced variables. The rewritten functions
pickle (PyTensor pickles a compiled function together with its rewritten graph and re-links it,
from numba's disk cache, when unpickled), so this module stores the output of nutpie's
``_make_functions`` under a key computed from the model's *unrewritten* graph and reloads it in
later processes (about 0.4 s).

Key
---
SHA-256 over

- a canonical serialisation of the graph of ``model.logp()`` and of the traced value variables:
  every Apply node in topological order with its Op's class, properties and ``str``, input and
  output types, and for constants their dtype, shape and bytes; data containers (``pm.Data``)
  enter by name and type only, never by value, so a model with new data of the same structure
  reuses the entry;
- the names of the free and traced variables, the lengths of every dim of the parameters;
- the versions of Python, PyTensor, PyMC, nutpie and numba.

A code change that alters a model changes its graph and therefore the key; stale entries are
never matched (and can be deleted with the cache directory).

The pickles hold the data the model had when the entry was written (PyTensor pickles the values
of shared variables); :func:`analysis.engine.sampling.sample` always replaces them with the current data
and checks every container before sampling, so a stale value cannot reach a fit. Entries live in
``models.runtime.cache_dir() / "nutpie-graphs"``, written atomically. ``RAJAK_GRAPH_CACHE=0``
turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["graph_key", "rewritten_functions"]

_SUBDIR = "nutpie-graphs"
_FORMAT = 1  # bump when the pickled tuple changes


def _enabled() -> bool:
    return os.environ.get("RAJAK_GRAPH_CACHE", "1") != "0"


def _traced(pm_model: Any, var_names: list[str] | None) -> list[Any]:
    free = {pm_model.rvs_to_values[v].name for v in pm_model.free_RVs}
    names = None if var_names is None else set(var_names)
    return [v for v in pm_model.unobserved_value_vars if names is None or v.name in names or v.name in free]


def graph_key(pm_model: Any, var_names: list[str] | None, shape_signature: tuple = ()) -> str:
    """Content key of ``pm_model``'s sampling functions (see the module docstring).

    Parameters
    ----------
    pm_model : pymc.Model
    var_names : list of str or None
        The variables nutpie traces (``None``: all).
    shape_signature : tuple
        Lengths of the parameters' dims (``analysis.engine.compile.shape_signature``).

    Returns
    -------
    str
        64 hex digits.
    """
    import numba

    from analysis.engine.lazy_imports import import_nutpie

    nutpie = import_nutpie()
    import pymc
    import pytensor
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import toposort

    outputs = [pm_model.logp(), *_traced(pm_model, var_names)]
    h = hashlib.sha256()
    h.update(f"rajak-graph-cache {_FORMAT}".encode())
    for name, version in (
        ("python", platform.python_version()),
        ("pytensor", pytensor.__version__),
        ("pymc", pymc.__version__),
        ("nutpie", nutpie.__version__),
        ("numba", numba.__version__),
    ):
        h.update(f"{name}={version};".encode())
    h.update(repr([pm_model.rvs_to_values[v].name for v in pm_model.free_RVs]).encode())
    h.update(repr(None if var_names is None else list(var_names)).encode())
    h.update(repr(tuple(shape_signature)).encode())
    h.update(repr(bool(pm_model.check_bounds)).encode())

    ids: dict[Any, int] = {}

    def var_id(v: Any) -> int:
        if v not in ids:
            ids[v] = len(ids)
            if v.owner is None:
                h.update(f"root{ids[v]}:{type(v).__name__}:{v.type}:{v.name}".encode())
                if isinstance(v, Constant):
                    data = np.asarray(v.data)
                    h.update(f"{data.dtype}{data.shape}".encode())
                    h.update(data.tobytes() if data.dtype != object else repr(v.data).encode())
        return ids[v]

    for node in toposort(outputs):
        op = node.op
        props = op._props_dict() if hasattr(op, "_props_dict") else {}
        inputs = [var_id(i) for i in node.inputs]
        h.update(
            f"{type(op).__module__}.{type(op).__qualname__}|{sorted((k, repr(v)) for k, v in props.items())}"
            f"|{op}|{inputs}".encode()
        )
        for out in node.outputs:
            h.update(f"out{var_id(out)}:{out.type}".encode())
    for out in outputs:
        h.update(f"result{var_id(out)}".encode())
    return h.hexdigest()


def _entry(key: str) -> Path:
    from models.runtime import cache_dir

    return cache_dir() / _SUBDIR / f"{key}.pkl"


def rewritten_functions(
    pm_model: Any,
    initial_point_fn: Any,
    var_names: list[str] | None,
    shape_signature: tuple = (),
) -> tuple[tuple, str]:
    """nutpie's ``_make_functions(pm_model, mode="NUMBA", ...)``, from the disk cache when possible.

    Parameters
    ----------
    pm_model : pymc.Model
    initial_point_fn : callable
        ``pymc.initial_point.make_initial_point_fn(...)`` for ``pm_model`` (never cached: it is
        rebuilt for the current model).
    var_names : list of str or None
    shape_signature : tuple

    Returns
    -------
    functions : tuple
        ``(n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info, reparameterised)``
        as nutpie returns them.
    status : {"hit", "miss", "off", "unpicklable"}
        ``"unpicklable"``: the functions were built but cannot be stored (models holding an
        ``OpFromGraph``, such as ``pm.LKJCorr``); every process rewrites them.
    """
    import nutpie.compile_pymc as ncp

    # private nutpie API (the why: the rewritten functions nutpie's _make_functions returns are what
    # this cache stores, skipping PyTensor's graph rewriting in a fresh process; the initial-point
    # wrappers are rebuilt around them as nutpie does; guarded by test_upstream_private_apis.py)
    wrapped_init = ncp._wrap_with_lock(initial_point_fn)
    if not _enabled():
        status, path = "off", None
    else:
        status, path = "miss", _entry(graph_key(pm_model, var_names, shape_signature))
        if path.is_file():
            try:
                with open(path, "rb") as fh:
                    n_dim, n_expanded, logp_fn, expand_fn, shape_info, reparam = pickle.load(fh)
                names, _, shapes = shape_info
                k = len(pm_model.free_RVs)
                init = ncp._rv_dict_to_flat_array_wrapper(wrapped_init, names=names[:k], shapes=shapes[:k])
                return (n_dim, n_expanded, logp_fn, expand_fn, init, shape_info, reparam), "hit"
            except Exception as err:  # noqa: BLE001 - a damaged entry: rebuild and overwrite it
                warnings.warn(f"ignoring unreadable graph-cache entry {path.name} ({err!r})", stacklevel=3)
    out = ncp._make_functions(
        pm_model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=wrapped_init,
        var_names=var_names,
    )
    if path is not None:
        n_dim, n_expanded, logp_fn, expand_fn, _, shape_info, reparam = out
        try:
            payload = pickle.dumps((n_dim, n_expanded, logp_fn, expand_fn, shape_info, reparam), protocol=5)
        except Exception:  # noqa: BLE001 - e.g. OpFromGraph (pm.LKJCorr) does not pickle: not cached
            status = "unpicklable"
        else:
            from analysis.common.io import atomic_write_bytes

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, payload)
    return out, status
