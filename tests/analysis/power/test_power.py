"""Sample size and assurance by simulation (analysis.power, analysis.power.closed_form, rajak power).

Closed forms against published values; simulated LMM power against the closed form; type-I error;
Dask equals local; resumability; reproducibility; Bayesian refits without recompiling.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.power import (TIMING_COLUMNS, BayesRefitter, DesignPrior, PowerDesign, PowerSettings, calibrate_dropout,
                            closed_form_power, disease_control_slope_pct, load_power_design, parse_n_grid, power_frame,
                            run_power, simulate_gaussian, simulation_seed_sequence, smallest_n, summarise)
from analysis.power.closed_form import (diggle_linear_power, liu_liang_linear_power, random_slope_covariance,
                                        slope_difference_power, slope_difference_sample_size)
from models.simulate import Design, simulate

ROOT = Path(__file__).resolve().parents[2]
ADAS_T = np.arange(0, 1.51, 0.25)


def _no_timing(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------


def test_diggle_reproduces_page_29_table():
    """Diggle et al. (2002) p. 29 (longpower's test): t = (0, 2, 5), delta = 0.5, one-sided, 80%."""
    table = [[int(np.ceil(diggle_linear_power(delta=0.5, t=[0, 2, 5], sigma2=s2, R=rho, power=0.8,
                                              alternative="one.sided").n))
              for s2 in (100, 200, 300)] for rho in (0.2, 0.5, 0.8)]
    assert table == [[313, 625, 938], [196, 391, 586], [79, 157, 235]]


def test_liu_liang_reproduces_diggle_tables():
    """The same p. 29 table as N/2 of Liu & Liang, and the p. 30 table (difference in means)."""
    t = np.array([0.0, 2.0, 5.0])
    u = [t, np.zeros(3)]
    v = [np.column_stack([np.ones(3), np.ones(3), t]), np.column_stack([np.ones(3), np.zeros(3), t])]
    p29 = [[int(np.ceil(liu_liang_linear_power(delta=0.5, u=u, v=v, sigma2=s2, R=rho, power=0.8,
                                               alternative="one.sided").n / 2))
            for s2 in (100, 200, 300)] for rho in (0.2, 0.5, 0.8)]
    assert p29 == [[313, 625, 938], [196, 391, 586], [79, 157, 235]]
    u30, v30 = [np.ones(3), np.zeros(3)], [np.ones(3), np.ones(3)]
    p30 = [[int(np.ceil(liu_liang_linear_power(delta=d, u=u30, v=v30, R=rho, power=0.8,
                                               alternative="one.sided").n / 2)) for rho in (0.2, 0.5, 0.8)]
           for d in (0.2, 0.3, 0.4, 0.5)]
    assert p30 == [[145, 207, 268], [65, 92, 120], [37, 52, 67], [24, 33, 43]]


def test_adas_cog_random_intercept_and_slope_example():
    """longpower's documented ADAS-cog example: n = 207.3101 per group; n = 208 -> delta 1.49751."""
    v = random_slope_covariance(ADAS_T, 55, 24, 0.8 * np.sqrt(55 * 24), 10)
    res = diggle_linear_power(delta=1.5, t=ADAS_T, R=v, sig_level=0.05, power=0.8)
    assert res.n == pytest.approx(207.3100933, rel=1e-8)
    assert diggle_linear_power(n=208, t=ADAS_T, R=v, power=0.8).delta == pytest.approx(1.4975102894, rel=1e-8)
    # Liu & Liang with equal allocation is the same calculation (N = 2n), and the inverses agree
    assert slope_difference_sample_size(1.5, ADAS_T, v) / 2 == pytest.approx(res.n, rel=1e-10)
    assert slope_difference_power(2 * res.n, 1.5, ADAS_T, v)[0] == pytest.approx(0.8, abs=1e-10)
    assert diggle_linear_power(n=res.n, delta=1.5, t=ADAS_T, R=v, power=None).power == pytest.approx(0.8, abs=1e-10)
    assert diggle_linear_power(n=res.n, delta=1.5, t=ADAS_T, R=v, power=0.8,
                               sig_level=None).sig_level == pytest.approx(0.05, abs=1e-10)


def test_exchangeable_hand_derivation():
    r"""For R = (1-rho) I + rho 11', xi = sigma^2 (1 - rho) / sum (t - tbar)^2 (module docstring).

    For d = 0.5, t = seq(0, 1.5, 0.25), sigma2 = 100, R = 0.4, two-sided 5%, 80%: sum (t - tbar)^2 =
    1.75, xi = 34.2857 and n = 2 (1.959964 + 0.841621)^2 xi / 0.25 = 2152.84 per group (not 387.7).
    """
    t = ADAS_T
    hand = 2 * (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) ** 2 * 100 * 0.6 / (((t - t.mean()) ** 2).sum() * 0.25)
    res = diggle_linear_power(delta=0.5, t=t, sigma2=100, R=0.4, power=0.8)
    assert res.n == pytest.approx(hand, rel=1e-12)
    assert res.n == pytest.approx(2152.8356, abs=1e-3)


def test_closed_form_rejects_bad_input():
    with pytest.raises(ValueError, match="exactly one"):
        diggle_linear_power(delta=0.5, t=[0, 1], R=0.5, power=None, n=None)
    with pytest.raises(ValueError, match="alternative"):
        diggle_linear_power(delta=0.5, t=[0, 1], R=0.5, power=0.8, alternative="less")
    with pytest.raises(ValueError, match="two distinct"):
        diggle_linear_power(delta=0.5, t=[1, 1], R=0.5, power=0.8)
    with pytest.raises(ValueError, match="Pi"):
        liu_liang_linear_power(delta=0.5, u=[np.ones(2)], v=[np.ones(2)], R=0.5, power=0.8, Pi=[0.7])


# ---------------------------------------------------------------------------------------------
# designs, frames, generators
# ---------------------------------------------------------------------------------------------


def test_parse_n_grid():
    assert parse_n_grid("20:200:20") == tuple(range(20, 201, 20))
    assert parse_n_grid("46") == (46,)
    assert parse_n_grid("20, 40,80") == (20, 40, 80)
    for bad in ("20:x", "200:20:20", "20:200:0", ""):
        with pytest.raises(ValueError):
            parse_n_grid(bad)


def test_power_design_validation():
    with pytest.raises(ValueError, match="at least 6"):
        PowerDesign(n=(4, 40))
    with pytest.raises(ValueError, match="sites"):
        PowerDesign(sites=("hip",))
    with pytest.raises(ValueError, match="dropout"):
        PowerDesign(dropout=1.0)
    with pytest.raises(ValueError, match="analyses"):
        run_power(PowerDesign(n=(20,)), sims=1, analyses=("anova",))
    with pytest.raises(ValueError, match="tcp://"):
        run_power(PowerDesign(n=(20,)), sims=1, scheduler="127.0.0.1")
    pd_ = PowerDesign(n=(40, 20, 40))
    assert pd_.n == (20, 40)
    assert PowerDesign.from_dict(json.loads(json.dumps(pd_.to_dict()))) == pd_


def test_load_power_design_toml(tmp_path):
    path = tmp_path / "design.toml"
    path.write_text(textwrap.dedent("""
        n = "30:90:30"
        sites = ["femoral_neck"]
        dropout = 0.3
        [design]
        "femoral_neck.slope_sd_pct" = 1.2
        "dropout.mechanism" = "mnar"
        "dropout.bmd_log_odds" = -0.2
        [settings]
        rope = 1.0
        [prior]
        fit = "fit.nc"
    """))
    pd_, extra = load_power_design(path)
    assert pd_.n == (30, 60, 90) and pd_.sites == ("femoral_neck",) and pd_.dropout == 0.3
    assert pd_.design.femoral_neck.slope_sd_pct == 1.2 and pd_.design.dropout.mechanism == "mnar"
    assert extra == {"settings": {"rope": 1.0}, "prior": {"fit": "fit.nc"}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"n": [30], "design": {"spine.no_such_field": 1}}))
    with pytest.raises(ValueError, match="bad.json"):
        load_power_design(bad)


