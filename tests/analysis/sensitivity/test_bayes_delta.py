"""Delta adjustment in the Bayesian LMM and by MI from its posterior predictive: delta = 0 is the
model's own estimand, the adjustment by hand (additive, multiplicative, with a prior on delta),
exact tipping points, the MI's common-random-number shift, and recovery of the truth under MNAR
dropout of known delta."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from analysis.bayes.fit import analysis_frame, fit_bayes
from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.sensitivity.bayes_delta import (METHOD_MODEL, bayes_delta_analysis, prepare_site, table_columns)
from analysis.sensitivity.delta import DeltaScenario
from analysis.sensitivity.result import FOREST_COLUMNS
from tests.analysis.sensitivity._mvn_study import mvn_study

FAST = {"draws": 400, "tune": 400, "chains": 2}
DIFF = "responder - non-responder"  # the key of the one difference of a responder study


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def twin():
    return derive(load_twin().frame)


@pytest.fixture(scope="module")
def twin_site(twin, tmp_path_factory):
    cache = tmp_path_factory.mktemp("fit-cache")
    bf = fit_bayes(twin, "lmm", "spine", seed=4, cache_dir=cache, **FAST)
    frame, _ = analysis_frame(twin, "last_observed")
    return bf, prepare_site(bf.fit, frame, "spine"), cache


def test_delta_zero_is_the_models_own_estimand(twin_site):
    bf, data, _ = twin_site
    post = bf.fit.posterior["posterior"]
    d = data.estimand_draws(DeltaScenario(), "pct")
    def flat(da):  # the order of prepare_site; one contrast of a two-group study
        da = da.isel(contrast=0) if "contrast" in da.dims else da
        return da.stack(s=("chain", "draw")).values

    np.testing.assert_allclose(d["non-responder"], flat(post["pct_change_end"].sel(group="non-responder")),
                               rtol=1e-10)
    np.testing.assert_allclose(d[DIFF], flat(post["diff_pct_change_end"]), rtol=1e-9, atol=1e-12)
    a = data.estimand_draws(DeltaScenario(), "abs")
    np.testing.assert_allclose(a[DIFF], flat(post["diff_change_end"]), rtol=1e-9)


def test_adjustment_by_hand(twin_site, twin):
    """theta_g(delta, s) = F_g + sum over dropouts of ((s - 1) C_i + delta w_i) / n_g, with the
    dropouts, their years after the last DXA and C_i computed here from the data and the draws."""
    _, data, _ = twin_site
    spine = twin[twin["bmd_spine"].notna()]
    last = spine.groupby("patient_id")["month"].max().reindex(data.patient_ids)
    np.testing.assert_array_equal(data.dropout, (last < 12).to_numpy())
    np.testing.assert_allclose(data.years_after, np.where(last < 12, (12 - last) / 12, 0.0))
    assert data.dropout.sum() > 5
    base = data.estimand_draws(DeltaScenario(), "pct")
    sc = DeltaScenario(-2.0, 1.0, scale_reference=1.5, scale_others=0.5)
    adj = data.estimand_draws(sc, "pct")
    change = 100 * (data.expected_end - data.baseline) / data.baseline  # MAR-expected % change
    for g, key, delta, s in ((0, "non-responder", -2.0, 1.5), (1, "responder", 1.0, 0.5)):
        sel = (data.group == g) & data.dropout
        n_g = (data.group == g).sum()
        expect = base[key] + ((s - 1) * change[:, sel].sum(axis=1) + delta * data.years_after[sel].sum()) / n_g
        np.testing.assert_allclose(adj[key], expect, rtol=1e-12)
    np.testing.assert_allclose(adj[DIFF], adj["responder"] - adj["non-responder"])
    # g/cm^2 per year on the % scale: 100 / baseline per unit
    absd = data.estimand_draws(DeltaScenario(-0.01, 0.0, unit="abs"), "pct")
    sel = (data.group == 0) & data.dropout
    w = (100 / data.baseline[sel] * data.years_after[sel]).sum() / (data.group == 0).sum()
    np.testing.assert_allclose(absd["non-responder"] - base["non-responder"], -0.01 * w, rtol=1e-12)
    # a prior on delta widens the interval and keeps the centre
    rng = np.random.default_rng(1)
    wide = data.estimand_draws(DeltaScenario(-2.0, 0.0), "pct", delta_sd=2.0, rng=rng)
    fixed = data.estimand_draws(DeltaScenario(-2.0, 0.0), "pct")
    assert wide["non-responder"].std() > 1.2 * fixed["non-responder"].std()
    assert abs(np.median(wide["non-responder"]) - np.median(fixed["non-responder"])) < 0.15


def test_posterior_predictive_mi_shifts_with_delta_exactly(twin_site):
    """With the same random numbers the completed values move by delta * years after dropout for
    dropouts only; observed values are the data."""
    _, data, _ = twin_site
    y0 = data.impute(DeltaScenario(), 30, np.random.default_rng(3))
    y1 = data.impute(DeltaScenario(-2.0, 1.0), 30, np.random.default_rng(3))
    shift = np.where(data.group == 1, 1.0, -2.0) * data.years_after
    np.testing.assert_allclose(y1 - y0, np.broadcast_to(np.where(data.dropout, shift, 0.0), y0.shape), atol=1e-12)
    observed = 100 * (data.observed_end - data.baseline) / data.baseline
    np.testing.assert_allclose(y0[:, ~data.dropout], np.broadcast_to(observed[~data.dropout], (30, (~data.dropout).sum())))
    assert np.isfinite(y0).all() and y0[:, data.dropout].std(axis=0).min() > 0  # drawn, not fixed


def test_twin_analysis_and_exact_tipping_points(twin, twin_site):
    _, data, cache = twin_site
    before = twin.copy()
    sc = [DeltaScenario(label="MAR"), DeltaScenario(-2.0, 0.0), DeltaScenario(scale_reference=1.5,
                                                                                scale_others=1.5)]
    r = bayes_delta_analysis(twin, sc, sites=("spine",), m=40, seed=4, cache_dir=cache, label="SYNTHETIC", **FAST)
    assert twin.equals(before)
    assert r.name == "delta_bayes" and list(r.table.columns) == table_columns(("non-responder", "responder"))
    assert r.settings["fit_cache"] == {"spine": "hit"}  # the fixture's fit, read back
    # 3 scenarios x (in-model pct + abs, MI pct) x 3 estimands
    assert len(r.table) == 3 * 3 * 3
    model = r.table[(r.table["method"] == METHOD_MODEL) & (r.table["measure"] == "pct")]
    mar = model[model["scenario"] == "MAR"].set_index("group")
    # the MI from the posterior predictive agrees with the model at delta = 0 (mean of individual %
    # changes vs ratio of model means; MC error of 40 imputations)
    mi = r.table[r.table["method"].str.startswith("MI") & (r.table["scenario"] == "MAR")].set_index("group")
    for g in ("non-responder", "difference"):
        assert abs(mi.loc[g, "estimate"] - mar.loc[g, "estimate"]) < 0.5 * mi.loc[g, "se"], g
    # exact tipping points: at delta*, a 95% bound of the estimand is 0
    tips = r.settings["tipping_points"]
    assert tips, "the twin's non-responder decline must tip within the default grid"
    for t in tips:
        sc_t = (DeltaScenario(t["tipping_delta"], 0.0) if t["ray"] == "non-responder" else
                DeltaScenario(0.0, t["tipping_delta"]) if t["ray"] == "responder" else
                DeltaScenario(t["tipping_delta"], t["tipping_delta"]))
        x = data.estimand_draws(sc_t, "pct")[t["comparison"] if t["group"] == "difference" else t["group"]]
        lo, hi = np.quantile(x, [0.025, 0.975])
        assert min(abs(lo), abs(hi)) < 1e-8, t
        assert t["from_state"] != t["to_state"]
    assert {"sensitivity_delta_bayes", "sensitivity_tipping_bayes"} == set(r.figures)
    # the heat map colours each grid cell by its CrI class: check two cells of the NR panel
    from matplotlib.collections import QuadMesh

    grid = np.asarray(r.settings["grid"])
    mesh = next(c for c in r.figures["sensitivity_tipping_bayes"].axes[0].collections if isinstance(c, QuadMesh))
    state = np.asarray(mesh.get_array()).reshape(grid.size, grid.size)  # (delta R, delta NR)
    for d_nr in (0.0, grid.min()):
        x = data.estimand_draws(DeltaScenario(d_nr, 0.0), "pct")["non-responder"]
        lo, hi = np.quantile(x, [0.025, 0.975])
        expect = 1 if lo > 0 else (-1 if hi < 0 else 0)
        assert state[np.flatnonzero(grid == 0.0)[0], np.flatnonzero(grid == d_nr)[0]] == expect, d_nr
    assert list(r.forest_rows.columns) == FOREST_COLUMNS and (r.forest_rows["kind"] == "bayesian").all()
    assert any("tipping points, exact" in t for t in r.text)
    assert f"MAR | spine | {DIFF} | pct" in r.draws


def test_mnar_with_known_delta_is_recovered_at_the_true_delta():
    """As the MI test (test_delta.py): post-dropout values shifted by -3 %/yr (non-responders) and
    -1 %/yr (responders). At the true deltas both Bayesian versions recover the complete-data
    truth, closer than MAR, and MAR's interval for the non-responders misses it."""
    frame, truth, _ = mvn_study(300, seed=2, delta={"non-responder": -3.0, "responder": -1.0})
    r = bayes_delta_analysis(frame, [DeltaScenario(label="MAR"), DeltaScenario(-3.0, -1.0, label="true")],
                             sites=("spine",), m=60, seed=5, **FAST)
    for method in (METHOD_MODEL, "MI from the Bayesian posterior predictive (m=60, Rubin)"):
        t = r.table[(r.table["method"] == method) & (r.table["measure"] == "pct")].set_index(["scenario", "group"])
        for g in ("non-responder", "responder", "difference"):
            err_true = t.loc[("true", g), "estimate"] - truth[g]
            err_mar = t.loc[("MAR", g), "estimate"] - truth[g]
            assert abs(err_true) < abs(err_mar), (method, g, err_true, err_mar)
            assert abs(err_true) < 2.0 * t.loc[("true", g), "se"], (method, g, err_true)
        assert t.loc[("MAR", "non-responder"), "ci_low"] > truth["non-responder"], method
        lo, hi = t.loc[("true", "non-responder"), ["ci_low", "ci_high"]]
        assert lo < truth["non-responder"] < hi, method


