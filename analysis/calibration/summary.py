r"""Per-estimator calibration summaries and their verdicts.

Over the :math:`R` data sets of an estimator with a successful fit, with truth :math:`\theta_r`,
estimate :math:`\hat\theta_r`, model SE :math:`s_r` and interval :math:`[l_r, u_r]`:

.. math::

    \text{bias} = \frac1R\sum_r(\hat\theta_r - \theta_r),\qquad
    \text{MCSE}_\text{bias} = \frac{\operatorname{sd}(\hat\theta - \theta)}{\sqrt R},\qquad
    \text{emp. SE} = \operatorname{sd}(\hat\theta_r),\qquad
    \text{model SE} = \frac1R\sum_r s_r,

the SE ratio model / empirical, the coverage :math:`c = \frac1R\sum_r 1[l_r \le \theta_r \le u_r]`
with :math:`\text{MCSE}_c = \sqrt{c(1 - c)/R}`, and the rate at which the interval excludes 0
(the power, or under the null the type I error). Monte-Carlo SEs follow Morris, White & Crowther
(2019), *Stat Med* 38:2074.

Verdict: ``"93-97%: ok"`` when :math:`0.93 \le c \le 0.97`, else ``"below: ..."`` or
``"above: ..."`` with the reason: the one the estimator declares (a known property, e.g. Rubin's
rules with reference-based imputation), else a bias beyond 3 MCSE, a model SE more than 10% (and
more than 3 Monte-Carlo SEs, the empirical SE's relative MCSE being :math:`1/\sqrt{2(R-1)}`) off the
empirical one, and -- when :math:`c` is within 2 Monte-Carlo SEs *at nominal coverage*,
:math:`2\sqrt{0.95 \cdot 0.05 / R}`, of the band -- that :math:`R` is too small to tell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.calibration.spec import Estimator

__all__ = ["BAND", "SUMMARY_COLUMNS", "summarise", "verdict"]

#: The acceptable coverage of a nominal 95% interval.
BAND = (0.93, 0.97)
SUMMARY_COLUMNS = ["estimator", "family", "datasets", "failed", "truth", "mean_estimate", "bias", "bias_mcse",
                   "empirical_se", "model_se", "se_ratio", "coverage", "coverage_mcse", "excludes_zero",
                   "seconds_per_dataset", "verdict", "design", "estimand", "notes"]


def verdict(coverage: float, n: int, bias: float, bias_mcse: float, se_ratio: float, expected: str = "",
            failed: int = 0) -> str:
    """The verdict string of one estimator (module docstring)."""
    if n == 0 or not np.isfinite(coverage):
        return "no successful fit"
    lo, hi = BAND
    if lo <= coverage <= hi:
        text = "93-97%: ok"
    else:
        side = "below" if coverage < lo else "above"
        reasons = []
        if expected:
            reasons.append(f"expected: {expected}")
        else:
            if np.isfinite(bias_mcse) and bias_mcse > 0 and abs(bias) > 3 * bias_mcse:
                reasons.append(f"biased ({bias:.3g}, {abs(bias) / bias_mcse:.1f} MCSE)")
            # the empirical SE's own relative MCSE is about 1 / sqrt(2(R - 1))
            off = np.isfinite(se_ratio) and n > 1 and abs(se_ratio - 1) > max(0.1, 3 * se_ratio / np.sqrt(2 * (n - 1)))
            if off and side == "below" and se_ratio < 1:
                reasons.append(f"model SE too small (ratio {se_ratio:.2f})")
            if off and side == "above" and se_ratio > 1:
                reasons.append(f"model SE too large (ratio {se_ratio:.2f})")
        gap = lo - coverage if side == "below" else coverage - hi
        if gap <= 2 * np.sqrt(0.95 * 0.05 / n):
            reasons.append(f"within 2 MCSE of the band at R = {n}: too few data sets to tell")
        text = f"{side}: {'; '.join(reasons) if reasons else 'reason unknown'}"
    if failed:
        text += f" ({failed} failed fits left out)"
    return text


def _one(est: Estimator | None, name: str, rows: pd.DataFrame) -> dict:
    ok = rows.loc[rows["error"].fillna("") == ""]
    n = len(ok)
    err = ok["estimate"] - ok["truth"]
    cover = ((ok["ci_low"] <= ok["truth"]) & (ok["truth"] <= ok["ci_high"])).to_numpy()
    excl = ((ok["ci_low"] > 0) | (ok["ci_high"] < 0)).to_numpy()
    c = float(cover.mean()) if n else np.nan
    emp = float(ok["estimate"].std(ddof=1)) if n > 1 else np.nan
    model = float(ok["se"].mean()) if n else np.nan
    bias = float(err.mean()) if n else np.nan
    bias_mcse = float(err.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    ratio = model / emp if n > 1 and emp > 0 else np.nan
    failed = int(len(rows) - n)
    return {"estimator": name, "family": est.family if est else "", "datasets": len(rows), "failed": failed,
            "truth": float(rows["truth"].mean()) if len(rows) else np.nan,
            "mean_estimate": float(ok["estimate"].mean()) if n else np.nan, "bias": bias, "bias_mcse": bias_mcse,
            "empirical_se": emp, "model_se": model, "se_ratio": ratio, "coverage": c,
            "coverage_mcse": float(np.sqrt(c * (1 - c) / n)) if n else np.nan,
            "excludes_zero": float(excl.mean()) if n else np.nan,
            "seconds_per_dataset": float((rows["fit_seconds"] + rows["simulate_seconds"]).mean()) if len(rows) else np.nan,
            "verdict": verdict(c, n, bias, bias_mcse, ratio, est.expected if est else "", failed),
            "design": est.design if est else "", "estimand": est.estimand if est else "",
            "notes": est.notes if est else ""}


def summarise(raw: pd.DataFrame, estimators: dict[str, Estimator] | None = None) -> pd.DataFrame:
    """One row per estimator of ``raw`` (in the order of ``estimators``, then of appearance), with
    :data:`SUMMARY_COLUMNS`."""
    estimators = estimators or {}
    names = [n for n in estimators if n in set(raw["estimator"])]
    names += [n for n in dict.fromkeys(raw["estimator"]) if n not in names]
    rows = [_one(estimators.get(n), n, raw.loc[raw["estimator"] == n]) for n in names]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
