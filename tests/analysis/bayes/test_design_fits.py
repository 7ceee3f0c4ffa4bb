"""The Bayesian models on a study's own design (issue #16): simulated randomised trials with known
truth (``models.simulate_trial``), loaded like a user's file (days since baseline, a nominal visit
column, an ``arm`` column), fitted by :func:`analysis.bayes.fit.fit_bayes` and ``rajak fit``.

Truth: the arm difference in % change from baseline to month 24,
:meth:`TrialTruth.pct_difference`. Each check is one seeded data set (deterministic); fits are
short (2 chains x 300 draws after 300 tuning, one site).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from analysis.bayes.fit import fit_bayes
from analysis.cli.app import app
from analysis.study.applicability import NotApplicable, NotEstimable
from analysis.study.clinical import derive
from analysis.study.data import load_dataset
from analysis.study.estimands import difference_name, estimand_name
from models.simulate_trial import TrialTruth, simulate_trial

FAST = {"draws": 300, "tune": 300, "chains": 2, "seed": 1}
FLAGS = {"group": "arm", "visit": "visit", "time": "day", "time_unit": "days"}
CLI_FLAGS = ["--group", "arm", "--visit", "visit", "--time", "day", "--time-unit", "days"]
TWO_ARMS = TrialTruth()
THREE_ARMS = TrialTruth(arms={"placebo": 1.0, "low": 1.0, "high": 1.0},
                        slopes={"spine": {"placebo": -0.012, "low": 0.0, "high": 0.010}}, baseline={"spine": 0.95})
ONE_ARM = TrialTruth(arms={"active": 1.0}, slopes={"spine": {"active": 0.010}}, baseline={"spine": 0.95})


def _study(tmp_path_factory, name, truth, n, seed, **flags):
    path = tmp_path_factory.mktemp(name) / f"{name}.csv"
    simulate_trial(n, truth, seed=seed).to_csv(path, index=False)
    ds = load_dataset(path, **{**FLAGS, "sites": {"spine": "bmd_spine"}, **flags})
    return path, ds, derive(ds.frame, design=ds.design)


@pytest.fixture(scope="module")
def two_arms(tmp_path_factory):
    return _study(tmp_path_factory, "two_arms", TWO_ARMS, 200, seed=3)


def _covers(fit, name, truth):
    row = fit.table.set_index("estimand").loc[name]
    assert row["eti_low"] <= truth <= row["eti_high"], (name, truth, row[["eti_low", "median", "eti_high"]])
    assert abs(row["median"] - truth) < 3 * row["sd"], (name, truth, row["median"], row["sd"])


@pytest.mark.parametrize("model", ["lmm", "mmrm"])
def test_two_arm_trial_recovers_the_arm_difference_at_month_24(two_arms, model):
    _, ds, derived = two_arms
    assert ds.design.endpoint == 24 and ds.design.reference == "placebo"
    fit = fit_bayes(derived, model, **FAST)
    assert fit.site == "spine" and fit.extra["endpoint_month"] == 24
    expected = [estimand_name("spine", g, m, 24) for g in ("placebo", "active") for m in ("abs", "pct")]
    expected += [difference_name("spine", m, 24, groups=("active", "placebo")) for m in ("abs", "pct")]
    assert list(fit.table["estimand"]) == expected
    assert expected[-1] == "spine, active - placebo, change to month 24, %"
    _covers(fit, expected[-1], TWO_ARMS.pct_difference("spine", "active", "placebo", 24))
    for arm in ("placebo", "active"):
        _covers(fit, estimand_name("spine", arm, "pct", 24), TWO_ARMS.pct_change("spine", arm, 24))
    post = fit.fit.posterior["posterior"]
    assert list(post["group"].values) == ["placebo", "active"]
    assert list(post["contrast"].values) == ["active - placebo"]
    assert fit.table["rope"].eq(2.4).sum() == 3  # the spine's least significant change on the % rows
    if model == "lmm":  # the LMM's time is the scan's own (days since baseline), not the nominal visit
        assert fit.fit.settings["model"]["time"] == "month_actual"
        assert list(post["b"].coef.values) == ["intercept", "time", "active", "time:active"]


def test_three_arms_give_two_contrasts(tmp_path_factory):
    _, _, derived = _study(tmp_path_factory, "three_arms", THREE_ARMS, 240, seed=5)
    fit = fit_bayes(derived, "lmm", **FAST)
    post = fit.fit.posterior["posterior"]
    assert list(post["group"].values) == ["placebo", "high", "low"]  # reference first, then the design's order
    assert list(post["contrast"].values) == ["high - placebo", "low - placebo"]
    for arm in ("low", "high"):
        _covers(fit, difference_name("spine", "pct", 24, groups=(arm, "placebo")),
                THREE_ARMS.pct_difference("spine", arm, "placebo", 24))
    assert len(fit.table) == 3 * 2 + 2 * 2


def test_single_arm_gives_one_group_and_no_contrast(tmp_path_factory):
    _, ds, derived = _study(tmp_path_factory, "one_arm", ONE_ARM, 120, seed=7, group="none")
    assert ds.design.design.group.kind == "none"
    fit = fit_bayes(derived, "lmm", **FAST)
    assert list(fit.table["estimand"]) == [estimand_name("spine", "all", m, 24) for m in ("abs", "pct")]
    assert "contrast" not in fit.fit.posterior["posterior"].dims
    _covers(fit, estimand_name("spine", "all", "pct", 24), ONE_ARM.pct_change("spine", "active", 24))


def test_models_that_do_not_apply_say_why(two_arms, tmp_path_factory):
    _, _, derived = two_arms
    with pytest.raises(NotApplicable, match=r"^activity model: needs disease activity \(DAS28-CRP\) and responder "
                                            r"groups; this study is grouped by 'arm'$"):
        fit_bayes(derived, "activity", **FAST)
    with pytest.raises(NotApplicable, match="joint model: needs two or more BMD sites; this study has spine only"):
        fit_bayes(derived, "joint", **FAST)
    with pytest.raises(ValueError, match="unknown site 'total_hip'"):
        fit_bayes(derived, "lmm", "total_hip", **FAST)
    short = TrialTruth(visits=(0.0, 12.0))
    _, _, one_visit = _study(tmp_path_factory, "one_visit", short, 60, seed=2)
    with pytest.raises(NotEstimable, match="needs a third visit to separate the slope variance from the noise"):
        fit_bayes(one_visit, "lmm", **FAST)



def test_mmrm_with_one_post_baseline_visit_is_the_bayesian_ancova(tmp_path_factory):
    short = TrialTruth(visits=(0.0, 12.0))
    _, ds, one_visit = _study(tmp_path_factory, "one_visit_ancova", short, 160, seed=6)
    assert ds.design.visits == (0.0, 12.0)
    fit = fit_bayes(one_visit, "mmrm", **{**FAST, "draws": 600, "tune": 600})
    assert fit.fit.passed, fit.fit.diagnostics
    _covers(fit, difference_name("spine", "pct", 12, groups=("active", "placebo")),
            short.pct_difference("spine", "active", "placebo", 12))
    _covers(fit, estimand_name("spine", "placebo", "pct", 12), short.pct_change("spine", "placebo", 12))


def test_joint_model_on_two_sites_of_a_trial(tmp_path_factory):
    _, _, derived = _study(tmp_path_factory, "two_sites", TWO_ARMS, 120, seed=4,
                           sites={"total_hip": "bmd_total_hip", "spine": "bmd_spine"})
    fit = fit_bayes(derived, "joint", "total_hip", draws=200, tune=200, chains=2, seed=1)
    post = fit.fit.posterior["posterior"]
    assert list(post["site"].values) == ["total_hip", "spine"]
    name = difference_name("total_hip", "pct", 24, groups=("active", "placebo"))
    assert name in set(fit.table["estimand"])
    assert fit.table["rope"].isna().all() and "no ROPE at total_hip" in fit.extra["rope"]


runner = CliRunner()


def test_cli_fit_on_an_arm_design(two_arms):
    path, _, _ = two_arms
    args = ["fit", "--data", str(path), *CLI_FLAGS, "--site", "spine", "--draws", "100", "--tune", "100",
            "--chains", "2", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["endpoint_month"] == 24 and out["site"] == "spine"
    assert "spine, active - placebo, change to month 24, %" in {e["estimand"] for e in out["estimands"]}
    bad = runner.invoke(app, [*args[:-1], "--model", "activity"])
    assert bad.exit_code == 2
    assert [ln for ln in bad.stderr.splitlines() if ln.startswith("rajak: error")] == [
        "rajak: error: not applicable: activity model: needs disease activity (DAS28-CRP) and responder groups; "
        "this study is grouped by 'arm'"]


def test_cli_compare_pairs_the_arm_contrast_with_the_frequentist_one(two_arms):
    path, _, _ = two_arms
    res = runner.invoke(app, ["compare", "--data", str(path), *CLI_FLAGS, "--draws", "150", "--tune", "150",
                              "--chains", "2", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    names = {r["estimand"] for r in rows}
    assert "spine, active - placebo, change to month 24, %" in names, names
    assert {r["frequentist_method"] for r in rows} == {"LMM (REML)"}
    diff = next(r for r in rows if r["estimand"] == "spine, active - placebo, change to month 24, %")
    assert diff["agreement"].startswith("agree"), diff
    assert np.isfinite(diff["freq_estimate"]) and abs(diff["freq_estimate"] - diff["bayes_median"]) < 1.0


def test_default_formula_speaks_the_designs_words(two_arms):
    """``rajak fit --formula default``: the LMM as a bambi formula with the design's group as a
    categorical whose reference is the design's (placebo), so the coefficients are active - placebo."""
    from analysis.bayes.fit import fit_formula

    _, _, derived = two_arms
    fit = fit_formula(derived, None, draws=100, tune=100, chains=2, seed=1)
    assert fit.extra["formula"] == "bmd ~ month * (group_active) + (1 + month | patient_id)"
    names = set(fit.table["estimand"])
    assert {"group_active", "month:group_active"} <= names and not any("placebo" in n for n in names)
    slope = fit.table.set_index("estimand").loc["month:group_active", "median"]  # g/cm^2 per month
    truth = (TWO_ARMS.slopes["spine"]["active"] - TWO_ARMS.slopes["spine"]["placebo"]) / 12
    assert abs(slope - truth) < 0.25 * abs(truth)
