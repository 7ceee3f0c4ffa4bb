r"""The Bayesian analysis of each simulated study: the trajectory LMM compiled once, refitted per study.

The ``bayes`` analysis of a power study fits the trajectory LMM (:mod:`models.trajectory`,
marginal parameterisation) to every simulated data set. The model is built and compiled once per
worker process and site (:class:`BayesRefitter`, a thin layer over
:class:`analysis.engine.refit.Refitter`); each later study swaps its data in and samples the same
compiled model. :func:`bayes_row` turns one refit into a raw result row: the posterior of
``estimand`` (default ``diff_pct_change_end``, the difference in % change to the design's endpoint,
percentage points; for a single arm the group's ``pct_change_end``; its mean, SD and quantiles,
:math:`P(\Delta > 0 \mid y)`, :math:`P(\Delta < 0 \mid y)`, :math:`P(|\Delta| < r \mid y)`) and the
convergence diagnostics. The decision rules on these rows are in :mod:`analysis.power.summary`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.power.design import SITES
from analysis.power.settings import PowerSettings
from models.trajectory import TrajectoryPriors

__all__ = ["SUMMARY_VARS", "BayesRefit", "BayesRefitter", "bayes_contrast_rows", "bayes_row"]

#: Posterior variables a power refit reads (and diagnoses), those the model has (a single arm has no
#: ``diff_*``).
SUMMARY_VARS = ("b", "sd_patient", "corr_patient", "sigma", "baseline_mean", "change_end",
                "pct_change_end", "diff_change_end", "diff_pct_change_end")


@dataclass
class BayesRefit:
    """Draws of the reported quantities from one refit, its diagnostics and timings.

    Attributes
    ----------
    draws : dict of str to ndarray
        ``(chain, draw, ...)`` arrays of :data:`SUMMARY_VARS`.
    diagnostics : analysis.engine.sampling.Diagnostics
        R-hat, bulk/tail ESS over the reported variables (patient effects are not drawn in power
        refits), divergences, E-BFMI and the verdict.
    seconds, compile_seconds : float
        Wall time of the refit; compilation (zero unless this refit compiled).
    sample_seconds : float
        Wall time inside ``nutpie.sample``.
    """

    draws: dict[str, np.ndarray]
    diagnostics: Any
    seconds: float
    compile_seconds: float
    sample_seconds: float = float("nan")


class BayesRefitter:
    """The trajectory LMM of one site, built and compiled once, refitted to one data set after another.

    A thin layer over :class:`analysis.engine.refit.Refitter`: the first :meth:`fit` builds
    :func:`models.trajectory.build_trajectory_model` (marginal parameterisation: no parameter
    depends on the number of patients) and compiles it; every later fit swaps the data with the
    model's ``set_data`` and samples the same compiled model. The draws equal
    :func:`analysis.engine.sampling.sample`'s for the same data and seed; only :data:`SUMMARY_VARS` are
    read (no arviz ``DataTree``, no patient effects, no pointwise log-likelihood).

    Parameters
    ----------
    site : str
        A site of the twin (:data:`~analysis.power.design.SITES`), or any site with ``levels``.
    draws, tune, chains, target_accept, cores : sampler settings
    priors : TrajectoryPriors, optional
    thresholds : analysis.engine.sampling.Thresholds, optional
    levels : tuple of str, optional
        The group levels of a design from data, the reference first, read from the frame's
        ``group`` column (default: the twin's 0/1 ``responder``).
    endpoint_month : float, optional
        The month of ``change_end`` and its relatives (default: the model's).
    """

    def __init__(self, site: str, *, draws: int = 1000, tune: int = 1000, chains: int = 4,
                 target_accept: float = 0.9, cores: int = 1, priors: TrajectoryPriors | None = None,
                 thresholds: Any = None, levels: tuple[str, ...] | None = None,
                 endpoint_month: float | None = None) -> None:
        if levels is None and site not in SITES:
            raise ValueError(f"site must be one of {SITES}, got {site!r}")
        self.levels = None if levels is None else tuple(levels)
        self.endpoint_month = endpoint_month
        self.site, self.draws, self.tune, self.chains = site, int(draws), int(tune), int(chains)
        self.target_accept, self.cores = float(target_accept), int(cores)
        self.priors = priors or TrajectoryPriors()
        self.thresholds = thresholds
        self.refitter: Any = None
        self.n_fits = 0
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The trajectory model (``None`` before the first fit)."""
        return None if self.refitter is None else self.refitter.model

    @property
    def n_compiles(self) -> int:
        """Compilations so far (at most 1 for the marginal model)."""
        return 0 if self.refitter is None else self.refitter.n_compiles

    def _frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        col = f"bmd_{self.site}"
        if col not in frame.columns:
            frame = frame.assign(**{col: frame["bmd"]})
        return frame[["patient_id", "month", col, "responder" if self.levels is None else "group"]]

    def fit(self, frame: pd.DataFrame, seed: int) -> BayesRefit:
        """Refit to ``frame`` with sampler seed ``seed``.

        ``frame`` is a :func:`~analysis.power.frames.power_frame`, or any frame with
        ``patient_id``, ``month``, ``bmd_<site>`` and a 0/1 ``responder``.
        """
        from analysis.engine.refit import Refitter
        from models.trajectory import build_trajectory_model

        with self._lock:
            df = self._frame(frame)
            data: Any = df
            if self.refitter is None:
                kw: dict[str, Any] = {} if self.levels is None else {"levels": self.levels, "group_column": "group"}
                if self.endpoint_month is not None:
                    kw["endpoint_month"] = float(self.endpoint_month)
                model = build_trajectory_model(df, self.site, priors=self.priors, **kw)
                names = set(model.pymc_model.named_vars)
                self.refitter = Refitter(model, draws=self.draws, tune=self.tune, chains=self.chains,
                                         cores=self.cores, target_accept=self.target_accept,
                                         var_names=[v for v in SUMMARY_VARS if v in names],
                                         thresholds=self.thresholds)
                data = None  # built with these data
            self.refitter.cores = self.cores
            r = self.refitter.refit(data, seed)
            self.n_fits += 1
            return BayesRefit(draws=r.draws, diagnostics=r.diagnostics, seconds=r.seconds,
                              compile_seconds=r.compile_seconds, sample_seconds=r.sample_seconds)


# one compiled model per worker process, site and sampler settings (kept between chunks)
_REFITTERS: dict[tuple, BayesRefitter] = {}
_REFITTERS_LOCK = threading.Lock()


def _refitter(site: str, settings: PowerSettings, cores: int, levels: tuple[str, ...] | None = None,
              endpoint_month: float | None = None) -> BayesRefitter:
    key = (site, settings.draws, settings.tune, settings.chains, settings.target_accept,
           json.dumps(asdict(settings.priors or TrajectoryPriors()), sort_keys=True), levels, endpoint_month)
    with _REFITTERS_LOCK:
        r = _REFITTERS.get(key)
        if r is None:
            r = _REFITTERS[key] = BayesRefitter(site, draws=settings.draws, tune=settings.tune,
                                                chains=settings.chains, target_accept=settings.target_accept,
                                                cores=cores, priors=settings.priors, levels=levels,
                                                endpoint_month=endpoint_month)
        r.cores = cores
        return r


def _summary(x: np.ndarray, rope: float, refit: BayesRefit) -> dict[str, Any]:
    q = np.quantile(x, [0.025, 0.05, 0.5, 0.95, 0.975])
    d = refit.diagnostics
    return {"estimate": float(x.mean()), "se": float(x.std(ddof=1)), "q025": q[0], "q05": q[1], "q50": q[2],
            "q95": q[3], "q975": q[4], "p_gt_0": float((x > 0).mean()), "p_lt_0": float((x < 0).mean()),
            "p_in_rope": float((np.abs(x) < rope).mean()), "rope": rope,
            "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail,
            "divergences": float(d.n_divergences), "min_ebfmi": float(min(d.ebfmi)) if d.ebfmi else np.nan,
            "diag_passed": bool(d.passed), "diag_failures": "; ".join(d.failed_checks),
            "sample_seconds": refit.seconds}


def bayes_row(frame: pd.DataFrame, site: str, settings: PowerSettings, seed: int, cores: int,
              endpoint_month: float | None = None) -> dict[str, Any]:
    """Refit this process's compiled model of ``site`` to ``frame`` and summarise the posterior.

    Parameters
    ----------
    frame : DataFrame
        A :func:`~analysis.power.frames.power_frame`.
    site : str
    settings : PowerSettings
        Sampler settings, estimand and ROPE.
    seed : int
        Sampler seed.
    cores : int
        nutpie threads.
    endpoint_month : float, optional
        The endpoint of ``settings.estimand`` (default: the model's).

    Returns
    -------
    dict
        Posterior mean (``estimate``) and SD (``se``) of ``settings.estimand``, its 2.5/5/50/95/97.5 %
        quantiles, ``p_gt_0``, ``p_lt_0``, ``p_in_rope`` and ``rope``, the diagnostics
        (``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ``min_ebfmi``,
        ``diag_passed``, ``diag_failures``) and ``sample_seconds``.
    """
    refit = _refitter(site, settings, cores, endpoint_month=endpoint_month).fit(frame, seed)
    return _summary(refit.draws[settings.estimand].ravel(), settings.rope_for(site), refit)


def bayes_contrast_rows(frame: pd.DataFrame, site: str, levels: tuple[str, ...], settings: PowerSettings, seed: int,
                        cores: int, endpoint_month: float) -> list[tuple[int, dict[str, Any]]]:
    """A design from data: refit the K-group trajectory LMM (levels from the frame's ``group``) and
    summarise ``settings.estimand`` per contrast (``(k, row)`` for level ``k`` against the reference;
    a single arm: ``(0, row)`` of the group's ``pct_change_end`` or ``change_end`` against 0)."""
    refit = _refitter(site, settings, cores, levels, endpoint_month).fit(frame, seed)
    rope = settings.rope_for(site)
    if len(levels) == 1:
        x = refit.draws[settings.estimand.removeprefix("diff_")]
        return [(0, _summary(x.reshape(-1), rope, refit))]
    x = refit.draws[settings.estimand]
    x = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x.reshape(-1, 1)
    return [(k, _summary(x[:, k - 1], rope, refit)) for k in range(1, len(levels))]