@pytest.mark.parametrize("seed", range(6))
def test_power_frame_equals_derive_then_model_frame(seed):
    """The fast frame equals model_frame(derive(data), site, strategy) (with and without a
    user-supplied responder column, with heavy dropout so that many statuses are undefined)."""
    from analysis.frequentist.primary import model_frame
    from analysis.study.clinical import derive

    s = simulate(Design(n_patients=40).with_updates(**{"dropout.visit_hazard": 0.2}), seed)
    data = s.data
    if seed % 2:
        truth = s.patients.set_index("patient_id")["response_type"] == "responder"
        data = data.assign(responder=data["patient_id"].map(truth))
    cols = ["patient_id", "month", "bmd", "responder", "baseline", "change", "pct"]
    for site in ("spine", "femoral_neck"):
        for strategy in ("last_observed", "exclude"):
            a = power_frame(data, site, strategy)[cols]
            b = model_frame(derive(data), site, strategy)[cols]
            for df in (a, b):
                df["patient_id"] = df["patient_id"].astype(str)
                df["month"] = df["month"].astype(float)
            pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


def test_completers_tests_equal_the_completers_analysis():
    """The power study's completers tests give the p-values of analysis.frequentist.completers."""
    from analysis.frequentist.completers import completers_analysis
    from analysis.power.analyses import completers_rows
    from analysis.study.clinical import derive

    data = simulate(Design(n_patients=60), 11).data
    ref = completers_analysis(derive(data), sites=("spine",), measures=("pct",), strategy="last_observed",
                              secondary=False, conf_int=False).table
    ref = ref[ref["analysis"] == "between"].set_index("test")["p"]
    rows = dict(completers_rows(power_frame(data, "spine"), 12.0))
    assert rows["completers_t"]["p"] == pytest.approx(ref[[t for t in ref.index if "t-test" in t][0]], rel=1e-12)
    assert rows["completers_wilcoxon"]["p"] == pytest.approx(ref[[t for t in ref.index if "Wilcoxon" in t][0]],
                                                             rel=1e-12)


