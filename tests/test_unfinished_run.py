"""A process that ends mid-run by SystemExit fails the run through the error hooks, at exit."""

import atexit
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bma_quant.run_hooks import unfinished_run

# A session's hook manager, these hooks and a recorder of on_pipeline_error; argv[1] = "exit"
# makes the second node call sys.exit(3), "exit0" sys.exit(), "ok" lets the run finish and then
# the process exit.
_SCRIPT = """
import sys
from types import SimpleNamespace
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner
from bma_quant.run_hooks.unfinished_run import UnfinishedRunHooks

class Recorder:
    @hook_impl
    def on_pipeline_error(self, error, run_params, pipeline, catalog):
        print(f"on_pipeline_error: {type(error).__name__}: {error} | {run_params['run_id']} | "
              f"{len(pipeline.nodes)} nodes", flush=True)

def first(x):
    return x

def second(y):
    if sys.argv[1] == "exit":
        sys.exit(3)
    if sys.argv[1] == "exit0":
        sys.exit()
    return y

manager = _create_hook_manager()
guard = UnfinishedRunHooks()
manager.register(guard)
manager.register(Recorder())
guard.after_context_created(SimpleNamespace(_hook_manager=manager))
pipeline = Pipeline([Node(first, "x", "y", name="first"), Node(second, "y", "z", name="second")])
catalog = DataCatalog({"x": MemoryDataset(1)})
run_params = {"run_id": "r1"}
manager.hook.before_pipeline_run(run_params=run_params, pipeline=pipeline, catalog=catalog)
result = SequentialRunner().run(pipeline, catalog, manager)
manager.hook.after_pipeline_run(run_params=run_params, run_result=result, pipeline=pipeline,
                                catalog=catalog)
print("finished", flush=True)
"""


def _run(tmp_path, mode: str) -> subprocess.CompletedProcess:
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    src = str(Path(unfinished_run.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script), mode], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("mode", ["exit", "exit0"])
def test_sys_exit_in_a_node_calls_the_error_hooks_at_exit_naming_the_node(tmp_path, mode):
    done = _run(tmp_path, mode)
    assert done.returncode == 1, done.stderr[-3000:]  # failed, also after sys.exit()
    assert ("on_pipeline_error: RunEndedWithoutHooks: The process ended in node 'second' "
            "before the run finished") in done.stdout, done.stdout + done.stderr[-3000:]
    assert "| r1 | 2 nodes" in done.stdout  # the run's own hook arguments
    assert done.stdout.count("on_pipeline_error") == 1


def test_a_finished_run_calls_no_error_hook_at_exit(tmp_path):
    done = _run(tmp_path, "ok")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished" in done.stdout and "on_pipeline_error" not in done.stdout


def _start(guard, fail: bool = False):
    """The wrapper hook around the other before-run hooks; `fail`: one of them refuses the run."""
    wrapper = guard.before_pipeline_run(run_params={}, pipeline=None, catalog=None)
    next(wrapper)
    if fail:
        with pytest.raises(ValueError):
            wrapper.throw(ValueError("refused by the pre-flight"))
    else:
        with pytest.raises(StopIteration):
            wrapper.send(None)


def test_a_run_refused_before_it_started_is_not_failed_again_at_exit():
    calls = []
    guard = unfinished_run.UnfinishedRunHooks()
    guard._hook_manager = type("M", (), {"hook": type("H", (), {
        "on_pipeline_error": staticmethod(lambda **kw: calls.append(kw))})()})()
    _start(guard, fail=True)
    guard.fail_unfinished_run(exit_process=False)
    assert calls == []


def test_after_the_error_hooks_ran_the_exit_handler_does_nothing():
    calls = []
    guard = unfinished_run.UnfinishedRunHooks()
    guard._hook_manager = type("M", (), {"hook": type("H", (), {
        "on_pipeline_error": staticmethod(lambda **kw: calls.append(kw))})()})()
    _start(guard)
    guard.on_pipeline_error()
    guard.fail_unfinished_run(exit_process=False)
    assert calls == []
    _start(guard)
    guard.before_node_run(type("N", (), {"name": "fit"})())
    guard.fail_unfinished_run(exit_process=False)
    assert len(calls) == 1 and "in node 'fit'" in str(calls[0]["error"])
    guard.fail_unfinished_run(exit_process=False)  # once only
    assert len(calls) == 1
    atexit.unregister(guard.fail_unfinished_run)  # registered by the run above

