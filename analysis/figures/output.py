"""The finished figure: taken out of an arviz-plots ``PlotCollection`` (:func:`figure_of`), as PNG
bytes for embedding (:func:`figure_png_bytes`), written as PNG and SVG atomically
(:func:`save_figure`), or deferred (:class:`DeferredFigure`: drawn where it is written;
:mod:`analysis.report.figure_writer` draws it in a worker process). Writing applies rajak's style
(:func:`analysis.figures.theme.style`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; figures are written to files

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.common.io import atomic_write_bytes  # noqa: E402
from analysis.figures.theme import style  # noqa: E402

__all__ = ["FIGURE_FORMATS", "DeferredFigure", "save_figure", "figure_png_bytes", "figure_of"]

#: The files :func:`save_figure` writes per figure.
FIGURE_FORMATS = ("png", "svg")


def figure_of(plot_collection: Any) -> Figure:
    """The matplotlib figure of an arviz-plots ``PlotCollection`` drawn with the matplotlib backend."""
    return plot_collection.get_viz("figure")


def figure_png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (for embedding), in rajak's style as :func:`save_figure` writes it."""
    buf = io.BytesIO()
    with style():
        fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


@dataclass(frozen=True)
class DeferredFigure:
    """A figure to be drawn later: ``make(*args, **kwargs)`` returns it.

    For figures whose construction is itself costly (rank plots compute rank ECDFs over every
    draw, density plots their KDEs): :class:`analysis.report.figure_writer.FigureWriter` builds
    them in its worker process (only the arguments travel), and :func:`save_figure` builds them on
    the spot. ``make`` must be importable (a module-level function) and the arguments picklable.

    Attributes
    ----------
    make : callable
        Module-level function returning a :class:`matplotlib.figure.Figure`.
    args : tuple
        Its positional arguments.
    kwargs : dict
        Its keyword arguments.
    """

    make: Callable[..., Figure]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def build(self) -> Figure:
        """Draw the figure: ``make(*args, **kwargs)``."""
        return self.make(*self.args, **self.kwargs)


def save_figure(fig: Figure | DeferredFigure, directory: str | Path, name: str) -> dict[str, Path]:
    """Write ``name.png`` and ``name.svg`` atomically, in rajak's style.

    Parameters
    ----------
    fig : Figure or DeferredFigure
        The figure (a :class:`DeferredFigure` is built first); it is closed afterwards.
    directory : path
        Where the files go (created if missing).
    name : str
        File name without suffix.

    Returns
    -------
    dict of str to Path
        ``{"png": ..., "svg": ...}``: a 150 dpi PNG and an SVG with its text as text and no date.
    """
    if isinstance(fig, DeferredFigure):
        fig = fig.build()
    out: dict[str, Path] = {}
    with style():
        for fmt in FIGURE_FORMATS:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
            out[fmt] = atomic_write_bytes(Path(directory) / f"{name}.{fmt}", buf.getvalue())
    plt.close(fig)
    return out
