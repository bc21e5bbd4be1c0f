"""data_processing on small synthetic panels, in memory: layouts, prefix invariance, outputs."""

import logging

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.cv import folds_from_table
from bma_quant.core.data.synthetic import generate_synthetic_market, to_wide_close
from bma_quant.core.evaluation.backtest import holding_returns
from tests.support import deep_update, run_pipeline

logging.getLogger("kedro").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def market():
    return generate_synthetic_market(n_tickers=12, n_days=600, seed=3)


def _overrides(path, **periods):
    return {
        "data": {"raw_path": str(path), "index_path": None},
        "periods": {"dev_start": None, "test_fraction": 0.2, "test_start": None, **periods},
        "cv": {"n_splits": 3, "min_train_days": 120},
    }


def test_wide_and_long_inputs_give_the_same_panel(tmp_path, market):
    long_path = tmp_path / "long.parquet"
    wide_path = tmp_path / "wide.csv"
    market.panel[["date", "ticker", "close"]].to_parquet(long_path)
    to_wide_close(market.panel).to_csv(wide_path, index=False)
    from_long = run_pipeline("data_processing", {}, _overrides(long_path))
    from_wide = run_pipeline("data_processing", {}, _overrides(wide_path))
    pd.testing.assert_frame_equal(from_long["primary_panel"], from_wide["primary_panel"])
    pd.testing.assert_frame_equal(from_long["labels"], from_wide["labels"])
    assert from_long["date_split"] == from_wide["date_split"]


def test_outputs_follow_the_contract(tmp_path, market):
    path = tmp_path / "panel.parquet"
    market.panel.to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path))
    panel = out["primary_panel"]
    assert {"date", "ticker", "close", "open", "high", "low", "volume", "sector", "signal_1",
            "ret_1d"} <= set(panel.columns)
    assert len(panel) == 12 * 600
    assert panel.sort_values(["date", "ticker"]).index.equals(panel.index)
    split = out["date_split"]
    assert pd.Timestamp(split["dev_end"]) < pd.Timestamp(split["test_start"])
    folds = folds_from_table(out["cv_folds"])
    assert len(folds) == 3
    assert max(f.test_dates.max() for f in folds) <= pd.Timestamp(split["dev_end"])
    metrics = out["data_processing_metrics"]
    for name in ("rows_in", "rows_out", "tickers", "dates", "coverage", "missing_days",
                 "suspected_splits", "stale_streaks", "dropped_tickers"):
        assert name in metrics, name
    assert metrics["tickers"]["value"] == 12
    assert out["market"]["source"].iloc[0] == "equal_weight"
    # the label is the forward return of the synthetic closes
    close = market.panel.pivot(index="date", columns="ticker", values="close")
    expected = close.shift(-11) / close.shift(-1) - 1
    got = out["labels"].pivot(index="date", columns="ticker", values="label")
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-12)


def _panel_with_defects(market) -> pd.DataFrame:
    """Real-data defects and universe changes: gaps, an unadjusted split, a late listing, a
    delisting, names whose trailing coverage hovers around the threshold, factor gaps."""
    panel = market.panel.copy()
    day = np.sort(panel["date"].unique())
    prices = ["open", "high", "low", "close"]
    gaps = panel.sample(frac=0.03, random_state=0).index
    panel.loc[gaps, prices] = np.nan
    t3 = panel["ticker"] == "T0003"
    # a flat day then a 2:1 split that was not adjusted for
    panel.loc[t3 & (panel["date"] == day[300]), "close"] = panel.loc[
        t3 & (panel["date"] == day[299]), "close"].to_numpy()
    panel.loc[t3 & (panel["date"] >= day[300]), prices] /= 2.0
    # a real -50 % day (exactly 2:1, flat the next day) before a rebound: at the time, it looks
    # like a split
    t4 = panel["ticker"] == "T0004"
    level = float(panel.loc[t4 & (panel["date"] == day[399]), "close"].iloc[0])
    panel.loc[t4 & panel["date"].isin(day[400:402]), prices] = level / 2.0
    panel = panel[~((panel["ticker"] == "T0005") & (panel["date"] < day[150]))]  # lists late
    panel = panel[~((panel["ticker"] == "T0006") & (panel["date"] > day[350]))]  # delists
    rng = np.random.default_rng(7)
    for ticker in ("T0007", "T0008"):  # ~30% of days missing: coverage crosses 0.7 both ways
        rows = panel.index[(panel["ticker"] == ticker) & (rng.random(len(panel)) < 0.3)]
        panel.loc[rows, prices] = np.nan
    panel.loc[panel.sample(frac=0.05, random_state=1).index, ["volume", "signal_1"]] = np.nan
    return panel.dropna(subset=["close"]).reset_index(drop=True)


def test_processing_is_prefix_invariant(tmp_path, market):
    """The panel cut at several end dates gives, for every date up to the cut, the same primary
    panel (rows, universe, imputed values), market and labels as the whole panel (DESIGN §3).
    The split is not pinned: each cut has its own test period, which must not matter."""
    panel = _panel_with_defects(market)
    full_path = tmp_path / "full.parquet"
    panel.to_parquet(full_path)
    overrides = _overrides(full_path)
    overrides["processing"] = {"eligibility": {"window_days": 60, "min_history_days": 20}}
    # folds fit on the shortest cut: 1 tuning + 1 out-of-fold fold
    overrides["cv"] = {"n_splits": 2, "min_train_days": 40, "n_tuning_folds": 1}
    full = run_pipeline("data_processing", {}, overrides)
    primary = full["primary_panel"]
    report = full["data_quality_report"]
    assert report["suspected_splits"] and report["imputed_values"] > 0
    assert "T0005" in report["late_listings"] and "T0006" in report["delistings"]
    dates = np.sort(primary["date"].unique())
    # no rows for a delisted name once its forward fill has run out: they would carry nothing
    gone = primary[primary["ticker"] == "T0006"]
    last_close = int(np.searchsorted(dates, np.datetime64(
        panel.loc[panel["ticker"] == "T0006", "date"].max())))
    assert gone["date"].max() == dates[last_close + 5]  # processing.ffill_limit
    assert gone["close"].notna().all()
    # its last rows are labelled with the return to its last trade (temporal.
    # label_exit_at_last_trade): up to the day before it (entry at t + 1, execution_delay_days)
    labelled = full["labels"].merge(gone[["date", "ticker"]])
    labelled = labelled.set_index("date")["label"]
    assert labelled.loc[:dates[last_close - 1]].iloc[-20:].notna().all()
    assert labelled.loc[dates[last_close + 1]:].isna().all()
    # cuts inside the split's and the crash's confirmation windows (processing.split_detection
    # .confirm_days): the repair must not read the closes after the cut
    raw_days = np.sort(panel["date"].unique())  # the file's calendar (strict mode drops some)
    for day in (120, 170, 298, 300, 302, 340, 360, 398, 400, 480):
        cut_date = raw_days[day]
        position = int(np.searchsorted(dates, cut_date, side="right")) - 1
        cut_path = tmp_path / f"cut_{day}.parquet"
        panel[panel["date"] <= cut_date].to_parquet(cut_path)
        cut = run_pipeline("data_processing", {}, {**overrides, "data": {
            "raw_path": str(cut_path), "index_path": None}})
        keep = primary["date"] <= cut_date
        pd.testing.assert_frame_equal(primary[keep].reset_index(drop=True), cut["primary_panel"])
        pd.testing.assert_frame_equal(
            full["market"][full["market"]["date"] <= cut_date], cut["market"]
        )
        # labels are known once their window has closed: dates <= cut - (d + h)
        label_cut = dates[position - 11]
        fl = full["labels"][full["labels"]["date"] <= label_cut].reset_index(drop=True)
        cl = cut["labels"][cut["labels"]["date"] <= label_cut].reset_index(drop=True)
        pd.testing.assert_frame_equal(fl, cl)
    # T0004's real crash and rebound: withheld while undecided, but its daily returns still
    # compound to the real move over the window (the backtest earns it)
    t4 = primary[primary["ticker"] == "T0004"].set_index("date")
    window = t4.loc[raw_days[399]:raw_days[404]]
    assert window["close"].isna().any()
    grown = float((1 + window["ret_1d"].iloc[1:].fillna(0.0)).prod())
    assert grown == pytest.approx(window["close"].iloc[-1] / window["close"].iloc[0])
    # the hovering names really move in and out of the universe on coverage, not only on gaps
    eligible = primary.pivot(index="date", columns="ticker", values="eligible")
    eligible = eligible.fillna(False).astype(bool)  # no row before a name lists
    hovering = eligible[["T0007", "T0008"]].iloc[60:]  # past the first window and min history
    has_close = primary.pivot(index="date", columns="ticker", values="close").notna()
    assert (hovering != has_close[["T0007", "T0008"]].iloc[60:]).any().all()
    assert (hovering.astype(int).diff().abs().sum() > 10).all()


