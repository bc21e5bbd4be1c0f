"""Issue 15 part 3, the bad-input catalogue: each case runs (where a sensible reading exists) or
is refused before anything is written, with one message naming the column or parameter, the rule
and a few offending rows by their line in the file.

`before_first_write` does what a `kedro run` does before its first write: the parameter
pre-flight, `load_raw_data` (writes nothing) and the pre-flight on the raw panel's tickers and
dates (run_hooks.preflight)."""

import re

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data import preflight
from bma_quant.core.data.schema import DataValidationError
from bma_quant.core.data.temporal import TemporalConfigError
from bma_quant.core.models.learners import LEARNERS
from bma_quant.pipelines.data_processing import nodes
from bma_quant.run_hooks.preflight import LEARNER_PARAMS
from tests.support import deep_update, project_params, run_pipeline

N_TICKERS, N_DATES = 6, 400


def before_first_write(path, overrides=None):
    params = deep_update(project_params(), overrides or {})
    params["data"].update(raw_path=str(path), index_path=None)
    params["periods"]["dev_start"] = None
    preflight.check_parameters(params)
    preflight.check_learners({p: preflight.lookup(params, p) for p in LEARNER_PARAMS}, LEARNERS)
    raw, _ = nodes.load_raw_data(params["data"], params["temporal"])
    preflight.check_universe(raw["ticker"].nunique(), params)
    preflight.check_cv_layout(raw["date"], params)
    return raw


def refused(path, overrides=None, error=ValueError) -> str:
    with pytest.raises(error) as err:
        before_first_write(path, overrides)
    return str(err.value)


def long_frame(n_tickers=N_TICKERS, n_dates=N_DATES) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2018-01-01", periods=n_dates)
    tickers = [f"T{i}" for i in range(n_tickers)]
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_dates, n_tickers)), axis=0))
    return pd.DataFrame({
        "date": np.repeat(dates.strftime("%Y-%m-%d"), n_tickers),
        "ticker": np.tile(tickers, n_dates),
        "close": close.ravel().round(4),
    })


def write_csv(tmp_path, frame, name="prices.csv", **kwargs):
    path = tmp_path / name
    frame.to_csv(path, index=False, **kwargs)
    return path


# --- refused before anything is written -------------------------------------------------------

def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert "is empty: expected a header line" in refused(path, error=DataValidationError)


