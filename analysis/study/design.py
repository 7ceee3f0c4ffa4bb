r"""The study design: which columns of a user's file are the subject, the time, the visits, the BMD
sites, the group and the covariates, and which visit is the endpoint.

One :class:`StudyDesign` describes a study in its own words. It is inferred from the file's columns
where that is unambiguous (:func:`infer_design`), set by the same command-line flags on every command
that reads data (``--id``, ``--time``, ``--time-unit``, ``--visit``, ``--group``, ``--reference``,
``--site NAME=COLUMN``, ``--endpoint``, ``--covariates``) or by a ``[study]`` table in the run plan,
and written into every run's manifest. Nothing below the study room needs to know which study it is:
:func:`canonical_frame` puts any file into rajak's canonical long form, and :class:`ResolvedDesign`
carries the concrete sites, visits, group levels and endpoint every analysis reads.

Time
----
The time column is in months, days or years, or calendar dates; it becomes ``month``, months since
each subject's baseline visit (their earliest record):

.. math:: \text{month} = t \text{ (months)}, \quad \frac{t - t_0}{30.4375} \text{ (days, dates)},
          \quad 12\,(t - t_0) \text{ (years)},

where :math:`t_0` is the subject's first time (for months the values are taken as given, baseline
0). The nominal visit (``visit``, in months) comes from the user's visit column when given
(``--visit``; a month, an index such as ``VISITNUM`` or a visit name: each visit is placed at the
whole month nearest the median time of its scans, so an index 0-3 at months 0/6/12/24 becomes
0, 6, 12, 24), else the scans are grouped into visit windows, each placed at the whole month
nearest its median time (:func:`nominal_visits`): a scan on day 350-380 is the month-12 visit. The MMRM and
visit-wise tables use the nominal visit; the LMMs use the actual ``month``.

Group
-----
``derived``: responder status derived from disease activity by the responder rule (the RAJAK
default, reference level ``non-responder``); ``column``: the levels of a column the user names (an
arm, a dose group), lower-cased, with ``--reference`` choosing the reference level (default: a level
called placebo, control or reference if there is one, else the first in sort order); ``none``: a
single-arm study, within-subject change only. With more than two levels each level is compared with
the reference.

The RAJAK default design lives in :mod:`analysis.study.rajak_design`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DAYS_PER_MONTH", "ID_CANDIDATES", "RESPONDER_LEVELS", "TIME_CANDIDATES", "DesignError", "GroupSpec", "ResolvedDesign",
           "StudyDesign", "canonical_frame", "canonical_months", "from_mapping", "infer_design", "nominal_visits", "parse_covariates", "parse_sites", "resolve"]

#: Days per month (365.25 / 12) for times in days or dates.
DAYS_PER_MONTH = 30.4375
#: Subject identifiers rajak recognises without ``--id``, in order of preference.
ID_CANDIDATES = ("patient_id", "USUBJID", "subject_id", "SUBJID", "subject", "id")
#: Time columns recognised without ``--time`` (name -> unit).
TIME_CANDIDATES = {"month": "months", "months": "months", "AVISITN": "months", "visit_month": "months",
                   "day": "days", "days": "days", "ADY": "days", "study_day": "days", "year": "years",
                   "years": "years", "visit_date": "date", "date": "date", "ADT": "date"}
#: Covariates used when present and not named (``--covariates``).
DEFAULT_COVARIATES = ("age", "sex", "bmi")
#: The levels of responder status derived from disease activity (a ``derived`` group), reference first.
RESPONDER_LEVELS = ("non-responder", "responder")
#: Group levels taken as the reference without ``--reference``.
REFERENCE_NAMES = ("placebo", "control", "reference", "standard of care", "soc", "pbo", "p")
_SITE_COLUMN = re.compile(r"^bmd_([a-z][a-z0-9_]*)$")


class DesignError(ValueError):
    """A design that does not fit the data: one line naming the column, level or value."""


class GroupSpec(BaseModel):
    """How subjects are grouped (see the module docstring, *Group*)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["derived", "column", "none"] = "derived"
    column: str | None = None
    reference: str | None = None

    @field_validator("reference")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return None if v is None else str(v).strip().lower()


