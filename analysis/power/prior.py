r"""Design priors for assurance: :class:`DesignPrior`.

With fixed design parameters the fraction of simulated studies whose analysis succeeds is the
**power**; with parameters drawn from a *design prior* for every simulated study it is the
**assurance** (O'Hagan, Stevens & Campbell 2005), :math:`\int \mathrm{power}(\theta)\,p(\theta)\,d\theta`.

:class:`DesignPrior` holds draws of design parameters (columns named as
:meth:`Design.with_updates` keys, e.g. ``"spine.slope_responder_pct"``). Simulation :math:`k` uses
one draw, chosen uniformly with its own seed (the same draw at every :math:`n`). By default the
draws are the posterior of a fitted rajak trajectory LMM (:meth:`DesignPrior.from_fit`, a
:class:`analysis.engine.sampling.FitResult`; time in years, g/cm^2), mapped per draw as

=================================  ===========================================================
design parameter (site :math:`s`)   from the posterior draw
=================================  ===========================================================
``baseline_mean``                    :math:`m = b_0 + \pi b_2` (``b``; :math:`\pi` = responder fraction)
``baseline_sd``                      ``sd_patient[intercept]``
``slope_nonresponder_pct``           ``pct_change_12m[non-responder]`` :math:`- \lambda_s E[\Delta \mid r=0]`
``slope_responder_pct``              ``pct_change_12m[responder]`` :math:`- \lambda_s E[\Delta \mid r=1]`
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
    """

    draws: pd.DataFrame
    source: str = "user"

    def __post_init__(self) -> None:
        if not isinstance(self.draws, pd.DataFrame) or self.draws.empty:
            raise ValueError("a design prior needs a non-empty DataFrame of draws")
        if self.draws.isna().any().any():
            raise ValueError("design-prior draws contain missing values")
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
        return cls(draws=draws, source="; ".join(p.source for p in priors))

    @classmethod
    def from_fit(cls, fit: Any, design: Design | None = None, site: str | None = None,
                 generator: Literal["cohort", "gaussian"] = "cohort", max_draws: int | None = None) -> DesignPrior:
        """Map the posterior draws of a fitted trajectory LMM to design parameters (module docstring).

        Parameters
        ----------
        fit : FitResult
            A fit of :func:`models.trajectory.build_trajectory_model` (``b``, ``sd_patient``,
            ``sigma``, ``pct_change_12m`` in its posterior).
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
        needed = {"b", "sd_patient", "sigma", "pct_change_12m"}
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
        m = flat("b", coef="intercept") + pi * flat("b", coef="responder")
        shift = disease_control_slope_pct(design, site) if generator == "cohort" else {"responder": 0.0,
                                                                                       "non-responder": 0.0}
        draws = pd.DataFrame({
            f"{site}.baseline_mean": m,
            f"{site}.baseline_sd": flat("sd_patient", effect="intercept"),
            f"{site}.slope_nonresponder_pct": flat("pct_change_12m", group="non-responder") - shift["non-responder"],
            f"{site}.slope_responder_pct": flat("pct_change_12m", group="responder") - shift["responder"],
            f"{site}.slope_sd_pct": 100.0 * flat("sd_patient", effect="slope") / m,
            f"{site}.precision_cv_pct": 100.0 * flat("sigma") / m,
        })
        if max_draws is not None and len(draws) > max_draws:
            draws = draws.iloc[:: math.ceil(len(draws) / max_draws)].reset_index(drop=True)
        seed = fit.settings.get("seed") if isinstance(fit.settings, dict) else None
        return cls(draws=draws, source=f"posterior of the trajectory LMM at {site} (seed {seed}), "
                                        f"{len(draws)} draws, mapped for the {generator} generator")
