"""A responder study in which every patient with a status is a responder: every command that compares
groups says so in one line (exit 2) instead of failing on a rank-deficient design (issue #16)."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.common.resources import data_path

COMMANDS = [("frequentist", "--imputations", "0"), ("sensitivity", "--analysis", "delta"),
            ("fit", "--draws", "20", "--tune", "20", "--chains", "1"), ("compare", "--draws", "20", "--tune", "20")]


@pytest.fixture(scope="module")
def all_responders(tmp_path_factory):
    raw = pd.read_csv(data_path("rajak_twin.csv"))
    path = tmp_path_factory.mktemp("one_group") / "all_responders.csv"
    raw.assign(responder=True).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_patient_a_responder_is_one_line(all_responders, command):
    before = hashlib.sha256(all_responders.read_bytes()).hexdigest()
    res = CliRunner().invoke(app, [*command, "--data", str(all_responders)])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("rajak: error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr
    assert "all_responders.csv: only one group present" in errors[0] and "responder" in errors[0]
    assert hashlib.sha256(all_responders.read_bytes()).hexdigest() == before


def test_the_same_file_analysed_as_one_arm(all_responders):
    res = CliRunner().invoke(app, ["frequentist", "--imputations", "0", "--data", str(all_responders),
                                   "--group", "none", "--json"])
    assert res.exit_code == 0, res.output
