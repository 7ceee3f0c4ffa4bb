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

:func:`closed_form_data_power` is the power of the LMM's slope test and of the MMRM's endpoint
contrast of each contrast on exactly this design (:func:`data_strata`: the exact counts
:func:`allocate` gives, the visits in months, the fitted moments and the monotone MCAR retention;
:mod:`analysis.power.closed_form_engine`). Without dropout and with the normal reference
(``test="z"``) the LMM's is Liu & Liang's (for level :math:`k` against the reference, the
two-group formula on the :math:`n_k + n_0` patients of the two levels; a single arm: the GLS
slope of one group, :math:`\mathrm{Var}(\hat b) = \xi / n_0`,
:math:`\xi = [(X^\top V^{-1} X)^{-1}]_{22}`); with dropout Edland's expected information under
monotone dropout, :math:`\sum_k p_k X_k^\top V_k^{-1} X_k` over the patterns :math:`k` (last
visit); the MMRM's is Lu, Luo & Chen's (2008) :math:`\phi` with the covariance of the changes
given baseline. By default (``test="t"``) the Satterthwaite t of the simulated analyses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.power.data_model import DataModel

__all__ = ["allocate", "closed_form_data_power", "data_hazards", "data_strata", "simulate_from_data"]


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


def data_strata(model: DataModel, site: str, dropout: float | Sequence[float] | None = None
                ) -> tuple[np.ndarray, list, object]:
    r"""The design's strata at ``site`` (months, strata, allocation; module docstring).

    Level :math:`k` has mean :math:`a_k + b_k m_j / 12` at month :math:`m_j` and covariance
    :math:`Z T Z^\top + \sigma^2 I`, :math:`Z = [1, m_j/12]`; the patterns are the monotone ones
    of :func:`data_hazards`, the counts those of :func:`allocate`.
    """
    from analysis.power.closed_form_engine import Allocation, Stratum

    s = model.site(site)
    months = np.asarray(model.visits, dtype=float)
    z = np.column_stack([np.ones_like(months), months / 12.0])
    cov = z @ s.re_cov() @ z.T + s.sigma**2 * np.eye(months.size)
    hz = data_hazards(model, dropout)
    patterns = []
    alive = 1.0
    for v, h in enumerate(hz, start=1):
        patterns.append((tuple(bool(j < v) for j in range(months.size)), alive * h))
        alive *= 1.0 - h
    patterns.append((tuple([True] * months.size), alive))
    strata = [Stratum(g, w, mask, s.intercept[lv] + s.slope[lv] * months / 12.0, cov)
              for g, lv in enumerate(model.levels) for mask, w in patterns if w > 0]
    alloc = tuple(model.allocation)
    return months, strata, Allocation(alloc, lambda n: allocate(n, alloc))


def closed_form_data_power(model: DataModel, n: Sequence[int], site: str, alpha: float = 0.05,
                           dropout: float | Sequence[float] | None = None, analyses: Sequence[str] = ("lmm",),
                           test: str = "t", details: bool = True) -> pd.DataFrame:
    """Closed-form power of each contrast at ``site`` on exactly this design (module docstring).

    Parameters
    ----------
    model : DataModel
    n : sequence of int
        Patients per study.
    site : str
    alpha : float
        Two-sided level.
    dropout : float or sequence of float, optional
        Overrides the observed retention, as in :func:`simulate_from_data`.
    analyses : sequence of str
        ``"lmm"``, ``"mmrm"``, ``"completers"`` (the Welch t-test, row ``completers_t``).
    test : {"t", "z"}
        The simulated Satterthwaite t (default) or the normal large-sample formula.
    details : bool
        Also the estimand, its SE and the df at each ``n``.

    Returns
    -------
    DataFrame
        ``site, contrast, analysis, n, closed_form_power`` (and ``estimand, se, df``).
    """
    from analysis.power.closed_form_completers import completers_power
    from analysis.power.closed_form_engine import contrast_power

    months, strata, alloc = data_strata(model, site, dropout)
    index = {lv: k for k, lv in enumerate(model.levels)}
    pairs = [(index[lv], None if rf is None else index[rf]) for lv, rf in model.contrasts]
    labels = [model.contrast_label(lv, rf) for lv, rf in model.contrasts]
    end = int(np.flatnonzero(months == float(model.endpoint))[0])
    s = model.site(site)
    z = np.column_stack([np.ones_like(months), months / 12.0])
    truth = z @ s.re_cov() @ z.T + s.sigma**2 * np.eye(months.size)
    rows = []
    for analysis in analyses:
        if analysis == "lmm" and months.size < 3:
            continue
        if analysis == "completers":
            res = completers_power(strata, alloc, [int(v) for v in n], pairs, endpoint=end, alpha=alpha)
        else:
            res = contrast_power(analysis, months, strata, alloc, [int(v) for v in n], pairs, endpoint=end,
                                 alpha=alpha, test=test, working=truth if analysis == "lmm" else None)
        name = "completers_t" if analysis == "completers" else analysis
        for label, r in zip(labels, res):
            for j, nn in enumerate(n):
                row = {"site": site, "contrast": label, "analysis": name, "n": int(nn),
                       "closed_form_power": float(r.power[j])}
                if details:
                    row.update(estimand=r.estimand, se=float(r.se[j]), df=float(r.df[j]))
                rows.append(row)
    cols = ["site", "contrast", "analysis", "n", "closed_form_power"] + (["estimand", "se", "df"] if details else [])
    return pd.DataFrame(rows, columns=cols)
