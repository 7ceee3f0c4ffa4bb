"""Shared fixtures for the REML model tests: R reference numbers and data simulation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _load_simulator():
    spec = importlib.util.spec_from_file_location("_bmd_fixture_data",
                                                  FIXTURES / "make_fixture_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simulate


_simulate_bmd = _load_simulator()


@pytest.fixture(scope="session")
def simulate():
    """``simulate(n, months, seed, p_drop, slope_sd_year=0.01, corr=0.2)`` -> long DataFrame."""
    return _simulate_bmd


@pytest.fixture(scope="session")
def reml_ref() -> dict:
    """R reference numbers (see fixtures/reml_reference.R)."""
    return json.loads((FIXTURES / "reml_reference.json").read_text())


@pytest.fixture(scope="session")
def bmd_data():
    """Load one of the fixture CSVs by file name."""
    cache: dict[str, pd.DataFrame] = {}

    def load(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = pd.read_csv(FIXTURES / name)
        return cache[name].copy()

    return load
