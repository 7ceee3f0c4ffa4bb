r"""The data generator of a design from data: one study like the user's, and its closed-form power.

For patient :math:`i` of :math:`n` in level :math:`g_i` (exactly :math:`n\pi_k` per level, rounded by
largest remainders, randomly placed), at the nominal visit months :math:`m_j` (time
:math:`t_j = m_j / 12` years) and site :math:`s` with the parameters of
:class:`~analysis.power.data_model.SiteModel`:

.. math::

    y_{ij} = a_{g_i} + u_{0i} + (b_{g_i} + u_{1i})\,t_j + \sigma\varepsilon_{ij},\qquad
    (u_{0i}, u_{1i}) \sim N(0, T),\quad \varepsilon_{ij} \sim N(0, 1),

the patients' effects independent across sites. Dropout is monotone and MCAR: at each
post-baseline visit :math:`v` a patient still present leaves with hazard :math:`h_v`
(:attr:`DataModel.hazards <analysis.power.data_model.DataModel.hazards>`, the observed retention;
or ``dropout``: one number, the share without the final visit, as a constant hazard
:math:`1 - (1 - d)^{1/V}` over the :math:`V` post-baseline visits, or one hazard per visit).

:func:`closed_form_data_power` is the Liu & Liang power of the LMM test of each contrast without
dropout: for level :math:`k` against the reference, the two-group slope-difference formula on the
:math:`N = n(\pi_k + \pi_0)` patients of the two levels with share :math:`\pi_k / (\pi_k + \pi_0)`
(:func:`analysis.power.closed_form.slope_difference_power`); for a single arm the GLS slope of one
group, :math:`\mathrm{Var}(\hat b) = \xi / n`, :math:`\xi = [(X^\top V^{-1} X)^{-1}]_{22}`,
power :math:`\Phi(|b|\sqrt{n/\xi} - z_{1-\alpha/2})`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from analysis.power.data_model import DataModel

__all__ = ["allocate", "closed_form_data_power", "data_hazards", "simulate_from_data"]


def allocate(n: int, allocation: Sequence[float]) -> np.ndarray:
    """Patients per level: :math:`\\lfloor n\\pi_k \\rfloor` plus the remainder by largest fractional part."""
    w = np.asarray(allocation, dtype=float) * int(n)
    counts = np.floor(w).astype(int)
    extra = int(n) - int(counts.sum())
    if extra > 0:
        counts[np.argsort(-(w - counts), kind="stable")[:extra]] += 1
    return counts


def data_hazards(model: DataModel, dropout: float | Sequence[float] | None = None) -> np.ndarray:
    """Hazard of leaving at each post-baseline visit (module docstring)."""
    n_post = len(model.visits) - 1
    if dropout is None:
        return np.asarray(model.hazards, dtype=float)
    if isinstance(dropout, (list, tuple, np.ndarray)):
        hz = np.asarray(dropout, dtype=float)
        if hz.shape != (n_post,) or not np.all((hz >= 0) & (hz < 1)):
            raise ValueError(f"per-visit dropout hazards {hz.tolist()} must be {n_post} values in [0, 1) "
                             f"(months {', '.join(f'{v:g}' for v in model.visits[1:])})")
        return hz
    return np.full(n_post, 1.0 - (1.0 - float(dropout)) ** (1.0 / n_post))


def simulate_from_data(model: DataModel, n: int, seed: int,
                       dropout: float | Sequence[float] | None = None) -> pd.DataFrame:
    """One simulated study like the user's (module docstring).

    Parameters
    ----------
    model : DataModel
    n : int
        Patients.
    seed : int
    dropout : float or sequence of float, optional
        Overrides the observed retention.

    Returns
    -------
    DataFrame
        ``patient_id, month, group, bmd_<site>`` per site, one row per attended visit.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    rng = np.random.default_rng(seed)
    months = np.asarray(model.visits, dtype=float)
    t = months / 12.0
    m = months.size
    counts = allocate(n, model.allocation)
    group = np.repeat(np.arange(len(model.levels)), counts)[rng.permutation(n)]
    out: dict[str, np.ndarray] = {
        "patient_id": np.repeat(np.array([f"D{i + 1:04d}" for i in range(n)]), m),
        "month": np.tile(months, n),
        "group": np.repeat(np.asarray(model.levels, dtype=object)[group], m),
    }
    for s in model.sites:
        a = np.array([s.intercept[lv] for lv in model.levels])[group]
        b = np.array([s.slope[lv] for lv in model.levels])[group]
        u = rng.multivariate_normal(np.zeros(2), s.re_cov(), size=n, method="eigh")
        eps = rng.standard_normal((n, m))
        y = (a + u[:, 0])[:, None] + (b + u[:, 1])[:, None] * t[None, :] + s.sigma * eps
        out[f"bmd_{s.site}"] = y.ravel()
    hz = data_hazards(model, dropout)
    hit = np.zeros((n, m), dtype=bool)
    hit[:, 1:] = rng.random((n, m - 1)) < hz[None, :]
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), m)
    keep = (np.arange(m)[None, :] < first[:, None]).ravel()
    return pd.DataFrame(out).loc[keep].reset_index(drop=True)


def closed_form_data_power(model: DataModel, n: Sequence[int], site: str, alpha: float = 0.05) -> pd.DataFrame:
    """Liu & Liang power of the LMM test of each contrast at ``site`` (module docstring; no dropout).

    Returns
    -------
    DataFrame
        ``site, contrast, n, closed_form_power``.
    """
    from analysis.power.closed_form import (
        random_slope_covariance,
        slope_difference_power,
    )

    s = model.site(site)
    t = np.asarray(model.visits, dtype=float) / 12.0
    v = random_slope_covariance(t, s.sd_intercept**2, s.sd_slope**2, s.corr * s.sd_intercept * s.sd_slope,
                                s.sigma**2)
    alloc = dict(zip(model.levels, model.allocation))
    rows = []
    for level, ref in model.contrasts:
        label = model.contrast_label(level, ref)
        for nn in n:
            if ref is None:
                x = np.column_stack([np.ones_like(t), t])
                xi = float(np.linalg.inv(x.T @ np.linalg.solve(v, x))[1, 1])
                p = float(stats.norm.cdf(abs(s.slope[level]) * np.sqrt(nn / xi) - stats.norm.ppf(1 - alpha / 2)))
            else:
                share = alloc[level] + alloc[ref]
                p = float(slope_difference_power(nn * share, s.slope[level] - s.slope[ref], t, v,
                                                 fraction=alloc[level] / share, sig_level=alpha)[0])
            rows.append({"site": site, "contrast": label, "n": int(nn), "closed_form_power": p})
    return pd.DataFrame(rows, columns=["site", "contrast", "n", "closed_form_power"])