def test_index_file_feeds_the_market_series(tmp_path, market):
    path, index_path = tmp_path / "p.parquet", tmp_path / "index.csv"
    market.panel.to_parquet(path)
    market.market.to_csv(index_path, index=False)
    overrides = _overrides(path)
    overrides["data"]["index_path"] = str(index_path)
    out = run_pipeline("data_processing", {}, overrides)
    m = out["market"]
    assert m["source"].iloc[0] == "index"
    level = market.market.set_index("date")["level"]
    np.testing.assert_allclose(m["market_return"].iloc[1:], (level / level.shift(1) - 1).iloc[1:])


def test_an_index_level_no_market_moves_to_is_warned_about_with_its_date(tmp_path, market,
                                                                         caplog):
    """A bad print (one level x100) and a change of units (/1000 from a date on) passed without a
    word into every market feature and the regime detector; warned about now, naming the dates,
    as a price's unexplained move is. A real index's moves are not."""
    path, index_path = tmp_path / "p.parquet", tmp_path / "index.csv"
    market.panel.to_parquet(path)
    index = market.market[["date", "level"]].copy()
    dates = index["date"]
    index.loc[dates == dates.iloc[300], "level"] *= 100
    index.loc[dates >= dates.iloc[500], "level"] /= 1000
    index.to_csv(index_path, index=False)
    overrides = _overrides(path)
    overrides["data"]["index_path"] = str(index_path)
    with caplog.at_level(logging.WARNING):
        run_pipeline("data_processing", {}, overrides)
    day = lambda i: str(pd.Timestamp(dates.iloc[i]).date())  # noqa: E731
    assert "the market index (data.index_path) moves more than" in caplog.text
    assert (f"3 time(s), the largest: {day(300)} x100.9, {day(500)} /1000, {day(301)} /100"
            in caplog.text)
    caplog.clear()
    market.market.to_csv(index_path, index=False)
    with caplog.at_level(logging.WARNING):
        run_pipeline("data_processing", {}, overrides)
    assert "moves more than" not in caplog.text
    caplog.clear()  # its own bound (a crypto index moves more than a stock's split bound)
    index.to_csv(index_path, index=False)
    with caplog.at_level(logging.WARNING):
        run_pipeline("data_processing", {}, {**overrides, "processing": {"index_jump_warning": None}})
    assert "moves more than" not in caplog.text


def test_a_missing_last_print_and_a_zero_volume_column_are_reported_not_misread(
        tmp_path, market, caplog):
    """A name without a row on the file's last date is still forward filled: it is reported as
    missing at the end, not as a delisting, and is out of that date's cross-section. A name whose volume is zero on every date (a price-only
    export that filled the column) is warned about: its volume features carry nothing."""
    panel = market.panel.copy()
    last = panel["date"].max()
    panel = panel[~((panel["ticker"] == "T0001") & (panel["date"] == last))]
    panel.loc[panel["ticker"] == "T0002", "volume"] = 0.0
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    report = out["data_quality_report"]
    assert "T0001" not in report["delistings"] and list(report["missing_at_end"]) == ["T0001"]
    assert report["no_volume"] == ["T0002"]
    primary = out["primary_panel"]
    row = primary[(primary["ticker"] == "T0001") & (primary["date"] == last)]
    # its last price is carried forward (features, labels), but no close of its own: not scored
    assert row["close"].notna().item() and not row["eligible"].item()
    text = caplog.text
    assert "1 name(s) have no close on the file's last date (e.g. T0001 (last close" in text
    assert "out of those dates' cross-section and get no score" in text
    assert "1 name(s) report zero or no volume on every date they have a close (e.g. T0002)" in text
    # a file whose whole volume column is zeros says so once, for all names
    panel["volume"] = 0
    panel.to_parquet(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    assert len(out["data_quality_report"]["no_volume"]) == panel["ticker"].nunique()
    assert "all names report zero or no volume" in caplog.text


def test_a_frozen_price_does_not_count_as_coverage(tmp_path, market):
    """A name whose price froze for 100 dates (a halt exported as copied closes): cleaning masks
    the stale prices beyond stale.mask_after, and trailing coverage does not count them, so the
    name is not back in the cross-section on its first day of trading but once its coverage has
    recovered. The serving chain's cleaner decides the same on a slice."""
    from bma_quant.serving.chain import PanelCleaner

    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    frozen = (panel["ticker"] == "T0004") & panel["date"].between(dates[300], dates[399])
    first = (panel["ticker"] == "T0004") & (panel["date"] == dates[300])
    # a frozen feed copies the volume too (a fresh volume would show trades at that price)
    panel.loc[frozen, ["close", "volume"]] = panel.loc[first, ["close", "volume"]].to_numpy()
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    processing = {"eligibility": {"window_days": 60, "min_history_days": 20},
                  "stale": {"min_streak": 5, "mask_after": 20}}
    out = run_pipeline("data_processing", {}, {**_overrides(path), "processing": processing})
    primary = out["primary_panel"]
    eligible = primary.pivot(index="date", columns="ticker", values="eligible")["T0004"]
    assert not eligible.loc[dates[322]:dates[399]].any()  # masked: no close
    back = eligible.loc[dates[400]:]
    # 60-date window, 0.7 coverage: 42 traded dates after the 80 masked ones
    assert not back.iloc[:41].any() and back.iloc[42:].all()
    # the chain's cleaner on a slice with a full window of history before the return
    from tests.support import project_params
    params = project_params()["processing"]
    params = {**params, **processing, "eligibility": processing["eligibility"]}
    cleaner = PanelCleaner.from_params(panel["ticker"].unique(), params,
                                       out["data_quality_report"]["first_close"])
    sliced = cleaner.clean(panel[panel["date"] >= dates[200]].reset_index(drop=True))
    chain_eligible = sliced.pivot(index="date", columns="ticker", values="eligible")["T0004"]
    pd.testing.assert_series_equal(chain_eligible.loc[dates[300]:], eligible.loc[dates[300]:],
                                   check_names=False)


def test_an_unchanged_close_that_traded_is_no_stale_price(tmp_path, market, caplog):
    """A penny name a tick above zero trades at one close for weeks, with a fresh volume each
    day: its closes were masked as stale (two names left most cross-sections, and nothing was
    said). A fresh volume is a trade; a copied or zero volume is not, and the closes masked on
    the dates the run uses are warned about with the names."""
    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    window = panel["date"].between(dates[300], dates[399])
    for name in ("T0003", "T0004"):
        rows = window & (panel["ticker"] == name)
        panel.loc[rows, ["open", "high", "low", "close"]] = 0.002
    copied = window & (panel["ticker"] == "T0004")
    panel.loc[copied, "volume"] = panel.loc[copied, "volume"].iloc[0]
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    processing = {"stale": {"min_streak": 5, "mask_after": 20}}
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, {**_overrides(path), "processing": processing})
    close = out["primary_panel"].pivot(index="date", columns="ticker", values="close")
    assert close.loc[dates[300]:dates[399], "T0003"].notna().all()  # traded: kept
    assert close.loc[dates[321]:dates[399], "T0004"].isna().all()  # a frozen feed: masked
    masked = out["data_quality_report"]["stale"]["masked_in_use"]
    assert masked == {"closes": 79, "names": 1, "most": {"T0004": 79}}
    assert "79 close(s) of 1 name(s) from periods.dev_start on were masked as stale" in caplog.text
    assert "(most: T0004 79)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the closes alone, as before
        out = run_pipeline("data_processing", {}, {**_overrides(path), "processing": {
            "stale": {**processing["stale"], "volume_trades": False}}})
    assert out["data_quality_report"]["stale"]["masked_in_use"]["names"] == 2


