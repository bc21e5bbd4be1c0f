"""Upstream datasets for evaluation / serving tests, in the docs/architecture.md formats.

A synthetic market goes through the real data_processing pipeline (in memory); the fake fitted
objects of ``tests.serving.fakes`` then produce base, regime and ensemble test predictions the way
the upstream pipelines would (features from primary_panel and market).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.evaluation.metrics import mean_rank_ic
from tests.serving.fakes import fake_upstream
from tests.support import deep_update, project_params, run_pipeline

LOOKBACK = 60


def data_overrides(raw_path: Path) -> dict:
    return {
        "data": {"raw_path": str(raw_path), "index_path": None, "layout": "long"},
        "periods": {"dev_start": None, "test_fraction": 0.3},
        "cv": {"min_train_days": 200},
        "temporal": {"max_lookback_days": LOOKBACK},
        # trailing coverage within the serving warm-up, so a slice decides the universe as training
        "processing": {"eligibility": {"window_days": LOOKBACK}},
    }


def _long(frame: pd.DataFrame, values, model: str) -> pd.DataFrame:
    return pd.DataFrame({"date": frame["date"].to_numpy(), "ticker": frame["ticker"].to_numpy(),
                         "model": model, "prediction": values}).astype({"prediction": "float32"})


def development_datasets(dev: pd.DataFrame, objects: dict, regimes: pd.DataFrame,
                         labels: pd.DataFrame, n_trials: int = 4, seed: int = 0) -> dict:
    """Out-of-fold-like development predictions (the fake fitted models applied to development
    features), Optuna trials of lightgbm (its prediction plus noise of growing size), and
    model_input / sample_weights for the CPCV refits."""
    rng = np.random.default_rng(seed)
    base = pd.concat([_long(dev, est.predict(dev), name)
                      for name, est in objects["base_models"].items()], ignore_index=True)
    lightgbm = objects["base_models"]["lightgbm"].predict(dev)
    trials = pd.concat([
        _long(dev, lightgbm + k * rng.normal(size=len(dev)), "lightgbm").assign(trial=k, fold=0)
        for k in range(n_trials)], ignore_index=True)
    regime = _long(dev, objects["regime_model"].predict(dev, regimes).to_numpy(), "regime_linear")
    combined = objects["ensemble"].combine(pd.concat([base, regime]), regimes)
    ensemble = pd.concat([combined.assign(model=m)[["date", "ticker", "model", "prediction"]]
                          for m in ("equal_weight", "final")], ignore_index=True)
    model_input = dev.merge(labels[["date", "ticker", "label"]], on=["date", "ticker"])
    # stacking's report of the methods' development scores, as report_stacking writes it
    scored = ensemble.merge(labels[["date", "ticker", "label"]], on=["date", "ticker"])
    oos = {m: mean_rank_ic(part) for m, part in scored.groupby("model")}
    ensemble_report = {"selection": {"chosen": "equal_weight", "oos_rank_ic": {
        "equal_weight": oos["equal_weight"]}, "final_nested_rank_ic": oos["final"]}}
    return {
        "ensemble_report": ensemble_report,
        "base_oof_predictions": base.assign(fold=0), "base_trial_oof_predictions": trials,
        "regime_oof_predictions": regime.assign(fold=0),
        "ensemble_oof_predictions": ensemble.assign(fold=0),
        "model_input": model_input,
        "sample_weights": pd.DataFrame({"date": dev["date"].unique(), "weight": 1.0}),
    }


def build_upstream(tmp_path: Path, *, signal_strength: float = 0.06, n_tickers: int = 40,
                   n_days: int = 700, seed: int = 3) -> tuple[dict, dict]:
    """(datasets, parameter overrides) for running the evaluation pipeline in memory."""
    market = generate_synthetic_market(n_tickers=n_tickers, n_days=n_days, seed=seed,
                                       signal_strength=signal_strength, ohlcv=False,
                                       n_noise_factors=1)
    raw_path = tmp_path / "prices.parquet"
    market.panel.to_parquet(raw_path)
    overrides = data_overrides(raw_path)
    dp = run_pipeline("data_processing", {}, overrides)
    objects = fake_upstream()
    panel, market_frame, split = dp["primary_panel"], dp["market"], dp["date_split"]

    features = objects["feature_spec"].transform(panel, market_frame)
    test = features[features["date"] >= pd.Timestamp(split["test_start"])].reset_index(drop=True)
    regimes = market.regimes.copy()
    for name in ("bull", "neutral", "bear"):
        regimes[f"p_{name}"] = (regimes["regime"] == name).astype(float)
    regimes["fear_greed"] = 50.0
    base = pd.concat([_long(test, est.predict(test), name)
                      for name, est in objects["base_models"].items()], ignore_index=True)
    regime_preds = _long(test, objects["regime_model"].predict(test, regimes).to_numpy(),
                         "regime_linear")
    combined = objects["ensemble"].combine(pd.concat([base, regime_preds]), regimes)
    ensemble = pd.concat(
        [combined.assign(model=m)[["date", "ticker", "model", "prediction"]]
         for m in ("equal_weight", "final")], ignore_index=True)
    dev = features[(features["date"] <= pd.Timestamp(split["dev_end"]))].reset_index(drop=True)
    datasets = {
        **development_datasets(dev, objects, regimes, dp["labels"]),
        "labels": dp["labels"], "primary_panel": panel, "date_split": split,
        "cv_folds": dp["cv_folds"],
        # regime_models' report as it writes it (the part the champion comparison reads)
        "regime_models_report": {"training": {"cv": {"regime_linear": {"oof_rank_ic_mean": 0.02}}}},
        # the part of feature_engineering's selection report the champion comparison reads
        "feature_selection_report": {"cv_test_dates_unseen": True},
        "data_quality_report": dp["data_quality_report"], "regimes": regimes,
        "base_test_predictions": base, "regime_test_predictions": regime_preds,
        "ensemble_test_predictions": ensemble,
        "base_model_status": {n: {"status": "ok", "error": None, "best_params": {}}
                              for n in objects["base_models"]},
        # the importance table base_models writes (model, feature, importance, share, kind)
        "base_feature_importance": pd.DataFrame({
            "model": "lightgbm", "feature": ["mom", "rev"], "importance": [3.0, 1.0],
            "share": [0.75, 0.25], "kind": "gain"}),
        **objects,
    }
    return datasets, overrides


def build_chain(datasets: dict, overrides: dict):
    """The evaluation pipeline's prediction chain built from `build_upstream` outputs."""
    from bma_quant.pipelines.evaluation import registry_nodes

    params = deep_update(project_params(), overrides)
    return registry_nodes.build_prediction_chain(
        datasets["feature_spec"], datasets["base_models"], datasets["regime_model"],
        datasets["ensemble"], datasets["primary_panel"], datasets["regimes"],
        datasets["data_quality_report"], overrides["data"], params["processing"],
        params["temporal"], params["registry"], params["base_models"], params["evaluation"],
        datasets["date_split"],
    )
