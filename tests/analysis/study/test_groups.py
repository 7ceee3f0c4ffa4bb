"""Strategies for undefined responder status."""

import pandas as pd
import pytest

from analysis.study.clinical import ResponderRule, derive
from analysis.study.groups import assign_groups


@pytest.fixture
def derived():
    # A: responder (5.5 -> 3.0); B: dropped after month 6, last DAS28 3.9 (fall 1.6 -> moderate);
    # C: dropped after baseline (no post-baseline DAS28); D: non-responder (5.0 -> 4.9)
    f = pd.DataFrame({
        "patient_id": ["A", "A", "A", "B", "B", "C", "D", "D", "D"],
        "month": [0, 6, 12, 0, 6, 0, 0, 6, 12],
        "bmd_spine": [1.0, 1.0, 1.0, 0.9, 0.9, 0.8, 0.95, 0.95, 0.94],
        "bmd_femoral_neck": [0.8] * 9,
        "das28_crp": [5.5, 4.0, 3.0, 5.5, 3.9, 5.0, 5.0, 5.0, 4.9],
        "sex": ["F"] * 9,
    })
    return derive(f)


def _groups(assignment):
    return assignment.frame.drop_duplicates("patient_id").set_index("patient_id")["analysis_group"].to_dict()


def test_exclude(derived):
    a = assign_groups(derived, "exclude")
    g = _groups(a)
    assert g["A"] == "responder" and g["D"] == "non-responder"
    assert pd.isna(g["B"]) and pd.isna(g["C"])
    assert a.excluded == ["B", "C"]
    assert "excluded" in a.describe() and "B, C" in a.describe()


def test_last_observed(derived):
    a = assign_groups(derived, "last_observed")
    g = _groups(a)
    assert g["B"] == "responder"          # 5.5 -> 3.9: improvement 1.6, EULAR moderate
    assert pd.isna(g["C"])                # nothing to carry forward
    assert a.reclassified == {"B": "responder (month 6)"} and a.excluded == ["C"]
    strict = assign_groups(derived, "last_observed", ResponderRule(kind="das28_fall", threshold=2.0))
    assert _groups(strict)["B"] == "non-responder"


def test_unknown_group(derived):
    a = assign_groups(derived, "unknown")
    g = _groups(a)
    assert g["B"] == "unknown" and g["C"] == "unknown" and a.excluded == []


def test_bad_strategy(derived):
    with pytest.raises(ValueError, match="unknown strategy"):
        assign_groups(derived, "impute")


def test_input_not_modified(derived):
    before = derived.copy()
    assign_groups(derived, "unknown")
    pd.testing.assert_frame_equal(derived, before)
