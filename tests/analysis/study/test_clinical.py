"""Clinical derivations against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.study.clinical import (
    ResponderRule,
    TScoreReference,
    cdai,
    classify_responders,
    das28_crp,
    derive,
    eular_response,
    patient_status,
    percent_change,
    tscores,
)


def test_das28_crp_hand_computed():
    # 0.56*sqrt(4) + 0.28*sqrt(9) + 0.36*ln(15+1) + 0.014*50 + 0.96
    expected = 1.12 + 0.84 + 0.36 * math.log(16.0) + 0.70 + 0.96
    assert das28_crp(4, 9, 15.0, 50) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(4.618132, abs=1e-6)
    # remission-like values
    assert das28_crp(0, 0, 0.0, 0) == pytest.approx(0.96)


def test_das28_missing_component_gives_missing():
    assert np.isnan(das28_crp([4], [np.nan], [15.0], [50]))[0]


def test_cdai_uses_0_to_10_globals():
    assert cdai(4, 9, 50, 30) == pytest.approx(4 + 9 + 5.0 + 3.0)


@pytest.mark.parametrize("base,follow,expected", [
    (5.5, 3.0, "good"),        # improvement 2.5, current <= 3.2
    (5.5, 4.0, "moderate"),    # improvement 1.5, current > 3.2
    (5.5, 5.0, "none"),        # improvement 0.5
    (6.0, 5.2, "none"),        # improvement 0.8 but current > 5.1
    (6.5, 5.2, "moderate"),    # improvement 1.3 even though current > 5.1
    (4.0, 3.3, "moderate"),    # improvement 0.7
    (4.0, 3.2, "moderate"),    # improvement 0.8, current <= 3.2, not > 1.2
    (4.4, 3.2, "moderate"),    # improvement exactly 1.2 is not > 1.2 (no float artefact)
    (4.41, 3.2, "good"),
    (3.0, 2.5, "none"),
    (4.0, 4.6, "none"),        # worsening
])
def test_eular_response_table(base, follow, expected):
    assert eular_response([base], [follow])[0] == expected


def test_eular_missing_is_none():
    assert eular_response([5.0], [np.nan])[0] is None


def _frame():
    return pd.DataFrame({
        "patient_id": ["A", "A", "A", "B", "B", "C", "C", "C"],
        "month": [0, 6, 12, 0, 6, 0, 6, 12],
        "bmd_spine": [1.000, 0.990, 0.979, 0.900, 0.905, 0.937, np.nan, 0.950],
        "bmd_femoral_neck": [0.800, np.nan, 0.790, 0.700, 0.700, 0.858, np.nan, 0.870],
        "das28_crp": [5.5, 4.5, 4.0, 5.0, 4.0, 5.5, 3.5, 5.2],
        "sex": ["F", "F", "F", "M", "M", "F", "F", "F"],
    })


def test_percent_change():
    f = _frame()
    pc = percent_change(f, "bmd_spine")
    assert pc.iloc[2] == pytest.approx(-2.1)
    assert pc.iloc[0] == 0.0
    assert np.isnan(pc.iloc[6])


def test_tscores_sex_specific_and_female_for_all():
    bmd = pd.Series([0.937, 0.937])
    sex = pd.Series(["F", "M"])
    t = tscores(bmd, sex, "spine")
    assert t.iloc[0] == pytest.approx((0.937 - 1.047) / 0.110)
    assert t.iloc[1] == pytest.approx((0.937 - 1.068) / 0.110)
    t2 = tscores(bmd, sex, "spine", TScoreReference(sex_specific=False))
    assert t2.iloc[1] == pytest.approx(t.iloc[0])
    tf = tscores(pd.Series([0.858]), pd.Series(["F"]), "femoral_neck")
    assert tf.iloc[0] == pytest.approx(0.0)


def test_tscore_reference_errors(tmp_path):
    with pytest.raises(ValueError, match="no T-score reference named 'lunar'"):
        TScoreReference(name="lunar").table()
    bad = tmp_path / "ref.csv"
    bad.write_text("reference,site,sex,mean\nx,spine,F,1.0\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['sd'\]"):
        TScoreReference(name="x", path=str(bad)).table()


def test_responders_default_eular_and_undefined():
    r = classify_responders(_frame()).set_index("patient_id")
    assert r.loc["A", "eular_response"] == "moderate"      # 5.5 -> 4.0
    assert r.loc["A", "responder_status"] == "responder"
    assert r.loc["B", "responder_status"] == "undefined"   # no month-12 DAS28
    assert pd.isna(r.loc["B", "responder"])
    assert r.loc["C", "responder_status"] == "non-responder"  # 5.5 -> 5.2
    assert (r["responder_source"] == "derived").all()


def test_responders_das28_fall_rule():
    r = classify_responders(_frame(), ResponderRule(kind="das28_fall", threshold=1.2)).set_index("patient_id")
    assert bool(r.loc["A", "responder"]) is True    # fall 1.5
    assert bool(r.loc["C", "responder"]) is False   # fall 0.3
    assert "fall > 1.2" in ResponderRule(kind="das28_fall").describe()


def test_user_responder_column_overrides():
    f = _frame()
    f["responder"] = pd.array([False] * 3 + [True] * 2 + [None] * 3, dtype="boolean")
    r = classify_responders(f).set_index("patient_id")
    assert r.loc["A", "responder_status"] == "non-responder"
    assert r.loc["A", "responder_source"] == "user-supplied"
    assert r.loc["B", "responder_status"] == "responder"   # defined by the user despite no month-12 DAS28
    assert r.loc["C", "responder_source"] == "derived"


def test_patient_status_completer_last_visit_dropout():
    s = patient_status(_frame()).set_index("patient_id")
    assert bool(s.loc["A", "completer"]) and np.isnan(s.loc["A", "dropout_month"])
    assert not s.loc["B", "completer"]
    assert s.loc["B", "last_visit"] == 6 and s.loc["B", "dropout_month"] == 12
    assert bool(s.loc["C", "completer"])


def test_derive_adds_columns_and_leaves_input_alone():
    f = _frame()
    before = f.copy()
    d = derive(f)
    pd.testing.assert_frame_equal(f, before)
    for col in ("pct_change_spine", "tscore_spine", "tscore_change_spine", "responder_status", "completer",
                "dropout_month"):
        assert col in d.columns
    a12 = d[(d.patient_id == "A") & (d.month == 12)].iloc[0]
    assert a12["tscore_change_spine"] == pytest.approx((0.979 - 1.000) / 0.110)


def test_derive_scores_from_components():
    f = pd.DataFrame({"patient_id": ["A", "A"], "month": [0, 12], "bmd_spine": [1.0, 1.0],
                      "bmd_femoral_neck": [0.8, 0.8], "tjc28": [4, 0], "sjc28": [9, 0], "crp_mg_l": [15.0, 0.0],
                      "patient_global_mm": [50, 0], "evaluator_global_mm": [30, 0], "sex": ["F", "F"]})
    d = derive(f)
    assert d["das28_crp"].iloc[0] == pytest.approx(4.618132, abs=1e-6)
    assert d["cdai"].iloc[0] == pytest.approx(21.0)
    assert d["eular_response"].iloc[0] == "good"   # 4.62 -> 0.96
