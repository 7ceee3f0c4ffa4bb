"""Loading and validation: every failure named in the data contract gives one clear line."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from analysis.study.data import DataValidationError, load_dataset
from models.simulate import Design, simulate


@pytest.fixture
def frame():
    return simulate(Design(n_patients=8), seed=3).data


def _write(tmp_path, df, name="study.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _error(path, **kw):
    with pytest.raises(DataValidationError) as info:
        load_dataset(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_valid_file_summary(tmp_path, frame):
    ds = load_dataset(_write(tmp_path, frame))
    rep = ds.report
    assert rep.n_patients == 8
    assert rep.n_rows == len(frame)
    assert rep.visits_per_month[0.0] == 8
    completers = frame.loc[(frame.month == 12) & frame.bmd_spine.notna(), "patient_id"].nunique()
    assert rep.completers == completers
    assert sum(rep.dropouts_by_month.values()) == 8 - completers
    assert rep.missing_per_column["bmd_spine"] == int(frame.bmd_spine.isna().sum())
    assert "patients: 8" in rep.to_text()
    assert len(ds.sha256) == 64


def test_parquet_equals_csv(tmp_path, frame):
    a = load_dataset(_write(tmp_path, frame)).frame
    p = tmp_path / "study.parquet"
    frame.to_parquet(p)
    b = load_dataset(p).frame
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_input_not_modified(tmp_path, frame):
    path = _write(tmp_path, frame)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    load_dataset(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_missing_required_column(tmp_path, frame):
    msg = _error(_write(tmp_path, frame.drop(columns=["bmd_femoral_neck"])))
    assert "missing required column 'bmd_femoral_neck'" in msg


def test_non_numeric_value(tmp_path, frame):
    df = frame.astype({"bmd_spine": object})
    df.loc[4, "bmd_spine"] = "0,912"
    msg = _error(_write(tmp_path, df))
    assert "line 6" in msg and "column 'bmd_spine'" in msg and "non-numeric value '0,912'" in msg
    assert f"patient {df.loc[4, 'patient_id']}" in msg


def test_bmd_outside_physiological_range(tmp_path, frame):
    df = frame.copy()
    df.loc[0, "bmd_femoral_neck"] = 9.12
    msg = _error(_write(tmp_path, df))
    assert "line 2" in msg and "column 'bmd_femoral_neck': value 9.12 outside" in msg
    assert "physiological range 0.2-2.5 g/cm^2" in msg


def test_negative_dose(tmp_path, frame):
    df = frame.copy()
    df.loc[2, "prednisolone_mg"] = -5
    msg = _error(_write(tmp_path, df))
    assert "line 4" in msg and "column 'prednisolone_mg': negative dose -5" in msg
    assert "np." not in msg  # the value as written, not numpy's repr


def test_duplicate_patient_visit(tmp_path, frame):
    df = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    msg = _error(_write(tmp_path, df))
    pid, month = frame.loc[1, "patient_id"], frame.loc[1, "month"]
    assert f"duplicate visit for patient {pid} at month {month:g}" in msg
    assert f"line 3 and line {len(df) + 1}" in msg


def test_no_baseline_visit(tmp_path, frame):
    pid = frame.loc[0, "patient_id"]
    df = frame[~((frame.patient_id == pid) & (frame.month == 0))]
    msg = _error(_write(tmp_path, df))
    assert f"patient {pid} has no baseline visit" in msg


def test_covariate_changes_within_patient(tmp_path, frame):
    df = frame.copy()
    pid = df.loc[1, "patient_id"]
    assert df.loc[1, "month"] == 3 and df.loc[0, "patient_id"] == pid
    df.loc[1, "age"] = df.loc[0, "age"] + 5  # five years older three months later: not an age at the visit
    msg = _error(_write(tmp_path, df))
    assert f"column 'age' changes within patient {pid}" in msg and "line 3" in msg
    assert f"({df.loc[0, 'age']:g} at line 2, {df.loc[1, 'age']:g} at line 3)" in msg
    assert "an age at each visit grows with the time since baseline, within 1 year" in msg


@pytest.mark.parametrize("column,value", [("sex", "M"), ("bmi", 40.0)])
def test_other_baseline_covariates_that_change_are_one_line(tmp_path, frame, column, value):
    df = frame.copy()
    pid = df.loc[1, "patient_id"]
    df.loc[1, column] = value if df.loc[0, column] != value else "F" if column == "sex" else 41.0
    msg = _error(_write(tmp_path, df))
    assert f"column '{column}' changes within patient {pid}" in msg and "line 3" in msg
    assert "age at each visit" not in msg


def _age_at_each_visit(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The age at each visit, as a register would give it: whole years, from a birthday spread over
    the year before baseline."""
    df = frame.copy()
    exact = df["patient_id"].map({p: a + rng.uniform(0, 1) for p, a in
                                  df.groupby("patient_id")["age"].first().items()})
    df["age"] = np.floor(exact + df["month"] / 12.0)
    return df