def _assert_serving_decides_the_same(panel: pd.DataFrame, overrides: dict, out: dict,
                                     slice_from, compare_from) -> None:
    """The serving chain's cleaner, built as a trained chain builds it, gives the training
    cross-section on a slice of the file from `slice_from` (compared after its warm-up)."""
    from bma_quant.serving.chain import PanelCleaner
    from tests.support import deep_update, project_params

    params = deep_update(project_params(), overrides)["processing"]
    report = out["data_quality_report"]
    cleaner = PanelCleaner.from_params(panel["ticker"].unique(), params, report["first_close"],
                                       report["first_volume"])
    sliced = cleaner.clean(panel[panel["date"] >= slice_from].reset_index(drop=True))
    # a date without a row (training does not store a name's dates without any value) is out
    eligible = out["primary_panel"].pivot(index="date", columns="ticker", values="eligible")
    served = sliced.pivot(index="date", columns="ticker", values="eligible")
    pd.testing.assert_frame_equal(served.loc[compare_from:].fillna(False).astype(bool),
                                  eligible.loc[compare_from:].fillna(False).astype(bool),
                                  check_names=False)
    # and the same values where training has the name in the cross-section: the cleaned close,
    # the daily return (after split repairs and withheld windows) and the imputed user factors
    primary = out["primary_panel"]
    values = ["close", "ret_1d", *[c for c in primary.columns if c in sliced.columns
                                   and c.startswith(("signal_", "noise_"))]]
    kept = primary.loc[primary["eligible"].astype(bool) & (primary["date"] >= compare_from)]
    both = kept[["date", "ticker", *values]].merge(sliced[["date", "ticker", *values]],
                                                    on=["date", "ticker"], how="left",
                                                    suffixes=("", "_served"))
    for column in values:
        np.testing.assert_allclose(both[f"{column}_served"].to_numpy(dtype=float),
                                   both[column].to_numpy(dtype=float), rtol=1e-12,
                                   equal_nan=True, err_msg=column)


def test_suspended_rows_are_out_of_the_cross_section_in_training_and_serving(tmp_path, market,
                                                                            caplog):
    """An A-share style suspension: T0005's rows from date 300 to 311 carry the close of date
    299 and volume 0, and its rows of dates 312-313 are missing (the fill's copies: still
    suspended). The name is out of the cross-section on those dates (no training row, no score),
    back on its first traded day, and the serving chain's cleaner decides the same on a slice in
    which T0005 never shows a positive volume (its volume is 0 from date 100 on, with moving
    closes: quotes). A zero-volume day whose close moved (a quote) stays in."""

    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    t5 = panel["ticker"] == "T0005"
    level = panel.loc[t5 & (panel["date"] == dates[299]), "close"].item()
    halted = t5 & panel["date"].between(dates[300], dates[311])
    panel.loc[halted, ["open", "high", "low", "close"]] = level
    panel.loc[t5 & panel["date"].between(dates[100], dates[311]), "volume"] = 0.0
    panel.loc[(panel["ticker"] == "T0006") & (panel["date"] == dates[350]), "volume"] = 0.0
    panel = panel[~(t5 & panel["date"].isin(dates[312:314]))].reset_index(drop=True)
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    eligible = out["primary_panel"].pivot(index="date", columns="ticker", values="eligible")
    assert eligible["T0005"].loc[dates[290]:dates[299]].all()
    assert not eligible["T0005"].loc[dates[300]:dates[313]].any()
    assert eligible["T0005"].loc[dates[314]:dates[330]].all()
    assert eligible["T0006"].loc[dates[350]]  # volume 0 but the close moved
    # nor can a backtest trade T0005 there: a held position is frozen until date 314
    tradable = out["primary_panel"].pivot(index="date", columns="ticker", values="tradable")
    assert tradable["T0005"].loc[dates[290]:dates[299]].all()
    assert not tradable["T0005"].loc[dates[300]:dates[313]].any()
    assert tradable["T0005"].loc[dates[314]] and tradable["T0006"].loc[dates[350]]
    untraded = out["data_quality_report"]["untraded"]
    assert (untraded["rows"], untraded["names"]) == (14, 1)
    assert untraded["examples"] == [f"T0005 from {pd.Timestamp(dates[300]).date()} (14 date(s))"]
    assert "14 date(s) of 1 name(s) are not traded: volume 0 and the close of the day before" \
        in caplog.text
    # T0005's positive volumes all lie before the slice: first_volume says it reported volume
    _assert_serving_decides_the_same(panel, {}, out, dates[150], dates[250])
    off = run_pipeline("data_processing", {}, {**_overrides(path),
                                               "processing": {"untraded_zero_volume": False}})
    assert off["primary_panel"].pivot(index="date", columns="ticker",
                                      values="eligible")["T0005"].loc[dates[300]:dates[311]].all()


def test_zero_volume_rows_whose_close_moved_are_reported_and_can_be_taken_as_untraded(
        tmp_path, market, caplog):
    """T0006 prints volume 0 with a moving close on dates 350-352 (a quote: the bid / ask
    midpoint on a day nothing traded). By default the rows are reported and warned about but
    stay traded; with processing.untraded_zero_volume_moves they are out of the cross-section
    and not tradable, and the serving chain's cleaner decides the same."""
    from tests.support import deep_update

    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    quoted = (panel["ticker"] == "T0006") & panel["date"].isin(dates[350:353])
    panel.loc[quoted, "volume"] = 0.0
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    moves = out["data_quality_report"]["zero_volume_moves"]
    assert (moves["rows"], moves["names"]) == (3, 1)
    assert moves["examples"] == [f"T0006 from {pd.Timestamp(dates[350]).date()} (3 date(s))"]
    assert "3 row(s) of 1 name(s) have volume 0 but a close that moved" in caplog.text
    assert "taken as traded" in caplog.text
    primary = out["primary_panel"].set_index(["date", "ticker"])
    assert primary.loc[(dates[350], "T0006"), "eligible"]
    assert primary.loc[(dates[350], "T0006"), "tradable"]
    overrides = deep_update(_overrides(path), {"processing": {"untraded_zero_volume_moves": True}})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        strict = run_pipeline("data_processing", {}, overrides)
    assert "not traded: out of the cross-section" in caplog.text
    eligible = strict["primary_panel"].pivot(index="date", columns="ticker", values="eligible")
    tradable = strict["primary_panel"].pivot(index="date", columns="ticker", values="tradable")
    assert not eligible["T0006"].loc[dates[350]:dates[352]].any()
    assert not tradable["T0006"].loc[dates[350]:dates[352]].any()
    assert eligible["T0006"].loc[dates[340]:dates[349]].all() and eligible["T0006"].loc[dates[353]]
    assert strict["data_quality_report"]["untraded"]["rows"] == 3
    _assert_serving_decides_the_same(panel, overrides, strict, dates[150], dates[300])


def test_a_gap_past_the_forward_fill_is_not_tradable_and_its_move_is_held_on_return(
        tmp_path, market):
    """T0007 has no rows for 10 dates (the fill covers 5): the filled and the empty dates are not
    tradable; ret_1d has no return on its first close back (as the market and serving read it),
    and a holder's return (the backtest's) is the whole move since its last close."""
    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    t7 = panel["ticker"] == "T0007"
    panel = panel[~(t7 & panel["date"].isin(dates[400:410]))].reset_index(drop=True)
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path))["primary_panel"]
    tradable = out.pivot(index="date", columns="ticker", values="tradable")["T0007"]
    assert tradable.loc[dates[390]:dates[399]].all() and tradable.loc[dates[410]]
    assert not tradable.loc[dates[400]:dates[409]].fillna(False).astype(bool).any()
    close = panel[panel["ticker"] == "T0007"].set_index("date")["close"]
    assert np.isnan(out[out["ticker"] == "T0007"].set_index("date")["ret_1d"].loc[dates[410]])
    held = holding_returns(out, 21)
    ret = held[held["ticker"] == "T0007"].set_index("date")["ret_1d"]
    assert ret.loc[dates[410]] == pytest.approx(close.loc[dates[410]] / close.loc[dates[399]] - 1)
    assert np.isnan(holding_returns(out, 9).set_index(["ticker", "date"])["ret_1d"].loc[
        ("T0007", dates[410])])
    assert tradable.loc[dates[:390]].dropna().astype(bool).mean() > 0.99


