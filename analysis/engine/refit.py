r"""Compile a Bayesian model once, then refit it to one data set after another without recompiling.

Simulation studies (power, assurance, calibration checks) fit the same model to thousands of data
sets. :func:`analysis.engine.sampling.sample` does everything a single analysis needs (an arviz
``DataTree``, the model's post-processing such as patient effects and pointwise log-likelihood,
diagnostics over every reported variable); a refit in a loop needs only the draws of a few
quantities and a convergence verdict. :class:`Refitter` keeps the compiled nutpie model and, per
refit,

1. swaps the data: a ``DataFrame`` goes through the model's own ``set_data`` (rajak models:
   standardisation, the ``obs``/``patient`` dims), a mapping sets ``pm.Data`` containers by name;
2. fetches the compiled model from :func:`analysis.engine.sampling`'s in-process cache (a hit unless the
   *parameter* shapes changed, e.g. a model with latent patient effects and a new number of
   patients; the marginal trajectory LMM never recompiles) and loads the new data into it,
   checking that none of its data is stale;
3. samples with the same nutpie call as :func:`analysis.engine.sampling.sample` (same initial points,
   same seed handling), so the draws are identical to a fresh ``sample`` on the same data and seed;
4. reads the requested variables straight from nutpie's Arrow trace (no ``DataTree``, no
   post-processing) and judges convergence over them with the statistics and thresholds of
   :func:`analysis.engine.sampling.diagnose` (R-hat, bulk/tail ESS, divergences, E-BFMI).

Every refit returns its own :class:`Refit` (draws, :class:`~analysis.engine.sampling.Diagnostics`,
seed, timings); :attr:`Refitter.history` keeps the last 1,000 diagnostics.

It shares compilation with :func:`~analysis.engine.sampling.sample` through
:mod:`analysis.engine.compile` and the verdict through :mod:`analysis.engine.diagnostics`.

See :class:`Refitter` for an example.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.engine.compile import as_fittable, compile_fittable, initial_point_for, load_data
from analysis.engine.diagnostics import diagnose_arrays, element_labels

__all__ = ["Refit", "Refitter", "compile_for_refit"]

#: Diagnostics kept in :attr:`Refitter.history`.
HISTORY = 1000


@dataclass
class Refit:
    """One refit: draws of the requested variables, their diagnostics and timings.

    Attributes
    ----------
    draws : dict of str to ndarray
        ``(chain, draw, ...)`` arrays, tuning draws excluded.
    dims : dict of str to tuple of str
        Dimension names of each variable after ``chain, draw``.
    diagnostics : analysis.engine.sampling.Diagnostics
        Over the variables in ``draws``.
    seed : int
    seconds : float
        Wall time of the whole refit (data swap, cache look-up, sampling, extraction, diagnostics).
    sample_seconds : float
        Wall time inside ``nutpie.sample``.
    compile_seconds : float
        Zero unless this refit had to compile.
    """

    draws: dict[str, np.ndarray]
    dims: dict[str, tuple[str, ...]]
    diagnostics: Any
    seed: int
    seconds: float
    sample_seconds: float
    compile_seconds: float

    @property
    def compiled(self) -> bool:
        """Whether this refit compiled the model (only the first, unless parameter shapes change)."""
        return self.compile_seconds > 0.0

    def mean(self, name: str) -> np.ndarray:
        """Posterior mean of ``name`` (over chains and draws)."""
        return np.asarray(self.draws[name], dtype=float).mean(axis=(0, 1))


def _arrow_column(batch: Any, name: str) -> np.ndarray:
    """One column of a nutpie Arrow record batch as ``(draw, ...)`` (shape from the field metadata)."""
    import pyarrow as pa

    col = batch.column(name)
    meta = col.field.metadata if hasattr(col, "field") else None
    if meta is None:
        meta = batch.schema.field(name).metadata or {}
    shape = [int(s) for s in meta.get(b"shape", b"").decode().split(",") if s]
    arr = pa.array(col)
    if hasattr(arr, "flatten") and shape:
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), *shape)
    return arr.to_numpy(zero_copy_only=False)


class Refitter:
    """A model compiled once and refitted to new data with nutpie, without recompiling.

    Parameters
    ----------
    model : TrajectoryModel, another rajak model, or pymc.Model
        Anything :func:`analysis.engine.sampling.sample` accepts. It is compiled on construction (or
        fetched from the in-process compile cache) with its current data.
    draws, tune, chains : int
        Per chain; tuning draws are discarded.
    cores : int
        nutpie threads (chains run in parallel). Does not change the draws.
    target_accept : float
    var_names : sequence of str, optional
        Variables to read from each refit and to judge. Default: the model's ``diagnostic_vars``
        that are in the sampler's trace (post-processing quantities such as the marginal model's
        ``u`` are not drawn), or every traced variable.
    thresholds : analysis.engine.sampling.Thresholds, optional
        Pass marks of the verdict.
    fast_compile : bool, optional
        As for :func:`analysis.engine.sampling.compile_model`.

    Attributes
    ----------
    model
        The model whose data are swapped (a bare ``pymc.Model`` is wrapped).
    n_fits, n_compiles : int
        Refits so far; compilations (1 after construction, more only if parameter shapes change).
    history : collections.deque of Diagnostics
        Diagnostics of the last :data:`HISTORY` refits, oldest first.

    Raises
    ------
    ValueError
        Unknown ``var_names`` or invalid sampler settings.

    Examples
    --------
    Refit the marginal trajectory LMM to two simulated studies of different size; the second
    refit reuses the compiled model, and its draws equal those of a fresh
    :func:`analysis.engine.sampling.sample` on the same data and seed:

    >>> from analysis.engine.refit import Refitter
    >>> from analysis.power import power_frame
    >>> from models.simulate import Design, simulate
    >>> from models.trajectory import build_trajectory_model
    >>> d1 = power_frame(simulate(Design(n_patients=46), seed=1).data, "spine")
    >>> d2 = power_frame(simulate(Design(n_patients=90), seed=2).data, "spine")
    >>> r = Refitter(build_trajectory_model(d1, "spine"), draws=500, tune=500, chains=2)
    >>> a, b = r.refit(d1, seed=5), r.refit(d2, seed=5)
    >>> r.n_compiles, b.compiled                                   # doctest: +SKIP
    (1, False)
    >>> b.draws["diff_pct_change_12m"].shape
    (2, 500)
    >>> print(b.diagnostics)                                       # doctest: +SKIP
    PASS: max R-hat 1.003 (b[time:responder]), ...
    """

    def __init__(self, model: Any, *, draws: int = 1000, tune: int = 1000, chains: int = 4, cores: int = 2,
                 target_accept: float = 0.9, var_names: Any = None, thresholds: Any = None,
                 fast_compile: bool | None = None) -> None:
        if min(int(draws), int(tune), int(chains), int(cores)) < 1:
            raise ValueError("draws, tune, chains and cores must be positive")
        if not 0.0 < float(target_accept) < 1.0:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
        self.model = as_fittable(model)
        self.draws, self.tune, self.chains, self.cores = int(draws), int(tune), int(chains), int(cores)
        self.target_accept = float(target_accept)
        self.thresholds = thresholds
        self.fast_compile = fast_compile
        self.n_fits = 0
        self.n_compiles = 0
        self.history: deque = deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        compiled, info, _ = compile_fittable(self.model, fast_compile)
        self.n_compiles += int(not info["cache_hit"])
        self._pending_compile = float(info["compile_time"])
        self.compile_info = info
        traced = self._traced(compiled)
        if var_names is None:
            wanted = self.model.diagnostic_vars
            names = [v for v in (wanted or traced) if v in traced]
            if not names:
                names = list(traced)
        else:
            names = list(var_names)
            unknown = [v for v in names if v not in traced]
            if unknown:
                raise ValueError(f"unknown variable(s) {unknown}; the sampler traces {sorted(traced)}")
        self.var_names: tuple[str, ...] = tuple(names)

    @staticmethod
    def _traced(compiled: Any) -> list[str]:
        names, _, _ = compiled.shape_info
        return list(names)

    @property
    def data_names(self) -> tuple[str, ...]:
        """Names of the model's ``pm.Data`` containers (the keys a mapping may set)."""
        return tuple(self.model.data_values)

    def _set_data(self, data: Any) -> None:
        if data is None:
            return
        if isinstance(data, Mapping):
            known = set(self.data_names)
            unknown = sorted(str(k) for k in data if k not in known)
            if unknown:
                raise ValueError(f"unknown data name(s) {unknown}; the model's data containers are "
                                 f"{sorted(known)}")
            pm_model = self.model.pymc_model
            values = dict(self.model.data_values)
            for name, value in data.items():
                pm_model.set_data(name, value)
                values[name] = np.asarray(pm_model[name].get_value())
            if isinstance(getattr(type(self.model), "data_values", None), property):
                return  # bare models read their containers directly
            self.model.data_values = values
            return
        setter = getattr(self.model, "set_data", None)
        if setter is None:
            raise TypeError(f"a {type(self.model).__name__} takes new data as a mapping of container names "
                            f"{sorted(self.data_names)}, not a {type(data).__name__}")
        setter(data)

    def refit(self, data: Any = None, seed: int = 0) -> Refit:
        """Fit the compiled model to ``data`` with sampler seed ``seed``.

        Parameters
        ----------
        data : DataFrame, mapping or None
            A ``DataFrame`` goes to the model's ``set_data`` (rajak models: the same contract as
            their builder, any number of patients); a mapping sets ``pm.Data`` containers by name
            (:attr:`data_names`); ``None`` refits the current data.
        seed : int
            Same data, settings and seed give identical draws (and the draws of
            ``analysis.engine.sampling.sample(model, ..., seed=seed)``).

        Returns
        -------
        Refit

        Raises
        ------
        ValueError
            A mapping with a name that is not a data container of the model.
        RuntimeError
            If the compiled model would hold stale data (a container not updated).
        """
        from analysis.engine.lazy_imports import import_nutpie

        nutpie = import_nutpie()

        with self._lock:
            t0 = time.perf_counter()
            self._set_data(data)
            fm = self.model
            compiled, info, owner = compile_fittable(fm, self.fast_compile)
            compile_seconds = self._pending_compile + float(info["compile_time"])
            self._pending_compile = 0.0
            self.n_compiles += int(not info["cache_hit"])
            compiled = load_data(compiled, fm)
            compiled = initial_point_for(compiled, fm.pymc_model, owner)
            t1 = time.perf_counter()
            raw = nutpie.sample(compiled, draws=self.draws, tune=self.tune, chains=self.chains, cores=self.cores,
                                seed=int(seed), target_accept=self.target_accept, save_warmup=False,
                                progress_bar=False, return_raw_trace=True)
            t_sample = time.perf_counter() - t1
            draws, stats = self._extract(raw)
            labels, dims = self._labels(draws)
            diagnostics = diagnose_arrays(draws, stats, labels, self.thresholds)
            self.n_fits += 1
            self.history.append(diagnostics)
            return Refit(draws=draws, dims=dims, diagnostics=diagnostics, seed=int(seed),
                         seconds=time.perf_counter() - t0, sample_seconds=t_sample,
                         compile_seconds=compile_seconds)

    def _extract(self, raw: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Post-warm-up draws of :attr:`var_names` and the sampler statistics, ``(chain, draw, ...)``."""
        draw_batches, stat_batches = raw.get_arrow_trace()
        draws: dict[str, list[np.ndarray]] = {v: [] for v in self.var_names}
        stats: dict[str, list[np.ndarray]] = {"diverging": [], "energy": [], "maxdepth_reached": []}
        for db, sb in zip(draw_batches, stat_batches):
            keep = ~_arrow_column(sb, "tuning").astype(bool)
            for v in draws:
                draws[v].append(_arrow_column(db, v)[keep])
            for v in stats:
                stats[v].append(_arrow_column(sb, v)[keep])
        return {v: np.stack(a) for v, a in draws.items()}, {v: np.stack(a) for v, a in stats.items()}

    def _labels(self, draws: Mapping[str, np.ndarray]) -> tuple[dict[str, list[str]], dict[str, tuple[str, ...]]]:
        pm_model = self.model.pymc_model
        labels, dims = {}, {}
        for v, a in draws.items():
            d = tuple(pm_model.named_vars_to_dims.get(v) or ())
            dims[v] = d
            labels[v] = element_labels(v, d, a.shape[2:], pm_model.coords)
        return labels, dims


def compile_for_refit(model: Any, **settings: Any) -> Refitter:
    """Compile ``model`` once for repeated refits: ``compile_for_refit(model).refit(data, seed)``.

    Parameters
    ----------
    model : TrajectoryModel, another rajak model, or pymc.Model
    **settings
        Keyword arguments of :class:`Refitter` (``draws``, ``tune``, ``chains``, ``cores``, ...).

    Returns
    -------
    Refitter
    """
    return Refitter(model, **settings)
