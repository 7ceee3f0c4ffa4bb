"""A large fit keeps no pointwise log-likelihoods, so PSIS-LOO leaves it out: the report's model
comparison section and summary.txt's not-run list say so and why (forced on a small run with
``RAJAK_PER_PATIENT=on_request``)."""

from __future__ import annotations

import json

import pytest

from analysis.run.config import RunConfig
from analysis.run.pipeline import run


@pytest.fixture(scope="module")
def large_path_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RAJAK_PER_PATIENT", "on_request")
    out = tmp_path_factory.mktemp("loo_left_out")
    try:
        cfg = RunConfig(output_dir=str(out), run_id="r", sites=("spine",), sensitivity=(), power_sims=0,
                        mi_imputations=0, draws=50, tune=50, chains=2, figure_workers=0)
        yield run(cfg)
    finally:
        mp.undo()


def test_report_says_loo_was_left_out_and_why(large_path_run):
    html = (large_path_run.run_dir / "report.html").read_text()
    assert "Model comparison (PSIS-LOO)" in html
    assert "PSIS-LOO left out lmm at" in html and "RAJAK_PER_PATIENT=on_request" in html
    assert "pointwise log-likelihoods" in html and "RAJAK_PER_PATIENT=always" in html


def test_summary_lists_loo_as_not_run(large_path_run):
    summary = (large_path_run.run_dir / "summary.txt").read_text()
    block = summary.split("Not run or not estimable", 1)[1]
    line = next(ln for ln in block.splitlines() if "PSIS-LOO" in ln)
    assert line.strip().startswith("PSIS-LOO of lmm at spine:") and "100 posterior draws" in line


def test_manifest_records_loo_left_out(large_path_run):
    manifest = json.loads((large_path_run.run_dir / "manifest.json").read_text())
    assert [(r["model"], r["site"]) for r in manifest["loo_left_out"]] == [("lmm", "spine")]
    assert not (large_path_run.run_dir / "tables" / "loo_spine.csv").exists()


def test_reason_names_the_size_and_the_threshold(monkeypatch):
    from types import SimpleNamespace

    from analysis.run.bayes_stage import loo_left_out_reason

    monkeypatch.delenv("RAJAK_PER_PATIENT", raising=False)
    fit = SimpleNamespace(fit=SimpleNamespace(posterior={"posterior": SimpleNamespace(sizes={"chain": 2, "draw": 500})}))
    why = loo_left_out_reason(fit, 50_000)
    assert "50,000 patients x 1,000 posterior draws" in why and "above the 250,000 patients x draws" in why
    assert "at most" not in why  # 5 draws would not be a fit
    assert "at most 625 posterior draws" in loo_left_out_reason(fit, 400)