def test_gaussian_generator():
    d = Design(responder_fraction=0.4)
    full = simulate_gaussian(d, 50, seed=3)
    assert len(full) == 50 * 3 and full.groupby("patient_id")["responder"].first().sum() == 20
    again = simulate_gaussian(d, 50, seed=3)
    pd.testing.assert_frame_equal(full, again)
    lost = [1 - simulate_gaussian(d, 400, seed=s, dropout=0.3).query("month == 12")["patient_id"].nunique() / 400
            for s in range(10)]
    assert np.mean(lost) == pytest.approx(0.3, abs=3 * np.sqrt(0.3 * 0.7 / 4000))


def test_calibrate_dropout_reaches_target():
    d = calibrate_dropout(Design(), 0.3)
    assert d.dropout.visit_hazard > 0
    lost = simulate(d.with_updates(n_patients=20_000), seed=99).patients["dropout_month"].notna().mean()
    assert lost == pytest.approx(0.3, abs=0.015)
    assert calibrate_dropout(Design(), 0.0).dropout.visit_hazard == 0.0
    with pytest.raises(ValueError, match="dropout target"):
        calibrate_dropout(Design(), 1.2)


def test_seed_sequence_is_spawn_by_simulation_index():
    ss = simulation_seed_sequence(7, sim=3, n=40, stream=1)
    ref = np.random.SeedSequence(7).spawn(4)[3].spawn(2)[1].spawn(41)[40]
    assert np.array_equal(ss.generate_state(4), ref.generate_state(4))


# ---------------------------------------------------------------------------------------------
# simulated power: closed form, type-I error
# ---------------------------------------------------------------------------------------------

GAUSS = Design(responder_fraction=0.5).with_updates(**{"spine.slope_responder_pct": -1.6,
                                                      "spine.slope_nonresponder_pct": -2.4})


def _agrees(sim: float, closed: float, k: int, slack: float) -> bool:
    se = np.sqrt(closed * (1 - closed) / k)
    return abs(sim - closed) <= 3.0 * se + slack


def test_lmm_power_agrees_with_closed_form():
    """Gaussian LMM data (no dropout, equal visits, known groups): simulated power of the
    Satterthwaite slope-difference test vs Liu & Liang at n = 100, 160, 300 (powers ~0.46, 0.65,
    0.89), within 3 Monte-Carlo SEs plus 0.01 for the t-vs-normal gap at 98+ df."""
    design = PowerDesign(design=GAUSS, n=(100, 160, 300), generator="gaussian")
    k = 150
    res = run_power(design, sims=k, seed=2024, analyses=("lmm",), workers=2)
    s = res.summary()
    closed = closed_form_power(design)
    assert 0.4 < closed[0] < 0.5 and closed[-1] > 0.85
    assert (s["failed"] == 0).all()
    for (_, row), cf in zip(s.iterrows(), closed):
        assert _agrees(row["power"], cf, k, 0.01), (row["n"], row["power"], cf)


