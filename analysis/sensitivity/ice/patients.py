r"""One DXA site's patients with their intercurrent events and the strategy each one's ICE gets.

A patient :math:`i` of :class:`~analysis.sensitivity.site_data.SiteData` (post-baseline outcomes
:math:`y_{i1}, \dots, y_{im}` at the nominal visits) may have one intercurrent event (ICE) whose
*first affected visit* is :math:`k_i \in \{1, \dots, m\}` (:math:`k_i = m + 1`: no ICE); the visits
:math:`j \ge k_i` are *post-ICE*. The estimand says how each ICE is handled (ICH E9(R1)); per
patient that is a *handling* and an *imputation strategy* (rbmi's names):

=======================  ========================================  ===================================  ==============
handling                 post-ICE observed values                  imputation model fit                 missing values
=======================  ========================================  ===================================  ==============
``rbmi`` (``MAR`` ...)   kept in the analysis (rbmi's convention)  pre-ICE only (all, for ``MAR``)      the strategy
``hypothetical``         discarded (what would have been)          pre-ICE only (all, for ``MAR``)      the strategy
``treatment_policy``     kept (retrieved dropouts)                 all, with an off-treatment term      MAR
``while_on_treatment``   replaced by the last on-treatment value   pre-ICE only                         MAR (pre-ICE)
=======================  ========================================  ===================================  ==============

so that, with :math:`O_i` the observed visits kept in the analysis, the values that *enter the
imputation model* are :math:`F_i = O_i \cap \{j < k_i\}` for a non-MAR strategy or a
while-on-treatment ICE and :math:`F_i = O_i` otherwise (rbmi's ``is_mar``), and the values to
*impute* are the visits not in :math:`O_i`. Intermittent missing values before the ICE are imputed
with the own-group mean before :math:`k_i` (MAR) under every strategy but CR, which copies the
reference's whole profile (as rbmi).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from analysis.sensitivity.site_data import SiteData

__all__ = ["HANDLINGS", "IMPUTATION_STRATEGIES", "IcePatients", "normalise_strategy"]

#: rbmi's imputation strategies (``J2R`` is accepted as an alias of ``JR``).
IMPUTATION_STRATEGIES = ("MAR", "JR", "CR", "CIR", "LMCF")
HANDLINGS = ("rbmi", "hypothetical", "treatment_policy", "while_on_treatment")


def normalise_strategy(name: str) -> str:
    """rbmi's name of an imputation strategy (``J2R`` -> ``JR``); ``ValueError`` for another name."""
    key = str(name).strip().upper()
    key = {"J2R": "JR"}.get(key, key)
    if key not in IMPUTATION_STRATEGIES:
        raise ValueError(f"unknown imputation strategy {name!r}; use one of {', '.join(IMPUTATION_STRATEGIES)}")
    return key


