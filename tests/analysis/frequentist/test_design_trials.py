"""The frequentist room on studies that are not RAJAK: randomised trials with arms (2 and 3 arms),
a single-arm cohort, a schedule with one post-baseline visit, a constant covariate and a file without
sex, simulated with known truth (:mod:`models.simulate_trial`) and analysed on their design."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.frequentist.lmm import fit_lmm
from analysis.frequentist.primary import frequentist_analysis, lmm_estimands, model_frame
from analysis.study.clinical import derive
from analysis.study.data import load_dataset, load_twin
from analysis.study.estimands import difference_name, estimand_name
from models.simulate_trial import TrialTruth, simulate_trial

SITES = ("spine", "total_hip", "femoral_neck")
RECOVERED_BY = ("LMM (REML)", "MMRM (us, REML)")
THREE_ARMS = TrialTruth(arms={"placebo": 1.0, "low": 1.0, "high": 1.0},
                        slopes={"spine": {"placebo": -0.012, "low": 0.0, "high": 0.012},
                                "total_hip": {"placebo": -0.008, "low": 0.0, "high": 0.008}},
                        baseline={"spine": 0.95, "total_hip": 0.85})
SINGLE_ARM = TrialTruth(arms={"active": 1.0}, slopes={"spine": {"active": 0.010}}, baseline={"spine": 0.95})


def _study(tmp_path, data, name: str = "trial.csv", **flags):
    path = tmp_path / name
    data.to_csv(path, index=False)
    ds = load_dataset(path, visit="visit", time="day", time_unit="days", **flags)
    return ds, derive(ds.frame, design=ds.design)


def _within_3se(est, truth: float, method: str, name: str) -> None:
    row = est[(est["estimand"] == name) & (est["method"] == method)]
    assert len(row) == 1, (name, method)
    row = row.iloc[0]
    assert abs(row["estimate"] - truth) < 3 * row["se"], (name, method, row["estimate"], truth, row["se"])


@pytest.fixture(scope="module")
def two_arms(tmp_path_factory):
    ds, d = _study(tmp_path_factory.mktemp("two"), simulate_trial(300, TrialTruth(), seed=11), group="arm")
    return ds, d, frequentist_analysis(d, mi_imputations=5, seed=2, design=ds.design)


def test_two_arm_trial_recovers_the_arm_difference_at_every_site(two_arms):
    ds, _, res = two_arms
    truth = TrialTruth()
    assert ds.design.sites == SITES and ds.design.endpoint == 24.0 and ds.design.reference == "placebo"
    for site in SITES:
        name = difference_name(site, "pct", 24, ("active", "placebo"))
        for method in RECOVERED_BY:
            _within_3se(res.estimands, truth.pct_difference(site, "active", "placebo", 24), method, name)
    assert not res.not_estimable
    assert not res.estimands["estimand"].str.contains("responder").any()


def test_two_arm_trial_reports_every_level_and_the_difference(two_arms):
    _, _, res = two_arms
    e = res.estimands
    for method in ("completers, t-test", *RECOVERED_BY, "LMM (REML) + age, sex", "MMRM (ar1, REML)"):
        names = set(e.loc[e["method"] == method, "estimand"])
        for site in SITES:
            for unit in ("pct", "abs"):
                assert {estimand_name(site, "placebo", unit, 24), estimand_name(site, "active", unit, 24),
                        difference_name(site, unit, 24, ("active", "placebo"))} <= names, (method, site, unit)
    mi = res.mi
    assert mi is not None and (mi["method"] == "MI (m=5, Rubin, stratified)").all()
    assert set(mi["estimand"]) == {n for s in SITES for n in (
        estimand_name(s, "placebo", "pct", 24), estimand_name(s, "active", "pct", 24),
        difference_name(s, "pct", 24, ("active", "placebo")))}
    lsm = res.lsmeans[(res.lsmeans["covariance"] == "us") & (res.lsmeans["site"] == "spine")]
    assert set(lsm["group"]) == {"placebo", "active"} and set(lsm["month"]) == {6.0, 12.0, 24.0}
    between = res.completers.table[res.completers.table["analysis"] == "between"]
    assert set(between["group"]) == {"active - placebo"}


def test_model_frame_codes_the_arms_and_the_lmm_uses_actual_months(two_arms):
    ds, d, res = two_arms
    mf = model_frame(d, "spine", design=ds.design)
    assert list(mf["group"].cat.categories) == ["placebo", "active"] and "responder" not in mf
    assert set(mf["month"]) == {0.0, 6.0, 12.0, 24.0}  # nominal visits for the MMRM
    assert not np.allclose(mf["month_actual"], mf["month"])  # scans a few days off the visit
    fit = res.lmm["spine"]
    assert "month:group[T.active]" in fit.coef.index
    again = fit_lmm(mf.assign(month=mf["month_actual"]), "bmd ~ month * (group)", time="month")
    np.testing.assert_allclose(again.coef.to_numpy(), fit.coef.to_numpy(), rtol=1e-10)
    # the LMM's arm difference in g/cm^2 is 24 months times the slope difference (actual time)
    tab = res.estimands[res.estimands["method"] == "LMM (REML)"].set_index("estimand")
    assert tab.loc[difference_name("spine", "abs", 24, ("active", "placebo")), "estimate"] == pytest.approx(
        24 * fit.coef["month:group[T.active]"])


def test_three_arm_trial_gives_two_differences_against_placebo(tmp_path):
    ds, d = _study(tmp_path, simulate_trial(330, THREE_ARMS, seed=5), group="arm")
    res = frequentist_analysis(d, mi_imputations=5, seed=1, design=ds.design)
    diffs = res.estimands.loc[res.estimands["estimand"].str.contains(" - "), "estimand"]
    assert set(diffs) == {difference_name(s, u, 24, (g, "placebo")) for s in ("spine", "total_hip")
                          for u in ("pct", "abs") for g in ("high", "low")}
    for site in ("spine", "total_hip"):
        for arm in ("low", "high"):
            name = difference_name(site, "pct", 24, (arm, "placebo"))
            for method in RECOVERED_BY:
                _within_3se(res.estimands, THREE_ARMS.pct_difference(site, arm, "placebo", 24), method, name)
        for arm in ("placebo", "low", "high"):
            _within_3se(res.estimands, THREE_ARMS.pct_change(site, arm, 24), "LMM (REML)",
                        estimand_name(site, arm, "pct", 24))
    between = res.completers.table[res.completers.table["analysis"] == "between"]
    assert set(between["group"]) == {"high - placebo", "low - placebo"}
    assert res.mi["estimand"].str.contains("low - placebo").any()


def test_single_arm_study_has_within_patient_change_only(tmp_path):
    ds, d = _study(tmp_path, simulate_trial(150, SINGLE_ARM, seed=3), group="none")
    res = frequentist_analysis(d, mi_imputations=5, seed=1, design=ds.design)
    e = res.estimands
    assert set(e["estimand"]) == {estimand_name("spine", "all", u, 24) for u in ("pct", "abs")}
    assert {"completers, t-test", "LMM (REML)", "MMRM (us, REML)", "MI (m=5, Rubin)"} <= set(e["method"])
    for method in ("completers, t-test", *RECOVERED_BY):
        _within_3se(e, SINGLE_ARM.pct_change("spine", "active", 24), method, estimand_name("spine", "all", "pct", 24))
    assert res.lmm["spine"].formula == "bmd ~ month"
    assert not (res.completers.table["analysis"] == "between").any()


def test_one_post_baseline_visit_leaves_the_lmm_not_estimable_and_runs_the_rest(tmp_path):
    truth = TrialTruth(visits=(0.0, 12.0))
    ds, d = _study(tmp_path, simulate_trial(300, truth, seed=8), group="arm")
    res = frequentist_analysis(d, design=ds.design)
    assert not res.lmm and not res.lmm_adjusted
    lmm_rows = [r for r in res.not_estimable if r["analysis"] == "LMM (REML)"]
    assert {r["site"] for r in lmm_rows} == set(SITES)
    assert all("needs a third visit" in r["reason"] for r in lmm_rows)
    assert any("not estimable: the LMM needs a third visit" in n for n in res.notes)
    assert set(res.mmrm) == set(SITES) and not any(res.mmrm_other.values())  # one variance: fitted once
    for site in SITES:
        name = difference_name(site, "pct", 12, ("active", "placebo"))
        _within_3se(res.estimands, truth.pct_difference(site, "active", "placebo", 12), "MMRM (us, REML)", name)
        _within_3se(res.estimands, truth.pct_difference(site, "active", "placebo", 12), "completers, t-test", name)
    assert res.to_dict()["not_estimable"] == res.not_estimable


def test_constant_covariate_makes_only_the_adjusted_lmm_not_estimable(tmp_path):
    data = simulate_trial(160, TrialTruth(), seed=4).assign(age=60.0)
    ds, d = _study(tmp_path, data, group="arm")
    res = frequentist_analysis(d, sites=("spine",), design=ds.design)
    assert res.not_estimable == [{"analysis": "LMM (REML) + age, sex", "site": "spine",
                                  "reason": "design is rank deficient (age is constant)"}]
    assert "spine" in res.lmm and "spine" in res.mmrm and set(res.mmrm_other["spine"]) == {"ar1", "cs"}


def test_unknown_strategy_reports_each_group_at_its_own_indicator():
    """Under the 'unknown' strategy the non-responders' change is theirs (responder = unknown = 0),
    not mixed with the unknown group's slope."""
    d = derive(load_twin().frame)
    res = frequentist_analysis(d, sites=("spine",), strategy="unknown")
    fit = res.lmm["spine"]
    tab = lmm_estimands(fit, "spine", 12, coding=None).set_index("estimand")  # RAJAK coding, no unknown
    ours = res.estimands[res.estimands["method"] == "LMM (REML)"].set_index("estimand")
    assert ours.loc[estimand_name("spine", "non-responder", "abs"), "estimate"] == pytest.approx(12 * fit.coef["month"])
    assert ours.loc[estimand_name("spine", "responder", "abs"), "estimate"] == pytest.approx(
        12 * (fit.coef["month"] + fit.coef["month:responder"]))
    assert tab.loc[difference_name("spine", "abs"), "estimate"] == pytest.approx(
        ours.loc[difference_name("spine", "abs"), "estimate"])


