r"""Bayesian estimands from a fitted model, and the Bayesian-vs-frequentist comparison.

Every Bayesian model in ``models/`` reports the same original-scale quantities (``change_12m``
and ``pct_change_12m`` with a ``group`` dim, ``diff_change_12m``, ``diff_pct_change_12m``; a
``site`` dim for the joint model). :func:`fit_estimands` turns them into
:class:`analysis.bayes.posterior.EstimandDraws` under the shared estimand names, with

* ROPE: :math:`\pm` the DXA least significant change (2.4% spine, 1.9% femoral neck) for %
  estimands, and the same fraction of the model's baseline mean for g/cm^2 estimands;
* the Savage-Dickey :math:`\mathrm{BF}_{10}` of the responder x time interaction
  (``diff_change_12m`` is :math:`b_3` over one year, whose prior is
  :math:`N(0, \text{responder\_slope\_sd})`), when the fit records its priors;
* the fit's diagnostic verdict on every row, so a failed fit is visible wherever it is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.study.estimands import difference_name, estimand_name
from analysis.bayes.posterior import LSC_PCT, EstimandDraws, savage_dickey_bf10, summary_table

__all__ = ["fit_estimands", "bayes_table", "compare_table", "COMPARE_COLUMNS"]

COMPARE_COLUMNS = ["estimand", "site", "frequentist_method", "freq_estimate", "freq_ci_low", "freq_ci_high",
                   "freq_p", "bayes_model", "bayes_median", "cri_low", "cri_high", "p_direction", "p_in_rope",
                   "bf10", "diagnostics", "agreement"]


def _flat(da) -> np.ndarray:
    return np.asarray(da.values, dtype=float).reshape(-1)


def fit_estimands(fit: Any, site: str, model_label: str, month: float = 12,
                  rope_pct: float | None = None) -> list[EstimandDraws]:
    """The estimands of one fitted model at one site (draws kept)."""
    post = fit.posterior["posterior"].to_dataset()
    if "site" in post.dims:
        post = post.sel(site=site)
    rope_pct = LSC_PCT.get(site) if rope_pct is None else rope_pct
    describe = fit.settings.get("model", {}) if isinstance(fit.settings, dict) else {}
    priors = describe.get("priors", {})
    base_mean = float(post["baseline_mean"].mean()) if "baseline_mean" in post else describe.get("y_loc")
    verdict = "pass" if fit.passed else "FAIL: " + "; ".join(fit.diagnostics.failures)
    items: list[EstimandDraws] = []
    for group in ("non-responder", "responder"):
        if "change_12m" in post:
            items.append(EstimandDraws(estimand_name(site, group, "abs", month), site, model_label,
                                       _flat(post["change_12m"].sel(group=group)),
                                       rope=None if base_mean is None else rope_pct / 100 * base_mean))
        if "pct_change_12m" in post:
            items.append(EstimandDraws(estimand_name(site, group, "pct", month), site, model_label,
                                       _flat(post["pct_change_12m"].sel(group=group)), rope=rope_pct))
    if "diff_change_12m" in post:
        draws = _flat(post["diff_change_12m"])
        bf = None
        if "responder_slope_sd" in priors:
            bf = savage_dickey_bf10(draws, stats.norm.pdf(0.0, 0.0, float(priors["responder_slope_sd"])))
        items.append(EstimandDraws(difference_name(site, "abs", month), site, model_label, draws,
                                   rope=None if base_mean is None else rope_pct / 100 * base_mean, bf10=bf))
    if "diff_pct_change_12m" in post:
        items.append(EstimandDraws(difference_name(site, "pct", month), site, model_label,
                                   _flat(post["diff_pct_change_12m"]), rope=rope_pct))
    for it in items:
        it.extra["diagnostics"] = verdict
    return items


def bayes_table(items: list[EstimandDraws], prob: float = 0.95) -> pd.DataFrame:
    """Summary table with the diagnostic verdict of each row's fit."""
    tab = summary_table(items, prob)
    tab["diagnostics"] = [it.extra.get("diagnostics", "") for it in items]
    return tab


def _agreement(f: pd.Series, b: pd.Series) -> str:
    f_sig = not (f["ci_low"] <= 0 <= f["ci_high"])
    b_sig = not (b["eti_low"] <= 0 <= b["eti_high"])
    same_dir = np.sign(f["estimate"]) == np.sign(b["median"])
    overlap = max(f["ci_low"], b["eti_low"]) <= min(f["ci_high"], b["eti_high"])
    if f_sig and b_sig and same_dir:
        return "agree: both exclude 0, same direction"
    if not f_sig and not b_sig:
        return "agree: neither excludes 0"
    if f_sig != b_sig:
        which = "frequentist CI" if f_sig else "Bayesian CrI"
        return f"differ: only the {which} excludes 0" + ("" if overlap else "; intervals do not overlap")
    return "differ: opposite directions"


def compare_table(frequentist: pd.DataFrame, bayes: pd.DataFrame, pairing: dict[str, str]) -> pd.DataFrame:
    """One row per estimand and Bayesian model: frequentist estimate, 95% CI, p next to the
    Bayesian median, 95% CrI (ETI), P(direction), P(ROPE), BF10 and an agreement note.

    ``pairing`` maps a Bayesian model label to the frequentist method it is compared with
    (e.g. ``{"LMM": "LMM (REML)", "MMRM": "MMRM (us, REML)"}``).
    """
    rows = []
    for _, b in bayes.iterrows():
        method = pairing.get(b["model"])
        if method is None:
            continue
        fr = frequentist[(frequentist["estimand"] == b["estimand"]) & (frequentist["method"] == method)]
        if fr.empty:
            continue
        f = fr.iloc[0]
        p_dir = max(b["p_lt_0"], b["p_gt_0"])
        rows.append({"estimand": b["estimand"], "site": b["site"], "frequentist_method": method,
                     "freq_estimate": f["estimate"], "freq_ci_low": f["ci_low"], "freq_ci_high": f["ci_high"],
                     "freq_p": f["p"], "bayes_model": b["model"], "bayes_median": b["median"],
                     "cri_low": b["eti_low"], "cri_high": b["eti_high"], "p_direction": p_dir,
                     "p_in_rope": b["p_in_rope"], "bf10": b["bf10"], "diagnostics": b.get("diagnostics", ""),
                     "agreement": _agreement(f, b)})
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)
