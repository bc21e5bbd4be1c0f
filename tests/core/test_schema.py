"""Every schema rule of DESIGN §2 rejects with a message naming the column and the rule."""

import logging

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.schema import DataValidationError, validate_long_panel


def _csv_refusal(tmp_path, text: str, name: str = "prices.csv", **read_args) -> str:
    """The message load_raw_panel refuses a CSV holding `text` with."""
    from bma_quant.core.data.panel import load_raw_panel

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataValidationError) as err:
        load_raw_panel(path, **read_args)
    return str(err.value)


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
        (lambda f: f.assign(close=[10.2, 0.0, 10.8, 19.9]),
         "\n  a close of 0 is no price (a name that stopped trading, or a day without one): "
         "leave the cell empty or drop the row"),
        (lambda f: f.assign(close=[10.2, np.inf, 10.8, 19.9]), "column 'close': price must be finite"),
        (lambda f: f.assign(close=["10.2", "abc", "10.8", "19.9"]),
         "column 'close': must be numeric"),
        (lambda f: f.assign(high=[11.0, 18.0, 11.0, 20.5]), "high must be >= low"),
        (lambda f: f.assign(volume=[1000, -5, 1500, 2500]), "column 'volume': volume must be >= 0"),
        (lambda f: f.assign(pe_ratio=[12.0, -np.inf, np.nan, 8.0]),
         "column 'pe_ratio': value must be finite"),
    ],
    ids=["no-close", "no-ticker", "bad-date", "duplicate", "negative", "zero", "inf", "text",
         "high<low", "neg-volume", "inf-factor"],
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


# --- dates with a time zone or a time of day; descriptive columns; decimal commas --------------

def test_dates_with_a_time_zone_keep_their_local_calendar_day():
    frame = good_panel().assign(date=lambda f: pd.to_datetime(f["date"]).dt.tz_localize("Asia/Tokyo"))
    out = validate_long_panel(frame)
    assert list(out["date"].dt.strftime("%Y-%m-%d")) == list(good_panel()["date"])


