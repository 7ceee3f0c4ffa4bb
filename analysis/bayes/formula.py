r"""The user's own model formula: a bambi mixed model sampled and summarised like rajak's models.

:func:`bambi_lmm` builds a bambi model from a formula (default in the design's words,
:func:`default_formula`: ``bmd ~ month * (group_active) + (1 + month | patient_id)`` for a study
with arms, one 0/1 column per level other than the design's reference; ``month * responder`` for
a responder study; ``month`` alone for a single arm) on the analysis frame and returns a
wrapper, :class:`BambiLMM`, that :func:`analysis.engine.sampling.sample` samples with nutpie like
every rajak model; its ``postprocess`` hands the draws to
:func:`analysis.engine.bambi_results.clean_bambi_posterior` (what ``bambi.Model.fit`` does after
sampling). :func:`formula_estimands` turns the fixed effects into estimands;
:func:`analysis.bayes.fit.fit_formula` is the whole path behind ``rajak fit --formula``.

The model
---------
``bmd`` is the site's BMD column (``bmd_<site>``, g/cm^2), time is ``month``; ``group`` is the
patient's level as a categorical with the design's reference first, and ``group_<level>`` a
0/1 indicator of each other level (so the coefficient ``group_active`` is active minus the
reference). For a responder study's default formula, patient :math:`i` at
month :math:`m_{ij}` with responder indicator :math:`r_i`:

.. math::

    \mathrm{bmd}_{ij} = \beta_0 + \beta_1 m_{ij} + \beta_2 r_i + \beta_3 r_i m_{ij}
        + u_{0i} + u_{1i} m_{ij} + e_{ij}, \qquad
    u_{ki} \sim N(0, \tau_k), \qquad e_{ij} \sim N(0, \sigma),

with bambi's default (weakly informative, data-scaled) priors, or ``priors`` passed to
``bambi.Model``. bambi's group effects are non-centred and uncorrelated (no LKJ term); it centres
the predictors while sampling, and the reported intercept :math:`\beta_0` is back on the
uncentred scale (the mean at month 0 of the reference group).

Estimands
---------
One per fixed-effect coefficient of the mean (bambi's intercept and common terms), named by the
column of bambi's design matrix: ``Intercept``, ``month``, ``responder``, ``month:responder``
(a boolean ``responder`` enters as 0/1), ``arm[B]`` for level ``B`` of a categorical ``arm``,
``month:arm[B]``... Summaries as every fit's (median, HDI, ETI, :math:`P(\beta<0)`,
:math:`P(\beta>0)`). An arbitrary coefficient has no natural region of practical equivalence (its
units depend on the term: g/cm^2, g/cm^2 per month, per year of age...) and no prior density that
rajak knows, so ``rope``, ``p_in_rope`` and ``bf10`` are left empty (NaN).

The data are baked into bambi's graph as constants, so every :class:`BambiLMM` compiles its own
model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.bayes.posterior import EstimandDraws
from analysis.engine.bambi_results import clean_bambi_posterior
from models.marginal import as_bool_responder

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["DEFAULT_FORMULA", "BambiLMM", "FormulaError", "bambi_lmm", "check_formula", "default_formula",
           "formula_estimands", "indicator_name"]

#: The trajectory LMM of :mod:`models.trajectory` of a responder study written as a formula (time in
#: months); :func:`default_formula` gives it in any design's words.
DEFAULT_FORMULA = "bmd ~ month * responder + (1 + month | patient_id)"


def indicator_name(level: str) -> str:
    """The 0/1 column of a non-reference group level in a formula's data: ``group_<level>`` with
    every character that is not a letter, digit or ``_`` replaced by ``_``."""
    return "group_" + re.sub(r"\W", "_", str(level))


def default_formula(data: pd.DataFrame) -> str:
    """The trajectory LMM as a formula in the data's words: ``month * responder`` with a
    ``responder`` column; with a categorical ``group`` of two or more levels, one 0/1 column per
    non-reference level (:func:`indicator_name`, e.g. ``month * (group_low + group_high)``: each
    coefficient is that level minus the reference, the categorical's first category; formulae
    itself would take the first level in sort order); ``month`` alone otherwise (a single arm).
    Random intercept and slope per patient."""
    if "responder" in data.columns:
        return DEFAULT_FORMULA
    if "group" in data.columns and isinstance(data["group"].dtype, pd.CategoricalDtype) \
            and len(data["group"].cat.categories) > 1:
        terms = " + ".join(indicator_name(lv) for lv in data["group"].cat.categories[1:])
        return f"bmd ~ month * ({terms}) + (1 + month | patient_id)"
    return "bmd ~ month + (1 + month | patient_id)"


class FormulaError(ValueError):
    """A formula that cannot be fitted to these data (unparsable, unknown column, rejected by
    bambi); the message is one line."""


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
    site : str
    priors : dict, optional
        What was passed to ``bambi.Model(priors=...)``.
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
            "model": "formula",
            "formula": self.formula,
            "site": self.site,
            "priors": None if self.priors is None else {k: str(v) for k, v in self.priors.items()},
            "n_obs": int(len(self.data)),
            "n_patients": int(self.data["patient_id"].nunique()) if "patient_id" in self.data else None,
        }

    def postprocess(self, dt: xr.DataTree, *, seed: int = 0) -> xr.DataTree:
        """Drop the ``_offset`` variables and undo bambi's predictor centring of the intercept
        (:func:`analysis.engine.bambi_results.clean_bambi_posterior`)."""
        return clean_bambi_posterior(self.bambi_model, dt)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"")
    return text.splitlines()[0] if text else type(exc).__name__


def check_formula(formula: str, data: pd.DataFrame) -> list[str]:
    """The columns a formula uses; :class:`FormulaError` if it cannot be parsed, uses a column the
    data do not have, or uses one with missing values.

    Parameters
    ----------
    formula : str
        ``"outcome ~ terms"`` in bambi's (formulae's) syntax.
    data : DataFrame
        The rows to be modelled.

    Returns
    -------
    list of str
        Sorted names of the data columns the formula uses.
    """
    import formulae  # bambi's formula parser (installed with bambi)

    if not isinstance(formula, str) or "~" not in formula:
        raise FormulaError(f"formula {formula!r} has no '~': write it as 'bmd ~ terms'")
    try:
        names = set(formulae.model_description(formula).var_names) - {""}  # "": a string literal
    except Exception as exc:  # formulae raises its own parser exceptions
        raise FormulaError(f"cannot parse formula {formula!r}: {_first_line(exc)}") from None
    unknown = sorted(names - set(data.columns))
    if unknown:
        raise FormulaError(
            f"formula {formula!r} uses {', '.join(map(repr, unknown))}, not a column of the data; "
            f"columns: {', '.join(map(str, data.columns))}")
    for name in sorted(names):
        n_missing = int(data[name].isna().sum())
        if n_missing:
            raise FormulaError(f"column {name!r} of formula {formula!r} is missing in {n_missing} of "
                               f"{len(data)} rows with a BMD; fill it or leave it out of the formula")
    return sorted(names)


def bambi_lmm(
    data: pd.DataFrame,
    formula: str | None = None,
    priors: dict[str, Any] | None = None,
    *,
    site: str | None = None,
    **model_kwargs: Any,
) -> BambiLMM:
    """Build a bambi mixed model from a user formula, to sample with ``analysis.engine.sampling.sample``.

    Parameters
    ----------
    data : DataFrame
        Long format, one row per patient-visit. The outcome ``bmd`` is the ``bmd_<site>`` column
        (a ``bmd`` column is used as it is only when there is no ``bmd_<site>``); rows with a
        missing ``bmd`` are dropped; a boolean (or 0/1) ``responder`` enters as 0/1.
    formula : str, optional
        Any bambi formula (see the module docstring); default :func:`default_formula`.
    priors : dict, optional
        Passed to ``bambi.Model(priors=...)``; default bambi's.
    site : str, optional
        Any site the data have a ``bmd_<site>`` column for; default the first of the analysis
        frame's design (:func:`analysis.bayes.study_frame.model_options`).
    **model_kwargs
        Passed to ``bambi.Model`` (e.g. ``family``, ``center_predictors``).

    Returns
    -------
    BambiLMM

    Raises
    ------
    FormulaError
        A ``ValueError`` with one line: no such site, unparsable formula, unknown or incomplete
        column, or a formula bambi rejects.
    """
    import bambi as bmb

    df = data.copy()
    if site is None:  # the analysis frame's design (the RAJAK default design's without one)
        from analysis.bayes.study_frame import model_options

        site = model_options(data)["sites"][0]
    col = f"bmd_{site}"
    if col in df.columns:
        df["bmd"] = df[col]
    elif "bmd" not in df.columns:
        have = sorted(c.removeprefix("bmd_") for c in df.columns if str(c).startswith("bmd_"))
        raise FormulaError(f"no BMD column {col!r} for site {site!r}; sites in the data: "
                           f"{', '.join(have) or 'none'}")
    df = df.loc[df["bmd"].notna()].reset_index(drop=True)
    if df.empty:
        raise FormulaError(f"no rows with a BMD at site {site!r}")
    if "responder" in df.columns and df["responder"].notna().all():
        try:  # a boolean (or 0/1) responder enters as 0/1; anything else is left to bambi (categorical)
            df["responder"] = as_bool_responder(df["responder"])
        except ValueError:
            pass
    if "patient_id" in df.columns:
        df["patient_id"] = df["patient_id"].astype(str)
    formula = default_formula(df) if formula is None else formula
    check_formula(formula, df)
    try:
        model = bmb.Model(formula, df, priors=priors, **model_kwargs)
        model.build()
    except Exception as exc:  # bambi and formulae raise many types for a formula they reject
        raise FormulaError(f"bambi cannot fit formula {formula!r}: {_first_line(exc)}") from None
    return BambiLMM(bambi_model=model, formula=formula, data=df, site=site, priors=priors)


def _labels(term: Any, var: str, da: xr.DataArray) -> list[str]:
    """Names of the coefficients of one term: the columns of bambi's design matrix."""
    labels = [str(x) for x in getattr(getattr(term, "term", None), "labels", None) or []]
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    n = int(np.prod([da.sizes[d] for d in extra])) if extra else 1
    if len(labels) == n:
        return labels
    coords = [[str(v) for v in da[d].values] for d in extra]  # e.g. several response levels
    return [f"{var}[{', '.join(c)}]" for c in product(*coords)] if extra else [var]


