"""``rajak run``, ``rajak compare`` and ``rajak sensitivity`` out of memory: one line on stderr saying
where memory ran out and what to ask for instead, exit status 2 (as ``rajak fit``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.cli.run import run_out_of_memory_text
from analysis.run.config import RunConfig
from analysis.run.pipeline import RunOutOfMemory
from tests.cli_error_lines import one_memory_error_line

runner = CliRunner()


def _no_memory(*args, **kwargs):
    raise MemoryError("Unable to allocate 48.6 GiB for an array with shape (180114, 50000)")


@pytest.mark.parametrize("where", ["load", "frequentist", "bayes", "sensitivity"])
def test_run_memory_error_is_one_line_with_what_to_ask_for(monkeypatch, tmp_path, where):
    import analysis.run.pipeline as pipeline

    target = {"load": "load_for_config", "frequentist": "frequentist_analysis", "bayes": "run_bayes_stage",
              "sensitivity": "run_sensitivity"}[where]
    monkeypatch.setattr(pipeline, target, _no_memory)
    plan = tmp_path / "plan.toml"
    plan.write_text("power_sims = 0\nmi_imputations = 0\nfigure_workers = 0\n"
                    + ('sensitivity = ["delta"]\nbayes_models = []\n' if where == "sensitivity" else "sensitivity = []\n"))
    res = runner.invoke(app, ["run", "--config", str(plan), "--output-dir", str(tmp_path / "out"), "--run-id", "r",
                              "--draws", "400", "--chains", "4"])
    line = one_memory_error_line(res)
    expected = {"load": "loading and validating the data", "frequentist": "the frequentist analysis",
                "bayes": "the Bayesian models", "sensitivity": "sensitivity analysis delta"}[where]
    assert f"out of memory in {expected}" in line
    if where == "bayes":
        assert "--draws 100 --chains 2" in line and "bayes_models = []" in line and "one --site" in line
    if where == "sensitivity":
        assert "sensitivity = []" in line
    if where != "load":
        assert "patients" in line
    assert not (tmp_path / "out" / "r").exists()  # nothing half-written
    assert not [p for p in (tmp_path / "out").glob(".r.partial-*")] if (tmp_path / "out").exists() else True


def test_run_out_of_memory_text_names_every_way_out_when_the_stage_is_unknown(monkeypatch):
    monkeypatch.delenv("RAJAK_PER_PATIENT", raising=False)
    line = run_out_of_memory_text(MemoryError(), RunConfig(draws=1000, chains=4))
    assert "--draws 250 --chains 2" in line and "bayes_models = []" in line and "sensitivity = []" in line
    assert "RAJAK_PER_PATIENT" not in line


def test_run_out_of_memory_text_says_unset_per_patient_always(monkeypatch):
    monkeypatch.setenv("RAJAK_PER_PATIENT", "always")
    line = run_out_of_memory_text(RunOutOfMemory("bayes", "the Bayesian models", 50000, ("spine",)), RunConfig())
    assert line.startswith("out of memory in the Bayesian models (50000 patients, 4 chains x 1000 draws)")
    assert "one --site" not in line and line.endswith("leave RAJAK_PER_PATIENT unset (per-patient effects and "
                                                      "log-likelihoods on request)")
    line = run_out_of_memory_text(RunOutOfMemory("power", "the sample-size stage", 50000, ("spine", "femoral_neck")),
                                  RunConfig())
    assert line.startswith("out of memory in the sample-size stage (50000 patients, 2 sites)") and "--power-sims" in line


@pytest.mark.parametrize("where", ["fit", "frequentist"])
def test_compare_memory_error_is_one_line_with_what_to_ask_for(monkeypatch, where):
    import analysis.bayes.fit as bayes_fit
    import analysis.frequentist.primary as primary

    if where == "fit":
        monkeypatch.setattr(bayes_fit, "fit_bayes", _no_memory)
    else:
        monkeypatch.setattr(bayes_fit, "fit_bayes", lambda *a, **k: object())
        monkeypatch.setattr(primary, "frequentist_analysis", _no_memory)
    res = runner.invoke(app, ["compare", "--model", "lmm", "--model", "mmrm", "--draws", "400", "--chains", "4"])
    line = one_memory_error_line(res)
    assert "--draws 100 --chains 2" in line and "one --model at a time" in line
    assert ("fitting lmm at" in line) == (where == "fit")
    assert ("the frequentist analysis" in line) == (where == "frequentist")


def test_sensitivity_memory_error_is_one_line_with_what_to_ask_for(monkeypatch):
    import analysis.sensitivity.runner as runner_mod

    monkeypatch.setattr(runner_mod, "run_sensitivity", _no_memory)
    res = runner.invoke(app, ["sensitivity", "--analysis", "delta", "--analysis", "tipping"])
    line = one_memory_error_line(res)
    assert "in sensitivity analysis delta" in line and "--analysis tipping without delta" in line
    assert "draws = " in line and "chains = 2" in line
