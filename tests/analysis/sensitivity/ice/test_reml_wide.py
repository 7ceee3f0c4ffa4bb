"""Tests of analysis.sensitivity.ice.reml_wide: the wide-array REML fitter equals fit_mmrm("us")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.frequentist.mmrm import fit_mmrm
from analysis.sensitivity.ice.reml_wide import WideFit, WideReml


def simulate(n: int, m: int, seed: int, scale: float = 1.0, gaps: float = 0.06,
             drop: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two arms, ``m`` visits, a baseline covariate; monotone dropout and intermittent gaps.

    Design columns: intercept, visits 2..m, arm, arm x visits 2..m, baseline (p = 2m + 1).
    """
    rng = np.random.default_rng(seed)
    arm = (np.arange(n) % 2).astype(float)
    base = rng.normal(size=n)
    p = 2 * m + 1
    x = np.zeros((n, m, p))
    x[:, :, 0] = 1.0
    x[:, :, m] = arm[:, None]
    x[:, :, 2 * m] = base[:, None]
    for j in range(1, m):
        x[:, j, j] = 1.0
        x[:, j, m + j] = arm
    a = rng.normal(size=(m, m))
    sigma = (a @ a.T + m * np.eye(m)) / m
    beta = rng.normal(size=p)
    y = scale * (x @ beta + rng.multivariate_normal(np.zeros(m), sigma, size=n))
    mask = np.ones((n, m), dtype=bool)
    if m > 1:
        last = np.where(rng.random(n) < drop, rng.integers(1, m, size=n), m)  # visits kept
        mask &= np.arange(m)[None, :] < last[:, None]
        hole = rng.random((n, m)) < gaps
        hole[:, 0] = False
        mask &= ~hole
    y[~mask] = np.nan
    return x, y, mask


def long_form(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[pd.DataFrame, str]:
    """Long data with the design columns c0..c{p-1} and a formula reproducing the design."""
    i, j = np.nonzero(mask)
    cols = {"pid": i, "visit": j, "y": y[i, j]}
    cols.update({f"c{k}": x[i, j, k] for k in range(x.shape[2])})
    return pd.DataFrame(cols), "y ~ 0 + " + " + ".join(f"c{k}" for k in range(x.shape[2]))


def assert_same(a: WideFit, b: WideFit, rtol: float = 1e-10) -> None:
    for name in ("beta", "sigma", "beta_cov"):
        u, v = getattr(a, name), getattr(b, name)
        assert np.max(np.abs(u - v)) <= rtol * np.max(np.abs(v)), name
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)


@pytest.mark.parametrize("m, n, seed, scale", [(3, 60, 1, 1.0), (3, 40, 2, 0.05),
                                               (5, 80, 3, 1.0), (5, 120, 4, 0.05)])
def test_matches_fit_mmrm(m, n, seed, scale):
    x, y, mask = simulate(n, m, seed, scale)
    assert (~mask).any(axis=0)[1:].all()  # missing values at every later visit
    fit = WideReml(x, y, mask).fit()
    data, formula = long_form(x, y, mask)
    ref = fit_mmrm(data, formula, subject="pid", visit="visit", covariance="us")
    assert fit.converged and ref.converged
    for mine, theirs in ((fit.beta, ref.coef.to_numpy()), (fit.sigma, ref.covariance.to_numpy()),
                         (fit.beta_cov, ref.vcov.to_numpy())):
        assert np.max(np.abs(mine - theirs)) <= 1e-7 * np.max(np.abs(theirs))
    assert fit.loglik == pytest.approx(ref.loglik, abs=1e-8)
    assert np.allclose(fit.sigma, fit.sigma.T)


