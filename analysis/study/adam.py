"""CDISC ADaM BDS files, pivoted to the data contract.

An ADaM Basic Data Structure file has one record per subject x parameter x visit (``USUBJID``,
``PARAMCD``/``PARAM``, ``AVAL``, ``AVISITN`` and/or ``ADY``, ``ABLFL``, ``ANL01FL``, ``TRT01P``,
``AGE``, ``SEX`` ...). :func:`is_adam_bds` recognises one from its columns; :func:`pivot_adam` turns
it into the contract's wide frame, one row per subject x visit:

- ``patient_id`` from ``USUBJID``;
- ``month`` from ``AVISITN`` when it reads as months (:func:`avisitn_not_months` is the rule),
  otherwise from ``ADY``: (ADY - ADY of the subject's baseline record for that parameter) / 30.4375;
- ``bmd_<site>`` (and ``tscore_<site>``) from ``AVAL`` per parameter, by :data:`DEFAULT_PARAM_MAP`
  (codes built from :data:`SITE_TOKENS` x :data:`MEASURE_TOKENS`, e.g. ``LSBMD``, ``BMDFN``,
  ``TOTHBMD``), by the parameter's label (``PARAM``: "Lumbar Spine BMD (g/cm2)") where the code is
  not in the table, or by the user's ``param_map`` (``{"CODE": "site"}``, ``"tscore_<site>"``, a
  measurement column of the contract such as ``"crp_mg_l"``, or ``"ignore"``); disease activity
  parameters named as in :data:`ACTIVITY_CODES` (``DAS28CRP``, ``CDAI``, ``TJC28``, ``SJC28``)
  fill their contract columns; other parameters are ignored with a note;
- the treatment columns (``TRT01P``, ``TRT01A``, ``ARM``, ``ACTARM``) kept under their names,
  ``age`` from ``AGE``, ``sex`` from ``SEX``, ``bmi`` from ``BMIBL``.

Records with ``ANL01FL`` present and not "Y", derived records (``DTYPE`` set) and, with months from
``ADY``, records before the baseline are excluded and listed, never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from analysis.study.contract import MEASUREMENT_COLUMNS
from analysis.study.design import DAYS_PER_MONTH
from analysis.study.problems import DataValidationError, ExcludedRow
from analysis.study.readers import RawTable

__all__ = [
    "ACTIVITY_CODES",
    "DAYS_PER_MONTH",
    "DEFAULT_PARAM_MAP",
    "MEASURE_TOKENS",
    "SITE_TOKENS",
    "SUBJECT_COLUMNS",
    "TREATMENT_COLUMNS",
    "AdamPivot",
    "AdamTable",
    "adam_table",
    "avisitn_not_months",
    "is_adam_bds",
    "param_target",
    "pivot_adam",
]

MAX_MONTH = 240
SITE_TOKENS: dict[str, tuple[str, ...]] = {
    "spine": ("LS", "L1L4", "LSP", "SP", "SPINE"),
    "femoral_neck": ("FN", "FNK", "NECK"),
    "total_hip": ("TH", "TOTH", "THIP", "HIP"),
    "radius": ("RAD", "R33", "RADIUS"),
    "total_body": ("TB", "WB", "TOTB"),
}
MEASURE_TOKENS: dict[str, tuple[str, ...]] = {
    "bmd": ("BMD",),
    "tscore": ("TSCORE", "TSCR", "TS"),
    "zscore": ("ZSCORE", "ZSCR", "ZS"),  # recognised, then ignored: the contract has no Z-scores
}
ACTIVITY_CODES = {"DAS28CRP": "das28_crp", "DAS28": "das28_crp", "CDAI": "cdai", "TJC28": "tjc28",
                  "SJC28": "sjc28"}  # units-free scores only: CRP and VAS parameters need --param (units)
TREATMENT_COLUMNS = ("TRT01P", "TRT01A", "ARM", "ACTARM")
SUBJECT_COLUMNS = {**{c: c for c in TREATMENT_COLUMNS}, "AGE": "age", "SEX": "sex", "BMIBL": "bmi"}
IGNORE = ("ignore", "none", "-")


def _code_table() -> dict[str, str | None]:
    out: dict[str, str | None] = dict(ACTIVITY_CODES)
    for site, site_tokens in SITE_TOKENS.items():
        for measure, measure_tokens in MEASURE_TOKENS.items():
            target = None if measure == "zscore" else f"{measure}_{site}"
            for s in site_tokens:
                for m in measure_tokens:
                    for code in (s + m, m + s):
                        if out.get(code, target) != target:  # pragma: no cover - guarded by a test
                            raise AssertionError(f"PARAMCD {code} would mean two things")
                        out[code] = target
    return out


DEFAULT_PARAM_MAP: dict[str, str | None] = _code_table()
"""PARAMCD (upper case, without ``_``/``-``/blanks) -> contract column; ``None``: a Z-score."""

_LABEL_SITES = (("femoral_neck", r"femoral\s*neck|neck\s+of\s+(?:the\s+)?femur"),
                ("total_hip", r"total\s*hip|\bhip\b"),
                ("spine", r"lumbar|spine|\bl1\s*-\s*l4\b"),
                ("radius", r"radius"),
                ("total_body", r"total\s*body|whole\s*body"))
_DERIVED = re.compile(r"change|\bchg\b|percent|\bpct\b|%|ratio|\bcfb\b")
_OTHER_UNIT = re.compile(r"\b(week|wk|day|visit|year|yr|cycle|period)s?\b|^[wdvy]\s*\d")
_MONTH_TEXT = re.compile(r"(?:months?|mo|\bm)\s*(\d+(?:\.\d+)?)")


def is_adam_bds(columns: Any) -> bool:
    """Whether a table with these columns is an ADaM BDS file.

    Parameters
    ----------
    columns
        The table's column names.

    Returns
    -------
    bool
        ``USUBJID``, ``AVAL`` and ``PARAMCD`` or ``PARAM`` (any case) are there, and no contract
        ``patient_id`` column.
    """
    names = {str(c).upper() for c in columns}
    return {"USUBJID", "AVAL"} <= names and bool({"PARAMCD", "PARAM"} & names) and "patient_id" not in set(columns)


def param_target(code: str, label: str | None = None) -> tuple[str | None, str]:
    """The contract column a parameter fills, and how that was decided.

    Parameters
    ----------
    code
        The PARAMCD.
    label
        Its PARAM text, used where the code is not in :data:`DEFAULT_PARAM_MAP`.

    Returns
    -------
    tuple
        (the contract column, e.g. ``"bmd_<site>"``, ``"tscore_<site>"``, ``"das28_crp"``, or ``None``;
        ``"code"``, ``"label"``,
        ``"z-score"`` or ``"not BMD"``).
    """
    key = re.sub(r"[^A-Z0-9]", "", str(code).upper())
    if key in DEFAULT_PARAM_MAP:
        target = DEFAULT_PARAM_MAP[key]
        return target, "code" if target else "z-score"
    text = str(label or "").lower()
    if not text or _DERIVED.search(text):
        return None, "not BMD"
    if re.search(r"\bz[\s-]?score\b", text):
        return None, "z-score"
    measure = "tscore" if re.search(r"\bt[\s-]?score\b", text) else \
        "bmd" if re.search(r"bone\s+mineral\s+density|\bbmd\b", text) else None
    sites = [s for s, rx in _LABEL_SITES if re.search(rx, text)]
    if "femoral_neck" in sites and "total_hip" in sites:
        sites.remove("total_hip")
    if measure is None or len(sites) != 1:
        return None, "not BMD"
    return f"{measure}_{sites[0]}", "label"


def _normalise_param_map(param_map: Mapping[str, str] | None, name: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for code, value in (param_map or {}).items():
        v = str(value).strip().lower()
        if v in IGNORE:
            out[str(code).strip()] = None
            continue
        target = v if v.startswith(("bmd_", "tscore_")) or v in MEASUREMENT_COLUMNS else f"bmd_{v}"
        if not (re.fullmatch(r"(bmd|tscore)_[a-z][a-z0-9_]*", target) or target in MEASUREMENT_COLUMNS):
            raise DataValidationError(f"{name}: --param {code}={value}: a site is a lower-case name such as "
                                      f"spine, femoral_neck, total_hip (or tscore_<site>, a measurement column "
                                      f"such as crp_mg_l, or ignore)")
        out[str(code).strip()] = target
    return out


def _text(v: Any) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v).strip()


def _show(v: Any) -> str:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return f"{float(v):g}"
    return repr(_text(v)) if _text(v) else "(empty)"


@dataclass
class AdamPivot:
    """The wide frame pivoted from an ADaM file, and what was done to get it.

    Parameters
    ----------
    frame
        One row per subject x visit, in the contract's names.
    targets
        PARAMCD -> contract column (``None``: ignored).
    excluded
        Records left out, with the rule.
    notes
        What the report should say (mapping, month source, ignored parameters).
    cell_src, row_src
        The file row each cell (``cell_src[column][i]``) and each output row came from.
    origins
        Output column -> (file column, PARAMCD or ``None``).
    """

    frame: pd.DataFrame
    targets: dict[str, str | None]
    excluded: list[ExcludedRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cell_src: dict[str, np.ndarray] = field(default_factory=dict)
    row_src: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    origins: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def _numeric(frame: pd.DataFrame, col: str, rows: pd.Series, name: str, where: Callable[[int], str]) -> pd.Series:
    num = pd.to_numeric(frame[col].map(lambda v: np.nan if _text(v) == "" else v), errors="coerce").astype(float)
    bad = rows & num.isna() & frame[col].map(lambda v: _text(v) != "")
    if bad.any():
        i = int(bad.idxmax())
        raise DataValidationError(f"{name}, {where(i)}: column '{col}': non-numeric value {_show(frame.at[i, col])}")
    return num


def _baseline_refs(ady: pd.Series, base: pd.Series, subj: pd.Series, code: pd.Series,
                   rows: pd.Series) -> pd.Series:
    """Per record, the study day of its subject's baseline record for the same parameter (else
    the subject's earliest baseline day); NaN where the subject has none."""
    b = pd.DataFrame({"s": subj, "c": code, "d": ady})[rows & base & ady.notna()]
    per_sc = b.groupby(["s", "c"])["d"].first()
    per_s = b.groupby("s")["d"].min()
    keys = pd.MultiIndex.from_arrays([subj, code])
    ref = pd.Series(per_sc.reindex(keys).to_numpy(), index=subj.index)
    return ref.fillna(subj.map(per_s))


