"""Shapes plain node results into what kedro-mlflow datasets expect."""

from __future__ import annotations

import math


def as_mlflow_metrics(values: dict[str, float], step: int = 0) -> dict[str, dict[str, float]]:
    """{name: value} -> {name: {"value": v, "step": s}} for MlflowMetricsHistoryDataset.

    Non-finite values are left out: MLflow rejects NaN in some stores and a missing metric is
    clearer than a fake number."""
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        value = float(value)
        if math.isfinite(value):
            out[name] = {"value": value, "step": step}
    return out
