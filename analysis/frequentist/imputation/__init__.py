r"""Multiple imputation of the BMD % change endpoint under MAR, pooled with Rubin's rules.

Imputation model
----------------
Each patient :math:`i` contributes a *wide* record: complete covariates :math:`x_i` (age, sex, BMI
by default), a group :math:`g_i` (the caller's column, normally the responder status of
:func:`analysis.study.clinical.derive`), an auxiliary :math:`a_{it}` (DAS28-CRP by default) at the
scheduled visits before the endpoint, and the BMD :math:`y_{ist}` at site :math:`s` and DXA month
:math:`t`. By default (``scale="change"``) follow-up BMD enters as the endpoint itself, the %
change :math:`p_{ist} = 100\,(y_{ist}/y_{is0} - 1)`, and follow-up DAS28 as the change
:math:`\Delta a_{it} = a_{it} - a_{i0}` (``scale="level"``: the recorded values). The incomplete
variables are imputed one after the other, each from a regression on the covariates and on the
variables *before* it in the sequence (observed or already imputed),

.. math::

    v_i \mid x_i, h_{i,<v} \;\sim\; N\!\bigl(z_i^\top\beta_v,\ \sigma_v^2\bigr),
    \qquad z_i = (1,\ x_i,\ h_{i,<v}).

With the default ``order="activity-first"`` the sequence is: the baseline record
(:math:`a_{i0}`, :math:`y_{is0}`), the DAS28 history (:math:`\Delta a_{i3}, \Delta a_{i6}`, and
:math:`\Delta a_{i,12}` when the responder status is derived from it), the group, then the
follow-up BMD by visit. For DXA at 0, 6 and 12 months the BMD models are

.. math::

    p_{is6}  &= \beta_0 + \beta_1 y_{is0} + \beta_g g_i + \beta_x^\top x_i
                + \beta_a^\top (a_{i0}, \Delta a_i) + e_{is6}, & e_{is6} &\sim N(0, \sigma_{s6}^2), \\
    p_{is12} &= \gamma_0 + \gamma_1 y_{is0} + \gamma_2 p_{is6} + \gamma_g g_i + \gamma_x^\top x_i
                + \gamma_a^\top (a_{i0}, \Delta a_i) + e_{is12}, & e_{is12} &\sim N(0, \sigma_{s12}^2),

with :math:`\Delta a_i` the DAS28 history and :math:`p_{is6}` observed or imputed; imputed values
are returned as BMD, :math:`y_{ist} = y_{is0}(1 + p_{ist}/100)`. Each site has its own models, which
see only that site's BMD (``cross_site=True`` adds the other sites' earlier BMD); the auxiliaries
and the group are imputed from the history of all sites. ``stratify=True`` fits the BMD models
separately within each group (all coefficients group-specific; it needs enough completers per
group and removes more of the bias, see below). ``order="visit"`` orders everything by visit
(auxiliaries, group, sites within a visit), so that month-6 BMD is imputed before, and without,
the month-12 information.

Draws
-----
*Proper* draws from the posterior predictive distribution (Rubin 1987; van Buuren 2018,
*Flexible Imputation of Missing Data*, 2nd ed., §3.2, Algorithm 3.1; mice's ``"norm"``). With
:math:`Z` the :math:`n\times p` design of the :math:`n` patients in whom :math:`v` and all its
predictors are observed, :math:`\hat\beta = (Z^\top Z)^{-1}Z^\top v` and the residual sum of squares
:math:`S`, every imputation draws anew

.. math::

    \dot\sigma^2 = S / \chi^2_{n-p}, \qquad
    \dot\beta \sim N\!\bigl(\hat\beta,\ \dot\sigma^2 (Z^\top Z)^{-1}\bigr), \qquad
    \dot v_i = z_i^\top\dot\beta + \dot\sigma\,\varepsilon_i,\quad \varepsilon_i \sim N(0, 1)

(the posterior under :math:`p(\beta, \sigma^2) \propto \sigma^{-2}`). Auxiliaries are by default
drawn by predictive mean matching (``auxiliary_method="pmm"``; van Buuren 2018, §3.4, Algorithm
3.3, type-1 matching, 5 donors, mice's ``"pmm"``): :math:`\dot\beta` as above, then the observed
value of one of the 5 patients whose :math:`z_k^\top\hat\beta` is nearest to
:math:`z_i^\top\dot\beta`. DAS28 changes are a mixture of responders and non-responders, which a
normal model smooths into one hump; PMM keeps the observed shape. A binary group imputed by
regression (``undefined="impute"``) is drawn as mice's ``"logreg"`` (van Buuren 2018, §3.6):
maximum likelihood on the data augmented with :math:`4p` pseudo-observations of total weight
:math:`p + 1` at the predictor means :math:`\pm` half an SD (White, Daniel & Royston 2010;
prevents perfect prediction), :math:`\dot\beta \sim N(\hat\beta, (Z^\top W Z)^{-1})`,
:math:`\dot g_i \sim \text{Bernoulli}(\operatorname{logit}^{-1} z_i^\top \dot\beta)`.

A predictor that is constant among the fitting patients is dropped from that regression if it
takes the same value in the patients to impute, and is an error otherwise (no extrapolation);
remaining collinearity is an error.

*Non-monotone gaps*, e.g. a missed month-6 DXA of a patient measured at month 12, are imputed
from the history **plus the later variables observed in that patient** (fitted in the patients
with all of them observed), so the imputation respects what is known after the gap. Patients who
share a pattern share one parameter draw per imputation.

Responder status of dropouts
----------------------------
Responder status at month 12 is *undefined* for every dropout. ``undefined=``

* ``"rule"`` (default): impute the month-12 DAS28 and classify it with the
  :class:`~analysis.study.clinical.ResponderRule` (``rule=``, the same rule as for the observed status);
* ``"impute"``: impute the status itself by logistic regression (any two-level group);
* ``"level"``: keep 'undefined' as a group of its own (only possible where its members have
  observed outcomes);
* ``"exclude"``: drop those patients;
* ``"assign"``: count them in ``assign_to`` (non-responder imputation, as in RA trials).

Assumption
----------
The data are *missing at random given the predictors*: given the covariates, the group and the
observed history, whether a patient is measured does not depend on the unobserved values. With
``order="activity-first"`` the BMD models are fitted in the patients observed up to the endpoint,
so dropout may depend on the observed DAS28 history and baseline (as in :mod:`models.simulate`
with ``bmd_log_odds = 0``) but not on the interim BMD; ``order="visit"`` also allows dropout that
depends on the observed interim BMD, at the price of imputing interim BMD without the group. When
dropout depends on the unobserved BMD itself (MNAR), MI removes only part of the completers' bias.

Accuracy (``tests/analysis/frequentist/test_imputation.py``, 400 simulated studies of 400
patients with DAS28-driven MAR dropout, 44% lost by month 12): completers overstate the mean %
change to month 12 by 0.13-0.20 percentage points, MI by 0.02, and MI's 95% intervals cover
94-97%. Within responder groups the linear models only approximate a mixture of latent response
types and part of the completers' bias remains: 20-30% of it with ``stratify=True``, 45-70%
without (which also moves the responders' mean by -0.04 to -0.06 points, where the completers'
bias is about -0.01).

Pooling (Rubin 1987; Barnard & Rubin 1999; van Buuren 2018, §2.3): see :func:`rubin_pool`.

Where it lives
--------------
:mod:`~analysis.frequentist.imputation.sequence` (the wide record and the imputation sequence),
:mod:`~analysis.frequentist.imputation.draws` (the proper draws),
:mod:`~analysis.frequentist.imputation.plan` (the fitted model of each incomplete variable),
:mod:`~analysis.frequentist.imputation.impute` (:func:`impute_bmd`),
:mod:`~analysis.frequentist.imputation.completed` (:class:`ImputationResult`),
:mod:`~analysis.frequentist.imputation.analyses` (analyses of one completed dataset),
:mod:`~analysis.frequentist.imputation.rubin` (Rubin's rules) and
:mod:`~analysis.frequentist.imputation.pooling` (:func:`pool_analyses`, :func:`mi_analysis`).
"""

from __future__ import annotations

from analysis.frequentist.imputation.analyses import (AnalysisFn, combine_analyses, difference_pct_change,
                                                      mean_pct_change, standard_analyses)
from analysis.frequentist.imputation.completed import ImputationResult
from analysis.frequentist.imputation.impute import impute_bmd
from analysis.frequentist.imputation.plan import responder_codes
from analysis.frequentist.imputation.pooling import POOLED_COLUMNS, mi_analysis, pool_analyses
from analysis.frequentist.imputation.rubin import PooledResult, rubin_df, rubin_pool
from analysis.frequentist.imputation.sequence import SITES

__all__ = [
    "PooledResult",
    "rubin_pool",
    "rubin_df",
    "ImputationResult",
    "impute_bmd",
    "pool_analyses",
    "mi_analysis",
    "mean_pct_change",
    "difference_pct_change",
    "standard_analyses",
    "combine_analyses",
    "responder_codes",
    "SITES",
    "AnalysisFn",
    "POOLED_COLUMNS",
]
