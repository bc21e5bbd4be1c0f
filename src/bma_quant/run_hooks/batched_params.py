"""kedro-mlflow's hook with each node's parameters logged in one batch, once per run.

kedro-mlflow 2.0 logs a node's parameters one `mlflow.log_param` call (one database transaction)
per flattened key, and again for every node that takes the same parameters: ~700 transactions,
about 3.5 s of a 140 s chain on SQLite, more against a remote server. This subclass logs the same
names and values (same flattening, sanitising and long-value strategy) with one `log_params`
batch per node and skips a key the run already holds with the same value. A key logged again with
another value still reaches MLflow, which refuses it as before. Under ThreadRunner, nodes taking
the same parameters start at once: the check and the batch are one step under a lock, or two
threads would both send a key and the second insert fail (UNIQUE constraint on params).

settings.py disables the plugin's own hook (DISABLE_HOOKS_FOR_PLUGINS) and registers this one.
"""

from __future__ import annotations

import threading
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from kedro_mlflow.framework.hooks.utils import _flatten_dict
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH


def is_parameter_input(name: str) -> bool:
    """Kedro's reserved names for parameter inputs."""
    return name.startswith("params:") or name == "parameters"


class BatchedParamsMlflowHook(MlflowHook):
    def __init__(self):
        super().__init__()
        self._logged: dict[tuple[str, str], str] = {}  # (run id, key) -> value as MLflow stores it
        self._logging = threading.Lock()

    @hook_impl
    def before_node_run(self, node, catalog, inputs: dict[str, Any], is_async: bool) -> None:
        # The parent re-activates the run for runners whose nodes run in other threads (MLflow's
        # run stack is per thread); it then sees no parameters. Where this thread already has the
        # run active, that is skipped: with `nested: true` it re-opened the run for every node
        # (three database calls) and pushed another copy of it on the run stack.
        active = mlflow.active_run()
        if self.run_id is None or active is None or active.info.run_id != self.run_id:
            others = {k: v for k, v in inputs.items() if not is_parameter_input(k)}
            super().before_node_run(node, catalog, others, is_async)
        if not self._is_mlflow_enabled:
            return
        params = {(k[7:] if k.startswith("params:") else k): v
                  for k, v in inputs.items() if is_parameter_input(k)}
        if self.flatten:
            params = _flatten_dict(d=params, recursive=self.recursive, sep=self.sep)
        params = {self.sanitize_param_name(k): v for k, v in params.items()}
        with self._logging:
            self._log_new(params)

    def _log_new(self, params: dict[str, Any]) -> None:
        new = {k: v for k, v in params.items()
               if self._logged.get((self.run_id, k)) != str(v)}
        short = {k: v for k, v in new.items() if len(str(v)) <= MAX_PARAM_VAL_LENGTH}
        if short:
            mlflow.log_params(short)
        for k, v in new.items():
            if k not in short:
                self._log_param(k, v)  # the configured long_params_strategy
            self._logged[(self.run_id, k)] = str(v)
