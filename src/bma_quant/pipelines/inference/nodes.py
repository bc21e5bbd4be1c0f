"""inference nodes: read the latest panel, apply the chain, rank the last date's predictions."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from bma_quant.core import panel as panel_lib
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics
from bma_quant.serving.chain import MARKET_LEVEL

logger = logging.getLogger(__name__)


def load_latest_panel(data: dict, inference: dict) -> pd.DataFrame:
    """The raw panel (validated like data_processing's input), its last ``history_days`` dates
    (null = all), with the index level as a ``market_level`` column when an index is given."""
    raw = panel_lib.load_raw_panel(Path(data["raw_path"]), layout=data.get("layout", "auto"),
                                     delimiter=data.get("delimiter"))
    history = inference.get("history_days")
    if history:
        dates = np.sort(raw["date"].unique())
        raw = raw.loc[raw["date"] >= dates[max(0, len(dates) - int(history))]]
    index = panel_lib.load_index_series(data.get("index_path"))
    if len(index):
        levels = index.set_index("date")["level"]
        calendar = pd.DatetimeIndex(np.sort(raw["date"].unique()))
        levels = levels.reindex(calendar.union(levels.index)).ffill().reindex(calendar)
        raw = raw.assign(**{MARKET_LEVEL: levels.reindex(raw["date"]).to_numpy()})
    logger.info("inference panel: %d rows, %d tickers, %s..%s", len(raw), raw["ticker"].nunique(),
                raw["date"].min().date(), raw["date"].max().date())
    return raw.reset_index(drop=True)


def _predict(raw: pd.DataFrame, inference: dict) -> pd.DataFrame:
    source = inference.get("model_source", "local")
    if source == "registry":
        import mlflow

        from bma_quant.serving.pyfunc import to_model_input

        uri = inference["model_uri"]
        logger.info("predicting with the registered model %s", uri)
        model = mlflow.pyfunc.load_model(uri)
        return model.predict(to_model_input(raw), params={"last_date_only": True})
    if source != "local":
        raise ValueError(f"inference.model_source must be 'local' or 'registry', got {source!r}")
    path = Path(inference["chain_path"])
    if not path.is_file():
        raise FileNotFoundError(
            f"no fitted chain at {path}: run `kedro run` (the evaluation pipeline writes it) or "
            "set inference.model_source: registry"
        )
    with open(path, "rb") as handle:
        chain = pickle.load(handle)
    out = chain.predict(raw)
    return out.loc[out["date"] == out["date"].max()]


def predict_latest(raw: pd.DataFrame, inference: dict) -> tuple[pd.DataFrame, dict]:
    """(date, ticker, prediction, rank) for the last date; rank 1 = highest prediction."""
    out = _predict(raw, inference)[["date", "ticker", "prediction"]].copy()
    if out.empty:
        raise ValueError("the chain returned no prediction: the panel is shorter than the "
                         "feature warm-up; give it more history (inference.history_days)")
    out["date"] = pd.to_datetime(out["date"])
    out["prediction"] = out["prediction"].astype(np.float32)
    out["rank"] = out["prediction"].rank(ascending=False, method="first").astype("int32")
    out = out.sort_values("rank").reset_index(drop=True)
    logger.info("predictions for %s: %d names; top: %s", out["date"].iloc[0].date(), len(out),
                ", ".join(out["ticker"].head(5)))
    return out, as_mlflow_metrics({"names": len(out), "prediction_std": out["prediction"].std()})
