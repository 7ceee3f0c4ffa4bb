r"""Finishing a bambi model's posterior after the engine sampled it: the one private bambi call.

``bambi.Model.fit`` samples and then tidies the draws with its backend's ``_clean_results``. rajak
samples a bambi model's PyMC graph through :func:`analysis.engine.sampling.sample` instead (nutpie,
the compile cache, the same diagnostics as every fit), so it must run the same tidying itself:

* drop the ``*_offset`` variables of the non-centred group effects (the effects themselves are
  stored as deterministics);
* undo bambi's predictor centring of the intercept. bambi samples
  :math:`y = \alpha_c + (X - \bar X)\beta + \dots`; the reported intercept is
  :math:`\beta_0 = \alpha_c - \bar X^\top \beta`, the mean outcome at all predictors zero (for a
  BMD formula in months: at baseline), as with ``bambi.Model.fit``.

:func:`clean_bambi_posterior` holds that call; ``tests/analysis/engine/test_upstream_private_apis.py``
fails when bambi changes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["clean_bambi_posterior"]


def clean_bambi_posterior(bambi_model: Any, dt: xr.DataTree) -> xr.DataTree:
    """The posterior as ``bambi.Model.fit`` would have returned it (see the module docstring).

    Parameters
    ----------
    bambi_model : bambi.Model
        Built (``bambi_model.build()`` has run) and sampled through its ``backend.model``.
    dt : xarray.DataTree
        The sampler's output (``posterior``, ``sample_stats``, ...); modified in place.

    Returns
    -------
    xarray.DataTree
        ``dt`` without ``*_offset`` variables and with the intercept on the uncentred scale.
    """
    # Private bambi API (bambi 0.21: PyMCModel._clean_results(idata, omit_offsets,
    # include_response_params)). Why: it is exactly what bambi.Model.fit runs after sampling, and
    # bambi has no public function for it; rajak samples the graph with its own engine (nutpie,
    # compile cache, shared diagnostics), so bambi.Model.fit cannot be used. Reimplementing the
    # intercept correction would duplicate bambi's knowledge of its own centring.
    # Checked by tests/analysis/engine/test_upstream_private_apis.py::test_bambi_clean_results.
    return bambi_model.backend._clean_results(dt, omit_offsets=True, include_response_params=False)