def test_single_visit_is_ols_with_reml_variance():
    x, y, mask = simulate(50, 1, 5)
    fit = WideReml(x, y, mask).fit()
    xs, ys = x[:, 0, :], y[:, 0]
    beta, rss = np.linalg.lstsq(xs, ys, rcond=None)[:2]
    n, p = xs.shape
    assert fit.sigma.shape == (1, 1)
    assert fit.sigma[0, 0] == pytest.approx(rss[0] / (n - p), rel=1e-10)
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.beta_cov, fit.sigma[0, 0] * np.linalg.inv(xs.T @ xs), rtol=1e-9)
    data, formula = long_form(x, y, mask)
    ref = fit_mmrm(data, formula, subject="pid", visit="visit")
    assert fit.loglik == pytest.approx(ref.loglik, abs=1e-8)


def test_repeated_rows_equal_physically_duplicated_patients():
    x, y, mask = simulate(40, 4, 6)
    rows = np.array([*range(40), 3, 3, 17, 29])  # patient 3 drawn three times, 17 and 29 twice
    fit = WideReml(x, y, mask).fit(rows=rows)
    assert_same(fit, WideReml(x[rows], y[rows], mask[rows]).fit())
    boot = np.random.default_rng(0).integers(0, 40, size=40)
    assert_same(WideReml(x, y, mask).fit(rows=boot),
                WideReml(x[boot], y[boot], mask[boot]).fit())


def test_jackknife_rows_equal_fit_on_the_subset():
    x, y, mask = simulate(50, 5, 7)
    model = WideReml(x, y, mask)
    full = model.fit()
    for left_out in (0, 13, 49):
        keep = np.delete(np.arange(50), left_out)
        sub = WideReml(x[keep], y[keep], mask[keep]).fit()
        assert_same(model.fit(rows=keep), sub)
        assert_same(model.fit(rows=keep, start=full.sigma), sub)


def test_warm_start_gives_the_cold_start_answer():
    x, y, mask = simulate(60, 5, 8)
    model = WideReml(x, y, mask)
    cold = model.fit()
    warm = model.fit(start=cold.sigma)
    assert warm.converged and warm.n_iter <= 2
    assert_same(warm, cold, rtol=1e-12)
    other = model.fit(start=np.diag(np.linspace(0.5, 3.0, 5)))  # a poor start
    assert_same(other, cold)


def test_bad_inputs_raise():
    x, y, mask = simulate(30, 3, 9)
    empty = mask.copy()
    empty[:, 2] = False
    with pytest.raises(ValueError, match="visit 2 .* has no value"):
        WideReml(x, y, empty)
    with pytest.raises(ValueError, match="rank deficient"):
        WideReml(np.concatenate([x, x[:, :, :1] * 2.0], axis=2), y, mask)
    apart = np.zeros_like(mask)
    apart[:15, 0] = apart[:15, 1] = apart[15:, 2] = True
    with pytest.raises(ValueError, match="never observed together"):
        WideReml(x, np.nan_to_num(y), apart)
    with pytest.raises(ValueError, match="too few observations"):
        WideReml(x[:3], y[:3], mask[:3])
    with pytest.raises(ValueError, match=r"x \(n, m, p\)"):
        WideReml(x[:, :, 0], y, mask)
    with pytest.raises(ValueError, match="boolean"):
        WideReml(x, y, mask.astype(int))
    bad_y = y.copy()
    bad_y[mask.nonzero()[0][0], mask.nonzero()[1][0]] = np.nan
    with pytest.raises(ValueError, match="finite"):
        WideReml(x, bad_y, mask)
    model = WideReml(x, y, mask)
    with pytest.raises(ValueError, match="rank deficient"):  # one arm only: arm column constant
        model.fit(rows=np.arange(0, 30, 2))
    with pytest.raises(ValueError, match="rows must lie"):
        model.fit(rows=np.array([0, 30]))
    with pytest.raises(ValueError, match="start is not a positive-definite"):
        model.fit(start=-np.eye(3))
    with pytest.raises(ValueError, match="start must have shape"):
        model.fit(start=np.eye(2))
