"""Files rajak cannot analyse (issue #16, section 4): every command that reads data answers with exit
status 2 and ONE line naming the file and the reason, no traceback, and leaves the file as it was.

The shapes are a simulated two-arm trial (:mod:`tests.analysis.study.own_study`: arms ``PBO``/``ZOL``
in a column ``arm``, three sites, visits at months 0/6/12/24) broken one way each. The errors arise
while the data are loaded, before anything is fitted, so every command answers in well under a second.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from tests.analysis.study import own_study

pytest.importorskip("pyreadstat")
pytest.importorskip("openpyxl")

runner = CliRunner()


def _no_endpoint_scan(df):
    return df.assign(bmd_total_hip=df["bmd_total_hip"].where(df["day"] < 600))


def _one_group_present(df):
    return df[df["arm"] == "PBO"]


def _group_without_completers(df):
    return df[~((df["arm"] == "ZOL") & (df["day"] > 600))]


def _adam_without_bmd(df):
    a = own_study.adam(df)
    a["PARAMCD"] = a["PARAMCD"].map({"BMDLS": "WEIGHT", "BMDTH": "HEIGHT", "BMDFN": "SYSBP"})
    a["PARAM"] = a["PARAMCD"].str.title()
    return a


#: shape -> (file name, how the trial is broken, design flags, what the one line must say).
SHAPES = {
    "no scans at the endpoint for a site": (
        "noend.csv", _no_endpoint_scan, ("--group", "arm"),
        "no total_hip scan at the endpoint (month 24)"),
    "only one group present": (
        "placebo_only.csv", _one_group_present, ("--group", "arm"),
        "group column 'arm' has one level (pbo); use --group none for a single-arm study"),
    "a group with no completers": (
        "zol_dropped.csv", _group_without_completers, ("--group", "arm"),
        "group 'zol' has no completer (no scan at month 24)"),
    "a --group column that does not exist": (
        "trial.csv", None, ("--group", "TRT"),
        "--group: no column 'TRT' in the file"),
    "a --group column with one level": (
        "study_column.csv", lambda df: df.assign(STUDY="RAJ-02"), ("--group", "STUDY"),
        "group column 'STUDY' has one level (raj-02)"),
    "a --reference level not present": (
        "trial.csv", None, ("--group", "arm", "--reference", "placebo"),
        "--reference 'placebo' is not a level of 'arm' (levels: pbo, zol)"),
    "an ADaM file with no BMD parameter": (
        "adsl_vitals.xpt", _adam_without_bmd, ("--group", "TRT01P"),
        "ADaM file without a BMD parameter (PARAMCDs found: WEIGHT, HEIGHT, SYSBP)"),
    "an xlsx sheet that does not exist": (
        "trial.xlsx", None, ("--group", "arm", "--sheet", "Visits"),
        "no sheet named 'Visits' (sheets: 'Data')"),
    "a site column that is entirely empty": (
        "empty_site.csv", lambda df: df.assign(bmd_total_hip=np.nan), ("--group", "arm"),
        "site total_hip (bmd_total_hip) has no value at all"),
}

#: command -> its arguments before the file's design flags ({file}, {out} filled in).
COMMANDS = {
    "validate": ["validate", "{file}"],
    "frequentist": ["frequentist", "--data", "{file}", "--imputations", "0"],
    "fit": ["fit", "--data", "{file}", "--draws", "20", "--tune", "20", "--chains", "1"],
    "compare": ["compare", "--data", "{file}"],
    "sensitivity": ["sensitivity", "--data", "{file}"],
    "power": ["power", "--data", "{file}", "--n", "20", "--sims", "2"],
    "run": ["run", "--data", "{file}", "--power-sims", "0", "--draws", "20", "--tune", "20", "--chains", "1",
            "--output-dir", "{out}", "--run-id", "bad"],
}


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    """Each broken file, written once (one directory per shape: the file names say what they are)."""
    df = own_study.trial()
    root = tmp_path_factory.mktemp("bad_shapes")
    out = {}
    for k, (shape, (name, breaking, _, _)) in enumerate(SHAPES.items()):
        d = root / f"shape{k}"
        d.mkdir()
        out[shape] = own_study.write(breaking(df) if breaking else df, d / name)
    return out


def test_the_shapes_are_what_they_say(shape_files):
    """The errors below come from the shapes, not from the trial: unbroken, it validates (as CSV and as
    Excel, on its one sheet ``Data``) with the same flags."""
    good = shape_files["a --group column that does not exist"]
    res = runner.invoke(app, ["validate", str(good), "--group", "arm"])
    assert res.exit_code == 0, res.stderr
    assert "groups: pbo, zol   reference: pbo" in res.stdout
    res = runner.invoke(app, ["validate", str(shape_files["an xlsx sheet that does not exist"]), "--group", "arm"])
    assert res.exit_code == 0, res.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_unanalysable_file_is_one_line_exit_2(shape_files, tmp_path, shape, command):
    path = shape_files[shape]
    flags, reason = SHAPES[shape][2], SHAPES[shape][3]
    before = own_study.digest(path)
    out = tmp_path / "outputs"
    args = [a.format(file=path, out=out) for a in COMMANDS[command]]
    res = runner.invoke(app, [*args, *flags])
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"rajak: error: {path}: ") and reason in lines[0], lines[0]
    assert res.stdout == ""
    assert own_study.digest(path) == before  # the input is only read
    assert not (out / "bad").exists() and not any(out.glob("*/manifest.json"))  # no run directory, not even a part
