"""Compile caches go to one configurable, project-local directory."""

import os
import subprocess
import sys


def _env_after_import(extra_env):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR", "RAJAK_CACHE_DIR")}
    env.update(extra_env)
    code = "import os, models; print(os.environ['PYTENSOR_FLAGS']); print(os.environ['NUMBA_CACHE_DIR'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_cache_dir_from_environment(tmp_path):
    flags, numba = _env_after_import({"RAJAK_CACHE_DIR": str(tmp_path)})
    assert flags == f"base_compiledir={tmp_path / 'pytensor'},numba__fastmath=False"
    assert numba == str(tmp_path / "numba")


def test_user_settings_are_respected(tmp_path):
    flags, numba = _env_after_import({"RAJAK_CACHE_DIR": str(tmp_path), "PYTENSOR_FLAGS": "base_compiledir=/x,floatX=float64",
                                      "NUMBA_CACHE_DIR": "/y"})
    assert flags == "base_compiledir=/x,floatX=float64,numba__fastmath=False" and numba == "/y"
    flags, _ = _env_after_import({"RAJAK_CACHE_DIR": str(tmp_path), "PYTENSOR_FLAGS": "numba__fastmath=True"})
    assert flags == f"numba__fastmath=True,base_compiledir={tmp_path / 'pytensor'}"


def test_pytensor_uses_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTENSOR_FLAGS"}
    env["RAJAK_CACHE_DIR"] = str(tmp_path)
    code = "import models, pytensor; print(pytensor.config.base_compiledir, pytensor.config.numba__fastmath)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tmp_path / "pytensor"), "False"]