@pytest.mark.slow
def test_lmm_power_agrees_with_closed_form_large(full_studies):
    """As above at n = 100-400 with 1000 studies each (reduced form: 250; the Monte-Carlo part of
    the tolerance scales with 1/sqrt(k))."""
    design = PowerDesign(design=GAUSS, n=(100, 200, 300, 400), generator="gaussian")
    k = 1000 if full_studies else 250
    s = run_power(design, sims=k, seed=77, analyses=("lmm",)).summary()
    for (_, row), cf in zip(s.iterrows(), closed_form_power(design)):
        assert _agrees(row["power"], cf, k, 0.008), (row["n"], row["power"], cf)


def test_type_one_error_is_nominal():
    """No difference between the types (equal slopes, no disease-control link), derived groups,
    43% MAR dropout: rejection rates of the LMM and the Welch test are 5% within 3 MC SEs."""
    null = Design().with_updates(**{"spine.slope_responder_pct": -1.5, "spine.slope_nonresponder_pct": -1.5,
                                    "spine.slope_per_das28_improvement_pct": 0.0})
    k = 300
    res = run_power(PowerDesign(design=null, n=(60,), dropout=0.43), sims=k, seed=5,
                    analyses=("lmm", "completers"), workers=2)
    s = res.summary().set_index("analysis")
    tol = 3 * np.sqrt(0.05 * 0.95 / k)
    for a in ("lmm", "completers_t"):
        assert abs(s.loc[a, "power"] - 0.05) <= tol, (a, s.loc[a, "power"])
    assert s["failed"].sum() == 0


# ---------------------------------------------------------------------------------------------
# reproducibility, resumability, Dask
# ---------------------------------------------------------------------------------------------

SMALL = PowerDesign(n=(24, 36), dropout=0.3)


def test_reproducible_whatever_the_workers_and_chunks():
    a = run_power(SMALL, sims=6, seed=11, analyses=("lmm", "mmrm", "completers"), workers=1, chunk_size=4)
    b = run_power(SMALL, sims=6, seed=11, analyses=("lmm", "mmrm", "completers"), workers=2, chunk_size=1)
    pd.testing.assert_frame_equal(_no_timing(a.raw), _no_timing(b.raw))
    c = run_power(SMALL, sims=6, seed=12, analyses=("lmm", "mmrm", "completers"), workers=1)
    assert not np.allclose(a.raw["p"], c.raw["p"])
    assert len(a.raw) == 2 * 6 * 4 and a.raw["ok"].all()


def test_resume_after_interruption(tmp_path):
    """Ctrl-C after two chunks: those stay on disk untouched, a re-run simulates only the rest and
    the result equals an uninterrupted run; another study is refused in the same directory."""
    out = tmp_path / "study"
    seen = []

    def stop_after_two(df):
        seen.append(df)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_power(SMALL, sims=6, seed=3, analyses=("lmm", "completers"), out=out, workers=1, chunk_size=2,
                  on_chunk=stop_after_two)
    files = sorted((out / "chunks").glob("*.parquet"))
    assert len(files) == 2
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    (out / "chunks" / ".n00024-partial.parquet.tmp").write_bytes(b"half a file")  # an interrupted write
    messages, ran = [], []
    resumed = run_power(SMALL, sims=6, seed=3, analyses=("lmm", "completers"), out=out, workers=1, chunk_size=2,
                        on_chunk=ran.append, log=messages.append)
    assert any("4 of 12 simulations already done" in m for m in messages)
    assert sum(df["sim"].nunique() for df in ran) == 8
    for p in files:
        assert (p.stat().st_mtime_ns, p.read_bytes()) == before[p.name]
    fresh = run_power(SMALL, sims=6, seed=3, analyses=("lmm", "completers"), workers=1)
    pd.testing.assert_frame_equal(_no_timing(resumed.raw), _no_timing(fresh.raw))
    saved = pd.read_parquet(out / "raw.parquet")
    pd.testing.assert_frame_equal(_no_timing(saved), _no_timing(resumed.raw))
    # more simulations extend the study; nothing already done is rerun
    ran.clear()
    run_power(SMALL, sims=7, seed=3, analyses=("lmm", "completers"), out=out, workers=1, on_chunk=ran.append)
    assert sorted(df["sim"].unique().tolist() for df in ran) == [[6], [6]]
    with pytest.raises(ValueError, match="different power study"):
        run_power(SMALL, sims=6, seed=4, analyses=("lmm", "completers"), out=out, workers=1)


