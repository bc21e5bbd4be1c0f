"""Real exports read as they are meant, or are refused naming the problem in the file."""

import logging

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.panel import load_raw_panel
from bma_quant.core.data.schema import DataValidationError

DATES = pd.bdate_range("2021-01-04", periods=4).strftime("%Y-%m-%d")


def _long_lines(tickers) -> list[str]:
    return [f"{d},{t},{10 + i + 0.5 * j}" for i, d in enumerate(DATES)
            for j, t in enumerate(tickers)]


def test_tickers_are_read_as_written(tmp_path):
    """Codes keep their leading zeros (0700 is not 700) and NA / NULL are tickers, not gaps."""
    path = tmp_path / "codes.csv"
    path.write_text("\n".join(["date,ticker,close", *_long_lines(["0700", "700", "NA", "NULL"])]))
    panel = load_raw_panel(path)
    assert sorted(panel["ticker"].unique()) == ["0700", "700", "NA", "NULL"]
    assert panel["close"].notna().all()
    # a missing ticker is still refused, and a missing close is still a gap
    path.write_text("date,ticker,close\n2021-01-04,,10\n2021-01-04,A,NA\n")
    with pytest.raises(DataValidationError, match="ticker"):
        load_raw_panel(path)


def test_a_windows_excel_export_is_read_with_a_warning(tmp_path, caplog):
    path = tmp_path / "excel.csv"
    lines = ["date,ticker,close,sector",
             *[f"{line},Télécom" for line in _long_lines(["A", "B"])]]
    path.write_bytes("\n".join(lines).encode("cp1252"))
    with caplog.at_level(logging.WARNING):
        panel = load_raw_panel(path)
    assert set(panel["sector"]) == {"Télécom"} and "not UTF-8" in caplog.text


def test_excels_unicode_text_export_reads_like_the_utf8_file(tmp_path):
    """Excel's "Unicode Text" (UTF-16 with a byte-order mark, tab-separated) was read as
    Windows-1252 and refused for a missing 'date' column."""
    lines = ["date\tticker\tclose\tsector",
             *[f"{line.replace(',', chr(9))}\tTélécom" for line in _long_lines(["0700", "B"])]]
    utf16, utf8 = tmp_path / "unicode.txt", tmp_path / "utf8.txt"
    utf16.write_bytes("\r\n".join(lines).encode("utf-16"))
    utf8.write_bytes("\r\n".join(lines).encode("utf-8"))
    pd.testing.assert_frame_equal(load_raw_panel(utf16), load_raw_panel(utf8))
    assert set(load_raw_panel(utf16)["ticker"]) == {"0700", "B"}


def test_a_header_cell_without_a_name_keeps_missing_markers(tmp_path):
    """'date,ticker,close,' (a delimiter closing the header too): the unnamed column is empty and
    a gap in close is still a gap; an Excel '#N/A' ticker is missing, not a name."""
    path = tmp_path / "closed.csv"
    path.write_text("date,ticker,close,\n2021-01-04,A,10,\n2021-01-05,A,,\n2021-01-06,A,11,\n")
    panel = load_raw_panel(path)
    assert panel["close"].isna().sum() == 1 and len(panel) == 3
    path.write_text("date,ticker,close\n2021-01-04,A,10\n2021-01-04,#N/A,11\n")
    with pytest.raises(DataValidationError, match="column 'ticker': no ticker"):
        load_raw_panel(path)


def test_a_delimiter_closing_every_line_is_not_an_index(tmp_path, caplog):
    path = tmp_path / "trailing.csv"
    path.write_text("\n".join(["date,ticker,close", *[f"{x}," for x in _long_lines(["A", "B"])]]))
    with caplog.at_level(logging.WARNING):
        panel = load_raw_panel(path)
    assert len(panel) == 8 and panel["close"].notna().all()
    assert "more fields than the header" in caplog.text


