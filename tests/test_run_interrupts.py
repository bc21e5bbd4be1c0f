"""SIGINT / SIGTERM during a run: an Exception the error hooks see, and the MLflow run KILLED;
raised at once in a node's code, at the next node boundary elsewhere; a run that does not end in
time is ended by force with a killed run's clean-up."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bma_quant.run_hooks.interrupts import InterruptHooks, RunInterrupted
from tests.support import REGISTERING_RUN_SCRIPT


class _Client:
    calls: list = []

    def set_terminated(self, run_id, status):
        self.calls.append((run_id, status))


def _wrapped(wrapper, inner_error=None):
    """Drive a wrapper hook as pluggy does: the other hooks run at its yield (and may raise)."""
    next(wrapper)
    with pytest.raises(StopIteration):
        if inner_error is None:
            wrapper.send(None)
        else:
            wrapper.throw(inner_error)


@pytest.fixture
def hooks(monkeypatch):
    monkeypatch.setattr("mlflow.tracking.MlflowClient", _Client)
    _Client.calls = []
    h = InterruptHooks()
    _wrapped(h.before_pipeline_run())
    h._mlflow_run_id = "run-1"
    yield h
    h._restore()


def _error_hooks(hooks, error):
    """Kedro's on_pipeline_error call: InterruptHooks' is a wrapper around the others."""
    _wrapped(hooks.on_pipeline_error(error))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_in_a_node_raises_run_interrupted_and_marks_the_run_killed(hooks, signum):
    hooks.before_node_run()  # the node's own code runs now
    with pytest.raises(RunInterrupted, match=signal.Signals(signum).name):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises as soon as the signal is delivered
    hooks.on_node_error()
    _error_hooks(hooks, RunInterrupted("x"))
    assert _Client.calls == [("run-1", "KILLED")]
    assert signal.getsignal(signum) != hooks._handle  # handlers restored after the run


def test_signal_outside_a_node_is_raised_at_the_next_node_boundary(hooks):
    """In hooks, loads and saves an exception at an arbitrary bytecode could leave a library's
    lock taken (and the clean-up hanging on it): the signal waits for the boundary."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # delivered, and nothing raised
    assert hooks.interrupted == "SIGTERM"
    with pytest.raises(RunInterrupted, match="SIGTERM"):
        hooks.before_node_run()


def test_signal_after_the_last_node_fails_the_run_before_promotion(hooks):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    with pytest.raises(RunInterrupted):
        hooks.stop_before_promotion()
    assert _Client.calls == [("run-1", "KILLED")]


def test_interrupt_swallowed_by_a_node_stops_the_run_at_the_next_node(hooks):
    hooks.before_node_run()
    swallowed = []
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except RunInterrupted as error:
        swallowed.append(error)  # a learner guard records the failure and goes on
    assert swallowed  # raised inside the node
    with pytest.raises(RunInterrupted):
        hooks.after_node_run()


def test_a_signal_once_every_node_succeeded_lets_the_run_finish(hooks):
    hooks.stop_before_promotion()  # every node succeeded: the promotion follows
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # nothing raised, and no forced end armed
    assert hooks.forced_exit is None or hooks.forced_exit._deadline is None
    _wrapped(hooks.after_pipeline_run())
    assert signal.getsignal(signal.SIGTERM) != hooks._handle
    assert _Client.calls == []


def test_a_failing_before_pipeline_run_hook_takes_the_handlers_back(monkeypatch):
    """Kedro calls no other hook of a run whose before_pipeline_run hook failed: handlers left
    installed would swallow a notebook's later Ctrl-C."""
    previous = signal.getsignal(signal.SIGINT)
    h = InterruptHooks()
    with pytest.raises(PermissionError):  # the run fails with the hook's error, as before
        _wrapped(h.before_pipeline_run(), PermissionError("staging folder not writable"))
    assert signal.getsignal(signal.SIGINT) == previous
    assert h.forced_exit is None


def test_in_a_kedro_run_the_signal_stops_the_node_at_once(monkeypatch):
    """Through Kedro's hook manager and runner: the hooks' order (trylast before_node_run,
    tryfirst after_node_run) puts the node's own code in between, where the signal is raised."""
    from kedro.framework.hooks.manager import _create_hook_manager
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Node, Pipeline
    from kedro.runner import SequentialRunner

    monkeypatch.setattr("mlflow.tracking.MlflowClient", _Client)

    def long_fit(x):
        os.kill(os.getpid(), signal.SIGTERM)
        started = time.monotonic()
        while time.monotonic() - started < 20:  # stopped at once, or the node runs 20 s
            time.sleep(0.05)
        return x

    class _Probe:  # another before_node_run hook, registered after: called before the trylast one
        from kedro.framework.hooks import hook_impl

        @hook_impl
        def before_node_run(self):
            pass

    manager = _create_hook_manager()
    h = InterruptHooks()
    manager.register(h)
    manager.register(_Probe())
    pipeline = Pipeline([Node(long_fit, "x", "y", name="long_fit")])
    catalog = DataCatalog({"x": MemoryDataset(1)})
    manager.hook.before_pipeline_run(run_params={}, pipeline=pipeline, catalog=catalog)
    started = time.monotonic()
    with pytest.raises(RunInterrupted, match="SIGTERM"):
        SequentialRunner().run(pipeline, catalog, manager)
    assert time.monotonic() - started < 10
    manager.hook.on_pipeline_error(error=RunInterrupted("x"), run_params={}, pipeline=pipeline,
                                   catalog=catalog)
    assert signal.getsignal(signal.SIGTERM) != h._handle