def test_local_midnights_converted_to_utc_are_said_to_look_shifted(caplog):
    """Tokyo's bars stamped at its midnight, saved in UTC: 15:00 the day before, so Monday's bar
    reads as Sunday's. The days are kept (the file says so), but the run says they look
    shifted; bars stamped at a New York close (same day in UTC) raise nothing."""
    days = pd.bdate_range("2021-01-04", periods=20)
    frame = pd.DataFrame({"date": np.repeat(days, 2), "ticker": ["AAA", "BBB"] * 20,
                          "close": 10.0})
    tokyo = frame.assign(date=frame["date"].dt.tz_localize("Asia/Tokyo").dt.tz_convert("UTC"))
    with caplog.at_level(logging.WARNING):
        out = validate_long_panel(tokyo)
    assert (out["date"].dt.dayofweek == 6).sum() == 8  # the four Mondays, two names each
    assert "fall on a Saturday or Sunday" in caplog.text and "15:00 UTC" in caplog.text
    caplog.clear()
    new_york = frame.assign(date=(frame["date"] + pd.Timedelta(hours=16)).dt.tz_localize(
        "America/New_York").dt.tz_convert("UTC"))
    with caplog.at_level(logging.WARNING):
        validate_long_panel(new_york)
    assert "Saturday or Sunday" not in caplog.text
    # a market open every day (crypto, stamped 23:59:59.999Z): 2 / 7 of its bars are on a
    # weekend, every weekday alike; nothing looks shifted
    every_day = pd.date_range("2021-01-01", periods=28)
    crypto = pd.DataFrame({"date": np.repeat(every_day, 2), "ticker": ["AAA", "BBB"] * 28,
                           "close": 10.0})
    crypto["date"] = (crypto["date"] + pd.Timedelta(hours=23, minutes=59, seconds=59.999)
                      ).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out = validate_long_panel(crypto)
    assert "Saturday or Sunday" not in caplog.text and out["date"].dt.dayofweek.nunique() == 7
    # New York's closes converted to Tokyo time: Tuesday to Saturday, a day late (not early)
    ny = frame.assign(date=(frame["date"] + pd.Timedelta(hours=16)).dt.tz_localize(
        "America/New_York").dt.tz_convert("Asia/Tokyo").dt.strftime("%Y-%m-%d %H:%M"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        validate_long_panel(ny)
    assert "every bar sits a day late" in caplog.text and "06:00 the next day" in caplog.text
    caplog.clear()
    # a Monday-to-Saturday market stamped at its close in UTC: only Sunday is empty, no shift
    six = every_day[every_day.dayofweek < 6]
    six_days = pd.DataFrame({"date": np.repeat(six, 2) + pd.Timedelta(hours=7),
                             "ticker": ["AAA", "BBB"] * len(six), "close": 10.0})
    with caplog.at_level(logging.WARNING):
        validate_long_panel(six_days.assign(date=six_days["date"].dt.tz_localize("UTC")))
    assert "Saturday or Sunday" not in caplog.text
    # a Sunday-Thursday exchange (Riyadh) stamped on its own clock (+03:00): its Sundays are
    # its trading days, not a shift; the same stamps in UTC still raise the question
    sun_thu = pd.date_range("2021-01-03", periods=35)
    sun_thu = sun_thu[sun_thu.dayofweek.isin([6, 0, 1, 2, 3])]
    riyadh = pd.DataFrame({"date": np.repeat(sun_thu, 2), "ticker": ["AAA", "BBB"] * len(sun_thu),
                           "close": 10.0})
    local = riyadh.assign(date=riyadh["date"].dt.strftime("%Y-%m-%d 15:00:00+03:00"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out = validate_long_panel(local)
    assert "Saturday or Sunday" not in caplog.text
    assert (out["date"].dt.dayofweek == 6).any()  # Sundays kept as the file gives them
    utc = riyadh.assign(date=riyadh["date"].dt.strftime("%Y-%m-%dT12:00:00Z"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        validate_long_panel(utc)
    assert "If the exchange trades Monday to Friday" in caplog.text
    # ... and says, as for dates without a time, that a Sunday-to-Thursday week is read right
    # (it told such a file, stamped at its 15:00 close, to fix its dates)
    assert "a Sunday-to-Thursday exchange, as in Saudi Arabia" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        validate_long_panel(riyadh.assign(date=riyadh["date"].dt.strftime("%Y-%m-%d 15:00")))
    assert "a Sunday-to-Thursday exchange" in caplog.text


def test_closes_stamped_at_different_times_line_up_on_their_day():
    frame = good_panel().assign(date=pd.to_datetime(good_panel()["date"])
                                + pd.to_timedelta([16, 0, 16, 0], unit="h"))
    out = validate_long_panel(frame)
    assert list(out["date"].dt.strftime("%Y-%m-%d")) == list(good_panel()["date"])
    assert (out["date"] == out["date"].dt.normalize()).all()


def test_intraday_bars_are_refused_naming_the_rows():
    frame = pd.concat([good_panel(), good_panel().iloc[[0]]], ignore_index=True)
    frame["date"] = pd.to_datetime(frame["date"]) + pd.to_timedelta([9, 9, 9, 9, 16], unit="h")
    with pytest.raises(DataValidationError, match=r"one bar per name and day; 2 rows .*AAA"):
        validate_long_panel(frame)


def test_descriptive_text_and_date_columns_are_left_out_not_refused(caplog):
    frame = good_panel().assign(exchange="NYSE", isin=["US1", "US2", "US1", "US2"],
                                listed=pd.Timestamp("1980-01-01"), factor=[0.1, 0.2, 0.3, 0.4])
    with caplog.at_level("WARNING"):
        out = validate_long_panel(frame)
    assert "factor" in out and not {"exchange", "isin", "listed"} & set(out.columns)
    assert "exchange, isin, listed" in caplog.text and "must be numeric" in caplog.text
    # a factor with some text among its numbers is broken data, still refused
    with pytest.raises(DataValidationError, match="column 'factor': must be numeric"):
        validate_long_panel(frame.assign(factor=["0.1", "n/a", "0.3", "0.4"]))


def test_a_text_column_that_groups_names_is_suggested_as_the_sector(caplog):
    """A crypto file's `category` (layer-1, defi, ...) is text: left out as before, but the
    warning says that named 'sector' it would group the names; an ISIN (one per name) is no
    grouping and gets no such hint."""
    days = ["2020-01-02", "2020-01-03"]
    names = [f"C{i:02d}" for i in range(30)]
    frame = pd.DataFrame({"date": np.repeat(days, 30), "ticker": names * 2, "close": 10.0,
                          "category": [("l1", "defi", "meme")[i % 3] for i in range(30)] * 2,
                          "isin": [f"XX{i}" for i in range(30)] * 2})
    frame["currency"] = "USD"  # one value: groups nothing
    with caplog.at_level("WARNING"):
        validate_long_panel(frame)
    assert "'category' sort(s) the names into a few groups" in caplog.text
    assert "'currency' sort" not in caplog.text
    assert "named 'sector'" in caplog.text and "'isin' sort" not in caplog.text


def test_decimal_commas_get_a_hint_and_no_false_high_below_low():
    frame = good_panel().astype({c: str for c in ("open", "high", "low", "close")})
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column].str.replace(".", ",", regex=False)
    frame.loc[0, ["high", "low"]] = ["105,50", "94,53"]  # as text, "105,50" < "94,53"
    with pytest.raises(DataValidationError) as err:
        validate_long_panel(frame)
    message = str(err.value)
    assert "look like decimal commas (12,48): set data.decimal: ','" in message
    assert "high must be >= low" not in message


def test_a_csv_with_decimal_commas_reads_with_data_decimal(tmp_path):
    """A European export: dates day.month.year, decimal commas, dots grouping thousands."""
    from bma_quant.core.data.panel import load_raw_panel

    path = tmp_path / "prices.csv"
    path.write_text("date;ticker;close;volume\n"
                    "02.01.2020;AAA;1.234,5;1.234.567\n02.01.2020;BBB;20,1;300\n"
                    "03.01.2020;AAA;10,8;12.345,5\n03.01.2020;BBB;19,9;400\n")
    out = load_raw_panel(path, decimal=",")
    assert out["close"].tolist() == [1234.5, 20.1, 10.8, 19.9]
    assert out["volume"].tolist() == [1234567.0, 300.0, 12345.5, 400.0]
    assert list(out["date"].dt.strftime("%Y-%m-%d").unique()) == ["2020-01-02", "2020-01-03"]
    with pytest.raises(DataValidationError, match="decimal commas"):
        load_raw_panel(path)


def test_a_csv_with_thousands_separators_reads_with_data_thousands(tmp_path):
    """A US export with grouped numbers (quoted "1,234.5"), a French one (1 234,5) and a
    Swiss one (1'234.5): data.thousands removes the separator where it groups digits in threes;
    without it the refusal names the setting; a stray one (1,23) is still refused."""
    from bma_quant.core.data.panel import (
        load_configured_index,
        load_configured_panel,
        load_raw_panel,
    )

    us = tmp_path / "us.csv"
    us.write_text('date,ticker,close,volume\n2020-01-02,AAA,"1,234.5","1,234,567"\n'
                  '2020-01-02,BBB,20.1,300\n2020-01-03,AAA,"1,240.25","12,345"\n'
                  '2020-01-03,BBB,19.9,400\n')
    out = load_configured_panel({"raw_path": str(us), "thousands": ","})  # params:data
    assert out["close"].tolist() == [1234.5, 20.1, 1240.25, 19.9]
    assert out["volume"].tolist() == [1234567.0, 300.0, 12345.0, 400.0]
    with pytest.raises(DataValidationError, match=r"set data.thousands: ','"):
        load_raw_panel(us)
    french = tmp_path / "fr.csv"
    french.write_text("date;ticker;close\n02/01/2020;AAA;1 234,5\n02/01/2020;BBB;20,1\n"
                      "03/01/2020;AAA;1 240,25\n03/01/2020;BBB;19,9\n")
    assert load_raw_panel(french, decimal=",", thousands=" ")["close"].tolist() == [
        1234.5, 20.1, 1240.25, 19.9]
    no_break = tmp_path / "fr_nbsp.csv"  # Excel's French number format: a no-break space
    no_break.write_text(french.read_text().replace("1 2", "1\u00a02").replace("1\u00a024",
                                                                                "1\u202f24"))
    assert load_raw_panel(no_break, decimal=",", thousands=" ")["close"].tolist() == [
        1234.5, 20.1, 1240.25, 19.9]
    swiss = tmp_path / "ch.csv"
    swiss.write_text("date,ticker,close\n2020-01-02,AAA,1'234.5\n2020-01-02,BBB,20.1\n"
                     "2020-01-03,AAA,1'240.25\n2020-01-03,BBB,19.9\n")
    assert load_raw_panel(swiss, thousands="'")["close"].tolist() == [1234.5, 20.1, 1240.25,
                                                                       19.9]
    index = tmp_path / "index.csv"
    index.write_text('date,level\n2020-01-02,"3,257.85"\n2020-01-03,"3,234.85"\n')
    assert load_configured_index({"index_path": str(index), "thousands": ","})[
        "level"].tolist() == [3257.85, 3234.85]
    unquoted = tmp_path / "unquoted.csv"  # every line's grouped numbers unquoted: shifted fields
    unquoted.write_text(us.read_text().replace('"', ""))
    with pytest.raises(DataValidationError, match="a grouped number must be quoted"):
        load_raw_panel(unquoted, thousands=",")
    stray = tmp_path / "stray.csv"
    stray.write_text(us.read_text().replace('"1,234.5"', '"1,23"'))
    with pytest.raises(DataValidationError, match="close") as refused:
        load_raw_panel(stray, thousands=",")
    # the hint knows the file was read with thousands ',' (not "set data.decimal ','" alone)
    assert "group no thousands (12,48) though data.thousands is ','" in str(refused.value)
    for bad, match in ((",", "both ','"), ("ab", "one character"), ("1", "one character")):
        with pytest.raises(DataValidationError, match=match):
            load_raw_panel(french, decimal=",", thousands=bad)


def test_a_dot_decimal_file_read_with_a_decimal_comma_is_refused(tmp_path):
    """data.decimal ',' left in conf/local for a file with decimal dots: "0.264" would read as
    264 (a dot groups thousands there) and "4.0" as 4.0, a thousandfold error on some prices."""
    from bma_quant.core.data.panel import load_raw_panel

    text = ("date,ticker,close,volume\n2020-01-02,AAA,0.264,1000\n2020-01-02,BBB,4.0,300\n"
            "2020-01-03,AAA,0.266,1200\n2020-01-03,BBB,4.1,400\n")
    message = _csv_refusal(tmp_path, text, decimal=",")
    assert (f"Input data rejected ({tmp_path / 'prices.csv'}): data.decimal is ','" in message
            and "decimal dot (close '0.264' on line 2)" in message
            and "data.decimal: '.'" in message)
    assert load_raw_panel(tmp_path / "prices.csv")["close"].tolist() == [0.264, 4.0, 0.266, 4.1]
    # every price below 1 with three decimals: a leading 0 groups no thousands (it read 264)
    (tmp_path / "pennies.csv").write_text(
        "date,ticker,close\n2020-01-02,AAA,0.264\n2020-01-03,AAA,0.266\n")
    with pytest.raises(DataValidationError, match=r"decimal dot \(close '0.264' on line 2\)"):
        load_raw_panel(tmp_path / "pennies.csv", decimal=",")
    (tmp_path / "grouped.csv").write_text(  # 1.234 can group thousands: read as 1234, warned
        "date,ticker,close\n2020-01-02,AAA,1.234\n2020-01-03,AAA,1.236\n")
    assert load_raw_panel(tmp_path / "grouped.csv", decimal=",")["close"].tolist() == [1234, 1236]


def test_a_decimal_comma_file_beside_text_columns_and_a_dot_decimal_index_reads(tmp_path):
    """Only numbers count as decimal dots: a company name "ASML Holding N.V." is a text column
    (left out with a warning), and a US or FRED index file (3257.85, "." for a missing day)
    keeps its own decimal dot next to a European price file."""
    from bma_quant.core.data.panel import load_configured_index, load_raw_panel

    path = tmp_path / "prices.csv"
    path.write_text("date;ticker;close;name\n"
                    "02.01.2020;ASML;271,5;ASML Holding N.V.\n03.01.2020;ASML;270,1;ASML Holding N.V.\n")
    assert load_raw_panel(path, decimal=",")["close"].tolist() == [271.5, 270.1]
    index = tmp_path / "fred.csv"
    index.write_text("DATE,SP500\n2020-01-02,3257.85\n2020-01-03,.\n2020-01-06,3246.28\n")
    level = load_configured_index({"index_path": str(index), "decimal": ","})
    assert level["level"].tolist()[:1] == [3257.85] and 3246.28 in level["level"].tolist()


def test_thousands_separators_get_no_decimal_comma_hint():
    frame = good_panel().assign(volume=["1,000,000", "2,000", "1,500.5", "2,500"])
    with pytest.raises(DataValidationError) as err:
        validate_long_panel(frame)
    assert "column 'volume': must be numeric" in str(err.value)
    assert "look like numbers with thousands separators" in str(err.value)
    assert "decimal commas" not in str(err.value)


def test_values_that_read_either_way_name_both_readings():
    """Every value one comma and three digits (1,000 or 1.000?): the file's convention decides,
    so both readings and what to do for each are named."""
    frame = good_panel().assign(volume=["1,000", "2,000", "1,500", "2,500"])
    with pytest.raises(DataValidationError) as err:
        validate_long_panel(frame)
    assert ("volume read as thousands separators or as decimal commas (12,345 or 12.345): for "
            "decimal commas set data.decimal: ','") in str(err.value)


def test_prices_below_one_with_decimal_commas_are_not_read_as_thousands():
    """0,264 is no thousands grouping: a price file rounded to three decimals is told to set
    data.decimal (it was told to remove thousands separators)."""
    frame = good_panel().astype({"close": str})
    frame["close"] = ["0,264", "0,266", "12,345", "0,270"]
    with pytest.raises(DataValidationError) as err:
        validate_long_panel(frame)
    assert "close look like decimal commas (12,48): set data.decimal: ','" in str(err.value)
    assert "thousands" not in str(err.value)


def test_utc_offsets_that_change_with_daylight_saving_keep_the_local_day():
    frame = good_panel().assign(date=["2020-03-06 16:00-05:00", "2020-03-06 16:00-05:00",
                                      "2020-03-09 16:00-04:00", "2020-03-09 16:00-04:00"])
    out = validate_long_panel(frame)
    assert list(out["date"].dt.strftime("%Y-%m-%d")) == ["2020-03-06", "2020-03-06",
                                                          "2020-03-09", "2020-03-09"]


@pytest.mark.parametrize("name", ["Adj Close", "adj_close", "Adj. Open", "adjHigh", "Adj Low",
                                  "Adj Volume", "close_adj", "AdjustedClose"])
def test_back_adjusted_fields_are_recognised(name):
    from bma_quant.core.data.schema import back_adjusted_columns

    assert back_adjusted_columns([name, "adjacency", "momentum"]) == [name]


def test_a_parquet_row_id_index_is_not_a_factor(tmp_path):
    from bma_quant.core.data.panel import load_raw_panel

    path = tmp_path / "prices.parquet"
    good_panel().rename_axis("rowid").to_parquet(path)
    assert "rowid" not in load_raw_panel(path).columns


@pytest.mark.parametrize("index", [["date", "ticker"], ["date"]])
def test_a_parquet_panel_saved_with_its_keys_as_the_index_reads_them_back(tmp_path, index):
    from bma_quant.core.data.panel import load_raw_panel

    path = tmp_path / "prices.parquet"
    frame = good_panel().assign(date=lambda f: pd.to_datetime(f["date"]))
    frame.set_index(index).to_parquet(path)
    out = load_raw_panel(path)
    assert list(out["ticker"]) == ["AAA", "BBB", "AAA", "BBB"] and len(out) == 4


def test_a_back_adjusted_close_is_not_taken_as_a_factor(caplog):
    frame = good_panel().assign(**{"Adj Close": [10.0, 19.8, 10.6, 19.6], "factor": 0.5})
    with caplog.at_level("WARNING"):
        out = validate_long_panel(frame)
    assert "Adj Close" not in out and "factor" in out
    assert "'Adj Close': back-adjusted" in caplog.text
    # a file whose only close is the adjusted one: one error saying to rename it
    only = good_panel().rename(columns={"close": "Adj Close"})
    caplog.clear()
    with caplog.at_level("WARNING"), pytest.raises(DataValidationError,
                                                   match="Rename the adjusted close to 'close'"):
        validate_long_panel(only)
    assert "back-adjusted (its level" not in caplog.text


def test_spaces_around_tickers_are_trimmed_and_case_clashes_named(caplog):
    frame = good_panel().assign(ticker=[" AAA ", "BBB\t", "AAA", "bbb"])
    frame.loc[2:3, "date"] = "2020-01-03"
    with caplog.at_level("WARNING"):
        out = validate_long_panel(frame)
    assert sorted(out["ticker"].unique()) == ["AAA", "BBB", "bbb"]
    assert "differ only by case are kept as different names: BBB, bbb" in caplog.text
    with pytest.raises(DataValidationError, match="duplicate"):  # ' AAA ' and 'AAA' on one date
        validate_long_panel(good_panel().assign(ticker=[" AAA", "AAA", "AAA", "BBB"]))
    caplog.clear()
    composed, decomposed = "A\u00e9", "Ae\u0301"  # both read as 'Aé'
    frame = good_panel().assign(ticker=[composed, "BBB", decomposed, "BBB"])
    with caplog.at_level("WARNING"):
        out = validate_long_panel(frame)
    assert set(out["ticker"]) == {composed, decomposed, "BBB"}  # kept apart, but said
    assert ("look alike but are written with different Unicode forms (composed / decomposed "
            "accents) are kept as different names: 'A\\xe9', 'Ae\\u0301'") in caplog.text
    caplog.clear()  # case and form both differ: one name to a reader too, named together
    frame = good_panel().assign(ticker=["A\u00c9", "BBB", "ae\u0301", "BBB"])
    with caplog.at_level("WARNING"):
        validate_long_panel(frame)
    assert "different Unicode forms (composed / decomposed accents) are kept as different " \
        "names: 'A\\xc9', 'ae\\u0301'" in caplog.text
    caplog.clear()  # one form (both decomposed), only the case differs: the case warning alone
    frame = good_panel().assign(ticker=["AE\u0301", "BBB", "ae\u0301", "BBB"])
    with caplog.at_level("WARNING"):
        validate_long_panel(frame)
    assert "differ only by case are kept as different names: AE\u0301, ae\u0301" in caplog.text
    assert "Unicode forms" not in caplog.text


def test_a_repeated_line_of_a_wide_file_names_each_pair_with_its_lines(tmp_path):
    """A date repeated in a wide file repeats every ticker: the message named the lines once per
    ticker ("lines 3, 4, 3, 4, 3, 4"); now each pair with its own lines, dates without a time."""
    message = _csv_refusal(tmp_path, "date,AAA,BBB,CCC\n2020-01-02,1,2,3\n2020-01-03,1,2,3\n"
                                     "2020-01-03,1,2,3\n2020-01-06,1,2,3\n", name="wide.csv")
    assert ("duplicate (date, ticker) rows: 6 rows in 3 pair(s), e.g. (2020-01-03, AAA) on lines "
            "3, 4; (2020-01-03, BBB) on lines 3, 4; (2020-01-03, CCC) on lines 3, 4") in message


def test_a_long_file_saved_with_its_row_index_leaves_the_index_out(tmp_path, caplog):
    """`to_csv()` writes the row index as a first column without a header ('Unnamed: 0'): it
    was read as a user factor, a row number offered to the models."""
    from bma_quant.core.data.panel import load_raw_panel

    frame = pd.DataFrame({"date": ["2020-01-02", "2020-01-02", "2020-01-03", "2020-01-03"],
                          "ticker": ["A", "B", "A", "B"], "close": [1.0, 2.0, 1.1, 2.1]})
    path = tmp_path / "long.csv"
    frame.to_csv(path)  # index=True
    with caplog.at_level("WARNING"):
        out = load_raw_panel(path)
    assert list(out.columns) == ["date", "ticker", "close"]
    assert "1 column(s) without a header left out (Unnamed: 0)" in caplog.text
    assert "a saved row index" in caplog.text


def test_blank_trailing_columns_of_an_export_are_no_row_index(tmp_path, caplog):
    """An Excel export with ',,' on every line, header included: two empty columns at the end
    were warned about as "a saved row index"; left out, said in info.log only."""
    from bma_quant.core.data.panel import load_raw_panel

    long = ("date,ticker,close,,\n2020-01-02,A,1.0,,\n2020-01-02,B,2.0,,\n"
            "2020-01-03,A,1.1,,\n2020-01-03,B,2.1,,\n")
    wide = "date,A,B,,\n2020-01-02,1.0,2.0,,\n2020-01-03,1.1,2.1,,\n"
    for name, text in (("long.csv", long), ("wide.csv", wide)):
        (tmp_path / name).write_text(text)
        caplog.clear()
        with caplog.at_level("INFO"):
            out = load_raw_panel(tmp_path / name)
        assert sorted(out["ticker"].unique()) == ["A", "B"]
        assert "2 empty column(s) without a header left out (Unnamed: 3, Unnamed: 4)" in \
            caplog.text
        assert not [r for r in caplog.records if r.levelname == "WARNING"
                    and "without a header" in r.getMessage()]
    (tmp_path / "filled.csv").write_text(long.replace("1.0,,", "1.0,,7"))
    caplog.clear()
    with caplog.at_level("INFO"):
        load_raw_panel(tmp_path / "filled.csv")
    assert ("1 column(s) without a header left out (Unnamed: 4): values under an empty header "
            "cell?") in caplog.text


def test_excel_serial_dates_are_refused_with_a_hint(recwarn):
    """A date column saved as numbers (Excel's serial days: 44199 is 2021-01-04) is refused
    naming what the numbers are, without pandas' own format warning on the console."""
    frame = pd.DataFrame({"date": ["44199", "44199", "44200", "44200"],
                          "ticker": ["AAA", "BBB"] * 2, "close": [10.0, 20.0, 10.5, 20.5]})
    with pytest.raises(DataValidationError, match="Excel's serial day numbers"):
        validate_long_panel(frame)
    assert not [w for w in recwarn if "infer format" in str(w.message)]


@pytest.mark.parametrize("unit, scale", [("seconds", 1), ("milliseconds", 10**3),
                                         ("nanoseconds", 10**9)])
def test_unix_timestamp_dates_are_refused_naming_their_unit(unit, scale):
    """Epoch seconds or milliseconds (a vendor API's export) were "could not parse": the error
    names the unit and the local-date pitfall, as for Excel serials."""
    days = [1_609_718_400, 1_609_804_800]  # 2021-01-04, 2021-01-05 00:00 UTC
    frame = pd.DataFrame({"date": [str(d * scale) for d in days for _ in range(2)],
                          "ticker": ["AAA", "BBB"] * 2, "close": [10.0, 20.0, 10.5, 20.5]})
    with pytest.raises(DataValidationError, match=f"look like Unix timestamps in {unit} "
                                                  rf"\({1_609_459_200 * scale} is 2021-01-01"):
        validate_long_panel(frame)
    as_numbers = frame.assign(date=frame["date"].astype("int64"))
    with pytest.raises(DataValidationError, match=f"Unix timestamps in {unit}"):
        validate_long_panel(as_numbers)


def test_whole_number_sector_codes_stored_as_floats_read_as_the_codes():
    """GICS codes in a float Parquet column (one missing value makes it float64) are the same
    sectors as the CSV's integers: '45102010', not '45102010.0'."""
    frame = pd.DataFrame({"date": ["2021-01-04"] * 3, "ticker": ["AAA", "BBB", "CCC"],
                          "close": [10.0, 20.0, 30.0], "sector": [45102010.0, 20101010.0, np.nan]})
    out = validate_long_panel(frame)
    assert out["sector"].tolist()[:2] == ["45102010", "20101010"] and pd.isna(out["sector"][2])
    text = frame.assign(sector=["Tech", "Energy", None])
    assert validate_long_panel(text)["sector"].tolist()[:2] == ["Tech", "Energy"]
    # the CSV written from the float column reads the same codes; huge floats stay as they read
    csv = frame.assign(sector=["45102010.0", "20101010.0", None])
    assert validate_long_panel(csv)["sector"].tolist()[:2] == ["45102010", "20101010"]
    huge = validate_long_panel(frame.assign(sector=[1e19, 2.0, np.nan]))["sector"]
    assert huge.tolist()[:2] == ["1e+19", "2.0"]
    mixed = frame.assign(sector=["45102010.0", "Tech", None])
    assert validate_long_panel(mixed)["sector"].tolist()[:2] == ["45102010.0", "Tech"]


def test_midnight_stamps_of_a_seven_day_market_are_not_taken_for_noon(caplog):
    """A crypto file stamped '2019-01-05 00:00:00' (text): no AM / PM used to read as 12:00, so
    its weekend bars were said to look shifted by a time zone."""
    days = pd.date_range("2019-01-01", periods=28)  # weekends trade
    frame = pd.DataFrame({"date": np.repeat(days.strftime("%Y-%m-%d 00:00:00"), 2),
                          "ticker": ["AAA", "BBB"] * 28, "close": 10.0})
    frame["date"] = frame["date"].astype("string")
    with caplog.at_level(logging.WARNING):
        out = validate_long_panel(frame)
    assert out["date"].nunique() == 28
    assert "Saturday or Sunday" not in caplog.text and "12:00" not in caplog.text


def test_missing_tickers_get_one_bullet_not_a_duplicate_one(tmp_path):
    """A CSV's NaN / None ticker cells are missing tickers: they were also reported as 'duplicate
    (date, ticker) rows ... e.g. ' with no example, since two missing tickers on a date collide."""
    message = _csv_refusal(tmp_path, "date,ticker,close\n2020-01-02,AAA,1\n2020-01-02,NaN,2\n"
                                     "2020-01-02,None,3\n2020-01-03,AAA,1\n2020-01-03,NaN,2\n"
                                     "2020-01-03,NA,3\n")
    assert "duplicate" not in message
    assert "column 'ticker': no ticker (an empty cell, or a missing-value marker" in message
    # lines 3, 4 and 6 (NaN, None, NaN); line 7's NA is a ticker
    assert "3 failing value(s), e.g. line 3 (2020-01-02, " in message
    assert "line 4 (2020-01-02, " in message and "line 6 (2020-01-03, " in message


def test_a_real_duplicate_is_named_beside_missing_tickers(tmp_path):
    message = _csv_refusal(tmp_path, "date,ticker,close\n2020-01-02,AAA,1\n2020-01-02,AAA,1\n"
                                     "2020-01-02,,2\n2020-01-02,,3\n")
    assert ("duplicate (date, ticker) rows: 2 rows in 1 pair(s), e.g. (2020-01-02, AAA) on lines "
            "2, 3") in message
    assert "no ticker" in message


def test_a_bar_without_its_close_is_said_once_with_its_lines(tmp_path, caplog):
    """An empty close beside an open / volume is a missing day, not refused: it was reported only
    as missing_days in the data quality report."""
    from bma_quant.core.data.panel import load_raw_panel

    path = tmp_path / "prices.csv"
    path.write_text("date,ticker,open,close,volume\n2020-01-02,AAA,1,1,100\n2020-01-02,BBB,2,,50\n"
                    "2020-01-03,AAA,1,1.1,100\n2020-01-03,BBB,,,\n")
    with caplog.at_level("WARNING"):
        panel = load_raw_panel(path)
    assert len(panel) == 4
    warned = [r.getMessage() for r in caplog.records if "but no close" in r.getMessage()]
    assert len(warned) == 1
    assert "1 row(s) have a bar (open/volume) but no close, e.g. line 3 (2020-01-02, BBB)" in (
        warned[0])


def test_tickers_stored_as_numbers_of_several_widths_are_warned_about(caplog):
    """A Parquet export of A-share codes as integers: 000001 reads as 1. Still one name each,
    but a later file with text codes names other tickers: said once at load."""
    frame = good_panel().assign(ticker=[1, 600519, 1, 600519])
    with caplog.at_level("WARNING"):
        out = validate_long_panel(frame)
    assert sorted(out["ticker"].unique()) == ["1", "600519"]
    assert "tickers are stored as numbers (1 to 6 digits, e.g. 1)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        validate_long_panel(good_panel().assign(ticker=[600000, 600519, 600000, 600519]))
    assert "stored as numbers" not in caplog.text


def test_bar_end_midnight_dates_that_move_a_week_by_a_day_are_warned_about(caplog):
    """Closes stamped at the midnight after the close (a bar-end convention): every date a day
    late, 200 Saturdays and no Monday, and nothing said. A five-day or seven-day calendar as
    given is not warned about."""
    days = pd.bdate_range("2021-01-04", periods=60)
    def frame(dates):
        return pd.DataFrame({"date": [d.strftime("%Y-%m-%d 00:00:00") for d in dates
                                      for _ in range(2)],
                             "ticker": ["AAA", "BBB"] * len(dates), "close": 10.0})
    with caplog.at_level("WARNING"):
        validate_long_panel(frame(days + pd.Timedelta(days=1)))
    assert "20% of the dates fall on a Saturday or Sunday and almost none on a Monday" \
        in caplog.text and "stamped a day late" in caplog.text
    assert "Sunday-to-Thursday" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # a day early: a Gulf exchange's week looks the same
        validate_long_panel(frame(days - pd.Timedelta(days=1)))
    assert "stamped a day early" in caplog.text and ("a Sunday-to-Thursday exchange, as in "
                                                     "Saudi Arabia") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        validate_long_panel(frame(days))
        validate_long_panel(frame(pd.date_range("2021-01-04", periods=60)))  # crypto
        every_day = pd.date_range("2021-01-04", periods=70)
        validate_long_panel(frame(every_day[every_day.dayofweek < 6]))  # Monday to Saturday
    assert "Saturday or Sunday" not in caplog.text  # a six-day week was called a day late


def test_a_factor_column_without_a_value_is_left_out_with_a_warning(tmp_path, caplog):
    """README: columns without a single number are left out with a warning (an empty one too,
    not kept as an all-missing factor)."""
    from bma_quant.core.data.panel import load_raw_panel

    path = tmp_path / "prices.csv"
    path.write_text("date,ticker,close,volume,unused,value\n"
                    "2020-01-02,AAA,10,,,1.5\n2020-01-02,BBB,20,,,2.5\n"
                    "2020-01-03,AAA,11,,,1.0\n2020-01-03,BBB,21,,,3.0\n")
    with caplog.at_level("WARNING"):
        out = load_raw_panel(path)
    assert "unused" not in out and out["value"].tolist() == [1.5, 2.5, 1.0, 3.0]
    assert "volume" in out  # a bar column stays (the schema's own rules read it)
    assert "column(s) unused hold no value on any row and are not used" in caplog.text


def test_lines_without_a_date_and_dashes_say_what_they_likely_are(tmp_path):
    """A probe's exports: a total line at the end, two files joined with their headers, and '-'
    for a missing price were refused with where, not with what to do."""
    days = pd.bdate_range("2020-01-02", periods=8).strftime("%Y-%m-%d")
    base = "date,ticker,close\n" + "".join(f"{d},AAA,1.{k}\n" for k, d in enumerate(days))
    footer = _csv_refusal(tmp_path, base + "Total,,4\n", name="footer.csv")
    assert "line 10 (Total, nan): 'Total'\n  a line at the end of the file with no date" in footer
    joined = _csv_refusal(tmp_path, base + base.replace("2020-01", "2020-02"), name="joined.csv")
    assert ("'date'\n  a header line again inside the data (files joined with their headers?): "
            "keep the first file's header line only") in joined
    dash = _csv_refusal(tmp_path, base.replace("1.1\n", "-\n"), name="dash.csv")
    assert ("line 3 (2020-01-03, AAA): '-'\n  '-' is no number: for a missing value leave the "
            "cell empty or write NA") in dash
    for last in ("2020-02-30", "01/13/2020"):  # a malformed last date is data to fix
        wrong = _csv_refusal(tmp_path, base + f"{last},AAA,2\n", name="last.csv")
        assert repr(last) in wrong and "delete it" not in wrong
    unparsed = _csv_refusal(tmp_path, base.replace("2020-01-03", "soon"), name="other.csv")
    assert "'soon'" in unparsed  # a bad date mid-file: no guess
    assert "header line" not in unparsed and "end of the file" not in unparsed
    assert "is no number" not in _csv_refusal(tmp_path, base.replace("1.1\n", "abc\n"),
                                              name="a.csv")


def test_a_two_line_header_download_is_named_with_its_conversion(tmp_path, monkeypatch):
    """yfinance's multi-ticker CSV (fields over tickers, then a Date line) was refused as a
    header repeating Close, High, ...: named as a two-line header, with a conversion that works."""
    from bma_quant.core.data.panel import load_raw_panel

    text = ("Price,Close,Close,High,High,Low,Low,Open,Open,Volume,Volume\n"
            "Ticker,AAPL,MSFT,AAPL,MSFT,AAPL,MSFT,AAPL,MSFT,AAPL,MSFT\n"
            "Date,,,,,,,,,,\n"
            "2020-01-02,72.7,153.9,72.8,154.0,71.5,151.8,71.8,152.1,135480400,22622100\n"
            "2020-01-03,72.0,152.0,72.9,153.3,71.9,151.4,72.0,151.8,146322800,21116200\n")
    message = _csv_refusal(tmp_path, text, name="yf.csv")
    assert "it has two header lines (fields and tickers" in message
    assert "repeats column" not in message
    monkeypatch.chdir(tmp_path)
    exec(message.split("long layout once: ")[1], {"pd": pd})  # the message's own recipe
    panel = load_raw_panel(tmp_path / "prices_long.csv")
    assert sorted(panel["ticker"].unique()) == ["AAPL", "MSFT"] and len(panel) == 4
    assert panel.loc[panel["ticker"] == "MSFT", "close"].tolist() == [153.9, 152.0]
    by_ticker = ("Ticker,AAPL,AAPL,MSFT,MSFT\nPrice,Close,Volume,Close,Volume\nDate,,,,\n"
                 "2020-01-02,72.7,135480400,153.9,22622100\n"
                 "2020-01-03,72.0,146322800,152.0,21116200\n")  # group_by='ticker'
    message = _csv_refusal(tmp_path, by_ticker, name="yf_by_ticker.csv")
    exec(message.split("long layout once: ")[1], {"pd": pd})
    panel = load_raw_panel(tmp_path / "prices_long.csv")
    assert panel.loc[panel["ticker"] == "MSFT", "close"].tolist() == [153.9, 152.0]
    assert "repeats column(s) close" in _csv_refusal(  # a plain repeated field: as before
        tmp_path, "date,ticker,close,close\n2020-01-02,A,1,1\n", name="rep.csv").lower()
