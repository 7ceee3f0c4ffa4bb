r"""Sensitivity analysis "latent_status": dropouts' undefined responder status as a latent variable.

In a responder study (groups derived from disease activity, :mod:`analysis.study.design`)
responder status is defined from the DAS28 at the response month, so a patient who drops out
before has none, and the primary analysis excludes such patients from the group comparison. Here
each of them is a responder with probability :math:`\pi_i`, a logistic function of the DAS28 change
from baseline at their last observed visit (fitted on the patients with a defined status), and
contributes to both groups' trajectories with posterior weights (the discrete status is summed
out; :func:`models.dropout.build_latent_status_model`):

.. math::

    \operatorname{logit}\pi_i = \kappa_{0,m_i} + \kappa_{1,m_i}\,\Delta\mathrm{DAS28}_i(m_i),
    \qquad
    P(r_i = 1 \mid y) \propto \pi_i\, p(y_i \mid r_i = 1).

The result compares the endpoint changes per group and the responder difference with the
exclude strategy (the trajectory LMM on patients with a defined status), and lists every
undefined patient's membership probability before (:math:`\pi_i`, from the early DAS28 course
only) and after seeing their BMD (the posterior).

The estimands come from the fixed effects ``b`` of either model (time :math:`t` in years, endpoint
:math:`T` months): group :math:`g`'s baseline mean :math:`\beta_{0g} = b_0 + b_{0g}`, its change to
:math:`T`, :math:`\Delta_g = (T/12)(b_1 + b_{1g})` g/cm^2 and :math:`100\,\Delta_g/\beta_{0g}` %, and
every group's difference from the reference (:func:`estimand_rows`).

When it applies (:func:`latent_status_reason`): groups derived from disease activity, a DAS28-CRP
in the data, status derived by the rule (not a user-supplied ``responder`` column), a visit at the
response month, and at least one patient whose status is undefined. Otherwise the analysis raises
:class:`~analysis.study.applicability.NotApplicable` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.sensitivity.bayes_common import (
    FitCache,
    cached_sample,
    check_sites,
    diagnostics_rows,
    diagnostics_text,
    sampler_settings,
)
from analysis.sensitivity.design import (
    NotApplicable,
    NotEstimable,
    SensitivityDesign,
    check_slope_visits,
    sensitivity_design,
    site_label,
)
from analysis.sensitivity.result import FOREST_COLUMNS, SensitivityResult

__all__ = ["TABLE_COLUMNS", "estimand_rows", "forest_from_rows", "latent_status_analysis", "latent_status_reason"]

#: Columns of the result table (``section`` is "estimand", "parameter", "membership" or
#: "diagnostics": one row per fit with worst R-hat, smallest ESS, divergences and ``failed``).
TABLE_COLUMNS = ["section", "site", "item", "model", "mean", "sd", "low", "high", "shift",
                 "prior_mean", "last_das28_month", "das28_change", "r_hat", "ess_bulk", "ess_tail",
                 "divergences", "failed", "failed_checks"]


def _coef_draws(fit: Any) -> np.ndarray:
    """``b`` per draw, shape (draws, coef)."""
    da = fit.posterior["posterior"]["b"]
    return np.asarray(da.transpose("chain", "draw", "coef").values, dtype=float).reshape(-1, da.sizes["coef"])


def estimand_rows(fit: Any, site: str, model: str, sd: SensitivityDesign) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, np.ndarray]]:
    """Table rows (mean, SD, 95 % equal-tailed interval) and draws of the endpoint estimands of a fit
    (module docstring): per measure (%, then g/cm^2), every group's change, then every group's
    difference from the reference. ``b`` is (intercept, time, then ``<level>, time:<level>`` per
    non-reference group), as :mod:`models.trajectory` and :mod:`models.dropout` report it."""
    b = _coef_draws(fit)
    k = len(sd.levels)
    if b.shape[1] != 2 * k:
        raise ValueError(f"the fit has {b.shape[1]} coefficients; {2 * k} expected for groups {sd.levels}")
    years = sd.endpoint / 12.0
    base = [b[:, 0] + (b[:, 2 * g] if g else 0.0) for g in range(k)]
    change = [years * (b[:, 1] + (b[:, 2 * g + 1] if g else 0.0)) for g in range(k)]
    values = {"pct": [100.0 * c / m for c, m in zip(change, base)], "abs": change}
    rows, draws = [], {}
    for measure in ("pct", "abs"):
        v = values[measure]
        items = [(sd.estimand(site, lv, measure), v[g]) for g, lv in enumerate(sd.levels)]
        items += [(sd.estimand(site, sd.comparison_key(lv), measure), v[sd.levels.index(lv)] - v[0])
                  for lv, _ in sd.comparisons]
        for name, x in items:
            lo, hi = np.quantile(x, [0.025, 0.975])
            rows.append({"section": "estimand", "site": site, "item": name, "model": model,
                         "mean": float(x.mean()), "sd": float(x.std(ddof=1)), "low": float(lo),
                         "high": float(hi)})
            draws[f"{name} [{model}]"] = x
    return rows, draws


def latent_status_reason(derived: pd.DataFrame, sd: SensitivityDesign, response_month: float) -> str | None:
    """Why the latent-status model does not apply to these data (one line), or ``None`` if it does
    (module docstring)."""
    if sd.kind != "derived":
        how = ("one group (a single arm)" if sd.single_arm else
               f"{sd.describe_groups()} (column {sd.design.design.group.column!r})" if sd.design is not None
               else sd.describe_groups())
        return (f"latent responder status applies to a study grouped by responder status derived from disease "
                f"activity; this study's groups are {how}, known for every patient")
    if "das28_crp" not in derived.columns or not derived["das28_crp"].notna().any():
        return "latent responder status is modelled from the DAS28-CRP course, and the data have no DAS28-CRP"
    per = derived.drop_duplicates("patient_id")
    if "responder_source" in per.columns and (per["responder_source"] == "user-supplied").any():
        return ("responder status is user-supplied (column 'responder'), not derived from the DAS28-CRP at month "
                f"{response_month:g}, so an undefined status cannot be modelled from the DAS28 course")
    months = np.sort(derived["month"].dropna().unique().astype(float))
    if float(response_month) not in set(months):
        return (f"no visit at the response month {response_month:g} (visits: "
                f"{', '.join(f'{m:g}' for m in months)}), so no responder status is defined to learn from")
    if "responder" not in per.columns or not per["responder"].isna().any():
        return "every patient has a defined responder status: nothing is latent"
    return None


def forest_from_rows(rows: pd.DataFrame, analysis_of: dict[str, str]) -> pd.DataFrame:
    """% estimand rows of the table in :data:`FOREST_COLUMNS` form (``analysis_of``: model -> label)."""
    sel = rows[(rows["section"] == "estimand") & rows["item"].str.endswith("%")
               & rows["model"].isin(list(analysis_of))]
    out = pd.DataFrame({"estimand": sel["item"], "site": sel["site"],
                        "analysis": sel["model"].map(analysis_of), "estimate": sel["mean"],
                        "low": sel["low"], "high": sel["high"], "kind": "bayesian"})
    return out.reset_index(drop=True)[FOREST_COLUMNS]


def _membership_rows(fit: Any, model: Any, site: str, label: str) -> list[dict[str, Any]]:
    d = model.prepared
    post = fit.posterior["posterior"]
    p = np.asarray(post["p_responder"].transpose("chain", "draw", "patient").values)
    p = p.reshape(-1, p.shape[-1])
    kappa = np.asarray(post["kappa"].transpose("chain", "draw", "pattern", "kcoef").values)
    kappa = kappa.reshape(-1, *kappa.shape[-2:])
    rows = []
    for i in np.flatnonzero(d.undefined):
        k = d.pattern_idx[i]
        prior = 1.0 / (1.0 + np.exp(-(kappa[:, k, 0] + kappa[:, k, 1] * d.delta[i])))
        lo, hi = np.quantile(p[:, i], [0.025, 0.975])
        rows.append({"section": "membership", "site": site, "item": str(d.patient_ids[i]),
                     "model": label, "mean": float(p[:, i].mean()), "sd": float(p[:, i].std(ddof=1)),
                     "low": float(lo), "high": float(hi), "prior_mean": float(prior.mean()),
                     "last_das28_month": float(d.patterns[k]), "das28_change": float(d.delta[i])})
    return rows


def _membership_figure(table: pd.DataFrame, label: str | None) -> Any:
    import matplotlib.pyplot as plt

    from analysis.figures.plots import PALETTE, stamp, style

    mem = table[table["section"] == "membership"]
    sites = list(dict.fromkeys(mem["site"]))
    with style():
        fig, axes = plt.subplots(1, max(len(sites), 1), figsize=(4.2 * max(len(sites), 1), 3.6),
                                 squeeze=False)
        for ax, site in zip(axes[0], sites):
            m = mem[mem["site"] == site]
            colours = m["last_das28_month"].rank(method="dense").astype(int)
            cmap = [PALETTE["grey"], PALETTE["orange"], PALETTE["blue"], PALETTE["green"]]
            for (_, r), c in zip(m.iterrows(), colours):
                ax.plot([r["prior_mean"]] * 2, [r["low"], r["high"]], color=cmap[(c - 1) % 4], lw=0.8)
                ax.plot(r["prior_mean"], r["mean"], "o", color=cmap[(c - 1) % 4], ms=4)
            for month, c in zip(sorted(m["last_das28_month"].unique()), cmap):
                ax.plot([], [], "o", color=c, label=f"last DAS28 at month {month:g}")
            ax.plot([0, 1], [0, 1], color=PALETTE["black"], lw=0.6)
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="P(responder | early DAS28)",
                   ylabel="P(responder | DAS28, BMD)", title=site_label(site))
            ax.legend(fontsize=7, loc="upper left")
        stamp(fig, label)
        fig.tight_layout()
    return fig


def latent_status_analysis(
    derived: pd.DataFrame,
    sites: Sequence[str] | None = None,
    *,
    priors: Any = None,
    kappa_sd: float = 2.5,
    response_month: float | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int = 2,
    seed: int = 0,
    label: str | None = None,
    cache_dir: Path | None = None,
    endpoint_month: float | None = None,
    design: Any = None,
) -> SensitivityResult:
    """Run the latent-status analysis on a derived frame (``analysis.study.clinical.derive``).

    Parameters
    ----------
    derived : DataFrame
        With ``responder`` (missing = undefined) and ``das28_crp``.
    sites : sequence of str, optional
        Default: the design's.
    priors : TrajectoryPriors, optional
        Priors of the trajectory part (both models).
    kappa_sd : float
        Prior SD of the status regressions' coefficients.
    response_month : float, optional
        The responder rule's month (default :class:`analysis.study.clinical.ResponderRule`'s).
    draws, tune, chains, cores, seed
        Sampler settings (nutpie), the same for both models.
    cache_dir : Path, optional
        Content-addressed fit cache (the pipeline's ``<output_dir>/.fit-cache``): unchanged fits are
        read instead of sampled (:func:`analysis.sensitivity.bayes_common.cached_sample`).
    label : str, optional
        Stamp on the figures (e.g. "SYNTHETIC").
    endpoint_month : float, optional
        Month of the estimands (default: the design's endpoint).
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).

    Returns
    -------
    SensitivityResult
        ``name="latent_status"``; table with :data:`TABLE_COLUMNS` (estimands of both models
        with the shift latent minus exclude, and one membership row per undefined patient).

    Raises
    ------
    NotApplicable
        The design or the data do not fit the model (:func:`latent_status_reason`).
    """
    from models.dropout import DropoutPriors, build_latent_status_model
    from models.trajectory import build_trajectory_model

    sd = sensitivity_design(derived, design, sites, endpoint_month)
    if response_month is None:
        from analysis.study.clinical import ResponderRule

        response_month = ResponderRule().month
    reason = latent_status_reason(derived, sd, response_month)
    if reason:
        raise NotApplicable(reason)
    if derived.drop_duplicates("patient_id")["responder"].notna().sum() == 0:
        raise NotEstimable("no patient has a defined responder status: the status model has nothing to learn from")
    sites = check_sites(sd.sites)
    check_slope_visits(derived, sites, "latent-status model")
    settings_kw = sampler_settings(draws, tune, chains, cores)
    cache = FitCache(None if cache_dir is None else Path(cache_dir))
    fits: dict[str, Any] = {}
    fit_site: dict[str, str] = {}
    dpriors = DropoutPriors(kappa_sd=kappa_sd)
    rows: list[dict[str, Any]] = []
    all_draws: dict[str, np.ndarray] = {}
    diagnostics: dict[str, str] = {}
    counts: dict[str, int] = {}
    for k, site in enumerate(sites):
        lm = build_latent_status_model(derived, site, priors=priors, dropout_priors=dpriors,
                                       response_month=response_month)
        fit = cached_sample(lm, cache=cache, tag="sens-latent", site=site, priors=priors, seed=seed + k,
                            extra={"kappa_sd": kappa_sd, "response_month": response_month}, **settings_kw)
        defined = derived[derived["responder"].notna()]
        tm = build_trajectory_model(defined, site, priors=priors)
        fit_ex = cached_sample(tm, cache=cache, tag="sens-exclude", site=site, priors=priors, seed=seed + k,
                               **settings_kw)
        ex_rows, ex_draws = estimand_rows(fit_ex, site, "exclude", sd)
        lat_rows, lat_draws = estimand_rows(fit, site, "latent status", sd)
        for r_lat, r_ex in zip(lat_rows, ex_rows):
            r_lat["shift"] = r_lat["mean"] - r_ex["mean"]
        rows += ex_rows + lat_rows + _membership_rows(fit, lm, site, "latent status")
        all_draws.update(ex_draws | lat_draws)
        diagnostics[f"{site} latent status"] = str(fit.diagnostics)
        diagnostics[f"{site} exclude"] = str(fit_ex.diagnostics)
        fits[f"{site} latent status"], fits[f"{site} exclude"] = fit, fit_ex
        fit_site[f"{site} latent status"] = fit_site[f"{site} exclude"] = site
        counts[site] = int(lm.prepared.undefined.sum())
    rows += diagnostics_rows(fits, fit_site)
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)

    text = [
        "Patients whose responder status is undefined (no DAS28-CRP at month "
        f"{response_month:g}, i.e. dropouts) are not excluded: each is a responder with a "
        "probability given by a logistic regression on the DAS28 change from baseline at their last "
        "observed visit (fitted on patients with a defined status), and contributes to both groups "
        "with posterior weights; the discrete status is summed out. This assumes that status given "
        "the early DAS28 course is the same in dropouts and completers.",
    ]
    for site in sites:
        t = table[(table["site"] == site) & (table["section"] == "estimand")]
        diff = sd.estimand(site, sd.comparison_key(sd.comparisons[0][0]), "pct")
        ex = t[(t["item"] == diff) & (t["model"] == "exclude")].iloc[0]
        lat = t[(t["item"] == diff) & (t["model"] == "latent status")].iloc[0]
        mem = table[(table["site"] == site) & (table["section"] == "membership")]
        text.append(
            f"{site_label(site)}: {counts[site]} undefined patients, posterior "
            f"P(responder) from {mem['mean'].min():.2f} to {mem['mean'].max():.2f} (expected number "
            f"of responders among them {mem['mean'].sum():.1f}). {sd.key_label(sd.comparison_key(sd.comparisons[0][0]))}, "
            f"change to month {sd.endpoint:g}: {lat['mean']:.2f} pp [{lat['low']:.2f}, {lat['high']:.2f}] with "
            f"latent status vs {ex['mean']:.2f} pp [{ex['low']:.2f}, {ex['high']:.2f}] excluding "
            f"them (shift {lat['mean'] - ex['mean']:+.2f} pp)."
        )
    text.append(diagnostics_text(fits))
    figures = {"latent_status_membership": _membership_figure(table, label)}
    forest_rows = forest_from_rows(table, {"exclude": "exclude undefined (MAR)",
                                           "latent status": "latent responder status"})
    from analysis.figures.plots import forest

    frows = forest_rows.assign(label=forest_rows["estimand"] + " | " + forest_rows["analysis"])
    figures["latent_status_forest"] = forest(frows, "Latent responder status vs exclusion", label)
    settings = {"sites": list(sites), "kappa_sd": kappa_sd, "response_month": response_month,
                "groups": list(sd.levels), "endpoint_month": sd.endpoint,
                "draws": draws, "tune": tune, "chains": chains, "cores": cores, "seed": seed,
                "priors": None if priors is None else repr(priors), "diagnostics": diagnostics,
                "failed_fits": [k for k, f in fits.items() if not f.passed], "fit_cache": cache.summary(),
                "fit_files": list(dict.fromkeys(cache.paths))}
    return SensitivityResult(name="latent_status", title="Latent responder status for dropouts",
                             table=table, text=text, figures=figures, forest_rows=forest_rows,
                             settings=settings, draws=all_draws)