class StudyDesign(BaseModel):
    """A study's design in its own words.

    Attributes
    ----------
    id, time : str
        Subject-identifier and time columns.
    time_unit : {"months", "days", "years", "date"}
    visit : str, optional
        Nominal visit column (in months); default: visit windows of the times (:func:`nominal_visits`).
    sites : dict of str to str
        Site name -> BMD column (``{"total_body": "bmd"}``); empty: every ``bmd_<site>`` column.
    group : GroupSpec
    endpoint : float, optional
        Endpoint visit in months; default the last nominal visit.
    covariates : tuple of str, optional
        Baseline covariates; ``None``: those of :data:`DEFAULT_COVARIATES` present; ``()``: none.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = "patient_id"
    time: str = "month"
    time_unit: Literal["months", "days", "years", "date"] = "months"
    visit: str | None = None
    sites: dict[str, str] = Field(default_factory=dict)
    group: GroupSpec = Field(default_factory=GroupSpec)
    endpoint: float | None = None
    covariates: tuple[str, ...] | None = None

    @field_validator("sites")
    @classmethod
    def _site_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"site name {name!r}: use lower-case letters, digits and _ (e.g. total_hip)")
        return v

    def describe(self) -> str:
        """One paragraph for ``rajak validate`` and the report."""
        sites = ", ".join(f"{k} ({v})" for k, v in self.sites.items()) or "every bmd_<site> column"
        group = {"derived": "responder status derived from disease activity",
                 "column": f"column {self.group.column!r}", "none": "none (single arm)"}[self.group.kind]
        ref = f", reference {self.group.reference!r}" if self.group.reference else ""
        cov = ("those present of " + ", ".join(DEFAULT_COVARIATES) if self.covariates is None
               else ", ".join(self.covariates) or "none")
        return (f"subject {self.id!r}; time {self.time!r} in {self.time_unit}; visits "
                f"{repr(self.visit) if self.visit else 'windows of the times, at whole months'}; sites {sites}; "
                f"group {group}{ref}; endpoint "
                f"{'month ' + format(self.endpoint, 'g') if self.endpoint is not None else 'last visit'}; "
                f"covariates {cov}")


class ResolvedDesign(BaseModel):
    """A :class:`StudyDesign` made concrete on one data set: what every analysis reads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    design: StudyDesign
    sites: tuple[str, ...]
    visits: tuple[float, ...]
    endpoint: float
    group_levels: tuple[str, ...]
    reference: str | None
    covariates: tuple[str, ...]

    @property
    def comparisons(self) -> tuple[tuple[str, str], ...]:
        """(level, reference) for every level other than the reference."""
        if self.reference is None:
            return ()
        return tuple((lvl, self.reference) for lvl in self.group_levels if lvl != self.reference)

    def to_dict(self) -> dict[str, Any]:
        return {"design": self.design.model_dump(mode="json"), "sites": list(self.sites),
                "visits": list(self.visits), "endpoint": self.endpoint, "group_levels": list(self.group_levels),
                "reference": self.reference, "covariates": list(self.covariates)}


def parse_sites(items: Iterable[str]) -> dict[str, str]:
    """``--site NAME=COLUMN`` (or ``--site NAME`` for a ``bmd_NAME`` column), repeatable."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, column = str(item).partition("=")
        name = name.strip().lower()
        out[name] = column.strip() if sep else f"bmd_{name}"
        if not out[name]:
            raise DesignError(f"--site {item!r}: give NAME=COLUMN, e.g. total_body=bmd")
    return out


def parse_covariates(text: str | None) -> tuple[str, ...] | None:
    """``--covariates age,sex`` or ``none``; ``None`` (not given) keeps the default."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    return tuple(c.strip() for c in text.split(",") if c.strip())


