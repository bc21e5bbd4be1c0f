"""SIGINT and SIGTERM end a run like a failure (nothing promoted), and its MLflow run is KILLED.

Python's default SIGINT raises KeyboardInterrupt, which Kedro's session does not pass to the
`on_pipeline_error` hooks (it catches Exception only): outputs were not cleaned up and MLflow's exit
handler marked the run FINISHED. SIGTERM killed the process outright and left the run RUNNING.
During a run both signals raise `RunInterrupted` (an Exception), so every error hook runs; a node
that swallows it (a learner guard records failures and goes on) is stopped at the next node
boundary. kedro-mlflow marks an errored run FAILED; this hook then marks an interrupted one KILLED.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from kedro.framework.hooks import hook_impl

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

    def __init__(self) -> None:
        self.interrupted: str | None = None
        self._previous: dict[int, Any] = {}
        self._mlflow_run_id: str | None = None

    def _handle(self, signum: int, frame) -> None:
        self.interrupted = signal.Signals(signum).name
        raise RunInterrupted(f"run interrupted by {self.interrupted}")

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @hook_impl
    def before_pipeline_run(self) -> None:
        import mlflow

        self.interrupted = None
        run = mlflow.active_run()  # started by kedro-mlflow's before_pipeline_run (called first)
        self._mlflow_run_id = run.info.run_id if run is not None else None
        self._install()

    def _raise_if_interrupted(self) -> None:
        if self.interrupted:
            raise RunInterrupted(f"run interrupted by {self.interrupted}")

    @hook_impl
    def before_node_run(self) -> None:
        self._raise_if_interrupted()

    @hook_impl
    def after_node_run(self) -> None:
        self._raise_if_interrupted()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._restore()

    # trylast: after kedro-mlflow's on_pipeline_error has ended the run as FAILED
    @hook_impl(trylast=True)
    def on_pipeline_error(self, error: Exception) -> None:
        self._restore()
        if interruption_in(error) is not None:
            self.interrupted = self.interrupted or "signal"
        if not self.interrupted or not self._mlflow_run_id:
            return
        try:
            from mlflow.tracking import MlflowClient

            MlflowClient().set_terminated(self._mlflow_run_id, "KILLED")
            logger.warning("MLflow run %s marked KILLED (%s)", self._mlflow_run_id, self.interrupted)
        except Exception as exc:  # status bookkeeping must not hide the interruption
            logger.warning("could not mark MLflow run %s KILLED: %s", self._mlflow_run_id, exc)
