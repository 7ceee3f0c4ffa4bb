r"""Compile a Bayesian model once, then refit it to one data set after another without recompiling.

Simulation studies (power, assurance, calibration checks) fit the same model to thousands of data
sets. :func:`analysis.fitting.sample` does everything a single analysis needs (an arviz
``DataTree``, the model's post-processing such as patient effects and pointwise log-likelihood,
diagnostics over every reported variable); a refit in a loop needs only the draws of a few
quantities and a convergence verdict. :class:`Refitter` keeps the compiled nutpie model and, per
refit,

1. swaps the data: a ``DataFrame`` goes through the model's own ``set_data`` (rajak models:
   standardisation, the ``obs``/``patient`` dims), a mapping sets ``pm.Data`` containers by name;
2. fetches the compiled model from :func:`analysis.fitting`'s in-process cache (a hit unless the
   *parameter* shapes changed, e.g. a model with latent patient effects and a new number of
   patients; the marginal trajectory LMM never recompiles) and loads the new data into it,
   checking that none of its data is stale;
3. samples with the same nutpie call as :func:`analysis.fitting.sample` (same initial points,
   same seed handling), so the draws are identical to a fresh ``sample`` on the same data and seed;
4. reads the requested variables straight from nutpie's Arrow trace (no ``DataTree``, no
   post-processing) and judges convergence over them with the statistics and thresholds of
   :func:`analysis.fitting.diagnose` (R-hat, bulk/tail ESS, divergences, E-BFMI).

Every refit returns its own :class:`Refit` (draws, :class:`~analysis.fitting.Diagnostics`,
seed, timings); :attr:`Refitter.history` keeps the last 1,000 diagnostics.

Only this module uses :mod:`analysis.fitting`'s private helpers (``_compile``, ``_load_data``,
``_initial_point_for``, ``_ebfmi``, ``_as_fittable``); everything else should use this API.

See :class:`Refitter` for an example.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

__all__ = ["Refit", "Refitter", "compile_for_refit", "diagnose_arrays"]

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
    diagnostics : analysis.fitting.Diagnostics
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


def _element_labels(name: str, dims: tuple[str, ...], shape: tuple[int, ...], coords: Mapping[str, Any]) -> list[str]:
    """``name[a, b]`` per element in C order, as :func:`analysis.fitting.diagnose` labels them."""
    if not shape:
        return [name]
    axes = []
    for k, size in enumerate(shape):
        d = dims[k] if k < len(dims) else None
        values = coords.get(d) if d is not None else None
        axes.append([str(v) for v in values] if values is not None and len(values) == size
                    else [str(i) for i in range(size)])
    return [f"{name}[{', '.join(combo)}]" for combo in product(*axes)]


def _rank_stats(arr: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of every element of ``(chain, draw, k)``
    finite draws, equal to ``arviz_stats``' ``array_stats.rhat`` / ``ess(method="bulk"|"tail")``.

    arviz_stats loops over elements and ranks each one separately (``scipy.stats.rankdata`` and
    ``norm.ppf``, three times per element); here the split chains of all elements are ranked and
    z-scaled in one vectorised call each (the same arithmetic element by element), and arviz_stats'
    own per-element ``_rhat``, ``_ess`` and ``_ess_tail`` finish the job, so the values are
    identical (tested against :func:`analysis.fitting.diagnose`).
    """
    from arviz_stats.base import array_stats
    from scipy import stats

    x = np.moveaxis(arr, 2, 0)  # (k, chain, draw)
    k, _, n_draw = x.shape
    half = n_draw // 2
    split = np.concatenate([x[:, :, :half], x[:, :, -half:]], axis=1)  # arviz's _split_chains per element

    def z_scale(a: np.ndarray) -> np.ndarray:
        flat = a.reshape(k, -1)
        rank = stats.rankdata(flat, method="average", axis=1)
        c = 3 / 8
        return stats.norm.ppf((rank - c) / (flat.shape[1] - 2 * c + 1)).reshape(a.shape)

    z_bulk = z_scale(split)
    z_fold = z_scale(np.abs(split - np.median(split.reshape(k, -1), axis=1)[:, None, None]))
    rhat = np.array([max(array_stats._rhat(z_bulk[e]), array_stats._rhat(z_fold[e])) for e in range(k)])
    bulk = np.array([array_stats._ess(z_bulk[e]) for e in range(k)], dtype=float)
    tail = np.array([array_stats._ess_tail(x[e], prob) for e in range(k)], dtype=float)
    return rhat, bulk, tail


