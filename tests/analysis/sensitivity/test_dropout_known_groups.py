"""The dropout models with known groups (a trial's arms, a dose study, a single arm): the data, the
log-densities against a numpy/scipy reference, and the selection analysis on simulated trials."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import models  # noqa: F401  (compile caches before pymc)
from analysis.sensitivity.selection import selection_analysis
from models.dropout import build_latent_status_model, build_selection_model, prepare_dropout_data
from tests.analysis.sensitivity._trial import DOSES, load_trial, trial_csv

TINY = {"draws": 100, "tune": 100, "chains": 2, "cores": 2}
LEVELS3 = ("placebo", "low", "high")


def _frame() -> pd.DataFrame:
    """Three patients without DAS28: a completer (high), a month-6 dropout (placebo), a baseline-only
    dropout (low), and one without an arm (left out)."""
    rows = [("A", 0, 0.90, "high"), ("A", 6, 0.91, "high"), ("A", 12, 0.92, "high"),
            ("B", 0, 1.00, "placebo"), ("B", 6, 0.99, "placebo"),
            ("C", 0, 0.80, "low"), ("D", 0, 0.85, None), ("D", 6, 0.86, None)]
    return pd.DataFrame(rows, columns=["patient_id", "month", "bmd_total_hip", "arm"])


def test_prepare_with_known_groups():
    d = prepare_dropout_data(_frame(), "total_hip", group="arm", levels=LEVELS3)
    assert list(d.patient_ids) == ["A", "B", "C"] and d.levels == LEVELS3 and not d.latent and not d.has_das28
    np.testing.assert_array_equal(d.group, [2, 0, 1])
    assert not d.undefined.any()
    np.testing.assert_array_equal(d.visit_months, [6, 12])
    # A at risk at 6, 12; B at 6 (no event), 12 (event); C at 6 (event)
    np.testing.assert_array_equal(d.risk_patient, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(d.risk_event, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(d.risk_das28, 0.0)
    with pytest.raises(ValueError, match="not one of the levels"):
        prepare_dropout_data(_frame(), "total_hip", group="arm", levels=("placebo", "high"))
    with pytest.raises(ValueError, match="site 'spine'"):
        prepare_dropout_data(_frame(), "spine", group="arm", levels=LEVELS3)


def _eval(model, names, seed):
    m = model.pymc_model
    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m.initial_point().items()}
    outs = m.replace_rvs_by_values([m[n] for n in names])
    fn = m.compile_fn(outs, inputs=m.value_vars, on_unused_input="ignore", point_fn=True, mode="FAST_COMPILE")
    return dict(zip(names, fn(point)))


def _means(d, beta):
    """Per patient, the fixed intercept and slope of its group (scaled units): b0 + b_{0g}, b1 + b_{1g}."""
    k = len(d.levels)
    a0 = np.r_[beta[0], beta[0] + beta[2:2 * k:2]]
    a1 = np.r_[beta[1], beta[1] + beta[3:2 * k:2]]
    return a0[d.group], a1[d.group]


def _marginal(d, arr, v) -> np.ndarray:
    tau, rho, sig = v["tau_std"], v["corr_patient"], v["sigma_std"]
    cov = np.array([[tau[0] ** 2, rho * tau[0] * tau[1]], [rho * tau[0] * tau[1], tau[1] ** 2]])
    m0, m1 = _means(d, v["beta_std"])
    out = np.zeros(d.n_patients)
    for i in range(d.n_patients):
        rows = d.patient_idx == i
        z = np.column_stack([np.ones(rows.sum()), d.t[rows]])
        out[i] = stats.multivariate_normal.logpdf(arr["y_std"][rows], z @ np.array([m0[i], m1[i]]),
                                                  sig**2 * np.eye(rows.sum()) + z @ cov @ z.T)
    return out


@pytest.fixture(scope="module")
def doses_csv(tmp_path_factory):
    return trial_csv(tmp_path_factory.mktemp("doses") / "doses.csv", n=90, truth=DOSES, seed=1)


@pytest.fixture(scope="module")
def doses(doses_csv):
    return load_trial(doses_csv)[1]


@pytest.mark.parametrize("group", ["arm", "none"])
def test_known_groups_lmm_density_matches_scipy(doses, group):
    frame = doses.assign(analysis_group=doses["group"] if group == "arm" else "all")
    levels = LEVELS3 if group == "arm" else ("all",)
    lm = build_latent_status_model(frame, "spine", group="analysis_group", levels=levels)
    d, arr = lm.prepared, lm.data_values
    assert list(lm.pymc_model.coords["coef"]) == (["intercept", "time", "low", "time:low", "high", "time:high"]
                                                  if group == "arm" else ["intercept", "time"])
    v = _eval(lm, ["y_marginal", "beta_std", "tau_std", "corr_patient", "sigma_std"], 2)
    assert v["y_marginal"] == pytest.approx(_marginal(d, arr, v).sum(), rel=1e-9)


def test_known_groups_selection_density_matches_numpy(doses):
    """The hazard integrated over each patient's effects (a 40 x 40 Gauss-Hermite rule on the
    joint conditional, an independent factorisation) against the model's (40, 12) rule."""
    frame = doses.assign(analysis_group=doses["group"])
    sm = build_selection_model(frame, "spine", hazard_das28=False, group="analysis_group", levels=LEVELS3,
                               quadrature_nodes=(40, 12))
    d, arr = sm.prepared, sm.data_values
    v = _eval(sm, ["joint", "beta_std", "tau_std", "corr_patient", "sigma_std", "psi", "alpha"], 3)
    tau, rho, sig = v["tau_std"], v["corr_patient"], v["sigma_std"]
    cov = np.array([[tau[0] ** 2, rho * tau[0] * tau[1]], [rho * tau[0] * tau[1], tau[1] ** 2]])
    m0, m1 = _means(d, v["beta_std"])
    x, w = np.polynomial.hermite.hermgauss(40)
    x, w = np.sqrt(2) * x, w / w.sum()
    zz = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    ww = np.outer(w, w).ravel()
    total = _marginal(d, arr, v).sum()
    for i in range(d.n_patients):
        rows = d.patient_idx == i
        z = np.column_stack([np.ones(rows.sum()), d.t[rows]])
        m = np.array([m0[i], m1[i]])
        c = np.linalg.inv(np.linalg.inv(cov) + z.T @ z / sig**2)
        mu = m + c @ z.T @ (arr["y_std"][rows] - z @ m) / sig**2
        a = mu + zz @ np.linalg.cholesky(c).T
        pct = 100 * d.y_scale * a[:, 1] / (d.y_loc + d.y_scale * a[:, 0])
        ll = np.zeros(len(ww))
        for k in np.flatnonzero(d.risk_patient == i):
            eta = v["alpha"][d.risk_visit[k]] + v["psi"] * pct * d.risk_t[k]
            ll += -np.logaddexp(0, -eta) if d.risk_event[k] == 1 else -np.logaddexp(0, eta)
        total += special.logsumexp(ll, b=ww)
    assert v["joint"] == pytest.approx(total, rel=1e-8)
    with pytest.raises(ValueError, match="hazard_das28"):
        build_selection_model(frame, "spine", group="analysis_group", levels=LEVELS3)  # no DAS28 in a trial