def test_a_minimum_dollar_volume_keeps_thin_names_out_in_training_and_serving(tmp_path, market):
    """T0003 trades a thousandth of its volume from date 300 to 450 (a median dollar volume of
    some 10^4 against >= 2.6 x 10^7 for every name otherwise): with
    processing.eligibility.min_dollar_volume 10^6 it is out of the cross-section once the
    trailing 21-date median falls below (date 311: the median of 21 dates) until it recovers,
    counted in the report; the serving chain's cleaner decides the same. Without a minimum
    nothing changes."""
    from tests.support import deep_update

    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    thin = (panel["ticker"] == "T0003") & panel["date"].between(dates[300], dates[450])
    panel.loc[thin, "volume"] /= 1000.0
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    overrides = deep_update(_overrides(path), {
        "processing": {"eligibility": {"min_dollar_volume": 1.0e6}}})
    out = run_pipeline("data_processing", {}, overrides)
    eligible = out["primary_panel"].pivot(index="date", columns="ticker", values="eligible")
    assert eligible["T0003"].loc[dates[280]:dates[309]].all()
    assert not eligible["T0003"].loc[dates[311]:dates[460]].any()
    assert eligible["T0003"].loc[dates[462]:dates[480]].all()
    assert eligible.drop(columns="T0003").loc[dates[200]:].all().all()
    assert 150 <= out["data_quality_report"]["below_min_dollar_volume_rows"] <= 152
    _assert_serving_decides_the_same(panel, overrides, out, dates[100], dates[360])
    free = run_pipeline("data_processing", {}, _overrides(path))
    assert free["primary_panel"].pivot(index="date", columns="ticker", values="eligible")[
        "T0003"].loc[dates[300]:dates[450]].all()
    assert free["data_quality_report"]["below_min_dollar_volume_rows"] == 0


def test_a_forward_filled_close_is_out_of_the_cross_section_in_training_and_serving(
        tmp_path, market):
    """T0004 misses three dates (a missing print or a halt exported without rows) and T0008
    stops 4 dates before the end: the forward fill carries their closes, but those dates are out
    of the cross-section, as a volume-0 suspension is (no training row, no score), counted as
    carried_rows_out; the name is back on its first close. The serving chain's cleaner decides
    the same. With eligibility.require_own_close false the copies stay in (as before)."""
    from tests.support import deep_update

    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    gap = (panel["ticker"] == "T0004") & panel["date"].isin(dates[400:403])
    stop = (panel["ticker"] == "T0008") & (panel["date"] >= dates[-4])
    panel = panel[~(gap | stop)].reset_index(drop=True)
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path))
    eligible = out["primary_panel"].pivot(index="date", columns="ticker", values="eligible")
    assert eligible["T0004"].loc[dates[380]:dates[399]].all()
    assert not eligible["T0004"].loc[dates[400]:dates[402]].any()
    assert eligible["T0004"].loc[dates[403]:dates[420]].all()
    assert not eligible["T0008"].loc[dates[-4]:].fillna(False).astype(bool).any()
    assert eligible["T0008"].loc[dates[-20]:dates[-5]].all()
    assert out["data_quality_report"]["carried_rows_out"] == 3 + 4
    # nothing traded there that the file knows of: volume 0, as in a volume-0 export of a halt
    volume = out["primary_panel"].pivot(index="date", columns="ticker", values="volume")
    assert (volume["T0004"].loc[dates[400]:dates[402]] == 0).all()
    assert (volume["T0004"].loc[dates[390]:dates[399]] > 0).all()
    _assert_serving_decides_the_same(panel, {}, out, dates[150], dates[380])
    from bma_quant.serving.chain import PanelCleaner
    from tests.support import project_params

    cleaner = PanelCleaner.from_params(panel["ticker"].unique(), project_params()["processing"],
                                       out["data_quality_report"]["first_close"])
    served = cleaner.clean(panel[panel["date"] >= dates[150]].reset_index(drop=True))
    served = served.pivot(index="date", columns="ticker", values="volume")
    assert (served["T0004"].loc[dates[400]:dates[402]] == 0).all()
    kept = run_pipeline("data_processing", {}, deep_update(
        _overrides(path), {"processing": {"eligibility": {"require_own_close": False}}}))
    kept_eligible = kept["primary_panel"].pivot(index="date", columns="ticker", values="eligible")
    assert kept_eligible["T0004"].loc[dates[400]:dates[402]].all()
    assert kept_eligible["T0008"].loc[dates[-4]:].all()
    assert kept["data_quality_report"]["carried_rows_out"] == 0
    copied = run_pipeline("data_processing", {}, deep_update(
        _overrides(path), {"processing": {"zero_carried_volume": False}}))["primary_panel"]
    copied = copied.pivot(index="date", columns="ticker", values="volume")["T0004"]
    assert (copied.loc[dates[400]:dates[402]] == copied.loc[dates[399]]).all()


def test_a_code_back_after_a_long_absence_is_seasoned_as_a_new_listing(tmp_path, market,
                                                                      caplog):
    """T0009 has no rows for 70 dates and comes back at three times its price (a code reused by
    another company): it is seasoned afresh, out of the cross-section for min_history_days (63)
    dates from its first close back, and the warning says so; the serving chain's cleaner decides
    the same. Without processing.eligibility.relist_after_days the old company's closes season it
    (72 % trailing coverage) and it is in on its first day back. A 40-date gap (T0010) is the
    same listing: back once covered."""
    from tests.support import deep_update

    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    t9 = panel["ticker"] == "T0009"
    panel.loc[t9 & (panel["date"] >= dates[370]), ["open", "high", "low", "close"]] *= 3.0
    t10 = panel["ticker"] == "T0010"
    panel = panel[~(t9 & panel["date"].isin(dates[300:370]))
                  & ~(t10 & panel["date"].isin(dates[300:340]))].reset_index(drop=True)
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    assert "after more than 63 dates without a row it is seasoned afresh" in caplog.text
    eligible = out["primary_panel"].pivot(index="date", columns="ticker", values="eligible")
    assert eligible["T0009"].loc[dates[280]:dates[299]].all()
    assert not eligible["T0009"].loc[dates[300]:dates[432]].fillna(False).astype(bool).any()
    assert eligible["T0009"].loc[dates[433]:dates[480]].all()
    assert eligible["T0010"].loc[dates[340]:dates[400]].all()
    _assert_serving_decides_the_same(panel, {}, out, dates[60], dates[380])
    # the new listing's first date, for its features (only the relisted listing has one)
    primary = out["primary_panel"]
    listed_from = primary.pivot(index="date", columns="ticker", values="listed_from")
    assert (listed_from["T0009"].loc[dates[370]:] == dates[370]).all()
    assert listed_from.drop(columns="T0009").isna().all().all()
    assert listed_from["T0009"].loc[:dates[369]].isna().all()
    assert out["data_quality_report"]["relistings"] == [
        {"ticker": "T0009", "listed_from": str(pd.Timestamp(dates[370]).date())}]
    from bma_quant.serving.chain import PanelCleaner
    from tests.support import project_params

    cleaner = PanelCleaner.from_params(panel["ticker"].unique(), project_params()["processing"],
                                       out["data_quality_report"]["first_close"])
    served = cleaner.clean(panel[panel["date"] >= dates[60]].reset_index(drop=True))
    served = served.pivot(index="date", columns="ticker", values="listed_from")
    pd.testing.assert_series_equal(served["T0009"].loc[dates[380]:],
                                   listed_from["T0009"].loc[dates[380]:], check_names=False)
    old = run_pipeline("data_processing", {}, deep_update(
        _overrides(path), {"processing": {"eligibility": {"relist_after_days": None}}}))
    assert old["primary_panel"].pivot(index="date", columns="ticker", values="eligible")[
        "T0009"].loc[dates[370]:dates[480]].all()
    assert "listed_from" not in old["primary_panel"]


def test_a_serving_slice_that_starts_in_a_relisted_codes_gap_sees_the_relisting(tmp_path):
    """T0009 has no rows from date 100 to 499: a slice from date 420 never sees the old
    company's rows, only 80 dates of the gap (more than relist_after_days, as the warm-up
    guarantees). Its cleaner still takes date 500 as a relisting (the name was seen before the
    slice), so it decides the cross-section and listed_from as training does: without that,
    the trailing coverage would count the gap's dates in the slice as missed."""
    panel = generate_synthetic_market(n_tickers=12, n_days=800, seed=3).panel
    dates = np.sort(panel["date"].unique())
    t9 = panel["ticker"] == "T0009"
    panel.loc[t9 & (panel["date"] >= dates[500]), ["open", "high", "low", "close"]] *= 3.0
    panel = panel[~(t9 & panel["date"].isin(dates[100:500]))].reset_index(drop=True)
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path))
    assert out["data_quality_report"]["relistings"] == [
        {"ticker": "T0009", "listed_from": str(pd.Timestamp(dates[500]).date())}]
    _assert_serving_decides_the_same(panel, {}, out, dates[420], dates[672])
    from bma_quant.serving.chain import PanelCleaner
    from tests.support import project_params

    cleaner = PanelCleaner.from_params(panel["ticker"].unique(), project_params()["processing"],
                                       out["data_quality_report"]["first_close"])
    served = cleaner.clean(panel[panel["date"] >= dates[420]].reset_index(drop=True))
    t9 = served[served["ticker"] == "T0009"].set_index("date")["listed_from"]
    assert (t9.loc[dates[500]:] == dates[500]).all() and t9.loc[:dates[499]].isna().all()


