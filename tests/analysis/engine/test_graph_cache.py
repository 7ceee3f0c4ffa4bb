"""Tests of ``analysis/engine/graph_cache.py``: the disk cache of nutpie's rewritten model functions.

What must hold: a cache hit gives the same draws as no cache; an entry written with one data set
never leaks those data into a fit on another; the key follows the model's structure (not its data);
damaged entries are rebuilt."""

from __future__ import annotations

import numpy as np
import pytest

import models  # noqa: F401  (compile caches before pymc)
import pymc as pm
from analysis.engine.compile import clear_compile_cache, compile_model, shape_signature
from analysis.engine.sampling import sample
from analysis.engine.graph_cache import graph_key

FAST = {"draws": 200, "tune": 200, "chains": 2, "cores": 2}


def _model(y: np.ndarray, likelihood: str = "normal", prior_sd: float = 10.0) -> pm.Model:
    with pm.Model() as m:
        data = pm.Data("y_data", y)
        mu = pm.Normal("mu", 0.0, prior_sd)
        sd = pm.HalfNormal("sd", 5.0)
        if likelihood == "normal":
            pm.Normal("y", mu, sd, observed=data)
        else:
            pm.StudentT("y", nu=4.0, mu=mu, sigma=sd, observed=data)
        pm.Deterministic("mu_plus_sd", mu + sd)
    return m


def _y(seed: int, loc: float = 1.0, n: int = 60) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, 2.0, n)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAJAK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("RAJAK_GRAPH_CACHE", raising=False)
    clear_compile_cache()
    yield tmp_path / "nutpie-graphs"
    clear_compile_cache()


def _draws(fit) -> dict[str, np.ndarray]:
    post = fit.posterior["posterior"]
    return {k: post[k].values for k in ("mu", "sd", "mu_plus_sd")}


def test_hit_gives_same_draws_as_no_cache(cache, monkeypatch):
    y = _y(0)
    _, info = compile_model(_model(y))
    assert info["graph_cache"] == "miss" and len(list(cache.glob("*.pkl"))) == 1
    clear_compile_cache()
    m = _model(y)
    _, info = compile_model(m)
    assert info["graph_cache"] == "hit"
    hit = sample(m, seed=5, **FAST)

    clear_compile_cache()
    monkeypatch.setenv("RAJAK_GRAPH_CACHE", "0")
    m_off = _model(y)
    _, info = compile_model(m_off)
    assert info["graph_cache"] == "off"
    off = sample(m_off, seed=5, **FAST)
    for name, values in _draws(hit).items():
        np.testing.assert_array_equal(values, _draws(off)[name])


def test_entry_written_with_other_data_does_not_leak(cache, monkeypatch):
    compile_model(_model(_y(0, loc=1.0)))  # the entry holds these data
    clear_compile_cache()
    m = _model(_y(1, loc=25.0, n=80))  # other values and another length
    _, info = compile_model(m)
    assert info["graph_cache"] == "hit"
    hit = sample(m, seed=2, **FAST)
    assert abs(float(hit.posterior["posterior"]["mu"].mean()) - 25.0) < 1.5

    clear_compile_cache()
    monkeypatch.setenv("RAJAK_GRAPH_CACHE", "0")
    m_off = _model(_y(1, loc=25.0, n=80))
    off = sample(m_off, seed=2, **FAST)
    for name, values in _draws(hit).items():
        np.testing.assert_array_equal(values, _draws(off)[name])


def test_key_follows_structure_not_data():
    def key(m: pm.Model) -> str:
        return graph_key(m, None, shape_signature(m))

    base = key(_model(_y(0)))
    assert key(_model(_y(3, loc=-4.0, n=17))) == base  # data enter by name only
    assert key(_model(_y(0), likelihood="student_t")) != base  # another likelihood
    assert key(_model(_y(0), prior_sd=3.0)) != base  # a constant in the graph
    m = _model(_y(0))
    assert graph_key(m, ["mu"], shape_signature(m)) != base  # other traced variables


def test_damaged_entry_is_rebuilt(cache):
    compile_model(_model(_y(0)))
    (entry,) = cache.glob("*.pkl")
    entry.write_bytes(b"not a pickle")
    clear_compile_cache()
    m = _model(_y(0))
    with pytest.warns(UserWarning, match="unreadable graph-cache entry"):
        _, info = compile_model(m)
    assert info["graph_cache"] == "miss"
    assert entry.read_bytes()[:1] == b"\x80"  # rewritten as a pickle
    fit = sample(m, seed=1, **FAST)
    assert np.isfinite(fit.posterior["posterior"]["mu"].values).all()


def test_unpicklable_functions_are_built_and_not_stored(cache):
    with pm.Model() as m:
        corr = pm.LKJCorr("corr", n=3, eta=2.0)  # an OpFromGraph: PyTensor cannot pickle it
        pm.Normal("x", corr.sum(), 1.0)
    _, info = compile_model(m)
    assert info["graph_cache"] == "unpicklable" and not list(cache.glob("*.pkl"))
    fit = sample(m, seed=1, **FAST)
    assert np.isfinite(fit.posterior["posterior"]["x"].values).all()
