r"""Decision rules and summaries: power (or assurance) per sample size from the raw rows.

Decision rules (:func:`summarise`; recomputable from the raw rows for any threshold): a frequentist
analysis succeeds when :math:`p < \alpha` (two-sided); the Bayesian one by
:math:`P(\Delta > 0 \mid y) >` ``prob`` (``direction="less"``: :math:`P(\Delta < 0 \mid y)`), by the
95% equal-tailed credible interval excluding 0, or by that interval lying entirely outside the
region of practical equivalence :math:`[-r, r]` (Kruschke's HDI+ROPE rule with the ETI;
:math:`r` defaults to the DXA least significant change, :data:`analysis.bayes.posterior.LSC_PCT`). A
failed fit counts as no success. Power :math:`\hat p = s/K` over :math:`K` simulations has
Monte-Carlo SE :math:`\sqrt{\hat p(1-\hat p)/K}` and a Wilson 95% interval
(:func:`wilson_interval`).

Each simulated power of an analysis with a closed form (:mod:`analysis.power.closed_form_design`)
is checked against it (:func:`closed_form_gap`): if the closed form :math:`p_{cf}` is right, the
number of successes is :math:`\mathrm{Binomial}(K, p_{cf})`, so
:math:`z = (\hat p - p_{cf}) / \sqrt{p_{cf}(1 - p_{cf})/K}` is about standard normal, and
:math:`|z| > 3` (:data:`Z_GAP_WARNING`) says that the two disagree (:func:`gap_warnings`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.power.analyses import FREQUENTIST_ROWS

__all__ = ["BAYES_CRITERIA", "FREQUENTIST_CRITERION", "Z_GAP_WARNING", "closed_form_gap", "gap_warnings", "smallest_n",
           "summarise", "wilson_interval"]

#: ``|z_gap|`` above which :func:`gap_warnings` warns.
Z_GAP_WARNING = 3.0

#: The Bayesian decision rules, as named in the summaries.
BAYES_CRITERIA = ("P(diff > 0) > prob", "95% CrI excludes 0", "95% CrI outside ROPE")
#: The frequentist decision rule, as named in the summaries.
FREQUENTIST_CRITERION = "p < alpha"


def _keys(frame: pd.DataFrame) -> list[str]:
    """What a power is reported by besides analysis and n: the site, and the contrast of a design
    from data (whose raw rows carry one)."""
    return ["site", "contrast"] if "contrast" in frame.columns else ["site"]


def wilson_interval(successes: np.ndarray, k: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    r"""Wilson score interval of a binomial proportion :math:`\hat p = s/k`.

    .. math::

        \frac{\hat p + z^2/(2k)}{1 + z^2/k} \pm \frac{z}{1 + z^2/k}
        \sqrt{\frac{\hat p(1-\hat p)}{k} + \frac{z^2}{4k^2}}, \qquad z = z_{1-\alpha/2}

    (:func:`statsmodels.stats.proportion.proportion_confint`, ``method="wilson"``). The exact
    bounds are 0 at :math:`\hat p = 0` and 1 at :math:`\hat p = 1`; rounding is clipped so that
    ``lo <= p <= hi`` always holds.

    Parameters
    ----------
    successes, k : array_like
        Successes and trials.
    alpha : float
        1 - confidence level.

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper limits.
    """
    from statsmodels.stats.proportion import proportion_confint

    successes = np.asarray(successes, dtype=float)
    k = np.asarray(k, dtype=float)
    p = successes / k
    lo, hi = proportion_confint(successes, k, alpha=alpha, method="wilson")
    return np.clip(lo, 0.0, p), np.clip(hi, p, 1.0)


def _successes(rows: pd.DataFrame, analysis: str, criterion: str, alpha: float, prob: float,
               rope: float | None, direction: str) -> np.ndarray:
    ok = rows["ok"].to_numpy(dtype=bool)
    if analysis != "bayes":
        return ok & (rows["p"].to_numpy(dtype=float) < alpha)
    lo, hi = rows["q025"].to_numpy(dtype=float), rows["q975"].to_numpy(dtype=float)
    if criterion == BAYES_CRITERIA[0]:
        p = rows["p_gt_0" if direction == "greater" else "p_lt_0"].to_numpy(dtype=float)
        return ok & (p > prob)
    if criterion == BAYES_CRITERIA[1]:
        return ok & ((lo > 0) | (hi < 0))
    r = rows["rope"].to_numpy(dtype=float) if rope is None else np.full(len(rows), float(rope))
    return ok & ((lo > r) | (hi < -r))


def summarise(raw: pd.DataFrame, alpha: float = 0.05, prob: float = 0.95, rope: float | None = None,
              direction: str = "greater") -> pd.DataFrame:
    r"""Power (or assurance) per sample size, site, analysis and decision rule, from raw rows.

    Parameters
    ----------
    raw : DataFrame
        :attr:`PowerResult.raw <analysis.power.results.PowerResult>` (or the Parquet chunks of a study).
    alpha, prob : float
        Frequentist level; Bayesian posterior-probability threshold.
    rope : float, optional
        ROPE half-width (default: the value stored with each Bayesian row).
    direction : {"greater", "less"}

    Returns
    -------
    DataFrame
        ``site, analysis, criterion, n, sims, successes, power, mc_se, ci_low, ci_high, failed,
        mean_estimate, diag_pass_rate, lost_fraction`` (``contrast`` after ``site`` for a design from
        data); ``mc_se`` is
        :math:`\sqrt{\hat p(1-\hat p)/K}`, ``ci_*`` the Wilson 95% interval, ``failed`` the fits
        that raised (counted as no success).
    """
    by = _keys(raw)
    cols = [*by, "analysis", "criterion", "n", "sims", "successes", "power", "mc_se", "ci_low", "ci_high",
            "failed", "mean_estimate", "diag_pass_rate", "lost_fraction"]
    out = []
    for key, rows in raw.groupby([*by, "analysis", "n"], sort=True):
        *where, analysis, n = key
        k = int(rows["sim"].nunique())
        criteria = BAYES_CRITERIA if analysis == "bayes" else (FREQUENTIST_CRITERION,)
        for crit in criteria:
            s = int(_successes(rows, analysis, crit, alpha, prob, rope, direction).sum())
            p = s / k
            lo, hi = wilson_interval(np.array([s], float), np.array([k], float))
            diag = rows["diag_passed"].astype("float").mean() if analysis == "bayes" else np.nan
            out.append({**dict(zip(by, where)), "analysis": analysis, "criterion": crit, "n": int(n), "sims": k,
                        "successes": s, "power": p, "mc_se": math.sqrt(p * (1 - p) / k), "ci_low": float(lo[0]),
                        "ci_high": float(hi[0]), "failed": int((~rows["ok"].astype(bool)).sum()),
                        "mean_estimate": float(rows["estimate"].mean()), "diag_pass_rate": float(diag),
                        "lost_fraction": float(rows["lost_fraction"].mean())})
    df = pd.DataFrame(out, columns=cols)
    if not df.empty:
        rank = df["analysis"].map({a: i for i, a in enumerate((*FREQUENTIST_ROWS, "bayes"))})
        df = (df.assign(_rank=rank).sort_values([*by, "_rank", "criterion", "n"], kind="stable")
              .drop(columns="_rank").reset_index(drop=True))
    return df


def smallest_n(summary: pd.DataFrame, target: float = 0.8) -> pd.DataFrame:
    """Smallest sample size of the grid whose power reaches ``target``, per site, analysis, rule.

    ``n_min``: the estimate reaches it; ``n_min_sure``: the lower Wilson 95% limit does (``NaN``
    when no sample size of the grid does).

    Parameters
    ----------
    summary : DataFrame
        A :func:`summarise` table.
    target : float
        Target power in (0, 1).

    Returns
    -------
    DataFrame
        ``site, analysis, criterion, target, n_min, power_at_n_min, mc_se_at_n_min, n_min_sure,
        max_n, power_at_max_n`` (``contrast`` after ``site`` for a design from data).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target}")
    by = _keys(summary)
    rows = []
    for key, g in summary.groupby([*by, "analysis", "criterion"], sort=False):
        *where, analysis, crit = key
        g = g.sort_values("n")
        hit = g[g["power"] >= target]
        sure = g[g["ci_low"] >= target]
        rows.append({**dict(zip(by, where)), "analysis": analysis, "criterion": crit, "target": target,
                     "n_min": int(hit["n"].iloc[0]) if len(hit) else np.nan,
                     "power_at_n_min": float(hit["power"].iloc[0]) if len(hit) else np.nan,
                     "mc_se_at_n_min": float(hit["mc_se"].iloc[0]) if len(hit) else np.nan,
                     "n_min_sure": int(sure["n"].iloc[0]) if len(sure) else np.nan,
                     "max_n": int(g["n"].max()), "power_at_max_n": float(g["power"].iloc[-1])})
    out = pd.DataFrame(rows, columns=[*by, "analysis", "criterion", "target", "n_min", "power_at_n_min",
                                      "mc_se_at_n_min", "n_min_sure", "max_n", "power_at_max_n"])
    for c in ("n_min", "n_min_sure"):
        out[c] = out[c].astype("Int64")
    return out