@pytest.mark.parametrize("text, message", [
    ("Prices exported 2021-02-01\ndate,ticker,close\n" + "\n".join(_long_lines(["A"])),
     "the header is on line 2, not line 1"),
    ("date,ticker,close\n" + "\n".join(_long_lines(["A"])) + "\n2021-01-08,A,1,2",
     "Expected 3 fields in line 6, saw 4"),
    ("date,A,B,A\n" + "\n".join(f"{d},1,2,3" for d in DATES),
     r"the header repeats column\(s\) A"),
    ("Date,Symbol,Close Price\n" + "\n".join(_long_lines(["AAA", "BBB"])),
     "column\\(s\\) Symbol hold text, not prices.*Symbol -> ticker"),
    ('date,ticker,close,volume\n2021-01-04,A,10.5,"1,234,567"\n2021-01-05,A,10.7,"2,345,678"',
     "volume look like numbers with thousands separators"),
], ids=["title-line", "extra-field", "repeated-header", "vendor-names", "thousands-separators"])
def test_shape_problems_are_named(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataValidationError, match=message):
        load_raw_panel(path)


def test_wide_exports_without_a_date_header_and_tab_files(tmp_path):
    wide = pd.DataFrame({"A": [1.0, 2, 3, 4], "B": [5.0, 6, 7, 8]}, index=pd.to_datetime(DATES))
    wide.to_csv(tmp_path / "sheet.csv")  # the dates in a column without a header
    wide.to_parquet(tmp_path / "frame.parquet")  # the dates as the frame's unnamed index
    (tmp_path / "tabbed.tsv").write_text(
        "\n".join(["date\tticker\tclose", *[x.replace(",", "\t") for x in _long_lines(["A"])]]))
    for name in ("sheet.csv", "frame.parquet"):
        panel = load_raw_panel(tmp_path / name)
        assert len(panel) == 8 and list(panel["date"].unique()) == list(pd.to_datetime(DATES))
        np.testing.assert_allclose(panel.loc[panel["ticker"] == "B", "close"], [5, 6, 7, 8])
    assert len(load_raw_panel(tmp_path / "tabbed.tsv")) == 4


def test_a_wide_file_refused_for_its_layout_is_named(tmp_path):
    path = tmp_path / "closes.csv"
    path.write_text("when,A,B\n2021-01-04,1,2\n2021-01-05,1.1,2.1\n")
    with pytest.raises(DataValidationError, match=r"rejected \(.*closes\.csv\): missing "
                                                    r"required column 'date'"):
        load_raw_panel(path, layout="wide")


def test_wide_tickers_named_like_fields_keep_their_names(tmp_path):
    """LOW (Lowe's), OPEN (Opendoor) and a ticker Close are tickers in a wide file, not the
    fields low, open and close: they keep their names as written (and Close no longer crashes
    the reshaping)."""
    wide = pd.DataFrame({"LOW": [1.0, 2, 3, 4], "OPEN": [5.0, 6, 7, 8], "Close": [2.0, 3, 4, 5],
                         "Volume": [9.0, 8, 7, 6]}, index=pd.Index(DATES, name="Date"))
    wide.to_csv(tmp_path / "wide.csv")
    wide.to_parquet(tmp_path / "wide.parquet")
    for name in ("wide.csv", "wide.parquet"):
        panel = load_raw_panel(tmp_path / name)
        assert sorted(panel["ticker"].unique()) == ["Close", "LOW", "OPEN", "Volume"]
        np.testing.assert_allclose(panel.loc[panel["ticker"] == "LOW", "close"], [1, 2, 3, 4])
    # a long file still reads its fields without case
    (tmp_path / "long.csv").write_text("Date,Ticker,Close,Volume\n" + "\n".join(
        f"{d},LOW,{10 + i},100" for i, d in enumerate(DATES)))
    long = load_raw_panel(tmp_path / "long.csv")
    assert list(long["ticker"].unique()) == ["LOW"] and long["volume"].tolist() == [100] * 4


@pytest.mark.parametrize("first_row", [0, 5043])
def test_a_wide_files_saved_row_index_is_left_out_not_a_ticker(tmp_path, caplog, first_row):
    """`to_csv()` of a wide frame with a Date column writes its row index beside it: no header,
    so no ticker (as 'Unnamed: 0' it was a name whose closes were row numbers, or a 0 close)."""
    wide = pd.DataFrame({"Date": DATES, "A": [1.0, 2, 3, 4], "B": [5.0, 6, 7, 8]},
                        index=range(first_row, first_row + 4))
    wide.to_csv(tmp_path / "saved.csv")
    with caplog.at_level(logging.WARNING):
        panel = load_raw_panel(tmp_path / "saved.csv")
    assert sorted(panel["ticker"].unique()) == ["A", "B"]
    assert "column(s) without a header left out (Unnamed: 0)" in caplog.text


