"""``rajak fit --formula``: the user's own model formula through bambi, with the output of every fit
(diagnostics line, estimand table, WARNING on failed diagnostics, --json, --save), and one line with
exit status 2 for a formula that cannot be fitted.

Fits are short (2 chains x 200 draws on the embedded twin): these tests check plumbing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli.app import app

ROOT = Path(__file__).resolve().parents[3]
FORMULA = "bmd ~ month * responder + (1 + month | patient_id)"
FAST = ("--draws", "200", "--tune", "200", "--chains", "2", "--seed", "3")

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    saved = tmp_path_factory.mktemp("fit") / "formula.nc"
    return _invoke("fit", "--formula", FORMULA, *FAST, "--json", "--save", saved), saved


def test_formula_fit_json_has_the_estimands_and_diagnostics(json_run):
    res, saved = json_run
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"] == "formula" and out["site"] == "spine" and out["formula"] == FORMULA
    assert out["synthetic"] is True
    assert [r["estimand"] for r in out["estimands"]] == ["Intercept", "month", "responder", "month:responder"]
    row = out["estimands"][0]
    assert {"median", "eti_low", "eti_high", "hdi_low", "hdi_high", "p_lt_0", "p_gt_0", "rope", "p_in_rope", "bf10",
            "diagnostics"} <= set(row)
    assert row["p_in_rope"] is None and row["bf10"] is None  # no natural ROPE for a coefficient
    assert 0.5 < row["median"] < 1.5  # the intercept in g/cm^2 at month 0
    assert {"max_rhat", "passed", "failures"} <= set(out["diagnostics"])
    assert out["settings"]["model"]["formula"] == FORMULA and out["settings"]["draws"] == 200
    if not out["diagnostics"]["passed"]:  # short fit: the verdict is announced on stderr
        assert "WARNING: DIAGNOSTICS FAILED" in res.stderr
    assert saved.is_file()


def test_formula_fit_text_output(tmp_path):
    res = _invoke("fit", "--formula", "bmd ~ month + (1 | patient_id)", "--site", "femoral_neck", *FAST)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("== ") and "formula 'bmd ~ month + (1 | patient_id)' at femoral_neck" in lines[0]
    assert any(line.startswith("diagnostics: ") for line in lines)
    assert any(line.split()[:1] == ["Intercept"] for line in lines)
    assert any(line.split()[:1] == ["month"] for line in lines)
    assert "estimand" in res.stdout and "p_in_rope" in res.stdout


@pytest.mark.parametrize("args, message", [
    (("--formula", "bmd ~ month * arm + (1 + month | patient_id)"), "'arm', not a column of the data"),
    (("--formula", "bmd ~ month +"), "cannot parse formula"),
    (("--formula", "bmd ~ month", "--site", "wrist"), "site 'wrist' is not in the data"),
    (("--formula", "bmd ~ month", "--model", "mmrm"), "leave --model and --priors at their defaults"),
])
def test_bad_formula_exits_2_with_one_line(args, message):
    res = _invoke("fit", *args, *FAST)
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("rajak: error: ") and message in lines[-1]
    assert [line for line in lines if line.startswith("rajak:")] == [lines[-1]]
    assert "Traceback" not in res.stderr


def test_readme_command_table_mentions_formula():
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `rajak fit ")]
    assert len(rows) == 1 and "--formula" in rows[0]
