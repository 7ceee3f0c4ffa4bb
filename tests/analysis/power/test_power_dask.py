"""Power and assurance studies on a real Dask cluster whose workers are separate processes.

A worker SIGKILLed in the middle of a study: the scheduler reruns its chunks on the other worker
(or the one its nanny restarts), every chunk is delivered once, and the result equals the serial
run of the same seed. A small Bayesian assurance on the cluster equals the serial run too.
(``tests/benchmarks/bench_dask_assurance.py`` runs the large Bayesian assurance.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from analysis.power import TIMING_COLUMNS, DesignPrior, PowerDesign, PowerSettings, run_power  # noqa: E402
from analysis.power.execution import DASK_RETRIES, execute  # noqa: E402
from analysis.power.simulated_study import Chunk  # noqa: E402
from tests.dask_cluster import WorkerKiller, chunk_runs, local_cluster  # noqa: E402


def _no_timing(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True)


@pytest.fixture(scope="module")
def cluster():
    """``(address, client)``: a LocalCluster of 2 worker processes x 1 thread on 127.0.0.1."""
    with local_cluster(2) as (address, client):
        yield address, client


def _warm(address, client):
    """Every worker has imported the study code (so the kill lands in a chunk, not in imports)."""
    run_power(PowerDesign(n=(24,), dropout=0.3), sims=2, seed=0, analyses=("lmm",), scheduler=address, chunk_size=1)
    client.wait_for_workers(2, timeout=120)
    chunk_runs(client)


def test_a_worker_killed_mid_study_has_its_chunks_rerun(cluster):
    address, client = cluster
    _warm(address, client)
    design = PowerDesign(n=(24, 36), dropout=0.3)
    kw = dict(sims=16, seed=31, analyses=("lmm", "completers"), chunk_size=2)
    killer = WorkerKiller(client)
    killer.start()
    delivered = []

    def on_chunk(df):
        delivered.append(df)
        killer.arm()

    remote = run_power(design, scheduler=address, on_chunk=on_chunk, **kw)
    killer.join(timeout=60)
    assert killer.error is None and killer.killed, "no worker was killed mid-study"
    runs, removed = chunk_runs(client)
    assert killer.killed["worker"] in removed
    # the chunks the dead worker held were sent to a worker again; every chunk was delivered once
    assert any(runs[k] >= 2 for k in killer.killed["chunks"]), (runs, killer.killed)
    assert len(runs) == len(delivered) == 2 * 16 // 2
    keys = pd.concat(delivered)[["n", "sim"]].drop_duplicates()
    assert len(keys) == 2 * 16 and sum(df["sim"].nunique() for df in delivered) == 2 * 16
    serial = run_power(design, workers=1, **kw)
    pd.testing.assert_frame_equal(_no_timing(remote.raw), _no_timing(serial.raw))
    client.wait_for_workers(2, timeout=120)  # the nanny restarted the killed worker


def test_bayesian_assurance_on_the_cluster_equals_serial(cluster):
    address, client = cluster
    prior = DesignPrior(pd.DataFrame({"spine.slope_responder_pct": [1.0, 2.0, 3.5],
                                      "spine.slope_sd_pct": [1.2, 1.5, 1.8]}), source="test")
    kw = dict(sims=4, seed=17, analyses=("bayes",), prior=prior,
              settings=PowerSettings(draws=200, tune=200, chains=2), chunk_size=1)
    design = PowerDesign(n=(30,), dropout=0.3)
    remote = run_power(design, scheduler=address, **kw)
    serial = run_power(design, workers=1, **kw)
    assert remote.kind == "assurance" and len(remote.raw) == 4 and remote.raw["ok"].all()
    assert remote.raw["prior_draw"].nunique() > 1 and np.isfinite(remote.raw["q50"]).all()
    pd.testing.assert_frame_equal(_no_timing(remote.raw), _no_timing(serial.raw))
    runs, _ = chunk_runs(client)
    assert sorted(runs.values()) == [1, 1, 1, 1]  # no worker died: nothing ran twice


def test_a_chunk_that_raises_is_retried_then_named(cluster):
    """A task that raises (not a failed fit, which is a row) is tried 1 + DASK_RETRIES times, then the
    error names its simulations."""
    address, client = cluster
    broken = Chunk(spec=None, n=24, sims=(3, 4))  # run_chunk raises AttributeError on the worker
    with pytest.raises(RuntimeError, match=r"simulations 3\.\.4 at n = 24 failed on the Dask cluster"):
        list(execute([broken], scheduler=address))
    runs, _ = chunk_runs(client)
    assert list(runs.values()) == [1 + DASK_RETRIES]
