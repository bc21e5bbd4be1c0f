"""feature_engineering pipeline: contracts, FeatureSpec reproduction, leak guard, panel kinds."""

import json
import logging
import pickle

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.synthetic import generate_synthetic_market
from tests.support import run_pipeline

UPSTREAM = ["primary_panel", "labels", "market", "date_split", "cv_folds"]


def _upstream(tmp_path, **synthetic) -> dict:
    config = {"n_tickers": 60, "n_days": 1100, "seed": 4, "reversal_strength": 0.5, **synthetic}
    market = generate_synthetic_market(**config)
    path = tmp_path / "panel.parquet"
    market.panel.to_parquet(path)
    out = run_pipeline(
        "data_processing",
        {},
        {
            "data": {"raw_path": str(path), "index_path": None},
            "periods": {"dev_start": None},
            # selection is scored before the first CV test window (ic_scope: pre_cv)
            "cv": {"min_train_days": int(0.55 * config["n_days"]), "n_splits": 3},
        },
    )
    return {k: out[k] for k in UPSTREAM}


@pytest.fixture(scope="module")
def ohlcv_run(tmp_path_factory):
    upstream = _upstream(tmp_path_factory.mktemp("ohlcv"))
    return upstream, run_pipeline("feature_engineering", upstream)


def test_model_input_contract(ohlcv_run):
    upstream, out = ohlcv_run
    model_input, spec = out["model_input"], out["feature_spec"]
    panel = upstream["primary_panel"]
    # every eligible (date, ticker) row, dev and test dates; the first min_history_days are not
    in_universe = panel[panel["eligible"]]
    assert 0 < len(in_universe) < len(panel)
    assert len(model_input) == len(in_universe)
    assert list(model_input.columns) == ["date", "ticker", "label", *spec.selected]
    keys = model_input[["date", "ticker"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        keys, in_universe[["date", "ticker"]].reset_index(drop=True), check_dtype=False
    )
    features = model_input[spec.selected]
    assert (features.dtypes == np.float32).all()
    assert np.isfinite(features.to_numpy()).all()
    assert model_input["date"].max() == pd.Timestamp(upstream["date_split"]["test_end"])
    assert model_input["label"].tail(40).isna().all()  # labels run out at the end
    per_ticker = [n for n in spec.selected if n not in spec.market_context]
    assert 1 <= len(per_ticker) <= 20  # selection.max_features; market context comes on top
    assert {"fear_greed", "perf_momentum", "perf_reversal"} <= set(spec.market_context)


def test_features_hold_every_factor_as_float32(ohlcv_run):
    upstream, out = ohlcv_run
    features, report = out["features"], out["feature_selection_report"]
    factor_columns = [c for c in features.columns if c not in ("date", "ticker", "in_universe")]
    assert len(factor_columns) == report["factors_built"]
    assert (features[factor_columns].dtypes == np.float32).all()
    assert {"kmid", "vwap_5", "amihud_20", "fear_greed", "breadth_50", "signal_1"} <= set(
        factor_columns
    )


def test_selection_finds_planted_signal_and_reports(ohlcv_run):
    _, out = ohlcv_run
    report, table = out["feature_selection_report"], out["factor_ic_table"]
    assert "signal_1" in report["selected"]
    assert not {"noise_1", "noise_2", "noise_3"} & set(report["selected"])
    assert report["mode"] == "full" and report["leak_suspects"] == {}
    assert report["cv_test_dates_unseen"] is True  # the default scope: out-of-fold stays honest
    assert set(report["lags"]) == set(report["selected"])
    assert {"factor", "family", "lag", "rank_ic_mean", "rank_icir", "status"} <= set(table.columns)
    assert len(table) == report["factors_per_ticker"]
    metrics = out["feature_engineering_metrics"]
    for name in ("factors_built", "factors_kept", "leak_suspects", "degraded_mode"):
        assert name in metrics and "value" in metrics[name]
    assert metrics["degraded_mode"]["value"] == 0
    assert metrics["factors_kept"]["value"] == len(report["selected"])
    assert {"timed_ic_mean", "timed_ic_tstat"} <= set(table.columns)
    assert metrics["timed_ic_only_factors"]["value"] == len(report["significant_by_timed_ic_only"])
    market = [n for n in report["selected"] if report["families"][n] == "market"]
    assert metrics["market_context_factors"]["value"] == len(market) == 8


def test_feature_spec_reproduces_model_input_exactly(ohlcv_run):
    upstream, out = ohlcv_run
    spec = pickle.loads(pickle.dumps(out["feature_spec"]))
    rebuilt = spec.transform(upstream["primary_panel"], upstream["market"])
    expected = out["model_input"].drop(columns="label")
    pd.testing.assert_frame_equal(rebuilt.reset_index(drop=True), expected.reset_index(drop=True))


def test_feature_spec_on_a_raw_slice_matches_after_warmup(ohlcv_run):
    """The pyfunc use: a later slice of the raw panel, with enough history, gives the same
    features (up to float32 rounding of the windowed sums)."""
    upstream, out = ohlcv_run
    spec = out["feature_spec"]
    panel = upstream["primary_panel"].drop(columns="ret_1d")
    dates = np.sort(panel["date"].unique())
    start = dates[100]
    sliced = spec.transform(panel[panel["date"] >= start], upstream["market"])
    scored_from = dates[100 + spec.warmup_days] if 100 + spec.warmup_days < len(dates) else None
    assert scored_from is not None
    got = sliced[sliced["date"] >= scored_from].reset_index(drop=True)
    want = out["model_input"]
    want = want[want["date"] >= scored_from].drop(columns="label").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, atol=1e-3, rtol=0)


