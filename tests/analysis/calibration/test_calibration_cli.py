"""``rajak validate-methods``: the table on stdout, the files in --out, one-line errors with exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def cli():
    from analysis.cli.app import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["validate-methods", *map(str, args)])


def test_validate_methods_writes_the_table(cli, tmp_path):
    res = cli("--estimators", "completers_welch,mmrm_us", "--datasets", 3, "--out", tmp_path, "--seed", 4)
    assert res.exit_code == 0, res.output
    assert "== calibration: 3 data sets per estimator, seed 4" in res.stdout
    assert "completers_welch:" in res.stdout and "mmrm_us:" in res.stdout
    md = (tmp_path / "calibration.md").read_text()
    assert "`rajak validate-methods --estimators completers_welch,mmrm_us --datasets 3 --seed 4`" in md
    for name in ("calibration.csv", "calibration_coverage.png", "calibration_coverage.svg", "raw.csv"):
        assert (tmp_path / name).is_file()
    again = cli("--estimators", "completers_welch,mmrm_us", "--datasets", 3, "--out", tmp_path, "--seed", 4)
    assert again.exit_code == 0  # resumed from the chunks: the same rows
    strip = lambda text: [line.rsplit(maxsplit=1)[0] for line in text.splitlines()[1:4]]
    assert strip(again.stdout) == strip(res.stdout)


def test_list(cli):
    res = cli("--list")
    assert res.exit_code == 0 and "lmm_kenward_roger" in res.stdout and "cir_rubin" in res.stdout


@pytest.mark.parametrize("args, message", [
    (("--estimators", "nope"), "unknown estimator 'nope'"),
    (("--estimators", ","), "names no estimator"),
    (("--datasets", 0), "--datasets must be at least 1"),
    (("--workers", 0), "--workers must be at least 1"),
    (("--scheduler", "localhost"), "scheduler address must look like tcp://HOST:PORT"),
])
def test_bad_input_exits_2_with_one_line(cli, args, message):
    res = cli(*args)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rajak: error: ") and message in lines[0]


def test_another_studys_directory_is_bad_input(cli, tmp_path):
    assert cli("--estimators", "completers_welch", "--datasets", 2, "--out", tmp_path, "--seed", 1).exit_code == 0
    res = cli("--estimators", "completers_welch", "--datasets", 2, "--out", tmp_path, "--seed", 2)
    assert res.exit_code == 2 and "another calibration study" in res.stderr