@pytest.mark.slow
def test_resume_after_the_process_is_killed(tmp_path):
    """SIGKILL of a real run mid-way (no clean-up at all), then resume in this process."""
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        from analysis.power import PowerDesign, run_power
        run_power(PowerDesign(n=(24, 36), dropout=0.3), sims=40, seed=8, analyses=("lmm",),
                  out={str(out)!r}, workers=1, chunk_size=2)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list((out / "chunks").glob("*.parquet"))) < 3:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    done = len(list((out / "chunks").glob("*.parquet")))
    assert 3 <= done < 40
    resumed = run_power(PowerDesign(n=(24, 36), dropout=0.3), sims=40, seed=8, analyses=("lmm",), out=out,
                        workers=1, chunk_size=2)
    fresh = run_power(PowerDesign(n=(24, 36), dropout=0.3), sims=40, seed=8, analyses=("lmm",), workers=2)
    pd.testing.assert_frame_equal(_no_timing(resumed.raw), _no_timing(fresh.raw))


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    """A real ``dask scheduler`` and ``dask worker`` (2 processes x 1 thread) on 127.0.0.1 only."""
    pytest.importorskip("distributed")
    from distributed import Client

    work = tmp_path_factory.mktemp("dask")
    dask = str(Path(sys.executable).parent / "dask")
    port = _free_loopback_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(work / "dask.log", "w")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                               "--idle-timeout", "600"], stdout=log, stderr=subprocess.STDOUT, cwd=work)]
    try:
        procs.append(subprocess.Popen([dask, "worker", address, "--host", "127.0.0.1", "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard", "--death-timeout", "60",
                                       "--memory-limit", "0", "--local-directory", str(work)],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=work))
        with Client(address, timeout="60s", set_as_default=False) as client:
            client.wait_for_workers(2, timeout=90)
            workers = list(client.scheduler_info()["workers"])
        assert workers and all(w.startswith("tcp://127.0.0.1:") for w in workers)
        yield address
    finally:
        try:  # a clean shutdown of scheduler and workers is quicker than signals
            with Client(address, timeout="5s", set_as_default=False) as client:
                client.shutdown()
        except Exception:  # noqa: BLE001 - fall back to terminating the processes we started
            pass
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)
        log.close()


def test_dask_cluster_equals_local(dask_scheduler):
    analyses = ("lmm", "mmrm", "completers")
    remote = run_power(SMALL, sims=6, seed=21, analyses=analyses, scheduler=dask_scheduler, chunk_size=2)
    local = run_power(SMALL, sims=6, seed=21, analyses=analyses, workers=1)
    assert len(remote.raw) == 2 * 6 * 4
    pd.testing.assert_frame_equal(_no_timing(remote.raw), _no_timing(local.raw))
    # a power run must not leave dask's global scheduler pointing at a closed cluster: later
    # xarray writes (saved fits) consult it and would fail
    import dask

    assert dask.config.get("scheduler", None) not in ("dask.distributed", "distributed")


# ---------------------------------------------------------------------------------------------
# Bayesian refits
# ---------------------------------------------------------------------------------------------

BAYES_FAST = {"draws": 200, "tune": 200, "chains": 2}


@pytest.fixture(scope="module")
def two_frames():
    return (power_frame(simulate(Design(n_patients=46), 1).data, "spine"),
            power_frame(simulate(Design(n_patients=90), 2).data, "spine"))


def test_bayes_refit_without_recompiling_changes_estimates(two_frames):
    from analysis.engine.sampling import sample
    from models.trajectory import build_trajectory_model

    d1, d2 = two_frames
    r = BayesRefitter("spine", cores=2, **BAYES_FAST)
    f1 = r.fit(d1, seed=5)
    f2 = r.fit(d2, seed=5)
    assert r.n_compiles <= 1 and f2.compile_seconds == 0.0  # the second data set reuses the compiled model
    m1, m2 = (f.draws["diff_pct_change_end"].mean() for f in (f1, f2))
    assert abs(m1 - m2) > 0.05
    assert not np.allclose(f1.draws["b"].mean(axis=(0, 1)), f2.draws["b"].mean(axis=(0, 1)))
    assert f2.diagnostics.n_chains == 2 and f2.diagnostics.n_draws == 200 and np.isfinite(f2.diagnostics.max_rhat)
    # the same seed and data give the same draws, and the same draws as analysis.engine.sampling.sample
    again = r.fit(d2, seed=5)
    assert np.array_equal(again.draws["diff_pct_change_end"], f2.draws["diff_pct_change_end"])
    ref = sample(build_trajectory_model(d2[["patient_id", "month", "bmd_spine", "responder"]], "spine"),
                 seed=5, cores=2, **BAYES_FAST)
    assert np.array_equal(ref.posterior["posterior"]["diff_pct_change_end"].values,
                          f2.draws["diff_pct_change_end"])
    # and the same diagnostics as analysis.engine.sampling.diagnose over the same variables
    from analysis.engine.sampling import diagnose
    from analysis.power.bayes_rule import SUMMARY_VARS

    assert diagnose(ref.posterior, list(SUMMARY_VARS)) == f2.diagnostics


