r"""One simulated study of a design from data, analysed per contrast of its design.

Each analysis tests every contrast of the design (:attr:`DataModel.contrasts
<analysis.power.data_model.DataModel.contrasts>`): level :math:`k` against the reference, or, for a
single arm, the change in the one group against 0. One raw row per site, analysis and contrast
(column ``contrast``, e.g. ``"active - placebo"``); ``n_responders`` and ``n_nonresponders`` hold
the analysed patients of the contrast's level and of its reference (0 for a single arm).

=========================  =====================================================================
``analysis``               estimate and test (``g_k`` indicates level :math:`k`)
=========================  =====================================================================
``lmm``                    ``bmd ~ month + g_1 + ... + month:g_1 + ...``, random intercept and
                           slope, REML; the ``month:g_k`` slope difference (g/cm^2 per month;
                           single arm: the ``month`` slope), Satterthwaite t-test
``mmrm``                   ``change ~ baseline + month * (g_1 + ...)``, visit as a factor,
                           unstructured, REML, post-baseline visits; LS-mean change at the
                           endpoint of level :math:`k` minus the reference (single arm: the
                           LS-mean change), g/cm^2, Satterthwaite
``completers_t``           completers' % change to the endpoint: Welch t-test (single arm:
                           one-sample t-test against 0)
``completers_wilcoxon``    the same by the Wilcoxon rank-sum test (single arm: signed-rank)
``bayes``                  the K-group trajectory LMM (:mod:`models.trajectory`, levels from
                           ``group``, endpoint the design's) refitted per study; the posterior of
                           ``settings.estimand`` per contrast (single arm: the group's
                           ``pct_change_end`` / ``change_end`` against 0)
=========================  =====================================================================
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from analysis.power.analyses import row_error
from analysis.power.bayes_rule import bayes_contrast_rows
from analysis.power.data_generator import simulate_from_data
from analysis.power.data_model import DataModel

__all__ = ["data_completers_rows", "data_lmm_rows", "data_mmrm_rows", "data_study_rows", "group_frame"]


def group_frame(data: pd.DataFrame, site: str, levels: tuple[str, ...]) -> pd.DataFrame:
    """One site's analysis frame: ``patient_id, month, group, g1.., bmd, baseline, change, pct`` for
    rows with a BMD at ``site`` (baseline: the patient's month-0 value)."""
    d = data.loc[data[f"bmd_{site}"].notna(), ["patient_id", "month", "group", f"bmd_{site}"]]
    d = d.rename(columns={f"bmd_{site}": "bmd"}).reset_index(drop=True)
    base = d.loc[d["month"] == 0].drop_duplicates("patient_id").set_index("patient_id")["bmd"]
    d["baseline"] = d["patient_id"].map(base)
    d["change"] = d["bmd"] - d["baseline"]
    d["pct"] = 100.0 * d["change"] / d["baseline"]
    for k, lv in enumerate(levels[1:], start=1):
        d[f"g{k}"] = (d["group"] == lv).astype(float)
    return d


def _indicators(levels: tuple[str, ...]) -> list[str]:
    return [f"g{k}" for k in range(1, len(levels))]


def data_lmm_rows(frame: pd.DataFrame, model: DataModel) -> list[tuple[str, dict[str, Any]]]:
    """The LMM's slope test per contrast (module docstring): ``(contrast, row)``."""
    from analysis.frequentist.lmm import fit_lmm

    g = _indicators(model.levels)
    formula = "bmd ~ " + " + ".join(["month", *g, *[f"month:{x}" for x in g]])
    fit = fit_lmm(frame, formula, time="month")
    tab = fit.fixed.set_index("term")
    out = []
    for k, (level, ref) in enumerate(model.contrasts, start=1):
        r = tab.loc["month" if ref is None else f"month:g{k}"]
        out.append((model.contrast_label(level, ref),
                    {"estimate": r["estimate"], "se": r["se"], "df": r["df"], "statistic": r["t"], "p": r["p"],
                     "converged": bool(fit.converged), "singular": bool(fit.singular)}))
    return out


def data_mmrm_rows(frame: pd.DataFrame, model: DataModel) -> list[tuple[str, dict[str, Any]]]:
    """The MMRM's endpoint contrast per contrast (module docstring): ``(contrast, row)``."""
    from analysis.frequentist.mmrm import fit_mmrm

    g = _indicators(model.levels)
    post = frame[(frame["month"] > 0) & frame["change"].notna()]
    formula = "change ~ " + " + ".join(["baseline", "month", *g, *[f"month:{x}" for x in g]])
    fit = fit_mmrm(post, formula, visit="month")
    grid, lmat = fit.reference_grid(g, by=["month"], at={x: [0.0, 1.0] for x in g})
    at_end = grid["month"].astype(float).to_numpy() == float(model.endpoint)
    ind = grid[g].to_numpy(dtype=float) if g else np.zeros((len(grid), 0))
    base = np.flatnonzero(at_end & (ind.sum(axis=1) == 0))
    if not base.size:
        raise ValueError(f"no month-{model.endpoint:g} visit in the MMRM")
    out = []
    for k, (level, ref) in enumerate(model.contrasts, start=1):
        if ref is None:
            row = lmat[base[:1]]
        else:
            hit = np.flatnonzero(at_end & (ind[:, k - 1] == 1) & (ind.sum(axis=1) == 1))
            row = lmat[hit[:1]] - lmat[base[:1]]
        c = fit.contrast(row, names=["c"]).iloc[0]
        out.append((model.contrast_label(level, ref),
                    {"estimate": c["estimate"], "se": c["se"], "df": c["df"], "statistic": c["t"], "p": c["p"],
                     "converged": bool(fit.converged)}))
    return out


def data_completers_rows(frame: pd.DataFrame, model: DataModel) -> list[tuple[str, str, dict[str, Any]]]:
    """Completers' % change to the endpoint per contrast: ``(analysis, contrast, row)`` for the t-test
    and the Wilcoxon test (module docstring)."""
    from analysis.frequentist.rtests import (
        t_test_one_sample,
        t_test_welch,
        wilcoxon_rank_sum,
        wilcoxon_signed_rank,
    )

    end = frame.loc[(frame["month"].astype(float) == float(model.endpoint)) & frame["baseline"].notna()]
    end = end.drop_duplicates("patient_id")
    out = []
    for level, ref in model.contrasts:
        x = end.loc[end["group"] == level, "pct"].to_numpy(dtype=float)
        y = None if ref is None else end.loc[end["group"] == ref, "pct"].to_numpy(dtype=float)
        tests = ((("completers_t", t_test_one_sample, (x,), {}),
                  ("completers_wilcoxon", wilcoxon_signed_rank, (x,), {"conf_int": False})) if y is None else
                 (("completers_t", t_test_welch, (x, y), {}),
                  ("completers_wilcoxon", wilcoxon_rank_sum, (x, y), {"conf_int": False})))
        for name, test, args, kwargs in tests:
            t0 = time.perf_counter()
            try:
                res = test(*args, **kwargs)
                est = np.nan if res.estimate is None else float(np.atleast_1d(res.estimate)[0])
                se = abs(est / res.statistic) if name == "completers_t" and res.statistic not in (0.0,) else np.nan
                row = {"ok": True, "estimate": est, "se": se, "df": np.nan if res.df is None else float(res.df),
                       "statistic": float(res.statistic), "p": float(res.p_value)}
            except Exception as err:  # noqa: BLE001 - a failed test is a result (no success)
                row = {"ok": False, "message": row_error(err)}
            out.append((name, model.contrast_label(level, ref), {**row, "seconds": time.perf_counter() - t0}))
    return out


def data_study_rows(spec: Any, n: int, sim: int, data_seed: int, sampler_seed: int,
                    prior_values: dict[str, float] | None = None,
                    prior_info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Simulate study ``sim`` of ``n`` patients of a design from data and run every analysis at every
    site, one raw row per site, analysis and contrast (seeds: :mod:`analysis.power.simulated_study`)."""
    pdz = spec.design
    model = pdz.data_model
    if prior_values:
        model = model.with_updates(**prior_values)
    data = simulate_from_data(model, n, data_seed, pdz.dropout)
    endpoint = float(model.endpoint)
    rows: list[dict[str, Any]] = []
    for site in pdz.sites:
        frame = group_frame(data, site, model.levels)
        per = frame.drop_duplicates("patient_id")
        sizes = per["group"].value_counts()
        end_ids = data.loc[(data["month"].astype(float) == endpoint) & data[f"bmd_{site}"].notna(), "patient_id"]
        n_completers = int(((frame["month"].astype(float) == endpoint) & frame["baseline"].notna()).sum())

        common = {"n": n, "sim": sim, "site": site, "n_analysed": len(per), "n_completers": n_completers,
                  "lost_fraction": 1.0 - end_ids.nunique() / n, **(prior_info or {})}
        bases = {model.contrast_label(lv, rf): {**common, "contrast": model.contrast_label(lv, rf),
                                                 "n_responders": int(sizes.get(lv, 0)),
                                                 "n_nonresponders": int(sizes.get(rf, 0)) if rf is not None else 0}
                 for lv, rf in model.contrasts}
        for analysis in spec.analyses:
            if analysis == "completers":
                for name, label, res in data_completers_rows(frame, model):
                    rows.append({**bases[label], "analysis": name, **res})
                continue
            t0 = time.perf_counter()
            try:
                if analysis == "lmm":
                    results = data_lmm_rows(frame, model)
                elif analysis == "mmrm":
                    results = data_mmrm_rows(frame, model)
                else:
                    results = [(model.contrast_label(*model.contrasts[max(k - 1, 0)]), res) for k, res in
                               bayes_contrast_rows(frame, site, model.levels, spec.settings, sampler_seed,
                                                   spec.cores, endpoint)]
                results = [(label, {"ok": True, **res}) for label, res in results]
            except Exception as err:  # noqa: BLE001 - a failed fit is a result (no success)
                results = [(label, {"ok": False, "message": row_error(err)}) for label in bases]
            took = (time.perf_counter() - t0) / max(len(results), 1)
            rows += [{**bases[label], "analysis": analysis, **res, "seconds": took} for label, res in results]
    return rows