def test_selection_analysis_on_a_trial(tmp_path):
    _, derived = load_trial(trial_csv(tmp_path / "trial.csv", n=120, seed=7))
    r = selection_analysis(derived, ("spine",), seed=1, **TINY)
    assert r.settings["latent_status"] is False and r.settings["groups"] == ["placebo", "active"]
    est = r.table[r.table["section"] == "estimand"]
    assert set(est["model"]) == {"MAR", "selection, psi ~ N(0, 0.5)"} and len(est) == 12
    assert "spine, active - placebo, change to month 24, %" in set(est["item"])
    assert est.loc[est["model"] != "MAR", "shift"].notna().all()
    psi = r.table[(r.table["section"] == "parameter") & (r.table["item"] == "psi")].iloc[0]
    assert -1.0 < psi["mean"] < 1.0  # MCAR dropout: no evidence of a BMD-driven hazard
    assert "beta_das28" not in set(r.table["item"]) and any("no DAS28-CRP" in t for t in r.text)
    assert set(r.forest_rows["analysis"]) == {"MAR", "selection, psi ~ N(0, 0.5)"}


def test_selection_analysis_on_a_single_arm(doses_csv):
    _, single = load_trial(doses_csv, group="none")
    r = selection_analysis(single, ("spine",), seed=2, **TINY)
    est = r.table[r.table["section"] == "estimand"]
    assert set(est["item"]) == {"spine, all, change to month 24, %", "spine, all, change to month 24, g/cm^2"}
    truth = np.mean([DOSES.pct_change("spine", a, 24) for a in LEVELS3])
    mar = est[(est["model"] == "MAR") & est["item"].str.endswith("%")].iloc[0]
    assert mar["low"] - 0.5 < truth < mar["high"] + 0.5