def test_a_suspension_exported_with_zero_volume_and_no_close_is_no_relisting(tmp_path):
    """Some vendors (Wind-style exports) write a suspended day as a row with volume 0 and an
    empty close. Such rows say the company is still listed: a 100-date suspension so written is
    not a new listing (it was, read as 100 missing days), while the same gap without rows is,
    in training and in the serving cleaner alike."""
    panel = generate_synthetic_market(n_tickers=12, n_days=700, seed=3).panel
    dates = np.sort(panel["date"].unique())
    halted = (panel["ticker"] == "T0009") & panel["date"].isin(dates[300:400])
    stated = panel.copy()
    stated.loc[halted, ["open", "high", "low", "close"]] = np.nan
    stated.loc[halted, "volume"] = 0.0
    outs = {}
    for name, frame in (("stated", stated), ("absent", panel[~halted])):
        path = tmp_path / f"{name}.parquet"
        frame.reset_index(drop=True).to_parquet(path)
        outs[name] = run_pipeline("data_processing", {}, _overrides(path))
    assert outs["stated"]["data_quality_report"]["relistings"] == []
    assert "listed_from" not in outs["stated"]["primary_panel"]
    assert outs["absent"]["data_quality_report"]["relistings"] == [
        {"ticker": "T0009", "listed_from": str(pd.Timestamp(dates[400]).date())}]
    from bma_quant.serving.chain import PanelCleaner
    from tests.support import project_params

    report = outs["stated"]["data_quality_report"]
    assert report["empty_close_suspensions"] is True
    cleaner = PanelCleaner.from_params(stated["ticker"].unique(), project_params()["processing"],
                                       report["first_close"], report["first_volume"],
                                       report["empty_close_suspensions"])
    trained = outs["stated"]["primary_panel"].pivot(index="date", columns="ticker",
                                                    values="eligible")
    # a slice from before the suspension, and one that starts inside it (the name's first
    # close in the slice comes after its empty rows: known from training's first_close)
    for start in (200, 320):
        served = cleaner.clean(stated[stated["date"] >= dates[start]].reset_index(drop=True))
        assert "listed_from" not in served or served["listed_from"].isna().all()
        mine = served.pivot(index="date", columns="ticker", values="eligible")
        pd.testing.assert_series_equal(mine["T0009"].loc[dates[400]:].astype(bool),
                                       trained["T0009"].loc[dates[400]:].astype(bool),
                                       check_names=False)
    # a grid export (volume-0 empty rows before a name's first close too) pads every cell
    # alike, between a delisted company and its code's next one as well: its empty rows say
    # nothing, and the gap is a relisting as without them
    late = (stated["ticker"] == "T0002") & (stated["date"] < dates[50])
    grid = stated.copy()
    grid.loc[late, ["open", "high", "low", "close"]] = np.nan
    grid.loc[late, "volume"] = 0.0
    path = tmp_path / "grid.parquet"
    grid.to_parquet(path)
    padded = run_pipeline("data_processing", {}, _overrides(path))["data_quality_report"]
    assert padded["empty_close_suspensions"] is False
    assert padded["relistings"] == outs["absent"]["data_quality_report"]["relistings"]


def test_a_later_padded_listing_leaves_earlier_stated_suspensions_alone(tmp_path):
    """Whether volume-0 rows with an empty close are stated suspensions or a grid export's
    padding is decided per date: a name padded with such rows only from date 600, before it
    lists at 640, made the whole file a grid export, so T0009's stated suspension at 300-400
    became a relisting and its eligibility before 600 changed with rows after it. A file cut at
    500 and the whole file now agree up to the cut, in training and in the serving cleaner,
    which keeps training's first padded date for slices that start after it: T0005's empty
    rows at 650-720, after the padding began, are a gap there as in training."""
    panel = generate_synthetic_market(n_tickers=12, n_days=800, seed=3).panel
    dates = np.sort(panel["date"].unique())
    stated = panel.copy()
    halted = (((stated["ticker"] == "T0009") & stated["date"].isin(dates[300:400]))
              | ((stated["ticker"] == "T0005") & stated["date"].isin(dates[650:720])))
    stated.loc[halted, ["open", "high", "low", "close"]] = np.nan
    stated.loc[halted, "volume"] = 0.0
    late = stated["ticker"] == "T0002"
    stated = stated[~late | (stated["date"] >= dates[600])].reset_index(drop=True)
    padding = (stated["ticker"] == "T0002") & (stated["date"] < dates[640])
    stated.loc[padding, ["open", "high", "low", "close"]] = np.nan
    stated.loc[padding, "volume"] = 0.0
    outs = {}
    for name, frame in (("whole", stated), ("cut", stated[stated["date"] <= dates[500]])):
        path = tmp_path / f"{name}.parquet"
        frame.reset_index(drop=True).to_parquet(path)
        outs[name] = run_pipeline("data_processing", {}, _overrides(path))
    report = outs["whole"]["data_quality_report"]
    assert outs["cut"]["data_quality_report"]["relistings"] == []
    assert report["relistings"] == [
        {"ticker": "T0005", "listed_from": str(pd.Timestamp(dates[720]).date())}]
    assert report["empty_close_padding_from"] == str(pd.Timestamp(dates[600]).date())
    assert outs["cut"]["data_quality_report"]["empty_close_padding_from"] is None

    def eligible(frame):
        return frame.pivot(index="date", columns="ticker", values="eligible").astype(bool)

    whole, cut = eligible(outs["whole"]["primary_panel"]), eligible(outs["cut"]["primary_panel"])
    pd.testing.assert_frame_equal(whole.loc[: dates[500], cut.columns], cut)
    from bma_quant.serving.chain import PanelCleaner
    from tests.support import project_params

    cleaner = PanelCleaner.from_params(
        stated["ticker"].unique(), project_params()["processing"], report["first_close"],
        report["first_volume"], report["empty_close_suspensions"],
        report["empty_close_padding_from"])
    for start in (200, 620, 645):  # before the padding, in it, and after its last row
        served = eligible(cleaner.clean(stated[stated["date"] >= dates[start]]
                                        .reset_index(drop=True)))
        suspended = ["T0005", "T0009"]
        pd.testing.assert_frame_equal(served.loc[dates[700]:, suspended],
                                      whole.loc[dates[700]:, suspended])


def test_a_held_move_at_an_unconfigured_split_ratio_is_reported(tmp_path, market, caplog):
    """An unadjusted 3:2 split (T0002's prices / 1.5 from a quiet day on: a -33 % day, inside
    max_abs_return) is not repaired with the default ratios, but reported
    (unconfigured_ratio_moves) and warned about with the ratio to add; with 1.5 in the ratios it
    is repaired and no longer reported as unconfigured. A drop whose open was at the old level
    (in the session, a crash) is not reported."""
    from tests.support import deep_update

    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    closes = panel[panel["ticker"] == "T0002"].set_index("date")["close"]
    # a day on which the stock itself moved < 1 %: the split's -33.3 % within tolerance (2 %)
    day = next(k for k in range(300, 400) if abs(closes.iloc[k] / closes.iloc[k - 1] - 1) < 0.01)
    split = (panel["ticker"] == "T0002") & (panel["date"] >= dates[day])
    panel.loc[split, ["open", "high", "low", "close"]] /= 1.5
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    moves = out["data_quality_report"]["unconfigured_ratio_moves"]
    assert [(m["ticker"], m["date"], m["nearest_ratio"]) for m in moves] == [
        ("T0002", str(pd.Timestamp(dates[day]).date()), 1.5)]
    assert "match a split ratio not in processing.split_detection.ratios" in caplog.text
    assert "add 1.5 to processing.split_detection.ratios" in caplog.text
    repaired = run_pipeline("data_processing", {}, deep_update(_overrides(path), {
        "processing": {"split_detection": {"ratios": [1.5, 2, 3, 4, 5, 10, 100]}}}))
    report = repaired["data_quality_report"]
    assert [e["ticker"] for e in report["suspected_splits"]] == ["T0002"]
    assert report["unconfigured_ratio_moves"] == []
    # an open copied from the last close (a vendor's fill) says nothing: still reported
    first = (panel["ticker"] == "T0002") & (panel["date"] == dates[day])
    panel.loc[first, "open"] = closes.iloc[day - 1]
    panel.loc[first, "high"] = panel.loc[first, ["open", "high"]].max(axis=1)
    panel.to_parquet(path)
    filled = run_pipeline("data_processing", {}, _overrides(path))
    assert len(filled["data_quality_report"]["unconfigured_ratio_moves"]) == 1
    # the same drop with the day's open at the old level happened in the session: a crash
    panel.loc[first, ["open", "high"]] = closes.iloc[day - 1] * 1.01
    panel.to_parquet(path)
    crash = run_pipeline("data_processing", {}, _overrides(path))
    assert crash["data_quality_report"]["unconfigured_ratio_moves"] == []


