"""How each simulated study is analysed and judged: :class:`PowerSettings`.

The settings hold the frequentist level, the Bayesian decision thresholds (posterior probability,
region of practical equivalence) and the sampler settings of the Bayesian refits. Only the sampler
settings, the estimand and the priors determine the raw results (:meth:`PowerSettings.key_dict`);
the thresholds are applied afterwards (:mod:`analysis.power.summary`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from models.trajectory import TrajectoryPriors

__all__ = ["ESTIMANDS", "PowerSettings"]

#: Posterior quantities the Bayesian decision rules can judge.
ESTIMANDS = ("diff_pct_change_end", "diff_change_end")
_FORMER_NAMES = {"diff_pct_change_12m": "diff_pct_change_end", "diff_change_12m": "diff_change_end"}


@dataclass(frozen=True)
class PowerSettings:
    """How each simulated study is analysed and judged.

    Parameters
    ----------
    alpha : float
        Two-sided level of the frequentist tests.
    prob : float
        Posterior-probability threshold of the Bayesian rule.
    rope : float, optional
        ROPE half-width in percentage points (``None``: the site's DXA least significant change).
    draws, tune, chains, target_accept : Bayesian sampler settings per refit (nutpie).
    cores : int, optional
        nutpie threads per refit (``None``: automatic). Does not change any result.
    estimand : {"diff_pct_change_end", "diff_change_end"}
        Posterior quantity the Bayesian rules judge: the difference (level - reference) in % change
        or change (g/cm^2) to the design's endpoint (:mod:`models.trajectory`; for a single arm the
        group's ``pct_change_end`` / ``change_end``). The former names ``diff_pct_change_12m`` and
        ``diff_change_12m`` are read as these.
    direction : {"greater", "less"}
        Sign of the hypothesised difference (level minus reference).
    priors : TrajectoryPriors, optional
        Priors of the Bayesian LMM (default ``TrajectoryPriors()``).
    """

    alpha: float = 0.05
    prob: float = 0.95
    rope: float | None = None
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    cores: int | None = None
    estimand: Literal["diff_pct_change_end", "diff_change_end"] = "diff_pct_change_end"
    direction: Literal["greater", "less"] = "greater"
    priors: TrajectoryPriors | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0.5 <= self.prob < 1.0:
            raise ValueError(f"prob must be in [0.5, 1), got {self.prob}")
        if self.rope is not None and not self.rope >= 0:
            raise ValueError(f"rope must be non-negative, got {self.rope}")
        if min(self.draws, self.tune, self.chains) < 1:
            raise ValueError("draws, tune and chains must be positive")
        if self.chains < 2:
            raise ValueError("the Bayesian diagnostics (R-hat) need at least 2 chains")
        if self.cores is not None and self.cores < 1:
            raise ValueError(f"cores must be positive, got {self.cores}")
        object.__setattr__(self, "estimand", _FORMER_NAMES.get(self.estimand, self.estimand))
        if self.estimand not in ESTIMANDS:
            raise ValueError(f"estimand must be one of {', '.join(ESTIMANDS)}, got {self.estimand!r}")
        if self.direction not in ("greater", "less"):
            raise ValueError(f"direction must be 'greater' or 'less', got {self.direction!r}")

    def rope_for(self, site: str) -> float:
        """ROPE half-width at ``site``: ``rope``, else the site's DXA least significant change
        (:data:`analysis.bayes.posterior.LSC_PCT`; a site without one: the largest there) in
        percentage points, or 0 g/cm^2 for ``diff_change_end``."""
        if self.rope is not None:
            return float(self.rope)
        from analysis.bayes.posterior import LSC_PCT

        if self.estimand != "diff_pct_change_end":
            return 0.0
        return float(LSC_PCT.get(site, max(LSC_PCT.values())))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (``priors`` filled in with the defaults when ``None``)."""
        d = asdict(self)
        d["priors"] = asdict(self.priors or TrajectoryPriors())
        return d

    def key_dict(self) -> dict[str, Any]:
        """What determines the raw results (``alpha``, ``prob`` and ``cores`` do not)."""
        d = asdict(self)
        for k in ("alpha", "prob", "cores", "direction"):
            d.pop(k)
        d["priors"] = asdict(self.priors or TrajectoryPriors())
        return d
