r"""Analysis models applied to one completed dataset (wide form), as R rbmi's ``ancova()``.

Patient :math:`i` has outcomes :math:`y_{i1}, \dots, y_{im}` (change from baseline) at the
visits ``months``, group code :math:`g_i \in \{0, \dots, K-1\}` (0 the reference) and baseline
covariates :math:`c_i \in \mathbb R^q`. Both models give, per visit :math:`t`,

* ``"trt_<level>_<t>"``: the difference level - reference (every non-reference level), and
* ``"lsm_<level>_<t>"``: the least-squares mean of every level with rbmi's default
  ``weights = "counterfactual"``: the mean over all :math:`n` patients of the prediction with the
  patient's group set to that level, :math:`\hat\mu_k = \bar x_k^\top\hat\beta` with
  :math:`\bar x_k = n^{-1}\sum_i x_i(g = k)`; as there is no group-by-covariate term, this is the
  prediction at the covariate means :math:`\bar c`;

each an :class:`Estimate` ``(est, se, df)`` (visits formatted with ``:g``, levels with ``str``).

:func:`ancova` is rbmi's ``ancova_single`` at every visit, ``lm(y ~ group + covariates)``
(treatment coding, one indicator per non-reference level: with :math:`K = 2`, rbmi's
``trt_<visit>``/``lsm_ref_<visit>``/``lsm_alt_<visit>``), :math:`\hat\beta = (X^\top X)^{-1}X^\top y`,
:math:`\widehat{\operatorname{Var}}(\hat\beta) = \hat\sigma^2(X^\top X)^{-1}`,
:math:`\hat\sigma^2 = \lVert y - X\hat\beta\rVert^2/(n - p)`, ``df`` :math:`= n - p`.

:func:`mmrm_analysis` fits ``change ~ covariates + visit * group`` with unstructured covariance by
REML (:func:`analysis.frequentist.mmrm.fit_mmrm`) and reads the same quantities as contrasts of its
reference grid (Satterthwaite df).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular

from analysis.frequentist.mmrm import fit_mmrm

__all__ = ["Estimate", "ancova", "mmrm_analysis"]


@dataclass(frozen=True)
class Estimate:
    """One analysis result of one completed dataset: estimate, standard error, df (rbmi's list)."""

    est: float
    se: float
    df: float


def _label(v) -> str:
    try:
        return format(float(v), "g")
    except (TypeError, ValueError):
        return str(v)


def _inputs(y, group, covariates, months, levels, allow_nan: bool = False):
    y = np.asarray(y, dtype=float)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2:
        raise ValueError(f"y must be (n, m), got shape {y.shape}")
    n, m = y.shape
    g = np.asarray(group).reshape(-1)
    if g.size != n or not np.all(np.equal(np.mod(g, 1), 0)):
        raise ValueError(f"group must be {n} integer codes")
    g = g.astype(int)
    cov = np.zeros((n, 0)) if covariates is None else np.asarray(covariates, dtype=float)
    cov = cov[:, None] if cov.ndim == 1 else cov
    if cov.shape[0] != n or not np.all(np.isfinite(cov)):
        raise ValueError(f"covariates must be a finite (n, q) array with n = {n}, got shape {cov.shape}")
    months = list(months)
    if len(months) != m:
        raise ValueError(f"{len(months)} months for {m} outcome columns")
    levels = [str(v) for v in levels]
    k = len(levels)
    if k < 1 or len(set(levels)) != k:
        raise ValueError(f"levels must be distinct names, got {levels}")
    if g.min() < 0 or g.max() >= k:
        raise ValueError(f"group codes must be in 0..{k - 1}")
    absent = [levels[j] for j in range(k) if not np.any(g == j)]
    if absent:
        raise ValueError(f"no patient in level(s) {absent}")
    if not allow_nan and not np.all(np.isfinite(y)):
        raise ValueError("y must be complete (no NaN) for the analysis of a completed dataset")
    return y, g, cov, months, levels


def _keys(levels: list[str], month) -> tuple[list[str], list[str]]:
    t = _label(month)
    return [f"trt_{lv}_{t}" for lv in levels[1:]], [f"lsm_{lv}_{t}" for lv in levels]


def ancova(y, group, covariates, months, levels) -> dict[str, Estimate]:
    r"""rbmi's ``ancova`` (``weights = "counterfactual"``) at every visit of a completed dataset.

    Parameters
    ----------
    y : array_like, shape (n, m) or (n,)
        Complete outcomes (change from baseline), one column per visit.
    group : array_like of int, shape (n,)
        Codes :math:`0, \dots, K-1` into ``levels``; 0 is the reference. Every level must occur.
    covariates : array_like, shape (n, q) or (n,), or None
        Numeric baseline covariates (dummy-code factors beforehand).
    months : sequence, length m
        Visit labels (formatted with ``:g`` in the keys).
    levels : sequence, length K
        Level names.

    Returns
    -------
    dict of str to Estimate
        Per visit, ``trt_<level>_<month>`` for each non-reference level (the coefficient of its
        indicator, :math:`\hat\beta_k`, SE :math:`\sqrt{V_{kk}}`), then ``lsm_<level>_<month>``
        for every level (:math:`\bar x_k^\top\hat\beta`, SE :math:`\sqrt{\bar x_k^\top V\bar x_k}`),
        all with df :math:`n - p`. :math:`K = 1`: only the ``lsm`` keys.

    Raises
    ------
    ValueError
        Bad shapes or codes, a level without patients, missing outcomes, a rank-deficient design
        or no residual df.
    """
    y, g, cov, months, levels = _inputs(y, group, covariates, months, levels)
    n, k = y.shape[0], len(levels)
    x = np.column_stack([np.ones(n), (g[:, None] == np.arange(1, k)).astype(float), cov])
    p = x.shape[1]
    if np.linalg.matrix_rank(x) < p:
        raise ValueError("ANCOVA design (intercept, group indicators, covariates) is rank deficient")
    df = n - p
    if df <= 0:
        raise ValueError(f"no residual df: n = {n} patients for {p} coefficients")
    qm, r = np.linalg.qr(x)
    beta = solve_triangular(r, qm.T @ y)  # (p, m): one lm per visit, same design
    sigma2 = np.sum((y - x @ beta) ** 2, axis=0) / df
    rinv = solve_triangular(r, np.eye(p))
    xtx_inv = rinv @ rinv.T
    lmat = np.column_stack([np.ones(k), np.eye(k)[:, 1:], np.tile(cov.mean(axis=0), (k, 1))])
    lvar = np.einsum("kp,pq,kq->k", lmat, xtx_inv, lmat)
    out: dict[str, Estimate] = {}
    for j, month in enumerate(months):
        trt_keys, lsm_keys = _keys(levels, month)
        for i, key in enumerate(trt_keys, start=1):
            out[key] = Estimate(float(beta[i, j]), float(np.sqrt(sigma2[j] * xtx_inv[i, i])), float(df))
        for i, key in enumerate(lsm_keys):
            out[key] = Estimate(float(lmat[i] @ beta[:, j]), float(np.sqrt(sigma2[j] * lvar[i])), float(df))
    return out


def mmrm_analysis(y, group, covariates, months, levels, observed=None) -> dict[str, Estimate]:
    r"""MMRM analysis of a completed dataset, with the keys of :func:`ancova`.

    Fits ``change ~ x0 + ... + visit * arm`` (``visit`` and ``arm`` factors in the given orders,
    reference ``levels[0]``; ``arm``/``visit`` dropped when :math:`K = 1`/:math:`m = 1`) with
    unstructured :math:`\Sigma` by REML (:func:`~analysis.frequentist.mmrm.fit_mmrm`,
    Satterthwaite df). ``lsm_<level>_<t>`` is the reference-grid row of the level at visit
    :math:`t` with the covariates at their means over the :math:`n` patients (rbmi's
    counterfactual weights), ``trt_<level>_<t>`` its difference from the reference's row (the
    group effect at :math:`t`).

    Parameters
    ----------
    y, group, covariates, months, levels
        As :func:`ancova`.
    observed : array_like of bool, shape (n, m), optional
        Cells entering the fit; the others (which may be NaN in ``y``) are left out, i.e. an MMRM
        on the observed data under MAR. Default: every cell (``y`` must be complete).

    Returns
    -------
    dict of str to Estimate

    Notes
    -----
    With one visit this is the ANCOVA (REML :math:`\hat\sigma^2 = RSS/(n-p)`, df :math:`n - p`).
    With complete data, no covariates and :math:`m > 1` the estimates and SEs also equal the
    per-visit ANCOVA's (identical regressors at every visit: GLS = OLS, and the REML
    :math:`\hat\Sigma = E^\top E/(n - p)`).
    """
    y, g, cov, months, levels = _inputs(y, group, covariates, months, levels, allow_nan=observed is not None)
    n, m = y.shape
    k, q = len(levels), cov.shape[1]
    mask = np.ones((n, m), dtype=bool) if observed is None else np.asarray(observed, dtype=bool)
    if mask.shape != (n, m):
        raise ValueError(f"observed must have shape {(n, m)}, got {mask.shape}")
    if not np.all(np.isfinite(y[mask])):
        raise ValueError("y is NaN in an observed cell")
    sid, vis = np.nonzero(mask)
    vlab = [f"v{j}" for j in range(m)]
    cnames = [f"x{j}" for j in range(q)]
    data = pd.DataFrame({"sid": sid, "visit": pd.Categorical(np.asarray(vlab)[vis], categories=vlab),
                         "arm": pd.Categorical(np.asarray(levels)[g[sid]], categories=levels),
                         **{c: cov[sid, j] for j, c in enumerate(cnames)}, "change": y[sid, vis]})
    design = {(True, True): ["visit * arm"], (True, False): ["visit"], (False, True): ["arm"]}
    terms = cnames + design.get((m > 1, k > 1), [])
    fit = fit_mmrm(data, "change ~ " + (" + ".join(terms) or "1"), subject="sid", visit="visit",
                   covariance="us", df_method="satterthwaite")
    if not fit.converged:
        warnings.warn(f"MMRM of the completed dataset: {'; '.join(fit.messages)}", RuntimeWarning, stacklevel=2)
    at = {c: [float(cov[:, j].mean())] for j, c in enumerate(cnames)} or None
    grid, lmat = fit.reference_grid(["arm"] if k > 1 else [], by=["visit"] if m > 1 else [], at=at)
    row = {}
    for r in range(len(grid)):
        lv = levels.index(str(grid["arm"].iloc[r])) if k > 1 else 0
        vj = vlab.index(str(grid["visit"].iloc[r])) if m > 1 else 0
        row[lv, vj] = lmat[r]
    names, rows = [], []
    for j, month in enumerate(months):
        trt_keys, lsm_keys = _keys(levels, month)
        names += trt_keys + lsm_keys
        rows += [row[i, j] - row[0, j] for i in range(1, k)] + [row[i, j] for i in range(k)]
    tab = fit.contrast(np.vstack(rows), names=names)
    return {key: Estimate(float(e), float(s), float(d))
            for key, e, s, d in zip(names, tab["estimate"], tab["se"], tab["df"], strict=True)}
