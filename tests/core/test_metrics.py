"""Tests for core.evaluation.metrics: hand-computed IC panels, scipy/statsmodels references, edge cases."""

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from bma_quant.core.evaluation.metrics import (
    daily_ic,
    forward_return_grids,
    forward_returns,
    ic_decay,
    ic_summary,
    mean_rank_ic,
    newey_west_tstat,
    prediction_scores,
    quantile_labels,
    quantile_mean_returns,
)

DATES = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"])


def _panel(rows: dict) -> pd.DataFrame:
    """Long frame from {date: (predictions, labels)}."""
    frames = []
    for date, (pred, label) in rows.items():
        frames.append(
            pd.DataFrame(
                {
                    "date": pd.Timestamp(date),
                    "ticker": [f"T{i}" for i in range(len(pred))],
                    "prediction": np.asarray(pred, dtype=float),
                    "label": np.asarray(label, dtype=float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _known_panel() -> pd.DataFrame:
    """Three dates whose Pearson IC is exactly 1, -1 and 0.5."""
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    u = np.array([2.0, -1.0, -2.0, -1.0, 2.0])  # orthogonal to x and to the constant
    half = 0.5 * x / np.linalg.norm(x) + math.sqrt(0.75) * u / np.linalg.norm(u)
    return _panel({DATES[0]: (x, 3 * x + 1), DATES[1]: (x, -x), DATES[2]: (x, half)})


def _random_panel(seed: int = 0, n_dates: int = 30, n_names: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2023-01-02", periods=n_dates)
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates, n_names),
            "ticker": np.tile([f"T{i}" for i in range(n_names)], n_dates),
        }
    )
    frame["prediction"] = rng.standard_normal(len(frame))
    frame["label"] = 0.3 * frame["prediction"] + rng.standard_normal(len(frame))
    # Ties (rounded predictions) and missing values, the cases where rank code goes wrong.
    frame.loc[frame.index % 3 == 0, "prediction"] = frame["prediction"].round(1)
    frame.loc[rng.random(len(frame)) < 0.1, "label"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.05, "prediction"] = np.nan
    return frame


# --- daily_ic -------------------------------------------------------------------------------


def test_daily_ic_known_values():
    ic = daily_ic(_known_panel(), method="pearson", min_names=5)
    assert ic.name == "ic"
    assert ic.index.name == "date"
    assert list(ic.index) == list(DATES)
    np.testing.assert_allclose(ic.to_numpy(), [1.0, -1.0, 0.5], atol=1e-12)


def test_daily_rank_ic_hand_computed():
    # One swapped pair: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 120 = 0.9.
    frame = _panel({DATES[0]: ([1, 2, 3, 4, 5], [10, 20, 30, 50, 40])})
    rank_ic = daily_ic(frame, method="spearman", min_names=5)
    assert rank_ic.name == "rank_ic"
    assert rank_ic.iloc[0] == pytest.approx(0.9, abs=1e-12)


def test_daily_ic_matches_scipy_and_numpy_per_date():
    frame = _random_panel()
    rank_ic = daily_ic(frame, method="spearman", min_names=5)
    ic = daily_ic(frame, method="pearson", min_names=5)
    for date, group in frame.dropna().groupby("date"):
        expected_rank = stats.spearmanr(group["prediction"], group["label"]).statistic
        expected = np.corrcoef(group["prediction"], group["label"])[0, 1]
        assert rank_ic[date] == pytest.approx(expected_rank, abs=1e-12)
        assert ic[date] == pytest.approx(expected, abs=1e-12)
    assert len(rank_ic) == frame["date"].nunique()


def test_daily_ic_is_order_independent():
    frame = _random_panel(seed=1)
    shuffled = frame.sample(frac=1.0, random_state=3)
    for method in ("pearson", "spearman"):
        pd.testing.assert_series_equal(
            daily_ic(frame, method=method), daily_ic(shuffled, method=method), atol=1e-12
        )


def test_daily_ic_skips_thin_dates_after_dropping_nans():
    five = [1.0, 2.0, 3.0, 4.0, 5.0]
    frame = _panel(
        {
            DATES[0]: (five, five),
            DATES[1]: ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]),  # 4 names
            DATES[2]: (five, [1.0, 2.0, np.nan, 4.0, 5.0]),  # 4 valid names
        }
    )
    assert list(daily_ic(frame, min_names=5).index) == [DATES[0]]
    assert list(daily_ic(frame, min_names=4).index) == list(DATES)
    assert list(daily_ic(frame, method="spearman", min_names=5).index) == [DATES[0]]