def test_sample_weights_cover_dev_dates_with_time_decay(ohlcv_run):
    upstream, out = ohlcv_run
    weights, split = out["sample_weights"], upstream["date_split"]
    assert list(weights.columns) == ["date", "weight"]
    assert weights["date"].min() == pd.Timestamp(split["dev_start"])
    assert weights["date"].max() == pd.Timestamp(split["dev_end"])
    assert len(weights) == split["dev_dates"]
    assert weights["weight"].is_monotonic_increasing
    assert weights["weight"].mean() == pytest.approx(1.0)


def test_planted_leak_is_dropped_counted_and_logged(ohlcv_run, caplog):
    upstream, _ = ohlcv_run
    panel = upstream["primary_panel"].copy()
    labels = upstream["labels"].set_index(["date", "ticker"])["label"]
    panel["peek"] = labels.reindex(pd.MultiIndex.from_frame(panel[["date", "ticker"]])).to_numpy()
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("feature_engineering", {**upstream, "primary_panel": panel})
    # the audit drops it before selection: its IC with each day's return stops at the label's end
    assert "label-window edge" in out["leak_report"]["suspects"]["peek"]
    assert "peek" not in out["feature_spec"].selected
    assert out["feature_engineering_metrics"]["leak_suspects"]["value"] == 1
    assert any("peek" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_close_only_panel_runs(tmp_path):
    upstream = _upstream(tmp_path, ohlcv=False, n_days=600, n_noise_factors=1)
    out = run_pipeline("feature_engineering", upstream)
    families = set(out["feature_selection_report"]["families"].values())
    assert not {"candle", "volume"} & families and "return" in families
    assert "signal_1" in out["feature_spec"].selected
    assert np.isfinite(out["model_input"][out["feature_spec"].selected].to_numpy()).all()


def test_degraded_mode_is_reported(tmp_path):
    upstream = _upstream(tmp_path, n_tickers=4, n_days=600, n_sectors=2, n_noise_factors=1)
    out = run_pipeline("feature_engineering", upstream)
    report = out["feature_selection_report"]
    assert report["mode"] == "degraded" and "IC cannot be estimated" in report["degraded_reason"]
    assert out["feature_engineering_metrics"]["degraded_mode"]["value"] == 1
    spec = out["feature_spec"]
    assert len([n for n in spec.selected if n not in spec.market_context]) == 12


def test_leak_audit_drops_and_names_one_day_peeks(ohlcv_run):
    """Issue 11 known answer: user columns close(t+2)/close(t+1)-1 (a one-day peek into the label
    window, RankIC with the label about 0.3, under the |RankIC| guard) and close(t+1)/close(t)-1
    are dropped before selection and named with the reason; momentum and the planted signal stay."""
    upstream, _ = ohlcv_run
    panel = upstream["primary_panel"].sort_values(["ticker", "date"]).copy()
    close = panel.groupby("ticker")["close"]
    panel["peek_label_day"] = close.shift(-2) / close.shift(-1) - 1.0
    panel["peek_next_day"] = close.shift(-1) / panel["close"] - 1.0
    panel = panel.sort_values(["date", "ticker"]).reset_index(drop=True)
    out = run_pipeline("feature_engineering", {**upstream, "primary_panel": panel})
    report = out["leak_report"]
    assert set(report["suspects"]) == {"peek_label_day", "peek_next_day"}
    assert "r(t+2)" in report["suspects"]["peek_label_day"]
    assert "r(t+1)" in report["suspects"]["peek_next_day"]
    assert report["suspect_families"] == {"peek_label_day": "user", "peek_next_day": "user"}
    assert report["suspect_numbers"]["peek_label_day"]["ic_2"] > 0.9
    json.dumps(report, allow_nan=False)  # a plain JSON artifact
    selection = out["feature_selection_report"]
    assert set(selection["leak_audit_dropped"]) == set(report["suspects"])
    assert "peek_label_day" not in selection["families"]
    assert not {"peek_label_day", "peek_next_day"} & set(out["feature_spec"].selected)
    assert "signal_1" in out["feature_spec"].selected
    table = out["leak_audit_table"].set_index("factor")
    assert not table.loc[["mom_12_1", "rev_5", "signal_1"], "suspect"].any()
    assert len(report["prefix_cut_dates"]) == 3 and report["future_days"] == 11
    assert out["feature_engineering_metrics"]["leak_suspects"]["value"] == 2
