"""Suite-wide options.

Slow statistical studies (``@pytest.mark.slow``) always run; by default in a *reduced form*
(fewer simulated datasets or seeds, with tolerances that scale with the number of replicates) so
the whole suite fits CI. ``--full-studies`` (or ``RAJAK_FULL_STUDIES=1``) runs them at full size.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--full-studies", action="store_true", default=False,
                     help="run the slow statistical studies at full size (default: reduced form)")


@pytest.fixture(scope="session")
def full_studies(request) -> bool:
    """Whether the slow studies run at full size."""
    return bool(request.config.getoption("--full-studies") or os.environ.get("RAJAK_FULL_STUDIES") == "1")
