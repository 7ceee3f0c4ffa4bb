"""Tests of ``analysis/engine/process_exit.py``: the private standard-library names it relies on exist,
and a process that leaves through it runs its atexit handlers and keeps its exit status."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading


def test_private_names_still_exist_upstream():
    # fast_exit calls these; if Python renames one, this fails before any user sees a traceback
    assert callable(getattr(threading, "_shutdown", None))
    assert callable(getattr(atexit, "_run_exitfuncs", None))
    assert callable(getattr(os, "_exit", None))


def test_fast_exit_runs_atexit_and_keeps_the_status(tmp_path):
    marker = tmp_path / "atexit-ran"
    code = ("import atexit, pathlib; from analysis.engine.process_exit import fast_exit; "
            f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes')); "
            "print('out', flush=False); fast_exit(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stdout.strip() == "out"  # flushed before os._exit
    assert marker.read_text() == "yes"
