r"""Simulation-based calibration (SBC; Talts et al. 2018) of the trajectory LMM and the Bayesian MMRM
with their default priors.

For simulation :math:`k = 1, \dots, N`:

1. draw :math:`\tilde\theta_k \sim p(\theta)` from the model's own prior
   (:func:`analysis.engine.prior_predictive.prior_predictive_sampler` on the built model);
2. simulate data :math:`\tilde y_k \sim p(y \mid \tilde\theta_k)` from the model's likelihood on a
   fixed design (the patients, arms, visit times, dropout and, for the MMRM, baselines of one
   trial of :func:`analysis.calibration.designs.simulate_trial_frame`);
3. fit the model (compiled once, :class:`analysis.engine.refit.Refitter`) and keep :math:`L`
   posterior draws :math:`\theta^{(1)}, \dots, \theta^{(L)}` evenly thinned from the pooled
   chains;
4. record, for each key parameter :math:`f(\theta)`, the rank

   .. math::

       r_k = \sum_{l=1}^{L} \mathbb{1}\bigl[f(\theta^{(l)}) < f(\tilde\theta_k)\bigr]
       \in \{0, \dots, L\}.

If the sampler draws from the exact posterior, :math:`r_k` is uniform on :math:`\{0, \dots, L\}`
(the data-averaged posterior equals the prior). :func:`rank_uniformity` bins the ranks into
:math:`B` bins and tests uniformity with Pearson's

.. math::

    X^2 = \sum_{b=1}^{B} \frac{(n_b - N p_b)^2}{N p_b} \sim \chi^2_{B-1},

:math:`p_b` the share of the :math:`L + 1` rank values that fall in bin :math:`b`;
:func:`rank_histogram` draws the histograms with the 99% band of a uniform bin count.

Ranked parameters (those whose prior does not depend on the data; the *locations* ``b[intercept]``
and the MMRM's placebo LS-means have a prior centred on the observed mean, an empirical-Bayes
choice under which SBC is not exact, so they are drawn but not ranked):

* ``lmm``: ``b[time]``, ``b[active]``, ``b[time:active]`` (the slope difference),
  ``sd_patient[intercept]``, ``sd_patient[slope]``, ``corr_patient``, ``sigma``;
* ``mmrm``: ``diff_change_end`` (month 24), ``baseline_coef``, ``sd_visit[24]``,
  ``corr_visit[12:24]``.

:func:`run_sbc` runs it; ``tests/benchmarks/calibration/run_sbc.py`` runs the full study.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.calibration.designs import ENDPOINT, simulate_trial_frame
from analysis.calibration.estimators_bayes import LEVELS, SAMPLER, bayes_frame

__all__ = ["SBC_MODELS", "SbcResult", "rank_histogram", "rank_uniformity", "run_sbc", "sbc_rank", "thin"]

#: Models :func:`run_sbc` knows.
SBC_MODELS = ("lmm", "mmrm")
#: Design seed of the fixed trial the data are simulated on.
DESIGN_SEED = 20261207


def thin(draws: np.ndarray, n: int) -> np.ndarray:
    """``n`` draws evenly spaced over the pooled ``(chain, draw)`` draws (chain after chain)."""
    x = np.asarray(draws, dtype=float).reshape(-1)
    if n > x.size:
        raise ValueError(f"cannot thin {x.size} draws to {n}")
    return x[np.linspace(0, x.size - 1, n).round().astype(int)]


def sbc_rank(truth: float, draws: np.ndarray) -> int:
    r"""Rank of ``truth`` among ``draws``: :math:`\#\{l : \theta^{(l)} < \tilde\theta\}`."""
    return int(np.sum(np.asarray(draws, dtype=float) < float(truth)))


def rank_uniformity(ranks: pd.DataFrame, n_ranks: int, bins: int = 10) -> pd.DataFrame:
    r"""Pearson's :math:`\chi^2` test of uniform ranks per parameter (module docstring).

    Parameters
    ----------
    ranks : DataFrame
        ``parameter`` and ``rank`` columns (NaN ranks of failed fits are dropped).
    n_ranks : int
        :math:`L`; ranks are in :math:`0, \dots, L`.
    bins : int
        :math:`B` (at most :math:`L + 1`).

    Returns
    -------
    DataFrame
        ``parameter, n, bins, chi2, df, p_value`` (one row per parameter, in order of appearance).
    """
    from scipy import stats

    bins = int(min(bins, n_ranks + 1))
    edges = np.linspace(0, n_ranks + 1, bins + 1)
    p = np.diff(np.floor(edges)) / (n_ranks + 1)  # share of the rank values 0..L per bin
    rows = []
    for name, g in ranks.groupby("parameter", sort=False):
        r = g["rank"].dropna().to_numpy(dtype=float)
        counts = np.histogram(r, bins=np.floor(edges) - 0.5)[0]
        n = int(r.size)
        if n == 0:
            rows.append({"parameter": name, "n": 0, "bins": bins, "chi2": np.nan, "df": bins - 1, "p_value": np.nan})
            continue
        expected = n * p
        chi2 = float(np.sum((counts - expected) ** 2 / expected))
        rows.append({"parameter": name, "n": n, "bins": bins, "chi2": chi2, "df": bins - 1,
                     "p_value": float(stats.chi2.sf(chi2, bins - 1))})
    return pd.DataFrame(rows, columns=["parameter", "n", "bins", "chi2", "df", "p_value"])


@dataclass
class SbcResult:
    """Ranks of one SBC study and their uniformity tests.

    Attributes
    ----------
    model : str
        One of :data:`SBC_MODELS`.
    ranks : DataFrame
        One row per simulation and parameter: ``simulation, parameter, truth, rank`` (NaN for a
        failed fit), ``posterior_mean, n_ranks, n_divergences, max_rhat, seconds, error``.
    uniformity : DataFrame
        :func:`rank_uniformity` of ``ranks``.
    n_ranks : int
        :math:`L`.
    meta : dict
        Settings (sampler, seed, bins).
    """

    model: str
    ranks: pd.DataFrame
    uniformity: pd.DataFrame
    n_ranks: int
    meta: dict[str, Any] = field(default_factory=dict)

    def figure(self) -> Any:
        """:func:`rank_histogram` of this result."""
        return rank_histogram(self)

    def write(self, out: str | Path) -> dict[str, Path]:
        """``sbc_<model>_ranks.csv``, ``sbc_<model>_uniformity.csv`` and the rank histograms
        ``sbc_<model>_ranks.png``/``.svg`` into ``out``; returns their paths."""
        from analysis.common.io import atomic_write_text
        from analysis.figures.output import save_figure

        out = Path(out)
        stem = f"sbc_{self.model}"
        paths = {"ranks": atomic_write_text(out / f"{stem}_ranks.csv", self.ranks.to_csv(index=False)),
                 "uniformity": atomic_write_text(out / f"{stem}_uniformity.csv", self.uniformity.to_csv(index=False))}
        figs = save_figure(self.figure(), out, f"{stem}_ranks")
        paths.update({f"figure_{k}": v for k, v in figs.items()})
        return paths


def rank_histogram(result: SbcResult) -> Any:
    """Rank histograms, one panel per parameter, with the central 99% band of a bin's count under
    uniform ranks (Talts et al. 2018, figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    from analysis.figures.theme import PALETTE

    bins = int(result.uniformity["bins"].iloc[0]) if len(result.uniformity) else 10
    names = list(result.uniformity["parameter"])
    ncol = min(4, max(1, len(names)))
    nrow = int(np.ceil(len(names) / ncol)) or 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.0 * nrow), squeeze=False)
    L = result.n_ranks
    edges = np.floor(np.linspace(0, L + 1, bins + 1)) - 0.5
    for ax, (_, u) in zip(axes.flat, result.uniformity.iterrows()):
        r = result.ranks.loc[result.ranks["parameter"] == u["parameter"], "rank"].dropna().to_numpy()
        n = r.size
        lo, hi = stats.binom.ppf([0.005, 0.995], max(n, 1), 1.0 / bins)
        ax.axhspan(lo, hi, color=PALETTE["grey"], alpha=0.25, lw=0)
        ax.axhline(n / bins, color=PALETTE["black"], lw=0.8, ls="--")
        ax.hist(r, bins=edges, color=PALETTE["blue"], edgecolor="white", lw=0.5)
        ax.set_title(f"{u['parameter']}\np = {u['p_value']:.2f}" if np.isfinite(u["p_value"]) else u["parameter"],
                     fontsize=7)
        ax.set_xlim(-0.5, L + 0.5)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"SBC {result.model}: {result.meta.get('n_sims')} simulations, rank of the truth among "
                 f"L = {L} draws", fontsize=8)
    fig.tight_layout()
    return fig


