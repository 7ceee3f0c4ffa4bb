"""What can be wrong with a study file, and what was left out of it: the one-line error every reader
and check raises (:class:`DataValidationError`, a list of :class:`Problem`) and the rows a rule
excluded (:class:`ExcludedRow`, listed in the validation report, never dropped silently).

They live apart from ``data`` so that the readers (``readers``, ``adam``) can raise them without
importing the validation that uses the readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DataValidationError", "ExcludedRow", "Problem"]


@dataclass(frozen=True)
class Problem:
    """One validation failure.

    Parameters
    ----------
    message
        The whole one-line message (file, line or row, patient, column, value, what is wrong).
    column, row, patient, value
        The same, as data, where known.
    """

    message: str
    column: str | None = None
    row: int | None = None
    patient: str | None = None
    value: Any = None


class DataValidationError(ValueError):
    """Bad input. ``str(err)`` is one line; ``err.problems`` lists every problem found.

    Parameters
    ----------
    problems
        The problems, or one message.
    """

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = problems
        first = problems[0].message
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        super().__init__(first + more)


@dataclass(frozen=True)
class ExcludedRow:
    """A row left out of the analysis by a rule.

    Parameters
    ----------
    where
        Where the row is in the file ("line 12", "row 40").
    patient
        Its patient (subject) identifier.
    month
        Its visit month (NaN where it cannot be placed).
    reason
        The rule that excluded it.
    """

    where: str
    patient: str
    month: float
    reason: str
