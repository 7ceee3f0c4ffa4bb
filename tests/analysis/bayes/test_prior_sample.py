"""Tests of ``analysis/bayes/prior_sample.py``: above its cap the prior predictive check draws for a
seeded, group-stratified sample of patients (issue #18: its arrays no longer grow with the study),
keeps the whole study's observed ranges and says so; at or below the cap nothing changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import models  # noqa: F401  (compile caches before pymc)
from analysis.bayes import prior_sample
from analysis.bayes.fit import analysis_frame
from analysis.bayes.prior_checks import prior_predictive, prior_predictive_figure
from analysis.bayes.prior_sample import _allocate, patient_sample
from analysis.study.clinical import derive
from analysis.study.data import load_twin

SETS = ("weakly_informative", "vague")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    out, _ = analysis_frame(derive(load_twin().frame))
    return out


@pytest.fixture(scope="module")
def big(frame) -> pd.DataFrame:
    """The twin's patients ten times over (340 patients)."""
    out = pd.concat([frame.assign(patient_id=frame["patient_id"] + f"-{k}") for k in range(10)],
                    ignore_index=True)
    out.attrs = dict(frame.attrs)
    return out


def test_allocation_is_proportional_with_every_group_and_the_cap():
    assert _allocate(np.array([50, 50]), 10).tolist() == [5, 5]
    k = _allocate(np.array([1000, 3, 7]), 20)
    assert k.sum() == 20 and (k >= 1).all()
    assert _allocate(np.array([2, 2]), 3).sum() == 3


def test_large_study_draws_for_a_capped_sample(big, monkeypatch):
    monkeypatch.setattr(prior_sample, "PRIOR_PREDICTIVE_MAX_PATIENTS", 40)
    table, samples = prior_predictive(big, "spine", SETS, draws=50, seed=2)
    n = big.loc[big["bmd_spine"].notna(), "patient_id"].nunique()
    note = f"prior predictive on a random 40 of {n} patients"
    assert table.attrs["sample"] == note
    whole_base = big.loc[(big["month"] == 0) & big["bmd_spine"].notna(), "bmd_spine"]
    for name in SETS:
        s = samples[name]
        assert s["sample"] == note
        assert s["baseline"].shape == (50, 40)  # one month-0 row per sampled patient
        assert s["pct_change"].shape[0] == 50 and s["pct_change"].shape[1] <= 40
        assert s["group"].size == s["pct_change"].shape[1]
        assert set(s["group"]) == {0, 1}  # both groups drawn
        assert s["observed_baseline"].size == whole_base.size  # observed: the whole study
    b = table[(table["quantity"] == "baseline BMD")].iloc[0]
    assert b.observed_low == whole_base.min() and b.observed_high == whole_base.max()
    fig = prior_predictive_figure(samples)
    assert note in fig._suptitle.get_text()
    # the same seed draws the same sample; another seed another one
    again = patient_sample(big, "spine", "responder", 2, 40)[0]
    other = patient_sample(big, "spine", "responder", 3, 40)[0]
    assert set(again["patient_id"]) == set(patient_sample(big, "spine", "responder", 2, 40)[0]["patient_id"])
    assert set(again["patient_id"]) != set(other["patient_id"])


def test_at_or_below_the_cap_nothing_changes(frame, monkeypatch):
    n = frame.loc[frame["bmd_spine"].notna(), "patient_id"].nunique()
    uncapped = prior_predictive(frame, "spine", SETS, draws=40, seed=4, max_patients=10**9)
    monkeypatch.setattr(prior_sample, "PRIOR_PREDICTIVE_MAX_PATIENTS", n)
    capped = prior_predictive(frame, "spine", SETS, draws=40, seed=4)
    assert capped[0].attrs["sample"] is None
    pd.testing.assert_frame_equal(capped[0], uncapped[0], check_exact=True)
    for name in SETS:
        for key in ("baseline", "pct_change", "pct_group"):
            np.testing.assert_array_equal(capped[1][name][key], uncapped[1][name][key])
    assert patient_sample(frame, "spine", "responder", 0, n)[0] is frame