def test_age_at_each_visit_is_taken_at_baseline_with_a_note(tmp_path):
    frame = simulate(Design(n_patients=30), seed=4).data
    df = _age_at_each_visit(frame, np.random.default_rng(0))
    grows = df.groupby("patient_id")["age"].nunique() > 1
    assert grows.sum() >= 5  # the test means something: many patients have a birthday during the study
    path = _write(tmp_path, df)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    ds = load_dataset(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    baseline = df[df["month"] == 0].set_index("patient_id")["age"]
    got = ds.frame.groupby("patient_id")["age"]
    assert (got.nunique() == 1).all()
    pd.testing.assert_series_equal(got.first().sort_index(), baseline.sort_index().astype(float), check_names=False)
    note = [n for n in ds.report.notes if n.startswith("age changes with the visits: taken at baseline")]
    assert len(note) == 1 and f"in {int(grows.sum())} of 30 patients" in note[0]
    assert "note: age changes with the visits: taken at baseline" in ds.report.to_text()
    # the same study with age at baseline throughout loads to the same frame, without the note
    same = load_dataset(_write(tmp_path, frame.assign(age=frame["patient_id"].map(baseline)), "baseline.csv"))
    pd.testing.assert_frame_equal(same.frame, ds.frame, check_dtype=False)
    assert not any(n.startswith("age changes") for n in same.report.notes)


def test_age_at_each_visit_in_study_days(tmp_path):
    """Times in days: the elapsed time is months since each subject's first record; unsorted rows."""
    frame = simulate(Design(n_patients=12), seed=5).data
    df = _age_at_each_visit(frame, np.random.default_rng(1))
    df = df.assign(day=(df["month"] * 30.4375).round()).drop(columns=["month"]).sample(frac=1, random_state=2)
    ds = load_dataset(_write(tmp_path, df))
    assert (ds.frame.groupby("patient_id")["age"].nunique() == 1).all()
    base = df[df["day"] == 0].set_index("patient_id")["age"]
    assert (ds.frame.groupby("patient_id")["age"].first() == base.reindex(ds.frame["patient_id"].unique())).all()


def test_age_that_does_not_follow_the_visits_is_still_an_error(tmp_path):
    frame = simulate(Design(n_patients=10), seed=4).data
    df = _age_at_each_visit(frame, np.random.default_rng(0))
    last = df[df["month"] == 12].index[0]
    pid = df.at[last, "patient_id"]
    age0 = df.loc[(df["patient_id"] == pid) & (df["month"] == 0), "age"].iloc[0]
    df.loc[last, "age"] = age0 - 1  # a year younger a year later: |-1 - 1| = 2 > 1
    msg = _error(_write(tmp_path, df))
    assert f"column 'age' changes within patient {pid}" in msg and f"line {last + 2}" in msg
    assert f"{age0 - 1:g} at line {last + 2})" in msg and "within 1 year" in msg


@pytest.mark.parametrize("value,fragment", [(-3, "value -3 is not a valid month"),
                                            ("six", "non-numeric value 'six'"),
                                            (np.nan, "missing month")])
def test_bad_month(tmp_path, frame, value, fragment):
    df = frame.astype({"month": object})
    df.loc[3, "month"] = value
    msg = _error(_write(tmp_path, df))
    assert "column 'month'" in msg and fragment in msg and "line 5" in msg


def test_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    assert "empty file" in _error(p)
    p.write_text("patient_id,month,bmd_spine,bmd_femoral_neck\n")
    assert "no data rows" in _error(p)


def test_binary_file_named_csv(tmp_path, frame):
    p = tmp_path / "fake.csv"
    frame.to_parquet(p)
    assert "not a CSV file" in _error(p)


def test_corrupt_parquet(tmp_path, frame):
    p = tmp_path / "fake.parquet"
    frame.to_csv(p, index=False)
    assert "not a valid Parquet file" in _error(p)


def test_unknown_extension(tmp_path, frame):
    p = tmp_path / "study.ods"
    p.write_bytes(b"PK\x03\x04")
    assert "unknown extension '.ods'" in _error(p)


def test_unreadable_encoding(tmp_path, frame):
    p = tmp_path / "latin.csv"
    df = frame.assign(centre="Münster")
    p.write_bytes(df.to_csv(index=False).encode("latin-1"))
    msg = _error(p)
    assert "unreadable encoding" in msg and "0xfc" in msg
    ds = load_dataset(p, encoding="latin-1")  # the stated encoding reads it
    assert (ds.frame["centre"] == "Münster").all()
    assert ds.report.passthrough_columns == ["centre"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le"])
def test_utf16_file(tmp_path, frame, codec):
    """UTF-16 with a byte-order mark is read as is; without one, --encoding says it; undeclared
    UTF-16 without a BOM is reported as binary with the hint, not read as garbage."""
    p = tmp_path / "wide.csv"
    p.write_bytes(frame.assign(centre="Münster").to_csv(index=False).encode(codec))
    if codec == "utf-16":  # Python's utf-16 writes a BOM
        ds = load_dataset(p)
    else:
        msg = _error(p)
        assert "not a CSV file (binary content" in msg and "--encoding utf-16" in msg
        ds = load_dataset(p, encoding=codec)
    assert ds.report.n_patients == 8 and (ds.frame["centre"] == "Münster").all()


def test_file_not_found(tmp_path):
    assert "file not found" in _error(tmp_path / "nope.csv")


def test_bad_sex_value(tmp_path, frame):
    df = frame.copy()
    df.loc[df.patient_id == df.loc[0, "patient_id"], "sex"] = "X"
    assert "is not a sex" in _error(_write(tmp_path, df))


def test_sex_aliases_normalised(tmp_path, frame):
    df = frame.copy()
    df["sex"] = df["sex"].map({"F": "female", "M": "male"})
    ds = load_dataset(_write(tmp_path, df))
    assert set(ds.frame["sex"]) <= {"F", "M"}


def test_column_mapping(tmp_path, frame):
    df = frame.rename(columns={"bmd_spine": "LS_BMD", "patient_id": "subject"})
    path = _write(tmp_path, df)
    assert "missing required column 'patient_id'" in _error(path)
    ds = load_dataset(path, {"LS_BMD": "bmd_spine", "subject": "patient_id"})
    assert ds.report.column_mapping == {"LS_BMD": "bmd_spine", "subject": "patient_id"}
    assert "column mapping names column 'nope'" in _error(path, column_map={"nope": "bmd_spine"})


def test_excluded_rows_are_listed(tmp_path, frame):
    df = frame.copy()
    empty = frame.iloc[[0]].copy()
    empty["month"] = 24
    for c in ["bmd_spine", "bmd_femoral_neck", "tjc28", "sjc28", "crp_mg_l", "patient_global_mm",
              "evaluator_global_mm", "das28_crp", "cdai", "prednisolone_mg", "alp_u_l"]:
        empty[c] = np.nan
    df = pd.concat([df, empty], ignore_index=True)
    ds = load_dataset(_write(tmp_path, df))
    assert len(ds.frame) == len(frame)
    assert len(ds.report.excluded) == 1
    ex = ds.report.excluded[0]
    assert ex.patient == frame.loc[0, "patient_id"] and ex.month == 24 and ex.where == f"line {len(df) + 1}"
    assert "no value recorded" in ds.report.to_text()


def test_all_problems_are_collected(tmp_path, frame):
    df = frame.copy()
    df.loc[0, "bmd_spine"] = 5.0
    df.loc[1, "bmd_spine"] = 0.01
    with pytest.raises(DataValidationError) as info:
        load_dataset(_write(tmp_path, df))
    assert len(info.value.problems) == 2
    assert "(and 1 more problem)" in str(info.value)


def test_no_disease_activity(tmp_path, frame):
    df = frame.drop(columns=["das28_crp", "cdai", "tjc28"])
    assert "no disease activity" in _error(_write(tmp_path, df))


def test_cdai_only_file(tmp_path, frame):
    """cDAI alone is disease activity: the file is valid; responders then need the CDAI50 rule
    (the EULAR rule says clearly that it needs DAS28-CRP)."""
    from analysis.study.clinical import ResponderRule, derive

    df = frame.drop(columns=["das28_crp", "tjc28", "sjc28", "crp_mg_l", "patient_global_mm",
                             "evaluator_global_mm"])
    ds = load_dataset(_write(tmp_path, df))
    with pytest.raises(ValueError, match="needs a 'das28_crp' column.*'cdai50'"):
        derive(ds.frame)
    d = derive(ds.frame, ResponderRule(kind="cdai50"))
    per = d.drop_duplicates("patient_id").set_index("patient_id")
    c = df.pivot_table(index="patient_id", columns="month", values="cdai")
    expected = (c[0] - c[12]) >= 0.5 * c[0]
    defined = per["responder"].notna()
    assert defined.sum() == c[12].notna().sum() > 0
    assert (per.loc[defined, "responder"].astype(bool) == expected[per.index[defined]]).all()


def test_user_responder_column(tmp_path, frame):
    df = frame.copy()
    df["responder"] = "yes"
    ds = load_dataset(_write(tmp_path, df))
    assert ds.frame["responder"].all()
    df["responder"] = "maybe"
    assert "not a responder flag" in _error(_write(tmp_path, df))
