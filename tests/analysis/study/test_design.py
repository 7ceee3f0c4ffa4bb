"""Tests of ``analysis/study/design.py``: inferring a study's design from its columns, putting any file
into the canonical long form (time units, dates, nominal visits, sites, groups), resolving it on the
data, and one-line errors for designs that do not fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.study import load_twin
from analysis.study.design import (DAYS_PER_MONTH, DesignError, GroupSpec, StudyDesign, canonical_frame,
                                   from_mapping, infer_design, parse_covariates, parse_sites, resolve)
from analysis.study.rajak_design import RAJAK_DESIGN


def _trial(n: int = 12, seed: int = 0) -> pd.DataFrame:
    """A randomised trial in its own layout: calendar dates, a visit index, one site called ``bmd``,
    arms coded C/P, scans at months 0/6/12/24 with the visits falling a few days off schedule."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        start = pd.Timestamp("2021-01-04") + pd.Timedelta(days=int(rng.integers(0, 200)))
        arm = "C" if i % 2 else "P"
        for k, m in enumerate((0, 6, 12, 24)):
            jitter = 0 if m == 0 else int(rng.integers(-12, 13))
            rows.append({"SUBJ": f"S{i:03d}", "VISDT": (start + pd.Timedelta(days=round(m * DAYS_PER_MONTH) + jitter)),
                         "VISITNUM": k, "bmd": 1.0 + 0.01 * i - 0.002 * m * (arm == "P"), "TRT": arm,
                         "age": 60 + i})
    return pd.DataFrame(rows)


def test_rajak_design_is_what_the_twin_infers():
    twin = load_twin().frame
    inferred = infer_design(list(twin.columns), endpoint=12.0, covariates=("age", "sex", "bmi"),
                            reference="non-responder")
    assert inferred == RAJAK_DESIGN


def test_trial_in_its_own_layout_runs_with_flags_alone():
    raw = _trial()
    before = raw.copy()
    design = infer_design(list(raw.columns), id="SUBJ", time="VISDT", time_unit="date",
                          sites=parse_sites(["total_body=bmd"]), group="TRT", reference="P")
    frame = canonical_frame(raw, design)
    pd.testing.assert_frame_equal(raw, before)  # the input is never modified
    assert {"patient_id", "month", "visit", "bmd_total_body", "group"} <= set(frame.columns)
    assert frame.groupby("patient_id")["month"].min().eq(0).all()
    # days off schedule keep the actual month for the LMM and the nominal one for visit-wise tables
    assert sorted(frame["visit"].unique()) == [0, 6, 12, 24]
    assert not np.allclose(frame["month"], frame["visit"])
    assert np.abs(frame["month"] - frame["visit"]).max() < 0.5
    r = resolve(frame, design, "trial.csv")
    assert r.sites == ("total_body",) and r.endpoint == 24 and r.visits == (0, 6, 12, 24)
    assert r.group_levels == ("c", "p") and r.reference == "p" and r.comparisons == (("c", "p"),)
    assert r.covariates == ("age",)


def test_days_and_years_are_months_since_each_subjects_baseline():
    df = pd.DataFrame({"id": ["a", "a", "b", "b"], "t": [10, 10 + 365.25, 3, 3 + 182.625], "bmd_spine": 1.0})
    f = canonical_frame(df, infer_design(list(df.columns), time="t", time_unit="days"))
    np.testing.assert_allclose(f["month"], [0, 12, 0, 6])
    df = pd.DataFrame({"id": ["a", "a"], "yr": [1.0, 3.0], "bmd_spine": 1.0})
    f = canonical_frame(df, infer_design(list(df.columns), time="yr", time_unit="years"))
    np.testing.assert_allclose(f["month"], [0, 24])


def test_visit_column_is_used_as_given():
    df = pd.DataFrame({"patient_id": ["a"] * 3, "ADY": [1, 170, 380], "AVISITN": [0, 6, 12], "bmd_spine": 1.0})
    design = infer_design(list(df.columns), time="ADY", visit="AVISITN")
    f = canonical_frame(df, design)
    assert f["visit"].tolist() == [0, 6, 12]
    np.testing.assert_allclose(f["month"], [0, 169 / DAYS_PER_MONTH, 379 / DAYS_PER_MONTH])


def test_group_inference_derived_column_and_none():
    assert infer_design(["patient_id", "month", "bmd_spine", "das28_crp"]).group.kind == "derived"
    assert infer_design(["patient_id", "month", "bmd_spine"]).group == GroupSpec(kind="none")
    g = infer_design(["patient_id", "month", "bmd_spine", "arm"], group="arm").group
    assert g == GroupSpec(kind="column", column="arm")


