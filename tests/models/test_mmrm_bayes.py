r"""Tests of ``models/mmrm.py``, ``models/mmrm_data.py`` and ``models/unrolled_cholesky.py``: data
preparation, the masked marginal likelihood, agreement with the REML MMRM under vague priors,
interval coverage on data with known truth, and a fit on the twin.

Data with known truth come from :func:`simulate_mmrm` below, which draws straight from the MMRM:
baseline :math:`x_i \sim N(x_0, 0.14)`, change
:math:`y_{iv} = \alpha_v + \gamma_v r_i + \beta (x_i - x_0) + e_{iv}` with an unstructured
:math:`\Sigma`, monotone dropout and intermittently missed visits. The LS-mean estimand is
:math:`\alpha_v + \gamma_v g + \beta(\bar x - x_0)` at the data's mean baseline :math:`\bar x`.
One compiled model serves every fit with two post-baseline visits (``set_data``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import models  # noqa: F401  (compile caches before pymc)
from analysis.engine.sampling import sample
from analysis.frequentist.mmrm import fit_mmrm
from models.mmrm import (
    PRIOR_VISIT_FIELDS,
    MmrmModel,
    MmrmPriors,
    build_mmrm_model,
    mmrm_frame,
    prepare_mmrm_data,
    prior_arrays,
    unrolled_logdet_quad,
)
from models.priors import PRIOR_SET_NAMES, prior_set

FAST = {"draws": 400, "tune": 400, "chains": 2, "cores": 2}


@dataclass(frozen=True)
class MmrmTruth:
    """Known MMRM parameters (g/cm^2), twin-like: non-responders lose ~2%/yr."""

    visits: tuple[float, ...] = (6.0, 12.0)
    alpha: tuple[float, ...] = (-0.010, -0.020)
    gamma: tuple[float, ...] = (0.008, 0.025)
    beta: float = 0.02
    x0: float = 0.9
    baseline_sd: float = 0.14
    sd: tuple[float, ...] = (0.015, 0.022)
    corr: float = 0.6

    @property
    def cov(self) -> np.ndarray:
        m = len(self.visits)
        r = np.full((m, m), self.corr) + (1.0 - self.corr) * np.eye(m)
        sd = np.asarray(self.sd)
        return sd[:, None] * r * sd[None, :]

    def ls_mean(self, x_ref: float) -> np.ndarray:
        """(visit, group) LS-means at baseline ``x_ref``."""
        a, g = np.asarray(self.alpha), np.asarray(self.gamma)
        return a[:, None] + g[:, None] * np.array([0.0, 1.0]) + self.beta * (x_ref - self.x0)


TRUTH = MmrmTruth()


def simulate_mmrm(
    n: int,
    truth: MmrmTruth = TRUTH,
    *,
    seed: int,
    p_drop: float = 0.15,
    p_missed: float = 0.06,
) -> pd.DataFrame:
    """Long data (``patient_id, month, bmd_spine, responder``) drawn from the MMRM.

    After each visit but the last a patient drops out with probability ``p_drop`` (monotone);
    an attended intermediate visit is missed with probability ``p_missed`` (intermittent).
    """
    rng = np.random.default_rng(seed)
    m = len(truth.visits)
    resp = np.arange(n) % 2 == 1
    x = rng.normal(truth.x0, truth.baseline_sd, n)
    mu = (np.asarray(truth.alpha)[None, :] + np.asarray(truth.gamma)[None, :] * resp[:, None]
          + truth.beta * (x[:, None] - truth.x0))
    y = mu + rng.multivariate_normal(np.zeros(m), truth.cov, n)
    last = np.full(n, m)  # visits 0..last-1 attended
    for v in range(m):
        last = np.where((last == m) & (rng.random(n) < p_drop), v, last)
    seen = np.arange(m)[None, :] < last[:, None]
    missed = (rng.random((n, m)) < p_missed) & (np.arange(m) < m - 1)[None, :]
    seen &= ~missed
    rows = []
    for i in range(n):
        pid = f"S{i:03d}"
        rows.append((pid, 0.0, x[i], resp[i]))
        for v, month in enumerate(truth.visits):
            rows.append((pid, month, x[i] + y[i, v] if seen[i, v] else np.nan, resp[i]))
    return pd.DataFrame(rows, columns=["patient_id", "month", "bmd_spine", "responder"])


def _stacked(fit, name) -> np.ndarray:
    da = fit.posterior["posterior"][name]
    return da.values.reshape(-1, *da.shape[2:])


def _eti(draws: np.ndarray, prob: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0))


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return simulate_mmrm(60, seed=1)


@pytest.fixture(scope="module")
def model(sim) -> MmrmModel:
    """The module's one compiled structure (two post-baseline visits)."""
    return build_mmrm_model(sim, "spine")


