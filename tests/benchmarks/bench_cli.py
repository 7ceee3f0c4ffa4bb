"""Benchmark of the console commands a user times: ``rajak fit`` and ``rajak run`` (a script, not a test).

The data are the shipped RAJAK digital twin (SYNTHETIC). Every measurement is a fresh ``rajak``
process (the console script next to this interpreter), so the figures include interpreter start,
imports, compilation and writing, as a user sees them. It uses nothing but the command line, so the
same script measures any two versions of the package (before and after a restructure) on one
machine.

Prints, each as the median (and range) over ``--reps`` repetitions:

1. ``rajak fit --model lmm --site spine`` (4 chains x 1000 draws after 1000 tuning, seed 1) with an
   empty compile cache (a new ``RAJAK_CACHE_DIR``) and with a warm one;
2. ``rajak run`` with an empty cache and output root, and again with everything cached (a second
   run id into the same output root and cache);
3. a digest of the seeded fit's JSON estimands and of the run's tables, so that two versions can be
   checked to give the same numbers.

Environment switches the engine reads (``RAJAK_GRAPH_CACHE=0``, ``RAJAK_PARALLEL_COMPILE=0``) pass
through, so each speed trick can be measured on and off::

    .venv/bin/python tests/benchmarks/bench_cli.py
    .venv/bin/python tests/benchmarks/bench_cli.py --reps 3 --only fit
    RAJAK_GRAPH_CACHE=0 .venv/bin/python tests/benchmarks/bench_cli.py --only fit
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIT_ARGS = ["fit", "--model", "lmm", "--site", "spine", "--draws", "1000", "--tune", "1000",
            "--chains", "4", "--seed", "1", "--json"]


def _rajak() -> str:
    if os.environ.get("RAJAK_BENCH_EXE"):  # e.g. a wrapper running another checkout of the package
        return os.environ["RAJAK_BENCH_EXE"]
    exe = Path(sys.executable).parent / "rajak"
    if not exe.is_file():
        raise SystemExit(f"no rajak console script next to {sys.executable}; install the package first")
    return str(exe)


def _timed(args: list[str], cache: Path) -> tuple[float, str]:
    env = dict(os.environ, RAJAK_CACHE_DIR=str(cache), MPLBACKEND="Agg")
    env.pop("PYTENSOR_FLAGS", None)
    env.pop("NUMBA_CACHE_DIR", None)
    t0 = time.perf_counter()
    proc = subprocess.run([_rajak(), *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"rajak {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return wall, proc.stdout


def _estimand_digest(stdout: str) -> str:
    data = json.loads(stdout)
    rows = data.get("estimands", data)
    text = json.dumps(rows, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tables_digest(run_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted((run_dir / "tables").glob("*.csv")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} s  (range {min(values):.1f}-{max(values):.1f}, n={len(values)})"


def bench_fit(reps: int) -> None:
    cold, warm, digests = [], [], set()
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache"
            wall, out = _timed(FIT_ARGS, cache)
            cold.append(wall)
            digests.add(_estimand_digest(out))
            wall, out = _timed(FIT_ARGS, cache)
            warm.append(wall)
            digests.add(_estimand_digest(out))
    print(f"rajak fit, empty cache : {_fmt(cold)}")
    print(f"rajak fit, warm cache  : {_fmt(warm)}")
    print(f"rajak fit estimands digest: {', '.join(sorted(digests))} (one value: cold and warm identical)")


def bench_run(reps: int) -> None:
    cold, cached, digests = [], [], set()
    for i in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            cache, out = Path(tmp) / "cache", Path(tmp) / "outputs"
            wall, _ = _timed(["run", "--output-dir", str(out), "--run-id", "cold"], cache)
            cold.append(wall)
            digests.add(_tables_digest(out / "cold"))
            wall, _ = _timed(["run", "--output-dir", str(out), "--run-id", "cached"], cache)
            cached.append(wall)
            digests.add(_tables_digest(out / "cached"))
    print(f"rajak run, empty cache : {_fmt(cold)}")
    print(f"rajak run, all cached  : {_fmt(cached)}")
    print(f"rajak run tables digest: {', '.join(sorted(digests))} (one value: cold and cached identical)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", choices=["fit", "run"])
    a = ap.parse_args()
    print(f"rajak CLI benchmark on the embedded twin (SYNTHETIC), {os.cpu_count()} CPUs, "
          f"git {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}")
    if a.only in (None, "fit"):
        bench_fit(a.reps)
    if a.only in (None, "run"):
        bench_run(a.reps)


if __name__ == "__main__":
    main()
