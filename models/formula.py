r"""The bambi path: a mixed model from a user formula, sampled like rajak's own models.

:func:`bambi_lmm` builds a bambi model from a user formula (default
``"bmd ~ month * responder + (1 + month | patient_id)"``, time in months, bambi's default priors
and its non-centred group effects without correlation) and returns a wrapper,
:class:`BambiLMM`, that :func:`analysis.engine.sampling.sample` samples with nutpie like
:func:`models.trajectory.build_trajectory_model`'s model. For the default formula the model is,
for patient :math:`i` at month :math:`m_{ij}` with responder indicator :math:`r_i`,

.. math::

    \mathrm{bmd}_{ij} = \beta_0 + \beta_1 m_{ij} + \beta_2 r_i + \beta_3 r_i m_{ij}
        + u_{0i} + u_{1i} m_{ij} + e_{ij}, \qquad
    u_{ki} \sim N(0, \tau_k), \qquad e_{ij} \sim N(0, \sigma),

with bambi's data-scaled priors. The data are baked into bambi's graph as constants, so every
:class:`BambiLMM` compiles its own model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.marginal import as_bool_responder
from models.trajectory_data import SITES

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["BambiLMM", "bambi_lmm"]


@dataclass
class BambiLMM:
    """A built bambi model, in the shape :func:`analysis.engine.sampling.sample` expects.

    Attributes
    ----------
    bambi_model : bambi.Model
        Built (``bambi_model.build()`` has run); its PyMC model is
        ``bambi_model.backend.model``.
    formula : str
    data : DataFrame
        The rows bambi saw (outcome column ``bmd``).
    """

    bambi_model: Any
    formula: str
    data: pd.DataFrame
    site: str
    priors: dict[str, Any] | None = None
    data_values: dict[str, np.ndarray] = field(default_factory=dict)
    structure_key: str | None = None  # data are baked in as constants: compile per object

    @property
    def pymc_model(self) -> Any:
        return self.bambi_model.backend.model

    @property
    def trace_vars(self) -> list[str]:
        """Everything but the per-row likelihood parameters (bambi drops them too)."""
        m = self.pymc_model
        lik_params = set(self.bambi_model.family.likelihood.params)
        return [
            v.name
            for v in m.free_RVs + m.deterministics
            if not (v.name in lik_params and v in m.deterministics)
        ]

    @property
    def diagnostic_vars(self) -> None:
        return None  # every variable left after postprocess

    def describe(self) -> dict[str, Any]:
        return {
            "model": "bambi_lmm",
            "formula": self.formula,
            "site": self.site,
            "priors": None if self.priors is None else {k: str(v) for k, v in self.priors.items()},
            "n_obs": int(len(self.data)),
        }

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        """Drop the ``_offset`` variables and undo bambi's predictor centring of the intercept.

        This is what ``bambi.Model.fit`` does after sampling (its backend's ``_clean_results``).
        """
        return self.bambi_model.backend._clean_results(
            dt, omit_offsets=True, include_response_params=False
        )


def bambi_lmm(
    data: pd.DataFrame,
    formula: str = "bmd ~ month * responder + (1 + month | patient_id)",
    priors: dict[str, Any] | None = None,
    *,
    site: str = "spine",
    **model_kwargs: Any,
) -> BambiLMM:
    """Build a bambi mixed model from a user formula, to sample with ``analysis.engine.sampling.sample``.

    Parameters
    ----------
    data : DataFrame
        Long format (see :func:`models.trajectory.build_trajectory_model`). A ``bmd`` column is added from the
        site's column when absent; rows with a missing ``bmd`` are dropped.
    formula : str
        Any bambi formula. The default has time in months and bambi's default (weakly
        informative, data-scaled) priors; its group effects are non-centred and uncorrelated.
    priors : dict, optional
        Passed to ``bambi.Model(priors=...)``.
    site : {"spine", "femoral_neck"}
    **model_kwargs
        Passed to ``bambi.Model`` (e.g. ``family``, ``center_predictors``).

    Returns
    -------
    BambiLMM
    """
    import bambi as bmb

    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}")
    df = data.copy()
    if "bmd" not in df.columns:
        df["bmd"] = df[SITES[site]]
    df = df.loc[df["bmd"].notna()].reset_index(drop=True)
    if "responder" in df.columns:
        df["responder"] = as_bool_responder(df["responder"])
    if "patient_id" in df.columns:
        df["patient_id"] = df["patient_id"].astype(str)
    model = bmb.Model(formula, df, priors=priors, **model_kwargs)
    model.build()
    return BambiLMM(bambi_model=model, formula=formula, data=df, site=site, priors=priors)
