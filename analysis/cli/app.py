"""The ``rajak`` command line: a thin layer over the Python API, one module per command group.

typer (on click) gives typed options, ``--help`` on every command and exit status 2 for usage
errors. Messages and progress go to stderr; results to stdout. Bad input ends with one line
``rajak: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from analysis.cli.analyses import compare, fit, frequentist
from analysis.cli.calibration import validate_methods
from analysis.cli.common import EXIT_BAD_INPUT, PATH_ERRORS, err
from analysis.cli.data import twin, validate
from analysis.cli.power import power
from analysis.cli.run import run
from analysis.cli.sensitivity import sensitivity
from analysis.common.io import FigureWriteError
from analysis.engine.process_exit import fast_exit

__all__ = ["app", "main"]

app = typer.Typer(
    name="rajak",
    help="Bayesian and mixed-model reanalysis of longitudinal BMD studies "
         "(default data: a SYNTHETIC twin of the RAJAK baricitinib cohort).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (validate, twin, frequentist, fit, compare, sensitivity, run, power):
    app.command()(command)
app.command(name="validate-methods")(validate_methods)


def main() -> None:
    """Console-script entry point.

    After a command finishes, the process flushes its output, runs the threading exit hooks and
    waits for its non-daemon threads (as the interpreter does), runs the ``atexit`` handlers
    (which stop worker processes and flush logging) and then leaves
    through ``os._exit`` with the command's exit status. What that skips is Python's final
    deallocation of the PyMC/PyTensor/numba object graphs, 1-1.5 s per command with nothing left
    to write (every output file is written atomically and closed before). ``RAJAK_FAST_EXIT=0``
    restores the normal interpreter shutdown.
    """
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    except (OSError, FigureWriteError) as exc:
        # a path the user gave that cannot be written (permissions, a file where a directory
        # should be) is bad input: exit status 2; anything else (a full disk) is 1. One line.
        if os.environ.get("RAJAK_DEBUG") == "1":
            raise
        if isinstance(exc, OSError) and exc.filename:
            what = f"file system error at {exc.filename}: {exc.strerror or exc}"
        else:
            what = str(exc)
        err(f"{what}; the command stopped (RAJAK_DEBUG=1 shows where)")
        code = EXIT_BAD_INPUT if isinstance(exc, PATH_ERRORS) else 1
    else:
        code = 0
    if os.environ.get("RAJAK_FAST_EXIT", "1") == "0":
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    fast_exit(code)



if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
