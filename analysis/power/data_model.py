r"""The next study drawn like the user's own: :class:`DataModel`, estimated by :func:`estimate_data_model`.

A power design "from data" (``PowerDesign(generator="data")``, :func:`design_from_data`) simulates
studies with the user's design and the user's estimates: the design's nominal visits, sites and
group levels (reference first), the observed allocation, the observed retention at each visit,
and per site the effects and variance components of a REML linear mixed model fitted to the data.

The model fitted per site :math:`s` (:func:`analysis.frequentist.lmm.fit_lmm`, REML), for patient
:math:`i` in group :math:`g_i` (levels :math:`0 = \text{reference}, 1, \dots, K-1`) at actual time
:math:`t_{ij}` in **years** since the patient's baseline (``month_actual / 12``; the nominal
``month / 12`` when the frame has no actual time):

.. math::

    y_{ij} = \beta_0 + \sum_{k \ge 1} \beta_k [g_i = k] + \Bigl(\beta_t + \sum_{k \ge 1}
             \beta_{t:k} [g_i = k] + u_{1i}\Bigr) t_{ij} + u_{0i} + \varepsilon_{ij},

    (u_{0i}, u_{1i}) \sim N\Bigl(0, \begin{pmatrix} \tau_0^2 & \rho\tau_0\tau_1 \\
    \rho\tau_0\tau_1 & \tau_1^2 \end{pmatrix}\Bigr), \qquad \varepsilon_{ij} \sim N(0, \sigma^2)

(``bmd ~ t * group + (1 + t | patient_id)``; a single arm has no group terms). Per level the mean
baseline is :math:`a_k = \beta_0 + \beta_k` and the mean slope :math:`b_k = \beta_t + \beta_{t:k}`
(g/cm^2 per year; :math:`\beta_{\cdot 0} = 0`); the tested effect of level :math:`k` is
:math:`b_k - b_0` (for a single arm :math:`b_0` against 0). Their covariance (for assurance) is
the fit's fixed-effects covariance mapped to :math:`(b_0, \dots, b_{K-1})`.

Allocation and retention
------------------------
The visits are the design's nominal visits with a scan at an analysed site (a visit for disease
activity only is not simulated). The allocation :math:`\pi_k` is the share of analysed patients (a
group and at least one scan at an analysed site) in level :math:`k`. A patient's last visit is the last nominal visit with a scan
at any analysed site; the retention at visit :math:`v` is :math:`r_v = P(\text{last visit} \ge v)`
over every patient with a scan (also those without a group, e.g. an undefined responder status,
whom the next study loses too)
(:math:`r_0 = 1`), so that the hazard of leaving at visit :math:`v` is
:math:`h_v = 1 - r_v / r_{v-1}`. Missed visits before a later scan count as attended: the
simulated dropout is monotone and MCAR (:mod:`analysis.power.data_generator`).

Sites are fitted separately; the simulator draws the patients' effects independently across sites
(each site's power depends only on its own model; dropout is shared).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DataModel", "SLOPE_ANALYSES", "SiteModel", "estimable_analyses", "estimate_data_model", "lmm_formula",
           "site_frame"]

#: Parameters of a site a design prior (or :meth:`DataModel.with_updates`) may set:
#: ``<site>.slope.<level>``, ``<site>.intercept.<level>`` and these per-site scalars.
SITE_SCALARS = ("sd_intercept", "sd_slope", "corr", "sigma")


@dataclass(frozen=True)
class SiteModel:
    """The REML LMM of one site (module docstring), in g/cm^2 and years.

    Attributes
    ----------
    site : str
    intercept, slope : dict of str to float
        Per level: mean baseline :math:`a_k` (g/cm^2) and mean slope :math:`b_k` (g/cm^2/year).
    slope_se : dict of str to float
        Standard error of each level's slope.
    contrast_se : dict of str to float
        Standard error of :math:`b_k - b_0` per non-reference level (single arm: of :math:`b_0`).
    sd_intercept, sd_slope, corr, sigma : float
        :math:`\\tau_0`, :math:`\\tau_1` (per year), :math:`\\rho`, :math:`\\sigma`.
    slope_cov : tuple of tuple of float
        Covariance of the slopes, levels in the model's order.
    n_obs, n_patients : int
    converged, singular : bool
    """

    site: str
    intercept: dict[str, float]
    slope: dict[str, float]
    slope_se: dict[str, float]
    contrast_se: dict[str, float]
    sd_intercept: float
    sd_slope: float
    corr: float
    sigma: float
    slope_cov: tuple[tuple[float, ...], ...] = ()
    n_obs: int = 0
    n_patients: int = 0
    converged: bool = True
    singular: bool = False

    def re_cov(self) -> np.ndarray:
        """The 2 x 2 covariance of (intercept, slope per year) patient effects."""
        c = self.corr * self.sd_intercept * self.sd_slope
        return np.array([[self.sd_intercept**2, c], [c, self.sd_slope**2]])

    def pct_per_year(self, level: str) -> float:
        """The level's mean slope in % of its mean baseline per year."""
        return 100.0 * self.slope[level] / self.intercept[level]


