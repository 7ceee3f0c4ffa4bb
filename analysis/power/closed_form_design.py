r"""The closed form of a :class:`~analysis.power.design.PowerDesign`: computed on exactly the design
its simulator draws, for the test each analysis performs.

A simulated power and its closed form answer the same question only when the formula sees the
simulated design: the same allocation (and its randomness), visits, variance components, dropout,
estimand and test. For each generator the design is reduced to its strata (group, pattern of
observed DXA visits, moments of the complete outcome vector; :mod:`analysis.power.closed_form_engine`):

``gaussian``
    Exactly :math:`\mathrm{round}(n\pi)` responders; per site the LMM of
    :mod:`analysis.power.gaussian` at the DXA months (intercept SD ``baseline_sd``, slope SD
    :math:`m\omega/1200` per month, residual SD :math:`m\,\mathrm{CV}/100`, mean slopes
    :math:`m\gamma^{(g)}/1200`); MCAR monotone dropout, one hazard :math:`1-(1-d)^{1/(V)}` at each of
    the :math:`V` post-baseline DXA visits, or one per scheduled visit (a patient leaving at month
    :math:`t` has no DXA from :math:`t` on). The LMM's working covariance is the truth.
``cohort``
    The twin's simulator has no closed-form moments: groups derived from DAS28-CRP (a responder
    share :math:`P(\text{derived responder})` below the latent :math:`\pi`, misclassified types),
    slopes that follow disease control and scale with the patient's baseline, multiplicative DXA
    error, missed intermediate scans, dropout that depends on DAS28 (MAR, or MNAR) and patients
    whose group stays undefined. Its strata are therefore *measured* on a reference cohort of
    :data:`REFERENCE_PATIENTS` patients drawn by the simulator itself (fixed seed, cached per
    design): the share of patients analysed in each derived group, the probability of each observed
    pattern within a group, and the mean and covariance of the complete DXA vector given group and
    pattern (and of the % change to the last visit). The allocation is multinomial (each patient independently a responder, a
    non-responder or not analysed), the power averaged over it.
``data``
    :func:`analysis.power.data_generator.data_strata`: the user's levels with exact counts
    (largest remainders), the fitted LMM's moments, the design's monotone MCAR retention.

The result is the power of the test the simulation applies (Satterthwaite t, the MMRM's
endpoint contrast in g/cm^2, the LMM's slope difference in g/cm^2 per month; the completers' Welch
t-test of the % change, :mod:`analysis.power.closed_form_completers`), not a normal approximation
on a nominal design. The Wilcoxon test and the Bayesian rules have none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.power.closed_form_completers import completers_power
from analysis.power.closed_form_engine import Allocation, Stratum, contrast_power

if TYPE_CHECKING:
    from analysis.power.design import PowerDesign
    from models.simulate import Design

__all__ = ["CLOSED_FORM_ANALYSES", "REFERENCE_PATIENTS", "closed_form_power", "closed_form_table",
           "cohort_strata", "dropout_patterns", "gaussian_strata"]

#: Analyses with a closed form (``completers``: its Welch t-test, row ``completers_t``).
CLOSED_FORM_ANALYSES = ("lmm", "mmrm", "completers")
#: Size of the cohort generator's reference sample (four chunks with their own seeds).
REFERENCE_PATIENTS = 200_000
_REFERENCE_SEED = 20_250_418
_CACHE: dict[str, tuple[np.ndarray, list[Stratum], Allocation]] = {}


def dropout_patterns(months: Sequence[float], dropout: float | Sequence[float] | None,
                     schedule: Sequence[float] | None = None) -> list[tuple[tuple[bool, ...], float]]:
    r"""Monotone MCAR patterns of observed visits and their probabilities.

    One number :math:`d`: hazard :math:`h = 1 - (1-d)^{1/V}` at each of the :math:`V`
    post-baseline ``months``, so that :math:`P(\text{last visit } k) = (1-h)^{k} h` (:math:`k < V`)
    and :math:`(1-h)^V` for completers. A sequence: hazards at ``schedule[1:]`` (default
    ``months[1:]``); a patient leaving at month :math:`s` has no visit from :math:`s` on.

    Returns
    -------
    list of (tuple of bool, float)
        ``(observed mask, probability)``, probabilities summing to 1.
    """
    months = np.asarray(months, dtype=float)
    m = months.size
    if dropout is None or (np.ndim(dropout) == 0 and float(dropout) == 0.0):
        return [(tuple([True] * m), 1.0)]
    if np.ndim(dropout) == 0:
        h = 1.0 - (1.0 - float(dropout)) ** (1.0 / (m - 1))
        sched, hz = months, np.full(m - 1, h)
    else:
        sched = months if schedule is None else np.asarray(schedule, dtype=float)
        hz = np.asarray(dropout, dtype=float)
    probs: dict[tuple[bool, ...], float] = {}
    alive = 1.0
    for s_month, h in zip(sched[1:], hz):
        mask = tuple(bool(v) for v in months < s_month)
        probs[mask] = probs.get(mask, 0.0) + alive * h
        alive *= 1.0 - h
    full = tuple([True] * m)
    probs[full] = probs.get(full, 0.0) + alive
    return [(k, v) for k, v in probs.items() if v > 0]


def gaussian_strata(design: Design, site: str,
                    dropout: float | Sequence[float] | None = None) -> tuple[np.ndarray, list[Stratum], Allocation]:
    """Strata of the Gaussian generator at ``site`` (module docstring); group 1 the responders."""
    p = design.site(site)
    mean = p.baseline_mean
    t = np.asarray(design.dxa_months, dtype=float)
    z = np.column_stack([np.ones_like(t), t])
    d = np.diag([p.baseline_sd**2, (mean * p.slope_sd_pct / 1200.0) ** 2])
    cov = z @ d @ z.T + (mean * p.precision_cv_pct / 100.0) ** 2 * np.eye(t.size)
    strata = []
    for g, slope in enumerate((p.slope_nonresponder_pct, p.slope_responder_pct)):
        mu = mean + mean * slope / 1200.0 * t
        for mask, w in dropout_patterns(t, dropout, design.activity_months):
            strata.append(Stratum(g, w, mask, mu, cov))
    frac = design.responder_fraction

    def counts(n: int) -> list[int]:
        r = round(n * frac)  # as simulate_gaussian
        return [n - r, r]

    return t, strata, Allocation((1.0 - frac, frac), counts)


def cohort_strata(pdz: PowerDesign, site: str) -> tuple[np.ndarray, list[Stratum], Allocation]:
    """Strata of the cohort generator at ``site``, measured on its reference cohort (module docstring)."""
    from analysis.power.frames import power_frame
    from models.simulate import simulate

    pdz = pdz.resolved()
    key = json.dumps([pdz.key_dict(), site, REFERENCE_PATIENTS, _REFERENCE_SEED], sort_keys=True, default=str)
    if key in _CACHE:
        return _CACHE[key]
    design = pdz.design
    months = np.asarray(design.activity_months, dtype=float)
    dxa = np.isin(months, design.dxa_months)
    t = months[dxa]
    m = t.size
    chunk = REFERENCE_PATIENTS // 4
    sums: dict[tuple[int, tuple[bool, ...]], list] = {}  # count, sum y, sum yy', sum pct, sum pct^2
    total = 0
    for c in range(4):
        st = simulate(design.with_updates(n_patients=chunk), _REFERENCE_SEED + c, patient_prefix=f"R{c}_")
        data = st.data
        if pdz.grouping == "true":
            truth = st.patients.set_index("patient_id")["response_type"] == "responder"
            data = data.assign(responder=data["patient_id"].map(truth))
        frame = power_frame(data, site, pdz.strategy, pdz.rule)
        ids = pd.Index(st.patients["patient_id"])
        y = st.complete[f"bmd_{site}"].to_numpy(dtype=float).reshape(chunk, months.size)[:, dxa]
        pos = ids.get_indexer(frame["patient_id"])
        col = np.searchsorted(t, frame["month"].to_numpy(dtype=float))
        obs = np.zeros((chunk, m), dtype=bool)
        obs[pos, col] = True
        group = np.full(chunk, -1)
        group[pos] = frame["responder"].to_numpy(dtype=float).astype(int)
        total += chunk
        pct = 100.0 * (y[:, -1] - y[:, 0]) / y[:, 0]
        keys, inverse = np.unique(np.column_stack([group, obs]), axis=0, return_inverse=True)
        for j, row in enumerate(keys):
            if row[0] < 0:
                continue
            hit = inverse.ravel() == j
            sel = y[hit]
            acc = sums.setdefault((int(row[0]), tuple(bool(v) for v in row[1:])),
                                  [0, np.zeros(m), np.zeros((m, m)), 0.0, 0.0])
            acc[0] += sel.shape[0]
            acc[1] += sel.sum(axis=0)
            acc[2] += sel.T @ sel
            acc[3] += float(pct[hit].sum())
            acc[4] += float(pct[hit] @ pct[hit])
    per_group = {g: sum(v[0] for (gg, _), v in sums.items() if gg == g) for g in (0, 1)}
    strata = []
    for (g, mask), (cnt, s1, s2, p1, p2) in sorted(sums.items()):
        mu = s1 / cnt
        cov = s2 / cnt - np.outer(mu, mu)
        strata.append(Stratum(g, cnt / per_group[g], mask, mu, cov, (p1 / cnt, p2 / cnt - (p1 / cnt) ** 2)))
    out = (t, strata, Allocation((per_group[0] / total, per_group[1] / total)))
    _CACHE[key] = out
    return out


def _design_strata(pdz: PowerDesign, site: str) -> tuple[np.ndarray, list[Stratum], Allocation]:
    if pdz.generator == "gaussian":
        return gaussian_strata(pdz.design, site, pdz.dropout)
    return cohort_strata(pdz, site)


def closed_form_table(pdz: PowerDesign, analyses: Iterable[str] = ("lmm",), n: Iterable[int] | None = None,
                      alpha: float = 0.05, test: str = "t") -> pd.DataFrame:
    """Closed-form power per site, analysis (and contrast, for a design from data) and ``n``.

    Parameters
    ----------
    pdz : PowerDesign
    analyses : iterable of str
        Those of :data:`CLOSED_FORM_ANALYSES` are computed (``completers`` as the row
        ``completers_t``), others ignored.
    n : iterable of int, optional
        Default: the design's grid.
    alpha : float
        Two-sided level.
    test : {"t", "z"}
        The simulated test (default) or the normal large-sample formula.

    Returns
    -------
    DataFrame
        ``site, [contrast,] analysis, n, closed_form_power, estimand, se, df``.
    """
    ns = tuple(int(v) for v in (pdz.n if n is None else n))
    wanted = [a for a in CLOSED_FORM_ANALYSES if a in tuple(analyses)]
    if pdz.generator == "data":
        from analysis.power.data_generator import closed_form_data_power

        parts = [closed_form_data_power(pdz.data_model, ns, site, alpha, dropout=pdz.dropout, analyses=wanted,
                                        test=test, details=True) for site in pdz.sites]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    rows = []
    for site in pdz.sites:
        t, strata, alloc = _design_strata(pdz, site)
        for analysis in wanted:
            if analysis == "completers":
                end = int(np.flatnonzero(t == pdz.endpoint_month)[0])
                res = completers_power(strata, alloc, ns, [(1, 0)], endpoint=end, alpha=alpha)[0]
            else:
                res = contrast_power(analysis, t, strata, alloc, ns, [(1, 0)], alpha=alpha, test=test,
                                     working=_truth(pdz, site, analysis, strata))[0]
            name = "completers_t" if analysis == "completers" else analysis
            for j, nn in enumerate(ns):
                rows.append({"site": site, "analysis": name, "n": nn, "closed_form_power": float(res.power[j]),
                             "estimand": res.estimand, "se": float(res.se[j]), "df": float(res.df[j])})
    return pd.DataFrame(rows, columns=["site", "analysis", "n", "closed_form_power", "estimand", "se", "df"])


def _truth(pdz: PowerDesign, site: str, analysis: str, strata: list[Stratum]) -> np.ndarray | None:
    """The Gaussian generator's LMM is the analysis model: its covariance is the working one."""
    if pdz.generator == "gaussian" and analysis == "lmm":
        return strata[0].cov
    return None


def closed_form_power(design: PowerDesign, n: Iterable[int] | None = None, site: str | None = None,
                      alpha: float = 0.05, analysis: str = "lmm") -> np.ndarray:
    """Closed-form power of ``analysis`` at ``site`` (default the design's first) per ``n``
    (:func:`closed_form_table`; for a design from data, its first contrast)."""
    site = site or design.sites[0]
    pdz = design if site in design.sites and len(design.sites) == 1 else _one_site(design, site)
    tab = closed_form_table(pdz, (analysis,), n, alpha)
    if "contrast" in tab.columns:
        tab = tab[tab["contrast"] == tab["contrast"].iloc[0]]
    return tab["closed_form_power"].to_numpy(dtype=float)


def _one_site(design: PowerDesign, site: str) -> PowerDesign:
    from dataclasses import replace

    return replace(design, sites=(site,))