def avisitn_not_months(avn: pd.Series, base: pd.Series, rows: pd.Series, *, avisit: pd.Series | None = None,
                       rel_months: pd.Series | None = None, where: Callable[[int], str] = lambda i: f"row {i + 1}"
                       ) -> str | None:
    """Why ``AVISITN`` cannot be read as months, or ``None`` when it can.

    The rule: on the analysed records (``rows``), (1) every AVISITN is a whole number from 0 to
    240; (2) the baseline records have AVISITN 0; (3) no post-baseline AVISIT names another unit
    (week, day, visit, year, cycle) or a month other than its AVISITN ("Month 12" with AVISITN 12
    is fine); (4) where ADY is present, the median time since baseline of each AVISITN value is
    within 1.5 months of it.

    Parameters
    ----------
    avn
        AVISITN as numbers.
    base
        Whether each record is its subject's baseline for its parameter.
    rows
        The analysed records.
    avisit
        AVISIT (text), where present.
    rel_months
        (ADY - baseline ADY) / 30.4375, where ADY is present.
    where
        Names a record's place in the file.

    Returns
    -------
    str or None
        The first reason found, or ``None``.
    """
    a = avn[rows]
    if a.isna().any():
        return f"AVISITN is empty at {where(int(a.index[a.isna()][0]))}"
    bad = a[(a < 0) | (a > MAX_MONTH) | (a != a.round())]
    if len(bad):
        return (f"AVISITN {bad.iloc[0]:g} at {where(int(bad.index[0]))} is not a whole number of months "
                f"from 0 to {MAX_MONTH}")
    b = a[base[rows]]
    if (b != 0).any():
        i = int(b.index[(b != 0).to_numpy()][0])
        return f"the baseline record at {where(i)} has AVISITN {b.at[i]:g}, not 0"
    post = rows & ~base
    if avisit is not None:
        for i in post.index[post.to_numpy()]:
            t = _text(avisit.at[i])
            if _OTHER_UNIT.search(t.lower()):
                return f"AVISIT {t!r} at {where(int(i))} does not count months"
            m = _MONTH_TEXT.search(t.lower())
            if m and float(m.group(1)) != avn.at[i]:
                return f"AVISIT {t!r} at {where(int(i))} does not match AVISITN {avn.at[i]:g}"
    if rel_months is not None:
        r = pd.DataFrame({"v": avn[post], "m": rel_months[post]}).dropna()
        for v, med in r.groupby("v")["m"].median().items():
            if abs(med - v) > 1.5:
                return f"ADY puts AVISITN {v:g} at {med:.1f} months after baseline"
    return None


