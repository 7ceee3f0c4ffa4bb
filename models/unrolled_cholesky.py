r"""Log-determinants and quadratic forms of small SPD matrices, unrolled into elementwise ops.

For a batch of symmetric positive definite :math:`k \times k` matrices :math:`A_n` (one per
patient) and vectors :math:`c_n`, :func:`unrolled_logdet_quad` computes :math:`\log|A_n|` and
:math:`c_n^\top A_n^{-1} c_n` from the Cholesky factorisation :math:`A_n = L_n L_n^\top` written
out entry by entry, so that a PyTensor graph holds only elementwise operations over the batch (no
batched linear-algebra ops: cheap to compile and differentiate, and no per-pattern shapes). The
Bayesian MMRM (:mod:`models.mmrm`, :math:`k` = number of visits) and the joint two-site model
(:mod:`models.joint`, :math:`k = 4`) use it for their marginal likelihoods.
"""

from __future__ import annotations

from typing import Any

__all__ = ["unrolled_logdet_quad"]


def unrolled_logdet_quad(a: list[list[Any]], c: list[Any]) -> tuple[Any, Any]:
    r"""Log-determinant and quadratic form of small SPD matrices, elementwise over a batch.

    Parameters
    ----------
    a : list of lists of tensors
        ``a[i][j]`` (``j <= i`` is read) is entry :math:`(i, j)` of a symmetric positive
        definite :math:`k \times k` matrix :math:`A_n` for every batch element :math:`n`;
        entries broadcast (scalars for entries shared by the batch).
    c : list of tensors
        The :math:`k` entries of a vector :math:`c_n`.

    Returns
    -------
    logdet, quad : tensors
        :math:`\log|A_n|` and :math:`c_n^\top A_n^{-1} c_n` per batch element.

    Notes
    -----
    The Cholesky factorisation :math:`A = L L^\top` (:math:`L_{jj} = (a_{jj} - \sum_{l<j}
    L_{jl}^2)^{1/2}`, :math:`L_{ij} = (a_{ij} - \sum_{l<j} L_{il} L_{jl}) / L_{jj}`) and the
    forward solve :math:`L z = c` are written out entry by entry, so the graph is made of
    elementwise operations only (no batched linear-algebra ops, cheap to compile and
    differentiate); :math:`\log|A| = 2\sum_j \log L_{jj}`, :math:`c^\top A^{-1} c = z^\top z`.
    Meant for :math:`k \lesssim 8`.
    """
    import pytensor.tensor as pt

    k = len(c)
    low: dict[tuple[int, int], Any] = {}
    for j in range(k):
        for i in range(j, k):
            s = a[i][j]
            for m in range(j):
                s = s - low[i, m] * low[j, m]
            low[i, j] = pt.sqrt(s) if i == j else s / low[j, j]
    z: list[Any] = []
    for j in range(k):
        s = c[j]
        for m in range(j):
            s = s - low[j, m] * z[m]
        z.append(s / low[j, j])
    logdet = 2.0 * sum(pt.log(low[j, j]) for j in range(k))
    quad = sum(zj * zj for zj in z)
    return logdet, quad
