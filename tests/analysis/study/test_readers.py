"""Files as they come: the same study written as CSV, ';'-CSV with decimal commas, TSV, Excel,
Parquet, SAS transport, SPSS and Stata loads to the same validated frame; unreadable files give one
line naming the file and the reason, through the API and through ``rajak validate`` (exit 2)."""

import hashlib
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.common.resources import data_path
from analysis.study.data import DataValidationError, load_dataset, read_table
from analysis.study.readers import RawTable, detect_decimal, detect_delimiter, read_file

pyreadstat = pytest.importorskip("pyreadstat")
openpyxl = pytest.importorskip("openpyxl")

runner = CliRunner()
LABELS = {"patient_id": "Patient identifier", "month": "Months since baseline",
          "bmd_spine": "Lumbar spine BMD (g/cm2)", "bmd_femoral_neck": "Femoral neck BMD (g/cm2)"}


@pytest.fixture(scope="module")
def twin() -> pd.DataFrame:
    """The shipped twin as its CSV holds it (the source every format is written from)."""
    return pd.read_csv(data_path("rajak_twin.csv"))


@pytest.fixture(scope="module")
def reference(twin, tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("ref") / "twin.csv"
    twin.to_csv(path, index=False)
    return load_dataset(path).frame


def _write(df: pd.DataFrame, path):
    ext = path.suffix
    if ext == ".csv" and path.stem.endswith("semicolon"):
        df.to_csv(path, sep=";", decimal=",", index=False)
    elif ext == ".csv":
        df.to_csv(path, index=False)
    elif ext in (".tsv", ".txt"):
        df.to_csv(path, sep="\t", index=False)
    elif ext == ".xlsx":
        df.to_excel(path, index=False, sheet_name="Data")
    elif ext == ".parquet":
        df.to_parquet(path)
    elif ext == ".xpt":
        pyreadstat.write_xport(df, str(path), column_labels=LABELS, table_name="TWIN")
    elif ext == ".sav":
        pyreadstat.write_sav(df, str(path), column_labels=LABELS)
    elif ext == ".dta":
        pyreadstat.write_dta(df, str(path), column_labels=LABELS)
    else:  # pragma: no cover
        raise AssertionError(ext)
    return path


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Dtypes as a comparison needs them: numbers as float64, everything else as Python objects
    with None for missing (text is str in one format, object in another)."""
    out = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            out[c] = s.astype("float64")
        else:
            out[c] = pd.Series([None if (not isinstance(v, str) and pd.isna(v)) else v for v in s],
                               index=s.index, dtype=object)
    return pd.DataFrame(out)


def _error(path, **kw) -> str:
    with pytest.raises(DataValidationError) as info:
        load_dataset(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def _cli(*args):
    return runner.invoke(app, ["validate", *map(str, args)])


def _one_line_exit_2(res) -> str:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rajak: error: "), res.stderr
    assert "Traceback" not in res.output and res.stdout == ""
    return lines[0]


FORMATS = ["twin.csv", "twin-semicolon.csv", "twin.tsv", "twin.txt", "twin.xlsx", "twin.parquet", "twin.xpt",
           "twin.sav", "twin.dta"]


@pytest.mark.parametrize("filename", FORMATS)
def test_every_format_loads_to_the_same_frame(tmp_path, twin, reference, filename):
    path = _write(twin, tmp_path / filename)
    before = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    ds = load_dataset(path)
    pd.testing.assert_frame_equal(_normalise(ds.frame), _normalise(reference), check_exact=False, rtol=1e-12)
    assert ds.report.n_patients == reference["patient_id"].nunique()
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before  # only read
    assert ds.sha256 == before[0]
    if path.suffix in (".xpt", ".sav", ".dta"):
        assert ds.report.column_labels["bmd_spine"] == "Lumbar spine BMD (g/cm2)"


def test_semicolon_decimal_comma_is_detected_and_noted(tmp_path, twin):
    path = _write(twin, tmp_path / "twin-semicolon.csv")
    assert "0,817" in path.read_text()  # really written with decimal commas
    table = read_file(path)
    assert table.frame.at[0, "bmd_spine"] == "0.817"
    note = load_dataset(path).report.notes[0]
    assert "';'-separated text with a decimal comma" in note


def test_bom_crlf_and_utf16_semicolon_files(tmp_path, twin, reference):
    text = twin.to_csv(sep=";", decimal=",", index=False, lineterminator="\r\n")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(text.encode("utf-8-sig"))
    wide = tmp_path / "wide.csv"
    wide.write_bytes(text.encode("utf-16"))
    for p in (bom, wide):
        pd.testing.assert_frame_equal(_normalise(load_dataset(p).frame), _normalise(reference),
                                      check_exact=False, rtol=1e-12)


def test_detect_delimiter_rules():
    assert detect_delimiter("a;b;c\n1,5;2;3\n", "f", ".csv") == ";"
    assert detect_delimiter("a\tb\n1\t2\n", "f", ".txt") == "\t"
    assert detect_delimiter("a,b\n1,2\n", "f", ".csv") == ","
    assert detect_delimiter("only\n1\n", "f", ".csv") == ","  # one column: the contract says what is missing
    # a header with commas inside names still splits on ';' only in every line
    assert detect_delimiter("id;bmd, spine;x\nP1;0,9;1\nP2;1,0;2\n", "f", ".csv") == ";"
    assert detect_delimiter("patient_id;month,bmd\nP1;0,5\n", "f", ".csv") == ";"  # '0,5' is a number
    with pytest.raises(DataValidationError, match="ambiguous delimiter: ',' .* and ';'"):
        detect_delimiter("a;b,c\nx;y,z\n", "f.csv", ".csv")


def test_detect_decimal_rules():
    recs = [["a", "b"], ["0,5", "x"], ["12", "1,25"]]
    assert detect_decimal(recs, ";", "f") == ","
    assert detect_decimal([["a"], ["0.5"], ["3"]], ";", "f") == "."
    assert detect_decimal([["a"], ["3"]], "\t", "f") == "."
    assert detect_decimal([["a"], ["0,5"]], ",", "f") == "."  # a comma delimiter means a decimal point
    with pytest.raises(DataValidationError, match=r"ambiguous decimal mark: '0,5' \(line 2, column 'a'\).*"
                                                  r"'0.7' \(line 3, column 'b'\)"):
        detect_decimal([["a", "b"], ["0,5", "1"], ["2", "0.7"]], ";", "f")


def test_ambiguous_delimiter_through_the_cli(tmp_path):
    p = tmp_path / "odd.csv"
    p.write_text("patient_id;month,bmd_spine\nP1;0,0.9\nP2;0,1.0\n")
    line = _one_line_exit_2(_cli(p))
    assert "ambiguous delimiter" in line and str(p) in line
    line = _one_line_exit_2(_cli(p, "--delimiter", ";"))  # given: read, then the contract speaks
    assert "missing required column" in line


def test_given_delimiter_and_decimal(tmp_path, twin, reference):
    p = tmp_path / "given.txt"
    twin.to_csv(p, sep="|", decimal=",", index=False)
    ds = load_dataset(p, delimiter="|", decimal=",")
    pd.testing.assert_frame_equal(_normalise(ds.frame), _normalise(reference), check_exact=False, rtol=1e-12)
    assert "(detected)" not in ds.report.notes[0]
    assert "comma cannot be both" in _error(p, delimiter=",", decimal=",")


def test_mixed_decimal_marks_are_an_error(tmp_path, twin):
    p = tmp_path / "mixed.csv"
    df = twin.astype({"bmd_spine": object})
    text = df.to_csv(sep=";", decimal=",", index=False).replace("0,817", "0.817", 1)
    p.write_text(text)
    msg = _error(p)
    assert "ambiguous decimal mark" in msg and "'0.817'" in msg and "column 'bmd_spine'" in msg


def test_comma_csv_keeps_a_quoted_decimal_comma_non_numeric(tmp_path, twin):
    df = twin.astype({"bmd_spine": object})
    df.loc[4, "bmd_spine"] = "0,912"
    p = tmp_path / "q.csv"
    df.to_csv(p, index=False)
    assert "non-numeric value '0,912'" in _error(p)


# --- Excel ---------------------------------------------------------------------------------------


@pytest.fixture
def workbook(tmp_path, twin):
    path = tmp_path / "study.xlsx"
    with pd.ExcelWriter(path) as xl:
        pd.DataFrame({"note": ["exported from the clinic database"]}).to_excel(xl, sheet_name="Notes", index=False)
        twin.to_excel(xl, sheet_name="Data", index=False)
    return path


def test_xlsx_sheet_by_name_and_index(workbook, reference):
    for sheet in ("Data", 1, "1"):
        ds = load_dataset(workbook, sheet=sheet)
        pd.testing.assert_frame_equal(_normalise(ds.frame), _normalise(reference), check_exact=False, rtol=1e-12)
    assert "sheet 'Data' read (sheets: 'Notes', 'Data')" in ds.report.notes
    assert "missing required column 'patient_id'" in _error(workbook)  # the first sheet by default


def test_xlsx_missing_sheet_names_the_sheets(workbook):
    assert "no sheet named 'Daten' (sheets: 'Notes', 'Data')" in _error(workbook, sheet="Daten")
    assert "no sheet at index 5 (0-based; the file has 2 sheets: 'Notes', 'Data')" in _error(workbook, sheet=5)
    line = _one_line_exit_2(_cli(workbook, "--sheet", "Daten"))
    assert "no sheet named 'Daten'" in line and "'Notes', 'Data'" in line
    assert _cli(workbook, "--sheet", "Data").exit_code == 0


def test_xlsx_problem_names_the_sheet_row(tmp_path, twin):
    df = twin.copy()
    df.loc[5, "bmd_spine"] = 9.5
    path = tmp_path / "bad.xlsx"
    with pd.ExcelWriter(path) as xl:
        df.to_excel(xl, sheet_name="Data", index=False, startrow=2)  # two blank rows above the header
    msg = _error(path)
    assert "row 9" in msg and "column 'bmd_spine': value 9.5 outside" in msg  # header row 3, data from row 4


def test_xlsx_unnamed_column_and_corrupt_file(tmp_path, twin):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["patient_id", None, "month"])
    ws.append(["P1", 3, 0])
    p = tmp_path / "unnamed.xlsx"
    wb.save(p)
    assert "a column has no name" in _error(p)
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a workbook")
    assert "not a valid Excel .xlsx file" in _error(bad)
    csv_named_xlsx = tmp_path / "text.xlsx"
    twin.to_csv(csv_named_xlsx, index=False)
    assert "not a valid Excel .xlsx file (not a zip archive)" in _error(csv_named_xlsx)


def test_sheet_for_a_text_file_is_an_error(tmp_path, twin):
    p = _write(twin, tmp_path / "t.csv")
    assert "only Excel files have sheets" in _error(p, sheet="Data")


# --- SAS, SPSS, Stata ----------------------------------------------------------------------------


def test_labels_name_the_column_in_messages(tmp_path, twin):
    df = twin.copy()
    df.loc[3, "bmd_spine"] = 7.5
    p = _write(df, tmp_path / "bad.xpt")
    msg = _error(p)
    assert "row 4" in msg and "column 'bmd_spine' (Lumbar spine BMD (g/cm2)): value 7.5 outside" in msg
    mapped = _write(df.rename(columns={"bmd_spine": "LSBMD"}), tmp_path / "mapped.sav")
    msg = _error(mapped, column_map={"LSBMD": "bmd_spine"})
    assert "column 'LSBMD' as 'bmd_spine': value 7.5" in msg


def test_spss_value_labels_of_sex(tmp_path, twin):
    df = twin.assign(sex=twin["sex"].map({"F": 2.0, "M": 1.0}))
    p = tmp_path / "coded.sav"
    pyreadstat.write_sav(df, str(p), variable_value_labels={"sex": {1.0: "male", 2.0: "female"}})
    ds = load_dataset(p)
    assert set(ds.frame["sex"]) == {"F", "M"}
    ref = twin.drop_duplicates("patient_id").set_index("patient_id")["sex"]
    got = ds.frame.drop_duplicates("patient_id").set_index("patient_id")["sex"]
    assert (got == ref[got.index]).all()


@pytest.mark.parametrize("ext,kind", [(".xpt", "SAS transport (XPT)"), (".sas7bdat", "SAS (sas7bdat)"),
                                      (".sav", "SPSS (.sav)"), (".dta", "Stata (.dta)")])
def test_corrupt_statistical_files_give_one_line(tmp_path, twin, ext, kind):
    p = tmp_path / f"corrupt{ext}"
    p.write_bytes(b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!" + bytes(range(256)) * 4)
    msg = _error(p)
    assert f"not a readable {kind} file" in msg
    line = _one_line_exit_2(_cli(p))
    assert f"not a readable {kind} file" in line


def test_corrupt_xpt_real_process(tmp_path):
    p = tmp_path / "corrupt.xpt"
    p.write_bytes(b"\x00\x01garbage" * 100)
    proc = subprocess.run([sys.executable, "-m", "analysis.cli", "validate", str(p)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a readable SAS transport (XPT) file" in lines[0]
    assert "Traceback" not in proc.stderr


def test_sas7bdat_goes_through_pyreadstat_with_labels(tmp_path, twin, monkeypatch):
    """No pip-installable library writes .sas7bdat (pyreadstat's writer does not expose ReadStat's
    experimental sas7bdat writer, whose files SAS itself cannot open), so this checks the dispatch:
    the file goes to ``pyreadstat.read_sas7bdat`` and its labels and empty strings are handled as
    for the other SAS format. ``test_sas7bdat_from_readstat`` reads a real file where the ReadStat
    command-line tool is installed."""
    p = tmp_path / "study.sas7bdat"
    p.write_bytes(b"not read by the stub")
    calls = []

    def fake(path, **kw):
        calls.append(path)
        df = twin.assign(dropout_reason=twin["dropout_reason"].fillna(""))
        return df, SimpleNamespace(column_names_to_labels=LABELS, variable_value_labels={})

    monkeypatch.setattr(pyreadstat, "read_sas7bdat", fake)
    table = read_file(p)
    assert calls == [str(p)] and table.fmt == "sas7bdat"
    assert table.labels["bmd_spine"] == "Lumbar spine BMD (g/cm2)"
    assert table.frame["dropout_reason"].isna().sum() == twin["dropout_reason"].isna().sum()
    assert load_dataset(p).report.file_format == "sas7bdat"


@pytest.mark.skipif(shutil.which("readstat") is None, reason="the ReadStat command-line tool is not installed")
def test_sas7bdat_from_readstat(tmp_path, twin, reference):
    """ReadStat's own command-line tool (Debian package ``readstat``) converts a Stata file to
    sas7bdat (ReadStat's writer is experimental: SAS itself may not open its files, but they are
    real sas7bdat files, read here by pyreadstat); the result loads to the reference frame."""
    dta = _write(twin, tmp_path / "twin.dta")
    out = tmp_path / "twin.sas7bdat"
    proc = subprocess.run(["readstat", str(dta), str(out)], capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        pytest.skip(f"readstat cannot write sas7bdat here: {proc.stderr.strip()[:200]}")
    ds = load_dataset(out)
    pd.testing.assert_frame_equal(_normalise(ds.frame), _normalise(reference), check_exact=False, rtol=1e-12)
    assert ds.report.file_format == "sas7bdat"
    assert ds.report.column_labels["bmd_spine"] == "Lumbar spine BMD (g/cm2)"


# --- dispatch and errors -------------------------------------------------------------------------


def test_unknown_and_legacy_extensions(tmp_path):
    p = tmp_path / "study.ods"
    p.write_bytes(b"PK\x03\x04")
    msg = _error(p)
    assert "unknown extension '.ods'" in msg and ".xlsx" in msg and ".sas7bdat" in msg
    old = tmp_path / "study.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    assert "legacy Excel .xls files are not read; save it as .xlsx" in _error(old)


def test_read_table_keeps_its_tuple(tmp_path, twin):
    p = _write(twin, tmp_path / "t.parquet")
    df, fmt, raw = read_table(p)
    assert fmt == "parquet" and raw == p.read_bytes() and len(df) == len(twin)
    assert isinstance(read_file(p), RawTable)


def test_param_for_a_file_that_is_not_adam(tmp_path, twin):
    p = _write(twin, tmp_path / "t.csv")
    line = _one_line_exit_2(_cli(p, "--param", "LSBMD=spine"))
    assert "not an ADaM BDS file" in line
    line = _one_line_exit_2(_cli(p, "--param", "LSBMD"))
    assert "--param takes PARAMCD=site" in line


def test_empty_sheet_and_header_only(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "Empty"
    p = tmp_path / "empty.xlsx"
    wb.save(p)
    assert "sheet 'Empty' is empty" in _error(p)
    wb = openpyxl.Workbook()
    wb.active.append(["patient_id", "month"])
    wb.save(p)
    assert "no data rows" in _error(p)