def test_bayes_in_a_power_study():
    settings = PowerSettings(**BAYES_FAST)
    res = run_power(PowerDesign(n=(30,), dropout=0.3), sims=2, seed=4, analyses=("lmm", "bayes"),
                    settings=settings, workers=1)
    b = res.raw[res.raw["analysis"] == "bayes"]
    assert len(b) == 2 and b["ok"].all()
    assert (b["q025"] < b["q50"]).all() and (b["q50"] < b["q975"]).all()
    assert b["p_gt_0"].between(0, 1).all() and b["max_rhat"].notna().all() and b["rope"].eq(2.4).all()
    assert b["diag_passed"].notna().all() and b["min_ess_bulk"].gt(0).all()
    crit = set(res.summary().query("analysis == 'bayes'")["criterion"])
    assert crit == {"P(diff > 0) > prob", "95% CrI excludes 0", "95% CrI outside ROPE"}


def test_design_prior_from_fit_and_assurance(two_frames):
    from analysis.engine.sampling import sample
    from models.trajectory import build_trajectory_model

    fit = sample(build_trajectory_model(two_frames[0][["patient_id", "month", "bmd_spine", "responder"]], "spine"),
                 seed=3, cores=2, **BAYES_FAST)
    design = Design()
    prior = DesignPrior.from_fit(fit, design)
    post = fit.posterior["posterior"]
    m = (post["b"].sel(coef="intercept") + design.responder_fraction * post["b"].sel(coef="responder")).values.ravel()
    assert len(prior.draws) == 400
    np.testing.assert_allclose(prior.draws["spine.precision_cv_pct"], 100 * post["sigma"].values.ravel() / m)
    shift = disease_control_slope_pct(design, "spine")
    np.testing.assert_allclose(prior.draws["spine.slope_responder_pct"],
                               post["pct_change_end"].sel(group="responder").values.ravel() - shift["responder"])
    res = run_power(PowerDesign(n=(24, 36)), sims=4, seed=9, analyses=("lmm",), prior=prior, workers=1)
    assert res.kind == "assurance"
    per_sim = res.raw.groupby("sim")["prior_draw"].nunique()
    assert (per_sim == 1).all() and res.raw["prior_draw"].nunique() > 1  # one draw per simulation, at every n
    assert "prior.spine.slope_sd_pct" in res.raw.columns


# ---------------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------------


def test_summaries_recompute_from_raw_rows():
    raw = pd.DataFrame({"n": [20] * 4 + [40] * 4, "sim": [0, 1, 2, 3] * 2, "site": "spine", "analysis": "lmm",
                        "ok": [True, True, True, False] + [True] * 4, "p": [0.01, 0.2, 0.07, np.nan,
                                                                              0.01, 0.02, 0.03, 0.5],
                        "estimate": 1.0, "lost_fraction": 0.4, "diag_passed": pd.NA})
    s = summarise(raw, alpha=0.05)
    assert s["power"].tolist() == [0.25, 0.75] and s["failed"].tolist() == [1, 0]
    assert s["mc_se"].iloc[1] == pytest.approx(np.sqrt(0.75 * 0.25 / 4))
    # Wilson 95% interval for 3/4
    z = stats.norm.ppf(0.975)
    centre, half = (0.75 + z**2 / 8) / (1 + z**2 / 4), z * np.sqrt(0.75 * 0.25 / 4 + z**2 / 64) / (1 + z**2 / 4)
    assert (s["ci_low"].iloc[1], s["ci_high"].iloc[1]) == pytest.approx((centre - half, centre + half))
    assert summarise(raw, alpha=0.1)["power"].tolist() == [0.5, 0.75]
    small = smallest_n(s, 0.7)
    assert small["n_min"].iloc[0] == 40 and pd.isna(small["n_min_sure"].iloc[0])
    assert pd.isna(smallest_n(s, 0.9)["n_min"].iloc[0])


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (("--n", "20:x"), "cannot read sample sizes"),
    (("--n", "30", "--analysis", "anova"), "unknown analysis"),
    (("--n", "30", "--dropout", "1.2"), "--dropout"),
    (("--n", "30", "--sims", "0"), "--sims"),
    (("--n", "3"), "at least 6"),
    (("--n", "30", "--scheduler", "localhost:8786"), "tcp://HOST:PORT"),
    (("--n", "30", "--design", "no-such-file.toml"), "does not exist"),
    (("--n", "30", "--mechanism", "random"), "--mechanism"),
])
def test_cli_bad_input_is_one_line_and_exit_2(power_cli, args, message):
    res = power_cli(*args)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rajak: error: ") and message in lines[0]
    assert res.stdout == ""


