"""A user's own study, written the ways users bring it: one simulated two-arm trial
(:func:`models.simulate_trial.simulate_trial`: three sites, visits at months 0/6/12/24, time as study
day, arms coded ``PBO``/``ZOL``) as CSV, ``;``-CSV with decimal commas, Excel, a CDISC ADaM BDS
``.xpt`` and ``.sas7bdat``; and the same kind of trial in a layout of its own (``SUBJ``, ``TRT``,
``STUDYDAY``, ``VISNO``, one site in a column ``bmd``). Files are written into a test's temporary
directory, never committed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from models.simulate_trial import TrialTruth, simulate_trial

__all__ = ["ADAM_LABELS", "ARM_CODES", "PARAMCD", "SITES", "NoSas7bdatWriter", "adam", "canonical_columns", "digest",
           "own_layout", "sas7bdat", "trial", "write"]

#: Arm codes of the trial files (the ADaM file's TRT01P holds the same codes).
ARM_CODES = {"placebo": "PBO", "active": "ZOL"}
#: ADaM parameter codes of the three sites (all in the default parameter map).
PARAMCD = {"spine": "BMDLS", "total_hip": "BMDTH", "femoral_neck": "BMDFN"}
ADAM_LABELS = {"USUBJID": "Unique Subject Identifier", "PARAMCD": "Parameter Code", "PARAM": "Parameter",
               "AVAL": "Analysis Value", "ADY": "Analysis Relative Day", "ABLFL": "Baseline Record Flag",
               "TRT01P": "Planned Treatment for Period 01", "AGE": "Age", "SEX": "Sex"}
PARAM_TEXT = {"spine": "Lumbar Spine BMD (g/cm2)", "total_hip": "Total Hip BMD (g/cm2)",
              "femoral_neck": "Femoral Neck BMD (g/cm2)"}
SITES = tuple(PARAMCD)


def trial(n: int = 40, seed: int = 11) -> pd.DataFrame:
    """The simulated trial as its sponsor would keep it: ``patient_id``, ``arm`` (codes), ``day``
    (study day, 0 at baseline), ``age``, ``sex`` and ``bmd_<site>``; one row per attended visit."""
    df = simulate_trial(n, TrialTruth(), seed=seed)
    df["arm"] = df["arm"].map(ARM_CODES)
    return df.drop(columns=["visit"])


def adam(df: pd.DataFrame, arm: str = "arm") -> pd.DataFrame:
    """The trial as an ADaM BDS data set: one record per subject x parameter x visit, ``ADY`` the
    analysis day (day 1 = baseline, as ADaM counts), ``ABLFL`` on the baseline records, ``TRT01P``
    from the column ``arm``."""
    rows = []
    for r in df.itertuples(index=False):
        for site, code in PARAMCD.items():
            rows.append({"USUBJID": r.patient_id, "PARAMCD": code, "PARAM": PARAM_TEXT[site],
                         "AVAL": getattr(r, f"bmd_{site}"), "ADY": r.day + 1, "ABLFL": "Y" if r.day == 0 else "",
                         "TRT01P": getattr(r, arm), "AGE": r.age, "SEX": r.sex})
    return pd.DataFrame(rows)


def write(df: pd.DataFrame, path: Path, *, sheet: str = "Data") -> Path:
    """Write ``df`` as ``path``'s extension says (``-semicolon.csv``: ``;`` and decimal commas)."""
    import pyreadstat

    path = Path(path)
    ext = path.suffix
    if ext == ".csv" and path.stem.endswith("semicolon"):
        df.to_csv(path, sep=";", decimal=",", index=False)
    elif ext == ".csv":
        df.to_csv(path, index=False)
    elif ext == ".xlsx":
        df.to_excel(path, index=False, sheet_name=sheet)
    elif ext == ".xpt":
        labels = {c: ADAM_LABELS[c] for c in df.columns if c in ADAM_LABELS}
        pyreadstat.write_xport(df, str(path), table_name=path.stem[:8].upper(), column_labels=labels or None)
    elif ext == ".dta":
        pyreadstat.write_dta(df, str(path))
    elif ext == ".sas7bdat":
        sas7bdat(df, path)
    else:  # pragma: no cover
        raise AssertionError(ext)
    return path


class NoSas7bdatWriter(RuntimeError):
    """Neither a Python library nor ReadStat's command-line tool can write a .sas7bdat here."""


def sas7bdat(df: pd.DataFrame, path: Path) -> Path:
    """A real ``.sas7bdat``: pyreadstat cannot write one, ReadStat's command-line tool (Debian package
    ``readstat``; CI installs it) converts a Stata file to one. Raises :class:`NoSas7bdatWriter`
    when the tool is absent or fails."""
    tool = shutil.which("readstat")
    if tool is None:
        raise NoSas7bdatWriter("the ReadStat command-line tool (readstat) is not installed")
    dta = write(df, Path(path).with_suffix(".dta"))
    proc = subprocess.run([tool, str(dta), str(path)], capture_output=True, text=True, check=False)
    dta.unlink()
    if proc.returncode != 0 or not Path(path).exists():
        raise NoSas7bdatWriter(f"readstat cannot write sas7bdat here: {proc.stderr.strip()[:200]}")
    return Path(path)


def own_layout(n: int = 24, seed: int = 3) -> pd.DataFrame:
    """A trial in a layout of its own: ``SUBJ``, ``TRT`` coded ``C``/``P``, ``STUDYDAY`` (day 1 at
    baseline), ``VISNO`` the visit index 0-3 (months 0/6/12/24), one site in a column ``bmd``."""
    df = simulate_trial(n, TrialTruth(arms={"P": 1.0, "C": 1.0},
                                      slopes={"total_body": {"P": -0.004, "C": 0.006}},
                                      baseline={"total_body": 1.10}), seed=seed)
    index = {m: k for k, m in enumerate(TrialTruth().visits)}
    return pd.DataFrame({"SUBJ": df["patient_id"].str.replace("S", "P-"), "TRT": df["arm"],
                         "STUDYDAY": (df["day"] + 1).astype(int), "VISNO": df["visit"].map(index).astype(int),
                         "bmd": df["bmd_total_body"], "age": df["age"], "sex": df["sex"]})


def digest(path: Path) -> tuple[str, int]:
    """A file's content hash and modification time: a file that was only read keeps both."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def canonical_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """What every format must agree on: patients, actual and nominal months, the BMD values, the
    group and the baseline covariates, in one order, numbers as float64."""
    cols = ["patient_id", "month", "visit", *(f"bmd_{s}" for s in SITES), "group", "age", "sex"]
    out = frame[cols].sort_values(["patient_id", "month"], kind="stable").reset_index(drop=True)
    for c in out.columns:
        if pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].astype("float64")
        else:
            out[c] = pd.Series([None if (not isinstance(v, str) and pd.isna(v)) else str(v) for v in out[c]],
                               dtype=object)
    return out
