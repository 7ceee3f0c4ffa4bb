"""The conditional-mean samples of :mod:`analysis.sensitivity.ice.methods` are made one at a time: a
50,000-patient study's jackknife held every leave-one-out index array at once (20 GB) and was killed
(issue #18)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from analysis.sensitivity.ice.methods import _condmean_samples


def test_jackknife_samples_are_every_patient_then_each_left_out_made_lazily():
    samples, count = _condmean_samples("condmean_jackknife", 5, 200)
    assert count == 6 and iter(samples) is samples  # an iterator, not a list
    rows = list(samples)
    np.testing.assert_array_equal(rows[0], np.arange(5))
    for i, r in enumerate(rows[1:]):
        np.testing.assert_array_equal(r, np.delete(np.arange(5), i))


def test_a_large_jackknife_costs_one_sample_at_a_time():
    tracemalloc.start()
    try:
        samples, count = _condmean_samples("condmean_jackknife", 200_000, 200)
        first, second = next(samples), next(samples)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_001 and second.size == 199_999 and second[0] == 1
    assert peak < 20 * 2**20  # a few index arrays of 1.6 MB, not 200,000 of them (320 GB)


def test_bootstrap_samples_are_every_patient_then_drawn_by_the_caller():
    samples, count = _condmean_samples("condmean_bootstrap", 4, 3)
    rows = list(samples)
    assert count == 4 and len(rows) == 4
    np.testing.assert_array_equal(rows[0], np.arange(4))
    assert rows[1:] == [None, None, None]
