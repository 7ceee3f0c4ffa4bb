r"""Closed forms with monotone dropout: Lu, Luo & Chen (2008) for the MMRM, Edland's expected
information for the LMM slope (R ``longpower``'s ``power.mmrm`` and ``edland.linear.power``).

Both are large-sample (normal reference) formulas, as in ``longpower``; the power of the simulated
designs, with their t tests, is :mod:`analysis.power.closed_form_design`'s.

Lu, Luo & Chen (2008), formula (3)
----------------------------------
Group :math:`a` is observed at post-baseline visits :math:`1, \dots, J` with correlation matrix
:math:`R_a`, standard deviation :math:`\sigma` at the last visit and retention :math:`r_{a1} \ge
\dots \ge r_{aJ}` (share still observed at visit :math:`j`; :math:`r_{a,J+1} = 0`). Under monotone
MCAR dropout the information about the visit means of one subject is

.. math::

    I_a = \sum_{j=1}^J (r_{aj} - r_{a,j+1}) \begin{pmatrix} R_{a[1:j]}^{-1} & 0 \\ 0 & 0 \end{pmatrix},
    \qquad \phi_a = [I_a^{-1}]_{JJ},

so that the endpoint mean of a group of :math:`n_a` has variance :math:`\sigma^2\phi_a/n_a`, and with
:math:`n_a = \lambda n_b`

.. math::

    n_a = (\phi_a + \lambda\phi_b)\,\frac{(z_{1-\alpha/k} + z_{1-\beta})^2\sigma^2}{\delta^2},
    \qquad N = n_a + n_a/\lambda

(:func:`power_mmrm`; :math:`k = 2` two-sided; :math:`\phi = 1` without dropout). With a correlation
matrix that is the covariance of the post-baseline values *given the baseline* this is the power of
the baseline-adjusted MMRM's endpoint contrast.

Edland's expected information (Ard & Edland 2011; Zhao & Edland)
------------------------------------------------------------------
Random intercept and slope, :math:`V = Z D Z^\top + \sigma_e^2 I`, visits :math:`t_1 = 0, \dots, t_m`,
:math:`p_k` the share of subjects whose last visit is :math:`k`:

.. math::

    \xi = \Bigl[\Bigl(\sum_{k \ge 2} p_k X_{[1:k]}^\top V_{[1:k]}^{-1} X_{[1:k]}\Bigr)^{-1}\Bigr]_{22},
    \qquad n = \frac{(z_{1-\alpha/k} + z_{1-\beta})^2(\xi_1 + \lambda\xi_2)}{\delta^2}

per group 1 (:math:`n/\lambda` in group 2; :func:`edland_linear_power`). Without dropout
(:math:`p_m = 1`) it is Diggle's and Liu & Liang's formula.

Verified values (``tests/analysis/power/test_power_closed_form_dropout.py``): ``longpower``'s
documented ``power.mmrm`` examples (exchangeable :math:`\rho = 0.25`, retention 1, 0.9, 0.8, 0.7,
:math:`\delta = 0.5`: :math:`n_a = 86.99175` per group; :math:`N = 174` gives power 0.8000372 and
:math:`\delta = 0.4999763`; with :math:`\lambda = 2`: :math:`n_a = 130.4876`, power 0.7522291 and
:math:`\delta = 0.5303049` at :math:`N = 174`), Lu, Luo & Chen's Table 1, and the ADAS-cog example
(:math:`n = 207.3101` per group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from analysis.power.closed_form import random_slope_covariance

__all__ = ["DropoutPowerCalculation", "edland_linear_power", "edland_xi", "lu_luo_chen_phi", "power_mmrm"]


@dataclass(frozen=True)
class DropoutPowerCalculation:
    """Result of :func:`power_mmrm` or :func:`edland_linear_power` (the unknown filled in).

    Attributes
    ----------
    n1, n2 : float
        Per group (``n1 = lambda * n2``).
    phi1, phi2 : float
        :math:`\\phi` (Lu, Luo & Chen) or :math:`\\xi` (Edland) of each group.
    delta, power, sig_level : float
    alternative, method : str
    """

    n1: float
    n2: float
    phi1: float
    phi2: float
    delta: float
    power: float
    sig_level: float
    alternative: str
    method: str

    @property
    def n(self) -> float:
        """Total :math:`n_1 + n_2`."""
        return self.n1 + self.n2


def _sides(alternative: str) -> int:
    if alternative not in ("two.sided", "one.sided"):
        raise ValueError(f"alternative must be 'two.sided' or 'one.sided', got {alternative!r}")
    return 2 if alternative == "two.sided" else 1


def _solve(unknown: str, n1: float | None, delta: float | None, power: float | None, sig_level: float | None,
           k: int, lam: float, phi1: float, phi2: float, sigma: float) -> tuple[float, float, float, float]:
    r"""Solve :math:`n_1 = (\phi_1 + \lambda\phi_2)(z_{1-\alpha/k} + z_{power})^2\sigma^2/\delta^2` for the unknown."""
    var = (phi1 + lam * phi2) * sigma**2
    if unknown == "n":
        n1 = var * (stats.norm.ppf(1 - sig_level / k) + stats.norm.ppf(power)) ** 2 / delta**2
    elif unknown == "power":
        power = float(stats.norm.cdf(np.sqrt(n1 * delta**2 / var) - stats.norm.ppf(1 - sig_level / k)))
    elif unknown == "delta":
        delta = float((stats.norm.ppf(1 - sig_level / k) + stats.norm.ppf(power)) * np.sqrt(var / n1))
    else:
        sig_level = float(k * stats.norm.sf(np.sqrt(n1 * delta**2 / var) - stats.norm.ppf(power)))
    return float(n1), float(delta), float(power), float(sig_level)


def _one_unknown(**values: Any) -> str:
    missing = [k for k, v in values.items() if v is None]
    if len(missing) != 1:
        raise ValueError(f"exactly one of {', '.join(values)} must be None, got {len(missing)}")
    return missing[0]


def lu_luo_chen_phi(R: Any, retention: Sequence[float]) -> float:
    r""":math:`\phi = [I^{-1}]_{JJ}` of Lu, Luo & Chen (module docstring) for a correlation (or
    covariance) matrix ``R`` of the post-baseline visits and the retention at each of them."""
    r = np.asarray(R, dtype=float)
    ret = np.append(np.asarray(retention, dtype=float), 0.0)
    j = r.shape[0]
    if r.shape != (j, j) or ret.size != j + 1:
        raise ValueError(f"R must be square and retention must have {j} values")
    if np.any(np.diff(ret) > 1e-12) or ret[0] <= 0 or ret[0] > 1:
        raise ValueError("retention must be non-increasing, in (0, 1]")
    info = np.zeros((j, j))
    for k in range(1, j + 1):
        info[:k, :k] += (ret[k - 1] - ret[k]) * np.linalg.inv(r[:k, :k])
    return float(np.linalg.inv(info)[j - 1, j - 1])


def power_mmrm(N: float | None = None, Ra: Any = None, ra: Sequence[float] | None = None, sigmaa: float | None = None,
               Rb: Any = None, rb: Sequence[float] | None = None, sigmab: float | None = None, lambda_: float = 1.0,
               delta: float | None = None, sig_level: float | None = 0.05, power: float | None = None,
               alternative: str = "two.sided") -> DropoutPowerCalculation:
    r"""Sample size (or power, detectable difference, level) of an MMRM endpoint contrast with
    monotone dropout, as ``longpower::power.mmrm`` (Lu, Luo & Chen 2008, formula 3).

    Parameters
    ----------
    N : float, optional
        Total subjects.
    Ra, Rb : (J, J) array
        Correlation of the post-baseline visits in groups a and b (``Rb`` defaults to ``Ra``).
    ra, rb : sequence of float
        Retention at each visit (``rb`` defaults to ``ra``).
    sigmaa, sigmab : float
        SD at the last visit; with both, their mean is used (as ``longpower``).
    lambda_ : float
        Allocation ratio :math:`n_a / n_b`.
    delta, sig_level, power : float, optional
    alternative : {"two.sided", "one.sided"}

    Exactly one of ``N``, ``delta``, ``power``, ``sig_level`` is ``None`` and is computed.

    Returns
    -------
    DropoutPowerCalculation
    """
    k = _sides(alternative)
    unknown = _one_unknown(N=N, delta=delta, power=power, sig_level=sig_level)
    if Ra is None or ra is None or sigmaa is None:
        raise ValueError("Ra, ra and sigmaa are required")
    sigma = sigmaa if sigmab is None else (sigmaa + sigmab) / 2.0
    phia = lu_luo_chen_phi(Ra, ra)
    phib = lu_luo_chen_phi(Ra if Rb is None else Rb, ra if rb is None else rb)
    n1 = None if N is None else float(N) * lambda_ / (1.0 + lambda_)
    n1, delta, power, sig_level = _solve("n" if unknown == "N" else unknown, n1, delta, power, sig_level, k,
                                         lambda_, phia, phib, sigma)
    return DropoutPowerCalculation(n1=n1, n2=n1 / lambda_, phi1=phia, phi2=phib, delta=delta, power=power,
                                   sig_level=sig_level, alternative=alternative,
                                   method="Power for Mixed Model of Repeated Measures (Lu, Luo, & Chen, 2008)")


def edland_xi(t: Sequence[float], sig2_int: float, sig2_s: float, sig_b0b1: float, sig2_e: float,
              p: Sequence[float] | None = None) -> float:
    r""":math:`\xi = [(\sum_{k\ge2} p_k X_{[1:k]}^\top V_{[1:k]}^{-1} X_{[1:k]})^{-1}]_{22}`
    (module docstring); ``p`` defaults to no dropout."""
    t = np.asarray(t, dtype=float)
    p = np.r_[np.zeros(t.size - 1), 1.0] if p is None else np.asarray(p, dtype=float)
    if p.size != t.size or not np.isclose(p.sum(), 1.0) or np.any(p < 0):
        raise ValueError("p needs one non-negative share per visit, summing to 1")
    v = random_slope_covariance(t, sig2_int, sig2_s, sig_b0b1, sig2_e)
    x = np.column_stack([np.ones_like(t), t])
    term = np.zeros((2, 2))
    for k in range(2, t.size + 1):
        term += p[k - 1] * x[:k].T @ np.linalg.solve(v[:k, :k], x[:k])
    return float(np.linalg.inv(term)[1, 1])


def edland_linear_power(n: float | None = None, delta: float | None = None, power: float | None = None,
                        t: Sequence[float] = (), lambda_: float = 1.0, sig2_int: float = 0.0,
                        sig2_s: float | None = None, sig_b0b1: float = 0.0, sig2_e: float | None = None,
                        sig2_int_2: float | None = None, sig2_s_2: float | None = None,
                        sig_b0b1_2: float | None = None, sig2_e_2: float | None = None, sig_level: float = 0.05,
                        p: Sequence[float] | None = None, p_2: Sequence[float] | None = None,
                        alternative: str = "two.sided") -> DropoutPowerCalculation:
    r"""Per-group sample size (or power, detectable slope difference) of the LMM slope test with
    monotone dropout, as ``longpower::edland.linear.power`` (module docstring).

    ``n`` is group 1's size (group 2 has ``n / lambda_``); ``p`` (``p_2``) the share of group 1 (2)
    whose last visit is each visit; the ``_2`` variance parameters default to group 1's.

    Returns
    -------
    DropoutPowerCalculation
        ``phi1, phi2`` hold :math:`\xi_1, \xi_2`.
    """
    k = _sides(alternative)
    unknown = _one_unknown(n=n, delta=delta, power=power)
    if sig2_s is None or sig2_e is None:
        raise ValueError("sig2_s and sig2_e are required")
    xi1 = edland_xi(t, sig2_int, sig2_s, sig_b0b1, sig2_e, p)
    xi2 = edland_xi(t, sig2_int if sig2_int_2 is None else sig2_int_2, sig2_s if sig2_s_2 is None else sig2_s_2,
                    sig_b0b1 if sig_b0b1_2 is None else sig_b0b1_2, sig2_e if sig2_e_2 is None else sig2_e_2,
                    p if p_2 is None else p_2)
    n1, delta, power, sig_level = _solve(unknown, n, delta, power, sig_level, k, lambda_, xi1, xi2, 1.0)
    return DropoutPowerCalculation(n1=n1, n2=n1 / lambda_, phi1=xi1, phi2=xi2, delta=delta, power=power,
                                   sig_level=sig_level, alternative=alternative,
                                   method="Random slope LMM with monotone dropout (Ard & Edland 2011; Zhao & Edland)")
