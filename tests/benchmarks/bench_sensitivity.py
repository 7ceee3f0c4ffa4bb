"""Benchmark of the dropout sensitivity suite on the embedded twin (a script, not a pytest test).

Issue #5's target: the default sensitivity suite on the twin completes in <= 3 minutes on 2 cores,
reusing compiled models across the delta grid rather than recompiling for each delta.

The data are the shipped RAJAK digital twin (SYNTHETIC); the settings are ``RunConfig()``'s
(sites, draws, tune, chains, seed, ``sensitivity`` list). No fit cache is used, so every Bayesian
fit is sampled; only the compile caches differ between the passes:

1. *cold*: a fresh process with a new, empty ``RAJAK_CACHE_DIR`` (no PyTensor/numba/graph caches);
2. *warm*: a fresh process with the same ``RAJAK_CACHE_DIR`` (compiled models on disk).

Each pass runs the default suite plus ``latent_status`` and ``selection`` (timed separately) and
prints, per analysis, wall time, the number of fits (calls of ``analysis.engine.sampling.sample``) and the
number of model compilations (``analysis.engine.sampling.compile_fittable`` calls that were not in-process cache
hits), then the total of the default suite and of the suite with the two extra analyses. One
compilation per model structure -- not per delta, prior set or psi prior -- is the reuse the issue
asks for (delta and tipping impute in closed form/MI and compile nothing).

Usage::

    .venv/bin/python tests/benchmarks/bench_sensitivity.py            # cold then warm
    .venv/bin/python tests/benchmarks/bench_sensitivity.py --only cold
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXTRA = ("latent_status", "selection")


def _one_pass() -> None:
    """Child process: run every analysis once, print one JSON line per analysis."""
    import matplotlib.pyplot as plt

    import models  # noqa: F401  (compile caches before pytensor is imported)
    import analysis.engine.sampling as fitting
    from analysis.study.clinical import derive
    from analysis.run.config import RunConfig
    from analysis.study.data import load_twin
    from analysis.sensitivity.runner import run_sensitivity

    counts = {"fits": 0, "compiles": 0, "compile_s": 0.0}
    sample, compile_ = fitting.sample, fitting.compile_fittable

    def counted_sample(*a, **kw):
        counts["fits"] += 1
        return sample(*a, **kw)

    def counted_compile(*a, **kw):
        out = compile_(*a, **kw)
        if not out[1].get("cache_hit", False):
            counts["compiles"] += 1
            counts["compile_s"] += float(out[1].get("compile_time", 0.0))
        return out

    fitting.sample, fitting.compile_fittable = counted_sample, counted_compile
    config = RunConfig()
    t = time.perf_counter()
    derived = derive(load_twin().frame, config.responder.rule())
    print(json.dumps({"analysis": "_load", "wall_s": time.perf_counter() - t}), flush=True)
    names = list(config.sensitivity) + [n for n in EXTRA if n not in config.sensitivity]
    for name in names:
        before = dict(counts)
        t = time.perf_counter()
        res = run_sensitivity(name, derived, config)
        wall = time.perf_counter() - t
        failed = res.settings.get("failed_fits", [])
        print(json.dumps({"analysis": name, "default": name in config.sensitivity, "wall_s": wall,
                          "fits": counts["fits"] - before["fits"],
                          "compiles": counts["compiles"] - before["compiles"],
                          "compile_s": counts["compile_s"] - before["compile_s"], "failed_fits": failed}),
              flush=True)
        plt.close("all")
    print(json.dumps({"analysis": "_settings", "draws": config.draws, "tune": config.tune,
                      "chains": config.chains, "sites": list(config.sites), "cpus": os.cpu_count(),
                      "load": os.getloadavg()}), flush=True)


def _run(cache: Path, label: str) -> None:
    env = {**os.environ, "RAJAK_CACHE_DIR": str(cache), "MPLBACKEND": "Agg"}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True)
    total_proc = time.perf_counter() - t
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{label} pass failed")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    settings = next(r for r in rows if r["analysis"] == "_settings")
    print(f"\n== {label} compile cache ({cache}); draws={settings['draws']} tune={settings['tune']} "
          f"chains={settings['chains']} sites={settings['sites']} cpus={settings['cpus']} "
          f"load avg at end={tuple(round(x, 1) for x in settings['load'])}")
    print(f"{'analysis':<20}{'default':>8}{'wall s':>9}{'fits':>6}{'compiles':>10}{'compile s':>11}  failed fits")
    default_total = extra_total = 0.0
    for r in rows:
        if r["analysis"].startswith("_"):
            continue
        print(f"{r['analysis']:<20}{str(r['default']):>8}{r['wall_s']:>9.1f}{r['fits']:>6}{r['compiles']:>10}"
              f"{r['compile_s']:>11.1f}  {', '.join(r['failed_fits']) or '-'}")
        if r["default"]:
            default_total += r["wall_s"]
        else:
            extra_total += r["wall_s"]
    load = next(r for r in rows if r["analysis"] == "_load")["wall_s"]
    print(f"default suite total: {default_total:.1f} s (target <= 180 s); with {', '.join(EXTRA)}: "
          f"{default_total + extra_total:.1f} s; data load {load:.1f} s; process incl. imports {total_proc:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=("cold", "warm"), help="run one pass (warm reuses $RAJAK_CACHE_DIR)")
    args = ap.parse_args()
    if args.child:
        _one_pass()
        return
    if args.only == "warm":
        _run(Path(os.environ.get("RAJAK_CACHE_DIR", ".cache")), "warm")
        return
    with tempfile.TemporaryDirectory(prefix="rajak-bench-sens-") as tmp:
        _run(Path(tmp), "cold (empty)")
        if args.only != "cold":
            _run(Path(tmp), "warm")


if __name__ == "__main__":
    main()