def test_ordinary_failure_is_left_to_kedro_mlflow(hooks):
    _error_hooks(hooks, ValueError("bad data"))
    assert _Client.calls == []  # kedro-mlflow has marked it FAILED


def test_a_signal_during_a_dataset_save_is_still_an_interruption(hooks):
    """Kedro re-raises an error inside a dataset's save as DatasetError from it: the run is
    still KILLED, and the failed summary names the signal, not the dataset."""
    from kedro.io import DatasetError

    from bma_quant.run_hooks.interrupts import interruption_in

    interrupted = RunInterrupted("run interrupted by SIGINT")
    try:
        try:
            raise interrupted
        except RunInterrupted as error:
            raise DatasetError("cv_layout: Failed while saving data to dataset") from error
    except DatasetError as wrapped:
        assert interruption_in(wrapped) is interrupted
        _error_hooks(hooks, wrapped)
    assert _Client.calls == [("run-1", "KILLED")]
    assert interruption_in(ValueError("bad data")) is None


def test_a_learner_stopped_by_a_signal_stops_the_node_instead_of_failing_alone(monkeypatch):
    """The learner guard records a failing learner and goes on with the others; Ctrl-C in a
    learner was recorded as 'lightgbm failed' (with its traceback) and the next learner
    started. It now propagates at once."""
    from bma_quant.pipelines.base_models import nodes
    from tests.support import project_params

    def stopped(*args, **kwargs):
        raise RunInterrupted("run interrupted by SIGINT")

    monkeypatch.setattr(nodes, "_train", stopped)
    with pytest.raises(RunInterrupted):
        nodes.train_learner("lightgbm", None, {"learners": ["lightgbm"]},
                            project_params()["temporal"])


# A run whose clean-up hangs after a signal (a lock an interrupted library left taken); argv as
# REGISTERING_RUN_SCRIPT's, then grace seconds, signals to send, and whether kedro-mlflow ended the
# run FAILED before the hang.
_STUCK_RUN = REGISTERING_RUN_SCRIPT + """
from bma_quant.run_hooks.interrupts import InterruptHooks
hooks = InterruptHooks(staging=staging)
hooks._grace_seconds, hooks._project_path = float(sys.argv[6]), project
start = hooks.before_pipeline_run()  # a wrapper hook: the others run at its yield
next(start)
next(start, None)
if sys.argv[8] == "failed":
    mlflow.end_run("FAILED")  # kedro-mlflow's on_pipeline_error got this far
for _ in range(int(sys.argv[7])):
    os.kill(os.getpid(), signal.SIGTERM)  # outside a node: nothing raised
    time.sleep(0.5)
print("clean-up hangs", flush=True)
lock = threading.Lock()
lock.acquire()
lock.acquire()  # never returns
"""


@pytest.mark.parametrize("signals, grace, ended", [(1, 1.0, "running"), (2, 600.0, "failed")],
                         ids=["past-the-grace-period", "second-signal"])
def test_a_run_stuck_after_a_signal_is_ended_by_force_with_a_killed_runs_clean_up(
        tmp_path, signals, grace, ended):
    import mlflow
    from mlflow import MlflowClient

    from bma_quant.run_hooks import staging

    name = "bma_quant-stuck"
    uri = f"sqlite:///{tmp_path / 'stuck.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    client.create_registered_model(name)
    script = tmp_path / "stuck_run.py"
    script.write_text(_STUCK_RUN)
    src = str(Path(staging.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script), str(tmp_path), name, uri, "stuck-run", "-",
                           str(grace), str(signals), ended], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 128 + signal.SIGTERM, done.stdout[-2000:] + done.stderr[-3000:]
    assert time.monotonic() - started < 120  # not the 600 s grace: the second signal ends it
    assert "clean-up hangs" in done.stdout
    assert "ending it by force" in done.stderr
    assert "Thread 0x" in done.stderr  # every thread's stack, for the bug report
    assert not (tmp_path / staging.STAGING_DIR / "stuck-run").exists(), done.stderr[-3000:]
    assert client.search_model_versions(f"name = '{name}'") == []  # registration taken back
    (run,) = client.search_runs(["0"])
    assert run.info.status == "KILLED"  # also when kedro-mlflow had ended it FAILED
    summary = json.loads((tmp_path / "data/08_reporting/run_summary.failed.json").read_text())
    assert "interrupted by SIGTERM (ended by force" in summary["status"]
    assert summary["mlflow_run_id"] == run.info.run_id
