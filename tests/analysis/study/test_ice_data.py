"""Intercurrent events of a user's study (analysis.study.ice): rbmi's data_ice file, ADaM-ish
names, visits given as labels, weeks and study days, discontinuation derived from missing follow-up
(an intermittent gap is not one), dropout reasons mapped to types, ICE columns of the study file, the
strategies and their aliases, and one line for every bad file."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.study.clinical import derive
from analysis.study.data import load_dataset
from analysis.study.design import parse_sites
from analysis.study.ice import (ICE_TYPES_SUGGESTED, STRATEGIES, UNSPECIFIED, DataValidationError, IceTable,
                                derive_discontinued, ice_from_columns, ice_from_reasons, parse_strategy,
                                read_ice_file, validate_ice)
from analysis.study.ice_strategy import normalise_strategy
from tests.analysis.study import own_study
from tests.analysis.study.ice_study import digest, load


@pytest.fixture
def study(tmp_path):
    return load(tmp_path)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


def _write(tmp_path, rows: dict, name: str = "ice.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# --- strategies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, parsed, canonical", [
    ("MAR", ("MAR", "MAR"), "MAR"), ("jr", ("JR", "JR"), "JR"), ("J2R", ("JR", "JR"), "JR"),
    ("jump_to_reference", ("JR", "JR"), "JR"), ("Copy_Reference", ("CR", "CR"), "CR"),
    ("copy increments", ("CIR", "CIR"), "CIR"), ("LMCF", ("LMCF", "LMCF"), "LMCF"),
    ("hypothetical", ("hypothetical", "MAR"), "hypothetical:MAR"),
    ("Hypothetical:j2r", ("hypothetical", "JR"), "hypothetical:JR"),
    ("treatment policy", ("treatment_policy", "MAR"), "treatment_policy"),
    ("while_on_treatment", ("while_on_treatment", None), "while_on_treatment"),
])
def test_strategies_read_as_rbmi_names_them(text, parsed, canonical):
    assert parse_strategy(text) == parsed
    assert normalise_strategy(text) == canonical


def test_unknown_and_composite_strategies_are_one_line_errors():
    with pytest.raises(DataValidationError) as exc:
        parse_strategy("last observation")
    line = _one_line(exc)
    assert "unknown strategy 'last observation'" in line and all(s in line for s in STRATEGIES)
    with pytest.raises(DataValidationError) as exc:
        parse_strategy("hypothetical:while_on_treatment")
    assert "hypothetical:LMCF" in _one_line(exc)
    with pytest.raises(DataValidationError) as exc:
        parse_strategy("Composite")
    assert "binary" in _one_line(exc) and "continuous" in str(exc.value)
    assert "bone_therapy" in ICE_TYPES_SUGGESTED


# --- ICE files --------------------------------------------------------------------------------------


def test_rbmi_data_ice_file_id_visit_strategy(tmp_path, study):
    ids = study.completers()[:3]
    path = _write(tmp_path, {"id": ids, "visit": [6, 12, 24], "strategy": ["JR", "j2r", "CIR"]})
    before = digest(path)
    ice = read_ice_file(path, study.derived, study.design)
    assert digest(path) == before
    f = ice.frame
    assert list(f["patient_id"]) == ids and list(f["month"]) == [6.0, 12.0, 24.0]
    assert set(f["ice_type"]) == {UNSPECIFIED} and list(f["strategy"]) == ["JR", "JR", "CIR"]
    assert list(f["where"]) == ["line 2", "line 3", "line 4"]
    assert ice.strategy_for({}, "MAR").to_dict() == dict(zip(ids, ["JR", "JR", "CIR"]))


def test_file_with_types_takes_the_estimands_strategies(tmp_path, study):
    ids = study.completers()[:3]
    path = _write(tmp_path, {"Subject": ids, "ICE_Month": ["Month 6", "12", "24"],
                             "Type": ["Bone therapy", "discontinued", "glucocorticoid"],
                             "strategy": ["", "", "while_on_treatment"]})
    ice = read_ice_file(path, study.derived, study.design)
    assert list(ice.frame["ice_type"]) == ["bone_therapy", "discontinued", "glucocorticoid"]
    assert list(ice.frame["strategy"]) == [None, None, "while_on_treatment"]
    s = ice.strategy_for({"bone_therapy": "hypothetical:JR"}, "MAR")
    assert s.to_dict() == {ids[0]: "hypothetical:JR", ids[1]: "MAR", ids[2]: "while_on_treatment"}
    assert ice.counts().to_dict() == {"bone_therapy": 1, "discontinued": 1, "glucocorticoid": 1}


def test_adam_names_in_a_sas_transport_file(tmp_path, study):
    import pyreadstat

    ids = study.completers()[:2]
    path = tmp_path / "adice.xpt"
    df = pd.DataFrame({"USUBJID": ids, "AVISITN": [12.0, 24.0], "REASON": ["FRACTURE", "DEATH"]})
    pyreadstat.write_xport(df, str(path), table_name="ADICE")
    ice = read_ice_file(path, study.derived, study.design)
    assert list(ice.frame["ice_type"]) == ["fracture", "death"] and list(ice.frame["month"]) == [12.0, 24.0]


def test_named_columns_and_several_mar_events_per_patient(tmp_path, study):
    pid = study.completers()[0]
    path = _write(tmp_path, {"subj": [pid, pid], "when": [12, 6], "what": ["discontinued", "glucocorticoid"]})
    ice = read_ice_file(path, study.derived, study.design, subject_col="SUBJ", visit_col="when", type_col="what",
                        strategies={"discontinued": "JR"}, default="MAR")
    assert list(ice.frame["month"]) == [6.0, 12.0]  # sorted by visit
    gov = ice.governing({"discontinued": "JR"}, "MAR")
    assert gov.loc[pid, "ice_type"] == "discontinued" and gov.loc[pid, "strategy"] == "JR"
    assert ice.first_month()[pid] == 6.0


def test_days_study_reads_weeks_days_and_months(tmp_path):
    s = load(tmp_path, unit="days")
    assert s.design.design.time_unit == "days"
    ids = s.completers()[:4]
    path = _write(tmp_path, {"patient_id": ids, "visit": ["Week 52", "Month 24", "183", "Day 730"],
                             "ice_type": ["discontinued"] * 4})
    ice = read_ice_file(path, s.derived, s.design)
    assert list(ice.frame.set_index("patient_id").loc[ids, "month"]) == [12.0, 24.0, 6.0, 24.0]
    bad = _write(tmp_path, {"patient_id": ids[:1], "visit": ["24"], "ice_type": ["death"]}, "bad.csv")
    with pytest.raises(DataValidationError) as exc:
        read_ice_file(bad, s.derived, s.design)
    line = _one_line(exc)
    assert "line 2" in line and "24 (0.79 months" in line and "ice_month" in line  # a bare 24 is day 24 here


def test_visit_labels_of_the_study_own_layout(tmp_path):
    path = tmp_path / "own.csv"
    own_study.own_layout().to_csv(path, index=False)
    ds = load_dataset(path, id="SUBJ", time="STUDYDAY", time_unit="days", visit="VISNO",
                      sites=parse_sites(["total_body=bmd"]), group="TRT")
    derived = derive(ds.frame, design=ds.design)
    pid = derived["patient_id"].iloc[0]
    ice = read_ice_file(_write(tmp_path, {"SUBJ": [pid], "VISNO": [2], "event": ["bone therapy"]}), derived,
                        ds.design)
    assert ice.frame["month"].tolist() == [12.0] and ice.frame["ice_type"].tolist() == ["bone_therapy"]


# --- from the study file ----------------------------------------------------------------------------


def test_derived_discontinuation_and_an_intermittent_gap(tmp_path):
    def gap(df):
        first_completer = df.groupby("patient_id")["visit"].max().eq(24).idxmax()
        return df[~((df["patient_id"] == first_completer) & (df["visit"] == 6))]

    s = load(tmp_path, edit=gap)
    ice = derive_discontinued(s.derived, s.design)
    assert ice.frame.equals(derive_discontinued(s.derived).frame)  # the design derive() left in attrs
    last = s.last_seen()
    expected = {p: {0.0: 6.0, 6.0: 12.0, 12.0: 24.0}[m] for p, m in last.items() if m < 24}
    assert dict(zip(ice.frame["patient_id"], ice.frame["month"])) == expected
    assert set(ice.frame["ice_type"]) == {"discontinued"}
    gapped = s.derived.groupby("patient_id")["month"].apply(lambda m: 6.0 not in set(m) and 24.0 in set(m))
    assert gapped.sum() == 1 and gapped.idxmax() not in set(ice.frame["patient_id"])  # not an ICE
    validate_ice(ice, s.derived, s.design, {"discontinued": "JR"})


def test_dropout_reasons_mapped_to_types(tmp_path):
    def reasons(df):
        last = df.groupby("patient_id")["visit"].transform("max")
        odd = df["patient_id"].str[-1].astype(int) % 2 == 1
        df["dropout_reason"] = ["Completed" if m == 24 else ("Adverse event" if o else "started Denosumab")
                                for m, o in zip(last, odd)]
        return df

    s = load(tmp_path, edit=reasons)
    mapping = {"adverse event": "discontinued", "Started denosumab": "bone_therapy", "completed": "none"}
    ice = ice_from_reasons(s.derived, "Dropout_Reason", mapping, source="trial.csv")  # design from derive
    dropped = derive_discontinued(s.derived, s.design)
    assert ice.frame[["patient_id", "month"]].equals(dropped.frame[["patient_id", "month"]])
    assert set(ice.frame["ice_type"]) == {"discontinued", "bone_therapy"}
    with pytest.raises(DataValidationError) as exc:
        ice_from_reasons(s.derived, "dropout_reason", {"completed": "none"}, s.design, source="trial.csv")
    line = _one_line(exc)
    assert "trial.csv (patient" in line and "is not in the reason map" in line and "--reason-map" in line


def test_ice_columns_of_the_study_file(tmp_path):
    def columns(df):
        df["ice_type"] = df["patient_id"].map({"S0001": "Fracture", "S0002": "glucocorticoid"})
        df["ice_month"] = df["patient_id"].map({"S0001": 12, "S0002": 6})
        return df

    s = load(tmp_path, edit=columns)
    ice = ice_from_columns(s.derived, "ICE_TYPE", "ice_month", s.design, source="trial.csv")
    assert ice.frame[["patient_id", "month", "ice_type"]].values.tolist() == [["S0001", 12.0, "fracture"],
                                                                               ["S0002", 6.0, "glucocorticoid"]]

    def conflict(df):
        df = columns(df)
        df.loc[(df["patient_id"] == "S0002") & (df["visit"] == 0), "ice_month"] = 12
        return df

    s = load(tmp_path, edit=conflict, name="conflict.csv")
    with pytest.raises(DataValidationError) as exc:
        ice_from_columns(s.derived, "ice_type", "ice_month", s.design, source="conflict.csv")
    line = _one_line(exc)
    assert "patient S0002" in line and "two values for one patient" in line and "ice_month" in line


# --- bad ICE files: one line each ---------------------------------------------------------------------


@pytest.mark.parametrize("rows, expected", [
    ({"patient_id": ["NOPE"], "month": [6], "ice_type": ["death"]}, ["line 2", "subject 'NOPE' is not in the study"]),
    ({"patient_id": ["{0}"], "month": [9], "ice_type": ["death"]}, ["line 2", "9 is not a visit month", "post-baseline visits: 6, 12, 24"]),
    ({"patient_id": ["{0}"], "month": [0], "ice_type": ["death"]}, ["line 2", "is the baseline"]),
    ({"patient_id": ["{0}", "{0}"], "month": [6, 12], "ice_type": ["fracture", "death"],
      "strategy": ["JR", "CR"]}, ["line 3", "two intercurrent events with non-MAR strategies", "JR", "CR"]),
    ({"patient_id": ["{0}"], "month": [6], "ice_type": ["death"], "strategy": ["J3R"]},
     ["line 2", "column 'strategy'", "unknown strategy 'J3R'", "hypothetical:CIR"]),
    ({"patient_id": ["{0}", ""], "month": [6, 12], "ice_type": ["death", "death"]}, ["line 3", "empty subject"]),
    ({"patient_id": ["{0}"], "month": [""], "ice_type": ["death"]}, ["line 2", "empty first affected visit"]),
    ({"patient_id": ["{0}"], "month": [6], "ice_type": [""]}, ["line 2", "empty ICE type"]),
    ({"patient_id": ["{0}", "{0}"], "month": [6, 12], "ice_type": ["death", "Death"]}, ["a second 'death' event"]),
], ids=["unknown subject", "visit outside the schedule", "baseline", "two non-MAR", "unknown strategy",
        "empty subject", "empty visit", "empty type", "same type twice"])
def test_bad_ice_file_gives_one_line(tmp_path, study, rows, expected):
    pid = study.completers()[0]
    rows = {k: [str(v).format(pid) if isinstance(v, str) else v for v in vals] for k, vals in rows.items()}
    path = _write(tmp_path, rows)
    before = digest(path)
    with pytest.raises(DataValidationError) as exc:
        read_ice_file(path, study.derived, study.design)
    line = _one_line(exc)
    assert line.startswith(str(path))
    for part in expected:
        assert part in line, (part, line)
    assert digest(path) == before


def test_non_mar_check_uses_the_estimands_table(study):
    pid = study.completers()[0]
    table = IceTable(pd.DataFrame({"patient_id": [pid, pid], "month": [6.0, 12.0],
                                   "ice_type": ["bone_therapy", "discontinued"]}), "plan")
    validate_ice(table, study.derived, study.design, {"discontinued": "JR"}, "MAR")
    with pytest.raises(DataValidationError) as exc:
        validate_ice(table, study.derived, study.design, {"discontinued": "JR", "bone_therapy": "hypothetical:CR"})
    assert "non-MAR" in _one_line(exc) and f"patient {pid}" in str(exc.value)
    with pytest.raises(DataValidationError) as exc:
        validate_ice(table, study.derived, study.design, {"discontinued": "X"})
    assert _one_line(exc).startswith("the estimand's strategies: unknown strategy 'X'")


def test_missing_column_names_the_flag(tmp_path, study):
    path = _write(tmp_path, {"patient_id": study.completers()[:1], "ice_type": ["death"]})
    with pytest.raises(DataValidationError) as exc:
        read_ice_file(path, study.derived, study.design)
    line = _one_line(exc)
    assert "no first affected visit column" in line and "--ice-month-column" in line
    with pytest.raises(DataValidationError) as exc:
        read_ice_file(path, study.derived, study.design, visit_col="ice_visit")
    assert "--ice-month-column 'ice_visit': no such column" in _one_line(exc)
