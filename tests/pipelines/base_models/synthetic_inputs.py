"""base_models inputs built from the synthetic market, standing in for feature_engineering.

The panel goes through the real data_processing pipeline in memory (labels, date split, purged
folds); features are the generator's signal_1 and noise columns plus two lagged-return columns,
float32 like model_input; sample weights decay with a half-life over the development dates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bma_quant.core.data.synthetic import generate_synthetic_market
from tests.support import run_pipeline

RETURN_WINDOWS = (5, 20)


def build_inputs(
    tmp_dir: Path,
    n_tickers: int = 50,
    n_days: int = 800,
    *,
    seed: int = 7,
    signal_strength: float = 0.02,
    half_life_days: int = 500,
    min_train_days: int = 200,
    n_splits: int = 4,
) -> dict:
    market = generate_synthetic_market(
        n_tickers, n_days, seed=seed, signal_strength=signal_strength, ohlcv=False
    )
    raw_path = Path(tmp_dir) / f"synthetic_{seed}_{n_tickers}x{n_days}.parquet"
    market.panel.to_parquet(raw_path)
    processed = run_pipeline(
        "data_processing",
        {},
        {
            "data": {"raw_path": str(raw_path), "index_path": None},
            "periods": {"dev_start": None},
            "cv": {"min_train_days": min_train_days, "n_splits": n_splits},
        },
    )
    panel, labels = processed["primary_panel"], processed["labels"]
    date_split = processed["date_split"]

    factor_columns = [c for c in panel.columns if c == "signal_1" or c.startswith("noise_")]
    features = panel[["date", "ticker", *factor_columns]].copy()
    close = panel.pivot(index="date", columns="ticker", values="close")
    log_close = np.log(close)
    for window in RETURN_WINDOWS:  # causal: uses closes up to and including t
        ret = (log_close - log_close.shift(window)).stack(future_stack=True)
        features = features.merge(ret.rename(f"ret_{window}d").reset_index(),
                                  on=["date", "ticker"], how="left")
    model_input = features.merge(labels, on=["date", "ticker"], how="left")
    feature_names = [*factor_columns, *(f"ret_{w}d" for w in RETURN_WINDOWS)]
    model_input[feature_names] = model_input[feature_names].astype(np.float32)
    model_input = model_input[["date", "ticker", "label", *feature_names]]
    model_input = model_input.sort_values(["date", "ticker"]).reset_index(drop=True)

    dates = pd.DatetimeIndex(sorted(model_input["date"].unique()))
    dev_dates = dates[(dates >= pd.Timestamp(date_split["dev_start"]))
                      & (dates <= pd.Timestamp(date_split["dev_end"]))]
    age = np.arange(len(dev_dates))[::-1]
    sample_weights = pd.DataFrame({"date": dev_dates,
                                   "weight": 0.5 ** (age / half_life_days)})
    return {
        "model_input": model_input,
        "sample_weights": sample_weights,
        "date_split": date_split,
        "cv_folds": processed["cv_folds"],
        "feature_names": feature_names,
        "market": market,
    }
