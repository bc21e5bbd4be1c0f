"""Kedro project settings."""

import os

from kedro.config import OmegaConfigLoader

from bma_quant.hooks import RunHealthHooks

HOOKS = (RunHealthHooks(),)

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
