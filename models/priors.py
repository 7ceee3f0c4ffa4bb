r"""Named prior sets for the trajectory model (:mod:`models.trajectory`).

Every set is a :class:`models.trajectory.TrajectoryPriors` for one skeletal site; get one with
:func:`prior_set` and describe all of them with :func:`prior_table` (one row per set, site and
parameter, for the methods section of a report).

The model (time :math:`t` in years, responder indicator :math:`r`, see :mod:`models.trajectory`)

.. math::

    \mathrm{bmd}_{ij} = (b_0 + u_{0i}) + (b_1 + u_{1i})\, t_{ij} + b_2 r_i + b_3 r_i t_{ij}
                        + e_{ij},\qquad
    (u_{0i}, u_{1i}) \sim \mathrm{MVN}(0, \mathrm{diag}(\tau)\,\Omega\,\mathrm{diag}(\tau)),\quad
    e_{ij} \sim N(0, \sigma),

has the priors

.. math::

    b_0 \sim N(\bar y, s_0),\ b_1 \sim N(0, s_1),\ b_2 \sim N(0, s_2),\ b_3 \sim N(0, s_3),\
    \tau_0 \sim N^+(0, h_0),\ \tau_1 \sim N^+(0, h_1),\ \sigma \sim N^+(0, h_\sigma),\
    \Omega \sim \mathrm{LKJ}(\eta),

where :math:`\bar y` is the mean of the observed outcome. Every scale is in g/cm^2 (per year for
slopes); a half-normal :math:`N^+(0, h)` has median :math:`0.674\,h` and 95% quantile
:math:`1.96\,h`. Percentages below are of the site's reference BMD (:data:`REFERENCE_BMD`,
Marotte 2007: 0.911 g/cm^2 spine, 0.801 g/cm^2 femoral neck).

The sets
--------
``"weakly_informative"`` (the default; equal to ``TrajectoryPriors()``)
    Scales several times wider than anything plausible for DXA BMD, yet excluding absurd values.
    Baseline: :math:`s_0 = 0.5` g/cm^2 around the sample mean (adult BMD lies in 0.4-1.6). Slopes
    and the responder x time difference: :math:`s_1 = s_3 = 0.05` g/cm^2/yr, i.e. 5.5%/yr at the
    spine and 6.2%/yr at the femoral neck per SD, when untreated RA loses 0.5-4%/yr.
    Between-patient SDs: :math:`h_0 = 0.3` (literature ~0.14-0.16 g/cm^2),
    :math:`h_1 = 0.05` g/cm^2/yr (literature ~0.02); residual :math:`h_\sigma = 0.05` (DXA
    precision ~0.01 g/cm^2). :math:`\eta = 2` mildly favours small correlations.
``"sceptical"``
    The weakly informative set with a tight prior on the responder x time interaction centred on
    no difference: :math:`s_3 = 0.02\,m_s / 1.96`, so that a responder difference in the annual
    change of 2% of the reference BMD (the size of RAJAK's published non-responder loss,
    -2.12%) or more in either direction has prior probability 5% (Spiegelhalter's sceptical
    prior). Spine 0.0093, femoral neck 0.0082 g/cm^2/yr.
``"literature"``
    Scales from published RA cohorts (``shared/literature.md``): slopes with SD 2.5%/yr so that
    the 95% prior interval (+/-4.9%/yr) covers the 0.5-4%/yr loss of untreated RA and the
    1-3%/yr responder/treatment differences (Vis 2006, Haugeberg 2009, Marotte 2007);
    between-patient SD of baseline BMD with prior median 0.143 (spine) / 0.159 (femoral neck)
    g/cm^2; between-patient SD of the annual change with prior median 2.5%/yr (the inferred
    2.5-4% SD of 12-month % change minus DXA measurement error); residual SD with prior median
    equal to DXA short-term precision (CV 1.1% spine, 1.75% femoral neck); baseline means within
    about +/-0.2 g/cm^2 of the sample mean. *Limitation:* ``TrajectoryPriors`` has scales
    only, so the literature's expected non-responder loss (about -2%/yr) cannot be used as a
    prior mean; every location prior stays centred on 0 (slopes) or the sample mean (baseline).
``"vague"``
    Scales of 10 g/cm^2 (per year) everywhere and a uniform correlation
    (:math:`\eta = 1`): effectively flat over every value BMD can take. Kept as a reference for
    how much the other sets matter, not for inference (its prior predictive is absurd).

All sets share the Student-t degrees-of-freedom prior :math:`\nu \sim \mathrm{Gamma}(2, 0.1)`
(Juarez & Steel 2010), used only with ``likelihood="student_t"``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from models.trajectory import TrajectoryPriors

__all__ = [
    "BETWEEN_PATIENT_SD",
    "DXA_CV_PCT",
    "HALF_NORMAL_MEDIAN",
    "LITERATURE_SLOPE_SD_PCT",
    "PRIOR_SET_DESCRIPTIONS",
    "PRIOR_SET_NAMES",
    "REFERENCE_BMD",
    "SLOPE_SD_PCT",
    "prior_set",
    "prior_table",
]

#: Reference mean BMD of RA patients (g/cm^2; Marotte 2007, Hologic, n = 189).
REFERENCE_BMD: dict[str, float] = {"spine": 0.911, "femoral_neck": 0.801}
#: Between-patient SD of BMD in RA cohorts (g/cm^2; Marotte 2007).
BETWEEN_PATIENT_SD: dict[str, float] = {"spine": 0.143, "femoral_neck": 0.159}
#: DXA short-term precision as a CV (%): midpoints of 1.0-1.2 (spine) and 1.5-2.0 (femoral neck).
DXA_CV_PCT: dict[str, float] = {"spine": 1.1, "femoral_neck": 1.75}
#: Between-patient SD of the true annual change (%/yr): the inferred SD of 12-month % change
#: (2.5-3.5% spine, 3-4% femoral neck) minus measurement error (sqrt(2) x CV): ~2.5%/yr at both.
SLOPE_SD_PCT: dict[str, float] = {"spine": 2.5, "femoral_neck": 2.5}
#: Prior SD of the slope and of the responder x time difference in the literature set (%/yr):
#: the 95% interval (+/-4.9%/yr) holds the 0.5-4%/yr loss of untreated RA and the 1-3%/yr
#: responder / treatment differences.
LITERATURE_SLOPE_SD_PCT: float = 2.5
#: Median of a half-normal with unit scale (so scale = median / this).
HALF_NORMAL_MEDIAN: float = 0.6744897501960817

#: Names accepted by :func:`prior_set`, the default first.
PRIOR_SET_NAMES: tuple[str, ...] = ("weakly_informative", "sceptical", "literature", "vague")

#: One paragraph per set (for a methods section).
PRIOR_SET_DESCRIPTIONS: dict[str, str] = {
    "weakly_informative": (
        "Default. Normal priors on the fixed effects and half-normal priors on the standard "
        "deviations with scales several times wider than any plausible value for DXA BMD "
        "(slopes SD 0.05 g/cm^2/yr, ~5.5%/yr at the spine; baseline SD 0.5 g/cm^2 around the "
        "sample mean), excluding only absurd values."
    ),
    "sceptical": (
        "As the default, but the responder x time interaction is centred on no difference with "
        "SD 0.02 x reference BMD / 1.96: a difference in annual change of 2% or more in either "
        "direction (RAJAK's published non-responder loss was 2.12%) has prior probability 5%."
    ),
    "literature": (
        "Scales from published RA cohorts: slopes and the responder difference SD 2.5%/yr "
        "(untreated RA loses 0.5-4%/yr); between-patient SD of baseline BMD with prior median "
        "0.143/0.159 g/cm^2 (spine/femoral neck); between-patient SD of the annual change with "
        "prior median 2.5%/yr; residual SD with prior median equal to DXA precision (CV 1.1%/"
        "1.75%). Location priors stay centred on 0 (no prior mean is available in the model)."
    ),
    "vague": (
        "Reference set: scales of 10 g/cm^2 (per year) and a uniform correlation prior; flat over "
        "every value BMD can take. Its prior predictive is absurd by design."
    ),
}

_PCT = 0.01


def _check_site(site: str, name: str) -> None:
    if site not in REFERENCE_BMD:
        raise ValueError(f"prior set {name!r} is known for the sites {', '.join(sorted(REFERENCE_BMD))} only "
                         f"(site must be one of {sorted(REFERENCE_BMD)}, got {site!r})")


def _sceptical_sd(ref: float) -> float:
    """SD putting 5% prior probability on |b3| >= 2% of the reference BMD ``ref`` per year."""
    return 2.0 * _PCT * ref / 1.959963984540054


def _literature(site: str) -> TrajectoryPriors:
    ref = REFERENCE_BMD[site]
    return TrajectoryPriors(
        intercept_sd=0.1,
        slope_sd=LITERATURE_SLOPE_SD_PCT * _PCT * ref,
        responder_sd=0.1,
        responder_slope_sd=LITERATURE_SLOPE_SD_PCT * _PCT * ref,
        covariate_sd=0.05,
        sd_intercept_scale=BETWEEN_PATIENT_SD[site] / HALF_NORMAL_MEDIAN,
        sd_slope_scale=SLOPE_SD_PCT[site] * _PCT * ref / HALF_NORMAL_MEDIAN,
        sigma_scale=DXA_CV_PCT[site] * _PCT * ref / HALF_NORMAL_MEDIAN,
        lkj_eta=2.0,
    )


def prior_set(name: str, site: str, reference_bmd: float | None = None) -> TrajectoryPriors:
    """The named prior set for one site.

    ``weakly_informative`` and ``vague`` are the same at every site. ``sceptical`` scales to the
    site's reference BMD: :data:`REFERENCE_BMD` for the spine and femoral neck, else
    ``reference_bmd`` (e.g. the study's mean baseline BMD at that site). ``literature`` rests on
    published spine and femoral-neck figures and exists for those sites only.

    Parameters
    ----------
    name : {"weakly_informative", "sceptical", "literature", "vague"}
        See the module docstring; ``"weakly_informative"`` is ``TrajectoryPriors()``.
    site : str
        Any site (see above).
    reference_bmd : float, optional
        g/cm^2; the ``sceptical`` set's reference at a site without a published one (ignored
        where :data:`REFERENCE_BMD` has the site).

    Returns
    -------
    TrajectoryPriors

    Raises
    ------
    ValueError
        For an unknown set, ``literature`` at a site without published figures, or
        ``sceptical`` there without ``reference_bmd``.
    """
    if name not in PRIOR_SET_NAMES:
        raise ValueError(f"unknown prior set {name!r}; expected one of {', '.join(PRIOR_SET_NAMES)}")
    if name == "weakly_informative":
        return TrajectoryPriors()
    if name == "sceptical":
        ref = REFERENCE_BMD.get(site, reference_bmd)
        if ref is None or not (np.isfinite(ref) and ref > 0):
            raise ValueError(f"prior set 'sceptical' needs a reference BMD at {site}: there is a published one "
                             f"for {', '.join(sorted(REFERENCE_BMD))} only; give reference_bmd")
        return TrajectoryPriors(responder_slope_sd=_sceptical_sd(float(ref)))
    if name == "literature":
        _check_site(site, name)
        return _literature(site)
    return TrajectoryPriors(
        intercept_sd=10.0,
        slope_sd=10.0,
        responder_sd=10.0,
        responder_slope_sd=10.0,
        covariate_sd=10.0,
        sd_intercept_scale=10.0,
        sd_slope_scale=10.0,
        sigma_scale=10.0,
        lkj_eta=1.0,
    )


#: Per field: (symbol, distribution template, unit).
_FIELD_INFO: dict[str, tuple[str, str, str]] = {
    "intercept_sd": ("b0", "Normal(sample mean, {v:.4g})", "g/cm^2"),
    "slope_sd": ("b1", "Normal(0, {v:.4g})", "g/cm^2/yr"),
    "responder_sd": ("b2", "Normal(0, {v:.4g})", "g/cm^2"),
    "responder_slope_sd": ("b3", "Normal(0, {v:.4g})", "g/cm^2/yr"),
    "covariate_sd": ("gamma x SD(x)", "Normal(0, {v:.4g})", "g/cm^2 per covariate SD"),
    "sd_intercept_scale": ("tau0", "HalfNormal({v:.4g})", "g/cm^2"),
    "sd_slope_scale": ("tau1", "HalfNormal({v:.4g})", "g/cm^2/yr"),
    "sigma_scale": ("sigma", "HalfNormal({v:.4g})", "g/cm^2"),
    "lkj_eta": ("Omega", "LKJ({v:.4g})", ""),
    "nu_alpha": ("nu", "Gamma({v:.4g}, beta)", ""),
    "nu_beta": ("nu", "Gamma(alpha, {v:.4g})", ""),
}

_RATIONALE: dict[str, dict[str, str]] = {
    "weakly_informative": {
        "intercept_sd": "adult BMD 0.4-1.6 g/cm^2",
        "slope_sd": "~5-6%/yr per SD; untreated RA loses 0.5-4%/yr",
        "responder_sd": "wide; groups come from one population",
        "responder_slope_sd": "~5-6%/yr per SD",
        "covariate_sd": "wide per covariate SD",
        "sd_intercept_scale": "literature between-patient SD ~0.14-0.16",
        "sd_slope_scale": "literature SD of annual change ~0.02",
        "sigma_scale": "DXA precision ~0.01",
        "lkj_eta": "mildly favours small correlations",
    },
    "sceptical": {
        "responder_slope_sd": "P(|b3| >= 2% of reference per yr) = 5%",
    },
    "literature": {
        "intercept_sd": "RA cohort means 0.8-1.0 g/cm^2 (spine/FN)",
        "slope_sd": "95% interval +/-4.9%/yr holds the 0.5-4%/yr loss of untreated RA",
        "responder_sd": "~0.7 between-patient SDs",
        "responder_slope_sd": "responder/treatment differences 1-3%/yr (Vis 2006, Haugeberg 2009)",
        "covariate_sd": "age 12 yr x 0.2-0.5%/yr; sex 0.06 x 0.4",
        "sd_intercept_scale": "prior median = between-patient SD (Marotte 2007)",
        "sd_slope_scale": "prior median 2.5%/yr (inferred SD of change minus DXA error)",
        "sigma_scale": "prior median = DXA short-term CV x reference BMD",
        "lkj_eta": "mildly favours small correlations",
    },
    "vague": {},
}


def _default_rationale(name: str, fld: str, in_grams: bool) -> str:
    if fld.startswith("nu_"):
        return "Juarez & Steel (2010); Student-t likelihood only"
    if name == "vague":
        return "flat over every plausible value" if in_grams else "uniform over correlations"
    return "as weakly_informative"


def prior_table(
    sets: tuple[str, ...] | list[str] | None = None,
    sites: tuple[str, ...] | list[str] | None = None,
) -> pd.DataFrame:
    """Describe prior sets: one row per set, site and prior field.

    Parameters
    ----------
    sets : sequence of str, optional
        Default :data:`PRIOR_SET_NAMES`.
    sites : sequence of str, optional
        Default the sites with published reference values (:data:`REFERENCE_BMD`).

    Returns
    -------
    DataFrame
        Columns ``set, site, parameter, field, distribution, unit, value, pct_of_reference,
        prior_95`` (the half-width of the central 95% prior interval for normal priors, the 95%
        quantile for half-normal ones, in the parameter's unit), ``rationale``.
        ``pct_of_reference`` expresses g/cm^2 scales as % of :data:`REFERENCE_BMD`.
    """
    sets = tuple(PRIOR_SET_NAMES if sets is None else sets)
    sites = tuple(REFERENCE_BMD if sites is None else sites)
    rows: list[dict[str, Any]] = []
    for name in sets:
        for site in sites:
            priors = asdict(prior_set(name, site))
            rationale = _RATIONALE[name]
            for fld, value in priors.items():
                symbol, template, unit = _FIELD_INFO[fld]
                in_grams = unit.startswith("g/cm^2")
                rows.append({
                    "set": name,
                    "site": site,
                    "parameter": symbol,
                    "field": fld,
                    "distribution": template.format(v=value),
                    "unit": unit,
                    "value": float(value),
                    "pct_of_reference": 100.0 * value / REFERENCE_BMD[site] if in_grams else np.nan,
                    "prior_95": 1.959963984540054 * value if in_grams else np.nan,
                    "rationale": rationale.get(fld) or _default_rationale(name, fld, in_grams),
                })
    return pd.DataFrame(rows)
