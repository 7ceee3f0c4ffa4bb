"""The power room's public face: ``analysis.power`` re-exports its API and imports it lazily."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import analysis.power as power


def test_every_public_name_is_the_object_of_its_home_module():
    assert sorted(power.__all__) == sorted(power._HOME)
    for name in power.__all__:
        home = importlib.import_module(f"analysis.power.{power._HOME[name]}")
        assert name in home.__all__, (name, home.__name__)
        assert getattr(power, name) is getattr(home, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        power.no_such_name  # noqa: B018


def test_importing_the_package_or_one_name_imports_only_what_it_needs():
    code = ("import sys, analysis.power\n"
            "a = {m for m in sys.modules if m.startswith('analysis.power.')}\n"
            "from analysis.power import ANALYSES\n"
            "b = {m for m in sys.modules if m.startswith('analysis.power.')}\n"
            "print(sorted(a), sorted(b))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] ['analysis.power.analyses']"


def test_wilson_interval_equals_the_closed_form():
    """statsmodels' Wilson interval equals the textbook formula (to rounding) for every s of k."""
    from scipy import stats

    from analysis.power import wilson_interval

    z = stats.norm.ppf(0.975)
    for k in (1, 4, 10, 37, 300):
        s = np.arange(k + 1, dtype=float)
        p = s / k
        den = 1.0 + z**2 / k
        centre = (p + z**2 / (2 * k)) / den
        half = z * np.sqrt(p * (1 - p) / k + z**2 / (4 * k**2)) / den
        lo, hi = wilson_interval(s, np.full(k + 1, float(k)))
        np.testing.assert_allclose(lo, np.clip(centre - half, 0.0, p), rtol=0, atol=1e-15)
        np.testing.assert_allclose(hi, np.clip(centre + half, p, 1.0), rtol=0, atol=1e-15)
        assert np.all(lo <= p) and np.all(p <= hi)

