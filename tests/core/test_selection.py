"""Feature selection: batch RankIC, lag and half-life choice, filters, leak guard, degraded mode."""

import logging
import re

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.evaluation.metrics import daily_ic
from bma_quant.core.features.selection import (
    SelectionConfig,
    apply_lag,
    daily_rank_ic,
    nothing_selected,
    rowwise_corr,
    select_features,
)
from bma_quant.core.features.transforms import row_ranks
from tests.core.selection_inputs import selection_inputs

CONFIG = SelectionConfig(nw_lag=10)


def _setup(n_tickers=50, n_days=800, seed=7, ohlcv=True, **synthetic):
    market = generate_synthetic_market(n_tickers, n_days, seed=seed, ohlcv=ohlcv, **synthetic)
    return selection_inputs(market, min_train_days=200)


@pytest.fixture(scope="module")
def synthetic():
    """Two planted mechanisms: signal_1 and a short-term reversal price factors can find."""
    return _setup(reversal_strength=0.5)


@pytest.fixture(scope="module")
def signal_only():
    return _setup()


def test_batch_rank_ic_equals_metrics_spearman():
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=30)
    x = rng.standard_normal((30, 12))
    y = 0.3 * x + rng.standard_normal((30, 12))
    x[0, :9] = np.nan  # too few names on the first date
    x[2, :] = np.round(x[2, :])  # ties
    ic = daily_rank_ic(row_ranks(x), row_ranks(y), np.arange(30), 0, min_names=5)
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates, 12),
            "ticker": np.tile(np.arange(12), 30),
            "prediction": x.ravel(),
            "label": y.ravel(),
        }
    )
    expected = daily_ic(frame, method="spearman", min_names=5)
    assert np.isnan(ic[0])
    np.testing.assert_allclose(ic[1:], expected.to_numpy(), atol=1e-12)
    assert expected.index[0] == dates[1]


def test_rowwise_corr_is_nan_for_constant_rows():
    x = np.ones((2, 6))
    x[1] = np.arange(6)
    corr = rowwise_corr(x, np.arange(12.0).reshape(2, 6), min_names=3)
    assert np.isnan(corr[0]) and corr[1] == pytest.approx(1.0)


def test_keeps_planted_signal_and_drops_noise(synthetic):
    features, families, label, dates, dev, folds = synthetic
    result = select_features(features, families, label, dates, dev, folds, CONFIG, True)
    assert not result.degraded
    assert "signal_1" in result.selected
    assert not {"noise_1", "noise_2", "noise_3"} & set(result.selected)
    table = result.table.set_index("factor")
    assert table.loc["signal_1", "rank_ic_mean"] > 0.05
    for noise in ("noise_1", "noise_2", "noise_3"):
        assert abs(table.loc[noise, "rank_ic_mean"]) < table.loc["signal_1", "rank_ic_mean"] / 2
        assert abs(table.loc[noise, "rank_ic_tstat"]) < 3.0
        assert table.loc[noise, "status"].startswith("dropped")
    per_ticker = [n for n in result.selected if families[n] != "market"]
    assert len(per_ticker) <= CONFIG.max_features
    assert result.report["factors_built"] == len(features)
    assert not result.leak_suspects
    # the reversal is found by the short-horizon price factors
    assert {"rev_5", "ret_5", "ret_1", "ma_5"} & set(result.selected)
    assert not result.report["filled_below_significance"]


def test_significance_gate_alone_drops_noise(signal_only):
    features, families, label, dates, dev, folds = signal_only
    config = SelectionConfig(nw_lag=10, min_features=0, include_market_context=False)
    result = select_features(features, families, label, dates, dev, folds, config, True)
    assert "signal_1" in result.selected
    assert not {"noise_1", "noise_2", "noise_3"} & set(result.selected)
    table = result.table.set_index("factor").loc[result.selected]
    assert ((table["rank_ic_tstat"].abs() >= 3.0) | (table["timed_ic_tstat"] >= 3.0)).all()


