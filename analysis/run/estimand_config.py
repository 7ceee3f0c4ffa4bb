"""The ``[estimand]`` table of a run plan: the estimand's five ICH E9(R1) attributes, the strategy for
each kind of intercurrent event (ICE), where the events come from, and delta adjustments.

.. code-block:: toml

    [estimand]
    population = "postmenopausal women with osteopenia"     # optional: defaults from the design
    default_strategy = "MAR"                                 # ICE types not listed below
    strategy.discontinued = "JR"                             # rbmi's names: MAR JR CR CIR LMCF
    strategy.bone_therapy = "hypothetical:MAR"               # hypothetical[:MAR|JR|CR|CIR|LMCF]
    strategy.death = "while_on_treatment"                    # treatment_policy, while_on_treatment

    [estimand.ice]
    file = "ice.csv"              # rbmi's data_ice: subject, first affected visit, type[, strategy]
    # type_column / month_column: the ICE file's columns, or (without a file) the study file's
    # reason_column = "DCSREAS" and reasons = {"adverse event" = "discontinued", "completed" = "none"}
    derive = true                 # no other source: "discontinued" from missing follow-up

    [[estimand.delta]]            # added to imputed post-ICE values matching every field given
    value = -0.01
    visit = 24
    group = "active"
    ice_type = "discontinued"

Strategies are read by :func:`analysis.study.ice_strategy.parse_strategy` (aliases such as ``J2R``,
case-insensitive) and stored canonical; ICE types are lower-case identifiers. The table is validated
by pydantic like the rest of the plan (unknown keys are errors). This module does not import
:mod:`analysis.run.config` (which embeds :class:`EstimandConfig`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from analysis.study.estimand_words import ATTRIBUTES, estimand_table, estimand_text
from analysis.study.ice_sources import NO_ICE
from analysis.study.ice_strategy import (
    normalise_ice_type,
    normalise_strategy,
)
from analysis.study.problems import DataValidationError

__all__ = ["ATTRIBUTES", "DeltaRule", "EstimandConfig", "IceSourceConfig", "estimand_table", "estimand_text",
           "parse_estimand"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _type_or_none(value: str | None) -> str | None:
    return None if value is None else normalise_ice_type(value)


class IceSourceConfig(_Strict):
    """Where the intercurrent events come from (``[estimand.ice]``), in order of precedence:
    ``file`` (an ICE file; the ``*_column`` settings name its columns, found by common spellings
    otherwise), ``type_column`` and ``month_column`` of the study file (without ``file``),
    ``reason_column`` with ``reasons`` (dropout-reason text -> ICE type, ``"none"`` for no event),
    and with ``derive`` (default) ``discontinued`` derived from missing follow-up."""

    file: str | None = None
    subject_column: str | None = None
    type_column: str | None = None
    month_column: str | None = None
    strategy_column: str | None = None
    reason_column: str | None = None
    reasons: dict[str, str] = Field(default_factory=dict)
    derive: bool = True

    @field_validator("reasons")
    @classmethod
    def _reasons(cls, v: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for text, target in v.items():
            key = str(text).strip().lower()
            if key in out:
                raise ValueError(f"dropout reason {text!r} is given twice (reasons match ignoring case)")
            word = str(target).strip().lower()
            out[key] = "none" if word in NO_ICE else normalise_ice_type(target)
        return out

    @model_validator(mode="after")
    def _complete(self) -> IceSourceConfig:
        if self.file is None and (self.type_column is None) != (self.month_column is None):
            raise ValueError("ICE columns of the study file need both type_column and month_column")
        if self.reasons and self.reason_column is None:
            raise ValueError("reasons are given but no reason_column names the dropout-reason column")
        return self

    @property
    def source(self) -> str:
        """``"file"``, ``"columns"``, ``"reasons"``, ``"derived"`` or ``"none"``: the source used."""
        if self.file is not None:
            return "file"
        if self.type_column is not None:
            return "columns"
        if self.reason_column is not None:
            return "reasons"
        return "derived" if self.derive else "none"


class DeltaRule(_Strict):
    """A shift added to imputed values after an intercurrent event (a delta adjustment, as rbmi's
    ``delta`` data): ``value`` (in the outcome's units) is added to every imputed post-ICE value that
    matches all the fields given: the visit (month), the group level and the ICE type; a field left
    out matches everything."""

    value: float
    visit: float | None = Field(None, gt=0)
    group: str | None = None
    ice_type: str | None = None

    @field_validator("group")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        return None if v is None else str(v).strip().lower()

    @field_validator("ice_type")
    @classmethod
    def _ice_type(cls, v: str | None) -> str | None:
        return _type_or_none(v)

    def matches(self, visit: float, group: str | None, ice_type: str) -> bool:
        """Whether an imputed value at ``visit`` of a patient in ``group`` after an ``ice_type`` event is shifted."""
        return ((self.visit is None or abs(float(visit) - self.visit) < 1e-9)
                and (self.group is None or (group is not None and str(group).strip().lower() == self.group))
                and (self.ice_type is None or normalise_ice_type(ice_type) == self.ice_type))

    def describe(self) -> str:
        """``"+0.01 at month 24 in group active after discontinued"``."""
        where = [f"at month {self.visit:g}" if self.visit is not None else "at every visit"]
        if self.group is not None:
            where.append(f"in group {self.group}")
        where.append(f"after {self.ice_type}" if self.ice_type is not None else "after any event")
        return f"{self.value:+g} " + " ".join(where)


class EstimandConfig(_Strict):
    """The ``[estimand]`` table (see the module docstring).

    Attributes
    ----------
    population, variable, treatment, summary : str, optional
        ICH E9(R1) attributes in the plan's words; unset ones are written from the design
        (:func:`estimand_table`).
    strategy : dict of str to str
        ICE type -> strategy, canonical (``"j2r"`` is stored as ``"JR"``).
    default_strategy : str
        The strategy of ICE types ``strategy`` does not list.
    ice : IceSourceConfig
        Where the events come from.
    delta : tuple of DeltaRule
        Shifts added to imputed post-ICE values.
    """

    population: str | None = None
    variable: str | None = None
    treatment: str | None = None
    summary: str | None = None
    strategy: dict[str, str] = Field(default_factory=dict)
    default_strategy: str = "MAR"
    ice: IceSourceConfig = Field(default_factory=IceSourceConfig)
    delta: tuple[DeltaRule, ...] = ()

    @field_validator("strategy")
    @classmethod
    def _strategies(cls, v: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for ice_type, text in v.items():
            key = normalise_ice_type(ice_type)
            if key in out:
                raise ValueError(f"ICE type {ice_type!r} is given twice (as {key!r})")
            out[key] = normalise_strategy(text)
        return out

    @field_validator("default_strategy")
    @classmethod
    def _default(cls, v: str) -> str:
        return normalise_strategy(v)

    def strategy_of(self, ice_type: str) -> str:
        """The strategy of an ICE type: the table's, else the default."""
        return self.strategy.get(normalise_ice_type(ice_type), self.default_strategy)


def parse_estimand(data: Mapping[str, Any] | None, source: str = "configuration") -> EstimandConfig:
    """An ``[estimand]`` table (as :mod:`tomllib` reads it) as an :class:`EstimandConfig`.

    Raises
    ------
    DataValidationError
        One line: ``"plan.toml: setting 'estimand.strategy.discontinued': unknown strategy ..."``.
    """
    try:
        return EstimandConfig(**dict(data or {}))
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(p) for p in ("estimand", *e["loc"]))
        msg = "unknown setting" if e["type"] == "extra_forbidden" else str(e["msg"]).removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, (dict, list, tuple)) else f" (value {value!r})"
        raise DataValidationError(f"{source}: setting '{loc}': {msg}{shown}") from None
