r"""Mixed model for repeated measures (MMRM) fitted by REML, as R's ``mmrm`` package.

Subject :math:`i` is observed at a subset :math:`S_i` of the visits :math:`1, \dots, m`:

.. math::

    y_i \sim N\bigl(X_i\beta,\ \Sigma_{S_i S_i}\bigr),

with the visit a factor in :math:`X` and one :math:`m\times m` covariance :math:`\Sigma` shared by
all subjects. Structures (``covariance=``):

* ``"us"``   unstructured, :math:`m(m+1)/2` parameters :math:`\omega = \operatorname{vech}\Sigma`;
* ``"cs"``   compound symmetry, :math:`\Sigma = (v - c) I + c\,\mathbf 1\mathbf 1^\top`,
  :math:`\omega = (v, c)`;
* ``"ar1"``  :math:`\Sigma_{jk} = \sigma^2\rho^{|j-k|}` (distance in visit *index*, as
  ``nlme::corAR1`` and ``mmrm::ar1``), :math:`\omega = (\sigma^2, \rho)`;
* ``"csh"``, ``"ar1h"`` heterogeneous variants :math:`\Sigma = D R(\rho) D`,
  :math:`\omega = (\sigma_1^2, \dots, \sigma_m^2, \rho)`.

The likelihood and its exact first and second derivatives are sums over missingness patterns
(:class:`analysis.frequentist.patterns.PatternEngine`: one :math:`\Sigma_{ss}^{-1}` per pattern
:math:`s`, batched products per patient), so a fit costs :math:`O(n m^2 p + q m^4 + K^2p^2)` for
:math:`n` patients, :math:`q` patterns and :math:`K = m(m+1)/2`: linear in patients. For ``us``
the fit takes Newton steps in :math:`\omega = \operatorname{vech}\Sigma` from the empirical
covariance of OLS residuals (Fisher scoring where the observed information is not positive
definite; :func:`analysis.frequentist.patterns.newton_reml`). For the other structures, and for
``us`` should Newton not converge, the REML criterion profiled over :math:`\beta` and a scale
:math:`\sigma^2` is minimised over unconstrained parameters (log-Cholesky, log-SD ratios,
transformed correlations) by L-BFGS-B with exact gradients and then a trust-region Newton method.
Either way the optimum is refined by Newton steps in :math:`\omega` until the Newton decrement
is below :math:`10^{-14}`. The reported
log-likelihood is the restricted one of lme4/mmrm (and ``nlme::gls``):
:math:`-\tfrac12[\sum_i\log|\Sigma_i| + \log|X^\top V^{-1}X| + r^\top V^{-1}r + (N-p)\log 2\pi]`.

Inference: Satterthwaite df :math:`\nu = 2(l^\top\Phi l)^2/(f^\top W f)` with the exact observed
information (``df_method="satterthwaite"``), or Kenward-Roger (``"kenward-roger"``): the
adjusted covariance :math:`\Phi_A` and df of Kenward & Roger (1997) in the parameters
:math:`\omega` above (for ``us``/``cs`` these are linear, so this is the classical KR as in
pbkrtest/SAS; for ``ar1``-type structures the second-derivative term is included), with
:math:`W` the inverse expected information (``kr_information="expected"``, pbkrtest's choice)
or the inverse observed information (``"observed"``, the R ``mmrm`` package's choice).

Verified against R (``tests/analysis/frequentist/fixtures/reml_reference.R``): estimates, SEs,
log-likelihood and Satterthwaite df for every structure (nlme ``gls`` and an independent numDeriv
computation), LS-means and contrasts (emmeans), Kenward-Roger for ``us`` and ``cs`` (pbkrtest's own
routines). Kenward-Roger for ``ar1``, ``csh`` and ``ar1h`` (the second-derivative term) and the
``"observed"`` information have no outside implementation here (the R ``mmrm`` package is not
in Debian's archive); instead ``tests/analysis/frequentist/test_kenward_roger_dense.py``
recomputes KR for every structure and both information choices from the dense ``N x N``
marginal covariance with finite-difference derivatives, a computation that itself reproduces
pbkrtest for ``us``/``cs``: KR standard errors agree to 1e-6 and df to 2e-5 (relative) on the
small and medium fixtures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.frequentist.ddf import kenward_roger
from analysis.frequentist.design import prepare_design
from analysis.frequentist.patterns import PatternEngine, newton_reml
from analysis.frequentist.reml import (
    Inference,
    complex_jacobian,
    minimise_profiled,
    newton_polish,
    single_threaded_blas,
)
from analysis.frequentist.result import DF_METHODS, RemlFit, jsonable

__all__ = ["fit_mmrm", "MmrmResult", "COVARIANCE_STRUCTURES"]

COVARIANCE_STRUCTURES = ("us", "cs", "ar1", "csh", "ar1h")


# ------------------------------------------------------------------------------------------------
# covariance structures (all functions complex-safe for complex-step differentiation)
# ------------------------------------------------------------------------------------------------
class _Structure:
    """Parametrisations of one covariance structure for ``m`` visits."""

    def __init__(self, name: str, m: int) -> None:
        self.name, self.m = name, m
        self.pairs = [(i, j) for j in range(m) for i in range(j, m)]  # R's lower.tri order
        self.dist = np.abs(np.subtract.outer(np.arange(m), np.arange(m)))
        self.lo = -1.0 / (m - 1) if m > 1 else -1.0
        het = name in ("csh", "ar1h")
        self.n_phi = {"us": m * (m + 1) // 2 - 1, "cs": 1, "ar1": 1}.get(name, m)
        self.n_omega = {"us": m * (m + 1) // 2, "cs": 2, "ar1": 2}.get(name, m + 1)
        self.has_rho = name != "us" and m > 1
        self.het = het

    def vech(self, s):
        return np.array([s[i, j] for i, j in self.pairs])

    def _corr(self, rho):
        if self.name in ("cs", "csh"):
            return rho + (1.0 - rho) * np.eye(self.m)
        return rho ** self.dist

    def _rho_phi(self, x):
        if self.name in ("cs", "csh"):
            return self.lo + (1.0 - self.lo) / (1.0 + np.exp(-x))
        return np.tanh(x)

    # relative parametrisation used by the optimiser: Sigma = sigma^2 * Sigma0(phi)
    def sigma0(self, phi):
        m = self.m
        if self.name == "us":
            lmat = np.zeros((m, m), dtype=np.result_type(phi, float))
            lmat[0, 0] = 1.0
            k = 0
            for i, j in self.pairs[1:]:
                lmat[i, j] = np.exp(phi[k]) if i == j else phi[k]
                k += 1
            return lmat @ lmat.T
        if m == 1:
            return np.ones((1, 1), dtype=np.result_type(phi, float))
        corr = self._corr(self._rho_phi(phi[-1]))
        if not self.het:
            return corr
        d = np.concatenate([np.ones(1, dtype=np.result_type(phi, float)), np.exp(phi[:-1])])
        return d[:, None] * corr * d[None, :]

    def psi0(self, phi):
        return self.vech(self.sigma0(phi))

    def start(self, s: np.ndarray) -> np.ndarray:
        m = self.m
        s0 = s / s[0, 0]
        if self.name == "us":
            lmat = np.linalg.cholesky(s0)
            return np.array([np.log(lmat[i, i]) if i == j else lmat[i, j]
                             for i, j in self.pairs[1:]])
        sd = np.sqrt(np.diag(s))
        corr = s / np.outer(sd, sd)
        if m == 1:
            return np.zeros(0)
        if self.name in ("cs", "csh"):
            rho = np.clip(corr[np.tril_indices(m, -1)].mean(), self.lo + 0.05, 0.98)
            x = -np.log((1.0 - self.lo) / (rho - self.lo) - 1.0)
        else:
            rho = np.clip(np.mean([corr[i + 1, i] for i in range(m - 1)]), -0.95, 0.98)
            x = np.arctanh(rho)
        return np.append(np.log(sd[1:] / sd[0]), x) if self.het else np.array([x])

    # natural parametrisation used for inference
    def omega_from_sigma(self, s: np.ndarray) -> np.ndarray:
        m = self.m
        if self.name == "us":
            return self.vech(s)
        if self.name == "cs":
            return np.array([s[0, 0], s[1, 0] if m > 1 else 0.0])
        rho = s[1, 0] / np.sqrt(s[0, 0] * s[1, 1]) if m > 1 else 0.0
        if self.name == "ar1":
            return np.array([s[0, 0], rho])
        return np.append(np.diag(s), rho)

    def sigma_of_omega(self, w):
        m = self.m
        if self.name == "us":
            s = np.zeros((m, m), dtype=np.result_type(w, float))
            for k, (i, j) in enumerate(self.pairs):
                s[i, j] = w[k]
                s[j, i] = w[k]
            return s
        if self.name == "cs":
            return w[1] + (w[0] - w[1]) * np.eye(m)
        if self.name == "ar1":
            return w[0] * w[1] ** self.dist
        sd = np.sqrt(w[:m])
        return sd[:, None] * self._corr(w[m]) * sd[None, :]

    def psi_of_omega(self, w):
        return self.vech(self.sigma_of_omega(w))

    def exact_psi_derivatives(self):
        r"""``omega -> (J, d2)`` for ``us``, where :math:`\psi = \omega`: :math:`J = I`,
        :math:`\nabla^2\psi = 0` (a broadcast view, no memory); ``None`` for the other structures
        (complex-step Jacobian and its central differences)."""
        if self.name != "us":
            return None
        k = len(self.pairs)
        eye, zero = np.eye(k), np.broadcast_to(0.0, (k, k, k))
        return lambda _omega: (eye, zero)

    def omega_names(self, labels: list[str]) -> list[str]:
        if self.name == "us":
            return [f"var({labels[i]})" if i == j else f"cov({labels[i]},{labels[j]})"
                    for i, j in self.pairs]
        if self.name == "cs":
            return ["variance", "covariance"]
        if self.name == "ar1":
            return ["variance", "rho"]
        return [f"var({v})" for v in labels] + ["rho"]

    def omega_scale(self, w: np.ndarray) -> np.ndarray:
        typical = np.ones_like(w)
        var_level = float(np.mean(np.diag(np.real(self.sigma_of_omega(w)))))
        typical[: len(w) - (1 if self.has_rho else 0)] = var_level
        return np.maximum(np.abs(w), 1e-3 * typical)


# ------------------------------------------------------------------------------------------------
class MmrmResult(RemlFit):
    r"""Fitted MMRM.

    Attributes
    ----------
    fixed : DataFrame
        ``term, estimate, se, df, t, p, ci_low, ci_high`` (KR-adjusted with ``kenward-roger``).
    covariance : DataFrame
        Estimated :math:`\Sigma`, rows and columns labelled by visit.
    correlation : DataFrame
        The corresponding correlation matrix.
    omega, omega_names, omega_vcov : covariance parameters :math:`\omega` (see module doc),
        their names and asymptotic covariance (inverse observed information; ``None`` when the
        Hessian is not positive definite).
    loglik : float
        REML log-likelihood (as ``logLik`` of ``mmrm``/``nlme::gls``/``lme4``).
    converged : bool
        Optimiser reached a point with Newton decrement :math:`g^\top W g < 10^{-6}` and a
        positive-definite Hessian of :math:`-\ell_R`.
    visits : list
        Visit levels, in order.
    n_obs, n_subjects, n_excluded : int
    """

    def __init__(self, *, design, inference, df_method, level, kr, subject, visit, covariance,
                 structure, visits, converged, diagnostics, messages, formula) -> None:
        super().__init__(design, inference, df_method, level, kr, subject)
        self.formula, self.subject, self.visit = formula, subject, visit
        self.covariance_type = covariance
        self.visits = list(visits)
        labels = [str(v) for v in visits]
        sig = np.real(structure.sigma_of_omega(inference.omega))
        self.covariance = pd.DataFrame(sig, index=labels, columns=labels)
        sd = np.sqrt(np.diag(sig))
        self.correlation = pd.DataFrame(sig / np.outer(sd, sd), index=labels, columns=labels)
        self.omega = inference.omega.copy()
        self.omega_names = structure.omega_names(labels)
        self.omega_vcov = None if inference.w is None else inference.w.copy()
        self.converged = bool(converged)
        self.diagnostics = diagnostics
        self.messages = list(messages)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary of the fit."""
        d = self._base_dict()
        d.update({"model": "mmrm", "formula": self.formula, "subject": self.subject,
                  "visit": self.visit, "covariance_structure": self.covariance_type,
                  "visits": [str(v) for v in self.visits],
                  "covariance": self.covariance.to_numpy(),
                  "omega": dict(zip(self.omega_names, self.omega)),
                  "converged": self.converged, "diagnostics": self.diagnostics,
                  "messages": self.messages})
        return jsonable(d)

    def __repr__(self) -> str:
        return (f"MmrmResult({self.formula!r}, covariance={self.covariance_type!r}, "
                f"n_obs={self.n_obs}, n_subjects={self.n_subjects}, loglik={self.loglik:.4f}, "
                f"converged={self.converged})")


