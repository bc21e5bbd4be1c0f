"""The comparison table: known answers on planted-signal and noise predictions, regime scopes."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.labels import forward_return_labels
from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.evaluation import test_period as ev
from bma_quant.core.evaluation.backtest import holding_returns, long_short_backtest
from bma_quant.core.evaluation.metrics import newey_west_tstat, prediction_scores


@pytest.fixture(scope="module")
def market():
    m = generate_synthetic_market(n_tickers=50, n_days=700, seed=1, signal_strength=0.05,
                                  ohlcv=False)
    p = m.panel
    close = p.pivot(index="date", columns="ticker", values="close")
    labels = forward_return_labels(close, 10, 1).stack(future_stack=True).rename("label")
    ret = (close / close.shift(1) - 1).stack(future_stack=True).rename("ret_1d")
    panel = p[["date", "ticker", "close"]].merge(ret.reset_index(), on=["date", "ticker"])
    preds = pd.concat([
        p[["date", "ticker"]].assign(model="final", prediction=p["signal_1"].to_numpy()),
        p[["date", "ticker"]].assign(model="xgboost", prediction=p["noise_1"].to_numpy()),
    ], ignore_index=True)
    test_start = p["date"].unique()[400]
    return m, labels.reset_index(), panel, preds, test_start


def test_table_shape_signal_and_noise(market):
    m, labels, panel, preds, test_start = market
    result = ev.evaluate_predictions(preds, labels, panel, m.regimes, ev.EvaluationConfig(),
                                     test_start=test_start)
    table = result.table
    assert list(table.columns) == list(ev.TABLE_COLUMNS)
    # known upstream order: xgboost before final; scope all first, then regimes present
    assert table["model"].iloc[0] == "xgboost"
    scopes = set(table.loc[table["model"] == "final", "scope"])
    assert "all" in scopes and scopes - {"all"} <= {"bull", "neutral", "bear"} and len(scopes) > 1
    final = result.metrics_of("final")
    noise = result.metrics_of("xgboost")
    assert final["rank_ic"] > 0.2 and final["sharpe"] > 2 and final["hit_rate"] > 0.8
    assert abs(noise["rank_ic"]) < 0.05 and abs(noise["ic_tstat"]) < 3
    # only test dates are scored
    assert result.daily_ic["date"].min() >= test_start
    assert set(result.quantile_returns["quantile"]) == {1, 2, 3, 4, 5}
    q = result.quantile_returns[result.quantile_returns["model"] == "final"]["mean_label"]
    assert q.is_monotonic_increasing
    assert set(result.ic_decay["horizon"]) == set(range(1, 11))


def test_overall_scope_equals_core_metrics_and_backtest(market):
    m, labels, panel, preds, test_start = market
    config = ev.EvaluationConfig(rebalance_days=5, cost_bps=20)
    result = ev.evaluate_predictions(preds, labels, panel, None, config, test_start=test_start)
    assert set(result.table["scope"]) == {"all"}  # no regimes: overall only
    final = preds[(preds["model"] == "final") & (preds["date"] >= test_start)]
    merged = final.merge(labels, on=["date", "ticker"])
    scores = prediction_scores(merged, nw_lag=10)
    bt = long_short_backtest(final, panel[panel["date"] >= test_start], rebalance_days=5,
                             cost_bps=20)
    row = result.metrics_of("final")
    for key in ("ic", "rank_ic", "icir", "rank_icir", "ic_tstat", "hit_rate"):
        assert row[key] == pytest.approx(scores[key])
    for key in ("sharpe", "ir", "max_drawdown", "turnover", "annual_return"):
        assert row[key] == pytest.approx(bt.summary[key])


def test_the_backtest_freezes_positions_where_the_panel_says_a_close_is_no_trade(market):
    m, labels, panel, preds, test_start = market
    tradable = panel.assign(tradable=np.random.default_rng(3).random(len(panel)) > 0.1)
    config = ev.EvaluationConfig()
    frozen = ev.evaluate_predictions(preds, labels, tradable, None, config, test_start=test_start)
    free = ev.evaluate_predictions(preds, labels, panel, None, config, test_start=test_start)
    final = preds[(preds["model"] == "final") & (preds["date"] >= test_start)]
    held = holding_returns(tradable, config.max_frozen_days)
    bt = long_short_backtest(final, held[held["date"] >= test_start],
                             max_frozen_days=config.max_frozen_days)
    assert frozen.metrics_of("final")["sharpe"] == pytest.approx(bt.summary["sharpe"])
    assert frozen.metrics_of("final")["turnover"] < free.metrics_of("final")["turnover"]
    assert frozen.metrics_of("final")["rank_ic"] == free.metrics_of("final")["rank_ic"]


def test_regime_scopes_partition_the_days(market):
    m, labels, panel, preds, test_start = market
    result = ev.evaluate_predictions(preds, labels, panel, m.regimes, ev.EvaluationConfig(),
                                     test_start=test_start)
    table = result.table[result.table["model"] == "final"].set_index("scope")
    regimes = table.drop(index="all")
    assert regimes["n_days"].sum() == table.loc["all", "n_days"]
    assert regimes["n_rebalances"].sum() == table.loc["all", "n_rebalances"]
    assert regimes["n_dates"].sum() == table.loc["all", "n_dates"]
    # each regime's IC is the mean of the daily IC on that regime's dates
    ic = result.daily_ic[result.daily_ic["model"] == "final"].set_index("date")["rank_ic"]
    labels_by_date = m.regimes.set_index("date")["regime"]
    for regime, row in regimes.iterrows():
        expected = ic[labels_by_date.reindex(ic.index).to_numpy() == regime].mean()
        assert row["rank_ic"] == pytest.approx(expected)
        # its t-stat counts lags in dates: the other regimes' dates are gaps, not squeezed out
        in_regime = ic.where(labels_by_date.reindex(ic.index).to_numpy() == regime)
        assert row["rank_ic_tstat"] == pytest.approx(
            newey_west_tstat(in_regime, 10, gaps_in_time=True))


def test_book_attribution_uses_signal_date_regime(market):
    m, labels, panel, preds, test_start = market
    result = ev.evaluate_predictions(preds, labels, panel, m.regimes,
                                     ev.EvaluationConfig(), test_start=test_start)
    daily = result.daily_returns[result.daily_returns["model"] == "final"]
    # a book spans rebalance_days held days and keeps one regime label for all of them
    starts = np.flatnonzero(daily["turnover"].to_numpy() > 0)
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        assert daily["regime"].iloc[a:b].nunique() == 1


def test_metric_names():
    table = pd.DataFrame([
        {"model": "final", "scope": "all", **{m: 0.1 for m in ev.LOGGED_METRICS}},
        {"model": "final", "scope": "bull", **{m: 0.2 for m in ev.LOGGED_METRICS}},
    ])
    names = ev.metric_values(table, regime_metrics=["sharpe"])
    assert "final.test_rank_ic" in names and "final.test_bull_sharpe" in names
    assert len(names) == len(ev.LOGGED_METRICS) + 1


def test_ordered_models_and_config_defaults():
    # a learner of the user's with the base learners, its regime model with the regime ones,
    # both before the ensemble methods and final (they came after final)
    assert ev.ordered_models(["zzz", "final", "elastic_net", "bma", "regime_zzz",
                              "regime_elastic_net"]) == [
        "elastic_net", "zzz", "regime_elastic_net", "regime_zzz", "bma", "final"]
    assert ev.ordered_models(["neutral", "bull"], ev.REGIME_ORDER) == ["bull", "neutral"]
    config = ev.EvaluationConfig.from_params({}, {"prediction_horizon_days": 5,
                                                  "execution_delay_days": 2})
    assert (config.nw_lag, config.rebalance_days, config.execution_delay) == (5, 5, 2)
    assert config.decay_horizons == (1, 2, 3, 4, 5)


def test_dates_too_thin_for_an_ic_are_not_traded_either(market, caplog):
    """A test period of 4 names per date reported a 'quintile' Sharpe beside an undefined IC
    (n_dates 0), without a word. Such dates are neither scored nor traded, and said so."""
    m, labels, panel, preds, test_start = market
    kept = sorted(preds["ticker"].unique())[:4]
    thin = preds.loc[(preds["date"] < test_start) | preds["ticker"].isin(kept)]
    with caplog.at_level("WARNING"):
        result = ev.evaluate_predictions(thin, labels, panel, None, ev.EvaluationConfig(),
                                         test_start=test_start)
    final = result.metrics_of("final")
    assert final["n_dates"] == 0 and np.isnan(final["rank_ic"])
    assert np.isnan(final["sharpe"]) or final["n_rebalances"] == 0
    assert "have fewer than 5 predicted names" in caplog.text
    assert "no test metric is defined" in caplog.text
    # a period with enough names keeps every metric as before
    full = ev.evaluate_predictions(preds, labels, panel, None, ev.EvaluationConfig(),
                                   test_start=test_start)
    assert full.metrics_of("final")["n_rebalances"] > 0


def test_a_model_whose_ties_empty_an_end_quantile_is_named(market, caplog):
    """A model with few distinct prediction values (coarse trees) can leave the bottom quintile
    empty: its book is flat on those rebalances and the warning says so, naming the model."""
    m, labels, panel, preds, test_start = market
    coarse = preds["model"] == "xgboost"
    rank = preds.loc[coarse].groupby("date")["prediction"].rank(pct=True)
    preds = preds.copy()
    preds.loc[coarse, "prediction"] = np.where(rank <= 0.5, 0.0, rank)  # bottom half tied
    with caplog.at_level("WARNING"):
        result = ev.evaluate_predictions(preds, labels, panel, None, ev.EvaluationConfig(),
                                         test_start=test_start)
    coarse_daily = result.daily_returns[result.daily_returns["model"] == "xgboost"]
    n = result.metrics_of("xgboost")["n_rebalances"]
    assert n > 0 and (coarse_daily["long_short"] == 0).all()
    assert f"the long-short book of xgboost ({n:.0f} of {n:.0f}) held nothing" in caplog.text
    assert "final (" not in caplog.text  # models with distinct values are not named


def test_a_model_thin_on_its_own_dates_is_named(market, caplog):
    """Each model's thin dates are left out of its own metrics; the warning names the model with
    the most (here not `final`, which has every name)."""
    m, labels, panel, preds, test_start = market
    test_dates = sorted(preds.loc[preds["date"] >= test_start, "date"].unique())
    thin = ((preds["model"] == "xgboost") & (preds["date"] == test_dates[3])
            & ~preds["ticker"].isin(sorted(preds["ticker"].unique())[:3]))
    with caplog.at_level("WARNING"):
        ev.evaluate_predictions(preds.loc[~thin], labels, panel, None, ev.EvaluationConfig(),
                                test_start=test_start)
    assert f"1 of {len(test_dates)} test date(s) have fewer than 5 predicted names " \
           f"(model xgboost)" in caplog.text



def test_a_regimes_turnover_leaves_out_the_build_from_an_empty_book():
    """Turnover is the mean over rebalances of a held book; the first day's build from cash
    (turnover 1) is reported apart, in a regime's slice as in the whole period's."""
    from bma_quant.core.evaluation.test_period import portfolio_summary

    days = pd.bdate_range("2024-01-01", periods=6)
    daily = pd.DataFrame({"long_short": [0.01, -0.01, 0.02, 0.0, 0.01, 0.0],
                          "excess": [0.0] * 6,
                          "turnover": [1.0, 0.0, 0.3, 0.0, 0.5, 0.0]}, index=days)
    first = np.array([True, False, True, False, True, False])
    summary = portfolio_summary(daily, first, 252, initial_day=days[0])
    assert summary["turnover"] == pytest.approx(0.4) and summary["n_rebalances"] == 3
    later = portfolio_summary(daily.iloc[2:], first[2:], 252, initial_day=days[0])
    assert later["turnover"] == pytest.approx(0.4)  # a slice without the build: all of its own


def test_a_date_with_fewer_names_than_quantiles_or_an_ic_needs_is_thin():
    """min_names 5 and 10 quantiles: a date of 7 names can score an IC but fill no 10-bucket
    book, so it is thin; 10 names are enough; with 3 quantiles 5 names are."""
    rows = pd.DataFrame({"date": ["d7"] * 7 + ["d10"] * 10 + ["d5"] * 5, "prediction": 1.0})
    wide = ev.EvaluationConfig(min_names=5, n_quantiles=10)
    assert list(ev.thin_cross_sections(rows, wide)) == ["d7", "d5"]
    narrow = ev.EvaluationConfig(min_names=5, n_quantiles=3)
    assert list(ev.thin_cross_sections(rows, narrow)) == []


def test_annualisation_follows_the_files_calendar_unless_set():
    """periods_per_year null: 252 on daily exchange bars, the file's own rate on a seven-day
    calendar or weekly bars (a crypto Sharpe annualised with 252 understated it by sqrt(365 /
    252)); a value set by hand is kept."""
    from bma_quant.core.evaluation.test_period import EvaluationConfig, annualisation_periods

    assert annualisation_periods(None, 251.7) == 252
    assert annualisation_periods(None, 365.2) == 365
    assert annualisation_periods(None, 52.1) == 52
    assert annualisation_periods(None, None) == 252
    assert annualisation_periods(252, 365.2) == 252
    null = {"backtest": {"periods_per_year": None}}
    assert EvaluationConfig.from_params(null, {}, 365.2).periods_per_year == 365
    assert EvaluationConfig.from_params({}, {}, 365.2).periods_per_year == 365  # absent = null
    assert EvaluationConfig.from_params({}, {}).periods_per_year == 252
