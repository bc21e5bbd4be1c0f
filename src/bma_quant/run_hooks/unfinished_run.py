"""A run the process leaves without Kedro's error hooks still gets them, at exit.

Kedro's session calls `on_pipeline_error` for an Exception only. A node, or a library it calls,
that raises SystemExit (`sys.exit()`, argparse's or click's exit) or another BaseException ends the
process with no hook told: the outputs stay staged until the next run cleans them up, the model
versions it registered stay registered until then, and MLflow's own exit handler ends the active
run FINISHED, so a half-run reads as a finished one.

At the process's exit, a run that neither began its after-run hooks nor failed through its error
hooks is failed through every `on_pipeline_error` hook, as a failing node's is: MLflow run FAILED,
staging discarded, registrations taken back, run_summary.failed.json naming the node that was
running; the process then exits with status 1, as a failed run does. atexit calls the last
registered handler first, so this one (registered when the run starts) runs before MLflow's. Signals are not this module's: they raise an Exception
(run_hooks/interrupts.py), and a forced end leaves by `os._exit`, past every atexit handler.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class RunEndedWithoutHooks(RuntimeError):  # noqa: N818 - reads as what happened to the run
    """The process ended while the run was going, by a BaseException Kedro's hooks do not see."""


class UnfinishedRunHooks:
    """Fails a run through the error hooks when the process ends before the run did."""

    def __init__(self) -> None:
        self._hook_manager = None  # the session's, from its context
        self._run_call: dict[str, Any] | None = None  # the run's hook arguments while it runs
        self._node: str | None = None  # the node whose own code is running

    @hook_impl
    def after_context_created(self, context) -> None:
        self._hook_manager = getattr(context, "_hook_manager", None)

    # a wrapper: armed once every other before-run hook has passed (a run the pre-flight refuses
    # never started, and Kedro calls no error hook for it)
    @hook_impl(wrapper=True)
    def before_pipeline_run(self, run_params, pipeline, catalog):
        result = yield
        self._run_call = {"run_params": run_params, "pipeline": pipeline, "catalog": catalog}
        self._node = None
        atexit.unregister(self.fail_unfinished_run)  # one handler however many runs a process has
        atexit.register(self.fail_unfinished_run)
        return result

    @hook_impl
    def before_node_run(self, node) -> None:
        self._node = node.name

    @hook_impl
    def after_node_run(self) -> None:
        self._node = None

    @hook_impl
    def on_node_error(self) -> None:
        self._node = None

    # tryfirst: once the after-run hooks (the promotion) or the error hooks have begun, the run's
    # end is theirs; an error inside them is theirs to report
    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        self._run_ended()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        self._run_ended()

    def _run_ended(self) -> None:
        self._run_call = None
        atexit.unregister(self.fail_unfinished_run)

    def fail_unfinished_run(self, exit_process: bool = True) -> None:
        """The atexit handler: a no-op unless the run is still going. Then the error hooks, and
        the process ends with status 1, as a failed run's does: `sys.exit()` or `sys.exit(0)` in
        a node would otherwise tell a scheduler the run succeeded (the status SystemExit carried
        cannot be read at exit)."""
        call, self._run_call = self._run_call, None
        if call is None or self._hook_manager is None:
            return
        where = f"in node '{self._node}'" if self._node else "between nodes"
        error = RunEndedWithoutHooks(
            f"The process ended {where} before the run finished (SystemExit or another "
            "BaseException, which Kedro does not pass to its error hooks): the run fails and "
            "nothing it wrote is kept.")
        logger.error("%s", error)
        try:
            self._hook_manager.hook.on_pipeline_error(error=error, **call)
        except BaseException as exc:  # noqa: BLE001 - at exit: report, never raise
            logger.error("The failed run's clean-up did not finish (%s: %s): the next run cleans "
                         "up its staging folder and registrations.", type(exc).__name__, exc)
        if exit_process:
            _exit_failed()


def _exit_failed() -> None:
    """End the process with status 1 now, its output flushed (os._exit skips the flushes and the
    later atexit handlers: MLflow's has nothing left to end, the run ended FAILED above)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)