def test_a_wide_file_without_ticker_headers_is_refused(tmp_path):
    """yfinance's CSV of one name has three header lines; with the upper two removed, the
    price columns have no header at all: no column names a ticker."""
    path = tmp_path / "headerless.csv"
    path.write_text("Date,,,\n" + "\n".join(f"{d},1,2,3" for d in DATES))
    with pytest.raises(DataValidationError, match=r"none of the 3 price column\(s\) has a header"):
        load_raw_panel(path)


def test_a_single_ticker_download_is_refused_not_read_as_six_tickers(tmp_path):
    """Date, Open, High, Low, Close, Adj Close, Volume without a ticker column is one name's bars
    (high >= low on every row), not six tickers."""
    close = np.array([10.0, 10.5, 10.2, 10.8])
    bars = pd.DataFrame({"Date": DATES, "Open": close - 0.1, "High": close + 0.3,
                         "Low": close - 0.3, "Close": close, "Adj Close": close * 0.98,
                         "Volume": [1e6, 2e6, 1.5e6, 1e6]})
    bars.to_csv(tmp_path / "AAPL.csv", index=False)
    with pytest.raises(DataValidationError, match=r"Open, High, Low, Close, Adj Close, Volume "
                                                    r"are one name's price fields"):
        load_raw_panel(tmp_path / "AAPL.csv")
    # tickers HIGH, LOW and CLOSE beside another ticker stay tickers, bars or not
    beside = pd.DataFrame({"Date": DATES, "HIGH": 50.0, "LOW": 20.0, "CLOSE": 30.0,
                           "AAPL": 100.0})
    beside.to_csv(tmp_path / "beside.csv", index=False)
    assert sorted(load_raw_panel(tmp_path / "beside.csv")["ticker"].unique()) == [
        "AAPL", "CLOSE", "HIGH", "LOW"]
    # tickers HIGH, LOW and CLOSE whose prices are not bars (HIGH below LOW) stay tickers
    names = pd.DataFrame({"Date": DATES, "HIGH": [1.0, 2, 3, 4], "LOW": [5.0, 6, 7, 8],
                          "CLOSE": [2.0, 3, 4, 5]})
    names.to_csv(tmp_path / "names.csv", index=False)
    assert sorted(load_raw_panel(tmp_path / "names.csv")["ticker"].unique()) == [
        "CLOSE", "HIGH", "LOW"]


@pytest.mark.parametrize("sep, cells, hint", [
    (";", ("12,48", "12,50"), r"decimal comma: set data\.decimal: ','"),
    (",", ('"1,234.56"', '"1,235.00"'), "thousands separators"),
    (",", ("#N/A Invalid Security", "#N/A Invalid Security"), "must be empty"),
    (",", ("-", "-"), "must be empty"),
])
def test_text_in_a_wide_files_prices_is_shown_with_what_it_likely_is(tmp_path, sep, cells, hint):
    path = tmp_path / "wide.csv"
    path.write_text(f"Date{sep}A{sep}B\n{DATES[0]}{sep}{cells[0]}{sep}2\n"
                    f"{DATES[1]}{sep}{cells[1]}{sep}3\n")
    with pytest.raises(DataValidationError, match=hint) as refused:
        load_raw_panel(path)
    assert cells[0].strip('"') in str(refused.value)  # the text itself is shown


def test_a_decimal_comma_setting_on_a_file_without_commas_is_warned_about(tmp_path, caplog):
    """Prices under 1000 written with three decimals (6.496) read as thousands groups under
    data.decimal ',': the file cannot tell, so the reading is named in a warning."""
    path = tmp_path / "dots.csv"
    path.write_text("date;ticker;close\n" + "\n".join(
        f"{d};A;6.{496 + i}" for i, d in enumerate(DATES)))
    with caplog.at_level(logging.WARNING):
        panel = load_raw_panel(path, decimal=",")
    assert panel["close"].iloc[0] == 6496.0
    assert "no number in the file has it" in caplog.text and "'6.496'" in caplog.text
    caplog.clear()
    path.write_text("date;ticker;close\n" + "\n".join(
        f"{d};A;1.234,{i}" for i, d in enumerate(DATES)))  # a real decimal-comma file
    with caplog.at_level(logging.WARNING):
        assert load_raw_panel(path, decimal=",")["close"].iloc[0] == 1234.0
    assert "no number in the file has it" not in caplog.text


