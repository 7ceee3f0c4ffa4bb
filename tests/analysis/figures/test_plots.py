"""Figures draw what they are given: the prior-vs-posterior figure on one density scale, the
estimand densities with arviz-stats' HDI and the configured ROPE, the posterior predictive check with
the observed changes, the trajectories, the forest plot."""

import numpy as np
import pytest

from analysis.figures.plots import GROUP_COLOURS, PALETTE, prior_posterior, save_figure


def _curve(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float), line


def _moments(x, y):
    """Mass, mean and SD of a density curve (trapezoid rule)."""
    mass = np.trapezoid(y, x)
    mean = np.trapezoid(x * y, x) / mass
    return mass, mean, np.sqrt(np.trapezoid((x - mean) ** 2 * y, x) / mass)


def test_prior_and_posterior_curves_are_the_densities_of_their_draws(tmp_path):
    rng = np.random.default_rng(3)
    prior, post = rng.normal(0.0, 10.0, 8000), rng.normal(2.0, 0.5, 2000)
    fig = prior_posterior([("a", prior, post), ("b", prior * 2, post - 1)], title="t", label="SYNTHETIC x")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    x, y, line = _curve(axes[0], "prior")
    mass, mean, sd = _moments(x, y)
    # the prior is drawn over its central 95% and keeps its share of the mass there
    assert mass == pytest.approx(0.95, abs=0.02) and abs(mean) < 0.5
    assert sd == pytest.approx(10.0 * 0.88, rel=0.06)  # SD of a normal truncated to +/- 1.96 SD
    assert line.get_color().lower() == PALETTE["orange"].lower() and line.get_linestyle() == "--"
    x, y, line = _curve(axes[0], "posterior")
    mass, mean, sd = _moments(x, y)
    assert mass == pytest.approx(1.0, abs=0.02) and mean == pytest.approx(2.0, abs=0.05)
    assert sd == pytest.approx(0.5, rel=0.1)
    assert line.get_color().lower() == PALETTE["blue"].lower()
    # the second panel got its own draws
    assert _moments(*_curve(axes[1], "posterior")[:2])[1] == pytest.approx(1.0, abs=0.05)
    paths = save_figure(fig, tmp_path, "pp")
    assert paths["png"].stat().st_size > 10_000 and paths["svg"].is_file()


def test_odd_number_of_panels_hides_the_spare_axis():
    rng = np.random.default_rng(0)
    fig = prior_posterior([(str(k), rng.normal(size=100), rng.normal(size=100)) for k in range(3)])
    assert sum(ax.get_visible() for ax in fig.axes) == 3


@pytest.mark.parametrize("panels,match", [
    ([], "at least one panel"),
    ([("q", np.arange(5.0), np.arange(100.0))], "panel 'q'"),
    ([("q", np.arange(100.0), np.full(100, np.nan))], "panel 'q'"),
])
def test_bad_panels(panels, match):
    with pytest.raises(ValueError, match=match):
        prior_posterior(panels)


# ---------------------------------------------------------------------------------------------
# the other key figures draw what they are given
# ---------------------------------------------------------------------------------------------


def test_trajectories_mark_dropouts_and_draw_the_bands():
    import pandas as pd

    from analysis.study.clinical import derive
    from analysis.study.data import load_twin
    from analysis.figures.plots import trajectories

    d = derive(load_twin().frame)
    bands = pd.DataFrame({"site": "spine", "group": "responder", "month": [0.0, 6.0, 12.0],
                          "mean": [0.0, 0.4, 0.8], "low": [-0.5, -0.3, -0.2], "high": [0.5, 1.1, 1.8]})
    fig = trajectories(d, ("spine",), label="SYNTHETIC", bands=bands)
    ax = fig.axes[0]
    spine = d[d["bmd_spine"].notna()]
    per = spine.groupby("patient_id", sort=False).agg(completer=("completer", "first"),
                                                       group=("responder_status", "first"))
    thin = [ln for ln in ax.get_lines() if ln.get_linewidth() == pytest.approx(0.9)]  # patient lines
    assert len(thin) == len(per)  # one line per patient
    assert sorted(ln.get_linestyle() for ln in thin) == sorted("-" if c else "--" for c in per["completer"])
    for ln, (_, row) in zip(thin, per.iterrows()):  # in patient order, coloured by group
        assert ln.get_color() == GROUP_COLOURS[row["group"]]
    (post,) = [ln for ln in ax.get_lines() if ln.get_label() == "Responders (posterior)"
               or ln.get_label().endswith("(posterior)")]
    np.testing.assert_allclose(post.get_ydata(), bands["mean"])
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(-0.5) and band[:, 1].max() == pytest.approx(1.8)


def _estimand(draws, rope=2.4, name="x"):
    from analysis.bayes.posterior import EstimandDraws

    return EstimandDraws(estimand=name, site="spine", model="lmm", draws=draws, rope=rope)


