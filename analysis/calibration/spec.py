r"""What a calibration study checks: the :class:`Estimator` spec and its data-set seeds.

An estimator is a pair of plain functions, ``simulate(rng) -> (data, truth)`` (one data set with
its known true value) and ``fit(data) -> (estimate, se, ci_low, ci_high)`` (the method under test
with its nominal 95% interval), plus the design it is meant for. Data set :math:`r` of estimator
``e`` in a study with root seed :math:`s` is simulated from

.. math::

    \texttt{SeedSequence}([s,\ \operatorname{crc32}(\text{stream}_e),\ r]),

where the stream is the estimator's name unless it names a shared one (estimators on the same
stream see the *same* data sets: common random numbers for side-by-side comparisons such as
Satterthwaite vs Kenward-Roger). So a result depends on :math:`(s, e, r)` only, never on the
order, the chunking or the worker that ran it. The registry is :mod:`analysis.calibration.registry`.

Compiled-once refits (Bayesian estimators, later): ``setup()`` returns a state (a compiled model)
that a worker process builds once and passes to every ``fit(data, state)`` it runs.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FAMILIES", "Estimator", "dataset_rng"]

#: Estimator families, in table order.
FAMILIES = ("frequentist", "type I error", "reference-based", "bayesian", "sensitivity")


@dataclass(frozen=True)
class Estimator:
    """One method under calibration.

    Attributes
    ----------
    name : str
        Unique key (``--estimators``), e.g. ``"lmm_satterthwaite"``.
    family : str
        One of :data:`FAMILIES` (table grouping).
    simulate : callable
        ``simulate(rng: numpy.random.Generator) -> (data, truth)``; ``truth`` a float.
    fit : callable
        ``fit(data) -> (estimate, se, ci_low, ci_high)`` (the nominal 95% interval), or
        ``fit(data, state)`` when ``setup`` is given. An exception is a failed fit (recorded, not
        fatal).
    design : str
        The design the method is meant for (what ``simulate`` draws), one line.
    estimand : str
        What ``truth`` is, one line.
    notes : str
        Anything a reader of the table should know.
    expected : str
        Where the method is *known* not to reach 93-97% at this design, the reason (the verdict
        quotes it), e.g. Rubin's rules over-covering reference-based imputation.
    setup : callable, optional
        ``setup() -> state``, run once per worker process and estimator (compiled-once refits).
    stream : str, optional
        Seed stream shared with other estimators (default: ``name``).
    """

    name: str
    family: str
    simulate: Callable[[np.random.Generator], tuple[Any, float]]
    fit: Callable[..., tuple[float, float, float, float]]
    design: str
    estimand: str = ""
    notes: str = ""
    expected: str = ""
    setup: Callable[[], Any] | None = None
    stream: str | None = None

    def __post_init__(self) -> None:
        if not self.name or "," in self.name or self.name.strip() != self.name or "/" in self.name:
            raise ValueError(f"estimator name must be non-empty without spaces at the ends, ',' or '/', "
                             f"got {self.name!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")

    @property
    def seed_stream(self) -> str:
        """The stream its data sets are drawn from."""
        return self.stream or self.name


def dataset_rng(seed: int, estimator: Estimator, index: int) -> np.random.Generator:
    """The generator of data set ``index`` of ``estimator`` in a study with root ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(
        [int(seed), zlib.crc32(estimator.seed_stream.encode()), int(index)]))
