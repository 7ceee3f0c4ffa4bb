"""`rajak run` end to end on studies that are not RAJAK: a 2-arm 24-month trial (a complete report in
the trial's words), a single-arm cohort and a three-arm dose study (issue 16, checks)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli import app
from models.simulate_trial import TrialTruth, simulate_trial

FLAGS = ("--group", "arm", "--visit", "visit", "--time", "day", "--time-unit", "days")


def _plan(tmp_path, **extra) -> str:
    settings = {"draws": 100, "tune": 100, "chains": 2, "mi_imputations": 5, "power_sims": 6,
                "power_ns": [40, 80], "figure_workers": 0, **extra}
    lines = []
    for k, v in settings.items():
        lines.append(f"{k} = {json.dumps(v)}")
    path = tmp_path / "plan.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _run(tmp_path, data, *flags, **plan):
    res = CliRunner().invoke(app, ["run", "--data", str(data), "--config", _plan(tmp_path, **plan),
                                   "--output-dir", str(tmp_path / "out"), "--run-id", "r", *flags])
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "out" / "r"
    return run_dir, json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


def test_two_arm_24_month_trial_complete_report_in_its_words(tmp_path):
    truth = TrialTruth()
    data = tmp_path / "trial.csv"
    simulate_trial(160, truth, seed=11).to_csv(data, index=False)
    run_dir, manifest = _run(tmp_path, data, *FLAGS, "--site", "spine")
    design = manifest["study_design"]
    assert design["group_levels"] == ["active", "placebo"] and design["reference"] == "placebo"
    assert design["endpoint"] == 24.0 and design["sites"] == ["spine"]
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", report)
    # every stage is in the report, in the trial's words
    for section in ("Completers analysis", "Mixed models", "Bayesian hierarchical models", "Sensitivity",
                    "sample size"):
        assert section.lower() in text.lower(), section
    assert "active - placebo, change to month 24" in text
    words = [text[max(0, m.start() - 80):m.end() + 40] for m in re.finditer("(?i)responder", text)]
    assert not words, words
    assert "Published figures" not in text  # the RAJAK paper's replication is not this trial's
    est = pd.read_csv(run_dir / "tables" / "frequentist_estimands.csv")
    diff = est[(est["estimand"] == "spine, active - placebo, change to month 24, %")
               & (est["method"] == "MMRM (us, REML)")].iloc[0]
    assert abs(diff["estimate"] - truth.pct_difference("spine", "active", "placebo", 24)) < 3 * diff["se"]
    bayes = pd.read_csv(run_dir / "tables" / "bayes_estimands.csv")
    assert "spine, active - placebo, change to month 24, %" in set(bayes["estimand"])
    assert manifest["power"]["design_used"].startswith("from data: ") and "trial.csv" in manifest["power"]["design_used"]
    summary = (run_dir / "summary.txt").read_text(encoding="utf-8")
    assert "groups: active, placebo" in summary and "endpoint: month 24" in summary


def test_single_arm_study_runs_end_to_end(tmp_path):
    truth = TrialTruth(arms={"all": 1.0}, slopes={"total_hip": {"all": -0.01}}, baseline={"total_hip": 0.85},
                       visits=(0.0, 12.0, 24.0))
    data = tmp_path / "cohort.csv"
    simulate_trial(60, truth, seed=2).drop(columns=["arm"]).to_csv(data, index=False)
    run_dir, manifest = _run(tmp_path, data, "--group", "none", "--visit", "visit", "--time", "day",
                             "--time-unit", "days", sensitivity=["delta", "reference_based", "completers_vs_all"])
    assert manifest["study_design"]["group_levels"] == [] and manifest["study_design"]["sites"] == ["total_hip"]
    est = pd.read_csv(run_dir / "tables" / "frequentist_estimands.csv")
    assert not est["estimand"].str.contains(" - ").any()  # within-patient change only
    row = est[(est["estimand"] == "total hip, all, change to month 24, %") & (est["method"] == "LMM (REML)")].iloc[0]
    assert abs(row["estimate"] - truth.pct_change("total_hip", "all", 24)) < 3 * row["se"]
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "reference_based" in text and "not applicable" in text  # said why, not dropped


def test_three_arm_study_runs_end_to_end(tmp_path):
    truth = TrialTruth(arms={"placebo": 1.0, "low": 1.0, "high": 1.0},
                       slopes={"spine": {"placebo": -0.012, "low": 0.0, "high": 0.012}}, baseline={"spine": 0.95})
    data = tmp_path / "dose.csv"
    simulate_trial(150, truth, seed=5).to_csv(data, index=False)
    run_dir, manifest = _run(tmp_path, data, *FLAGS, sensitivity=["delta", "reference_based", "tipping"])
    assert manifest["study_design"]["reference"] == "placebo"
    est = pd.read_csv(run_dir / "tables" / "frequentist_estimands.csv")
    for level in ("low", "high"):
        name = f"spine, {level} - placebo, change to month 24, %"
        row = est[(est["estimand"] == name) & (est["method"] == "LMM (REML)")].iloc[0]
        assert abs(row["estimate"] - truth.pct_difference("spine", level, "placebo", 24)) < 3 * row["se"]
    bayes = pd.read_csv(run_dir / "tables" / "bayes_estimands.csv")
    assert {"spine, low - placebo, change to month 24, %", "spine, high - placebo, change to month 24, %"} <= set(
        bayes["estimand"])
    tipping = pd.read_csv(run_dir / "tables" / "sensitivity_tipping.csv")
    assert {"low - placebo", "high - placebo"} <= set(tipping["comparison"])
