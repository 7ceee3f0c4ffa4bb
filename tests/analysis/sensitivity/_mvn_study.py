"""A two-group BMD study with known multivariate-normal % changes, MAR dropout and an optional
post-dropout shift (MNAR of known delta), for the sensitivity-analysis tests.

Patient ``i`` of group ``g`` has baseline BMD ``b_i`` and % changes ``(y_6, y_12) ~ N(mu_g, Sigma)``.
A fraction ``p_drop_baseline`` is seen only at baseline; of the others, a patient drops out after
month 6 with probability ``logit^-1(a + b * y_6)`` (depends on the *observed* month-6 value: MAR).
With ``delta`` (% per year), the true post-dropout values of a dropout are shifted by
``delta_g * (t - t_last) / 12``: exactly the pattern mixture that
:mod:`analysis.sensitivity.delta` assumes, so the truth is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MONTHS = (6.0, 12.0)


def mvn_study(n_per_group: int = 300, seed: int = 0, means=None, sigma=((4.0, 3.0), (3.0, 6.0)),
              p_drop_baseline: float = 0.15, drop_logit=(-1.0, -0.3), delta=None):
    """Returns ``(frame, truth, info)``: observed long data in the ``derive`` layout (patient_id,
    month, bmd_spine, responder_status), the complete-data mean month-12 % change per group, and
    per-patient arrays (``y`` complete % changes, ``last`` index of last observed visit, ``group``)."""
    means = means or {"non-responder": (-1.2, -2.4), "responder": (-0.2, -0.4)}
    delta = delta or {"non-responder": 0.0, "responder": 0.0}
    rng = np.random.default_rng(seed)
    groups = np.repeat(["non-responder", "responder"], n_per_group)
    n = groups.size
    mu = np.array([means[g] for g in groups])
    y = mu + rng.standard_normal((n, 2)) @ np.linalg.cholesky(np.asarray(sigma)).T
    baseline = rng.normal(0.9, 0.12, n)
    drop0 = rng.random(n) < p_drop_baseline
    p6 = 1.0 / (1.0 + np.exp(-(drop_logit[0] + drop_logit[1] * y[:, 0])))
    drop6 = ~drop0 & (rng.random(n) < p6)
    last = np.where(drop0, -1, np.where(drop6, 0, 1))
    last_month = np.where(last >= 0, np.array(MONTHS)[np.maximum(last, 0)], 0.0)
    shift = np.array([delta[g] for g in groups])
    months = np.array(MONTHS)
    post = np.arange(2)[None, :] > last[:, None]
    y = np.where(post, y + shift[:, None] * (months[None, :] - last_month[:, None]) / 12.0, y)
    rows = []
    for i in range(n):
        pid = f"S{i:04d}"
        rows.append((pid, 0.0, baseline[i], groups[i]))
        for j, t in enumerate(MONTHS):
            if j <= last[i]:
                rows.append((pid, t, baseline[i] * (1.0 + y[i, j] / 100.0), groups[i]))
    frame = pd.DataFrame(rows, columns=["patient_id", "month", "bmd_spine", "responder_status"])
    truth = {g: float(y[groups == g, 1].mean()) for g in ("non-responder", "responder")}
    truth["difference"] = truth["responder"] - truth["non-responder"]
    return frame, truth, {"y": y, "last": last, "group": (groups == "responder").astype(int)}
