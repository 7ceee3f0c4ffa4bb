r"""The Gaussian data generator: one study from the linear mixed model of the closed-form formulas.

For patient :math:`i`, group :math:`g_i` (exactly :math:`\mathrm{round}(n\pi)` responders, known),
DXA months :math:`t_j` and site :math:`s` with population mean :math:`m_s` = ``baseline_mean``,

.. math::

    y_{ij} = m_s + \tau_s z_i + \Bigl(\frac{m_s \gamma^{(g_i)}_s}{1200}
             + \frac{m_s \omega_s}{1200} w_i\Bigr) t_j + \frac{m_s \mathrm{CV}_s}{100}\,\varepsilon_{ij},

:math:`\tau_s` = ``baseline_sd``, :math:`\gamma^{(g)}_s` = ``slope_(non)responder_pct``,
:math:`\omega_s` = ``slope_sd_pct``, :math:`\mathrm{CV}_s` = ``precision_cv_pct``; :math:`z, w,
\varepsilon` standard normal (intercepts and slopes correlated across sites by
``intercept_corr``/``slope_corr``), no rounding; dropout MCAR and monotone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.power.design import SITES
from models.simulate import Design

__all__ = ["simulate_gaussian"]


def _bivariate(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    z = rng.standard_normal((n, 2))
    z[:, 1] = rho * z[:, 0] + np.sqrt(1.0 - rho**2) * z[:, 1]
    return z


def simulate_gaussian(design: Design, n: int, seed: int,
                      dropout: float | Sequence[float] | None = None) -> pd.DataFrame:
    r"""One study from the linear mixed model of the closed-form formulas (module docstring).

    Dropout is MCAR and monotone: one number gives hazard :math:`1 - (1 - \text{dropout})^{1/V}`
    at each of the :math:`V` post-baseline DXA visits; a sequence gives the hazard at each
    scheduled post-baseline visit (``design.activity_months[1:]``), and a patient leaving at month
    :math:`t` has no DXA from :math:`t` on.

    Parameters
    ----------
    design : Design
        Responder fraction, per-site bone parameters and the correlations across sites.
    n : int
        Patients.
    seed : int
    dropout : float or sequence of float, optional
        Fraction without the final visit, or one hazard per scheduled post-baseline visit.

    Returns
    -------
    DataFrame
        Long data (``patient_id``, ``month``, ``bmd_spine``, ``bmd_femoral_neck``, ``responder``)
        at the DXA months; ``responder`` is the known group (randomly placed).
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    rng = np.random.default_rng(seed)
    months = np.asarray(design.dxa_months, dtype=float)
    m = months.size
    n_resp = int(round(n * design.responder_fraction))
    resp = np.zeros(n, dtype=bool)
    resp[rng.permutation(n)[:n_resp]] = True
    z = _bivariate(rng, n, design.intercept_corr)
    w = _bivariate(rng, n, design.slope_corr)
    eps = rng.standard_normal((2, n, m))
    per_visit = isinstance(dropout, (list, tuple, np.ndarray))
    sched = np.asarray(design.activity_months, dtype=float)
    drop_u = rng.random((n, sched.size if per_visit else m))
    out: dict[str, Any] = {
        "patient_id": np.repeat(np.array([f"G{i + 1:04d}" for i in range(n)]), m),
        "month": np.tile(months.astype(int), n),
    }
    for k, s in enumerate(SITES):
        p = design.site(s)
        mean = p.baseline_mean
        slope = mean * np.where(resp, p.slope_responder_pct, p.slope_nonresponder_pct) / 1200.0
        b0 = mean + p.baseline_sd * z[:, k]
        b1 = slope + mean * p.slope_sd_pct / 1200.0 * w[:, k]
        y = b0[:, None] + b1[:, None] * months[None, :] + mean * p.precision_cv_pct / 100.0 * eps[k]
        out[f"bmd_{s}"] = y.ravel()
    out["responder"] = np.repeat(resp, m)
    frame = pd.DataFrame(out)
    if per_visit:
        hz = np.asarray(dropout, dtype=float)
        if hz.shape != (sched.size - 1,) or not np.all((hz >= 0) & (hz < 1)):
            raise ValueError(f"per-visit dropout hazards {hz.tolist()} must be {sched.size - 1} values in [0, 1)")
        hit = np.zeros((n, sched.size), dtype=bool)
        hit[:, 1:] = drop_u[:, 1:] < hz[None, :]
        first = np.where(hit.any(axis=1), sched[hit.argmax(axis=1)], np.inf)  # month of leaving
        keep = (months[None, :] < first[:, None]).ravel()
        return frame.loc[keep].reset_index(drop=True)
    d = float(dropout or 0.0)
    if d > 0:
        h = 1.0 - (1.0 - d) ** (1.0 / (m - 1))
        hit = drop_u < h
        hit[:, 0] = False
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), m)
        keep = (np.arange(m)[None, :] < first[:, None]).ravel()
        frame = frame.loc[keep].reset_index(drop=True)
    return frame
