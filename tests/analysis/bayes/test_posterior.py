"""Posterior summaries against closed forms on normal draws."""

import numpy as np
import pytest
from scipy import stats

from analysis.bayes.posterior import EstimandDraws, savage_dickey_bf10, summarise_draws, summary_table


@pytest.fixture(scope="module")
def draws():
    return np.random.default_rng(0).normal(1.0, 2.0, size=200_000)


def test_summary_matches_normal_closed_forms(draws):
    s = summarise_draws(draws, rope=0.5)
    assert s["mean"] == pytest.approx(1.0, abs=0.02) and s["sd"] == pytest.approx(2.0, rel=0.01)
    q = stats.norm.ppf(0.975) * 2.0
    for lo, hi in (("hdi_low", "hdi_high"), ("eti_low", "eti_high")):
        assert s[lo] == pytest.approx(1.0 - q, abs=0.03) and s[hi] == pytest.approx(1.0 + q, abs=0.03)
    assert s["p_lt_0"] == pytest.approx(stats.norm.cdf(0, 1, 2), abs=0.005)
    assert s["p_in_rope"] == pytest.approx(stats.norm.cdf(0.5, 1, 2) - stats.norm.cdf(-0.5, 1, 2), abs=0.005)


def test_hdi_shorter_than_eti_for_skewed_draws():
    x = np.random.default_rng(1).gamma(2.0, size=100_000)
    s = summarise_draws(x)
    assert s["hdi_high"] - s["hdi_low"] < s["eti_high"] - s["eti_low"]


def test_savage_dickey_closed_form():
    # prior N(0, 1); data y ~ N(theta, 1), one observation y = 1 -> posterior N(0.5, 1/2)
    post = np.random.default_rng(2).normal(0.5, np.sqrt(0.5), size=400_000)
    bf10 = savage_dickey_bf10(post, stats.norm.pdf(0, 0, 1))
    exact = stats.norm.pdf(0, 0, 1) / stats.norm.pdf(0, 0.5, np.sqrt(0.5))
    assert bf10 == pytest.approx(exact, rel=0.03)


def test_bad_draws():
    with pytest.raises(ValueError, match="finite"):
        summarise_draws(np.array([1.0, np.nan, 2.0]))


def test_summary_table_keeps_draws_outside(draws):
    items = [EstimandDraws("x", "spine", "lmm", draws[:1000], rope=0.5, bf10=2.0)]
    t = summary_table(items)
    assert t.loc[0, "bf10"] == 2.0 and t.loc[0, "n_draws"] == 1000 and items[0].draws.size == 1000
