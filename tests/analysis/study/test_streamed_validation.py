"""Validation streams a delimited file (issue #18): the cells are parsed and checked a chunk of rows
at a time (:data:`analysis.study.readers.CHUNK_ROWS`), and what comes out -- the frame, the report,
the design, the hash, every problem with its line -- is what reading the file whole gives.

Each test loads the same file with chunks of a few rows and with one chunk (``CHUNK_ROWS`` larger
than the file), so every chunk boundary case is exercised on small files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import analysis.study.data as data_module
from analysis.common.resources import data_path
from analysis.study import readers
from analysis.study.clinical import patient_status
from analysis.study.data import DataValidationError, load_dataset
from analysis.study.readers import read_file
from models.simulate import Design, simulate

WHOLE = 10**9


def _load(monkeypatch, rows: int, path, **kw):
    monkeypatch.setattr(readers, "CHUNK_ROWS", rows)
    return load_dataset(path, **kw)


def _problems(monkeypatch, rows: int, path, **kw) -> list[str]:
    monkeypatch.setattr(readers, "CHUNK_ROWS", rows)
    with pytest.raises(DataValidationError) as info:
        load_dataset(path, **kw)
    return [p.message for p in info.value.problems]


def _same(a, b):
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.report.to_dict() == b.report.to_dict()
    assert a.design == b.design and a.sha256 == b.sha256


def _trial(n: int = 40, seed: int = 1) -> pd.DataFrame:
    """A two-arm trial in the user's words: subject, days since randomisation, a visit index, arm."""
    rng = np.random.default_rng(seed)
    months = np.tile([0, 6, 12, 24], n)
    days = np.round(months * 30.4375 + rng.integers(-9, 10, months.size) * (months > 0))
    return pd.DataFrame({"SUBJ": np.repeat([f"T-{i:03d}" for i in range(n)], 4),
                         "TRT": np.repeat(rng.choice(["Placebo", "Active"], n), 4),
                         "AVISITN": np.tile([0, 1, 2, 3], n), "ADY": days,
                         "age": np.repeat(rng.integers(40, 80, n), 4),
                         "LS": np.round(0.9 + 0.05 * rng.standard_normal(months.size), 4),
                         "hip": np.round(0.8 + 0.05 * rng.standard_normal(months.size), 4)})


TRIAL = {"column_map": {"LS": "bmd_spine"}, "id": "SUBJ", "time": "ADY", "time_unit": "days", "visit": "AVISITN",
         "group": "TRT", "sites": {"spine": "bmd_spine", "total_hip": "hip"}}


@pytest.mark.parametrize("rows", [1, 7, 50])
def test_the_twin_streamed_equals_the_twin_read_whole(monkeypatch, rows):
    path = data_path("rajak_twin.csv")
    _same(_load(monkeypatch, rows, path, synthetic=True), _load(monkeypatch, WHOLE, path, synthetic=True))


@pytest.mark.parametrize("sep,decimal", [(",", "."), (";", ",")])
def test_a_trial_in_days_streamed_equals_it_read_whole(tmp_path, monkeypatch, sep, decimal):
    df = _trial().sample(frac=1, random_state=3)  # rows in any order: baselines in later chunks
    df.loc[df.index[5], "hip"] = np.nan  # a visit with one site missing
    path = tmp_path / "trial.csv"
    df.to_csv(path, index=False, sep=sep, decimal=decimal)
    streamed = _load(monkeypatch, 9, path, **TRIAL)
    _same(streamed, _load(monkeypatch, WHOLE, path, **TRIAL))
    assert streamed.report.n_patients == 40 and len(streamed.frame) == 160
    # the months are from each subject's own baseline, wherever in the file its rows are
    base = df[df["AVISITN"] == 0].set_index("SUBJ")["ADY"]
    f = streamed.frame
    expected = (df.set_index("SUBJ")["ADY"] - base.reindex(df["SUBJ"]).to_numpy()).to_numpy() / 30.4375
    got = f.set_index(["patient_id", "visit"])["month"]
    want = pd.Series(expected, index=pd.MultiIndex.from_arrays([df["SUBJ"], df["AVISITN"].map({0: 0, 1: 6, 2: 12,
                                                                                             3: 24}).astype(float)]))
    np.testing.assert_allclose(got.sort_index().to_numpy(), want.sort_index().to_numpy())


def test_validation_checks_one_chunk_of_rows_at_a_time(tmp_path, monkeypatch):
    path = tmp_path / "trial.csv"
    _trial(60).to_csv(path, index=False)
    seen: list[tuple[int, int, int]] = []
    check = data_module.check_rows

    def spy(df, *a, **kw):
        seen.append((len(df), int(df.index[0]), int(df.index[-1])))
        return check(df, *a, **kw)

    monkeypatch.setattr(data_module, "check_rows", spy)
    _load(monkeypatch, 50, path, **TRIAL)
    assert [s[0] for s in seen] == [50, 50, 50, 50, 40]  # 240 rows, never more than a chunk
    assert [s[1] for s in seen] == [0, 50, 100, 150, 200]  # each chunk indexed by its rows' positions


