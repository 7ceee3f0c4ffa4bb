"""Benchmark: parameter recovery and 95% interval coverage of the Bayesian trajectory LMM over many
data sets simulated with known truth (tests/lmm_sim.py), one compiled model reused throughout.

Run on purpose (not by pytest):  .venv/bin/python tests/benchmarks/bench_coverage.py --datasets 200
Prints, per quantity: coverage of the 95% ETI with its Monte-Carlo SE, mean bias, mean interval width.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import models  # noqa: E402,F401  (compile caches before pymc)
from analysis.engine.sampling import sample  # noqa: E402
from models.trajectory import build_trajectory_model  # noqa: E402
from tests.lmm_sim import LMMTruth, simulate_lmm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", type=int, default=200)
    ap.add_argument("--patients", type=int, default=46)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=2025)
    args = ap.parse_args()

    truth = LMMTruth()
    targets = {
        "b[time]": truth.b1, "b[time:responder]": truth.b3,
        "change_12m[non-responder]": truth.change_12m[0], "change_12m[responder]": truth.change_12m[1],
        "pct_change_12m[non-responder]": 100 * truth.change_12m[0] / truth.baseline_mean[0],
        "sd_patient[slope]": truth.sd_u1, "sigma": truth.sigma,
    }
    hits = {k: [] for k in targets}
    bias = {k: [] for k in targets}
    width = {k: [] for k in targets}
    tm = None
    passed = 0
    t0 = time.perf_counter()
    for i in range(args.datasets):
        df = simulate_lmm(args.patients, truth, dropout=0.43, seed=args.seed + i)
        if tm is None:
            tm = build_trajectory_model(df, "spine")
        else:
            tm.set_data(df)
        fit = sample(tm, draws=args.draws, tune=args.draws, chains=args.chains, seed=i)
        passed += fit.passed
        post = fit.posterior["posterior"]
        for key, true in targets.items():
            name, _, coord = key.partition("[")
            da = post[name]
            if coord:
                dim = [d for d in da.dims if d not in ("chain", "draw")][0]
                da = da.sel({dim: coord.rstrip("]")})
            x = da.values.ravel()
            lo, hi = np.quantile(x, [0.025, 0.975])
            hits[key].append(lo <= true <= hi)
            bias[key].append(np.median(x) - true)
            width[key].append(hi - lo)
    wall = time.perf_counter() - t0
    n = args.datasets
    print(f"trajectory LMM, {n} data sets of {args.patients} patients (43% dropout), "
          f"{args.chains} chains x {args.draws} draws; {wall:.0f} s, {wall / n:.2f} s per fit; "
          f"diagnostics passed {passed}/{n}")
    print(f"{'quantity':32s} {'coverage':>9s} {'MC SE':>7s} {'mean bias':>11s} {'mean width':>11s}")
    for key in targets:
        c = float(np.mean(hits[key]))
        print(f"{key:32s} {c:9.3f} {np.sqrt(c * (1 - c) / n):7.3f} {np.mean(bias[key]):11.5f} {np.mean(width[key]):11.5f}")


if __name__ == "__main__":
    main()
