"""MLflow logging of the fitted regime-aware model as a pyfunc model with a signature.

kedro-mlflow's `MlflowModelTrackingDataset` (flavour `mlflow.pyfunc`, `python_model` workflow) logs
what the node returns with static `save_args`; a signature needs the data. The node returns a
`LoggedRegimeModel` (the model and example rows built by `core.regimes.regime_learning.regime_model_frame`);
this dataset wraps the model in `RegimeModelPyfunc`, infers the signature from the example and its
predictions, and pins the requirements (MLflow's inference would load the model in a subprocess).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from kedro_mlflow.io.models import MlflowModelTrackingDataset

from bma_quant.serving.requirements import chain_pip_requirements


@dataclass
class LoggedRegimeModel:
    """What the regime layer hands to the catalog for MLflow: the model and example input rows
    (`core.regimes.regime_learning.regime_model_frame`)."""

    model: Any
    input_example: pd.DataFrame


class RegimeModelDataset(MlflowModelTrackingDataset):
    """MlflowModelTrackingDataset of a LoggedRegimeModel: pyfunc wrapper, inferred signature."""

    def _save(self, logged: LoggedRegimeModel) -> None:
        from bma_quant.serving.regime_pyfunc import RegimeModelPyfunc  # imports mlflow

        wrapper = RegimeModelPyfunc(logged.model)
        self._save_args.setdefault("pip_requirements", chain_pip_requirements())
        if self._logging_activated:
            from mlflow.models import infer_signature

            example = logged.input_example
            self._save_args["signature"] = infer_signature(
                example, wrapper.predict(None, example).rename("prediction"))
        # no input example on purpose (MLflow would load the model again to check it): its
        # notice about that, and the pickle notices, go to info.log as the chain's do
        from bma_quant.serving.registry import mlflow_notices_to_info_log

        with mlflow_notices_to_info_log():
            super()._save(wrapper)
