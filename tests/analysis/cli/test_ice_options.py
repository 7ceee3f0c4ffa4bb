"""The intercurrent-event flags (analysis.cli.ice_options): parsed into IceFlags on a command that
also takes the design flags, laid over the plan's ``[estimand]`` table, one-line errors for bad
values, and :func:`load_ice` picking the source (file > study-file columns > reasons > derived)."""

from __future__ import annotations

import json
import tomllib

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from analysis.cli.common import DesignFlags, design_options
from analysis.cli.ice_options import IceFlags, ice_options, load_ice, parse_delta
from analysis.run.config import ConfigError
from analysis.run.estimand_config import DeltaRule, parse_estimand
from analysis.study.problems import DataValidationError
from tests.analysis.study.ice_study import digest, load

app = typer.Typer()


@app.command()
@design_options
@ice_options
def show(verbose: bool = False, design: DesignFlags | None = None, ice: IceFlags | None = None) -> None:
    """Print the flags as the command receives them."""
    typer.echo(json.dumps({"group": design.group, "file": ice.file, "strategy": list(ice.strategy),
                           "default": ice.default_strategy, "reason_map": list(ice.reason_map), "derive": ice.derive,
                           "delta": list(ice.delta), "type_column": ice.type_column, "verbose": verbose}))


@app.command()
def other() -> None:
    """A second command, so that the app has subcommands."""


