"""models.lkj: partial correlations with the C-vine Beta shapes give LKJ(eta) correlation matrices.

Checked through the known LKJ marginal: every off-diagonal element of a d x d LKJ(eta) matrix has
(r + 1)/2 ~ Beta(eta - 1 + d/2, eta - 1 + d/2) (Lewandowski et al. 2009), which for pairs not
involving the first variable holds only if the recursion is right; and the PyMC version's draws
equal the numpy construction's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from models.lkj import corr_cholesky_from_cpc, cpc_shapes, lkj_corr_cholesky


def _draw(n: int, eta: float, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.array(cpc_shapes(n, eta))
    z = 2.0 * rng.beta(a, a, size=(size, a.size)) - 1.0
    return np.stack([corr_cholesky_from_cpc(zz, n) for zz in z])


@pytest.mark.parametrize("n, eta", [(2, 2.0), (3, 1.0), (4, 2.0), (4, 0.8)])
def test_marginals_are_the_lkj_marginals(n, eta):
    L = _draw(n, eta, 6000, seed=n)
    R = L @ np.transpose(L, (0, 2, 1))
    np.testing.assert_allclose(np.diagonal(R, axis1=1, axis2=2), 1.0, atol=1e-12)  # a correlation matrix
    assert np.all(np.linalg.eigvalsh(R) > 0)
    b = eta - 1 + n / 2
    for i in range(n):
        for j in range(i):
            p = stats.kstest((R[:, i, j] + 1) / 2, stats.beta(b, b).cdf).pvalue
            assert p > 1e-3, (n, eta, i, j, p)


def test_density_is_proportional_to_det_power():
    """d = 3: E_LKJ[f] by the construction equals det(R)^(eta-1)-weighted uniform-LKJ(1) draws."""
    eta = 3.0
    L3 = _draw(3, eta, 20000, seed=1)
    L1 = _draw(3, 1.0, 200000, seed=2)  # LKJ(1): uniform over correlation matrices
    r3 = (L3 @ np.transpose(L3, (0, 2, 1)))[:, 2, 1]
    R1 = L1 @ np.transpose(L1, (0, 2, 1))
    w = np.linalg.det(R1) ** (eta - 1)
    m_is = np.sum(w * R1[:, 2, 1] ** 2) / w.sum()
    assert np.mean(r3**2) == pytest.approx(m_is, abs=0.01)  # second moment of a correlation


def test_pymc_factor_matches_the_numpy_construction():
    import pymc as pm

    with pm.Model() as m:
        eta = pm.Data("eta", 2.0)
        L = lkj_corr_cholesky("cpc", 4, eta)
        pm.Deterministic("L", L)
    draws = pm.draw([m["cpc"], m["L"]], draws=5, random_seed=3)
    for u, L_sym in zip(*draws):
        np.testing.assert_allclose(L_sym, corr_cholesky_from_cpc(2 * u - 1, 4), atol=1e-12)
    with pytest.raises(ValueError, match="n >= 2"):
        with pm.Model():
            lkj_corr_cholesky("x", 1, 2.0)