def test_no_per_ticker_factor_kept_and_no_refill_is_refused_naming_the_settings(signal_only):
    """Market-wide factors alone cannot rank names: every learner would be degenerate, so the
    selection stops with the thresholds that did it (it ended in NoBaseModelSucceeded)."""
    from bma_quant.core.data.preflight import PreflightError

    features, families, label, dates, dev, folds = signal_only
    config = SelectionConfig(nw_lag=10, min_features=0, min_abs_tstat=1000.0)
    result = select_features(features, families, label, dates, dev, folds, config, True)
    error = nothing_selected(result, families, config)
    assert isinstance(error, PreflightError)
    assert re.search(r"kept none of the \d+ per-ticker factors \(e\.g\. \w+: insignificant.*"
                     r"min_features is 0.*min_abs_tstat", str(error))
    kept = select_features(features, families, label, dates, dev, folds, CONFIG, True)
    assert nothing_selected(kept, families, CONFIG) is None
    # no IC date in the scope at all (a 250-day panel: the first fold's training dates all came
    # before any name had min_history_days of history): the thresholds it named could not help
    blank = np.full(np.shape(label), np.nan)
    unlisted = {n: np.full(np.shape(v), np.nan) if families[n] != "market" else v
                for n, v in features.items()}
    empty = select_features(unlisted, families, blank, dates, dev, folds, config, True)
    error = nothing_selected(empty, families, config)
    assert error is not None and "processing.eligibility.min_history_days" in str(error)
    assert "min_abs_tstat" not in str(error)


def test_a_drop_reason_names_the_timed_rank_ic_only_when_it_was_computed(signal_only):
    features, families, label, dates, dev, folds = signal_only
    for timed_ic in (True, False):
        config = SelectionConfig(nw_lag=10, min_features=0, min_abs_tstat=1000.0,
                                 timed_ic=timed_ic)
        result = select_features(features, families, label, dates, dev, folds, config, True)
        reasons = pd.Series(result.report["dropped"], dtype=object)
        insignificant = reasons[reasons.str.startswith("insignificant")]
        assert len(insignificant)
        assert insignificant.str.contains("timed RankIC t-stat = ").all() == timed_ic
        assert not insignificant.str.contains("nan").any()


def test_min_features_refills_from_insignificant_factors_and_reports_them(signal_only, caplog):
    features, families, label, dates, dev, folds = signal_only
    config = SelectionConfig(nw_lag=10, min_features=10, include_market_context=False)
    with caplog.at_level(logging.WARNING):
        result = select_features(features, families, label, dates, dev, folds, config, True)
    filled = result.report["filled_below_significance"]
    assert len(result.selected) == 10 and filled
    assert set(filled) <= set(result.selected) and "signal_1" not in filled
    table = result.table.set_index("factor")
    assert (table.loc[filled, "rank_ic_tstat"].abs() < 3.0).all()
    assert (table.loc[filled, "timed_ic_tstat"].fillna(0.0) < 3.0).all()
    significant = table.loc[result.report["significant"]]
    assert ((significant["rank_ic_tstat"].abs() >= 3.0)
            | (significant["timed_ic_tstat"] >= 3.0)).all()
    assert any("below the significance gate" in r.getMessage()
               and "reach selection.min_features = 10:" in r.getMessage()
               for r in caplog.records)
    # a smaller limit caps the refill, and the message says so (not min_features = 5)
    caplog.clear()
    capped = SelectionConfig(nw_lag=10, min_features=10, max_features=5,
                             include_market_context=False)
    with caplog.at_level(logging.WARNING):
        result = select_features(features, families, label, dates, dev, folds, capped, True)
    assert len(result.selected) == 5
    assert any("to reach 5 (selection.min_features = 10, capped by selection.max_features)"
               in r.getMessage() for r in caplog.records)


def test_planted_leak_is_caught_and_logged(synthetic, caplog):
    features, families, label, dates, dev, folds = synthetic
    leak = np.roll(label, 0, axis=0)  # the label itself, a future return, as a "user" factor
    from bma_quant.core.features.transforms import centred_rank

    planted = {**features, "leak": centred_rank(leak).astype(np.float32)}
    with caplog.at_level(logging.WARNING):
        result = select_features(
            planted, {**families, "leak": "user"}, label, dates, dev, folds, CONFIG, True
        )
    assert result.leak_suspects == ["leak"]
    assert "leak" not in result.selected
    assert result.report["leak_suspects"]["leak"] > 0.9
    assert "suspected look-ahead" in result.report["dropped"]["leak"]
    said = [r.getMessage() for r in caplog.records if "look-ahead" in r.getMessage()]
    # a column of the user's file: the warning says to ask how it is built, not that the project
    # computed it
    assert len(said) == 1 and "A column of the file (leak)" in said[0]
    assert "the project computes" not in said[0]


