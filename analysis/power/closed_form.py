r"""Closed-form sample size and power for a difference in slopes (Diggle et al. 2002; Liu & Liang 1997).

Both follow R's ``longpower`` (``diggle.linear.power`` and ``liu.liang.linear.power``): the
variance parameters are treated as known and the test statistic as normal, so these are large-sample
formulas.

Diggle et al. (2002, section 2.4)
---------------------------------
Two groups of :math:`n` subjects each, observed at the same times :math:`t = (t_1, \dots, t_m)`
with a common :math:`m \times m` covariance :math:`V = \sigma^2 R`. With :math:`X = [\mathbf 1, t]`
the GLS slope of one subject-group has variance :math:`\xi / n`,

.. math::

    \xi = \bigl[(X^\top V^{-1} X)^{-1}\bigr]_{22}, \qquad
    n = \frac{2\,(z_{1-\alpha/k} + z_{1-\beta})^2\,\xi}{\delta^2}

per group, for a slope difference :math:`\delta`, :math:`k = 2` (two-sided) or 1 (one-sided),
power :math:`1 - \beta`. Solving for the power gives
:math:`1-\beta = \Phi\bigl(|\delta|\sqrt{n / (2\xi)} - z_{1-\alpha/k}\bigr)` (the far tail of a
two-sided test is ignored, as in ``longpower``). A scalar ``R`` means exchangeable correlation,
:math:`R = (1-\rho) I + \rho \mathbf 1\mathbf 1^\top`, for which (derivation: :math:`V^{-1}` is
:math:`(I - c\,\mathbf 1\mathbf 1^\top)/(\sigma^2(1-\rho))` and the intercept absorbs the
:math:`\mathbf 1\mathbf 1^\top` part)

.. math::

    \xi = \frac{\sigma^2 (1-\rho)}{\sum_j (t_j - \bar t)^2}.

With a random intercept and slope, :math:`V = Z D Z^\top + \sigma_e^2 I`, :math:`Z = [\mathbf 1, t]`
(:func:`random_slope_covariance`); pass it as ``R`` with ``sigma2 = 1``.

Liu & Liang (1997)
------------------
Covariate patterns :math:`i = 1, \dots, K` with proportions :math:`\pi_i` (e.g. the two groups),
each with an :math:`m \times p` design :math:`u_i` for the parameters of interest and
:math:`m \times q` :math:`v_i` for the nuisance parameters, and :math:`V_i = \sigma^2 R_i`:

.. math::

    I_{\psi\lambda} = \sum_i \pi_i u_i^\top V_i^{-1} v_i,\quad
    I_{\lambda\lambda} = \sum_i \pi_i v_i^\top V_i^{-1} v_i,

    \Sigma_1 = \sum_i \pi_i (u_i - v_i I_{\lambda\lambda}^{-1} I_{\psi\lambda}^\top)^\top V_i^{-1}
               (u_i - v_i I_{\lambda\lambda}^{-1} I_{\psi\lambda}^\top),\qquad
    N = \frac{(z_{1-\alpha/k} + z_{1-\beta})^2}{\delta^\top \Sigma_1 \delta}

in total (:math:`N \pi_i` per pattern). For the slope difference, :math:`u_1 = t`,
:math:`u_2 = 0`, :math:`v_1 = [\mathbf 1, \mathbf 1, t]`, :math:`v_2 = [\mathbf 1, \mathbf 0, t]`
(:func:`slope_difference_power`); with :math:`\pi = (1/2, 1/2)` it equals Diggle's :math:`2n`.

Verified values (``tests/analysis/power/test_power.py``): Diggle et al.'s table on page 29 (:math:`t =
(0, 2, 5)`, :math:`\delta = 0.5`, one-sided, power 0.8: 313/625/938, 196/391/586, 79/157/235 for
:math:`\rho = 0.2, 0.5, 0.8` and :math:`\sigma^2 = 100, 200, 300`), the table on page 30 with
``liu_liang_linear_power``, and ``longpower``'s ADAS-cog example (random intercept and slope,
:math:`\delta = 1.5`: :math:`n = 207.3101` per group; :math:`n = 208` gives :math:`\delta = 1.49751`).

For a power design
------------------
The closed form of a simulated :class:`~analysis.power.design.PowerDesign` is computed on exactly
the design its simulator draws, with the simulated tests (:mod:`analysis.power.closed_form_design`);
with dropout see also :mod:`analysis.power.closed_form_dropout` (Lu, Luo & Chen; Edland).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = [
    "PowerCalculation",
    "diggle_linear_power",
    "liu_liang_linear_power",
    "random_slope_covariance",
    "slope_difference_power",
    "slope_difference_sample_size",
]

Alternative = Literal["two.sided", "one.sided"]


@dataclass(frozen=True)
class PowerCalculation:
    """Result of a closed-form calculation (the unknown filled in).

    Attributes
    ----------
    n : float
        Per group (Diggle) or total (Liu & Liang; ``n_groups`` per pattern).
    delta, power, sig_level, sigma2 : float
    alternative : str
    method : str
    n_groups : tuple of float
        Liu & Liang only: :math:`N\\pi_i`.
    """

    n: float
    delta: float | np.ndarray
    power: float
    sig_level: float
    sigma2: float
    alternative: str
    method: str
    n_groups: tuple[float, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = np.asarray(self.delta, dtype=float)
        return {"n": float(self.n), "delta": d.tolist() if d.ndim else float(d), "power": float(self.power),
                "sig_level": float(self.sig_level), "sigma2": float(self.sigma2),
                "alternative": self.alternative, "method": self.method, "n_groups": list(self.n_groups)}


def _check_alternative(alternative: str) -> int:
    if alternative not in ("two.sided", "one.sided"):
        raise ValueError(f"alternative must be 'two.sided' or 'one.sided', got {alternative!r}")
    return 2 if alternative == "two.sided" else 1


def _one_unknown(**values: Any) -> str:
    missing = [k for k, v in values.items() if v is None]
    if len(missing) != 1:
        raise ValueError(f"exactly one of {', '.join(values)} must be None, got {len(missing)}")
    return missing[0]


def _exchangeable(r: Any, m: int) -> np.ndarray:
    r = np.asarray(r, dtype=float)
    if r.ndim == 0:
        if not -1.0 / max(m - 1, 1) < float(r) < 1.0:
            raise ValueError(f"an exchangeable correlation must lie in (-1/(m-1), 1), got {float(r)}")
        return np.full((m, m), float(r)) + (1.0 - float(r)) * np.eye(m)
    if r.shape != (m, m):
        raise ValueError(f"R must be a scalar or an {m} x {m} matrix, got shape {r.shape}")
    if not np.allclose(r, r.T):
        raise ValueError("R must be symmetric")
    return r


def _zsum(sig_level: float, power: float, k: int) -> float:
    return float(stats.norm.ppf(1.0 - sig_level / k) + stats.norm.ppf(power))


def _check_prob(name: str, value: float | None) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def random_slope_covariance(t: Sequence[float], var_intercept: float, var_slope: float,
                            cov_intercept_slope: float = 0.0, var_residual: float = 0.0) -> np.ndarray:
    r"""Marginal covariance of one subject's measurements under a random intercept and slope,

    .. math::

        V_{jk} = \sigma_0^2 + (t_j + t_k)\,\sigma_{01} + t_j t_k\,\sigma_1^2
                 + [j = k]\,\sigma_e^2.
    """
    t = np.asarray(t, dtype=float)
    if min(var_intercept, var_slope, var_residual) < 0:
        raise ValueError("variances must be non-negative")
    return (var_intercept + np.add.outer(t, t) * cov_intercept_slope + np.outer(t, t) * var_slope
            + var_residual * np.eye(t.size))


def diggle_linear_power(n: float | None = None, delta: float | None = None, t: Sequence[float] = (),
                        sigma2: float = 1.0, R: Any = None, sig_level: float | None = 0.05,
                        power: float | None = None, alternative: Alternative = "two.sided") -> PowerCalculation:
    r"""Per-group sample size (or power, detectable difference, level) for a difference in slopes.

    Parameters
    ----------
    n : float, optional
        Subjects per group.
    delta : float, optional
        Difference in slopes (per unit of ``t``).
    t : sequence of float
        Observation times (the same for every subject).
    sigma2 : float
        Scale :math:`\sigma^2` of :math:`V = \sigma^2 R`.
    R : float or (m, m) array
        Correlation matrix (covariance if ``sigma2 = 1``); a scalar is an exchangeable correlation.
    sig_level, power : float, optional
    alternative : {"two.sided", "one.sided"}

    Exactly one of ``n``, ``delta``, ``sig_level``, ``power`` is ``None`` and is computed.

    Returns
    -------
    PowerCalculation
    """
    k = _check_alternative(alternative)
    unknown = _one_unknown(n=n, delta=delta, sig_level=sig_level, power=power)
    _check_prob("power", power)
    _check_prob("sig_level", sig_level)
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or t.size < 2 or np.ptp(t) == 0:
        raise ValueError("t needs at least two distinct observation times")
    if R is None:
        raise ValueError("R (correlation or covariance of the repeated measures) is required")
    if sigma2 <= 0:
        raise ValueError(f"sigma2 must be positive, got {sigma2}")
    if n is not None and n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    v = sigma2 * _exchangeable(R, t.size)
    x = np.column_stack([np.ones_like(t), t])
    xi = float(np.linalg.inv(x.T @ np.linalg.solve(v, x))[1, 1])
    if unknown == "n":
        n = 2.0 * _zsum(sig_level, power, k) ** 2 * xi / delta**2
    elif unknown == "power":
        power = float(stats.norm.cdf(abs(delta) * np.sqrt(n / (2.0 * xi)) - stats.norm.ppf(1 - sig_level / k)))
    elif unknown == "delta":
        delta = _zsum(sig_level, power, k) * np.sqrt(2.0 * xi / n)
    else:
        z_alpha = abs(delta) * np.sqrt(n / (2.0 * xi)) - stats.norm.ppf(power)
        sig_level = float(k * stats.norm.sf(z_alpha))
    return PowerCalculation(n=float(n), delta=float(delta), power=float(power), sig_level=float(sig_level),
                            sigma2=float(sigma2), alternative=alternative,
                            method="Longitudinal linear model slope power calculation (Diggle et al 2002, page 29)",
                            n_groups=(float(n), float(n)))


def _as_2d(a: Any) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[:, None] if a.ndim == 1 else a


def liu_liang_linear_power(N: float | None = None, delta: Any = None, u: Sequence[Any] = (),
                           v: Sequence[Any] = (), sigma2: float = 1.0, R: Any = None,
                           R_list: Sequence[Any] | None = None, sig_level: float | None = 0.05,
                           power: float | None = None, Pi: Sequence[float] | None = None,
                           alternative: Alternative = "two.sided") -> PowerCalculation:
    r"""Total sample size (or power, detectable difference, level) by Liu & Liang (1997).

    Parameters
    ----------
    N : float, optional
        Total number of subjects.
    delta : float or array, optional
        Parameters of interest (length = columns of each ``u``); solving for ``delta`` scales a
        scalar.
    u, v : sequences of (m,) or (m, p) arrays
        Designs of the parameters of interest and of the nuisance parameters, one per pattern.
    sigma2 : float
    R : float or (m, m) array, optional
        Common correlation (scalar: exchangeable); or ``R_list``, one per pattern.
    sig_level, power : float, optional
    Pi : sequence of float, optional
        Proportions of the patterns (default equal); must sum to 1.
    alternative : {"two.sided", "one.sided"}

    Returns
    -------
    PowerCalculation
        ``n`` is the total; ``n_groups`` is :math:`N\pi_i`.
    """
    k = _check_alternative(alternative)
    unknown = _one_unknown(N=N, delta=delta, sig_level=sig_level, power=power)
    _check_prob("power", power)
    _check_prob("sig_level", sig_level)
    if len(u) == 0 or len(u) != len(v):
        raise ValueError("u and v must be non-empty lists of the same length")
    if (R is None) == (R_list is None):
        raise ValueError("give exactly one of R or R_list")
    pi = np.full(len(u), 1.0 / len(u)) if Pi is None else np.asarray(Pi, dtype=float)
    if pi.shape != (len(u),) or np.any(pi < 0) or not np.isclose(pi.sum(), 1.0):
        raise ValueError("Pi must give one non-negative proportion per pattern, summing to 1")
    us = [_as_2d(a) for a in u]
    vs = [_as_2d(a) for a in v]
    rs = [R] * len(u) if R_list is None else list(R_list)
    rinv = [np.linalg.inv(sigma2 * _exchangeable(r, ui.shape[0])) for r, ui in zip(rs, us)]
    ipl = sum(p * ui.T @ ri @ vi for p, ui, vi, ri in zip(pi, us, vs, rinv))
    ill_inv = np.linalg.inv(sum(p * vi.T @ ri @ vi for p, vi, ri in zip(pi, vs, rinv)))
    sigma1 = sum(p * (ui - vi @ ill_inv @ ipl.T).T @ ri @ (ui - vi @ ill_inv @ ipl.T)
                 for p, ui, vi, ri in zip(pi, us, vs, rinv))

    def info(d: Any) -> float:
        d = np.atleast_1d(np.asarray(d, dtype=float))
        return float(d @ sigma1 @ d)

    if unknown == "N":
        N = _zsum(sig_level, power, k) ** 2 / info(delta)
    elif unknown == "power":
        power = float(stats.norm.cdf(np.sqrt(N * info(delta)) - stats.norm.ppf(1 - sig_level / k)))
    elif unknown == "sig_level":
        sig_level = float(k * stats.norm.sf(np.sqrt(N * info(delta)) - stats.norm.ppf(power)))
    else:
        target = _zsum(sig_level, power, k) ** 2 / N
        if sigma1.shape != (1, 1):
            raise ValueError("solving for delta needs a single parameter of interest")
        delta = float(np.sqrt(target / sigma1[0, 0]))
    d = np.asarray(delta, dtype=float)
    return PowerCalculation(n=float(N), delta=d if d.ndim else float(d), power=float(power),
                            sig_level=float(sig_level), sigma2=float(sigma2), alternative=alternative,
                            method="Longitudinal linear model power calculation (Liu & Liang, 1997)",
                            n_groups=tuple(float(N) * pi))


def _slope_designs(t: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ones, zeros = np.ones_like(t), np.zeros_like(t)
    return [t, zeros], [np.column_stack([ones, ones, t]), np.column_stack([ones, zeros, t])]


def slope_difference_power(n_total: float | Sequence[float], delta: float, t: Sequence[float], V: np.ndarray,
                           fraction: float = 0.5, sig_level: float = 0.05,
                           alternative: Alternative = "two.sided") -> np.ndarray:
    r"""Power of the test of a slope difference for ``n_total`` subjects (Liu & Liang).

    Parameters
    ----------
    n_total : float or sequence
        Total subjects; a fraction ``fraction`` of them in group 1.
    delta : float
        Slope of group 1 minus slope of group 2 (per unit of ``t``).
    t : sequence of float
        Common observation times.
    V : (m, m) array
        Marginal covariance of one subject's measurements (:func:`random_slope_covariance`).
    fraction : float
        :math:`\pi_1`.

    Returns
    -------
    ndarray
        :math:`\Phi(\sqrt{N \delta^2 \Sigma_1} - z_{1-\alpha/k})`, one per ``n_total``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    t = np.asarray(t, dtype=float)
    u, v = _slope_designs(t)
    ns = np.atleast_1d(np.asarray(n_total, dtype=float))
    return np.array([liu_liang_linear_power(N=float(n), delta=delta, u=u, v=v, R=V, sig_level=sig_level,
                                            Pi=(fraction, 1.0 - fraction), alternative=alternative).power
                     for n in ns])


def slope_difference_sample_size(delta: float, t: Sequence[float], V: np.ndarray, power: float = 0.8,
                                 fraction: float = 0.5, sig_level: float = 0.05,
                                 alternative: Alternative = "two.sided") -> float:
    """Total subjects for ``power`` (Liu & Liang); the inverse of :func:`slope_difference_power`."""
    t = np.asarray(t, dtype=float)
    u, v = _slope_designs(t)
    return liu_liang_linear_power(delta=delta, u=u, v=v, R=V, sig_level=sig_level, power=power,
                                  Pi=(fraction, 1.0 - fraction), alternative=alternative).n
