r"""Placing an intercurrent event's first affected visit on the design's nominal visits.

An ICE file names the first visit the event affects as the user's data name visits. A value is read,
in this order:

1. a visit label of the study's own visit column (``--visit``, e.g. ``VISITNUM`` 0-3 or
   ``AVISIT`` "Week 52"), as the study file maps it to a nominal month, unless the ICE column's name
   says a unit (``ice_day``);
2. a time with exactly one number: its unit is a unit word in the cell (``"Month 12"``,
   ``"Week 52"``, ``"Day 365"``, ``"Year 1"``), else the unit the column's name says (``ice_month``,
   ``ice_day``, ``ADY``), else the study's time unit (``--time-unit``; a study timed by dates reads
   bare numbers as months and other text as a date). Days, years and dates become months since the
   patient's baseline as the study's times did (:func:`analysis.study.design.canonical_frame`:
   days / 30.4375 after the patient's first time; weeks are 7 days).

A time in months must be a visit month exactly. A time in other units is the nominal visit whose
window contains it (the range of the study's actual months at that visit) or whose whole month it
rounds to, as :func:`analysis.study.design.nominal_visits` placed the scans; a time two visits claim is
ambiguous. Whatever does not resolve raises a :class:`ValueError` naming the value and the visits,
which the callers prefix with the file, row and column.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import numpy as np
import pandas as pd

from analysis.study.design import DAYS_PER_MONTH, ResolvedDesign

__all__ = ["VisitMap", "column_unit"]

_UNIT_WORDS = (("week", "weeks"), ("wk", "weeks"), ("month", "months"), ("mon", "months"), ("day", "days"),
               ("year", "years"), ("yr", "years"))
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
_TOL = 1e-6


def column_unit(name: str) -> str | None:
    """The time unit a column's name says (``ice_month`` -> months, ``ADY``/``ice_day`` -> days,
    ``AVISITN`` -> months), or ``None``."""
    low = str(name).strip().lower()
    if low in ("ady", "astdy", "aendy", "icedy", "days") or low.endswith("day"):
        return "days"
    if low in ("avisitn", "month", "months") or "month" in low:
        return "months"
    if "week" in low:
        return "weeks"
    if "year" in low:
        return "years"
    return None


def _key(value: Any) -> str:
    """A visit label as a key: numbers without a trailing ``.0``, text stripped and lower-cased."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        f = float(value)
        return f"{int(f)}" if f.is_integer() else f"{f:g}"
    text = str(value).strip().lower()
    try:
        f = float(text)
    except ValueError:
        return text
    return f"{int(f)}" if f.is_integer() else f"{f:g}"


