r"""The trajectory LMM's per-patient quantities: the patients' effects, the pointwise log-likelihood
and the posterior predictive, in the posterior or on request (:class:`PerPatientQuantities`, the
part of :class:`models.trajectory.TrajectoryModel` that grows with patients x draws).

A fit of up to :data:`models.marginal_effects.EAGER_PATIENT_DRAWS` patients x draws gets ``u`` and
the ``log_likelihood`` group from :meth:`PerPatientQuantities.postprocess` as it always did; a
larger one gets neither (the estimands do not need them) and computes them on request, chunk by
chunk over the draws, with the same draws (:meth:`~PerPatientQuantities.patient_effects`,
:meth:`~PerPatientQuantities.log_likelihood`, :meth:`~PerPatientQuantities.posterior_predictive`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from models.marginal import group_means
from models.marginal_effects import (ON_REQUEST_ATTR, SEED_ATTR, chunk_draws, effects_dataarray,
                                     iter_marginal_effects, per_patient_eager)

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["PerPatientQuantities"]


class PerPatientQuantities:
    """Mixin of :class:`models.trajectory.TrajectoryModel`: reads its ``prepared``, ``data_values``,
    ``likelihood`` and ``parameterisation``."""

    prepared: Any
    data_values: dict[str, np.ndarray]
    likelihood: str
    parameterisation: str

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        r"""Hook called by :func:`analysis.engine.sampling.sample` on the raw sampler output.

        For the marginal parameterisation, adds ``u`` (patient, effect; g/cm^2 and g/cm^2/yr)
        drawn from its exact conditional :math:`N(A_i^{-1} Z_i^\top W_i r_i / \sigma^2,
        A_i^{-1})` given each posterior draw (and, for Student-t residuals, the draw's precision
        weights ``w_obs``; see :func:`models.marginal.draw_marginal_effects`), with an RNG
        seeded by ``seed``: together the draws are from the joint posterior. Then adds the
        ``log_likelihood`` group (``bmd``, see :meth:`log_likelihood`).

        Both grow with patients x draws, which the estimands do not need: above
        :data:`models.marginal_effects.EAGER_PATIENT_DRAWS` patients x draws
        (:func:`models.marginal_effects.per_patient_eager`) neither is added; the posterior's
        attributes ``rajak_per_patient = "on request"`` and ``rajak_effects_seed`` say so, and
        :meth:`patient_effects`, :meth:`log_likelihood` and :meth:`posterior_predictive` compute
        them on request, chunk by chunk, with the same draws.
        """
        import xarray as xr

        post = dt["posterior"].to_dataset()
        n_draws = int(post.sizes["chain"] * post.sizes["draw"])
        if not per_patient_eager(self.prepared.n_patients, n_draws):
            post.attrs.update({ON_REQUEST_ATTR: "on request", SEED_ATTR: int(seed)})
            dt["posterior"] = post
            return dt
        if self.parameterisation == "marginal":
            post["u"] = self.patient_effects(post, seed=seed)
            dt["posterior"] = post
        dt["log_likelihood"] = xr.Dataset({"bmd": self.log_likelihood(dt["posterior"].to_dataset())})
        return dt

    def iter_patient_effects(self, post: xr.Dataset, seed: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """The patient effects (original scale) chunk by chunk: ``(lo, hi, u)`` with ``u`` of shape
        (hi - lo, patient, 2) for the draws ``lo:hi`` of the flattened (chain-major) draws.

        From the posterior's ``u`` when it has one, else drawn as :meth:`postprocess` draws them
        (``seed`` default: the posterior's ``rajak_effects_seed``), never holding every draw's.
        """
        flat = int(post.sizes["chain"] * post.sizes["draw"])
        if "u" in post:
            u = post["u"].transpose("chain", "draw", "patient", "effect").values
            u = u.reshape(flat, *u.shape[2:])
            step = chunk_draws(flat, self.prepared.n_obs)
            for lo in range(0, flat, step):
                yield lo, min(flat, lo + step), u[lo:lo + step]
            return
        if self.parameterisation != "marginal":
            raise ValueError("the posterior has no patient effects 'u'")
        seed = int(post.attrs.get(SEED_ATTR, 0)) if seed is None else int(seed)
        weights = post["w_obs"].values if "w_obs" in post else None
        scale = float(self.data_values["y_scale"])
        for lo, hi, u in iter_marginal_effects(post, self.data_values, np.random.default_rng([seed, 7]),
                                               weights=weights):
            yield lo, hi, u * scale

    def patient_effects(self, post: xr.Dataset, seed: int | None = None, dtype: Any = np.float64) -> xr.DataArray:
        """The patient effects ``u`` (chain, draw, patient, effect) on the original scale, on request.

        The posterior's own ``u`` when it has one; else drawn as :meth:`postprocess` draws them
        (same draws for the same ``seed``, default the posterior's ``rajak_effects_seed``), in
        chunks of draws, stored as ``dtype`` (``float32`` halves the memory).
        """
        if "u" in post:
            return post["u"].astype(dtype, copy=False)
        n_chain, n_draw = int(post.sizes["chain"]), int(post.sizes["draw"])
        out = np.empty((n_chain * n_draw, self.prepared.n_patients, 2), dtype=dtype)
        for lo, hi, u in self.iter_patient_effects(post, seed):
            out[lo:hi] = u
        return effects_dataarray(out.reshape(n_chain, n_draw, *out.shape[1:]), self.prepared.patient_ids)

    def log_likelihood(self, post: xr.Dataset, dtype: Any = np.float64) -> xr.DataArray:
        r"""Pointwise log-likelihood of each observation given the patient's effects,

        .. math::

            \log p(y_{ij} \mid \theta, u_i) = \log f(y_{ij};\ \mu_{ij}, \sigma[, \nu]),\quad
            \mu_{ij} = b_0 + \sum_k b_{2k} g_{ik} + \Bigl(b_1 + \sum_k b_{2k+1} g_{ik}\Bigr) t_{ij}
                       + (x_{ij} - \bar x)^\top\gamma + u_{0i} + u_{1i} t_{ij},

        on the original scale (dims ``chain, draw, obs``), for PSIS-LOO (conditional on the
        patient effects, as brms' default ``loo``). Without ``u`` in the posterior (a large
        fit) the effects are drawn on request (:meth:`iter_patient_effects`) and the result is
        filled chunk by chunk, as ``dtype``.
        """
        import xarray as xr
        from scipy import stats

        prep = self.prepared

        def logpdf(mu: np.ndarray, block: dict[str, np.ndarray]) -> np.ndarray:
            sigma = block["sigma"][..., None]
            if self.likelihood == "student_t":
                return stats.t.logpdf(prep.y, block["nu"][..., None], loc=mu, scale=sigma)
            return stats.norm.logpdf(prep.y, loc=mu, scale=sigma)

        if "u" in post:  # the whole array at once (small fits: as it always was)
            ll = logpdf(self._mu(post), {v: post[v].values for v in ("sigma", "nu") if v in post})
            return xr.DataArray(ll.astype(dtype, copy=False), dims=("chain", "draw", "obs"))
        out = self._fill_by_chunk(post, lambda mu, block, lo, hi: logpdf(mu, block), dtype)
        return xr.DataArray(out, dims=("chain", "draw", "obs"))

    def _fill_by_chunk(self, post: xr.Dataset, per_chunk: Callable[..., np.ndarray], dtype: Any) -> np.ndarray:
        """A (chain, draw, obs) array filled from ``per_chunk(mu, block, lo, hi)`` over chunks of draws,
        with the effects drawn on request (:meth:`iter_patient_effects`)."""
        n_chain, n_draw = int(post.sizes["chain"]), int(post.sizes["draw"])
        flat = n_chain * n_draw
        names = [v for v in ("b", "gamma", "sigma", "nu") if v in post]
        draws = {v: post[v].values.reshape(flat, *post[v].shape[2:]) for v in names}
        out = np.empty((flat, self.prepared.n_obs), dtype=dtype)
        for lo, hi, u in self.iter_patient_effects(post):
            block = {v: a[lo:hi] for v, a in draws.items()}
            out[lo:hi] = per_chunk(self._mu_of(block["b"], u, block.get("gamma")), block, lo, hi)
        return out.reshape(n_chain, n_draw, -1)

    def _mu(self, post: xr.Dataset) -> np.ndarray:
        b = post["b"].transpose("chain", "draw", "coef").values
        u = post["u"].transpose("chain", "draw", "patient", "effect").values
        gamma = post["gamma"].transpose("chain", "draw", "covariate").values if self.prepared.covariates else None
        return self._mu_of(b, u, gamma)

    def _mu_of(self, b: np.ndarray, u: np.ndarray, gamma: np.ndarray | None) -> np.ndarray:
        """Each row's mean (leading dims of ``b``, obs) from coefficients, effects and covariate slopes."""
        prep = self.prepared
        t = prep.t_years
        m0, m1 = group_means(b, prep.group_x[prep.patient_idx], prep.n_contrasts)  # per row
        mu = m0 + m1 * t + u[..., prep.patient_idx, 0] + u[..., prep.patient_idx, 1] * t
        if prep.covariates:
            mu = mu + gamma @ (prep.x - prep.x_loc).T
        return mu

    def posterior_predictive(self, post: xr.Dataset, seed: int = 0, dtype: Any = np.float64) -> np.ndarray:
        """Replicated observations (chain, draw, obs) in g/cm^2, given each draw's patient effects.

        Without ``u`` in the posterior (a large fit) the effects are drawn on request and the
        replicates are filled chunk by chunk (same random numbers), as ``dtype``.
        """
        rng = np.random.default_rng([seed, 11])
        if "u" in post:  # the whole array at once (small fits: as it always was)
            mu = self._mu(post)
            sigma = post["sigma"].values[..., None]
            if self.likelihood == "student_t":
                eps = rng.standard_t(post["nu"].values[..., None], size=mu.shape)
            else:
                eps = rng.standard_normal(mu.shape)
            return (mu + sigma * eps).astype(dtype, copy=False)

        def replicate(mu: np.ndarray, block: dict[str, np.ndarray], lo: int, hi: int) -> np.ndarray:
            if self.likelihood == "student_t":
                eps = rng.standard_t(block["nu"][..., None], size=mu.shape)
            else:
                eps = rng.standard_normal(mu.shape)
            return mu + block["sigma"][..., None] * eps

        return self._fill_by_chunk(post, replicate, dtype)
