r"""Common result object of the REML models: Wald tests, contrasts and marginal means.

For a contrast row :math:`l`, the estimate is :math:`l^\top\hat\beta` with standard error
:math:`\sqrt{l^\top\Phi l}` and Satterthwaite df (``df_method="satterthwaite"``), or
:math:`\sqrt{l^\top\Phi_A l}` with Kenward-Roger df (``df_method="kenward-roger"``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.frequentist.design import Design, coerce_contrast, reference_grid
from analysis.frequentist.ddf import contrast_table, f_test, satterthwaite_df
from analysis.frequentist.reml import Inference

__all__ = ["RemlFit", "DF_METHODS", "jsonable"]

DF_METHODS = ("satterthwaite", "kenward-roger")


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: frames as lists of records, numpy scalars and arrays as Python
    ones, non-finite floats as ``None``."""
    if isinstance(obj, pd.DataFrame):
        return [jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


class RemlFit:
    """Base class of :class:`LmmResult` and :class:`MmrmResult` (not instantiated directly).

    Common attributes: ``terms`` (coefficient names), ``coef`` (Series), ``vcov``
    (DataFrame; KR-adjusted under Kenward-Roger), ``fixed`` (Wald table), ``loglik``,
    ``n_obs``, ``n_subjects``, ``n_excluded``, ``excluded_by``, ``df_method``, ``level``.
    """

    def __init__(self, design: Design, inference: Inference, df_method: str, level: float,
                 kr: tuple | None, subject: str) -> None:
        self._design = design
        self._inf = inference
        self.df_method = df_method
        self.level = level
        self._kr = kr
        self.terms = list(design.columns)
        self.n_obs = int(len(design.y))
        self.n_subjects = int(design.data[subject].nunique())
        self.n_excluded = int(design.n_excluded)
        self.excluded_by = dict(design.excluded_by)
        self.loglik = float(inference.loglik)
        self.coef = pd.Series(inference.beta, index=design.columns, name="estimate")
        vc = inference.vcov if kr is None else kr[0]
        self.vcov = pd.DataFrame(vc, index=design.columns, columns=design.columns)
        self.fixed = self.contrast(np.eye(len(design.columns)), names=design.columns)

    @property
    def variables(self) -> list[str]:
        """The raw variables of the formula's right-hand side (e.g. ``["baseline", "group", "month"]``)."""
        return list(self._design.variables)

    # ------------------------------------------------------------------------------------------
    def _wald(self, lmat: np.ndarray, names: list[str], level: float) -> pd.DataFrame:
        est = lmat @ self._inf.beta
        if self._kr is None:
            se = np.sqrt(np.einsum("cp,pq,cq->c", lmat, self._inf.vcov, lmat))
            df = np.array([satterthwaite_df(row, self._inf) for row in lmat])
        else:
            phi_a, df_fun = self._kr
            se = np.sqrt(np.einsum("cp,pq,cq->c", lmat, phi_a, lmat))
            df = np.array([df_fun(row[None, :])[1] for row in lmat])
        return contrast_table(names, est, se, df, level)

    def contrast(self, lmat, names: list[str] | None = None,
                 level: float | None = None) -> pd.DataFrame:
        """Estimates, SEs, df, t, p and CIs of the linear combinations ``L @ beta``.

        Parameters
        ----------
        lmat : array-like, DataFrame or dict
            ``(c, p)`` matrix (or length-p vector) in the order of ``coef``; a DataFrame
            with coefficient-name columns; or ``{name: vector or {coefficient: weight}}``.
        names : list of str, optional
            Row labels (default ``c1, c2, ...`` or the dict keys / DataFrame index).
        level : float, optional
            Confidence level (default: the fit's ``level``).
        """
        arr, rnames = coerce_contrast(lmat, self.terms, names)
        return self._wald(arr, rnames, self.level if level is None else level)

    def f_test(self, lmat) -> dict[str, float]:
        """Joint test of ``L @ beta = 0``: F, numerator/denominator df and p-value.

        Satterthwaite: lmerTest's ``contestMD`` method; Kenward-Roger: scaled F with KR df.
        """
        arr, _ = coerce_contrast(lmat, self.terms)
        if self._kr is None:
            return f_test(arr, self._inf.beta, self._inf)
        from scipy import stats

        phi_a, df_fun = self._kr
        q = arr.shape[0]
        lb = arr @ self._inf.beta
        f_raw = float(lb @ np.linalg.solve(arr @ phi_a @ arr.T, lb) / q)
        lam, ddf = df_fun(arr)
        f_stat = lam * f_raw
        return {"f": f_stat, "num_df": float(q), "den_df": ddf, "scale": lam,
                "p": float(stats.f.sf(f_stat, q, ddf))}

    def reference_grid(self, specs, by=(), at: dict | None = None,
                       weights: str = "equal") -> tuple[pd.DataFrame, np.ndarray]:
        """Grid of marginal means and its ``(rows, p)`` matrix (see :meth:`lsmeans`)."""
        specs = [specs] if isinstance(specs, str) else list(specs)
        by = [by] if isinstance(by, str) else list(by)
        return reference_grid(self._design, specs, by, at, weights)

    def lsmeans(self, specs, by=(), at: dict | None = None, weights: str = "equal",
                level: float | None = None) -> pd.DataFrame:
        """Least-squares (estimated marginal) means, emmeans-style.

        Every factor in the model is crossed; numeric covariates sit at their mean over the
        analysed rows (observations, as emmeans does) unless given in ``at``; predictions are
        averaged over factors not in ``specs``/``by`` with equal weights (emmeans' default) or
        ``weights="proportional"`` (by their frequencies in the analysed rows).

        Returns one row per combination of ``specs`` and ``by`` with ``estimate, se, df, t, p,
        ci_low, ci_high``.
        """
        grid, lmat = self.reference_grid(specs, by, at, weights)
        tab = self._wald(lmat, [""] * len(grid), self.level if level is None else level)
        return pd.concat([grid.reset_index(drop=True), tab.drop(columns="term")], axis=1)

    def pairwise(self, specs: str, by=(), at: dict | None = None, weights: str = "equal",
                 reverse: bool = False, level: float | None = None) -> pd.DataFrame:
        """All pairwise differences of the marginal means of ``specs`` within each ``by`` cell.

        Differences are ``level_i - level_j`` for ``i < j`` in level order (emmeans
        ``pairs()``), or ``level_j - level_i`` with ``reverse=True`` (``revpairwise``). No
        multiplicity adjustment.
        """
        by = [by] if isinstance(by, str) else list(by)
        grid, lmat = self.reference_grid([specs], by, at, weights)
        rows, lrows = [], []
        cells = grid.groupby(by, observed=True, sort=False) if by else [((), grid)]
        for key, sub in cells:
            idx = list(sub.index)
            for a in range(len(idx)):
                for b in range(a + 1, len(idx)):
                    i, j = (idx[b], idx[a]) if reverse else (idx[a], idx[b])
                    label = f"{grid.loc[i, specs]} - {grid.loc[j, specs]}"
                    key_t = key if isinstance(key, tuple) else (key,)
                    rows.append({**dict(zip(by, key_t)), "contrast": label})
                    lrows.append(lmat[i] - lmat[j])
        tab = self._wald(np.vstack(lrows), [r["contrast"] for r in rows],
                         self.level if level is None else level)
        return pd.concat([pd.DataFrame(rows).drop(columns="contrast"),
                          tab.rename(columns={"term": "contrast"})], axis=1)

    def _base_dict(self) -> dict[str, Any]:
        return {
            "n_obs": self.n_obs, "n_subjects": self.n_subjects, "n_excluded": self.n_excluded,
            "excluded_by": self.excluded_by, "loglik": self.loglik, "df_method": self.df_method,
            "level": self.level, "fixed": self.fixed,
            "vcov": {"terms": self.terms, "matrix": self.vcov.to_numpy()},
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (non-finite numbers become ``None``)."""
        return jsonable(self._base_dict())
