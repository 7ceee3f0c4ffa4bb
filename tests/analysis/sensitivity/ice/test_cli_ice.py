"""``rajak sensitivity --analysis reference_based`` and ``rajak run`` with intercurrent events: every
strategy and method on the twin and on a user's randomised trial, rbmi's results through the command
line with ``--imputation-model rbmi``, an estimand plan, and bad ICE files (one line, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from tests.analysis.sensitivity._trial import trial_csv

DESIGN = ("--group", "arm", "--visit", "visit", "--time", "day", "--time-unit", "days")
FIX = Path(__file__).parents[1] / "fixtures"


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    d = tmp_path_factory.mktemp("icecli")
    path = trial_csv(d / "trial.csv", n=120, seed=4)
    (d / "plan.toml").write_text('sites = ["spine"]\ndraws = 100\ntune = 200\nchains = 2\n')
    return path, d / "plan.toml", d


def _completers_and_dropouts(path: Path) -> tuple[list[str], list[tuple[str, float]]]:
    df = pd.read_csv(path)
    seen = df.dropna(subset=["bmd_spine"]).groupby("patient_id")["visit"].max()
    done = sorted(seen.index[seen == 24.0])
    drop = [(p, {0.0: 6.0, 6.0: 12.0, 12.0: 24.0}[v]) for p, v in seen.items() if v < 24.0]
    return done, drop


def test_every_strategy_and_method_on_a_trial(trial):
    path, plan, _ = trial
    out = _json(_invoke("sensitivity", "--data", path, *DESIGN, "--config", plan, "--analysis", "reference_based",
                        "--strategy", "MAR,JR,CR,CIR,LMCF", "--method",
                        "condmean_jackknife,condmean_bootstrap,approx_bayes,bayes,bmlmi", "--n-samples", "20",
                        "--json"))
    r = out["results"][0]
    table = pd.DataFrame(r["table"])
    assert set(table["strategy"]) == {"MAR", "JR", "CR", "CIR", "LMCF"}
    assert set(table["method"]) == {"condmean_jackknife", "condmean_bootstrap|normal", "condmean_bootstrap|percentile",
                                    "approx_bayes", "bayes", "bmlmi"}
    assert {"estimate", "se", "ci_low", "ci_high", "p", "method"} <= set(table.columns)
    end = table[(table["month"] == 24.0) & (table["group"] == "difference")]
    assert len(end) == 5 * 6 and end["estimate"].notna().all()
    assert r["settings"]["estimand"][0]["attribute"] == "treatment"
    name = "spine | bayes | MAR, JR, CR, CIR, LMCF"  # one MCMC fit, shared by the five strategy sets
    diag = r["settings"]["diagnostics"][name]
    assert {"max_rhat", "min_ess_bulk", "divergences", "ok"} <= set(diag)
    assert r["settings"]["failed_fits"] == ([] if diag["ok"] else [name])


def test_estimand_flags_per_type_strategies_and_delta(trial):
    path, plan, d = trial
    done, drop = _completers_and_dropouts(path)
    ice = pd.DataFrame({"USUBJID": [p for p, _ in drop] + done[:5],
                        "ICE_VISIT": [m for _, m in drop] + [24.0] * 5,
                        "ICE_TYPE": ["discontinued"] * len(drop) + ["death"] * 5})
    ice.to_csv(d / "ice.csv", index=False)
    args = ("sensitivity", "--data", path, *DESIGN, "--config", plan, "--analysis", "reference_based",
            "--ice", d / "ice.csv", "--ice-strategy", "discontinued=JR", "--ice-strategy", "death=while_on_treatment",
            "--json")
    base = pd.DataFrame(_json(_invoke(*args))["results"][0]["table"])
    assert set(base["strategy"]) == {"estimand"}
    shifted = pd.DataFrame(_json(_invoke(*args, "--delta=-2@24:active#discontinued"))["results"][0]["table"])
    key = (base["month"] == 24.0) & (base["group"] == "active")
    assert shifted.loc[key, "estimate"].iloc[0] < base.loc[key, "estimate"].iloc[0]
    key = (base["month"] == 24.0) & (base["group"] == "placebo")
    assert shifted.loc[key, "estimate"].iloc[0] == pytest.approx(base.loc[key, "estimate"].iloc[0], abs=0.05)


@pytest.mark.parametrize("rows, message", [
    ([("NOPE", 12.0, "discontinued")], "NOPE"),
    ([("S0001", 9.0, "discontinued")], "9"),
    ([("S0001", 12.0, "bone_therapy"), ("S0001", 24.0, "fracture")], "S0001"),
])
def test_bad_ice_files_end_with_one_line(trial, rows, message):
    path, plan, d = trial
    f = d / f"bad_{abs(hash(tuple(rows)))}.csv"
    pd.DataFrame(rows, columns=["patient_id", "month", "ice_type"]).to_csv(f, index=False)
    res = _invoke("sensitivity", "--data", path, *DESIGN, "--config", plan, "--analysis", "reference_based",
                  "--ice", f, "--ice-strategy", "bone_therapy=JR", "--ice-strategy", "fracture=CR",
                  "--ice-strategy", "discontinued=JR")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.strip().splitlines() if ln and not ln.startswith("note:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.output


def test_unknown_strategy_and_method_end_with_one_line(trial):
    path, plan, _ = trial
    for extra, message in ((("--ice-strategy", "discontinued=J3R"), "J3R"), (("--method", "rubin"), "rubin"),
                           (("--analysis-model", "glm"), "glm")):
        res = _invoke("sensitivity", "--data", path, *DESIGN, "--config", plan, "--analysis", "reference_based",
                      *extra)
        assert res.exit_code == 2, (extra, res.output)
        assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def _hamd_study(d: Path) -> tuple[Path, Path]:
    """rbmi's antidepressant data as a user's long file, and its ICE file in rbmi's shape. The
    measurement is the HAMD-17 total on a BMD-like scale, 1 + HAMD/100 (the study contract checks
    values against the physiological BMD range); the baseline is a visit 0. A linear rescaling of the
    outcome and the baseline scales every estimate and SE by 1/100 and leaves p-values unchanged."""
    a = pd.read_csv(FIX / "rbmi_antidepressant.csv", dtype={"PATIENT": str})
    base = a.groupby("PATIENT").first().reset_index()[["PATIENT", "THERAPY", "BASVAL"]].assign(VISIT=0, HAMD=lambda x: 1 + x["BASVAL"] / 100)
    post = a.assign(HAMD=1 + (a["BASVAL"] + a["CHANGE"]) / 100)[["PATIENT", "THERAPY", "BASVAL", "VISIT", "HAMD"]]
    long = pd.concat([base, post]).sort_values(["PATIENT", "VISIT"])
    long.to_csv(d / "hamd.csv", index=False)
    return d / "hamd.csv", FIX / "rbmi_antidepressant_ice.csv"


def test_rbmi_numbers_through_the_command_line(tmp_path):
    """``--imputation-model rbmi`` on rbmi's own data gives rbmi's results (here the JR jackknife)."""
    data, ice = _hamd_study(tmp_path)
    ref = json.loads((FIX / "rbmi_reference.json").read_text())["antidepressant"]["strategies"]["JR"]["pooled"]
    out = _json(_invoke("sensitivity", "--data", data, "--id", "PATIENT", "--group", "THERAPY", "--reference", "PLACEBO",
                        "--time", "VISIT", "--site", "hamd=HAMD", "--covariates", "none", "--analysis",
                        "reference_based", "--ice", ice, "--ice-subject-column", "PATIENT", "--imputation-model", "rbmi",
                        "--strategy", "JR", "--json"))
    t = pd.DataFrame(out["results"][0]["table"])
    for visit in (4, 5, 6, 7):
        row = t[(t["month"] == visit) & (t["group"] == "difference")].iloc[0]
        exp = ref[f"trt_{visit}"]
        assert 100 * row["estimate"] == pytest.approx(exp["est"], abs=1e-6)
        assert 100 * row["se"] == pytest.approx(exp["se"], abs=1e-6)
        assert [100 * row["ci_low"], 100 * row["ci_high"]] == pytest.approx(exp["ci"], abs=1e-6)
        assert row["p"] == pytest.approx(exp["pvalue"], abs=1e-6)


def test_run_with_an_estimand_plan(trial, tmp_path):
    path, _, _ = trial
    plan = tmp_path / "plan.toml"
    plan.write_text('sites = ["spine"]\nsensitivity = ["reference_based"]\nbayes_models = []\npower_sims = 0\n'
                    'figure_workers = 0\n'
                    '[reference_based]\nmethods = ["condmean_jackknife", "approx_bayes"]\nn_samples = 10\n'
                    '[estimand]\nsummary = "difference in mean % change at month 24"\n'
                    '[estimand.strategy]\ndiscontinued = "CIR"\n')
    res = _invoke("run", "--data", path, *DESIGN, "--config", plan, "--output-dir", tmp_path / "out", "--run-id", "r")
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "out" / "r"
    table = pd.read_csv(run_dir / "tables" / "sensitivity_reference_based.csv")
    assert set(table["strategy"]) == {"estimand"} and set(table["method"]) == {"condmean_jackknife", "approx_bayes"}
    est = pd.read_csv(run_dir / "tables" / "estimand.csv")
    assert "difference in mean % change at month 24" in set(est["description"])
    html = (run_dir / "report.html").read_text()
    assert "Estimand (ICH E9(R1))" in html and "copy increments" in html
    methods = html[html.index('<section id="methods"'):]
    assert "The estimand follows ICH E9(R1)" in methods and "Intercurrent-event strategies as R" in methods
    assert 'docs/validation.md</a>' in methods and "validation.md" in methods  # the calibration is linked
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["estimand"]["strategy"] == {"discontinued": "CIR"}
    assert np.isfinite(table["estimate"]).all()


def test_every_strategy_and_method_on_the_twin(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text("draws = 100\ntune = 200\nchains = 2\n")
    out = _json(_invoke("sensitivity", "--config", plan, "--analysis", "reference_based", "--strategy",
                        "MAR,JR,CR,CIR,LMCF", "--method", "condmean_jackknife,condmean_bootstrap,approx_bayes,bayes,bmlmi",
                        "--n-samples", "10", "--json"))
    assert out["synthetic"] is True and "SYNTHETIC" in out["data_label"]
    table = pd.DataFrame(out["results"][0]["table"])
    end = table[(table["month"] == 12.0) & (table["group"] == "difference")]
    assert len(end) == 2 * 5 * 6 and set(end["site"]) == {"spine", "femoral_neck"}
    assert set(end["comparison"]) == {"responder - non-responder"}


def test_an_unknown_strategy_in_the_ice_file_ends_with_one_line(trial):
    path, plan, d = trial
    f = d / "strategy_col.csv"
    pd.DataFrame({"patient_id": ["S0001"], "month": [12.0], "ice_type": ["discontinued"],
                  "strategy": ["jump_to_nowhere"]}).to_csv(f, index=False)
    res = _invoke("sensitivity", "--data", path, *DESIGN, "--config", plan, "--analysis", "reference_based", "--ice", f)
    assert res.exit_code == 2 and "jump_to_nowhere" in res.stderr and len(res.stderr.strip().splitlines()) == 1, \
        res.output


def _rb(trial, *extra):
    path, plan, _ = trial
    return _invoke("sensitivity", "--data", path, *DESIGN, "--config", plan, "--analysis", "reference_based", *extra)


def _end(out: dict, strategy: str, group: str = "difference") -> pd.Series:
    t = pd.DataFrame(out["results"][0]["table"])
    return t[(t["strategy"] == strategy) & (t["group"] == group) & (t["month"] == 24.0)].iloc[0]


def test_review_fixes_sources_covariates_and_labels(trial, tmp_path):
    path, _, d = trial
    # no ICE derivation: no events, so JR is MAR
    off = _json(_rb(trial, "--no-ice-derive", "--strategy", "MAR,JR", "--json"))
    assert _end(off, "JR")["estimate"] == pytest.approx(_end(off, "MAR")["estimate"], abs=1e-12)
    assert _end(off, "JR")["n_ice"] == 0
    # named covariates enter the models (a categorical one as indicators); inferred ones do not
    plain = _json(_rb(trial, "--strategy", "MAR", "--json"))
    adj = _json(_rb(trial, "--strategy", "MAR", "--covariates", "age,sex", "--json"))
    assert adj["results"][0]["settings"]["covariates"] == ["age", "sex_M"]
    assert plain["results"][0]["settings"]["covariates"] == []
    assert _end(adj, "MAR")["estimate"] != pytest.approx(_end(plain, "MAR")["estimate"], abs=1e-9)
    # an rbmi data_ice file with its own strategies is the estimand's strategy set
    done, drop = _completers_and_dropouts(path)
    pd.DataFrame({"subjid": [p for p, _ in drop], "visit": [m for _, m in drop],
                  "strategy": ["JR" if i % 2 else "MAR" for i in range(len(drop))]}).to_csv(d / "rbmi_ice.csv", index=False)
    own = _json(_rb(trial, "--ice", d / "rbmi_ice.csv", "--json"))
    assert set(pd.DataFrame(own["results"][0]["table"])["strategy"]) == {"estimand"}
    jr = _end(_json(_rb(trial, "--strategy", "JR", "--json")), "JR")["estimate"]
    assert _end(plain, "MAR")["estimate"] > _end(own, "estimand")["estimate"] > jr  # half the dropouts JR, half MAR
    # tables written with --out name their data and carry the estimand
    out = tmp_path / "o"
    res = _rb(trial, "--strategy", "MAR", "--estimand-summary", "difference in means at month 24", "--out", out)
    assert res.exit_code == 0, res.output
    est = pd.read_csv(out / "estimand.csv")
    assert "difference in means at month 24" in set(est["description"]) and est["data"].notna().all()
    assert "data" in pd.read_csv(out / "sensitivity_reference_based.csv").columns


def test_treatment_policy_with_bootstrap_and_a_bad_delta_visit(trial):
    path, _, d = trial
    done, _ = _completers_and_dropouts(path)
    pd.DataFrame({"patient_id": done[:12], "month": [12.0] * 12, "ice_type": ["bone_therapy"] * 12}).to_csv(
        d / "tp.csv", index=False)
    out = _json(_rb(trial, "--ice", d / "tp.csv", "--ice-strategy", "bone_therapy=treatment_policy", "--method",
                    "condmean_bootstrap", "--n-samples", "30", "--json"))
    row = _end(out, "estimand")
    assert np.isfinite(row["estimate"]) and out["results"][0]["settings"]["diagnostics"]["spine | condmean_bootstrap"][
        "failed_resamples"] >= 0
    res = _rb(trial, "--strategy", "JR", "--delta=-1@18")
    assert res.exit_code == 2 and "18" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.output
