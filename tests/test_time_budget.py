"""The whole-run time budget stops a run between nodes, records what finished, never truncates."""

from types import SimpleNamespace

import mlflow
import pytest

from bma_quant.run_hooks.time_budget import RunTimeBudgetExceeded, TimeBudgetHooks


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _hooks(budget, clock):
    hooks = TimeBudgetHooks(clock=clock)
    hooks.after_context_created(SimpleNamespace(params={"run": {"timeout_seconds": budget}}))
    hooks.before_pipeline_run()
    return hooks


def _node(name):
    return SimpleNamespace(name=name)


def test_budget_stops_before_the_next_node_naming_what_finished():
    clock = Clock()
    hooks = _hooks(10, clock)
    for name, at in (("load", 1.0), ("clean", 9.0)):
        clock.now = at
        hooks.before_node_run(_node(name))  # within budget: runs
        hooks.after_node_run(_node(name))
    clock.now = 10.5
    with pytest.raises(RunTimeBudgetExceeded) as err:
        hooks.before_node_run(_node("split"))
    message = str(err.value)
    assert "run.timeout_seconds = 10 passed (10 s) before node 'split'" in message
    assert "after 2 finished node(s) (load, clean)" in message
    assert hooks.finished == ["load", "clean"]


def test_no_budget_never_stops():
    clock = Clock()
    hooks = _hooks(None, clock)
    assert hooks.budget is None
    for name, at in (("load", 1.0), ("train", 1e9)):
        clock.now = at
        hooks.before_node_run(_node(name))  # no RunTimeBudgetExceeded however late
        hooks.after_node_run(_node(name))
    assert hooks.finished == ["load", "train"]


def test_a_stopped_run_is_tagged_in_mlflow():
    clock = Clock()
    hooks = _hooks(1, clock)
    hooks.after_node_run(_node("load"))
    clock.now = 2
    with mlflow.start_run() as run:
        with pytest.raises(RunTimeBudgetExceeded) as err:
            hooks.before_node_run(_node("clean"))
        hooks.on_pipeline_error(err.value)
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert tags["stopped_by"] == "run.timeout_seconds" and tags["finished_nodes"] == "1"
