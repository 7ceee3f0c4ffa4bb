"""The ``rajak`` command line (typer): one module per command group, each a thin layer over the
Python API of the rooms below (``data``: validate, twin; ``analyses``: frequentist, fit, compare;
``sensitivity``; ``power``; ``run``; ``calibration``:
validate-methods), with the shared error handling in ``common``."""

from analysis.cli.app import app, main

__all__ = ["app", "main"]