def test_leak_guard_drops_above_the_threshold_and_keeps_below(synthetic):
    """The guard's line is leak_threshold (0.3 by default), not a near-perfect peek: a factor
    that reads the label through noise at |RankIC| about 0.37 is dropped, one at about 0.2 is
    kept; a threshold raised above 0.37 keeps both."""
    features, families, label, dates, dev, folds = synthetic
    from bma_quant.core.features.transforms import centred_rank

    rng = np.random.default_rng(5)
    scale = np.nanstd(label)
    peeks = {name: centred_rank(label + noise * scale * rng.standard_normal(label.shape))
             .astype(np.float32) for name, noise in (("strong_peek", 2.5), ("weak_peek", 6.0))}
    user = {**families, **dict.fromkeys(peeks, "user")}
    result = select_features({**features, **peeks}, user, label, dates, dev, folds, CONFIG, True)
    measured = result.table.set_index("factor")["max_abs_rank_ic"]
    assert 0.33 < measured["strong_peek"] < 0.42 and measured["weak_peek"] < 0.27
    assert result.leak_suspects == ["strong_peek"]
    assert "strong_peek" not in result.selected
    assert "suspected look-ahead" not in result.report["dropped"].get("weak_peek", "")
    raised = SelectionConfig(nw_lag=10, leak_threshold=0.45)
    kept = select_features({**features, **peeks}, user, label, dates, dev, folds, raised, True)
    assert kept.leak_suspects == []


def test_a_factor_with_a_rankic_on_a_few_dates_is_not_judged(synthetic):
    """A column with values on two development dates only: a mean of two daily RankICs read as
    a look-ahead (the leak guard's advice to raise the threshold), and two close values could
    pass the t-stat gate. Too few dates to judge it either way: dropped, saying so."""
    features, families, label, dates, dev, folds = synthetic
    sparse = np.full(label.shape, np.nan, dtype=np.float32)
    rows = [100, 150]  # dates of the selection's scope (before the first fold's test)
    sparse[rows] = label[rows]  # a perfect peek, on two dates
    result = select_features({**features, "sparse": sparse}, {**families, "sparse": "user"},
                             label, dates, dev, folds, CONFIG, True)
    assert result.leak_suspects == [] and "sparse" not in result.selected
    assert re.match(r"a RankIC on [12] development date\(s\) only, fewer than "
                    r"feature_engineering\.selection\.min_factor_ic_dates \(20\)",
                    result.report["dropped"]["sparse"])
    # on 45 dates the same peek is judged, and caught by the leak guard
    judged = np.full(label.shape, np.nan, dtype=np.float32)
    judged[100:145] = label[100:145]
    result = select_features({**features, "judged": judged}, {**families, "judged": "user"},
                             label, dates, dev, folds, CONFIG, True)
    assert result.leak_suspects == ["judged"]


def test_lag_choice_finds_a_late_signal():
    rng = np.random.default_rng(3)
    n_dates, n_names = 400, 40
    dates = pd.bdate_range("2018-01-01", periods=n_dates)
    label = rng.standard_normal((n_dates, n_names))
    late = np.full_like(label, np.nan)
    late[2:] = label[:-2] + 4.0 * rng.standard_normal((n_dates - 2, n_names))
    # the factor at t-2 is informative about the label at t... so observed two dates late:
    # value at t = (label at t + 2 + noise) is a look-ahead construction used only to test lags
    future_informed = np.full_like(label, np.nan)
    future_informed[:-2] = label[2:] + 4.0 * rng.standard_normal((n_dates - 2, n_names))
    features = {"late": row_ranks(future_informed).astype(np.float32)}
    config = SelectionConfig(nw_lag=10, ewm_enabled=False, min_abs_tstat=0.0, min_features=0)
    result = select_features(
        features, {"late": "user"}, label, dates, dates[:300], [], config, True
    )
    assert result.lags == {"late": 2}
    row = result.table.iloc[0]
    assert row["rank_ic_lag_2"] > 0.15 > abs(row["rank_ic_lag_0"])
    np.testing.assert_array_equal(apply_lag(np.arange(6.0).reshape(3, 2), 1)[1], [0.0, 1.0])


def test_redundant_copy_is_dropped_in_favour_of_the_better_factor(synthetic):
    features, families, label, dates, dev, folds = synthetic
    rng = np.random.default_rng(1)
    copy = features["signal_1"] + np.float32(0.01) * rng.standard_normal(
        features["signal_1"].shape
    ).astype(np.float32)
    planted = {**features, "signal_copy": copy}
    result = select_features(
        planted, {**families, "signal_copy": "user"}, label, dates, dev, folds, CONFIG, False
    )
    assert ("signal_1" in result.selected) != ("signal_copy" in result.selected)
    dropped = "signal_copy" if "signal_1" in result.selected else "signal_1"
    assert "redundant" in result.report["dropped"][dropped]


