r"""Reference-based multiple imputation of one DXA site from its MMRM (Carpenter, Roger & Kenward 2013).

The steps, each in its own module:

1. the site in wide form, :math:`y_i` at the post-baseline DXA months
   (:mod:`analysis.sensitivity.site_data`);
2. the MMRM fitted by REML on every observed value and one parameter draw
   :math:`(\beta_l, \Sigma_l)` per imputation (:mod:`analysis.sensitivity.imputation_draws`);
3. per imputation and strategy, the post-dropout means from the own-group and reference-group
   means :math:`X_i\beta_l` and every missing value drawn from the conditional normal given the
   patient's observed values, with the same standard normal deviates for every strategy
   (:mod:`analysis.sensitivity.imputation_strategies`).

:func:`impute_reference_based` runs them; the analysis of the completed datasets is in
:mod:`analysis.sensitivity.mi_reporting`, the strategy as a sensitivity analysis in
:mod:`analysis.sensitivity.reference_based`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.frequentist.mmrm import MmrmResult
from analysis.frequentist.reml import single_threaded_blas
from analysis.sensitivity.imputation_draws import DRAW_METHODS, ParameterDraws
from analysis.sensitivity.imputation_strategies import (
    STRATEGIES,
    check_strategy,
    conditional_normals,
    fill_missing,
    strategy_means,
)
from analysis.sensitivity.site_data import SiteData, site_data
from analysis.study.clinical import ResponderRule

__all__ = ["DEFAULT_M", "ReferenceImputation", "check_imputation_args", "impute_reference_based", "site_seed"]

#: Default number of imputations: the Monte-Carlo SE of a pooled estimate is sqrt(B/m) (column
#: ``mc_se``); on the twin B is up to ~0.6 (%)^2, so 500 imputations keep it below 0.04 points.
DEFAULT_M = 500


def site_seed(seed: int, site: str) -> np.random.SeedSequence:
    """Seed of one site, independent of which other sites are analysed: ``SeedSequence([seed, crc32(site)])``."""
    return np.random.SeedSequence([int(seed), zlib.crc32(site.encode())])


def check_imputation_args(m: int, draws: str, reference: str | None, strategies: Sequence[str],
                          levels: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` for fewer than 2 imputations, an unknown draw method, a reference that is
    not one of the design's ``levels`` (when given), an unknown strategy, or no strategy (the checks
    every MI-based analysis makes first)."""
    if int(m) != m or m < 2:
        raise ValueError(f"m must be an integer of at least 2 imputations, got {m}")
    if draws not in DRAW_METHODS:
        raise ValueError(f"draws must be one of {DRAW_METHODS}, got {draws!r}")
    if levels is not None and reference is not None and reference not in tuple(levels):
        raise ValueError(f"reference must be one of {tuple(levels)}, got {reference!r}")
    if not strategies:
        raise ValueError("strategies must name at least one strategy")
    for s in strategies:
        check_strategy(s)


@dataclass
class ReferenceImputation:
    """Completed datasets of one site under several strategies (shared parameter draws).

    Attributes
    ----------
    data : SiteData
    strategies : tuple of str
    reference : str
        The group whose means dropouts of the other groups follow (a level of ``data.levels``).
    values : dict
        ``{strategy: ndarray (m, n, visits)}``: the completed outcome (observed values unchanged); with
        ``kept_month``, ``(m, n, 1)``: that visit's only.
    beta, sigma : ndarray
        The parameter draws, shapes ``(m, p)`` and ``(m, visits, visits)``.
    fit : MmrmResult
        The REML fit on the observed data.
    m, seed, draws
        What was run.
    notes : list of str
    kept_month : float or None
        The one visit whose completed values were kept (``keep_month`` of
        :func:`impute_reference_based`), or ``None``: every visit's.
    """

    data: SiteData
    strategies: tuple[str, ...]
    reference: str
    values: dict[str, np.ndarray]
    beta: np.ndarray
    sigma: np.ndarray
    fit: MmrmResult
    m: int
    seed: int
    draws: str
    notes: list[str] = field(default_factory=list)
    kept_month: float | None = None

    def endpoint_pct(self, strategy: str, month: float | None = None) -> np.ndarray:
        """``(m, n)`` % change from baseline at ``month`` (default: the last post-baseline visit, or the
        one kept) in every completed dataset."""
        return self.data.to_pct(self.at_visit(strategy, month))

    def at_visit(self, strategy: str, month: float | None = None) -> np.ndarray:
        """``(m, n)`` completed outcome at ``month`` (default: the last post-baseline visit, or the
        one kept)."""
        if month is None:
            month = self.data.months[-1] if self.kept_month is None else self.kept_month
        if strategy not in self.values:
            raise ValueError(f"strategy {strategy!r} was not imputed; have {list(self.values)}")
        if self.kept_month is None:
            return self.values[strategy][:, :, self.data.visit_index(month)]
        if self.data.visit_index(month) != self.data.visit_index(self.kept_month):
            raise ValueError(f"month {month:g} was not kept; the imputation kept month {self.kept_month:g} only")
        return self.values[strategy][:, :, 0]


