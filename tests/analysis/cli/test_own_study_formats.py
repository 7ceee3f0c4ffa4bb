"""Your own study (issue #16): the same randomised trial from CSV, ``;``-CSV with decimal commas, Excel,
a CDISC ADaM ``.xpt`` and a ``.sas7bdat`` gives identical canonical data, the same resolved design and,
through ``rajak frequentist``, identical estimands; and a trial in a layout of its own runs with the
design flags alone."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.study.data import load_dataset
from tests.analysis.study import own_study

pyreadstat = pytest.importorskip("pyreadstat")
pytest.importorskip("openpyxl")

runner = CliRunner()

#: file name -> its design flags (every file calls the arm TRT01P; the ADaM file keeps it under that name).
FORMATS = {
    "trial.csv": ("--group", "TRT01P"),
    "trial-semicolon.csv": ("--group", "TRT01P"),
    "trial.xlsx": ("--group", "TRT01P", "--sheet", "Data"),
    "adbmd.xpt": ("--group", "TRT01P"),
    "trial.sas7bdat": ("--group", "TRT01P"),
}
REFERENCE = ("--reference", "PBO")


def _kw(flags: tuple[str, ...]) -> dict:
    pairs = dict(zip(flags[::2], flags[1::2]))
    return {"group": pairs["--group"], "sheet": pairs.get("--sheet"), "reference": "PBO"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, object]:
    """Every format written from one simulated trial; a format whose writer is missing maps to the
    reason (``.sas7bdat`` needs ReadStat's command-line tool)."""
    d = tmp_path_factory.mktemp("own_study")
    df = own_study.trial().rename(columns={"arm": "TRT01P"})
    out: dict[str, object] = {}
    for name in FORMATS:
        try:
            out[name] = own_study.write(own_study.adam(df, arm="TRT01P") if name.startswith("adbmd") else df, d / name)
        except own_study.NoSas7bdatWriter as exc:
            out[name] = str(exc)
    return out


def _file(files, name):
    path = files[name]
    if isinstance(path, str):
        pytest.skip(f"{name}: {path}")
    return path


@pytest.fixture(scope="module")
def reference(files):
    return load_dataset(files["trial.csv"], **_kw(FORMATS["trial.csv"]))


def test_the_files_really_differ(files):
    """The formats are what they claim: decimal commas, an ADaM layout, binary files."""
    assert "0,8" in files["trial-semicolon.csv"].read_text() and ";" in files["trial-semicolon.csv"].read_text()
    assert files["adbmd.xpt"].read_bytes().startswith(b"HEADER RECORD")
    adam, _ = pyreadstat.read_xport(str(files["adbmd.xpt"]))
    assert {"USUBJID", "PARAMCD", "AVAL", "ADY", "ABLFL", "TRT01P"} <= set(adam.columns)
    assert set(adam["PARAMCD"]) == {"BMDLS", "BMDTH", "BMDFN"} and "day" not in adam.columns
    assert files["trial.xlsx"].read_bytes()[:2] == b"PK"
    if not isinstance(files["trial.sas7bdat"], str):  # SAS's magic number
        assert files["trial.sas7bdat"].read_bytes()[:32] == bytes.fromhex("00" * 12 + "c2ea8160b31411cfbd92080009c7318c181f1011")


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_gives_the_same_canonical_data_and_design(files, reference, name):
    path = _file(files, name)
    before = own_study.digest(path)
    ds = load_dataset(path, **_kw(FORMATS[name]))
    assert own_study.digest(path) == before  # only read
    pd.testing.assert_frame_equal(own_study.canonical_columns(ds.frame), own_study.canonical_columns(reference.frame),
                                  check_exact=True)  # bit for bit: times in days are divided alike
    got, want = ds.design, reference.design
    assert (got.sites, got.visits, got.endpoint, got.group_levels, got.reference, got.covariates) == \
        (("spine", "total_hip", "femoral_neck"), (0, 6, 12, 24), 24, ("pbo", "zol"), "pbo", ("age", "sex"))
    assert (got.sites, got.visits, got.endpoint, got.group_levels, got.reference, got.covariates) == \
        (want.sites, want.visits, want.endpoint, want.group_levels, want.reference, want.covariates)
    assert ds.report.patients_per_group == reference.report.patients_per_group
    assert ds.report.completers == reference.report.completers and ds.report.completers_at == 24
    # times in study days (ADY for ADaM): months are actual, visits nominal
    assert (ds.frame["month"] - ds.frame["visit"]).abs().between(1e-9, 0.5).any()


def test_the_truth_is_in_the_canonical_data(reference):
    """The simulated truth survives loading: arms as levels, patients, scans at every visit."""
    raw = own_study.trial()
    assert reference.report.n_patients == raw["patient_id"].nunique() == 40
    assert reference.report.patients_per_group == {"pbo": int((raw.groupby("patient_id")["arm"].first() == "PBO").sum()),
                                                   "zol": int((raw.groupby("patient_id")["arm"].first() == "ZOL").sum())}
    assert reference.frame["bmd_spine"].notna().sum() == raw["bmd_spine"].notna().sum()


_RUNS: dict[str, dict] = {}


def _frequentist(path, flags) -> dict:
    if str(path) in _RUNS:
        return _RUNS[str(path)]
    res = runner.invoke(app, ["frequentist", "--data", str(path), "--imputations", "0", "--json", *flags, *REFERENCE])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["estimands"], "no estimands"
    _RUNS[str(path)] = doc
    return doc


@pytest.mark.parametrize("name", [n for n in FORMATS if n != "trial.csv"])
def test_frequentist_gives_identical_estimands_from_every_format(files, name):
    path = _file(files, name)
    before = own_study.digest(path)
    want = _frequentist(files["trial.csv"], FORMATS["trial.csv"])
    got = _frequentist(path, FORMATS[name])
    assert own_study.digest(path) == before
    assert len(got["estimands"]) == len(want["estimands"])
    assert got["estimands"] == want["estimands"]  # identical, not close: the canonical data are bit for bit the same
    text = json.dumps(want["estimands"]).lower()
    assert "zol" in text and "responder" not in text  # the trial's arms, not RAJAK's responders


# --- a real study's file in its own layout --------------------------------------------------------------

OWN_FLAGS = ("--id", "SUBJ", "--group", "TRT", "--reference", "p", "--time", "STUDYDAY", "--time-unit", "days",
             "--visit", "VISNO", "--site", "total_body=bmd")


@pytest.fixture(scope="module")
def own_file(tmp_path_factory):
    return own_study.write(own_study.own_layout(), tmp_path_factory.mktemp("own_layout") / "bmd_export.csv")


def test_own_layout_validates_with_flags_alone(own_file):
    before = own_study.digest(own_file)
    res = runner.invoke(app, ["validate", str(own_file), *OWN_FLAGS])
    assert res.exit_code == 0, res.stderr
    assert own_study.digest(own_file) == before
    lines = res.stdout.splitlines()
    assert lines[0] == ("design: subject 'SUBJ'; time 'STUDYDAY' in days; visits 'VISNO'; sites total_body (bmd); "
                        "group column 'TRT', reference 'p'; endpoint last visit; covariates those present of "
                        "age, sex, bmi")
    assert lines[1:5] == ["  sites: total_body (bmd)", "  visits (months): 0, 6, 12, 24   endpoint: month 24",
                          "  groups: c, p   reference: p", "  covariates: age, sex"]
    raw = own_study.own_layout()
    per_arm = raw.groupby("SUBJ")["TRT"].first().value_counts()
    done = raw.loc[raw["VISNO"] == 3, "SUBJ"].nunique()
    assert f"patients: {raw['SUBJ'].nunique()}   rows: {len(raw)}   completers (scan at month 24): {done}" in res.stdout
    assert f"patients per group: c: {per_arm['C']}, p: {per_arm['P']}" in res.stdout
    assert "responder" not in res.stdout


def test_own_layout_visits_are_the_index_placed_at_its_months(own_file):
    flags = dict(zip(OWN_FLAGS[::2], OWN_FLAGS[1::2]))
    ds = load_dataset(own_file, id="SUBJ", group="TRT", reference="p", time="STUDYDAY", time_unit="days",
                      visit="VISNO", sites={"total_body": flags["--site"].split("=")[1]})
    raw = own_study.own_layout()
    nominal = raw["VISNO"].map({0: 0.0, 1: 6.0, 2: 12.0, 3: 24.0})
    got = ds.frame.set_index(["patient_id", "month"])["visit"]
    want = pd.Series(nominal.to_numpy(), index=pd.MultiIndex.from_arrays(
        [raw["SUBJ"], (raw["STUDYDAY"] - 1) / 30.4375])).sort_index()
    assert got.sort_index().to_numpy().tolist() == want.to_numpy().tolist()


def test_own_layout_runs_frequentist_with_flags_alone(own_file):
    before = own_study.digest(own_file)
    res = runner.invoke(app, ["frequentist", "--data", str(own_file), "--imputations", "0", "--json", *OWN_FLAGS])
    assert res.exit_code == 0, res.stderr
    assert own_study.digest(own_file) == before
    doc = json.loads(res.stdout)
    text = json.dumps(doc["estimands"]).lower()
    assert doc["estimands"] and "total_body" in text and "responder" not in text
