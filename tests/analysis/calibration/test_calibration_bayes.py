"""The Bayesian calibration estimators (trajectory LMM, Bayesian MMRM) and simulation-based calibration in
reduced form: a few data sets / simulations with tiny draws, asserting the pipeline and the shapes, not the
calibration itself (that is ``tests/benchmarks/calibration/run_calibration.py`` and ``run_sbc.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.calibration import get_estimator, registered
from analysis.calibration.estimators_bayes import bayes_estimators, posterior_row
from analysis.calibration.execution import Chunk, run_chunk
from analysis.calibration.sbc import (
    SBC_MODELS,
    rank_uniformity,
    run_sbc,
    sbc_rank,
    thin,
)
from analysis.calibration.spec import dataset_rng
from tests.calibration_rows import assert_sane_rows

TINY = {"draws": 100, "tune": 100, "chains": 2}
L = 19


def test_bayes_estimators_are_registered_on_the_frequentist_data_sets():
    reg = registered()
    for name, freq in (("bayes_lmm", "lmm_satterthwaite"), ("bayes_mmrm", "mmrm_us")):
        est, ref = reg[name], get_estimator(freq)
        assert est.family == "bayesian" and est.setup is not None and est.design and est.estimand
        assert est.seed_stream == ref.seed_stream == "trial_mcar"
        data, truth = est.simulate(dataset_rng(3, est, 1))
        ref_data, ref_truth = ref.simulate(dataset_rng(3, ref, 1))
        assert truth == pytest.approx(ref_truth)
        if name == "bayes_lmm":  # same trial as the frequentist rows
            pd.testing.assert_frame_equal(data[ref_data.columns], ref_data)


def test_posterior_row():
    x = np.arange(1001.0).reshape(1, -1)
    est, se, lo, hi = posterior_row(x)
    assert est == 500.0 and se == pytest.approx(x.std(ddof=1)) and (lo, hi) == (25.0, 975.0)


@pytest.mark.parametrize("index", [0, 1])
def test_bayes_estimator_reduced(index):
    est = bayes_estimators("_test", **TINY)[index]
    rows = run_chunk(Chunk(est, seed=19, indices=(0, 1)))
    assert_sane_rows(rows)  # and near the truth (a few posterior SDs at most)


def test_rank_helpers():
    assert sbc_rank(0.5, np.array([0.1, 0.4, 0.6])) == 2
    assert thin(np.arange(200.0).reshape(2, 100), 5).tolist() == [0.0, 50.0, 100.0, 149.0, 199.0]
    with pytest.raises(ValueError):
        thin(np.zeros((2, 3)), 7)
    flat = pd.DataFrame({"parameter": "a", "rank": np.tile(np.arange(L + 1.0), 3)})
    u = rank_uniformity(flat, L, bins=5)
    assert u.loc[0, "chi2"] == pytest.approx(0.0) and u.loc[0, "p_value"] == pytest.approx(1.0)
    piled = pd.DataFrame({"parameter": "a", "rank": np.zeros(60)})
    assert rank_uniformity(piled, L, bins=5).loc[0, "p_value"] < 1e-6


@pytest.mark.parametrize("model", SBC_MODELS)
def test_sbc_reduced(model, tmp_path):
    n = 8 if model == "lmm" else 6
    res = run_sbc(model, n, n_ranks=L, seed=2, bins=5, out=tmp_path, **TINY)
    params = res.uniformity["parameter"].tolist()
    assert len(params) >= 4 and len(res.ranks) == n * len(params)
    assert (res.ranks["error"] == "").all(), res.ranks["error"].unique()
    assert res.ranks["rank"].between(0, L).all() and np.isfinite(res.ranks["truth"]).all()
    assert (res.uniformity["n"] == n).all() and res.uniformity["p_value"].between(0, 1).all()
    assert (tmp_path / f"sbc_{model}_ranks.png").stat().st_size > 1000
    assert len(pd.read_csv(tmp_path / f"sbc_{model}_ranks.csv")) == len(res.ranks)


def test_validate_methods_sbc_flag(tmp_path):
    from typer.testing import CliRunner

    from analysis.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["validate-methods", "--sbc", "mmrm", "--datasets", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "== SBC mmrm: 2 simulations" in res.stdout and "diff_change_end" in res.stdout
    assert (tmp_path / "sbc_mmrm_uniformity.csv").is_file()
    bad = runner.invoke(app, ["validate-methods", "--sbc", "joint"])
    assert bad.exit_code == 2 and "--sbc must be one of" in bad.output


def test_bayes_null_row_shares_the_frequentist_null_trials():
    est, ref = get_estimator("bayes_lmm_null"), get_estimator("lmm_satterthwaite_null")
    assert est.family == "type I error" and est.seed_stream == ref.seed_stream == "trial_null"
    data, truth = est.simulate(dataset_rng(5, est, 2))
    ref_data, ref_truth = ref.simulate(dataset_rng(5, ref, 2))
    assert truth == ref_truth == 0.0
    pd.testing.assert_frame_equal(data[ref_data.columns], ref_data)
    # a null trial: both arms have the same true slope
    arms = data.groupby("arm")["bmd_spine"].size()
    assert set(arms.index) == {"placebo", "active"}
