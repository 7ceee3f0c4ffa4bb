r"""Pooling of the analyses of imputed datasets, as R rbmi's ``pool()`` (rbmi 1.5.2, ``R/pool.R``).

One scalar parameter at a time; ``ests`` are its estimates from the analyses, in rbmi's order.

* Jackknife (``method_condmean(type = "jackknife")``): normal interval with the jackknife SE.
* Bootstrap (``method_condmean(type = "bootstrap")``): normal interval with the bootstrap SD, or
  the percentile interval and p-value (R's type-6 quantiles, :mod:`.percentile`).
* Rubin (``method_bayes``/``method_approxbayes``): Rubin's rules, Barnard-Rubin df, :math:`t` interval.
* BMLMI (``method_bmlmi``): von Hippel & Bartlett's random-effects ANOVA pooling, :math:`t` interval.

Parametric results are rbmi's ``parametric_ci``: :math:`\hat\theta \pm q_{1-\alpha/2}\,\widehat{se}`
and :math:`p = 2\min\{F(\hat\theta/\widehat{se}), 1 - F(\hat\theta/\widehat{se})\}` (:math:`F`
normal or :math:`t_\nu`). One-sided (``alternative="greater"``/``"less"``): the p-value is the
upper/lower tail, but the interval is rbmi's, :math:`(-\infty, \hat\theta + q_{1-\alpha}\widehat{se}]`
for ``"greater"`` and :math:`[\hat\theta - q_{1-\alpha}\widehat{se}, \infty)` for ``"less"``
(the reverse of ``t.test``'s; the percentile bootstrap likewise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis.sensitivity.ice.percentile import pval_percentile, quantile_type6
from analysis.sensitivity.ice.pooling_rules import bmlmi_estimates, rubin_rules, vector

__all__ = ["Pooled", "pool", "pool_bmlmi", "pool_bootstrap", "pool_jackknife", "pool_rubin"]

_ALTERNATIVES = ("two.sided", "greater", "less")


@dataclass(frozen=True)
class Pooled:
    r"""A pooled estimate with its interval and the p-value of :math:`H_0: \theta = 0`.

    ``df`` is ``inf`` for normal-based results and ``nan`` for the percentile bootstrap (which
    also has ``se = nan``, rbmi's ``NA``); ``method`` is rbmi's label, e.g. ``"bootstrap (normal)"``.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p: float
    df: float
    method: str


def _check(level: float, alternative: str) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    return 1.0 - float(level)


def _parametric(point, se, level, df, method, alternative) -> Pooled:
    """rbmi's ``parametric_ci`` with the normal (``df = inf``) or :math:`t_{df}` distribution."""
    alpha = _check(level, alternative)
    dist = stats.norm() if math.isinf(df) else stats.t(df)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.float64(point) / np.float64(se)
        lower, upper = float(dist.cdf(z)), float(dist.sf(z))
    mult, q, p = {"two.sided": ((-1.0, 1.0), dist.ppf(1 - alpha / 2), 2 * min(lower, upper)),
                  "greater": ((-math.inf, 1.0), dist.ppf(1 - alpha), upper),  # rbmi's (sic)
                  "less": ((-1.0, math.inf), dist.ppf(1 - alpha), lower)}[alternative]
    with np.errstate(invalid="ignore"):  # R's arithmetic: Inf * NaN = NaN when se is NaN
        lo, hi = np.array(mult) * np.float64(q) * np.float64(se) + point
    return Pooled(float(point), float(se), float(lo), float(hi), float(p), float(df), method)


def pool_jackknife(ests, level: float = 0.95, alternative: str = "two.sided") -> Pooled:
    r"""Jackknife pooling (rbmi's ``pool_internal.jackknife``).

    Parameters
    ----------
    ests : array_like, shape (N + 1,)
        ``ests[0]`` the full-data estimate :math:`\hat\theta`, ``ests[1:]`` the :math:`N`
        leave-one-out estimates :math:`\hat\theta_{(k)}`.
    level : float
        Confidence level :math:`1 - \alpha`.
    alternative : {"two.sided", "greater", "less"}

    Returns
    -------
    Pooled
        :math:`\hat\theta`, :math:`\widehat{se} = \sqrt{\tfrac{N-1}{N}\sum_k(\hat\theta_{(k)} -
        \bar\theta_{(\cdot)})^2}`, normal interval and p-value.
    """
    e = vector(ests, "ests", 2)
    jack = e[1:]
    se = math.sqrt((jack.size - 1) / jack.size * float(np.sum((jack - jack.mean()) ** 2)))
    return _parametric(e[0], se, level, math.inf, "jackknife", alternative)


def pool_bootstrap(ests, level: float = 0.95, type: str = "percentile", alternative: str = "two.sided") -> Pooled:
    r"""Bootstrap pooling (rbmi's ``pool_bootstrap_percentile``/``pool_bootstrap_normal``).

    Parameters
    ----------
    ests : array_like, shape (B + 1,)
        ``ests[0]`` from the original data (the point estimate), ``ests[1:]`` the :math:`B`
        bootstrap samples'.
    level : float
        Confidence level :math:`1 - \alpha`.
    type : {"percentile", "normal"}
        ``"normal"``: :math:`\widehat{se}` the SD of ``ests[1:]`` (divisor :math:`B-1`), normal
        interval and p-value. ``"percentile"`` (rbmi's default): the interval
        :math:`[Q(\alpha/2), Q(1-\alpha/2)]` of R's type-6 quantiles of ``ests[1:]``,
        :math:`p = \min(2\min(p_>, p_<), 1)` from :func:`.percentile.pval_percentile`, no SE.
    alternative : {"two.sided", "greater", "less"}

    Returns
    -------
    Pooled
    """
    e = vector(ests, "ests")
    alpha = _check(level, alternative)
    if type == "normal":
        se = float(np.std(e[1:], ddof=1)) if e.size > 2 else math.nan
        return _parametric(e[0], se, level, math.inf, "bootstrap (normal)", alternative)
    if type != "percentile":
        raise ValueError(f"type must be 'percentile' or 'normal', got {type!r}")
    boot, nan = e[1:], math.nan
    if boot.size == 0:
        return Pooled(float(e[0]), nan, nan, nan, nan, nan, "bootstrap (percentile)")
    pg, pl = pval_percentile(boot)
    lo, hi, p = {"two.sided": (*quantile_type6(boot, [alpha / 2, 1 - alpha / 2]), min(2 * min(pg, pl), 1.0)),
                 "greater": (-math.inf, quantile_type6(boot, 1 - alpha)[0], pg),  # rbmi's (sic)
                 "less": (quantile_type6(boot, alpha)[0], math.inf, pl)}[alternative]
    return Pooled(float(e[0]), nan, float(lo), float(hi), float(p), nan, "bootstrap (percentile)")


def pool_rubin(ests, ses, df_complete: float | None = None, level: float = 0.95,
               alternative: str = "two.sided") -> Pooled:
    r"""Rubin's rules (rbmi's ``pool_internal.rubin``): :math:`\bar\theta \pm t_{\nu,1-\alpha/2}\sqrt T`.

    Parameters
    ----------
    ests, ses : array_like, shape (M,)
        Estimates and standard errors of the :math:`M` completed-data analyses.
    df_complete : float or None
        :math:`\nu_{com}`, the df every analysis reported (rbmi requires them equal); ``inf`` is
        allowed; None is R's ``NA`` and gives :math:`\nu = \infty` (a normal interval).
    level : float
    alternative : {"two.sided", "greater", "less"}

    Returns
    -------
    Pooled
        See :func:`.pooling_rules.rubin_rules`; all NaN but the estimate when every ``ses`` is NaN.
    """
    est, var_t, df = rubin_rules(ests, ses, df_complete)
    if math.isnan(var_t):
        return Pooled(est, math.nan, math.nan, math.nan, math.nan, math.nan, "rubin")
    return _parametric(est, math.sqrt(var_t), level, df, "rubin", alternative)


def pool_bmlmi(ests, D: int, level: float = 0.95, alternative: str = "two.sided") -> Pooled:
    r"""BMLMI pooling (rbmi's ``pool_internal.bmlmi``): :math:`\hat\theta \pm t_{\nu,1-\alpha/2}\sqrt{\hat V}`.

    Parameters
    ----------
    ests : array_like, shape (B * D,)
        See :func:`.pooling_rules.bmlmi_estimates`.
    D : int
        Imputations per bootstrap sample.
    level : float
    alternative : {"two.sided", "greater", "less"}

    Returns
    -------
    Pooled
        ``se`` NaN when :math:`\hat V < 0` (R's ``sqrt``), and then the interval and p too.
    """
    est, var, df = bmlmi_estimates(ests, D)
    return _parametric(est, math.sqrt(var) if var >= 0 else math.nan, level, df, "bmlmi", alternative)


def pool(method: str, ests, ses=None, df_complete: float | None = None, D: int | None = None,
         level: float = 0.95, type: str = "percentile", alternative: str = "two.sided") -> Pooled:
    """Dispatch on rbmi's pool class ``"rubin"``, ``"jackknife"``, ``"bootstrap"`` or ``"bmlmi"``."""
    if method == "rubin" and ses is not None:
        return pool_rubin(ests, ses, df_complete, level, alternative)
    if method == "jackknife":
        return pool_jackknife(ests, level, alternative)
    if method == "bootstrap":
        return pool_bootstrap(ests, level, type, alternative)
    if method == "bmlmi" and D is not None:
        return pool_bmlmi(ests, D, level, alternative)
    raise ValueError(f"method must be 'rubin' (with ses), 'jackknife', 'bootstrap' or 'bmlmi' (with D), "
                     f"got {method!r}")
