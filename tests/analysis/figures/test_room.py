"""The figures room: importing it loads no plotting library; every public name resolves, to the
same object under the former ``analysis.figures.plots``."""

import subprocess
import sys
from pathlib import Path

import analysis.figures as figures
import analysis.figures.plots as plots

ROOT = Path(__file__).resolve().parents[3]


def test_importing_the_room_loads_no_plotting_library():
    code = ("import sys, analysis.figures as f; assert f.__all__; "
            "print(sorted(m for m in ('matplotlib', 'arviz_plots', 'arviz_stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve_and_match_the_former_module():
    for name in figures.__all__:
        value = getattr(figures, name)
        assert value is getattr(plots, name), name
    assert callable(figures.style) and not isinstance(figures.style, type(sys))  # the function, not a module
    assert set(figures.__all__) == set(plots.__all__)
