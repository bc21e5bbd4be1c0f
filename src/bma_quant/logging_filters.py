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


class InterruptedTrialTraceback(logging.Filter):
    """An Optuna trial stopped by Ctrl-C / SIGTERM logs 'Trial N failed ... RunInterrupted' with
    the traceback of wherever the signal landed: an interruption is no bug, the message says
    what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bma_quant.run_hooks.interrupts import interruption_in

        if record.exc_info and interruption_in(record.exc_info[1]) is not None:
            record.exc_info, record.exc_text = None, None
        return True


CONSOLE_HANDLER = "console"  # the console handler's name in conf/logging.yml


def install(handler_name: str = CONSOLE_HANDLER) -> None:
    """Put InfoLogOnlyNotices on the root logger's handler of that name (Kedro's logging
    configuration refuses filter classes outside `logging` unless an environment variable
    allows them, so it is attached here, once the configuration is applied)."""
    for handler in logging.getLogger().handlers:
        if handler.get_name() == handler_name and not any(
                isinstance(f, InfoLogOnlyNotices) for f in handler.filters):
            handler.addFilter(InfoLogOnlyNotices())


def route_optuna_records() -> None:
    """Optuna writes every trial ("[I ...] Trial 3 finished with value ...") and every new study
    to stderr through its own handler; its records go through the project's logging instead:
    info.log keeps them, the console shows its warnings, and the progress bar per study stays."""
    import optuna.logging

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna_logger = logging.getLogger("optuna")
    if not any(isinstance(f, InterruptedTrialTraceback) for f in optuna_logger.filters):
        optuna_logger.addFilter(InterruptedTrialTraceback())
