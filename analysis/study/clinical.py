r"""Clinical derivations: disease-activity scores, EULAR response, responder status, % change of BMD,
T-scores, completer flag, last observed visit and dropout month.

EULAR response (van Gestel et al. 1996), from the DAS28 at baseline and at the response month:

=====================  ==================  ========================
current DAS28          improvement > 1.2   0.6 < improvement <= 1.2   improvement <= 0.6
=====================  ==================  ========================
<= 3.2                 good                moderate                   none
3.2 < DAS28 <= 5.1     moderate            moderate                   none
> 5.1                  moderate            none                       none
=====================  ==================  ========================

By default a *responder* is a good or moderate EULAR responder at month 12 (:class:`ResponderRule`);
a patient without a DAS28 at that month has an *undefined* status. A ``responder`` column in the
user's data overrides the derived status and is reported as user-supplied.

Percentage change of BMD at site :math:`s` and visit :math:`t`:
:math:`100\,(y_{is}(t) - y_{is}(0)) / y_{is}(0)`. T-score:
:math:`(y - \mu_{\text{ref}}) / \sigma_{\text{ref}}` with a young-adult reference chosen from
``data/tscore_reference.csv`` (or a user's table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.common.resources import data_path
from models.scores import cdai, das28_crp

__all__ = [
    "das28_crp",
    "cdai",
    "eular_response",
    "ResponderRule",
    "classify_responders",
    "percent_change",
    "TScoreReference",
    "tscores",
    "patient_status",
    "derive",
    "SITES",
]

SITES = ("spine", "femoral_neck")


def eular_response(das_baseline, das_followup) -> np.ndarray:
    """EULAR response category ('good', 'moderate', 'none'; ``None`` where either score is missing)."""
    b = np.asarray(das_baseline, dtype=float)
    f = np.asarray(das_followup, dtype=float)
    imp = np.round(b - f, 6)  # DAS28 has 2 decimals: 4.4 - 3.2 must be 1.2, not 1.2000000000000002
    out = np.full(np.broadcast(b, f).shape, None, dtype=object)
    ok = ~(np.isnan(b) | np.isnan(f))
    good = ok & (imp > 1.2) & (f <= 3.2)
    none = ok & ((imp <= 0.6) | ((imp <= 1.2) & (f > 5.1)))
    out[ok] = "moderate"
    out[good] = "good"
    out[none & ~good] = "none"
    return out


@dataclass(frozen=True)
class ResponderRule:
    """How responders are defined.

    Parameters
    ----------
    kind
        ``"eular"``: good or moderate EULAR response (``"eular_good"``: good only);
        ``"das28_fall"``: a fall in DAS28-CRP of more than ``threshold``;
        ``"cdai50"``: an improvement of cDAI by at least 50 % of its baseline value (the CDAI50
        response of Aletaha & Smolen; for files with cDAI but no DAS28-CRP).
    month
        The visit at which response is assessed against baseline.
    threshold
        Used by ``"das28_fall"``.
    """

    kind: Literal["eular", "eular_good", "das28_fall", "cdai50"] = "eular"
    month: float = 12
    threshold: float = 1.2

    def describe(self) -> str:
        """One-line description recorded with every result."""
        if self.kind == "eular":
            return f"EULAR good or moderate response (DAS28-CRP, baseline vs month {self.month:g})"
        if self.kind == "eular_good":
            return f"EULAR good response (DAS28-CRP, baseline vs month {self.month:g})"
        if self.kind == "cdai50":
            return f"cDAI improvement >= 50 % from baseline to month {self.month:g} (CDAI50)"
        return f"DAS28-CRP fall > {self.threshold:g} from baseline to month {self.month:g}"


def classify_responders(frame: pd.DataFrame, rule: ResponderRule | None = None) -> pd.DataFrame:
    """Per-patient responder status.

    Returns one row per patient with ``das28_baseline``, ``das28_response``, ``eular_response``,
    ``responder`` (nullable boolean), ``responder_status`` ('responder', 'non-responder',
    'undefined') and ``responder_source`` ('derived' or 'user-supplied'). A user-supplied
    ``responder`` column (one value per patient) takes precedence over the derived status.
    """
    rule = rule or ResponderRule()
    patients = pd.Index(pd.unique(frame["patient_id"]), name="patient_id")
    user_given = "responder" in frame.columns and frame["responder"].notna().any()
    score = "cdai" if rule.kind == "cdai50" else "das28_crp"
    if score not in frame.columns and not user_given:
        need = ("a 'cdai' column (or its components)" if score == "cdai" else
                "a 'das28_crp' column (or its components); with cDAI only, use the rule kind 'cdai50'")
        raise ValueError(f"responder status by the rule '{rule.describe()}' needs {need}, or a 'responder' "
                         f"column")

    def _scores(col: str) -> pd.DataFrame:
        if col not in frame.columns:
            return pd.DataFrame(index=patients)
        return frame.pivot_table(index="patient_id", columns="month", values=col,
                                 aggfunc="first").reindex(patients)

    das = _scores("das28_crp")

    def _at(tab: pd.DataFrame, month: float) -> pd.Series:
        cols = [c for c in tab.columns if float(c) == float(month)]
        return tab[cols[0]].astype(float) if cols else pd.Series(np.nan, index=patients)

    base, at = _at(das, 0), _at(das, rule.month)
    eular = eular_response(base.to_numpy(), at.to_numpy())
    if rule.kind == "cdai50":
        cd = _scores("cdai")
        c0, c1 = _at(cd, 0).to_numpy(), _at(cd, rule.month).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            improved = np.round(c0 - c1, 6) >= 0.5 * c0
        derived = np.where(np.isnan(c0) | np.isnan(c1), None, improved)
    elif rule.kind == "eular":
        derived = np.where(eular == None, None, np.isin(eular, ["good", "moderate"]))  # noqa: E711
    elif rule.kind == "eular_good":
        derived = np.where(eular == None, None, eular == "good")  # noqa: E711
    else:
        fall = (base - at).to_numpy()
        derived = np.where(np.isnan(fall), None, fall > rule.threshold)
    out = pd.DataFrame({
        "das28_baseline": base.to_numpy(),
        "das28_response": at.to_numpy(),
        "eular_response": pd.array(eular, dtype="string"),
        "responder": pd.array(derived, dtype="boolean"),
    }, index=patients)
    out["responder_source"] = "derived"
    if user_given:
        user = frame.groupby("patient_id", sort=False)["responder"].first().reindex(patients)
        has = user.notna()
        out.loc[has, "responder"] = user[has].astype("boolean")
        out.loc[has, "responder_source"] = "user-supplied"
    out["responder_status"] = np.select(
        [out["responder"].isna().to_numpy(), out["responder"].fillna(False).to_numpy(dtype=bool)],
        ["undefined", "responder"], default="non-responder")
    return out.reset_index()


def percent_change(frame: pd.DataFrame, column: str) -> pd.Series:
    """Percentage change of ``column`` from each patient's month-0 value (NaN without a baseline)."""
    base = frame.loc[frame["month"] == 0].groupby("patient_id")[column].first()
    b = frame["patient_id"].map(base)
    return 100.0 * (frame[column] - b) / b


