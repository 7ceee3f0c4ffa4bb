"""Delta-adjusted MI: the adjustment by hand, delta = 0 is MAR, linearity in delta, and recovery of
the truth under MNAR dropout of known delta."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.sensitivity.delta import DEFAULT_SCENARIOS, DeltaScenario, apply_delta, delta_analysis, delta_shift
from analysis.sensitivity.reference_based import SiteData, endpoint_analysis, impute_reference_based
from analysis.sensitivity.result import FOREST_COLUMNS
from tests.analysis.sensitivity._mvn_study import mvn_study

NAN = np.nan


@pytest.fixture(scope="module")
def twin():
    return derive(load_twin().frame)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tiny(outcome="pct") -> SiteData:
    """Three patients at months 6 and 12: a completer, a dropout after month 6 and one seen only at
    baseline; baselines 0.8, 1.0, 0.5 g/cm^2; groups NR, R, NR."""
    y = np.array([[-1.0, -2.0], [0.5, NAN], [NAN, NAN]])
    return SiteData(site="spine", outcome=outcome, ids=np.array(["a", "b", "c"]), months=np.array([6.0, 12.0]),
                    y=y, baseline=np.array([0.8, 1.0, 0.5]), group=np.array([0, 1, 0]),
                    levels=("non-responder", "responder"),
                    covariates=np.zeros((3, 0)), covariate_names=())


def test_shift_and_adjustment_by_hand():
    d = _tiny()
    # years since the last observed DXA at post-dropout visits
    np.testing.assert_array_equal(d.years_since_last, [[0, 0], [0, 0.5], [0.5, 1.0]])
    np.testing.assert_array_equal(delta_shift(d, "pct"), [[0, 0], [0, 0.5], [0.5, 1.0]])
    # 0.01 g/cm^2 per year on the % scale: 100 * 0.01 / baseline per year, i.e. 2 %/yr at 0.5 g/cm^2
    np.testing.assert_allclose(delta_shift(d, "abs") * 0.01, [[0, 0], [0, 0.5], [1.0, 2.0]])
    completed = np.array([[[-1.0, -2.0], [0.5, 0.2], [-0.4, -0.8]]])
    out = apply_delta(completed, d, DeltaScenario(reference=-2.0, others=-1.0))
    np.testing.assert_allclose(out[0], [[-1.0, -2.0], [0.5, 0.2 - 0.5], [-0.4 - 1.0, -0.8 - 2.0]])
    out = apply_delta(completed, d, DeltaScenario(scale_reference=2.0, scale_others=1.5))
    np.testing.assert_allclose(out[0], [[-1.0, -2.0], [0.5, 0.3], [-0.8, -1.6]])
    # both: s * y + delta * years
    out = apply_delta(completed, d, DeltaScenario(-2.0, 0.0, scale_reference=2.0))
    np.testing.assert_allclose(out[0, 2], [-0.8 - 1.0, -1.6 - 2.0])
    # on the g/cm^2 scale a %-delta is converted with the baseline: 2 % of 0.5 g/cm^2 = 0.01 per year
    np.testing.assert_allclose(delta_shift(_tiny("change"), "pct")[2] * 2.0, [0.005, 0.01])
    assert completed[0, 1, 1] == 0.2  # input not modified


@pytest.mark.parametrize("unit", ["pct", "abs"])
def test_adjusting_one_visit_equals_that_visit_of_the_whole_adjustment(unit):
    """``visit=j`` adjusts the M x n values of one visit exactly as the whole M x n x m array's column
    j (the analysis of the endpoint no longer adjusts, nor holds, every visit's; issue #18)."""
    d = _tiny()
    completed = np.random.default_rng(2).normal(size=(5, 3, 2))
    for sc in (DeltaScenario(reference=-2.0, others=-1.0, unit=unit), DeltaScenario(-2.0, 0.5, scale_reference=2.0,
                                                                                      scale_others=1.5, unit=unit)):
        whole = apply_delta(completed, d, sc)
        for j in range(2):
            np.testing.assert_array_equal(apply_delta(completed[:, :, j], d, sc, visit=j), whole[:, :, j])
    with pytest.raises(ValueError, match=r"values must end in the data's shape \(3,\)"):
        apply_delta(completed, d, DeltaScenario(reference=-1.0), visit=1)


def test_delta_zero_equals_the_mar_analysis(twin):
    """Delta 0 is the MAR MI of the same imputations, pooled by Rubin's rules."""
    kw = dict(sites=("spine", "femoral_neck"), m=30, seed=11)
    d = delta_analysis(twin, [DeltaScenario(label="zero"), DeltaScenario(-1.0, 0.0)], **kw).table
    zero = d[d["scenario"] == "zero"].set_index("estimand")
    for site in kw["sites"]:
        imp = impute_reference_based(twin, site, ("MAR",), m=30, seed=11)
        pooled = endpoint_analysis(imp.endpoint_pct("MAR"), imp.data.group, site, 12, levels=imp.data.levels)
        for name, res in pooled.items():
            assert zero.loc[name, "estimate"] == pytest.approx(res.estimate, abs=1e-12), name
            assert zero.loc[name, "se"] == pytest.approx(res.se, abs=1e-12), name


def test_additive_delta_moves_the_estimate_linearly(twin):
    """Q(delta) = Q(0) + delta * mean shift of the group at month 12 (the imputations are shared)."""
    kw = dict(sites=("spine",), m=20, seed=3)
    sc = [DeltaScenario(label="0"), DeltaScenario(-2.0, 0.0, label="a"), DeltaScenario(-4.0, 0.0, label="b"),
          DeltaScenario(0.0, 3.0, label="c")]
    t = delta_analysis(twin, sc, **kw).table.set_index(["scenario", "group"])["estimate"]
    step = t[("a", "non-responder")] - t[("0", "non-responder")]
    assert step < 0
    assert t[("b", "non-responder")] - t[("0", "non-responder")] == pytest.approx(2 * step)
    assert t[("a", "responder")] == t[("0", "responder")]
    assert t[("c", "responder")] > t[("0", "responder")]
    assert t[("a", "difference")] - t[("0", "difference")] == pytest.approx(-step)


def test_mnar_with_known_delta_is_recovered_at_the_true_delta():
    """Dropouts' post-dropout % change is shifted by -3 %/yr (non-responders) and -1 %/yr
    (responders) beyond MAR. MAR imputation misses this (bias ~ +0.8 points for the
    non-responders); the delta-adjusted analysis at the true deltas recovers the complete-data
    truth, for every estimand closer than MAR."""
    frame, truth, info = mvn_study(300, seed=2, delta={"non-responder": -3.0, "responder": -1.0})
    assert (info["last"] < 1).mean() > 0.3  # substantial dropout
    r = delta_analysis(frame, [DeltaScenario(label="MAR"), DeltaScenario(-3.0, -1.0, label="true")],
                       sites=("spine",), m=60, seed=5)
    t = r.table.set_index(["scenario", "group"])
    for g in ("non-responder", "responder", "difference"):
        err_true = t.loc[("true", g), "estimate"] - truth[g]
        err_mar = t.loc[("MAR", g), "estimate"] - truth[g]
        assert abs(err_true) < abs(err_mar), (g, err_true, err_mar)
        assert abs(err_true) < 1.5 * t.loc[("true", g), "se"], (g, err_true)
    assert t.loc[("MAR", "non-responder"), "estimate"] - truth["non-responder"] > 0.5
    assert t.loc[("MAR", "non-responder"), "ci_low"] > truth["non-responder"]  # MAR's CI misses the truth
    assert t.loc[("true", "non-responder"), "ci_low"] < truth["non-responder"] < t.loc[("true", "non-responder"),
                                                                                       "ci_high"]


def test_twin_result(twin):
    before = twin.copy()
    r = delta_analysis(twin, m=10, seed=1, label="SYNTHETIC")
    pd.testing.assert_frame_equal(twin, before)
    assert r.name == "delta"
    assert len(r.table) == 2 * len(DEFAULT_SCENARIOS) * 3
    assert list(r.forest_rows.columns) == FOREST_COLUMNS
    assert "sensitivity_delta" in r.figures and r.text
    assert len(r.settings["scenarios"]) == len(DEFAULT_SCENARIOS)


@pytest.mark.parametrize("kwargs, message", [
    ({"unit": "sd"}, "unit must be one of"),
    ({"scale_others": -1.0}, "must be a finite number >= 0"),
    ({"reference": np.inf}, "must be finite"),
    ({"by_level": {"placebo": np.nan}}, "must be finite"),
])
def test_scenario_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeltaScenario(**kwargs)


def test_analysis_errors(twin):
    with pytest.raises(ValueError, match="scenario names must be unique"):
        delta_analysis(twin, [DeltaScenario(label="x"), DeltaScenario(-1.0, label="x")], sites=("spine",), m=2)
    with pytest.raises(ValueError, match="at least one DeltaScenario"):
        delta_analysis(twin, [], sites=("spine",), m=2)
    with pytest.raises(ValueError, match="strategy must be one of"):
        delta_analysis(twin, sites=("spine",), m=2, base_strategy="MNAR")