def test_problems_in_every_chunk_are_named_by_their_line(tmp_path, monkeypatch):
    df = _trial()
    df["LS"] = df["LS"].astype(object)
    df.loc[2, "LS"] = "n/d"  # line 4, first chunk
    df.loc[131, "LS"] = "<0.5"  # line 133, last chunk
    df.loc[70, "SUBJ"] = " "  # an empty subject in a middle chunk
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    streamed = _problems(monkeypatch, 25, path, **TRIAL)
    assert streamed == _problems(monkeypatch, WHOLE, path, **TRIAL)
    assert len(streamed) == 3
    assert any("line 4 " in m and "'n/d'" in m for m in streamed)
    assert any("line 133 " in m and "'<0.5'" in m for m in streamed)
    assert any("line 72" in m and "empty patient id" in m for m in streamed)


def test_range_problems_are_reported_only_without_coercion_problems_as_whole(tmp_path, monkeypatch):
    df = _trial()
    df.loc[150, "LS"] = 9.0  # out of range, last chunk
    path = tmp_path / "range.csv"
    df.to_csv(path, index=False)
    streamed = _problems(monkeypatch, 25, path, **TRIAL)
    assert streamed == _problems(monkeypatch, WHOLE, path, **TRIAL)
    assert len(streamed) == 1 and "line 152" in streamed[0] and "outside the physiological range" in streamed[0]
    df["LS"] = df["LS"].astype(object)
    df.loc[3, "LS"] = "x"  # a coercion problem in the first chunk: the range problem is not reported
    df.to_csv(path, index=False)
    streamed = _problems(monkeypatch, 25, path, **TRIAL)
    assert streamed == _problems(monkeypatch, WHOLE, path, **TRIAL)
    assert len(streamed) == 1 and "'x'" in streamed[0]


def test_structure_problems_span_chunks(tmp_path, monkeypatch):
    frame = simulate(Design(n_patients=12), seed=5).data
    first = frame["patient_id"].iloc[0]
    no_base = frame.drop(index=frame.index[(frame["patient_id"] == first) & (frame["month"] == 0)])
    dup = pd.concat([no_base, no_base.iloc[[5]]])  # a duplicate visit: its rows in the first and last chunks
    path = tmp_path / "structure.csv"
    dup.to_csv(path, index=False)
    streamed = _problems(monkeypatch, 10, path)
    assert streamed == _problems(monkeypatch, WHOLE, path)
    assert any("duplicate visit" in m for m in streamed) and any(f"patient {first} has no baseline" in m
                                                                   for m in streamed)


def test_a_time_that_is_not_a_number_in_a_later_chunk(tmp_path, monkeypatch):
    df = _trial().astype({"ADY": object})
    df.loc[120, "ADY"] = "day 1"
    path = tmp_path / "time.csv"
    df.to_csv(path, index=False)
    streamed = _problems(monkeypatch, 25, path, **TRIAL)
    assert streamed == _problems(monkeypatch, WHOLE, path, **TRIAL)
    assert streamed == [f"{path}: column 'ADY': 'day 1' is not a number"]


def test_an_unreadable_record_in_a_later_chunk_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "ragged.csv"
    lines = ["patient_id,month,bmd_spine,bmd_femoral_neck"] + [f"P{i},{m},0.9,0.8" for i in range(20)
                                                               for m in (0, 12)]
    lines[31] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(readers, "CHUNK_ROWS", 5)
    table = read_file(path, stream=True)
    assert table.streamed and table.frame.shape == (0, 4)
    with pytest.raises(DataValidationError) as streamed:
        list(table.chunks())
    with pytest.raises(DataValidationError) as whole:
        read_file(path)
    assert str(streamed.value) == str(whole.value)
    assert "not a readable CSV file" in str(streamed.value) and "line 32" in str(streamed.value)


def test_streamed_table_whole_is_the_table_read_whole(tmp_path, monkeypatch):
    path = tmp_path / "trial.csv"
    _trial().to_csv(path, index=False, sep=";", decimal=",")
    monkeypatch.setattr(readers, "CHUNK_ROWS", 7)
    streamed = read_file(path, stream=True)
    whole = read_file(path)
    pd.testing.assert_frame_equal(streamed.whole().frame, whole.frame)
    assert streamed.notes == whole.notes and not streamed.whole().streamed
    parts = list(streamed.chunks(["SUBJ", "ADY"]))
    assert max(len(p) for p in parts) == 7
    pd.testing.assert_frame_equal(pd.concat(parts), whole.frame[["SUBJ", "ADY"]])


def _patient_status_by_hand(frame, endpoint, bmd_cols):
    """The definition, patient by patient: a scan at the endpoint; the last visit; the next scheduled
    month after it for a non-completer."""
    schedule = sorted(frame["month"].dropna().unique())
    rows = []
    for pid, g in frame.groupby("patient_id", sort=False):
        completer = bool(g.loc[g["month"] == endpoint, bmd_cols].notna().any(axis=None))
        last = g["month"].max()
        later = [m for m in schedule if m > last]
        rows.append((pid, last, completer, np.nan if completer or not later else later[0]))
    return pd.DataFrame(rows, columns=["patient_id", "last_visit", "completer", "dropout_month"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_patient_status_is_its_definition(seed):
    frame = simulate(Design(n_patients=60), seed=seed).data
    rng = np.random.default_rng(seed)
    frame.loc[rng.random(len(frame)) < 0.2, "bmd_spine"] = np.nan  # scans missing at some visits
    frame.loc[rng.random(len(frame)) < 0.2, "bmd_femoral_neck"] = np.nan
    cols = ["bmd_spine", "bmd_femoral_neck"]
    got = patient_status(frame, 12, bmd_columns=cols)
    want = _patient_status_by_hand(frame, 12, cols)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert 0 < got["completer"].sum() < len(got)  # both kinds of patient are there
