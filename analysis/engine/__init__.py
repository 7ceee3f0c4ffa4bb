"""The sampling engine: compile a PyMC model for nutpie once per process and from a disk cache
(``compile``), sample it (``sampling``), judge convergence (``diagnostics``), keep the result
(``results``), refit a compiled model to new data (``refit``), and leave the process quickly
(``process_exit``).

It is the ONLY room that touches private APIs of nutpie, PyMC, PyTensor, numba, bambi or arviz; each
such use carries a comment saying why, and ``tests/analysis/engine/test_upstream_private_apis.py``
fails, by name, when an upgrade changes one. The public face is small: :func:`sample`,
:class:`FitResult`/:func:`load_fit`, :class:`Diagnostics`/:func:`diagnose`, :func:`compile_model`,
:class:`Refitter`; names are imported lazily (PEP 562).

What each private-API speed trick saves
---------------------------------------
Measured with ``tests/benchmarks/bench_engine_tricks.py`` on this project's 2-core machine
(2026-12-07): the median of 2 fresh console-script processes of ``rajak fit --model lmm --site spine``
(4 chains x 1000 draws, empty and warm compile cache) and ``rajak run`` (empty cache, all cached) on
the embedded twin, each trick switched off by its variable. No switch changes a number: the seeded
fit's estimands are bit-identical in every row.

==========================  ==========  ==========  =========  ===========  =================================
switched off                fit cold    fit warm    run cold   run cached   the trick (module)
==========================  ==========  ==========  =========  ===========  =================================
nothing (all on)            12.0 s      2.9 s       62.8 s     9.2 s
``RAJAK_NUTPIE_CACHE=0``    19.8 s      10.3 s      69.2 s     9.0 s        disk-cacheable nutpie callbacks
                                                                            (``compile``; also turns off the
                                                                            next two)
``RAJAK_GRAPH_CACHE=0``     13.6 s      4.1 s       68.6 s     9.6 s        nutpie's rewritten functions on
                                                                            disk (``graph_cache``)
``RAJAK_PARALLEL_COMPILE=0``  14.7 s    2.9 s       64.9 s     (noisy)      expand callback compiled by a
                                                                            forked child (``compile_ahead``;
                                                                            off inside ``rajak run``)
``RAJAK_NUMBA_OVERRIDES=0``  16.9 s*    3.4 s*      68.1 s*    8.5 s*       numba code for 0-d ``Alloc``
                                                                            (``numba_overrides``)
``RAJAK_LAZY_IMPORTS=0``    14.2 s*     3.9 s*      66.6 s*    7.9 s*       nutpie without arviz's plotting
                                                                            stack (``lazy_imports``)
``RAJAK_FAST_EXIT=0``       15.0 s*     4.2 s*      68.1 s*    8.9 s*       no final deallocation
                                                                            (``process_exit``)
==========================  ==========  ==========  =========  ===========  =================================

Rows marked * were measured in a second series whose all-on baseline was 13.3 s / 3.4 s / 64.4 s /
8.0 s (the same code run through a wrapper while another process was busy); compare them with that.
Every trick pays on the path it is for: the cached callbacks save 7-8 s on every fit (cold and
warm), the graph cache 1.2-1.6 s per fresh process, the compile helper 2.7 s on a cold fit, the
``Alloc`` override 3.6 s of numba compilation on a cold fit, the lazy nutpie import about 0.5-1 s
and the fast exit about 0.8-1.7 s per command. The cached ``rajak run`` spends its time outside the
compile path, where no trick applies. ``pm.LKJCholeskyCov`` is not used by the joint model and the
Bayesian MMRM (``models/lkj.py``, public PyMC/PyTensor only): its ``OpFromGraph`` does not pickle
into the graph cache (joint model, twin, 4 x 1000: 102 s -> 87 s cold, 15.2 s -> 10.1 s warm).
"""

from __future__ import annotations

from analysis.common.lazy_exports import lazy_exports


_EXPORTS = {
    "clean_bambi_posterior": "analysis.engine.bambi_results",
    "clear_compile_cache": "analysis.engine.compile",
    "compile_model": "analysis.engine.compile",
    "Thresholds": "analysis.engine.diagnostics",
    "Diagnostics": "analysis.engine.diagnostics",
    "diagnose": "analysis.engine.diagnostics",
    "diagnose_arrays": "analysis.engine.diagnostics",
    "prior_predictive_sampler": "analysis.engine.prior_predictive",
    "fast_exit": "analysis.engine.process_exit",
    "Refit": "analysis.engine.refit",
    "Refitter": "analysis.engine.refit",
    "compile_for_refit": "analysis.engine.refit",
    "FitResult": "analysis.engine.results",
    "load_fit": "analysis.engine.results",
    "Sampler": "analysis.engine.sampling",
    "sample": "analysis.engine.sampling",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
