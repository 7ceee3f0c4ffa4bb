"""Tests of loading a file by its study design (``load_dataset(..., **design_flags)`` and
``rajak validate`` with ``--id``, ``--time``, ``--site``, ``--group`` ...): a trial in its own
layout, a single-arm study, one-line errors for designs that do not fit, and the twin unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.common.resources import data_path
from analysis.study import load_twin
from analysis.study.data import DataValidationError, load_dataset
from analysis.study.design import parse_sites
from analysis.study.rajak_design import RAJAK_DESIGN
from tests.analysis.study.test_design import _trial

runner = CliRunner()
TRIAL_FLAGS = ("--id", "SUBJ", "--time", "VISDT", "--time-unit", "date", "--visit", "VISITNUM",
               "--site", "total_body=bmd", "--group", "TRT", "--reference", "P")


def _cli(*args):
    return runner.invoke(app, ["validate", *map(str, args)])


def _one_line_exit_2(res) -> str:
    assert res.exit_code == 2, res.stdout
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def trial(tmp_path):
    path = tmp_path / "trial.csv"
    _trial().to_csv(path, index=False)
    return path


def test_trial_in_its_own_layout_loads_by_its_design(trial):
    ds = load_dataset(trial, id="SUBJ", time="VISDT", time_unit="date", visit="VISITNUM",
                      sites=parse_sites(["total_body=bmd"]), group="TRT", reference="P")
    assert {"patient_id", "month", "visit", "bmd_total_body", "group"} <= set(ds.frame.columns)
    r = ds.design
    assert r.sites == ("total_body",) and r.visits == (0, 6, 12, 24) and r.endpoint == 24
    assert r.group_levels == ("c", "p") and r.reference == "p" and r.covariates == ("age",)
    assert ds.report.completers == 12 and ds.report.completers_at == 24
    assert ds.report.patients_per_group == {"c": 6, "p": 6}
    assert "responder" not in ds.report.to_text()
    assert "passed through: VISDT, VISITNUM, TRT" in ds.report.to_text()


def test_trial_validates_through_the_cli_in_its_words(trial):
    res = _cli(trial, *TRIAL_FLAGS)
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert out.startswith("design: subject 'SUBJ'; time 'VISDT' in date; visits 'VISITNUM'; sites total_body (bmd)")
    assert "group column 'TRT', reference 'p'" in out
    assert "  sites: total_body (bmd)" in out and "endpoint: month 24" in out
    assert "  groups: c, p   reference: p" in out
    assert "completers (scan at month 24): 12" in out and "patients per group: c: 6, p: 6" in out
    assert "responder" not in out
    doc = json.loads(_cli(trial, *TRIAL_FLAGS, "--json").stdout)
    assert doc["design"]["group_levels"] == ["c", "p"] and doc["design"]["reference"] == "p"
    assert doc["design"]["design"]["sites"] == {"total_body": "bmd"}


def test_single_arm_study_validates(tmp_path):
    raw = _trial().drop(columns=["TRT"])
    path = tmp_path / "single.csv"
    raw.to_csv(path, index=False)
    res = _cli(path, "--id", "SUBJ", "--time", "VISDT", "--time-unit", "date", "--site", "total_body=bmd",
               "--group", "none")
    assert res.exit_code == 0, res.stderr
    assert "group none (single arm)" in res.stdout and "  groups: none (single arm)" in res.stdout
    # visits from the dates rounded to whole months: 0, 6, 12, 24
    assert "visits (months): 0, 6, 12, 24   endpoint: month 24" in res.stdout
    assert "responder" not in res.stdout


def _flags_with(**change):
    flags = dict(zip(TRIAL_FLAGS[::2], TRIAL_FLAGS[1::2]))
    flags.update(change)
    return [x for k, v in flags.items() if v is not None for x in (k, v)]


def test_group_column_that_does_not_exist(trial):
    line = _one_line_exit_2(_cli(trial, *_flags_with(**{"--group": "ARM"})))
    assert str(trial) in line and "--group: no column 'ARM'" in line


def test_group_with_one_level(tmp_path):
    path = tmp_path / "one.csv"
    _trial().assign(TRT="P").to_csv(path, index=False)
    line = _one_line_exit_2(_cli(path, *_flags_with(**{"--reference": None})))
    assert str(path) in line and "group column 'TRT' has one level (p)" in line and "--group none" in line


def test_reference_level_not_present(trial):
    line = _one_line_exit_2(_cli(trial, *_flags_with(**{"--reference": "placebo"})))
    assert str(trial) in line and "--reference 'placebo' is not a level of 'TRT' (levels: c, p)" in line


def test_site_column_entirely_empty(tmp_path):
    path = tmp_path / "empty.csv"
    _trial().assign(bmd=np.nan).to_csv(path, index=False)
    line = _one_line_exit_2(_cli(path, *TRIAL_FLAGS))
    assert str(path) in line and "site total_body (bmd) has no value at all" in line


def test_no_scans_at_the_endpoint(tmp_path):
    raw = _trial()
    raw.loc[raw["VISITNUM"] == 3, "bmd"] = np.nan
    path = tmp_path / "noend.csv"
    raw.to_csv(path, index=False)
    line = _one_line_exit_2(_cli(path, *TRIAL_FLAGS))
    assert str(path) in line and "no total_body scan at the endpoint (month 24)" in line
    line = _one_line_exit_2(_cli(path, *TRIAL_FLAGS, "--endpoint", "5"))
    assert "endpoint month 5 is not a visit (visits: 0, 6, 12, 24)" in line


def test_bad_time_unit_is_one_line(trial):
    line = _one_line_exit_2(_cli(trial, *_flags_with(**{"--time-unit": "weeks"})))
    assert "--time-unit 'weeks'" in line


def test_design_error_from_load_dataset_names_the_file(trial):
    with pytest.raises(DataValidationError) as info:
        load_dataset(trial, id="SUBJ", time="VISDT", time_unit="date", sites={"total_body": "bmd"}, group="TRT",
                     reference="x")
    assert str(info.value).startswith(f"{trial}: ") and len(str(info.value).splitlines()) == 1


def test_twin_design_is_rajak_and_frame_only_gains_visit():
    ds = load_twin()
    assert ds.design.design == RAJAK_DESIGN
    assert ds.design.visits == (0, 3, 6, 12) and ds.design.group_levels == ("non-responder", "responder")
    assert list(ds.frame.columns)[-1] == "visit"
    np.testing.assert_array_equal(ds.frame["visit"], ds.frame["month"].round())
    raw = pd.read_csv(data_path("rajak_twin.csv"))
    assert list(ds.frame.columns) == [*raw.columns, "visit"]


#: ``rajak validate data/rajak_twin.csv`` before the study design was wired in (after the file line).
TWIN_SUMMARY = """\
  patients: 46   rows: 134   completers: 26   dropouts: 20
  visits per month:    0: 46, 3: 34, 6: 28, 12: 26
  DXA scans per month: 0: 46, 6: 26, 12: 26
  dropouts by month (first missed visit): 3: 12, 6: 6, 12: 2
  missing values: bmd_spine: 36, bmd_femoral_neck: 36, dropout_reason: 104
  excluded rows: none"""


def test_twin_validate_text_is_todays_after_the_design_lines():
    path = data_path("rajak_twin.csv")
    res = _cli(path)
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == ("design: subject 'patient_id'; time 'month' in months; visits windows of the times, at whole "
                        "months; sites spine (bmd_spine), femoral_neck (bmd_femoral_neck); group responder status "
                        "derived from disease activity, reference 'non-responder'; endpoint month 12; "
                        "covariates age, sex, bmi")
    assert lines[1:5] == ["  sites: spine (bmd_spine), femoral_neck (bmd_femoral_neck)",
                          "  visits (months): 0, 3, 6, 12   endpoint: month 12",
                          "  groups: non-responder, responder   reference: non-responder",
                          "  covariates: age, sex, bmi"]
    assert lines[5] == f"{path}: valid"
    assert "\n".join(lines[6:]) == TWIN_SUMMARY
    doc = json.loads(_cli(path, "--json").stdout)
    assert doc.pop("design")["design"] == RAJAK_DESIGN.model_dump(mode="json")
    assert "completers_at" not in doc and "patients_per_group" not in doc


def test_a_given_design_is_used_as_is():
    ds = load_dataset(data_path("rajak_twin.csv"), design=RAJAK_DESIGN)
    assert ds.design.design == RAJAK_DESIGN
    pd.testing.assert_frame_equal(ds.frame, load_twin().frame)


def test_one_site_and_no_activity_is_a_single_arm_study(tmp_path):
    twin = pd.read_csv(data_path("rajak_twin.csv"))
    path = tmp_path / "spine_only.csv"
    twin[["patient_id", "month", "bmd_spine", "age", "sex", "bmi"]].to_csv(path, index=False)
    ds = load_dataset(path)
    assert ds.design.design.group.kind == "none" and ds.design.sites == ("spine",)
    assert ds.design.endpoint == 12 and ds.report.completers_at == 12
    with pytest.raises(TypeError, match="unexpected keyword argument 'site'"):
        load_dataset(path, site="spine")
