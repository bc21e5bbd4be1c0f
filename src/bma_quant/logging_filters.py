"""Console filters for `kedro run` (conf/logging.yml): info.log keeps every record.

MLflow warns at every model it logs that pickle / cloudpickle files run code when loaded, and
that a Python object passed as `python_model` is cloudpickled. Both are the project's deliberate
choices (skops refuses the custom estimators; the serving chain is a Python object, README
"MLflow"), so the console would repeat four warnings per run that no user can act on, among the
ones that matter. After a failed run Kedro suggests resuming with `--from-nodes`, but a failed
run's outputs are discarded (run_hooks/staging.py): resuming would start from older stored
outputs, not from this run's.
"""

from __future__ import annotations

import logging

# (logger name prefix, text in the message): shown in info.log only
INFO_LOG_ONLY = (
    ("mlflow", "in the pickle or cloudpickle format requires exercising caution"),
    ("mlflow", "Passing a Python object as `python_model` causes it to be serialized using "
               "CloudPickle"),
    ("kedro.runner", "You can resume the pipeline run from the nearest nodes"),
)


class InfoLogOnlyNotices(logging.Filter):
    """Drops the notices of INFO_LOG_ONLY from the handler it is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        notices = [text for prefix, text in INFO_LOG_ONLY if record.name.startswith(prefix)]
        if not notices:
            return True
        message = record.getMessage()
        return not any(text in message for text in notices)


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
        if not isinstance(handler.formatter, WithoutInterruptionTracebacks):
            handler.setFormatter(WithoutInterruptionTracebacks(handler.formatter))


def route_optuna_records() -> None:
    """Optuna prints a line per trial ("[I ...] Trial 3 finished with value ...") and per new
    study through its own stderr handler; its records go through the project's logging instead:
    info.log keeps them, the console shows its warnings. Called again after each study (cheap,
    idempotent): something that restores Optuna's handler, as Optuna's own progress bar does,
    does not bring the lines back."""
    import optuna.logging

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
