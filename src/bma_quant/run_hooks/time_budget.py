"""A whole-run time budget (`run.timeout_seconds`, seed §7.2): a stop, never a truncation.

When the budget has passed, the run stops at the next node boundary with an error naming the
nodes that finished; like any failed run it promotes nothing (staging), writes
run_summary.failed.json with the finished nodes' timings, and its MLflow run is FAILED and
tagged `stopped_by: run.timeout_seconds`. Results never depend on how far a slow machine got:
either every node ran, or the run failed.
"""

from __future__ import annotations

import logging
import time

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class RunTimeBudgetExceeded(RuntimeError):
    """The run passed `run.timeout_seconds` and was stopped between nodes."""


class TimeBudgetHooks:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self.budget: float | None = None
        self._started = 0.0
        self.finished: list[str] = []

    @hook_impl
    def after_context_created(self, context) -> None:
        budget = (context.params.get("run") or {}).get("timeout_seconds")
        self.budget = float(budget) if budget is not None else None

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._started = self._clock()
        self.finished = []

    @hook_impl
    def after_node_run(self, node) -> None:
        self.finished.append(node.name)

    @hook_impl
    def before_node_run(self, node) -> None:
        if self.budget is None:
            return
        elapsed = self._clock() - self._started
        if elapsed > self.budget:
            raise RunTimeBudgetExceeded(
                f"run.timeout_seconds = {self.budget:g} passed ({elapsed:.0f} s) before node "
                f"'{node.name}'; stopped between nodes after {len(self.finished)} finished node(s)"
                f" ({', '.join(self.finished[-5:]) or 'none'}{', ...' if len(self.finished) > 5 else ''}). "
                "Nothing was promoted: earlier outputs are unchanged. Raise run.timeout_seconds "
                "(null = no budget) or run fewer layers with --pipelines.")

    @hook_impl(tryfirst=True)  # before kedro-mlflow's on_pipeline_error ends the MLflow run
    def on_pipeline_error(self, error: Exception) -> None:
        if not isinstance(error, RunTimeBudgetExceeded):
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        try:
            mlflow.set_tags({"stopped_by": "run.timeout_seconds",
                             "finished_nodes": str(len(self.finished))})
        except Exception as exc:  # bookkeeping must not hide the stop
            logger.warning("could not tag the MLflow run: %s", exc)