def test_daily_ic_skips_constant_cross_sections():
    varying = [1.0, 2.0, 3.0, 4.0, 5.0]
    frame = _panel(
        {
            DATES[0]: ([0.1] * 5, varying),  # constant prediction, inexact in binary
            DATES[1]: (varying, [7.3] * 5),  # constant label
            DATES[2]: (varying, varying),
        }
    )
    for method in ("pearson", "spearman"):
        assert list(daily_ic(frame, method=method).index) == [DATES[2]]


def test_daily_ic_empty_and_bad_method():
    empty = _known_panel().iloc[:0]
    result = daily_ic(empty, method="spearman")
    assert result.empty and result.name == "rank_ic"
    with pytest.raises(ValueError, match="method"):
        daily_ic(_known_panel(), method="kendall")


# --- Newey-West and summaries ---------------------------------------------------------------


@pytest.mark.parametrize("lag", [0, 1, 5, 10])
@pytest.mark.parametrize("use_correction", [False, True])
def test_newey_west_matches_statsmodels(lag, use_correction):
    rng = np.random.default_rng(lag)
    # Overlapping-label-like series: a moving sum makes it autocorrelated.
    series = np.convolve(rng.standard_normal(260), np.ones(10), mode="valid") * 0.01 + 0.003
    fit = sm.OLS(series, np.ones_like(series)).fit(
        cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": use_correction}
    )
    tstat = newey_west_tstat(pd.Series(series), lag, use_correction=use_correction)
    assert tstat == pytest.approx(fit.tvalues[0], rel=1e-10)


def test_newey_west_default_is_statsmodels_default():
    series = np.random.default_rng(7).standard_normal(100) + 0.2
    fit = sm.OLS(series, np.ones_like(series)).fit(cov_type="HAC", cov_kwds={"maxlags": 10})
    assert newey_west_tstat(series, 10) == pytest.approx(fit.tvalues[0], rel=1e-10)


def test_newey_west_with_gaps_counts_lags_in_dates():
    """One regime's dates are runs scattered in time: with gaps_in_time two values k dates apart
    are k lags apart (a brute-force double sum over date positions), not neighbours."""
    rng = np.random.default_rng(4)
    x = np.convolve(rng.standard_normal(400), np.ones(8) / 8, mode="same") + 0.05
    assert newey_west_tstat(x, 10, gaps_in_time=True) == pytest.approx(newey_west_tstat(x, 10))
    kept = np.repeat(rng.random(40) < 0.5, 10)          # runs of 10 dates in or out
    gapped = np.where(kept, x, np.nan)
    z = np.where(kept, gapped - np.nanmean(gapped), 0.0)
    lags = np.abs(np.subtract.outer(np.arange(400), np.arange(400)))
    weights = np.clip(1.0 - lags / 11.0, 0.0, None)
    expected = np.nanmean(gapped) / math.sqrt(z @ weights @ z / kept.sum() ** 2)
    assert newey_west_tstat(gapped, 10, gaps_in_time=True) == pytest.approx(expected, rel=1e-10)
    assert newey_west_tstat(gapped, 10) != pytest.approx(expected, rel=1e-3)  # concatenated


def test_newey_west_degenerate_inputs():
    assert math.isnan(newey_west_tstat(pd.Series([], dtype=float), 10))
    assert math.isnan(newey_west_tstat(pd.Series([0.1]), 10))
    assert math.isnan(newey_west_tstat(pd.Series([0.1, 0.1, 0.1]), 1))  # zero variance
    assert math.isfinite(newey_west_tstat(pd.Series([0.1, 0.3, np.nan, 0.2]), 2))
    # no more values than the lag: the window spans the sample (two dates gave a t of 4.0)
    assert math.isnan(newey_west_tstat(pd.Series([0.1, 0.3, np.nan, 0.2]), 3))
    assert math.isnan(newey_west_tstat([0.1, 0.3], 10))
    gapped = np.r_[0.1, np.full(20, np.nan), 0.3, 0.2]  # 23 dates, 3 values
    assert math.isnan(newey_west_tstat(gapped, 10, gaps_in_time=True))