# ---------------------------------------------------------------------------------------------
# data preparation
# ---------------------------------------------------------------------------------------------


def test_frame_and_arrays(sim):
    frame = mmrm_frame(sim, "spine")
    base = sim[sim["month"] == 0].set_index("patient_id")["bmd_spine"]
    np.testing.assert_allclose(frame["baseline"], frame["patient_id"].map(base))
    np.testing.assert_allclose(frame["change"], frame["bmd"] - frame["baseline"])
    np.testing.assert_allclose(frame["pct"], 100 * frame["change"] / frame["baseline"])
    assert (frame["month"] > 0).all() and frame["bmd"].notna().all()

    prep = prepare_mmrm_data(sim, "spine", "pct")
    assert prep.visits == (6.0, 12.0) and prep.n_obs == len(frame)
    patterns = prep.patterns()
    assert {"6,12", "6,-", "-,12"} <= set(patterns)  # complete, monotone, intermittent
    assert sum(patterns.values()) == prep.n_patients
    row = frame.iloc[5]
    i = list(prep.patient_ids).index(row["patient_id"])
    assert prep.y[i, prep.visits.index(row["month"])] == pytest.approx(row["pct"])
    # emmeans' reference value: the mean baseline over the analysed rows
    assert prep.x_ref == pytest.approx(frame["baseline"].mean())


def test_patients_without_baseline_or_follow_up_are_not_analysed(sim):
    df = sim.copy()
    before = set(prepare_mmrm_data(sim, "spine").patient_ids)
    pids = sorted(before)
    df.loc[(df["patient_id"] == pids[0]) & (df["month"] == 0), "bmd_spine"] = np.nan
    df.loc[(df["patient_id"] == pids[1]) & (df["month"] > 0), "bmd_spine"] = np.nan
    assert set(prepare_mmrm_data(df, "spine").patient_ids) == before - {pids[0], pids[1]}


def test_bad_input_raises(sim):
    with pytest.raises(ValueError, match="site"):
        prepare_mmrm_data(sim, "hip")
    with pytest.raises(ValueError, match="measure"):
        prepare_mmrm_data(sim, "spine", measure="log")
    with pytest.raises(ValueError, match="lacks column"):
        prepare_mmrm_data(sim.drop(columns="responder"), "spine")
    with pytest.raises(ValueError, match="more than one"):
        prepare_mmrm_data(pd.concat([sim, sim[sim["bmd_spine"].notna()].iloc[[4]]]), "spine")
    with pytest.raises(ValueError, match="every group needs patients.*none in 'non-responder'"):
        prepare_mmrm_data(sim.assign(responder=True), "spine")
    with pytest.raises(ValueError, match="no post-baseline bmd_spine value"):
        prepare_mmrm_data(sim[sim["month"] == 0], "spine")
    assert prepare_mmrm_data(sim[sim["month"] != 6], "spine").visits == (12.0,)  # one visit: the ANCOVA
    bad = sim.copy()
    bad.loc[bad.index[1], "responder"] = not bad.loc[bad.index[0], "responder"]
    with pytest.raises(ValueError, match="varies within a patient"):
        prepare_mmrm_data(bad, "spine")
    with pytest.raises(ValueError, match="responder must be boolean"):
        prepare_mmrm_data(sim.assign(responder="yes"), "spine")
    with pytest.raises(ValueError, match="endpoint_month 9"):
        build_mmrm_model(sim, "spine", endpoint_month=9)
    with pytest.raises(ValueError, match="sd_scale"):
        MmrmPriors(sd_scale=-1.0)


