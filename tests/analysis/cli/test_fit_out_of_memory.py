"""``rajak fit`` out of memory: one line on stderr saying what to ask for instead, exit status 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from analysis.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("where", ["fit", "save"])
def test_memory_error_is_one_line_with_what_to_ask_for(monkeypatch, tmp_path, where):
    import analysis.bayes.fit as bayes_fit
    import analysis.engine.results as results

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 48.6 GiB for an array with shape (180114, 50000)")

    if where == "fit":
        monkeypatch.setattr(bayes_fit, "fit_bayes", no_memory)
        args = []
    else:
        monkeypatch.setattr(results.FitResult, "save", no_memory)
        args = ["--save", str(tmp_path / "fit.nc")]
    res = runner.invoke(app, ["fit", "--draws", "20", "--tune", "20", "--chains", "1", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("rajak: error:")]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "out of memory" in lines[0] and "--draws 100 --chains 2" in lines[0]
    assert ("--save" in lines[0]) == (where == "save")
