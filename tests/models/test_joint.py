r"""Tests of ``models/joint.py`` and ``models/joint_data.py``: data preparation, the marginal likelihood against a brute-force
multivariate normal, the conditional draws of the patient effects, interval coverage on data drawn
from the model, recovery of the between-site correlations of the cohort simulator, and a fit on
the twin.

Two sources of data with known truth:

* :func:`simulate_joint` draws straight from the joint model (known :math:`b`, :math:`\sigma`,
  :math:`\tau`, :math:`\Omega`), with monotone dropout and a few site-specific missing values;
* :func:`models.simulate.simulate` with a design whose bone model is linear in g/cm^2 given the
  latent response type (no covariate or disease-activity effects on bone, no dropout) and the
  latent type as ``responder``. Its between-site intercept correlation is ``intercept_corr``;
  its slopes are :math:`b_{is} g_{is} / 100` g/cm^2/yr (baseline times annual %), whose
  within-group correlation follows from the design in closed form
  (:func:`design_slope_corr`; ~0.49 for ``slope_corr = 0.5``).

One compiled model serves every fit (``JointModel.set_data``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import models  # noqa: F401  (compile caches before pymc)
from analysis.engine.sampling import sample
from models.joint import (
    _PAIRS,
    EFFECT_PAIRS,
    JointModel,
    _draw_effects,
    build_joint_model,
    prepare_joint_data,
)
from models.simulate import Design, DropoutModel, simulate

FAST = {"draws": 400, "tune": 400, "chains": 2, "cores": 2}
SITES = ("spine", "femoral_neck")


@dataclass(frozen=True)
class JointTruth:
    """Known parameters (g/cm^2, years), twin-like."""

    b: tuple[tuple[float, ...], ...] = ((0.91, -0.020, 0.0, 0.018), (0.80, -0.015, 0.0, 0.012))
    sigma: tuple[float, float] = (0.010, 0.014)
    tau: tuple[float, ...] = (0.14, 0.018, 0.16, 0.020)  # sp0, sp1, fn0, fn1
    corr: tuple[float, ...] = (0.2, 0.6, 0.1, 0.1, 0.5, 0.2)  # EFFECT_PAIRS order

    @property
    def omega(self) -> np.ndarray:
        r = np.eye(4)
        for k, (i, j) in enumerate(_PAIRS):
            r[i, j] = r[j, i] = self.corr[k]
        return r

    @property
    def cov(self) -> np.ndarray:
        tau = np.asarray(self.tau)
        return tau[:, None] * self.omega * tau[None, :]

    @property
    def change_12m(self) -> np.ndarray:
        b = np.asarray(self.b)
        return b[:, 1, None] + b[:, 3, None] * np.array([0.0, 1.0])


TRUTH = JointTruth()


def simulate_joint(n: int, truth: JointTruth = TRUTH, *, seed: int, dropout: float = 0.3,
                   p_site_missing: float = 0.03) -> pd.DataFrame:
    """Long data drawn from the joint model: visits 0/6/12 months; after each visit a patient
    drops out with probability ``dropout / 2``; single values are missing at random."""
    rng = np.random.default_rng(seed)
    months = np.array([0.0, 6.0, 12.0])
    resp = np.arange(n) % 2 == 1
    u = rng.multivariate_normal(np.zeros(4), truth.cov, n)
    last = np.full(n, 3)
    for v in (1, 2):
        last = np.where((last == 3) & (rng.random(n) < dropout / 2), v, last)
    rows = []
    for i in range(n):
        for v, month in enumerate(months):
            t = month / 12.0
            vals = []
            for k, b in enumerate(truth.b):
                mu = b[0] + u[i, 2 * k] + (b[1] + u[i, 2 * k + 1]) * t + b[2] * resp[i] \
                    + b[3] * resp[i] * t
                y = mu + truth.sigma[k] * rng.standard_normal()
                vals.append(np.nan if v >= last[i] or rng.random() < p_site_missing else y)
            rows.append((f"J{i:03d}", month, *vals, resp[i]))
    return pd.DataFrame(rows, columns=["patient_id", "month", "bmd_spine", "bmd_femoral_neck",
                                       "responder"])


def _linear_design(n: int) -> Design:
    """The cohort simulator with bone linear in g/cm^2 given the type, and no dropout."""
    zero = {f"{s}.{k}": 0.0 for s in SITES
            for k in ("male_effect", "age_effect_per_year", "bmi_effect_per_unit",
                      "slope_per_das28_improvement_pct")}
    return Design(n_patients=n).with_updates(
        dropout=DropoutModel(mechanism="mcar", visit_hazard=0.0, activity_log_odds=0.0,
                             p_missed_dxa=0.0),
        **zero,
    )


def design_slope_corr(d: Design) -> float:
    r"""Within-group correlation of the g/cm^2 slopes :math:`b_1 g_1/100`, :math:`b_2 g_2/100`
    across sites, pooled over the types (weights: the type frequencies).

    With :math:`(b_1, b_2)` and :math:`(g_1, g_2)` independent bivariate normal (means
    :math:`\mu`, covariances :math:`c`), :math:`\mathrm{Cov}(b_1g_1, b_2g_2) = c_b c_g + c_b
    \mu_{g1}\mu_{g2} + \mu_{b1}\mu_{b2} c_g` and :math:`\mathrm{Var}(b_kg_k) = v_{bk}v_{gk} +
    v_{bk}\mu_{gk}^2 + \mu_{bk}^2 v_{gk}`.
    """
    sp, fn = d.spine, d.femoral_neck
    mb = (sp.baseline_mean, fn.baseline_mean)
    vb = (sp.baseline_sd**2, fn.baseline_sd**2)
    cb = d.intercept_corr * sp.baseline_sd * fn.baseline_sd
    vg = (sp.slope_sd_pct**2, fn.slope_sd_pct**2)
    cg = d.slope_corr * sp.slope_sd_pct * fn.slope_sd_pct
    cov = var1 = var2 = 0.0
    for w, mg in ((d.responder_fraction, (sp.slope_responder_pct, fn.slope_responder_pct)),
                  (1 - d.responder_fraction,
                   (sp.slope_nonresponder_pct, fn.slope_nonresponder_pct))):
        cov += w * (cb * cg + cb * mg[0] * mg[1] + mb[0] * mb[1] * cg)
        var1 += w * (vb[0] * vg[0] + vb[0] * mg[0] ** 2 + mb[0] ** 2 * vg[0])
        var2 += w * (vb[1] * vg[1] + vb[1] * mg[1] ** 2 + mb[1] ** 2 * vg[1])
    return cov / np.sqrt(var1 * var2)


def _stacked(fit, name) -> np.ndarray:
    da = fit.posterior["posterior"][name]
    return da.values.reshape(-1, *da.shape[2:])


def _eti(draws: np.ndarray, prob: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0))


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return simulate_joint(50, seed=1)


@pytest.fixture(scope="module")
def model(sim) -> JointModel:
    return build_joint_model(sim)


# ---------------------------------------------------------------------------------------------
# data and likelihood
# ---------------------------------------------------------------------------------------------


def test_prepare_indexes_patients_jointly(sim):
    df = sim.copy()
    only_fn = df["patient_id"] == "J000"
    df.loc[only_fn, "bmd_spine"] = np.nan
    prep = prepare_joint_data(df)
    assert list(prep.patient_ids) == sorted(df["patient_id"].unique())
    sp = prep.sites["spine"]
    assert "J000" not in sp.patient_ids and "J000" in prep.sites["femoral_neck"].patient_ids
    # the joint index points at the same patient as the site's own index
    np.testing.assert_array_equal(prep.patient_ids[prep.site_patient_idx["spine"]],
                                  sp.patient_ids[sp.patient_idx])
    assert prep.n_obs == int(df[["bmd_spine", "bmd_femoral_neck"]].notna().sum().sum())
    resp = df.groupby("patient_id")["responder"].first()
    np.testing.assert_array_equal(prep.responder, resp.loc[prep.patient_ids].to_numpy(float))


def test_bad_input_raises(sim):
    with pytest.raises(ValueError, match="two or more distinct sites"):
        prepare_joint_data(sim.drop(columns="bmd_femoral_neck"))
    with pytest.raises(ValueError, match="no BMD column 'bmd_total_hip'"):
        prepare_joint_data(sim, sites=("spine", "total_hip"))
    with pytest.raises(ValueError, match="no observed bmd_spine"):
        prepare_joint_data(sim.assign(bmd_spine=np.nan))
    bad = sim.copy()
    bad["responder"] = bad["responder"].astype(object)
    bad.loc[0, "responder"] = None
    with pytest.raises(ValueError, match="responder is missing"):
        prepare_joint_data(bad)
    with pytest.raises(ValueError, match="covariance must be one of"):
        build_joint_model(sim, covariance="wishart")


@pytest.mark.parametrize("covariance", ["separate", "packed"])
def test_likelihood_equals_the_multivariate_normal(sim, covariance):
    """The Woodbury/determinant-lemma likelihood equals the sum over patients of the MVN
    density of all their values at both sites (scipy), at a random parameter point."""
    df = sim[sim["patient_id"] < "J012"].copy()
    df.loc[df["patient_id"] == "J000", "bmd_spine"] = np.nan  # one site only
    jm = build_joint_model(df, covariance=covariance)
    m = jm.pymc_model
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in m.initial_point().items()}
    outs = m.replace_rvs_by_values(
        [m["y_marginal"], m["beta_std"], m["sigma_std"], m["sd_patient"], m["corr_effects"]]
    )
    pot, beta, sig, sdp, corr = m.compile_fn(outs, inputs=m.value_vars, point_fn=True)(point)
    a = jm.data_values
    sd = (sdp / a["y_scale"][:, None]).reshape(4)
    omega = np.eye(4)
    for k, (i, j) in enumerate(_PAIRS):
        omega[i, j] = omega[j, i] = corr[k]
    cov = sd[:, None] * omega * sd[None, :]
    expect = 0.0
    for i in range(len(a["group_x"][:, 0])):
        rows = np.flatnonzero(a["patient_idx"] == i)
        s, t, r = a["site_idx"][rows], a["t"][rows], a["group_x"][:, 0][i]
        b = beta[s]
        mu = b[:, 0] + b[:, 1] * t + b[:, 2] * r + b[:, 3] * r * t
        z = np.zeros((len(rows), 4))
        z[np.arange(len(rows)), 2 * s] = 1.0
        z[np.arange(len(rows)), 2 * s + 1] = t
        v = np.diag(sig[s] ** 2) + z @ cov @ z.T
        expect += stats.multivariate_normal(mu, v).logpdf(a["y_std"][rows])
    assert pot == pytest.approx(expect, rel=1e-10)


def test_patient_effects_are_drawn_from_their_conditional(sim):
    """``_draw_effects`` at fixed parameters: mean and covariance of the draws match the
    Gaussian conditional u | y computed by brute force."""
    df = sim[sim["patient_id"] < "J006"]
    prep = prepare_joint_data(df)
    from models.joint_data import joint_data_arrays
    from models.trajectory import TrajectoryPriors

    a = joint_data_arrays(prep, TrajectoryPriors())
    tr = TRUTH
    n_draw = 4000
    beta = (np.asarray(tr.b) - np.c_[a["y_loc"], np.zeros((2, 3))]) / a["y_scale"][:, None]
    post = xr.Dataset({
        "beta_std": (("chain", "draw", "site", "coef"), np.broadcast_to(beta, (1, n_draw, 2, 4))),
        "sd_patient": (("chain", "draw", "site", "effect"),
                       np.broadcast_to(np.reshape(tr.tau, (2, 2)), (1, n_draw, 2, 2))),
        "corr_effects": (("chain", "draw", "effect_pair"),
                         np.broadcast_to(tr.corr, (1, n_draw, 6))),
        "sigma": (("chain", "draw", "site"), np.broadcast_to(tr.sigma, (1, n_draw, 2))),
    })
    u = _draw_effects(post, a, np.random.default_rng(3))[0].reshape(n_draw, -1, 4)
    scale4 = np.repeat(a["y_scale"], 2)
    cov = tr.cov / np.outer(scale4, scale4)  # standardised units
    sig = np.asarray(tr.sigma) / a["y_scale"]
    for i in range(prep.n_patients):
        rows = np.flatnonzero(a["patient_idx"] == i)
        s, t, r = a["site_idx"][rows], a["t"][rows], a["group_x"][:, 0][i]
        b = beta[s]
        mu = b[:, 0] + b[:, 1] * t + b[:, 2] * r + b[:, 3] * r * t
        z = np.zeros((len(rows), 4))
        z[np.arange(len(rows)), 2 * s] = 1.0
        z[np.arange(len(rows)), 2 * s + 1] = t
        v = np.diag(sig[s] ** 2) + z @ cov @ z.T
        gain = cov @ z.T @ np.linalg.inv(v)
        mean = (gain @ (a["y_std"][rows] - mu)) * scale4
        c = (cov - gain @ z @ cov) * np.outer(scale4, scale4)
        se = np.sqrt(np.diag(c) / n_draw)
        assert np.all(np.abs(u[:, i].mean(axis=0) - mean) < 4.5 * se), i
        np.testing.assert_allclose(np.cov(u[:, i].T), c, rtol=0.1, atol=0.1 * np.abs(c).max())


# ---------------------------------------------------------------------------------------------
# fits
# ---------------------------------------------------------------------------------------------


def test_recovers_the_cohort_simulators_between_site_correlations(model):
    design = _linear_design(300)
    study = simulate(design, seed=4)
    df = study.data.merge(study.patients[["patient_id", "response_type"]], on="patient_id")
    df["responder"] = df["response_type"] == "responder"
    model.set_data(df)
    fit = sample(model, seed=1, draws=500, tune=500, chains=2, cores=2)
    assert fit.diagnostics.n_divergences == 0 and fit.diagnostics.max_rhat < 1.02
    truth = {
        "corr_intercepts": design.intercept_corr,
        "corr_slopes": design_slope_corr(design),
    }
    assert 0.48 < truth["corr_slopes"] < 0.5  # the % -> g/cm^2 conversion barely matters
    for name, value in truth.items():
        lo, hi = _eti(_stacked(fit, name), 0.99)
        assert lo <= value <= hi, (name, lo, hi, value)
    lo, hi = _eti(_stacked(fit, "corr_intercepts"))
    assert hi - lo < 0.25
    lo, hi = _eti(_stacked(fit, "corr_slopes"))
    assert hi - lo < 0.7  # the LKJ(2) prior's 95% width for one correlation is ~1.3
    # per-site changes: E[b g] / 100 = mean baseline x mean annual %
    change = _stacked(fit, "change_end")
    for k, s in enumerate(SITES):
        p = design.site(s)
        for g, slope in enumerate((p.slope_nonresponder_pct, p.slope_responder_pct)):
            lo, hi = _eti(change[:, k, g], 0.99)
            assert lo <= p.baseline_mean * slope / 100 <= hi, (s, g)


def test_95pct_intervals_cover_the_truth(model):
    names = {
        "b": np.asarray(TRUTH.b),
        "sigma": np.asarray(TRUTH.sigma),
        "sd_patient": np.reshape(TRUTH.tau, (2, 2)),
        "corr_intercepts": np.array(TRUTH.corr[1]),
        "corr_slopes": np.array(TRUTH.corr[4]),
        "change_end": TRUTH.change_12m,
    }
    hits, cache = [], []
    for k in range(10):
        model.set_data(simulate_joint(50, seed=200 + k))
        fit = sample(model, seed=k, **FAST)
        cache.append(fit.settings["compile_cache_hit"])
        for name, value in names.items():
            lo, hi = _eti(_stacked(fit, name))
            hits.extend(np.ravel((lo <= value) & (value <= hi)))
    assert all(cache)
    coverage = float(np.mean(hits))
    assert 0.87 <= coverage, coverage


def test_runs_on_the_twin(model):
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin
    from analysis.study.groups import assign_groups

    frame = assign_groups(derive(load_twin().frame), "last_observed").frame
    frame = frame[frame["analysis_group"].notna()].assign(
        responder=lambda d: d["analysis_group"] == "responder")
    jm = build_joint_model(frame)
    fit = sample(jm, seed=2, **FAST)
    assert fit.settings["compile_cache_hit"]
    d = fit.diagnostics
    assert d.n_divergences == 0 and d.max_rhat < 1.02, d
    post = fit.posterior["posterior"]
    assert list(post["corr_effects"].effect_pair.values) == list(EFFECT_PAIRS)
    assert post["u"].dims[2:] == ("patient", "site", "effect")
    assert list(post["u"].patient.values) == list(jm.prepared.patient_ids)
    # reported quantities follow from b
    b = _stacked(fit, "b")
    g = np.array([0.0, 1.0])
    base = b[..., 0, None] + b[..., 2, None] * g
    change = b[..., 1, None] + b[..., 3, None] * g
    np.testing.assert_allclose(_stacked(fit, "change_end"), change, rtol=1e-10)
    pct = 100 * change / base
    np.testing.assert_allclose(_stacked(fit, "pct_change_end"), pct, rtol=1e-10)
    np.testing.assert_allclose(_stacked(fit, "diff_pct_change_end")[..., 0], pct[..., 1] - pct[..., 0],
                               rtol=1e-9)
    corr = _stacked(fit, "corr_effects")
    np.testing.assert_allclose(_stacked(fit, "corr_intercepts"), corr[:, 1])
    np.testing.assert_allclose(_stacked(fit, "corr_slopes"), corr[:, 4])
    # plausible: baselines near the cohort means, spine and hip BMD correlated between patients
    assert np.all(np.abs(b[:, :, 0].mean(axis=0) - [0.91, 0.80]) < 0.1)
    assert _stacked(fit, "corr_intercepts").mean() > 0.2


# ---------------------------------------------------------------------------------------------
# reproducibility: cold vs warm compile caches
# ---------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
_REPRO = {"seed": 11, "draws": 20, "tune": 30, "chains": 2, "cores": 1}


def _digest(fit) -> str:
    """SHA-256 over every posterior variable's draws (bit-exact comparison)."""
    post = fit.posterior["posterior"]
    h = hashlib.sha256()
    for name in sorted(post.data_vars):
        h.update(name.encode())
        h.update(np.ascontiguousarray(post[name].values).tobytes())
    return h.hexdigest()