def test_slashed_dates_are_read_day_first_when_the_file_says_so(tmp_path):
    """04/01/2021 is 4 January in a file that also holds 13/01/2021, and 1 April in a US file
    that also holds 01/13/2021; a file holding both readings is refused."""
    uk = ["04/01/2021", "05/01/2021", "13/01/2021"]
    us = ["01/04/2021", "01/05/2021", "01/13/2021"]
    expected = pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-13"])
    for name, dates in (("uk", uk), ("us", us)):
        path = tmp_path / f"{name}.csv"
        path.write_text("date,ticker,close\n" + "\n".join(f"{d},A,{i + 1}"
                                                          for i, d in enumerate(dates)))
        assert list(load_raw_panel(path)["date"]) == list(expected)
    path = tmp_path / "both.csv"
    path.write_text("date,ticker,close\n01/13/2021,A,1\n14/01/2021,A,2\n")
    with pytest.raises(DataValidationError, match="read only day first and others only month"):
        load_raw_panel(path)


def test_index_files_from_fred_and_their_bad_values(tmp_path):
    """FRED writes '.' for a day without a level: a missing day. A bad value is named by its
    file line, with a hint when it is a number grouped by thousands."""
    from bma_quant.core.data.panel import load_index_series

    path = tmp_path / "SP500.csv"
    path.write_text("DATE,SP500\n2021-01-04,3700.65\n2021-01-05,.\n2021-01-06,3748.14\n")
    index = load_index_series(path)
    assert list(index["date"]) == list(pd.to_datetime(["2021-01-04", "2021-01-06"]))
    path.write_text("date,level\n2021-01-04,\"3,700.65\"\n2021-01-05,-1\n")
    with pytest.raises(DataValidationError,
                       match=r"2 bad value\(s\), e.g. line 2: '3,700.65'; line 3: '-1'"):
        load_index_series(path)
    path.write_text("date,level\n2021-01-04,\"3,700.65\"\n2021-01-05,\"3,726.86\"\n")
    with pytest.raises(DataValidationError, match="thousands separators"):
        load_index_series(path)
    path.write_text("date,level\n2021-01-04,3700.65\n2021-01-05,0\n")  # read as numbers
    with pytest.raises(DataValidationError, match=r"1 bad value\(s\), e.g. line 3: 0.0$"):
        load_index_series(path)
    # an infinite level passed as positive: the market return was inf, then -100 %, in every
    # market feature and the regime detector, and a model was registered on it
    path.write_text("date,level\n2021-01-04,3700.65\n2021-01-05,inf\n")
    with pytest.raises(DataValidationError, match=r"finite positive numbers .* line 3: inf$"):
        load_index_series(path)


def test_numeric_sector_codes_stay_codes(tmp_path):
    path = tmp_path / "gics.csv"
    path.write_text("date,ticker,close,sector\n2021-01-04,A,10,45102010\n2021-01-04,B,11,\n"
                    "2021-01-05,A,10.5,45102010\n2021-01-05,B,11.2,20101010\n")
    panel = load_raw_panel(path)
    assert panel["sector"].isna().sum() == 1  # an empty cell is still a missing sector
    assert set(panel["sector"].dropna()) == {"45102010", "20101010"}


def test_the_first_byte_that_is_not_utf8_is_found_across_read_blocks(tmp_path):
    from bma_quant.core.data.panel import _first_non_utf8_byte

    path = tmp_path / "mixed.csv"
    path.write_bytes(b"a" * 20 + "é".encode() + b"\xe9tail")
    assert {_first_non_utf8_byte(path, chunk=c) for c in (1, 2, 5, 21, 22, 1 << 20)} == {
        (0xE9, 22)}
    path.write_bytes("date,ticker\n2021-01-04,Télécom\n".encode())
    assert _first_non_utf8_byte(path) is None


