"""The fitted regime-aware model as an MLflow pyfunc model.

The model predicts from a row's features AND its date's regime state, so its input is one row
per (date, ticker) with `date`, the features and the `regimes` table's columns for that date
(`state_regime`, the filtered probabilities `state_p_bull` / ..., the context columns the model
was trained with, each prefixed `state_`): `core.regimes.regime_learning.regime_model_frame` builds it. The whole
raw-panel chain (regime detection included) is the registered `BmaQuantChain`; this one serves
and documents the regime layer on its own.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from bma_quant.core.regimes.regime_learning import split_regime_model_frame


class RegimeModelPyfunc(mlflow.pyfunc.PythonModel):
    """`RegimeAwareModel.predict` on the frame of `regime_model_frame`."""

    def __init__(self, model) -> None:
        self.model = model

    # Typed input: MLflow's warning at class definition asks for type hints; the logged signature
    # checks the columns.
    def predict(self, context, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.Series:
        frame = pd.DataFrame(model_input).copy()
        frame["date"] = pd.to_datetime(frame["date"])
        rows, regimes = split_regime_model_frame(self.model, frame)
        return self.model.predict(rows, regimes)