@dataclass(frozen=True)
class TScoreReference:
    """A young-adult reference table for T-scores.

    Parameters
    ----------
    name
        Reference name within the table (column ``reference``).
    path
        CSV with columns ``reference, site, sex, mean, sd``; the shipped table when ``None``.
    sex_specific
        Use each sex's own reference; ``False`` applies the female reference to everyone (ISCD's
        recommendation of a uniform white-female reference).
    """

    name: str = "nhanes_hologic"
    path: str | None = None
    sex_specific: bool = True

    def table(self) -> pd.DataFrame:
        """The rows of this reference, indexed by (site, sex)."""
        src = Path(self.path) if self.path else data_path("tscore_reference.csv")
        tab = pd.read_csv(src)
        missing = {"reference", "site", "sex", "mean", "sd"} - set(tab.columns)
        if missing:
            raise ValueError(f"{src}: T-score reference table lacks column(s) {sorted(missing)}")
        tab = tab[tab["reference"] == self.name]
        if tab.empty:
            raise ValueError(f"{src}: no T-score reference named {self.name!r}")
        return tab.set_index(["site", "sex"])[["mean", "sd"]]

    def describe(self) -> str:
        where = self.path or "data/tscore_reference.csv"
        sex = "sex-specific" if self.sex_specific else "female reference for all"
        return f"{self.name} from {where}, {sex}"


def tscores(bmd: pd.Series, sex: pd.Series, site: str, reference: TScoreReference | None = None) -> pd.Series:
    """T-scores of ``bmd`` at ``site`` for patients of the given ``sex`` ('F'/'M')."""
    ref = (reference or TScoreReference())
    tab = ref.table()
    key_sex = sex.astype(str) if ref.sex_specific else pd.Series("F", index=sex.index)
    # one look-up per distinct sex, not per row (a registry has hundreds of thousands of rows)
    keys = pd.unique(key_sex.to_numpy())
    mean_of = {s: tab.loc[(site, s), "mean"] if (site, s) in tab.index else np.nan for s in keys}
    sd_of = {s: tab.loc[(site, s), "sd"] if (site, s) in tab.index else np.nan for s in keys}
    means = pd.Series(key_sex.map(mean_of).to_numpy(dtype=float), index=bmd.index)
    sds = pd.Series(key_sex.map(sd_of).to_numpy(dtype=float), index=bmd.index)
    return (bmd - means) / sds