def test_set_data_keeps_the_visits(model, sim):
    three = simulate_mmrm(20, MmrmTruth(visits=(3.0, 6.0, 12.0), alpha=(0, 0, 0),
                                        gamma=(0, 0, 0), sd=(0.01, 0.01, 0.01)), seed=3)
    with pytest.raises(ValueError, match="differ from the model's"):
        model.set_data(three)
    model.set_data(sim)  # unchanged


def test_priors_are_scaled_to_the_outcome():
    p = MmrmPriors()
    arr = p.to_array(y_scale=0.02, x_scale=0.14, unit=100 / 0.9)
    assert arr[0] == pytest.approx(p.intercept_sd * 100 / 0.9 / 0.02)
    assert arr[2] == pytest.approx(p.baseline_coef_sd * 100 / 0.9 * 0.14 / 0.02)
    assert arr[-1] == p.lkj_eta  # not a scale
    assert MmrmPriors.vague().sd_scale > 50 * p.sd_scale


def test_mmrm_priors_keep_their_meaning(sim):
    """The MMRM's own priors give the containers the old scalar layout gave (same model)."""
    prep = prepare_mmrm_data(sim, "spine", "pct")
    p = MmrmPriors()
    old = p.to_array(prep.y_scale, prep.x_scale, 100.0 / prep.x_ref)
    prior, visit = prior_arrays(p, prep)
    row = {f: k for k, f in enumerate(PRIOR_VISIT_FIELDS)}
    np.testing.assert_array_equal(visit[row["alpha_loc"]], 0.0)
    np.testing.assert_allclose(visit[row["alpha_sd"]], old[0], rtol=1e-15)
    np.testing.assert_allclose(visit[row["gamma_sd"]], old[1], rtol=1e-15)
    np.testing.assert_allclose(visit[row["sd_scale"]], old[3], rtol=1e-15)
    np.testing.assert_allclose(prior, old[[2, 4]], rtol=1e-15)


_PRIOR_FNS: dict[int, object] = {}


def _prior_draws(mm: MmrmModel, seed: int = 1, draws: int = 4000) -> dict[str, np.ndarray]:
    """Forward draws from the model's prior (the likelihood potential is not involved); one
    compiled function per model object, the priors being data."""
    from pymc.pytensorf import compile as pm_compile

    names = ("ls_mean", "diff_change_end", "sd_visit")
    m = mm.pymc_model
    key = id(m)
    if key not in _PRIOR_FNS:
        _PRIOR_FNS[key] = (m, pm_compile([], [m[n] for n in names], random_seed=seed))
    fn = _PRIOR_FNS[key][1]
    out = [fn() for _ in range(draws)]
    return {n: np.stack([o[k] for o in out]) for k, n in enumerate(names)}