def test_two_digit_years_are_refused_and_one_numeric_format_is_read_whole(tmp_path):
    """01/02/21 could be any of three dates (and which century?): refused with the reason, in the
    panel and in the index file, where pandas read each date on its own (2 Jan, then 13 Jan).
    A file in one dashed day-first format (31-12-2020) is read, not called mixed."""
    from bma_quant.core.data.panel import load_index_series

    for name, dates in (("dmy", ["01/02/21", "13/02/21"]), ("ymd", ["21-01-13", "21-01-14"]),
                        ("timed", ["02/01/08 4:00:00 PM", "13/01/08 4:00:00 PM"])):
        path = tmp_path / f"{name}.csv"
        path.write_text("date,ticker,close\n" + "\n".join(f"{d},A,{i + 1}"
                                                          for i, d in enumerate(dates)))
        with pytest.raises(DataValidationError, match="without a four-digit year are ambiguous"):
            load_raw_panel(path)
    index = tmp_path / "index.csv"
    index.write_text("date,level\n01/02/21,100\n13/02/21,101\n")
    with pytest.raises(DataValidationError, match="without a four-digit year"):
        load_index_series(index)
    dashed = tmp_path / "dashed.csv"
    dashed.write_text("date,ticker,close\n30-12-2020,A,1\n31-12-2020,A,2\n04-01-2021,A,3\n")
    expected = list(pd.to_datetime(["2020-12-30", "2020-12-31", "2021-01-04"]))
    assert list(load_raw_panel(dashed)["date"]) == expected
    # the same rule with a time of day (the day is kept), and one that only reads day first
    for rows in (["30-12-2020 16:00", "31-12-2020 16:00", "04-01-2021 16:00"],
                 ["30.12.2020 16:00:00", "31.12.2020 16:00:00", "04.01.2021 16:00:00"],
                 ["12/30/2020 16:00", "12/31/2020 16:00", "01/04/2021 16:00"],
                 ["30/12/2020 4:00:00 PM", "31/12/2020 4:00:00 PM", "04/01/2021 4:00:00 PM"]):
        timed = tmp_path / "timed.csv"
        timed.write_text("date,ticker,close\n" + "\n".join(f"{d},A,{i + 1}"
                                                          for i, d in enumerate(rows)))
        assert list(load_raw_panel(timed)["date"]) == expected, rows
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("date,ticker,close\n2020-12-30,A,1\n31-12-2020,A,2\n")
    with pytest.raises(DataValidationError, match="some dates put the year first"):
        load_raw_panel(mixed)


def test_columns_differing_only_by_case_are_refused_by_name(tmp_path):
    """'Close' beside 'close' (or 'Ticker' beside 'ticker') is one field twice: one clear error
    naming both, not a pandas error about dimensions."""
    for twin in ("Close", "Ticker", "Volume", "Sector"):
        path = tmp_path / f"{twin}.csv"
        path.write_text(f"date,ticker,close,volume,sector,{twin}\n2021-01-04,A,1,10,X,"
                        f"{'A' if twin in ('Ticker', 'Sector') else 2}\n")
        with pytest.raises(DataValidationError,
                           match=f"'{twin.lower()}' and '{twin}' are both '{twin.lower()}'"):
            load_raw_panel(path)
    parquet = tmp_path / "twin.parquet"
    pd.DataFrame({"date": ["2021-01-04"], "ticker": ["A"], "close": [1.0],
                  "CLOSE ": [2.0]}).to_parquet(parquet)
    with pytest.raises(DataValidationError, match="'close' and 'CLOSE ' are both 'close'"):
        load_raw_panel(parquet)


def test_columns_with_the_projects_own_names_are_named_and_left_out(tmp_path, caplog):
    """A user's `eligible` (an index-membership flag) was replaced by the computed universe and
    `ret_1d` / `label` left out of the factors, each without a word."""
    path = tmp_path / "named.csv"
    lines = ["date,ticker,close,eligible,label,vendor",
             *[f"{line},1,0.01,0.5" for line in _long_lines(["A", "B"])]]
    path.write_text("\n".join(lines))
    with caplog.at_level(logging.WARNING):
        panel = load_raw_panel(path)
    assert "eligible" not in panel and "label" not in panel and "vendor" in panel
    assert "column(s) eligible, label carry names the project computes" in caplog.text


