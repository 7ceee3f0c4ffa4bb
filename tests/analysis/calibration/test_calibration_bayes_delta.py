"""The Bayesian delta-model estimators of :mod:`analysis.calibration.estimators_bayes_delta`: the truth
(% change of the group means under the delta shift) against a large simulation of the shifted full
data, the shared ``delta_mnar`` data sets, equality with the analysis's own table row, and a reduced
run with tiny draws (the calibration itself is the benchmark study)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis.calibration.designs import TRIAL_N, TRIAL_TRUTH
from analysis.calibration.estimators_bayes_delta import (
    ESTIMATORS,
    bayes_delta_estimators,
    bayes_delta_truth,
    fit_bayes_delta,
    mar_bias,
    predicted_coverage,
    ratio_of_means_difference,
    setup_bayes_delta,
    shifted_group_means,
    var_years_after_dropout,
    weight_sd,
)
from analysis.calibration.estimators_sensitivity import (
    DELTA_ACTIVE,
    DELTA_PLACEBO,
    delta_truth,
    expected_years_after_dropout,
    shifted_pct_changes,
)
from analysis.calibration.estimators_sensitivity import (
    ESTIMATORS as SENSITIVITY,
)
from analysis.calibration.execution import Chunk, run_chunk
from analysis.calibration.spec import dataset_rng
from tests.calibration_rows import assert_sane_rows

TINY = {"draws": 100, "tune": 100, "chains": 2}
SEED = 19


def _rom(y0: np.ndarray, yt: np.ndarray) -> tuple[float, np.ndarray]:
    """% change of the mean, and each patient's influence on it (delta method)."""
    r = yt.mean() / y0.mean()
    return 100.0 * (r - 1.0), 100.0 * (yt - r * y0) / y0.mean()


def test_dropout_weight_moments_against_simulated_dropout():
    rng = np.random.default_rng(3)
    h, visits = TRIAL_TRUTH.dropout_hazard, np.array(TRIAL_TRUTH.visits)
    stay = np.cumprod(rng.random((20000, TRIAL_N, visits.size - 1)) >= h, axis=2).astype(bool)
    last = np.where(stay, visits[1:], 0.0).max(axis=2)
    years = (visits[-1] - last) / 12.0  # 0 for completers
    assert years.mean() == pytest.approx(expected_years_after_dropout(), abs=4 * years.std() / np.sqrt(years.size))
    assert years.var() == pytest.approx(var_years_after_dropout(), rel=0.02)
    half = TRIAL_N // 2
    shift = DELTA_PLACEBO * years[:, :half].mean(axis=1) - DELTA_ACTIVE * years[:, half:].mean(axis=1)
    assert shift.std(ddof=1) == pytest.approx(weight_sd(), rel=0.03)


def test_truth_matches_a_large_simulation():
    n = 40000
    full = shifted_group_means(n, seed=7)
    mar = shifted_group_means(n, seed=7, delta_placebo=0.0, delta_active=0.0)
    (ra, za), (rp, zp) = _rom(*full["active"]), _rom(*full["placebo"])
    se = np.sqrt(za.var(ddof=1) / za.size + zp.var(ddof=1) / zp.size)
    assert ra - rp == pytest.approx(bayes_delta_truth(), abs=4 * se)
    # the shift alone (same data, same dropout): delta_g * E[(T - t_d)/12] per arm, on the ratio of means
    e = expected_years_after_dropout()
    for arm, delta in (("active", DELTA_ACTIVE), ("placebo", DELTA_PLACEBO)):
        y0, yt = full[arm]
        r0, z0 = _rom(*mar[arm])
        r1, z1 = _rom(y0, yt)
        assert r1 - r0 == pytest.approx(delta * e, abs=4 * np.std(z1 - z0, ddof=1) / np.sqrt(y0.size))
    # a ratio of means, not a mean of % changes: on the same patients the two differ by the derived gap
    pa, pp = (100.0 * (yt - y0) / y0 for y0, yt in (full["active"], full["placebo"]))
    gap = (ra - rp) - (pa.mean() - pp.mean())
    se_gap = np.sqrt(np.var(za - pa, ddof=1) / pa.size + np.var(zp - pp, ddof=1) / pp.size)
    assert gap == pytest.approx(bayes_delta_truth() - delta_truth(), abs=4 * se_gap)
    assert abs(bayes_delta_truth() - delta_truth()) > 8 * se_gap  # the check can tell the two estimands apart
    # and the brute force of the MI rows sees the same full data
    a, p = shifted_pct_changes(2000, seed=7)
    assert a.mean() - p.mean() == pytest.approx(delta_truth(), abs=4 * np.sqrt(a.var() / a.size + p.var() / p.size))


