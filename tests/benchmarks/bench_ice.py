"""Benchmark of the ICE-strategy imputation (issue #17): speed of the conditional-mean jackknife and
coverage under a jump-to-reference truth.

Run on purpose (not part of the test suite)::

    .venv/bin/python tests/benchmarks/bench_ice.py [--reps 500] [--n 200]

1. Speed: the conditional-mean jackknife (n + 1 REML fits of the rbmi imputation MMRM, conditional
   means, ANCOVA at each visit) on a 200-patient, 5-visit trial; target <= 10 s on 2 cores.
2. Coverage: trials simulated under J2R with MCAR events (:mod:`models.simulate_ice`, known truth
   :math:`(1 - h)^j (\\mu_{1j} - \\mu_{0j})`); the 95% intervals of the conditional-mean jackknife
   and bootstrap should cover at 93-97%, Rubin's rules (approximate Bayesian MI) over-cover.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

from analysis.sensitivity.ice.analysis_models import ancova
from analysis.sensitivity.ice.methods import MethodSettings, run_method
from analysis.sensitivity.ice.patients import IcePatients
from models.simulate_ice import IceTruth, simulate_ice_trial, true_effect

FIVE = IceTruth(months=(3.0, 6.0, 9.0, 12.0, 18.0),
                mean={0: (-0.003, -0.006, -0.009, -0.012, -0.018), 1: (0.004, 0.008, 0.012, 0.016, 0.024)},
                gamma=(-0.01, -0.015, -0.02, -0.025, -0.03), sd=(0.010, 0.012, 0.014, 0.016, 0.020),
                hazard={0: 0.05, 1: 0.08})


def patients(sim: dict, strategy: str = "JR") -> IcePatients:
    return IcePatients.from_simulation(sim, strategy)


def analyse(p: IcePatients, method: str, n_samples: int = 100):
    fn = partial(ancova, months=p.data.months, levels=p.data.levels)
    return run_method(method, [p], lambda y, g, c: fn(y, g, c),
                      MethodSettings(n_samples=n_samples, imputation_model="rbmi", seed=1)).pooled[p.label]


def speed(n: int) -> None:
    sim = simulate_ice_trial(n, FIVE, seed=1)
    p = patients(sim)
    analyse(p, "condmean_jackknife")  # warm-up (imports)
    t = time.perf_counter()
    out = analyse(p, "condmean_jackknife")
    dt = time.perf_counter() - t
    key = "trt_active_18"
    print(f"speed: condmean jackknife, n = {n}, 5 visits, {int((sim['ice_index'] < 5).sum())} ICEs: {dt:.2f} s "
          f"({n + 1} REML fits; target <= 10 s); {key} = {out[key].estimate:.5f} (SE {out[key].se:.5f})")


def coverage(reps: int, n: int) -> None:
    truth = IceTruth()
    theta = true_effect(truth, "J2R")[-1]
    key = f"trt_active_{truth.months[-1]:g}"
    methods = {"condmean_jackknife": "condmean_jackknife", "condmean_bootstrap": "condmean_bootstrap",
               "approx_bayes (Rubin)": "approx_bayes"}
    hits = {k: [] for k in methods}
    ses = {k: [] for k in methods}
    ests = []
    t0 = time.perf_counter()
    for r in range(reps):
        p = patients(simulate_ice_trial(n, truth, seed=1000 + r))
        for label, method in methods.items():
            pooled = analyse(p, method, n_samples=100 if method == "condmean_bootstrap" else 30)
            res = pooled.get(key) or pooled[f"{key}|normal"]
            hits[label].append(res.ci_low <= theta <= res.ci_high)
            ses[label].append(res.se)
            if label == "condmean_jackknife":
                ests.append(res.estimate)
    dt = time.perf_counter() - t0
    emp = float(np.std(ests, ddof=1))
    print(f"coverage under J2R truth: {reps} trials of n = {n}, truth {theta:.5f} at month {truth.months[-1]:g}; "
          f"bias {np.mean(ests) - theta:+.5f}, empirical SE {emp:.5f}; {dt:.0f} s")
    for label in methods:
        c = float(np.mean(hits[label]))
        mcse = np.sqrt(c * (1 - c) / reps)
        print(f"  {label:24s} coverage {100 * c:5.1f}% (MCSE {100 * mcse:.1f}), mean SE {np.mean(ses[label]):.5f} "
              f"(ratio to empirical {np.mean(ses[label]) / emp:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    speed(args.n)
    coverage(args.reps, args.n)


if __name__ == "__main__":
    main()