def test_zip_files_read_and_misnamed_compression_is_named(tmp_path, caplog):
    """`to_csv("x.csv.zip")` (and many downloads) read like .gz, with the ticker kept as written
    (NA is National Bank of Canada) and no false encoding warning; a gzip file named .csv, a
    zstd file or a zip of several files are refused, naming what the file is."""
    import gzip

    frame = pd.DataFrame({"date": list(DATES) * 2, "ticker": ["NA"] * 4 + ["0700"] * 4,
                          "close": np.arange(8) + 1.0})
    frame.to_csv(tmp_path / "prices.csv.zip", index=False)
    with caplog.at_level(logging.WARNING):
        panel = load_raw_panel(tmp_path / "prices.csv.zip")
    assert "not UTF-8" not in caplog.text
    assert sorted(panel["ticker"].unique()) == ["0700", "NA"] and len(panel) == 8
    text = frame.to_csv(index=False).encode()
    (tmp_path / "packed.csv").write_bytes(gzip.compress(text))
    with pytest.raises(DataValidationError, match=r"compressed as gz .*name it packed.csv.gz"):
        load_raw_panel(tmp_path / "packed.csv")
    (tmp_path / "prices.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
    with pytest.raises(DataValidationError, match="compressed as zst .*decompress it"):
        load_raw_panel(tmp_path / "prices.csv.zst")
    import zipfile

    with zipfile.ZipFile(tmp_path / "two.csv.zip", "w") as archive:
        archive.writestr("a.csv", text)
        archive.writestr("b.csv", text)
    with pytest.raises(DataValidationError, match="exactly one file .* holds 2"):
        load_raw_panel(tmp_path / "two.csv.zip")
    # a Finder zip (with its __MACOSX resource fork), named without .csv: the one CSV in it
    with zipfile.ZipFile(tmp_path / "prices.zip", "w") as archive:
        archive.writestr("prices.csv", text)
        archive.writestr("__MACOSX/._prices.csv", b"\x00\x05\x16\x07")
    assert len(load_raw_panel(tmp_path / "prices.zip")) == 8
    (tmp_path / "empty.csv.zip").write_bytes(b"")
    with pytest.raises(DataValidationError, match="not a readable zip archive"):
        load_raw_panel(tmp_path / "empty.csv.zip")


def test_damaged_or_misnamed_files_are_refused_naming_the_file(tmp_path):
    """A plain CSV named .gz, a CSV named .parquet, a truncated gzip download, UTF-16 without a
    byte-order mark and a byte no text encoding read: one message each, naming the file."""
    import gzip

    text = "\n".join(["date,ticker,close", *_long_lines(["A", "B"] * 400)]).encode()
    cases = {
        "plain.csv.gz": (text, r"plain.csv.gz is named .gz but is not gz-compressed.*plain.csv"),
        "text.parquet": (text, r"text.parquet is not Parquet \(a text file"),
        "cut.csv.gz": (gzip.compress(text)[:200], r"cut.csv.gz could not be read: it ends early"),
        "wide16.csv": (text.decode().encode("utf-16-le"), r"UTF-16 text without a byte-order"),
        "dos.csv": (text.replace(b",A,", b",Z\x81rich,"),
                    r"dos.csv could not be read: byte 0x81 is neither UTF-8 nor Windows-1252"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataValidationError, match=message):
            load_raw_panel(tmp_path / name)


def test_a_long_file_without_its_ticker_column_is_named_as_such(tmp_path):
    """(date, close) rows of many names: read as wide, 'close' looked like a ticker and the
    refusal spoke of duplicate (date, close) pairs."""
    path = tmp_path / "no_ticker.csv"
    path.write_text("\n".join(["date,close", *[f"{d},{10 + i}" for i, d in enumerate(DATES)] * 2]))
    with pytest.raises(DataValidationError, match="no 'ticker' column.*4 date.*close look like"):
        load_raw_panel(path)


def test_a_factor_name_the_tree_learners_refuse_is_refused_at_load(tmp_path):
    """LightGBM refuses " , : [ ] { } and XGBoost [ ] < in a feature's name: such a factor
    column failed both mid-run while the run reported success on the other learners."""
    lines = [f"{d},{t},{10 + i},{0.1 * i}" for i, d in enumerate(DATES) for t in ("A", "B")]
    path = tmp_path / "factors.csv"
    path.write_text('date,ticker,close,"EPS Rev. (3M, %)"\n' + "\n".join(
        f'{line.rsplit(",", 1)[0]},"{line.rsplit(",", 1)[1]}"' for line in lines))
    with pytest.raises(DataValidationError, match=r"'EPS Rev\. \(3M, %\)' \(,\)"):
        load_raw_panel(path)
    path.write_text("date,ticker,close,Signal [FY1],Sector note\n" + "\n".join(
        f"{line},x" for line in lines))
    with pytest.raises(DataValidationError, match=r"'Signal \[FY1\]' \(\[ \]\)"):
        load_raw_panel(path)
    path.write_text("date,ticker,close,Signal (FY1)\n" + "\n".join(lines))
    assert "Signal (FY1)" in load_raw_panel(path).columns  # parentheses are fine
    # an empty column is no factor (left out): its name does not matter
    prices = [line.rsplit(",", 1)[0] for line in lines]
    path.write_text("date,ticker,close,Notes: misc\n" + "\n".join(f"{x}," for x in prices))
    assert len(load_raw_panel(path)) == len(lines)


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Tokyo", None])
def test_arrow_backed_timestamps_are_read_as_calendar_days(tmp_path, tz):
    """A Parquet file written with pyarrow timestamp dtypes (with a time zone or not) gives its
    local calendar days, as pandas' own time-zone dtype does (not UTC instants: 05:00)."""
    dates = pd.to_datetime(list(DATES) * 2)
    stamps = pd.Series(dates.tz_localize(tz) if tz else dates)
    arrow = f"timestamp[us{', tz=' + tz if tz else ''}][pyarrow]"
    long = pd.DataFrame({"date": stamps.astype(arrow), "ticker": ["A"] * 4 + ["B"] * 4,
                         "close": np.arange(10.0, 18.0)})
    long.to_parquet(tmp_path / "arrow.parquet")
    panel = load_raw_panel(tmp_path / "arrow.parquet")
    assert panel["date"].dtype == "datetime64[ns]"
    assert sorted(panel["date"].unique()) == list(pd.to_datetime(DATES))


def test_two_digit_years_with_month_names_are_refused_as_numeric_ones_are(tmp_path):
    """'04-Jan-65' was read as 2065 without a word (numeric '01/02/21' was already refused)."""
    path = tmp_path / "named.csv"
    path.write_text("date,ticker,close\n04-Jan-65,A,10\n05-Jan-65,A,11\n")
    with pytest.raises(DataValidationError, match=r"two-digit year .*'04-Jan-65'"):
        load_raw_panel(path)
    path.write_text("date,ticker,close\n04-Jan-1965,A,10\n05-Jan-1965,A,11\n")
    assert load_raw_panel(path)["date"].dt.year.tolist() == [1965, 1965]


def test_a_parquet_file_with_two_header_levels_is_refused_naming_them(tmp_path):
    """yfinance's multi-ticker download (field over ticker) saved as Parquet: two header levels,
    named as the problem (it was 'missing required column date')."""
    dates = pd.to_datetime(DATES)
    frame = pd.DataFrame({(field, ticker): np.arange(4.0) + 10
                          for field in ("Close", "Volume") for ticker in ("AAPL", "MSFT")},
                         index=pd.Index(dates, name="Date"))
    frame.to_parquet(tmp_path / "download.parquet")
    with pytest.raises(DataValidationError, match=r"2 header levels \(e\.g\. \('Close', 'AAPL'\)"):
        load_raw_panel(tmp_path / "download.parquet")
    # the advice works
    advised = frame.stack(level=1, future_stack=True).rename_axis(["date", "ticker"]).reset_index()
    advised.to_parquet(tmp_path / "long.parquet")
    assert sorted(load_raw_panel(tmp_path / "long.parquet")["ticker"].unique()) == ["AAPL", "MSFT"]


def test_a_long_file_read_as_wide_by_setting_says_so(tmp_path):
    """data.layout wide on a file with a ticker column: said as such (the message was 'there is
    no ticker column')."""
    path = tmp_path / "long.csv"
    path.write_text("date,ticker,close\n" + "\n".join(_long_lines(["A", "B"])))
    with pytest.raises(DataValidationError, match="layout is set to wide .* has a 'ticker' column"):
        load_raw_panel(path, layout="wide")
    assert len(load_raw_panel(path, layout="long")) == 8


def test_a_line_with_fewer_fields_than_the_header_is_warned_about_by_number(tmp_path, caplog):
    """pandas reads a short line's last columns as empty: right for an exporter that drops
    trailing empty fields, wrong when a value in the middle was left out (every later price
    moved to its neighbour, a volume read as the close), both without a word. The two cannot
    be told apart: the lines are warned about by number. Quoted lines are split as CSV; a
    header's trailing delimiter, empty fields (',,') and blank lines are no short lines."""
    path = tmp_path / "wide.csv"
    path.write_text("date,A,B,C\n2021-01-04,10,20,30\n2021-01-05,11,31\n2021-01-06,12,21,32\n")
    with caplog.at_level(logging.WARNING):
        load_raw_panel(path)
    assert ("wide.csv: 1 line(s) have fewer fields than the header's 4 (e.g. line 3: 3): their "
            "last columns are read as empty") in caplog.text
    caplog.clear()
    rows = [f'{line},10000,"Tech"' for line in _long_lines(["A", "B"])]
    rows[3] = rows[3].rsplit(",", 1)[0]  # the sector left out, delimiter and all (quoted file)
    path = tmp_path / "long.csv"
    path.write_text("\n".join(["date,ticker,close,volume,sector", *rows]))
    with caplog.at_level(logging.WARNING):
        load_raw_panel(path)
    assert "(e.g. line 5: 4)" in caplog.text
    caplog.clear()
    rows[3] += ","  # an empty sector, written as one
    path.write_text("\n".join(["date,ticker,close,volume,sector,", *rows, "",
                               '2021-01-08,A,"14",10000,"Tech, Media"']))
    with caplog.at_level(logging.WARNING):
        panel = load_raw_panel(path)
    assert "fewer fields" not in caplog.text
    assert panel["sector"].isna().sum() == 1 and panel["close"].max() == 14


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_date_no_timestamp_can_hold_is_refused_naming_its_line(tmp_path, suffix):
    """1600-01-01 or 2300-01-01 (a typo in the year) parsed, then failed the schema as "could
    not parse; e.g. a row: None", naming neither the line nor the value."""
    path = tmp_path / f"years.{suffix}"
    frame = pd.DataFrame({"date": ["2021-01-04", "1600-01-05", "2021-01-05"],
                          "ticker": ["A", "A", "B"], "close": [10.0, 11.0, 12.0]})
    if suffix == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.assign(date=pd.to_datetime(frame["date"]).astype("datetime64[us]")).to_parquet(path)
    with pytest.raises(DataValidationError, match=r"must be a date from 1678 to "
                                                  r"2261 \(a typo in the year\?\); 1 failing "
                                                  r"value\(s\), e.g. (line 3|row 2) "):
        load_raw_panel(path)


def test_a_transposed_table_and_a_zipped_parquet_file_are_named_as_such(tmp_path):
    """A table with dates across its header (one row per ticker) was refused as "missing
    required column(s): date, close"; a Parquet file inside a zip as "UTF-16 text without a
    byte-order mark?". A wide file of numeric codes (0700, 0005) is no transposed table."""
    import zipfile

    path = tmp_path / "transposed.csv"
    path.write_text("ticker,2021-01-04,2021-01-05,2021-01-06\nA,10,11,12\nB,20,21,22\n")
    with pytest.raises(DataValidationError, match=r"the header holds dates \(2021-01-04, "
                                                  r"2021-01-05, ...\): the table is transposed"):
        load_raw_panel(path)
    frame = pd.DataFrame({"date": pd.to_datetime(list(DATES)), "ticker": "A",
                          "close": [10.0, 11, 12, 13]})
    frame.to_parquet(tmp_path / "p.parquet")
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as archive:
        archive.write(tmp_path / "p.parquet", "p.parquet")
    with pytest.raises(DataValidationError, match=r"p.zip holds a Parquet file"):
        load_raw_panel(tmp_path / "p.zip")
    codes = tmp_path / "hk.csv"
    codes.write_text("date,0700,0005,9988\n" + "\n".join(
        f"{d},{300 + i},{50 + i},{80 + i}" for i, d in enumerate(DATES)))
    assert sorted(load_raw_panel(codes)["ticker"].unique()) == ["0005", "0700", "9988"]
