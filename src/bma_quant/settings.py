"""Kedro project settings."""

import os

from kedro.config import OmegaConfigLoader

from bma_quant.hooks import RunHealthHooks
from bma_quant.run_hooks.interrupts import InterruptHooks
from bma_quant.run_hooks.mlflow_connection import MlflowConnectionHooks
from bma_quant.run_hooks.preflight import PreflightHooks
from bma_quant.run_hooks.staging import StagingHooks
from bma_quant.run_hooks.time_budget import TimeBudgetHooks

# A run completes or changes nothing: outputs are staged and promoted only on success (staging),
# bad parameters or data are refused before anything is written (pre-flight), SIGINT / SIGTERM
# fail the run cleanly and mark its MLflow run KILLED (interrupts); an unreachable tracking server
# fails fast (mlflow_connection); a run past run.timeout_seconds stops between nodes (time_budget).
_STAGING = StagingHooks()
HOOKS = (PreflightHooks(), RunHealthHooks(staging=_STAGING), _STAGING, InterruptHooks(),
         MlflowConnectionHooks(), TimeBudgetHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `${env_or:NAME,default}`: lets MLFLOW_TRACKING_URI (tests, a team server) override mlflow.yml.
    "custom_resolvers": {"env_or": lambda name, default=None: os.environ.get(name, default)},
    # catalog_<pipeline>.yml and parameters_<pipeline>.yml match the default patterns.
    # Deep-merge parameters of an env (e.g. conf/smoke) over base, so an env overrides leaves only.
    "merge_strategy": {"parameters": "soft"},
}
