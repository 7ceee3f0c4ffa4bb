"""Benchmark: a Bayesian assurance of many studies on a real Dask cluster that loses a worker (a script).

Starts a ``distributed.LocalCluster`` on 127.0.0.1 whose workers are separate processes (default 2
x 1 thread, each under a nanny), runs ``run_power(..., analyses=("bayes",), prior=...,
scheduler=...)`` for ``--studies`` simulated studies at one n (twin-like: 46 patients, 43% dropout,
4 chains x 1000 draws after 1000 tuning steps), and SIGKILLs one worker process that is running a
chunk as soon as the first chunk has come back (``--no-kill`` to skip). Then runs the same study
serially in this process (``--serial-studies``, default all of them; the first ``k`` simulations of
a study do not depend on how many there are) and compares the tables.

Prints the wall time (cluster start-up, imports and compilation on the workers included), chunks
sent to a worker more than once (rerun after the kill), workers lost, whether the cluster's table
equals the serial run's (timing columns aside) and the assurance.

Usage::

    .venv/bin/python tests/benchmarks/bench_dask_assurance.py                       # 1,000 studies
    .venv/bin/python tests/benchmarks/bench_dask_assurance.py --studies 200 --serial-studies 50
    .venv/bin/python tests/benchmarks/bench_dask_assurance.py --studies 12 --draws 200 --tune 200  # smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _prior(n_draws: int, seed: int):
    """A design prior of the spine's group slopes and slope SD around the twin's values."""
    import numpy as np
    import pandas as pd

    from analysis.power import DesignPrior

    rng = np.random.default_rng(seed)
    draws = pd.DataFrame({"spine.slope_responder_pct": rng.normal(-0.3, 0.6, n_draws),
                          "spine.slope_nonresponder_pct": rng.normal(-2.4, 0.8, n_draws),
                          "spine.slope_sd_pct": 1.5 * np.exp(rng.normal(0.0, 0.2, n_draws))})
    return DesignPrior(draws, source="benchmark: normal around the twin's spine slopes")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=1000, help="simulated studies on the cluster (default 1000)")
    ap.add_argument("--serial-studies", type=int, default=None, help="of them, run serially to compare (default all)")
    ap.add_argument("--n", type=int, default=46, help="patients per simulated study (default 46)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--chunk-size", type=int, default=10, help="simulations per task (default 10)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--no-kill", action="store_true", help="do not kill a worker")
    args = ap.parse_args(argv)

    import distributed
    import pandas as pd

    import models  # noqa: F401  (compile caches before pymc)
    from analysis.power import TIMING_COLUMNS, PowerDesign, PowerSettings, run_power
    from tests.dask_cluster import WorkerKiller, chunk_runs, local_cluster

    serial_k = args.studies if args.serial_studies is None else min(args.serial_studies, args.studies)
    design = PowerDesign(n=(args.n,), dropout=0.43)
    settings = PowerSettings(draws=args.draws, tune=args.tune, chains=args.chains)
    kw = dict(seed=args.seed, analyses=("bayes",), settings=settings, prior=_prior(1000, args.seed),
              chunk_size=args.chunk_size)
    try:
        load = "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "load average n/a"
    print(f"distributed {distributed.__version__}; {os.cpu_count()} CPUs; {load}")
    print(f"Bayesian assurance: {args.studies} studies at n = {args.n} (43% dropout), {args.chains} chains x "
          f"{args.draws} draws after {args.tune} tune, chunks of {args.chunk_size}, seed {args.seed}; "
          f"LocalCluster {args.workers} worker processes x 1 thread")

    t0 = time.perf_counter()
    with local_cluster(args.workers) as (address, client):
        t_cluster = time.perf_counter() - t0
        killer = WorkerKiller(client, timeout=3600)
        if not args.no_kill:
            killer.start()
        first = {}

        def on_chunk(df):
            first.setdefault("t", time.perf_counter() - t1)
            killer.arm()

        t1 = time.perf_counter()
        remote = run_power(design, args.studies, scheduler=address, on_chunk=on_chunk, **kw)
        t_run = time.perf_counter() - t1
        if killer.is_alive():
            killer.join(timeout=10)
        runs, removed = chunk_runs(client)
    rerun = {k: v for k, v in runs.items() if v > 1}
    print(f"cluster: started in {t_cluster:.1f} s; study {t_run:.1f} s ({t_run / args.studies:.3f} s per study; "
          f"first chunk back after {first.get('t', float('nan')):.1f} s)")
    if killer.killed:
        print(f"killed worker {killer.killed['worker']} (pid {killer.killed['pid']}) holding "
              f"{len(killer.killed['chunks'])} chunk(s) right after the first chunk came back")
    elif not args.no_kill:
        print(f"NO worker was killed ({killer.error or 'no chunk was running'})")
    print(f"chunks: {len(runs)}; rerun: {len(rerun)} ({sum(rerun.values()) - len(rerun)} extra runs); "
          f"workers lost: {len(removed)}")
    raw = remote.raw
    s = remote.summary()
    ok = int(raw["ok"].sum())
    print(f"rows {len(raw)} ({ok} fits ok, diagnostics passed in {int(raw['diag_passed'].fillna(False).sum())}); "
          f"median sampler time per fit {raw['sample_seconds'].median():.3f} s")
    print(s[["criterion", "power", "ci_low", "ci_high"]].to_string(index=False)
          if {"criterion", "ci_low", "ci_high"} <= set(s.columns) else s.to_string(index=False))

    t2 = time.perf_counter()
    serial = run_power(design, serial_k, workers=1, **kw)
    t_serial = time.perf_counter() - t2
    a = raw[raw["sim"] < serial_k].drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True)
    b = serial.raw.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        equal = True
    except AssertionError as err:
        equal = False
        print(str(err).splitlines()[0:6])
    print(f"serial (this process, 1 worker, {settings.cores or os.cpu_count()} nutpie cores): {serial_k} studies in "
          f"{t_serial:.1f} s; cluster table equals serial bit for bit: {equal}")
    return 0 if equal and (args.no_kill or killer.killed) else 1


if __name__ == "__main__":  # the workers are spawned processes: they must not re-run this
    raise SystemExit(main())
