"""The calibration runner: resumable, independent of order, chunking and workers; setup once per
process; failed fits recorded; verdicts; outputs. Cheap estimators defined here (a normal mean and
its t interval) keep it fast; the registered ones run in test_calibration_reduced.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.calibration import (
    Estimator,
    dataset_rng,
    get_estimator,
    run_calibration,
    verdict,
)
from analysis.calibration.execution import RAW_COLUMNS

TIMING = ["fit_seconds", "simulate_seconds", "setup_seconds"]
SUMMARY_STABLE = ["estimator", "datasets", "failed", "truth", "mean_estimate", "bias", "bias_mcse", "empirical_se",
                  "model_se", "se_ratio", "coverage", "coverage_mcse", "excludes_zero", "verdict"]


def simulate_mean(rng):
    return rng.normal(1.0, 2.0, size=15), 1.0


def fit_t(y):
    m, se = y.mean(), y.std(ddof=1) / np.sqrt(y.size)
    q = stats.t.ppf(0.975, y.size - 1)
    return m, se, m - q * se, m + q * se


def fit_z_too_narrow(y):
    m, se = y.mean(), 0.5 * y.std(ddof=1) / np.sqrt(y.size)
    return m, se, m - 1.96 * se, m + 1.96 * se


SETUPS: list[int] = []


def setup_counted():
    SETUPS.append(1)
    return {"q": float(stats.t.ppf(0.975, 14))}


def fit_with_state(y, state):
    m, se = y.mean(), y.std(ddof=1) / np.sqrt(y.size)
    return m, se, m - state["q"] * se, m + state["q"] * se


def fit_fails_sometimes(y):
    if y[0] > 3.0:
        raise np.linalg.LinAlgError("singular for the test")
    return fit_t(y)


MEAN = Estimator("t_mean", "frequentist", simulate_mean, fit_t, "15 draws of N(1, 4)", "the mean")
NARROW = Estimator("z_narrow", "frequentist", simulate_mean, fit_z_too_narrow, "15 draws of N(1, 4)", "the mean",
                   stream="t_mean")
STATEFUL = Estimator("t_state", "frequentist", simulate_mean, fit_with_state, "15 draws", "the mean",
                     setup=setup_counted)
FLAKY = Estimator("t_flaky", "frequentist", simulate_mean, fit_fails_sometimes, "15 draws", "the mean")


def _stable(raw: pd.DataFrame) -> pd.DataFrame:
    return raw.drop(columns=TIMING).sort_values(["estimator", "dataset"]).reset_index(drop=True)


def test_interrupted_study_resumes_to_the_same_table(tmp_path):
    fresh = run_calibration([MEAN, NARROW], datasets=40, seed=7, out=tmp_path / "fresh", chunk_size=5)
    seen = []

    def interrupt(chunk, rows):
        seen.append(chunk.key)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_calibration([MEAN, NARROW], datasets=40, seed=7, out=tmp_path / "cut", chunk_size=5, on_chunk=interrupt)
    assert len(list((tmp_path / "cut" / "chunks").rglob("*.parquet"))) == 5
    rerun_chunks = []
    resumed = run_calibration([MEAN, NARROW], datasets=40, seed=7, out=tmp_path / "cut", chunk_size=5,
                              on_chunk=lambda c, r: rerun_chunks.append(c.key))
    assert len(rerun_chunks) == 16 - 5  # only the chunks not on disk ran
    pd.testing.assert_frame_equal(_stable(resumed.raw), _stable(fresh.raw))
    pd.testing.assert_frame_equal(resumed.summary[SUMMARY_STABLE], fresh.summary[SUMMARY_STABLE])
    again = []
    run_calibration([MEAN, NARROW], datasets=40, seed=7, out=tmp_path / "cut", chunk_size=5,
                    on_chunk=lambda c, r: again.append(c))
    assert again == []  # complete: nothing reruns
    # more data sets extend the study; fewer read a prefix
    more = run_calibration([MEAN], datasets=45, seed=7, out=tmp_path / "cut", chunk_size=5)
    assert list(more.raw["dataset"]) == list(range(45))
    fewer = run_calibration([MEAN], datasets=20, seed=7, out=tmp_path / "cut")
    pd.testing.assert_frame_equal(_stable(fewer.raw), _stable(fresh.raw.loc[(fresh.raw["estimator"] == "t_mean")
                                                                            & (fresh.raw["dataset"] < 20)]))
    for name in ("calibration.csv", "calibration.md", "raw.csv", "calibration_coverage.png",
                 "calibration_coverage.svg"):
        assert (tmp_path / "cut" / name).is_file()


def test_results_do_not_depend_on_order_or_chunking():
    a = run_calibration([MEAN, NARROW], datasets=12, seed=3, chunk_size=5)
    b = run_calibration([NARROW, MEAN], datasets=12, seed=3, chunk_size=2)
    pd.testing.assert_frame_equal(_stable(a.raw), _stable(b.raw))
    c = run_calibration([MEAN], datasets=12, seed=4)
    assert not np.allclose(c.raw["estimate"], a.raw.loc[a.raw["estimator"] == "t_mean", "estimate"])


def test_estimators_on_one_stream_see_the_same_data_sets():
    y1, _ = MEAN.simulate(dataset_rng(1, MEAN, 3))
    y2, _ = NARROW.simulate(dataset_rng(1, NARROW, 3))
    y3, _ = MEAN.simulate(dataset_rng(1, MEAN, 4))
    assert np.array_equal(y1, y2) and not np.array_equal(y1, y3)
    lmm_s, lmm_k = get_estimator("lmm_satterthwaite"), get_estimator("lmm_kenward_roger")
    f1, t1 = lmm_s.simulate(dataset_rng(1, lmm_s, 0))
    f2, t2 = lmm_k.simulate(dataset_rng(1, lmm_k, 0))
    pd.testing.assert_frame_equal(f1, f2)
    assert t1 == t2


def test_summary_and_verdicts_of_a_good_and_a_bad_interval():
    res = run_calibration([MEAN, NARROW], datasets=300, seed=2, chunk_size=100)
    s = res.summary.set_index("estimator")
    assert 0.92 <= s.loc["t_mean", "coverage"] <= 0.98
    assert s.loc["t_mean", "bias"] == pytest.approx(0.0, abs=4 * s.loc["t_mean", "bias_mcse"])
    assert s.loc["t_mean", "empirical_se"] == pytest.approx(2 / np.sqrt(15), rel=0.15)
    assert s.loc["z_narrow", "coverage"] < 0.8
    assert s.loc["z_narrow", "se_ratio"] == pytest.approx(0.5, rel=0.15)
    assert s.loc["z_narrow", "verdict"].startswith("below: model SE too small")
    c = s.loc["t_mean", "coverage"]
    assert s.loc["t_mean", "coverage_mcse"] == pytest.approx(np.sqrt(c * (1 - c) / 300))


def test_verdict_texts():
    assert verdict(0.95, 200, 0.0, 0.01, 1.0) == "93-97%: ok"
    assert verdict(0.99, 200, 0.0, 0.01, 1.0, expected="Rubin over-covers").startswith("above: expected: Rubin")
    assert "biased" in verdict(0.80, 200, 0.1, 0.01, 1.0)
    assert "too few data sets" in verdict(1.0, 5, 0.0, 0.01, 1.0)
    assert verdict(0.5, 200, 0.0, 0.01, 1.0) == "below: reason unknown"
    assert verdict(np.nan, 0, np.nan, np.nan, np.nan) == "no successful fit"
    assert verdict(0.95, 200, 0.0, 0.01, 1.0, failed=2).endswith("(2 failed fits left out)")


def test_setup_runs_once_per_process_and_failed_fits_are_rows():
    SETUPS.clear()
    res = run_calibration([STATEFUL, FLAKY], datasets=30, seed=1, chunk_size=4)
    assert len(SETUPS) <= 1  # once in this process (zero if an earlier test of this process ran it)
    raw = res.raw
    assert list(raw.columns) == RAW_COLUMNS
    flaky = raw.loc[raw["estimator"] == "t_flaky"]
    bad = flaky.loc[flaky["error"] != ""]
    assert len(bad) >= 1 and bad["error"].str.startswith("LinAlgError: singular").all()
    assert bad["estimate"].isna().all()
    row = res.summary.set_index("estimator").loc["t_flaky"]
    assert row["failed"] == len(bad) and row["verdict"].endswith(f"({len(bad)} failed fits left out)")
    state = res.summary.set_index("estimator").loc["t_state"]
    assert state["failed"] == 0


def test_a_directory_of_another_study_is_refused(tmp_path):
    run_calibration([MEAN], datasets=3, seed=1, out=tmp_path)
    with pytest.raises(ValueError, match="another calibration study"):
        run_calibration([MEAN], datasets=3, seed=2, out=tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        run_calibration([MEAN], datasets=3, seed=1, out=tmp_path)
    with pytest.raises(ValueError, match="unknown estimator"):
        run_calibration(["no_such_method"], datasets=3)
    with pytest.raises(ValueError, match="at least 1"):
        run_calibration([MEAN], datasets=0)


def test_markdown_names_date_version_and_command(tmp_path):
    res = run_calibration([MEAN], datasets=4, seed=9, out=tmp_path, command="rajak validate-methods --x")
    md = (tmp_path / "calibration.md").read_text()
    assert res.meta["version"] in md and res.meta["date"] in md and "`rajak validate-methods --x`" in md
    assert "| t_mean | frequentist | 4 |" in md
    csv = pd.read_csv(tmp_path / "calibration.csv")
    assert list(csv["estimator"]) == ["t_mean"]
    assert json.loads((tmp_path / "manifest.json").read_text())["seed"] == 9
