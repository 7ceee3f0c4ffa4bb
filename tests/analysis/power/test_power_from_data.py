"""Sizing the next study from the user's own data (analysis.power.design_from_data, rajak power --data).

Trials are simulated with known truth (models.simulate_trial): the design from data must recover
their visits, allocation, retention and effects within sampling error, the generator must draw
studies with the estimated parameters, and the simulated LMM power must agree with the closed form.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.power import (
    DesignPrior,
    PowerDesign,
    closed_form_data_power,
    design_from_data,
    run_power,
    simulate_from_data,
)
from analysis.power.data_model import DataModel, lmm_formula, site_frame
from models.simulate_trial import TrialTruth, simulate_trial

TRIAL_FLAGS = dict(group="arm", visit="visit", time="day", time_unit="days")


def _derived(tmp_path, df: pd.DataFrame, name: str = "trial.csv", **flags):
    from analysis.study.clinical import derive
    from analysis.study.data import load_dataset

    path = tmp_path / name
    df.to_csv(path, index=False)
    ds = load_dataset(path, **{**TRIAL_FLAGS, **flags})
    return derive(ds.frame, None, None, ds.design.endpoint, design=ds.design), ds, path


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """A 2:1 (active:placebo) 24-month trial of 300 patients with known truth, and its design from data."""
    truth = TrialTruth(arms={"placebo": 1.0, "active": 2.0})
    raw = simulate_trial(300, truth, seed=11)
    derived, ds, path = _derived(tmp_path_factory.mktemp("trial"), raw)
    return truth, raw, design_from_data(derived, ds.design, n=(40, 80), source=ds.source), path


def test_design_from_a_two_arm_trial_has_its_visits_allocation_and_retention(trial):
    truth, raw, pdz, _ = trial
    m = pdz.data_model
    assert pdz.generator == "data" and m.visits == (0.0, 6.0, 12.0, 24.0) and m.endpoint == 24.0
    assert m.levels == ("placebo", "active") and m.reference == "placebo"
    assert pdz.sites == m.site_names == ("spine", "total_hip", "femoral_neck")
    # allocation: the file's own counts (every patient has a baseline scan), 2:1 as simulated
    arms = raw.drop_duplicates("patient_id")["arm"].value_counts()
    assert m.counts == (arms["placebo"], arms["active"])
    assert m.allocation[1] / m.allocation[0] == pytest.approx(2.0, abs=0.05)
    # retention: the share whose last scan is at or after each visit, in the file and within
    # sampling error of the truth (monotone dropout with hazard h at each post-baseline visit)
    last = raw.groupby("patient_id")["visit"].max()
    n = last.size
    for j, v in enumerate(m.visits):
        assert m.retention[j] == pytest.approx((last >= v).mean())
        true = (1 - truth.dropout_hazard) ** j
        assert abs(m.retention[j] - true) <= 4 * np.sqrt(true * (1 - true) / n) + 1e-12, (v, m.retention[j], true)
    np.testing.assert_allclose(m.hazards, [1 - m.retention[j] / m.retention[j - 1] for j in (1, 2, 3)])
    assert m.describe().startswith("from data: ") and "placebo 33% : active 67%" in m.describe()
    assert "month 24" in m.describe()


def test_effects_and_variance_components_are_within_sampling_error_of_the_truth(trial):
    truth, _, pdz, _ = trial
    for s in pdz.data_model.sites:
        for arm in ("placebo", "active"):
            assert abs(s.slope[arm] - truth.slopes[s.site][arm]) < 3 * s.slope_se[arm], (s.site, arm)
            assert s.intercept[arm] == pytest.approx(truth.baseline[s.site], abs=4 * truth.sd_intercept / np.sqrt(90))
        diff = s.slope["active"] - s.slope["placebo"]
        true = truth.slopes[s.site]["active"] - truth.slopes[s.site]["placebo"]
        assert abs(diff - true) < 3 * s.contrast_se["active"]
        assert s.sigma == pytest.approx(truth.sd_noise, rel=0.15)
        assert s.sd_intercept == pytest.approx(truth.sd_intercept, rel=0.2)
        assert s.sd_slope == pytest.approx(truth.sd_slope, rel=0.35)
        assert s.converged


def test_the_generator_draws_studies_with_the_estimated_parameters(trial):
    """A large simulated study re-fitted: allocation exact, retention and slopes within sampling error."""
    from analysis.frequentist.lmm import fit_lmm

    m = trial[2].data_model
    n = 1500
    sim = simulate_from_data(m, n, seed=5)
    per = sim.drop_duplicates("patient_id")["group"].value_counts()
    assert (per["placebo"], per["active"]) == (500, 1000)
    last = sim.groupby("patient_id")["month"].max()
    for v, r in zip(m.visits, m.retention):
        assert abs((last >= v).mean() - r) <= 4 * np.sqrt(r * (1 - r) / n) + 1e-12
    frame = site_frame(sim.rename(columns={"group": "analysis_group"}), "spine", m.levels, scale=12.0)
    fit = fit_lmm(frame, lmm_formula(m.levels), time="t")
    tab = fit.fixed.set_index("term")
    s = m.site("spine")
    assert abs(tab.loc["t", "estimate"] - s.slope["placebo"]) < 3 * tab.loc["t", "se"]
    assert abs(tab.loc["t:g1", "estimate"] - (s.slope["active"] - s.slope["placebo"])) < 3 * tab.loc["t:g1", "se"]
    assert fit.sigma == pytest.approx(s.sigma, rel=0.05)
    # reproducible
    pd.testing.assert_frame_equal(sim, simulate_from_data(m, n, seed=5))


def test_simulated_lmm_power_agrees_with_the_closed_form(tmp_path):
    """Without dropout the generator's LMM power is Liu & Liang's, within Monte-Carlo error."""
    truth = TrialTruth(arms={"placebo": 1.0, "active": 1.0}, dropout_hazard=0.0,
                       slopes={"spine": {"placebo": -0.004, "active": 0.0}}, baseline={"spine": 0.95})
    derived, ds, _ = _derived(tmp_path, simulate_trial(200, truth, seed=2))
    pdz = design_from_data(derived, ds.design, n=(40,))
    assert pdz.data_model.retention == (1.0, 1.0, 1.0, 1.0)
    k = 150
    res = run_power(pdz, sims=k, seed=3, analyses=("lmm",), workers=1)
    sim = res.summary()["power"].iloc[0]
    cf = closed_form_data_power(pdz.data_model, (40,), "spine")["closed_form_power"].iloc[0]
    assert 0.2 < cf < 0.9  # a power where the comparison means something
    assert abs(sim - cf) <= 3.5 * np.sqrt(cf * (1 - cf) / k) + 0.03, (sim, cf)
    pd.testing.assert_frame_equal(res.closed_form(), closed_form_data_power(pdz.data_model, (40,), "spine"))


def test_three_arms_and_a_single_arm(tmp_path):
    three = TrialTruth(arms={"placebo": 1.0, "low": 1.0, "high": 1.0}, slopes={
        "total_hip": {"placebo": -0.008, "low": 0.0, "high": 0.006}}, baseline={"total_hip": 0.85})
    derived, ds, _ = _derived(tmp_path, simulate_trial(150, three, seed=4), "three.csv")
    pdz = design_from_data(derived, ds.design, n=(30,))
    m = pdz.data_model
    assert m.levels == ("placebo", "high", "low") and m.contrasts == (("high", "placebo"), ("low", "placebo"))
    res = run_power(pdz, sims=3, seed=1, analyses=("lmm", "mmrm", "completers"), workers=1)
    assert res.raw["ok"].all()
    assert set(res.raw["contrast"]) == {"high - placebo", "low - placebo"}
    assert set(res.summary()["contrast"]) == {"high - placebo", "low - placebo"}
    # each contrast estimates its own slope difference (LMM, g/cm^2 per month)
    lmm = res.raw[res.raw["analysis"] == "lmm"].groupby("contrast")["estimate"].mean()
    assert lmm["high - placebo"] > lmm["low - placebo"] > 0
    single, ds1, _ = _derived(tmp_path, simulate_trial(80, three, seed=5), "single.csv", group="none")
    one = design_from_data(single, ds1.design, n=(30,))
    assert one.data_model.reference is None and one.data_model.contrasts == (("all", None),)
    r1 = run_power(one, sims=2, seed=1, analyses=("lmm", "mmrm", "completers"), workers=1)
    assert r1.raw["ok"].all() and set(r1.raw["contrast"]) == {"change in all"}
    assert set(r1.raw["analysis"]) == {"lmm", "mmrm", "completers_t", "completers_wilcoxon"}


def test_assurance_draws_the_slopes_from_their_sampling_distribution(trial):
    pdz = trial[2]
    prior = DesignPrior.from_data_model(pdz.data_model, n_draws=4000, seed=1)
    assert prior.kind == "data"
    s = pdz.data_model.site("spine")
    assert prior.draws["spine.slope.active"].mean() == pytest.approx(s.slope["active"], abs=4 * s.slope_se["active"] / 60)
    assert prior.draws["spine.slope.active"].std() == pytest.approx(s.slope_se["active"], rel=0.1)
    res = run_power(PowerDesign.from_dict(pdz.to_dict()), sims=3, seed=2, analyses=("lmm",), prior=prior, workers=1)
    assert res.kind == "assurance" and "prior.spine.slope.active" in res.raw.columns
    with pytest.raises(ValueError, match="not a parameter"):
        pdz.data_model.with_updates(**{"spine.slope_sd_pct": 1.0})


def test_power_design_round_trips_and_twin_designs_are_unchanged(trial):
    pdz = trial[2]
    again = PowerDesign.from_dict(json.loads(json.dumps(pdz.to_dict())))
    assert again == pdz and isinstance(again.data_model, DataModel)
    assert "data_model" not in PowerDesign().to_dict()  # the twin's description (and cache keys) as before
    assert "contrast" not in run_power(PowerDesign(n=(24,), dropout=0.3), sims=2, seed=1, workers=1).raw.columns
    with pytest.raises(ValueError, match="subset"):
        PowerDesign(generator="data", data_model=pdz.data_model, sites=("spine", "radius"))


def test_cli_sizes_the_next_study_from_a_file(power_cli, trial):
    path = trial[3]
    res = power_cli("--data", path, "--group", "arm", "--time", "day", "--time-unit", "days", "--visit", "visit",
                    "--n", "40,80", "--sims", "20", "--workers", "1", "--no-progress")
    assert res.exit_code == 0, res.output
    assert f"design: from data: {path}" in res.stdout and "placebo 33% : active 67%" in res.stdout
    assert "month 24" in res.stdout and "active - placebo" in res.stdout and "responder" not in res.stdout
    doc = json.loads(power_cli("--data", path, "--group", "arm", "--time", "day", "--time-unit", "days",
                               "--visit", "visit", "--site", "spine", "--n", "40", "--sims", "4", "--workers", "1",
                               "--json", "--no-progress").stdout)
    assert doc["design"]["generator"] == "data" and doc["design_used"].startswith("from data:")
    assert {r["site"] for r in doc["summary"]} == {"spine"} and {r["contrast"] for r in doc["summary"]} == {
        "active - placebo"}
    sure = power_cli("--data", path, "--group", "arm", "--time", "day", "--time-unit", "days", "--visit", "visit",
                     "--site", "spine", "--assurance", "--n", "40", "--sims", "2", "--workers", "1", "--json",
                     "--no-progress")
    assert sure.exit_code == 0, sure.output
    assert json.loads(sure.stdout)["kind"] == "assurance" and "REML sampling distribution" in sure.stderr
    bad = power_cli("--data", path, "--group", "nope", "--n", "40", "--sims", "2", "--no-progress")
    assert bad.exit_code == 2 and "nope" in bad.stderr
    twin_only = power_cli("--group", "arm", "--n", "40", "--sims", "2", "--no-progress")
    assert twin_only.exit_code == 2 and "add --data" in twin_only.stderr


def test_reml_sampling_distribution_is_normal_about_the_estimate(trial):
    """The prior's draws of a slope difference: normal with the fit's SE (Shapiro-Wilk does not reject)."""
    m = trial[2].data_model
    d = m.prior_draws(500, seed=3)
    diff = d["femoral_neck.slope.active"] - d["femoral_neck.slope.placebo"]
    s = m.site("femoral_neck")
    assert stats.shapiro(diff).pvalue > 0.001
    assert diff.std() == pytest.approx(s.contrast_se["active"], rel=0.15)


def test_a_responder_study_from_data_keeps_its_scans_and_its_derived_groups(tmp_path):
    """A RAJAK-shaped cohort: groups derived from DAS28-CRP, visits with a DXA only, retention over
    every scanned patient (those with an undefined status leave the next study too)."""
    from analysis.study.clinical import derive
    from analysis.study.data import load_dataset
    from models.simulate import Design, simulate

    data = simulate(Design(n_patients=80), seed=3).data
    path = tmp_path / "cohort.csv"
    data.to_csv(path, index=False)
    ds = load_dataset(path)
    derived = derive(ds.frame, None, None, ds.design.endpoint, design=ds.design)
    m = design_from_data(derived, ds.design, n=(40,), strategy="exclude").data_model
    assert m.group_kind == "derived" and m.levels == ("non-responder", "responder")
    scans = data[data[["bmd_spine", "bmd_femoral_neck"]].notna().any(axis=1)]
    assert m.visits == tuple(float(v) for v in sorted(scans["month"].unique())) and len(m.visits) < len(ds.design.visits)
    last = scans.groupby("patient_id")["month"].max()
    assert m.n_scanned == last.size and m.retention[-1] == pytest.approx((last >= m.endpoint).mean())
    status = derived.drop_duplicates("patient_id").set_index("patient_id")["responder_status"]
    assert m.counts == ((status == "non-responder").sum(), (status == "responder").sum())
    assert sum(m.counts) < m.n_scanned  # some statuses are undefined: out of the groups, not of the retention


def test_assurance_from_a_two_arm_trajectory_posterior(tmp_path):
    """The K-group trajectory LMM's posterior mapped to the design from data: the draws sit on the
    REML estimates (flat-ish priors, the same model) and feed an assurance study."""
    from analysis.engine.sampling import sample
    from analysis.study.groups import assign_groups
    from models.trajectory import build_trajectory_model

    truth = TrialTruth(slopes={"spine": {"placebo": -0.012, "active": 0.010}}, baseline={"spine": 0.95})
    derived, ds, _ = _derived(tmp_path, simulate_trial(120, truth, seed=8))
    pdz = design_from_data(derived, ds.design, n=(30,))
    m = pdz.data_model
    frame = assign_groups(derived, design=ds.design).frame
    fit = sample(build_trajectory_model(frame, "spine", levels=m.levels, time="month_actual", endpoint_month=24.0),
                 seed=1, draws=200, tune=200, chains=2)
    prior = DesignPrior.from_fit_data(fit, m, max_draws=200)
    s = m.site("spine")
    assert prior.kind == "data" and len(prior.draws) == 200
    for lv in m.levels:
        assert abs(prior.draws[f"spine.slope.{lv}"].mean() - s.slope[lv]) < 3 * s.slope_se[lv]
    assert prior.draws["spine.sigma"].mean() == pytest.approx(s.sigma, rel=0.1)
    res = run_power(pdz, sims=2, seed=1, prior=prior, workers=1)
    assert res.kind == "assurance" and "prior.spine.sd_slope" in res.raw.columns and res.raw["ok"].all()
