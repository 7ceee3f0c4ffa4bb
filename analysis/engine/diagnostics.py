r"""Convergence diagnostics of a posterior and the verdict every rajak fit carries.

Rank-normalised split R-hat, bulk and tail ESS (``arviz_stats``' public array interface,
``arviz_stats.base.array_stats.rhat`` / ``.ess``) over a model's ``diagnostic_vars``, divergences,
and E-BFMI per chain (``array_stats.bfmi``)

.. math:: \mathrm{E\text{-}BFMI} = \frac{\sum_{n>1} (E_n - E_{n-1})^2}{\sum_n (E_n - \bar E)^2}.

The verdict passes when R-hat <= 1.01, bulk and tail ESS >= 400, no divergences and every chain's
E-BFMI >= 0.3 (:class:`Thresholds`); failing checks are named in :attr:`Diagnostics.failures`.
nutpie prints nothing about a bad fit: read the verdict.

:func:`diagnose` judges a ``DataTree``; :func:`diagnose_arrays` judges plain ``(chain, draw, ...)``
arrays (the compiled-once refits of :mod:`analysis.engine.refit`, which never build a DataTree), in
one batched call per statistic; :func:`diagnose_public` goes through ``arviz_stats.rhat``/``ess`` on
the Dataset and is the reference both are tested against.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any, Literal

import numpy as np
import xarray as xr

__all__ = ["Thresholds", "Diagnostics", "diagnose", "diagnose_arrays", "diagnose_public", "ebfmi",
           "element_labels"]


@dataclass(frozen=True)
class Thresholds:
    """Pass marks of the convergence verdict."""

    rhat_max: float = 1.01
    ess_bulk_min: float = 400.0
    ess_tail_min: float = 400.0
    divergences_max: int = 0
    ebfmi_min: float = 0.3


@dataclass(frozen=True)
class Diagnostics:
    """Convergence summary of one fit.

    Attributes
    ----------
    max_rhat, min_ess_bulk, min_ess_tail : float
        Worst values over every element of the diagnostic variables (NaN when not computable).
    worst_rhat, worst_ess_bulk, worst_ess_tail : str
        Which element, e.g. ``"b[intercept]"``.
    n_divergences : int
    ebfmi : tuple of float
        E-BFMI per chain.
    n_max_treedepth : int
        Draws whose trajectory hit the maximum tree depth (reported, not judged).
    n_draws, n_chains : int
    var_names : tuple of str
        The variables judged.
    passed : bool
    failures : tuple of str
        One line per failing check, starting with its name (``rhat``, ``ess_bulk``,
        ``ess_tail``, ``divergences``, ``ebfmi``).
    thresholds : Thresholds
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    worst_rhat: str
    worst_ess_bulk: str
    worst_ess_tail: str
    n_divergences: int
    ebfmi: tuple[float, ...]
    n_max_treedepth: int
    n_draws: int
    n_chains: int
    var_names: tuple[str, ...]
    passed: bool
    failures: tuple[str, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """Names of the failing checks."""
        return tuple(f.split(":", 1)[0] for f in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnostics:
        d = dict(d)
        d["thresholds"] = Thresholds(**d["thresholds"])
        for key in ("ebfmi", "var_names", "failures"):
            d[key] = tuple(d[key])
        return cls(**d)

    def __str__(self) -> str:
        head = "PASS" if self.passed else "FAIL (" + ", ".join(self.failed_checks) + ")"
        return (
            f"{head}: max R-hat {self.max_rhat:.3f} ({self.worst_rhat}), "
            f"min bulk ESS {self.min_ess_bulk:.0f} ({self.worst_ess_bulk}), "
            f"min tail ESS {self.min_ess_tail:.0f} ({self.worst_ess_tail}), "
            f"{self.n_divergences} divergences, E-BFMI "
            + ", ".join(f"{e:.2f}" for e in self.ebfmi)
        )



def _worst(stat: xr.Dataset, mode: Literal["max", "min"]) -> tuple[float, str]:
    """Worst element over all variables of a per-element statistic; NaN wins."""
    best_val, best_label = (-np.inf if mode == "max" else np.inf), ""
    for name, da in stat.data_vars.items():
        vals = np.asarray(da.values, dtype=float)
        flat = vals.reshape(-1)
        if flat.size == 0:
            continue
        if np.isnan(flat).any():
            pos = int(np.flatnonzero(np.isnan(flat))[0])
            val = np.nan
        else:
            pos = int(np.argmax(flat) if mode == "max" else np.argmin(flat))
            val = float(flat[pos])
        label = name
        if vals.ndim:
            idx = np.unravel_index(pos, vals.shape)
            parts = [
                str(da[d].values[i]) if d in da.coords else str(i) for d, i in zip(da.dims, idx)
            ]
            label = f"{name}[{', '.join(parts)}]"
        if np.isnan(val):
            return np.nan, label
        if (mode == "max" and val > best_val) or (mode == "min" and val < best_val):
            best_val, best_label = val, label
    return float(best_val), best_label


def ebfmi(energy: np.ndarray) -> np.ndarray:
    """E-BFMI per chain from an energy array of shape (chain, draw) (``arviz_stats``' ``bfmi``)."""
    from arviz_stats.base import array_stats

    energy = np.asarray(energy, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(array_stats.bfmi(energy, chain_axis=0, draw_axis=1), dtype=float)


def diagnose(
    dt: xr.DataTree, var_names: list[str] | None = None, thresholds: Thresholds | None = None
) -> Diagnostics:
    """Convergence diagnostics and verdict for a posterior ``DataTree``.

    The statistics are ``arviz_stats``' rank-normalised split R-hat and bulk/tail ESS over all
    elements of all variables in one call each (:func:`diagnose_arrays`); the values equal
    :func:`diagnose_public`'s (tested).

    Parameters
    ----------
    dt : DataTree
        With ``posterior`` and ``sample_stats`` (``diverging``, ``energy``) groups.
    var_names : list of str, optional
        Variables to judge; default every posterior variable. Names not in the posterior are
        ignored.
    thresholds : Thresholds, optional

    Returns
    -------
    Diagnostics
    """
    post = dt["posterior"].to_dataset()
    names = [v for v in (var_names or list(post.data_vars)) if v in post.data_vars]
    if not names:
        raise ValueError("none of the diagnostic variables is in the posterior")
    stats = dt["sample_stats"].to_dataset() if "sample_stats" in dt.children else xr.Dataset()
    if "energy" not in stats or "diverging" not in stats or any(
            post[v].dims[:2] != ("chain", "draw") for v in names):
        return diagnose_public(dt, names, thresholds)
    draws, labels = {}, {}
    for v in names:
        da = post[v]
        draws[v] = np.asarray(da.values, dtype=float)
        labels[v] = element_labels(v, da.dims[2:], da.shape[2:],
                                    {d: da[d].values for d in da.dims[2:] if d in da.coords})
    depth_var = next((v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None)
    arrays = {"diverging": stats["diverging"].values, "energy": stats["energy"].values}
    if depth_var:
        arrays["maxdepth_reached"] = stats[depth_var].values
    return diagnose_arrays(draws, arrays, labels, thresholds)


def diagnose_public(
    dt: xr.DataTree, var_names: list[str] | None = None, thresholds: Thresholds | None = None
) -> Diagnostics:
    """:func:`diagnose` through ``arviz_stats``' public ``rhat``/``ess`` on the Dataset (the reference
    the vectorised path is tested against, and the fallback for unusual layouts)."""
    import arviz_stats as az  # the statistics only: the arviz meta-package also imports matplotlib

    thresholds = thresholds if thresholds is not None else Thresholds()
    post = dt["posterior"].to_dataset()
    names = [v for v in (var_names or list(post.data_vars)) if v in post.data_vars]
    if not names:
        raise ValueError("none of the diagnostic variables is in the posterior")
    ds = post[names]
    with warnings.catch_warnings():
        # constant elements give 0/0 inside arviz; they come out as NaN and fail the check
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = az.rhat(ds)
        ess_bulk = az.ess(ds, method="bulk")
        ess_tail = az.ess(ds, method="tail")
    max_rhat, worst_rhat = _worst(rhat, "max")
    min_bulk, worst_bulk = _worst(ess_bulk, "min")
    min_tail, worst_tail = _worst(ess_tail, "min")

    stats = dt["sample_stats"].to_dataset() if "sample_stats" in dt.children else xr.Dataset()
    n_div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    bfmi = tuple(float(e) for e in ebfmi(stats["energy"].values)) if "energy" in stats else ()
    depth_var = next(
        (v for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats), None
    )
    n_depth = int(stats[depth_var].sum()) if depth_var else 0

    failures = []
    if not max_rhat <= thresholds.rhat_max:
        failures.append(f"rhat: max {max_rhat:.3f} > {thresholds.rhat_max} ({worst_rhat})")
    if not min_bulk >= thresholds.ess_bulk_min:
        failures.append(
            f"ess_bulk: min {min_bulk:.0f} < {thresholds.ess_bulk_min:.0f} ({worst_bulk})"
        )
    if not min_tail >= thresholds.ess_tail_min:
        failures.append(
            f"ess_tail: min {min_tail:.0f} < {thresholds.ess_tail_min:.0f} ({worst_tail})"
        )
    if n_div > thresholds.divergences_max:
        failures.append(f"divergences: {n_div} > {thresholds.divergences_max}")
    if not bfmi or not all(e >= thresholds.ebfmi_min for e in bfmi):
        failures.append(
            "ebfmi: "
            + (", ".join(f"{e:.2f}" for e in bfmi) if bfmi else "no energy stats")
            + f" (min {thresholds.ebfmi_min})"
        )
    return Diagnostics(
        max_rhat=max_rhat,
        min_ess_bulk=min_bulk,
        min_ess_tail=min_tail,
        worst_rhat=worst_rhat,
        worst_ess_bulk=worst_bulk,
        worst_ess_tail=worst_tail,
        n_divergences=n_div,
        ebfmi=bfmi,
        n_max_treedepth=n_depth,
        n_draws=int(post.sizes.get("draw", 0)),
        n_chains=int(post.sizes.get("chain", 0)),
        var_names=tuple(names),
        passed=not failures,
        failures=tuple(failures),
        thresholds=thresholds,
    )




def element_labels(name: str, dims: tuple[str, ...], shape: tuple[int, ...], coords: Mapping[str, Any]) -> list[str]:
    """``name[a, b]`` per element in C order, as :func:`analysis.engine.sampling.diagnose` labels them."""
    if not shape:
        return [name]
    axes = []
    for k, size in enumerate(shape):
        d = dims[k] if k < len(dims) else None
        values = coords.get(d) if d is not None else None
        axes.append([str(v) for v in values] if values is not None and len(values) == size
                    else [str(i) for i in range(size)])
    return [f"{name}[{', '.join(combo)}]" for combo in product(*axes)]


def diagnose_arrays(draws: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray],
                    labels: Mapping[str, list[str]] | None = None, thresholds: Any = None) -> Any:
    """:func:`diagnose` on plain ``(chain, draw, ...)`` arrays.

    Same statistics (rank-normalised split R-hat, bulk and tail ESS from ``arviz_stats``, E-BFMI
    per chain), labels, verdict and failure lines, with one batched call per statistic.

    Parameters
    ----------
    draws : mapping of str to ndarray
        ``(chain, draw, ...)`` per variable.
    stats : mapping of str to ndarray
        ``diverging``, ``energy`` and (optionally) ``maxdepth_reached``, each ``(chain, draw)``.
    labels : mapping of str to list of str, optional
        Element labels per variable (default ``name[i, j]``).
    thresholds : Thresholds, optional

    Returns
    -------
    Diagnostics
    """
    from arviz_stats.base import array_stats
    from arviz_stats.validate import validate_ci_prob

    thresholds = thresholds if thresholds is not None else Thresholds()
    if not draws:
        raise ValueError("no variables to diagnose")
    names = list(draws)
    flat_labels: list[str] = []
    cols = []
    for v in names:
        a = np.asarray(draws[v], dtype=float)
        cols.append(a.reshape(a.shape[0], a.shape[1], -1))
        lab = (labels or {}).get(v) or element_labels(v, (), a.shape[2:], {})
        flat_labels += list(lab)
    arr = np.concatenate(cols, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = np.asarray(array_stats.rhat(arr, chain_axis=0, draw_axis=1), dtype=float)
        bulk = np.asarray(array_stats.ess(arr, chain_axis=0, draw_axis=1, method="bulk"), dtype=float)
        tail = np.asarray(array_stats.ess(arr, chain_axis=0, draw_axis=1, method="tail",
                                          prob=validate_ci_prob(None)), dtype=float)

    def worst(x: np.ndarray, mode: str) -> tuple[float, str]:
        nan = np.flatnonzero(np.isnan(x))
        if nan.size:
            return np.nan, flat_labels[int(nan[0])]
        i = int(np.argmax(x) if mode == "max" else np.argmin(x))
        return float(x[i]), flat_labels[i]

    max_rhat, worst_rhat = worst(rhat, "max")
    min_bulk, worst_bulk = worst(bulk, "min")
    min_tail, worst_tail = worst(tail, "min")
    n_div = int(np.sum(stats["diverging"]))
    bfmi = tuple(float(e) for e in ebfmi(stats["energy"]))
    failures = []
    if not max_rhat <= thresholds.rhat_max:
        failures.append(f"rhat: max {max_rhat:.3f} > {thresholds.rhat_max} ({worst_rhat})")
    if not min_bulk >= thresholds.ess_bulk_min:
        failures.append(f"ess_bulk: min {min_bulk:.0f} < {thresholds.ess_bulk_min:.0f} ({worst_bulk})")
    if not min_tail >= thresholds.ess_tail_min:
        failures.append(f"ess_tail: min {min_tail:.0f} < {thresholds.ess_tail_min:.0f} ({worst_tail})")
    if n_div > thresholds.divergences_max:
        failures.append(f"divergences: {n_div} > {thresholds.divergences_max}")
    if not bfmi or not all(e >= thresholds.ebfmi_min for e in bfmi):
        failures.append("ebfmi: " + (", ".join(f"{e:.2f}" for e in bfmi) if bfmi else "no energy stats")
                        + f" (min {thresholds.ebfmi_min})")
    depth = stats.get("maxdepth_reached")
    return Diagnostics(max_rhat=max_rhat, min_ess_bulk=min_bulk, min_ess_tail=min_tail, worst_rhat=worst_rhat,
                       worst_ess_bulk=worst_bulk, worst_ess_tail=worst_tail, n_divergences=n_div, ebfmi=bfmi,
                       n_max_treedepth=int(np.sum(depth)) if depth is not None else 0, n_draws=int(arr.shape[1]),
                       n_chains=int(arr.shape[0]), var_names=tuple(names), passed=not failures,
                       failures=tuple(failures), thresholds=thresholds)
