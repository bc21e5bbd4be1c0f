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


def as_block(name: str, pipeline: Pipeline) -> Pipeline:
    """The pipeline's nodes under the namespace ``name`` (node ``name.<node>``), so kedro-viz
    draws each layer as one collapsible block. Dataset and parameter names stay as they are:
    every hand-off between layers is a catalog entry, and the in-layer ones are drawn inside the
    block anyway (kedro-viz places a dataset by which nodes produce and consume it)."""
    return Pipeline(pipeline, namespace=name, prefix_datasets_with_namespace=False)


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {name: as_block(name, pipeline)
                 for name, pipeline in find_pipelines(raise_errors=True).items()}
    pipelines["__default__"] = sum(
        (pipelines[name] for name in TRAINING_CHAIN if name in pipelines), Pipeline([])
    )
    return pipelines
