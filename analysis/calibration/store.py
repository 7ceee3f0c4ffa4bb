"""Resumable calibration results on disk: ``DIR/manifest.json`` and one Parquet file per finished chunk.

``DIR/chunks/<estimator>/d<first>-<last>-<hash>.parquet`` holds the rows of one chunk, written
atomically (:func:`analysis.common.io.atomic_write_bytes`: a temporary file renamed into place), so
an interrupted study leaves only whole chunks. A rerun with the same root seed reads them, skips the
data sets already done and runs the rest; more data sets or more estimators extend the study. A
directory written with another seed is refused (its rows would mix two studies).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pandas as pd

from analysis.calibration.execution import RAW_COLUMNS, Chunk

__all__ = ["CALIBRATION_FORMAT", "CalibrationStore"]

CALIBRATION_FORMAT = "rajak-calibration-1"


class CalibrationStore:
    """The raw results of one calibration study (root ``seed``) in ``out``.

    Raises
    ------
    ValueError
        ``out`` holds another study (another seed or format) or an unreadable manifest.
    """

    def __init__(self, out: str | os.PathLike, seed: int) -> None:
        from analysis.common.io import atomic_write_json

        self.dir = Path(out)
        self.chunks = self.dir / "chunks"
        manifest = self.dir / "manifest.json"
        if manifest.exists():
            try:
                held = json.loads(manifest.read_text(encoding="utf-8"))
            except ValueError as err:
                raise ValueError(f"{manifest} is not valid JSON ({err}); use another output directory") from None
            if held.get("format") != CALIBRATION_FORMAT or held.get("seed") != int(seed):
                raise ValueError(f"{self.dir} holds another calibration study (seed {held.get('seed')}, format "
                                 f"{held.get('format')}); this one has seed {seed}: use another --out")
        else:
            self.chunks.mkdir(parents=True, exist_ok=True)
            atomic_write_json(manifest, {"format": CALIBRATION_FORMAT, "seed": int(seed)})
        self.chunks.mkdir(parents=True, exist_ok=True)

    def load(self, estimator: str) -> pd.DataFrame:
        """Every finished data set of ``estimator`` (partial temporary files ignored)."""
        files = sorted(p for p in (self.chunks / estimator).glob("*.parquet") if not p.name.startswith("."))
        if not files:
            return pd.DataFrame(columns=RAW_COLUMNS)
        df = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
        return df.drop_duplicates("dataset", keep="first").sort_values("dataset").reset_index(drop=True)

    def write(self, chunk: Chunk, rows: pd.DataFrame) -> Path:
        """Write one chunk's rows atomically."""
        from analysis.common.io import atomic_write_bytes

        tag = hashlib.sha256(json.dumps(list(chunk.indices)).encode()).hexdigest()[:8]
        name = f"d{chunk.indices[0]:06d}-{chunk.indices[-1]:06d}-{tag}.parquet"
        buf = io.BytesIO()
        rows.to_parquet(buf, index=False)
        return atomic_write_bytes(self.chunks / chunk.estimator.name / name, buf.getvalue())
