"""Leaving the process as soon as a command's output is written.

The one trick here uses private standard-library names (``threading._shutdown``, ``atexit._run_exitfuncs``,
``os._exit``), which is why it lives in the engine room with the other private-API code:
:func:`fast_exit` does what the interpreter does at exit, in its order, and then skips Python's final
deallocation of the PyMC/PyTensor/numba object graphs (1-1.5 s per command with nothing left to write:
every output file is written atomically and closed before). ``tests/analysis/engine/test_process_exit.py``
fails if the standard library drops one of these names.
"""

from __future__ import annotations

import os
import sys

__all__ = ["fast_exit"]


def fast_exit(code: int) -> None:
    """Flush, run the threading exit hooks and the ``atexit`` handlers, then ``os._exit(code)``."""
    import atexit
    import threading

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe: nothing left to flush
            pass
    # what the interpreter does at exit, in its order: the threading atexit hooks (they stop worker
    # pools such as loky's reusable executor, whose manager thread would otherwise keep the join
    # below waiting for its idle timeout), then join the non-daemon threads, then atexit handlers
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
