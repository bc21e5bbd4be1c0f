"""Every schema rule of DESIGN §2 rejects with a message naming the column and the rule."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.schema import DataValidationError, validate_long_panel


def good_panel() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": ["2020-01-02", "2020-01-02", "2020-01-03", "2020-01-03"],
            "ticker": ["AAA", "BBB", "AAA", "BBB"],
            "open": [10.0, 20.0, 10.5, 19.0],
            "high": [11.0, 21.0, 11.0, 20.5],
            "low": [9.5, 19.5, 10.0, 18.5],
            "close": [10.2, 20.1, 10.8, 19.9],
            "volume": [1000, 2000, 1500, 2500],
        }
    )


def test_good_panel_passes_and_coerces_types():
    out = validate_long_panel(good_panel())
    assert str(out["date"].dtype).startswith("datetime64")
    assert out["close"].dtype == np.float64


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda f: f.drop(columns="close"), "missing required column(s): close"),
        (lambda f: f.drop(columns="ticker"), "missing required column(s): ticker"),
        (lambda f: f.assign(date=["2020-01-02", "not a date", "2020-01-03", "2020-01-03"]),
         "column 'date': must be a date"),
        (lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True), "duplicate (date, ticker)"),
        (lambda f: f.assign(close=[10.2, -1.0, 10.8, 19.9]), "column 'close': price must be > 0"),
        (lambda f: f.assign(close=[10.2, 0.0, 10.8, 19.9]), "column 'close': price must be > 0"),
        (lambda f: f.assign(close=[10.2, np.inf, 10.8, 19.9]), "column 'close': price must be finite"),
        (lambda f: f.assign(close=["10.2", "abc", "10.8", "19.9"]),
         "column 'close': must be numeric"),
        (lambda f: f.assign(high=[11.0, 18.0, 11.0, 20.5]), "high must be >= low"),
        (lambda f: f.assign(volume=[1000, -5, 1500, 2500]), "column 'volume': volume must be >= 0"),
    ],
    ids=["no-close", "no-ticker", "bad-date", "duplicate", "negative", "zero", "inf", "text",
         "high<low", "neg-volume"],
)
def test_each_rule_rejects_with_a_named_message(mutate, expected):
    with pytest.raises(DataValidationError) as err:
        validate_long_panel(mutate(good_panel()), source="prices.csv")
    message = str(err.value)
    assert expected in message
    assert "prices.csv" in message


def test_offending_rows_are_named():
    frame = good_panel().assign(close=[10.2, -1.0, 10.8, 19.9])
    with pytest.raises(DataValidationError) as err:
        validate_long_panel(frame)
    assert "BBB" in str(err.value) and "2020-01-02" in str(err.value)


def test_all_failures_are_reported_at_once():
    frame = good_panel().assign(close=[10.2, -1.0, 10.8, np.inf])
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    with pytest.raises(DataValidationError) as err:
        validate_long_panel(frame)
    message = str(err.value)
    assert "duplicate" in message and "> 0" in message and "finite" in message
