"""latent_status and selection through the shared helper: the fit cache (the selection analysis'
MAR reference is the latent-status fit, read from the cache), and loud diagnostics: one
``diagnostics`` row per fit with R-hat, ESS, divergences and a ``failed`` flag, and a
"CONVERGENCE FAILED" paragraph when a fit fails."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

import analysis.engine.sampling as fitting
from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.sensitivity.latent_status import TABLE_COLUMNS, latent_status_analysis
from analysis.sensitivity.selection import selection_analysis

#: Deliberately too short to converge: the failure must be reported, not hidden.
TINY = {"draws": 20, "tune": 20, "chains": 2, "cores": 2}


@pytest.fixture(scope="module")
def twin():
    return derive(load_twin().frame)


def test_cache_shared_between_analyses_and_failures_are_loud(twin, tmp_path, monkeypatch):
    calls = []
    original = fitting.sample
    monkeypatch.setattr(fitting, "sample", lambda m, *a, **k: calls.append(1) or original(m, *a, **k))
    lat = latent_status_analysis(twin, ("spine",), seed=1, cache_dir=tmp_path, **TINY)
    assert len(calls) == 2 and lat.settings["fit_cache"]["misses"] == 2
    sel = selection_analysis(twin, ("spine",), seed=1, cache_dir=tmp_path, **TINY)
    assert len(calls) == 3                            # the MAR (latent status) fit came from the cache
    assert sel.settings["fit_cache"] == {"cache_dir": str(tmp_path), "hits": 1, "misses": 1}
    lat_mar = lat.table[(lat.table["section"] == "estimand") & (lat.table["model"] == "latent status")]
    sel_mar = sel.table[(sel.table["section"] == "estimand") & (sel.table["model"] == "MAR (latent status)")]
    assert list(lat_mar["mean"]) == list(sel_mar["mean"])

    for res, n_fits in ((lat, 2), (sel, 2)):
        assert list(res.table.columns) == TABLE_COLUMNS
        diag = res.table[res.table["section"] == "diagnostics"]
        assert len(diag) == n_fits
        assert diag[["r_hat", "ess_bulk", "ess_tail", "divergences"]].notna().all().all()
        failed = diag.loc[diag["failed"].astype(bool), "model"].tolist()
        assert sorted(res.settings["failed_fits"]) == sorted(failed)  # model = "<site> <fit>"
        assert failed, "20 draws should not pass the convergence checks"
        assert any(t.startswith("CONVERGENCE FAILED") for t in res.text)
        # the forest plot carries estimands only
        assert set(res.forest_rows["estimand"]).isdisjoint({"convergence"})
    plt.close("all")