def test_errors(twin):
    with pytest.raises(ValueError, match="scenario names must be unique"):
        bayes_delta_analysis(twin, [DeltaScenario(label="x"), DeltaScenario(-1.0, label="x")], sites=("spine",))
    with pytest.raises(ValueError, match="delta_sd"):
        bayes_delta_analysis(twin, sites=("spine",), delta_sd=-1.0)



def test_a_fit_without_patient_effects_is_adjusted_chunk_by_chunk_with_the_same_draws(twin_site, twin, monkeypatch):
    """A large fit keeps no ``u``: prepare_site draws the effects chunk by chunk over the draws instead of
    holding every draw's effects and their temporaries (~4 GB at 50,000 patients; issue #18), and gets
    what the effects drawn whole (``patient_effects``) give."""
    from types import SimpleNamespace

    import models.marginal_effects as me
    from analysis.bayes.fit import MODELS
    from models.marginal_effects import ON_REQUEST_ATTR, SEED_ATTR

    bf, _, _ = twin_site
    frame, _ = analysis_frame(twin, "last_observed")
    lazy = bf.fit.posterior["posterior"].to_dataset().drop_vars("u")
    lazy.attrs.update({ON_REQUEST_ATTR: "on request", SEED_ATTR: 11})
    whole = lazy.assign(u=MODELS["lmm"](frame, "spine", None).patient_effects(lazy))
    expected = prepare_site(SimpleNamespace(posterior={"posterior": whole}), frame, "spine")
    monkeypatch.setattr(me, "chunk_draws", lambda n_draws, n_rows, chunk_bytes=None: 7)  # many chunks

    def whole_array(*args, **kwargs):
        raise AssertionError("every draw's patient effects were drawn at once")

    monkeypatch.setattr(type(MODELS["lmm"](frame, "spine", None)), "patient_effects", whole_array)
    got = prepare_site(SimpleNamespace(posterior={"posterior": lazy}), frame, "spine")
    assert got.expected_end.shape == (800, got.patient_ids.size)
    np.testing.assert_allclose(got.expected_end, expected.expected_end, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(got.patient_ids, expected.patient_ids)
    again = prepare_site(SimpleNamespace(posterior={"posterior": whole}), frame, "spine")  # u held: views by chunk
    np.testing.assert_array_equal(again.expected_end, expected.expected_end)
