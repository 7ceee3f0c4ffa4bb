"""t-tests and Wilcoxon tests on :mod:`scipy.stats`, with R's conventions and R's output.

The completers analysis reports R's ``t.test`` (one-sample, paired, Welch) and ``wilcox.test``
(signed-rank, one-sample or paired; rank-sum / Mann-Whitney) with R's Hodges-Lehmann estimates
and confidence intervals. The statistics and p-values come from :mod:`scipy.stats`; the
Hodges-Lehmann estimates and intervals, which scipy does not have, from
:mod:`analysis.frequentist.hodges_lehmann`. The reference is R 4.2.2; the test-suite checks every
statistic, p-value, estimate and confidence limit against numbers produced by R
(``tests/analysis/frequentist/fixtures/rtests_reference.R``).

How R's conventions map onto scipy
----------------------------------
t-tests
    ``ttest_1samp(d, popmean=mu)`` on the sample, or on the complete-pair differences
    ``d = x - y`` for the paired test (which is what R's paired ``t.test`` computes), and
    ``ttest_ind(x - mu, y, equal_var=False)`` for Welch; the intervals are the results'
    ``confidence_interval(conf_level)`` (shifted back by ``mu`` for Welch). R's checks are kept:
    fewer than 2 observations and "data are essentially constant" raise; a zero standard error
    gives NaN limits, as in R.
Signed-rank statistic
    ``V`` = W+ = sum of the ranks of ``|d|`` over the positive ``d = x - y - mu`` (average ranks
    for ties). scipy's ``wilcoxon`` reports ``min(W+, W-)`` for two-sided tests, so ``V`` is
    computed here.
Zeros (signed-rank)
    Differences equal to zero (after subtracting ``mu``) are dropped before ranking (scipy's
    ``zero_method="wilcox"``); they are dropped *before* calling scipy, so ``n`` (the non-zero
    differences) and R's exactness rule see the same sample, and their number is reported in
    ``n_zero_dropped``.
Rank-sum statistic
    ``W`` = rank sum of ``x - mu`` in the pooled sample minus ``n1 (n1 + 1) / 2``, the Mann-Whitney
    U of ``x``: scipy's ``mannwhitneyu(x - mu, y).statistic``.
Exact or normal approximation (``exact=None``)
    R is exact for the signed-rank test when ``n < 50`` and there are no ties among ``|d|`` and
    no zeros, for the rank-sum test when both samples have fewer than 50 observations and the
    pooled sample has no ties; ``exact=True`` still falls back to the normal approximation with
    ties or zeros (R warns; the warnings go to ``note``). scipy's ``method="auto"`` follows other
    rules (signed-rank: exact for ``n <= 50``, a permutation test with ties or zeros for
    ``n <= 13``; rank-sum: exact only when a sample has ``<= 8`` observations), so the method is
    always passed explicitly: ``method="exact"`` when R is exact, else ``method="asymptotic"``.
    scipy's exact two-sided p-value ``2 min(P(S <= s), P(S >= s))`` (at most 1) is R's.
Normal approximation
    ``z = (S - E[S] - c) / sigma`` with the tie-corrected variance and R's continuity correction
    ``c`` (``sign(z)/2`` two-sided, ``+1/2`` for ``"greater"``, ``-1/2`` for ``"less"``): scipy's
    ``correction=correct`` / ``use_continuity=correct`` computes the same (``correct=True`` is
    R's default; scipy's ``wilcoxon`` defaults to ``correction=False``, so it is always passed).
    Alternatives are spelled as in R: ``"two.sided"`` (scipy's ``"two-sided"``), ``"less"``,
    ``"greater"``.
Missing values
    NaNs are removed (pairwise for paired tests, R's ``complete.cases``); unlike R, the number
    removed is reported in ``n_missing_removed`` and in ``note``. ``n`` counts what was used.
Errors
    Too few observations raise ``ValueError`` with R's message, e.g.
    ``"not enough (non-missing) 'x' observations"``.

Nothing is printed or warned: R's warnings go verbatim into ``TestResult.note``, together with the
NaN-removal count and, when an exact test was requested (or defaulted to) but ties/zeros prevented
it, which approximation was used instead.

Agreement with R (fixtures of R 4.2.2): exact p-values, Wilcoxon statistics, estimates,
confidence limits and achieved levels agree to the last bit or nearly; normal-approximation
p-values and t-test results to ~1e-15 relative (up to ~1e-12 for a confidence limit close to
zero). The tests require 1e-6 relative.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.stats import rankdata

from analysis.frequentist.hodges_lehmann import rank_sum_interval, signed_rank_interval

__all__ = ["TestResult", "t_test_one_sample", "t_test_paired", "t_test_welch", "wilcoxon_signed_rank",
           "wilcoxon_rank_sum"]

_ALTERNATIVES = ("two.sided", "less", "greater")
_SCIPY_ALTERNATIVE = {"two.sided": "two-sided", "less": "less", "greater": "greater"}
_DBL_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class TestResult:
    """Result of a test, with R's names and conventions.

    Attributes
    ----------
    method : str
        R's ``method`` string, e.g. ``"Wilcoxon signed rank exact test"``.
    statistic_name : str
        ``"t"``, ``"V"`` (signed-rank) or ``"W"`` (rank-sum).
    statistic : float
        Value of the test statistic.
    df : float or None
        Degrees of freedom (t-tests only).
    p_value : float
        p-value for ``alternative``.
    estimate : float or None
        Mean, mean difference, difference in means, (pseudo)median or
        difference in location; ``None`` when not computed
        (``conf_int=False`` for the Wilcoxon tests, as in R).
    estimate_name : str or None
        R's name of the estimate.
    conf_low, conf_high : float or None
        Confidence limits (``-inf`` / ``inf`` for one-sided intervals).
    conf_level : float or None
        Confidence level actually achieved as R reports it (R lowers it when
        the requested level is not achievable).
    exact : bool or None
        Whether the exact null distribution was used (None for t-tests).
    n : tuple of int
        Sample sizes used: ``(n,)`` for one-sample and paired tests (for the
        signed-rank test: the number of non-zero differences), ``(n_x, n_y)``
        for two-sample tests.
    n_zero_dropped : int
        Zero differences removed by the signed-rank test.
    ties : bool
        Whether tied ranks occurred (``|d|`` for the signed-rank test, the
        pooled sample for the rank-sum test).
    note : str
        R's warnings (and removal of missing values), ``"; "``-separated;
        empty if none.
    alternative : str
        ``"two.sided"``, ``"less"`` or ``"greater"``.
    n_missing_removed : int
        Observations (or pairs, for paired tests) removed because of NaN.
    """

    method: str
    statistic_name: str
    statistic: float
    df: float | None
    p_value: float
    estimate: float | None
    estimate_name: str | None
    conf_low: float | None
    conf_high: float | None
    conf_level: float | None
    exact: bool | None
    n: tuple[int, ...]
    n_zero_dropped: int = 0
    ties: bool = False
    note: str = ""
    alternative: str = "two.sided"
    n_missing_removed: int = 0

    __test__ = False  # not a pytest test class despite the name

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a plain ``dict`` (``n`` as a list)."""
        d = asdict(self)
        d["n"] = list(self.n)
        return d