def test_prior_sets_set_the_prior_on_the_visits(model, sim):
    """Each named set's prior, drawn by prior predictive sampling from the built model (one
    graph: the priors are data), has the spreads the set implies on the data's scale: the
    non-responders' change at visit v ~ N(0, slope_sd t_v), the responder contrast
    ~ N(0, responder_slope_sd t_v), sigma_v ~ N+(0, sqrt(2 sigma_scale^2 + (sd_slope_scale
    t_v)^2)); the sets' spreads differ in the documented order."""
    t = np.array([0.5, 1.0])  # months 6 and 12
    spread = {}
    for name in PRIOR_SET_NAMES:
        p = prior_set(name, "spine")
        model.set_data(sim, priors=p)
        d = _prior_draws(model)
        ls = d["ls_mean"]  # (draw, visit, group)
        # 4000 draws: the SD of an SD estimate is ~1.1%, of a median ~2%
        np.testing.assert_allclose(ls[:, :, 0].std(axis=0), p.slope_sd * t, rtol=0.05)
        np.testing.assert_allclose(np.abs(ls[:, :, 0].mean(axis=0)), 0.0,
                                   atol=0.05 * p.slope_sd)
        np.testing.assert_allclose(d["diff_change_end"].std(), p.responder_slope_sd, rtol=0.05)
        scale = np.sqrt(2 * p.sigma_scale**2 + (p.sd_slope_scale * t) ** 2)
        np.testing.assert_allclose(np.median(d["sd_visit"], axis=0), 0.6745 * scale, rtol=0.06)
        spread[name] = d["diff_change_end"].std()
    model.set_data(sim, priors=MmrmPriors())
    # sceptical: P(|responder contrast at 12 months| >= 2% of the reference BMD) = 5%
    model.set_data(sim, priors=prior_set("sceptical", "spine"))
    diff = _prior_draws(model, seed=2, draws=20000)["diff_change_end"]
    assert np.mean(np.abs(diff) >= 0.02 * 0.911) == pytest.approx(0.05, abs=0.006)
    model.set_data(sim, priors=MmrmPriors())
    assert spread["sceptical"] < spread["literature"] < spread["weakly_informative"] < spread["vague"]
    assert spread["vague"] > 100 * spread["weakly_informative"]


def test_registry_passes_the_prior_set(sim):
    """``rajak fit --model mmrm --priors NAME`` builds the model with that set's prior."""
    from analysis.bayes.fit import MODELS

    arrays = {name: MODELS["mmrm"](sim, "spine", prior_set(name, "spine")).data_values
              for name in ("weakly_informative", "sceptical", "vague")}
    gamma = PRIOR_VISIT_FIELDS.index("gamma_sd")
    g = {k: v["prior_visit"][gamma] for k, v in arrays.items()}
    assert np.all(g["sceptical"] < g["weakly_informative"])
    assert np.all(g["weakly_informative"] < g["vague"])
    np.testing.assert_array_equal(arrays["sceptical"]["prior_visit"][:gamma],
                                  arrays["weakly_informative"]["prior_visit"][:gamma])


# ---------------------------------------------------------------------------------------------
# the likelihood
# ---------------------------------------------------------------------------------------------


def test_unrolled_logdet_quad_matches_numpy():
    import pytensor.tensor as pt

    rng = np.random.default_rng(0)
    k, n = 4, 6
    g = rng.normal(size=(n, k, k))
    a = g @ np.swapaxes(g, 1, 2) + 0.5 * np.eye(k)
    c = rng.normal(size=(n, k))
    logdet, quad = unrolled_logdet_quad(
        [[pt.as_tensor(a[:, i, j]) for j in range(k)] for i in range(k)],
        [pt.as_tensor(c[:, j]) for j in range(k)],
    )
    np.testing.assert_allclose(logdet.eval(), np.linalg.slogdet(a)[1], rtol=1e-10)
    expect = np.einsum("ni,ni->n", c, np.linalg.solve(a, c[..., None])[..., 0])
    np.testing.assert_allclose(quad.eval(), expect, rtol=1e-10)