def test_weekly_bars_are_named_with_what_they_change(tmp_path, caplog):
    weekly = generate_synthetic_market(n_tickers=8, n_days=1500, seed=4).panel
    weekly = weekly[weekly["date"].dt.day_of_week == 4]
    path = tmp_path / "weekly.parquet"
    weekly.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    assert 50 <= out["data_quality_report"]["dates_per_year"] <= 54
    assert "dates a year, not the ~252 of daily exchange bars (weekly or monthly bars?)" \
        in caplog.text and "evaluation.backtest.periods_per_year" in caplog.text
    caplog.clear()  # once periods_per_year is set for these bars, there is nothing to say
    configured = {**_overrides(path), "evaluation": {"backtest": {"periods_per_year": 52}}}
    with caplog.at_level(logging.WARNING):
        run_pipeline("data_processing", {}, configured)
    assert "dates a year" not in caplog.text


def _processed_on_calendar(tmp_path, caplog, calendar: pd.DatetimeIndex) -> dict:
    """data_processing (warnings captured) on an 8-name, 800-date synthetic panel moved onto
    `calendar` (800 dates)."""
    panel = generate_synthetic_market(n_tickers=8, n_days=800, seed=4).panel
    panel["date"] = panel["date"].map(dict(zip(sorted(panel["date"].unique()), calendar,
                                               strict=True)))
    path = tmp_path / "calendar.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        return run_pipeline("data_processing", {}, _overrides(path))


def test_one_mistyped_date_decades_away_is_no_sparse_calendar(tmp_path, caplog):
    """A business-day file whose last date reads 2099 (a typo): 252 dates a year, not the
    ~10 its first-to-last span gave, with the advice to rescale every window."""
    panel = generate_synthetic_market(n_tickers=8, n_days=800, seed=4).panel
    typo = panel.index[(panel["ticker"] == "T0003")][400]
    panel.loc[typo, "date"] = pd.Timestamp("2099-10-30")  # one name's row: strict mode drops it
    path = tmp_path / "typo.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    assert 255 <= out["data_quality_report"]["dates_per_year"] <= 262
    assert "scale the windows" not in caplog.text


def test_a_six_day_week_is_not_annualised_as_252_without_a_word(tmp_path, caplog):
    """306-313 dates a year (a file forward-filled onto another exchange's Saturdays) is more
    than a tenth off 252: the default periods_per_year is not taken as set for it."""
    six_day = pd.date_range("2010-01-04", periods=800 * 7 // 6 + 7)
    out = _processed_on_calendar(tmp_path, caplog, six_day[six_day.dayofweek < 6][:800])
    assert out["data_quality_report"]["dates_per_year"] > 300
    assert "dates a year, not the ~252 of daily exchange bars (weekends included?)" in caplog.text


def test_no_label_is_marked_over_a_crash_withheld_before_a_delisting(tmp_path):
    """Close-only file: T0006 falls -50 % on its last day (near 2:1: withheld while a split is
    possible) and stops. A label whose window reaches that day is not valued at the close
    before the crash (the crash is unknown, not absent); earlier windows are labelled as
    usual, and so is a plain delisting's last week."""
    panel = generate_synthetic_market(n_tickers=8, n_days=400, seed=3, ohlcv=False).panel
    panel = panel[["date", "ticker", "close"]]
    dates = np.sort(panel["date"].unique())
    t6, t7 = panel["ticker"] == "T0006", panel["ticker"] == "T0007"
    before = float(panel.loc[t6 & (panel["date"] == dates[349]), "close"].iloc[0])
    panel.loc[t6 & (panel["date"] == dates[350]), "close"] = before / 2.0
    panel = panel[~(t6 & (panel["date"] > dates[350])) & ~(t7 & (panel["date"] > dates[350]))]
    path = tmp_path / "crash.parquet"
    panel.to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path))
    labels = out["labels"].pivot(index="date", columns="ticker", values="label")
    crash, plain = labels["T0006"], labels["T0007"]
    assert crash.loc[dates[339]:dates[348]].isna().all()  # windows reaching the withheld day
    assert crash.loc[dates[330]:dates[338]].notna().all()
    assert plain.loc[dates[339]:dates[349]].notna().all()  # valued at its last trade


def test_missing_days_count_gaps_in_a_names_life_not_before_it_lists_or_after_it_stops(
        tmp_path):
    """A name listing at date 100, one stopping after date 200, a code reused by another
    company after 70 dates and two gaps of one date in a fourth name: 2 missing days (the dates
    before a listing, after a stop and between two listings are no gaps; they were counted,
    371 of them here), and coverage over the listings' lives, as the logged metric."""
    panel = generate_synthetic_market(n_tickers=6, n_days=400, seed=2).panel
    dates = np.sort(panel["date"].unique())
    panel = panel[~((panel["ticker"] == "T0001") & (panel["date"] < dates[100]))]
    panel = panel[~((panel["ticker"] == "T0002") & (panel["date"] > dates[200]))]
    panel = panel[~((panel["ticker"] == "T0003") & panel["date"].isin(dates[[50, 300]]))]
    # a code reused after 70 dates without a row (processing.eligibility.relist_after_days 63)
    panel = panel[~((panel["ticker"] == "T0004") & panel["date"].isin(dates[150:220]))]
    path = tmp_path / "lives.parquet"
    panel.to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path))
    report = out["data_quality_report"]
    assert report["missing_days_in_calendar"] == 2 and report["missing_days"] == 2
    assert report["forward_filled_days"] == 2 + 5 + 5  # and ffill_limit dates after each stop
    lives = 300 + 201 + 3 * 400 + (150 + 180)
    assert report["coverage"] == pytest.approx((lives - 2) / lives)
    assert out["data_processing_metrics"]["coverage"]["value"] == report["coverage"]


def test_a_seven_day_calendar_is_named_with_its_rate_and_what_to_scale(tmp_path, caplog):
    """Every calendar day a date (crypto): 365 dates a year (the steps per year of the span,
    not 366), the row-count windows named, and split detection named (no splits there; real
    +-50 % days that hold look like them)."""
    out = _processed_on_calendar(tmp_path, caplog, pd.date_range("2019-01-01", periods=800))
    assert out["data_quality_report"]["dates_per_year"] == 365.2
    assert "(a seven-day calendar: crypto?)" in caplog.text
    # null periods_per_year annualises at the file's rate: said, with the windows to scale
    assert ("annualised figures use the file's rate, 365 rows a year (evaluation.backtest."
            "periods_per_year null); scale the windows by 1.45") in caplog.text
    assert out["date_split"]["dates_per_year"] == 365.2
    # logged as split.dates_per_year: a 365-date run's Sharpe beside 252-date runs in the UI
    assert out["date_split_params"]["dates_per_year"] == 365.2
    assert "cv.min_train_days" in caplog.text and "split_detection.enabled: false" in caplog.text
    assert "keep temporal.execution_delay_days at 1 or more" in caplog.text
    # periods_per_year set to 365 does not silence the split hint while detection is on (the
    # window reminder goes to the info log); with detection off nothing is left to say
    path = tmp_path / "calendar.parquet"
    for enabled, warned in ((True, True), (False, False)):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            run_pipeline("data_processing", {}, deep_update(_overrides(path), {
                "evaluation": {"backtest": {"periods_per_year": 365}},
                "processing": {"split_detection": {"enabled": enabled}}}))
        warnings = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
        assert ("split_detection.enabled: false" in warnings) is warned
        assert "not the ~252 of daily exchange bars" not in caplog.text
        assert "every window still counts rows (scale the *_days" in caplog.text


