"""Nominal visits from actual times: visit windows placed at the nearest whole month (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.study.data import load_dataset
from analysis.study.design import DAYS_PER_MONTH, nominal_visits


def _schedule(rng, n=80, visits=(0, 6, 12, 24), half_window_days=15, month12=(350, 380)):
    rows = []
    for i in range(n):
        for v in visits:
            if v == 0:
                day = 0
            elif v == 12:
                day = int(rng.integers(month12[0], month12[1] + 1))
            else:
                day = int(round(v * DAYS_PER_MONTH)) + int(rng.integers(-half_window_days, half_window_days + 1))
            rows.append({"patient_id": f"P{i:03d}", "day": day, "visit_true": float(v)})
    return pd.DataFrame(rows)


def test_days_350_to_380_are_the_month_12_visit():
    rng = np.random.default_rng(1)
    df = _schedule(rng)
    months = df["day"] / DAYS_PER_MONTH
    got = nominal_visits(months, df["patient_id"])
    assert (months.round() != df["visit_true"]).any()  # rounding alone gets some of them wrong
    np.testing.assert_array_equal(got.to_numpy(), df["visit_true"].to_numpy())


def test_monthly_visits_that_touch_keep_their_rounded_months():
    ids = pd.Series(np.repeat(["A", "B"], 4))
    months = pd.Series([0, 1, 2, 3, 0, 1.1, 2.0, 2.9])
    np.testing.assert_array_equal(nominal_visits(months, ids).to_numpy(), [0, 1, 2, 3, 0, 1, 2, 3])


def test_a_file_with_visit_windows_loads_with_four_visits(tmp_path):
    rng = np.random.default_rng(2)
    df = _schedule(rng, n=40)
    df["arm"] = np.where(df["patient_id"].str[-1].astype(int) % 2 == 0, "active", "placebo")
    df["bmd_spine"] = np.round(0.9 + rng.normal(0, 0.05, len(df)), 4)
    path = tmp_path / "windows.csv"
    df.drop(columns=["visit_true"]).to_csv(path, index=False)
    ds = load_dataset(path, group="arm", time="day", time_unit="days")
    assert ds.design.visits == (0.0, 6.0, 12.0, 24.0) and ds.design.endpoint == 24.0
    assert ds.report.completers == 40
