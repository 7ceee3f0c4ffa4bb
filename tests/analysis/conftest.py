"""Shared fixtures of the analysis tests."""

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def power_cli():
    """``rajak power ARGS...`` through the project's own typer app (in process)."""
    from analysis.cli.app import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["power", *map(str, args)])