def test_holidays_of_a_second_exchange_dropped_by_the_strict_filter_are_named(tmp_path, market,
                                                                            caplog):
    """Half the names miss 10 dates, the other half 10 others (two exchanges' holidays): each
    date has 50% < coverage_threshold of the names, so strict mode drops all 20 and says so,
    with the dates in the report."""
    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    rng = np.random.default_rng(0)
    holidays = rng.choice(dates[300:500], size=20, replace=False)
    tickers = sorted(panel["ticker"].unique())
    first, second = set(tickers[:6]), set(tickers[6:])
    closed = ((panel["ticker"].isin(first) & panel["date"].isin(holidays[:10]))
              | (panel["ticker"].isin(second) & panel["date"].isin(holidays[10:])))
    path = tmp_path / "two_exchanges.parquet"
    panel[~closed].to_parquet(path)
    with caplog.at_level(logging.WARNING):
        report = run_pipeline("data_processing", {}, _overrides(path))["data_quality_report"]
    assert report["dropped_dates"] == 20
    assert sorted(d[:10] for d in report["strict_dropped_dates"]) == sorted(
        str(pd.Timestamp(d).date()) for d in holidays)
    assert "processing.strict_mode dropped 20 of the file's 600 dates (3.3%; by weekday:" \
        in caplog.text and "processing.strict_mode: false" in caplog.text


def test_thin_last_dates_the_strict_filter_drops_leave_no_name_missing_at_the_end(
        tmp_path, market, caplog):
    """Only 2 of 12 names report on the file's last 3 dates: strict mode drops those dates, so
    the panel ends where every name has a close. Nothing is missing at its end (the report
    named 10 names and warned that their prices were carried)."""
    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    thin = panel["date"].isin(dates[-3:]) & ~panel["ticker"].isin(["T0000", "T0001"])
    path = tmp_path / "thin_end.parquet"
    panel[~thin].to_parquet(path)
    with caplog.at_level(logging.WARNING):
        report = run_pipeline("data_processing", {}, _overrides(path))["data_quality_report"]
    assert report["dropped_dates"] == 3
    assert report["missing_at_end"] == {} and report["delistings"] == {}
    assert "no close on the file's last date" not in caplog.text


def test_names_without_a_sector_are_named(tmp_path, market, caplog):
    panel = market.panel.copy()
    panel.loc[panel["ticker"].isin(["T0001", "T0002"]), "sector"] = None
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    assert out["data_quality_report"]["no_sector"] == ["T0001", "T0002"]
    assert "2 name(s) have no sector on any date (e.g. T0001, T0002)" in caplog.text


def test_bars_whose_close_leaves_the_high_low_range_are_warned_about(tmp_path, caplog):
    """An adjusted close beside raw open / high / low (a vendor export): counted and warned."""
    market = generate_synthetic_market(n_tickers=8, n_days=400, seed=5, ohlcv=True).panel
    shifted = market["ticker"].isin(["T0001", "T0002"])
    market.loc[shifted, "close"] *= 0.8  # dividends and splits folded into close only
    path = tmp_path / "p.parquet"
    market.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    report = out["data_quality_report"]
    assert report["bars_outside_range"] >= 0.9 * int(shifted.sum())
    assert "have an open or close outside [low, high]" in caplog.text


def test_a_factor_that_stops_before_the_end_is_warned_about(tmp_path, market, caplog):
    """A user factor the vendor stopped sending: the test period and inference see no value."""
    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    panel.loc[panel["date"] >= dates[500], "signal_1"] = np.nan
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    gap = out["data_quality_report"]["sparse_columns"]["signal_1"]
    # forward filled for processing.ffill_limit (5) dates first, like any gap
    assert gap["missing_from"] == str(pd.Timestamp(dates[505]).date())
    assert f"on every name from {gap['missing_from']} to the end" in caplog.text
    # each name's 5 carried dates are counted (forward_filled_days counts closes only)
    names_then = panel.loc[panel["date"].isin(dates[500:505]), "ticker"].nunique()
    assert out["data_quality_report"]["factor_cells_carried"]["signal_1"] == 5 * names_then


def test_one_name_under_two_tickers_is_warned_about(tmp_path, market, caplog):
    panel = market.panel.copy()
    copy = panel[panel["ticker"] == "T0003"].assign(ticker="T0003B")
    path = tmp_path / "p.parquet"
    pd.concat([panel, copy], ignore_index=True).to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    assert out["data_quality_report"]["duplicate_series"] == [["T0003", "T0003B"]]
    assert "1 group(s) of tickers have identical closes on every date both trade (e.g. T0003 = " \
           "T0003B)" in caplog.text
    # a copy of part of a name's life (a renamed code over 200 of its dates) is the same name
    dates = np.sort(panel["date"].unique())
    part = panel[(panel["ticker"] == "T0005") & panel["date"].between(dates[100], dates[299])]
    path = tmp_path / "part.parquet"
    pd.concat([panel, part.assign(ticker="T0005_2")], ignore_index=True).to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path))
    assert out["data_quality_report"]["duplicate_series"] == [["T0005", "T0005_2"]]


def test_a_code_back_after_a_long_absence_is_reported(tmp_path, market, caplog):
    """T0002 stops, and 33 dates later its code carries another company's prices (3x the level):
    named in the report and a warning, since its windows would compare the two. A gap within
    processing.long_absence_days (T0004, 10 dates) is not."""
    panel = market.panel.copy()
    day = np.sort(panel["date"].unique())
    t2 = panel["ticker"] == "T0002"
    panel = panel[~(t2 & panel["date"].isin(day[300:333]))].copy()
    t2 = panel["ticker"] == "T0002"
    panel.loc[t2 & (panel["date"] >= day[333]), ["open", "high", "low", "close"]] *= 3.0
    panel = panel[~((panel["ticker"] == "T0004") & panel["date"].isin(day[100:110]))]
    panel = panel[~((panel["ticker"] == "T0002") & panel["date"].isin(day[400:433]))]  # again
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    absence, again = out["data_quality_report"]["long_absences"]
    assert again["ticker"] == "T0002" and again["back_on"] == str(pd.Timestamp(day[433]).date())
    assert (absence["ticker"], absence["back_on"], absence["dates_missed"]) == (
        "T0002", str(pd.Timestamp(day[333]).date()), 33)
    assert 2.0 < absence["price_ratio"] < 5.0  # x3 and 33 dates of drift
    assert "1 name(s) are back after more than processing.long_absence_days dates without a " \
           "close (2 time(s)" in caplog.text  # one name, counted once


def test_a_long_list_of_absences_says_how_many_it_does_not_show(tmp_path, market, caplog):
    """Four returns after long absences: the warning shows three and says where the fourth is."""
    panel = market.panel.copy()
    day = np.sort(panel["date"].unique())
    for start in (100, 200, 300, 400):
        panel = panel[~((panel["ticker"] == "T0002") & panel["date"].isin(day[start:start + 33]))]
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    assert len(out["data_quality_report"]["long_absences"]) == 4
    assert "(4 time(s):" in caplog.text and "; 1 more in data_quality_report.json)" in caplog.text


def test_a_move_on_the_files_last_dates_is_pending_and_said_once(tmp_path, market, caplog):
    """Halved on the last two dates: undecided (split or crash), reported under
    unconfirmed_splits with one warning, not also as a held move left unrepaired."""
    panel = market.panel.copy()
    day = np.sort(panel["date"].unique())
    t1 = panel["ticker"] == "T0001"
    level = float(panel.loc[t1 & (panel["date"] == day[-3]), "close"].iloc[0])
    panel.loc[t1 & panel["date"].isin(day[-2:]), ["open", "high", "low", "close"]] = level / 2
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    report = out["data_quality_report"]
    assert [(e["ticker"], e["status"]) for e in report["unconfirmed_splits"]] == [
        ("T0001", "pending")]
    assert report["split_like_moves"] == [] and report["split_withheld_cells"] == 2
    assert "moved near a split ratio within the data's last" in caplog.text
    assert "were not repaired" not in caplog.text


