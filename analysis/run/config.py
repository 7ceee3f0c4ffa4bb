"""The run configuration: one validated object per run, written into the run's manifest.

pydantic validates it (types, ranges, unknown keys are errors), which gives one-line messages for a
bad TOML analysis plan without hand-written checks.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from analysis.run.estimand_config import EstimandConfig
from analysis.study.clinical import ResponderRule, TScoreReference

__all__ = [
    "ConfigError",
    "EstimandConfig",
    "ReferenceBasedConfig",
    "ResponderConfig",
    "RunConfig",
    "StudyConfig",
    "TScoreConfig",
    "load_config",
]


class ConfigError(ValueError):
    """A configuration problem, as one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponderConfig(_Strict):
    """How responders are defined (see :class:`analysis.study.clinical.ResponderRule`)."""

    kind: Literal["eular", "eular_good", "das28_fall", "cdai50"] = "eular"
    month: float = 12
    threshold: float = Field(1.2, gt=0)

    def rule(self) -> ResponderRule:
        return ResponderRule(kind=self.kind, month=self.month, threshold=self.threshold)


class TScoreConfig(_Strict):
    """Which young-adult reference derives T-scores."""

    reference: str = "nhanes_hologic"
    table: str | None = None
    sex_specific: bool = True

    def reference_object(self) -> TScoreReference:
        return TScoreReference(name=self.reference, path=self.table, sex_specific=self.sex_specific)


class StudyConfig(_Strict):
    """The ``[study]`` table: the study design in the file's own words, the same settings as the
    command-line flags (:class:`analysis.study.design.StudyDesign`); unset ones are inferred.

    ``sites`` is a table (``{total_body = "bmd"}``) or a list (``["total_hip", "spine=L1L4"]``);
    ``covariates`` a list or ``"none"``; ``group`` a column, ``"none"`` or ``"responder"``;
    ``param`` maps ADaM ``PARAMCD`` codes to sites; ``sheet`` is the Excel sheet.
    """

    id: str | None = None
    time: str | None = None
    time_unit: Literal["months", "days", "years", "date"] | None = None
    visit: str | None = None
    sites: dict[str, str] | list[str] | None = None
    group: str | None = None
    reference: str | None = None
    endpoint: float | None = Field(None, gt=0)
    covariates: list[str] | str | None = None
    sheet: str | int | None = None
    param: dict[str, str] = Field(default_factory=dict)

    def design_flags(self) -> dict[str, Any]:
        """The design keywords of :func:`analysis.study.data.load_dataset` (``None`` = infer)."""
        from analysis.study.design import from_mapping

        d = self.model_dump(exclude={"sheet", "param"}, exclude_none=True)
        return from_mapping(d)


class ReferenceBasedConfig(_Strict):
    """The ``[reference_based]`` table: how the ICE-strategy analysis runs
    (:func:`analysis.sensitivity.reference_based.reference_based_analysis`).

    ``strategies``: every ICE handled by each of these rbmi strategies in turn (``MAR``, ``JR``, ``CR``,
    ``CIR``, ``LMCF``); unset: the estimand's own per-type strategies when the plan has an
    ``[estimand]`` table with any, else all five. ``methods``: inference methods
    (``condmean_jackknife``, ``condmean_bootstrap``, ``approx_bayes``, ``bayes``, ``bmlmi``); unset:
    the jackknife, replaced by the conditional-mean bootstrap (``n_samples`` resamples) at a site with
    more than :data:`analysis.sensitivity.reference_based.JACKKNIFE_MAX_PATIENTS` patients (the
    jackknife refits the imputation model once per patient); a jackknife named here always runs.
    ``imputation_model = "rbmi"`` is rbmi's ``change ~ baseline * visit + group * visit`` on the change in
    g/cm^2 (results equal rbmi's); ``"rajak"`` one baseline slope on the % change.
    """

    strategies: tuple[str, ...] | None = None
    methods: tuple[Literal["condmean_jackknife", "condmean_bootstrap", "approx_bayes", "bayes", "bmlmi"], ...] | None = None
    analysis_model: Literal["ancova", "mmrm"] = "ancova"
    imputation_model: Literal["rajak", "rbmi"] = "rajak"
    n_samples: int = Field(200, ge=2, le=100_000)
    D: int = Field(4, ge=2, le=1000)

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, v):
        from analysis.sensitivity.ice.patients import normalise_strategy

        return None if v is None else tuple(normalise_strategy(s) for s in v)


