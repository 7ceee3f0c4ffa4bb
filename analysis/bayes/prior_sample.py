"""The patients a prior predictive check draws for (issue #18: cost bounded by the summaries).

:func:`analysis.bayes.prior_checks.prior_predictive` replicates every data row ``draws`` times per
prior set; on a registry-sized study (50,000 patients, 180,000 rows, 1,000 draws, four sets) that is
several GB kept for one figure and a table of quantiles. Above :data:`PRIOR_PREDICTIVE_MAX_PATIENTS`
patients with a value at the site it draws for a seeded random sample of that many patients instead,
stratified by group (each group in proportion, at least one patient). The observed ranges next to the
prior quantiles stay those of the whole study. At or below the cap the data are used as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PRIOR_PREDICTIVE_MAX_PATIENTS", "observed_arrays", "patient_sample"]

#: Most patients whose rows the prior predictive replicates (a random sample above it).
PRIOR_PREDICTIVE_MAX_PATIENTS = 2000

_SAMPLE_STREAM = 0x5A4D  # the sample's random stream, apart from the sets' ``[seed, k]``


def _allocate(sizes: np.ndarray, cap: int) -> np.ndarray:
    """Patients per group: proportional to ``sizes``, at least one each, ``cap`` in all."""
    k = np.maximum(np.minimum(sizes, 1), (cap * sizes) // sizes.sum())
    while k.sum() > cap:  # only when the at-least-one rule overshoots
        k[np.argmax(k)] -= 1
    while k.sum() < cap:
        room = np.where(k < sizes, sizes - k, -1)
        k[np.argmax(room)] += 1
    return k


def patient_sample(data: pd.DataFrame, site: str, group_column: str | None, seed: int,
                   max_patients: int | None = None) -> tuple[pd.DataFrame, str | None]:
    """The rows of at most ``max_patients`` patients with a value at ``site``.

    Parameters
    ----------
    data : DataFrame
        Long data with ``patient_id`` and ``bmd_<site>``.
    site : str
    group_column : str, optional
        Stratify by this column (when present).
    seed : int
    max_patients : int, optional
        Default :data:`PRIOR_PREDICTIVE_MAX_PATIENTS` (read at call time).

    Returns
    -------
    rows : DataFrame
        ``data`` itself when it has at most ``max_patients`` such patients, else the sampled
        patients' rows (in the data's order, ``attrs`` kept).
    note : str or None
        ``"prior predictive on a random 2,000 of 50,000 patients"`` when sampled.
    """
    cap = int(PRIOR_PREDICTIVE_MAX_PATIENTS if max_patients is None else max_patients)
    if cap < 1:
        raise ValueError(f"max_patients must be at least 1, got {cap}")
    seen = data.loc[data[f"bmd_{site}"].notna()]
    ids = pd.unique(seen["patient_id"])
    if ids.size <= cap:
        return data, None
    rng = np.random.default_rng([int(seed), _SAMPLE_STREAM])
    if group_column and group_column in seen.columns:
        first = seen.drop_duplicates("patient_id").set_index("patient_id")[group_column].reindex(ids)
        codes = pd.factorize(first, use_na_sentinel=False)[0]
    else:
        codes = np.zeros(ids.size, dtype=int)
    sizes = np.bincount(codes)
    take = _allocate(sizes, cap)
    chosen = np.concatenate([rng.choice(ids[codes == c], size=int(k), replace=False)
                             for c, k in enumerate(take)])
    rows = data.loc[data["patient_id"].isin(chosen)].copy()
    rows.attrs = dict(data.attrs)
    return rows, f"prior predictive on a random {chosen.size:,} of {ids.size:,} patients"


def _pct_change_pairs(months: np.ndarray, pidx: np.ndarray, endpoint: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of month 0 and the endpoint month for patients with both, and those patients."""
    base = {p: i for i, (p, m) in enumerate(zip(pidx, months)) if m == 0}
    end = {p: i for i, (p, m) in enumerate(zip(pidx, months)) if m == endpoint}
    pats = np.array(sorted(set(base) & set(end)), dtype=int)
    return (np.array([base[p] for p in pats], dtype=int),
            np.array([end[p] for p in pats], dtype=int), pats)


def observed_arrays(prep: Any, data: pd.DataFrame, site: str, endpoint: float) -> tuple[np.ndarray, ...]:
    """The observed side of a prior predictive check.

    Parameters
    ----------
    prep : PreparedData
        The trajectory model's arrays of ``data`` at ``site``.
    data : DataFrame
        Long data with ``month`` and ``bmd_<site>``.
    site : str
    endpoint : float
        The endpoint month.

    Returns
    -------
    tuple of ndarray
        ``nominal`` months of the rows ``prep`` kept, the month-0 and endpoint rows of the patients
        with both, those patients' groups (position, reference 0), their observed % change and the
        observed baselines.
    """
    nominal = data.loc[data[f"bmd_{site}"].notna(), "month"].to_numpy(dtype=float)  # the rows prep kept
    i0, i_end, pats = _pct_change_pairs(nominal, prep.patient_idx, endpoint)
    gx = prep.group_x
    grp = (np.where(gx.any(axis=1), gx.argmax(axis=1) + 1, 0) if gx.shape[1] else np.zeros(prep.n_patients, int))[pats]
    return (nominal, i0, i_end, grp, 100.0 * (prep.y[i_end] - prep.y[i0]) / prep.y[i0], prep.y[nominal == 0])