def test_cli_runs_and_writes_outputs(power_cli, tmp_path):
    out = tmp_path / "power"
    res = power_cli("--n", "24,36", "--sims", "3", "--analysis", "lmm", "--analysis", "completers", "--dropout", "0.3",
              "--workers", "1", "--json", "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "power" and {r["n"] for r in doc["summary"]} == {24, 36}
    assert {r["analysis"] for r in doc["smallest_n"]} == {"lmm", "completers_t", "completers_wilcoxon"}
    for name in ("raw.parquet", "summary.csv", "smallest_n.csv", "power_table.csv", "power_curve.png",
                 "power_curve.svg", "result.json", "manifest.json"):
        assert (out / name).is_file(), name
    raw = pd.read_parquet(out / "raw.parquet")
    assert len(raw) == 2 * 3 * 3
    table = power_cli("--n", "24,36", "--sims", "3", "--dropout", "0.3", "--workers", "1", "--no-progress")
    assert table.exit_code == 0 and "Smallest n reaching power 0.8" in table.stdout


def test_wilson_interval_contains_the_estimate_at_the_edges():
    from analysis.power.summary import wilson_interval

    k = np.full(5, 10.0)
    s = np.array([0.0, 1.0, 5.0, 9.0, 10.0])
    lo, hi = wilson_interval(s, k)
    p = s / k
    assert np.all(lo <= p) and np.all(p <= hi) and lo[0] == 0.0 and hi[-1] == 1.0
    # textbook value: 5/10 successes, 95% Wilson interval (0.2366, 0.7634)
    np.testing.assert_allclose([lo[2], hi[2]], [0.2366, 0.7634], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# decision rules, type-I error of the MMRM, Bayesian reproducibility, assurance and Dask via CLI
# ---------------------------------------------------------------------------------------------


def test_bayesian_decision_rules_by_hand():
    """Four Bayesian rows at one n: each rule's successes counted here by hand."""
    raw = pd.DataFrame({
        "n": 30, "sim": [0, 1, 2, 3], "site": "spine", "analysis": "bayes", "ok": [True, True, True, False],
        "q025": [0.5, -0.2, 3.0, 1.0], "q975": [4.0, 3.0, 6.0, 2.0], "p_gt_0": [0.999, 0.96, 1.0, 1.0],
        "p_lt_0": [0.001, 0.04, 0.0, 0.0], "rope": 2.4, "estimate": [2.0, 1.4, 4.5, 1.5], "lost_fraction": 0.4,
        "diag_passed": [True, True, False, True]})
    s = summarise(raw, prob=0.95).set_index("criterion")
    # P(diff > 0) > 0.95: rows 0, 1, 2 (row 3 failed, counted as no success)
    assert s.loc["P(diff > 0) > prob", "successes"] == 3
    # 95% CrI excludes 0: rows 0 and 2
    assert s.loc["95% CrI excludes 0", "successes"] == 2
    # outside the ROPE of +-2.4: row 2 only
    assert s.loc["95% CrI outside ROPE", "successes"] == 1
    assert summarise(raw, prob=0.97).set_index("criterion").loc["P(diff > 0) > prob", "successes"] == 2
    assert summarise(raw, rope=0.4).set_index("criterion").loc["95% CrI outside ROPE", "successes"] == 2
    assert s["diag_pass_rate"].iloc[0] == pytest.approx(0.75) and (s["failed"] == 1).all()


def test_type_one_error_of_the_mmrm_and_lmm_at_a_second_n():
    """As test_type_one_error_is_nominal for the MMRM's month-12 contrast (and the LMM), n = 90."""
    null = Design().with_updates(**{"spine.slope_responder_pct": -1.5, "spine.slope_nonresponder_pct": -1.5,
                                    "spine.slope_per_das28_improvement_pct": 0.0})
    k = 300
    res = run_power(PowerDesign(design=null, n=(90,), dropout=0.43), sims=k, seed=15, analyses=("mmrm", "lmm"),
                    workers=2)
    s = res.summary().set_index("analysis")
    tol = 3 * np.sqrt(0.05 * 0.95 / k)
    for a in ("mmrm", "lmm"):
        assert abs(s.loc[a, "power"] - 0.05) <= tol, (a, s.loc[a, "power"])


def test_bayesian_power_is_the_same_whatever_the_workers():
    settings = PowerSettings(**BAYES_FAST)
    kw = dict(sims=2, seed=6, analyses=("bayes",), settings=settings)
    one = run_power(PowerDesign(n=(30,), dropout=0.3), workers=1, **kw)
    two = run_power(PowerDesign(n=(30,), dropout=0.3), workers=2, chunk_size=1, **kw)
    pd.testing.assert_frame_equal(_no_timing(one.raw), _no_timing(two.raw))


def test_cli_assurance_from_a_saved_fit(power_cli, tmp_path, two_frames):
    from analysis.engine.sampling import sample
    from models.trajectory import build_trajectory_model

    fit = sample(build_trajectory_model(two_frames[0][["patient_id", "month", "bmd_spine", "responder"]], "spine"),
                 seed=3, cores=2, **BAYES_FAST)
    path = tmp_path / "prior.nc"
    fit.save(path)
    res = power_cli("--n", "24,36", "--sims", "3", "--analysis", "lmm", "--assurance", "--prior-fit", path,
                    "--workers", "1", "--json", "--no-progress")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "assurance" and {r["n"] for r in doc["summary"]} == {24, 36}
    missing = power_cli("--n", "24", "--assurance", "--prior-fit", tmp_path / "nope.nc", "--no-progress")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_cli_on_a_dask_cluster_equals_local(power_cli, dask_scheduler):
    args = ("--n", "24", "--sims", "4", "--analysis", "lmm", "--dropout", "0.3", "--json", "--no-progress",
            "--seed", "3")
    remote = power_cli(*args, "--scheduler", dask_scheduler)
    local = power_cli(*args, "--workers", "1")
    assert remote.exit_code == 0 and local.exit_code == 0, remote.output + local.output
    assert json.loads(remote.stdout)["summary"] == json.loads(local.stdout)["summary"]


def test_progress_bar_reports_every_study(capsys):
    run_power(PowerDesign(n=(24,), dropout=0.3), sims=3, seed=2, analyses=("lmm",), workers=1, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err


def test_design_prior_combine_pairs_sites_draw_by_draw():
    a = DesignPrior(pd.DataFrame({"spine.slope_sd_pct": [1.0, 2.0, 3.0]}), source="a")
    b = DesignPrior(pd.DataFrame({"femoral_neck.slope_sd_pct": [4.0, 5.0]}), source="b")
    c = DesignPrior.combine([a, b])
    assert c.draws.to_dict("list") == {"spine.slope_sd_pct": [1.0, 2.0], "femoral_neck.slope_sd_pct": [4.0, 5.0]}
    assert c.source == "a; b"
    with pytest.raises(ValueError, match="share columns"):
        DesignPrior.combine([a, a])


def test_cli_assurance_from_the_users_data_at_both_sites(power_cli, tmp_path):
    """--assurance --data FILE --generator cohort: the twin's design, the LMM fitted to the user's file at
    every site of the design, and each simulated study draws both sites' parameters from those
    posteriors (without --generator, --data sizes the next study from the file itself)."""
    path = tmp_path / "mine.csv"
    simulate(Design(n_patients=40), seed=8).data.to_csv(path, index=False)
    res = power_cli("--n", "24", "--sims", "2", "--analysis", "lmm", "--assurance", "--data", path,
                    "--generator", "cohort", "--site", "spine", "--site", "femoral_neck", "--workers", "1", "--json",
                    "--no-progress", "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "assurance" and {r["site"] for r in doc["summary"]} == {"spine", "femoral_neck"}
    raw = pd.read_parquet(tmp_path / "out" / "raw.parquet")
    assert {"prior.spine.slope_sd_pct", "prior.femoral_neck.slope_sd_pct"} <= set(raw.columns)
    assert "data: mine.csv" in res.stderr
    no = power_cli("--n", "24", "--data", path, "--generator", "cohort", "--no-progress")
    assert no.exit_code == 2 and "add --assurance" in no.stderr