# --------------------------------------------------------------------------- input


def _check_alternative(alternative: str) -> str:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"'alternative' must be one of {_ALTERNATIVES}, got {alternative!r}")
    return alternative


def _check_conf_level(conf_level: float) -> float:
    cl = float(conf_level)
    if not (math.isfinite(cl) and 0 < cl < 1):
        raise ValueError("'conf.level' must be a single number between 0 and 1")
    return cl


def _check_mu(mu: float) -> float:
    m = float(mu)
    if not math.isfinite(m):
        raise ValueError("'mu' must be a single number")
    return m


def _as_1d(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"'{name}' must be one-dimensional, got shape {arr.shape}")
    return arr


def _drop_nan(a: np.ndarray) -> tuple[np.ndarray, int]:
    ok = ~np.isnan(a)
    return a[ok], int(a.size - ok.sum())


def _paired_diff(x: Any, y: Any) -> tuple[np.ndarray, int]:
    xa, ya = _as_1d(x, "x"), _as_1d(y, "y")
    if xa.size != ya.size:
        raise ValueError("'x' and 'y' must have the same length")
    ok = ~(np.isnan(xa) | np.isnan(ya))
    return xa[ok] - ya[ok], int(xa.size - ok.sum())


def _missing_note(k: int, paired: bool) -> str:
    if k == 0:
        return ""
    what = "incomplete pair" if paired else "missing value"
    return f"{k} {what}{'s' if k != 1 else ''} removed"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _quietly(test, *args, **kwargs):
    """Call a scipy test without its warnings (degenerate data give NaN, as in R, and no warning)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return test(*args, **kwargs)


# --------------------------------------------------------------------------- t-tests


def _t_interval(res, conf_level: float, stderr: float, shift: float) -> tuple[float, float]:
    """scipy's interval, shifted by ``shift``; NaN when the standard error is 0 (R's ``Inf * 0``)."""
    if stderr == 0:
        return math.nan, math.nan
    ci = res.confidence_interval(conf_level)
    return float(ci.low) + shift, float(ci.high) + shift


def _t_one(d: np.ndarray, mu: float, conf_level: float, alternative: str, paired: bool,
           n_missing: int) -> TestResult:
    n = d.size
    if n < 2:
        raise ValueError("not enough 'x' observations")
    mean = float(np.mean(d))
    stderr = math.sqrt(float(np.var(d, ddof=1)) / n)
    if stderr < 10 * _DBL_EPS * abs(mean):
        raise ValueError("data are essentially constant")
    res = _quietly(stats.ttest_1samp, d, popmean=mu, alternative=_SCIPY_ALTERNATIVE[alternative])
    lo, hi = _t_interval(res, conf_level, stderr, 0.0)
    return TestResult(
        method="Paired t-test" if paired else "One Sample t-test",
        statistic_name="t",
        statistic=float(res.statistic),
        df=float(res.df),
        p_value=float(res.pvalue),
        estimate=mean,
        estimate_name="mean difference" if paired else "mean of x",
        conf_low=lo,
        conf_high=hi,
        conf_level=conf_level,
        exact=None,
        n=(n,),
        note=_missing_note(n_missing, paired),
        alternative=alternative,
        n_missing_removed=n_missing,
    )


def t_test_one_sample(x: Any, mu: float = 0.0, conf_level: float = 0.95,
                      alternative: str = "two.sided") -> TestResult:
    """One-sample t-test, as R ``t.test(x, mu = mu)`` (scipy's ``ttest_1samp``).

    Parameters
    ----------
    x : array_like
        Sample; NaNs are removed (count in ``n_missing_removed``).
    mu : float
        Hypothesised mean.
    conf_level : float
        Confidence level of the interval for the mean.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``statistic`` t, ``df`` n - 1, ``estimate`` the mean.

    Raises
    ------
    ValueError
        Fewer than 2 non-missing observations ("not enough 'x' observations")
        or essentially constant data.
    """
    alternative = _check_alternative(alternative)
    conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    xa, k = _drop_nan(_as_1d(x, "x"))
    return _t_one(xa, mu, conf_level, alternative, False, k)


def t_test_paired(x: Any, y: Any, mu: float = 0.0, conf_level: float = 0.95,
                  alternative: str = "two.sided") -> TestResult:
    """Paired t-test, as R ``t.test(x, y, paired = TRUE)``: one-sample on ``x - y``.

    Parameters
    ----------
    x, y : array_like
        Paired samples of equal length; incomplete pairs are removed (count in
        ``n_missing_removed``).
    mu : float
        Hypothesised mean difference.
    conf_level : float
        Confidence level.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``estimate`` is the mean difference ``mean(x - y)``.

    Raises
    ------
    ValueError
        Unequal lengths, fewer than 2 complete pairs, constant differences.
    """
    alternative = _check_alternative(alternative)
    conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    d, k = _paired_diff(x, y)
    return _t_one(d, mu, conf_level, alternative, True, k)


def t_test_welch(x: Any, y: Any, mu: float = 0.0, conf_level: float = 0.95,
                 alternative: str = "two.sided") -> TestResult:
    """Welch two-sample t-test, as R ``t.test(x, y)`` (scipy's ``ttest_ind(equal_var=False)``).

    Parameters
    ----------
    x, y : array_like
        Independent samples; NaNs removed from each.
    mu : float
        Hypothesised difference in means.
    conf_level : float
        Confidence level.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``estimate`` is ``mean(x) - mean(y)`` (R reports the two means
        separately; their difference is what the interval is for),
        ``df`` the Welch-Satterthwaite degrees of freedom.

    Raises
    ------
    ValueError
        Fewer than 2 observations in either sample, or constant data.
    """
    alternative = _check_alternative(alternative)
    conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    xa, kx = _drop_nan(_as_1d(x, "x"))
    ya, ky = _drop_nan(_as_1d(y, "y"))
    if xa.size < 2:
        raise ValueError("not enough 'x' observations")
    if ya.size < 2:
        raise ValueError("not enough 'y' observations")
    mx, my = float(np.mean(xa)), float(np.mean(ya))
    stderr = math.sqrt(float(np.var(xa, ddof=1)) / xa.size + float(np.var(ya, ddof=1)) / ya.size)
    if stderr < 10 * _DBL_EPS * max(abs(mx), abs(my)):
        raise ValueError("data are essentially constant")
    res = _quietly(stats.ttest_ind, xa - mu, ya, equal_var=False,
                   alternative=_SCIPY_ALTERNATIVE[alternative])
    lo, hi = _t_interval(res, conf_level, stderr, mu)
    return TestResult(
        method="Welch Two Sample t-test",
        statistic_name="t",
        statistic=float(res.statistic),
        df=float(res.df) if stderr > 0 else math.nan,  # R: 0/0
        p_value=float(res.pvalue),
        estimate=mx - my,
        estimate_name="difference in means",
        conf_low=lo,
        conf_high=hi,
        conf_level=conf_level,
        exact=None,
        n=(xa.size, ya.size),
        note=_missing_note(kx + ky, False),
        alternative=alternative,
        n_missing_removed=kx + ky,
    )


# --------------------------------------------------------------------------- Wilcoxon tests


def _fallback_notes(what: str, exact: bool, ties: bool, zeroes: bool, conf_int: bool,
                    correct: bool) -> list[str]:
    """R's warnings when the exact test was asked for (or defaulted to) but ties/zeros prevent it."""
    notes = []
    if exact and ties:
        notes.append("cannot compute exact p-value with ties")
        if conf_int:
            notes.append(f"cannot compute exact {what} with ties")
    if exact and zeroes:
        notes.append("cannot compute exact p-value with zeroes")
        if conf_int:
            notes.append(f"cannot compute exact {what} with zeroes")
    if exact and (ties or zeroes):
        notes.append("normal approximation" + (" with continuity correction" if correct else "") + " used")
    return notes


def wilcoxon_signed_rank(x: Any, y: Any = None, mu: float = 0.0, exact: bool | None = None,
                         correct: bool = True, conf_int: bool = True, conf_level: float = 0.95,
                         alternative: str = "two.sided") -> TestResult:
    """Wilcoxon signed-rank test, as R ``wilcox.test(x, y, paired = TRUE, ...)``.

    With ``y=None`` it is the one-sample test of ``x`` against ``mu``
    (R ``wilcox.test(x, mu = mu)``). The p-value is scipy's ``wilcoxon`` with the method R
    would use; the estimate and interval are R's Hodges-Lehmann ones.

    Parameters
    ----------
    x : array_like
        Sample, or first member of the pairs.
    y : array_like, optional
        Second member of the pairs (same length as ``x``); the test is on
        ``x - y``.  Incomplete pairs are removed and counted.
    mu : float
        Hypothesised location (of ``x - y``).
    exact : bool or None
        Use the exact null distribution.  ``None``: exact when the number of
        non-zero differences is < 50; in any case the exact distribution is
        only used without ties and zeros (R 4.2 rule).
    correct : bool
        Continuity correction in the normal approximation.
    conf_int : bool
        Compute the Hodges-Lehmann (pseudo)median and its confidence interval.
    conf_level : float
        Confidence level.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``statistic`` V (= W+), ``estimate`` the (pseudo)median.

    Raises
    ------
    ValueError
        No non-missing observation ("not enough (non-missing) 'x'
        observations"), unequal lengths, invalid arguments.
    """
    alternative = _check_alternative(alternative)
    if conf_int:
        conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    if y is not None:
        d, n_missing = _paired_diff(x, y)
    else:
        d, n_missing = _drop_nan(_as_1d(x, "x"))
    if d.size < 1:
        raise ValueError("not enough (non-missing) 'x' observations")

    xs = d - mu
    n_zero = int(np.sum(xs == 0))
    xs = xs[xs != 0]
    n = xs.size
    if exact is None:
        exact = n < 50
    r = rankdata(np.abs(xs))
    ties = bool(np.unique(r).size != r.size)
    use_exact = bool(exact and not ties and n_zero == 0)
    if n == 0:  # R: z = (0 - CORRECTION) / 0, so p = 1 one-sided with correction, NA otherwise
        pval = 1.0 if correct and alternative != "two.sided" else math.nan
    else:
        pval = float(_quietly(stats.wilcoxon, xs, zero_method="wilcox", correction=correct,
                              alternative=_SCIPY_ALTERNATIVE[alternative],
                              method="exact" if use_exact else "asymptotic").pvalue)
    method = "Wilcoxon signed rank exact test" if use_exact else (
        "Wilcoxon signed rank test" + (" with continuity correction" if correct else ""))
    hl = (signed_rank_interval(xs + mu, exact=use_exact, correct=correct, conf_level=conf_level,
                               alternative=alternative) if conf_int else None)
    notes = [_missing_note(n_missing, y is not None), *(hl.notes if hl else ())]
    if not use_exact:
        notes += _fallback_notes("confidence interval", bool(exact), ties, n_zero > 0, conf_int, correct)
    return TestResult(
        method=method,
        statistic_name="V",
        statistic=float(np.sum(r[xs > 0])),
        df=None,
        p_value=pval,
        estimate=hl.estimate if hl else None,
        estimate_name=hl.estimate_name if hl else None,
        conf_low=hl.conf_low if hl else None,
        conf_high=hl.conf_high if hl else None,
        conf_level=hl.conf_level if hl else None,
        exact=use_exact,
        n=(n,),
        n_zero_dropped=n_zero,
        ties=ties,
        note=_join(*notes),
        alternative=alternative,
        n_missing_removed=n_missing,
    )


def wilcoxon_rank_sum(x: Any, y: Any, mu: float = 0.0, exact: bool | None = None, correct: bool = True,
                      conf_int: bool = True, conf_level: float = 0.95,
                      alternative: str = "two.sided") -> TestResult:
    """Wilcoxon rank-sum (Mann-Whitney) test, as R ``wilcox.test(x, y, ...)``.

    The p-value is scipy's ``mannwhitneyu`` with the method R would use; the estimate and
    interval are R's Hodges-Lehmann ones.

    Parameters
    ----------
    x, y : array_like
        Independent samples; NaNs removed from each (count reported).
    mu : float
        Hypothesised location shift of ``x`` relative to ``y``.
    exact : bool or None
        Use the exact null distribution.  ``None``: exact when both samples
        have fewer than 50 observations; never with ties (R rule).
    correct : bool
        Continuity correction in the normal approximation.
    conf_int : bool
        Compute the Hodges-Lehmann location shift and its confidence interval.
    conf_level : float
        Confidence level.
    alternative : {"two.sided", "less", "greater"}
        Alternative hypothesis.

    Returns
    -------
    TestResult
        ``statistic`` W (Mann-Whitney U of ``x``), ``estimate`` the
        difference in location.

    Raises
    ------
    ValueError
        No non-missing observation in ``x`` or ``y``, invalid arguments,
        or (approximate CI) all observations tied.
    """
    alternative = _check_alternative(alternative)
    if conf_int:
        conf_level = _check_conf_level(conf_level)
    mu = _check_mu(mu)
    xa, kx = _drop_nan(_as_1d(x, "x"))
    ya, ky = _drop_nan(_as_1d(y, "y"))
    if xa.size < 1:
        raise ValueError("not enough (non-missing) 'x' observations")
    if ya.size < 1:
        raise ValueError("not enough 'y' observations")
    r = rankdata(np.concatenate([xa - mu, ya]))
    if exact is None:
        exact = xa.size < 50 and ya.size < 50
    ties = bool(np.unique(r).size != r.size)
    use_exact = bool(exact and not ties)
    res = _quietly(stats.mannwhitneyu, xa - mu, ya, use_continuity=correct,
                   alternative=_SCIPY_ALTERNATIVE[alternative],
                   method="exact" if use_exact else "asymptotic")
    method = "Wilcoxon rank sum exact test" if use_exact else (
        "Wilcoxon rank sum test" + (" with continuity correction" if correct else ""))
    hl = (rank_sum_interval(xa, ya, exact=use_exact, correct=correct, conf_level=conf_level,
                            alternative=alternative) if conf_int else None)
    notes = [_missing_note(kx + ky, False), *(hl.notes if hl else ())]
    if not use_exact:
        notes += _fallback_notes("confidence intervals", bool(exact), ties, False, conf_int, correct)
    return TestResult(
        method=method,
        statistic_name="W",
        statistic=float(res.statistic),
        df=None,
        p_value=float(res.pvalue),
        estimate=hl.estimate if hl else None,
        estimate_name=hl.estimate_name if hl else None,
        conf_low=hl.conf_low if hl else None,
        conf_high=hl.conf_high if hl else None,
        conf_level=hl.conf_level if hl else None,
        exact=use_exact,
        n=(xa.size, ya.size),
        n_zero_dropped=0,
        ties=ties,
        note=_join(*notes),
        alternative=alternative,
        n_missing_removed=kx + ky,
    )
