"""Figures written by background processes are the files the run's own process would write."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.report.figure_writer import FigureWriter
from analysis.figures.plots import DeferredFigure, retention, trajectories


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


# ---------------------------------------------------------------------------------------------
# rendered-figure cache
# ---------------------------------------------------------------------------------------------

BUILDS = []


def counted_retention(derived, label=None):
    """A deferred builder that records each build (module level: the worker can import it)."""
    BUILDS.append(label)
    return retention(derived, label=label)


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("workers", [0, 1])
def test_deferred_figure_is_drawn_once_then_copied(twin, tmp_path, workers):
    cache = tmp_path / "cache"
    fig = DeferredFigure(counted_retention, (twin,), {"label": "SYNTHETIC"})
    with FigureWriter(workers=workers, cache_dir=cache) as first:
        first.save(fig, tmp_path / "a", "retention")
        first.wait()
    assert first.cache_stats == {"hits": 0, "drawn": 1}
    BUILDS.clear()
    with FigureWriter(workers=workers, cache_dir=cache) as second:
        second.save(DeferredFigure(counted_retention, (twin.copy(),), {"label": "SYNTHETIC"}), tmp_path / "b",
                    "retention")
        second.wait()
    assert second.cache_stats == {"hits": 1, "drawn": 0} and BUILDS == []  # not built at all
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # byte-identical to the drawing


def test_changed_input_name_or_label_draws_again(twin, tmp_path):
    cache = tmp_path / "cache"
    writer = FigureWriter(workers=0, cache_dir=cache)
    writer.save(DeferredFigure(counted_retention, (twin,), {"label": "SYNTHETIC"}), tmp_path / "a", "r")
    changed = twin.copy()
    changed.loc[changed.index[0], "month"] = changed["month"].iloc[0] + 1
    writer.save(DeferredFigure(counted_retention, (changed,), {"label": "SYNTHETIC"}), tmp_path / "b", "r")
    writer.save(DeferredFigure(counted_retention, (twin,), {"label": "other"}), tmp_path / "c", "r")
    writer.save(DeferredFigure(counted_retention, (twin,), {"label": "SYNTHETIC"}), tmp_path / "d", "r2")
    assert writer.cache_stats == {"hits": 0, "drawn": 4}
    writer.save(DeferredFigure(counted_retention, (twin,), {"label": "SYNTHETIC"}), tmp_path / "e", "r")
    assert writer.cache_stats["hits"] == 1


def test_plain_figures_need_a_key_and_incomplete_entries_are_redrawn(twin, tmp_path):
    cache = tmp_path / "cache"
    writer = FigureWriter(workers=0, cache_dir=cache)
    writer.save(retention(twin, label="SYNTHETIC"), tmp_path / "a", "r")
    writer.save(retention(twin, label="SYNTHETIC"), tmp_path / "b", "r")
    assert writer.cache_stats == {"hits": 0, "drawn": 2}  # no key: never cached
    writer.save(retention(twin, label="SYNTHETIC"), tmp_path / "c", "r", key="result-abc")
    fig = retention(twin, label="SYNTHETIC")
    writer.save(fig, tmp_path / "d", "r", key="result-abc")
    assert writer.cache_stats == {"hits": 1, "drawn": 3}
    assert fig.number not in plt.get_fignums()  # closed on a hit too
    assert _files(tmp_path / "c") == _files(tmp_path / "d")
    for svg in (cache / "figures").glob("*.svg"):
        svg.unlink()  # an incomplete entry
    writer.save(retention(twin, label="SYNTHETIC"), tmp_path / "e", "r", key="result-abc")
    assert writer.cache_stats == {"hits": 1, "drawn": 4}
    assert _files(tmp_path / "e") == _files(tmp_path / "c")


def test_content_key_covers_datatrees_and_refuses_unknown_types():
    import numpy as np
    import xarray as xr

    from analysis.report.figure_writer import content_key

    def tree(v):
        return xr.DataTree.from_dict({"posterior": xr.Dataset({"b": (("chain", "draw"), v)})})

    base = np.arange(8.0).reshape(2, 4)
    k = content_key(DeferredFigure(counted_retention, (tree(base),), {}))
    assert k == content_key(DeferredFigure(counted_retention, (tree(base.copy()),), {}))
    bumped = base.copy()
    bumped[1, 3] += 1e-12
    assert k != content_key(DeferredFigure(counted_retention, (tree(bumped),), {}))
    assert content_key(DeferredFigure(counted_retention, (object(),), {})) is None
