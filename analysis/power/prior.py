r"""Design priors for assurance: :class:`DesignPrior`.

With fixed design parameters the fraction of simulated studies whose analysis succeeds is the
**power**; with parameters drawn from a *design prior* for every simulated study it is the
**assurance** (O'Hagan, Stevens & Campbell 2005), :math:`\int \mathrm{power}(\theta)\,p(\theta)\,d\theta`.

:class:`DesignPrior` holds draws of design parameters (columns named as
:meth:`Design.with_updates` keys, e.g. ``"spine.slope_responder_pct"``). Simulation :math:`k` uses
one draw, chosen uniformly with its own seed (the same draw at every :math:`n`). By default the
draws are the posterior of a fitted rajak trajectory LMM of a responder study
(:meth:`DesignPrior.from_fit`, a :class:`analysis.engine.sampling.FitResult`; time in years,
g/cm^2; ``b`` over intercept, time, responder, time:responder), mapped per draw as

=================================  ===========================================================
design parameter (site :math:`s`)   from the posterior draw
=================================  ===========================================================
``baseline_mean``                    :math:`m = b_0 + \pi b_2` (``b``; :math:`\pi` = responder fraction)
``baseline_sd``                      ``sd_patient[intercept]``
``slope_nonresponder_pct``           :math:`100\,b_1 / b_0 - \lambda_s E[\Delta \mid r=0]` (the annual % change)
``slope_responder_pct``              :math:`100\,(b_1 + b_3)/(b_0 + b_2) - \lambda_s E[\Delta \mid r=1]`
``slope_sd_pct``                     :math:`100\,` ``sd_patient[slope]`` :math:`/ m`
``precision_cv_pct``                 :math:`100\,` ``sigma`` :math:`/ m`
=================================  ===========================================================

where :math:`\lambda_s E[\Delta \mid r]` is the mean disease-control part of the cohort model's
slope (``slope_per_das28_improvement_pct`` times the expected DAS28 improvement of type
:math:`r`, :func:`analysis.power.design.disease_control_slope_pct`), subtracted so that each type's
*total* mean slope equals the posterior group slope (zero for the Gaussian generator, which has no
such term). The posterior's groups are derived EULAR groups, taken as the latent types
(misclassification is not undone), and the patient SDs describe the model's additive random
effects, used as the cohort model's multiplicative ones at the mean.

A design from the user's data (``PowerDesign(generator="data")``) takes draws of its own
parameters (``kind="data"``; :meth:`analysis.power.data_model.DataModel.with_updates` keys such as
``spine.slope.active``): :meth:`DesignPrior.from_fit_data` maps a two-group trajectory LMM's
posterior to them, :meth:`DesignPrior.from_data_model` draws the slopes per group from their REML
sampling distribution (the large-sample posterior under flat priors; the variance components stay
at their estimates).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.power.design import SITES, disease_control_slope_pct
from models.simulate import Design

__all__ = ["DesignPrior"]


@dataclass(frozen=True)
class DesignPrior:
    """Draws of design parameters for assurance (columns are :meth:`Design.with_updates` keys).

    Attributes
    ----------
    draws : DataFrame
    source : str
        Where the draws came from (recorded with the results).
    kind : {"cohort", "data"}
        Columns of the twin's :class:`Design` (generators "cohort", "gaussian"), or of a design
        from data (:meth:`analysis.power.data_model.DataModel.with_updates`: ``<site>.slope.<level>``
        ...; :meth:`from_data_model`, :meth:`from_fit_data`).
    """

    draws: pd.DataFrame
    source: str = "user"
    kind: Literal["cohort", "data"] = "cohort"

    def __post_init__(self) -> None:
        if not isinstance(self.draws, pd.DataFrame) or self.draws.empty:
            raise ValueError("a design prior needs a non-empty DataFrame of draws")
        if self.draws.isna().any().any():
            raise ValueError("design-prior draws contain missing values")
        if self.kind not in ("cohort", "data"):
            raise ValueError(f"a design prior's kind is 'cohort' or 'data', got {self.kind!r}")
        if self.kind == "data":  # keys of a DataModel, checked against the design by run_power
            return
        try:
            Design().with_updates(**self.draws.iloc[0].to_dict())
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"design-prior columns are not Design fields: {err}") from None

    def key(self) -> str:
        """Hash of the draws (part of the resume key)."""
        h = hashlib.sha256(json.dumps(list(self.draws.columns)).encode())
        h.update(np.ascontiguousarray(self.draws.to_numpy(dtype=float)).tobytes())
        return h.hexdigest()[:16]

    def draw(self, rng: np.random.Generator) -> tuple[int, dict[str, float]]:
        """One draw, uniformly: its row index and values."""
        i = int(rng.integers(len(self.draws)))
        return i, {k: float(v) for k, v in self.draws.iloc[i].items()}

    @classmethod
    def combine(cls, priors: Sequence[DesignPrior]) -> DesignPrior:
        """One prior from per-site priors (e.g. :meth:`from_fit` at each site).

        Their columns side by side, draw ``i`` of each (truncated to the shortest). Separate fits
        carry no between-site dependence of the parameters; a draw pairs the sites' draws of the
        same index.
        """
        priors = list(priors)
        if not priors:
            raise ValueError("combine needs at least one design prior")
        cols = [c for p in priors for c in p.draws.columns]
        if len(set(cols)) != len(cols):
            raise ValueError("design priors to combine share columns (one prior per site)")
        k = min(len(p.draws) for p in priors)
        draws = pd.concat([p.draws.iloc[:k].reset_index(drop=True) for p in priors], axis=1)
        kinds = {p.kind for p in priors}
        if len(kinds) > 1:
            raise ValueError("design priors to combine are for different generators")
        return cls(draws=draws, source="; ".join(p.source for p in priors), kind=kinds.pop())

    @classmethod
    def from_data_model(cls, model: Any, n_draws: int = 1000, seed: int = 0) -> DesignPrior:
        r"""The slopes of a design from data drawn from their REML sampling distribution,
        :math:`N(\hat b, \widehat{\mathrm{Cov}}(\hat b))` per site (the large-sample posterior under flat
        priors; :meth:`analysis.power.data_model.DataModel.prior_draws`)."""
        return cls(draws=model.prior_draws(n_draws, seed), kind="data",
                   source=f"REML sampling distribution of the slopes per group ({model.source}; large-sample "
                          f"posterior under flat priors), {n_draws} draws, seed {seed}")

    @classmethod
    def from_fit_data(cls, fit: Any, model: Any, site: str | None = None,
                      max_draws: int | None = None) -> DesignPrior:
        r"""Map the posterior of a fitted trajectory LMM to a design from data with two groups.

        ``b`` over ``coef`` = (intercept, time, <level>, time:<level>) in g/cm^2 and years (the
        non-reference level's terms, or ``responder`` in a responder study) gives per level
        ``<site>.intercept.<level>`` :math:`= b_0 (+ b_2)` and ``<site>.slope.<level>``
        :math:`= b_1 (+ b_3)`; ``sd_patient`` and ``sigma`` give ``sd_intercept``, ``sd_slope``,
        ``sigma``, and ``corr_patient`` (when drawn) ``corr``.

        Raises
        ------
        ValueError
            A design without exactly two levels, or a fit without these quantities.
        """
        post = fit.posterior["posterior"].to_dataset()
        settings = fit.settings.get("model", {}) if isinstance(fit.settings, dict) else {}
        site = site or settings.get("site")
        if site not in model.site_names:
            raise ValueError(f"cannot tell the fit's site; pass site= one of {model.site_names}")
        if len(model.levels) != 2 or not {"b", "sd_patient", "sigma"} <= set(post.data_vars):
            raise ValueError("a trajectory-LMM posterior maps to a design from data with two groups only")
        coefs = [str(c) for c in post["b"].coords["coef"].values]
        ref, level = model.levels
        group = next((c for c in (level, "responder") if c in coefs), None)
        slope_term, inter = "time", f"time:{group}"
        if group is None or not {"intercept", slope_term, inter} <= set(coefs):
            raise ValueError(f"cannot map the fit's coefficients {coefs} to the levels {model.levels}")

        def flat(name: str, **sel: str) -> np.ndarray:
            da = post[name].sel(**sel) if sel else post[name]
            return np.asarray(da.transpose("chain", "draw").values, dtype=float).ravel()

        b0, b1, b2, b3 = (flat("b", coef=c) for c in ("intercept", slope_term, group, inter))
        cols = {f"{site}.intercept.{ref}": b0, f"{site}.intercept.{level}": b0 + b2,
                f"{site}.slope.{ref}": b1, f"{site}.slope.{level}": b1 + b3,
                f"{site}.sd_intercept": flat("sd_patient", effect="intercept"),
                f"{site}.sd_slope": flat("sd_patient", effect="slope"), f"{site}.sigma": flat("sigma")}
        if "corr_patient" in post.data_vars and post["corr_patient"].ndim == 2:
            cols[f"{site}.corr"] = flat("corr_patient")
        draws = pd.DataFrame(cols)
        if max_draws is not None and len(draws) > max_draws:
            draws = draws.iloc[:: math.ceil(len(draws) / max_draws)].reset_index(drop=True)
        return cls(draws=draws, kind="data", source=f"posterior of the trajectory LMM at {site}, {len(draws)} draws, "
                                                    f"mapped to the design from data ({ref} vs {level})")

    @classmethod
    def from_fit(cls, fit: Any, design: Design | None = None, site: str | None = None,
                 generator: Literal["cohort", "gaussian"] = "cohort", max_draws: int | None = None) -> DesignPrior:
        """Map the posterior draws of a fitted trajectory LMM to design parameters (module docstring).

        Parameters
        ----------
        fit : FitResult
            A fit of :func:`models.trajectory.build_trajectory_model` of a responder study (``b``
            over ``intercept, time, responder, time:responder`` in g/cm^2 and years,
            ``sd_patient``, ``sigma`` in its posterior).
        design : Design, optional
            Supplies the responder fraction and the disease-control slope terms (default ``Design()``).
        site : str, optional
            Default: the fit's site (``fit.settings["model"]["site"]``).
        generator : {"cohort", "gaussian"}
            Whether to subtract the cohort model's disease-control slope.
        max_draws : int, optional
            Keep every k-th draw so that at most this many remain.
        """
        design = design or Design()
        post = fit.posterior["posterior"].to_dataset()
        needed = {"b", "sd_patient", "sigma"}
        if not needed <= set(post.data_vars):
            raise ValueError(f"the fit lacks {sorted(needed - set(post.data_vars))}; "
                             "use a fit of the rajak trajectory LMM")
        model = fit.settings.get("model", {}) if isinstance(fit.settings, dict) else {}
        site = site or model.get("site")
        if site not in SITES:
            raise ValueError(f"cannot tell the fit's site; pass site= one of {SITES}")

        def flat(name: str, **sel: str) -> np.ndarray:
            da = post[name].sel(**sel) if sel else post[name]
            return np.asarray(da.transpose("chain", "draw").values, dtype=float).ravel()

        pi = design.responder_fraction
        b0, b1, b2, b3 = (flat("b", coef=c) for c in ("intercept", "time", "responder", "time:responder"))
        m = b0 + pi * b2
        annual = {"non-responder": 100.0 * b1 / b0, "responder": 100.0 * (b1 + b3) / (b0 + b2)}
        shift = disease_control_slope_pct(design, site) if generator == "cohort" else {"responder": 0.0,
                                                                                       "non-responder": 0.0}
        draws = pd.DataFrame({
            f"{site}.baseline_mean": m,
            f"{site}.baseline_sd": flat("sd_patient", effect="intercept"),
            f"{site}.slope_nonresponder_pct": annual["non-responder"] - shift["non-responder"],
            f"{site}.slope_responder_pct": annual["responder"] - shift["responder"],
            f"{site}.slope_sd_pct": 100.0 * flat("sd_patient", effect="slope") / m,
            f"{site}.precision_cv_pct": 100.0 * flat("sigma") / m,
        })
        if max_draws is not None and len(draws) > max_draws:
            draws = draws.iloc[:: math.ceil(len(draws) / max_draws)].reset_index(drop=True)
        seed = fit.settings.get("seed") if isinstance(fit.settings, dict) else None
        return cls(draws=draws, source=f"posterior of the trajectory LMM at {site} (seed {seed}), "
                                        f"{len(draws)} draws, mapped for the {generator} generator")
