"""Every registered estimator in a reduced calibration study (few data sets, wide bounds), so the
runner and the estimators cannot rot; the full study (200 data sets each) is the benchmark
``tests/benchmarks/calibration/run_calibration.py``. ``--full-studies`` runs 40 data sets here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.calibration import estimator_names, registered, run_calibration

TIMING = ["fit_seconds", "simulate_seconds", "setup_seconds"]


@pytest.fixture(scope="module")
def reduced(full_studies, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration")
    return run_calibration(None, datasets=40 if full_studies else 4, seed=19, out=out, chunk_size=2), out


def test_the_registry_holds_this_slices_estimators():
    names = set(estimator_names())
    assert {"lmm_satterthwaite", "lmm_kenward_roger", "mmrm_us", "mmrm_cs", "mmrm_ar1", "completers_welch",
            "mi_mar_rubin", "lmm_satterthwaite_null", "lmm_kenward_roger_null", "mmrm_us_null",
            "j2r_condmean_jackknife", "j2r_rubin", "cr_condmean_jackknife", "cr_rubin", "cir_condmean_jackknife",
            "cir_rubin"} <= names
    for est in registered().values():
        assert est.design and est.estimand


@pytest.mark.parametrize("name", estimator_names())
def test_estimator_in_reduced_form(reduced, name):
    res, _ = reduced
    row = res.summary.set_index("estimator").loc[name]
    assert row["failed"] == 0, res.raw.loc[res.raw["estimator"] == name, "error"].tolist()
    assert row["coverage"] >= 0.5
    spread = max(row["empirical_se"], row["model_se"])
    assert abs(row["bias"]) < 3 * spread
    assert 0.25 < row["se_ratio"] < 4
    assert row["seconds_per_dataset"] > 0 and row["verdict"]
    if name.endswith("_null"):
        assert row["truth"] == 0.0


def test_reduced_outputs(reduced):
    _, out = reduced
    md = (out / "calibration.md").read_text()
    assert all(f"| {n} |" in md for n in estimator_names())
    assert (out / "calibration_coverage.png").stat().st_size > 1000


def test_two_workers_give_the_rows_of_one(reduced):
    res, _ = reduced
    pool = run_calibration(["completers_welch", "mmrm_us"], datasets=4, seed=19, workers=2, chunk_size=2)
    mine = res.raw.loc[res.raw["estimator"].isin(["completers_welch", "mmrm_us"])]
    a = pool.raw.drop(columns=TIMING).sort_values(["estimator", "dataset"]).reset_index(drop=True)
    b = mine.drop(columns=TIMING).sort_values(["estimator", "dataset"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert np.isfinite(a["estimate"]).all()