def test_ic_summary_values():
    ic = pd.Series([0.1, -0.05, 0.2, 0.03, np.nan])
    summary = ic_summary(ic, nw_lag=2)
    values = np.array([0.1, -0.05, 0.2, 0.03])
    assert summary["mean"] == pytest.approx(values.mean())
    assert summary["std"] == pytest.approx(values.std(ddof=1))
    assert summary["icir"] == pytest.approx(values.mean() / values.std(ddof=1))
    assert summary["tstat"] == pytest.approx(newey_west_tstat(values, 2))
    assert summary["hit_rate"] == pytest.approx(0.75)
    assert summary["n_dates"] == 4
    # a date with IC exactly 0 is no hit (DESIGN §4: the share of dates with IC > 0)
    assert ic_summary(pd.Series([0.1, 0.0, -0.1, 0.0]), nw_lag=2)["hit_rate"] == 0.25


def test_ic_summary_empty_and_single_date():
    empty = ic_summary(pd.Series([], dtype=float), nw_lag=10)
    assert empty["n_dates"] == 0
    assert all(math.isnan(empty[k]) for k in ("mean", "std", "icir", "tstat", "hit_rate"))
    single = ic_summary(pd.Series([0.04]), nw_lag=10)
    assert single["n_dates"] == 1
    assert single["mean"] == pytest.approx(0.04)
    assert single["hit_rate"] == 1.0
    assert all(math.isnan(single[k]) for k in ("std", "icir", "tstat"))


def test_prediction_scores_consistent_with_parts():
    frame = _random_panel(seed=2)
    scores = prediction_scores(frame, min_names=5, nw_lag=10)
    ic = ic_summary(daily_ic(frame, method="pearson"), 10)
    rank = ic_summary(daily_ic(frame, method="spearman"), 10)
    assert set(scores) == {
        "ic",
        "rank_ic",
        "icir",
        "rank_icir",
        "ic_tstat",
        "rank_ic_tstat",
        "hit_rate",
        "rank_hit_rate",
        "n_dates",
    }
    assert scores["ic"] == pytest.approx(ic["mean"])
    assert scores["rank_ic"] == pytest.approx(rank["mean"])
    assert scores["icir"] == pytest.approx(ic["icir"])
    assert scores["rank_icir"] == pytest.approx(rank["icir"])
    assert scores["ic_tstat"] == pytest.approx(ic["tstat"])
    assert scores["rank_ic_tstat"] == pytest.approx(rank["tstat"])
    # DESIGN section 4: the hit rate is the share of dates with IC > 0; RankIC's is its own key
    assert scores["hit_rate"] == pytest.approx(ic["hit_rate"])
    assert scores["rank_hit_rate"] == pytest.approx(rank["hit_rate"])
    assert ic["hit_rate"] != rank["hit_rate"]  # the panel tells the two apart
    assert scores["n_dates"] == rank["n_dates"] == 30


def test_prediction_scores_and_mean_rank_ic_on_empty_input():
    empty = _random_panel().iloc[:0]
    scores = prediction_scores(empty)
    assert scores["n_dates"] == 0
    assert math.isnan(scores["ic"]) and math.isnan(scores["rank_ic_tstat"])
    assert math.isnan(mean_rank_ic(empty))


def test_mean_rank_ic_is_mean_of_daily_rank_ic():
    frame = _known_panel()
    assert mean_rank_ic(frame) == pytest.approx(daily_ic(frame, method="spearman").mean())
    frame = _random_panel(seed=4)
    assert mean_rank_ic(frame, min_names=5) == pytest.approx(
        daily_ic(frame, method="spearman", min_names=5).mean()
    )


# --- quantiles ------------------------------------------------------------------------------


def test_quantile_labels_equal_buckets_and_shared_ties():
    frame = _panel({DATES[0]: (np.arange(10.0)[::-1], np.zeros(10))})
    labels = quantile_labels(frame, "prediction", 5)
    assert labels.tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    tied = _panel({DATES[0]: ([1.0, 1.0, 1.0, 1.0, 2.0], np.zeros(5))})
    labels = quantile_labels(tied, "prediction", 5)
    assert labels.iloc[:4].nunique() == 1 and labels.iloc[4] == 5


