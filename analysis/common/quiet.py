"""Silencing a chatty library logger for the length of one call whose messages rajak reports itself."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["quiet_logger"]


@contextlib.contextmanager
def quiet_logger(logger: str) -> Iterator[None]:
    """Raise a library logger to ERROR for the duration (its messages are in our tables)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
