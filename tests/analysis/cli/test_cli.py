"""The rajak command: exit status 2 with one line on bad input, results on stdout, run directories."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.common.resources import data_path
from models.simulate import Design, simulate

runner = CliRunner()
FAST = ("--draws", "150", "--tune", "150", "--chains", "2", "--sensitivity", "completers_vs_all",
        "--power-sims", "10")  # small samples: these tests check plumbing


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study.csv"
    simulate(Design(n_patients=12), seed=4).data.to_csv(path, index=False)
    return path


def test_help_on_every_command():
    for cmd in ([], ["validate"], ["twin"], ["run"]):
        res = _invoke(*cmd, "--help")
        assert res.exit_code == 0 and "Usage" in res.output


def test_validate_ok(study):
    res = _invoke("validate", study)
    assert res.exit_code == 0
    assert "patients: 12" in res.stdout and "visits per month" in res.stdout


def test_validate_json(study):
    res = _invoke("validate", study, "--json")
    assert json.loads(res.stdout)["n_patients"] == 12


def test_validate_bad_file_real_process(tmp_path):
    bad = tmp_path / "bad.csv"
    df = simulate(Design(n_patients=5), seed=1).data
    df.loc[2, "bmd_spine"] = 7.5
    df.to_csv(bad, index=False)
    proc = subprocess.run([sys.executable, "-m", "analysis.cli", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rajak: error: ") and "Traceback" not in proc.stderr
    assert "line 4" in lines[0] and "7.5" in lines[0]


def test_fast_exit_keeps_output_and_status(tmp_path):
    """The console entry point leaves through os._exit after flushing; the output (a large JSON
    document through a pipe) and the exit status must equal those of a normal shutdown, and
    atexit handlers must still run."""
    study = tmp_path / "study.csv"
    simulate(Design(n_patients=30), seed=2).data.to_csv(study, index=False)
    marker = tmp_path / "atexit-ran"
    code = ("import atexit, pathlib, sys; from analysis.cli.app import main; "
            f"atexit.register(pathlib.Path({str(marker)!r}).touch); "
            "sys.argv = ['rajak', 'validate', sys.argv[1], '--json']; main()")
    runs = {}
    for fast in ("1", "0"):
        env = dict(os.environ, RAJAK_FAST_EXIT=fast)
        runs[fast] = subprocess.run([sys.executable, "-c", code, str(study)], capture_output=True, text=True,
                                    env=env)
        assert runs[fast].returncode == 0, runs[fast].stderr
        assert marker.is_file()
        marker.unlink()
    assert runs["1"].stdout == runs["0"].stdout and json.loads(runs["1"].stdout)["n_patients"] == 30


def test_fast_exit_does_not_wait_for_idle_worker_pools():
    """A command that used a joblib/loky process pool (``rajak power`` on two workers) must leave
    as soon as it is done. Joining the pool's manager thread before the threading exit hooks had
    run made the process wait for loky's idle timeout (300 s) after printing its result."""
    rajak = Path(sys.executable).with_name("rajak")
    cmd = [str(rajak)] if rajak.is_file() else [sys.executable, "-m", "analysis.cli"]
    proc = subprocess.run(cmd + ["power", "--n", "24,36", "--sims", "40", "--analysis", "lmm",
                                 "--workers", "2", "--no-progress", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)


def test_validate_all_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    df = simulate(Design(n_patients=5), seed=1).data
    df.loc[2, "bmd_spine"] = 7.5
    df.loc[3, "bmd_spine"] = 0.01
    df.to_csv(bad, index=False)
    res = _invoke("validate", bad, "--all")
    assert res.exit_code == 2
    assert len(res.stderr.strip().splitlines()) == 2


def test_validate_bad_map(study):
    res = _invoke("validate", study, "--map", "nonsense")
    assert res.exit_code == 2 and "--map takes" in res.stderr


def test_twin_report_is_labelled():
    res = _invoke("twin", "--report")
    assert res.exit_code == 0
    assert "SYNTHETIC" in res.stdout and "p_spine_nonresponders" in res.stdout


def test_twin_regenerate_byte_identical(tmp_path):
    out = tmp_path / "twin.csv"
    res = _invoke("twin", "--out", out)
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == data_path("rajak_twin.csv").read_bytes()
    assert json.loads(out.with_suffix(".json").read_text())["synthetic"] is True


def test_twin_other_seed_differs(tmp_path):
    out = tmp_path / "twin7.csv"
    assert _invoke("twin", "--seed", 7, "--out", out).exit_code == 0
    assert out.read_bytes() != data_path("rajak_twin.csv").read_bytes()
    assert json.loads(out.with_suffix(".json").read_text())["seed"] == 7


def test_twin_needs_an_action():
    res = _invoke("twin")
    assert res.exit_code == 2 and "--report" in res.stderr


def test_run_writes_run_directory(tmp_path):
    res = _invoke("run", "--output-dir", tmp_path, "--run-id", "r1", *FAST)
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "r1"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["synthetic_data"] is True and "SYNTHETIC" in manifest["data_label"]
    assert manifest["data_sha256"] and manifest["package_versions"]["pymc"]
    for f in manifest["files"]:
        assert (run_dir / f).is_file(), f
    rep = pd.read_csv(run_dir / "tables" / "replication.csv")
    assert rep["data"].str.contains("SYNTHETIC").all()
    assert "SYNTHETIC DATA" in (run_dir / "summary.txt").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".fit-cache"]  # no staging
    # never overwritten without --force
    again = _invoke("run", "--output-dir", tmp_path, "--run-id", "r1", *FAST)
    assert again.exit_code == 2 and "--force" in again.stderr
    first = pd.read_csv(run_dir / "tables" / "bayes_estimands.csv")
    assert manifest["fit_cache"]["lmm_spine"]["cache"] == "miss"
    assert _invoke("run", "--output-dir", tmp_path, "--run-id", "r1", "--force", *FAST).exit_code == 0
    # unchanged model, data and configuration: the fits come from the content-addressed cache
    manifest2 = json.loads((run_dir / "manifest.json").read_text())
    assert manifest2["fit_cache"]["lmm_spine"]["cache"] == "hit"
    pd.testing.assert_frame_equal(first, pd.read_csv(run_dir / "tables" / "bayes_estimands.csv"))
    # another seed is another fit
    assert _invoke("run", "--output-dir", tmp_path, "--run-id", "r2", "--seed", "9", *FAST).exit_code == 0
    assert json.loads((tmp_path / "r2" / "manifest.json").read_text())["fit_cache"]["lmm_spine"]["cache"] == "miss"


