"""analysis.engine.lazy_imports: nutpie imported without the arviz meta-package's plotting stack, the real
arviz still there for whoever asks, and the background warm-up of xarray's lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r"""
import json, sys
import models  # noqa: F401
from analysis.engine.lazy_imports import import_nutpie
nutpie = import_nutpie()
out = {"stand_in": type(sys.modules["arviz"]).__name__, "pyplot_after_nutpie": "matplotlib.pyplot" in sys.modules}
import arviz_base
out["from_dict_is_base"] = sys.modules["arviz"].from_dict is arviz_base.from_dict
import arviz as az
out["summary_callable"] = callable(az.summary)  # the full package on first use
out["real_in_sys_modules"] = type(sys.modules["arviz"]).__name__ == "module"
out["same_rhat"] = az.rhat is sys.modules["arviz"].rhat
print("RESULT " + json.dumps(out))
"""

_FIT = r"""
import json, sys
import models  # noqa: F401
from analysis.study.clinical import derive
from analysis.study.data import load_twin
from analysis.bayes.fit import analysis_frame
from analysis.engine.sampling import sample
from models.trajectory import build_trajectory_model
frame, _ = analysis_frame(derive(load_twin().frame))
fit = sample(build_trajectory_model(frame, "spine"), draws=100, tune=100, chains=2, seed=1)
print("RESULT " + json.dumps({"pyplot": "matplotlib.pyplot" in sys.modules, "draws": fit.diagnostics.n_draws,
                              "dask": "dask.array" in sys.modules}))
"""


def _run(code: str, **env: str) -> dict:
    import os

    e = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=e, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    return json.loads(lines[-1][7:])


def test_stand_in_forwards_to_the_real_arviz():
    r = _run(_CHILD)
    assert r == {"stand_in": "_ArvizStandIn", "pyplot_after_nutpie": False, "from_dict_is_base": True,
                 "summary_callable": True, "real_in_sys_modules": True, "same_rhat": True}


def test_a_fit_imports_no_plotting_and_can_be_switched_off():
    assert _run(_FIT) == {"pyplot": False, "draws": 100, "dask": True}
    assert _run(_FIT, RAJAK_LAZY_IMPORTS="0")["pyplot"] is True
