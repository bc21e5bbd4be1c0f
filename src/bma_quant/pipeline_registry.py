"""Project pipelines: one per folder under pipelines/, `__default__` is the training chain."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Data-flow order of the training chain; `inference` and `synthetic_data` run only when named.
TRAINING_CHAIN = (
    "data_processing",
    "feature_engineering",
    "base_models",
    "regime_models",
    "stacking",
    "evaluation",
)


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in TRAINING_CHAIN if name in pipelines), Pipeline([])
    )
    return pipelines
