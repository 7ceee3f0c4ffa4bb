"""Figures written by background processes are the files the run's own process would write."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from analysis.clinical import derive
from analysis.data import load_twin
from analysis.figure_writer import FigureWriter
from analysis.plots import DeferredFigure, retention, trajectories


@pytest.fixture(scope="module")
def twin():
    return derive(load_twin().frame)


def _figures(twin):
    return {"retention": retention(twin, label="SYNTHETIC"),
            "trajectories": trajectories(twin, label="SYNTHETIC"),
            # built where it is drawn: in the worker, or on the spot without one
            "deferred": DeferredFigure(trajectories, (twin,), {"sites": ("spine",), "label": "SYNTHETIC"})}


def test_background_files_equal_in_process_files(twin, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    for name, fig in _figures(twin).items():
        FigureWriter(workers=0).save(fig, here, name)
    with FigureWriter(workers=2) as writer:
        figures = _figures(twin)
        numbers = [fig.number for fig in figures.values() if not isinstance(fig, DeferredFigure)]
        promised = {name: writer.save(fig, there, name) for name, fig in figures.items()}
        assert not set(numbers) & set(plt.get_fignums())  # handed over and closed here
        written = writer.wait()
    assert sorted(written) == sorted(p for paths in promised.values() for p in paths.values())
    for name in ("retention", "trajectories", "deferred"):
        for fmt in ("png", "svg"):
            a, b = (here / f"{name}.{fmt}").read_bytes(), (there / f"{name}.{fmt}").read_bytes()
            assert a == b, f"{name}.{fmt} differs"
    svg = (there / "retention.svg").read_text()
    assert "SYNTHETIC" in svg  # rajak's style: SVG text stays text


def test_a_figure_that_cannot_be_written_is_named(twin, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with FigureWriter(workers=1) as writer:
        writer.save(retention(twin), tmp_path / "ok", "fine")
        writer.save(retention(twin), blocker / "figures", "broken")
        with pytest.raises(RuntimeError, match="figure 'broken' could not be written"):
            writer.wait()
    assert (tmp_path / "ok" / "fine.png").is_file()
    with pytest.raises(ValueError, match="workers must be >= 0"):
        FigureWriter(workers=-1)
