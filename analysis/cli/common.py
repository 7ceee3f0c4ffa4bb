"""What every ``rajak`` command shares: one-line errors on stderr, exit status 2 for bad input, loading
and deriving the data a command analyses, and JSON output of tables."""

from __future__ import annotations

import functools
import inspect
import os
import typing
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from analysis.run.config import ConfigError, load_config
from analysis.study.data import DataValidationError

__all__ = ["EXIT_BAD_INPUT", "PATH_ERRORS", "DesignFlags", "analysis_errors", "design_options", "err", "info",
           "json_default", "load_derived", "parse_map", "parse_params", "responder_text"]

EXIT_BAD_INPUT = 2
PATH_ERRORS = (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)


def err(msg: str) -> None:
    typer.echo(f"rajak: error: {msg}", err=True)


def info(msg: str) -> None:
    typer.echo(msg, err=True)


@contextmanager
def analysis_errors(source: str):
    """An analysis that cannot run on valid but unsuitable data (too few patients, an empty group,
    a rank-deficient design) ends the command with one line and exit status 2, not a traceback.
    ``RAJAK_DEBUG=1`` re-raises, for developers."""
    import numpy as np

    try:
        yield
    except (DataValidationError, ConfigError):
        raise
    except (ValueError, KeyError, IndexError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
        if os.environ.get("RAJAK_DEBUG") == "1":
            raise
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).strip().splitlines()[0] if str(exc) else ""
        err(f"{source}: the analysis cannot run on these data ({type(exc).__name__}: {what}); "
             f"RAJAK_DEBUG=1 shows where")
        raise typer.Exit(EXIT_BAD_INPUT)


