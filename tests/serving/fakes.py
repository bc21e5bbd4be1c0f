"""Small stand-ins for the upstream fitted objects, following docs/architecture.md contracts.

They live in an importable module (not a test file) so a pickled chain made of them loads in a
fresh process started from the project root.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIME_SIGN = {"bull": 1.0, "neutral": 0.5, "bear": 1.0}


class MomentumFeatureSpec:
    """transform(panel_long, market) -> date, ticker, mom_5, signal, market_ret (float32)."""

    selected = ["mom_5", "signal", "market_ret"]

    def transform(self, panel: pd.DataFrame, market: pd.DataFrame) -> pd.DataFrame:
        close = panel.pivot(index="date", columns="ticker", values="close").sort_index()
        mom = (close / close.shift(5) - 1.0).stack(future_stack=True).rename("mom_5")
        out = mom.reset_index()
        signal = panel.set_index(["date", "ticker"])["signal_1"] if "signal_1" in panel else None
        out["signal"] = (signal.reindex(pd.MultiIndex.from_frame(out[["date", "ticker"]]))
                         .to_numpy() if signal is not None else 0.0)
        ret = market.set_index("date")["market_return"]
        out["market_ret"] = ret.reindex(out["date"]).fillna(0.0).to_numpy()
        for col in self.selected:
            out[col] = out[col].astype(np.float32)
        return out.sort_values(["date", "ticker"], kind="stable").reset_index(drop=True)


class LinearModel:
    """A fitted linear model with the scikit-learn predict API (NaN features count as 0)."""

    def __init__(self, weights: dict[str, float]):
        self.weights = weights

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        values = X[list(self.weights)].to_numpy(dtype=np.float64)
        return np.nan_to_num(values) @ np.array(list(self.weights.values()))


class FakeRegimeModel:
    """Per-regime scaling of a linear model: predict(rows, regimes) -> Series."""

    name = "regime_linear"
    feature_names = ["mom_5", "signal", "market_ret"]
    detector = None

    def __init__(self):
        self.model = LinearModel({"signal": 1.0, "mom_5": 0.1})

    def predict(self, rows: pd.DataFrame, regimes: pd.DataFrame) -> pd.Series:
        label = regimes.set_index("date")["regime"].reindex(rows["date"]).to_numpy()
        scale = np.array([REGIME_SIGN.get(r, 1.0) for r in label])
        return pd.Series(self.model.predict(rows) * scale, index=rows.index, name="prediction")


class MeanZEnsemble:
    """combine(): mean over models of per-date z-scores (NaN as no view)."""

    def __init__(self, models: list[str]):
        self.models = models

    def combine(self, predictions_long: pd.DataFrame, regimes=None) -> pd.DataFrame:
        wide = predictions_long.pivot_table(index=["date", "ticker"], columns="model",
                                            values="prediction")[self.models]
        grouped = wide.groupby(level="date")
        z = (wide - grouped.transform("mean")) / grouped.transform("std")
        out = z.fillna(0.0).mean(axis=1).rename("prediction").reset_index()
        out["prediction"] = out["prediction"].astype(np.float32)
        return out


def fake_upstream() -> dict:
    base = {"elastic_net": LinearModel({"signal": 1.0, "market_ret": 0.0}),
            "lightgbm": LinearModel({"mom_5": -1.0, "signal": 0.5})}
    return {"feature_spec": MomentumFeatureSpec(), "base_models": base,
            "regime_model": FakeRegimeModel(),
            "ensemble": MeanZEnsemble(["elastic_net", "lightgbm", "regime_linear"])}
