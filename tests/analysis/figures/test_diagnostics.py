"""The diagnostics figures (arviz-plots) show the fit they are given: a panel per parameter, the
ESS of the draws against the required 400, the E-BFMI of each chain; only the groups a figure
reads are kept for it."""

import numpy as np
import pytest
import xarray as xr

from analysis.figures.diagnostics import MIN_ESS, diagnostics_tree, energy_plot, ess_plot, rank_plot


@pytest.fixture(scope="module")
def fit_tree():
    """A fit-shaped DataTree: 2 chains x 300 draws of b (4 coefs), sigma and sd_patient (2 effects)
    plus a variable the diagnostics leave out; the sampler's energy."""
    rng = np.random.default_rng(11)
    c, d = 2, 300
    post = xr.Dataset({"b": (("chain", "draw", "coef"), rng.normal(size=(c, d, 4))),
                       "sigma": (("chain", "draw"), np.abs(rng.normal(size=(c, d)))),
                       "sd_patient": (("chain", "draw", "effect"), np.abs(rng.normal(size=(c, d, 2)))),
                       "u": (("chain", "draw", "patient"), rng.normal(size=(c, d, 5)))},
                      coords={"chain": [0, 1], "draw": np.arange(d), "coef": ["a", "b", "c", "d"],
                              "effect": ["intercept", "slope"]},
                      attrs={"created_at": "2026-01-01T00:00:00"})
    energy = np.cumsum(rng.normal(size=(c, d)), axis=1) * 0.3 + rng.normal(size=(c, d))
    stats = xr.Dataset({"energy": (("chain", "draw"), energy), "diverging": (("chain", "draw"), np.zeros((c, d), bool))},
                       coords={"chain": [0, 1], "draw": np.arange(d)})
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison]


def test_diagnostics_tree_keeps_only_what_a_figure_reads(fit_tree):
    post = diagnostics_tree(fit_tree, ("posterior",))
    assert set(post.children) == {"posterior"} and list(post["posterior"].data_vars) == ["b", "sigma", "sd_patient"]
    assert post["posterior"].attrs == {}  # the creation stamp is not content
    xr.testing.assert_equal(post["posterior"]["b"], fit_tree["posterior"]["b"])
    energy = diagnostics_tree(fit_tree, ("sample_stats",))
    assert set(energy.children) == {"sample_stats"} and list(energy["sample_stats"].data_vars) == ["energy"]
    no_energy = xr.DataTree.from_dict({"posterior": fit_tree["posterior"].to_dataset()})
    with pytest.raises(ValueError, match="no sampler energy"):
        diagnostics_tree(no_energy, ("sample_stats",))
    with pytest.raises(ValueError, match="none of the variables"):
        diagnostics_tree(fit_tree, ("posterior",), var_names=("nope",))


def test_rank_plot_has_a_panel_per_parameter_and_a_line_per_chain(fit_tree):
    fig = rank_plot(diagnostics_tree(fit_tree, ("posterior",)), label="SYNTHETIC twin")
    axes = _visible(fig)
    assert len(axes) == 4 + 1 + 2
    assert all(len([ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]) == 2 for ax in axes)  # 2 chains
    assert "SYNTHETIC twin" in [t.get_text() for t in fig.texts]


def test_ess_plot_shows_the_ess_of_the_draws_and_the_required_400(fit_tree):
    import arviz_stats

    fig = ess_plot(diagnostics_tree(fit_tree, ("posterior",)), label="SYNTHETIC")
    axes = _visible(fig)
    assert len(axes) == 7
    titles = [ax.get_title().replace("\n", " ") for ax in axes]
    (sigma_ax,) = [ax for ax, t in zip(axes, titles) if t == "sigma"]
    ys = {round(float(np.asarray(ln.get_ydata())[0]), 6) for ln in sigma_ax.get_lines()}
    assert MIN_ESS in ys  # the required ESS
    mean_ess = float(arviz_stats.ess(fit_tree, var_names=["sigma"], method="mean")["sigma"])
    assert round(mean_ess, 6) in ys  # the ESS of the mean, computed from these draws
    (points,) = sigma_ax.collections
    assert len(points.get_offsets()) == 20


def test_energy_plot_shows_each_chains_bfmi(fit_tree):
    import arviz_stats

    from analysis.engine.diagnostics import ebfmi

    fig = energy_plot(diagnostics_tree(fit_tree, ("sample_stats",)), label="SYNTHETIC")
    bfmi_ax = next(ax for ax in fig.axes if ax.get_title() == "BFMI")
    offsets = np.asarray(bfmi_ax.collections[0].get_offsets())
    expected = np.asarray(arviz_stats.bfmi(fit_tree)["energy"]).ravel()
    np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(expected))
    np.testing.assert_allclose(np.sort(expected), np.sort(ebfmi(fit_tree["sample_stats"]["energy"].values)))
    assert any(np.allclose(ln.get_xdata(), 0.3) for ln in bfmi_ax.get_lines())  # the threshold
    energy_ax = next(ax for ax in fig.axes if ax is not bfmi_ax and ax.get_lines())
    assert sorted(ln.get_label() for ln in energy_ax.get_lines()) == ["marginal energy", "transition energy"]
    with pytest.raises(ValueError, match="no sampler energy"):
        energy_plot(xr.DataTree.from_dict({"posterior": fit_tree["posterior"].to_dataset()}))