def test_selection_ignores_labels_outside_development_dates(synthetic):
    features, families, label, dates, dev, folds = synthetic
    first = select_features(features, families, label, dates, dev, folds, CONFIG, True)
    scrambled = label.copy()
    test_rows = ~dates.isin(dev)
    scrambled[test_rows] = np.random.default_rng(0).standard_normal(
        (int(test_rows.sum()), label.shape[1])
    )
    second = select_features(features, families, scrambled, dates, dev, folds, CONFIG, True)
    assert first.selected == second.selected and first.lags == second.lags
    pd.testing.assert_frame_equal(first.table, second.table)


def test_labels_of_names_out_of_the_cross_section_do_not_count_for_the_ic(caplog):
    """A price floor keeps most names out (their factors are empty) while their labels exist:
    the check counted labelled names, ran in full mode and scored every factor on two dates
    (t-stats of 39); names count only where a factor has a value too."""
    features, families, label, dates, dev, folds = _setup(n_tickers=30, n_days=500, seed=2)
    thin = {name: np.where(np.arange(values.shape[1]) < 3, values, np.nan)
            for name, values in features.items()}
    config = SelectionConfig(nw_lag=10, include_market_context=False)
    assert not select_features(features, families, label, dates, dev, folds, config,
                               True).degraded
    with caplog.at_level(logging.WARNING):
        result = select_features(thin, families, label, dates, dev, folds, config, True)
    assert result.degraded
    assert "labelled names in the cross-section" in result.report["degraded_reason"]
    assert "at most 3 names on a date" in result.report["degraded_reason"]


def test_degraded_mode_with_too_few_names(caplog):
    features, families, label, dates, dev, folds = _setup(
        n_tickers=4, n_days=500, seed=2, n_sectors=2
    )
    config = SelectionConfig(nw_lag=10, fallback_features=12, include_market_context=False)
    with caplog.at_level(logging.WARNING):
        result = select_features(features, families, label, dates, dev, folds, config, True)
    assert result.degraded and result.report["mode"] == "degraded"
    assert "IC cannot be estimated" in result.report["degraded_reason"]
    assert len(result.selected) == 12
    assert set(result.lags.values()) == {0}
    # the fallback spreads over every family that has a usable factor, the best-covered first
    table = result.table.set_index("factor")
    usable = table[~table["status"].str.contains("redundant|flat|variance", regex=True)]
    assert set(table.loc[result.selected, "family"]) == set(usable["family"])
    for family, members in usable.groupby("family"):
        first = next(n for n in result.selected if families[n] == family)
        assert table.loc[first, "coverage"] == members["coverage"].max()
    assert any("degraded" in r.getMessage() for r in caplog.records)


def test_market_context_is_added_only_on_request(synthetic):
    features, families, label, dates, dev, folds = synthetic
    market = sorted(n for n, f in families.items() if f == "market")
    config = SelectionConfig(nw_lag=10, include_market_context=False)
    without = select_features(features, families, label, dates, dev, folds, config, True)
    assert not set(market) & set(without.selected)
    assert all("market context" in without.report["dropped"][n] for n in market)
    with_market = select_features(features, families, label, dates, dev, folds, CONFIG, True)
    assert set(market) <= set(with_market.selected)
    assert all(with_market.lags[n] == 0 for n in market)


def test_no_filter_reads_factor_values_after_the_first_folds_training_dates(synthetic):
    """Variance, coverage and redundancy are choices too (DESIGN section 3): factor values on the
    later CV test windows (whose out-of-fold scores the next layers learn from) change nothing."""
    features, families, label, dates, dev, folds = synthetic
    first = select_features(features, families, label, dates, dev, folds, CONFIG, True)
    last_scope = dates.get_indexer(pd.DatetimeIndex(folds[0].train_dates)).max()
    rng = np.random.default_rng(1)
    scrambled = {}
    for name, values in features.items():
        changed = values.copy()
        changed[last_scope + 1:] = rng.standard_normal(changed[last_scope + 1:].shape)
        scrambled[name] = changed.astype(values.dtype)
    second = select_features(scrambled, families, label, dates, dev, folds, CONFIG, True)
    assert first.selected == second.selected and first.lags == second.lags
    pd.testing.assert_frame_equal(first.table, second.table)