class VisitMap:
    """The nominal visit of a first-affected-visit value (see the module docstring).

    Parameters
    ----------
    derived : DataFrame
        The study's derived long frame (:func:`analysis.study.clinical.derive`): ``patient_id``,
        ``month`` (nominal), ``month_actual``, the visit and time columns of the study file.
    design : ResolvedDesign
        The study's resolved design.
    """

    def __init__(self, derived: pd.DataFrame, design: ResolvedDesign):
        self.visits = tuple(float(v) for v in design.visits)
        self.unit = design.design.time_unit
        self.labels: dict[str, float] = {}
        col = design.design.visit
        if col is not None and col in derived.columns:
            pairs = derived[[col, "month"]].dropna().drop_duplicates()
            keyed = pairs.assign(key=pairs[col].map(_key))
            months = keyed.groupby("key")["month"].nunique()
            for key, grp in keyed.groupby("key"):
                if months[key] == 1:
                    self.labels[str(key)] = float(grp["month"].iloc[0])
        actual = derived["month_actual"] if "month_actual" in derived.columns else derived["month"]
        win = pd.DataFrame({"v": derived["month"], "t": actual}).dropna().groupby("v")["t"].agg(["min", "max"])
        self.windows = {float(v): (float(r["min"]), float(r["max"])) for v, r in win.iterrows()}
        self.base: dict[str, Any] = {}
        time = design.design.time
        if self.unit != "months" and time in derived.columns:
            t = derived[time]
            t = pd.to_datetime(t, errors="coerce") if self.unit == "date" else pd.to_numeric(t, errors="coerce")
            self.base = t.groupby(derived["patient_id"].astype(str)).min().to_dict()

    def _shown_visits(self) -> str:
        return "post-baseline visits: " + ", ".join(f"{v:g}" for v in self.visits[1:])

    def month(self, value: Any, patient: str, column: str | None = None) -> float:
        """The nominal visit (month) of ``value`` for ``patient``.

        Parameters
        ----------
        value
            The cell: a number, a visit label, ``"Week 52"``, a date.
        patient : str
            The patient (days, years and dates count from their baseline).
        column : str, optional
            The column's name, whose unit word (:func:`column_unit`) applies to bare numbers.

        Returns
        -------
        float
            A month of ``design.visits`` (the baseline, 0, too: the caller decides whether it may be).

        Raises
        ------
        ValueError
            One phrase naming the value and the visits.
        """
        by_label = self.labels.get(_key(value))
        if by_label is not None and not (column and column_unit(column)):
            return by_label
        return self._by_time(value, patient, column)

    def _by_time(self, value: Any, patient: str, column: str | None) -> float:
        months = self._months(value, patient, column)
        exact = [v for v in self.visits if abs(v - months[0]) < _TOL]
        if exact:
            return exact[0]
        if months[1] == "months":
            raise ValueError(f"{_show(value)} is not a visit month of the design ({self._shown_visits()})")
        t = months[0]
        hits = {v for v, (lo, hi) in self.windows.items() if lo - _TOL <= t <= hi + _TOL}
        hits |= {v for v in self.visits if abs(v - float(np.round(t))) < _TOL}
        if len(hits) == 1:
            return hits.pop()
        if len(hits) > 1:
            raise ValueError(f"{_show(value)} ({t:.2f} months) is ambiguous: it falls in the windows of months "
                             + " and ".join(f"{v:g}" for v in sorted(hits)))
        hint = (f"; read as a {months[1][:-1]} number since baseline, as the study's time: write e.g. 'Month "
                f"{self.visits[-1]:g}', or call the column ice_month" if months[1] == self.unit else "")
        raise ValueError(f"{_show(value)} ({t:.2f} months after baseline) is at no visit of the design "
                         f"({self._shown_visits()} months){hint}")

    def _months(self, value: Any, patient: str, column: str | None) -> tuple[float, str]:
        """(months since baseline, the unit read)."""
        unit = column_unit(column) if column else None
        if isinstance(value, (datetime.date, np.datetime64)) or (isinstance(value, str) and self.unit == "date"
                                               and not _NUMBER.fullmatch(value.strip())):
            return self._date(value, patient), "date"
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            x = float(value)
        else:
            text = str(value).strip().lower()
            numbers = _NUMBER.findall(text)
            if len(numbers) != 1:
                raise ValueError(f"{_show(value)} is not a visit label of the study nor a time with one number "
                                 f"({self._shown_visits()} months)")
            x = float(numbers[0].replace(",", "."))
            words = re.sub(r"[^a-z]+", " ", text).split()
            said = next((u for w in words for prefix, u in _UNIT_WORDS if w.startswith(prefix)), None)
            unit = said or unit
        unit = unit or ("months" if self.unit == "date" else self.unit)
        if unit == "months":
            return x, "months"
        if unit == "weeks":
            return x * 7.0 / DAYS_PER_MONTH, unit
        base = self.base.get(patient)
        base = 0.0 if base is None or not isinstance(base, (int, float, np.floating, np.integer)) or pd.isna(base) \
            else float(base)
        if unit == "years":
            return (x - base) * 12.0, unit
        return (x - base) / DAYS_PER_MONTH, unit

    def _date(self, value: Any, patient: str) -> float:
        d = pd.to_datetime(value, errors="coerce")
        if pd.isna(d):
            raise ValueError(f"{_show(value)} is not a date nor a visit label of the study")
        base = self.base.get(patient)
        if base is None or pd.isna(base):
            raise ValueError(f"{_show(value)} is a date, but patient {patient} has no dated visit in the study")
        return (d - base).total_seconds() / 86400.0 / DAYS_PER_MONTH


def _show(value: Any) -> str:
    """A value as messages show it: numbers (also a number read as text) plainly, other text quoted."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{float(value):g}"
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return value.strip()
    return repr(str(value))
