"""The full calibration study of issue #19: every registered estimator x 200 data sets (benchmark).

Run on purpose (not part of the test suite; the suite runs a reduced form in
``tests/analysis/calibration/test_calibration_reduced.py``)::

    .venv/bin/python tests/benchmarks/calibration/run_calibration.py [--datasets 200] [--workers 2]
        [--out outputs/calibration] [--seed 1] [--estimators a,b] [--scheduler tcp://HOST:PORT]

It is ``rajak validate-methods`` with the study's defaults, resumable in ``--out`` (rerun the same
command after an interruption), and prints per estimator the cost: seconds per data set, the CPU
seconds this run spent on it, and the projected cost of 200 data sets. Target: the whole study
within 3 hours on 2 cores. Copy ``--out``/calibration.md into docs/validation.md with the date.

Measured 2026-12-07 (seed 1, 2 workers, 2 cores): all 29 estimators x 200 data sets in 12,642 CPU s,
wall time 6,335 s (1 h 46 min); the selection-model rows 31 and 13 s per data set, the other 27 rows
3,760 CPU s together.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.calibration import estimator_names, run_calibration  # noqa: E402

FULL = 200
BUDGET_S = 3 * 3600


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=FULL)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "calibration")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--estimators", default=None, help="comma-separated (default: all registered)")
    ap.add_argument("--scheduler", default=None)
    ap.add_argument("--chunk-size", type=int, default=10)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.estimators.split(",")] if args.estimators else estimator_names()
    command = (f"python tests/benchmarks/calibration/run_calibration.py --datasets {args.datasets} --seed {args.seed}"
               + (f" --estimators {','.join(names)}" if args.estimators else ""))
    t0 = time.perf_counter()
    res = run_calibration(names, datasets=args.datasets, seed=args.seed, out=args.out, workers=args.workers,
                          scheduler=args.scheduler, chunk_size=args.chunk_size, command=command)
    wall = time.perf_counter() - t0
    raw = res.raw.assign(cost=res.raw["fit_seconds"] + res.raw["simulate_seconds"] + res.raw["setup_seconds"])
    cost = raw.groupby("estimator", sort=False)["cost"].agg(["mean", "sum"])
    print(res.markdown())
    print(f"cost per estimator (CPU seconds; projected for {FULL} data sets):")
    for name, row in cost.iterrows():
        print(f"  {name:26s} {row['mean']:7.3f} s/data set  {row['sum']:8.1f} s in these rows  "
              f"{row['mean'] * FULL:8.1f} s for {FULL}")
    total = float(cost["mean"].sum() * FULL)
    print(f"projected full study: {total:.0f} CPU s, {total / max(args.workers, 1):.0f} s on {args.workers} workers "
          f"(budget {BUDGET_S} s on 2 cores); this run's wall time {wall:.1f} s; outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