def formula_estimands(fit: Any, built: BambiLMM, site: str, model_label: str = "formula") -> list[EstimandDraws]:
    """One estimand per fixed-effect coefficient of the mean, draws kept (see the module docstring).

    Parameters
    ----------
    fit : analysis.engine.results.FitResult
        ``built`` sampled by :func:`analysis.engine.sampling.sample`.
    built : BambiLMM
    site : str
    model_label : str
        The ``model`` column of the summary table.

    Returns
    -------
    list of EstimandDraws
        ``rope`` and ``bf10`` are ``None``; ``extra`` holds the bambi term and the fit's verdict.
    """
    post = fit.posterior["posterior"].to_dataset()
    bm = built.bambi_model
    component = bm.parameters[bm.family.likelihood.parent]
    terms = ([component.intercept_term] if component.intercept_term else []) + list(component.common_terms.values())
    verdict = "pass" if fit.passed else "FAIL: " + "; ".join(fit.diagnostics.failures)
    items: list[EstimandDraws] = []
    for term in terms:
        var = getattr(term, "alias", None) or term.name
        da = post[var]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        values = np.asarray(da.transpose("chain", "draw", *extra).values, dtype=float)
        values = values.reshape(da.sizes["chain"] * da.sizes["draw"], -1)
        for j, label in enumerate(_labels(term, var, da)):
            items.append(EstimandDraws(label, site, model_label, values[:, j].copy(),
                                       extra={"term": term.name, "diagnostics": verdict}))
    return items