# ---- the models ---------------------------------------------------------------------------------


@dataclass
class _Spec:
    build: Callable[[pd.DataFrame], Any]
    prior_vars: list[str]
    fit_vars: list[str]
    simulate: Callable[[dict[str, np.ndarray], Any, pd.DataFrame, np.random.Generator], pd.DataFrame]
    #: label -> (truth from the prior draw, posterior draws (chain, draw) from the refit draws)
    params: dict[str, tuple[Callable[[dict], float], Callable[[dict], np.ndarray]]]


def _lmm_build(design: pd.DataFrame) -> Any:
    from models.trajectory import build_trajectory_model

    return build_trajectory_model(design, "spine", levels=LEVELS, group_column="arm", time="month_actual",
                                  endpoint_month=ENDPOINT)


def _lmm_simulate(theta: dict[str, np.ndarray], model: Any, design: pd.DataFrame,
                  rng: np.random.Generator) -> pd.DataFrame:
    r""":math:`y_{ij} = b_0 + b_2 g_i + (b_1 + b_3 g_i)\,t_{ij} + u_{0i} + u_{1i} t_{ij} + e_{ij}`."""
    b, tau, rho, sigma = (np.asarray(theta[k], dtype=float) for k in ("b", "sd_patient", "corr_patient", "sigma"))
    codes, _ = pd.factorize(design["patient_id"], sort=False)
    n = int(codes.max()) + 1
    cov = np.array([[tau[0] ** 2, rho * tau[0] * tau[1]], [rho * tau[0] * tau[1], tau[1] ** 2]])
    u = rng.multivariate_normal(np.zeros(2), cov, size=n, method="cholesky")[codes]
    g = (design["arm"] == LEVELS[1]).to_numpy(dtype=float)
    t = design["month_actual"].to_numpy(dtype=float) / 12.0
    y = b[0] + b[2] * g + (b[1] + b[3] * g) * t + u[:, 0] + u[:, 1] * t + sigma * rng.standard_normal(len(design))
    return design.assign(bmd_spine=y)


