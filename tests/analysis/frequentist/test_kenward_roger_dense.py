"""Kenward-Roger for every MMRM covariance structure against a dense, brute-force computation.

The package computes Kenward-Roger per subject, with analytic derivatives in ``psi = vech(Sigma)``
mapped to the structure's parameters ``omega`` by the chain rule (and the second-derivative term
``R`` for the non-linear structures ar1, csh, ar1h). No outside implementation of KR for those
structures is available here (R's mmrm package is not in Debian), so this test recomputes KR
from Kenward & Roger (1997) in the most direct way: the full ``N x N`` marginal covariance
``V(omega)`` written out from the structure's definition, its first and second derivatives by
central finite differences, ``P_h = X' dV^-1/d omega_h X``, ``Q_hj``, ``R_hj``, the REML expected
information ``1/2 tr(Pi dV_h Pi dV_j)`` (or, for ``kr_information="observed"``, minus the second
derivative of the dense REML log-likelihood written out in the same matrices, itself checked
against a finite-difference Hessian of that log-likelihood), then ``Phi_A`` and the df. The
paper's df formulae are written out again here on purpose rather than imported from
``analysis.frequentist.ddf``: the point is a second, separate computation.

The dense computation is itself checked against pbkrtest where pbkrtest applies (``us`` and
``cs``: the R reference numbers in fixtures/reml_reference.json), so the chain is
pbkrtest == dense == package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.frequentist.mmrm import fit_mmrm

FORMULA = "bmd ~ month * responder + age"


def _sigma(structure: str, omega: np.ndarray, m: int) -> np.ndarray:
    """Sigma(omega) from each structure's definition (module docstring of mmrm.py)."""
    dist = np.abs(np.subtract.outer(np.arange(m), np.arange(m)))
    if structure == "us":
        s = np.zeros((m, m))
        pairs = [(i, j) for j in range(m) for i in range(j, m)]  # R's lower.tri order
        for w, (i, j) in zip(omega, pairs):
            s[i, j] = s[j, i] = w
        return s
    if structure == "cs":
        v, c = omega
        return (v - c) * np.eye(m) + c * np.ones((m, m))
    if structure == "ar1":
        s2, rho = omega
        return s2 * rho**dist
    sd = np.sqrt(omega[:m])
    rho = omega[m]
    corr = rho**dist if structure == "ar1h" else rho + (1 - rho) * np.eye(m)
    return sd[:, None] * corr * sd[None, :]


