r"""Large-sample power of the LMM and MMRM tests on exactly the design a simulator draws.

The design is described by its **strata**: subjects of group :math:`g` (level 0 the reference)
whose observed visits form the pattern :math:`O` (a subset of the visits :math:`t_1..t_m`, months),
with probability :math:`w_{gO} = P(O \mid g)`, and the mean :math:`\mu_{gO}` and covariance
:math:`\Sigma_{gO}` of the subject's *complete* outcome vector given group and pattern (so informative
dropout, misclassified groups and heterogeneous variances are all carried by the moments). The
allocation gives the number :math:`n_g` of analysed subjects per group: exact counts, or a
multinomial draw (each recruited patient independently in group :math:`g` with probability
:math:`\pi_g`, or not analysed).

Estimator and its variance
--------------------------
Both analyses are generalised least squares with a working covariance :math:`W` (the REML limit of
the fitted covariance): :math:`\hat\beta = A^{-1}\sum_i X_i^\top W_i^{-1} y_i`,
:math:`A = \sum_i X_i^\top W_i^{-1} X_i`. With per-subject scores
:math:`U_i = X_i^\top W_i^{-1}(y_i - X_i\beta^*)` (:math:`\beta^*` the limit of :math:`\hat\beta`)

.. math::

    A = \sum_g n_g\,E_g[X^\top W^{-1} X],\qquad
    M = \sum_g n_g\,\mathrm{Cov}_g(U),\qquad
    v = c^\top A^{-1} M A^{-1} c,\qquad v_0 = c^\top A^{-1} c,

:math:`v` the true variance of the contrast :math:`c^\top\hat\beta` (the sandwich) and :math:`v_0` the
model-based one the fit reports. The expectations are exact Gaussian moments: for the LMM
(``bmd ~ month * group + (1 + month | patient)``) :math:`X` is fixed per stratum,
:math:`E[UU^\top] = X^\top W^{-1}(\Sigma_O + r r^\top) W^{-1} X`, :math:`r = \mu_O - X\beta^*`; for the
MMRM (``change ~ baseline + visit * group``, unstructured) the baseline :math:`y_0` is a column of
:math:`X`, and the expectations are taken conditionally on :math:`y_0` (changes given :math:`y_0`
are Gaussian with mean linear in :math:`y_0` and covariance
:math:`\Sigma_{OO} - \Sigma_{O0}\Sigma_{0O}/\Sigma_{00}`) and then over
:math:`y_0 \sim N(\mu_0, \Sigma_{00})` by Gauss-Hermite quadrature (exact: the integrands are
polynomials of degree 4).

Working covariance
------------------
The REML limit of the fitted covariance is the member of the model's family closest in
Kullback-Leibler divergence to the data,
:math:`\min_\theta \sum_{g,O} \pi_g w_{gO}\,[\log|W_O(\theta)| + \mathrm{tr}(W_O(\theta)^{-1}S_{gO})]`,
:math:`S_{gO} = E_{gO}[(y_O - X\beta^*)(y_O - X\beta^*)^\top]`, alternated with :math:`\beta^*(W)`.
When the model is the simulator's own (Gaussian and data generators, LMM) the truth is passed.
The models and this fit are in :mod:`analysis.power.closed_form_model`.

Test
----
The Satterthwaite degrees of freedom are computed from the expected REML information of the
covariance parameters :math:`\theta` (:math:`W_k = \partial W/\partial\theta_k`, :math:`P` the REML
projection),

.. math::

    \nu = \frac{2 v_0^2}{\nabla v_0^\top \mathcal I^{-1} \nabla v_0},\quad
    \mathcal I_{kl} = \tfrac12 \mathrm{tr}(P W_k P W_l),\quad
    \frac{\partial v_0}{\partial\theta_k} = c^\top A^{-1} B_k A^{-1} c,\quad
    B_k = \sum_i X_i^\top W_i^{-1} W_k W_i^{-1} X_i,

and the test statistic :math:`T = c^\top\hat\beta / \widehat{se}`, :math:`\widehat{se}^2 \approx
v_0\,\chi^2_\nu/\nu`, is :math:`\sqrt{v/v_0}` times a noncentral :math:`t_\nu` with
noncentrality :math:`\lambda = c^\top\beta^*/\sqrt{v}`, so that

.. math::

    \text{power} = P\bigl(|t_{\nu,\lambda}| > t_{\nu,1-\alpha/2}\sqrt{v_0/v}\bigr).

The df are computed at the expected allocation (and scaled by the number of analysed subjects for
each split of a random one). The MMRM's estimated baseline coefficient inflates the variance by the factor
:math:`1 + 1/(n_a - K - 2)` (:math:`n_a` analysed subjects, :math:`K` groups; the expected ANCOVA
imbalance term :math:`E[F_{1,n-K}]/(n-K)`). With ``test="z"`` the normal reference and no
small-sample factor give the textbook large-sample formulas (Liu & Liang, Edland, Lu, Luo & Chen).

The completers' Welch t-test has its closed form in :mod:`analysis.power.closed_form_completers`.
A random allocation averages the power over the multinomial counts; a split leaving a compared
group empty counts as no success, as a failed fit does in the simulation, and so does (for the LMM
with the t reference) a data set with no more observations than random effects, which the fit
refuses: the power is multiplied by :math:`P(\sum_i (m_i - 2) > 0)`, :math:`m_i` the number of
observations of subject :math:`i` (the distribution of the patterns, convolved over subjects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from analysis.power.closed_form_model import (
    AnalysisModel,
    Stratum,
    gls_limit,
    prepared_strata,
    reml_limit,
)

__all__ = ["Allocation", "ContrastPower", "Stratum", "contrast_power", "noncentral_power"]

@dataclass(frozen=True)
class Allocation:
    """Analysed subjects per group: exact ``counts(n)``, else multinomial with ``shares``.

    ``shares[g]`` is the probability that a recruited patient is analysed in group ``g`` (the rest,
    ``1 - sum(shares)``, are not analysed).
    """

    shares: tuple[float, ...]
    counts: Callable[[int], Sequence[int]] | None = None

    def distribution(self, n: int, tol: float = 1e-10) -> list[tuple[float, np.ndarray]]:
        """``(probability, counts)`` pairs for ``n`` recruited patients (pmf below ``tol`` dropped)."""
        if self.counts is not None:
            return [(1.0, np.asarray(self.counts(int(n)), dtype=float))]
        out: list[tuple[float, np.ndarray]] = []

        def walk(g: int, left: int, rest: float, prob: float, acc: list[int]) -> None:
            if g == len(self.shares):
                out.append((prob, np.asarray(acc, dtype=float)))
                return
            p = min(self.shares[g] / rest, 1.0) if rest > 0 else 0.0
            ks = np.arange(left + 1)
            pmf = stats.binom.pmf(ks, left, p)
            for k in ks[pmf * prob > tol]:
                walk(g + 1, left - int(k), rest - self.shares[g], prob * float(pmf[k]), [*acc, int(k)])

        walk(0, int(n), 1.0, 1.0, [])
        return out

    def expected(self, n: float) -> np.ndarray:
        """Expected counts per group."""
        if self.counts is not None:
            return np.asarray(self.counts(int(n)), dtype=float)
        return float(n) * np.asarray(self.shares, dtype=float)


@dataclass(frozen=True)
class ContrastPower:
    """Closed-form power of one contrast on a sample-size grid, with what it rests on.

    Attributes
    ----------
    power : ndarray
        Power per ``n`` (averaged over a random allocation).
    estimand : float
        :math:`c^\\top\\beta^*`, what the analysis estimates.
    se, se_model, df : ndarray
        :math:`\\sqrt v`, :math:`\\sqrt{v_0}` and :math:`\\nu` at the expected allocation.
    """

    power: np.ndarray
    estimand: float
    se: np.ndarray
    se_model: np.ndarray
    df: np.ndarray


def _group_sums(model: AnalysisModel, prep: list, w: np.ndarray, beta: np.ndarray) -> dict[int, dict[str, Any]]:
    """Per-group expected per-subject quantities (weighted by the pattern probabilities)."""
    nk = len(model.derivs)
    sums: dict[int, dict[str, Any]] = {}
    for s, (idx, nodes, cond) in prep:
        g = sums.setdefault(s.group, {"P": 0.0, "Eu": 0.0, "Euu": 0.0, "B": [0.0] * nk, "T": np.zeros((nk, nk)),
                                      "G": [[0.0] * nk for _ in range(nk)], "post": 0.0})
        wi = np.linalg.inv(w[np.ix_(idx, idx)])
        wk = [wi @ d[np.ix_(idx, idx)] @ wi for d in model.derivs]
        f = s.weight
        g["post"] += f
        for a in range(nk):
            for b in range(nk):
                g["T"][a, b] += f * np.trace(model.derivs[a][np.ix_(idx, idx)] @ wk[b])
        for q, x, m in nodes:
            r = m - x @ beta
            u = x.T @ wi @ r
            xw = x.T @ wi
            g["P"] = g["P"] + f * q * xw @ x
            g["Eu"] = g["Eu"] + f * q * u
            g["Euu"] = g["Euu"] + f * q * xw @ (cond + np.outer(r, r)) @ xw.T
            for a in range(nk):
                g["B"][a] = g["B"][a] + f * q * x.T @ wk[a] @ x
                for b in range(nk):
                    g["G"][a][b] = g["G"][a][b] + f * q * x.T @ wk[a] @ model.derivs[b][np.ix_(idx, idx)] @ wi @ x
    for g in sums.values():
        g["Cu"] = g["Euu"] - np.outer(g["Eu"], g["Eu"])
    return sums


def _at_counts(model: AnalysisModel, sums: dict, counts: np.ndarray, c: np.ndarray,
               with_df: bool = True) -> tuple[float, float, float, float]:
    """``(v, v0, df, analysed)`` at the given counts per group (``df`` NaN unless ``with_df``)."""
    p = model.p
    a = np.zeros((p, p))
    meat = np.zeros((p, p))
    nk = len(model.derivs)
    bk = [np.zeros((p, p)) for _ in range(nk)]
    tt = np.zeros((nk, nk))
    gg = [[np.zeros((p, p)) for _ in range(nk)] for _ in range(nk)]
    analysed = 0.0
    for grp, s in sums.items():
        n = counts[grp]
        if n == 0:
            continue
        analysed += n * s["post"]
        a += n * s["P"]
        meat += n * s["Cu"]
        tt += n * s["T"]
        for i in range(nk):
            bk[i] += n * s["B"][i]
            for j in range(nk):
                gg[i][j] += n * s["G"][i][j]
    ainv = np.linalg.pinv(a)
    v0 = float(c @ ainv @ c)
    v = float(c @ ainv @ meat @ ainv @ c)
    if not with_df:
        return v, v0, np.nan, analysed
    grad = np.array([float(c @ ainv @ b @ ainv @ c) for b in bk])
    info = np.zeros((nk, nk))
    for i in range(nk):
        for j in range(nk):
            info[i, j] = 0.5 * (tt[i, j] - 2.0 * np.trace(ainv @ gg[i][j]) + np.trace(ainv @ bk[i] @ ainv @ bk[j]))
    denom = float(grad @ np.linalg.pinv(info) @ grad)
    df = 2.0 * v0**2 / denom if denom > 0 else np.inf
    return v, v0, df, analysed


def _identifiable(prep: list, groups: int) -> Callable[[np.ndarray], float]:
    r""":math:`P(\sum_i (m_i - 2) > 0)` given the counts per group, :math:`m_i` a subject's number of
    observations: the random-slope LMM refuses a data set with no more observations than random
    effects (:func:`analysis.frequentist.lmm.fit_lmm`), a failed fit that counts as no success."""
    pmfs = []
    for g in range(groups):
        f: dict[int, float] = {}
        for s, (idx, _, _) in prep:
            if s.group == g:
                f[idx.size - 2] = f.get(idx.size - 2, 0.0) + s.weight
        lo = min(f, default=0)
        pmf = np.zeros(max(f, default=0) - lo + 1)
        for d, w in f.items():
            pmf[d - lo] += w
        pmfs.append((lo, pmf / pmf.sum() if pmf.sum() > 0 else pmf))
    memo: dict[tuple[int, int], tuple[int, np.ndarray]] = {}

    def power_of(g: int, n: int) -> tuple[int, np.ndarray]:
        if (g, n) not in memo:
            lo, base = pmfs[g]
            out_lo, out = 0, np.ones(1)
            for _ in range(n):
                out = np.convolve(out, base)
                out_lo += lo
            memo[(g, n)] = (out_lo, out)
        return memo[(g, n)]

    def prob(counts: np.ndarray) -> float:
        lo, dist = 0, np.ones(1)
        for g, n in enumerate(counts):
            glo, gd = power_of(g, int(np.rint(n)))
            dist = np.convolve(dist, gd)
            lo += glo
        support = np.arange(dist.size) + lo
        return float(dist[support > 0].sum())

    return prob


def noncentral_power(delta: float, v: float, v0: float, df: float, alpha: float, test: str = "t") -> float:
    r"""Two-sided power of a test of an estimate with mean ``delta``, true variance ``v``, reported
    variance ``v0`` with ``df`` degrees of freedom: :math:`P(|t_{\nu,\lambda}| > t_{\nu,1-\alpha/2}
    \sqrt{v_0/v})`, :math:`\lambda = |\delta|/\sqrt v` (normal for ``test="z"`` or infinite df)."""
    if not (v > 0 and v0 > 0):
        return 0.0
    ratio = np.sqrt(v0 / v)
    lam = abs(delta) / np.sqrt(v)
    if test == "z" or not np.isfinite(df):
        crit = stats.norm.ppf(1 - alpha / 2) * ratio
        return float(stats.norm.sf(crit - lam) + stats.norm.cdf(-crit - lam))
    df = max(df, 1.0)
    crit = stats.t.ppf(1 - alpha / 2, df) * ratio
    return float(stats.nct.sf(crit, df, lam) + stats.nct.cdf(-crit, df, lam))


def contrast_power(analysis: str, times: Sequence[float], strata: Sequence[Stratum], allocation: Allocation,
                   n: Sequence[int], contrasts: Sequence[tuple[int, int | None]], *, endpoint: int | None = None,
                   alpha: float = 0.05, test: str = "t", working: np.ndarray | None = None) -> list[ContrastPower]:
    """Closed-form power of each contrast of ``analysis`` on the design given by its strata.

    Parameters
    ----------
    analysis : {"lmm", "mmrm"}
        LMM: slope of ``level`` minus slope of ``ref`` (per unit of ``times``). MMRM: mean change
        from the first visit to visit ``endpoint`` of ``level`` minus ``ref`` (``ref=None``: the
        change itself, at the mean baseline).
    times : sequence of float
        Visits (the first the baseline).
    strata : sequence of Stratum
    allocation : Allocation
    n : sequence of int
        Recruited patients.
    contrasts : sequence of (int, int or None)
        ``(level, reference)``.
    endpoint : int, optional
        Index of the MMRM's endpoint visit (default: the last).
    alpha : float
        Two-sided level.
    test : {"t", "z"}
        Noncentral t with Satterthwaite df (and the MMRM's small-sample factor), or the normal
        large-sample formula.
    working : ndarray, optional
        The working covariance (LMM: over all visits; MMRM: over the post-baseline visits); default:
        its REML limit (module docstring).

    Returns
    -------
    list of ContrastPower
        One per contrast.
    """
    if test not in ("t", "z"):
        raise ValueError(f"test must be 't' or 'z', got {test!r}")
    times = np.asarray(times, dtype=float)
    k = 1 + max(max(lv, rf if rf is not None else 0) for lv, rf in contrasts)
    k = max(k, 1 + max(s.group for s in strata))
    model = AnalysisModel(analysis, times, k, times.size - 1 if endpoint is None else endpoint)
    prep = prepared_strata(model, strata)
    shares = np.zeros(k)
    shares[:len(allocation.shares)] = allocation.shares
    if allocation.counts is not None:
        ref = allocation.expected(max(int(np.max(n)), 1000))
        shares = ref / ref.sum()
    w = working if working is not None else reml_limit(model, prep, shares, None)
    beta = gls_limit(model, prep, w, shares)
    sums = _group_sums(model, prep, w, beta)
    base = sum(shares[s.group] * s.weight * s.mean[0] for s in strata) / max(
        sum(shares[s.group] * s.weight for s in strata), 1e-12)
    cs = [model.contrast(lv, rf, base) for lv, rf in contrasts]
    out = []
    for (lv, rf), c in zip(contrasts, cs):
        delta = float(c @ beta)
        pw, se, se0, dfs = [], [], [], []
        ok = _identifiable(prep, k) if analysis == "lmm" and test == "t" else None
        for nn in n:
            total = 0.0
            _, _, df_exp, n_exp = _at_counts(model, sums, np.maximum(allocation.expected(int(nn)), 1e-9), c)
            for prob, counts in allocation.distribution(int(nn)):
                if counts[lv] == 0 or (rf is not None and counts[rf] == 0):
                    continue  # a compared group is empty: the fit fails, no success
                v, v0, _, analysed = _at_counts(model, sums, counts, c, with_df=False)
                df = df_exp * analysed / n_exp  # Satterthwaite's df scale with the analysed subjects
                if analysis == "mmrm" and test == "t":
                    factor = 1.0 + 1.0 / max(analysed - k - 2.0, 1.0)
                    v, v0 = v * factor, v0 * factor
                fits = 1.0 if ok is None else ok(counts)
                total += prob * fits * noncentral_power(delta, v, v0, df, alpha, test)
            pw.append(total)
            v, v0, df, _ = _at_counts(model, sums, np.maximum(allocation.expected(int(nn)), 1e-9), c)
            se.append(np.sqrt(v))
            se0.append(np.sqrt(v0))
            dfs.append(df)
        out.append(ContrastPower(power=np.array(pw), estimand=delta, se=np.array(se), se_model=np.array(se0),
                                 df=np.array(dfs)))
    return out