def test_run_on_user_data(tmp_path, study):
    res = _invoke("run", "--data", study, "--output-dir", tmp_path, "--run-id", "u", *FAST)
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "u" / "manifest.json").read_text())
    assert manifest["synthetic_data"] is False
    # 12 patients are too few for the imputation models: said in the manifest, not hidden
    assert any("multiple imputation not possible" in n for n in manifest["diagnostics"]["notes"])


def test_run_bad_data_exit_2(tmp_path):
    bad = tmp_path / "bad.ods"  # not a format rajak reads
    bad.write_text("x")
    res = _invoke("run", "--data", bad, "--output-dir", tmp_path)
    assert res.exit_code == 2 and "unknown extension" in res.stderr
    assert not any(tmp_path.glob("2*"))
    header_only = tmp_path / "bad.txt"  # a text file is read as CSV/TSV: one line, no data rows
    header_only.write_text("x")
    res = _invoke("run", "--data", header_only, "--output-dir", tmp_path)
    assert res.exit_code == 2 and "no data rows" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.glob("2*"))


def test_run_interrupted_leaves_nothing(tmp_path, monkeypatch):
    import analysis.run.pipeline as pl

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pl, "atomic_write_json", boom)
    with pytest.raises(KeyboardInterrupt):
        pl.run(pl.RunConfig(output_dir=str(tmp_path), run_id="x", bayes_models=()))
    assert list(tmp_path.iterdir()) == []


def test_frequentist_prints_replication_table():
    res = _invoke("frequentist", "--imputations", 0)
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" in res.stdout and "p_spine_between_groups" in res.stdout and "MMRM (us, REML)" in res.stdout


def test_frequentist_json():
    res = _invoke("frequentist", "--imputations", 0, "--json", "--strategy", "exclude")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["synthetic"] is True
    assert {"replication", "estimands", "completers", "lmm", "mmrm"} <= set(out)
    assert "excluded" in out["strategy"]
    assert len(out["replication"]) == 11


def test_frequentist_bad_strategy():
    res = _invoke("frequentist", "--strategy", "guess", "--imputations", 0)
    assert res.exit_code == 2 and "undefined_responders" in res.stderr


