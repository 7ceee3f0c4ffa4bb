"""The intercurrent-event flags of the commands that impute (ICH E9(R1) estimands, as R's rbmi):

``--ice FILE``
    An ICE file, rbmi's ``data_ice``: subject, first affected visit, type, optionally strategy
    (:func:`analysis.study.ice.read_ice_file`).
``--ice-strategy TYPE=STRATEGY`` (repeatable)
    The strategy of an ICE type: ``MAR``, ``JR`` (``J2R``), ``CR``, ``CIR``, ``LMCF``,
    ``hypothetical[:MAR|JR|CR|CIR|LMCF]``, ``treatment_policy``, ``while_on_treatment``.
``--ice-default-strategy STRATEGY``
    The strategy of types not given (default ``MAR``).
``--ice-subject-column``, ``--ice-type-column``, ``--ice-month-column``, ``--ice-strategy-column``
    With ``--ice``: the ICE file's columns (found by common spellings otherwise). Without it,
    ``--ice-type-column`` and ``--ice-month-column`` name columns of the study file that hold each
    patient's ICE type and first affected visit.
``--dropout-reason-column COLUMN`` and ``--reason-map TEXT=TYPE`` (repeatable)
    A dropout-reason text of the study file mapped to ICE types (``TYPE`` ``none``: no event).
``--no-ice-derive``
    Without another source, do not derive ``discontinued`` from missing follow-up.
``--estimand-population``, ``--estimand-treatment``, ``--estimand-variable``, ``--estimand-summary``
    The estimand's attributes in words (ICH E9(R1)); unset ones are written from the design.
``--delta VALUE[@MONTH][:GROUP][#TYPE]`` (repeatable)
    A shift added to imputed post-ICE values: at that visit, in that group, after that ICE type
    (each part optional; ``--delta=-0.01@24:active#discontinued``). Write ``--delta=VALUE`` for a
    negative value.

The flags override the plan's ``[estimand]`` table entry by entry (:meth:`IceFlags.to_config`); the
events come from the first source given: file, study-file columns, reasons, derived
(:func:`load_ice`).
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import pandas as pd
import typer

from analysis.run.config import ConfigError
from analysis.run.estimand_config import DeltaRule, EstimandConfig, parse_estimand
from analysis.study.design import ResolvedDesign
from analysis.study.ice_load import load_ice_events
from analysis.study.ice_sources import NO_ICE
from analysis.study.ice_strategy import normalise_ice_type, normalise_strategy
from analysis.study.ice_table import IceTable
from analysis.study.problems import DataValidationError

__all__ = ["IceFlags", "apply_ice", "flags_given", "ice_options", "load_ice", "parse_delta"]

_DELTA = re.compile(r"^\s*(?P<value>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?:@\s*(?P<visit>[^:#]+?))?\s*"
                    r"(?::\s*(?P<group>[^#]+?))?\s*(?:#\s*(?P<type>.+?))?\s*$")


def parse_delta(text: str) -> DeltaRule:
    """``--delta VALUE[@MONTH][:GROUP][#TYPE]`` as a :class:`~analysis.run.estimand_config.DeltaRule`.

    Raises
    ------
    ConfigError
        One line naming the flag and the value.
    """
    m = _DELTA.match(str(text))
    if m is None:
        raise ConfigError(f"--delta {text!r}: give VALUE[@MONTH][:GROUP][#ICE_TYPE], e.g. --delta=-0.01@24:active"
                          f"#discontinued")
    try:
        visit = float(m["visit"]) if m["visit"] else None
    except ValueError:
        raise ConfigError(f"--delta {text!r}: the visit after @ must be a month, got {m['visit']!r}") from None
    try:
        return DeltaRule(value=float(m["value"]), visit=visit, group=m["group"], ice_type=m["type"])
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        first = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise ConfigError(f"--delta {text!r}: {str(first).removeprefix('Value error, ')}") from None


def _pairs(flag: str, items: tuple[str, ...], left: str, right: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{flag} takes {left}={right}, got {item!r}")
        out.append((key.strip(), value.strip()))
    return out


@dataclass(frozen=True)
class IceFlags:
    """The intercurrent-event flags as given (``None``/empty: not given); see the module docstring."""

    file: str | None = None
    strategy: tuple[str, ...] = ()
    default_strategy: str | None = None
    subject_column: str | None = None
    type_column: str | None = None
    month_column: str | None = None
    strategy_column: str | None = None
    reason_column: str | None = None
    reason_map: tuple[str, ...] = ()
    derive: bool | None = None
    delta: tuple[str, ...] = ()
    population: str | None = None
    treatment: str | None = None
    variable: str | None = None
    summary: str | None = None

    def to_config(self, base: EstimandConfig | None = None) -> EstimandConfig:
        """The plan's ``[estimand]`` table with these flags over it, entry by entry: strategies and
        reasons per key, column settings and the default strategy where given, the delta rules all
        at once when any ``--delta`` is given.

        Raises
        ------
        ConfigError
            One line naming the flag and the value.
        """
        base = base or EstimandConfig()
        strategies = dict(base.strategy)
        for ice_type, text in _pairs("--ice-strategy", self.strategy, "TYPE", "STRATEGY"):
            try:
                strategies[normalise_ice_type(ice_type)] = normalise_strategy(text)
            except DataValidationError as exc:
                raise ConfigError(f"--ice-strategy {ice_type}={text}: {exc}") from None
        reasons = dict(base.ice.reasons)
        for reason, ice_type in _pairs("--reason-map", self.reason_map, "TEXT", "TYPE"):
            try:
                reasons[reason.lower()] = "none" if ice_type.lower() in NO_ICE else normalise_ice_type(ice_type)
            except DataValidationError as exc:
                raise ConfigError(f"--reason-map {reason}={ice_type}: {exc}") from None
        if self.default_strategy is not None:
            try:
                normalise_strategy(self.default_strategy)
            except DataValidationError as exc:
                raise ConfigError(f"--ice-default-strategy: {exc}") from None
        ice = base.ice.model_dump()
        given = {"file": self.file, "subject_column": self.subject_column, "type_column": self.type_column,
                 "month_column": self.month_column, "strategy_column": self.strategy_column,
                 "reason_column": self.reason_column, "derive": self.derive}
        ice.update({k: v for k, v in given.items() if v is not None})
        ice["reasons"] = reasons
        data = base.model_dump()
        data.update(strategy=strategies, ice=ice,
                    delta=[parse_delta(d).model_dump() for d in self.delta] if self.delta else data["delta"])
        if self.default_strategy is not None:
            data["default_strategy"] = self.default_strategy
        data.update({k: v for k, v in (("population", self.population), ("treatment", self.treatment),
                                        ("variable", self.variable), ("summary", self.summary)) if v is not None})
        try:
            return parse_estimand(data, "the intercurrent-event flags")
        except DataValidationError as exc:
            raise ConfigError(str(exc)) from None


def load_ice(flags_or_config: IceFlags | EstimandConfig | None, derived: pd.DataFrame, design: ResolvedDesign, *,
             source: str = "the study file") -> IceTable | None:
    """The study's intercurrent events for the flags or the merged ``[estimand]`` table (``None``:
    the defaults, derived discontinuation): :func:`analysis.study.ice_load.load_ice_events`.

    Raises
    ------
    DataValidationError
        One line naming the file, row, patient and value.
    ConfigError
        A bad flag.
    """
    cfg = flags_or_config.to_config() if isinstance(flags_or_config, IceFlags) else flags_or_config
    return load_ice_events(cfg or EstimandConfig(), derived, design, source=source)


def _opt(annotation, *names: str, **kw) -> Any:
    return Annotated[annotation, typer.Option(*names, rich_help_panel="Intercurrent events", **kw)]


#: (name, annotation) of the ICE options, in the order ``--help`` lists them.
_ICE_PARAMS = [
    ("ice_file", _opt(Optional[Path], "--ice", help="ICE file (rbmi's data_ice): subject, first affected visit, type and optionally strategy.")),
    ("ice_strategy", _opt(Optional[list[str]], "--ice-strategy", help="TYPE=STRATEGY (MAR, JR, CR, CIR, LMCF, hypothetical, hypothetical:X, treatment_policy, while_on_treatment); repeatable.")),
    ("ice_default_strategy", _opt(Optional[str], "--ice-default-strategy", help="Strategy of ICE types not given (default MAR).")),
    ("ice_subject_column", _opt(Optional[str], "--ice-subject-column", help="The ICE file's subject column.")),
    ("ice_type_column", _opt(Optional[str], "--ice-type-column", help="ICE type column (of the ICE file, or of the study file without --ice).")),
    ("ice_month_column", _opt(Optional[str], "--ice-month-column", help="First affected visit column (of the ICE file, or of the study file without --ice).")),
    ("ice_strategy_column", _opt(Optional[str], "--ice-strategy-column", help="Per-row strategy column (optional).")),
    ("dropout_reason_column", _opt(Optional[str], "--dropout-reason-column", help="Study-file column of dropout-reason text (with --reason-map).")),
    ("reason_map", _opt(Optional[list[str]], "--reason-map", help="TEXT=TYPE: a dropout reason as an ICE type (TYPE none: no event); repeatable.")),
    ("ice_derive", _opt(Optional[bool], "--ice-derive/--no-ice-derive", help="Without another source, derive 'discontinued' from missing follow-up (default on).")),
    ("estimand_population", _opt(Optional[str], "--estimand-population", help="The estimand's population, in words (ICH E9(R1); default from the design).")),
    ("estimand_treatment", _opt(Optional[str], "--estimand-treatment", help="The estimand's treatment condition(s), in words.")),
    ("estimand_variable", _opt(Optional[str], "--estimand-variable", help="The estimand's variable (endpoint), in words.")),
    ("estimand_summary", _opt(Optional[str], "--estimand-summary", help="The estimand's population-level summary, in words.")),
    ("delta", _opt(Optional[list[str]], "--delta", help="Shift imputed post-ICE values: VALUE, optionally followed by @MONTH, :GROUP and #TYPE (e.g. --delta=-0.01@24:active#discontinued); repeatable.")),
]


def ice_options(command):
    """Give a command the intercurrent-event flags: the wrapped function receives them as one
    ``ice: IceFlags`` argument (the pattern of :func:`analysis.cli.common.design_options`; the two
    stack)."""
    hints = typing.get_type_hints(command, include_extras=True)
    sig = inspect.signature(command)
    sig = sig.replace(parameters=[p.replace(annotation=hints.get(p.name, p.annotation))
                                  for p in sig.parameters.values()])
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
             for name, ann in _ICE_PARAMS]
    kept = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            and p.default is not inspect.Parameter.empty else p
            for p in sig.parameters.values() if p.name != "ice"]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        v = {name: kwargs.pop(name, None) for name, _ in _ICE_PARAMS}
        flags = IceFlags(file=str(v["ice_file"]) if v["ice_file"] is not None else None,
                         strategy=tuple(v["ice_strategy"] or ()), default_strategy=v["ice_default_strategy"],
                         subject_column=v["ice_subject_column"], type_column=v["ice_type_column"],
                         month_column=v["ice_month_column"], strategy_column=v["ice_strategy_column"],
                         reason_column=v["dropout_reason_column"], reason_map=tuple(v["reason_map"] or ()),
                         derive=v["ice_derive"], delta=tuple(v["delta"] or ()),
                         population=v["estimand_population"], treatment=v["estimand_treatment"],
                         variable=v["estimand_variable"], summary=v["estimand_summary"])
        return command(*args, ice=flags, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*kept, *added])
    return wrapper


def flags_given(flags: IceFlags | None) -> bool:
    """Whether any intercurrent-event flag was given."""
    return flags is not None and flags != IceFlags()


def apply_ice(cfg: Any, flags: IceFlags | None, reference_based: dict[str, Any] | None = None) -> Any:
    """The run configuration with the ICE flags over its ``[estimand]`` table and the command's
    ``reference_based`` settings (strategies, methods, models, sizes; ``None`` values ignored) over
    its ``[reference_based]`` table, both validated.

    Raises
    ------
    ConfigError
        One line naming the flag or setting and the value.
    """
    from pydantic import ValidationError

    from analysis.run.config import ReferenceBasedConfig

    update: dict[str, Any] = {}
    if flags_given(flags):
        update["estimand"] = flags.to_config(cfg.estimand)
    given = {k: v for k, v in (reference_based or {}).items() if v not in (None, (), [])}
    if given:
        try:
            update["reference_based"] = ReferenceBasedConfig(**{**cfg.reference_based.model_dump(), **given})
        except ValidationError as exc:
            e = exc.errors()[0]
            names = {"strategies": "--strategy", "methods": "--method", "analysis_model": "--analysis-model",
                     "imputation_model": "--imputation-model", "n_samples": "--n-samples"}
            flag = names.get(str(e["loc"][0]), "reference-based setting") if e["loc"] else "reference-based setting"
            raise ConfigError(f"{flag}: {str(e['msg']).removeprefix('Value error, ')} (value {e.get('input')!r})") \
                from None
    return cfg.model_copy(update=update) if update else cfg
