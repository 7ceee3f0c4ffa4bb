"""Benchmark of the REML fits (a script, not a pytest test): ``fit_lmm`` and ``fit_mmrm``.

Data: ``tests/analysis/frequentist/fixtures/bmd_small.csv`` (the R-reference fixture) and 500
simulated patients with DXA at months 0/6/12 and 10% dropout per visit
(``fixtures/make_fixture_data.py``, seed 5). Model ``bmd ~ month * responder + age`` (the LMM with a
random intercept and slope, the MMRM with unstructured covariance), Satterthwaite df.

Prints the best of ``--repeats`` wall times per fit after one warm-up fit, next to the targets the
test-suite used to assert (small data <= 0.1 s, 500 patients <= 1 s).

Usage::

    .venv/bin/python tests/benchmarks/bench_frequentist.py
    .venv/bin/python tests/benchmarks/bench_frequentist.py --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

FIXTURES = Path(__file__).resolve().parents[1] / "analysis" / "frequentist" / "fixtures"
FORMULA = "bmd ~ month * responder + age"
TARGETS = {"small": 0.1, "500 patients": 1.0}


def _simulate(n: int) -> pd.DataFrame:
    """The fixtures' simulator (loaded from its script, as the tests' conftest does)."""
    spec = importlib.util.spec_from_file_location("_bmd_fixture_data", FIXTURES / "make_fixture_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simulate(n, [0, 6, 12], seed=5, p_drop=0.1)


def _best(fit: Callable[[pd.DataFrame, str], object], data: pd.DataFrame, repeats: int) -> float:
    """Best wall time of ``repeats`` fits (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit(data, FORMULA)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fits per timing (best is reported)")
    args = parser.parse_args()

    from analysis.frequentist.lmm import fit_lmm
    from analysis.frequentist.mmrm import fit_mmrm

    data = {"small": pd.read_csv(FIXTURES / "bmd_small.csv"), "500 patients": _simulate(500)}
    print(f"{'fit':<10} {'data':<14} {'best s':>8} {'target s':>9}")
    for name, fit in (("fit_lmm", fit_lmm), ("fit_mmrm", fit_mmrm)):
        fit(data["small"], FORMULA)  # warm-up: imports, caches
        for label, frame in data.items():
            print(f"{name:<10} {label:<14} {_best(fit, frame, args.repeats):>8.3f} {TARGETS[label]:>9.1f}")


if __name__ == "__main__":
    main()
