"""The MI-based sensitivity analyses on a study's own design: a randomised trial (placebo the
reference, a 24-month endpoint, visits on study days), a 3-arm dose study, a single arm and a
trial with a single post-baseline visit, each simulated with known truth (models.simulate_trial)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis.sensitivity.delta import DeltaScenario, delta_analysis
from analysis.sensitivity.design import NotApplicable, sensitivity_design
from analysis.sensitivity.reference_based import reference_based_analysis
from analysis.sensitivity.tipping import TIPPING_COLUMNS, tipping_point_analysis, tipping_surface
from analysis.study.estimands import difference_name, estimand_name
from models.simulate_trial import TrialTruth
from tests.analysis.sensitivity._trial import DOSES, ONE_VISIT, load_trial, trial_csv

TRUTH = TrialTruth()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    return load_trial(trial_csv(tmp_path_factory.mktemp("trial") / "trial.csv", n=200, seed=3))[1]


@pytest.fixture(scope="module")
def doses(tmp_path_factory):
    return trial_csv(tmp_path_factory.mktemp("doses") / "doses.csv", n=210, truth=DOSES, seed=5)


def test_design_of_a_trial(trial):
    sd = sensitivity_design(trial)
    assert sd.sites == ("spine", "total_hip", "femoral_neck") and sd.endpoint == 24.0
    assert sd.levels == ("placebo", "active") and sd.reference == "placebo"
    assert sd.keys == ("placebo", "active", "active - placebo")


def test_reference_based_follows_placebo_and_j2r_shrinks_the_difference(trial):
    """MAR recovers the simulated truth; J2R lets active dropouts follow placebo, so the active -
    placebo difference moves towards 0, and placebo itself (the reference) is unchanged."""
    r = reference_based_analysis(trial, sites=("spine",), strategies=("MAR", "J2R"), seed=1)
    assert r.settings["reference"] == "placebo" and r.settings["endpoint_month"] == 24.0
    t = r.table[r.table["month"] == 24.0].set_index(["strategy", "group"])
    diff = difference_name("spine", "pct", 24, groups=("active", "placebo"))
    assert set(t.loc[t.index.get_level_values("group") == "difference", "estimand"]) == {diff}
    assert set(r.table["comparison"]) == {"", "active - placebo"}
    true_diff = TRUTH.pct_difference("spine", "active", "placebo", 24)
    assert abs(t.loc[("MAR", "difference"), "estimate"] - true_diff) < 2.5 * t.loc[("MAR", "difference"), "se"]
    for arm in ("placebo", "active"):
        est, se = t.loc[("MAR", arm), ["estimate", "se"]]
        assert abs(est - TRUTH.pct_change("spine", arm, 24)) < 2.5 * se, arm
    assert 0 < t.loc[("JR", "difference"), "estimate"] < t.loc[("MAR", "difference"), "estimate"] - 0.2
    assert t.loc[("JR", "placebo"), "estimate"] == pytest.approx(t.loc[("MAR", "placebo"), "estimate"], abs=0.05)
    assert set(r.table["reference"]) == {"placebo"} and "placebo" in r.title


def test_delta_lists_the_arms_and_shifts_each_arm_by_its_own_delta(trial):
    sc = [DeltaScenario(label="MAR"), DeltaScenario(-2.0, 0.0, label="placebo -2"),
          DeltaScenario(0.0, 3.0, label="active +3"), DeltaScenario(by_level={"active": 3.0}, label="by level")]
    r = delta_analysis(trial, sc, sites=("spine",), m=20, seed=2)
    assert {"delta_placebo", "delta_active", "scale_placebo", "scale_active"} <= set(r.table.columns)
    assert set(r.table["group"]) == {"placebo", "active", "difference"}
    t = r.table.set_index(["scenario", "group"])["estimate"]
    step = t[("placebo -2", "placebo")] - t[("MAR", "placebo")]
    assert step < 0 and t[("placebo -2", "active")] == t[("MAR", "active")]
    assert t[("placebo -2", "difference")] - t[("MAR", "difference")] == pytest.approx(-step)
    assert t[("active +3", "active")] > t[("MAR", "active")]
    assert t[("by level", "active")] == pytest.approx(t[("active +3", "active")])  # the same adjustment
    default = delta_analysis(trial, sites=("spine",), m=5, seed=2)
    names = set(default.table["scenario"])
    assert "placebo -2, active +0 %/yr" in names and "placebo x1.5, active x1.5" in names
    with pytest.raises(ValueError, match="not a group of the study"):
        delta_analysis(trial, [DeltaScenario(by_level={"verum": 1.0})], sites=("spine",), m=2)


def test_tipping_over_the_arm_contrast(trial):
    grid = (-4.0, -2.0, 0.0, 2.0, 4.0)
    r = tipping_point_analysis(trial, grid, grid, sites=("spine",), m=20, seed=4)
    t = r.table
    assert set(t["comparison"]) == {"active - placebo"} and set(t["group"]) == {"placebo", "active", "difference"}
    assert len(t) == 3 * len(grid) ** 2
    assert set(t["estimand"]) == {estimand_name("spine", a, "pct", 24) for a in ("placebo", "active")} | {
        difference_name("spine", "pct", 24, groups=("active", "placebo"))}
    # a grid point is the delta analysis at those deltas (same imputations)
    surf = tipping_surface(trial, "spine", m=20, seed=4)
    got = surf.evaluate({"placebo": -2.0, "active": 4.0})["active - placebo"]
    ref = delta_analysis(trial, [DeltaScenario(-2.0, 4.0, label="x")], sites=("spine",), m=20, seed=4).table
    row = ref[ref["group"] == "difference"].iloc[0]
    assert float(got["estimate"]) == pytest.approx(row["estimate"], rel=1e-10)
    assert float(got["ci_low"]) == pytest.approx(row["ci_low"], rel=1e-10)
    flips = pd.DataFrame(r.settings["tipping_points"], columns=TIPPING_COLUMNS)
    assert set(flips["ray"]) <= {"placebo", "active", "both"}


def test_three_arms_compare_every_dose_with_placebo(doses):
    _, derived = load_trial(doses)
    r = reference_based_analysis(derived, strategies=("MAR", "J2R"), seed=1)
    t = r.table[(r.table["strategy"] == "MAR") & (r.table["month"] == 24.0)]
    assert set(t["comparison"]) == {"", "low - placebo", "high - placebo"}
    d = t[t["group"] == "difference"].set_index("comparison")
    for arm in ("low", "high"):
        truth = DOSES.pct_difference("spine", arm, "placebo", 24)
        assert abs(d.loc[f"{arm} - placebo", "estimate"] - truth) < 2.5 * d.loc[f"{arm} - placebo", "se"], arm
    tip = tipping_point_analysis(derived, (-2.0, 0.0, 2.0), (-2.0, 0.0, 2.0), m=10, seed=1)
    assert set(tip.table["comparison"]) == {"low - placebo", "high - placebo"}
    assert len(tip.text) == 1 + 2 * 3


def test_single_arm_has_one_delta_and_no_reference(doses):
    _, derived = load_trial(doses, group="none")
    sd = sensitivity_design(derived)
    assert sd.single_arm and sd.levels == ("all",) and sd.comparisons == ()
    with pytest.raises(NotApplicable, match="single-arm"):
        reference_based_analysis(derived)
    r = delta_analysis(derived, m=30, seed=3)
    assert set(r.table["group"]) == {"all"} and set(r.table["comparison"]) == {""}
    mar = r.table[r.table["scenario"] == "MAR (no adjustment)"].iloc[0]
    truth = np.mean([DOSES.pct_change("spine", a, 24) for a in ("placebo", "low", "high")])  # 1:1:1
    assert abs(mar["estimate"] - truth) < 2.5 * mar["se"]
    worse = r.table[r.table["scenario"] == "-2 %/yr"].iloc[0]
    assert worse["estimate"] < mar["estimate"]
    tip = tipping_point_analysis(derived, np.arange(-6.0, 6.01, 1.0), (0.0, 1.0), m=20, seed=3)
    assert set(tip.table["group"]) == {"all"} and tip.table["delta_group"].isna().all()
    assert len(tip.table) == 13 and "sensitivity_tipping" in tip.figures
    flips = pd.DataFrame(tip.settings["tipping_points"], columns=TIPPING_COLUMNS)
    assert set(flips["ray"]) == {"all"}
    for _, f in flips[flips["tipping_delta"].notna()].iterrows():  # the CI bound crosses 0 there
        row = delta_analysis(derived, [DeltaScenario(f["tipping_delta"], label="t")], m=20, seed=3).table.iloc[0]
        assert min(abs(row["ci_low"]), abs(row["ci_high"])) < 1e-6


def test_single_post_baseline_visit(tmp_path):
    """Visits at months 0 and 12 only: one post-baseline DXA, a 1 x 1 covariance; delta and the
    reference-based strategies work, and a baseline-only dropout under J2R follows placebo."""
    _, derived = load_trial(trial_csv(tmp_path / "one.csv", n=200, truth=ONE_VISIT, seed=6))
    assert sensitivity_design(derived).endpoint == 12.0
    r = reference_based_analysis(derived, sites=("spine",), seed=1)
    t = r.table.set_index(["strategy", "group"])
    for s in ("JR", "CR", "CIR"):  # no post-baseline value observed before dropout: all three coincide
        assert t.loc[(s, "difference"), "estimate"] == pytest.approx(t.loc[("JR", "difference"), "estimate"])
    assert t.loc[("JR", "difference"), "estimate"] < t.loc[("MAR", "difference"), "estimate"]
    truth = ONE_VISIT.pct_difference("spine", "active", "placebo", 12)
    assert abs(t.loc[("MAR", "difference"), "estimate"] - truth) < 2.5 * t.loc[("MAR", "difference"), "se"]
    d = delta_analysis(derived, [DeltaScenario(label="MAR"), DeltaScenario(-2.0, -2.0, label="worse")],
                       sites=("spine",), m=20, seed=1).table.set_index(["scenario", "group"])["estimate"]
    assert d[("worse", "placebo")] < d[("MAR", "placebo")] and d[("worse", "active")] < d[("MAR", "active")]
