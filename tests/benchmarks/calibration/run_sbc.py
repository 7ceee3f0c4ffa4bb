"""Simulation-based calibration (Talts et al. 2018) of the trajectory LMM and the Bayesian MMRM (benchmark).

Run on purpose (not part of the test suite; the suite runs a reduced form in
``tests/analysis/calibration/test_calibration_bayes.py``)::

    .venv/bin/python tests/benchmarks/calibration/run_sbc.py [--models lmm,mmrm] [--sims 200]
        [--ranks 99] [--draws 500] [--tune 500] [--chains 2] [--bins 10] [--seed 1] [--out outputs/sbc]

Per model it draws ``--sims`` parameter sets from the default prior, simulates a trial from each, refits
the model (compiled once) and writes to ``--out`` the ranks (``sbc_<model>_ranks.csv``), the chi-square
uniformity test per parameter (``sbc_<model>_uniformity.csv``) and the rank histograms
(``sbc_<model>_ranks.png``/``.svg``; :mod:`analysis.calibration.sbc`). It prints the uniformity table and
the cost. A p-value below 0.01 (after looking at the histogram: a U shape is an over-confident posterior,
a hump an over-dispersed one, a slope a bias) is a finding to report in docs/validation.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.calibration.sbc import SBC_MODELS, run_sbc  # noqa: E402

FULL = 200


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(SBC_MODELS), help=f"comma-separated, of {', '.join(SBC_MODELS)}")
    ap.add_argument("--sims", type=int, default=FULL)
    ap.add_argument("--ranks", type=int, default=99, help="L, thinned posterior draws per fit")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "sbc")
    args = ap.parse_args(argv)
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.perf_counter()
        res = run_sbc(model, args.sims, n_ranks=args.ranks, draws=args.draws, tune=args.tune, chains=args.chains,
                      seed=args.seed, bins=args.bins, out=args.out)
        secs = time.perf_counter() - t0
        failed = int(res.ranks.loc[res.ranks["error"].astype(str) != "", "simulation"].nunique())
        print(f"\n== SBC {model}: {args.sims} simulations, L = {args.ranks}, {failed} failed fits, "
              f"{secs:.1f} s ({secs / args.sims:.2f} s per simulation) ==")
        print(res.uniformity.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