def infer_design(columns: Sequence[str], **given: Any) -> StudyDesign:
    """The design of a file with these columns, taking what the user gave (``given``) as is.

    Parameters
    ----------
    columns : sequence of str
        The file's columns (after any column mapping).
    **given
        Fields of :class:`StudyDesign` the user set (``None`` values are ignored); ``group`` may be a
        column name (``"arm"``), ``"none"`` or ``"responder"`` (derived), and ``reference`` its
        reference level.

    Raises
    ------
    DesignError
        A named column that the file does not have, or no subject-identifier or time column.
    """
    cols = list(columns)
    given = {k: v for k, v in given.items() if v is not None}
    fields: dict[str, Any] = {}
    fields["id"] = given.get("id") or next((c for c in ID_CANDIDATES if c in cols), None)
    if fields["id"] is None:
        raise DesignError("no subject-identifier column (looked for " + ", ".join(ID_CANDIDATES)
                          + "); name it with --id COLUMN")
    if "time" in given:
        fields["time"] = given["time"]
        fields["time_unit"] = given.get("time_unit", TIME_CANDIDATES.get(given["time"], "months"))
    else:
        found = next((c for c in TIME_CANDIDATES if c in cols), None)
        if found is None:
            raise DesignError("no time column (looked for " + ", ".join(TIME_CANDIDATES)
                              + "); name it with --time COLUMN [--time-unit days|years|date]")
        fields["time"] = found
        fields["time_unit"] = given.get("time_unit", TIME_CANDIDATES[found])
    for name in ("visit", "endpoint", "covariates"):
        if name in given:
            fields[name] = given[name]
    sites = dict(given.get("sites") or {})
    if not sites:
        sites = {m.group(1): c for c in cols if (m := _SITE_COLUMN.match(c))}
    fields["sites"] = sites
    group = given.get("group")
    reference = given.get("reference")
    if isinstance(group, GroupSpec):
        fields["group"] = group
    elif group is None or str(group).lower() == "responder":
        derivable = any(c in cols for c in ("responder", "das28_crp", "cdai", "tjc28"))
        fields["group"] = GroupSpec(kind="derived" if derivable else "none",
                                    reference=reference if derivable else None)
        if reference is not None and not derivable:
            raise DesignError(f"--reference {reference!r} needs a group (--group COLUMN)")
    elif str(group).lower() == "none":
        fields["group"] = GroupSpec(kind="none")
    else:
        fields["group"] = GroupSpec(kind="column", column=str(group), reference=reference)
    design = StudyDesign(**fields)
    named = [("--id", design.id), ("--time", design.time), ("--visit", design.visit),
             ("--group", design.group.column)] + [(f"--site {k}", v) for k, v in design.sites.items()]
    for flag, col in named:
        if col is not None and col not in cols:
            raise DesignError(f"{flag}: no column {col!r} in the file (columns: {', '.join(map(str, cols[:20]))}"
                              f"{' ...' if len(cols) > 20 else ''})")
    if not design.sites:
        raise DesignError("no BMD column: name one with --site NAME=COLUMN (e.g. --site total_body=bmd) or call "
                          "it bmd_<site>")
    return design


def _months(frame: pd.DataFrame, design: StudyDesign) -> pd.Series:
    t = frame[design.time]
    if design.time_unit == "date":
        d = pd.to_datetime(t, errors="coerce")
        bad = d.isna() & t.notna()
        if bad.any():
            raise DesignError(f"column {design.time!r}: {t[bad].iloc[0]!r} is not a date")
        base = d.groupby(frame[design.id]).transform("min")
        return (d - base).dt.total_seconds() / 86400.0 / DAYS_PER_MONTH
    x = pd.to_numeric(t, errors="coerce")
    bad = x.isna() & t.notna()
    if bad.any():
        raise DesignError(f"column {design.time!r}: {t[bad].iloc[0]!r} is not a number")
    if design.time_unit == "months":
        return x.astype(float)
    base = x.groupby(frame[design.id]).transform("min")
    elapsed = (x - base).astype(float)
    # divided, not multiplied by 1/30.4375: bit for bit the months of an ADaM file's ADY (adam.py)
    return elapsed * 12.0 if design.time_unit == "years" else elapsed / DAYS_PER_MONTH


#: Scans closer than this (months) in the sorted times belong to one visit window.
VISIT_GAP_MONTHS = 1.0


