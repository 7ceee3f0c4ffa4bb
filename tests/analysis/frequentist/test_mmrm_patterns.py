"""Tests of the pattern-wise MMRM likelihood (analysis.frequentist.patterns) and the Newton fit.

:class:`PatternEngine` must give the numbers of the per-patient :class:`RemlEngine` (which builds
the (K, n, m, m) basis tensor) to rounding; the Newton fit of an unstructured covariance must land
on the optimum the profiled L-BFGS-B / trust-region path finds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import analysis.frequentist.mmrm as mmrm_module
from analysis.frequentist.design import prepare_design
from analysis.frequentist.mmrm import fit_mmrm
from analysis.frequentist.patterns import PatternEngine, newton_reml
from analysis.frequentist.reml import RemlEngine

FORMULA = "bmd ~ month * responder + age"


def _padded(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    design = prepare_design(data, FORMULA, "patient_id", "month", categorical=("month",))
    df = design.data
    m = len(df["month"].cat.categories)
    codes, subjects = pd.factorize(df["patient_id"], sort=True)
    n, p = len(subjects), design.x.shape[1]
    pos = df["month"].cat.codes.to_numpy()
    mask = np.zeros((n, m), dtype=bool)
    mask[codes, pos] = True
    y, x = np.zeros((n, m)), np.zeros((n, m, p))
    y[codes, pos], x[codes, pos] = design.y, design.x
    return x, y, mask


@pytest.fixture(scope="module")
def gappy(bmd_data) -> pd.DataFrame:
    """bmd_medium with ~10% of the post-baseline values removed at random (many patterns)."""
    data = bmd_data("bmd_medium.csv")
    rng = np.random.default_rng(3)
    drop = (data["month"] > 0) & (rng.random(len(data)) < 0.1)
    return data.loc[~drop].reset_index(drop=True)


def _engines(data):
    x, y, mask = _padded(data)
    n, m, _ = x.shape
    pairs = [(i, j) for j in range(m) for i in range(j, m)]
    g = np.zeros((len(pairs), n, m, m))
    for k, (i, j) in enumerate(pairs):
        both = (mask[:, i] & mask[:, j]).astype(float)
        g[k, :, i, j] = g[k, :, j, i] = both
    return RemlEngine(x, y, mask, g), PatternEngine(x, y, mask), pairs


def test_pattern_engine_matches_per_patient_engine(gappy):
    old, new, pairs = _engines(gappy)
    assert 4 < len(new.patterns) < new.n
    sig = np.array([[1.0, 0.6, 0.5, 0.4], [0.6, 1.2, 0.7, 0.5], [0.5, 0.7, 1.5, 0.8],
                    [0.4, 0.5, 0.8, 2.0]]) * 0.02
    psi = np.array([sig[i, j] for i, j in pairs])
    d_old, d_new = old.derivatives(psi), new.derivatives(psi)
    for key in ("loglik", "beta", "phi", "grad", "hess", "trpp", "pk"):
        np.testing.assert_allclose(d_new[key], d_old[key], rtol=1e-10,
                                   atol=1e-12 * np.abs(d_old[key]).max(), err_msg=key)
    wt = np.random.default_rng(0).normal(size=(len(pairs), len(pairs)))
    wt = wt + wt.T
    want = np.tensordot(wt, d_old["qkl"], axes=([0, 1], [0, 1]))
    np.testing.assert_allclose(d_new["qsum"](wt), want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    dev_old, g_old = old.profiled(psi / sig[0, 0])
    dev_new, g_new = new.profiled(psi / sig[0, 0])
    assert dev_new == pytest.approx(dev_old, rel=1e-12)
    np.testing.assert_allclose(g_new, g_old, rtol=1e-10, atol=1e-12 * np.abs(g_old).max())
    assert new.loglik(psi) == pytest.approx(old.loglik(psi), rel=1e-12)
    assert new.evaluate(-psi) is None and new.loglik(-psi) == -np.inf
    assert new.profiled(-psi)[0] == np.inf


def test_newton_reml_reaches_the_optimum(gappy):
    _, engine, _ = _engines(gappy)
    fit = fit_mmrm(gappy, FORMULA)
    psi, info = newton_reml(engine, np.cov(np.random.default_rng(1).normal(size=(4, 50))) * 1e-3)
    assert info["optimizer_success"] and info["n_iter"] < 30
    assert engine.loglik(psi) == pytest.approx(fit.loglik, rel=1e-12)
    np.testing.assert_allclose(psi, fit.omega, rtol=1e-5)


def test_newton_and_profiled_paths_agree(gappy, monkeypatch):
    """The unstructured fit takes the Newton path; forcing the profiled fallback gives the same fit."""
    newton = fit_mmrm(gappy, FORMULA, df_method="kenward-roger")
    assert newton.diagnostics["optimizer_message"].startswith("Newton")
    monkeypatch.setattr(mmrm_module, "_fit_newton", lambda *args: (None, {}))
    profiled = fit_mmrm(gappy, FORMULA, df_method="kenward-roger")
    assert profiled.diagnostics["optimizer_message"].startswith("L-BFGS-B")
    assert newton.converged and profiled.converged
    assert newton.loglik == pytest.approx(profiled.loglik, rel=1e-13)
    np.testing.assert_allclose(newton.omega, profiled.omega, rtol=1e-7)
    for col in ("estimate", "se", "df"):
        np.testing.assert_allclose(newton.fixed[col], profiled.fixed[col], rtol=1e-7, err_msg=col)


def test_failed_newton_falls_back_to_the_profiled_fit(gappy, monkeypatch):
    """A Newton run that ends away from the optimum is replaced by the profiled fit."""
    ref = fit_mmrm(gappy, FORMULA)

    def stuck(engine, st, sigma_start):  # an Inference at the starting covariance
        psi = sigma_start[engine._ia, engine._ib]
        inf = mmrm_module.Inference.compute(engine, st.psi_of_omega, psi, st.omega_scale(psi))
        return inf, {"n_function_evals": 1, "optimizer_message": "stuck"}

    monkeypatch.setattr(mmrm_module, "_fit_newton", stuck)
    fit = fit_mmrm(gappy, FORMULA)
    assert fit.diagnostics["optimizer_message"].startswith("L-BFGS-B") and fit.converged
    assert fit.loglik == pytest.approx(ref.loglik, rel=1e-13)
    np.testing.assert_allclose(fit.fixed["df"], ref.fixed["df"], rtol=1e-7)
