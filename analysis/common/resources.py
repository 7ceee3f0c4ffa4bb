"""Locate the data files shipped with rajak (the twin, its provenance, reference tables).

In a source checkout (or an editable install) they live in ``<project>/data``; a wheel carries the
same folder as ``analysis/_data``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["data_dir", "data_path"]


def data_dir() -> Path:
    """The directory holding rajak's shipped data files."""
    here = Path(__file__).resolve().parents[1]  # the analysis package
    for candidate in (here / "_data", here.parent / "data"):
        if (candidate / "published_figures.json").is_file():
            return candidate
    raise FileNotFoundError(f"rajak's data directory was not found next to {here}")


def data_path(name: str) -> Path:
    """Path of a shipped data file, e.g. ``data_path("rajak_twin.csv")``."""
    path = data_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"shipped data file {name!r} not found in {path.parent}")
    return path
