"""Project pipelines: one per folder under pipelines/, `__default__` is the training chain."""

import re
from pathlib import Path

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


class UnknownPipelineError(ValueError):
    """`kedro run --pipelines X` names no pipeline folder of the project."""


def known_pipelines() -> list[str]:
    folder = Path(__file__).parent / "pipelines"
    return sorted(p.name for p in folder.iterdir() if (p / "pipeline.py").is_file())


def _found_pipelines() -> dict[str, Pipeline]:
    try:
        return find_pipelines(raise_errors=True)
    except ImportError as error:
        # Kedro imports only the folders `--pipelines` names: a name without one is a typo,
        # not a broken import (a broken import of an existing folder keeps its traceback)
        named = re.search(rf"'{__package__}\.pipelines\.([^'.]+)'", str(error))
        if named and named.group(1) not in known_pipelines():
            raise UnknownPipelineError(
                f"no pipeline {named.group(1)!r}: the project's pipelines are "
                f"{', '.join(known_pipelines())} and __default__ (the training chain, "
                "`kedro run` alone)") from None
        raise


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {name: as_block(name, pipeline)
                 for name, pipeline in _found_pipelines().items()}
    pipelines["__default__"] = sum(
        (pipelines[name] for name in TRAINING_CHAIN if name in pipelines), Pipeline([])
    )
    return pipelines
