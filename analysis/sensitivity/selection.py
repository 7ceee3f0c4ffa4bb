r"""Sensitivity analysis "selection": a shared-parameter selection model for MNAR dropout.

The trajectory LMM of one site is fitted jointly with a discrete-time dropout hazard at every
post-baseline visit (:func:`models.dropout.build_selection_model`),

.. math::

    \operatorname{logit} h_{iv} = \alpha_v + \beta\,(\mathrm{DAS28}_{i,v^-} - 3.2)
        + \psi\, x_{iv},

with :math:`x_{iv}` the patient's current, unobserved % change of BMD from baseline at visit
:math:`v` (default) or the patient's annual % change. :math:`\psi` is the log-odds ratio of
dropout per 1 % of BMD change: :math:`\psi < 0` means that patients who lose bone drop out more
often, which the MAR analysis cannot see. With :math:`\psi = 0` the model is the MAR model, which
is therefore the reference: the result reports :math:`\psi` and how far the estimands (every
group's change to the endpoint and every difference from the reference,
:func:`analysis.sensitivity.latent_status.estimand_rows`) move from the MAR values.

The model works on any design (:mod:`analysis.sensitivity.design`). In a responder study where the
latent-status model applies (:func:`analysis.sensitivity.latent_status.latent_status_reason`),
undefined responder status of dropouts is latent as there, and the MAR reference is that
latent-status model. Otherwise the groups are known (the arms of a trial, the doses of a dose
study, a single arm, or responder status known for everyone; patients without a group are left
out) and the MAR reference is the LMM of the groups (:mod:`models.dropout`, *Known groups*). The
DAS28 term of the hazard is used when every patient has a baseline DAS28-CRP.

:math:`\psi` is identified only through the model's parametric assumptions (e.g. most RAJAK
dropouts leave before their first follow-up DXA), so its prior matters and is the knob of this
analysis: pass several ``psi_priors`` to see the estimands under each (one compiled model serves
all).
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
from analysis.sensitivity.completers_vs_all import check_groups
from analysis.sensitivity.design import (
    check_slope_visits,
    sensitivity_design,
    site_label,
)
from analysis.sensitivity.latent_status import (
    TABLE_COLUMNS,
    estimand_rows,
    forest_from_rows,
    latent_status_reason,
)
from analysis.sensitivity.result import SensitivityResult
from analysis.study.groups import assign_groups

__all__ = ["selection_analysis"]


def _psi_label(prior: tuple[float, float]) -> str:
    return f"selection, psi ~ N({prior[0]:g}, {prior[1]:g})"


def _psi_figure(psi: dict[tuple[str, str], np.ndarray], priors: dict[str, tuple[float, float]],
                label: str | None) -> Any:
    import matplotlib.pyplot as plt
    from scipy import stats

    from analysis.figures.plots import PALETTE, stamp, style

    sites = list(dict.fromkeys(s for s, _ in psi))
    colours = [PALETTE["blue"], PALETTE["orange"], PALETTE["green"], PALETTE["purple"]]
    with style():
        fig, axes = plt.subplots(1, len(sites), figsize=(4.2 * len(sites), 3.2), squeeze=False)
        for ax, site in zip(axes[0], sites):
            for k, (model, prior) in enumerate(priors.items()):
                x = psi[(site, model)]
                c = colours[k % len(colours)]
                ax.hist(x, bins=50, density=True, alpha=0.45, color=c, label=f"posterior, {model}")
                grid = np.linspace(min(x.min(), prior[0] - 3 * prior[1]),
                                   max(x.max(), prior[0] + 3 * prior[1]), 200)
                ax.plot(grid, stats.norm.pdf(grid, *prior), color=c, lw=1, ls="--")
            ax.axvline(0, color=PALETTE["black"], lw=0.8)
            ax.set(xlabel="psi: log-odds of dropout per 1 % BMD change", ylabel="density",
                   title=f"{site_label(site)} (dashed: prior)")
            ax.legend(fontsize=6)
        stamp(fig, label)
        fig.tight_layout()
    return fig


def selection_analysis(
    derived: pd.DataFrame,
    sites: Sequence[str] | None = None,
    *,
    dependence: str = "current_change",
    hazard_das28: bool = True,
    psi_priors: Sequence[tuple[float, float]] = ((0.0, 0.5),),
    priors: Any = None,
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
    undefined: str = "last_observed",
    rule: Any = None,
) -> SensitivityResult:
    """Run the selection-model analysis on a derived frame (``analysis.study.clinical.derive``).

    Parameters
    ----------
    derived : DataFrame
        From :func:`analysis.study.clinical.derive`.
    sites : sequence of str, optional
        Default: the design's.
    dependence : {"current_change", "slope"}
        What the hazard depends on (see :func:`models.dropout.build_selection_model`).
    hazard_das28 : bool
        Include the last observed DAS28 in the hazard (the MAR part of dropout).
    psi_priors : sequence of (mean, sd)
        Normal priors on :math:`\\psi`; one selection fit per prior.
    priors : TrajectoryPriors, optional
    response_month : float, optional
        The responder rule's month (default :class:`analysis.study.clinical.ResponderRule`'s).
    draws, tune, chains, cores, seed
        Sampler settings (nutpie), the same for every fit.
    cache_dir : Path, optional
        Content-addressed fit cache (the pipeline's ``<output_dir>/.fit-cache``): unchanged fits are
        read instead of sampled (:func:`analysis.sensitivity.bayes_common.cached_sample`).
    label : str, optional
        Stamp on the figures.
    endpoint_month : float, optional
        Month of the estimands (default: the design's endpoint).
    design : ResolvedDesign, optional
        Default ``derived.attrs["design"]`` (none: the RAJAK default).
    undefined, rule
        A responder study whose status is not latent here: the strategy for undefined status
        (:func:`analysis.study.groups.assign_groups`; ``"unknown"`` becomes ``"last_observed"``) and
        the responder rule.

    Returns
    -------
    SensitivityResult
        ``name="selection"``; table with the columns of
        :data:`analysis.sensitivity.latent_status.TABLE_COLUMNS`: the estimands of the MAR
        (latent status) model and of each selection fit with ``shift`` = selection minus MAR,
        and the dropout parameters (``psi``, ``beta_das28``, ``alpha[...]``).
    """
    from analysis.figures.plots import forest
    from models.dropout import (
        DropoutPriors,
        build_latent_status_model,
        build_selection_model,
    )

    sd = sensitivity_design(derived, design, sites, endpoint_month)
    if response_month is None:
        from analysis.study.clinical import ResponderRule

        response_month = ResponderRule().month
    sites = check_sites(sd.sites)
    check_slope_visits(derived, sites, "selection model")
    latent = latent_status_reason(derived, sd, response_month) is None
    notes: list[str] = []
    if latent:
        frame, known = derived, {}
        mar_name = "MAR (latent status)"
    else:
        strategy = "last_observed" if undefined == "unknown" else undefined
        check_groups(derived, sd, strategy, rule)
        frame = assign_groups(derived, strategy if sd.kind == "derived" else "exclude", rule, design=sd.design).frame
        known = {"group": "analysis_group", "levels": sd.levels}
        mar_name = "MAR"
        if sd.kind == "derived":
            n_out = int(frame.drop_duplicates("patient_id")["analysis_group"].isna().sum())
            notes.append(f"Responder status is not modelled as latent here "
                         f"({latent_status_reason(derived, sd, response_month)}); groups by the strategy "
                         f"'{strategy}', {n_out} patients without a status left out.")
    if hazard_das28 and not latent:
        das = "das28_crp" in frame.columns
        base = (frame.loc[frame["month"] == 0].dropna(subset=["analysis_group"]).groupby("patient_id")["das28_crp"]
                .first() if das else None)
        if not das or base.isna().any():
            hazard_das28 = False
            notes.append("The hazard has no DAS28-CRP term (" + ("the data have no DAS28-CRP" if not das else
                                                                  "not every patient has a baseline DAS28-CRP") + ").")
    settings_kw = sampler_settings(draws, tune, chains, cores)
    cache = FitCache(None if cache_dir is None else Path(cache_dir))
    fits: dict[str, Any] = {}
    fit_site: dict[str, str] = {}
    psi_priors = [tuple(map(float, p)) for p in psi_priors]
    if not psi_priors or any(len(p) != 2 or p[1] <= 0 for p in psi_priors):
        raise ValueError("psi_priors must be a non-empty sequence of (mean, sd > 0) pairs")
    labels = {_psi_label(p): p for p in psi_priors}
    rows: list[dict[str, Any]] = []
    all_draws: dict[str, np.ndarray] = {}
    psi_draws: dict[tuple[str, str], np.ndarray] = {}
    diagnostics: dict[str, str] = {}
    for k, site in enumerate(sites):
        mar = build_latent_status_model(frame, site, priors=priors, response_month=response_month, **known)
        fit_mar = cached_sample(mar, cache=cache, tag="sens-latent" if latent else "sens-mar", site=site,
                                priors=priors, seed=seed + k,
                                extra={"kappa_sd": DropoutPriors().kappa_sd, "response_month": response_month},
                                **settings_kw)
        fits[f"{site} MAR"], fit_site[f"{site} MAR"] = fit_mar, site
        mar_rows, mar_draws = estimand_rows(fit_mar, site, mar_name, sd)
        rows += mar_rows
        all_draws.update(mar_draws)
        diagnostics[f"{site} MAR"] = str(fit_mar.diagnostics)
        sm = None
        for name, prior in labels.items():
            dpriors = DropoutPriors(psi_mu=prior[0], psi_sd=prior[1])
            if sm is None:
                sm = build_selection_model(frame, site, dependence=dependence,
                                           hazard_das28=hazard_das28, priors=priors,
                                           dropout_priors=dpriors, response_month=response_month, **known)
            else:
                sm.set_data(dropout_priors=dpriors)
            fit = cached_sample(sm, cache=cache, tag=f"sens-selection-{dependence}", site=site, priors=priors,
                                seed=seed + k, extra={"psi_prior": list(prior), "hazard_das28": hazard_das28,
                                                      "response_month": response_month}, **settings_kw)
            fits[f"{site} {name}"], fit_site[f"{site} {name}"] = fit, site
            sel_rows, sel_draws = estimand_rows(fit, site, name, sd)
            for r_sel, r_mar in zip(sel_rows, mar_rows):
                r_sel["shift"] = r_sel["mean"] - r_mar["mean"]
            rows += sel_rows
            all_draws.update(sel_draws)
            post = fit.posterior["posterior"]
            params = {"psi": post["psi"]}
            if "beta_das28" in post:
                params["beta_das28"] = post["beta_das28"]
            for v, vlabel in enumerate(post["alpha"].coords["visit"].values):
                params[f"alpha[{vlabel}]"] = post["alpha"].isel(visit=v)
            for pname, da in params.items():
                x = np.asarray(da.values, dtype=float).reshape(-1)
                lo, hi = np.quantile(x, [0.025, 0.975])
                rows.append({"section": "parameter", "site": site, "item": pname, "model": name,
                             "mean": float(x.mean()), "sd": float(x.std(ddof=1)), "low": float(lo),
                             "high": float(hi), "prior_mean": prior[0] if pname == "psi" else np.nan})
            psi_draws[(site, name)] = np.asarray(post["psi"].values, dtype=float).reshape(-1)
            all_draws[f"{site}, psi [{name}]"] = psi_draws[(site, name)]
            diagnostics[f"{site} {name}"] = str(fit.diagnostics)
    rows += diagnostics_rows(fits, fit_site)
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)

    per = "1 % current change from baseline" if dependence == "current_change" else "1 %/yr of annual change"
    text = [
        "Selection (shared-parameter) model: the BMD trajectories are fitted jointly with a "
        "dropout hazard at each post-baseline visit that depends on the patient's own, unobserved "
        f"BMD change (psi = log-odds of dropout per {per})"
        + (" and on the last observed DAS28-CRP" if hazard_das28 else "")
        + (". Undefined responder status of dropouts is latent. psi = 0 gives the MAR model "
           "(latent status), the reference for the shifts." if latent else
           f". Groups: {sd.describe_groups()}. psi = 0 gives the MAR model (the LMM of the groups), the "
           "reference for the shifts.")
        + " psi is identified only through the model's assumptions (normal random slopes, linear change): "
        "read it as a sensitivity parameter, and compare the psi priors.",
        *notes,
    ]
    heads = [sd.comparison_key(lv) for lv, _ in sd.comparisons] or list(sd.levels)
    for site in sites:
        t = table[table["site"] == site]
        for key in heads:
            item = sd.estimand(site, key, "pct")
            mar = t[(t["item"] == item) & (t["model"] == mar_name)].iloc[0]
            for name in labels:
                p = t[(t["item"] == "psi") & (t["model"] == name)].iloc[0]
                s = t[(t["item"] == item) & (t["model"] == name)].iloc[0]
                text.append(
                    f"{site_label(site)}, {name}: psi {p['mean']:.2f} "
                    f"[{p['low']:.2f}, {p['high']:.2f}]; {sd.key_label(key)} "
                    f"{s['mean']:.2f} pp [{s['low']:.2f}, {s['high']:.2f}] vs {mar['mean']:.2f} pp "
                    f"[{mar['low']:.2f}, {mar['high']:.2f}] under MAR (shift {s['shift']:+.2f} pp)."
                )
    text.append(diagnostics_text(fits))
    forest_rows = forest_from_rows(table, {mar_name: mar_name, **{n: n for n in labels}})
    frows = forest_rows.assign(label=forest_rows["estimand"] + " | " + forest_rows["analysis"])
    figures = {
        "selection_psi": _psi_figure(psi_draws, labels, label),
        "selection_forest": forest(frows, "Selection model (MNAR) vs MAR", label),
    }
    settings = {"sites": list(sites), "groups": list(sd.levels), "endpoint_month": sd.endpoint,
                "latent_status": latent, "dependence": dependence, "hazard_das28": hazard_das28,
                "psi_priors": [list(p) for p in psi_priors], "response_month": response_month,
                **settings_kw, "seed": seed, "priors": None if priors is None else repr(priors),
                "diagnostics": diagnostics, "failed_fits": [k for k, f in fits.items() if not f.passed],
                "fit_cache": cache.summary(), "fit_files": list(dict.fromkeys(cache.paths))}
    return SensitivityResult(name="selection", title="Selection model for MNAR dropout",
                             table=table, text=text, figures=figures, forest_rows=forest_rows,
                             settings=settings, draws=all_draws)
