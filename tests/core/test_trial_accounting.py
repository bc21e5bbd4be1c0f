"""Trial accounting and the overfitting assessment on the synthetic market's known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.evaluation.backtest import long_short_backtest
from bma_quant.core.evaluation.overfitting import assess_overfitting
from bma_quant.core.evaluation.test_period import EvaluationConfig, thin_cross_sections
from bma_quant.core.evaluation.trial_accounting import (
    common_window,
    configuration_predictions,
    configuration_returns,
    configuration_table,
    longest_shared_window,
)

DATES = pd.bdate_range("2020-01-01", periods=4)


def _frame(models, extra=None):
    rows = [{"date": d, "ticker": t, "model": m, "prediction": 0.1, **(extra or {})}
            for m in models for d in DATES for t in ("A", "B")]
    return pd.DataFrame(rows)


def test_every_configuration_counted_once():
    trials = pd.concat([_frame(["lightgbm"], {"trial": k, "fold": 0}) for k in range(3)])
    base = _frame(["lightgbm", "alpha_composite"])
    regime = _frame(["regime_lightgbm"])
    ensemble = _frame(["stacking", "bma", "final"])
    preds = configuration_predictions(trials, base, regime, ensemble)
    table = configuration_table(preds)
    # lightgbm's out-of-fold rows are its best trial again; final is a copy of a method
    assert set(table["configuration"]) == {
        "lightgbm#trial0", "lightgbm#trial1", "lightgbm#trial2", "alpha_composite",
        "regime_lightgbm", "stacking", "bma"}
    assert table.set_index("configuration")["source"].to_dict()["lightgbm#trial1"] == "trial"
    # without the trials (the dataset is missing or empty) the tuned learner counts once
    for missing in (None, trials.iloc[:0]):
        fallback = configuration_table(configuration_predictions(missing, base, regime, ensemble))
        assert set(fallback["configuration"]) == {"lightgbm", "alpha_composite",
                                                  "regime_lightgbm", "stacking", "bma"}


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="base_trial_oof_predictions lacks columns \\['trial'\\]"):
        configuration_predictions(_frame(["lightgbm"]), None, None, None)
    with pytest.raises(ValueError, match="duplicate"):
        configuration_predictions(None, pd.concat([_frame(["x"])] * 2), None, None)


@pytest.mark.parametrize("with_tradable", [False, True])
def test_returns_are_the_projects_backtest(with_tradable):
    """Each configuration's column is the backtest of its own rows (its own rebalance dates),
    with missing predictions, configurations on different dates and one with no valid row; with
    a `tradable` column, the backtest that freezes positions at closes that are not trades."""
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=60)
    keys = pd.MultiIndex.from_product([dates, [f"T{i}" for i in range(10)]],
                                      names=["date", "ticker"]).to_frame(index=False)
    returns = keys.assign(ret_1d=rng.normal(0, 0.01, len(keys)))
    if with_tradable:
        returns["tradable"] = np.random.default_rng(5).random(len(keys)) > 0.15
    parts = {
        "a": keys.assign(prediction=rng.normal(size=len(keys))),
        "b": keys[keys["date"] >= dates[7]].assign(prediction=rng.normal(size=len(keys))[:-70]),
        "c": keys.assign(prediction=np.where(rng.random(len(keys)) < 0.3, np.nan,
                                             rng.normal(size=len(keys)))),
        "d": keys.assign(prediction=np.nan),
    }
    # whole dates of c are missing: its rebalance dates are not a's
    parts["c"].loc[parts["c"]["date"].isin(dates[[0, 3, 4]]), "prediction"] = np.nan
    # a date with fewer than 5 names of c is not traded, as in the test period's backtest
    parts["c"].loc[parts["c"]["date"].eq(dates[9]) & ~parts["c"]["ticker"].isin(["T0", "T1"]),
                   "prediction"] = np.nan
    preds = pd.concat([f.assign(model=n) for n, f in parts.items()], ignore_index=True)
    preds = preds.assign(configuration=pd.Categorical(preds["model"], categories=list("dcba")),
                         source="base").sample(frac=1.0, random_state=1)
    config = EvaluationConfig(rebalance_days=5, cost_bps=10.0)
    wide = configuration_returns(preds, returns, config)
    assert list(wide.columns) == list("dcba")
    for name, frame in parts.items():
        valid = frame.dropna(subset=["prediction"])
        traded = valid[~valid["date"].isin(thin_cross_sections(valid, config))]
        assert (name != "c") or dates[9] not in set(traded["date"])
        expected = long_short_backtest(traded[["date", "ticker", "prediction"]], returns,
                                       rebalance_days=5, cost_bps=10.0,
                                       max_frozen_days=config.max_frozen_days
                                       ).daily["long_short"]
        pd.testing.assert_series_equal(wide[name].dropna(), expected, check_names=False,
                                       check_index_type=False,
                                       check_freq=False)
    assert wide["d"].isna().all()
    plain = configuration_returns(preds, returns[["date", "ticker", "ret_1d"]], config)
    assert plain["a"].equals(wide["a"]) is not with_tradable


def test_common_window_prefers_the_most_configurations():
    index = pd.bdate_range("2020-01-01", periods=10)
    early = pd.Series(1.0, index=index[:4])
    late = pd.Series(1.0, index=index[4:])
    wide = pd.DataFrame({"t0": early, "t1": early, "t2": early, "a": late, "b": late})
    window = common_window(wide, min_dates=3)
    assert list(window.columns) == ["t0", "t1", "t2"] and len(window) == 4
    assert common_window(wide, min_dates=5).columns.tolist() == ["a", "b"]
    assert common_window(wide, min_dates=50).empty
    assert longest_shared_window(wide) == 6  # a and b; t0-t2 share 4
    assert longest_shared_window(wide[["t0", "a"]]) == 0
    note = assess_overfitting(wide, {}, n_blocks=4, min_block_dates=5).notes
    assert any("PBO not computed" in n and "the longest window this check can use (one "
               "configuration's dates, all covered by another) has 6 dates" in n
               for n in note), note
    one = assess_overfitting(wide[["a"]], {}, n_blocks=4, min_block_dates=1).notes
    assert any("1 configuration(s); PBO compares several" in n for n in one), one


def _synthetic_configurations(signal_strength: float, seed: int):
    """A synthetic market and 13 configurations: the planted signal plus mixtures of its noise
    factors (no edge), each backtested on the development-like first 80% of dates."""
    market = generate_synthetic_market(n_tickers=60, n_days=900, seed=seed, ohlcv=False,
                                       signal_strength=signal_strength, n_noise_factors=4)
    panel = market.panel.sort_values(["ticker", "date"])
    panel["ret_1d"] = panel.groupby("ticker")["close"].pct_change()
    rng = np.random.default_rng(seed)
    noise = panel[[f"noise_{i}" for i in range(1, 5)]].to_numpy()
    parts = [panel[["date", "ticker"]].assign(configuration="signal",
                                              prediction=panel["signal_1"])]
    for k in range(12):
        parts.append(panel[["date", "ticker"]].assign(configuration=f"noise{k}",
                                                      prediction=noise @ rng.normal(size=4)))
    preds = pd.concat(parts, ignore_index=True).assign(source="trial", model="m")
    returns = panel[["date", "ticker", "ret_1d"]]
    return configuration_returns(preds, returns, EvaluationConfig())


def test_planted_signal_is_not_overfit_and_noise_is():
    planted = assess_overfitting(_synthetic_configurations(0.08, seed=1), {}, n_blocks=10)
    assert planted.n_configurations == 13
    assert planted.pbo is not None and planted.pbo.pbo < 0.2
    noise = [assess_overfitting(_synthetic_configurations(0.0, seed=s), {}, n_blocks=10).pbo.pbo
             for s in (1, 2, 3)]
    assert np.mean(noise) >= 0.35


def test_pbo_over_few_or_alike_configurations_is_flagged():
    """Three near copies of one profitable model: PBO is a coin toss among them (the crypto
    trial read 0.71 on three such), and the notes say so with the probability of loss; thirteen
    different configurations get no such note."""
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2015-01-01", periods=800)
    common = rng.normal(0.001, 0.01, 800)
    copies = pd.DataFrame({f"c{k}": common + rng.normal(0, 0.0005, 800) for k in range(3)},
                          index=dates)
    result = assess_overfitting(copies, {}, n_blocks=8)
    report = result.report(252)
    assert report["pbo"]["median_correlation"] > 0.99
    assert any("close to a coin toss" in n and "probability_of_loss (0." in n
               for n in result.notes), result.notes
    varied = assess_overfitting(_synthetic_configurations(0.08, seed=1), {}, n_blocks=10)
    assert not any("coin toss" in n for n in varied.notes)
    assert varied.report(252)["pbo"]["median_correlation"] < 0.95


def test_assessment_deflates_the_test_sharpe_and_reports():
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2015-01-01", periods=800)
    configs = pd.DataFrame(rng.normal(0, 0.01, (800, 50)), index=dates,
                           columns=[f"c{i}" for i in range(50)])
    test = {"final": rng.normal(0.0008, 0.01, 300)}
    result = assess_overfitting(configs, test, n_blocks=8)
    final = result.deflated["final"]
    assert result.n_configurations == 50 and final.n_trials == 50
    assert final.deflated_sharpe < final.probabilistic_sharpe
    metrics = result.metrics(252)
    assert {"n_configurations", "pbo", "final.deflated_sharpe",
            "final.probabilistic_sharpe"} <= set(metrics)
    assert 0 <= metrics["pbo"] <= 1 and 0 <= metrics["final.deflated_sharpe"] <= 1
    # the logged spread and bar are annualised Sharpe ratios, like the Sharpe beside them: the
    # standard deviation of the trials' per-period Sharpes and SR0, times sqrt(252)
    assert metrics["trial_sharpe_std"] == pytest.approx(
        math.sqrt(result.trial_sharpe_variance) * math.sqrt(252))
    assert metrics["final.expected_max_sharpe"] == pytest.approx(
        final.expected_max_sharpe * math.sqrt(252))
    assert 0 < final.expected_max_sharpe < 1  # per period: annualising made a difference
    # the report names each Sharpe's unit (its expected_max_sharpe was the per-period value
    # under the name of the annualised metric)
    reported = result.report(252)["deflated_sharpe"]["final"]
    assert "expected_max_sharpe" not in reported and "sharpe" not in reported
    assert reported["expected_max_sharpe_annualised"] == pytest.approx(
        metrics["final.expected_max_sharpe"])
    assert reported["expected_max_sharpe_per_period"] == final.expected_max_sharpe
    assert reported["sharpe_annualised"] == pytest.approx(final.sharpe * math.sqrt(252))
    assert reported["trial_sharpe_variance_per_period"] == final.trial_sharpe_variance
    # pruned trials were tried too: they raise N (a harder bar) but not V[SR] or PBO
    pruned = assess_overfitting(configs, test, n_blocks=8, n_pruned_trials=30)
    assert pruned.deflated["final"].n_trials == 80 and pruned.metrics(252)["n_trials"] == 80
    assert pruned.trial_sharpe_variance == result.trial_sharpe_variance
    assert pruned.pbo.pbo == result.pbo.pbo and pruned.report(252)["n_pruned_trials"] == 30
    assert pruned.deflated["final"].deflated_sharpe < final.deflated_sharpe
    # no configuration at all: one trial, DSR = PSR, and the report says so
    empty = assess_overfitting(configs.iloc[:, :0], test, n_blocks=8)
    assert empty.pbo is None and empty.notes
    assert empty.deflated["final"].deflated_sharpe == pytest.approx(
        empty.deflated["final"].probabilistic_sharpe)



def test_the_sharpe_variance_compares_configurations_on_the_same_dates_only():
    """Ten trials on the tuning folds' dates and ten models on later dates, whose market paid
    more: V[SR] is the spread within each window, pooled, not the gap between the windows (a
    difference between two periods is not the luck of a search)."""
    from bma_quant.core.evaluation.overfitting import per_period_sharpes, pooled_sharpe_variance

    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2015-01-01", periods=400)
    frame = pd.DataFrame(np.nan, index=dates, columns=[f"c{k}" for k in range(20)])
    frame.iloc[:200, :10] = rng.normal(0.000, 0.01, (200, 10))
    frame.iloc[200:, 10:] = rng.normal(0.004, 0.01, (200, 10))
    sharpes = per_period_sharpes(frame)
    pooled, groups = pooled_sharpe_variance(frame, sharpes)
    within = (sharpes.iloc[:10].var(ddof=1) + sharpes.iloc[10:].var(ddof=1)) / 2
    assert groups == 2 and pooled == pytest.approx(within)
    assert sharpes.var(ddof=1) > 3 * pooled  # the mixed variance counted the windows' gap
    result = assess_overfitting(frame, {}, n_blocks=4, min_block_dates=20)
    assert result.trial_sharpe_variance == pytest.approx(within)
    assert result.sharpe_windows == 2 and not any("V[SR]" in n for n in result.notes)
    assert result.report(252)["trial_sharpe_windows"] == 2
    one = pooled_sharpe_variance(frame.iloc[:, :10], sharpes.iloc[:10])
    assert one == (pytest.approx(sharpes.iloc[:10].var(ddof=1)), 1)
    assert pooled_sharpe_variance(frame.iloc[:, [0, 15]], sharpes.iloc[[0, 15]]) == (0.0, 0)
    # no two on the same dates: the spread across windows, as before (an upper bound), noted
    apart = assess_overfitting(frame.iloc[:, [0, 15]], {}, n_blocks=4, min_block_dates=20)
    assert apart.trial_sharpe_variance == pytest.approx(sharpes.iloc[[0, 15]].var(ddof=1))
    assert any("no two share" in note for note in apart.notes)
