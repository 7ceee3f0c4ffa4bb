r"""Tests of the models' groups and endpoint (``models/trajectory*.py``, ``models/marginal.py``,
``models/mmrm*.py``, ``models/joint*.py``): :math:`K` group levels, the reference first, give
:math:`K - 1` indicator columns and the coefficients ``intercept, time, <level>, time:<level>``...;
two levels are the responder study's model exactly (same graph, so the same draws); one level
(a single arm) has ``intercept, time`` only; the reported changes are at the endpoint.

No sampling here: the graphs are evaluated at fixed points (fits on simulated trials are in
``tests/analysis/bayes/test_design_fits.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import models  # noqa: F401  (compile caches before pymc)
from models.joint import build_joint_model
from models.mmrm import build_mmrm_model
from models.trajectory import COEF_NAMES, TrajectoryPriors, build_trajectory_model, coef_names, contrast_names
from models.trajectory_data import group_indicators, prepare_trajectory_data
from tests.lmm_sim import simulate_lmm

LEVELS3 = ("placebo", "low", "high")


def _three_arm(seed: int = 0, n: int = 45) -> pd.DataFrame:
    """A twin-like LMM data set (``tests/lmm_sim.py``) with three arms in ``analysis_group``, an
    actual time ``month_actual`` a few days off the nominal ``month``, and a second site."""
    df = simulate_lmm(n, dropout=0.2, seed=seed)
    rng = np.random.default_rng(seed)
    arm = dict(zip(sorted(df["patient_id"].unique()), np.resize(LEVELS3, n)))
    df["analysis_group"] = df["patient_id"].map(arm)
    df["month_actual"] = df["month"] + np.where(df["month"] > 0, rng.uniform(-0.3, 0.3, len(df)), 0.0)
    df["bmd_total_hip"] = df["bmd_spine"] * 0.9 + rng.normal(0, 0.01, len(df))
    return df


def _eval(model, names, point=None):
    """Values of the named variables at a point of the model (default its initial point)."""
    m = model.pymc_model
    point = m.initial_point() if point is None else point
    outs = m.replace_rvs_by_values([m[n] for n in names])
    return dict(zip(names, m.compile_fn(outs, inputs=m.value_vars, point_fn=True, on_unused_input="ignore")(point)))


def test_labels_and_indicators():
    assert coef_names(("non-responder", "responder")) == COEF_NAMES
    assert coef_names(LEVELS3) == ("intercept", "time", "low", "time:low", "high", "time:high")
    assert coef_names(("all",)) == ("intercept", "time")
    assert contrast_names(LEVELS3) == ("low - placebo", "high - placebo")
    g = group_indicators(pd.Series(["high", "placebo", "low"]), LEVELS3, "arm")
    np.testing.assert_array_equal(g, [[0, 1], [0, 0], [1, 0]])
    with pytest.raises(ValueError, match="not among the levels"):
        group_indicators(pd.Series(["plaecbo"]), LEVELS3, "arm")


def test_prepare_reads_levels_time_and_any_site():
    df = _three_arm()
    prep = prepare_trajectory_data(df, "total_hip", levels=LEVELS3, time="month_actual")
    assert prep.levels == LEVELS3 and prep.group_x.shape == (prep.n_patients, 2)
    np.testing.assert_allclose(prep.t_years, df.loc[df["bmd_total_hip"].notna(), "month_actual"] / 12)
    per_patient = df.groupby("patient_id")["analysis_group"].first().loc[prep.patient_ids]
    np.testing.assert_array_equal(prep.group_x[:, 1], (per_patient == "high").to_numpy(float))
    with pytest.raises(ValueError, match="responder indicator needs two groups"):
        prep.responder  # noqa: B018
    single = prepare_trajectory_data(df.drop(columns="analysis_group"), "spine", levels=("all",))
    assert single.group_x.shape == (single.n_patients, 0)
    with pytest.raises(ValueError, match="no BMD column 'bmd_radius'.*spine, total_hip"):
        prepare_trajectory_data(df, "radius", levels=LEVELS3)


def test_two_levels_are_the_responder_model():
    """Levels read from ``analysis_group`` give the responder study's graph: same data, coords,
    structure and log density (and so the same draws for the same seed)."""
    df = simulate_lmm(40, dropout=0.3, seed=3)
    df["analysis_group"] = np.where(df["responder"], "responder", "non-responder")
    legacy = build_trajectory_model(df, "spine")
    named = build_trajectory_model(df.drop(columns="responder"), "spine", levels=("non-responder", "responder"))
    assert legacy.structure_key == named.structure_key
    assert legacy.pymc_model.coords == named.pymc_model.coords
    assert set(legacy.data_values) == set(named.data_values)
    for k, v in legacy.data_values.items():
        np.testing.assert_array_equal(v, named.data_values[k])
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in legacy.pymc_model.initial_point().items()}
    assert legacy.pymc_model.compile_logp()(point) == named.pymc_model.compile_logp()(point)


def test_three_arms_priors_and_reported_quantities():
    """b = (intercept, time, low, time:low, high, time:high); each level's pair has the group
    priors; baseline_mean, change_end (at month 24 = two years), pct_change_end and the two
    contrasts follow from b."""
    df = _three_arm()
    tm = build_trajectory_model(df, "spine", levels=LEVELS3, time="month_actual", endpoint_month=24)
    m = tm.pymc_model
    assert list(m.coords["coef"]) == list(coef_names(LEVELS3))
    assert list(m.coords["group"]) == list(LEVELS3)
    assert list(m.coords["contrast"]) == ["low - placebo", "high - placebo"]
    ps = tm.data_values["prior"]
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in m.initial_point().items()}
    v = _eval(tm, ["b", "baseline_mean", "change_end", "pct_change_end", "diff_change_end", "diff_pct_change_end"],
              point)
    b = v["b"]
    base = np.array([b[0], b[0] + b[2], b[0] + b[4]])
    change = 2.0 * np.array([b[1], b[1] + b[3], b[1] + b[5]])
    np.testing.assert_allclose(v["baseline_mean"], base)
    np.testing.assert_allclose(v["change_end"], change)
    pct = 100 * change / base
    np.testing.assert_allclose(v["pct_change_end"], pct)
    np.testing.assert_allclose(v["diff_change_end"], [2.0 * b[3], 2.0 * b[5]])
    np.testing.assert_allclose(v["diff_pct_change_end"], pct[1:] - pct[0])
    # the prior of beta_std: N(0, (ps0, ps1, ps2, ps3, ps2, ps3))
    from scipy import stats

    lp = m.compile_fn(m.logp(vars=[m["beta_std"]], sum=False)[0], inputs=m.value_vars, on_unused_input="ignore")(point)
    np.testing.assert_allclose(lp, stats.norm.logpdf(point["beta_std"], 0.0, ps[[0, 1, 2, 3, 2, 3]]), rtol=1e-10)
    assert TrajectoryPriors.FIELDS[2:4] == ("responder_sd", "responder_slope_sd")


def test_single_arm_has_no_contrast_and_a_marginal_likelihood():
    df = _three_arm().drop(columns="analysis_group")
    tm = build_trajectory_model(df, "spine", levels=("all",), endpoint_month=24)
    m = tm.pymc_model
    assert list(m.coords["coef"]) == ["intercept", "time"] and list(m.coords["group"]) == ["all"]
    assert "diff_change_end" not in m.named_vars and "group_x" not in tm.data_values
    v = _eval(tm, ["b", "change_end"])
    np.testing.assert_allclose(v["change_end"], [2.0 * v["b"][1]])
    # the marginal density equals the K = 2 model's with the group terms fixed at zero
    two = build_trajectory_model(df.assign(analysis_group=np.where(df["patient_id"] < "P020", "a", "b")), "spine",
                                 levels=("a", "b"), endpoint_month=24)
    p1 = tm.pymc_model.initial_point()
    p2 = {**two.pymc_model.initial_point(), "beta_std": np.r_[p1["beta_std"], 0.0, 0.0]}
    for k in ("tau_std_log__", "corr_beta_logodds__", "sigma_std_log__"):
        p2[k] = p1[k]
    f1, f2 = (mod.pymc_model.compile_fn(mod.pymc_model.replace_rvs_by_values([mod.pymc_model["y_marginal"]])[0],
                                         inputs=mod.pymc_model.value_vars, on_unused_input="ignore")
              for mod in (tm, two))
    assert f1(p1) == pytest.approx(f2(p2), rel=1e-12)


def test_mmrm_three_arms():
    df = _three_arm(n=60)
    mm = build_mmrm_model(df, "spine", levels=LEVELS3, endpoint_month=12)
    m = mm.pymc_model
    assert list(m.coords["group"]) == list(LEVELS3) and len(m.coords["contrast"]) == 2
    assert mm.prepared.group_x.shape[1] == 2 and set(mm.prepared.frame["group"]) == set(LEVELS3)
    v = _eval(mm, ["ls_mean", "change_end", "diff_change_end", "diff_pct_change_end", "pct_change_end"])
    end = list(m.coords["visit"]).index("12")
    np.testing.assert_allclose(v["change_end"], v["ls_mean"][end])
    np.testing.assert_allclose(v["diff_change_end"], v["ls_mean"][end, 1:] - v["ls_mean"][end, 0])
    np.testing.assert_allclose(v["diff_pct_change_end"], v["pct_change_end"][1:] - v["pct_change_end"][0])
    single = build_mmrm_model(df.drop(columns="analysis_group"), "spine", levels=("all",))
    assert "gamma_std" not in single.pymc_model.named_vars and "diff_change_end" not in single.pymc_model.named_vars


def test_joint_any_sites_and_groups():
    df = _three_arm(n=40)
    jm = build_joint_model(df, sites=("total_hip", "spine"), levels=LEVELS3, time="month_actual", endpoint_month=24)
    m = jm.pymc_model
    assert list(m.coords["site"]) == ["total_hip", "spine"] and len(m.coords["contrast"]) == 2
    assert m.coords["effect_pair"][0] == "total_hip:intercept~total_hip:slope"
    v = _eval(jm, ["b", "change_end", "diff_change_end"])
    np.testing.assert_allclose(v["change_end"][:, 2], 2.0 * (v["b"][:, 1] + v["b"][:, 5]))
    np.testing.assert_allclose(v["diff_change_end"], 2.0 * v["b"][:, [3, 5]])
    three = build_joint_model(df.assign(bmd_radius=df["bmd_spine"] * 0.6), sites=("spine", "total_hip", "radius"),
                              levels=LEVELS3)
    assert len(three.pymc_model.coords["effect_pair"]) == 15
    assert list(three.pymc_model.coords["site_pair"]) == ["spine~total_hip", "spine~radius", "total_hip~radius"]
    with pytest.raises(ValueError, match="two or more distinct sites"):
        build_joint_model(df, sites=("spine",), levels=LEVELS3)