def test_contrast_posterior_shades_the_rope_and_draws_the_hdi():
    from arviz_stats.base import array_stats

    from analysis.figures.plots import contrast_posteriors

    rng = np.random.default_rng(1)
    items = [_estimand(rng.normal(1.0, 0.5, 4000)), _estimand(rng.gamma(2.0, 1.0, 4000), rope=None, name="y")]
    fig = contrast_posteriors(items, label="SYNTHETIC twin")
    ax, ax2 = fig.axes
    assert ax.get_title(loc="left") == "x [lmm]" and ax2.get_title(loc="left") == "y [lmm]"
    (rope,) = [p for p in ax.patches if p.get_label() == "ROPE"]
    xs = rope.get_patch_transform().transform(rope.get_path().vertices)[:, 0]  # data x of the span
    assert xs.min() == pytest.approx(-2.4) and xs.max() == pytest.approx(2.4)
    assert not [p for p in ax2.patches if p.get_label() == "ROPE"]  # no ROPE given: none drawn
    for a, it in zip((ax, ax2), items):  # the HDI drawn is arviz-stats' HDI of the draws (skewed ones too)
        (hdi,) = [ln for ln in a.get_lines() if ln.get_label() == "95% HDI"]
        np.testing.assert_allclose(hdi.get_xdata(), array_stats.hdi(it.draws, 0.95), rtol=1e-12)
    share = (np.abs(items[0].draws) <= 2.4).mean()  # the share of the posterior in the ROPE, as the tables
    assert f"{100 * share:.1f}% in ROPE" in [t.get_text() for t in ax.texts]
    assert any(ln.get_xdata()[0] == 0 and ln.get_color() == PALETTE["vermillion"] for ln in ax.get_lines())
    assert any(t.get_text() == "SYNTHETIC twin" for t in fig.texts)


def test_contrast_posteriors_needs_equal_draws():
    from analysis.figures.posterior import estimand_tree

    with pytest.raises(ValueError, match="different numbers of draws"):
        estimand_tree([_estimand(np.zeros(10)), _estimand(np.zeros(11), name="y")])
    tree = estimand_tree([_estimand(np.arange(6.0), name="a, g/cm^2"), _estimand(np.arange(6.0) + 1, name="b")])
    post = tree["posterior"]
    assert list(post.data_vars) == ["e0", "e1"] and post["e0"].dims == ("chain", "draw")
    assert [post[v].attrs["title"] for v in post.data_vars] == ["a, g/cm^2 [lmm]", "b [lmm]"]  # "/" allowed
    np.testing.assert_array_equal(post["e1"].values.ravel(), np.arange(6.0) + 1)


def test_ppc_change_draws_the_observed_and_replicated_changes():
    from types import SimpleNamespace

    from analysis.figures.posterior import ppc_change, ppc_change_tree

    rng = np.random.default_rng(2)
    n = 9  # patients 0-3 non-responders, 4-8 responders; patient 8 has no month-12 visit
    months = np.tile([0.0, 6.0, 12.0], n)[:-1]
    pid = np.repeat(np.arange(n), 3)[:-1]
    y = rng.normal(1.0, 0.05, pid.size)
    prepared = SimpleNamespace(patient_idx=pid, months=months, y=y, responder=(np.arange(n) >= 4).astype(float))
    y_rep = rng.normal(1.0, 0.05, (2, 50, pid.size))
    tree = ppc_change_tree(prepared, y_rep, n_lines=30, seed=4)
    obs = tree["observed_data"]["pct_change"]
    assert list(obs["patient"].values) == ["non-responders (n = 4)"] * 4 + ["responders (n = 4)"] * 4
    base, end = y[months == 0][:8], y[months == 12]
    np.testing.assert_allclose(obs.values, 100 * (end - base) / base)
    assert tree["posterior_predictive"]["pct_change"].shape == (1, 30, 8)
    fig = ppc_change(prepared, y_rep, "spine", n_lines=30, label="SYNTHETIC")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["non-responders (n = 4)", "responders (n = 4)"]
    for ax, colour in zip(axes, (GROUP_COLOURS["non-responder"], GROUP_COLOURS["responder"])):
        lines = ax.get_lines()
        (observed,) = [ln for ln in lines if ln.get_color() == PALETTE["black"]]
        assert len(lines) == 31 and all(ln.get_color() == colour for ln in lines if ln is not observed)
        sel = obs.values[obs["patient"].values == ax.get_title()]
        x, f = np.asarray(observed.get_xdata()), np.asarray(observed.get_ydata())
        # the observed ECDF: evaluated on a grid spanning the observed changes, ends at 1
        assert x.min() == pytest.approx(sel.min()) and x.max() == pytest.approx(sel.max()) and f[-1] == 1
        np.testing.assert_allclose(f, [(sel <= xi).mean() for xi in x])
    assert "SYNTHETIC" in [t.get_text() for t in fig.texts]


def test_forest_marks_frequentist_rows_as_squares_in_order():
    import pandas as pd

    from analysis.figures.plots import forest

    rows = pd.DataFrame({"label": ["completers t-test", "Bayesian lmm"], "estimate": [3.0, 2.5],
                         "low": [1.0, 0.8], "high": [5.0, 4.1], "kind": ["frequentist", "bayesian"]})
    fig = forest(rows, "t")
    ax = fig.axes[0]
    markers = [ln for ln in ax.get_lines() if ln.get_marker() in ("s", "o")]
    assert [m.get_marker() for m in markers] == ["s", "o"]
    assert markers[0].get_ydata()[0] > markers[1].get_ydata()[0]  # the first row on top
    at = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert at["completers t-test"] > at["Bayesian lmm"]  # the labels sit on their rows
    assert markers[0].get_color() == PALETTE["vermillion"] and markers[1].get_color() == PALETTE["blue"]
