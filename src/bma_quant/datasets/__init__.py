"""Project datasets that kedro-mlflow does not provide."""

from bma_quant.datasets.mlflow_metrics import BatchedMetricsHistoryDataset
from bma_quant.datasets.mlflow_params import MlflowParamsDataset

__all__ = ["BatchedMetricsHistoryDataset", "MlflowParamsDataset"]
