"""Checks shared by the calibration estimators' reduced-form tests: the rows of one chunk
(:func:`analysis.calibration.execution.run_chunk`) are complete, finite and sane."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["assert_sane_rows"]


def assert_sane_rows(rows: pd.DataFrame, within_se: float | None = 5.0) -> None:
    """No failed fit, finite truth/estimate/se/interval, ``ci_low < estimate < ci_high``, ``se > 0``
    and, unless ``within_se`` is None, every estimate within ``within_se`` SEs of its truth."""
    assert (rows["error"] == "").all(), rows["error"].tolist()
    assert np.isfinite(rows[["truth", "estimate", "se", "ci_low", "ci_high"]].to_numpy()).all()
    assert ((rows["ci_low"] < rows["estimate"]) & (rows["estimate"] < rows["ci_high"])).all()
    assert (rows["se"] > 0).all()
    if within_se is not None:
        assert (np.abs(rows["estimate"] - rows["truth"]) < within_se * rows["se"]).all()