@dataclass(frozen=True)
class IcePatients:
    """A site's wide data with each patient's ICE, handling and imputation strategy.

    Attributes
    ----------
    data : SiteData
    ice_index : ndarray of int, shape (n,)
        0-based index :math:`k_i - 1` of the first affected post-baseline visit; ``m`` when the
        patient has no ICE.
    ice_type : ndarray of str, shape (n,)
        ``""`` without an ICE.
    strategy : ndarray of str, shape (n,)
        Imputation strategy (:data:`IMPUTATION_STRATEGIES`); ``"MAR"`` without an ICE.
    handling : ndarray of str, shape (n,)
        :data:`HANDLINGS`; ``"rbmi"`` without an ICE.
    label : str
        What the strategy set is called in tables (``"JR"``, ``"estimand"``).
    notes : tuple of str
    delta : ndarray, shape (n, m), optional
        Shift :math:`\\delta_{ij}` added to imputed post-ICE values (:meth:`with_delta`).
    """

    data: SiteData
    ice_index: np.ndarray
    ice_type: np.ndarray
    strategy: np.ndarray
    handling: np.ndarray
    label: str = "MAR"
    notes: tuple[str, ...] = field(default=())
    delta: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, m = self.data.y.shape
        for name in ("ice_index", "ice_type", "strategy", "handling"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} must have one entry per patient ({n})")
        if np.any((self.ice_index < 0) | (self.ice_index > m)):
            raise ValueError(f"ice_index must be in 0..{m}")
        bad = set(self.strategy) - set(IMPUTATION_STRATEGIES)
        if bad:
            raise ValueError(f"unknown imputation strategy {sorted(bad)[0]!r}")
        bad = set(self.handling) - set(HANDLINGS)
        if bad:
            raise ValueError(f"unknown ICE handling {sorted(bad)[0]!r}")

    @property
    def n_visits(self) -> int:
        return self.data.y.shape[1]

    @cached_property
    def post_ice(self) -> np.ndarray:
        """``(n, m)``: visit :math:`j \\ge k_i`."""
        return np.arange(self.n_visits)[None, :] >= self.ice_index[:, None]

    @cached_property
    def y(self) -> np.ndarray:
        """Outcomes kept in the analysis: post-ICE values of hypothetical and while-on-treatment
        ICEs set to ``NaN`` (the input is not modified)."""
        y = self.data.y.copy()
        drop = self.post_ice & np.isin(self.handling, ("hypothetical", "while_on_treatment"))[:, None]
        y[drop] = np.nan
        return y

    @cached_property
    def observed(self) -> np.ndarray:
        """``(n, m)``: :math:`O_i`, the observed values kept in the analysis."""
        return ~np.isnan(self.y)

    @cached_property
    def fit_mask(self) -> np.ndarray:
        """``(n, m)``: :math:`F_i`, the values that enter the imputation model (rbmi's ``is_mar``)."""
        pre_only = (self.strategy != "MAR") | (self.handling == "while_on_treatment")
        return self.observed & ~(self.post_ice & pre_only[:, None])

    @cached_property
    def carried(self) -> np.ndarray:
        """``(n, m)``: post-ICE visits of while-on-treatment ICEs (set to the last on-treatment value)."""
        return self.post_ice & (self.handling == "while_on_treatment")[:, None]

    @cached_property
    def off_treatment_months(self) -> np.ndarray:
        """``(n, m)``: months since the ICE visit's predecessor at post-ICE visits, 0 elsewhere (the
        retrieved-dropout covariate of treatment-policy ICEs, rbmi's ``time_since_ice``)."""
        months = np.concatenate([[0.0], self.data.months])
        start = months[self.ice_index]  # month of the last pre-ICE visit (0: baseline)
        out = np.where(self.post_ice, self.data.months[None, :] - start[:, None], 0.0)
        return np.where((self.handling == "treatment_policy")[:, None], out, 0.0)

    @cached_property
    def has_retrieved(self) -> bool:
        """Whether any treatment-policy patient has an observed post-ICE value."""
        return bool((self.observed & (self.off_treatment_months > 0)).any())

    def with_delta(self, rules: Sequence[Any]) -> IcePatients:
        """A copy with :math:`\\delta_{ij}` = the sum of the ``value`` of every rule whose ``visit``
        (month), ``group`` (level) and ``ice_type`` match (an unset field matches all), at post-ICE visits.

        ``rules`` are objects or mappings with ``value`` and optional ``visit``, ``group``, ``ice_type``.
        """
        d = self.data
        delta = np.zeros(d.y.shape)
        for r in rules:
            get = (lambda k, r=r: r.get(k)) if isinstance(r, dict) else (lambda k, r=r: getattr(r, k, None))
            hit = self.post_ice.copy()
            if get("visit") is not None:  # a visit this site does not have: the rule shifts nothing here
                hit &= np.isclose(d.months, float(get("visit")))[None, :]
            if get("group") is not None:
                if get("group") not in d.levels:
                    raise ValueError(f"delta group {get('group')!r} is not a group of the design "
                                     f"({', '.join(d.levels)})")
                hit &= (d.group == d.levels.index(get("group")))[:, None]
            if get("ice_type") is not None:
                hit &= (self.ice_type == str(get("ice_type")))[:, None]
            delta += np.where(hit, float(get("value")), 0.0)
        return replace(self, delta=delta if np.any(delta) else None)

    def with_strategy(self, strategy: str, label: str | None = None) -> IcePatients:
        """Every ICE handled by rbmi's ``strategy`` (the ``--strategy`` override of a sensitivity run)."""
        s = normalise_strategy(strategy)
        has = self.ice_index < self.n_visits
        return IcePatients(self.data, self.ice_index, self.ice_type,
                           np.where(has, s, "MAR").astype(object),
                           np.full(self.ice_index.shape, "rbmi", dtype=object), label or s, self.notes, self.delta)

    @classmethod
    def from_simulation(cls, sim: dict, strategy: str, site: str = "spine",
                        levels: tuple[str, str] = ("placebo", "active")) -> IcePatients:
        """The patients of a wide simulated trial (:func:`models.simulate_ice.simulate_ice_trial`: ``y``,
        ``baseline``, ``group``, ``ice_index``, ``months``), every event under rbmi's ``strategy``."""
        n, m = sim["y"].shape
        data = SiteData(site=site, outcome="change", ids=np.array([f"P{i:04d}" for i in range(n)]),
                        months=np.asarray(sim["months"], dtype=float), y=sim["y"], baseline=sim["baseline"],
                        group=np.asarray(sim["group"], dtype=int), levels=tuple(levels),
                        covariates=np.zeros((n, 0)), covariate_names=())
        ice_index = np.asarray(sim["ice_index"], dtype=int)
        has = ice_index < m
        s = normalise_strategy(strategy)
        return cls(data, ice_index, np.where(has, "discontinued", "").astype(object),
                   np.where(has, s, "MAR").astype(object), np.full(n, "rbmi", dtype=object), s)

    @classmethod
    def from_table(cls, data: SiteData, ice: dict[str, tuple[float, str, str, str]] | None,
                   label: str = "estimand", notes: tuple[str, ...] = ()) -> IcePatients:
        """From ``{patient_id: (first affected month, ice_type, handling, strategy)}``.

        A patient of ``ice`` absent from ``data`` (no baseline at this site) is ignored; a month
        that is not a post-baseline visit of the site is mapped to the first visit at or after it
        (none: no post-ICE visit at this site).
        """
        n, m = data.y.shape
        ice_index = np.full(n, m, dtype=int)
        ice_type = np.full(n, "", dtype=object)
        strategy = np.full(n, "MAR", dtype=object)
        handling = np.full(n, "rbmi", dtype=object)
        pos = {str(p): i for i, p in enumerate(data.ids)}
        for pid, (month, kind, how, strat) in (ice or {}).items():
            i = pos.get(str(pid))
            if i is None:
                continue
            ice_index[i] = int(np.searchsorted(data.months, float(month) - 1e-9))
            if ice_index[i] == m:  # the event falls after this site's last visit: no post-ICE visit here
                continue
            ice_type[i] = str(kind)
            handling[i] = how
            strategy[i] = normalise_strategy(strat)
        return cls(data, ice_index, ice_type, strategy, handling, label, tuple(notes))
