"""The report and the methods text speak the study's design: arm names, sites and the endpoint month
for a trial; a responder study's words only for the RAJAK design."""

from __future__ import annotations

import re

import pytest

from analysis.report import design_words
from analysis.run.config import RunConfig
from models.simulate_trial import TrialTruth, simulate_trial

FLAGS = {"group": "arm", "time": "day", "time_unit": "days", "visit": "visit"}


@pytest.fixture(scope="module")
def trial_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("trial") / "trial.csv"
    truth = TrialTruth(arms={"placebo": 1.0, "active": 1.0},
                       slopes={"total_hip": {"placebo": -0.008, "active": 0.006}}, baseline={"total_hip": 0.85})
    simulate_trial(90, truth, seed=7).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trial(trial_file):
    from analysis.study.data import load_for_config

    cfg = RunConfig(data=str(trial_file), study=FLAGS, power_ns=(30, 60), power_sims=4, power_workers=1)
    ds = load_for_config(cfg)
    return cfg.bind(ds.design), ds


def _no_responder(text: str) -> None:
    assert not re.search(r"responder", text, re.IGNORECASE), text


def test_design_words_of_a_trial_and_of_the_rajak_default(trial):
    _, ds = trial
    w = design_words(ds.design)
    assert (w.kind, w.levels, w.reference, w.sites, w.endpoint) == ("column", ("placebo", "active"), "placebo",
                                                                   ("total_hip",), 24.0)
    assert w.contrast_text == "active - placebo" and w.endpoint_text == "month 24" and w.sites_text == "total hip"
    _no_responder(w.lmm_formula() + w.mmrm_formula() + w.groups_text)
    rajak = design_words(None)
    assert rajak.levels == ("non-responder", "responder") and rajak.endpoint_text == "month 12"
    assert rajak.contrast_text == "responders - non-responders" and rajak.sites == ("spine", "femoral_neck")


def test_methods_text_for_an_arm_design_names_the_arms_and_the_endpoint(trial):
    from analysis.run.methods_text import bayes_methods, frequentist_methods

    cfg, ds = trial
    for text in (frequentist_methods(cfg, ds.design), bayes_methods(cfg, ds.design)):
        assert "placebo" in text and "active" in text and "month 24" in text and "total hip" in text
        assert "month 12" not in text and "spine" not in text
        _no_responder(text)
    twin = RunConfig(sites=("spine", "femoral_neck"), endpoint_month=12.0)
    assert "responders - non-responders" in frequentist_methods(twin) and "month 12" in frequentist_methods(twin)


def test_methods_text_of_a_single_arm_tests_the_change_against_zero(trial_file):
    from analysis.run.methods_text import frequentist_methods
    from analysis.study.data import load_for_config

    cfg = RunConfig(data=str(trial_file), study={**FLAGS, "group": "none"})
    ds = load_for_config(cfg)
    text = frequentist_methods(cfg.bind(ds.design), ds.design)
    assert "single arm" in text and "against 0" in text and "bmd ~ month + (1 + month | patient)" in text
    _no_responder(text)


def test_power_section_of_a_trial_sizes_from_its_data(trial, tmp_path):
    from analysis.run.power_stage import power_methods, power_section, run_power_stage

    cfg, ds = trial
    stage = run_power_stage(cfg, tmp_path)
    m = stage.manifest()
    assert m["generator"] == "data" and m["design_used"].startswith(f"from data: {ds.source}")
    assert m["design"]["levels"] == ["placebo", "active"] and m["design"]["visits"] == [0.0, 6.0, 12.0, 24.0]
    sec = power_section(stage, ds, cfg)
    text = " ".join(sec.paragraphs)
    assert "from data:" in text and "placebo" in text and "active - placebo" in text and "month 24" in text
    assert "allocation placebo 50% : active 50%" in text and "retention" in text
    _no_responder(text)
    assert "twin" not in text.lower()  # no twin here: the effect sizes are this study's
    assert list(sec.tables[0].frame["contrast"].unique()) == ["active - placebo"]
    methods = power_methods(cfg, stage)
    assert "from data:" in methods and "twin" not in methods
    # the same run again reads every simulated study from the cache
    assert run_power_stage(cfg, tmp_path).cache == "hit"


def test_the_twins_power_section_keeps_the_twins_words(tmp_path):
    from analysis.run.power_stage import power_design, power_section, run_power_stage
    from analysis.study.data import load_twin

    cfg = RunConfig(sites=("spine",), power_ns=(30,), power_sims=2, power_workers=1)
    assert power_design(cfg).generator == "cohort"
    stage = run_power_stage(cfg, tmp_path)
    sec = power_section(stage, load_twin(), cfg)
    assert sec.paragraphs[0].startswith("Design: each simulated study follows the RAJAK twin's calibrated design")
    assert any("SYNTHETIC" in p for p in sec.paragraphs) and "contrast" not in sec.tables[0].frame.columns