@dataclass(frozen=True)
class DataModel:
    """What a design from data simulates (module docstring).

    Attributes
    ----------
    source : str
        The data the parameters were estimated from (a file name).
    levels : tuple of str
        Group levels, the reference first (a single arm: one level).
    reference : str or None
        The reference level (``None``: single arm, changes are tested against 0).
    allocation : tuple of float
        Share of patients per level (sums to 1).
    counts : tuple of int
        Analysed patients per level in the data.
    visits : tuple of float
        Nominal visit months, the first 0.
    endpoint : float
        The design's endpoint month (MMRM and completers' contrast).
    retention : tuple of float
        Share of patients still in the study at each visit (the first 1).
    sites : tuple of SiteModel
    group_kind : str
        ``"derived"``, ``"column"`` or ``"none"`` (:class:`analysis.study.design.GroupSpec`).
    notes : tuple of str
        Warnings about the fits (not converged, singular).
    n_scanned : int
        Patients with a scan at an analysed site (the retention's denominator; more than
        ``sum(counts)`` when some have no group, e.g. an undefined responder status).
    """

    source: str
    levels: tuple[str, ...]
    reference: str | None
    allocation: tuple[float, ...]
    counts: tuple[int, ...]
    visits: tuple[float, ...]
    endpoint: float
    retention: tuple[float, ...]
    sites: tuple[SiteModel, ...]
    group_kind: str = "column"
    notes: tuple[str, ...] = field(default_factory=tuple)
    n_scanned: int = 0

    def __post_init__(self) -> None:
        if len(self.allocation) != len(self.levels) or len(self.counts) != len(self.levels):
            raise ValueError("allocation and counts need one value per level")
        if len(self.retention) != len(self.visits) or len(self.visits) < 2:
            raise ValueError("retention needs one value per visit, and at least two visits")
        if self.endpoint not in self.visits:
            raise ValueError(f"endpoint month {self.endpoint:g} is not a visit")
        if self.reference is not None and self.reference != self.levels[0]:
            raise ValueError("the reference level must come first")

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.site for s in self.sites)

    def site(self, name: str) -> SiteModel:
        """The model of site ``name``."""
        for s in self.sites:
            if s.site == name:
                return s
        raise KeyError(f"unknown site {name!r}; the design from data has {', '.join(self.site_names)}")

    @property
    def contrasts(self) -> tuple[tuple[str, str | None], ...]:
        """``(level, reference)`` per tested effect; a single arm: ``((level, None),)``."""
        if self.reference is None:
            return ((self.levels[0], None),)
        return tuple((lv, self.reference) for lv in self.levels[1:])

    @staticmethod
    def contrast_label(level: str, reference: str | None) -> str:
        """``"active - placebo"``; a single arm: ``"change in <level>"``."""
        return f"{level} - {reference}" if reference is not None else f"change in {level}"

    @property
    def hazards(self) -> tuple[float, ...]:
        """Hazard of leaving at each post-baseline visit, :math:`1 - r_v / r_{v-1}`."""
        r = self.retention
        return tuple(float(min(max(1.0 - r[v] / r[v - 1], 0.0), 0.999999)) if r[v - 1] > 0 else 0.999999
                     for v in range(1, len(r)))

    def with_updates(self, **changes: float) -> DataModel:
        """A copy with site parameters replaced: ``"spine.slope.active"``, ``"spine.intercept.placebo"``,
        ``"spine.sd_slope"`` (see :data:`SITE_SCALARS`)."""
        sites = {s.site: s for s in self.sites}
        for key, value in changes.items():
            site, _, rest = str(key).partition(".")
            param, _, level = rest.partition(".")
            if site not in sites:
                raise ValueError(f"{key!r}: no site {site!r} in the design from data ({', '.join(sites)})")
            s = sites[site]
            if param in ("slope", "intercept") and level in self.levels:
                sites[site] = replace(s, **{param: {**getattr(s, param), level: float(value)}})
            elif param in SITE_SCALARS and not level:
                sites[site] = replace(s, **{param: float(value)})
            else:
                raise ValueError(f"{key!r}: not a parameter of the design from data (<site>.slope.<level>, "
                                 f"<site>.intercept.<level>, <site>.{{{','.join(SITE_SCALARS)}}})")
        return replace(self, sites=tuple(sites[s.site] for s in self.sites))

    def prior_draws(self, n_draws: int = 1000, seed: int = 0) -> pd.DataFrame:
        r"""Draws of every site's slopes from :math:`N(\hat b, \widehat{\mathrm{Cov}}(\hat b))` of its REML
        fit: the large-sample posterior of the slopes under flat priors (columns
        ``<site>.slope.<level>``; variance components fixed at their estimates)."""
        rng = np.random.default_rng(seed)
        cols: dict[str, np.ndarray] = {}
        for s in self.sites:
            mean = np.array([s.slope[lv] for lv in self.levels])
            cov = np.asarray(s.slope_cov, dtype=float) if s.slope_cov else np.diag([s.slope_se[lv] ** 2
                                                                                   for lv in self.levels])
            x = rng.multivariate_normal(mean, cov, size=n_draws, method="eigh")
            for k, lv in enumerate(self.levels):
                cols[f"{s.site}.slope.{lv}"] = x[:, k]
        return pd.DataFrame(cols)

    def allocation_text(self) -> str:
        """``"placebo 33% : active 67% (1 : 2.02)"``; a single arm: ``"single arm (all)"``."""
        if self.reference is None:
            return f"single arm ({self.levels[0]})"
        ratio = " : ".join(f"{a / self.allocation[0]:.3g}" for a in self.allocation)
        return " : ".join(f"{lv} {a:.0%}" for lv, a in zip(self.levels, self.allocation)) + f" ({ratio})"

    def describe(self) -> str:
        """One line: ``from data: FILE, sites ..., allocation ..., visits ..., dropout by visit ...``."""
        visits = ", ".join(f"{v:g}" for v in self.visits)
        drop = ", ".join(f"month {v:g} {1 - r:.0%}" for v, r in zip(self.visits[1:], self.retention[1:]))
        grouped = sum(self.counts)
        who = (f"{grouped} patients" if self.n_scanned in (0, grouped) else
               f"{self.n_scanned} patients, {grouped} of them in a group")
        return (f"from data: {self.source} ({who}), sites {', '.join(self.site_names)}, "
                f"allocation {self.allocation_text()}, visits months {visits} (endpoint month {self.endpoint:g}), "
                f"dropout by visit (share of patients gone) {drop}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sites"] = [asdict(s) for s in self.sites]
        for k in ("levels", "allocation", "counts", "visits", "retention", "notes"):
            d[k] = list(d[k])
        for s in d["sites"]:
            s["slope_cov"] = [list(r) for r in s["slope_cov"]]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataModel:
        d = dict(d)
        d["sites"] = tuple(SiteModel(**{**s, "slope_cov": tuple(tuple(float(x) for x in r) for r in s.get("slope_cov", ()))})
                           for s in d["sites"])
        for k in ("levels", "allocation", "counts", "visits", "retention", "notes"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def lmm_formula(levels: Sequence[str], time: str = "t") -> str:
    """The fixed part of the LMM for these levels (reference first): ``bmd ~ t + g1 + t:g1 + ...``;
    ``g<k>`` indicates level ``k``. One level: ``bmd ~ t``."""
    terms = [time] + [f"g{k}" for k in range(1, len(levels))] + [f"{time}:g{k}" for k in range(1, len(levels))]
    return "bmd ~ " + " + ".join(terms)


def site_frame(frame: pd.DataFrame, site: str, levels: Sequence[str], group: str = "analysis_group",
               time: str = "month", scale: float = 1.0) -> pd.DataFrame:
    """One site's rows with a BMD and a group: ``patient_id``, ``t`` (``time / scale``), ``group``,
    ``bmd`` and indicators ``g1 ... g{K-1}`` of the non-reference levels."""
    rows = frame[frame[f"bmd_{site}"].notna() & frame[group].isin(list(levels))]
    out = pd.DataFrame({"patient_id": rows["patient_id"].astype(str).to_numpy(),
                        "t": rows[time].to_numpy(dtype=float) / scale,
                        "group": rows[group].astype(str).to_numpy(),
                        "bmd": rows[f"bmd_{site}"].to_numpy(dtype=float)})
    for k, lv in enumerate(levels[1:], start=1):
        out[f"g{k}"] = (out["group"] == lv).astype(float)
    return out


def _site_model(fit: Any, site: str, levels: Sequence[str], time: str = "t") -> SiteModel:
    """Per-level intercepts and slopes, their covariance and the variance components of a fit of
    :func:`lmm_formula`."""
    fixed = fit.fixed.set_index("term")
    vcov = fit.vcov
    names = list(vcov.index)
    need = [time] + [f"g{k}" for k in range(1, len(levels))] + [f"{time}:g{k}" for k in range(1, len(levels))]
    missing = [t for t in need if t not in fixed.index]
    if missing:
        raise ValueError(f"the LMM of {site} lacks the term {missing[0]!r} (fit {lmm_formula(levels, time)})")
    intercept_name = next(t for t in fixed.index if t not in need)
    lmat = np.zeros((len(levels), len(names)))
    lmat[:, names.index(time)] = 1.0
    for k in range(1, len(levels)):
        lmat[k, names.index(f"{time}:g{k}")] = 1.0
    beta = fixed.loc[names, "estimate"].to_numpy(dtype=float)
    cov = lmat @ vcov.to_numpy(dtype=float) @ lmat.T
    slopes = lmat @ beta
    b0 = float(fixed.loc[intercept_name, "estimate"])
    intercept = {lv: b0 + (float(fixed.loc[f"g{k}", "estimate"]) if k else 0.0) for k, lv in enumerate(levels)}
    if len(levels) == 1:
        contrast_se = {levels[0]: math.sqrt(cov[0, 0])}
    else:
        contrast_se = {lv: float(fixed.loc[f"{time}:g{k}", "se"]) for k, lv in enumerate(levels) if k}
    re = np.asarray(fit.re_cov, dtype=float)
    sd0, sd1 = math.sqrt(max(re[0, 0], 0.0)), math.sqrt(max(re[1, 1], 0.0))
    corr = float(re[0, 1] / (sd0 * sd1)) if sd0 > 0 and sd1 > 0 else 0.0
    return SiteModel(site=site, intercept=intercept, slope={lv: float(b) for lv, b in zip(levels, slopes)},
                     slope_se={lv: float(math.sqrt(cov[k, k])) for k, lv in enumerate(levels)},
                     contrast_se=contrast_se, sd_intercept=sd0, sd_slope=sd1, corr=float(np.clip(corr, -1, 1)),
                     sigma=float(fit.sigma), slope_cov=tuple(tuple(float(x) for x in r) for r in cov),
                     n_obs=int(fit.n_obs), n_patients=int(fit.n_subjects), converged=bool(fit.converged),
                     singular=bool(fit.singular))


def estimate_data_model(derived: pd.DataFrame, design: Any = None, *, sites: Sequence[str] | None = None,
               strategy: str = "exclude", rule: Any = None, fits: Mapping[str, Any] | None = None,
               source: str | None = None) -> DataModel:
    """Estimate a :class:`DataModel` from a study's derived frame (module docstring).

    Parameters
    ----------
    derived : DataFrame
        :func:`analysis.study.clinical.derive`'s frame (``month`` the nominal visit month,
        ``month_actual`` the actual months).
    design : ResolvedDesign, optional
        Default: the one ``derive`` attached (none: a responder study, the RAJAK default).
    sites : sequence of str, optional
        Default: the design's sites.
    strategy, rule
        Groups of a responder study (:func:`analysis.study.groups.assign_groups`).
    fits : mapping of str to LmmResult, optional
        Fits of :func:`lmm_formula` (time ``t`` in years) on :func:`site_frame` per site, reused
        instead of fitting here.
    source : str, optional
        What the text calls the data (default: ``"the data"``).

    Raises
    ------
    ValueError
        A level without patients, a site without data, or an LMM that cannot be fitted (one line).
    """
    from analysis.frequentist.lmm import fit_lmm
    from analysis.study.groups import assign_groups, design_of, group_levels

    d = design_of(derived, design)
    levels = tuple(group_levels(derived, d, strategy))
    if "unknown" in levels and strategy == "unknown":
        levels = tuple(lv for lv in levels if lv != "unknown")
    kind = "derived" if d is None else d.design.group.kind
    reference = None if kind == "none" else levels[0]
    frame = assign_groups(derived, strategy, rule, design=d).frame
    site_names = tuple(sites) if sites else (tuple(d.sites) if d is not None else
                                             tuple(c[4:] for c in derived.columns if c.startswith("bmd_")))
    cols = [f"bmd_{s}" for s in site_names]
    any_scan = frame[frame[cols].notna().any(axis=1)]
    scanned = any_scan[any_scan["analysis_group"].isin(levels)]
    per_patient = scanned.groupby("patient_id", sort=False).agg(group=("analysis_group", "first"),
                                                                last=("month", "max"))
    counts = tuple(int((per_patient["group"] == lv).sum()) for lv in levels)
    empty = [lv for lv, c in zip(levels, counts) if c == 0]
    if empty:
        raise ValueError(f"{source or 'the data'}: group {empty[0]!r} has no patient with a scan")
    scheduled = d.visits if d is not None else np.sort(frame["month"].dropna().unique())
    scanned_at = set(any_scan["month"].astype(float))
    visits = tuple(float(v) for v in scheduled if float(v) in scanned_at)  # visits without a scan are not DXA visits
    endpoint = float(d.endpoint if d is not None else visits[-1])
    if len(visits) < 2 or visits[0] != 0.0 or endpoint not in visits:
        raise ValueError(f"{source or 'the data'}: scans at months {', '.join(f'{v:g}' for v in visits)}: need a "
                         f"baseline (month 0) and the endpoint (month {endpoint:g})")
    last = any_scan.groupby("patient_id", sort=False)["month"].max().to_numpy(dtype=float)
    retention = (1.0,) + tuple(float(np.mean(last >= v)) for v in visits[1:])
    time = "month_actual" if "month_actual" in frame.columns else "month"
    models = []
    for site in site_names:
        sf = site_frame(frame, site, levels, time=time, scale=12.0)
        if sf.empty:
            raise ValueError(f"{source or 'the data'}: no {site} scan in any group")
        fit = (fits or {}).get(site)
        if fit is None:
            fit = fit_lmm(sf, lmm_formula(levels), time="t", check_nobs=False)
        models.append(_site_model(fit, site, levels))
    notes = tuple(f"{m.site}: the LMM did not converge" for m in models if not m.converged) + tuple(
        f"{m.site}: singular LMM fit (a variance component on its boundary)" for m in models if m.singular)
    return DataModel(source=source or "the data", levels=levels, reference=reference,
                     allocation=tuple(c / sum(counts) for c in counts), counts=counts, visits=visits,
                     endpoint=endpoint, retention=retention, sites=tuple(models), group_kind=kind, notes=notes,
                     n_scanned=int(any_scan["patient_id"].nunique()))


#: Analyses that estimate a random slope per patient: they need two or more post-baseline visits.
SLOPE_ANALYSES = ("lmm", "bayes")


def estimable_analyses(design: Any, analyses: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The analyses a power design can run, and one line for each it cannot.

    A study drawn like a user's with a single post-baseline visit (baseline and month 12 only) gives
    a random-slope LMM nothing to separate the slope variance from the noise: ``lmm`` and ``bayes``
    are not estimable there (``mmrm``, which is then the ANCOVA of the change, and ``completers``
    are).

    Returns
    -------
    kept, reasons : tuple of str
    """
    model = getattr(design, "data_model", None)
    if getattr(design, "generator", None) != "data" or model is None:
        return tuple(analyses), ()
    post = [v for v in model.visits if v > 0]
    if len(post) >= 2:
        return tuple(analyses), ()
    drop = [a for a in analyses if a in SLOPE_ANALYSES]
    reasons = tuple(f"{a}: not estimable: the design has one post-baseline visit (month {post[0]:g}); a "
                    f"random-slope LMM needs a third visit to separate the slope variance from the noise"
                    for a in drop)
    return tuple(a for a in analyses if a not in drop), reasons