_CHILD = """
import models
from analysis.engine.sampling import sample
from tests.models.test_joint import _REPRO, _digest, simulate_joint
if "{model}" == "joint":
    from models.joint import build_joint_model
    built = build_joint_model(simulate_joint(50, seed=1))
else:
    from models.trajectory import build_trajectory_model
    d = simulate_joint(50, seed=1)
    built = build_trajectory_model(d[["patient_id", "month", "bmd_spine", "responder"]], "spine")
fit = sample(built, **_REPRO)
print("DIGEST", _digest(fit), fit.settings["compile_path"])
"""


def _child_digest(cache: Path, model: str = "joint") -> str:
    """A fit in a fresh process with rajak's own compile settings (``models.runtime``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env["RAJAK_CACHE_DIR"] = str(cache)
    out = subprocess.run([sys.executable, "-c", _CHILD.replace("{model}", model)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("DIGEST ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    return lines[-1].split()[1]


def test_same_seed_same_draws_in_one_process(sim, model):
    model.set_data(sim)
    first, second = (_digest(sample(model, **_REPRO)) for _ in range(2))
    assert first == second
    other = _digest(sample(model, **{**_REPRO, "seed": 12}))
    assert other != first


@pytest.mark.slow
def test_cold_and_warm_compile_caches_give_the_same_draws(tmp_path, full_studies):
    """The same data and seed in a fresh process with an empty RAJAK_CACHE_DIR (cold compile)
    and again in a fresh process with that cache filled (warm). With numba's fast-math on
    (PyTensor's default) the two differed in the last bit of the gradient and then in the draws
    (seen with the joint model); ``models.runtime`` turns it off. Reduced form: the trajectory LMM
    (the same compile path, a third of the cold compile time); full size: the joint model."""
    model = "joint" if full_studies else "lmm"
    cold = _child_digest(tmp_path, model)
    warm = _child_digest(tmp_path, model)
    assert cold == warm


def test_a_large_fit_draws_its_patient_effects_on_request(sim, model, monkeypatch):
    """Above EAGER_PATIENT_DRAWS patients x draws (or RAJAK_PER_PATIENT=on_request) the joint LMM stores
    no ``u``, says so, and draws the same ``u`` on request (as the trajectory LMM; issue #18)."""
    from models.marginal_effects import ON_REQUEST_ATTR, SEED_ATTR

    model.set_data(sim)
    monkeypatch.setenv("RAJAK_PER_PATIENT", "on_request")
    fit = sample(model, seed=5, draws=100, tune=200, chains=2, cores=2)
    post = fit.posterior["posterior"].to_dataset()
    assert "u" not in post and post.attrs[ON_REQUEST_ATTR] == "on request"
    assert "u" not in fit.diagnostics.var_names
    raw = post.copy()
    raw.attrs = {}
    monkeypatch.setenv("RAJAK_PER_PATIENT", "always")
    eager = model.postprocess(xr.DataTree.from_dict({"posterior": raw}), seed=post.attrs[SEED_ATTR])
    u = model.patient_effects(post)
    assert u.dims == ("chain", "draw", "patient", "site", "effect")
    np.testing.assert_array_equal(u.values, eager["posterior"]["u"].values)
