"""SIGINT and SIGTERM end a run like a failure (nothing promoted), and its MLflow run is KILLED.

Python's default SIGINT raises KeyboardInterrupt, which Kedro's session does not pass to the
`on_pipeline_error` hooks (it catches Exception only): outputs were not cleaned up and MLflow's exit
handler marked the run FINISHED. SIGTERM killed the process outright and left the run RUNNING.
During a run both signals raise `RunInterrupted` (an Exception), so every error hook runs:
- inside a node's own code at once (a long fit stops), in the main thread;
- anywhere else (hooks, dataset loads and saves, the runner) at the next node boundary: an
  exception at an arbitrary bytecode of library code can leave a lock it held taken for good
  (logging's, a threading.Condition's, a connection pool's), and the clean-up then hangs on it.
A node that swallows it (a learner guard records failures and goes on) is stopped at the next node
boundary too. kedro-mlflow marks an errored run FAILED; this hook then marks an interrupted one
KILLED. Should the run still not end within `run.interrupt_grace_seconds` of the signal, or should a
second signal come, it is ended by force with a killed run's clean-up (run_hooks/forced_exit.py).
A signal that comes once every node has succeeded and the after-run hooks (the promotion) have
begun lets the run finish.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from bma_quant.run_hooks.forced_exit import ForcedExit

logger = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(Exception):  # noqa: N818 - reads as what happened to the run
    """The run was stopped by a signal (Ctrl-C, `kill`, a scheduler's SIGTERM)."""


def interruption_in(error: BaseException | None) -> RunInterrupted | None:
    """The RunInterrupted behind an error: a signal that lands inside a dataset's load or save
    reaches the hooks as the DatasetError Kedro raises from it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, RunInterrupted):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class InterruptHooks:
    """Turns SIGINT / SIGTERM into a clean run failure and marks the MLflow run KILLED."""

    def __init__(self, staging=None) -> None:
        self.interrupted: str | None = None
        self._previous: dict[int, Any] = {}
        self._mlflow_run_id: str | None = None
        self._staging = staging  # StagingHooks: its folder is handed over if the run is forced
        self._in_node = False  # the main thread is running a node's own code
        self._finishing = False  # every node succeeded: a signal no longer stops the run
        self._grace_seconds: float | None = None  # run.interrupt_grace_seconds
        self._project_path = Path.cwd()
        self.forced_exit: ForcedExit | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project_path = Path(context.project_path)
        self._grace_seconds = (context.params.get("run") or {}).get("interrupt_grace_seconds")

    def _handle(self, signum: int, frame) -> None:
        first = self.interrupted is None
        self.interrupted = signal.Signals(signum).name
        if self._finishing:
            return  # every node succeeded and the promotion is under way: the run finishes
        if self.forced_exit is not None:
            self.forced_exit.arm(signum, at_once=not first)
        if first and self._in_node:
            raise RunInterrupted(f"run interrupted by {self.interrupted}")

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._restore()  # a run that ended without its hooks (a BaseException) left them set
        self.forced_exit = ForcedExit(self._grace_seconds, self._project_path,
                                      self._hand_over, lambda: self._mlflow_run_id)
        self.forced_exit.start()
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _hand_over(self) -> Path | None:
        current = self._staging.current if self._staging is not None else None
        return current.hand_over(self.interrupted or "signal") if current is not None else None

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self.forced_exit is not None:
            self.forced_exit.disarm()  # waits, should the forced end have started
            self.forced_exit = None

    # a wrapper: the handlers are installed before every other before_pipeline_run hook and
    # taken back if one of them fails (Kedro then calls no other hook of the run)
    @hook_impl(wrapper=True)
    def before_pipeline_run(self):
        import mlflow

        self.interrupted = None
        self._in_node = self._finishing = False
        self._install()
        try:
            result = yield
        except BaseException:
            self._restore()
            raise
        run = mlflow.active_run()  # started by kedro-mlflow's before_pipeline_run
        self._mlflow_run_id = run.info.run_id if run is not None else None
        return result

    def _raise_if_interrupted(self) -> None:
        if self.interrupted:
            raise RunInterrupted(f"run interrupted by {self.interrupted}")

    @staticmethod
    def _in_main_thread() -> bool:
        # under ThreadRunner nodes run in worker threads, and the main thread is in the runner
        return threading.current_thread() is threading.main_thread()

    # trylast / tryfirst: the node's own code lies between the last before_node_run hook and the
    # first after_node_run (or on_node_error) hook
    @hook_impl(trylast=True)
    def before_node_run(self) -> None:
        self._in_node = self._in_main_thread()  # first: a signal in between is raised, not lost
        self._raise_if_interrupted()

    @hook_impl(tryfirst=True)
    def after_node_run(self) -> None:
        self._in_node = False
        self._raise_if_interrupted()

    @hook_impl(tryfirst=True)
    def on_node_error(self) -> None:
        self._in_node = False

    # tryfirst: a signal between the last node's boundary and the promotion fails the run (the
    # staging guard discards its folder); past this point the run finishes
    @hook_impl(tryfirst=True, specname="after_pipeline_run")
    def stop_before_promotion(self) -> None:
        self._in_node = False
        if self.interrupted:
            self._end_mlflow_run_killed()
            raise RunInterrupted(f"run interrupted by {self.interrupted}")
        self._finishing = True
        if self.forced_exit is not None:
            self.forced_exit.disarm()

    # a wrapper: the handlers are taken back after every after_pipeline_run hook, the promotion
    # included (a SIGTERM with Python's default handler would kill the process mid-way)
    @hook_impl(wrapper=True)
    def after_pipeline_run(self):
        try:
            return (yield)
        finally:
            self._restore()
            self._finishing = False

    # a wrapper: what follows the yield runs after every on_pipeline_error hook, including
    # kedro-mlflow's (which ends the run FAILED) and the staging clean-up
    @hook_impl(wrapper=True)
    def on_pipeline_error(self, error: Exception):
        self._in_node = False
        try:
            return (yield)
        finally:
            if interruption_in(error) is not None:
                self.interrupted = self.interrupted or "signal"
            if self.interrupted and self._mlflow_run_id:
                self._mark_killed()
            self._restore()

    def _end_mlflow_run_killed(self) -> None:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run("KILLED")  # else MLflow's exit handler ends it FINISHED
        self._mark_killed()

    def _mark_killed(self) -> None:
        if not self._mlflow_run_id:
            return
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient().set_terminated(self._mlflow_run_id, "KILLED")
            logger.warning("MLflow run %s marked KILLED (%s)", self._mlflow_run_id, self.interrupted)
        except Exception as exc:  # status bookkeeping must not hide the interruption
            logger.warning("could not mark MLflow run %s KILLED: %s", self._mlflow_run_id, exc)
