"""Every private name of nutpie, PyMC, PyTensor, bambi, numba and arviz that the engine relies on, checked
for existence and shape, so that an upgrade that changes one fails here, loudly and by name, rather
than as a wrong draw or a traceback in a user's run.

Each engine module also has behavioural tests (draws identical with and without its trick); this file
is the inventory. ``tests/test_architecture.py`` checks that no module outside ``analysis/engine``
uses such names.
"""

from __future__ import annotations

import dataclasses
import inspect

import models  # noqa: F401  (compile caches before pytensor is imported)


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_nutpie_compile_pymc_internals():
    """analysis.engine.compile builds nutpie's CompiledPyMCModel around its own disk-cacheable callbacks,
    analysis.engine.graph_cache stores nutpie's rewritten functions."""
    import nutpie.compile_pymc as ncp

    for name in ("_prepare_dims_and_coords", "_rv_dict_to_flat_array_wrapper", "_wrap_with_lock",
                 "_make_functions", "make_user_data", "address_as_void_pointer", "CompiledPyMCModel"):
        assert hasattr(ncp, name), f"nutpie.compile_pymc.{name} is gone"
    fields = {f.name for f in dataclasses.fields(ncp.CompiledPyMCModel)}
    needed = {"_n_dim", "dims", "_coords", "_shapes", "compiled_logp_func", "compiled_expand_func",
              "initial_point_func", "shared_data", "shared_var_keys", "user_data", "n_expanded", "shape_info",
              "logp_func", "expand_func", "reparameterized_names"}
    assert needed <= fields, f"CompiledPyMCModel lost fields {sorted(needed - fields)}"
    assert _params(ncp._make_functions)[:1] == ["model"]
    for kw in ("mode", "compute_grad", "join_expanded", "pymc_initial_point_fn", "var_names"):
        assert kw in _params(ncp._make_functions), f"nutpie.compile_pymc._make_functions lost {kw!r}"
    assert {"names", "shapes"} <= set(_params(ncp._rv_dict_to_flat_array_wrapper))
    assert callable(getattr(ncp.CompiledPyMCModel, "with_data", None))


def test_pytensor_numba_cache_internals():
    """analysis.engine.compile reads PyTensor's source cache keys and compiles its callbacks through
    PyTensor's numba source cache; analysis.engine.numba_overrides registers an Alloc override."""
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src
    from pytensor.link.numba.dispatch import basic as numba_basic
    from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key
    from pytensor.tensor.basic import Alloc

    assert hasattr(CACHED_SRC_FUNCTIONS, "get")
    for kw in ("global_env", "cache_key", "write_to_disk"):
        assert kw in _params(compile_numba_function_src), f"compile_numba_function_src lost {kw!r}"
    assert callable(numba_basic.numba_njit)
    assert callable(numba_funcify_and_cache_key.dispatch(Alloc))


def test_numba_cache_file_save():
    """analysis.engine.numba_overrides wraps numba's IndexDataCacheFile.save in a file lock."""
    from numba.core import caching

    assert callable(getattr(caching.IndexDataCacheFile, "save", None))
    assert _params(caching.IndexDataCacheFile.save)[:3] == ["self", "key", "data"]


def test_pymc_seed_derivation():
    """analysis.engine.prior_predictive derives per-call seeds as pymc.sample_prior_predictive does."""
    import numpy as np
    from pymc.util import _get_seeds_per_chain

    a = _get_seeds_per_chain(np.random.default_rng(3), 1)
    b = _get_seeds_per_chain(np.random.default_rng(3), 1)
    assert len(a) == 1 and a[0] == b[0]


def test_pymc_nutpie_patch_is_public():
    """analysis.engine.sampling relies on pymc's (public) converter of nutpie's output."""
    from pymc.backends.arviz import patch_nutpie_idata

    assert "sampling_time" in _params(patch_nutpie_idata)


def test_arviz_stand_in_names_exist_in_arviz_base():
    """analysis.engine.lazy_imports answers these names from arviz_base while nutpie imports."""
    import arviz_base

    from analysis.engine.lazy_imports import _ARVIZ_BASE_NAMES

    assert _ARVIZ_BASE_NAMES and all(callable(getattr(arviz_base, n, None)) for n in _ARVIZ_BASE_NAMES)


def test_bambi_clean_results():
    """analysis.engine.bambi_results finishes a bambi posterior with the backend's _clean_results,
    called with keywords omit_offsets and include_response_params, as bambi.Model.fit does."""
    from bambi.backend.pymc import PyMCModel

    fn = getattr(PyMCModel, "_clean_results", None)
    assert callable(fn), "bambi.backend.pymc.PyMCModel._clean_results is gone"
    params = _params(fn)
    for kw in ("idata", "omit_offsets", "include_response_params"):
        assert kw in params, f"PyMCModel._clean_results lost {kw!r}"
    # still what bambi's own sampling path runs after sampling (so calling it is equivalent to Model.fit)
    assert "self._clean_results(" in inspect.getsource(PyMCModel), "bambi no longer calls _clean_results"
