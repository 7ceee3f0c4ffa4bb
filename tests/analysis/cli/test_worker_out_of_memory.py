"""Memory that runs out in a worker process (the figure writer's, the power study's) ends ``rajak run``
and ``rajak power`` with one line naming the stage and what to ask for instead, exit status 2, not a
traceback (issue #18). The worker's failure is injected: a pool whose futures fail as a worker's do."""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import pytest
from typer.testing import CliRunner

from analysis.cli.app import app
from tests.cli_error_lines import one_memory_error_line

runner = CliRunner()


class _FailingPool:
    """Stands in for the figure writer's process pool: every figure's worker fails with ``error``."""

    error: BaseException = MemoryError()

    def __init__(self, *args, **kwargs):
        pass

    def submit(self, fn, *args, **kwargs):
        fut: Future = Future()
        fut.set_exception(type(self).error)
        return fut

    def shutdown(self, *args, **kwargs):
        pass


@pytest.mark.parametrize("killed", [False, True])
def test_run_figure_worker_out_of_memory_is_one_line(monkeypatch, tmp_path, killed):
    import analysis.report.figure_writer as figure_writer

    _FailingPool.error = BrokenProcessPool("A child process terminated abruptly") if killed else MemoryError()
    monkeypatch.setattr(figure_writer, "ProcessPoolExecutor", _FailingPool)
    plan = tmp_path / "plan.toml"
    plan.write_text("power_sims = 0\nmi_imputations = 0\nfigure_workers = 1\nsensitivity = []\nbayes_models = []\n")
    res = runner.invoke(app, ["run", "--config", str(plan), "--output-dir", str(tmp_path / "out"), "--run-id", "r",
                              "--draws", "400", "--chains", "4"])
    line = one_memory_error_line(res)
    assert "out of memory in drawing the figure 'trajectories_observed' in a figure worker process" in line
    assert ("the worker process was killed, most likely out of memory" in line) == killed
    assert "patients" in line and "4 chains x 400 draws" in line
    assert "figure_workers = 0 in the plan" in line and "--draws 100 --chains 2" in line
    assert not (tmp_path / "out" / "r").exists()  # nothing half-written
    assert not list((tmp_path / "out").glob(".r.partial-*"))


class _FailingParallel:
    """Stands in for joblib's ``Parallel``: the first result is a worker's MemoryError (or death)."""

    error: BaseException = MemoryError()

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, tasks):
        list(tasks)

        def results():
            raise type(self).error
            yield  # pragma: no cover

        return results()


def _terminated() -> BaseException:
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    return TerminatedWorkerError("A worker process managed by the executor was unexpectedly terminated.")


@pytest.mark.parametrize("killed", [False, True])
def test_power_worker_out_of_memory_is_one_line(monkeypatch, tmp_path, killed):
    import joblib

    _FailingParallel.error = _terminated() if killed else MemoryError()
    monkeypatch.setattr(joblib, "Parallel", _FailingParallel)
    res = runner.invoke(app, ["power", "--n", "20,40", "--sims", "8", "--workers", "2", "--no-progress",
                              "--generator", "gaussian"])
    line = one_memory_error_line(res)
    assert line.startswith("rajak: error: out of memory in the sample-size simulations' worker processes "
                           "(2 processes, n = 20..40")
    assert ("killed, most likely out of memory" in line) == killed
    assert "(8 simulated studies per n)" in line
    assert "one worker process (--workers 1)" in line and "--sims 2" in line and "--n, now 20,40" in line


def test_run_power_worker_out_of_memory_is_one_line(monkeypatch, tmp_path):
    import joblib

    _FailingParallel.error = MemoryError()
    monkeypatch.setattr(joblib, "Parallel", _FailingParallel)
    plan = tmp_path / "plan.toml"
    plan.write_text("power_sims = 4\npower_workers = 2\nmi_imputations = 0\nfigure_workers = 0\n"
                    "sensitivity = []\nbayes_models = []\n")
    res = runner.invoke(app, ["run", "--config", str(plan), "--output-dir", str(tmp_path / "out"), "--run-id", "r"])
    line = one_memory_error_line(res)
    assert "out of memory in the sample-size simulations' worker processes (2 processes" in line
    assert "power_workers = 1 in the plan" in line and "--power-sims 50" in line
    assert not (tmp_path / "out" / "r").exists()


def test_power_out_of_memory_text_in_this_process_does_not_ask_for_fewer_workers():
    from analysis.cli.power import power_out_of_memory_text

    line = power_out_of_memory_text(MemoryError(), 500, None, "20:200:20", ["lmm,bayes"])
    assert line.startswith("out of memory in the power study (500 simulated studies per n): ask for fewer")
    assert "--workers" not in line and "--sims 125" in line and "--analysis lmm" in line