def test_sensitivity_command(tmp_path):
    res = _invoke("sensitivity", "--analysis", "completers_vs_all", "--json", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["synthetic"] is True and out["results"][0]["name"] == "completers_vs_all"
    assert (tmp_path / "sensitivity_completers_vs_all.csv").is_file()
    bad = _invoke("sensitivity", "--analysis", "vibes")
    assert bad.exit_code == 2 and "unknown sensitivity analysis" in bad.stderr
    # with --cache-dir the second call reads the finished analysis back
    cache = tmp_path / "cache"
    runs = [json.loads(_invoke("sensitivity", "--analysis", "completers_vs_all", "--json", "--cache-dir",
                               cache).stdout)["results"][0] for _ in range(2)]
    assert [r["settings"]["result_cache"]["hit"] for r in runs] == [False, True]
    assert runs[0]["table"] == runs[1]["table"] == out["results"][0]["table"]


def test_analysis_that_cannot_run_on_valid_data_exits_2(tmp_path):
    """A file that passes validation but is too small for the models (4 patients): one line, exit
    status 2, no traceback, from every analysis command."""
    path = tmp_path / "tiny.csv"
    simulate(Design(n_patients=4), seed=1).data.to_csv(path, index=False)
    assert _invoke("validate", path).exit_code == 0
    for args in (("frequentist", "--imputations", 0), ("run", "--output-dir", tmp_path / "out", *FAST)):
        res = _invoke(*args[:1], "--data", path, *args[1:])
        assert res.exit_code == 2, (args[0], res.output)
        lines = res.stderr.strip().splitlines()
        assert lines[-1].startswith("rajak: error: ") and "cannot run on these data" in lines[-1], res.stderr
        assert str(path) in lines[-1] and "Traceback" not in res.output
        assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)


def test_validate_reports_user_supplied_responders(tmp_path):
    df = simulate(Design(n_patients=6), seed=2).data
    df["responder"] = df["patient_id"].map({p: i % 2 == 0 for i, p in enumerate(df["patient_id"].unique())})
    path = tmp_path / "own.csv"
    df.to_csv(path, index=False)
    res = _invoke("validate", path)
    assert res.exit_code == 0 and "responder status user-supplied for 6 of 6 patients" in res.stdout


def test_run_dir_appearing_during_a_run_is_not_replaced(tmp_path, monkeypatch):
    """The existence check is repeated at the final rename: a run directory created meanwhile
    is kept unless --force."""
    import analysis.run.pipeline as pl

    original = pl.atomic_write_json

    def create_then_write(path, obj):
        if path.name == "manifest.json":
            (tmp_path / "x").mkdir(exist_ok=True)
            (tmp_path / "x" / "keep.txt").write_text("someone else's")
        return original(path, obj)

    monkeypatch.setattr(pl, "atomic_write_json", create_then_write)
    cfg = pl.RunConfig(output_dir=str(tmp_path), run_id="x", bayes_models=(), sensitivity=(), power_sims=0,
                       mi_imputations=0)
    with pytest.raises(pl.RunExistsError, match="appeared during the run"):
        pl.run(cfg)
    assert (tmp_path / "x" / "keep.txt").read_text() == "someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no staging left
    pl.run(cfg, force=True)
    assert (tmp_path / "x" / "manifest.json").is_file() and not (tmp_path / "x" / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_run_with_a_toml_plan(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('sites = ["spine"]\nundefined_responders = "exclude"\npriors = "literature"\n'
                    'sensitivity = ["completers_vs_all"]\nmmrm_covariances = ["us", "cs"]\ndraws = 150\ntune = 150\n'
                    'chains = 2\nseed = 7\npower_sims = 0\nmi_imputations = 5\n[responder]\nkind = "das28_fall"\n'
                    'threshold = 1.2\n')
    res = _invoke("run", "--config", plan, "--output-dir", tmp_path / "out", "--run-id", "p")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "out" / "p" / "manifest.json").read_text())
    c = m["config"]
    assert c["sites"] == ["spine"] and c["seed"] == 7 and c["priors"] == "literature" and c["draws"] == 150
    assert c["responder"] == {"kind": "das28_fall", "month": 12.0, "threshold": 1.2}
    assert "fall > 1.2" in m["responder_rule"] and "excluded" in m["undefined_responder_strategy"]
    est = pd.read_csv(tmp_path / "out" / "p" / "tables" / "frequentist_estimands.csv")
    assert set(est["site"]) == {"spine"} and {"MMRM (us, REML)", "MMRM (cs, REML)"} <= set(est["method"])
    assert "MMRM (ar1, REML)" not in set(est["method"])
    bad = tmp_path / "bad.toml"
    bad.write_text('sites = ["hip"]\n')
    res = _invoke("run", "--config", bad, "--output-dir", tmp_path / "out")
    assert res.exit_code == 2 and "sites" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def _one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rajak: error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_unwritable_output_dir_fails_before_computing(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "analysis.cli", "run", "--output-dir", str(blocker / "runs")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert str(blocker / "runs") in line and "cannot write" in line
    assert "loaded" not in proc.stderr  # stopped before loading the data
    assert blocker.read_text() == "x"


def test_unwritable_out_file_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    target = blocker / "twin.csv"
    proc = subprocess.run([sys.executable, "-m", "analysis.cli", "twin", "--out", str(target)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert str(blocker) in line and "file system error" in line
    assert blocker.read_text() == "x"
