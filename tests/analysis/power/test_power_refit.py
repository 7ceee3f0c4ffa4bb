"""The public refit API (analysis.engine.refit): compile once, refit to new data without recompiling.

Against known truth: a refit equals a fresh analysis.engine.sampling.sample on the same data and seed (draws
and diagnostics), estimates follow the data, and a conjugate normal model's posterior mean is
recovered from data swapped in by name.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.engine.refit import Refitter, compile_for_refit
from analysis.engine.sampling import diagnose, sample
from analysis.power import power_frame
from models.simulate import Design, simulate
from models.trajectory import build_trajectory_model

FAST = {"draws": 200, "tune": 200, "chains": 2}


@pytest.fixture(scope="module")
def frames():
    cols = ["patient_id", "month", "bmd_spine", "responder"]
    return (power_frame(simulate(Design(n_patients=46), 1).data, "spine")[cols],
            power_frame(simulate(Design(n_patients=90), 2).data, "spine")[cols])


def test_refit_follows_the_data_and_equals_a_fresh_sample(frames):
    d1, d2 = frames
    r = compile_for_refit(build_trajectory_model(d1, "spine"), cores=2, **FAST)
    assert isinstance(r, Refitter) and r.n_compiles <= 1
    # default variables: the model's diagnostic variables that the sampler traces ("u" is drawn
    # afterwards by sample's post-processing, so it is not among them)
    assert "diff_pct_change_end" in r.var_names and "u" not in r.var_names
    f1 = r.refit(None, seed=5)
    f2 = r.refit(d2, seed=5)
    assert r.n_compiles <= 1 and not f2.compiled and f2.compile_seconds == 0.0
    assert r.n_fits == 2 and len(r.history) == 2 and r.history[-1] == f2.diagnostics
    # estimates change with the data (different studies, same seed)
    assert abs(f1.mean("diff_pct_change_end") - f2.mean("diff_pct_change_end")) > 0.05
    assert not np.allclose(f1.mean("b"), f2.mean("b"))
    assert f2.dims["b"] == ("coef",) and f2.draws["b"].shape == (2, 200, 4)
    # diagnostics are recorded per refit and describe that refit
    for f in (f1, f2):
        assert f.diagnostics.n_chains == 2 and f.diagnostics.n_draws == 200
        assert np.isfinite(f.diagnostics.max_rhat) and f.diagnostics.var_names == r.var_names
    assert f1.diagnostics != f2.diagnostics
    # identical to analysis.engine.sampling.sample on the same data and seed: draws and verdict
    ref = sample(build_trajectory_model(d2, "spine"), seed=5, cores=2, **FAST)
    post = ref.posterior["posterior"]
    for v in r.var_names:
        np.testing.assert_array_equal(post[v].transpose("chain", "draw", ...).values, f2.draws[v])
    assert diagnose(ref.posterior, list(r.var_names)) == f2.diagnostics
    # and refitting the same data with the same seed is reproducible
    again = r.refit(d2, seed=5)
    np.testing.assert_array_equal(again.draws["b"], f2.draws["b"])


def test_unknown_names_raise(frames):
    r = Refitter(build_trajectory_model(frames[0], "spine"), **FAST)
    with pytest.raises(ValueError, match=r"unknown data name\(s\) \['nope'\]"):
        r.refit({"nope": np.zeros(3)}, seed=1)
    assert r.n_fits == 0
    with pytest.raises(ValueError, match="unknown variable"):
        Refitter(r.model, var_names=["no_such_variable"], **FAST)
    with pytest.raises(ValueError, match="positive"):
        Refitter(r.model, draws=0)


def test_bare_pymc_model_refit_by_container_name_recovers_the_conjugate_posterior():
    import pymc as pm

    rng = np.random.default_rng(0)
    y1, y2 = rng.normal(1.0, 1.0, 40), rng.normal(-2.0, 1.0, 40)
    with pm.Model() as m:
        y = pm.Data("y", y1)
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Normal("obs", mu, 1.0, observed=y)
    r = Refitter(m, draws=500, tune=300, chains=2, cores=2)
    assert r.data_names == ("y",) and r.var_names == ("mu",)
    for data, yy in ((None, y1), ({"y": y2}, y2)):
        f = r.refit(data, seed=3)
        # N(0, 10^2) prior, unit-variance likelihood: posterior N(sum y / (n + 0.01), 1 / (n + 0.01))
        prec = len(yy) + 0.01
        se = np.sqrt(1.0 / prec / f.diagnostics.min_ess_bulk)
        assert f.mean("mu") == pytest.approx(yy.sum() / prec, abs=5 * se)
        assert f.draws["mu"].std() == pytest.approx(np.sqrt(1.0 / prec), rel=0.15)
    assert r.n_compiles <= 1
    with pytest.raises(TypeError, match="mapping of container names"):
        r.refit(y2, seed=1)
