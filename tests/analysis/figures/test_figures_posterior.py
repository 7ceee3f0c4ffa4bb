"""The posterior predictive check replicates only the draws it shows (:func:`analysis.figures.posterior.
ppc_posterior`; issue #18: a 50,000-patient run replicated every draw x observation)."""

from __future__ import annotations

import numpy as np
import xarray as xr


def _posterior(chains=4, draws=250):
    rng = np.random.default_rng(3)
    post = xr.Dataset({"b": (("chain", "draw", "coef"), rng.normal(size=(chains, draws, 3))),
                       "sigma": (("chain", "draw"), rng.gamma(2.0, size=(chains, draws)))},
                      coords={"chain": np.arange(chains), "draw": np.arange(draws)})
    post.attrs.update({"rajak_per_patient": "on request", "rajak_effects_seed": 7})
    return post


def test_ppc_posterior_keeps_a_seeded_choice_of_draws_with_their_values_and_attrs():
    from analysis.figures.posterior import PPC_DRAWS, ppc_posterior

    post = _posterior()
    thin = ppc_posterior(post, seed=0)
    assert dict(thin.sizes) == {"chain": 1, "draw": PPC_DRAWS, "coef": 3}
    assert thin["b"].dims == ("chain", "draw", "coef") and thin["sigma"].dims == ("chain", "draw")
    assert thin.attrs == post.attrs  # a large fit's effects are still drawn on request
    flat_b = post["b"].values.reshape(-1, 3)
    flat_s = post["sigma"].values.reshape(-1)
    rows = [int(np.flatnonzero(flat_s == s)[0]) for s in thin["sigma"].values[0]]
    assert len(set(rows)) == PPC_DRAWS and rows == sorted(rows)  # distinct draws, in their order
    np.testing.assert_array_equal(thin["b"].values[0], flat_b[rows])  # each draw's parameters together
    np.testing.assert_array_equal(ppc_posterior(post, seed=0)["sigma"], thin["sigma"])  # seeded
    assert not np.array_equal(ppc_posterior(post, seed=1)["sigma"], thin["sigma"])


def test_ppc_posterior_leaves_a_small_posterior_as_it_is():
    from analysis.figures.posterior import ppc_posterior

    post = _posterior(chains=2, draws=20)
    assert ppc_posterior(post, draws=60) is post