def parse_map(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--map takes FILE_COLUMN=CONTRACT_COLUMN, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def responder_text(cfg, derived) -> str:
    """The responder rule, and how many patients' status the user supplied instead."""
    text = cfg.responder.rule().describe()
    src = derived.drop_duplicates("patient_id")["responder_source"]
    given = int((src == "user-supplied").sum())
    return text if not given else f"user-supplied for {given} of {src.size} patients, else {text}"


def json_default(obj):
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj.replace({np.nan: None}).to_dict(orient="records")
    if isinstance(obj, (np.floating, np.integer)):
        return None if isinstance(obj, np.floating) and not np.isfinite(obj) else obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return str(obj)


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``--param PARAMCD=site`` (ADaM), repeatable."""
    out: dict[str, str] = {}
    for item in items or []:
        code, sep, site = item.partition("=")
        if not sep or not code.strip() or not site.strip():
            raise ConfigError(f"--param takes PARAMCD=site (e.g. LSBMD=spine, or CODE=ignore), got {item!r}")
        out[code.strip()] = site.strip()
    return out


_TIME_UNITS = ("months", "days", "years", "date")


@dataclass(frozen=True)
class DesignFlags:
    """The study-design flags every command that reads data takes (see
    :class:`analysis.study.design.StudyDesign`); ``None`` = not given (the ``[study]`` table of the
    plan, else inferred from the file)."""

    id: str | None = None
    time: str | None = None
    time_unit: str | None = None
    visit: str | None = None
    site: tuple[str, ...] = ()
    group: str | None = None
    reference: str | None = None
    endpoint: float | None = None
    covariates: str | None = None
    sheet: str | None = None
    param: tuple[str, ...] = ()

    def study_overrides(self) -> dict[str, Any]:
        """The flags given, as ``[study]`` table entries (:class:`analysis.run.config.StudyConfig`)."""
        if self.time_unit is not None and self.time_unit not in _TIME_UNITS:
            raise ConfigError(f"--time-unit {self.time_unit!r}: use one of {', '.join(_TIME_UNITS)}")
        out: dict[str, Any] = {k: getattr(self, k) for k in ("id", "time", "time_unit", "visit", "group",
                                                              "reference", "endpoint", "covariates")
                               if getattr(self, k) is not None}
        if self.site:
            out["sites"] = list(self.site)
        if self.sheet is not None:
            out["sheet"] = int(self.sheet) if str(self.sheet).isdigit() else self.sheet
        if self.param:
            out["param"] = parse_params(list(self.param))
        return out


def _opt(annotation, *names: str, **kw) -> Any:
    return Annotated[annotation, typer.Option(*names, rich_help_panel="Study design", **kw)]


#: (name, annotation) of the design options, in the order ``--help`` lists them.
_DESIGN_PARAMS = [
    ("id_", _opt(Optional[str], "--id", help="The subject-identifier column (default: patient_id, USUBJID, ...).")),
    ("time", _opt(Optional[str], "--time", help="The time column (default: month, ADY, visit_date, ...).")),
    ("time_unit", _opt(Optional[str], "--time-unit", help="Unit of the time column: months, days, years or date.")),
    ("visit", _opt(Optional[str], "--visit", help="The nominal-visit column (default: windows of the times, each at its nearest whole month).")),
    ("site", _opt(Optional[list[str]], "--site", help="A BMD site, NAME=COLUMN (e.g. total_body=bmd) or NAME for bmd_NAME; repeatable.")),
    ("group", _opt(Optional[str], "--group", help="The group column (an arm), 'none' (single arm) or 'responder' (derived from disease activity).")),
    ("reference", _opt(Optional[str], "--reference", help="The group's reference level (e.g. placebo).")),
    ("endpoint", _opt(Optional[float], "--endpoint", help="The endpoint visit in months (default: the last visit).")),
    ("covariates", _opt(Optional[str], "--covariates", help="Baseline covariates a,b,... or none (default: those of age, sex, bmi present).")),
    ("sheet", _opt(Optional[str], "--sheet", help="Excel: the sheet, by name or 0-based index.")),
    ("param", _opt(Optional[list[str]], "--param", help="ADaM: PARAMCD=site (e.g. BMDTH=total_hip, CODE=ignore); repeatable.")),
]


def design_options(command):
    """Give a command the study-design flags: the wrapped function receives them as one
    ``design: DesignFlags`` argument. (Typer has no option groups; rewriting the signature keeps the
    eleven flags in one place instead of eleven copies per command.)"""
    hints = typing.get_type_hints(command, include_extras=True)  # the command module's names
    sig = inspect.signature(command)
    sig = sig.replace(parameters=[p.replace(annotation=hints.get(p.name, p.annotation))
                                  for p in sig.parameters.values()])
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
             for name, ann in _DESIGN_PARAMS]
    kept = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            and p.default is not inspect.Parameter.empty else p
            for p in sig.parameters.values() if p.name != "design"]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        values = {name: kwargs.pop(name, None) for name, _ in _DESIGN_PARAMS}
        flags = DesignFlags(id=values["id_"], time=values["time"], time_unit=values["time_unit"],
                            visit=values["visit"], site=tuple(values["site"] or ()), group=values["group"],
                            reference=values["reference"], endpoint=values["endpoint"],
                            covariates=values["covariates"], sheet=values["sheet"],
                            param=tuple(values["param"] or ()))
        return command(*args, design=flags, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*kept, *added])
    return wrapper


def load_derived(data, config, strategy, seed, map_, design: DesignFlags | None = None, **overrides):
    """Configuration (bound to the study's design), dataset and derived frame; bad input ends the
    command with exit status 2 and one line."""
    from analysis.study.clinical import derive
    from analysis.study.data import load_for_config
    from analysis.study.design import DesignError
    from analysis.study.groups import check_groups

    try:
        design = design or DesignFlags()
        study = design.study_overrides()
        if design.site:  # --site names the sites to analyse as well as their columns
            from analysis.study.design import parse_sites

            overrides.setdefault("sites", tuple(parse_sites(design.site)))
        cfg = load_config(config, data=str(data) if data else None, undefined_responders=strategy, seed=seed,
                          column_map=parse_map(map_) or None, study_overrides=study, **overrides)
        ds = load_for_config(cfg)
        cfg = cfg.bind(ds.design)
        with analysis_errors(ds.source):
            derived = derive(ds.frame, cfg.responder.rule(), cfg.tscore.reference_object(), cfg.endpoint_month,
                             design=ds.design)
        for note in [*ds.report.notes, *derived.attrs.get("notes", [])]:
            info(f"note: {note}")
        try:
            check_groups(derived, cfg.undefined_responders, cfg.responder.rule(), ds.design, ds.source)
        except ValueError as exc:
            raise DataValidationError(str(exc)) from None
    except (DataValidationError, ConfigError, DesignError) as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)
    return cfg, ds, derived
