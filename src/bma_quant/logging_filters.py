"""Console filters for `kedro run` (conf/logging.yml): info.log keeps every record.

MLflow warns at every model it logs that pickle / cloudpickle files run code when loaded, and
that a Python object passed as `python_model` is cloudpickled. Both are the project's deliberate
choices (skops refuses the custom estimators; the serving chain is a Python object, README
"MLflow"), so the console would repeat four warnings per run that no user can act on, among the
ones that matter.
"""

from __future__ import annotations

import logging

DELIBERATE_CHOICES = (
    "in the pickle or cloudpickle format requires exercising caution",
    "Passing a Python object as `python_model` causes it to be serialized using CloudPickle",
)


class DeliberateChoiceNotices(logging.Filter):
    """Drops MLflow's serialisation notices (DELIBERATE_CHOICES) from the handler it is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("mlflow"):
            return True
        message = record.getMessage()
        return not any(notice in message for notice in DELIBERATE_CHOICES)


CONSOLE_HANDLER = "console"  # the console handler's name in conf/logging.yml


def install(handler_name: str = CONSOLE_HANDLER) -> None:
    """Put DeliberateChoiceNotices on the root logger's handler of that name (Kedro's logging
    configuration refuses filter classes outside `logging` unless an environment variable
    allows them, so it is attached here, once the configuration is applied)."""
    for handler in logging.getLogger().handlers:
        if handler.get_name() == handler_name and not any(
                isinstance(f, DeliberateChoiceNotices) for f in handler.filters):
            handler.addFilter(DeliberateChoiceNotices())
