"""The observed-data figures of :mod:`analysis.figures.observed` at registry size: the trajectories
draw a seeded sample of the patients' lines, and the group means over every patient (issue #18)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def twin_derived():
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin

    return derive(load_twin().frame)


def _thin(ax):
    return [ln for ln in ax.get_lines() if ln.get_linewidth() == pytest.approx(0.9)]


def test_trajectories_draw_at_most_max_lines_patients_and_means_over_all(twin_derived):
    import matplotlib.pyplot as plt

    from analysis.figures.observed import trajectories
    from analysis.figures.theme import group_title

    d = twin_derived
    spine = d[d["bmd_spine"].notna()]
    n = spine["patient_id"].nunique()
    assert n > 20
    fig = trajectories(d, ("spine",), max_lines=20)
    ax = fig.axes[0]
    assert len(_thin(ax)) == 20  # a sample of the patients' lines
    assert f"a random 20 of {n:,} patients; means: all" in fig._suptitle.get_text()
    means = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label().endswith("(observed mean)")}
    assert means
    for level in spine["responder_status"].dropna().unique():  # over every patient, not the lines drawn
        full = spine[spine["responder_status"] == level].groupby("month")["pct_change_spine"].mean()
        np.testing.assert_allclose(means[f"{group_title(level)} (observed mean)"].get_ydata(), full.to_numpy())
    again = trajectories(d, ("spine",), max_lines=20).axes[0]  # the same sample every time (seeded)
    assert [tuple(ln.get_ydata()) for ln in _thin(again)] == [tuple(ln.get_ydata()) for ln in _thin(ax)]
    plt.close("all")


def test_trajectories_of_a_small_study_draw_every_patient_and_say_nothing(twin_derived):
    import matplotlib.pyplot as plt

    from analysis.figures.observed import trajectories

    d = twin_derived
    n = d[d["bmd_spine"].notna()]["patient_id"].nunique()
    fig = trajectories(d, ("spine",))
    assert len(_thin(fig.axes[0])) == n
    assert fig._suptitle.get_text() == "Observed BMD trajectories per patient"
    plt.close("all")
