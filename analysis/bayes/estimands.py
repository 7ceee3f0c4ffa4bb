r"""Bayesian estimands from a fitted model, and the Bayesian-vs-frequentist comparison.

Every Bayesian model in ``models/`` reports the same original-scale quantities at the design's
endpoint: ``change_end`` and ``pct_change_end`` with a ``group`` dim (every level, the reference
first), ``diff_change_end`` and ``diff_pct_change_end`` with a ``contrast`` dim (each level minus
the reference; absent for a single arm); a ``site`` dim for the joint model.
:func:`fit_estimands` turns them into :class:`analysis.bayes.posterior.EstimandDraws` under the
shared estimand names (:func:`analysis.study.estimands.estimand_name`, ``difference_name``; e.g.
``"total hip, active - placebo, change to month 24, %"``), with

* ROPE: :math:`\pm` the DXA least significant change (2.4% spine, 1.9% femoral neck,
  :data:`analysis.bayes.posterior.LSC_PCT`) for % estimands, and the same fraction of the model's
  baseline mean for g/cm^2 estimands. At other sites no least significant change is documented
  here, so there is no ROPE (``rope``, ``p_in_rope`` empty; :func:`rope_text` says so) unless the
  caller gives one (``rope_pct``, ``rajak fit --rope``);
* the Savage-Dickey :math:`\mathrm{BF}_{10}` of each level x time interaction
  (``diff_change_end`` is :math:`b_{2k+1} T` over the :math:`T = E/12` years to the endpoint
  :math:`E`, whose prior is :math:`N(0, \text{responder\_slope\_sd}\; T)`), when the fit records
  its priors;
* the fit's diagnostic verdict on every row, so a failed fit is visible wherever it is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.study.estimands import difference_name, estimand_name
from analysis.bayes.posterior import LSC_PCT, EstimandDraws, savage_dickey_bf10, summary_table

__all__ = ["fit_estimands", "bayes_table", "compare_table", "rope_text", "COMPARE_COLUMNS"]

COMPARE_COLUMNS = ["estimand", "site", "frequentist_method", "freq_estimate", "freq_ci_low", "freq_ci_high",
                   "freq_p", "bayes_model", "bayes_median", "cri_low", "cri_high", "p_direction", "p_in_rope",
                   "bf10", "diagnostics", "agreement"]


def _flat(da) -> np.ndarray:
    return np.asarray(da.values, dtype=float).reshape(-1)


def rope_text(site: str, rope_pct: float | None = None) -> str:
    """One line on the ROPE used at ``site``."""
    if rope_pct is not None:
        return f"ROPE +/-{rope_pct:g}% (given)"
    if site in LSC_PCT:
        return f"ROPE +/-{LSC_PCT[site]:g}% (DXA least significant change at {site})"
    return (f"no ROPE at {site}: the DXA least significant change is documented for "
            f"{', '.join(sorted(LSC_PCT))} only (give one with --rope)")


def fit_estimands(fit: Any, site: str, model_label: str, month: float | None = None,
                  rope_pct: float | None = None) -> list[EstimandDraws]:
    """The estimands of one fitted model at one site (draws kept).

    Parameters
    ----------
    fit : FitResult
        A fit of a ``models/`` model (its posterior has ``change_end`` ... with a ``group`` dim).
    site : str
    model_label : str
    month : float, optional
        The endpoint month in the names; default the fit's (``settings["model"]["endpoint_month"]``,
        one year for models that report the change per year).
    rope_pct : float, optional
        ROPE half-width in %; default :data:`analysis.bayes.posterior.LSC_PCT` at ``site``, none
        elsewhere.

    Returns
    -------
    list of EstimandDraws
        Per group (the reference first) the change in g/cm^2 and in %, then per contrast
        (level - reference) the difference in g/cm^2 (with its Bayes factor) and in %.
    """
    post = fit.posterior["posterior"].to_dataset()
    if "site" in post.dims:
        post = post.sel(site=site)
    rope_pct = LSC_PCT.get(site) if rope_pct is None else rope_pct
    describe = fit.settings.get("model", {}) if isinstance(fit.settings, dict) else {}
    month = float(describe.get("endpoint_month", 12.0) if month is None else month)
    priors = describe.get("priors", {})
    base_mean = float(post["baseline_mean"].mean()) if "baseline_mean" in post else describe.get("y_loc")
    abs_rope = None if base_mean is None or rope_pct is None else rope_pct / 100 * base_mean
    verdict = "pass" if fit.passed else "FAIL: " + "; ".join(fit.diagnostics.failures)
    levels = [str(g) for g in post["group"].values] if "group" in post.coords else []
    items: list[EstimandDraws] = []
    for group in levels:
        if "change_end" in post:
            items.append(EstimandDraws(estimand_name(site, group, "abs", month), site, model_label,
                                       _flat(post["change_end"].sel(group=group)), rope=abs_rope))
        if "pct_change_end" in post:
            items.append(EstimandDraws(estimand_name(site, group, "pct", month), site, model_label,
                                       _flat(post["pct_change_end"].sel(group=group)), rope=rope_pct))
    prior_sd = None
    if "responder_slope_sd" in priors:  # b_{2k+1} ~ N(0, sd) per year: diff_change_end ~ N(0, sd T)
        prior_sd = float(priors["responder_slope_sd"]) * month / 12.0
    for k, level in enumerate(levels[1:]):
        pair = (level, levels[0])
        if "diff_change_end" in post:
            draws = _flat(post["diff_change_end"].isel(contrast=k))
            bf = None if prior_sd is None else savage_dickey_bf10(draws, stats.norm.pdf(0.0, 0.0, prior_sd))
            items.append(EstimandDraws(difference_name(site, "abs", month, groups=pair), site, model_label, draws,
                                       rope=abs_rope, bf10=bf))
        if "diff_pct_change_end" in post:
            items.append(EstimandDraws(difference_name(site, "pct", month, groups=pair), site, model_label,
                                       _flat(post["diff_pct_change_end"].isel(contrast=k)), rope=rope_pct))
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