def test_report_says_whether_the_cv_test_windows_were_left_unread(synthetic):
    """Only the default scope (the first fold's training dates) leaves every CV test window
    unread; the registry trusts out-of-fold scores only then (core.evaluation.promotion)."""
    features, families, label, dates, dev, folds = synthetic
    unseen = {}
    for scope in ("pre_cv", "fold_train", "dev"):
        config = SelectionConfig(nw_lag=10, ic_scope=scope)
        report = select_features(features, families, label, dates, dev, folds, config, True).report
        unseen[scope] = report["cv_test_dates_unseen"]
    assert unseen == {"pre_cv": True, "fold_train": False, "dev": False}
    # without folds the pre_cv scope falls back to every development date
    report = select_features(features, families, label, dates, dev, [], CONFIG, True).report
    assert report["cv_test_dates_unseen"] is False


def test_names_listed_after_the_scored_dates_change_no_choice(synthetic):
    """DESIGN §3: the selection is fitted on training dates only. The grid holds every name of the
    file, those that list later too; counted on the scored dates (zeros in the variance, missing
    in the coverage, the redundancy sample's width) they moved the choice made there."""
    features, families, label, dates, dev, folds = synthetic
    config = SelectionConfig(nw_lag=10, redundancy_sample_rows=2000, redundancy_threshold=0.5)
    before = select_features(features, families, label, dates, dev, folds, config, True)
    rng = np.random.default_rng(11)
    late = len(dates) - 60  # 30 new names with values only on the last 60 dates (test period)
    assert dates[late] > pd.DatetimeIndex(dev)[-1]

    def widened(matrix):
        extra = np.full((matrix.shape[0], 30), np.nan, dtype=matrix.dtype)
        extra[late:] = rng.standard_normal((len(dates) - late, 30))
        return np.hstack([matrix, extra])

    after = select_features({n: widened(m) for n, m in features.items()}, families,
                            widened(label), dates, dev, folds, config, True)
    assert after.selected == before.selected
    assert after.report["dropped"] == before.report["dropped"]
    pd.testing.assert_frame_equal(after.table, before.table)
    assert any("redundant" in reason for reason in before.report["dropped"].values())


def test_degraded_mode_takes_one_factor_of_each_family_in_turn():
    """Without ICs there is no evidence of what pays: degraded mode spreads its fallback over
    the families (in build order), the best-covered factor of each first; the variance it used
    to rank by is the same for every rank-transformed factor but for its coverage and last bits."""
    from bma_quant.core.features.transforms import centred_rank

    rng = np.random.default_rng(2)
    n_dates, n_names = 120, 30
    dates = pd.bdate_range("2020-01-01", periods=n_dates)
    families = {"a1": "trend", "a2": "trend", "a3": "trend", "a4": "trend",
                "b1": "volume", "b2": "volume", "c1": "candle", "c2": "candle", "c3": "candle"}
    features = {n: centred_rank(rng.standard_normal((n_dates, n_names))) for n in families}
    features["a1"][:, : n_names // 2] = np.nan  # a1 covers half the cells: its family's last
    label = np.full((n_dates, n_names), np.nan)
    label[:20] = rng.standard_normal((20, n_names))  # too few IC dates: degraded mode
    config = SelectionConfig(nw_lag=10, fallback_features=7, redundancy_threshold=0.99,
                             include_market_context=False)
    result = select_features(features, families, label, dates, dates[:100], [], config, True)
    assert result.degraded
    assert result.selected == ["a2", "b1", "c1", "a3", "b2", "c2", "a4"]
    assert result.report["dropped"]["c3"] == "beyond the top 7"
    assert result.report["dropped"]["a1"] == "beyond the top 7"
    # the order depends on coverage and build order only: last-bit changes leave it alone
    features["c3"] = features["c3"] * (1 + 4e-16)
    features["b2"] = features["b2"] * (1 - 4e-16)
    again = select_features(features, families, label, dates, dates[:100], [], config, True)
    assert again.selected == result.selected


def test_a_column_without_values_in_the_scope_is_dropped_saying_so(signal_only):
    """A user column that starts after the first fold's training dates has no RankIC in the
    selection's scope: it was dropped as "insignificant: |RankIC t-stat| = nan"."""
    features, families, label, dates, dev, folds = signal_only
    late = np.array(next(v for n, v in features.items() if families[n] != "market"), dtype=float)
    late[: len(late) * 6 // 10] = np.nan  # values from late in development only
    config = SelectionConfig(nw_lag=10, min_features=0)
    result = select_features({**features, "late_user": late}, {**families, "late_user": "user"},
                             label, dates, dev, folds, config, True)
    reason = result.report["dropped"]["late_user"]
    assert reason.startswith("no RankIC on any date of the selection's scope (feature_engineering"
                             ".selection.ic_scope: pre_cv)") and "nan" not in reason