def pivot_adam(frame: pd.DataFrame, param_map: Mapping[str, str] | None = None, *, name: str = "ADaM file",
               where: Callable[[int], str] = lambda i: f"row {i + 1}",
               labels: Mapping[str, str] | None = None) -> AdamPivot:
    """Pivot an ADaM BDS table to the contract's wide frame (module docstring: the rules).

    Parameters
    ----------
    frame
        The file's table (index 0..n-1).
    param_map
        ``{PARAMCD: site}`` overriding the default mapping; a value may also be
        ``"tscore_<site>"`` or ``"ignore"``.
    name
        The file's name, for messages.
    where
        Names a record's place in the file (``"row 12"``).
    labels
        Column labels, for messages.

    Returns
    -------
    AdamPivot
        The wide frame with the record each cell came from, the exclusions and notes.

    Raises
    ------
    DataValidationError
        One line: no BMD parameter (listing the PARAMCDs found), no visit time, two parameters
        for one column, duplicate or unplaceable records, a subject-level value that changes.
    """
    labels = dict(labels or {})
    cols = {str(c).upper(): str(c) for c in frame.columns}
    usubjid, aval = cols.get("USUBJID"), cols.get("AVAL")
    paramcd = cols.get("PARAMCD") or cols.get("PARAM")
    param = cols.get("PARAM") if cols.get("PARAMCD") else None
    if not (usubjid and aval and paramcd):
        raise DataValidationError(f"{name}: not an ADaM BDS file (it needs USUBJID, PARAMCD and AVAL; "
                                  f"columns found: {', '.join(map(str, frame.columns))})")
    avisitn, ady, avisit = cols.get("AVISITN"), cols.get("ADY"), cols.get("AVISIT")
    if avisitn is None and ady is None:
        raise DataValidationError(f"{name}: ADaM file without AVISITN or ADY: its visits cannot be placed in time")

    code = frame[paramcd].map(_text)
    plabel: dict[str, str] = {}
    if param is not None:
        for c, lab in zip(code, frame[param].map(_text)):
            plabel.setdefault(c, lab)
    elif paramcd == cols.get("PARAM"):  # no PARAMCD: the parameter's text is its code and its label
        plabel = {c: c for c in pd.unique(code)}
    found = [c for c in pd.unique(code) if c]
    user = _normalise_param_map(param_map, name)
    unknown = [c for c in user if c not in found]
    if unknown:
        raise DataValidationError(f"{name}: --param names PARAMCD {unknown[0]!r}, which is not in the file "
                                  f"(PARAMCDs: {', '.join(found)})")
    targets: dict[str, str | None] = {}
    how: dict[str, str] = {}
    for c in found:
        targets[c], how[c] = (user[c], "--param") if c in user else param_target(c, plabel.get(c))
    if not any(t and t.startswith("bmd_") for t in targets.values()):
        raise DataValidationError(f"{name}: ADaM file without a BMD parameter (PARAMCDs found: {', '.join(found)}); "
                                  f"name one with --param CODE=site")
    by_target: dict[str, list[str]] = {}
    for c, t in targets.items():
        if t:
            by_target.setdefault(t, []).append(c)
    for t, cs in by_target.items():
        if len(cs) > 1:
            raise DataValidationError(f"{name}: PARAMCDs {' and '.join(map(repr, cs))} would both fill {t}; keep one "
                                      f"(e.g. --param {cs[1]}=ignore)")
    notes = ["ADaM BDS file pivoted to one row per subject and visit: "
             + ", ".join(f"{c} -> {t}" + (f" (by its label {plabel[c]!r})" if how[c] == "label" else "")
                         for c, t in targets.items() if t)]
    ignored = [c for c, t in targets.items() if not t]
    if ignored:
        notes.append("parameters ignored (no column of the contract; --param CODE=column maps one): "
                     + ", ".join(f"{c}" + (f" ({plabel[c]})" if plabel.get(c) else "") for c in ignored))

    target = code.map(lambda c: targets.get(c))
    used = target.notna()
    subj = frame[usubjid].map(_text)
    reason = pd.Series(None, index=frame.index, dtype=object)
    for flag_col, rule in ((cols.get("DTYPE"), "derived"), (cols.get("ANL01FL"), "anl")):
        if flag_col is None:
            continue
        v = frame[flag_col].map(_text)
        hit = used & reason.isna() & ((v != "") if rule == "derived" else (v.str.upper() != "Y"))
        reason[hit] = [f"derived record (DTYPE = {x!r})" if rule == "derived" else
                       f"not flagged for analysis (ANL01FL = {x!r})" if x else
                       "not flagged for analysis (ANL01FL empty)" for x in v[hit]]
    rows = used & reason.isna()
    empty_id = rows & (subj == "")
    if empty_id.any():
        raise DataValidationError(f"{name}, {where(int(empty_id.idxmax()))}: column '{usubjid}': empty subject id")

    avn = _numeric(frame, avisitn, used, name, where) if avisitn else None
    dayn = _numeric(frame, ady, used, name, where) if ady else None
    ablfl = cols.get("ABLFL")
    if ablfl:
        base = frame[ablfl].map(_text).str.upper() == "Y"
    else:
        key = avn if avn is not None else dayn
        first = pd.DataFrame({"s": subj, "c": code, "k": key})[rows].groupby(["s", "c"])["k"].transform("min")
        base = pd.Series(False, index=frame.index)
        base[first.index] = (key[first.index] == first).to_numpy()
        notes.append("no ABLFL: the first record of each subject and parameter is its baseline")
    twice = pd.DataFrame({"s": subj, "c": code})[rows & base]
    dup = twice[twice.duplicated(keep=False)]
    if len(dup):
        s, c = dup.iloc[0]
        i0, i1 = dup.index[(dup["s"] == s) & (dup["c"] == c)][:2]
        raise DataValidationError(f"{name}, {where(int(i0))} and {where(int(i1))}: two baseline records for subject "
                                  f"{s}, PARAMCD {c}")

    refs = _baseline_refs(dayn, base, subj, code, rows) if dayn is not None else None
    rel = (dayn - refs) / DAYS_PER_MONTH if dayn is not None else None
    why = avisitn_not_months(avn, base, rows, avisit=frame[avisit] if avisit else None, rel_months=rel,
                             where=where) if avn is not None else "there is no AVISITN"
    if why is None:
        month, month_col = avn.copy(), avisitn
        notes.append("month from AVISITN (read as months: baseline 0, whole numbers"
                     + (", agreeing with AVISIT" if avisit else "") + (" and ADY" if ady else "") + ")")
    elif dayn is not None:
        month, month_col = rel.copy(), ady
        month[rows & base] = 0.0
        lost = rows & refs.isna()
        if lost.any():
            raise DataValidationError(f"{name}: subject {subj[lost].iloc[0]} has no baseline record (ABLFL = 'Y'), "
                                      f"so its study days cannot be turned into months")
        notes.append(f"month from ADY: days since the baseline record / {DAYS_PER_MONTH} (actual, not nominal, "
                     f"times)" + (f"; AVISITN was not read as months: {why}" if avn is not None else ""))
        early = rows & (month < -1e-9)
        reason[early] = [f"before the baseline record (ADY {d:g})" for d in dayn[early]]
        rows = rows & ~early
    else:
        raise DataValidationError(f"{name}: AVISITN does not count months ({why}) and there is no ADY to place the "
                                  f"visits in time")

    excluded = [ExcludedRow(where(int(i)), subj.at[i], float(month.at[i]) if pd.notna(month.at[i]) else float("nan"),
                            f"{r} (PARAMCD {code.at[i]})") for i, r in reason[used & reason.notna()].items()]
    rec = pd.DataFrame({"pid": subj, "month": month, "target": target, "aval": frame[aval], "src": frame.index})[rows]
    clash = rec[rec.duplicated(["pid", "month", "target"], keep=False)]
    if len(clash):
        r0 = clash.iloc[0]
        same = clash[(clash["pid"] == r0["pid"]) & (clash["month"] == r0["month"]) & (clash["target"] == r0["target"])]
        i0, i1 = same["src"].iloc[:2]
        raise DataValidationError(f"{name}, {where(int(i0))} and {where(int(i1))}: two analysed records for subject "
                                  f"{r0['pid']}, PARAMCD {code.at[i0]} at month {r0['month']:g} (flag one with "
                                  f"ANL01FL or remove it)")
    order = {p: k for k, p in enumerate(pd.unique(rec["pid"]))}
    rec["pord"] = rec["pid"].map(order)
    keys = rec.groupby(["pord", "month"], sort=True, dropna=False).agg(pid=("pid", "first"), src=("src", "min"))
    keys = keys.reset_index()
    index = pd.MultiIndex.from_frame(keys[["pord", "month"]])
    out = pd.DataFrame({"patient_id": keys["pid"].to_numpy(), "month": keys["month"].to_numpy()})
    origins: dict[str, tuple[str, str | None]] = {"patient_id": (usubjid, None), "month": (month_col, None)}
    cell_src: dict[str, np.ndarray] = {}
    columns = sorted({t for t in targets.values() if t},
                     key=lambda t: (not t.startswith("bmd_"), not t.startswith("tscore_"),
                                    [targets[c] for c in found].index(t)))
    for t in columns:
        sub = rec[rec["target"] == t].set_index(["pord", "month"])
        out[t] = sub["aval"].reindex(index).to_numpy()
        cell_src[t] = sub["src"].reindex(index).to_numpy(dtype=float)
        origins[t] = (aval, next(c for c in found if targets[c] == t))
    for file_up, col in SUBJECT_COLUMNS.items():
        fc = cols.get(file_up)
        if fc is None:
            continue
        vals = pd.DataFrame({"pid": subj, "v": frame[fc].map(lambda x: np.nan if _text(x) == "" else x)})[rows]
        vals = vals.dropna(subset=["v"])
        changes = vals.groupby("pid")["v"].nunique()
        if (changes > 1).any():
            pid = changes.index[(changes > 1).to_numpy()][0]
            g = vals[vals["pid"] == pid]
            i0 = g.index[0]
            i1 = g.index[(g["v"] != g["v"].iloc[0]).to_numpy()][0]
            lab = f" ({labels[fc]})" if labels.get(fc) else ""
            raise DataValidationError(f"{name}, {where(int(i1))}: column '{fc}'{lab} changes within subject {pid} "
                                      f"({_show(g.at[i0, 'v'])} at {where(int(i0))}, {_show(g.at[i1, 'v'])} at "
                                      f"{where(int(i1))})")
        first = vals.groupby("pid")["v"].first()
        out[col] = out["patient_id"].map(first).astype(object)
        origins[col] = (fc, None)
    return AdamPivot(out, targets, excluded, notes, cell_src, keys["src"].to_numpy(dtype=int), origins)