def diagnose_arrays(draws: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray],
                    labels: Mapping[str, list[str]] | None = None, thresholds: Any = None) -> Any:
    """:func:`analysis.fitting.diagnose` on plain ``(chain, draw, ...)`` arrays.

    Same statistics (rank-normalised split R-hat, bulk and tail ESS from ``arviz_stats``, E-BFMI
    per chain), labels, verdict and failure lines, with one batched call per statistic.

    Parameters
    ----------
    draws : mapping of str to ndarray
        ``(chain, draw, ...)`` per variable.
    stats : mapping of str to ndarray
        ``diverging``, ``energy`` and (optionally) ``maxdepth_reached``, each ``(chain, draw)``.
    labels : mapping of str to list of str, optional
        Element labels per variable (default ``name[i, j]``).
    thresholds : analysis.fitting.Thresholds, optional

    Returns
    -------
    analysis.fitting.Diagnostics
    """
    import warnings

    from arviz_stats.base import array_stats
    from arviz_stats.validate import validate_ci_prob

    from analysis.fitting import Diagnostics, Thresholds, _ebfmi

    thresholds = thresholds if thresholds is not None else Thresholds()
    if not draws:
        raise ValueError("no variables to diagnose")
    names = list(draws)
    flat_labels: list[str] = []
    cols = []
    for v in names:
        a = np.asarray(draws[v], dtype=float)
        cols.append(a.reshape(a.shape[0], a.shape[1], -1))
        lab = (labels or {}).get(v) or _element_labels(v, (), a.shape[2:], {})
        flat_labels += list(lab)
    arr = np.concatenate(cols, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if arr.shape[0] >= 2 and arr.shape[1] >= 4 and np.isfinite(arr).all():
            rhat, bulk, tail = _rank_stats(arr, validate_ci_prob(None))
        else:  # arviz_stats' own checks and NaN handling
            rhat = np.asarray(array_stats.rhat(arr, chain_axis=0, draw_axis=1), dtype=float)
            bulk = np.asarray(array_stats.ess(arr, chain_axis=0, draw_axis=1, method="bulk"), dtype=float)
            tail = np.asarray(array_stats.ess(arr, chain_axis=0, draw_axis=1, method="tail",
                                              prob=validate_ci_prob(None)), dtype=float)

    def worst(x: np.ndarray, mode: str) -> tuple[float, str]:
        nan = np.flatnonzero(np.isnan(x))
        if nan.size:
            return np.nan, flat_labels[int(nan[0])]
        i = int(np.argmax(x) if mode == "max" else np.argmin(x))
        return float(x[i]), flat_labels[i]

    max_rhat, worst_rhat = worst(rhat, "max")
    min_bulk, worst_bulk = worst(bulk, "min")
    min_tail, worst_tail = worst(tail, "min")
    n_div = int(np.sum(stats["diverging"]))
    ebfmi = tuple(float(e) for e in _ebfmi(stats["energy"]))
    failures = []
    if not max_rhat <= thresholds.rhat_max:
        failures.append(f"rhat: max {max_rhat:.3f} > {thresholds.rhat_max} ({worst_rhat})")
    if not min_bulk >= thresholds.ess_bulk_min:
        failures.append(f"ess_bulk: min {min_bulk:.0f} < {thresholds.ess_bulk_min:.0f} ({worst_bulk})")
    if not min_tail >= thresholds.ess_tail_min:
        failures.append(f"ess_tail: min {min_tail:.0f} < {thresholds.ess_tail_min:.0f} ({worst_tail})")
    if n_div > thresholds.divergences_max:
        failures.append(f"divergences: {n_div} > {thresholds.divergences_max}")
    if not ebfmi or not all(e >= thresholds.ebfmi_min for e in ebfmi):
        failures.append("ebfmi: " + (", ".join(f"{e:.2f}" for e in ebfmi) if ebfmi else "no energy stats")
                        + f" (min {thresholds.ebfmi_min})")
    depth = stats.get("maxdepth_reached")
    return Diagnostics(max_rhat=max_rhat, min_ess_bulk=min_bulk, min_ess_tail=min_tail, worst_rhat=worst_rhat,
                       worst_ess_bulk=worst_bulk, worst_ess_tail=worst_tail, n_divergences=n_div, ebfmi=ebfmi,
                       n_max_treedepth=int(np.sum(depth)) if depth is not None else 0, n_draws=int(arr.shape[1]),
                       n_chains=int(arr.shape[0]), var_names=tuple(names), passed=not failures,
                       failures=tuple(failures), thresholds=thresholds)


class Refitter:
    """A model compiled once and refitted to new data with nutpie, without recompiling.

    Parameters
    ----------
    model : TrajectoryModel, another rajak model, or pymc.Model
        Anything :func:`analysis.fitting.sample` accepts. It is compiled on construction (or
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
    thresholds : analysis.fitting.Thresholds, optional
        Pass marks of the verdict.
    fast_compile : bool, optional
        As for :func:`analysis.fitting.compile_model`.

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
    :func:`analysis.fitting.sample` on the same data and seed:

    >>> from analysis.refit import Refitter
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
        from analysis.fitting import _as_fittable, _compile

        if min(int(draws), int(tune), int(chains), int(cores)) < 1:
            raise ValueError("draws, tune, chains and cores must be positive")
        if not 0.0 < float(target_accept) < 1.0:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
        self.model = _as_fittable(model)
        self.draws, self.tune, self.chains, self.cores = int(draws), int(tune), int(chains), int(cores)
        self.target_accept = float(target_accept)
        self.thresholds = thresholds
        self.fast_compile = fast_compile
        self.n_fits = 0
        self.n_compiles = 0
        self.history: deque = deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        compiled, info, _ = _compile(self.model, fast_compile)
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
            ``analysis.fitting.sample(model, ..., seed=seed)``).

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
        from analysis._imports import import_nutpie

        nutpie = import_nutpie()
        from analysis.fitting import _compile, _initial_point_for, _load_data

        with self._lock:
            t0 = time.perf_counter()
            self._set_data(data)
            fm = self.model
            compiled, info, owner = _compile(fm, self.fast_compile)
            compile_seconds = self._pending_compile + float(info["compile_time"])
            self._pending_compile = 0.0
            self.n_compiles += int(not info["cache_hit"])
            compiled = _load_data(compiled, fm)
            compiled = _initial_point_for(compiled, fm.pymc_model, owner)
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
            labels[v] = _element_labels(v, d, a.shape[2:], pm_model.coords)
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
