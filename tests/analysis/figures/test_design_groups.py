"""Figures speak the design's groups and sites: arms (reference first) and their own sites for a trial,
one group for a single arm, the responder colours for the RAJAK twin."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.figures.plots import (
    GROUP_COLOURS,
    LEVEL_COLOURS,
    PALETTE,
    group_colours,
    retention,
    trajectories,
)
from models.simulate_trial import TrialTruth, simulate_trial


def _derived(tmp_path, group="arm", arms=None):
    from analysis.study.clinical import derive
    from analysis.study.data import load_dataset

    truth = TrialTruth(arms=arms or {"placebo": 1.0, "active": 1.0, "high": 1.0},
                       slopes={"radius": {"placebo": -0.006, "active": 0.0, "high": 0.004}}, baseline={"radius": 0.7})
    path = tmp_path / "trial.csv"
    simulate_trial(60, truth, seed=3).to_csv(path, index=False)
    ds = load_dataset(path, group=group, visit="visit", time="day", time_unit="days")
    return derive(ds.frame, None, None, ds.design.endpoint, design=ds.design)


def test_group_colours_follow_the_design_order():
    assert group_colours(["non-responder", "responder", "undefined"]) == {
        "non-responder": GROUP_COLOURS["non-responder"], "responder": GROUP_COLOURS["responder"],
        "undefined": PALETTE["grey"]}
    assert list(group_colours(["placebo", "low", "high"]).values()) == list(LEVEL_COLOURS[:3])
    assert group_colours(["all"]) == {"all": PALETTE["blue"]}


def test_trajectories_and_retention_of_a_three_arm_trial(tmp_path):
    d = _derived(tmp_path)
    fig = trajectories(d)  # sites and groups from the design
    ax = fig.axes[0]
    assert ax.get_title() == "radius"
    means = [ln for ln in ax.get_lines() if ln.get_label().endswith("(observed mean)")]
    assert [ln.get_label() for ln in means] == ["placebo (observed mean)", "active (observed mean)",
                                                "high (observed mean)"]
    colours = group_colours(["placebo", "active", "high"])
    for ln in means:
        assert ln.get_color() == colours[ln.get_label().split(" ")[0]]
    # each group's mean line is the observed mean % change at each visit
    act = d[(d["group"] == "active") & d["bmd_radius"].notna()].groupby("month")["pct_change_radius"].mean()
    np.testing.assert_allclose(means[1].get_ydata(), act.to_numpy())
    assert max(ax.get_xticks()) == 24
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any("responder" in t for t in labels)
    bars = retention(d).axes[0]
    legend = [t.get_text() for t in bars.get_legend().get_texts()]
    per = d.drop_duplicates("patient_id")["group"].value_counts()
    assert set(legend) == {f"{g} (n = {per[g]})" for g in ("placebo", "active", "high")}


def test_a_single_arm_is_one_group(tmp_path):
    d = _derived(tmp_path, group="none")
    ax = trajectories(d).axes[0]
    means = [ln for ln in ax.get_lines() if ln.get_label().endswith("(observed mean)")]
    assert [ln.get_label() for ln in means] == ["all (observed mean)"] and means[0].get_color() == PALETTE["blue"]
    legend = [t.get_text() for t in retention(d).axes[0].get_legend().get_texts()]
    assert legend == [f"all (n = {d['patient_id'].nunique()})"]


def test_ppc_panels_are_the_models_levels():
    from types import SimpleNamespace

    from analysis.figures.posterior import ppc_change, ppc_change_tree

    rng = np.random.default_rng(1)
    n = 9  # 3 placebo, 3 low, 3 high, at months 0, 12, 24
    months = np.tile([0.0, 12.0, 24.0], n)
    pid = np.repeat(np.arange(n), 3)
    level = np.repeat([0, 1, 2], 3)
    gx = np.column_stack([level == 1, level == 2]).astype(float)
    prepared = SimpleNamespace(patient_idx=pid, months=months, y=rng.normal(1.0, 0.05, pid.size), group_x=gx,
                               levels=("placebo", "low", "high"))
    y_rep = rng.normal(1.0, 0.05, (2, 20, pid.size))
    tree = ppc_change_tree(prepared, y_rep, n_lines=10)
    assert tree.attrs["month"] == 24.0  # default: the last visit
    assert list(tree["observed_data"]["patient"].values) == (["placebo (n = 3)"] * 3 + ["low (n = 3)"] * 3
                                                              + ["high (n = 3)"] * 3)
    fig = ppc_change(prepared, y_rep, "total_hip", n_lines=10)
    assert "total hip" in fig._suptitle.get_text()
    assert all(ax.get_xlabel() == "BMD change to month 24 (%)" for ax in fig.axes if ax.get_title())
    colours = group_colours(("placebo", "low", "high"))
    for ax in (a for a in fig.axes if a.get_title()):
        lv = ax.get_title().split(" ")[0]
        assert any(ln.get_color() == colours[lv] for ln in ax.get_lines())


@pytest.mark.parametrize("column", ["responder_status"])
def test_the_twin_keeps_its_responder_colours(column):
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin

    d = derive(load_twin().frame)
    ax = trajectories(d, ("spine",)).axes[0]
    means = {ln.get_label(): ln.get_color() for ln in ax.get_lines() if ln.get_label().endswith("(observed mean)")}
    assert means["responders (observed mean)"] == GROUP_COLOURS["responder"]
    assert means["non-responders (observed mean)"] == GROUP_COLOURS["non-responder"]
    legend = [t.get_text() for t in retention(d, group_column=column).axes[0].get_legend().get_texts()]
    assert legend[0].startswith("responders") and legend[1].startswith("non-responders")
