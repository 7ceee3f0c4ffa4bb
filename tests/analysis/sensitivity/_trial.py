"""Simulated trials with known truth (:mod:`models.simulate_trial`) loaded as a user's file would be:
written to CSV, read with the design flags (``--group arm --visit visit --time day --time-unit
days``) and derived on the design."""

from __future__ import annotations

from pathlib import Path

from analysis.study.clinical import derive
from analysis.study.data import load_dataset
from models.simulate_trial import TrialTruth, simulate_trial

#: A 3-arm dose study at the spine: placebo declines, the low dose holds, the high dose gains.
DOSES = TrialTruth(arms={"placebo": 1.0, "low": 1.0, "high": 1.0},
                   slopes={"spine": {"placebo": -0.012, "low": 0.0, "high": 0.010}}, baseline={"spine": 0.95})
#: The default two-arm trial with visits at months 0 and 12 only.
ONE_VISIT = TrialTruth(visits=(0.0, 12.0))


def trial_csv(path: Path, n: int = 160, truth: TrialTruth | None = None, seed: int = 0) -> Path:
    """Simulate a trial and write it to ``path`` (CSV)."""
    simulate_trial(n, truth or TrialTruth(), seed=seed).to_csv(path, index=False)
    return path


def load_trial(path: Path, group: str = "arm"):
    """``(dataset, derived)`` of a trial CSV with the design flags a user would give."""
    ds = load_dataset(path, group=group, visit="visit", time="day", time_unit="days")
    return ds, derive(ds.frame, design=ds.design)