# --- the rajak frequentist command -----------------------------------------------------------------------
def _invoke(*args):
    return CliRunner().invoke(app, ["frequentist", *map(str, args)])


def test_cli_constant_age_exits_0_with_the_not_estimable_row(tmp_path):
    path = tmp_path / "const_age.csv"
    simulate_trial(120, TrialTruth(), seed=4).assign(age=60.0).to_csv(path, index=False)
    res = _invoke("--data", path, "--group", "arm", "--site", "spine", "--imputations", 0, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["replication"] is None and out["responder_rule"] is None
    assert out["design"]["group_levels"] == ["active", "placebo"] and out["design"]["endpoint"] == 24.0
    assert out["not_estimable"] == [{"analysis": "LMM (REML) + age, sex", "site": "spine",
                                     "reason": "design is rank deficient (age is constant)"}]
    assert any(r["estimand"] == difference_name("spine", "pct", 24, ("active", "placebo")) for r in out["estimands"])
    text = _invoke("--data", path, "--group", "arm", "--site", "spine", "--imputations", 0)
    assert text.exit_code == 0, text.output
    assert "design: active, placebo from column 'arm' (reference placebo)" in text.stdout
    assert "not estimable: design is rank deficient (age is constant)" in text.stdout
    assert "Published figures" not in text.stdout and "responders:" not in text.stdout


def test_cli_file_without_sex_exits_0(tmp_path):
    path = tmp_path / "no_sex.csv"
    simulate_trial(120, TrialTruth(), seed=6).drop(columns="sex").to_csv(path, index=False)
    res = _invoke("--data", path, "--group", "arm", "--imputations", 5, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["not_estimable"] == [] and out["mi"]
    tscore = [r for r in out["completers"]["rows"] if r["measure"] == "tscore"]
    assert tscore and all(r["test"] == "not computed" for r in tscore)


def test_cli_responder_study_without_sex_keeps_the_replication(tmp_path):
    """No sex column: no T-scores, so the paper's T-score Wilcoxon row is missing; its figure is
    blank and everything else runs."""
    path = tmp_path / "no_sex.csv"
    derive_free = load_twin().frame.drop(columns=["sex"])
    derive_free.to_csv(path, index=False)
    res = _invoke("--data", path, "--imputations", 0, "--json")
    assert res.exit_code == 0, res.output
    rep = {r["figure"]: r for r in json.loads(res.stdout)["replication"]}
    assert rep["p_tscore_spine_between_groups"]["this_analysis"] is None
    assert rep["p_spine_between_groups"]["this_analysis"] is not None


def test_cli_two_visits_says_the_lmm_needs_a_third(tmp_path):
    path = tmp_path / "two_visits.csv"
    simulate_trial(150, TrialTruth(visits=(0.0, 12.0)), seed=2).to_csv(path, index=False)
    res = _invoke("--data", path, "--group", "arm", "--site", "total_hip", "--imputations", 0)
    assert res.exit_code == 0, res.output
    assert "LMM (REML), total_hip: not estimable: the LMM needs a third visit" in res.stdout
    assert "MMRM (us, REML)" in res.stdout