def test_quantile_mean_returns_monotone_on_planted_linear_signal():
    rng = np.random.default_rng(5)
    frame = _random_panel(seed=5).dropna()
    frame["label"] = 0.02 * frame["prediction"] + 0.001 * rng.standard_normal(len(frame))
    means = quantile_mean_returns(frame, n_quantiles=5)
    assert means.index.tolist() == [1, 2, 3, 4, 5]
    assert means.is_monotonic_increasing and means.iloc[-1] > means.iloc[0]


def test_quantile_mean_returns_exact_small_case():
    frame = _panel(
        {
            DATES[0]: ([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]),
            DATES[1]: ([4, 3, 2, 1], [0.0, 0.0, 0.0, 0.2]),
        }
    )
    means = quantile_mean_returns(frame, n_quantiles=2)
    # Date 1: low = {0.1, 0.2}, high = {0.3, 0.4}; date 2: low = {0.0, 0.2}, high = {0.0, 0.0}.
    assert means.tolist() == pytest.approx([0.125, 0.175])


def test_quantile_mean_returns_empty():
    means = quantile_mean_returns(_known_panel().iloc[:0], n_quantiles=3)
    assert len(means) == 3 and means.isna().all()


# --- forward returns and IC decay -----------------------------------------------------------


def _prices(seed: int = 6, n_dates: int = 40, n_names: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2023-01-02", periods=n_dates)
    close = pd.DataFrame(
        100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_dates, n_names)), axis=0)),
        index=pd.Index(dates, name="date"),
        columns=pd.Index([f"T{i}" for i in range(n_names)], name="ticker"),
    )
    return close.stack().rename("close").reset_index()


def test_forward_returns_timing():
    prices = _prices()
    close = prices.pivot(index="date", columns="ticker", values="close")
    fwd = forward_returns(prices, horizon=3, execution_delay=1).set_index(["date", "ticker"])
    t0 = close.index[5]
    # close(t+1) -> close(t+1+3)
    expected = close.iloc[9]["T2"] / close.iloc[6]["T2"] - 1
    assert fwd.loc[(t0, "T2"), "fwd_ret"] == pytest.approx(expected)
    assert fwd.index.get_level_values("date").max() == close.index[-5]


def test_ic_decay_peaks_at_the_planted_horizon():
    prices = _prices()
    target = forward_returns(prices, horizon=2, execution_delay=1)
    predictions = target.rename(columns={"fwd_ret": "prediction"})
    decay = ic_decay(predictions, prices, horizons=[1, 2, 5], execution_delay=1, min_names=5)
    assert decay.index.tolist() == [1, 2, 5]
    assert list(decay.columns) == ["ic", "rank_ic", "n_dates"]
    assert decay.loc[2, "ic"] == pytest.approx(1.0)
    assert decay.loc[2, "rank_ic"] == pytest.approx(1.0)
    assert decay.loc[1, "rank_ic"] < 1.0 and decay.loc[5, "rank_ic"] < 1.0
    # Longer horizons run out of realised prices sooner.
    assert decay.loc[5, "n_dates"] < decay.loc[2, "n_dates"]


def test_constant_cross_sections_flags_a_learner_that_ranks_nothing():
    from bma_quant.core.evaluation.metrics import constant_cross_sections

    dates = np.repeat(pd.bdate_range("2021-01-04", periods=3).to_numpy(), 4)
    constant_per_date = np.repeat([0.1, -0.2, 0.3], 4)  # an intercept that moves by date
    assert constant_cross_sections(constant_per_date, dates)
    assert constant_cross_sections(constant_per_date + 1e-15, dates)  # float noise
    ranked = constant_per_date.copy()
    ranked[5] += 1e-4  # one date ranks its names
    assert not constant_cross_sections(ranked, dates)
    assert constant_cross_sections(np.full(12, np.nan), dates)  # nothing to rank at all


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("ties", [False, True])
def test_dense_grouped_ranks_equal_scipy_per_group(shuffled, ties):
    """The grid ranking (the fast path) gives scipy's average ranks within each group, for rows in
    any order, with ties, and with groups of very different sizes."""
    from bma_quant.core.evaluation.metrics import _dense_grouped_ranks, _sorted_grouped_ranks

    rng = np.random.default_rng(3)
    codes = np.repeat(np.arange(40), rng.integers(1, 30, 40))
    if shuffled:
        codes = rng.permutation(codes)
    values = rng.integers(0, 4, codes.size).astype(float) if ties else rng.normal(size=codes.size)
    dense = _dense_grouped_ranks(codes, values)
    assert dense is not None
    expected = np.empty(codes.size)
    for code in np.unique(codes):
        expected[codes == code] = stats.rankdata(values[codes == code])
    np.testing.assert_array_equal(dense, expected)
    np.testing.assert_array_equal(_sorted_grouped_ranks(codes, values), expected)


