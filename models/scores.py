"""Composite disease-activity scores of rheumatoid arthritis.

These formulas are shared by the twin simulator (which needs DAS28-CRP to drive a MAR dropout
hazard) and by :mod:`analysis.study.clinical` (which derives the scores from a user's components).

.. math::

    \\mathrm{DAS28\\text{-}CRP} = 0.56\\sqrt{\\mathrm{TJC28}} + 0.28\\sqrt{\\mathrm{SJC28}}
        + 0.36\\ln(\\mathrm{CRP}_{mg/l} + 1) + 0.014\\,\\mathrm{PGA}_{0-100} + 0.96

    \\mathrm{cDAI} = \\mathrm{SJC28} + \\mathrm{TJC28} + \\mathrm{PGA}_{0-10} + \\mathrm{EGA}_{0-10}

(Wells et al. 2009 / Aletaha & Smolen 2005). Missing components give a missing score.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["cdai", "das28_crp"]


def das28_crp(tjc28: ArrayLike, sjc28: ArrayLike, crp_mg_l: ArrayLike,
              patient_global_mm: ArrayLike) -> np.ndarray:
    """DAS28-CRP from tender/swollen joint counts, CRP (mg/l) and patient global (0-100 mm)."""
    tjc = np.asarray(tjc28, dtype=float)
    sjc = np.asarray(sjc28, dtype=float)
    crp = np.asarray(crp_mg_l, dtype=float)
    pga = np.asarray(patient_global_mm, dtype=float)
    return 0.56 * np.sqrt(tjc) + 0.28 * np.sqrt(sjc) + 0.36 * np.log(crp + 1.0) + 0.014 * pga + 0.96


def cdai(tjc28: ArrayLike, sjc28: ArrayLike, patient_global_mm: ArrayLike,
         evaluator_global_mm: ArrayLike) -> np.ndarray:
    """Clinical Disease Activity Index; the global assessments are given in mm (0-100) and enter
    the index on their 0-10 scale."""
    tjc = np.asarray(tjc28, dtype=float)
    sjc = np.asarray(sjc28, dtype=float)
    pga = np.asarray(patient_global_mm, dtype=float) / 10.0
    ega = np.asarray(evaluator_global_mm, dtype=float) / 10.0
    return tjc + sjc + pga + ega
