"""Benchmark of the power / assurance simulations (a script, not a pytest test).

Prints

1. the per-study Bayesian refit time: the trajectory LMM built and compiled once
   (:class:`analysis.engine.refit.Refitter`), then refitted to twin-like studies (46 patients, 43% MAR
   dropout, groups derived from DAS28-CRP) at 4 chains x 1000 draws after 1000 tuning steps,
   2 cores (target <= 0.25 s), with the time spent inside nutpie's sampler, a check that the
   estimates change between data sets, and the diagnostics of every refit;
2. 1000 studies with the Bayesian analysis through ``run_power`` on 2 local worker processes
   (target <= 6 min) and 1000 with the frequentist LMM (target <= 60 s), wall time including
   worker start-up and compilation;
3. how the per-study cost grows with n from 20 to 500 (one process: simulate + analysis frame +
   LMM fit; simulate + frame + Bayesian refit with 1 core);
4. with ``--closed-form``: simulated LMM power vs the Liu & Liang closed form (Gaussian generator,
   no dropout) at several n, with Monte-Carlo SEs.

Usage::

    .venv/bin/python tests/benchmarks/bench_power.py                 # everything
    .venv/bin/python tests/benchmarks/bench_power.py --part refit --part scaling
    .venv/bin/python tests/benchmarks/bench_power.py --studies 200   # smaller part 2
    .venv/bin/python tests/benchmarks/bench_power.py --studies 20 --reps 3 --ns 20,100   # smoke test
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

import models  # noqa: E402,F401  (compile caches before pymc)
from analysis.power import BayesRefitter, PowerDesign, closed_form_power, power_frame, run_power  # noqa: E402
from models.simulate import Design, simulate  # noqa: E402

TARGETS = {"refit_s": 0.25, "bayes_1000_s": 360.0, "lmm_1000_s": 60.0}
TWIN_LIKE = PowerDesign(n=(46,), dropout=0.43)


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average n/a"


def part_refit(reps: int) -> None:
    print(f"\n== 1. per-study Bayesian refit (4 chains x 1000 draws, 1000 tune, 2 cores; {_load()}) ==")
    design = TWIN_LIKE.resolved().design
    frames = [power_frame(simulate(design.with_updates(n_patients=46), 1000 + i).data, "spine") for i in range(reps + 1)]
    r = BayesRefitter("spine", draws=1000, tune=1000, chains=4, cores=2)
    t0 = time.perf_counter()
    first = r.fit(frames[0], seed=1)
    print(f"first fit (build + compile {first.compile_seconds:.2f} s + sample): {time.perf_counter() - t0:.2f} s")
    total, cpu, sampling, estimates, post_sd, passed, failures = [], [], [], [], [], 0, []
    for i, f in enumerate(frames[1:]):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = r.fit(f, seed=7)  # one seed for every data set: different estimates can only come from the data
        total.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        sampling.append(fit.sample_seconds)
        x = fit.draws["diff_pct_change_12m"]
        estimates.append(float(x.mean()))
        post_sd.append(float(x.std()))
        passed += fit.diagnostics.passed
        if not fit.diagnostics.passed:
            failures.append(f"data set {i + 1}: " + "; ".join(fit.diagnostics.failures))
    med, med_cpu, s_med = statistics.median(total), statistics.median(cpu), statistics.median(sampling)
    rest = med - s_med
    distinct = len(set(round(e, 9) for e in estimates))
    print(f"refit: wall median {med:.3f} s (mean {statistics.mean(total):.3f}, min {min(total):.3f}) over {reps} "
          f"data sets; CPU median {med_cpu:.3f} s; compiles after the first: "
          f"{r.n_compiles - 1 if r.n_compiles else 0}")
    print(f"  inside nutpie.sample: wall median {s_med:.3f} s; the rest (data swap, cache look-up, Arrow "
          f"extraction, diagnostics): {rest * 1000:.1f} ms")
    print(f"  target <= {TARGETS['refit_s']} s per refit (measured median wall): "
          f"{'PASS' if med <= TARGETS['refit_s'] else 'MISS'}")
    spread = statistics.pstdev(estimates) if len(estimates) > 1 else float("nan")
    print(f"  estimates change between data sets (same sampler seed for all): {distinct} distinct posterior means "
          f"of the responder - non-responder difference in {len(estimates)} refits (SD across data sets {spread:.2f} pp, mean "
          f"posterior SD {statistics.mean(post_sd):.2f} pp): {'OK' if distinct == len(estimates) else 'FAIL'}")
    print(f"  diagnostics per refit: passed {passed}/{reps}" + ("" if not failures else "; " + " | ".join(failures[:5])))


def part_studies(studies: int) -> None:
    print(f"\n== 2. {studies} studies on 2 local worker processes (twin-like, n = 46; {_load()}) ==")
    for analyses, target_key in ((("lmm",), "lmm_1000_s"), (("bayes",), "bayes_1000_s")):
        t0 = time.perf_counter()
        res = run_power(TWIN_LIKE, sims=studies, seed=2025, analyses=analyses, workers=2, progress=False)
        wall = time.perf_counter() - t0
        target = TARGETS[target_key] * studies / 1000
        s = res.summary()
        extra = ""
        if "bayes" in analyses:
            extra = f", diagnostics passed {res.raw['diag_passed'].astype(float).mean():.1%}"
        print(f"{analyses[0]:>5}: {wall:7.1f} s wall ({wall / studies * 1000:.0f} ms per study; target "
              f"<= {target:.0f} s: {'PASS' if wall <= target else 'MISS'}); failed fits {int((~res.raw['ok']).sum())}"
              f"{extra}")
        print("       " + "; ".join(f"{r.criterion}: {r.power:.3f} (SE {r.mc_se:.3f})" for r in s.itertuples()))


def part_scaling(reps: int, ns: list[int]) -> None:
    print(f"\n== 3. per-study cost vs n (one process; {_load()}) ==")
    from analysis.power.analyses import lmm_row

    design = TWIN_LIKE.resolved().design
    r = BayesRefitter("spine", draws=1000, tune=1000, chains=4, cores=1)
    r.fit(power_frame(simulate(design.with_updates(n_patients=46), 0).data, "spine"), seed=0)  # compile
    print(f"{'n':>5} {'simulate+frame':>15} {'LMM fit':>9} {'LMM study':>10} {'Bayes refit (1 core)':>21} "
          f"{'of which sampling':>18}")
    for n in ns:
        sim_t, lmm_t, bay_t, bay_s = [], [], [], []
        for i in range(reps):
            t0 = time.perf_counter()
            f = power_frame(simulate(design.with_updates(n_patients=n), 10 * n + i).data, "spine")
            t1 = time.perf_counter()
            lmm_row(f)
            t2 = time.perf_counter()
            sim_t.append(t1 - t0)
            lmm_t.append(t2 - t1)
            if i < max(2, reps // 3):
                t3 = time.perf_counter()
                bay_s.append(r.fit(f, seed=i).sample_seconds)
                bay_t.append(time.perf_counter() - t3)
        print(f"{n:>5} {statistics.median(sim_t) * 1000:>12.1f} ms {statistics.median(lmm_t) * 1000:>6.1f} ms "
              f"{(statistics.median(sim_t) + statistics.median(lmm_t)) * 1000:>7.1f} ms "
              f"{statistics.median(bay_t):>19.3f} s {statistics.median(bay_s):>16.3f} s")


def part_closed_form(sims: int) -> None:
    print(f"\n== 4. simulated LMM power vs closed form (Gaussian generator, no dropout, {sims} studies per n) ==")
    d = Design(responder_fraction=0.5).with_updates(**{"spine.slope_responder_pct": -1.6,
                                                       "spine.slope_nonresponder_pct": -2.4})
    design = PowerDesign(design=d, n=(40, 100, 160, 200, 300, 400), generator="gaussian")
    res = run_power(design, sims=sims, seed=31, analyses=("lmm",), workers=2, progress=False)
    s = res.summary()
    for (_, row), cf in zip(s.iterrows(), closed_form_power(design)):
        z = (row["power"] - cf) / np.sqrt(cf * (1 - cf) / sims)
        print(f"n = {row['n']:>4}: simulated {row['power']:.3f} (MC SE {row['mc_se']:.3f}), closed form {cf:.3f}, "
              f"z = {z:+.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", action="append", choices=["refit", "studies", "scaling", "closed-form"])
    ap.add_argument("--reps", type=int, default=20, help="data sets for parts 1 and 3")
    ap.add_argument("--studies", type=int, default=1000, help="studies in part 2")
    ap.add_argument("--ns", default="20,50,100,200,500", help="sample sizes of part 3")
    ap.add_argument("--closed-form", action="store_true", help="also run part 4")
    ap.add_argument("--cf-sims", type=int, default=1000)
    args = ap.parse_args()
    parts = args.part or ["refit", "studies", "scaling"] + (["closed-form"] if args.closed_form else [])
    print(f"rajak power benchmark: {os.cpu_count()} CPUs, {_load()}")
    if "refit" in parts:
        part_refit(args.reps)
    if "studies" in parts:
        part_studies(args.studies)
    if "scaling" in parts:
        part_scaling(max(3, args.reps // 4), [int(v) for v in args.ns.split(",")])
    if "closed-form" in parts:
        part_closed_form(args.cf_sims)


if __name__ == "__main__":
    main()