def test_truth_formulas():
    assert bayes_delta_truth(0.0, 0.0) == pytest.approx(ratio_of_means_difference())
    assert mar_bias() == pytest.approx(-(DELTA_ACTIVE - DELTA_PLACEBO) * expected_years_after_dropout())
    assert predicted_coverage(0.5) == pytest.approx(0.95, abs=1e-6)
    assert predicted_coverage(0.5, bias=0.5) < predicted_coverage(0.5, extra_sd=0.1) < 0.95


def test_on_the_delta_mnar_data_sets():
    mi = {e.name: e for e in SENSITIVITY}["delta_mi_true"]
    true, mar = ESTIMATORS
    assert [e.name for e in ESTIMATORS] == ["bayes_delta_true", "bayes_delta_mar"]
    assert true.seed_stream == mar.seed_stream == mi.seed_stream == "delta_mnar"
    assert all(e.family == "sensitivity" and e.setup is not None for e in ESTIMATORS)
    assert f"{mar_bias():+.2f}" in mar.expected
    (d1, t1), (d2, t2) = true.simulate(dataset_rng(3, true, 1)), mi.simulate(dataset_rng(3, mi, 1))
    assert d1["seed"] == d2["seed"] and d1["derived"].equals(d2["derived"])
    assert t1 == pytest.approx(bayes_delta_truth()) and t2 == pytest.approx(delta_truth())


@pytest.fixture(scope="module")
def tiny():
    return bayes_delta_estimators("_test", **TINY)


@pytest.fixture(scope="module")
def rows(tiny):
    before = plt.get_fignums()
    out = {e.name: run_chunk(Chunk(e, seed=SEED, indices=(0,))) for e in tiny}
    assert plt.get_fignums() == before  # a study fits hundreds of data sets per process: no figures
    return out


@pytest.mark.parametrize("index", [0, 1])
def test_reduced_run_chunk(tiny, rows, index):
    assert_sane_rows(rows[tiny[index].name])


def _observed_shift(derived) -> float:
    """delta_1 w_1 - delta_0 w_0 from the data by hand: mean years from the last spine DXA to month 24."""
    seen = derived.loc[derived["bmd_spine"].notna()]
    last = seen.groupby("patient_id")["month"].max()
    arm = seen.groupby("patient_id")["arm"].first()
    years = (24.0 - last) / 12.0
    return float(DELTA_ACTIVE * years[arm == "active"].mean() - DELTA_PLACEBO * years[arm == "placebo"].mean())


def test_true_and_mar_differ_by_the_delta_shift(tiny, rows):
    gap = float(rows[tiny[0].name]["estimate"].iloc[0] - rows[tiny[1].name]["estimate"].iloc[0])
    data, _ = tiny[0].simulate(dataset_rng(SEED, tiny[0], 0))
    # same data, seed and draws: the estimand is shifted by the observed dropout weights exactly ...
    assert gap == pytest.approx(_observed_shift(data["derived"]), abs=1e-8)
    # ... which are about minus the derived MAR bias (wide: the weights vary between data sets)
    assert gap == pytest.approx(-mar_bias(), abs=4 * weight_sd())


def test_equals_the_analysis_table_row(tiny):
    from analysis.sensitivity.bayes_delta import METHOD_MODEL, bayes_delta_analysis
    from analysis.sensitivity.delta import DeltaScenario

    data, _ = tiny[0].simulate(dataset_rng(SEED, tiny[0], 1))
    res = bayes_delta_analysis(data["derived"], [DeltaScenario(DELTA_PLACEBO, DELTA_ACTIVE)], sites=("spine",),
                               m=2, seed=data["seed"], endpoint_month=24.0, **TINY)
    for fig in res.figures.values():
        plt.close(fig)
    t = res.table
    row = t.loc[(t["method"] == METHOD_MODEL) & (t["measure"] == "pct") & (t["comparison"] == "active - placebo")]
    assert len(row) == 1
    mine = fit_bayes_delta(data, setup_bayes_delta(**TINY))
    np.testing.assert_allclose(mine, row[["estimate", "se", "ci_low", "ci_high"]].to_numpy()[0], rtol=1e-9)