class RunConfig(_Strict):
    """Everything that defines a run.

    ``data = None`` means the embedded synthetic RAJAK twin.

    The ``power_*`` fields set the sample-size stage (:mod:`analysis.power`, simulated from the
    twin's calibrated design): total patients per simulated study (``power_ns``), simulated studies
    per n (``power_sims``), the analyses of each (``power_analyses``), the target power for the
    smallest n, and the expected fraction of patients without the final visit (``power_dropout``;
    ``None`` keeps the twin's dropout model), and the local worker processes (``power_workers``;
    default the CPU count; results do not depend on it). An empty ``power_ns`` or ``power_analyses``, or
    ``power_sims = 0``, switches the stage off. ``power_assurance = true`` draws the design parameters of
    every simulated study from the posterior of the run's Bayesian LMM (assurance instead of power;
    needs ``"lmm"`` in ``bayes_models``).

    ``figure_workers`` background processes draw and write the figures while the statistics go on
    (:class:`analysis.report.figure_writer.FigureWriter`; 0 draws them in the run's own process; the
    files are the same either way).
    """

    data: str | None = None
    column_map: dict[str, str] = Field(default_factory=dict)
    encoding: str = "utf-8"
    study: StudyConfig = Field(default_factory=StudyConfig)
    endpoint_month: float | None = Field(None, gt=0)
    responder: ResponderConfig = Field(default_factory=ResponderConfig)
    tscore: TScoreConfig = Field(default_factory=TScoreConfig)
    undefined_responders: Literal["exclude", "last_observed", "unknown"] = "last_observed"
    sites: tuple[str, ...] | None = None
    mi_imputations: int = Field(50, ge=0, le=10000)
    mmrm_covariances: tuple[Literal["us", "cs", "ar1", "csh", "ar1h"], ...] = ("us", "ar1", "cs")
    sensitivity: tuple[str, ...] = ("completers_vs_all", "delta", "delta_bayes", "tipping", "reference_based", "priors")
    reference_based: ReferenceBasedConfig = Field(default_factory=ReferenceBasedConfig)
    estimand: EstimandConfig | None = None
    bayes_models: tuple[str, ...] = ("lmm",)
    priors: str = "default"
    draws: int = Field(1000, ge=10)
    tune: int = Field(1000, ge=10)
    chains: int = Field(4, ge=1, le=16)
    target_accept: float = Field(0.9, gt=0.5, lt=1.0)
    seed: int = Field(20250101, ge=0)
    power_ns: tuple[int, ...] = (30, 60, 90, 120)
    power_sims: int = Field(200, ge=0, le=100_000)
    power_analyses: tuple[str, ...] = ("lmm",)
    power_target: float = Field(0.8, gt=0.0, lt=1.0)
    power_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    power_workers: int | None = Field(None, ge=1, le=256)
    power_assurance: bool = False
    figure_workers: int = Field(2, ge=0, le=8)
    output_dir: str = "outputs"
    run_id: str | None = None

    @field_validator("sensitivity")
    @classmethod
    def _known_sensitivity(cls, v):
        from analysis.sensitivity.runner import available

        bad = [n for n in v if n not in available()]
        if bad:
            raise ValueError(f"unknown sensitivity analysis {bad[0]!r}; available: {', '.join(available())}")
        return v

    @field_validator("bayes_models")
    @classmethod
    def _known_models(cls, v):
        from analysis.bayes.fit import model_names

        bad = [m for m in v if m not in model_names()]
        if bad:
            raise ValueError(f"unknown Bayesian model {bad[0]!r}; available: {', '.join(model_names())}")
        return v

    @field_validator("power_ns")
    @classmethod
    def _power_ns(cls, v):
        if any(n < 6 for n in v):
            raise ValueError(f"every power sample size must be at least 6, got {min(v)}")
        if len(set(v)) != len(v):
            raise ValueError("power sample sizes must be distinct")
        return tuple(sorted(v))

    @field_validator("power_analyses")
    @classmethod
    def _power_analyses(cls, v):
        from analysis.power import ANALYSES

        bad = [a for a in v if a not in ANALYSES]
        if bad:
            raise ValueError(f"unknown power analysis {bad[0]!r}; available: {', '.join(ANALYSES)}")
        return v

    @property
    def power_enabled(self) -> bool:
        """Whether ``rajak run`` runs the sample-size stage."""
        return bool(self.power_ns) and self.power_sims > 0 and bool(self.power_analyses)

    @field_validator("sites")
    @classmethod
    def _sites_nonempty(cls, v):
        if v is not None and not v:
            raise ValueError("at least one site is needed")
        return v

    @model_validator(mode="after")
    def _one_endpoint(self):
        if (self.endpoint_month is not None and self.study.endpoint is not None
                and float(self.endpoint_month) != float(self.study.endpoint)):
            raise ValueError(f"endpoint_month = {self.endpoint_month:g} and study.endpoint = "
                             f"{self.study.endpoint:g} disagree: give one")
        return self

    @property
    def endpoint(self) -> float | None:
        """The endpoint month the user set (``endpoint_month`` or ``study.endpoint``), or ``None``."""
        return self.endpoint_month if self.endpoint_month is not None else self.study.endpoint

    def bind(self, design: Any) -> RunConfig:
        """This configuration on a study's resolved design (``Dataset.design``): ``sites`` and
        ``endpoint_month`` filled in from the design where unset; sites the design does not have are
        a :class:`ConfigError`."""
        if design is None:
            return self
        sites = self.sites if self.sites is not None else tuple(design.sites)
        bad = [s for s in sites if s not in design.sites]
        if bad:
            raise ConfigError(f"site {bad[0]!r} is not in the data (sites: {', '.join(design.sites)})")
        return self.model_copy(update={"sites": tuple(sites), "endpoint_month": float(design.endpoint)})

    def digest(self) -> str:
        """Content hash of the analysis settings (output location excluded)."""
        d = self.model_dump(exclude={"output_dir", "run_id"})
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _first_error(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown setting"
    return f"{source}: setting '{loc}': {msg} (value {e.get('input')!r})"


def load_config(path: str | Path | None = None, **overrides) -> RunConfig:
    """Read a TOML analysis plan (optional) and apply command-line overrides (``None`` ignored)."""
    data: dict = {}
    source = "configuration"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: configuration file not found")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{p}: not valid TOML ({err})") from None
    study = overrides.pop("study_overrides", None)
    if study:  # command-line design flags win over the plan's [study] table, entry by entry
        data["study"] = {**(data.get("study") or {}), **study}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig(**data)
    except ValidationError as err:
        raise ConfigError(_first_error(err, source)) from None
