r"""REML linear mixed model with a random intercept and slope per subject (lme4 + lmerTest).

For subject :math:`i` with :math:`n_i` observations at times :math:`t_{ij}`,

.. math::

    y_i = X_i\beta + Z_i b_i + \varepsilon_i,\qquad Z_i = [\mathbf 1,\ t_i],\qquad
    b_i \sim N(0, T),\quad \varepsilon_i \sim N(0, \sigma^2 I),

with an unstructured :math:`2\times 2` :math:`T` (or only a random intercept). As in lme4,
:math:`T = \sigma^2\Lambda\Lambda^\top` with the lower-triangular relative Cholesky factor
:math:`\Lambda(\theta)`, :math:`\theta = (\Lambda_{11}, \Lambda_{21}, \Lambda_{22})`,
:math:`\Lambda_{11}, \Lambda_{22} \ge 0`. The REML criterion is profiled over :math:`\beta` and
:math:`\sigma^2` and minimised over :math:`\theta` (time rescaled internally to unit standard
deviation for the optimiser only) by L-BFGS-B with exact gradients followed by a trust-region
Newton method, then refined by Newton steps on the full restricted likelihood.

Inference follows lmerTest: the variance parameters are :math:`\omega = (\theta, \sigma)`,
:math:`W = (-\nabla^2\ell_R)^{-1}` at :math:`\hat\omega` and, for a contrast :math:`l`,

.. math::

    \nu = \frac{2\,(l^\top\Phi l)^2}{f^\top W f},\qquad
    f_h = l^\top\frac{\partial\Phi}{\partial\omega_h}l,\qquad
    \Phi = (X^\top V^{-1}X)^{-1},

computed with exact derivatives (lmerTest differentiates numerically). ``df_method=
"kenward-roger"`` gives pbkrtest's Kenward-Roger adjustment (variance-component
parametrisation, expected information).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.frequentist.design import prepare_design
from analysis.frequentist.ddf import kenward_roger
from analysis.frequentist.reml import (Inference, RemlEngine, minimise_profiled, newton_polish,
                                         single_threaded_blas)
from analysis.frequentist.result import DF_METHODS, RemlFit

__all__ = ["fit_lmm", "LmmResult"]

_SINGULAR_TOL = 1e-4


class LmmResult(RemlFit):
    r"""Fitted REML linear mixed model.

    Attributes
    ----------
    fixed : DataFrame
        ``term, estimate, se, df, t, p, ci_low, ci_high`` for each coefficient.
    varcomp : DataFrame
        lme4-style ``group, var1, var2, variance, sdcor``: SDs of the random effects, their
        correlation and the residual SD.
    loglik : float
        REML log-likelihood, equal to ``logLik(fit)`` of ``lme4::lmer(..., REML = TRUE)``.
    theta : ndarray
        lme4's relative Cholesky parameters (original time units); ``sigma`` the residual SD.
    varpar, varpar_vcov : ndarray
        :math:`\omega = (\theta, \sigma)` and its asymptotic covariance :math:`W` (lmerTest's
        ``vcov_varpar``). On a singular fit whose Hessian is not positive definite, :math:`W`
        inverts only the block of the parameters off the boundary (those on it are treated
        as known); ``None`` if even that fails.
    vcov : DataFrame
        Covariance of the fixed effects (KR-adjusted when ``df_method="kenward-roger"``).
    converged : bool
        Newton decrement :math:`g^\top W g < 10^{-6}` and the Hessian of :math:`-\ell_R`
        positive definite at the optimum; on a boundary, the same over the parameters off it
        and no ascent direction into the interior (KKT conditions).
    singular : bool
        A diagonal :math:`\theta` is < 1e-4 (on unit-SD time) and set to 0: a boundary fit
        (lme4's ``isSingular``), e.g. a random-slope variance of 0 or a correlation of -1/1.
    n_obs, n_subjects, n_excluded : int
        Rows analysed, subjects, rows dropped for missing values (``excluded_by`` per column).
    """

    def __init__(self, *, design, inference, df_method, level, kr, subject, time, random_slope,
                 theta, sigma, converged, singular, diagnostics, messages, formula) -> None:
        super().__init__(design, inference, df_method, level, kr, subject)
        self.formula, self.subject, self.time = formula, subject, time
        self.random_slope = random_slope
        self.theta = np.asarray(theta, dtype=float)
        self.sigma = float(sigma)
        self.varpar = inference.omega.copy()
        self.varpar_vcov = None if inference.w is None else inference.w.copy()
        self.converged = bool(converged)
        self.singular = bool(singular)
        self.diagnostics = diagnostics
        self.messages = list(messages)
        self.re_cov = self.sigma**2 * _lambda(self.theta) @ _lambda(self.theta).T
        self.varcomp = self._varcomp()

    def _varcomp(self) -> pd.DataFrame:
        t = self.re_cov
        rows = [{"group": self.subject, "var1": "(Intercept)", "var2": None,
                 "variance": t[0, 0], "sdcor": np.sqrt(t[0, 0])}]
        if self.random_slope:
            rows.append({"group": self.subject, "var1": self.time, "var2": None,
                         "variance": t[1, 1], "sdcor": np.sqrt(t[1, 1])})
            den = np.sqrt(t[0, 0] * t[1, 1])
            rows.append({"group": self.subject, "var1": "(Intercept)", "var2": self.time,
                         "variance": t[0, 1], "sdcor": t[0, 1] / den if den > 0 else np.nan})
        rows.append({"group": "Residual", "var1": None, "var2": None,
                     "variance": self.sigma**2, "sdcor": self.sigma})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary of the fit."""
        from analysis.frequentist.result import jsonable

        d = self._base_dict()
        d.update({"model": "lmm", "formula": self.formula, "subject": self.subject,
                  "time": self.time, "random_slope": self.random_slope,
                  "varcomp": self.varcomp, "theta": self.theta, "sigma": self.sigma,
                  "varpar_vcov": self.varpar_vcov, "converged": self.converged,
                  "singular": self.singular, "diagnostics": self.diagnostics,
                  "messages": self.messages})
        return jsonable(d)

    def __repr__(self) -> str:
        return (f"LmmResult({self.formula!r}, n_obs={self.n_obs}, n_subjects={self.n_subjects}, "
                f"loglik={self.loglik:.4f}, converged={self.converged})")


def _lambda(theta: np.ndarray) -> np.ndarray:
    if len(theta) == 1:
        return np.array([[theta[0]]])
    return np.array([[theta[0], 0.0], [theta[1], theta[2]]])


def _psi_of(omega):
    """(T00, T01, T11, sigma^2) from lmerTest's (theta, sigma); complex-safe."""
    s2 = omega[-1] ** 2
    if len(omega) == 2:
        return np.array([s2 * omega[0] ** 2, s2])
    t1, t2, t3 = omega[0], omega[1], omega[2]
    return np.array([s2 * t1 * t1, s2 * t1 * t2, s2 * (t2 * t2 + t3 * t3), s2])


def _start_theta(y, x, mask, tpad, slope: bool) -> np.ndarray:
    """Moment-based start for the (unit-SD time) relative Cholesky factor."""
    beta = np.linalg.lstsq(x[mask], y[mask], rcond=None)[0]
    e = (y - x @ beta) * mask
    z = np.stack([mask.astype(float), tpad], axis=-1) if slope else mask[..., None].astype(float)
    ztz = np.einsum("nmq,nmr->nqr", z, z)
    zte = np.einsum("nmq,nm->nq", z, e)
    ni = mask.sum(1)
    q = z.shape[-1]
    ok = (ni > q) & (np.linalg.det(ztz) > 1e-8 * ni)
    if ok.sum() < 3:
        return np.array([1.0, 0.0, 1.0]) if slope else np.array([1.0])
    b = np.linalg.solve(ztz[ok], zte[ok][..., None])[..., 0]
    rss = ((e[ok] - np.einsum("nmq,nq->nm", z[ok], b)) ** 2 * mask[ok]).sum()
    s2 = max(rss / (ni[ok] - q).sum(), 1e-12 * max(e.var(), 1e-300))
    tcov = np.atleast_2d(np.cov(b.T)) - s2 * np.linalg.inv(ztz[ok]).mean(0)
    w, v = np.linalg.eigh(tcov / s2)
    t0 = (v * np.maximum(w, 1e-2)) @ v.T
    lam = np.linalg.cholesky(t0)
    return np.array([lam[0, 0], lam[1, 0], lam[1, 1]]) if slope else np.array([lam[0, 0]])


def _canonical(th: np.ndarray) -> np.ndarray:
    """lme4's sign convention (non-negative diagonal); the likelihood is invariant to it."""
    th = np.array(th, dtype=float)
    if th[0] < 0:
        th[:2] = -th[:2]
    if len(th) == 3:
        th[2] = abs(th[2])
    return th


def _finalise(engine: RemlEngine, psi0, th: np.ndarray, st: float, dof: int,
              random_slope: bool) -> dict:
    r"""Inference at a profiled optimum ``th`` (unit-SD time) and the convergence check.

    Interior optimum: Newton-polished, converged when the Newton decrement is < 1e-6 and
    :math:`-H` is positive definite. Boundary (a diagonal :math:`\theta` < 1e-4, set to 0):
    the KKT conditions -- decrement and positive definiteness over the free parameters, and
    no ascent direction into the interior for those on the bound; if :math:`-H` is singular
    there, :math:`W` inverts only the free block (boundary parameters treated as known).
    """
    diag = [0, 2] if random_slope else [0]
    active = [i for i in diag if th[i] < _SINGULAR_TOL]
    th = th.copy()
    th[active] = 0.0
    ev = engine.evaluate(psi0(th))
    sigma = np.sqrt(ev.quad / dof)
    theta_orig = np.array([th[0], th[1] / st, th[2] / st]) if random_slope else th.copy()
    omega = np.append(theta_orig, sigma)
    scale = np.maximum(np.abs(omega), 1e-3 * np.abs(omega).max())
    if not active:
        inf = newton_polish(engine, _psi_of, omega, scale)
        inf.omega[:] = np.append(_canonical(inf.omega[:-1]), abs(inf.omega[-1]))
        dec = inf.newton_decrement()
        return {"inf": inf, "singular": False, "dec": dec, "hessian_pd": inf.w is not None,
                "converged": bool(dec < 1e-6 and inf.w is not None)}
    inf = Inference.compute(engine, _psi_of, omega, scale)
    free = [i for i in range(len(omega)) if i not in active]
    hff = -inf.hess[np.ix_(free, free)]
    try:
        np.linalg.cholesky(hff)
        wff = np.linalg.inv(hff)
    except np.linalg.LinAlgError:
        return {"inf": inf, "singular": True, "dec": np.inf, "hessian_pd": False,
                "converged": False}
    dec = float(inf.grad[free] @ wff @ inf.grad[free])
    to_scaled = np.array([1.0, 1.0 / st, 1.0 / st, 1.0])[: len(omega)]
    ascent = [inf.grad[i] * to_scaled[i] > 1e-3 for i in active]
    hessian_pd = inf.w is not None
    if not hessian_pd:
        w = np.zeros_like(inf.hess)
        w[np.ix_(free, free)] = 0.5 * (wff + wff.T)
        inf.w = w
    return {"inf": inf, "singular": True, "dec": dec, "hessian_pd": hessian_pd,
            "converged": bool(dec < 1e-6 and not any(ascent))}


@single_threaded_blas
def fit_lmm(data: pd.DataFrame, formula: str, subject: str = "patient_id", time: str = "month",
            random_slope: bool = True, df_method: str = "satterthwaite",
            level: float = 0.95, check_nobs: bool = True) -> LmmResult:
    r"""Fit ``lmer(formula + (1 + time | subject), REML = TRUE)`` with lmerTest inference.

    Parameters
    ----------
    data : DataFrame
        Long format, one row per observation.
    formula : str
        Fixed part, e.g. ``"bmd ~ month * responder + age"`` (formulaic syntax; string
        columns are treatment-coded factors with the first sorted level as reference).
    subject, time : str
        Subject identifier and numeric time of each observation (the random-slope covariate).
    random_slope : bool
        ``True`` for :math:`(1 + t \mid \text{subject})`, ``False`` for :math:`(1 \mid
        \text{subject})`.
    df_method : {"satterthwaite", "kenward-roger"}
        Denominator degrees of freedom (and, for KR, the adjusted fixed-effects covariance).
    level : float
        Confidence level of the intervals.
    check_nobs : bool
        Refuse a random-slope fit with no more observations than random effects (lme4's
        ``check.nobs.vs.nRE = "stop"``). ``False`` is lme4's ``"ignore"``: with heavy dropout many
        patients have a single scan, yet those with two or more still identify the slope variance.

    Returns
    -------
    LmmResult

    Raises
    ------
    ValueError
        On a column missing from the data, a non-numeric time, too few subjects or
        observations for the random effects, or a rank-deficient design.
    """
    if df_method not in DF_METHODS:
        raise ValueError(f"df_method must be one of {DF_METHODS}, got {df_method!r}")
    design = prepare_design(data, formula, subject, time)
    df = design.data
    if not pd.api.types.is_numeric_dtype(df[time]):
        raise ValueError(f"time column {time!r} must be numeric, got dtype {df[time].dtype}")
    codes, subjects = pd.factorize(df[subject], sort=True)
    n, nobs, p = len(subjects), len(df), design.x.shape[1]
    q = 2 if random_slope else 1
    if n < 3:
        raise ValueError(f"need at least 3 subjects in {subject!r}, got {n}")
    if check_nobs and nobs <= n * q and random_slope:
        raise ValueError(f"number of observations ({nobs}) <= number of random effects "
                         f"({n * q}) for (1 + {time} | {subject}): not identifiable")
    if nobs <= n:
        raise ValueError(f"number of observations ({nobs}) must exceed the number of "
                         f"subjects ({n}) in {subject!r}")
    if nobs - p <= q * (q + 1) // 2 + 1:
        raise ValueError(f"too few observations ({nobs}) for {p} fixed effects and the "
                         "variance parameters")
    t = df[time].to_numpy(dtype=float)
    if random_slope and np.ptp(t) == 0:
        raise ValueError(f"time column {time!r} has a single value: random slope not estimable")
    pos = df.groupby(subject, sort=False).cumcount().to_numpy()
    m = int(pos.max()) + 1
    mask = np.zeros((n, m), dtype=bool)
    mask[codes, pos] = True
    ypad = np.zeros((n, m))
    ypad[codes, pos] = design.y
    xpad = np.zeros((n, m, p))
    xpad[codes, pos] = design.x
    tpad = np.zeros((n, m))
    tpad[codes, pos] = t
    z0 = mask.astype(float)
    eye = np.eye(m)[None] * z0[:, :, None]
    if random_slope:
        g = np.stack([np.einsum("na,nb->nab", z0, z0),
                      np.einsum("na,nb->nab", z0, tpad) + np.einsum("na,nb->nab", tpad, z0),
                      np.einsum("na,nb->nab", tpad, tpad), eye])
    else:
        g = np.stack([np.einsum("na,nb->nab", z0, z0), eye])
    engine = RemlEngine(xpad, ypad, mask, g)

    # --- profiled optimisation over theta on unit-SD time -----------------------------------
    st = float(t.std()) if random_slope and t.std() > 0 else 1.0

    def psi0(th):
        if not random_slope:
            return np.array([th[0] ** 2, 1.0])
        return np.array([th[0] ** 2, th[0] * th[1] / st, (th[1] ** 2 + th[2] ** 2) / st**2, 1.0])

    def jac0(th):
        if not random_slope:
            return np.array([[2 * th[0]], [0.0]])
        return np.array([[2 * th[0], 0, 0], [th[1] / st, th[0] / st, 0],
                         [0, 2 * th[1] / st**2, 2 * th[2] / st**2], [0, 0, 0]])

    bounds = [(0, None), (None, None), (0, None)] if random_slope else [(0, None)]
    starts = [_start_theta(ypad, xpad, mask, tpad / st, random_slope),
              np.array([1.0, 0.0, 1.0]) if random_slope else np.array([1.0])]
    best = None
    for start in starts:
        th, info = minimise_profiled(engine, psi0, jac0, start, bounds)
        cand = _finalise(engine, psi0, _canonical(th), st, nobs - p, random_slope)
        cand["info"] = info
        if best is None or cand["inf"].loglik > best["inf"].loglik + 1e-9:
            best = cand
        if best["converged"]:
            break
    inf, sing, converged, dec = best["inf"], best["singular"], best["converged"], best["dec"]
    info = best["info"]
    messages = []
    if sing:
        messages.append("boundary (singular) fit: the random-effects covariance is singular "
                        "(a variance at 0 or a correlation of +-1)")
    if not best["hessian_pd"]:
        messages.append("Hessian of the REML criterion is not positive definite"
                        + (" (W uses the parameters off the boundary)" if sing else ""))
    if not converged:
        messages.append(f"not converged ({info['optimizer_message']}; "
                        f"Newton decrement {dec:.3g})")
    kr = None
    if df_method == "kenward-roger":
        k = g.shape[0]
        w_exp = np.linalg.pinv(0.5 * inf.deriv["trpp"])
        kr = kenward_roger(inf.deriv, np.eye(k), np.zeros((k, k, k)), w_exp)
    diagnostics = {"newton_decrement": dec, "n_function_evals": info["n_function_evals"],
                   "optimizer_message": info["optimizer_message"],
                   "hessian_min_eig": float(np.linalg.eigvalsh(-inf.hess).min()),
                   "gradient": inf.grad}
    result = LmmResult(design=design, inference=inf, df_method=df_method, level=level, kr=kr,
                       subject=subject, time=time, random_slope=random_slope,
                       theta=inf.omega[:-1], sigma=inf.omega[-1], converged=converged,
                       singular=sing, diagnostics=diagnostics, messages=messages, formula=formula)
    result._engine, result._psi_of = engine, _psi_of
    return result
