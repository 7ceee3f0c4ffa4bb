"""Figures written by background processes are the files the run's own process would write; the
rendered-figure cache keys deferred figures by their content (``dask.base.tokenize``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.report.figure_writer import FigureWriter
from analysis.figures import DeferredFigure, retention, trajectories


@pytest.fixture(scope="module")
def twin():
    return derive(load_twin().frame)


def _energy_tree():
    import numpy as np
    import xarray as xr

    energy = np.random.default_rng(5).normal(size=(2, 200))
    return xr.DataTree.from_dict({"sample_stats": xr.Dataset({"energy": (("chain", "draw"), energy)})})


def _figures(twin):
    from analysis.figures import energy_plot

    return {"retention": retention(twin, label="SYNTHETIC"),
            "trajectories": trajectories(twin, label="SYNTHETIC"),
            # built where it is drawn: in the worker, or on the spot without one
            "deferred": DeferredFigure(trajectories, (twin,), {"sites": ("spine",), "label": "SYNTHETIC"}),
            "arviz_plots": DeferredFigure(energy_plot, (_energy_tree(),), {"label": "SYNTHETIC"})}


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
    for name in ("retention", "trajectories", "deferred", "arviz_plots"):
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


def _tree(v):
    import xarray as xr

    return xr.DataTree.from_dict({"posterior": xr.Dataset({"b": (("chain", "draw"), v)},
                                                          coords={"chain": [0, 1], "draw": range(v.shape[1])})})


def test_content_key_covers_datatrees_and_refuses_unknown_types():
    import numpy as np

    from analysis.report.figure_writer import content_key

    base = np.arange(8.0).reshape(2, 4)
    k = content_key(DeferredFigure(counted_retention, (_tree(base),), {}))
    assert k == content_key(DeferredFigure(counted_retention, (_tree(base.copy()),), {}))
    bumped = base.copy()
    bumped[1, 3] += 1e-12
    assert k != content_key(DeferredFigure(counted_retention, (_tree(bumped),), {}))
    assert k != content_key(DeferredFigure(counted_retention, (_tree(base),), {"label": "x"}))
    assert k != content_key(DeferredFigure(retention, (_tree(base),), {}))  # another builder
    assert content_key(DeferredFigure(counted_retention, (object(),), {})) is None


def test_content_key_ignores_layout_and_file_origin(twin, tmp_path):
    """The same values give the same key however they are held: a DataFrame and its consolidated
    copy (other internal blocks), a DataTree in memory and the same read lazily from netCDF (with
    encodings naming the file)."""
    import numpy as np
    import xarray as xr

    from analysis.report.figure_writer import content_key

    copy = twin.copy()
    assert len(copy._mgr.blocks) != len(twin._mgr.blocks)  # the premise: another layout
    assert content_key(DeferredFigure(counted_retention, (twin,), {})) == \
        content_key(DeferredFigure(counted_retention, (copy,), {}))
    tree = _tree(np.random.default_rng(0).normal(size=(2, 50)))
    tree.to_netcdf(tmp_path / "t.nc", engine="h5netcdf")
    with xr.open_datatree(tmp_path / "t.nc", engine="h5netcdf") as lazy:
        assert lazy["posterior"]["b"].encoding  # the premise: read from a file
        assert content_key(DeferredFigure(counted_retention, (lazy,), {})) == \
            content_key(DeferredFigure(counted_retention, (tree,), {}))


_KEY_SCRIPT = """
import sys
import numpy as np, xarray as xr
from analysis.figures import DeferredFigure, retention
from analysis.report.figure_writer import content_key
from analysis.study.clinical import derive
from analysis.study.data import load_twin
bump = float(sys.argv[1])
twin = derive(load_twin().frame)
twin.loc[twin.index[0], "month"] += bump
v = np.random.default_rng(7).normal(size=(2, 40))
v[0, 0] += bump
tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"b": (("chain", "draw"), v)},
                                                      coords={"chain": [0, 1], "draw": range(40)})})
print(content_key(DeferredFigure(retention, (twin, [tree]), {"label": "SYNTHETIC"})))
"""


def test_content_key_is_the_same_in_another_process(twin):
    """Keys must match across processes (the cache outlives the run): the same content built in a
    fresh interpreter gives this process's key, a changed value another."""
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from analysis.report.figure_writer import content_key

    root = Path(__file__).resolve().parents[3]

    def other(bump):
        out = subprocess.run([sys.executable, "-c", _KEY_SCRIPT, repr(bump)], cwd=root, capture_output=True,
                             text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    v = np.random.default_rng(7).normal(size=(2, 40))
    here = content_key(DeferredFigure(retention, (twin, [_tree(v)]), {"label": "SYNTHETIC"}))
    assert here is not None and other(0.0) == here
    assert other(1e-9) != here
