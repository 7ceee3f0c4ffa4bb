"""The README's data-contract examples stay true: the ADaM trial's ``rajak validate`` prints what the
README shows, the ``[study]`` plans in it are valid plans that load the same design as the flags, and
the own-layout command validates its file."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from analysis.run.config import RunConfig
from analysis.study.data import load_dataset, load_for_config
from tests.analysis.study import own_study

pytest.importorskip("pyreadstat")

README = Path(__file__).resolve().parents[3] / "README.md"
runner = CliRunner()


def _contract() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Data contract\n"):text.index("\n## ", text.index("## Data contract\n") + 1)]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _contract(), flags=re.DOTALL)


def _commands() -> list[list[str]]:
    """Every ``rajak ...`` command of the section's bash blocks, continuation lines joined."""
    out = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("rajak "):
                out.append(shlex.split(line.split("#")[0])[1:])
    return out


def _command(name: str, file: str) -> list[str]:
    found = [c for c in _commands() if c[0] == name and file in c]
    assert found, f"README: no 'rajak {name} ... {file}' command"
    return found[0]


def _plans() -> list[dict]:
    plans = [re.search(r"<<'END'\n(.*?)\nEND\n", b, flags=re.DOTALL) for b in _blocks("bash")]
    return [tomllib.loads(p.group(1)) for p in plans if p]


@pytest.fixture
def adam_trial(tmp_path, monkeypatch):
    """``adbmd.xpt`` as the README describes it, in the working directory."""
    df = own_study.trial(n=60, seed=2024)
    df["arm"] = df["arm"].map({"PBO": "Placebo", "ZOL": "Zoledronate"})
    monkeypatch.chdir(tmp_path)
    return own_study.write(own_study.adam(df), Path("adbmd.xpt"))


@pytest.fixture
def own_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return own_study.write(own_study.own_layout(), Path("bmd_export.csv"))


def test_adam_example_prints_what_the_readme_shows(adam_trial):
    res = runner.invoke(app, _command("validate", "adbmd.xpt"))
    assert res.exit_code == 0, res.stderr
    shown = next(b for b in _blocks("text") if b.startswith("design: ")).rstrip("\n").split("\n")
    got = res.stdout.rstrip("\n").split("\n")
    gap = shown.index("  ...")
    assert got[:gap] == shown[:gap]
    tail = shown[gap + 1:]
    assert got[-len(tail):] == tail


def test_adam_example_run_command_uses_the_validated_design():
    run = _command("run", "adbmd.xpt")
    validate = _command("validate", "adbmd.xpt")
    assert run[run.index("--data") + 2:] == validate[2:]


def test_readme_plans_are_valid_and_load_the_flags_design(adam_trial, tmp_path):
    plans = {p["data"]: p for p in _plans()}
    assert set(plans) == {"adbmd.xpt", "bmd_export.csv"}
    cfg = RunConfig(**plans["adbmd.xpt"])
    ds = load_for_config(cfg)
    flags = load_dataset("adbmd.xpt", group="TRT01P", reference="placebo", endpoint=24)
    assert ds.design == flags.design
    assert ds.design.group_levels == ("placebo", "zoledronate") and ds.design.endpoint == 24
    assert cfg.bind(ds.design).sites == ("spine", "total_hip")

    own_study.write(own_study.own_layout(), tmp_path / "bmd_export.csv")
    cfg = RunConfig(**plans["bmd_export.csv"])
    ds = load_for_config(cfg)
    cmd = _command("validate", "bmd_export.csv")
    opts = dict(zip(cmd[2::2], cmd[3::2]))
    flags = load_dataset("bmd_export.csv", id=opts["--id"], group=opts["--group"], reference=opts["--reference"],
                         time=opts["--time"], time_unit=opts["--time-unit"], visit=opts["--visit"],
                         sites={"total_body": "bmd"}, covariates=("age", "sex"))
    assert ds.design == flags.design
    assert ds.design.visits == (0, 6, 12, 24) and ds.design.group_levels == ("c", "p")


def test_own_layout_example_validates(own_layout):
    cmd = _command("validate", "bmd_export.csv")
    res = runner.invoke(app, cmd)
    assert res.exit_code == 0, res.stderr
    assert "  groups: c, p   reference: p" in res.stdout and "  sites: total_body (bmd)" in res.stdout
    freq = _command("frequentist", "bmd_export.csv")
    assert freq[freq.index("--data") + 2:] == cmd[2:]  # the same flags on every command
