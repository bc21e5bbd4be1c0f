"""The evaluation pipeline in memory on constructed upstream datasets (architecture.md formats)."""

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from matplotlib.figure import Figure

from bma_quant.core.evaluation.test_period import LOGGED_METRICS
from bma_quant.pipelines.evaluation import nodes
from tests.serving.upstream import build_upstream
from tests.support import project_params, run_pipeline

GATES = {"evaluation": {"gates": {"checks": {"min_test_dates": {"threshold": 100}}}}}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    datasets, overrides = build_upstream(tmp_path_factory.mktemp("planted"))
    return datasets, run_pipeline("evaluation", datasets, {**overrides, **GATES})


def test_table_covers_every_model_and_scope(planted):
    datasets, out = planted
    table = out["evaluation_table"]
    models = {"elastic_net", "lightgbm", "regime_linear", "equal_weight", "final"}
    assert set(table["model"]) == models
    scopes = table.groupby("model")["scope"].apply(set)
    regimes = set(datasets["regimes"]["regime"])
    assert all(s == {"all"} | (s - {"all"}) and s - {"all"} <= regimes for s in scopes)
    assert all(len(s) >= 2 for s in scopes)  # overall and at least one regime
    metrics = out["evaluation_metrics"]
    for model in models:
        for name in LOGGED_METRICS:
            assert f"{model}.test_{name}" in metrics
    assert all(set(v) == {"value", "step"} for v in metrics.values())
    assert metrics["final.gates_passed"]["value"] == 1.0
    # the rate the annualised figures used: 252 on daily exchange bars (the synthetic
    # business-day calendar's 261 dates a year), not logged before
    assert 255 < datasets["date_split"]["dates_per_year"] < 262
    assert metrics["periods_per_year"]["value"] == 252.0
    # settings null in the conf ("the label horizon") as resolved: MLflow's params said None
    horizon = float(project_params()["temporal"]["prediction_horizon_days"])
    assert [metrics[k]["value"] for k in ("rebalance_days", "nw_lag", "decay_max_horizon")] == [
        horizon] * 3
    # every metric column can be gated on (preflight refuses names outside this list)
    from bma_quant.core.data.preflight import GATE_METRICS
    assert set(table.columns) - {"model", "scope"} <= set(GATE_METRICS)


def test_planted_signal_passes_the_gates(planted):
    _, out = planted
    report = out["gate_report"]
    assert report["model"] == "final" and report["passed"], report
    json.dumps(report)
    final = out["evaluation_table"].query("model == 'final' and scope == 'all'").iloc[0]
    assert final["rank_ic"] > 0.2 and final["sharpe"] > 1


def test_plots_and_registration_without_mlflow(planted):
    _, out = planted
    for plot in ("cumulative_ic", "equity_curve", "quantile_returns", "ic_by_regime",
                 "feature_importance"):
        png, viz = out[f"evaluation_plot_{plot}_png"], out[f"evaluation_plot_{plot}"]
        assert isinstance(png, Figure) and isinstance(viz, go.Figure)
        assert viz.layout.title.text in {t.get_text() for t in png.texts} | {
            png._suptitle.get_text()}
    assert len(out["evaluation_plot_cumulative_ic"].data) == 2 * 5  # IC + RankIC per model
    bars = out["evaluation_plot_feature_importance"].data  # from the base_feature_importance input
    assert {"mom", "rev"} <= {y for bar in bars for y in bar.y}
    registration = out["model_registration"]
    assert registration["registered"] is False
    assert registration["reason"] == "no active MLflow run"
    # the chain rebuilt from the raw file reproduces the pipeline's final test predictions
    repro = registration["reproduction"]
    assert repro["rows_matched"] == repro["rows_pipeline"] > 0
    assert repro["max_abs_diff"] < 1e-5
    # logged through the catalog whether or not the chain is registered (it was logged only
    # after a registration, so a refused chain's reproduction figures never reached MLflow)
    metrics = out["registry_metrics"]
    assert metrics["reproduction_rows_matched"] == {"value": float(repro["rows_matched"]),
                                                    "step": 0}
    assert metrics["reproduction_max_abs_diff"]["value"] == repro["max_abs_diff"]


