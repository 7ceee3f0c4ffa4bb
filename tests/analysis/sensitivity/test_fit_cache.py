"""The Bayesian sensitivity analyses read unchanged fits from the content-addressed fit cache:
a second run with the same cache directory samples nothing and gives identical results; a changed
seed samples again."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import analysis.engine.sampling as fitting
from analysis.study.clinical import derive
from analysis.run.config import RunConfig
from analysis.study.data import load_twin
from analysis.sensitivity.bayes_common import FitCache, cached_sample, diagnostics_rows, diagnostics_text
from analysis.sensitivity.runner import run_sensitivity


@pytest.fixture(scope="module")
def twin():
    return derive(load_twin().frame)


@pytest.fixture
def counted(monkeypatch):
    """Count calls to the sampler (analysis.engine.sampling.sample)."""
    calls = []
    original = fitting.sample

    def sample(model, *args, **kwargs):
        calls.append(type(model).__name__)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(fitting, "sample", sample)
    return calls


def _config(seed: int) -> RunConfig:
    return RunConfig(sites=("spine",), draws=40, tune=40, chains=1, seed=seed)


def test_priors_second_run_reads_the_cache_and_a_new_seed_refits(twin, tmp_path, counted):
    cache = tmp_path / ".fit-cache"
    first = run_sensitivity("priors", twin, _config(3), cache_dir=cache)
    n_sets = first.table["set"].nunique()
    assert len(counted) == n_sets >= 2          # one fit per prior set
    assert first.settings["fit_cache"] == {"cache_dir": str(cache), "hits": 0, "misses": n_sets}
    assert len(list(cache.glob("sens-priors-lmm_spine_*.nc"))) == n_sets

    assert first.settings["result_cache"]["hit"] is False
    # the finished result is cached too: the same analysis again is read back whole
    again = run_sensitivity("priors", twin, _config(3), cache_dir=cache)
    assert len(counted) == n_sets and again.settings["result_cache"]["hit"] is True
    pd.testing.assert_frame_equal(first.table, again.table)
    assert again.text == first.text and set(again.figures) == set(first.figures)
    # without the result entry, the analysis reruns and reads every fit from the fit cache
    for entry in (cache / "sensitivity").glob("priors_*.pkl"):
        entry.unlink()
    second = run_sensitivity("priors", twin, _config(3), cache_dir=cache)
    assert len(counted) == n_sets                # no new fits
    assert second.settings["fit_cache"]["hits"] == n_sets and second.settings["fit_cache"]["misses"] == 0
    assert second.settings["result_cache"]["hit"] is False
    pd.testing.assert_frame_equal(first.table, second.table)
    pd.testing.assert_frame_equal(first.forest_rows, second.forest_rows)

    third = run_sensitivity("priors", twin, _config(4), cache_dir=cache)
    assert len(counted) == 2 * n_sets            # a changed seed refits every set
    assert third.settings["fit_cache"]["misses"] == n_sets
    assert not np.allclose(third.table["posterior_median"], first.table["posterior_median"])
    # the cache's temporary substitution of the sampler is undone after the analysis
    assert fitting.sample.__module__ == __name__
    plt.close("all")


def test_cached_sample_key_depends_on_extra_settings(twin, tmp_path, counted):
    from analysis.bayes.fit import analysis_frame
    from models.trajectory import build_trajectory_model

    frame, _ = analysis_frame(twin)
    tm = build_trajectory_model(frame, "spine")
    cache = FitCache(tmp_path)
    kw = dict(cache=cache, tag="t", site="spine", seed=1, draws=30, tune=30, chains=1, cores=1)
    a = cached_sample(tm, extra={"x": 1}, **kw)
    b = cached_sample(tm, extra={"x": 1}, **kw)
    cached_sample(tm, extra={"x": 2}, **kw)
    assert (cache.hits, cache.misses, len(counted)) == (1, 2, 2)
    np.testing.assert_array_equal(a.posterior["posterior"]["b"].values,
                                  b.posterior["posterior"]["b"].values)
    # every fit's diagnostics reach the table and the text; a failure is loud
    rows = diagnostics_rows({"m": a}, {"m": "spine"})
    assert set(rows[0]) >= {"r_hat", "ess_bulk", "ess_tail", "divergences", "failed"}
    assert rows[0]["failed"] == (not a.passed)
    text = diagnostics_text({"m": a})
    assert ("CONVERGENCE FAILED" in text) == (not a.passed)


def test_result_cache_address_follows_data_settings_and_ignores_output_location(twin, tmp_path):
    """A changed value in the data, or a changed analysis setting, gives a new address (the analysis
    is recomputed); where the run writes, its id and its figure workers do not."""
    from analysis.sensitivity.runner import result_cache_key

    base = _config(3)
    key = result_cache_key("delta", twin, base)
    assert result_cache_key("delta", twin.copy(), base) == key
    assert result_cache_key("tipping", twin, base) != key
    changed = twin.copy()
    changed.loc[changed["bmd_spine"].first_valid_index(), "bmd_spine"] += 1e-6
    assert result_cache_key("delta", changed, base) != key
    assert result_cache_key("delta", twin, _config(4)) != key
    assert result_cache_key("delta", twin, base.model_copy(update={"mi_imputations": 7})) != key
    moved = base.model_copy(update={"output_dir": str(tmp_path), "run_id": "x", "figure_workers": 0,
                                    "power_sims": 3})
    assert result_cache_key("delta", twin, moved) == key

    cache = tmp_path / ".fit-cache"
    first = run_sensitivity("delta", twin, base, cache_dir=cache)
    hit = run_sensitivity("delta", twin, moved, cache_dir=cache)
    miss = run_sensitivity("delta", changed, base, cache_dir=cache)
    assert (first.settings["result_cache"]["hit"], hit.settings["result_cache"]["hit"],
            miss.settings["result_cache"]["hit"]) == (False, True, False)
    pd.testing.assert_frame_equal(first.table, hit.table)
    # a damaged entry is recomputed and replaced, not trusted
    entries = sorted((cache / "sensitivity").glob("delta_*.pkl"))
    assert len(entries) == 2  # the twin's and the changed data's
    for entry in entries:
        entry.write_bytes(b"not a pickle")
    redone = run_sensitivity("delta", twin, base, cache_dir=cache)
    assert redone.settings["result_cache"]["hit"] is False
    pd.testing.assert_frame_equal(first.table, redone.table)
    plt.close("all")
