r"""The LKJ prior on a correlation matrix, through its canonical partial correlations.

Lewandowski, Kurowicka & Joe (2009, the C-vine construction): if the partial correlations
:math:`z_{ki} = \rho_{k,i \mid 0, \dots, k-1}` (:math:`0 \le k < i < d`) are independent with

.. math::

    \frac{z_{ki} + 1}{2} \sim \mathrm{Beta}(\beta_k, \beta_k), \qquad
    \beta_k = \eta + \frac{d - 2 - k}{2},

then the correlation matrix :math:`\Omega` they define has density
:math:`\propto \det(\Omega)^{\eta - 1}`, i.e. :math:`\Omega \sim \mathrm{LKJ}(\eta)`. Its
Cholesky factor is read off directly (Stan's ``cholesky_corr_constrain``):

.. math::

    L_{00} = 1,\quad L_{i0} = z_{0i},\quad
    L_{ij} = z_{ji} \sqrt{1 - \textstyle\sum_{m<j} L_{im}^2}\ (0 < j < i),\quad
    L_{ii} = \sqrt{1 - \textstyle\sum_{m<i} L_{im}^2}.

For :math:`d = 2` this is :math:`(\rho + 1)/2 \sim \mathrm{Beta}(\eta, \eta)`, the form
:mod:`models.trajectory` uses. Written with ``pm.Beta`` and elementary operations, the graph has
no ``OpFromGraph`` (``pm.LKJCorr`` / ``pm.LKJCholeskyCov`` use one): it pickles, so its rewritten
functions go into the graph cache (:mod:`analysis.engine.graph_cache`), and it compiles faster from an
empty cache. :math:`\eta` may be a tensor (``pm.Data``), so prior sets are data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["corr_cholesky_from_cpc", "cpc_shapes", "lkj_corr_cholesky"]


def cpc_shapes(n: int, eta: Any) -> list[Any]:
    """The Beta shape :math:`\\beta_k` of each of the :math:`n(n-1)/2` partial correlations, in
    the order ``(k, i)`` for ``k`` in ``0..n-2``, ``i`` in ``k+1..n-1``."""
    return [eta + (n - 2 - k) / 2.0 for k in range(n - 1) for _ in range(k + 1, n)]


def corr_cholesky_from_cpc(z: Any, n: int, backend: Any = np) -> Any:
    """Cholesky factor (lower triangular, ``(n, n)``) of the correlation matrix with canonical
    partial correlations ``z`` (length :math:`n(n-1)/2`, order of :func:`cpc_shapes`).

    ``backend``: ``numpy`` (arrays) or ``pytensor.tensor`` (symbolic)."""
    pos = {}
    c = 0
    for k in range(n - 1):
        for i in range(k + 1, n):
            pos[(k, i)] = c
            c += 1
    rows = []
    for i in range(n):
        row, used = [], 0.0
        for j in range(n):
            if j < i:
                zij = z[pos[(j, i)]]
                lij = zij if j == 0 else zij * backend.sqrt(1.0 - used)
                row.append(lij)
                used = used + lij**2
            elif j == i:
                row.append(1.0 + 0.0 * z[0] if i == 0 else backend.sqrt(1.0 - used))
            else:
                row.append(0.0 * z[0])
        rows.append(backend.stack(row))
    return backend.stack(rows)


def lkj_corr_cholesky(name: str, n: int, eta: Any) -> Any:
    """Inside a PyMC model: the Cholesky factor of :math:`\\Omega \\sim \\mathrm{LKJ}(\\eta)`
    (module docstring). The free variable is ``<name>`` (the partial correlations mapped to
    (0, 1), dim ``<name>_dim``, Beta-distributed); the factor is returned, not stored."""
    import pymc as pm
    import pytensor.tensor as pt

    if n < 2:
        raise ValueError(f"an LKJ correlation needs n >= 2, got {n}")
    shapes = pt.stack(cpc_shapes(n, pt.as_tensor_variable(eta)))
    u = pm.Beta(name, alpha=shapes, beta=shapes, shape=(n * (n - 1) // 2,))
    return corr_cholesky_from_cpc(2.0 * u - 1.0, n, pt)