def test_grouped_ranks_fall_back_to_one_sort_on_a_very_unbalanced_panel():
    from bma_quant.core.evaluation.metrics import _dense_grouped_ranks, _grouped_average_ranks

    codes = np.concatenate([np.zeros(1000, dtype=np.int64), np.arange(1, 200)])
    values = np.random.default_rng(0).normal(size=codes.size)
    assert _dense_grouped_ranks(codes, values) is None  # a 200 x 1000 grid for 1,199 values
    np.testing.assert_array_equal(_grouped_average_ranks(codes, values)[:1000],
                                  stats.rankdata(values[:1000]))


def test_daily_rank_ic_columns_equals_daily_ic_column_by_column():
    from bma_quant.core.evaluation.metrics import daily_rank_ic_columns

    rng = np.random.default_rng(5)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=30), 12)
    X = rng.normal(size=(dates.size, 3))
    X[rng.random(dates.size) < 0.2, 1] = np.nan  # one column with gaps: ranked on its own rows
    X[:, 2] = np.round(X[:, 2])                   # ties
    y = X[:, 0] + rng.normal(size=dates.size)
    y[rng.random(dates.size) < 0.1] = np.nan
    table = daily_rank_ic_columns(dates, X, y, min_names=5)
    for j in range(3):
        frame = pd.DataFrame({"date": dates, "prediction": X[:, j], "label": y})
        expected = daily_ic(frame, method="spearman", min_names=5)
        got = table.iloc[:, j].dropna()
        pd.testing.assert_index_equal(got.index, expected.index)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)


def test_ic_decay_equals_daily_ic_of_merged_forward_returns():
    """The grid computation of ic_decay gives the mean daily IC of (prediction, forward return)
    pairs joined on (date, ticker), with missing predictions and prices left out."""
    prices = _prices()
    rng = np.random.default_rng(11)
    predictions = prices[["date", "ticker"]].assign(prediction=rng.normal(size=len(prices)))
    predictions = predictions.sample(frac=0.8, random_state=1)  # some names missing on some dates
    decay = ic_decay(predictions, prices, horizons=[1, 3], execution_delay=1, min_names=5)
    for k in (1, 3):
        merged = predictions.merge(forward_returns(prices, k, 1), on=["date", "ticker"])
        for method, column in (("pearson", "ic"), ("spearman", "rank_ic")):
            expected = daily_ic(merged, "prediction", "fwd_ret", method=method, min_names=5)
            assert decay.loc[k, column] == pytest.approx(expected.mean(), abs=1e-12)
        assert decay.loc[k, "n_dates"] == len(expected)


def test_ic_decay_on_shared_forward_grids_equals_ic_decay_per_model():
    """Forward returns built once and shared (their ranks reused across models that fill the
    same cells) give exactly each model's own ic_decay, also where some prices are missing."""
    prices = _prices()
    prices.loc[prices.sample(frac=0.05, random_state=3).index, "close"] = np.nan
    rng = np.random.default_rng(5)
    full = prices[["date", "ticker"]].assign(prediction=rng.normal(size=len(prices)))
    models = {"full": full, "same_cells": full.assign(prediction=-full["prediction"] ** 3),
              "sparse": full.sample(frac=0.7, random_state=2)}
    horizons = [1, 2, 5]
    forward = forward_return_grids(prices, horizons, execution_delay=1)
    for name, predictions in models.items():
        shared = ic_decay(predictions, None, horizons, 1, 5, forward=forward)
        own = ic_decay(predictions, prices, horizons, 1, 5)
        pd.testing.assert_frame_equal(shared, own, check_exact=True, obj=name)
        assert shared["n_dates"].gt(0).all()
    # "full" and "same_cells" fill the same cells: one set of forward ranks per horizon for both
    assert [len(forward._ranks[k]) for k in horizons] == [2, 2, 2]