@dataclass
class AdamTable(RawTable):
    """A :class:`RawTable` pivoted from an ADaM file: rows and columns are named by the records
    and columns of the file they came from ("row 57: column 'AVAL' (Analysis Value) of PARAMCD
    'LSBMD' as 'bmd_spine'")."""

    base: RawTable | None = None
    pivot: AdamPivot | None = None

    def where(self, idx: int, column: str | None = None) -> str:
        src = self.pivot.cell_src.get(column) if column is not None else None
        i = src[int(idx)] if src is not None else np.nan
        return self.base.where(int(self.pivot.row_src[int(idx)]) if np.isnan(i) else int(i))

    def describe(self, column: str, as_: str | None = None) -> str:
        origin = self.pivot.origins.get(column)
        if origin is None:
            return self.base.describe(column, as_)
        file_col, code = origin
        text = self.base.describe(file_col) + (f" of PARAMCD '{code}'" if code else "")
        shown = as_ or column
        return text + (f" as '{shown}'" if shown != file_col else "")


def adam_table(table: RawTable, name: str, param_map: Mapping[str, str] | None = None) -> AdamTable:
    """Pivot a read ADaM file (:func:`pivot_adam`) into a table ``data`` validates like any other.

    Parameters
    ----------
    table
        The file as read.
    name
        The file's name, for messages.
    param_map
        ``{PARAMCD: site}`` overriding the default mapping.

    Returns
    -------
    AdamTable
        The wide table; its rows and columns name the file's records and columns.
    """
    piv = pivot_adam(table.frame, param_map, name=name, where=table.where, labels=table.labels)
    used = ", ".join(f"{c} -> {t}" for c, t in piv.targets.items() if t)
    hint = (f"; ADaM parameters: {used} (PARAMCDs found: {', '.join(piv.targets)}; "
            f"give another with --param CODE=site)")
    return AdamTable(piv.frame, "adam", table.raw, notes=[*table.notes, *piv.notes], unit=table.unit,
                     first=table.first, excluded=piv.excluded, hint=hint, base=table, pivot=piv)
