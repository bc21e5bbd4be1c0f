"""SIGINT / SIGTERM during a run: an Exception the error hooks see, and the MLflow run KILLED."""

import os
import signal
import time

import pytest

from bma_quant.run_hooks.interrupts import InterruptHooks, RunInterrupted


class _Client:
    calls: list = []

    def set_terminated(self, run_id, status):
        self.calls.append((run_id, status))


@pytest.fixture
def hooks(monkeypatch):
    monkeypatch.setattr("mlflow.tracking.MlflowClient", _Client)
    _Client.calls = []
    h = InterruptHooks()
    h.before_pipeline_run()
    h._mlflow_run_id = "run-1"
    yield h
    h._restore()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_raises_run_interrupted_and_marks_the_run_killed(hooks, signum):
    with pytest.raises(RunInterrupted, match=signal.Signals(signum).name):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises as soon as the signal is delivered
    hooks.on_pipeline_error(RunInterrupted("x"))
    assert _Client.calls == [("run-1", "KILLED")]
    assert signal.getsignal(signum) is not hooks._handle  # handlers restored after the run


def test_interrupt_swallowed_by_a_node_stops_the_run_at_the_next_node(hooks):
    try:
        os.kill(os.getpid(), signal.SIGINT)
    except RunInterrupted:
        pass  # a learner guard records the failure and goes on
    with pytest.raises(RunInterrupted):
        hooks.after_node_run()


def test_ordinary_failure_is_left_to_kedro_mlflow(hooks):
    hooks.on_pipeline_error(ValueError("bad data"))
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
        hooks.on_pipeline_error(wrapped)
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
