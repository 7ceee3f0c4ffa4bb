"""Studies for the intercurrent-event tests: a simulated two-arm trial
(:func:`models.simulate_trial.simulate_trial`, visits at months 0/6/12/24, monotone dropout) written
as a user's file and loaded the way ``rajak`` loads one (:func:`analysis.study.data.load_dataset`,
:func:`analysis.study.clinical.derive`). Files go into a test's temporary directory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.study.clinical import derive
from analysis.study.data import load_dataset
from models.simulate_trial import TrialTruth, simulate_trial

__all__ = ["Study", "digest", "load", "trial_frame"]

TRUTH = TrialTruth(dropout_hazard=0.15)


class Study:
    """A loaded study: the file, its derived frame and resolved design."""

    def __init__(self, path: Path, derived: pd.DataFrame, design: Any):
        self.path, self.derived, self.design = path, derived, design

    def completers(self) -> list[str]:
        last = self.derived.dropna(subset=["bmd_spine"]).groupby("patient_id")["month"].max()
        return sorted(last.index[last == 24.0])

    def last_seen(self) -> pd.Series:
        return self.derived.dropna(subset=["bmd_spine"]).groupby("patient_id")["month"].max()


def trial_frame(n: int = 40, seed: int = 5) -> pd.DataFrame:
    """The simulated trial: ``patient_id``, ``arm``, ``visit`` (month), ``day``, ``age``, ``sex``, ``bmd_<site>``."""
    return simulate_trial(n, TRUTH, seed=seed)


def load(tmp_path: Path, frame: pd.DataFrame | None = None, *, unit: str = "months",
         edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None, name: str = "trial.csv") -> Study:
    """Write the trial (``edit``ed) as ``name`` and load it: in months (time column ``visit``) or in
    days (time ``day``, the visits from windows of the days)."""
    df = trial_frame() if frame is None else frame
    if edit is not None:
        df = edit(df.copy())
    path = Path(tmp_path) / name
    if unit == "months":
        df.drop(columns=["day"]).to_csv(path, index=False)
        ds = load_dataset(path, group="arm", time="visit")
    else:
        df.drop(columns=["visit"]).to_csv(path, index=False)
        ds = load_dataset(path, group="arm", time="day", time_unit="days")
    return Study(path, derive(ds.frame, design=ds.design), ds.design)


def digest(path: Path) -> tuple[str, int]:
    """A file's hash and modification time: a file that was only read keeps both."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
