"""Tipping points: vectorised Rubin's rules, the closed-form grid against the full delta analysis,
monotonicity of the grid, and the flip points."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.frequentist.imputation import rubin_pool
from analysis.sensitivity.delta import DeltaScenario, delta_analysis
from analysis.sensitivity.tipping import (
    TIPPING_COLUMNS,
    rubin_arrays,
    tipping_point_analysis,
    tipping_surface,
)

GRID = tuple(np.arange(-6.0, 6.01, 1.0))
KW = dict(m=40, seed=8)


@pytest.fixture(scope="module")
def twin():
    return derive(load_twin().frame)


@pytest.fixture(scope="module")
def result(twin):
    r = tipping_point_analysis(twin, GRID, GRID, label="SYNTHETIC", **KW)
    yield r
    plt.close("all")


def test_rubin_arrays_equals_rubin_pool():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(4, 7))
    u = rng.uniform(0.1, 1.0, size=(4, 7))
    dfc = np.array([5.0, 20.0, np.inf, 12.5])
    got = rubin_arrays(q, u, dfc, level=0.9)
    for k in range(4):
        ref = rubin_pool(q[k], u[k], dfc[k] if np.isfinite(dfc[k]) else None, conf_level=0.9)
        for name, attr in (("estimate", "estimate"), ("se", "se"), ("df", "df"), ("ci_low", "ci_low"),
                           ("ci_high", "ci_high"), ("p", "p")):
            assert got[name][k] == pytest.approx(getattr(ref, attr), rel=1e-10), (k, name)


def test_surface_equals_the_delta_analysis(twin):
    """Closed-form grid points = delta_analysis (explicit adjustment + rubin_pool), same imputations."""
    surf = tipping_surface(twin, "spine", **KW)
    pts = [(0.0, 0.0), (-2.5, 1.0), (3.0, -4.0)]
    table = delta_analysis(twin, [DeltaScenario(a, b, label=str(k)) for k, (a, b) in enumerate(pts)],
                           sites=("spine",), **KW).table
    for k, (a, b) in enumerate(pts):
        got = surf.evaluate({"non-responder": a, "responder": b})
        sub = table[table["scenario"] == str(k)].set_index("group")
        for g, key in (("non-responder", "non-responder"), ("responder", "responder"),
                       ("difference", "responder - non-responder")):
            for c in ("estimate", "se", "df", "ci_low", "ci_high", "p", "mc_se"):
                assert float(got[key][c]) == pytest.approx(sub.loc[g, c], rel=1e-9, abs=1e-12), (k, g, c)


def _pivot(table: pd.DataFrame, site: str, group: str, col: str) -> np.ndarray:
    sub = table[(table["site"] == site) & (table["group"] == group)]
    return sub.pivot(index="delta_reference", columns="delta_group", values=col).to_numpy()


def test_grid_is_monotone(result):
    """Rows: delta of the reference, the non-responders (increasing); columns: delta of the compared
    group, the responders (increasing)."""
    t = result.table
    order = {"below 0": -1, "includes 0": 0, "above 0": 1}
    for site in ("spine", "femoral_neck"):
        nr = _pivot(t, site, "non-responder", "estimate")
        r = _pivot(t, site, "responder", "estimate")
        diff = _pivot(t, site, "difference", "estimate")
        assert np.all(np.diff(nr, axis=0) > 0) and np.allclose(np.diff(nr, axis=1), 0)
        assert np.all(np.diff(r, axis=1) >= 0) and np.allclose(np.diff(r, axis=0), 0)
        assert np.all(np.diff(diff, axis=0) < 0) and np.all(np.diff(diff, axis=1) >= 0)
        # the CI class and the CI bound that decides it move one way along each axis
        for g, axis, sign, bound in (("non-responder", 0, 1, "ci_high"), ("difference", 0, -1, "ci_low"),
                                     ("difference", 1, 1, "ci_low")):
            state = np.vectorize(order.get)(_pivot(t, site, g, "state"))
            assert np.all(sign * np.diff(state, axis=axis) >= 0), (site, g, axis)
            assert np.all(sign * np.diff(_pivot(t, site, g, bound), axis=axis) > 0), (site, g, axis)


def test_flip_points_are_found(twin, result):
    """Each reported tipping point lies between grid points of different CI class, and the full
    delta analysis at that delta puts the crossing CI bound at 0."""
    flips = pd.DataFrame(result.settings["tipping_points"], columns=TIPPING_COLUMNS)
    found = flips[flips["tipping_delta"].notna()]
    # on the twin the difference flips when non-responder dropouts fare better than MAR predicts
    key = found[(found["group"] == "difference") & (found["ray"] == "non-responder")]
    assert set(key["site"]) == {"spine", "femoral_neck"} and (key["tipping_delta"] > 0).all()
    table = result.table
    for _, f in found.iterrows():
        assert f["bracket_low"] <= f["tipping_delta"] <= f["bracket_high"]
        x = f["tipping_delta"]
        a, b = {"non-responder": (x, 0.0), "responder": (0.0, x), "both": (x, x)}[f["ray"]]
        res = delta_analysis(twin, [DeltaScenario(a, b)], sites=(f["site"],), **KW).table
        row = res[res["group"] == f["group"]].iloc[0]
        bound = "ci_low" if "above 0" in (f["from_state"], f["to_state"]) else "ci_high"
        assert abs(row[bound]) < 1e-6, (f.to_dict(), row[bound])
        if f["ray"] != "both":
            sub = table[(table["site"] == f["site"]) & (table["group"] == f["group"])]
            col_fixed = "delta_group" if f["ray"] == "non-responder" else "delta_reference"
            col_move = "delta_reference" if f["ray"] == "non-responder" else "delta_group"
            line = sub[sub[col_fixed] == 0.0].set_index(col_move)["state"]
            assert line[f["bracket_low"]] != line[f["bracket_high"]]


def test_result_structure(twin, result):
    r = result
    assert r.name == "tipping"
    assert len(r.table) == 2 * 3 * len(GRID) ** 2
    assert "sensitivity_tipping" in r.figures and len(r.text) == 1 + 2 * 3
    mar = r.table[(r.table["delta_reference"] == 0) & (r.table["delta_group"] == 0)]
    assert not mar["flipped"].any()
    before = twin.copy()
    tipping_point_analysis(twin, (-1.0, 0.0), (0.0, 1.0), sites=("spine",), m=5, seed=1)
    pd.testing.assert_frame_equal(twin, before)


def test_errors(twin):
    with pytest.raises(ValueError, match="at least 2 finite deltas"):
        tipping_point_analysis(twin, (0.0,), GRID, sites=("spine",), m=2)
    with pytest.raises(ValueError, match="unit must be one of"):
        tipping_point_analysis(twin, GRID, GRID, sites=("spine",), m=2, unit="sd")
    with pytest.raises(ValueError, match="M >= 2"):
        rubin_arrays(np.zeros((2, 1)), np.ones((2, 1)))
