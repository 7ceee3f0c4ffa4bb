"""Figures: the prior-vs-posterior figure plots what it is given, on one density scale."""

import numpy as np
import pytest

from analysis.plots import PALETTE, prior_posterior, save_figure


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
