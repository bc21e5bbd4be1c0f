"""The MLflow pyfunc model: one artifact, the pickled ``PredictionChain``.

Input: a pandas DataFrame, the long raw panel slice (``date, ticker, close`` [, ``open, high, low,
volume, sector``, user factors, ``market_level``]) with ``date`` as strings, read like a file's
dates (``YYYY-MM-DD``, day-first or other formats, UTC offsets; a frame with datetime columns:
``to_model_input(frame)`` writes them as ISO strings) and at least the chain's ``warmup_days``
trading days of history before the first date to score (core.features.warmup.chain_warmup_days:
the longest feature, lookback or eligibility window plus the registry's extra days; 812 on the
shipped sample, written to data/08_reporting/model_registration.json). Output: ``date, ticker,
prediction`` for every date after that warm-up, or only for the slice's last date with
``params={"last_date_only": True}``. A request the chain
cannot score (too little history, no training ticker, a malformed panel, a scored date without
its ``market_level`` after the stored index) raises an
``MlflowException`` with ``INVALID_PARAMETER_VALUE``: `mlflow models serve` answers 400 with the
message.
"""

from __future__ import annotations

import pickle
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from bma_quant.core.data.schema import DataValidationError
from bma_quant.serving.chain import ChainInputError

CHAIN_ARTIFACT = "chain"


def to_model_input(raw: pd.DataFrame) -> pd.DataFrame:
    """A raw panel slice in the form the signature declares: ISO date strings, str tickers,
    numbers as float64 (MLflow refuses an int64 column where the signature says double, such
    as a volume read as integers)."""
    out = raw.copy()
    out["date"] = pd.to_datetime(out["date"]).dt.strftime("%Y-%m-%d")
    out["ticker"] = out["ticker"].astype(str)
    for column in out.columns:
        if column not in ("date", "ticker") and pd.api.types.is_numeric_dtype(out[column]) \
                and not pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].astype("float64")
    return out


class BmaQuantChain(mlflow.pyfunc.PythonModel):
    """Cleaning, features, base models, regime models and ensemble weights in one model."""

    def load_context(self, context) -> None:
        with open(context.artifacts[CHAIN_ARTIFACT], "rb") as handle:
            self.chain = pickle.load(handle)

    # Typed input: MLflow's warning at class definition asks for type hints; a DataFrame hint
    # adds no validation of its own (the logged signature checks the columns).
    def predict(self, context, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input).copy()
        try:  # dates are parsed by the chain's own validation, as a file's are
            out = self.chain.predict(frame,
                                     last_date_only=bool((params or {}).get("last_date_only")))
        except (ChainInputError, DataValidationError) as error:  # the request's fault
            raise MlflowException(f"cannot score this panel: {error}",
                                  error_code=INVALID_PARAMETER_VALUE) from error
        return out
