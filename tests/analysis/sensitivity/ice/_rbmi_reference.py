"""rbmi 1.5.2's own numbers (``fixtures/rbmi_pooling_reference.R``), decoded: hex-float strings (the exact
inputs R used) and ``"Inf"``/``"-Inf"``/``"NA"``/``"NaN"`` become floats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "rbmi_pooling_reference.json"
_SPECIAL = {"Inf": math.inf, "-Inf": -math.inf, "NA": math.nan, "NaN": math.nan}


def num(v):
    """A JSON value of the fixture as float(s): lists become arrays, dicts are decoded per key."""
    if isinstance(v, dict):
        return {k: num(x) for k, x in v.items()}
    if isinstance(v, list):
        return np.array([num(x) for x in v], dtype=float)
    if isinstance(v, str):
        return _SPECIAL[v] if v in _SPECIAL else float.fromhex(v)
    return math.nan if v is None else float(v)


def load() -> dict:
    """The raw fixture (decode its fields with :func:`num`)."""
    return json.loads(FIXTURE.read_text())
