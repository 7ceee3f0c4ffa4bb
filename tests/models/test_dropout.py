"""Tests of ``models/dropout.py`` (``dropout_data``, ``dropout_latent_status``, ``dropout_selection``)
and the "selection" / "latent_status" sensitivity analyses.

- data preparation (risk sets, status patterns) on a hand-made frame;
- the models' log-densities against a numpy/scipy reference at random points;
- psi recovery on a simulated MNAR study (``models.simulate`` with ``bmd_log_odds = -0.5``, which
  *is* psi under ``dependence="current_change"``): a reduced fast version and a slow study;
- latent status vs exclusion against the complete-data fit (the truth dropout hides);
- the sensitivity functions on the twin.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import models  # noqa: F401  (compile caches before pymc)
from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.engine.sampling import sample
from analysis.sensitivity.latent_status import TABLE_COLUMNS, latent_status_analysis
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult
from analysis.sensitivity.selection import selection_analysis
from models.dropout import (
    DAS28_CENTRE,
    DropoutPriors,
    build_latent_status_model,
    build_selection_model,
    prepare_dropout_data,
)
from models.simulate import Design, DropoutModel, simulate
from models.trajectory import build_trajectory_model

FAST = {"draws": 500, "tune": 500, "chains": 2, "cores": 2}


def _frame() -> pd.DataFrame:
    """Three patients: a completer (responder), a month-6 dropout, a month-3 dropout."""
    rows = [
        # id, month, bmd, das, responder
        ("A", 0, 0.90, 5.0, True), ("A", 3, np.nan, 3.0, True), ("A", 6, 0.91, 2.8, True),
        ("A", 12, 0.92, 2.5, True),
        ("B", 0, 1.00, 5.5, None), ("B", 3, np.nan, 5.0, None),
        ("C", 0, 0.80, 4.0, None),
    ]
    df = pd.DataFrame(rows, columns=["patient_id", "month", "bmd_spine", "das28_crp", "responder"])
    df["responder"] = df["responder"].astype("boolean")
    return df


@pytest.fixture(scope="module")
def twin() -> pd.DataFrame:
    return derive(load_twin().frame)


# ---------------------------------------------------------------------------------------------
# data preparation
# ---------------------------------------------------------------------------------------------


def test_prepare_builds_risk_sets_and_status_patterns():
    d = prepare_dropout_data(_frame(), "spine")
    assert list(d.patient_ids) == ["A", "B", "C"]
    np.testing.assert_array_equal(d.patterns, [0, 3, 6])
    np.testing.assert_array_equal(d.visit_months, [3, 6, 12])
    np.testing.assert_array_equal(d.status[:1], [1.0])
    assert np.isnan(d.status[1:]).all()
    # A at risk at 3, 6, 12 (no event); B at 3 (no event) and 6 (event); C at 3 (event)
    np.testing.assert_array_equal(d.risk_patient, [0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(d.risk_visit, [0, 1, 2, 0, 1, 0])
    np.testing.assert_array_equal(d.risk_event, [0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(d.risk_t, [0.25, 0.5, 1.0, 0.25, 0.5, 0.25])
    np.testing.assert_allclose(d.risk_das28, np.array([5.0, 3.0, 2.8, 5.5, 5.0, 4.0]) - DAS28_CENTRE)
    np.testing.assert_array_equal(d.dropout_month[1:], [6.0, 3.0])
    assert np.isnan(d.dropout_month[0])
    # B's last DAS28 is at month 3 (change -0.5), C has the baseline only
    np.testing.assert_array_equal(d.pattern_idx[1:], [1, 0])
    np.testing.assert_allclose(d.delta[1:], [-0.5, 0.0])
    # only the defined patient enters the status regressions, at every month it has a DAS28
    np.testing.assert_array_equal(d.status_mask, [[1, 1, 1], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(d.delta_at[0], [0.0, -2.0, -2.2])
    assert d.n_obs == 5  # the BMD rows


def test_prepare_rejects_bad_input():
    df = _frame()
    with pytest.raises(ValueError, match="lacks column"):
        prepare_dropout_data(df.drop(columns="das28_crp"), "spine")
    with pytest.raises(ValueError, match="site"):
        prepare_dropout_data(df, "hip")
    bad = df.copy()
    bad.loc[1, "responder"] = False
    with pytest.raises(ValueError, match="varies within a patient"):
        prepare_dropout_data(bad, "spine")
    bad = df.copy()
    bad.loc[bad["patient_id"] == "C", "responder"] = True
    with pytest.raises(ValueError, match="needs a DAS28 at month 12"):
        prepare_dropout_data(bad, "spine")
    bad = df.copy()
    bad.loc[0, "das28_crp"] = np.nan
    with pytest.raises(ValueError, match="baseline DAS28"):
        prepare_dropout_data(bad, "spine")
    with pytest.raises(ValueError, match="dependence"):
        build_selection_model(df, "spine", dependence="hazard")
    with pytest.raises(ValueError, match="psi_sd"):
        DropoutPriors(psi_sd=0.0)


# ---------------------------------------------------------------------------------------------
# log-densities against a reference
# ---------------------------------------------------------------------------------------------


def _eval(model, names, seed):
    """Values of ``names`` (potentials and untransformed variables) at a random point."""
    m = model.pymc_model
    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m.initial_point().items()}
    outs = m.replace_rvs_by_values([m[n] for n in names])  # values, not random draws
    fn = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore", point_fn=True,
                      mode="FAST_COMPILE")  # evaluated once: no JIT compilation
    return dict(zip(names, fn(point)))


def _status_reference(d, kappa):
    eta = kappa[None, :, 0] + kappa[None, :, 1] * d.delta_at
    s = np.nan_to_num(d.status)[:, None]
    ll = np.sum(d.status_mask * (s * -np.logaddexp(0, -eta) + (1 - s) * -np.logaddexp(0, eta)))
    logit_pi = kappa[d.pattern_idx, 0] + kappa[d.pattern_idx, 1] * d.delta
    return ll, logit_pi


def _mix_reference(d, lp0, lp1, logit_pi):
    und = d.undefined
    mix = np.logaddexp(-np.logaddexp(0, logit_pi) + lp0, -np.logaddexp(0, -logit_pi) + lp1)
    s = np.nan_to_num(d.status)
    return np.sum(np.where(und, mix, s * lp1 + (1 - s) * lp0)), np.where(
        und, special.expit(logit_pi + lp1 - lp0), s)


def _y_marginal_reference(d, arr, v) -> np.ndarray:
    """(2, patients): each patient's marginal normal log-likelihood of the BMD rows per component
    (scipy's multivariate normal with covariance sigma^2 I + Z Sigma Z')."""
    tau, rho, sig, beta = v["tau_std"], v["corr_patient"], v["sigma_std"], v["beta_std"]
    cov = np.array([[tau[0] ** 2, rho * tau[0] * tau[1]], [rho * tau[0] * tau[1], tau[1] ** 2]])
    lps = np.zeros((2, d.n_patients))
    for r in (0, 1):
        for i in range(d.n_patients):
            rows = d.patient_idx == i
            z = np.column_stack([np.ones(rows.sum()), d.t[rows]])
            mean = z @ np.array([beta[0] + beta[2] * r, beta[1] + beta[3] * r])
            lps[r, i] = stats.multivariate_normal.logpdf(
                arr["y_std"][rows], mean, sig**2 * np.eye(rows.sum()) + z @ cov @ z.T)
    return lps


@pytest.mark.parametrize("seed", [0, 1])
def test_latent_status_density_matches_scipy(twin, seed):
    lm = build_latent_status_model(twin, "spine")
    names = ["status_regression", "y_marginal_mixture", "p_responder", "beta_std", "tau_std",
             "corr_patient", "sigma_std", "kappa"]
    v = _eval(lm, names, seed)
    d, arr = lm.prepared, lm.data_values
    ll, logit_pi = _status_reference(d, v["kappa"])
    assert v["status_regression"] == pytest.approx(ll, rel=1e-9)
    lps = _y_marginal_reference(d, arr, v)
    total, p = _mix_reference(d, lps[0], lps[1], logit_pi)
    assert v["y_marginal_mixture"] == pytest.approx(total, rel=1e-8)
    np.testing.assert_allclose(v["p_responder"], p, rtol=1e-7, atol=1e-12)


def _hazard_integral_reference(d, arr, v, r, dependence, nodes=40):
    """Per patient, log of E[p(dropout history | a)] over a ~ N(mu_i, A_i^{-1}), the conditional
    of the effects given the BMD rows, by a 2-D Gauss-Hermite rule on the Cholesky factor of the
    joint conditional covariance (intercept first: a different factorisation from the model's)."""
    tau, rho, sig, beta = v["tau_std"], v["corr_patient"], v["sigma_std"], v["beta_std"]
    cov = np.array([[tau[0] ** 2, rho * tau[0] * tau[1]], [rho * tau[0] * tau[1], tau[1] ** 2]])
    m = np.array([beta[0] + beta[2] * r, beta[1] + beta[3] * r])
    x, w = np.polynomial.hermite.hermgauss(nodes)
    x, w = np.sqrt(2) * x, w / w.sum()
    zz = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    ww = np.outer(w, w).ravel()
    out = np.zeros(d.n_patients)
    for i in range(d.n_patients):
        rows = d.patient_idx == i
        z = np.column_stack([np.ones(rows.sum()), d.t[rows]])
        prec = np.linalg.inv(cov) + z.T @ z / sig**2
        c = np.linalg.inv(prec)
        mu = m + c @ z.T @ (arr["y_std"][rows] - z @ m) / sig**2
        a = mu + zz @ np.linalg.cholesky(c).T  # (nodes^2, 2)
        pct = 100 * d.y_scale * a[:, 1] / (d.y_loc + d.y_scale * a[:, 0])
        risk = np.flatnonzero(d.risk_patient == i)
        ll = np.zeros(len(ww))
        for k in risk:
            x_k = pct * (d.risk_t[k] if dependence == "current_change" else 1.0)
            eta = v["alpha"][d.risk_visit[k]] + v["beta_das28"] * d.risk_das28[k] + v["psi"] * x_k
            ll += -np.logaddexp(0, -eta) if d.risk_event[k] == 1 else -np.logaddexp(0, eta)
        out[i] = special.logsumexp(ll, b=ww)
    return out


@pytest.mark.parametrize("dependence", ["current_change", "slope"])
def test_selection_density_matches_numpy(twin, dependence):
    """The joint density: the exact marginal normal likelihood of the BMD rows (scipy) times the
    hazard integrated over the effects' conditional distribution (an independent 40 x 40 rule);
    with many nodes the model's quadrature agrees to 1e-8, and with the default nodes to 1e-2
    (at a point with psi = -0.5, where the posterior lives)."""
    names = ["joint_mixture", "beta_std", "tau_std", "corr_patient", "sigma_std", "kappa", "psi", "alpha",
             "beta_das28", "p_responder"]
    fine = build_selection_model(twin, "spine", dependence=dependence, quadrature_nodes=(40, 12))
    v = _eval(fine, names, 3)
    d, arr = fine.prepared, fine.data_values
    _, logit_pi = _status_reference(d, v["kappa"])
    lps = _y_marginal_reference(d, arr, v)
    for r in (0, 1):
        lps[r] += _hazard_integral_reference(d, arr, v, r, dependence)
    total, p = _mix_reference(d, lps[0], lps[1], logit_pi)
    assert v["joint_mixture"] == pytest.approx(total, rel=1e-8)
    np.testing.assert_allclose(v["p_responder"], p, rtol=1e-6, atol=1e-10)

    # the default rule where the posterior lives: at the MAP, and there with psi = -0.5
    import pymc as pm

    default = build_selection_model(twin, "spine", dependence=dependence)
    m_f, m_d = fine.pymc_model, default.pymc_model
    with m_d, warnings.catch_warnings():
        # the dict of (transformed) point values is what is wanted here, not an InferenceData
        warnings.filterwarnings("ignore", "`find_MAP` will return", FutureWarning)
        point = pm.find_MAP(progressbar=False, random_seed=1, jitter=False,
                            compile_kwargs={"mode": "FAST_COMPILE"})  # evaluated a few times: no JIT
    point = {k: np.asarray(point[k]) for k in m_d.initial_point()}
    vals = _joint_at([m_f, m_d], point)
    assert abs(vals[1] - vals[0]) < 1e-2, vals
    point["psi"] = np.array(-0.5)
    vals = _joint_at([m_f, m_d], point)
    assert abs(vals[1] - vals[0]) < 1e-2, vals


def _joint_at(models, point):
    out = []
    for m in models:
        fn = m.compile_fn(m.replace_rvs_by_values([m["joint_mixture"]]), inputs=m.value_vars,
                          on_unused_input="ignore", point_fn=True, mode="FAST_COMPILE")
        out.append(float(fn(point)[0]))
    return out


def test_selection_risk_arrays_are_the_risk_rows():
    d = prepare_dropout_data(_frame(), "spine")
    from models.dropout import risk_wide

    w = risk_wide(d)
    np.testing.assert_array_equal(w["risk_mask"], [[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(w["risk_event_w"], [[0, 0, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(w["visit_t"], [0.25, 0.5, 1.0])
    assert w["risk_das28_w"][1, 1] == pytest.approx(5.0 - DAS28_CENTRE)  # last DAS28 before month 6


def test_simulator_dependence_is_psi_under_current_change():
    """The simulator's logit term delta * 100 (mu(v)/b - 1) equals psi * 100 a1 t / a0 exactly."""
    b, g = np.array([0.8, 1.1]), np.array([-2.4, 1.0])  # baseline, annual % change
    months = np.array([3.0, 6.0, 12.0])
    sim_term = 100 * (b[:, None] * (1 + g[:, None] * months / 1200) / b[:, None] - 1)
    a0, a1 = b, b * g / 100  # the LMM's intercept and slope per year
    np.testing.assert_allclose(sim_term, 100 * a1[:, None] * (months / 12) / a0[:, None])


# ---------------------------------------------------------------------------------------------
# recovery and the latent-status check
# ---------------------------------------------------------------------------------------------

PSI_TRUE = -0.5


def _mnar_study(n: int, seed: int):
    dm = DropoutModel(mechanism="mnar", visit_hazard=0.12, activity_log_odds=0.5,
                      bmd_log_odds=PSI_TRUE)
    return derive(simulate(Design(n_patients=n, dropout=dm), seed=seed).data)


def test_selection_recovers_known_dependence_fast():
    sm = build_selection_model(_mnar_study(400, 1), "spine")
    fit = sample(sm, seed=1, **FAST)
    psi = fit.posterior["posterior"]["psi"].values.ravel()
    lo, hi = np.quantile(psi, [0.025, 0.975])
    assert lo < PSI_TRUE < hi  # the truth within the 95 % interval
    assert hi < 0  # and the dependence detected
    assert fit.diagnostics.n_divergences == 0
    beta = fit.posterior["posterior"]["beta_das28"].values.ravel()
    assert np.quantile(beta, 0.025) > 0  # the MAR part (true 0.5) detected too


@pytest.mark.slow
def test_selection_recovery_study(full_studies):
    """The 95% interval covers the true psi on every data set; at full size (4 data sets, posterior
    SD ~0.16 each) the mean of the posterior means is within 0.2 of it. Reduced form: one data set
    (the fast test above is another), coverage only."""
    means = []
    sm = None
    for seed in ((2, 3, 4, 5) if full_studies else (3,)):
        data = _mnar_study(400, seed)
        if sm is None:
            sm = build_selection_model(data, "spine")
        else:
            sm.set_data(data)  # one compiled model for every data set
        fit = sample(sm, seed=seed, draws=1000, tune=1000, chains=2, cores=2)
        psi = fit.posterior["posterior"]["psi"].values.ravel()
        lo, hi = np.quantile(psi, [0.025, 0.975])
        assert lo < PSI_TRUE < hi, f"seed {seed}: [{lo:.2f}, {hi:.2f}]"
        means.append(psi.mean())
    if full_studies:
        assert abs(np.mean(means) - PSI_TRUE) < 0.2


def _pct_estimands(fit) -> np.ndarray:
    p = fit.posterior["posterior"]
    return np.r_[p["pct_change_end"].mean(("chain", "draw")).values,
                 float(p["diff_pct_change_end"].mean())]


def _latent_vs_exclude(seed: int) -> tuple[float, float]:
    """Total absolute error (3 % estimands) of exclusion and latent status vs the complete data."""
    sim = simulate(Design(n_patients=300), seed=seed)  # MAR dropout on DAS28, ~45 % undefined
    observed, complete = derive(sim.data), derive(sim.complete)
    assert complete["responder"].notna().all()
    truth = _pct_estimands(sample(build_trajectory_model(complete, "spine"), seed=seed, **FAST))
    excl = _pct_estimands(sample(build_trajectory_model(observed[observed["responder"].notna()], "spine"),
                                 seed=seed, **FAST))
    latent = _pct_estimands(sample(build_latent_status_model(observed, "spine"), seed=seed, **FAST))
    return float(np.abs(excl - truth).sum()), float(np.abs(latent - truth).sum())


def test_latent_status_closer_to_complete_data_than_exclusion_fast():
    err_excl, err_latent = _latent_vs_exclude(2)
    assert err_latent < err_excl


@pytest.mark.slow
def test_latent_status_closer_to_complete_data_study(full_studies):
    errs = np.array([_latent_vs_exclude(s) for s in ((1, 3, 4, 5) if full_studies else (1, 3))])
    assert errs[:, 1].mean() < errs[:, 0].mean()


# ---------------------------------------------------------------------------------------------
# sensitivity analyses on the twin
# ---------------------------------------------------------------------------------------------

SMALL = {"draws": 300, "tune": 300, "chains": 2, "cores": 2}


def test_latent_status_analysis_on_twin(twin):
    res = latent_status_analysis(twin, ("spine",), seed=1, label="SYNTHETIC", **SMALL)
    assert isinstance(res, SensitivityResult) and res.name == "latent_status"
    assert list(res.table.columns) == TABLE_COLUMNS
    mem = res.table[res.table["section"] == "membership"]
    undefined = twin.groupby("patient_id")["responder"].first().isna()
    assert sorted(mem["item"]) == sorted(undefined.index[undefined])
    assert mem["mean"].between(0, 1).all() and (mem["low"] <= mem["high"]).all()
    est = res.table[res.table["section"] == "estimand"]
    assert set(est["model"]) == {"exclude", "latent status"} and len(est) == 12
    ex = est[est["model"] == "exclude"].set_index("item")["mean"]
    lat = est[est["model"] == "latent status"].set_index("item")
    np.testing.assert_allclose(lat["shift"], lat["mean"] - ex[lat.index], atol=1e-12)
    assert list(res.forest_rows.columns) == FOREST_COLUMNS and len(res.forest_rows) == 6
    assert set(res.figures) == {"latent_status_membership", "latent_status_forest"}
    assert any("undefined patients" in t for t in res.text)


def test_selection_analysis_on_twin(twin):
    res = selection_analysis(twin, ("spine",), psi_priors=((0.0, 0.5), (-0.3, 0.1)), seed=1,
                             **SMALL)
    assert res.name == "selection"
    par = res.table[(res.table["section"] == "parameter") & (res.table["item"] == "psi")]
    assert len(par) == 2
    tight = par[par["model"].str.contains("N\\(-0.3, 0.1\\)")].iloc[0]
    assert -0.55 < tight["mean"] < -0.05  # a tight prior dominates the weak data
    est = res.table[res.table["section"] == "estimand"]
    assert len(est) == 18  # MAR + 2 selection fits x 6 estimands
    assert est.loc[est["model"] != "MAR (latent status)", "shift"].notna().all()
    assert set(res.forest_rows["analysis"]) == {"MAR (latent status)", *set(par["model"])}
    assert {"selection_psi", "selection_forest"} <= set(res.figures)
    with pytest.raises(ValueError, match="psi_priors"):
        selection_analysis(twin, ("spine",), psi_priors=((0.0, -1.0),))