def test_a_hole_in_the_calendar_is_refused_unless_the_data_start_after_it(tmp_path, market):
    """Two months with no date at all (a file stitched from two downloads): the labels and rolling
    features across them would span the hole, so the run stops naming it and what to do."""
    panel = market.panel
    dates = pd.DatetimeIndex(sorted(panel["date"].unique()))
    hole = (panel["date"] > dates[150]) & (panel["date"] < dates[150] + pd.Timedelta(days=60))
    path = tmp_path / "holed.parquet"
    panel.loc[~hole].to_parquet(path)
    after = panel.loc[~hole & (panel["date"] > dates[150]), "date"].min()
    with pytest.raises(Exception, match=rf"no date in {dates[150].date()} \.\. {after.date()} "
                                        r"\(\d+ days\) \(longer than processing.max_calendar_"
                                        r"gap_days, 14; the file has no date there\).*periods."
                                        rf"dev_start: \"{after.date()}\""):
        run_pipeline("data_processing", {}, _overrides(path))
    # the same stretch with a close for only two of the 12 names, and "trading lately" read over
    # the whole eligibility window: the strict date filter drops every date of it
    thin = panel.loc[~hole | panel["ticker"].isin(panel["ticker"].unique()[:2])]
    thin.to_parquet(path)
    whole_window = {**_overrides(path), "processing": {"strict_active_days": None}}
    with pytest.raises(Exception, match=r"processing.strict_mode dropped the file's \d+ date\(s\) "
                                        r"in it: fewer than coverage_threshold"):
        run_pipeline("data_processing", {}, whole_window)
    panel.loc[~hole].to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path, dev_start=str(after.date())))
    assert out["primary_panel"]["date"].min() == after
    relaxed = {**_overrides(path), "processing": {"max_calendar_gap_days": None}}
    assert run_pipeline("data_processing", {}, relaxed)["date_split"]["dev_start"] == \
        str(dates[0].date())


def test_dates_left_out_by_dev_start_are_named(tmp_path, market, caplog):
    """The default periods.dev_start suits the shipped sample; on a user's file starting
    earlier it dropped years without a word (the quality report said dropped_dates: 0)."""
    path = tmp_path / "long.parquet"
    market.panel[["date", "ticker", "close"]].to_parquet(path)
    start = sorted(market.panel["date"].unique())[100]
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {},
                           _overrides(path, dev_start=str(pd.Timestamp(start).date())))
    assert out["date_split"]["dev_start"] == str(pd.Timestamp(start).date())
    first = pd.Timestamp(market.panel["date"].min()).date()
    assert (f"periods.dev_start ({pd.Timestamp(start).date()}) leaves out the file's 100 "
            f"date(s) before it ({first}..") in caplog.text


def test_a_split_before_the_used_dates_is_reported_not_warned(caplog):
    """The shipped sample's RRC split (1990) lies before periods.dev_start (1995): repaired and in
    the report, but no warning about data the run does not use; with dev_start null it is."""
    from tests.support import PROJECT_ROOT

    data = {"raw_path": str(PROJECT_ROOT / "data/01_raw/sp500_prices.csv.gz"),
            "index_path": str(PROJECT_ROOT / "data/01_raw/sp500_index.csv.gz")}
    for dev_start, warned in (("1995-01-03", False), (None, True)):
        caplog.clear()
        with caplog.at_level("WARNING"):
            out = run_pipeline("data_processing", {},
                               {"data": data, "periods": {"dev_start": dev_start}})
        assert any(e["ticker"] == "RRC" for e in out["data_quality_report"]["suspected_splits"])
        assert ("RRC@1990-04-10" in caplog.text) is warned


def test_a_minimum_price_keeps_penny_rows_out_in_training_and_serving(tmp_path, market):
    """T0003 trades at a hundredth of its price from date 300 to 450 (its file's closes under
    1.0): with processing.eligibility.min_price 1.0 those rows are out of the cross-section, the
    report counts them, the name is back once its price is, and the serving chain's cleaner
    decides the same on a slice. Without a minimum nothing changes."""
    from tests.support import deep_update

    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    penny = (panel["ticker"] == "T0003") & panel["date"].between(dates[300], dates[450])
    panel.loc[penny, ["open", "high", "low", "close"]] /= 100.0
    assert panel.loc[penny, "close"].max() < 1.0 < panel.loc[~penny, "close"].min()
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    overrides = deep_update(_overrides(path), {
        "processing": {"eligibility": {"min_price": 1.0},
                       "split_detection": {"enabled": False}}})
    out = run_pipeline("data_processing", {}, overrides)
    eligible = out["primary_panel"].pivot(index="date", columns="ticker", values="eligible")
    assert not eligible["T0003"].loc[dates[300]:dates[450]].any()
    assert eligible["T0003"].loc[dates[280]:dates[299]].all()
    assert eligible["T0003"].loc[dates[451]:dates[470]].all()
    assert out["data_quality_report"]["below_min_price_rows"] == 151
    _assert_serving_decides_the_same(panel, overrides, out, dates[100], dates[360])
    free = run_pipeline("data_processing", {}, deep_update(
        _overrides(path), {"processing": {"split_detection": {"enabled": False}}}))
    assert free["primary_panel"].pivot(index="date", columns="ticker", values="eligible")[
        "T0003"].loc[dates[300]:dates[450]].all()
    assert free["data_quality_report"]["below_min_price_rows"] == 0


def test_a_first_fold_longer_than_development_is_named_in_the_short_panel_warning(caplog):
    """cv.min_train_days beyond every development date scales the layout down like a short panel
    would; the warning names the parameter too."""
    from bma_quant.pipelines.data_processing.nodes import make_cv_folds
    from tests.support import project_params

    params = project_params()
    dates = pd.bdate_range("2015-01-01", periods=900)
    panel = pd.DataFrame({"date": dates})
    split = {"dev_start": str(dates[0].date()), "dev_end": str(dates[699].date())}
    with caplog.at_level(logging.WARNING):
        make_cv_folds(split, panel, params["temporal"], {**params["cv"], "min_train_days": 100_000})
    assert ("short panel: 700 development dates do not hold the requested CV layout "
            "(cv.min_train_days, 100000, alone asks for more training dates than that)"
            ) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        make_cv_folds(split, panel, params["temporal"], {**params["cv"], "min_train_days": 690})
    assert "short panel: 700 development dates" in caplog.text and "alone" not in caplog.text


def test_serving_cleans_splits_stale_fills_and_factor_gaps_as_training_does(tmp_path, market):
    """Parity beyond the cross-section: a 2:1 split (repaired, its window withheld), a stale
    streak interrupted by missing rows the forward fill copies, and user-factor gaps the
    cross-sectional median fills. The serving cleaner gives training's close, ret_1d and
    factor values on a slice (was checked on `eligible` only)."""
    panel = market.panel.copy()
    dates = np.sort(panel["date"].unique())
    split = (panel["ticker"] == "T0002") & (panel["date"] >= dates[400])
    panel.loc[split, ["open", "high", "low", "close"]] /= 2.0
    flat = (panel["ticker"] == "T0006") & panel["date"].between(dates[420], dates[460])
    panel.loc[flat, ["open", "high", "low", "close"]] = 30.0
    gaps = (panel["ticker"] == "T0006") & panel["date"].isin(dates[[430, 431, 445]])
    panel = panel.loc[~gaps]
    holes = panel["ticker"].isin(["T0001", "T0008"]) & panel["date"].isin(dates[470:480])
    panel.loc[holes, "signal_1"] = np.nan
    path = tmp_path / "p.parquet"
    panel.to_parquet(path)
    out = run_pipeline("data_processing", {}, _overrides(path))
    primary = out["primary_panel"]
    repaired = primary.loc[primary["ticker"] == "T0002"].set_index("date")["ret_1d"]
    assert repaired.loc[dates[395]:dates[430]].abs().max() < 0.3  # no -50 % day: repaired
    imputed = primary.loc[primary["ticker"].eq("T0001") & primary["date"].eq(dates[475])]
    assert np.isfinite(imputed["signal_1"]).all()
    _assert_serving_decides_the_same(panel, {}, out, dates[100], dates[380])


def test_daily_bars_the_strict_filter_thinned_are_not_called_weekly(tmp_path, caplog):
    """Names each missing 30 % of the days at random: the strict filter dropped about half the
    dates, and the warning took the kept rate for the bars' frequency ("weekly or monthly
    bars?"). The file's own rate is daily; the filter is named, with the way out."""
    panel = generate_synthetic_market(n_tickers=30, n_days=800, seed=4).panel
    holes = np.random.default_rng(0).random(len(panel)) < 0.3
    path = tmp_path / "holes.parquet"
    panel.loc[~holes].to_parquet(path)
    with caplog.at_level(logging.WARNING):
        out = run_pipeline("data_processing", {}, _overrides(path))
    report = out["data_quality_report"]
    assert report["dates_per_year"] < 200 and 255 <= report["file_dates_per_year"] <= 262
    assert "weekly or monthly bars?" not in caplog.text
    assert "the file has daily bars (about 26" in caplog.text
    assert "set processing.strict_mode: false" in caplog.text
