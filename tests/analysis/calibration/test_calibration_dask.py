"""The calibration study on a real Dask cluster (one worker process) gives the serial rows."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("distributed")

from analysis.calibration import run_calibration  # noqa: E402
from tests.dask_cluster import local_cluster  # noqa: E402

TIMING = ["fit_seconds", "simulate_seconds", "setup_seconds"]


def test_dask_scheduler_gives_the_serial_rows(tmp_path):
    names = ["completers_welch", "mmrm_cs"]
    serial = run_calibration(names, datasets=4, seed=5, chunk_size=2)
    with local_cluster(1) as (address, _client):
        on_dask = run_calibration(names, datasets=4, seed=5, chunk_size=2, scheduler=address, out=tmp_path)
    key = ["estimator", "dataset"]
    a = on_dask.raw.drop(columns=TIMING).sort_values(key).reset_index(drop=True)
    b = serial.raw.drop(columns=TIMING).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert len(list((tmp_path / "chunks").rglob("*.parquet"))) == 4
