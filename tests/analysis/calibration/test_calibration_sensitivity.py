"""The sensitivity estimators of :mod:`analysis.calibration.estimators_sensitivity`: the delta truth
against a large simulation of the shifted full data, the shared streams, and a reduced calibration
study (few data sets, wide bounds; the full study is the benchmark)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.calibration import estimator_names, registered, run_calibration
from analysis.calibration.designs import TRIAL_TRUTH, pct_change_difference
from analysis.calibration.estimators_sensitivity import (
    DELTA_ACTIVE,
    DELTA_PLACEBO,
    delta_truth,
    expected_years_after_dropout,
    shifted_pct_changes,
)
from analysis.calibration.spec import dataset_rng

NAMES = ["delta_mi_true", "delta_mi_mar", "j2r_condmean_bootstrap"]


def test_expected_years_after_dropout_by_hand():
    h = TRIAL_TRUTH.dropout_hazard
    assert expected_years_after_dropout() == pytest.approx(h * 2 + (1 - h) * h * 1.5 + (1 - h) ** 2 * h * 1.0)
    assert delta_truth(0.0, 0.0) == pytest.approx(pct_change_difference(TRIAL_TRUTH))
    assert delta_truth() < delta_truth(0.0, 0.0)


def test_delta_truth_matches_a_large_simulation():
    n = 16000
    a, p = shifted_pct_changes(n, seed=7)
    a0, p0 = shifted_pct_changes(n, seed=7, delta_placebo=0.0, delta_active=0.0)
    # the shift alone (same data, same dropout): delta_g * E[(T - t_d)/12] per arm
    e = expected_years_after_dropout()
    for shift, delta in ((a - a0, DELTA_ACTIVE), (p - p0, DELTA_PLACEBO)):
        assert shift.mean() == pytest.approx(delta * e, abs=4 * shift.std(ddof=1) / np.sqrt(shift.size))
    se = np.sqrt(a.var(ddof=1) / a.size + p.var(ddof=1) / p.size)
    assert a.mean() - p.mean() == pytest.approx(delta_truth(), abs=4 * se)


def test_registered_on_shared_streams():
    reg = registered()
    assert set(NAMES) <= set(estimator_names())
    assert reg["delta_mi_true"].seed_stream == reg["delta_mi_mar"].seed_stream
    assert reg["delta_mi_mar"].expected and not reg["delta_mi_true"].expected
    jk, bs = reg["j2r_condmean_jackknife"], reg["j2r_condmean_bootstrap"]
    assert jk.seed_stream == bs.seed_stream
    (d1, t1), (d2, t2) = jk.simulate(dataset_rng(3, jk, 1)), bs.simulate(dataset_rng(3, bs, 1))
    assert t1 == t2 and d1["seed"] == d2["seed"]
    np.testing.assert_array_equal(d1["sim"]["y"], d2["sim"]["y"])


@pytest.fixture(scope="module")
def reduced():
    return run_calibration(NAMES, datasets=6, seed=19, chunk_size=3)


@pytest.mark.parametrize("name", NAMES)
def test_sensitivity_estimator_in_reduced_form(reduced, name):
    row = reduced.summary.set_index("estimator").loc[name]
    assert row["failed"] == 0, reduced.raw.loc[reduced.raw["estimator"] == name, "error"].tolist()
    spread = max(row["empirical_se"], row["model_se"])
    assert abs(row["bias"]) < 3 * spread
    assert 0.25 < row["se_ratio"] < 4
    if name != "delta_mi_mar":
        assert row["coverage"] >= 0.5


def test_mar_is_shifted_against_the_true_delta(reduced):
    raw = reduced.raw.set_index(["estimator", "dataset"])["estimate"]
    gap = (raw.loc["delta_mi_mar"] - raw.loc["delta_mi_true"]).to_numpy()
    # same imputations: the gap is the delta shift of the imputed values, positive on average
    assert gap.mean() > 0
    assert raw.loc["delta_mi_true"].index.equals(raw.loc["delta_mi_mar"].index)
