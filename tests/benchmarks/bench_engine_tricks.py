"""What each private-API speed trick of the engine saves (a script, not a test).

For the baseline (every trick on) and for each trick switched off by its environment variable,
times ``rajak fit`` (empty and warm compile cache) and ``rajak run`` (empty cache, everything
cached) on the embedded twin (SYNTHETIC), each a fresh console-script process (see
``bench_cli.py``), and prints one row per setting with the seeded fit's estimand digest (it must not
change: no trick changes a number).

Tricks and their switches (``analysis/engine/__init__`` documents each):

- ``RAJAK_NUTPIE_CACHE=0``: nutpie's own ``compile_pymc_model`` instead of the disk-cacheable
  callbacks (which also switches off the graph cache and the compile helper below);
- ``RAJAK_GRAPH_CACHE=0``: no disk cache of nutpie's rewritten PyTensor functions;
- ``RAJAK_PARALLEL_COMPILE=0``: no forked child compiling the expand callback;
- ``RAJAK_NUMBA_OVERRIDES=0``: PyTensor's own numba ``Alloc`` for 0-d values;
- ``RAJAK_LAZY_IMPORTS=0``: nutpie imported with the full arviz meta-package (matplotlib);
- ``RAJAK_FAST_EXIT=0``: the interpreter's normal shutdown.

Usage::

    .venv/bin/python tests/benchmarks/bench_engine_tricks.py                 # fit and run, 2 reps
    .venv/bin/python tests/benchmarks/bench_engine_tricks.py --only fit --reps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cli  # noqa: E402

SWITCHES = ("", "RAJAK_NUTPIE_CACHE=0", "RAJAK_GRAPH_CACHE=0", "RAJAK_PARALLEL_COMPILE=0",
            "RAJAK_NUMBA_OVERRIDES=0", "RAJAK_LAZY_IMPORTS=0", "RAJAK_FAST_EXIT=0")


def _with_env(switch: str):
    saved = dict(os.environ)
    if switch:
        k, v = switch.split("=", 1)
        os.environ[k] = v
    return saved


def _fit(reps: int) -> tuple[list[float], list[float], set[str]]:
    cold, warm, digests = [], [], set()
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache"
            for bucket in (cold, warm):
                wall, out = bench_cli._timed(bench_cli.FIT_ARGS, cache)
                bucket.append(wall)
                digests.add(bench_cli._estimand_digest(out))
    return cold, warm, digests


def _run(reps: int) -> tuple[list[float], list[float]]:
    cold, cached = [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            cache, out = Path(tmp) / "cache", Path(tmp) / "outputs"
            cold.append(bench_cli._timed(["run", "--output-dir", str(out), "--run-id", "a"], cache)[0])
            cached.append(bench_cli._timed(["run", "--output-dir", str(out), "--run-id", "b"], cache)[0])
    return cold, cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", choices=["fit", "run"])
    ap.add_argument("--switch", action="append", help="Only these settings (e.g. RAJAK_GRAPH_CACHE=0; '' = baseline).")
    a = ap.parse_args()
    med = statistics.median
    print(f"engine tricks on the embedded twin (SYNTHETIC), {os.cpu_count()} CPUs, medians of {a.reps}")
    print(f"{'setting':<26}{'fit cold':>10}{'fit warm':>10}{'run cold':>10}{'run cached':>12}  fit digest")
    for switch in a.switch if a.switch is not None else SWITCHES:
        saved = _with_env(switch)
        try:
            row = [f"{switch or 'all tricks on':<26}"]
            digest = ""
            if a.only in (None, "fit"):
                cold, warm, digests = _fit(a.reps)
                row += [f"{med(cold):>9.1f}s", f"{med(warm):>9.1f}s"]
                digest = ",".join(sorted(digests))
            else:
                row += [f"{'-':>10}", f"{'-':>10}"]
            if a.only in (None, "run"):
                cold, cached = _run(a.reps)
                row += [f"{med(cold):>9.1f}s", f"{med(cached):>11.1f}s"]
            else:
                row += [f"{'-':>10}", f"{'-':>12}"]
            print("".join(row) + f"  {digest}", flush=True)
        finally:
            os.environ.clear()
            os.environ.update(saved)


if __name__ == "__main__":
    main()
