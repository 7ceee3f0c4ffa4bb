"""The one-line CLI error the out-of-memory tests expect (exit 2, one ``rajak: error:`` line, no traceback)."""

from __future__ import annotations

__all__ = ["one_memory_error_line"]


def one_memory_error_line(res) -> str:
    """The single ``rajak: error:`` line of a Typer ``CliRunner`` result that ran out of memory."""
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("rajak: error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert "out of memory" in lines[0]
    return lines[0]
