"""Benchmark of the trajectory LMM on twin-like data (a script, not a pytest test).

Data: timing (part 1) on the shipped RAJAK twin (synthetic; spine; 34 patients after the default
``last_observed`` strategy for undefined responder status); the geometry comparison (part 2) on
``tests/lmm_sim.py`` data with 46 patients, DXA at months 0/6/12, 43% monotone dropout.
Fits: nutpie, 4 chains x 1000 draws after 1000 tuning, 2 cores.

Prints

1. wall time of a fresh process (interpreter start to fitted result and diagnostics, leaving as the
   ``rajak`` console script does, without the interpreter's final deallocation) with a warm
   compile cache (target <= 5 s) and with an empty one (a temporary ``RAJAK_CACHE_DIR``,
   target <= 20 s); the fit's min bulk ESS (target >= 400), divergences (target 0) and the
   process's peak memory (``resource.getrusage``, target <= 1.5 GB);
2. the geometry comparison behind the default parameterisation: for each random-effect
   parameterisation (with and without nutpie's low-rank mass matrix) and for bambi's default
   model, the min bulk/tail ESS, max R-hat, divergences and E-BFMI over several data sets.

Usage::

    .venv/bin/python tests/benchmarks/bench_lmm.py            # both parts, seeds 0-4
    .venv/bin/python tests/benchmarks/bench_lmm.py --timing   # part 1 only
    .venv/bin/python tests/benchmarks/bench_lmm.py --geometry --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
N_PATIENTS, DROPOUT = 46, 0.43
SETTINGS = {"draws": 1000, "tune": 1000, "chains": 4, "cores": 2}
TARGETS = {"warm_s": 5.0, "cold_s": 20.0, "ess_bulk": 400, "divergences": 0, "peak_mb": 1536}


def _child_fit(seed: int) -> None:
    """One fit in this (fresh) process; prints a JSON line."""
    import resource

    t0 = time.perf_counter()
    import models  # noqa: F401  (compile caches first)
    from analysis.engine.sampling import sample
    from models.trajectory import build_trajectory_model
    from analysis.bayes.fit import analysis_frame
    from analysis.study.clinical import derive
    from analysis.study.data import load_twin

    t_import = time.perf_counter() - t0
    df, _ = analysis_frame(derive(load_twin().frame))  # the RAJAK twin (synthetic), as rajak fit sees it
    fit = sample(build_trajectory_model(df, "spine"), seed=seed, **SETTINGS)
    d = fit.diagnostics
    out = {
        "import_s": t_import,
        "compile_s": fit.timings["compile"],
        "sample_s": fit.timings["sample"],
        "fit_total_s": fit.timings["total"],
        "min_ess_bulk": d.min_ess_bulk,
        "min_ess_tail": d.min_ess_tail,
        "max_rhat": d.max_rhat,
        "divergences": d.n_divergences,
        "ebfmi_min": min(d.ebfmi),
        "passed": d.passed,
        "compile_path": fit.settings["compile_path"],
        "compile_helper": fit.settings["compile_helper"],
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print("RESULT " + json.dumps(out), flush=True)


def _run_child(seed: int, cache_dir: str | None) -> tuple[float, dict]:
    env = dict(os.environ)
    if cache_dir is not None:
        env["RAJAK_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child-fit", "--seed", str(seed)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(lines[-1][7:])


def _fmt(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def timing(repeats: int = 3) -> None:
    print("== 1. fresh-process wall time, twin-like data (46 patients), 4 x 1000 after 1000 ==")
    _run_child(0, None)  # warm the project cache (and the OS file cache)
    warm = [_run_child(0, None) for _ in range(repeats)]
    walls = [w for w, _ in warm]
    res = warm[-1][1]
    w_med = statistics.median(walls)
    print(
        f"warm cache : wall {w_med:.2f} s median of {repeats} ({', '.join(f'{w:.2f}' for w in walls)})"
        f"  [target <= {TARGETS['warm_s']} s: {_fmt(w_med <= TARGETS['warm_s'])}]"
    )
    print(
        f"             import {res['import_s']:.2f} s, compile {res['compile_s']:.2f} s, "
        f"sampling {res['sample_s']:.2f} s ({res['compile_path']})"
    )
    rajak = Path(sys.executable).parent / "rajak"
    if rajak.is_file():  # the user's path: the console script, which also loads, summarises, prints
        cli = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([str(rajak), "fit", "--model", "lmm", "--site", "spine", "--seed", "0"], cwd=ROOT,
                           capture_output=True, check=True)
            cli.append(time.perf_counter() - t0)
        c_med = statistics.median(cli)
        print(f"rajak fit  : wall {c_med:.2f} s median of {repeats} ({', '.join(f'{w:.2f}' for w in cli)})"
              f"  [target <= {TARGETS['warm_s']} s: {_fmt(c_med <= TARGETS['warm_s'])}]")
    with tempfile.TemporaryDirectory(prefix="rajak-cold-") as tmp:
        c_wall, cold = _run_child(0, tmp)
    print(
        f"empty cache: wall {c_wall:.2f} s (compile {cold['compile_s']:.2f} s, expand callback compiled "
        f"by a forked child: {cold['compile_helper']})"
        f"  [target <= {TARGETS['cold_s']} s: {_fmt(c_wall <= TARGETS['cold_s'])}]"
    )
    if rajak.is_file():
        with tempfile.TemporaryDirectory(prefix="rajak-cold-") as tmp:
            t0 = time.perf_counter()
            subprocess.run([str(rajak), "fit", "--model", "lmm", "--site", "spine", "--seed", "0"], cwd=ROOT,
                           env={**os.environ, "RAJAK_CACHE_DIR": tmp}, capture_output=True, check=True)
            c_cli = time.perf_counter() - t0
        print(f"rajak fit, empty cache: wall {c_cli:.2f} s"
              f"  [target <= {TARGETS['cold_s']} s: {_fmt(c_cli <= TARGETS['cold_s'])}]")
    peak = max(res["peak_mb"], cold["peak_mb"])
    print(
        f"fit        : min bulk ESS {res['min_ess_bulk']:.0f} [>= {TARGETS['ess_bulk']}: "
        f"{_fmt(res['min_ess_bulk'] >= TARGETS['ess_bulk'])}], min tail ESS {res['min_ess_tail']:.0f}, "
        f"max R-hat {res['max_rhat']:.3f}, divergences {res['divergences']} "
        f"[{_fmt(res['divergences'] <= TARGETS['divergences'])}], min E-BFMI {res['ebfmi_min']:.2f}, "
        f"verdict {'PASS' if res['passed'] else 'FAIL'}"
    )
    print(
        f"memory     : peak RSS {res['peak_mb']:.0f} MB warm, {cold['peak_mb']:.0f} MB cold "
        f"[<= {TARGETS['peak_mb']} MB: {_fmt(peak <= TARGETS['peak_mb'])}]"
    )


CONFIGS = [
    ("marginal", False),
    ("centred_intercept", False),
    ("centred_intercept", True),
    ("centred", False),
    ("noncentred", False),
    ("noncentred", True),
    ("bambi", False),
    ("bambi", True),
]


def geometry(seeds: int = 5) -> dict[str, dict[str, float]]:
    import models  # noqa: F401
    from analysis.bayes.formula import bambi_lmm
    from analysis.engine.sampling import sample
    from models.trajectory import build_trajectory_model
    from tests.lmm_sim import simulate_lmm

    print(f"\n== 2. geometry, seeds 0-{seeds - 1}, nutpie 4 x 1000 after 1000 ==")
    print(
        f"{'parameterisation':<28}{'min bulk':>9}{'med bulk':>9}{'min tail':>9}{'max R-hat':>10}"
        f"{'div':>5}{'min BFMI':>9}{'pass':>6}{'sample s':>9}"
    )
    data = [simulate_lmm(N_PATIENTS, dropout=DROPOUT, seed=s) for s in range(seeds)]
    table = {}
    for param, low_rank in CONFIGS:
        rows = []
        for seed, df in enumerate(data):
            model = bambi_lmm(df) if param == "bambi" else build_trajectory_model(df, "spine", parameterisation=param)
            fit = sample(model, seed=seed, low_rank=low_rank, **SETTINGS)
            rows.append((fit.diagnostics, fit.timings["sample"]))
        d = [r[0] for r in rows]
        name = ("bambi default" if param == "bambi" else param) + (" + low_rank" if low_rank else "")
        summary = {
            "min_ess_bulk": min(x.min_ess_bulk for x in d),
            "median_min_ess_bulk": statistics.median(x.min_ess_bulk for x in d),
            "min_ess_tail": min(x.min_ess_tail for x in d),
            "max_rhat": max(x.max_rhat for x in d),
            "divergences": sum(x.n_divergences for x in d),
            "min_ebfmi": min(min(x.ebfmi) for x in d),
            "passed": sum(x.passed for x in d),
            "sample_s": statistics.median(r[1] for r in rows),
        }
        table[name] = summary
        print(
            f"{name:<28}{summary['min_ess_bulk']:>9.0f}{summary['median_min_ess_bulk']:>9.0f}"
            f"{summary['min_ess_tail']:>9.0f}{summary['max_rhat']:>10.3f}{summary['divergences']:>5}"
            f"{summary['min_ebfmi']:>9.2f}{summary['passed']:>4}/{seeds}{summary['sample_s']:>9.2f}",
            flush=True,
        )
    print("(ESS / R-hat over the reported variables incl. patient effects; bambi: all its variables)")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--timing", action="store_true", help="fresh-process timings only")
    parser.add_argument("--geometry", action="store_true", help="parameterisation comparison only")
    parser.add_argument("--seeds", type=int, default=5, help="data sets in the geometry comparison")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-fit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_fit:
        _child_fit(args.seed)
        # leave as the rajak console script does (analysis.cli.main): the result is out, so skip the
        # interpreter's final deallocation of the PyMC/PyTensor/numba objects (~1.5 s)
        from analysis.engine.process_exit import fast_exit as _fast_exit

        _fast_exit(0)
    both = not (args.timing or args.geometry)
    if args.timing or both:
        timing()
    if args.geometry or both:
        geometry(args.seeds)


if __name__ == "__main__":
    main()