def closed_form_gap(summary: pd.DataFrame, closed: pd.DataFrame) -> pd.DataFrame:
    r"""The summary with the closed form beside each row and the z-score of their gap.

    .. math::

        z = \frac{\hat p - p_{cf}}{\sqrt{p_{cf}(1 - p_{cf})/K}}

    (the Monte-Carlo SE under the closed form; where that is 0, the simulation's own ``mc_se``;
    where both are 0, :math:`z = 0`).

    Parameters
    ----------
    summary : DataFrame
        A :func:`summarise` table.
    closed : DataFrame
        ``site, [contrast,] analysis, n, closed_form_power`` (:func:`analysis.power.closed_form_design.closed_form_table`).

    Returns
    -------
    DataFrame
        ``summary`` with ``closed_form_power`` and ``z_gap`` (NaN where an analysis has no closed form).
    """
    out = summary.copy()
    if closed is None or closed.empty or summary.empty:
        return out.assign(closed_form_power=np.nan, z_gap=np.nan)
    keys = [k for k in ("site", "contrast", "analysis", "n") if k in summary.columns and k in closed.columns]
    cf = closed[[*keys, "closed_form_power"]].drop_duplicates(keys)
    out = out.merge(cf, on=keys, how="left")
    p, q, k = (out[c].to_numpy(dtype=float) for c in ("power", "closed_form_power", "sims"))
    se = np.sqrt(q * (1.0 - q) / k)
    se = np.where(se > 0, se, out["mc_se"].to_numpy(dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p - q) / se, np.where(p == q, 0.0, np.sign(p - q) * np.inf))
    out["z_gap"] = np.where(np.isnan(q), np.nan, z)
    return out


def gap_warnings(gaps: pd.DataFrame, limit: float = Z_GAP_WARNING) -> list[str]:
    """One line per row of :func:`closed_form_gap` whose ``|z_gap|`` exceeds ``limit``."""
    lines = []
    for _, r in gaps.iterrows():
        z = r.get("z_gap", np.nan)
        if np.isfinite(z) and abs(z) <= limit or np.isnan(z):
            continue
        where = f"{r['site']}" + (f" {r['contrast']}" if "contrast" in gaps.columns else "")
        lines.append(f"WARNING: {where} {r['analysis']} n={int(r['n'])}: simulated power {r['power']:.3f} is "
                     f"{z:+.1f} Monte-Carlo SEs from the closed form {r['closed_form_power']:.3f} (|z| > {limit:g}): "
                     "the simulation and the closed form disagree")
    return lines
