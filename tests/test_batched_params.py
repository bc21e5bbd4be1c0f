"""The batched parameter hook logs what kedro-mlflow's own hook logs, in far fewer transactions."""

import mlflow
import pytest
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from bma_quant.run_hooks.batched_params import BatchedParamsMlflowHook
from tests.support import sqlite_tracking

NODE_INPUTS = {
    "params:base_models": {"seed": 42, "tuning": {"n_trials": 10, "sampler": {"seed": None}},
                           "learners": ["elastic_net", "xgboost"], "note": "x" * (MAX_PARAM_VAL_LENGTH + 100)},
    "params:temporal": {"horizon": 10},
    "model_input": object(),  # not a parameter: never logged
}


def configured(hook: MlflowHook, run_id: str) -> MlflowHook:
    """The state before_pipeline_run leaves on the hook, with the project's mlflow.yml choices."""
    hook.mlflow_config = KedroMlflowConfig()
    hook._is_mlflow_enabled = True
    hook.flatten, hook.recursive, hook.sep = True, True, "."
    hook.long_params_strategy = "truncate"
    hook.run_id = run_id
    return hook


def logged_params(hook: MlflowHook, calls: int) -> dict:
    run = mlflow.start_run()
    configured(hook, run.info.run_id)
    for _ in range(calls):  # several nodes take the same parameters
        hook.before_node_run(None, None, NODE_INPUTS, False)
    while mlflow.active_run():  # the hook re-enters the run per node, as a Kedro run does
        mlflow.end_run()
    return MlflowClient().get_run(run.info.run_id).data.params


@pytest.fixture
def tracking(tmp_path):
    with sqlite_tracking(tmp_path):
        yield


def test_same_parameters_as_the_plugin_hook_in_one_batch_per_node(tracking, monkeypatch):
    expected = logged_params(MlflowHook(), calls=1)
    assert expected["base_models.tuning.n_trials"] == "10"
    assert len(expected["base_models.note"]) == MAX_PARAM_VAL_LENGTH  # truncated, not dropped

    batches, singles = [], []
    original_batch, original_single = mlflow.log_params, mlflow.log_param
    monkeypatch.setattr(mlflow, "log_params", lambda p: batches.append(p) or original_batch(p))
    monkeypatch.setattr(mlflow, "log_param", lambda k, v: singles.append(k)
                        or original_single(k, v))
    batched = logged_params(BatchedParamsMlflowHook(), calls=3)

    assert batched == expected
    assert len(batches) == 1  # the second and third node add nothing new
    assert singles == ["base_models.note"]  # only the long value takes the per-key path


def test_a_changed_value_still_reaches_mlflow_and_is_refused(tracking):
    hook = BatchedParamsMlflowHook()
    configured(hook, mlflow.start_run().info.run_id)
    hook.before_node_run(None, None, {"params:temporal": {"horizon": 10}}, False)
    with pytest.raises(mlflow.exceptions.MlflowException):
        hook.before_node_run(None, None, {"params:temporal": {"horizon": 5}}, False)


def test_the_run_is_reopened_only_in_a_thread_that_does_not_have_it(tracking, monkeypatch):
    import threading

    from mlflow.tracking.fluent import _active_run_stack

    hook = BatchedParamsMlflowHook()
    run_id = mlflow.start_run().info.run_id
    configured(hook, run_id)
    starts = []
    original_start = mlflow.start_run
    monkeypatch.setattr(mlflow, "start_run", lambda *a, **k: starts.append(k.get("run_id"))
                        or original_start(*a, **k))
    for _ in range(3):  # nodes in the thread that started the run: nothing to re-open
        hook.before_node_run(None, None, NODE_INPUTS, False)
    assert starts == [] and len(_active_run_stack.get()) == 1

    seen = {}

    def node_in_another_thread():  # e.g. ThreadRunner: MLflow's run stack is per thread
        hook.before_node_run(None, None, {"params:other": {"k": 1}}, False)
        seen["active"] = mlflow.active_run().info.run_id
        mlflow.end_run()

    worker = threading.Thread(target=node_in_another_thread)
    worker.start()
    worker.join()
    assert starts == [run_id] and seen["active"] == run_id
    mlflow.end_run()
    assert MlflowClient().get_run(run_id).data.params["other.k"] == "1"


def test_nodes_starting_at_once_with_the_same_parameters_log_them_once(tracking):
    """ThreadRunner starts independent nodes together; when they take the same parameters, both
    saw the keys as new and the second batch failed on MLflow's UNIQUE (key, run) constraint,
    failing the run before any work (found on the S&P sample: rc=1 three times in three)."""
    import threading

    hook = BatchedParamsMlflowHook()
    run_id = mlflow.start_run().info.run_id
    configured(hook, run_id)
    inputs = {f"params:layer{i}": {"key": i, "shared": {"a": 1, "b": [1, 2]}} for i in range(3)}
    inputs["params:data"] = {f"key{i}": i for i in range(40)}
    barrier, errors = threading.Barrier(6), []

    def node():
        barrier.wait()
        try:
            hook.before_node_run(None, None, inputs, False)
        except Exception as exc:  # noqa: BLE001 - the failure under test
            errors.append(repr(exc))
        finally:
            while mlflow.active_run():
                mlflow.end_run()

    threads = [threading.Thread(target=node) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    mlflow.end_run()
    assert errors == []
    params = MlflowClient().get_run(run_id).data.params
    assert params["data.key39"] == "39" and params["layer2.shared.b"] == "[1, 2]"