def _empirical_cov(e: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mf = mask.astype(float)
    cnt = mf.T @ mf
    s = (e * mf).T @ (e * mf) / np.maximum(cnt, 1.0)
    s[cnt == 0] = 0.0
    s = 0.5 * (s + s.T)
    w, v = np.linalg.eigh(s)
    floor = 1e-3 * max(float(np.mean(np.diag(s))), 1e-300)
    return (v * np.maximum(w, floor)) @ v.T


def _fit_newton(engine: PatternEngine, st: _Structure, sigma_start: np.ndarray,
                ) -> tuple[Inference | None, dict]:
    r"""Unstructured :math:`\Sigma`: Newton / Fisher scoring in :math:`\psi = \omega = \operatorname{vech}\Sigma`
    from ``sigma_start``, polished by :func:`newton_polish` (``None`` if the start is not
    positive definite)."""
    psi, info = newton_reml(engine, sigma_start)
    if not np.isfinite(engine.loglik(psi)):
        return None, info
    inf = newton_polish(engine, st.psi_of_omega, psi, st.omega_scale(psi),
                        psi_derivatives=st.exact_psi_derivatives())
    return inf, info


def _fit_profiled(engine: PatternEngine, st: _Structure, sigma_start: np.ndarray, covariance: str,
                  dof: int) -> tuple[Inference, dict]:
    r"""Any structure: minimise the REML deviance profiled over :math:`\sigma^2` in the relative
    parameters :math:`\phi` (:func:`minimise_profiled`), then Newton-polish in :math:`\omega`."""
    phi_start = st.start(sigma_start)
    if phi_start.size == 0:  # one visit, one variance: profiled out in closed form, nothing to optimise
        phi_hat = phi_start
        info = {"n_function_evals": 0, "optimizer_message": "one visit: the variance is profiled out",
                "optimizer_success": True}
    else:
        phi_hat, info = minimise_profiled(engine, st.psi0,
                                          lambda phi: complex_jacobian(st.psi0, phi), phi_start)
    ev = engine.evaluate(np.real(st.psi0(phi_hat)))
    if ev is None:
        raise RuntimeError(f"MMRM fit ({covariance!r}) failed: {info['optimizer_message']}")
    sigma_hat = (ev.quad / dof) * np.real(st.sigma0(phi_hat))
    omega = st.omega_from_sigma(sigma_hat)
    return newton_polish(engine, st.psi_of_omega, omega, st.omega_scale(omega),
                         psi_derivatives=st.exact_psi_derivatives()), info


@single_threaded_blas
def fit_mmrm(data: pd.DataFrame, formula: str, subject: str = "patient_id", visit: str = "month",
             covariance: str = "us", df_method: str = "satterthwaite", level: float = 0.95,
             kr_information: str = "expected") -> MmrmResult:
    r"""Fit an MMRM by REML.

    Parameters
    ----------
    data : DataFrame
        Long format, at most one row per subject and visit.
    formula : str
        Fixed part, e.g. ``"bmd ~ month * responder + age"``. The ``visit`` column is turned
        into a factor, so ``month`` above means visit-specific effects. Visit order (which
        matters for ``ar1``/``ar1h`` and sets the reference level) is the sorted order of the
        values, or the category order if the column is a pandas Categorical.
    subject, visit : str
        Subject identifier and visit column.
    covariance : {"us", "cs", "ar1", "csh", "ar1h"}
        Within-subject covariance structure (see the module docstring).
    df_method : {"satterthwaite", "kenward-roger"}
    level : float
        Confidence level.
    kr_information : {"expected", "observed"}
        Information matrix inverted for :math:`W` in Kenward-Roger.

    Returns
    -------
    MmrmResult

    Raises
    ------
    ValueError
        Unknown structure or df method, a column missing from the data, duplicated
        subject-visit rows, too few subjects or a rank-deficient design.
    """
    if covariance not in COVARIANCE_STRUCTURES:
        raise ValueError(f"covariance must be one of {COVARIANCE_STRUCTURES}, got {covariance!r}")
    if df_method not in DF_METHODS:
        raise ValueError(f"df_method must be one of {DF_METHODS}, got {df_method!r}")
    if kr_information not in ("expected", "observed"):
        raise ValueError(f"kr_information must be 'expected' or 'observed', got {kr_information!r}")
    design = prepare_design(data, formula, subject, visit, categorical=(visit,))
    df = design.data
    dup = df.duplicated([subject, visit])
    if dup.any():
        row = df.loc[dup].iloc[0]
        raise ValueError(f"subject {row[subject]!r} has more than one row at {visit} "
                         f"{row[visit]}")
    visits = list(df[visit].cat.categories)
    m = len(visits)
    codes, subjects = pd.factorize(df[subject], sort=True)
    n, p = len(subjects), design.x.shape[1]
    if m == 1 and covariance != "us":
        raise ValueError(f"covariance {covariance!r} needs two or more visits; with one visit every structure is "
                         "a single variance: use 'us'")
    st = _Structure(covariance, m)
    if n < 3:
        raise ValueError(f"need at least 3 subjects in {subject!r}, got {n}")
    if len(df) - p <= st.n_omega:
        raise ValueError(f"too few observations ({len(df)}) for {p} fixed effects and "
                         f"{st.n_omega} covariance parameters ({covariance!r})")
    pos = df[visit].cat.codes.to_numpy()
    mask = np.zeros((n, m), dtype=bool)
    mask[codes, pos] = True
    ypad = np.zeros((n, m))
    ypad[codes, pos] = design.y
    xpad = np.zeros((n, m, p))
    xpad[codes, pos] = design.x
    engine = PatternEngine(xpad, ypad, mask)

    beta_ols = np.linalg.lstsq(design.x, design.y, rcond=None)[0]
    e = (ypad - xpad @ beta_ols) * mask
    sigma_start = _empirical_cov(e, mask)
    inf, info = None, {}
    if covariance == "us" and m > 1:
        inf, info = _fit_newton(engine, st, sigma_start)
    if inf is None or not (inf.newton_decrement() < 1e-6 and inf.w is not None):
        fallback, info_fb = _fit_profiled(engine, st, sigma_start, covariance, len(df) - p)
        if inf is None or fallback.loglik > inf.loglik:
            inf, info = fallback, info_fb
    dec = inf.newton_decrement()
    converged = dec < 1e-6 and inf.w is not None
    messages = []
    if inf.w is None:
        messages.append("Hessian of the REML criterion is not positive definite")
    if not converged:
        messages.append(f"not converged ({info['optimizer_message']}; "
                        f"Newton decrement {dec:.3g})")
    kr = None
    if df_method == "kenward-roger":
        if kr_information == "expected":
            info_exp = inf.j_psi.T @ (0.5 * inf.deriv["trpp"]) @ inf.j_psi
            w = np.linalg.pinv(info_exp)
        else:
            w = inf.w if inf.w is not None else np.linalg.pinv(-inf.hess)
        kr = kenward_roger(inf.deriv, inf.j_psi, inf.d2_psi, w)
    diagnostics = {"newton_decrement": dec, "n_function_evals": info["n_function_evals"],
                   "optimizer_message": info["optimizer_message"],
                   "hessian_min_eig": float(np.linalg.eigvalsh(-inf.hess).min()),
                   "gradient": inf.grad}
    result = MmrmResult(design=design, inference=inf, df_method=df_method, level=level, kr=kr,
                        subject=subject, visit=visit, covariance=covariance, structure=st,
                        visits=visits, converged=converged, diagnostics=diagnostics,
                        messages=messages, formula=formula)
    result._engine, result._psi_of = engine, st.psi_of_omega
    return result
