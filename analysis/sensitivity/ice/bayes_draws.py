r"""Bayesian multiple imputation's parameter draws (rbmi's ``method_bayes``): one posterior draw of
the imputation MMRM per imputation.

The imputation model (:mod:`models.imputation_mmrm`) is the MMRM

.. math::

    y_{i, S_i} \sim \mathrm{MVN}\bigl(X_{i, S_i}\beta,\ \Sigma_{S_i S_i}\bigr)

on the values that enter the likelihood, with a generic design :math:`X_i` (visits by
coefficients), an unstructured :math:`\Sigma` and weakly informative priors set from the data's
scale (unit-information normal prior on :math:`\beta`, half-normal visit SDs, LKJ(1)
correlations; see that module). :func:`mmrm_posterior_draws` samples its posterior with
:func:`analysis.engine.sampling.sample` (nutpie) and returns :math:`S` draws
:math:`(\beta_l, \Sigma_l)`, :math:`l = 1, \dots, S`, spread evenly over the post-warmup draws
of all chains, so that each imputation uses its own draw, as Rubin's rules require of a *proper*
imputation.

Draws and thinning
------------------
The chains are concatenated (chain 0's draws first, in sampling order) into :math:`T` draws,
and draw :math:`l` (:math:`l = 1, \dots, S`) is number :math:`\lfloor l T / S \rfloor`
(1-based) of that sequence: evenly spaced, the last one of each block of :math:`T/S`, every
chain contributing equally. Without ``thin``, each chain runs
:math:`\lceil \max(3S,\ 1000\,C) / C \rceil` draws (:math:`C` chains), so the retained draws are
at least 3 apart and the diagnostics rest on at least 1000 draws per chain; with ``thin``
:math:`= k`, each chain runs :math:`\lceil kS / C \rceil` draws and every :math:`k`-th is kept.
The same data, seed and settings give identical draws.

Diagnostics
-----------
The engine's :class:`~analysis.engine.diagnostics.Diagnostics` over :math:`\beta`, the visit SDs
and the correlations: rank-normalised split R-hat :math:`\le 1.01`, no divergences, E-BFMI
:math:`\ge 0.3`, tail ESS :math:`\ge 100\,C` and bulk ESS :math:`\ge \max(100\,C, S)` (100 per
chain as recommended by Vehtari et al. 2021 for reliable R-hat and quantiles, and at least as
many effective draws as retained ones, so the :math:`S` draws are close to independent and the
between-imputation variance is not understated). A failing check does not raise: ``ok`` is
false and ``message`` says which check failed (more ``tune``, a larger ``thin`` or more chains
usually help).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.engine.diagnostics import Thresholds
from analysis.engine.sampling import sample
from models.imputation_mmrm import ImputationMmrmPriors, build_imputation_mmrm

__all__ = ["MIN_DRAWS_PER_CHAIN", "PosteriorDraws", "draw_thresholds", "mmrm_posterior_draws",
           "retained_indices"]

#: Post-warmup draws per chain at least, when ``thin`` is not given.
MIN_DRAWS_PER_CHAIN = 1000
#: Retained draws are at least this far apart, when ``thin`` is not given.
DEFAULT_MIN_THIN = 3


@dataclass(frozen=True)
class PosteriorDraws:
    r"""Posterior draws of the imputation MMRM, one per imputation.

    Attributes
    ----------
    beta : ndarray, (S, p)
        :math:`\beta_l`.
    sigma : ndarray, (S, m, m)
        :math:`\Sigma_l` (symmetric positive definite).
    diagnostics : dict
        ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` (float), ``divergences`` (int),
        ``ok`` (bool: every check passed), ``message`` (str: the verdict and, on failure, what
        to change), and the run: ``failures`` (list of str), ``min_ebfmi``, ``chains``,
        ``draws_per_chain``, ``tune``, ``thin`` (mean spacing of the retained draws), ``seed``,
        ``compile_seconds``, ``sample_seconds``.
    """

    beta: np.ndarray
    sigma: np.ndarray
    diagnostics: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.beta.shape[0])


def retained_indices(total: int, n_samples: int, thin: int | None = None) -> np.ndarray:
    r"""Positions (0-based) of the retained draws among ``total`` chain-major draws.

    ``thin=None``: :math:`\lfloor l\,T/S \rfloor - 1`, :math:`l = 1, \dots, S` (evenly spread);
    ``thin=k``: :math:`l k - 1`.
    """
    if n_samples < 1 or total < n_samples:
        raise ValueError(f"cannot retain {n_samples} of {total} draws")
    k = np.arange(1, n_samples + 1)
    if thin is None:
        return (k * total) // n_samples - 1
    if thin * n_samples > total:
        raise ValueError(f"{n_samples} draws thinned by {thin} need {thin * n_samples} draws, "
                         f"got {total}")
    return k * thin - 1


def draw_thresholds(n_samples: int, chains: int) -> Thresholds:
    """The verdict's pass marks (module docstring, *Diagnostics*)."""
    per_chain = 100.0 * chains
    return Thresholds(rhat_max=1.01, ess_bulk_min=max(per_chain, float(n_samples)),
                      ess_tail_min=per_chain, divergences_max=0, ebfmi_min=0.3)


def mmrm_posterior_draws(
    x: Any,
    y: Any,
    mask: Any,
    n_samples: int,
    seed: int,
    *,
    chains: int = 2,
    tune: int = 500,
    thin: int | None = None,
    priors: ImputationMmrmPriors | None = None,
    thresholds: Thresholds | None = None,
) -> PosteriorDraws:
    r"""Draw :math:`(\beta, \Sigma)` of the imputation MMRM from its posterior by MCMC.

    Parameters
    ----------
    x : array_like, (n, m, p)
        Row ``j`` of ``x[i]``: the covariates of patient ``i`` at visit ``j``.
    y : array_like, (n, m)
        Values, NaN where not used.
    mask : array_like of bool, (n, m)
        The values that enter the likelihood (e.g. observed and not after an intercurrent
        event handled by imputation).
    n_samples : int
        :math:`S`, the number of draws returned (one per imputation).
    seed : int
        Same data, seed and settings => identical draws.
    chains : int
        MCMC chains (run in parallel, two at a time).
    tune : int
        Warm-up draws per chain (discarded).
    thin : int, optional
        Keep every ``thin``-th draw of the concatenated chains; default: spread :math:`S` draws
        evenly over at least :math:`\max(3S, 1000\,C)` draws (module docstring).
    priors : ImputationMmrmPriors, optional
        Default ``ImputationMmrmPriors()`` (:mod:`models.imputation_mmrm`).
    thresholds : Thresholds, optional
        Pass marks of ``diagnostics["ok"]``; default :func:`draw_thresholds`.

    Returns
    -------
    PosteriorDraws
        ``beta`` (S, p), ``sigma`` (S, m, m) in chain-major sampling order, and the
        diagnostics; a failed check sets ``diagnostics["ok"] = False`` and explains itself in
        ``diagnostics["message"]`` (no exception).

    Raises
    ------
    ValueError
        Invalid settings or data (:func:`models.imputation_mmrm.prepare_imputation_mmrm_data`).
    """
    n_samples, chains, tune = int(n_samples), int(chains), int(tune)
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if chains < 1 or tune < 1:
        raise ValueError(f"chains and tune must be positive, got {chains} and {tune}")
    if thin is not None:
        thin = int(thin)
        if thin < 1:
            raise ValueError(f"thin must be positive, got {thin}")
        draws = math.ceil(thin * n_samples / chains)
    else:
        draws = math.ceil(max(DEFAULT_MIN_THIN * n_samples, MIN_DRAWS_PER_CHAIN * chains) / chains)
    thresholds = thresholds if thresholds is not None else draw_thresholds(n_samples, chains)

    model = build_imputation_mmrm(x, y, mask, priors=priors)
    fit = sample(model, draws=draws, tune=tune, chains=chains, seed=int(seed),
                 cores=min(chains, 2), thresholds=thresholds)
    post = fit.posterior["posterior"]
    beta_all = np.asarray(post["beta"].transpose("chain", "draw", "coef").values, dtype=float)
    sigma_all = np.asarray(post["Sigma"].transpose("chain", "draw", "visit", "visit_col").values,
                           dtype=float)
    total = chains * draws
    beta_all = beta_all.reshape(total, beta_all.shape[-1])
    sigma_all = sigma_all.reshape(total, *sigma_all.shape[-2:])
    idx = retained_indices(total, n_samples, thin)
    beta = np.ascontiguousarray(beta_all[idx])
    sigma = sigma_all[idx]
    sigma = 0.5 * (sigma + np.swapaxes(sigma, -1, -2))

    d = fit.diagnostics
    ok = bool(d.passed)
    message = str(d)
    if not ok:
        message = ("posterior draws of the imputation MMRM failed the convergence checks ("
                   + "; ".join(d.failures) + "); increase tune, thin or chains. " + message)
    diagnostics = {
        "max_rhat": float(d.max_rhat),
        "min_ess_bulk": float(d.min_ess_bulk),
        "min_ess_tail": float(d.min_ess_tail),
        "divergences": int(d.n_divergences),
        "ok": ok,
        "message": message,
        "failures": list(d.failures),
        "min_ebfmi": float(min(d.ebfmi)) if d.ebfmi else float("nan"),
        "chains": chains,
        "draws_per_chain": draws,
        "tune": tune,
        "thin": float(thin) if thin is not None else total / n_samples,
        "seed": int(seed),
        "compile_seconds": float(fit.timings["compile"]),
        "sample_seconds": float(fit.timings["sample"]),
    }
    return PosteriorDraws(beta=beta, sigma=sigma, diagnostics=diagnostics)