@single_threaded_blas
def impute_reference_based(derived: pd.DataFrame, site: str, strategies: Sequence[str] = STRATEGIES,
                           reference: str | None = None, m: int = DEFAULT_M, seed: int = 0,
                           draws: Literal["normal", "bootstrap"] = "normal", outcome: str = "pct",
                           undefined: str = "last_observed", rule: ResponderRule | None = None,
                           covariates: Sequence[str] = (), design: Any = None,
                           keep_month: float | None = None) -> ReferenceImputation:
    """Impute one site ``m`` times under each strategy (module docstring).

    Parameters
    ----------
    derived : DataFrame
        Output of :func:`analysis.study.clinical.derive` (not modified).
    site : str
        DXA site (column ``bmd_<site>``).
    strategies : sequence of {"MAR", "J2R", "CR", "CIR", "LMCF"}
    reference : str, optional
        The group dropouts of the other groups follow (default: the design's reference, the first of
        :attr:`SiteData.levels`, e.g. placebo in a trial or the non-responders in a responder study;
        in a single-arm study the one group, so J2R, CR and CIR equal MAR).
    m : int
        Number of imputations.
    seed : int
        Seed; the site's stream is ``SeedSequence([seed, crc32(site)])`` (:func:`site_seed`), one
        child per imputation.
    draws : {"normal", "bootstrap"}
        Parameter draws (:mod:`analysis.sensitivity.imputation_draws`).
    outcome : {"pct", "change"}
        Scale of the MMRM: % change (default) or change in g/cm^2.
    undefined : {"last_observed", "exclude"}
        Strategy for undefined responder status (:func:`analysis.study.groups.assign_groups`).
    rule : ResponderRule, optional
    covariates : sequence of str
        Numeric per-patient baseline covariates added to the MMRM.
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).
    keep_month : float, optional
        Keep the completed values of this visit only (an analysis of the endpoint needs no other):
        ``m x n`` numbers per strategy instead of ``m x n x visits`` (500 imputations of 50,000
        patients at three post-baseline visits: 0.6 GB); the same numbers.

    Returns
    -------
    ReferenceImputation
    """
    strategies = tuple(strategies)
    check_imputation_args(m, draws, reference, strategies)
    data = site_data(derived, site, undefined, rule, outcome, covariates, design)
    reference = data.levels[0] if reference is None else reference
    check_imputation_args(m, draws, reference, strategies, data.levels)
    engine = ParameterDraws(data, draws)
    ref_code = data.levels.index(reference)
    x_ref = data.design(ref_code)
    n, k = data.y.shape
    keep = slice(None) if keep_month is None else slice(data.visit_index(keep_month), data.visit_index(keep_month) + 1)
    values = {s: np.empty((int(m), n, k if keep_month is None else 1)) for s in strategies}
    last = data.last
    betas, sigmas = [], []
    for l, child in enumerate(site_seed(seed, site).spawn(int(m))):
        rng = np.random.default_rng(child)
        beta, sigma = engine.draw(rng)
        z = rng.standard_normal((n, k))
        own, ref = engine.x @ beta, x_ref @ beta
        conditionals = conditional_normals(engine.patterns, sigma)
        for s in strategies:
            values[s][l] = fill_missing(data.y, strategy_means(own, ref, last, s), conditionals, z)[:, keep]
        betas.append(beta)
        sigmas.append(sigma)
    return ReferenceImputation(data=data, strategies=strategies, reference=reference, values=values,
                               beta=np.asarray(betas), sigma=np.asarray(sigmas), fit=engine.fit, m=int(m),
                               seed=int(seed), draws=draws, notes=engine.notes,
                               kept_month=None if keep_month is None else float(keep_month))
