"""The analysis frame of one simulated study: :func:`power_frame`.

A fast, vectorised equivalent of ``model_frame(derive(data), site, strategy, rule)``
(:mod:`analysis.study.clinical`, :mod:`analysis.frequentist.primary`) for the columns a power study
uses: responder groups from DAS28-CRP and the change from baseline of one site's BMD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.study.clinical import ResponderRule, eular_response

__all__ = ["power_frame"]


def _first_by_patient(codes: np.ndarray, values: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Per patient code, the first value (in row order) among rows in ``mask`` (NaN if none)."""
    idx = np.flatnonzero(mask)
    out = np.full(n, np.nan)
    if idx.size:
        c, pos = np.unique(codes[idx], return_index=True)
        out[c] = values[idx[pos]]
    return out


def _classify(base: np.ndarray, last: np.ndarray, rule: ResponderRule) -> np.ndarray:
    """1.0 responder, 0.0 non-responder, NaN undefined (as :mod:`analysis.study.groups`)."""
    base = np.asarray(base, dtype=float)
    last = np.asarray(last, dtype=float)
    out = np.full(base.shape, np.nan)
    ok = ~(np.isnan(base) | np.isnan(last))
    if rule.kind == "das28_fall":
        out[ok] = ((base - last) > rule.threshold)[ok]
        return out
    cat = eular_response(base, last)
    good = ("good",) if rule.kind == "eular_good" else ("good", "moderate")
    out[ok] = np.isin(cat[ok].astype(str), good)
    return out


def power_frame(data: pd.DataFrame, site: str, strategy: str = "last_observed",
                rule: ResponderRule | None = None) -> pd.DataFrame:
    """The model frame of one site for one simulated study.

    A fast, vectorised equivalent of ``model_frame(derive(data), site, strategy, rule)`` for the
    columns used here. Responder status: EULAR response (``rule``) from the DAS28-CRP at month 0
    and at ``rule.month``; a ``responder`` column overrides it where given (as in
    :func:`analysis.study.clinical.classify_responders`); undefined status is reclassified from the
    last post-baseline DAS28-CRP (``"last_observed"``) or the patient is excluded (``"exclude"``,
    and patients still undefined).

    Parameters
    ----------
    data : DataFrame
        Long study data (``patient_id``, ``month``, ``bmd_<site>``, and ``das28_crp`` and/or
        ``responder``).
    site : str
    strategy : {"last_observed", "exclude"}
    rule : ResponderRule, optional

    Returns
    -------
    DataFrame
        ``patient_id, month, bmd, bmd_<site>, responder`` (0/1), ``baseline, change, pct`` for rows
        with a BMD at ``site`` and a group, in the input order.
    """
    if strategy not in ("last_observed", "exclude"):
        raise ValueError(f"strategy must be 'last_observed' or 'exclude', got {strategy!r}")
    rule = rule or ResponderRule()
    col = f"bmd_{site}"
    if col not in data.columns:
        raise ValueError(f"data lack column {col!r}")
    codes, patients = pd.factorize(data["patient_id"], sort=False)
    n_pat = len(patients)
    month = data["month"].to_numpy(dtype=float)
    status = np.full(n_pat, np.nan)
    base = np.full(n_pat, np.nan)
    has_das = "das28_crp" in data.columns
    if has_das:
        das = data["das28_crp"].to_numpy(dtype=float)
        ok = ~np.isnan(das)
        base = _first_by_patient(codes, das, ok & (month == 0), n_pat)
        at = _first_by_patient(codes, das, ok & (month == float(rule.month)), n_pat)
        status = _classify(base, at, rule)
    if "responder" in data.columns and data["responder"].notna().any():
        user = data["responder"]
        given = user.notna().to_numpy()
        vals = np.zeros(len(user))
        vals[given] = user[given].astype(bool).to_numpy(dtype=float)
        first = _first_by_patient(codes, vals, given, n_pat)
        status = np.where(np.isnan(first), status, first)
    if strategy == "last_observed" and has_das and np.isnan(status).any():
        idx = np.flatnonzero(ok & (month > 0))
        order = idx[np.argsort(month[idx], kind="stable")][::-1]  # last visit first
        last = np.full(n_pat, np.nan)
        if order.size:
            c, pos = np.unique(codes[order], return_index=True)
            last[c] = das[order[pos]]
        undefined = np.isnan(status)
        status[undefined] = _classify(base, last, rule)[undefined]
    group = status[codes]
    bmd = data[col].to_numpy(dtype=float)
    keep = ~np.isnan(bmd) & ~np.isnan(group)
    kc = codes[keep]
    b0 = _first_by_patient(kc, bmd[keep], month[keep] == 0, n_pat)[kc]
    d = pd.DataFrame({"patient_id": data["patient_id"].to_numpy()[keep], "month": data["month"].to_numpy()[keep],
                      "bmd": bmd[keep], "responder": group[keep]})
    d[col] = d["bmd"]
    d["baseline"] = b0
    d["change"] = d["bmd"] - b0
    d["pct"] = 100.0 * d["change"] / b0
    return d
