"""Tests of ``models/marginal_effects.py`` (the patients' effects of a marginal LMM, per patient and in
chunks) and of the trajectory model's per-patient quantities on request (``RAJAK_PER_PATIENT``).

The reference is the former dense implementation (an observation x patient one-hot matrix), kept
here at test sizes only.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import models  # noqa: F401  (compile caches before pymc)
from analysis.engine.sampling import sample
from models.marginal_effects import (EAGER_PATIENT_DRAWS, ON_REQUEST_ATTR, chunk_draws, draw_marginal_effects,
                                     per_patient_eager)
from models.trajectory import build_trajectory_model
from tests.lmm_sim import simulate_lmm

FAST = {"draws": 60, "tune": 100, "chains": 2, "cores": 1}


def _dense_reference(post, arrays, rng, offset=None, weights=None):
    """The one-hot implementation the chunked one replaced (small sizes only)."""
    beta, tau = post["beta_std"].values, post["tau_std"].values
    rho, sigma = 2.0 * post["corr_beta"].values - 1.0, post["sigma_std"].values
    t, pidx = arrays["t"], arrays["patient_idx"]
    n_con = (beta.shape[-1] - 2) // 2
    n_pat = arrays["group_x"].shape[0] if n_con else int(arrays["n_patients"])
    g = arrays["group_x"] if n_con else np.zeros((n_pat, 0))
    m0 = beta[..., 0, None] + sum(beta[..., 2 + 2 * k, None] * g[:, k] for k in range(n_con))
    m1 = beta[..., 1, None] + sum(beta[..., 3 + 2 * k, None] * g[:, k] for k in range(n_con))
    m0, m1 = np.broadcast_to(m0, (*beta.shape[:2], n_pat)), np.broadcast_to(m1, (*beta.shape[:2], n_pat))
    fixed = m0[..., pidx] + m1[..., pidx] * t
    if "gamma_std" in post:
        fixed = fixed + post["gamma_std"].values @ arrays["x_std"].T
    if offset is not None:
        fixed = fixed + offset
    r = arrays["y_std"] - fixed
    onehot = np.zeros((t.shape[0], n_pat))
    onehot[np.arange(t.shape[0]), pidx] = 1.0
    w = np.ones_like(r) if weights is None else weights
    n, s1, s2 = w @ onehot, (w * t) @ onehot, (w * t * t) @ onehot
    r0, r1 = (w * r) @ onehot, (w * r * t) @ onehot
    l00, l10, l11 = tau[..., 0], tau[..., 1] * rho, tau[..., 1] * np.sqrt(1.0 - rho**2)
    s00, s01, s11 = l00**2, l00 * l10, l10**2 + l11**2
    det_s, i2 = (l00 * l11) ** 2, 1.0 / sigma**2
    a = (s11 / det_s)[..., None] + i2[..., None] * n
    b = (-s01 / det_s)[..., None] + i2[..., None] * s1
    c = (s00 / det_s)[..., None] + i2[..., None] * s2
    det_a = a * c - b * b
    z0, z1 = i2[..., None] * r0, i2[..., None] * r1
    mean0, mean1 = (c * z0 - b * z1) / det_a, (a * z1 - b * z0) / det_a
    c00 = np.sqrt(c / det_a)
    c10 = (-b / det_a) / c00
    c11 = np.sqrt(np.maximum(a / det_a - c10**2, 0.0))
    eps = rng.standard_normal((*mean0.shape, 2))
    return np.stack([mean0 + c00 * eps[..., 0], mean1 + c10 * eps[..., 0] + c11 * eps[..., 1]], axis=-1)


def _fake(n_con: int, covariates: bool, seed: int = 0, n_pat: int = 9, chains: int = 2, draws: int = 7):
    """A random posterior and data layout (patient 4 has no rows)."""
    rng = np.random.default_rng(seed)
    pidx = np.sort(rng.choice([p for p in range(n_pat) if p != 4], size=30))
    rng.shuffle(pidx)  # rows in any order
    arrays = {"y_std": rng.normal(size=30), "t": rng.uniform(0, 2, size=30), "patient_idx": pidx}
    if n_con:
        arrays["group_x"] = rng.integers(0, 2, size=(n_pat, n_con)).astype(float)
    else:
        arrays["n_patients"] = np.asarray(n_pat)
    shape = (chains, draws)
    post = {"beta_std": (("chain", "draw", "coef"), rng.normal(size=(*shape, 2 + 2 * n_con))),
            "tau_std": (("chain", "draw", "effect"), rng.uniform(0.3, 1.5, size=(*shape, 2))),
            "corr_beta": (("chain", "draw"), rng.uniform(0.2, 0.8, size=shape)),
            "sigma_std": (("chain", "draw"), rng.uniform(0.2, 0.6, size=shape))}
    if covariates:
        arrays["x_std"] = rng.normal(size=(30, 2))
        post["gamma_std"] = (("chain", "draw", "covariate"), rng.normal(size=(*shape, 2)))
    return xr.Dataset(post), arrays


@pytest.mark.parametrize("n_con, covariates", [(0, False), (1, True), (2, False)])
@pytest.mark.parametrize("chunk_bytes", [1, 8 * 30 * 3, 10**9])
def test_chunked_effects_equal_the_dense_reference(n_con, covariates, chunk_bytes):
    post, arrays = _fake(n_con, covariates)
    got = draw_marginal_effects(post, arrays, np.random.default_rng(3), chunk_bytes=chunk_bytes)
    want = _dense_reference(post, arrays, np.random.default_rng(3))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got.shape == (2, 7, 9, 2)


def test_weights_offset_and_float32():
    post, arrays = _fake(1, False, seed=1)
    rng = np.random.default_rng(5)
    weights, offset = rng.gamma(2.0, 0.5, size=(2, 7, 30)), rng.normal(size=(2, 7, 30))
    got = draw_marginal_effects(post, arrays, np.random.default_rng(3), offset=offset, weights=weights,
                                chunk_bytes=8 * 30 * 4)
    want = _dense_reference(post, arrays, np.random.default_rng(3), offset=offset, weights=weights)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    f32 = draw_marginal_effects(post, arrays, np.random.default_rng(3), offset=offset, weights=weights,
                                dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, want, rtol=1e-5, atol=1e-6)


def test_chunk_size_and_policy(monkeypatch):
    assert chunk_draws(1000, 180_000) == 23 and chunk_draws(10, 5) == 10 and chunk_draws(5, 10**12) == 1
    monkeypatch.delenv("RAJAK_PER_PATIENT", raising=False)
    assert per_patient_eager(46, 4000) and not per_patient_eager(EAGER_PATIENT_DRAWS + 1, 1)
    monkeypatch.setenv("RAJAK_PER_PATIENT", "always")
    assert per_patient_eager(10**6, 10**4)
    monkeypatch.setenv("RAJAK_PER_PATIENT", "on_request")
    assert not per_patient_eager(1, 1)


@pytest.fixture(scope="module")
def eager_and_lazy():
    """One small study fitted twice with the same seed: per-patient quantities eager and on request."""
    data = simulate_lmm(30, dropout=0.3, seed=4)
    tm = build_trajectory_model(data, "spine", covariates=("age",))
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("RAJAK_PER_PATIENT", "always")
        eager = sample(tm, seed=3, **FAST)
        mp.setenv("RAJAK_PER_PATIENT", "on_request")
        lazy = sample(tm, seed=3, **FAST)
    finally:
        mp.undo()
    return tm, eager, lazy


def test_on_request_gives_the_eager_draws(eager_and_lazy):
    tm, eager, lazy = eager_and_lazy
    pe, pl = eager.posterior["posterior"].to_dataset(), lazy.posterior["posterior"].to_dataset()
    assert "u" in pe and "log_likelihood" in eager.posterior.children
    assert "u" not in pl and "log_likelihood" not in lazy.posterior.children
    assert pl.attrs[ON_REQUEST_ATTR] == "on request"
    assert "u" in eager.diagnostics.var_names and "u" not in lazy.diagnostics.var_names
    np.testing.assert_array_equal(pe["b"].values, pl["b"].values)
    np.testing.assert_array_equal(tm.patient_effects(pl).values, pe["u"].values)
    u32 = tm.patient_effects(pl, dtype=np.float32)
    assert u32.dtype == np.float32 and u32.dims == ("chain", "draw", "patient", "effect")
    ll = tm.log_likelihood(pl)
    np.testing.assert_allclose(ll.values, eager.posterior["log_likelihood"]["bmd"].values, rtol=1e-12)
    assert tm.log_likelihood(pl, dtype=np.float32).dtype == np.float32
    np.testing.assert_allclose(tm.posterior_predictive(pl, seed=2), tm.posterior_predictive(pe, seed=2),
                               rtol=1e-12)


def test_on_request_survives_save_and_load(eager_and_lazy, tmp_path):
    from analysis.engine.results import load_fit

    tm, eager, lazy = eager_and_lazy
    back = load_fit(lazy.save(tmp_path / "lazy.nc")).posterior["posterior"].to_dataset()
    np.testing.assert_array_equal(tm.patient_effects(back).values,
                                  eager.posterior["posterior"]["u"].values)
