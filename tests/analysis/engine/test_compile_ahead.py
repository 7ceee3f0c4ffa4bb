"""Tests of ``analysis/engine/compile_ahead.py``: a forked child compiles a C callback into numba's
disk cache and the parent loads it from there; a failing or slow child is reported and never
waited for; the helper stays off where forking is unsafe; and a model compiled with the helper
samples the same draws as one compiled without it (fresh processes, empty caches)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from analysis.engine.compile_ahead import parallel_compile_enabled

ROOT = Path(__file__).resolve().parents[2]

CHILD_SCRIPT = r"""
import ctypes, json, os, sys, time
import models  # compile caches into RAJAK_CACHE_DIR
import numba, numpy as np
from pytensor.link.numba.cache import compile_numba_function_src
from analysis.engine.compile_ahead import ChildCompile, compile_cfunc_in_child

out = {}
t = numba.types
sig = t.float64(t.float64, t.float64)
src = "def rajak_test_cfunc(a, b):\n    return np.sqrt(a * a + b * b) + 1.0\n"
fn = compile_numba_function_src(src, "rajak_test_cfunc", {"np": np, "__name__": "analysis.engine.compile_ahead"}, cache_key="rajak-test-" + sys.argv[1])
helper = compile_cfunc_in_child(fn, sig)
out["started"] = helper is not None
out["status"] = helper.finish(wait_s=120.0)
out["status_again"] = helper.finish()
out["index_exists"] = os.path.exists(helper.index_path)
cf = numba.cfunc(sig, cache=True)(fn)
out["cache_hits"] = cf._cache_hits
out["value"] = cf.ctypes(3.0, 4.0)
out["second_helper"] = compile_cfunc_in_child(fn, sig) is not None  # cached now: no child

bad = compile_numba_function_src("def rajak_bad_cfunc(a, b):\n    return undefined_name(a)\n",
                                 "rajak_bad_cfunc", {"__name__": "analysis.engine.compile_ahead"}, cache_key="rajak-bad-" + sys.argv[1])
h = compile_cfunc_in_child(bad, sig)
out["bad_status"] = h.finish(wait_s=120.0)

def sleeping_child():  # a child that would run for a minute, wrapped as a compile helper
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    return ChildCompile(pid, "unused")

slow = sleeping_child()
time.sleep(0.5)
t0 = time.monotonic()
out["slow_status"] = slow.finish(wait_s=0.2)
out["slow_wait_s"] = time.monotonic() - t0

slow = sleeping_child()  # default wait: as long as the child has run (here ~1.5 s), then killed
time.sleep(1.5)
t0 = time.monotonic()
out["default_status"] = slow.finish()
out["default_wait_s"] = time.monotonic() - t0
import analysis.engine.compile_ahead as ca
slow = sleeping_child()  # interrupted while waiting (Ctrl-C): the child is still killed and reaped
real_sleep = ca.time.sleep
def interrupt(_):
    raise KeyboardInterrupt
ca.time.sleep = interrupt
try:
    slow.finish(wait_s=30.0)
except KeyboardInterrupt:
    out["interrupted"] = True
ca.time.sleep = real_sleep
out["interrupted_status"] = slow.finish()
try:
    os.waitpid(slow.pid, os.WNOHANG)
    out["reaped"] = False
except ChildProcessError:
    out["reaped"] = True
print("RESULT " + json.dumps(out))
"""


def _run(code: str, tmp_path: Path, *args: str, **env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env.update({"RAJAK_CACHE_DIR": str(tmp_path), **env_extra})
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][7:])


@pytest.mark.skipif(not hasattr(os, "fork") or len(os.sched_getaffinity(0)) < 2, reason="needs fork and 2 CPUs")
def test_child_fills_the_cache_and_failures_are_reported(tmp_path):
    out = _run(CHILD_SCRIPT, tmp_path, "1")
    assert out["started"] and out["status"] == "done" and out["status_again"] == "done"
    assert out["index_exists"]
    assert out["cache_hits"] == 1  # the parent loaded the child's compilation
    assert out["value"] == pytest.approx(6.0)
    assert out["second_helper"] is False
    assert out["bad_status"] == "failed"
    assert out["slow_status"] == "killed" and out["slow_wait_s"] < 5.0
    assert out["default_status"] == "killed" and 1.4 <= out["default_wait_s"] < 6.0
    assert out["interrupted"] and out["interrupted_status"] == "killed" and out["reaped"]


def test_off_by_environment_and_with_other_threads(monkeypatch):
    monkeypatch.setenv("RAJAK_PARALLEL_COMPILE", "0")
    assert not parallel_compile_enabled()
    monkeypatch.delenv("RAJAK_PARALLEL_COMPILE")
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert not parallel_compile_enabled()
    finally:
        stop.set()
        worker.join()


FIT_SCRIPT = r"""
import json, sys
import models
import numpy as np, pymc as pm
from analysis.engine import compile_model, sample
y = np.random.default_rng(0).normal(1.0, 2.0, 40)
with pm.Model() as m:
    d = pm.Data("y_data", y)
    mu = pm.Normal("mu", 0.0, 10.0)
    sd = pm.HalfNormal("sd", 5.0)
    pm.Normal("y", mu, sd, observed=d)
    pm.Deterministic("mu2", mu * 2.0)
_, info = compile_model(m)
fit = sample(m, seed=5, draws=100, tune=100, chains=2, cores=1)
post = fit.posterior["posterior"]
print("RESULT " + json.dumps({"helper": info["compile_helper"],
                              "mu": post["mu"].values.ravel().tolist(),
                              "mu2": post["mu2"].values.ravel().tolist()}))
"""


@pytest.mark.skipif(not hasattr(os, "fork") or len(os.sched_getaffinity(0)) < 2, reason="needs fork and 2 CPUs")
def test_fit_with_helper_equals_fit_without(tmp_path):
    with_helper = _run(FIT_SCRIPT, tmp_path / "a")
    without = _run(FIT_SCRIPT, tmp_path / "b", RAJAK_PARALLEL_COMPILE="0")
    warm = _run(FIT_SCRIPT, tmp_path / "a")  # the child's cache entry, read back in a new process
    assert (with_helper["helper"], without["helper"], warm["helper"]) == ("done", "off", "off")
    for name in ("mu", "mu2"):
        assert with_helper[name] == without[name] == warm[name]