def nominal_visits(months: pd.Series, subject: pd.Series) -> pd.Series:
    r"""Nominal visits from actual times: the scans fall into visit windows, and each window is
    placed at the whole month nearest its median time.

    The sorted times are cut wherever two consecutive times are more than
    :data:`VISIT_GAP_MONTHS` apart; a window in which some subject has two scans spans more than
    one visit, and its scans keep their own rounded month, as do windows that would share a month.
    Days 350-380 (months 11.5-12.5) are one window with median near 12: the month-12 visit, not
    visits 11 and 12.

    Parameters
    ----------
    months : Series
        Actual months since each subject's baseline.
    subject : Series
        The subject of each row.

    Returns
    -------
    Series
        The nominal visit (month) of each row, float; missing where the time is missing.
    """
    t = months.to_numpy(dtype=float)
    visit = np.round(t)
    ok = np.flatnonzero(np.isfinite(t))
    if ok.size == 0:
        return pd.Series(visit, index=months.index)
    order = ok[np.argsort(t[ok], kind="stable")]
    window = np.empty(t.size, dtype=int)
    window[order] = np.concatenate([[0], np.cumsum(np.diff(t[order]) > VISIT_GAP_MONTHS)])
    ids = subject.to_numpy()
    placed: dict[float, int] = {}
    proposal = {}
    for w in np.unique(window[ok]):
        rows = ok[window[ok] == w]
        if pd.Series(ids[rows]).duplicated().any():
            continue  # more than one visit in this window: rounding decides
        proposal[w] = (rows, float(np.round(np.median(t[rows]))))
    for rows, month in proposal.values():
        placed[month] = placed.get(month, 0) + 1
    for rows, month in proposal.values():
        if placed[month] == 1:
            visit[rows] = month
    return pd.Series(visit, index=months.index)


def _visits(frame: pd.DataFrame, design: StudyDesign, months: pd.Series) -> pd.Series:
    """The nominal visit (month) of each row: the design's visit column placed at the whole month of
    its scans, else windows of the times (:func:`nominal_visits`).

    Raises
    ------
    DesignError
        An empty visit label, or two visits at the same month.
    """
    if design.visit is None:
        return nominal_visits(months, frame[design.id])
    label = frame[design.visit]
    if label.isna().any():
        raise DesignError(f"column {design.visit!r}: empty at row {int(np.flatnonzero(label.isna())[0]) + 1}")
    # each visit (a month, an index such as VISITNUM 0-3, or a name) at the whole month its
    # scans were taken at, by the median: an index 0, 1, 2, 3 at months 0, 6, 12, 24 is 0, 6, 12, 24
    codes, uniques = pd.factorize(label)  # by code, not by label: mapping text labels row by row is slow
    by_code = months.groupby(codes).median().round().reindex(range(len(uniques))).to_numpy(dtype=float)
    visit = pd.Series(by_code[codes], index=label.index)
    nominal = pd.Series(by_code, index=uniques).sort_index()
    placed = by_code[~np.isnan(by_code)]
    if np.unique(placed).size < placed.size:  # two labels at one month
        raise DesignError(f"column {design.visit!r}: two visits fall at the same month "
                          f"({', '.join(map(str, nominal.index))} at months {', '.join(f'{m:g}' for m in nominal)})")
    return visit


def canonical_months(frame: pd.DataFrame, design: StudyDesign) -> pd.Series:
    """The ``month`` column :func:`canonical_frame` gives (actual months since the subject's baseline),
    with the same checks of the time and visit columns, without building the rest of the frame.

    Raises
    ------
    DesignError
        A time that is not a number (or a date), an empty visit label, two visits at the same month.
    """
    months = _months(frame, design)
    _visits(frame, design, months)
    return months


def canonical_frame(frame: pd.DataFrame, design: StudyDesign) -> pd.DataFrame:
    """The file in rajak's canonical long form (the input is not modified).

    ``patient_id`` (string), ``month`` (actual months since the subject's baseline), ``visit``
    (nominal month), ``bmd_<site>`` per design site, ``group`` (lower-cased level, when the design
    groups by a column); every other column passes through unchanged. The other columns are not
    copied: the result shares them with ``frame`` (pandas' copy-on-write keeps ``frame`` as it is
    whatever is done to the result), so only the new columns cost memory.
    """
    months = _months(frame, design)
    visit = _visits(frame, design, months)
    renames = {design.id: "patient_id"}
    for site, col in design.sites.items():
        renames[col] = f"bmd_{site}"
    taken = set(renames.values())
    clashes = [c for c in frame.columns if c in taken and c not in renames]
    out = frame.drop(columns=clashes).rename(columns=renames)  # lazy copies (copy-on-write)
    out["patient_id"] = out["patient_id"].astype(str)
    out["month"] = months.to_numpy()
    out["visit"] = visit.to_numpy(dtype=float)
    if design.group.kind == "column":
        g = frame[design.group.column]
        out["group"] = g.where(g.isna(), g.astype(str).str.strip().str.lower())
    return out


