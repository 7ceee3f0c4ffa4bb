"""Compile caches go to one configurable, project-local directory."""

import os
import subprocess
import sys

import numpy as np
import pytest


def _env_after_import(extra_env):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR", "RAJAK_CACHE_DIR")}
    env.update(extra_env)
    code = "import os, models; print(os.environ['PYTENSOR_FLAGS']); print(os.environ['NUMBA_CACHE_DIR'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_cache_dir_from_environment(tmp_path):
    flags, numba = _env_after_import({"RAJAK_CACHE_DIR": str(tmp_path)})
    assert flags == (f"base_compiledir={tmp_path / 'pytensor'},"
                     f"generated_src_dir={tmp_path / 'pytensor' / 'generated-src'},numba__fastmath=False")
    assert numba == str(tmp_path / "numba")


def test_user_settings_are_respected(tmp_path):
    flags, numba = _env_after_import({"RAJAK_CACHE_DIR": str(tmp_path), "PYTENSOR_FLAGS": "base_compiledir=/x,floatX=float64",
                                      "NUMBA_CACHE_DIR": "/y"})
    assert flags == ("base_compiledir=/x,floatX=float64,"
                     f"generated_src_dir={tmp_path / 'pytensor' / 'generated-src'},numba__fastmath=False")
    assert numba == "/y"
    flags, _ = _env_after_import({"RAJAK_CACHE_DIR": str(tmp_path),
                                  "PYTENSOR_FLAGS": "numba__fastmath=True,generated_src_dir=/z"})
    assert flags == f"numba__fastmath=True,generated_src_dir=/z,base_compiledir={tmp_path / 'pytensor'}"


def test_pytensor_uses_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTENSOR_FLAGS"}
    env["RAJAK_CACHE_DIR"] = str(tmp_path)
    code = "import models, pytensor; print(pytensor.config.base_compiledir, pytensor.config.numba__fastmath)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tmp_path / "pytensor"), "False"]


def test_generated_source_stays_out_of_the_system_temp_dir(tmp_path):
    """PyTensor keeps the source of every numba function it generates; by default one new file
    per function and process in the system temporary directory. rajak points it into the cache
    (content-addressed: a second process adds nothing)."""
    tmpdir, cache = tmp_path / "tmp", tmp_path / "cache"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env.update({"RAJAK_CACHE_DIR": str(cache), "TMPDIR": str(tmpdir)})
    code = ("import models, numpy as np, pytensor, pytensor.tensor as pt; x = pt.dvector('x'); "
            "f = pytensor.function([x], pt.exp(x).sum() + pt.zeros(3).sum(), mode='NUMBA'); "
            "print(f(np.ones(2)))")
    counts = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert float(out.stdout) == pytest.approx(2 * np.e)
        counts.append(len(list((cache / "pytensor" / "generated-src").glob("*.py"))))
    assert list(tmpdir.iterdir()) == []
    assert counts[0] > 0 and counts[1] == counts[0]