class Dense:
    """The marginal model of one fit, written out as N x N matrices."""

    def __init__(self, fit, structure: str) -> None:
        d = fit._design
        self.x = np.asarray(d.x, float)
        self.y = np.asarray(d.y, float)
        rows = d.data
        visits = list(rows["month"].cat.categories) if hasattr(rows["month"], "cat") else sorted(rows["month"].unique())
        self.pos = np.array([visits.index(v) for v in rows["month"]])
        self.subj = pd.factorize(rows["patient_id"])[0]
        self.m, self.structure = len(visits), structure

    def v(self, omega: np.ndarray) -> np.ndarray:
        s = _sigma(self.structure, np.asarray(omega, float), self.m)
        same = self.subj[:, None] == self.subj[None, :]
        return np.where(same, s[self.pos[:, None], self.pos[None, :]], 0.0)

    def reml_loglik(self, omega: np.ndarray) -> float:
        v = self.v(omega)
        vi = np.linalg.inv(v)
        xtvx = self.x.T @ vi @ self.x
        beta = np.linalg.solve(xtvx, self.x.T @ vi @ self.y)
        r = self.y - self.x @ beta
        n, p = self.x.shape
        return -0.5 * (np.linalg.slogdet(v)[1] + np.linalg.slogdet(xtvx)[1] + r @ vi @ r
                       + (n - p) * np.log(2 * np.pi))

    def _hessian(self, omega: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Central-difference Hessian of the REML log-likelihood (error O(step^2)). The fixture
        fits sit near singular covariances (correlations ~0.99), where the curvature changes
        within ~1e-4 relative of the estimate: hence small steps and the extrapolation
        (steps of 1e-4 gave 25% errors in the smallest eigenvalue of the ``us`` Hessian)."""
        ll, k = self.reml_loglik, len(omega)
        e = np.eye(k) * step
        return np.array([[(ll(omega + e[h] + e[j]) - ll(omega + e[h] - e[j]) - ll(omega - e[h] + e[j])
                           + ll(omega - e[h] - e[j])) / (4 * step[h] * step[j]) for j in range(k)]
                         for h in range(k)])

    def kenward_roger(self, omega: np.ndarray, information: str = "expected"):
        omega = np.asarray(omega, float)
        k = len(omega)
        # central differences: first derivatives with relative step 1e-5, second with 1e-3
        # (truncation ~1e-10 and ~1e-6, rounding ~1e-11 and ~1e-10, relative)
        scale = np.maximum(np.abs(omega), 1e-8)
        step, step2 = 1e-5 * scale, 1e-3 * scale
        e, e2 = np.eye(k) * step, np.eye(k) * step2
        v = self.v(omega)
        vi = np.linalg.inv(v)
        x = self.x
        phi = np.linalg.inv(x.T @ vi @ x)
        dv = [(self.v(omega + e[h]) - self.v(omega - e[h])) / (2 * step[h]) for h in range(k)]
        d2v = [[(self.v(omega + e2[h] + e2[j]) - self.v(omega + e2[h] - e2[j]) - self.v(omega - e2[h] + e2[j])
                 + self.v(omega - e2[h] - e2[j])) / (4 * step2[h] * step2[j]) for j in range(k)] for h in range(k)]
        dvi = [-vi @ dvh @ vi for dvh in dv]  # d V^-1 = -V^-1 dV V^-1
        p_ = [x.T @ dvih @ x for dvih in dvi]
        q_ = [[x.T @ dvi[h] @ v @ dvi[j] @ x for j in range(k)] for h in range(k)]
        r_ = [[x.T @ vi @ d2v[h][j] @ vi @ x for j in range(k)] for h in range(k)]
        pi = vi - vi @ x @ phi @ x.T @ vi
        # REML information, from l_R = -1/2 (log|V| + log|X'V^-1 X| + y' Pi y) and dPi = -Pi dV Pi:
        # expected 1/2 tr(Pi V_h Pi V_j); observed -d2 l_R = -1/2 tr(Pi V_h Pi V_j) + 1/2 tr(Pi V_hj)
        #   + y' Pi V_h Pi V_j Pi y - 1/2 y' Pi V_hj Pi y
        pv = [pi @ dvh for dvh in dv]
        expected = np.array([[0.5 * np.trace(pv[h] @ pv[j]) for j in range(k)] for h in range(k)])
        if information == "expected":
            info = expected
        else:
            py = pi @ self.y
            info = np.array([[-expected[h, j] + 0.5 * np.trace(pi @ d2v[h][j]) + py @ dv[h] @ pi @ dv[j] @ py
                              - 0.5 * py @ d2v[h][j] @ py for j in range(k)] for h in range(k)])
            info = 0.5 * (info + info.T)
        w = np.linalg.inv(info)
        u = sum(w[h, j] * (q_[h][j] - p_[h] @ phi @ p_[j] - 0.25 * r_[h][j]) for h in range(k) for j in range(k))
        phi_a = phi + 2 * phi @ u @ phi

        def df(l_row: np.ndarray) -> float:
            lm = np.atleast_2d(l_row)
            c = lm.shape[0]
            theta = lm.T @ np.linalg.inv(lm @ phi @ lm.T) @ lm
            t = [theta @ phi @ p_[h] @ phi for h in range(k)]
            a1 = sum(w[h, j] * np.trace(t[h]) * np.trace(t[j]) for h in range(k) for j in range(k))
            a2 = sum(w[h, j] * np.trace(t[h] @ t[j]) for h in range(k) for j in range(k))
            b = (a1 + 6 * a2) / (2 * c)
            g = ((c + 1) * a1 - (c + 4) * a2) / ((c + 2) * a2)
            den = 3 * c + 2 * (1 - g)
            c1, c2, c3 = g / den, (c - g) / den, (c + 2 - g) / den
            e_star = 1 / (1 - a2 / c)
            v_star = (2 / c) * (1 + c1 * b) / ((1 - c2 * b) ** 2 * (1 - c3 * b))
            rho = v_star / (2 * e_star**2)
            return 4 + (c + 2) / (c * rho - 1)

        return phi_a, df, {"p": p_, "r": r_, "d2v": d2v, "dv": dv, "info": info, "phi": phi, "w": w}


@pytest.fixture(scope="module")
def small(bmd_data):
    return bmd_data("bmd_small.csv")


def _compare(fit, dense: Dense, information: str, rtol: float) -> None:
    phi_a, df, _ = dense.kenward_roger(fit._inf.omega, information)
    sd = np.sqrt(np.diag(phi_a))
    got = fit.vcov.to_numpy()
    np.testing.assert_allclose(np.sqrt(np.diag(got)), sd, rtol=rtol)  # KR standard errors
    np.testing.assert_allclose(got / np.outer(sd, sd), phi_a / np.outer(sd, sd), rtol=0, atol=rtol)
    want = [df(row) for row in np.eye(phi_a.shape[0])]
    np.testing.assert_allclose(fit.fixed["df"].to_numpy(), want, rtol=rtol)
    # a 2-row joint hypothesis (both month x responder terms), through f_test's df
    cols = [i for i, c in enumerate(fit.terms) if ":" in c][:2]
    lmat = np.eye(phi_a.shape[0])[cols]
    np.testing.assert_allclose(fit.f_test(lmat)["den_df"], df(lmat), rtol=rtol)


@pytest.mark.parametrize("data_file", ["bmd_small.csv", "bmd_medium.csv"])
@pytest.mark.parametrize("structure", ["us", "cs", "ar1", "csh", "ar1h"])
@pytest.mark.parametrize("information", ["expected", "observed"])
def test_package_matches_dense_kenward_roger(bmd_data, data_file, structure, information):
    data = bmd_data(data_file)
    fit = fit_mmrm(data, FORMULA, covariance=structure, df_method="kenward-roger",
                   kr_information=information)
    dense = Dense(fit, structure)
    if structure in ("ar1", "csh", "ar1h"):
        _, _, parts = dense.kenward_roger(fit._inf.omega, information)
        assert max(np.abs(r).max() for row in parts["r"] for r in row) > 0  # the second-derivative term is live
    _compare(fit, dense, information, rtol=1e-5 if information == "expected" else 1e-4)


@pytest.mark.parametrize("case", ["small_us", "small_cs"])
def test_dense_kenward_roger_matches_pbkrtest(case, bmd_data, reml_ref):
    """The dense computation reproduces pbkrtest where pbkrtest applies (linear structures)."""
    ref = reml_ref["mmrm"][case]
    data = bmd_data(ref["data"])
    fit = fit_mmrm(data, FORMULA, covariance=ref["covariance"], df_method="kenward-roger")
    dense = Dense(fit, ref["covariance"])
    phi_a, df, parts = dense.kenward_roger(fit._inf.omega)
    # V is linear in these parameters: the second derivatives vanish (up to rounding)
    assert max(np.abs(d).max() for row in parts["d2v"] for d in row) < 1e-6 * max(np.abs(d).max() for d in parts["dv"])
    np.testing.assert_allclose(np.sqrt(np.diag(phi_a)), ref["kenward_roger"]["coef"]["se"], rtol=1e-4)
    np.testing.assert_allclose([df(row) for row in np.eye(phi_a.shape[0])], ref["kenward_roger"]["coef"]["df"],
                               rtol=1e-4)
    _compare(fit, dense, "expected", rtol=1e-5)


def test_dense_kenward_roger_ignores_nothing(small):
    """Leaving out the second-derivative term (what a linear-structure KR does) moves ar1's
    adjusted covariance measurably, so the comparisons above can tell the difference."""
    fit = fit_mmrm(small, FORMULA, covariance="ar1", df_method="kenward-roger")
    dense = Dense(fit, "ar1")
    omega = fit._inf.omega
    phi_a, _, parts = dense.kenward_roger(omega)
    phi, w = parts["phi"], parts["w"]
    r_term = sum(w[h, j] * parts["r"][h][j] for h in range(len(omega)) for j in range(len(omega)))
    without = phi_a + 0.5 * phi @ r_term @ phi  # add back the -1/4 R of Phi + 2 Phi {...} Phi
    rel = np.abs(np.diag(without) - np.diag(phi_a)) / np.diag(phi_a)
    assert rel.max() > 1e-3
    np.testing.assert_allclose(np.diag(fit.vcov.to_numpy()), np.diag(phi_a), rtol=2e-5)
    assert not np.allclose(np.diag(fit.vcov.to_numpy()), np.diag(without), rtol=1e-4)


@pytest.mark.parametrize("structure", ["ar1", "csh", "cs"])
def test_dense_observed_information_is_the_reml_hessian(small, structure):
    """The written-out observed information equals a finite-difference Hessian of the dense REML
    log-likelihood (Richardson-extrapolated; these fits are well enough conditioned for it)."""
    fit = fit_mmrm(small, FORMULA, covariance=structure)
    dense = Dense(fit, structure)
    omega = fit._inf.omega
    scale = np.maximum(np.abs(omega), 1e-8)
    fd = -(4 * dense._hessian(omega, 1e-5 * scale) - dense._hessian(omega, 2e-5 * scale)) / 3
    _, _, parts = dense.kenward_roger(omega, "observed")
    np.testing.assert_allclose(parts["info"], fd, rtol=2e-3, atol=2e-3 * np.abs(fd).max())