def resolve(frame: pd.DataFrame, design: StudyDesign, source: str = "the data") -> ResolvedDesign:
    """Make ``design`` concrete on a canonical frame (:func:`canonical_frame`).

    Raises
    ------
    DesignError
        One line naming ``source`` and the problem: a site with no value at all, no scan at the
        endpoint for a site, a group column with one level, a reference level that is not present, a
        group level with no scan at the endpoint.
    """
    sites = tuple(design.sites)
    for s in sites:
        if frame[f"bmd_{s}"].notna().sum() == 0:
            raise DesignError(f"{source}: site {s} ({design.sites[s]}) has no value at all")
    visits = tuple(float(v) for v in np.sort(frame["visit"].dropna().unique()))
    if len(visits) < 2:
        raise DesignError(f"{source}: one visit only ({visits[0]:g} months): no change from baseline to analyse")
    endpoint = float(design.endpoint) if design.endpoint is not None else visits[-1]
    if endpoint not in visits:
        raise DesignError(f"{source}: endpoint month {endpoint:g} is not a visit (visits: "
                          + ", ".join(f"{v:g}" for v in visits) + ")")
    at_end = frame["visit"] == endpoint
    for s in sites:
        if not frame.loc[at_end, f"bmd_{s}"].notna().any():
            raise DesignError(f"{source}: no {s} scan at the endpoint (month {endpoint:g})")
    levels: tuple[str, ...] = ()
    reference = design.group.reference
    if design.group.kind == "column":
        levels = tuple(sorted(frame["group"].dropna().unique()))
        col = design.group.column
        if len(levels) < 2:
            raise DesignError(f"{source}: group column {col!r} has one level ({', '.join(levels) or 'none'}); "
                              f"use --group none for a single-arm study")
        per_subject = frame.dropna(subset=["group"]).groupby("patient_id")["group"].nunique()
        if (per_subject > 1).any():
            raise DesignError(f"{source}: group column {col!r} changes within subject "
                              f"{per_subject[per_subject > 1].index[0]}")
        if reference is None:
            reference = next((lv for lv in levels if lv in REFERENCE_NAMES), levels[0])
        elif reference not in levels:
            raise DesignError(f"{source}: --reference {reference!r} is not a level of {col!r} "
                              f"(levels: {', '.join(levels)})")
        # each row under its subject's group (a row may leave it empty), then the levels with a scan at the endpoint
        subject_group = frame["group"].groupby(frame["patient_id"], sort=False).transform("first")
        scanned = at_end & frame[[f"bmd_{s}" for s in sites]].notna().any(axis=1)
        with_completer = set(subject_group[scanned].dropna().unique())
        for lv in levels:
            if lv not in with_completer:
                raise DesignError(f"{source}: group {lv!r} has no completer (no scan at month {endpoint:g})")
    elif design.group.kind == "derived":
        levels = RESPONDER_LEVELS
        reference = reference or RESPONDER_LEVELS[0]
    present = [c for c in DEFAULT_COVARIATES if c in frame.columns]
    covariates = tuple(present) if design.covariates is None else tuple(design.covariates)
    missing = [c for c in covariates if c not in frame.columns]
    if missing:
        raise DesignError(f"{source}: --covariates names {missing[0]!r}, which is not a column")
    return ResolvedDesign(design=design, sites=sites, visits=visits, endpoint=endpoint, group_levels=levels,
                          reference=reference, covariates=covariates)


def from_mapping(study: Mapping[str, Any] | None) -> dict[str, Any]:
    """A ``[study]`` table of the run plan as :func:`infer_design` keywords (``site`` entries as
    ``NAME=COLUMN`` strings or a table, ``covariates`` as a list or ``"none"``)."""
    if not study:
        return {}
    out = dict(study)
    if "sites" in out and not isinstance(out["sites"], Mapping):
        out["sites"] = parse_sites(out["sites"])
    if isinstance(out.get("covariates"), str):
        out["covariates"] = parse_covariates(out["covariates"])
    elif out.get("covariates") is not None:
        out["covariates"] = tuple(out["covariates"])
    return out
