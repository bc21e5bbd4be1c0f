"""Console filters for `kedro run` (conf/logging.yml): info.log keeps every record.

MLflow warns at every model it logs that pickle / cloudpickle files run code when loaded, and
that a Python object passed as `python_model` is cloudpickled. Both are the project's deliberate
choices (skops refuses the custom estimators; the serving chain is a Python object, README
"MLflow"), so the console would repeat four warnings per run that no user can act on, among the
ones that matter. After a failed run Kedro suggests resuming with `--from-nodes`, but a failed
run's outputs are discarded (run_hooks/staging.py): resuming would start from older stored
outputs, not from this run's. A refused input or a Ctrl-C is said once, at the end of the
run, not also in Kedro's node-failure line. A warning the console already showed in the run is
not shown again (info.log keeps it).
"""

from __future__ import annotations

import logging
import sys
import weakref

# (logger name prefix, text in the message): shown in info.log only
INFO_LOG_ONLY = (
    ("mlflow", "in the pickle or cloudpickle format requires exercising caution"),
    ("mlflow", "Passing a Python object as `python_model` causes it to be serialized using "
               "CloudPickle"),
    ("kedro.runner", "You can resume the pipeline run from the nearest nodes"),
    ("kedro.runner", "No nodes ran. Repeat the previous command to attempt a new run"),
    # a new mlflow.db is set up (MLflow's own stderr handler: these lines reach no log file)
    ("mlflow.store.db.utils", "database tables"),
)


def _node_failure_on_user_error(record: logging.LogRecord) -> bool:
    """Kedro's "Node ... failed with error" line about a refused input or a Ctrl-C: the run's
    last lines say it once (run_hooks/user_errors.py). Kedro logs it inside its `except`, so
    the exception is the one being handled in this thread."""
    if not (record.name.startswith("kedro.pipeline.node") and record.levelno >= logging.ERROR
            and "failed with error" in str(record.msg)):
        return False
    error = sys.exc_info()[1]
    if error is None:
        return False
    from bma_quant.run_hooks.user_errors import is_user_error

    return is_user_error(error)


class InfoLogOnlyNotices(logging.Filter):
    """Drops the notices of INFO_LOG_ONLY, and Kedro's node-failure line about a user error,
    from the handler it is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _node_failure_on_user_error(record):
            return False
        notices = [text for prefix, text in INFO_LOG_ONLY if record.name.startswith(prefix)]
        if not notices:
            return True
        message = record.getMessage()
        return not any(text in message for text in notices)


class RepeatedWarnings(logging.Filter):
    """Drops a warning whose text (and logger) the console already showed in this run: a check
    that runs once per fold, per prefix-audit cut or per recomputation (the factor portfolios'
    cross-section floor, a detector's fallback) says the same thing each time. info.log keeps
    every record; `new_run` forgets what was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        try:
            key = (record.name, record.getMessage())
        except Exception:  # a bad format: the handler says so, as it would without this filter
            return True
        if key in self.shown:
            return False
        self.shown.add(key)
        return True


_REPEATS: weakref.WeakSet[RepeatedWarnings] = weakref.WeakSet()  # one per console handler


def new_run() -> None:
    """A new run: its warnings are shown again, even those the last run in this process gave."""
    for repeats in _REPEATS:
        repeats.shown.clear()


class WithoutInterruptionTracebacks(logging.Formatter):
    """The console's formatter, without the traceback of a record about a run stopped by Ctrl-C /
    SIGTERM (an Optuna trial "failed ... RunInterrupted", the runner's node failure): an
    interruption is no bug, its message says what happened. The record itself is left whole, so
    info.log keeps the traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        from bma_quant.run_hooks.interrupts import interruption_in

        if not record.exc_info or interruption_in(record.exc_info[1]) is None:
            return self.inner.format(record)
        kept = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = kept


CONSOLE_HANDLER = "console"  # the console handler's name in conf/logging.yml


def install(handler_name: str = CONSOLE_HANDLER) -> None:
    """Put InfoLogOnlyNotices on the root logger's handler of that name (Kedro's logging
    configuration refuses filter classes outside `logging` unless an environment variable
    allows them, so it is attached here, once the configuration is applied)."""
    for handler in logging.getLogger().handlers:
        if handler.get_name() != handler_name:
            continue
        if not any(isinstance(f, InfoLogOnlyNotices) for f in handler.filters):
            handler.addFilter(InfoLogOnlyNotices())
        if not any(isinstance(f, RepeatedWarnings) for f in handler.filters):
            repeats = RepeatedWarnings()  # its own: a record shown on one console is new to another
            _REPEATS.add(repeats)
            handler.addFilter(repeats)
        if not isinstance(handler.formatter, WithoutInterruptionTracebacks):
            handler.setFormatter(WithoutInterruptionTracebacks(handler.formatter))
    import mlflow  # noqa: F401  (configures MLflow's own stderr handler, filtered here too)

    for handler in logging.getLogger("mlflow").handlers:
        if not any(isinstance(f, InfoLogOnlyNotices) for f in handler.filters):
            handler.addFilter(InfoLogOnlyNotices())


def route_optuna_records() -> None:
    """Optuna prints a line per trial ("[I ...] Trial 3 finished with value ...") and per new
    study through its own stderr handler; its records go through the project's logging instead:
    info.log keeps them, the console shows its warnings. Called again after each study (cheap,
    idempotent): something that restores Optuna's handler, as Optuna's own progress bar does,
    does not bring the lines back."""
    import optuna.logging

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


# MLflow's notice at the definition of a PythonModel whose `predict` has no type hints
UNTYPED_PREDICT_NOTICE = "Add type hints to the `predict` method"


def import_without_untyped_predict_notice(module: str = "kedro_mlflow.mlflow") -> None:
    """Import ``module`` (by default kedro-mlflow's model module) without MLflow's
    untyped-`predict` notice.

    kedro-mlflow defines KedroPipelineModel (not used by this project) with an untyped `predict`,
    and MLflow warns at that class's definition: a yellow warning at the top of every run about
    a class no user can change. A warnings filter cannot drop it (MLflow's wrapper puts its own
    "once" filter first), so the notice is left out where warnings are shown, during this import
    only; any other warning passes."""
    import importlib
    import warnings

    show = warnings.showwarning

    def show_all_but_notice(message, *args, **kwargs):
        if UNTYPED_PREDICT_NOTICE not in str(message):
            show(message, *args, **kwargs)

    warnings.showwarning = show_all_but_notice
    try:
        importlib.import_module(module)
    finally:
        warnings.showwarning = show
