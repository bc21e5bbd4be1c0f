"""Kedro project settings."""

import os
import warnings
from pathlib import Path

from bma_quant import logging_filters
from bma_quant.config_loader import ProjectConfigLoader

logging_filters.import_without_untyped_predict_notice()  # before the hooks import kedro-mlflow
from bma_quant.hooks import RunHealthHooks
from bma_quant.run_hooks import user_errors
from bma_quant.run_hooks.batched_params import BatchedParamsMlflowHook
from bma_quant.run_hooks.busy_machine import BusyMachineHooks
from bma_quant.run_hooks.console_repeats import ConsoleRepeatsHooks
from bma_quant.run_hooks.data_builds import DataBuildHooks
from bma_quant.run_hooks.interrupts import InterruptHooks
from bma_quant.run_hooks.layer_lineage import LayerLineageHooks
from bma_quant.run_hooks.mlflow_connection import MlflowConnectionHooks
from bma_quant.run_hooks.oof_honesty import OofHonestyHooks
from bma_quant.run_hooks.preflight import PreflightHooks
from bma_quant.run_hooks.run_tags import RunTagsHooks
from bma_quant.run_hooks.staging import ProjectClaimHooks, StagingGuardHooks, StagingHooks
from bma_quant.run_hooks.time_budget import TimeBudgetHooks
from bma_quant.run_hooks.unfinished_run import UnfinishedRunHooks

# A run completes or changes nothing: outputs are staged and promoted only on success (staging),
# bad parameters or data are refused before anything is written (pre-flight), SIGINT / SIGTERM
# fail the run cleanly and mark its MLflow run KILLED (interrupts); an unreachable tracking server
# fails fast (mlflow_connection); a run past run.timeout_seconds stops between nodes (time_budget);
# a process that ends mid-run by SystemExit still fails the run through the error hooks
# (unfinished_run).
_STAGING = StagingHooks()
_RUN_TAGS = RunTagsHooks()  # the run's MLflow tags and name; the health summary reports them
# kedro-mlflow's hook is replaced by a subclass that logs each node's parameters in one batch
# (run_hooks/batched_params.py). Registered last, it is called first, where the plugin's own hook
# (loaded from its entry point after these) was.
# Pluggy calls the last registered first: the parameter pre-flight, the data-build check, then
# the parameters the stored datasets were made with (run_hooks/layer_lineage.py).
# The project claim (run lock, a killed run's clean-up) is tryfirst like the stored-output checks
# and registered after them: called before them, after the pre-flight.
HOOKS = (LayerLineageHooks(staging=_STAGING), DataBuildHooks(staging=_STAGING),
         ProjectClaimHooks(_STAGING), PreflightHooks(),
         RunHealthHooks(staging=_STAGING, run_tags=_RUN_TAGS), _RUN_TAGS,
         _STAGING, StagingGuardHooks(_STAGING), InterruptHooks(staging=_STAGING),
         UnfinishedRunHooks(),
         MlflowConnectionHooks(),
         TimeBudgetHooks(), BusyMachineHooks(), OofHonestyHooks(), ConsoleRepeatsHooks(),
         BatchedParamsMlflowHook())
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",)  # the distribution name as installed

# A refused input (bad data or parameters, too little history, ...) ends `kedro run` with its
# message instead of a framework traceback; bugs keep theirs (run_hooks/user_errors.py).
user_errors.install()
# MLflow's notices about the model formats the project chose on purpose go to info.log only.
logging_filters.install()
logging_filters.route_optuna_records()
# Kedro and kedro-mlflow register their resolvers with OmegaConf's older call: five deprecation
# warnings per run that no user can act on.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated",
                        category=UserWarning)



def project_root(start: Path | None = None) -> Path:
    """The Kedro project folder at or above ``start`` (default: the working directory): the
    first with a pyproject.toml declaring [tool.kedro], as Kedro itself finds it (a notebook under
    notebooks/ included); the working directory when there is none."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.kedro]" in pyproject.read_text(encoding="utf-8"):
            return folder
    return start


def sqlite_at_project_root(relative: str) -> str:
    """``sqlite:///<project root>/<relative>``: one MLflow store wherever Kedro starts from."""
    return f"sqlite:///{(project_root() / relative).as_posix()}"


CONFIG_LOADER_CLASS = ProjectConfigLoader  # YAML errors said with the file and line
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # `${env_or:NAME,default}`: lets MLFLOW_TRACKING_URI (tests, a team server) override mlflow.yml.
    # `${sqlite_at_project_root:mlflow.db}`: the SQLite store at the project root, also when Kedro
    # is started from a sub-folder (a notebook in notebooks/ must not create notebooks/mlflow.db).
    "custom_resolvers": {"env_or": lambda name, default=None: os.environ.get(name, default),
                         "sqlite_at_project_root": sqlite_at_project_root},
    # catalog_<pipeline>.yml and parameters_<pipeline>.yml match the default patterns.
    # Deep-merge parameters of an env (e.g. conf/smoke) over base, so an env overrides leaves only.
    "merge_strategy": {"parameters": "soft"},
}
