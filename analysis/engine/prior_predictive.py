"""A forward (prior predictive) sampler compiled once per model and reseeded per call.

Prior predictive checks draw under several prior sets that enter the model as data; compiling
``pymc.sample_prior_predictive``'s function once and reseeding it saves one compilation per set.
It uses one private PyMC name (``pymc.util._get_seeds_per_chain``), so it lives in the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["prior_predictive_sampler"]


def prior_predictive_sampler(pm_model: Any, names: Sequence[str]) -> Callable[..., dict[str, np.ndarray]]:
    """Forward sampler of ``names`` from the prior, compiled once for the model.

    What ``pymc.sample_prior_predictive`` does (``compile_forward_sampling_function`` with no
    variables in the trace, then one call per draw), except that the compiled function is kept:
    prior sets enter as data, so calling ``draw(n, seed)`` after ``set_data(priors=...)`` samples
    under the new set without compiling again. ``seed`` reseeds the function's random generators
    (``pymc.pytensorf.reseed_rngs``) before the draws, so a set's draws do not depend on which sets
    were drawn before it.
    """
    from pymc.pytensorf import reseed_rngs
    from pymc.sampling.forward import compile_forward_sampling_function
    # private: pymc turns a seed or Generator into per-chain seeds this way in sample_prior_predictive;
    # using the same function keeps the draws of one set what pymc would draw for that seed
    # (tests/analysis/engine/test_prior_predictive.py fails if pymc renames or changes it)
    from pymc.util import _get_seeds_per_chain
    from pytensor.tensor.random.variable import RandomGeneratorSharedVariable

    from analysis.engine.numba_overrides import install_numba_overrides

    install_numba_overrides()
    names = list(names)
    fn, _ = compile_forward_sampling_function([pm_model[n] for n in names], vars_in_trace=[],
                                              basic_rvs=pm_model.basic_RVs, model=pm_model,
                                              random_seed=False, allow_input_downcast=True,
                                              accept_inplace=True)
    rngs = [v for v in fn.get_shared() if isinstance(v, RandomGeneratorSharedVariable)]

    def draw(n: int, seed: Any) -> dict[str, np.ndarray]:
        (s,) = _get_seeds_per_chain(seed, 1)
        reseed_rngs(rngs, s)
        values = list(zip(*(fn() for _ in range(n))))
        return {k: np.stack(v) for k, v in zip(names, values)}

    return draw