def test_likelihood_is_the_marginal_of_the_observed_visits():
    """Three visits, every missingness pattern: the model's log-likelihood equals the sum of
    the observed visits' MVN densities (scipy)."""
    truth = MmrmTruth(visits=(3.0, 6.0, 12.0), alpha=(-0.005, -0.01, -0.02),
                      gamma=(0.0, 0.01, 0.02), sd=(0.01, 0.015, 0.02))
    df = simulate_mmrm(40, truth, seed=5, p_drop=0.2, p_missed=0.2)
    mm = build_mmrm_model(df, "spine")
    assert len(mm.prepared.patterns()) >= 4
    m = mm.pymc_model
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m.initial_point().items()}
    outs = m.replace_rvs_by_values(
        [m["y_marginal"], m["alpha_std"], m["gamma_std"], m["beta_std"], m["sd_visit"],
         m["corr_visit"]]
    )
    pot, alpha, gamma, beta, sd, corr = m.compile_fn(outs, inputs=m.value_vars,
                                                     point_fn=True)(point)
    a = mm.data_values
    sd = sd / a["y_scale"]
    r = np.eye(3)
    rows, cols = np.tril_indices(3, -1)
    r[rows, cols] = r[cols, rows] = corr
    cov = sd[:, None] * r * sd[None, :]
    expect = 0.0
    for i in range(mm.prepared.n_patients):
        seen = a["mask"][i] > 0
        mu = alpha + gamma[:, 0] * a["group_x"][i, 0] + beta * a["x_std"][i]  # gamma: (visit, contrast)
        expect += stats.multivariate_normal(mu[seen], cov[np.ix_(seen, seen)]).logpdf(
            a["y_std"][i, seen])
    assert pot == pytest.approx(expect, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# fits
# ---------------------------------------------------------------------------------------------


def _reml(frame: pd.DataFrame, col: str):
    fit = fit_mmrm(frame, f"{col} ~ baseline + month * responder", visit="month")
    grid = fit.lsmeans(["responder"], by=["month"], at={"responder": [0.0, 1.0]})
    est = grid.pivot(index="month", columns="responder", values="estimate").to_numpy()
    se = grid.pivot(index="month", columns="responder", values="se").to_numpy()
    _, lmat = fit.reference_grid(["responder"], by=["month"], at={"responder": [0.0, 1.0]})
    order = list(zip(grid["month"], grid["responder"]))
    l12 = lmat[order.index((12.0, 1.0))] - lmat[order.index((12.0, 0.0))]
    diff = fit.contrast(l12[None, :]).iloc[0]
    return fit, est, se, diff


def _check_reml_agreement(mm: MmrmModel, fit, measure: str) -> None:
    """Posterior means = REML estimates within Monte-Carlo error (plus 10% of an SE for the
    small difference between a posterior mean and a REML point estimate); posterior SDs =
    REML standard errors within 20%."""
    col = "change" if measure == "abs" else "pct"
    assert fit.diagnostics.n_divergences == 0 and fit.diagnostics.max_rhat < 1.02
    reml, est, se, diff = _reml(mm.prepared.frame, col)
    summ = fit.summary(["ls_mean", "baseline_coef", "diff_change_end", "diff_pct_change_end"])
    ls = _stacked(fit, "ls_mean")
    mcse = summ.filter(like="ls_mean", axis=0)["mcse_mean"].to_numpy(float).reshape(2, 2)
    gap = np.abs(ls.mean(axis=0) - est)
    assert np.all(gap < 4 * mcse + 0.1 * se), (measure, gap, mcse, se)
    ratio = ls.std(axis=0) / se
    assert np.all((ratio > 0.8) & (ratio < 1.2)), (measure, ratio)
    dname = "diff_change_end" if measure == "abs" else "diff_pct_change_end"
    d = _stacked(fit, dname)
    d_mcse = float(summ.loc[f"{dname}[responder - non-responder]", "mcse_mean"])
    assert abs(d.mean() - diff["estimate"]) < 4 * d_mcse + 0.1 * diff["se"]
    assert 0.8 < d.std() / diff["se"] < 1.2
    b = _stacked(fit, "baseline_coef")
    b_se = float(reml.fixed.set_index("term").loc["baseline", "se"])
    assert abs(b.mean() - reml.coef["baseline"]) < 4 * float(
        summ.loc["baseline_coef", "mcse_mean"]) + 0.1 * b_se
    # the covariance: posterior SDs of the visits near the REML ones
    sd_reml = np.sqrt(np.diag(reml.covariance.to_numpy()))
    assert np.all(np.abs(_stacked(fit, "sd_visit").mean(axis=0) / sd_reml - 1) < 0.1)


def test_agrees_with_reml_under_vague_priors(model):
    """MmrmPriors.vague(), both measures, one compiled model."""
    df = simulate_mmrm(200, seed=7)
    for measure in ("abs", "pct"):
        mm = build_mmrm_model(df, "spine", measure=measure, priors=MmrmPriors.vague())
        fit = sample(mm, seed=3, draws=1500, tune=600, chains=2, cores=2)
        if measure == "pct":
            assert fit.settings["compile_cache_hit"]  # measure is data: same compiled model
        _check_reml_agreement(mm, fit, measure)


def test_agrees_with_reml_under_the_vague_prior_set(model):
    """The named ``vague`` set (as ``rajak fit --model mmrm --priors vague`` uses it)."""
    df = simulate_mmrm(200, seed=8)
    mm = build_mmrm_model(df, "spine", measure="abs", priors=prior_set("vague", "spine"))
    fit = sample(mm, seed=4, draws=1500, tune=600, chains=2, cores=2)
    assert fit.settings["model"]["prior_kind"] == "prior_set"
    _check_reml_agreement(mm, fit, "abs")


def test_95pct_intervals_cover_the_truth(model):
    hits, widths, cache = [], [], []
    for k in range(12):
        df = simulate_mmrm(60, seed=100 + k)
        model.set_data(df, priors=MmrmPriors())
        fit = sample(model, seed=k, **FAST)
        cache.append(fit.settings["compile_cache_hit"])
        x_ref = model.prepared.x_ref
        truth = {
            "change_end": TRUTH.ls_mean(x_ref)[-1],
            "diff_change_end": np.array(TRUTH.gamma[-1]),
            "baseline_coef": np.array(TRUTH.beta),
            "sd_visit": np.asarray(TRUTH.sd),
            "corr_visit": np.array([TRUTH.corr]),
        }
        for name, value in truth.items():
            lo, hi = _eti(_stacked(fit, name))
            hits.extend(np.atleast_1d((lo <= value) & (value <= hi)))
        lo, hi = _eti(_stacked(fit, "diff_change_end"))
        widths.append(hi - lo)
    assert all(cache[1:])
    coverage = float(np.mean(hits))
    assert 0.85 <= coverage, coverage
    # informative: the prior's 95% width for the difference is ~0.4 g/cm^2
    assert np.mean(widths) < 0.03


def test_runs_on_the_twin(model):
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin
    from analysis.study.groups import assign_groups

    frame = assign_groups(derive(load_twin().frame), "last_observed").frame
    frame = frame[frame["analysis_group"].notna()].assign(
        responder=lambda d: d["analysis_group"] == "responder")
    for site in ("spine", "femoral_neck"):
        mm = build_mmrm_model(frame, site)
        fit = sample(mm, seed=1, **FAST)
        assert fit.settings["compile_cache_hit"]
        d = fit.diagnostics
        assert d.n_divergences == 0 and d.max_rhat < 1.02, d
        assert set(d.var_names) == {"ls_mean", "baseline_coef", "sd_visit", "corr_visit",
                                    "change_end", "pct_change_end", "diff_change_end",
                                    "diff_pct_change_end"}
        p = mm.prepared
        assert p.visits == (6.0, 12.0) and p.n_patients < frame["patient_id"].nunique()
        assert "-,12" in p.patterns()  # the twin has intermittently missed DXA
        # the reported quantities follow from the LS-means
        ls, change = _stacked(fit, "ls_mean"), _stacked(fit, "change_end")
        pct = _stacked(fit, "pct_change_end")
        np.testing.assert_allclose(change, ls[:, -1], rtol=1e-10)
        np.testing.assert_allclose(pct, 100 * change / p.x_ref, rtol=1e-10)
        np.testing.assert_allclose(_stacked(fit, "diff_pct_change_end")[:, 0], pct[:, 1] - pct[:, 0],
                                   rtol=1e-9)
        # plausible on the g/cm^2 scale: non-responders lose bone, responders hold
        assert -0.06 < change[:, 0].mean() < 0 < _stacked(fit, "diff_change_end").mean() < 0.08
        assert 0.005 < _stacked(fit, "sd_visit").mean() < 0.05
