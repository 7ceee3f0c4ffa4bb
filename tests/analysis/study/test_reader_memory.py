"""Reading a large delimited file keeps memory near the file's size (issue #18): the decimal mark is
detected record by record, and pandas reads the decoded text in slices of the one string, not from a
copy (``io.StringIO`` keeps four bytes a character); the table read is the one read before."""

from __future__ import annotations

import csv
import io
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from analysis.study.data import load_dataset
from analysis.study.readers import _TextFile, detect_decimal, read_file


def _trial_csv(path, n_patients: int, sep: str = ",", decimal: str = ".") -> int:
    rng = np.random.default_rng(1)
    months = np.tile([0, 6, 12, 24], n_patients)
    frame = pd.DataFrame({"USUBJID": np.repeat([f"P{i:06d}" for i in range(n_patients)], 4),
                          "arm": np.repeat(rng.choice(["placebo", "active"], n_patients), 4),
                          "month": months, "visit": months,
                          "bmd_spine": np.round(0.9 + 0.05 * rng.standard_normal(months.size), 4),
                          "bmd_femoral_neck": np.round(0.7 + 0.05 * rng.standard_normal(months.size), 4),
                          "age": np.repeat(rng.integers(40, 80, n_patients), 4)})
    frame.to_csv(path, index=False, sep=sep, decimal=decimal)
    return path.stat().st_size


@pytest.mark.parametrize("sep,decimal", [(",", "."), (";", ".")])
def test_reading_a_large_csv_takes_a_few_times_its_size(tmp_path, sep, decimal):
    path = tmp_path / "trial.csv"
    size = _trial_csv(path, 10_000, sep, decimal)  # 40,000 rows, ~1.5 MB
    _trial_csv(tmp_path / "small.csv", 10, sep, decimal)
    read_file(tmp_path / "small.csv")  # what the first read imports is not the file's
    tracemalloc.start()
    try:
        table = read_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # before: every record as a Python list (~16x the file) and a UCS-4 copy of the text (4x)
    assert peak < 4 * size, (peak / size)
    expected = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    assert table.frame.shape == expected.shape
    pd.testing.assert_frame_equal(table.frame, expected)


def test_text_file_reads_as_string_io():
    text = "a,b\n1,x y\n\n2,\"q\nr\"\r\n3,z"
    kw = dict(dtype=str, keep_default_na=False, skipinitialspace=True)
    pd.testing.assert_frame_equal(pd.read_csv(_TextFile(text), **kw), pd.read_csv(io.StringIO(text), **kw))
    f = _TextFile(text)
    assert list(f) == io.StringIO(text).readlines()
    assert list(csv.reader(_TextFile(text))) == list(csv.reader(io.StringIO(text)))
    assert _TextFile("abc").read(2) == "ab" and _TextFile("abc").read() == "abc"


def test_detect_decimal_reads_records_one_at_a_time():
    def records():
        yield ["a", "b"]
        yield ["0,5", "1"]
        yield ["2", "0.7"]
        raise AssertionError("read past the ambiguity")

    with pytest.raises(Exception, match="ambiguous decimal mark"):
        detect_decimal(records(), ";", "f")
    assert detect_decimal(iter([]), ";", "f") == "."
    assert detect_decimal(iter([["a"], ["0,5"]]), ";", "f") == ","


def test_a_large_csv_loads_as_before(tmp_path):
    path = tmp_path / "trial.csv"
    _trial_csv(path, 2_000)
    ds = load_dataset(path, group="arm", visit="visit", id="USUBJID")
    assert ds.report.n_patients == 2_000 and len(ds.frame) == 8_000