def patient_status(frame: pd.DataFrame, endpoint_month: float = 12, *, time: str = "month",
                   bmd_columns: list[str] | None = None) -> pd.DataFrame:
    """Per-patient completion: ``completer`` (a DXA at ``endpoint_month``), ``last_visit`` (last
    month with any recorded value), ``dropout_month`` (the first scheduled month after the last
    visit, NaN for completers). The schedule is the set of months present in the data.

    ``time`` is the column read as the month (``"visit"``: the nominal visits of a design);
    ``bmd_columns`` the scans that make a completer (default: the sites' ``bmd_<site>`` columns).
    """
    bmd_cols = bmd_columns if bmd_columns is not None else [f"bmd_{s}" for s in SITES if f"bmd_{s}" in frame.columns]
    schedule = np.sort(frame[time].dropna().unique())
    end_scan = (frame[time] == endpoint_month) & frame[bmd_cols].notna().any(axis=1)
    by_patient = frame[time].groupby(frame["patient_id"], sort=False)  # one pass over the ids per column
    last = by_patient.max()
    completer = end_scan.groupby(frame["patient_id"], sort=False).any().reindex(last.index)
    out = pd.DataFrame({"patient_id": last.index, "last_visit": last.to_numpy(),
                        "completer": completer.to_numpy(dtype=bool)})
    # the first scheduled month after the last visit (none after the last scheduled month, or no visit)
    nxt = np.searchsorted(schedule, out["last_visit"].to_numpy(dtype=float), side="right")
    later = np.append(schedule.astype(float), np.nan)[nxt]
    out["dropout_month"] = np.where(out["completer"].to_numpy(), np.nan, later)
    return out


def derive(frame: pd.DataFrame, rule: ResponderRule | None = None,
           reference: TScoreReference | None = None, endpoint_month: float | None = None,
           design: Any = None) -> pd.DataFrame:
    """The analysis-ready frame: the validated input plus derived columns.

    Adds, where absent, ``das28_crp`` and ``cdai`` from their components (and fills their blank
    cells from the components where those are recorded); then ``tscore_<site>``
    (unless supplied), ``pct_change_<site>``, ``tscore_change_<site>``, and the per-patient
    ``responder``, ``responder_status``, ``responder_source``, ``eular_response``, ``completer``,
    ``last_visit`` and ``dropout_month``. The input frame is not modified.

    With a resolved study design (:class:`analysis.study.design.ResolvedDesign`, e.g.
    ``Dataset.design``) the sites, the endpoint and the group are the design's: responder status is
    derived only for a design whose group is derived from disease activity; ``month`` becomes the
    nominal visit (the design's ``visit``; the MMRM, completers and visit-wise analyses read it) and
    ``month_actual`` keeps the actual months since baseline (the LMMs read it); the design rides
    along in ``attrs["design"]``. Without one, the RAJAK sites present, ``endpoint_month`` (default
    12) and derived responder status, as always.
    """
    out = frame.copy()
    derived_groups = design is None or design.design.group.kind == "derived"
    if endpoint_month is None:
        endpoint_month = design.endpoint if design is not None else 12
    sites = tuple(design.sites) if design is not None else SITES
    out["month_actual"] = out["month"].astype(float)
    if "visit" in out.columns:
        out["month"] = out["visit"].astype(float)
    comps = {"tjc28", "sjc28", "crp_mg_l", "patient_global_mm"}
    if comps <= set(out.columns):  # the column where absent, its blank cells where present
        calc = pd.Series(das28_crp(out["tjc28"], out["sjc28"], out["crp_mg_l"], out["patient_global_mm"]),
                         index=out.index, dtype=float)
        out["das28_crp"] = out["das28_crp"].fillna(calc) if "das28_crp" in out.columns else calc
    if {"tjc28", "sjc28", "patient_global_mm", "evaluator_global_mm"} <= set(out.columns):
        calc = pd.Series(cdai(out["tjc28"], out["sjc28"], out["patient_global_mm"], out["evaluator_global_mm"]),
                         index=out.index, dtype=float)
        out["cdai"] = out["cdai"].fillna(calc) if "cdai" in out.columns else calc
    notes: list[str] = []
    for site in sites:
        col = f"bmd_{site}"
        if col not in out.columns:
            continue
        tcol = f"tscore_{site}"
        if tcol not in out.columns or out[tcol].isna().all():
            ref = reference or TScoreReference()
            if site not in set(ref.table().index.get_level_values("site")):
                notes.append(f"no T-scores at {site}: the reference {ref.name} has no young-adult values for it")
            elif "sex" not in out.columns:
                notes.append(f"no T-scores at {site}: no sex column")
            out[tcol] = tscores(out[col], out["sex"], site, reference) if "sex" in out.columns else np.nan
        out[f"pct_change_{site}"] = percent_change(out, col)
        tb = out.loc[out["month"] == 0].groupby("patient_id")[tcol].first()
        out[f"tscore_change_{site}"] = out[tcol] - out["patient_id"].map(tb)
    if derived_groups:
        resp = classify_responders(out, rule).drop(columns=["das28_baseline", "das28_response"])
        out = out.drop(columns=["responder"], errors="ignore").merge(resp, on="patient_id", how="left")
    status = patient_status(out, endpoint_month, bmd_columns=[f"bmd_{s}" for s in sites if f"bmd_{s}" in out.columns])
    out = out.merge(status, on="patient_id", how="left")
    if design is not None:
        out.attrs["design"] = design
    out.attrs["notes"] = notes
    return out
