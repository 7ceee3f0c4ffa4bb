"""Bayesian estimands and the comparison with the frequentist analysis."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.bayes.fit import analysis_frame
from analysis.bayes.estimands import compare_table, fit_estimands
from analysis.cli.app import app
from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.study.estimands import difference_name, estimand_name
from analysis.engine.sampling import sample
from analysis.frequentist.lmm import fit_lmm
from models.trajectory import TrajectoryPriors, build_trajectory_model

VAGUE = TrajectoryPriors(intercept_sd=100.0, slope_sd=10.0, responder_sd=100.0, responder_slope_sd=10.0,
                         covariate_sd=100.0, sd_intercept_scale=10.0, sd_slope_scale=10.0, sigma_scale=10.0,
                         lkj_eta=1.0)


@pytest.fixture(scope="module")
def twin_frame():
    frame, _ = analysis_frame(derive(load_twin().frame), "last_observed")
    return frame


@pytest.fixture(scope="module")
def vague_fit(twin_frame):
    tm = build_trajectory_model(twin_frame, "spine", priors=VAGUE)
    return sample(tm, draws=1000, tune=1000, chains=4, seed=11)


def test_vague_prior_posterior_means_agree_with_reml(twin_frame, vague_fit):
    """With vague priors the posterior means of the fixed effects equal the REML estimates within
    Monte-Carlo error (plus a tenth of a standard error for the variance-component uncertainty
    that REML plugs in and the posterior integrates over)."""
    reml = fit_lmm(twin_frame.assign(responder=twin_frame["responder"].astype(float)),
                   "bmd_spine ~ month * responder", time="month")
    post = vague_fit.posterior["posterior"]["b"]
    draws = post.stack(sample=("chain", "draw"))
    fixed = reml.fixed.set_index("term")
    scale = {"intercept": ("Intercept", 1.0), "time": ("month", 12.0), "responder": ("responder", 1.0),
             "time:responder": ("month:responder", 12.0)}
    assert vague_fit.passed, vague_fit.diagnostics
    ess = vague_fit.diagnostics.min_ess_bulk
    for coef, (term, k) in scale.items():
        x = draws.sel(coef=coef).values
        mcse = x.std() / np.sqrt(ess)
        est, se = fixed.loc[term, "estimate"] * k, fixed.loc[term, "se"] * k
        assert abs(x.mean() - est) < 3 * mcse + 0.1 * se, (coef, x.mean(), est, mcse, se)
        assert x.std() == pytest.approx(se, rel=0.15)


def test_estimands_and_bf(vague_fit):
    items = {it.estimand: it for it in fit_estimands(vague_fit, "spine", "lmm")}
    diff = items[difference_name("spine", "abs")]
    assert diff.bf10 is not None and diff.bf10 > 0
    assert items[estimand_name("spine", "non-responder", "pct")].rope == 2.4
    assert all(it.extra["diagnostics"] == "pass" for it in items.values())
    # draws are returned, so users can compute their own probabilities
    assert diff.draws.shape == (4000,)


def test_failed_fit_is_flagged_on_every_row(twin_frame):
    tm = build_trajectory_model(twin_frame, "spine")
    bad = sample(tm, draws=30, tune=30, chains=2, seed=3)
    assert not bad.passed
    items = fit_estimands(bad, "spine", "lmm")
    assert all(it.extra["diagnostics"].startswith("FAIL") for it in items)


def test_agreement_notes():
    freq = pd.DataFrame({"estimand": ["a", "b", "c"], "method": "M", "estimate": [1.0, 0.5, 1.0],
                         "ci_low": [0.2, -0.5, 0.1], "ci_high": [1.8, 1.5, 1.9], "p": [0.01, 0.3, 0.04]})
    bayes = pd.DataFrame({"estimand": ["a", "b", "c"], "site": "spine", "model": "B", "median": [1.0, 0.4, 0.9],
                          "eti_low": [0.3, -0.4, -0.1], "eti_high": [1.7, 1.2, 1.9], "p_lt_0": [0.001, 0.2, 0.04],
                          "p_gt_0": [0.999, 0.8, 0.96], "p_in_rope": 0.1, "bf10": np.nan, "diagnostics": "pass"})
    t = compare_table(freq, bayes, {"B": "M"}).set_index("estimand")
    assert t.loc["a", "agreement"].startswith("agree: both exclude 0")
    assert t.loc["b", "agreement"] == "agree: neither excludes 0"
    assert t.loc["c", "agreement"] == "differ: only the frequentist CI excludes 0"
    assert t.loc["a", "p_direction"] == 0.999


runner = CliRunner()


def test_cli_fit_json_and_errors():
    res = runner.invoke(app, ["fit", "--draws", "200", "--tune", "200", "--chains", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["synthetic"] is True and len(out["estimands"]) == 6 and "diagnostics" in out
    bad = runner.invoke(app, ["fit", "--model", "gp"])
    assert bad.exit_code == 2 and "unknown model" in bad.stderr
    bad = runner.invoke(app, ["fit", "--site", "hip"])
    assert bad.exit_code == 2 and "'hip'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_cli_compare_prints_both_sides():
    res = runner.invoke(app, ["compare", "--site", "spine", "--draws", "300", "--tune", "300", "--chains", "2"])
    assert res.exit_code == 0, res.output
    assert "LMM (REML)" in res.stdout and "agree" in res.stdout


@pytest.mark.parametrize("model", ["lmm", "robust", "mmrm", "joint", "activity"])
def test_every_model_runs_from_the_cli_on_a_user_csv(model, tmp_path):
    from models.simulate import Design, simulate

    path = tmp_path / "user.csv"
    simulate(Design(n_patients=40), seed=8).data.rename(columns={"bmd_spine": "LS"}).to_csv(path, index=False)
    res = runner.invoke(app, ["fit", "--model", model, "--data", str(path), "--map", "LS=bmd_spine",
                              "--draws", "100", "--tune", "100", "--chains", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["synthetic"] is False and out["model"] == model
    assert any(e["estimand"].endswith("%") for e in out["estimands"])
    assert out["diagnostics"]["passed"] is False  # 2 x 100 draws cannot pass, and it is said
