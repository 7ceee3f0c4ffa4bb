"""Write figures in a background process while the pipeline goes on.

Rendering is the largest single cost of a ``rajak run`` whose fits all come from the cache:
about 26 figures, each drawn twice (PNG and SVG) by matplotlib's pure-Python layout, roughly
14 s on one core. :class:`FigureWriter` pickles each finished figure (matplotlib figures pickle)
and hands it to a worker process, which draws and writes it with :func:`analysis.figures.output.save_figure`
(rajak's style, atomic writes), so the drawing overlaps the statistics on the second core.
:meth:`FigureWriter.wait` blocks until every figure is on disk and re-raises the first error;
the pipeline calls it before it builds the report, which embeds the PNGs. A worker that runs out of
memory (or is killed for it) is :class:`~analysis.common.memory.WorkerOutOfMemory` naming the figure,
which the commands turn into one line.

A standard-library :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start
method does the work: a fresh interpreter (no forked copies of the sampler's threads or of
PyTensor/numba state), and no dependency beyond the standard library. ``workers=0`` draws in the
calling process, exactly as :func:`~analysis.figures.output.save_figure` alone does. The files are the
same either way: the worker receives the figure's full state and draws it with the same
matplotlib and the same style.

Rendered-figure cache
---------------------
With ``cache_dir``, a figure that has a *content key* is drawn once: its PNG and SVG are kept
in ``<cache_dir>/figures/`` and later saves of the same key copy the files instead of drawing
(the report and the run directory get byte-identical files; rendering is deterministic). Keys:

- a :class:`~analysis.figures.output.DeferredFigure` is keyed by its content automatically:
  ``dask.base.tokenize`` of the builder's qualified name and its arguments (:func:`content_key`:
  arrays, pandas and xarray objects by their values), the same in every process;
- any other figure only when the caller passes ``key=`` (matplotlib figures do not pickle
  deterministically, so they cannot be keyed by their pickle), e.g. the sensitivity analyses'
  figures by the address of their cached result.

Every key is combined with the figure's name, the source of ``analysis/`` and ``models/`` and
the library versions (:func:`analysis.common.provenance.code_digest`), so a change to the
plotting code redraws. An incomplete entry is redrawn. :attr:`FigureWriter.cache_stats`
counts hits and draws.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from analysis.common.io import FigureWriteError, atomic_copy
from analysis.common.memory import WorkerOutOfMemory, worker_died
from analysis.common.provenance import code_digest
from analysis.figures.output import FIGURE_FORMATS, DeferredFigure

__all__ = ["FigureWriteError", "FigureWriter", "WorkerOutOfMemory", "content_key"]

_CACHE_FORMAT = 2  # 2: keys by dask's tokenize


def _canonical(obj: Any) -> Any:
    """``obj`` with the values that dask tokenizes by their layout replaced by what they hold.

    ``dask.base.tokenize`` hashes numpy arrays, pandas Series and xarray Datasets by their values,
    but a DataFrame by its internal blocks (a frame and its consolidated copy get different tokens)
    and a DataTree, which has no ``__dask_tokenize__``, by its pickle (which holds the variables'
    encodings, such as the file a fit was read from, and for lazily read files the file handles).
    So DataFrames become their columns and index, DataTrees their nodes' paths and Datasets, inside
    tuples, lists, dicts and dataclasses too.
    """
    import pandas as pd
    import xarray as xr

    if isinstance(obj, xr.DataTree):
        return ("DataTree", [(node.path, node.to_dataset()) for node in obj.subtree])
    if isinstance(obj, pd.DataFrame):
        return ("DataFrame", list(obj.columns), [obj.iloc[:, i] for i in range(obj.shape[1])], obj.index)
    if isinstance(obj, dict):
        return ("dict", type(obj).__name__, {k: _canonical(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_canonical(x) for x in obj])
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return (f"{type(obj).__module__}.{type(obj).__qualname__}",
                [(f.name, _canonical(getattr(obj, f.name))) for f in dataclasses.fields(obj)])
    return obj


def content_key(fig: DeferredFigure) -> str | None:
    """The content key of a deferred figure: ``dask.base.tokenize`` of its builder and arguments.

    Parameters
    ----------
    fig : DeferredFigure
        The builder (a module-level function, tokenized by its qualified name) and its arguments
        (numpy arrays, pandas and xarray objects by their values, DataFrames column by column,
        DataTrees node by node; dataclasses by their fields; containers by their items).

    Returns
    -------
    str or None
        The key, equal for equal content in any process; ``None`` when an argument cannot be
        tokenized deterministically (then the figure is not cached).
    """
    from dask.base import TokenizationError, tokenize

    try:
        return tokenize(f"{fig.make.__module__}.{fig.make.__qualname__}", _canonical(fig.args),
                        _canonical(fig.kwargs), ensure_deterministic=True)
    except TokenizationError:
        return None


def _out_of_memory(name: str, killed: bool) -> WorkerOutOfMemory:
    """The error of a figure whose worker ran out of memory (or was killed)."""
    return WorkerOutOfMemory("figures", f"drawing the figure {name!r} in a figure worker process", killed=killed)


def _render(payload: bytes, directory: str, name: str) -> list[str]:
    """Worker side: unpickle the figure and write it (the module-level function the pool calls)."""
    import matplotlib

    matplotlib.use("Agg")
    from analysis.figures.output import save_figure

    fig = pickle.loads(payload)  # a Figure, or a DeferredFigure that save_figure builds
    return [str(p) for p in save_figure(fig, directory, name).values()]


class FigureWriter:
    """Saves figures as ``name.png`` and ``name.svg`` in a background process.

    Parameters
    ----------
    workers : int
        Worker processes (0: draw in this process when :meth:`save` is called).
    cache_dir : path, optional
        Keep rendered figures under ``cache_dir/figures`` and reuse them (module docstring).

    Examples
    --------
    >>> with FigureWriter(workers=1) as writer:          # doctest: +SKIP
    ...     writer.save(fig, "outputs/run/figures", "trajectories")
    ...     writer.wait()                                 # every file written, or the error
    """

    def __init__(self, workers: int = 1, cache_dir: str | Path | None = None) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = int(workers)
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / "figures"
        self.cache_stats = {"hits": 0, "drawn": 0}
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[tuple[str, Future, Path | None]] = []

    def _entry(self, fig: Figure | DeferredFigure, name: str, key: str | None) -> Path | None:
        """The cache address of ``fig`` (``None``: not cached)."""
        if self.cache_dir is None:
            return None
        if key is None and isinstance(fig, DeferredFigure):
            key = content_key(fig)
        if key is None:
            return None

        from dask.base import tokenize

        return self.cache_dir / tokenize("rajak-figure-cache", _CACHE_FORMAT, key, name, code_digest())

    def _store(self, entry: Path, written: dict[str, Path]) -> None:
        """Keep the files just written under ``entry`` (best effort: a cache that cannot be
        written only costs a redraw next time)."""
        try:
            for fmt, path in written.items():
                atomic_copy(path, entry.with_suffix(f".{fmt}"))
        except OSError:
            pass

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(cancel=exc[0] is not None)

    def save(self, fig: Figure | DeferredFigure, directory: str | Path, name: str,
             key: str | None = None) -> dict[str, Path]:
        """Queue ``fig`` for writing (it is closed here); returns the paths it will have. A
        :class:`~analysis.figures.output.DeferredFigure` is built in the worker. ``key``: the content key
        of a figure that is not deferred, for the rendered-figure cache (module docstring)."""
        import matplotlib.pyplot as plt

        from analysis.figures.output import save_figure

        paths = {fmt: Path(directory) / f"{name}.{fmt}" for fmt in FIGURE_FORMATS}
        entry = self._entry(fig, name, key)
        if entry is not None and all(entry.with_suffix(f".{fmt}").is_file() for fmt in FIGURE_FORMATS):
            try:
                for fmt, path in paths.items():
                    atomic_copy(entry.with_suffix(f".{fmt}"), path)
            except OSError:
                pass  # an entry removed meanwhile: draw it
            else:
                if isinstance(fig, Figure):
                    plt.close(fig)
                self.cache_stats["hits"] += 1
                return paths
        self.cache_stats["drawn"] += 1
        if self.workers == 0:
            written = save_figure(fig, directory, name)
            if entry is not None:
                self._store(entry, written)
            return written
        payload = pickle.dumps(fig, protocol=pickle.HIGHEST_PROTOCOL)
        if isinstance(fig, Figure):
            plt.close(fig)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        try:
            future = self._pool.submit(_render, payload, str(directory), name)
        except Exception as exc:  # noqa: BLE001 -- a worker died earlier (killed for its memory)
            if worker_died(exc):
                raise _out_of_memory(name, killed=True) from None
            raise
        self._pending.append((name, future, entry))
        return paths

    def wait(self) -> list[Path]:
        """Block until every queued figure is written; the paths written. A figure that failed
        raises :class:`FigureWriteError` naming it (after the others have finished); one whose worker
        ran out of memory (a :class:`MemoryError` there, or the worker killed) raises
        :class:`~analysis.common.memory.WorkerOutOfMemory` (stage ``"figures"``) naming it instead."""
        done: list[Path] = []
        error: Exception | None = None
        pending, self._pending = self._pending, []
        for name, fut, entry in pending:
            try:
                written = [Path(p) for p in fut.result()]
            except Exception as exc:  # noqa: BLE001 -- reported below with the figure's name
                if isinstance(exc, MemoryError) or worker_died(exc):
                    if not isinstance(error, WorkerOutOfMemory):
                        error = _out_of_memory(name, killed=not isinstance(exc, MemoryError))
                else:
                    error = error or FigureWriteError(f"figure {name!r} could not be written: {exc}")
                continue
            done += written
            if entry is not None:
                self._store(entry, {p.suffix[1:]: p for p in written})
        if error is not None:
            raise error
        return done

    def close(self, cancel: bool = False) -> None:
        """Stop the worker process (after the queued figures unless ``cancel``)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None
        if cancel:
            self._pending = []
