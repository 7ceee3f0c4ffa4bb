"""Write figures in a background process while the pipeline goes on.

Rendering is the largest single cost of a ``rajak run`` whose fits all come from the cache:
about 26 figures, each drawn twice (PNG and SVG) by matplotlib's pure-Python layout, roughly
14 s on one core. :class:`FigureWriter` pickles each finished figure (matplotlib figures pickle)
and hands it to a worker process, which draws and writes it with :func:`analysis.plots.save_figure`
(rajak's style, atomic writes), so the drawing overlaps the statistics on the second core.
:meth:`FigureWriter.wait` blocks until every figure is on disk and re-raises the first error;
the pipeline calls it before it builds the report, which embeds the PNGs.

A standard-library :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start
method does the work: a fresh interpreter (no forked copies of the sampler's threads or of
PyTensor/numba state), and no dependency beyond the standard library. ``workers=0`` draws in the
calling process, exactly as :func:`~analysis.plots.save_figure` alone does. The files are the
same either way: the worker receives the figure's full state and draws it with the same
matplotlib and the same style.
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from analysis.io import FigureWriteError
from analysis.plots import FIGURE_FORMATS, DeferredFigure

__all__ = ["FigureWriteError", "FigureWriter"]


def _render(payload: bytes, directory: str, name: str) -> list[str]:
    """Worker side: unpickle the figure and write it (the module-level function the pool calls)."""
    import matplotlib

    matplotlib.use("Agg")
    from analysis.plots import save_figure

    fig = pickle.loads(payload)  # a Figure, or a DeferredFigure that save_figure builds
    return [str(p) for p in save_figure(fig, directory, name).values()]


class FigureWriter:
    """Saves figures as ``name.png`` and ``name.svg`` in a background process.

    Parameters
    ----------
    workers : int
        Worker processes (0: draw in this process when :meth:`save` is called).

    Examples
    --------
    >>> with FigureWriter(workers=1) as writer:          # doctest: +SKIP
    ...     writer.save(fig, "outputs/run/figures", "trajectories")
    ...     writer.wait()                                 # every file written, or the error
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = int(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[tuple[str, Future]] = []

    def __enter__(self) -> FigureWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(cancel=exc[0] is not None)

    def save(self, fig: Figure | DeferredFigure, directory: str | Path, name: str) -> dict[str, Path]:
        """Queue ``fig`` for writing (it is closed here); returns the paths it will have. A
        :class:`~analysis.plots.DeferredFigure` is built in the worker."""
        from analysis.plots import save_figure

        if self.workers == 0:
            return save_figure(fig, directory, name)
        import matplotlib.pyplot as plt

        payload = pickle.dumps(fig, protocol=pickle.HIGHEST_PROTOCOL)
        if isinstance(fig, Figure):
            plt.close(fig)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        self._pending.append((name, self._pool.submit(_render, payload, str(directory), name)))
        return {fmt: Path(directory) / f"{name}.{fmt}" for fmt in FIGURE_FORMATS}

    def wait(self) -> list[Path]:
        """Block until every queued figure is written; the paths written. A figure that failed
        raises :class:`FigureWriteError` naming it (after the others have finished)."""
        done, error = [], None
        pending, self._pending = self._pending, []
        for name, fut in pending:
            try:
                done += [Path(p) for p in fut.result()]
            except Exception as exc:  # noqa: BLE001 -- reported below with the figure's name
                error = error or FigureWriteError(f"figure {name!r} could not be written: {exc}")
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