def _coef(name: str) -> int:
    return ("intercept", "time", "active", "time:active").index(name)


def _lmm_spec() -> _Spec:
    params: dict[str, tuple[Callable[[dict], float], Callable[[dict], np.ndarray]]] = {}
    for c in ("time", "active", "time:active"):
        i = _coef(c)
        params[f"b[{c}]"] = (lambda th, i=i: float(th["b"][i]), lambda d, i=i: d["b"][..., i])
    for j, e in enumerate(("intercept", "slope")):
        params[f"sd_patient[{e}]"] = (lambda th, j=j: float(th["sd_patient"][j]), lambda d, j=j: d["sd_patient"][..., j])
    params["corr_patient"] = (lambda th: float(th["corr_patient"]), lambda d: d["corr_patient"])
    params["sigma"] = (lambda th: float(th["sigma"]), lambda d: d["sigma"])
    names = ["b", "sd_patient", "corr_patient", "sigma"]
    return _Spec(_lmm_build, names, names, _lmm_simulate, params)


def _mmrm_build(design: pd.DataFrame) -> Any:
    from models.mmrm import build_mmrm_model

    return build_mmrm_model(design, "spine", "abs", endpoint_month=ENDPOINT, levels=LEVELS, group_column="arm",
                            time="month")


def _mmrm_simulate(theta: dict[str, np.ndarray], model: Any, design: pd.DataFrame,
                   rng: np.random.Generator) -> pd.DataFrame:
    r"""Baselines :math:`x_i` kept; :math:`y_{iv} = \mathrm{ls}_{v g_i} + \beta (x_i - \bar x) + e_{iv}`,
    :math:`e_i \sim \mathrm{MVN}(0, \Sigma)`, BMD at visit :math:`v` = :math:`x_i + y_{iv}`."""
    ls, beta, sd, corr = (np.asarray(theta[k], dtype=float) for k in ("ls_mean", "baseline_coef", "sd_visit",
                                                                       "corr_visit"))
    visits = [float(v) for v in model.prepared.visits]
    m = len(visits)
    omega = np.eye(m)
    rows, cols = np.tril_indices(m, -1)
    omega[rows, cols] = omega[cols, rows] = corr
    cov = omega * np.outer(sd, sd)
    x_ref = float(model.prepared.x_ref)
    base = design.loc[design["month"] == 0].set_index("patient_id")["bmd_spine"]
    pids = base.index.to_numpy()
    e = rng.multivariate_normal(np.zeros(m), cov, size=len(pids), method="cholesky")
    g = design.drop_duplicates("patient_id").set_index("patient_id").loc[pids, "arm"].eq(LEVELS[1]).to_numpy(int)
    change = ls[:, g].T + beta * (base.to_numpy()[:, None] - x_ref) + e  # (patient, visit)
    wide = pd.DataFrame(base.to_numpy()[:, None] + change, index=pids, columns=visits)
    out = design.copy()
    post = out["month"] > 0
    pid, month = out.loc[post, "patient_id"].to_numpy(), out.loc[post, "month"].to_numpy(dtype=float)
    out.loc[post, "bmd_spine"] = wide.to_numpy()[wide.index.get_indexer(pid), [visits.index(v) for v in month]]
    return out


