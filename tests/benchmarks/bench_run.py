"""Benchmark of ``rajak run`` with defaults on the embedded twin (a script, not a pytest test).

The data are the shipped RAJAK digital twin (SYNTHETIC). Each run is a fresh ``rajak run`` process
(the console script of this checkout's venv) with its run directory under a temporary output root.

Prints

1. wall time from an empty cache: a new ``RAJAK_CACHE_DIR`` (no PyTensor/numba/graph caches) and
   a new output root (no saved fits) -- target <= 5 min on 2 cores;
2. wall time with everything cached: a second run (another run id) into the same output root and
   cache -- target <= 20 s;
3. the per-stage timings the run writes into its ``manifest.json``, and whether the two runs'
   tables and figure files are identical (they must be: same data, configuration and seed).

Usage::

    .venv/bin/python tests/benchmarks/bench_run.py
    .venv/bin/python tests/benchmarks/bench_run.py --keep DIR   # keep the run directories in DIR
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"cold_s": 300.0, "cached_s": 20.0}


def _rajak() -> str:
    exe = Path(sys.executable).parent / "rajak"
    if not exe.is_file():
        raise SystemExit(f"no rajak console script next to {sys.executable}; install the package first")
    return str(exe)


def _run(out_root: Path, cache: Path, run_id: str) -> tuple[float, dict]:
    env = dict(os.environ, RAJAK_CACHE_DIR=str(cache), MPLBACKEND="Agg")
    env.pop("PYTENSOR_FLAGS", None)
    env.pop("NUMBA_CACHE_DIR", None)
    t0 = time.perf_counter()
    proc = subprocess.run([_rajak(), "run", "--output-dir", str(out_root), "--run-id", run_id],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"rajak run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    manifest = json.loads((out_root / run_id / "manifest.json").read_text())
    return wall, manifest


def _stage_line(manifest: dict) -> str:
    timings = manifest.get("timings", {})
    return ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if isinstance(v, int | float))


def _same_files(a: Path, b: Path, sub: str = "tables", pattern: str = "*.csv") -> tuple[bool, list[str]]:
    names = sorted(p.name for p in (a / sub).glob(pattern))
    differ = [n for n in names if not filecmp.cmp(a / sub / n, b / sub / n, shallow=False)]
    missing = sorted({p.name for p in (b / sub).glob(pattern)} ^ set(names))
    return not differ and not missing, differ + missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="keep the output root and caches in this directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rajak-bench-run-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    out_root, cache = work / "outputs", work / "cache"
    try:
        print(f"== rajak run, defaults, embedded twin (SYNTHETIC), {os.cpu_count()} cores ==")
        cold_wall, cold = _run(out_root, cache, "cold")
        ok = cold_wall <= TARGETS["cold_s"]
        print(f"empty cache : wall {cold_wall:7.1f} s  [target <= {TARGETS['cold_s']:.0f} s: "
              f"{'ok' if ok else 'MISSED'}]")
        print(f"              stages (s): {_stage_line(cold)}")
        warm_wall, warm = _run(out_root, cache, "cached")
        ok = warm_wall <= TARGETS["cached_s"]
        print(f"all cached  : wall {warm_wall:7.1f} s  [target <= {TARGETS['cached_s']:.0f} s: "
              f"{'ok' if ok else 'MISSED'}]")
        print(f"              stages (s): {_stage_line(warm)}")
        same, differ = _same_files(out_root / "cold", out_root / "cached")
        print(f"tables identical between the two runs: {same}" + (f" (differ: {', '.join(differ)})" if differ else ""))
        same, differ = _same_files(out_root / "cold", out_root / "cached", "figures", "*.*")
        print(f"figures identical between the two runs: {same}" + (f" (differ: {', '.join(differ)})" if differ else "")
              + f"; cached run's figure cache: {warm.get('figure_cache')}")
        hits = warm.get("fit_cache", {})
        if hits:
            print(f"fit cache entries reported by the cached run: {len(hits)}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
