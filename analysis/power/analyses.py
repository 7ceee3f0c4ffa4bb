r"""The frequentist analyses of one simulated study, each giving one raw result row.

=========================  =====================================================================
``analysis``               estimate and test
=========================  =====================================================================
``lmm``                    ``bmd ~ month * responder + (1 + month | patient)``, REML; the
                           ``month:responder`` slope difference (g/cm^2 per month), Satterthwaite
                           t-test (:func:`analysis.frequentist.lmm.fit_lmm`)
``mmrm``                   ``change ~ baseline + month * responder`` on post-baseline DXA visits,
                           unstructured, REML; responder - non-responder LS-mean change at the last
                           visit (g/cm^2), Satterthwaite (:func:`~analysis.frequentist.mmrm.fit_mmrm`)
``completers_t``           completers' % change to the last visit, Welch t-test (difference of means)
``completers_wilcoxon``    the same, Wilcoxon rank-sum (Mann-Whitney) test
``bayes``                  the trajectory LMM refitted per data set (:mod:`analysis.power.bayes_rule`)
=========================  =====================================================================

Each analysis reads a :func:`analysis.power.frames.power_frame` and returns the estimate, its SE,
degrees of freedom, test statistic and two-sided p-value. A failed analysis is a result too (no
success): the caller records :func:`row_error`'s one-line message.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ANALYSES", "FREQUENTIST_ROWS", "completers_rows", "lmm_row", "mmrm_row", "row_error"]

#: Analyses a power study can run (``completers`` gives the ``completers_t`` and
#: ``completers_wilcoxon`` rows).
ANALYSES: tuple[str, ...] = ("lmm", "mmrm", "completers", "bayes")
#: The frequentist rows of the raw results, in the order summaries list them.
FREQUENTIST_ROWS = ("lmm", "mmrm", "completers_t", "completers_wilcoxon")


def row_error(err: BaseException) -> str:
    """One line (at most 300 characters) naming a failed analysis's exception."""
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    return text[:300]


def lmm_row(frame: pd.DataFrame) -> dict[str, Any]:
    """REML LMM ``bmd ~ month * responder + (1 + month | patient)``: the ``month:responder`` slope
    difference (g/cm^2 per month) with its Satterthwaite t-test, convergence and singularity."""
    from analysis.frequentist.lmm import fit_lmm

    fit = fit_lmm(frame, "bmd ~ month * responder", time="month")
    r = fit.fixed.set_index("term").loc["month:responder"]
    return {"estimate": r["estimate"], "se": r["se"], "df": r["df"], "statistic": r["t"], "p": r["p"],
            "converged": bool(fit.converged), "singular": bool(fit.singular)}


def mmrm_row(frame: pd.DataFrame, endpoint: float) -> dict[str, Any]:
    """MMRM ``change ~ baseline + month * responder`` (unstructured, REML) on the post-baseline
    visits: responder - non-responder LS-mean change at ``endpoint`` (g/cm^2), Satterthwaite."""
    from analysis.frequentist.mmrm import fit_mmrm

    post = frame[(frame["month"] > 0) & frame["change"].notna()]
    fit = fit_mmrm(post, "change ~ baseline + month * responder", visit="month")
    grid, lmat = fit.reference_grid(["responder"], by=["month"], at={"responder": [0.0, 1.0]})
    at = grid["month"].astype(float).to_numpy() == endpoint
    r = grid["responder"].astype(float).to_numpy()
    i1, i0 = np.flatnonzero(at & (r == 1.0)), np.flatnonzero(at & (r == 0.0))
    if not (i1.size and i0.size):
        raise ValueError(f"no month-{endpoint:g} visit in the MMRM")
    c = fit.contrast(lmat[i1[:1]] - lmat[i0[:1]], names=["diff"]).iloc[0]
    return {"estimate": c["estimate"], "se": c["se"], "df": c["df"], "statistic": c["t"], "p": c["p"],
            "converged": bool(fit.converged)}


def _completer_changes(frame: pd.DataFrame, endpoint: float) -> tuple[np.ndarray, np.ndarray]:
    """% change to ``endpoint`` of patients with a BMD at 0 and ``endpoint``: (responders, others)."""
    end = frame.loc[frame["month"].astype(float) == endpoint]
    end = end.loc[end["baseline"].notna()].drop_duplicates("patient_id")
    pct = end["pct"].to_numpy(dtype=float)
    resp = end["responder"].to_numpy(dtype=float) == 1.0
    return pct[resp], pct[~resp]


def completers_rows(frame: pd.DataFrame, endpoint: float) -> list[tuple[str, dict[str, Any]]]:
    """The completers' % change to ``endpoint``, responders vs non-responders: Welch t-test
    (``completers_t``, difference of means and its SE) and Wilcoxon rank-sum test
    (``completers_wilcoxon``, no estimate), as :mod:`analysis.frequentist.rtests` computes them.

    Returns
    -------
    list of (str, dict)
        ``(name, row)`` per test; a test that raised gives ``ok=False`` and its message.
    """
    from analysis.frequentist.rtests import t_test_welch, wilcoxon_rank_sum

    xr, xn = _completer_changes(frame, endpoint)
    rows = []
    for name, fn, kw in (("completers_t", t_test_welch, {}),
                         ("completers_wilcoxon", wilcoxon_rank_sum, {"conf_int": False})):
        t0 = time.perf_counter()
        try:
            res = fn(xr, xn, **kw)
            # Welch: difference of means and its SE; rank-sum without conf_int: no estimate
            est = np.nan if res.estimate is None else float(res.estimate)
            se = abs(est / res.statistic) if name == "completers_t" and res.statistic not in (0.0,) else np.nan
            rows.append((name, {"ok": True, "estimate": est, "se": se,
                                "df": np.nan if res.df is None else float(res.df),
                                "statistic": float(res.statistic), "p": float(res.p_value),
                                "seconds": time.perf_counter() - t0}))
        except Exception as err:  # noqa: BLE001 - a failed test is a result (no success)
            rows.append((name, {"ok": False, "message": row_error(err), "seconds": time.perf_counter() - t0}))
    return rows
