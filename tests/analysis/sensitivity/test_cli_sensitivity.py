"""``rajak sensitivity`` on a user's own study: a randomised trial read with the design flags. Run by
default, every analysis runs or is listed as skipped with its reason (exit 0); asked for by name,
an analysis that does not apply ends the command with one line and exit status 2.

The Bayesian analyses that sample (delta_bayes, priors, selection) are replaced by stubs in the
default runs: their work on a trial is tested in tests/analysis/sensitivity/test_dropout_known_groups.py
and test_design_groups.py; here the command's plumbing is."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.sensitivity import runner as sens_runner
from analysis.sensitivity.result import SensitivityResult
from tests.analysis.sensitivity._trial import trial_csv

DESIGN = ("--group", "arm", "--visit", "visit", "--time", "day", "--time-unit", "days")
SAMPLED = ("delta_bayes", "priors", "selection")


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "plan.toml").write_text('sites = ["spine"]\nmi_imputations = 2\ndraws = 20\ntune = 20\nchains = 1\n')
    return trial_csv(d / "trial.csv", n=120, seed=4), d / "plan.toml"


@pytest.fixture
def stub_sampled(monkeypatch):
    """The sampling analyses as stubs that record their design."""
    seen = {}

    def stub(name):
        def run(derived, config, cache_dir=None, design=None):
            seen[name] = design
            return SensitivityResult(name=name, title=name, table=pd.DataFrame({"x": [1.0]}), text=["stub"])
        return run

    for name in SAMPLED:
        monkeypatch.setitem(sens_runner.ANALYSES, name, stub(name))
    return seen


def _error_lines(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("rajak: error:")]


def test_explicit_latent_status_on_a_trial_exits_2_with_one_line(trial):
    path, plan = trial
    res = _invoke("sensitivity", "--data", path, *DESIGN, "--config", plan, "--analysis", "latent_status")
    assert res.exit_code == 2
    lines = _error_lines(res)
    assert len(lines) == 1 and "latent_status is not applicable: latent responder status applies" in lines[0]
    assert "Traceback" not in res.output and res.stdout == ""


def test_default_run_on_a_trial_lists_skipped_analyses(trial, stub_sampled):
    path, plan = trial
    res = _invoke("sensitivity", "--data", path, *DESIGN, "--config", plan, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    status = {r["name"]: r["status"] for r in out["results"]}
    assert status == {name: "not applicable" if name == "latent_status" else "ok" for name in sens_runner.available()}
    assert [s["name"] for s in out["skipped"]] == ["latent_status"]
    assert "column 'arm'" in out["skipped"][0]["reason"]
    assert all(d is not None and d.reference == "placebo" for d in stub_sampled.values())
    delta = next(r for r in out["results"] if r["name"] == "delta")
    table = pd.DataFrame(delta["table"])
    assert set(table["group"]) == {"placebo", "active", "difference"} and {"delta_placebo", "delta_active"} <= set(
        table.columns)
    ref = next(r for r in out["results"] if r["name"] == "reference_based")
    assert ref["settings"]["reference"] == "placebo" and ref["title"].endswith("(reference: placebo)")
    tip = pd.DataFrame(next(r for r in out["results"] if r["name"] == "tipping")["table"])
    assert set(tip["comparison"]) == {"active - placebo"}


def test_default_text_output_names_the_skipped(trial, stub_sampled, tmp_path):
    path, plan = trial
    res = _invoke("sensitivity", "--data", path, *DESIGN, "--config", plan, "--analysis", "delta", "--analysis",
                  "completers_vs_all", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "sensitivity_delta.csv").is_file() and (tmp_path / "sensitivity_delta.png").is_file()
    res = _invoke("sensitivity", "--data", path, *DESIGN, "--config", plan)
    assert res.exit_code == 0, res.output
    tail = res.stdout[res.stdout.index("skipped =="):]
    assert "latent_status: not applicable: latent responder status" in tail


def test_a_users_responder_column_no_longer_stops_the_command(tmp_path, stub_sampled):
    """A file with its own responder column (and DAS28): latent status is skipped with its reason,
    not exit 2 with 'a defined responder status needs a DAS28 at month 12'."""
    from analysis.common.resources import data_path
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin

    status = derive(load_twin().frame).groupby("patient_id")["responder"].first().map({True: 1, False: 0})
    df = pd.read_csv(data_path("rajak_twin.csv"))
    df["responder"] = df["patient_id"].map(status).astype("Int64")
    path = tmp_path / "resp.csv"
    df.to_csv(path, index=False)
    (tmp_path / "plan.toml").write_text('sites = ["spine"]\nmi_imputations = 2\n')
    res = _invoke("sensitivity", "--data", path, "--config", tmp_path / "plan.toml", "--json")
    assert res.exit_code == 0, res.output
    skipped = json.loads(res.stdout)["skipped"]
    assert [s["name"] for s in skipped] == ["latent_status"] and "user-supplied" in skipped[0]["reason"]