def _mmrm_spec() -> _Spec:
    params: dict[str, tuple[Callable[[dict], float], Callable[[dict], np.ndarray]]] = {
        "diff_change_end": (lambda th: float(th["ls_mean"][-1, 1] - th["ls_mean"][-1, 0]),
                            lambda d: d["diff_change_end"][..., 0]),
        "baseline_coef": (lambda th: float(th["baseline_coef"]), lambda d: d["baseline_coef"]),
        f"sd_visit[{ENDPOINT:g}]": (lambda th: float(th["sd_visit"][-1]), lambda d: d["sd_visit"][..., -1]),
        "corr_visit[12:24]": (lambda th: float(th["corr_visit"][-1]), lambda d: d["corr_visit"][..., -1]),
    }
    return _Spec(_mmrm_build, ["ls_mean", "baseline_coef", "sd_visit", "corr_visit"],
                 ["diff_change_end", "baseline_coef", "sd_visit", "corr_visit"], _mmrm_simulate, params)


_SPECS: dict[str, Callable[[], _Spec]] = {"lmm": _lmm_spec, "mmrm": _mmrm_spec}


def run_sbc(model: str, n_sims: int, *, n_ranks: int = 99, draws: int = 500, tune: int = 500, chains: int = 2,
            seed: int = 0, bins: int = 10, target_accept: float = SAMPLER["target_accept"],
            out: str | Path | None = None) -> SbcResult:
    r"""Simulation-based calibration of ``model`` with its default priors (module docstring).

    Parameters
    ----------
    model : {"lmm", "mmrm"}
    n_sims : int
        :math:`N`, the number of prior draws, data sets and fits.
    n_ranks : int
        :math:`L`, thinned posterior draws per fit (at most ``draws * chains``).
    draws, tune, chains : int
        nutpie settings per fit (one core).
    seed : int
        Root seed: prior draws, simulated data and sampler seeds follow from it.
    bins : int
        :math:`B` of the :math:`\chi^2` test and the histograms.
    target_accept : float
    out : path, optional
        Write :meth:`SbcResult.write` there.

    Returns
    -------
    SbcResult
    """
    from analysis.engine.prior_predictive import prior_predictive_sampler
    from analysis.engine.refit import compile_for_refit

    if model not in _SPECS:
        raise ValueError(f"model must be one of {SBC_MODELS}, got {model!r}")
    if n_sims < 1:
        raise ValueError(f"n_sims must be positive, got {n_sims}")
    if not 1 <= n_ranks <= draws * chains:
        raise ValueError(f"n_ranks must be in 1..draws * chains = {draws * chains}, got {n_ranks}")
    spec = _SPECS[model]()
    design = bayes_frame(simulate_trial_frame(np.random.default_rng(DESIGN_SEED)))
    built = spec.build(design)
    prior = prior_predictive_sampler(built.pymc_model, spec.prior_vars)(int(n_sims), int(seed))
    refitter = compile_for_refit(built, var_names=spec.fit_vars, draws=draws, tune=tune, chains=chains, cores=1,
                                 target_accept=target_accept)
    seeds = np.random.SeedSequence([int(seed), 0x5BC]).spawn(int(n_sims))
    rows = []
    for k in range(int(n_sims)):
        theta = {v: prior[v][k] for v in spec.prior_vars}
        truths = {name: f(theta) for name, (f, _) in spec.params.items()}
        t0 = time.perf_counter()
        rng = np.random.default_rng(seeds[k])
        err, res = "", None
        try:
            data = spec.simulate(theta, built, design, rng)
            res = refitter.refit(data, seed=int(rng.integers(2**31 - 1)))
        except Exception as exc:  # noqa: BLE001 (a failed fit is recorded, not fatal)
            err = f"{type(exc).__name__}: {exc}"
        secs = time.perf_counter() - t0
        for name, (_, post) in spec.params.items():
            row = {"simulation": k, "parameter": name, "truth": truths[name], "rank": np.nan,
                   "posterior_mean": np.nan, "n_ranks": int(n_ranks), "n_divergences": np.nan,
                   "max_rhat": np.nan, "seconds": secs, "error": err}
            if res is not None:
                x = post(res.draws)
                row.update({"rank": sbc_rank(truths[name], thin(x, n_ranks)), "posterior_mean": float(np.mean(x)),
                            "n_divergences": int(res.diagnostics.n_divergences),
                            "max_rhat": float(res.diagnostics.max_rhat)})
            rows.append(row)
    ranks = pd.DataFrame(rows)
    ranks["rank"] = ranks["rank"].astype(float)
    result = SbcResult(model, ranks, rank_uniformity(ranks, n_ranks, bins), int(n_ranks),
                       {"n_sims": int(n_sims), "draws": draws, "tune": tune, "chains": chains, "seed": seed,
                        "bins": bins, "target_accept": target_accept})
    if out is not None:
        result.write(out)
    return result