def test_noise_fails_the_gates(tmp_path):
    datasets, overrides = build_upstream(tmp_path, signal_strength=0.0, n_days=600, seed=11)
    out = run_pipeline("evaluation", datasets, {**overrides, **GATES})
    report = out["gate_report"]
    assert not report["passed"] and report["verdict"] == "fail"
    assert {"ic", "sharpe"} <= set(report["failed"])
    assert out["evaluation_metrics"]["final.gates_passed"]["value"] == 0.0


def test_luck_is_accounted_for(planted):
    _, out = planted
    report = out["overfitting_report"]
    # 4 lightgbm trials (they stand for lightgbm), elastic_net, regime_linear, equal_weight
    assert report["n_configurations"] == 7
    assert report["configurations_by_source"] == {"trial": 4, "base": 1, "regime": 1,
                                                  "ensemble": 1}
    assert 0 <= report["pbo"]["pbo"] <= 1 and report["pbo"]["n_configurations"] == 7
    metrics = out["evaluation_overfitting_metrics"]
    assert metrics["n_configurations"]["value"] == 7
    for name in ("final.deflated_sharpe", "final.probabilistic_sharpe", "pbo"):
        assert 0 <= metrics[name]["value"] <= 1, name
    final = report["deflated_sharpe"]["final"]
    assert final["deflated_sharpe"] <= final["probabilistic_sharpe"]
    assert set(out["evaluation_configurations"]["configuration"]) >= {"lightgbm#trial0",
                                                                      "equal_weight"}
    assert isinstance(out["evaluation_plot_pbo_logits"], go.Figure)
    assert isinstance(out["evaluation_plot_pbo_logits_png"], Figure)
    assert len(out["evaluation_plot_pbo_logits"].data) == 1
    # combinatorial CV is off by default: nothing refit, nothing logged
    assert out["evaluation_cpcv_paths"].empty and out["evaluation_cpcv_metrics"] == {}
    # the luck gates are off by default
    assert {"max_pbo", "min_deflated_sharpe"}.isdisjoint(
        c["name"] for c in out["gate_report"]["checks"])


