r"""The patients' random effects of a marginal LMM, drawn after sampling: per patient, in chunks.

The marginal models (:mod:`models.marginal`) integrate the effects :math:`u_i` out of the
likelihood; after sampling, each posterior draw's effects are drawn from their exact Gaussian
conditional :math:`u_i \sim N(A_i^{-1} Z_i^\top W_i r_i / \sigma^2,\ A_i^{-1})` (notation of
:mod:`models.marginal`). Everything needed per patient is a (weighted) sum over the patient's own
rows of :math:`1, t, t^2, r, t r`, so the cost is linear in draws x rows:

- the per-patient sums are a sparse rows -> patients matrix product (one non-zero per row), never a
  dense observation x patient one-hot matrix;
- the draws are processed in chunks (:func:`chunk_draws`: about :data:`CHUNK_BYTES` of
  draws x rows temporaries at a time), so the working memory does not grow with the number of
  draws;
- the result can be stored in ``float32`` (``dtype``): the effects are ~1e-2 of the outcome's SD,
  and float32's seven digits are far below their posterior SD.

The random numbers are drawn chunk by chunk from one generator in the same order as one
``rng.standard_normal((chain, draw, patient, 2))`` call, so the draws do not depend on the chunk
size (and in float64 equal those of an unchunked computation up to rounding of the sums).

When a fit computes them at all is :func:`per_patient_eager`'s decision: small studies (up to
:data:`EAGER_PATIENT_DRAWS` patients x draws) get them in the posterior as always; larger ones get
them on request (:meth:`models.trajectory.TrajectoryModel.patient_effects`, ``log_likelihood``,
``posterior_predictive``), from the same seed, so the draws are the same either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["CHUNK_BYTES", "EAGER_PATIENT_DRAWS", "ON_REQUEST_ATTR", "SEED_ATTR", "chunk_draws", "draw_marginal_effects",
           "effects_dataarray", "iter_marginal_effects", "patient_sums", "per_patient_eager"]

#: Bytes of one draws x rows float64 temporary per chunk (the working set is a few of these).
CHUNK_BYTES = 32 * 2**20


def chunk_draws(n_draws: int, n_rows: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Draws per chunk so that a (draws, rows) float64 array takes about ``chunk_bytes``."""
    return int(max(1, min(n_draws, chunk_bytes // (8 * max(n_rows, 1)))))


def patient_sums(pidx: np.ndarray, n_patients: int) -> Any:
    """The sparse (rows, patients) indicator matrix: ``values @ S`` sums each patient's rows.

    ``scipy.sparse`` CSR with one non-zero per row; ``(S.T @ v.T).T`` sums a (k, rows) block in
    O(k x rows) time and memory. A patient without rows gets zero.
    """
    from scipy import sparse

    n = pidx.shape[0]
    return sparse.csr_array((np.ones(n), (np.arange(n), pidx)), shape=(n, n_patients))


def _row_means(beta: np.ndarray, g_rows: np.ndarray | None, n_con: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mean intercept and slope (draws, rows) from ``beta`` (draws, coef)."""
    m0, m1 = beta[:, 0, None], beta[:, 1, None]
    for k in range(n_con):
        g = g_rows[:, k]
        m0 = m0 + beta[:, 2 + 2 * k, None] * g
        m1 = m1 + beta[:, 3 + 2 * k, None] * g
    return m0, m1


def draw_marginal_effects(
    post: xr.Dataset,
    arrays: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    offset: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    dtype: Any = np.float64,
    chunk_bytes: int = CHUNK_BYTES,
) -> np.ndarray:
    r"""Draws of the standardised random effects given each posterior draw of a marginal model.

    Parameters
    ----------
    post : xarray.Dataset
        Posterior with ``beta_std`` (chain, draw, coef), ``tau_std``, ``corr_beta``,
        ``sigma_std`` and, with covariates, ``gamma_std``.
    arrays : dict
        The model's data (``y_std``, ``t``, ``patient_idx``, ``group_x``, ``x_std``; without
        ``group_x``, a single group, ``n_patients``).
    rng : numpy.random.Generator
    offset : ndarray, shape (chain, draw, obs), optional
        Further fixed part of the mean (standardised units), e.g. disease activity.
    weights : ndarray, shape (chain, draw, obs), optional
        Precision weights of the scale-mixture (Student-t) residuals.
    dtype : numpy dtype
        Of the result (``float32`` halves it; the arithmetic is float64 either way).
    chunk_bytes : int
        Working-memory budget per chunk of draws (:func:`chunk_draws`).

    Returns
    -------
    ndarray, shape (chain, draw, patient, 2)
        :math:`u_i \sim N(A_i^{-1} Z_i^\top W_i r_i / \sigma^2, A_i^{-1})` per draw.
    """
    n_chain, n_draw = post["beta_std"].shape[:2]
    n_con = (post["beta_std"].shape[2] - 2) // 2
    n_pat = arrays["group_x"].shape[0] if n_con else int(arrays["n_patients"])
    out = np.empty((n_chain * n_draw, n_pat, 2), dtype=dtype)
    for lo, hi, block in iter_marginal_effects(post, arrays, rng, offset=offset, weights=weights,
                                               chunk_bytes=chunk_bytes):
        out[lo:hi] = block
    return out.reshape(n_chain, n_draw, n_pat, 2)


def iter_marginal_effects(
    post: xr.Dataset,
    arrays: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    offset: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """:func:`draw_marginal_effects` chunk by chunk, never holding every draw's effects.

    Yields ``(lo, hi, u)``: the draws ``lo:hi`` of the chains' draws flattened in C order
    (chain-major) and their effects, a float64 array of shape (hi - lo, patient, 2). Same
    parameters as :func:`draw_marginal_effects`; the same ``rng`` gives the same draws.
    """
    beta3 = post["beta_std"].values  # (C, D, 2 + 2 n_contrasts)
    n_chain, n_draw, n_coef = beta3.shape
    flat = n_chain * n_draw

    def draws_of(values: np.ndarray) -> np.ndarray:
        return np.asarray(values).reshape(flat, *np.shape(values)[2:])

    beta = draws_of(beta3)
    tau = draws_of(post["tau_std"].values)
    rho = 2.0 * draws_of(post["corr_beta"].values) - 1.0
    sigma = draws_of(post["sigma_std"].values)
    gamma = draws_of(post["gamma_std"].values) if "gamma_std" in post else None
    t, pidx, y = arrays["t"], arrays["patient_idx"], arrays["y_std"]
    n_con = (n_coef - 2) // 2
    n_pat = arrays["group_x"].shape[0] if n_con else int(arrays["n_patients"])
    g_rows = arrays["group_x"][pidx] if n_con else None
    x_std = arrays.get("x_std") if gamma is not None else None
    off = None if offset is None else draws_of(offset)
    w_all = None if weights is None else draws_of(weights)
    s_t = patient_sums(np.asarray(pidx), n_pat).T.tocsr()  # (patients, rows)

    def psum(v: np.ndarray) -> np.ndarray:
        return np.asarray(s_t @ v.T).T  # (k, patients)

    if w_all is None:
        n_i = np.bincount(pidx, minlength=n_pat).astype(float)
        s1_i = np.bincount(pidx, weights=t, minlength=n_pat)
        s2_i = np.bincount(pidx, weights=t * t, minlength=n_pat)
    # the draws' covariance factor and the prior part of A (per draw)
    l00, l10, l11 = tau[:, 0], tau[:, 1] * rho, tau[:, 1] * np.sqrt(1.0 - rho**2)
    s00, s01, s11 = l00**2, l00 * l10, l10**2 + l11**2
    det_s = (l00 * l11) ** 2
    inv_s2 = 1.0 / sigma**2

    step = chunk_draws(flat, t.shape[0], chunk_bytes)
    for lo in range(0, flat, step):
        hi = min(flat, lo + step)
        m0, m1 = _row_means(beta[lo:hi], g_rows, n_con)
        fixed = m0 + m1 * t
        if gamma is not None:
            fixed = fixed + gamma[lo:hi] @ x_std.T
        if off is not None:
            fixed = fixed + off[lo:hi]
        r = y - fixed  # (k, N)
        del fixed, m0, m1
        if w_all is None:
            n, s1, s2 = n_i, s1_i, s2_i
            r0, r1 = psum(r), psum(r * t)
        else:
            w = w_all[lo:hi]
            n, s1, s2 = psum(w), psum(w * t), psum(w * t * t)
            wr = w * r
            r0, r1 = psum(wr), psum(wr * t)
            del wr
        del r
        i2 = inv_s2[lo:hi, None]
        a = (s11[lo:hi] / det_s[lo:hi])[:, None] + i2 * n
        b = (-s01[lo:hi] / det_s[lo:hi])[:, None] + i2 * s1
        c = (s00[lo:hi] / det_s[lo:hi])[:, None] + i2 * s2
        det_a = a * c - b * b
        # A^{-1} = [[c, -b], [-b, a]] / det_a; mean = A^{-1} Z^T W r / sigma^2
        z0, z1 = i2 * r0, i2 * r1
        mean0, mean1 = (c * z0 - b * z1) / det_a, (a * z1 - b * z0) / det_a
        v00, v01, v11 = c / det_a, -b / det_a, a / det_a
        c00 = np.sqrt(v00)
        c10 = v01 / c00
        c11 = np.sqrt(np.maximum(v11 - c10**2, 0.0))
        eps = rng.standard_normal((hi - lo, n_pat, 2))
        u = np.empty((hi - lo, n_pat, 2))
        u[..., 0] = mean0 + c00 * eps[..., 0]
        u[..., 1] = mean1 + c10 * eps[..., 0] + c11 * eps[..., 1]
        yield lo, hi, u


def effects_dataarray(u: np.ndarray, patient_ids: np.ndarray) -> xr.DataArray:
    """Patient effects (chain, draw, patient, effect) on the original scale as a DataArray."""
    import xarray as xr

    return xr.DataArray(
        u,
        dims=("chain", "draw", "patient", "effect"),
        coords={"patient": patient_ids, "effect": ["intercept", "slope"]},
    )


#: Patients x posterior draws up to which a fit's post-processing puts the per-patient quantities
#: (the effects ``u``, the pointwise log-likelihood) into the posterior at once, in float64 (the
#: RAJAK twin: 46 patients x 4000 draws); above it they are computed on request, in chunks.
EAGER_PATIENT_DRAWS = 250_000

#: Posterior attributes of a fit whose per-patient quantities are computed on request.
ON_REQUEST_ATTR = "rajak_per_patient"
SEED_ATTR = "rajak_effects_seed"


def per_patient_eager(n_patients: int, n_draws: int) -> bool:
    """Whether post-processing materialises the per-patient quantities.

    ``RAJAK_PER_PATIENT=always`` (every fit, any size: as before this policy) or ``on_request``
    (never) overrides the default, which is ``n_patients * n_draws <= EAGER_PATIENT_DRAWS``
    (:data:`EAGER_PATIENT_DRAWS`).
    """
    mode = os.environ.get("RAJAK_PER_PATIENT", "auto").strip().lower()
    if mode == "always":
        return True
    if mode == "on_request":
        return False
    return int(n_patients) * int(n_draws) <= EAGER_PATIENT_DRAWS
