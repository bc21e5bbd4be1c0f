"""Each run's console shows its warnings once (logging_filters.RepeatedWarnings): what an
earlier run in the same process (a notebook, `kedro ipython`) showed is shown again."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl

from bma_quant import logging_filters


class ConsoleRepeatsHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        logging_filters.new_run()