def test_three_arms_compare_each_with_the_reference():
    df = _trial(n=9)
    df["TRT"] = np.array(["low", "high", "placebo"])[np.arange(len(df)) // 4 % 3]
    design = infer_design(list(df.columns), id="SUBJ", time="VISDT", time_unit="date", sites={"spine": "bmd"},
                          group="TRT")
    r = resolve(canonical_frame(df, design), design)
    assert r.reference == "placebo"  # found by name
    assert r.comparisons == (("high", "placebo"), ("low", "placebo"))


@pytest.mark.parametrize("given, message", [
    ({"id": "nope"}, "--id: no column 'nope'"),
    ({"group": "arm"}, "--group: no column 'arm'"),
    ({"sites": {"hip": "bmd_hip"}}, "--site hip: no column 'bmd_hip'"),
])
def test_named_columns_must_exist(given, message):
    with pytest.raises(DesignError, match=message):
        infer_design(["patient_id", "month", "bmd_spine"], **given)


def test_no_id_no_time_no_site_are_one_line_errors():
    with pytest.raises(DesignError, match="--id COLUMN"):
        infer_design(["x", "month", "bmd_spine"])
    with pytest.raises(DesignError, match="--time COLUMN"):
        infer_design(["patient_id", "x", "bmd_spine"])
    with pytest.raises(DesignError, match="--site NAME=COLUMN"):
        infer_design(["patient_id", "month", "bmd"])


def _resolve_error(df: pd.DataFrame, **given) -> str:
    design = infer_design(list(df.columns), **given)
    with pytest.raises(DesignError) as err:
        resolve(canonical_frame(df, design), design, "f.csv")
    assert "\n" not in str(err.value)
    return str(err.value)


def test_designs_that_do_not_fit_the_data():
    df = _trial()
    base = dict(id="SUBJ", time="VISDT", time_unit="date", sites={"spine": "bmd"})
    one = df.assign(TRT="P")
    assert "has one level" in _resolve_error(one, group="TRT", **base)
    assert "--reference 'x' is not a level" in _resolve_error(df, group="TRT", reference="x", **base)
    no_end = df[df["VISITNUM"] < 3]
    assert "endpoint month 24 is not a visit" in _resolve_error(no_end, endpoint=24.0, **base)
    empty = df.assign(bmd=np.nan)
    assert "has no value at all" in _resolve_error(empty, **base)
    lost = df.copy()
    lost.loc[(lost["TRT"] == "C") & (lost["VISITNUM"] == 3), "bmd"] = np.nan
    assert "group 'c' has no completer" in _resolve_error(lost, group="TRT", **base)
    switch = df.copy()
    switch.loc[0, "TRT"] = "C"  # S000 is P at its other visits
    assert "changes within subject S000" in _resolve_error(switch, group="TRT", **base)


def test_flag_parsers_and_plan_table():
    assert parse_sites(["total_body=bmd", "spine"]) == {"total_body": "bmd", "spine": "bmd_spine"}
    assert parse_covariates("none") == () and parse_covariates("age, sex") == ("age", "sex")
    assert parse_covariates(None) is None
    kw = from_mapping({"sites": ["hip=BMDHIP"], "covariates": "none", "group": "arm"})
    assert kw == {"sites": {"hip": "BMDHIP"}, "covariates": (), "group": "arm"}
    with pytest.raises(ValueError, match="lower-case"):
        StudyDesign(sites={"Total Hip": "x"})


def test_description_speaks_the_designs_words():
    text = infer_design(["SUBJ", "VISDT", "bmd", "TRT"], id="SUBJ", time="VISDT", time_unit="date",
                        sites={"total_body": "bmd"}, group="TRT", reference="P").describe()
    assert "total_body (bmd)" in text and "column 'TRT'" in text and "reference 'p'" in text
    assert "responder" not in text


def test_visit_index_is_placed_at_the_month_of_its_scans():
    raw = _trial()
    design = infer_design(list(raw.columns), id="SUBJ", time="VISDT", time_unit="date", visit="VISITNUM",
                          sites={"spine": "bmd"})
    f = canonical_frame(raw, design)
    assert dict(zip(raw["VISITNUM"], f["visit"])) == {0: 0, 1: 6, 2: 12, 3: 24}
    named = raw.assign(VISITNUM=raw["VISITNUM"].map({0: "Baseline", 1: "Week 26", 2: "Week 52", 3: "Week 104"}))
    g = canonical_frame(named, design)
    np.testing.assert_array_equal(g["visit"], f["visit"])
    clash = raw.assign(VISITNUM=raw["VISITNUM"].where(raw["VISITNUM"] != 1, 9).where(raw["VISITNUM"] != 2, 1))
    clash.loc[clash["VISITNUM"] == 9, "VISDT"] = clash.loc[clash["VISITNUM"] == 9, "VISDT"] + pd.Timedelta(days=183)
    with pytest.raises(DesignError, match="two visits fall at the same month"):
        canonical_frame(clash, design)


def test_canonical_frame_shares_the_other_columns_and_leaves_the_input_as_it_is():
    """The canonical form adds its columns without copying the file's others (a large file was held
    three times over while loading; issue #18), and the input frame is not modified."""
    raw = _trial()
    before = raw.copy()
    design = infer_design(list(raw.columns), id="SUBJ", time="VISDT", time_unit="date", visit="VISITNUM",
                          sites={"spine": "bmd"}, group="TRT")
    f = canonical_frame(raw, design)
    if int(pd.__version__.split(".")[0]) >= 3:  # copy-on-write: shared until written
        assert np.shares_memory(f["age"].to_numpy(), raw["age"].to_numpy())  # passed through, not copied
        assert np.shares_memory(f["bmd_spine"].to_numpy(), raw["bmd"].to_numpy())  # renamed, not copied
    f.loc[0, "age"] = -1.0  # what is done to the result stays there
    f["bmd_spine"] = 0.0
    pd.testing.assert_frame_equal(raw, before)
    assert list(f["group"].unique()) == ["p", "c"] and f["visit"].tolist()[:4] == [0.0, 6.0, 12.0, 24.0]


def test_canonical_months_are_the_canonical_frames_with_its_checks():
    """The loader converts a time in days or dates with :func:`canonical_months` alone (not the whole
    canonical frame, issue #18): the same months, and the same visit errors."""
    from analysis.study.design import canonical_months

    raw = _trial()
    design = infer_design(list(raw.columns), id="SUBJ", time="VISDT", time_unit="date", visit="VISITNUM",
                          sites={"spine": "bmd"})
    np.testing.assert_array_equal(canonical_months(raw, design).to_numpy(), canonical_frame(raw, design)["month"])
    empty = raw.assign(VISITNUM=raw["VISITNUM"].where(raw.index != 5))
    with pytest.raises(DesignError, match="column 'VISITNUM': empty at row 6"):
        canonical_months(empty, design)
