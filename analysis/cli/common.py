"""What every ``rajak`` command shares: one-line errors on stderr, exit status 2 for bad input, loading
and deriving the data a command analyses, and JSON output of tables."""

from __future__ import annotations

import os
from contextlib import contextmanager

import typer

from analysis.run.config import ConfigError, load_config
from analysis.study.data import DataValidationError

__all__ = ["EXIT_BAD_INPUT", "PATH_ERRORS", "analysis_errors", "err", "info", "json_default", "load_derived",
           "parse_map", "responder_text"]

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


def load_derived(data, config, strategy, seed, map_):
    """Configuration, dataset and derived frame; bad input ends the command with exit status 2."""
    from analysis.study.clinical import derive
    from analysis.study.data import load_for_config

    try:
        cfg = load_config(config, data=str(data) if data else None, undefined_responders=strategy, seed=seed,
                          column_map=parse_map(map_) or None)
        ds = load_for_config(cfg)
        with analysis_errors(ds.source):
            derived = derive(ds.frame, cfg.responder.rule(), cfg.tscore.reference_object(), cfg.endpoint_month)
    except (DataValidationError, ConfigError) as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT)
    return cfg, ds, derived