def _show(*args: str) -> dict:
    res = CliRunner().invoke(app, ["show", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_flags_reach_the_command_beside_the_design_flags():
    got = _show("--group", "arm", "--ice", "ice.csv", "--ice-strategy", "discontinued=J2R", "--ice-strategy",
                "death=while_on_treatment", "--ice-default-strategy", "hypothetical", "--reason-map",
                "Adverse event=discontinued", "--no-ice-derive", "--delta", "-0.5", "--delta=0.2@24:active#death",
                "--ice-type-column", "EVENT", "--verbose")
    assert got == {"group": "arm", "file": "ice.csv", "strategy": ["discontinued=J2R", "death=while_on_treatment"],
                   "default": "hypothetical", "reason_map": ["Adverse event=discontinued"], "derive": False,
                   "delta": ["-0.5", "0.2@24:active#death"], "type_column": "EVENT", "verbose": True}
    assert _show()["derive"] is None and _show()["strategy"] == []
    help_text = CliRunner().invoke(app, ["show", "--help"]).output
    assert "Intercurrent events" in help_text and "--ice-strategy" in help_text and "--reason-map" in help_text


def test_flags_override_the_plan_entry_by_entry():
    base = parse_estimand(tomllib.loads("""
        population = "women"
        strategy.discontinued = "JR"
        strategy.death = "while_on_treatment"
        ice.reason_column = "DCSREAS"
        ice.reasons = {"adverse event" = "discontinued"}
        delta = [{value = 1.0}]
    """))
    flags = IceFlags(strategy=("Discontinued=cir", "fracture=hypothetical:JR"), reason_map=("Completed=none",),
                     delta=("-0.01@24:Active#discontinued",), default_strategy="j2r")
    cfg = flags.to_config(base)
    assert cfg.population == "women"
    assert cfg.strategy == {"discontinued": "CIR", "death": "while_on_treatment", "fracture": "hypothetical:JR"}
    assert cfg.default_strategy == "JR"
    assert cfg.ice.reasons == {"adverse event": "discontinued", "completed": "none"} and cfg.ice.source == "reasons"
    assert cfg.delta == (DeltaRule(value=-0.01, visit=24, group="active", ice_type="discontinued"),)
    assert IceFlags().to_config(base) == base
    assert IceFlags(file="ice.csv").to_config(base).ice.source == "file"  # a file comes first


@pytest.mark.parametrize("flags, expected", [
    (IceFlags(strategy=("discontinued",)), "--ice-strategy takes TYPE=STRATEGY, got 'discontinued'"),
    (IceFlags(strategy=("discontinued=J3R",)), "--ice-strategy discontinued=J3R: unknown strategy 'J3R'"),
    (IceFlags(strategy=("death=composite",)), "BMD is continuous"),
    (IceFlags(default_strategy="worst"), "--ice-default-strategy: unknown strategy 'worst'"),
    (IceFlags(reason_map=("AE=2nd event",)), "--reason-map AE=2nd event: ICE type '2nd event' is not a name"),
    (IceFlags(reason_map=("AE=discontinued",)), "no reason_column"),
    (IceFlags(delta=("minus one",)), "--delta 'minus one': give VALUE[@MONTH][:GROUP][#ICE_TYPE]"),
    (IceFlags(delta=("1@month 12",)), "--delta '1@month 12': the visit after @ must be a month"),
    (IceFlags(type_column="EVENT"), "both type_column and month_column"),
])
def test_bad_flags_are_one_line(flags, expected):
    with pytest.raises(ConfigError) as exc:
        flags.to_config()
    assert "\n" not in str(exc.value) and expected in str(exc.value), str(exc.value)


def test_parse_delta_forms():
    assert parse_delta("0.5") == DeltaRule(value=0.5)
    assert parse_delta("-1e-2@12") == DeltaRule(value=-0.01, visit=12)
    assert parse_delta("+2:Placebo") == DeltaRule(value=2, group="placebo")
    assert parse_delta("3#Bone therapy") == DeltaRule(value=3, ice_type="bone_therapy")


def _reasons(df: pd.DataFrame) -> pd.DataFrame:
    last = df.groupby("patient_id")["visit"].transform("max")
    df["DCSREAS"] = ["COMPLETED" if m == 24 else "ADVERSE EVENT" for m in last]
    df["ice_type"] = df["patient_id"].map({"S0001": "fracture"})
    df["ice_month"] = df["patient_id"].map({"S0001": 12})
    return df


def test_load_ice_picks_the_first_source_given(tmp_path):
    s = load(tmp_path, edit=_reasons)
    before = digest(s.path)
    derived = load_ice(None, s.derived, s.design)
    assert set(derived.frame["ice_type"]) == {"discontinued"} and "missing follow-up" in derived.source
    assert load_ice(IceFlags(derive=False), s.derived, s.design) is None

    by_reason = load_ice(IceFlags(reason_column="dcsreas", reason_map=("adverse event=bone_therapy",
                                                                       "completed=none")), s.derived, s.design)
    assert by_reason.frame[["patient_id", "month"]].equals(derived.frame[["patient_id", "month"]])
    assert set(by_reason.frame["ice_type"]) == {"bone_therapy"}

    columns = load_ice(IceFlags(type_column="ICE_TYPE", month_column="ice_month", reason_column="DCSREAS"),
                       s.derived, s.design, source=str(s.path))
    assert columns.frame[["patient_id", "month", "ice_type"]].values.tolist() == [["S0001", 12.0, "fracture"]]

    pid = s.completers()[0]
    ice_file = tmp_path / "ice.csv"
    pd.DataFrame({"USUBJID": [pid], "AVISITN": [24], "EVENT": ["death"]}).to_csv(ice_file, index=False)
    flags = IceFlags(file=str(ice_file), type_column="EVENT", month_column="AVISITN",
                     strategy=("death=while_on_treatment",))
    from_file = load_ice(flags, s.derived, s.design)
    assert from_file.frame[["patient_id", "month", "ice_type"]].values.tolist() == [[pid, 24.0, "death"]]
    assert from_file.strategy_for(flags.to_config().strategy).tolist() == ["while_on_treatment"]
    assert digest(s.path) == before


def test_load_ice_checks_strategies_against_the_events(tmp_path):
    s = load(tmp_path)
    pid = s.completers()[0]
    ice_file = tmp_path / "ice.csv"
    pd.DataFrame({"patient_id": [pid, pid], "month": [6, 12], "ice_type": ["bone_therapy", "discontinued"]}
                 ).to_csv(ice_file, index=False)
    ok = load_ice(IceFlags(file=str(ice_file), strategy=("discontinued=JR",)), s.derived, s.design)
    assert len(ok) == 2
    bad = IceFlags(file=str(ice_file), strategy=("discontinued=JR", "bone_therapy=CR"))
    with pytest.raises(DataValidationError) as exc:
        load_ice(bad, s.derived, s.design)
    line = str(exc.value)
    assert "\n" not in line and line.startswith(f"{ice_file}, line 3 (patient {pid}): two intercurrent events")