def test_missing_trials_luck_gates_and_combinatorial_paths(tmp_path, caplog):
    datasets, overrides = build_upstream(tmp_path, n_days=600, seed=5)
    datasets["base_trial_oof_predictions"] = datasets["base_trial_oof_predictions"].iloc[:0]
    luck = {"evaluation": {"gates": {"max_pbo": 0.5, "min_deflated_sharpe": 0.99},
                           "cpcv": {"learners": ["elastic_net"]}},
            "cv": {"scheme": "combinatorial",
                   "combinatorial": {"n_groups": 4, "n_test_groups": 2}}}
    params = {**overrides, **GATES}
    params = {**params, "cv": {**params["cv"], **luck["cv"]},
              "evaluation": {**GATES["evaluation"], **luck["evaluation"],
                             "gates": {**GATES["evaluation"]["gates"],
                                       **luck["evaluation"]["gates"]}}}
    with caplog.at_level("INFO", logger="bma_quant.pipelines.evaluation.nodes"):
        out = run_pipeline("evaluation", datasets, params)
    # no learner was tuned (its status ran no trial): said, not warned about
    said = [r for r in caplog.records if "no Optuna trial out-of-fold" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"] and "none is tuned" in said[0].message
    assert nodes._ran_trials(datasets["base_model_status"]) == 0
    assert nodes._ran_trials({"a": {"metrics": {"n_trials": 10}}, "b": {"metrics": {}}}) == 10
    report = out["overfitting_report"]
    # without the trials each learner counts once: elastic_net, lightgbm, regime, ensemble
    assert report["n_configurations"] == 4 and "trial" not in report["configurations_by_source"]
    checks = {c["name"]: c for c in out["gate_report"]["checks"]}
    assert checks["max_pbo"]["value"] == report["pbo"]["pbo"]
    assert checks["min_deflated_sharpe"]["value"] == pytest.approx(
        report["deflated_sharpe"]["final"]["deflated_sharpe"])
    paths = out["evaluation_cpcv_paths"]
    assert set(paths["model"]) == {"elastic_net"} and len(paths) == 3  # C(3, 1) paths
    # only the out-of-fold dates are tested: the parameters were chosen on the tuning folds'
    folds = datasets["cv_folds"]
    oof_test = folds[(folds["stage"] == "oof") & (folds["role"] == "test")]["date"]
    dev = pd.DatetimeIndex(datasets["model_input"]["date"].unique())
    dev = dev[dev <= pd.Timestamp(datasets["date_split"]["dev_end"])]
    assert (paths["n_dates"] <= (dev >= oof_test.min()).sum()).all()
    metrics = out["evaluation_cpcv_metrics"]
    assert metrics["cpcv.elastic_net.rank_ic_q05"]["value"] > 0.05  # planted signal, every path
    assert {f"cpcv.elastic_net.{s}_q{q}" for s in ("rank_ic", "sharpe") for q in ("05", "50", "95")
            } <= set(metrics)


def test_a_gate_set_to_null_is_dropped():
    import pandas as pd

    from bma_quant.pipelines.evaluation.nodes import apply_gates

    table = pd.DataFrame([{"model": "final", "scope": "all", "ic": 0.05, "sharpe": 0.2}])
    spec = {"gates": {"checks": {"ic": {"metric": "ic", "op": ">", "threshold": 0.02},
                                 "sharpe": None}}}
    report = apply_gates(table, {}, {}, {"test_start": "2020-01-02", "test_end": "2020-12-31"},
                         spec)
    assert [c["name"] for c in report["checks"]] == ["ic"] and report["passed"]


def test_the_gate_settings_record_what_a_null_stands_for():
    """rebalance_days / nw_lag / decay_max_horizon null mean the horizon: the registry's
    description and fingerprint record that value, so null and 5 on a 5-day label are the
    same settings (and null on a 10-day label is not the 5-day one's)."""
    import pandas as pd

    from bma_quant.core.evaluation.promotion import gate_settings_fingerprint, settings_text
    from bma_quant.pipelines.evaluation.nodes import apply_gates

    table = pd.DataFrame([{"model": "final", "scope": "all", "ic": 0.05}])
    split = {"test_start": "2020-01-02", "test_end": "2020-12-31"}

    def settings(backtest, metrics, horizon):
        spec = {"gates": {"checks": {"ic": {"metric": "ic", "op": ">", "threshold": 0.02}}},
                "backtest": {"n_quantiles": 5, **backtest}, "metrics": metrics}
        return apply_gates(table, {}, {}, split, spec,
                           {"prediction_horizon_days": horizon})["settings"]

    nulls = settings({"rebalance_days": None}, {"nw_lag": None, "decay_max_horizon": None}, 5)
    fives = settings({"rebalance_days": 5}, {"nw_lag": 5, "decay_max_horizon": 5}, 5)
    assert nulls == fives
    assert gate_settings_fingerprint(nulls) == gate_settings_fingerprint(fives)
    assert "rebalance_days 5" in settings_text(nulls) and "None" not in settings_text(nulls)
    tens = settings({"rebalance_days": None}, {"nw_lag": None, "decay_max_horizon": None}, 10)
    assert gate_settings_fingerprint(tens) != gate_settings_fingerprint(nulls)


def test_spread_costs_charge_illiquid_names_more(planted, tmp_path):
    """evaluation.backtest.spread_cost: the same books (same turnover) cost more where the
    bars say spreads are wide, in the test backtest and in the luck statistics' backtests; a
    panel without high and low is refused by the pre-flight check, naming the setting."""
    from bma_quant.core.data import preflight

    datasets, flat = planted
    panel = datasets["primary_panel"].copy()
    rng = np.random.default_rng(0)
    names = panel["ticker"].unique()
    width = dict(zip(names, rng.uniform(0.0, 0.04, len(names)), strict=True))  # bar ranges
    bounce = rng.choice([-1.0, 1.0], len(panel)) * panel["ticker"].map(width) / 4
    panel["high"] = panel["close"] * (1 + panel["ticker"].map(width) / 2 - bounce)
    panel["low"] = panel["close"] * (1 - panel["ticker"].map(width) / 2 - bounce)
    settings = {"enabled": True, "window": 21, "min_dates": 10, "cap_bps": 200.0}
    params = {**GATES, "evaluation": {**GATES["evaluation"],
                                      "backtest": {"spread_cost": settings}}}
    _, overrides = build_upstream(tmp_path)
    out = run_pipeline("evaluation", {**datasets, "primary_panel": panel},
                       {**overrides, **params})
    key = ["model", "scope"]
    a = flat["evaluation_table"].set_index(key).sort_index()
    b = out["evaluation_table"].set_index(key).sort_index()
    pd.testing.assert_series_equal(a["rank_ic"], b["rank_ic"])
    pd.testing.assert_series_equal(a["turnover"], b["turnover"])
    overall = (slice(None), "all")
    assert (b.loc[overall, "sharpe"] < a.loc[overall, "sharpe"]).all()
    flat_configs = flat["overfitting_report"]["configurations_by_source"]
    assert out["overfitting_report"]["configurations_by_source"] == flat_configs
    # the luck statistics' backtests are charged alike: every configuration's development
    # Sharpe is lower
    before = flat["evaluation_configurations"].set_index("configuration")["dev_sharpe"]
    after = out["evaluation_configurations"].set_index("configuration")["dev_sharpe"]
    known = before.notna()
    assert known.any() and (after[known] < before[known]).all()
    with pytest.raises(preflight.PreflightError, match="spread_cost.enabled"):
        preflight.check_spread_cost_columns(["date", "ticker", "close"], params)
    preflight.check_spread_cost_columns(["date", "ticker", "close", "high", "low"], params)


def _one_price_bars(panel: pd.DataFrame, min_move: float) -> tuple[pd.DataFrame, int]:
    """The panel with a 2 % bar range around every close, except one-price bars (open = high =
    low = close) on the closes at least `min_move` from the previous one: what a market with
    daily price limits shows on its locked days."""
    panel = panel.sort_values(["ticker", "date"]).copy()
    move = panel.groupby("ticker")["close"].pct_change().abs()
    locked = (move >= min_move).to_numpy()
    panel["open"] = panel["close"]
    panel["high"] = np.where(locked, panel["close"], panel["close"] * 1.01)
    panel["low"] = np.where(locked, panel["close"], panel["close"] * 0.99)
    return panel.sort_values(["date", "ticker"]).reset_index(drop=True), int(locked.sum())


def test_limit_locked_closes_change_the_backtests_not_the_scores(planted, tmp_path):
    """evaluation.backtest.limit_locks (on by default): on a panel whose large moves are
    one-price bars, the books trade differently (no buy at a limit-up close, no sale at a
    limit-down one) in the test backtest and the luck statistics' backtests; the RankICs do not
    move. Off, or on a panel without such bars, every figure is as before."""
    datasets, flat = planted
    panel, n_locked = _one_price_bars(datasets["primary_panel"], 0.045)
    assert n_locked > 100
    _, overrides = build_upstream(tmp_path)
    key = ["model", "scope"]
    before = flat["evaluation_table"].set_index(key).sort_index()

    def table(frame, locks):
        params = {**GATES, "evaluation": {**GATES["evaluation"],
                                          "backtest": {"limit_locks": locks}}}
        out = run_pipeline("evaluation", {**datasets, "primary_panel": frame},
                           {**overrides, **params})
        return out, out["evaluation_table"].set_index(key).sort_index()

    out, locked = table(panel, {"enabled": True, "min_move": 0.045})
    pd.testing.assert_series_equal(before["rank_ic"], locked["rank_ic"])
    overall = (slice(None), "all")
    assert (locked.loc[overall, "turnover"] != before.loc[overall, "turnover"]).all()
    stopped = out["evaluation_daily_returns"]
    assert (stopped["locked_weight"] > 0).any()
    assert (flat["evaluation_daily_returns"]["locked_weight"] == 0).all()
    dev_before = flat["evaluation_configurations"].set_index("configuration")["dev_sharpe"]
    dev_after = out["evaluation_configurations"].set_index("configuration")["dev_sharpe"]
    assert (dev_after != dev_before).any()
    # off, or no one-price bar past the move: nothing changes
    _, off = table(panel, {"enabled": False, "min_move": 0.045})
    pd.testing.assert_frame_equal(before, off)
    _, untouched = table(panel, {"enabled": True, "min_move": 0.9})
    pd.testing.assert_frame_equal(before, untouched)


def test_closes_sealed_at_the_high_are_named_as_a_hint_when_locks_are_found(planted, caplog):
    """A panel with one-price locks (a market with limits) and also closes at the day's high
    after a large rise that traded lower first: the log counts the locks and says how many such
    closes close_at_extreme would add; with it on they are locks too."""
    import logging

    from bma_quant.core.evaluation.backtest_panel import with_limit_locks as _with_limit_locks
    from bma_quant.core.evaluation.limit_locks import LIMIT_LOCK, LimitLocks

    datasets, _ = planted
    panel, _ = _one_price_bars(datasets["primary_panel"], 0.05)
    big_rise = (panel.sort_values(["ticker", "date"]).groupby("ticker")["close"].pct_change()
                .reindex(panel.index) >= 0.05) & (panel["high"] == panel["low"])
    sealed_rows = panel.index[big_rise.to_numpy()][::2]  # every other lock traded lower first
    for column in ("open", "low"):
        panel.loc[sealed_rows, column] = panel.loc[sealed_rows, "close"] * 0.97
    columns = panel[["date", "ticker", "close"]]
    with caplog.at_level(logging.INFO, logger="bma_quant.core.evaluation.backtest_panel"):
        plain = _with_limit_locks(columns, panel, LimitLocks(), report=True)
    assert (f"limit locks: {len(sealed_rows)} more closes sat at the day's high (low) at least "
            "min_move above") in caplog.text
    wider = _with_limit_locks(columns, panel, LimitLocks(close_at_extreme=True))
    assert (wider[LIMIT_LOCK] > 0).sum() == (plain[LIMIT_LOCK] > 0).sum() + len(sealed_rows)


def test_a_book_that_loses_more_than_its_capital_is_warned_about(caplog):
    """cost_bps 1e6 gave annual_return -2306 and max_drawdown 110.7 without a word."""
    import logging

    from bma_quant.core.evaluation import test_period
    from bma_quant.pipelines.evaluation.nodes import _warn_wiped_out

    overall = pd.DataFrame({"model": ["final", "lightgbm"], "max_drawdown": [110.7, 0.2]})
    with caplog.at_level(logging.WARNING):
        _warn_wiped_out(overall, test_period.EvaluationConfig(cost_bps=1e6))
    assert "long-short book of final loses more than its capital" in caplog.text
    assert "lightgbm" not in caplog.text and "cost_bps 1e+06" in caplog.text


def test_a_test_rank_ic_no_real_market_gives_is_warned_about(caplog):
    """A noisy copy of future returns in a user column the leak audit could not tell made a
    pure-noise market's champion with a test RankIC of 0.32, without a word."""
    import logging

    from bma_quant.pipelines.evaluation.nodes import _warn_implausible

    overall = pd.DataFrame({"model": ["final", "lightgbm"], "rank_ic": [0.3195, 0.04]})
    with caplog.at_level(logging.WARNING):
        _warn_implausible(overall, 0.3)
    assert ("RankIC final +0.320 beyond +-evaluation.metrics.implausible_rank_ic (0.3)"
            in caplog.text)
    assert "lightgbm" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _warn_implausible(overall, None)
        _warn_implausible(overall.assign(rank_ic=[0.17, 0.1]), 0.3)  # the planted smoke market
    assert caplog.text == ""