def test_header_only(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("date,ticker,close\n")
    message = refused(path, error=DataValidationError)
    assert "has a header (date, ticker, close) but no data rows" in message


def test_one_data_row(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("date,ticker,close\n2020-01-02,AAA,10.0\n")
    assert "The panel has 1 ticker(s) but" in refused(path, error=preflight.PreflightError)
    wide = tmp_path / "one_wide.csv"  # enough names, one date
    wide.write_text("date," + ",".join(f"T{i}" for i in range(6)) + "\n2020-01-02" + ",10" * 6)
    message = refused(wide, error=preflight.PreflightError)
    assert "The panel's 1 dates (2020-01-02..2020-01-02) are not enough" in message


def test_mixed_date_formats_name_the_lines(tmp_path):
    frame = long_frame()
    frame.loc[[7, 8], "date"] = ["01/03/2018", "01/03/2018"]  # lines 9 and 10 of the file
    message = refused(write_csv(tmp_path, frame), error=DataValidationError)
    assert "column 'date': must be a date in one format" in message
    assert "line 2 (2018-01-01, T0), is '2018-01-01'" in message
    assert "line 9 (01/03/2018, T1): '01/03/2018'" in message and "line 10" in message


def test_offending_prices_are_named_by_their_line(tmp_path):
    frame = long_frame()
    frame.loc[12, "close"] = -1.0  # line 14
    message = refused(write_csv(tmp_path, frame), error=DataValidationError)
    assert re.search(r"column 'close': price must be > 0; 1 failing value\(s\), e\.g\. line 14 "
                     r"\(2018-01-03, T0\): -1\.0", message), message


def test_semicolon_delimited_runs_and_a_wrong_delimiter_is_hinted(tmp_path):
    frame = long_frame()
    path = write_csv(tmp_path, frame, sep=";")
    raw = before_first_write(path)
    assert len(raw) == len(frame) and raw["close"].dtype == np.float64
    message = refused(path, {"data": {"delimiter": ","}}, error=DataValidationError)
    assert "the header reads as one column 'date;ticker;close'" in message
    assert "set data.delimiter to it, or to null to detect it" in message


def test_coverage_threshold_out_of_range_names_the_key_and_its_range(tmp_path):
    message = refused(write_csv(tmp_path, long_frame()),
                      {"processing": {"coverage_threshold": 1.5}}, error=preflight.PreflightError)
    assert "processing.coverage_threshold must be in (0, 1], got 1.5" in message


def test_zero_trials_is_refused_before_training(tmp_path):
    message = refused(write_csv(tmp_path, long_frame()),
                      {"base_models": {"tuning": {"n_trials": 0}}}, error=preflight.PreflightError)
    assert "base_models.tuning.n_trials must be >= 1, got 0" in message


def test_three_tickers_are_refused(tmp_path):
    """min_names (5) is the fewest names a date needs to be scored and n_quantiles (5) the
    quintiles of the backtest: with 3 names no date is scored, so no model may be registered."""
    message = refused(write_csv(tmp_path, long_frame(n_tickers=3)), error=preflight.PreflightError)
    assert re.search(r"The panel has 3 ticker\(s\) but \d+ parameter\(s\) need more names per "
                     r"date: ", message)
    # every parameter at once (one per run took nine runs to get through)
    for key in ("evaluation.backtest.n_quantiles (5)", "base_models.min_names (5)"):
        assert key in message


def test_missing_file(tmp_path):
    assert "Input file not found" in refused(tmp_path / "nope.csv", error=DataValidationError)


def test_negative_horizon(tmp_path):
    message = refused(write_csv(tmp_path, long_frame()),
                      {"temporal": {"prediction_horizon_days": -1}}, error=ValueError)
    assert "prediction_horizon_days must be >= 1, got -1" in message
    with pytest.raises(TemporalConfigError):
        nodes.load_raw_data({"raw_path": "x.csv"}, {**project_params()["temporal"],
                                                     "prediction_horizon_days": -1})


# --- runs, with what was repaired reported ----------------------------------------------------

def _processed(path):
    return run_pipeline("data_processing", {}, {
        "data": {"raw_path": str(path), "index_path": None}, "periods": {"dev_start": None},
        "cv": {"n_splits": 3, "min_train_days": 100, "n_tuning_folds": 1}})


def test_a_name_a_price_floor_keeps_out_is_named_with_the_floor_not_its_history(tmp_path, caplog):
    frame = long_frame()
    penny = frame["ticker"] == "T1"
    frame.loc[penny, "close"] = (frame.loc[penny, "close"] / 100).round(4)  # a full history
    path = write_csv(tmp_path, frame)
    with caplog.at_level("WARNING"):
        out = run_pipeline("data_processing", {}, {
            "data": {"raw_path": str(path), "index_path": None}, "periods": {"dev_start": None},
            "processing": {"eligibility": {"min_price": 1.0}},
            "cv": {"n_splits": 3, "min_train_days": 100, "n_tuning_folds": 1}})
    assert out["data_quality_report"]["never_eligible"] == ["T1"]
    assert ("1 name(s) are never in the cross-section although their history admits them: kept "
            "out by processing.eligibility.min_price (1.0): T1") in caplog.text
    assert "too little history" not in caplog.text
    # a dev_start before the file's first date (the default's 1995 on a recent file) is not
    # named as when the name was looked for: the whole file was
    caplog.clear()
    with caplog.at_level("WARNING"):
        run_pipeline("data_processing", {}, {
            "data": {"raw_path": str(path), "index_path": None},
            "periods": {"dev_start": "1990-01-02"},
            "processing": {"eligibility": {"min_price": 1.0}},
            "cv": {"n_splits": 3, "min_train_days": 100, "n_tuning_folds": 1}})
    assert "never in the cross-section although their history admits them" in caplog.text
    assert "1990-01-02" not in caplog.text


def test_settings_that_leave_no_name_in_the_cross_section_are_refused_by_name(tmp_path):
    path = write_csv(tmp_path, long_frame())
    with pytest.raises(DataValidationError, match=r"no name is in the cross-section on any date"
                       r".*min_price 1000.0"):
        run_pipeline("data_processing", {}, {
            "data": {"raw_path": str(path), "index_path": None}, "periods": {"dev_start": None},
            "processing": {"eligibility": {"min_price": 1000.0}},
            "cv": {"n_splits": 3, "min_train_days": 100, "n_tuning_folds": 1}})


def test_wide_file_with_an_empty_ticker_column_is_reported(tmp_path, caplog):
    wide = long_frame().pivot(index="date", columns="ticker", values="close").reset_index()
    wide["EMPTY"] = np.nan
    path = write_csv(tmp_path, wide, name="wide.csv")
    with caplog.at_level("WARNING"):
        out = _processed(path)
    report = out["data_quality_report"]
    assert report["no_prices"] == ["EMPTY"] and "EMPTY" in report["never_eligible"]
    assert "1 name(s) are never in the cross-section" in caplog.text and "EMPTY" in caplog.text
    assert out["data_processing_metrics"]["no_price_tickers"]["value"] == 1
    assert sorted(out["primary_panel"]["ticker"].unique()) == [f"T{i}" for i in range(N_TICKERS)]


def test_unsorted_rows_give_the_same_panel(tmp_path):
    frame = long_frame()
    sorted_out = _processed(write_csv(tmp_path, frame, name="sorted.csv"))
    shuffled = frame.sample(frac=1.0, random_state=0)
    shuffled_out = _processed(write_csv(tmp_path, shuffled, name="shuffled.csv"))
    pd.testing.assert_frame_equal(sorted_out["primary_panel"], shuffled_out["primary_panel"])


def test_all_nan_user_factor_is_left_out_not_refused(tmp_path):
    frame = long_frame().assign(my_factor=np.nan)
    raw = before_first_write(write_csv(tmp_path, frame))
    assert "my_factor" not in raw and len(raw) == len(frame)
