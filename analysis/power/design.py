r"""What a power study simulates: :class:`PowerDesign`, its sample-size grid and design files.

:class:`PowerDesign` wraps the cohort simulator's :class:`models.simulate.Design` (visit schedule,
responder fraction, per-site bone parameters, dropout model) and adds the sample-size grid, the
analysed site(s), the data generator, how analysis groups are formed, and a target dropout:

* ``generator="cohort"`` draws each study with :func:`models.simulate.simulate` (the same model as
  the RAJAK twin: latent response type, disease activity, multiplicative bone model, MAR/MNAR
  dropout); groups are then derived from DAS28-CRP as in the real analysis (EULAR response at
  month 12, undefined status by ``strategy``; ``grouping="true"`` uses the latent type instead).
* ``generator="gaussian"`` draws from the linear mixed model that the closed-form formulas assume,
  with parameters read from the same :class:`Design` (linearised at the population mean
  :math:`m_s` = ``baseline_mean``): for patient :math:`i`, group :math:`g_i` (exactly
  :math:`\mathrm{round}(n\pi)` responders, known), DXA months :math:`t_j`,

  .. math::

      y_{ij} = m_s + \tau_s z_i + \Bigl(\frac{m_s \gamma^{(g_i)}_s}{1200}
               + \frac{m_s \omega_s}{1200} w_i\Bigr) t_j + \frac{m_s \mathrm{CV}_s}{100}\,\varepsilon_{ij},

  :math:`\tau_s` = ``baseline_sd``, :math:`\gamma^{(g)}_s` = ``slope_(non)responder_pct``,
  :math:`\omega_s` = ``slope_sd_pct``, :math:`\mathrm{CV}_s` = ``precision_cv_pct``; :math:`z, w,
  \varepsilon` standard normal (intercepts and slopes correlated across sites by
  ``intercept_corr``/``slope_corr``), no rounding; dropout MCAR and monotone
  (:func:`analysis.power.gaussian.simulate_gaussian`).
* ``generator="data"`` draws each study like the user's own (``data_model``, a
  :class:`~analysis.power.data_model.DataModel` estimated from their data by
  :func:`analysis.power.data_model.estimate_data_model`, :func:`design_from_data`): the design's visits,
  sites and group levels, the observed allocation and retention, and per site the REML LMM's
  effects and variance components (:mod:`analysis.power.data_generator`); ``design`` is unused and
  ``dropout`` (per-visit hazards at ``data_model.visits[1:]``) overrides the observed retention.

``dropout`` is either one number, the expected fraction of patients **without the final visit**,
or one hazard per scheduled post-baseline visit (``design.activity_months[1:]``, e.g.
``(0.1, 0.15, 0.2)`` for months 3, 6, 12). For the cohort generator the simulator's base hazard is
calibrated to it (:mod:`analysis.power.dropout`, through :meth:`PowerDesign.resolved`). For the
Gaussian generator (MCAR) one number gives the hazard :math:`1 - (1 - \text{dropout})^{1/V}` at
each of the :math:`V` post-baseline DXA visits; per-visit hazards apply at the scheduled visits
(a patient leaving at month 3 misses the DXA at months 6 and 12).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from analysis.power.data_model import DataModel
from analysis.power.dropout import calibrate_dropout
from analysis.study.clinical import ResponderRule
from models.simulate import SITES as TWIN_SITES
from models.simulate import Design

__all__ = ["GENERATORS", "SITES", "PowerDesign", "design_from_data", "disease_control_slope_pct", "load_power_design",
           "parse_n_grid"]

#: Sites the twin's generators ("cohort", "gaussian") simulate (:data:`models.simulate.SITES`); a
#: design from data has its own.
SITES = TWIN_SITES
#: The data generators (module docstring).
GENERATORS = ("cohort", "gaussian", "data")


@dataclass(frozen=True)
class PowerDesign:
    r"""What is simulated: a cohort :class:`Design` plus the sample-size grid and analysis set-up.

    Parameters
    ----------
    design : Design
        (Generators "cohort" and "gaussian".) Visit schedule, responder fraction, per-site slopes per type (effect sizes), slope SD and
        baseline SD (variance components), DXA precision (measurement error) and the dropout
        model (mechanism and coefficients). ``design.n_patients`` is ignored.
    n : tuple of int
        Total patients per simulated study (the grid).
    sites : tuple of str
        Sites analysed (the twin's :data:`SITES`, or those of ``data_model``).
    generator : {"cohort", "gaussian", "data"}
        See the module docstring.
    grouping : {"derived", "true"}
        Cohort generator: groups derived from DAS28-CRP (as the real analysis) or the latent type.
    strategy : {"last_observed", "exclude"}
        Undefined responder status (:mod:`analysis.study.groups`).
    rule : ResponderRule
        Responder definition for derived groups.
    dropout : float or tuple of float, optional
        One number: expected fraction of patients without the final visit. A tuple (a list is
        accepted): hazard of dropout at each scheduled post-baseline visit,
        ``len(design.activity_months) - 1`` values (module docstring). ``None`` keeps
        ``design.dropout.visit_hazard`` (cohort) or means no dropout (Gaussian).
    calibrated : bool
        Set by :meth:`resolved` once the cohort hazard has been calibrated to ``dropout``.
    data_model : DataModel, optional
        What the generator "data" simulates (required by it, ignored by the others).
    """

    design: Design = field(default_factory=Design)
    n: tuple[int, ...] = (46,)
    sites: tuple[str, ...] = SITES[:1]  # the twin's first site
    generator: Literal["cohort", "gaussian", "data"] = "cohort"
    grouping: Literal["derived", "true"] = "derived"
    strategy: Literal["last_observed", "exclude"] = "last_observed"
    rule: ResponderRule = field(default_factory=ResponderRule)
    dropout: float | tuple[float, ...] | None = None
    calibrated: bool = False
    data_model: DataModel | None = None

    def __post_init__(self) -> None:
        n = tuple(int(v) for v in np.atleast_1d(self.n))
        object.__setattr__(self, "n", tuple(sorted(set(n))))
        object.__setattr__(self, "sites", tuple(self.sites))
        if not self.n:
            raise ValueError("n needs at least one sample size")
        if min(self.n) < 6:
            raise ValueError(f"every sample size must be at least 6, got {min(self.n)}")
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {', '.join(GENERATORS)}, got {self.generator!r}")
        if self.generator == "data" and self.data_model is None:
            raise ValueError("the generator 'data' needs a data_model (design_from_data)")
        known = self.data_model.site_names if self.generator == "data" else SITES
        if not self.sites or any(s not in known for s in self.sites):
            raise ValueError(f"sites must be a non-empty subset of {known}, got {self.sites}")
        if self.grouping not in ("derived", "true"):
            raise ValueError(f"grouping must be 'derived' or 'true', got {self.grouping!r}")
        if self.strategy not in ("last_observed", "exclude"):
            raise ValueError(f"strategy must be 'last_observed' or 'exclude', got {self.strategy!r}")
        if isinstance(self.dropout, (list, tuple)) or (self.dropout is not None and np.ndim(self.dropout) > 0):
            hz = tuple(float(v) for v in self.dropout)
            object.__setattr__(self, "dropout", hz)
            visits = tuple(self.schedule[1:])
            if len(hz) != len(visits):
                raise ValueError(f"dropout has {len(hz)} per-visit hazards {list(hz)} but the design has "
                                 f"{len(visits)} post-baseline visits (months {', '.join(map(str, visits))})")
            bad = [v for v in hz if not 0.0 <= v < 1.0]
            if bad:
                raise ValueError(f"every per-visit dropout hazard must be in [0, 1), got {bad[0]:g} "
                                 f"(one per post-baseline visit, {len(visits)} visits)")
        elif self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if len(self.design.dxa_months) < 2:
            raise ValueError("the design needs at least two DXA visits")

    @property
    def per_visit_dropout(self) -> bool:
        """Whether ``dropout`` gives one hazard per post-baseline visit."""
        return isinstance(self.dropout, tuple)

    @property
    def schedule(self) -> tuple[float, ...]:
        """The visits at which per-visit dropout hazards apply (baseline first): the twin's activity
        months, or the visits of the design from data."""
        if self.generator == "data":
            return tuple(self.data_model.visits)
        return tuple(self.design.activity_months)

    @property
    def endpoint_month(self) -> float:
        """The endpoint of the completers and MMRM contrasts: the last DXA visit of the twin's
        design, the design's endpoint for a design from data."""
        if self.generator == "data":
            return float(self.data_model.endpoint)
        return float(max(self.design.dxa_months))

    def with_updates(self, **changes: Any) -> PowerDesign:
        """A copy with :class:`Design` fields replaced (``"spine.slope_sd_pct"`` etc.)."""
        return replace(self, design=self.design.with_updates(**changes), calibrated=False)

    def resolved(self) -> PowerDesign:
        """The design with the cohort dropout hazard calibrated to ``dropout`` (idempotent)."""
        if self.calibrated or self.generator != "cohort" or self.dropout is None:
            return self
        return replace(self, design=calibrate_dropout(self.design, self.dropout), calibrated=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (``data_model`` only when there is one)."""
        d = {"design": self.design.to_dict(), "n": list(self.n), "sites": list(self.sites),
             "generator": self.generator, "grouping": self.grouping, "strategy": self.strategy,
             "rule": asdict(self.rule),
             "dropout": list(self.dropout) if isinstance(self.dropout, tuple) else self.dropout,
             "calibrated": self.calibrated}
        if self.data_model is not None:
            d["data_model"] = self.data_model.to_dict()
        return d

    def describe(self) -> str:
        """One line naming what is simulated (the design from data in its own words)."""
        if self.generator == "data":
            return self.data_model.describe()
        return (f"the RAJAK twin's {self.generator} simulator, sites {', '.join(self.sites)}, DXA at months "
                f"{', '.join(f'{m:g}' for m in self.design.dxa_months)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PowerDesign:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if isinstance(d.get("design"), dict):
            d["design"] = Design.from_dict(d["design"])
        if isinstance(d.get("rule"), dict):
            d["rule"] = ResponderRule(**d["rule"])
        if isinstance(d.get("data_model"), dict):
            d["data_model"] = DataModel.from_dict(d["data_model"])
        for key in ("n", "sites"):
            if key in d:
                d[key] = tuple(np.atleast_1d(d[key]).tolist())
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown power-design field(s) {sorted(unknown)}")
        return cls(**d)

    def key_dict(self) -> dict[str, Any]:
        """What determines a simulation's data (the grid excluded: seeds are per ``n``)."""
        d = self.resolved().to_dict()
        d.pop("n")
        return d


def design_from_data(derived: Any, design: Any = None, *, n: Any = (46,), sites: Any = None,
                     strategy: str = "exclude", rule: ResponderRule | None = None, fits: Any = None,
                     dropout: float | tuple[float, ...] | None = None, source: str | None = None) -> PowerDesign:
    """A power design whose simulator draws studies like the user's (``generator="data"``).

    Parameters
    ----------
    derived : DataFrame
        The study's derived frame (:func:`analysis.study.clinical.derive`).
    design : ResolvedDesign, optional
        Default: the one ``derive`` attached.
    n : int or sequence of int
        The sample-size grid (total patients per simulated study).
    sites : sequence of str, optional
        Sites to size (default: the design's).
    strategy, rule
        Groups of a responder study (:func:`analysis.study.groups.assign_groups`; ``"unknown"``
        leaves the unknown group out).
    fits : mapping of str to LmmResult, optional
        LMM fits per site to reuse (:func:`analysis.power.data_model.estimate_data_model`).
    dropout : float or tuple of float, optional
        Overrides the observed retention (module docstring).
    source : str, optional
        What the text calls the data (a file name).

    Returns
    -------
    PowerDesign
    """
    from analysis.power.data_model import estimate_data_model

    model = estimate_data_model(derived, design, sites=sites, strategy=strategy, rule=rule, fits=fits, source=source)
    return PowerDesign(n=n, sites=model.site_names, generator="data", dropout=dropout, data_model=model,
                       strategy="exclude" if strategy not in ("last_observed", "exclude") else strategy,
                       rule=rule or ResponderRule())


def _clipped_normal_mean(mu: float, sd: float, lo: float, hi: float) -> float:
    r""":math:`E[\min(\max(X, a), b)]` for :math:`X \sim N(\mu, \sigma^2)`."""
    from scipy import stats

    a, b = (lo - mu) / sd, (hi - mu) / sd
    return float(lo * stats.norm.cdf(a) + hi * stats.norm.sf(b) + mu * (stats.norm.cdf(b) - stats.norm.cdf(a))
                 + sd * (stats.norm.pdf(a) - stats.norm.pdf(b)))


def disease_control_slope_pct(design: Design, site: str) -> dict[str, float]:
    r"""Mean disease-control part of the cohort model's annual % slope per latent type.

    :math:`\lambda_s E[\Delta \mid r]` with :math:`\Delta = 3.5\,a_0 d` (``models.simulate``):
    :math:`E[\Delta \mid r] = 3.5\,E[a_0]\,E[d \mid r]` with the simulator's clipping of
    :math:`a_0` to [0.2, 1.9] and of :math:`d` to [-0.4, 0.95].

    Parameters
    ----------
    design : Design
    site : str

    Returns
    -------
    dict
        ``{"responder": ..., "non-responder": ...}`` in % per year.
    """
    a = design.activity
    lam = design.site(site).slope_per_das28_improvement_pct
    ea0 = _clipped_normal_mean(a.baseline_mean, a.baseline_sd, 0.2, 1.9)
    out = {}
    for g, mu in (("responder", a.improvement_responder), ("non-responder", a.improvement_nonresponder)):
        out[g] = lam * 3.5 * ea0 * _clipped_normal_mean(mu, a.improvement_sd, -0.4, 0.95)
    return out


def parse_n_grid(text: str) -> tuple[int, ...]:
    """Read a sample-size grid: ``"20:200:20"`` (start:stop:step, stop included), ``"20,40,80"`` or ``"46"``.

    Raises
    ------
    ValueError
        If the text is not one of these forms or gives no sample size.
    """
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = (*parts, 10)[:3] if len(parts) == 2 else parts
            if step <= 0 or stop < start:
                raise ValueError
            grid = tuple(range(start, stop + 1, step))
        else:
            grid = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ValueError(f"cannot read sample sizes {text!r}; use START:STOP:STEP, a list N1,N2,... or N") from None
    if not grid:
        raise ValueError(f"no sample sizes in {text!r}")
    return grid


def load_power_design(path: str | os.PathLike) -> tuple[PowerDesign, dict[str, Any]]:
    """Read a power design from a JSON or TOML file.

    Top-level keys: ``n`` (list or ``"START:STOP:STEP"``), ``sites``, ``generator``, ``grouping``,
    ``strategy``, ``dropout``, and a ``design`` table of :meth:`Design.with_updates` keys
    (``"spine.slope_sd_pct" = 1.5``, ``"dropout.mechanism" = "mnar"``, ...). Anything under
    ``prior`` (e.g. ``fit = "fit.nc"``, a saved :class:`~analysis.engine.sampling.FitResult`) and
    ``settings`` (fields of :class:`~analysis.power.settings.PowerSettings`) is returned as the
    second element.

    Raises
    ------
    ValueError
        Unreadable file, unknown key or invalid value (one line).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"design file {p} does not exist")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        else:
            raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read design file {p}: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"design file {p} must hold a table/object at the top level")
    raw = dict(raw)
    extra = {k: raw.pop(k) for k in ("prior", "settings") if k in raw}
    updates = raw.pop("design", {}) or {}
    if "n" in raw and isinstance(raw["n"], str):
        raw["n"] = parse_n_grid(raw["n"])
    try:
        base = Design().with_updates(**updates) if updates else Design()
        pd_ = PowerDesign.from_dict({**raw, "design": base})
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise ValueError(f"design file {p}: {err}") from None
    return pd_, extra
