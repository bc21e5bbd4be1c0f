"""Input validation of a raw price panel (DESIGN §2) with pandera.

Every rule failure is collected (lazy validation) and turned into one `DataValidationError` whose
message names the column, the rule and a few offending rows, so a user can fix the file at once.
"""

from __future__ import annotations

import logging
import unicodedata
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow

RESERVED = {"date", "ticker", "close", "open", "high", "low", "volume", "sector"}

logger = logging.getLogger(__name__)


class DataValidationError(ValueError):
    """The input panel breaks the data contract; nothing downstream may run on it."""


def _finite_or_missing(series: pd.Series) -> pd.Series:
    # NaN is a missing day (repaired later); +/-inf is a broken value.
    return ~np.isinf(series.astype("float64"))


def _price_column(name: str, required: bool) -> pa.Column:
    return pa.Column(
        "float64",
        checks=[
            pa.Check.gt(0, ignore_na=True, error="price must be > 0"),
            pa.Check(_finite_or_missing, error="price must be finite"),
        ],
        coerce=True,
        nullable=True,
        required=required,
        name=name,
    )


def _high_not_below_low(frame: pd.DataFrame) -> pd.Series:
    if "high" not in frame or "low" not in frame:
        return pd.Series(True, index=frame.index)
    # compared as numbers: a column that failed to parse ("105,50") is reported by its own
    # coercion, not as a false high < low from comparing its text
    high = pd.to_numeric(frame["high"], errors="coerce")
    low = pd.to_numeric(frame["low"], errors="coerce")
    return ~(high < low) | high.isna() | low.isna()


def long_panel_schema(extra_numeric: list[str]) -> pa.DataFrameSchema:
    """Schema of the long layout: required date/ticker/close, optional OHLCV, sector, factors."""
    columns = {
        "date": pa.Column("datetime64[ns]", coerce=True, nullable=False, name="date"),
        "ticker": pa.Column(
            str,
            nullable=False,
            coerce=True,
            name="ticker",
            checks=pa.Check.str_length(min_value=1, error="ticker must not be empty"),
        ),
        "close": _price_column("close", required=True),
        "open": _price_column("open", required=False),
        "high": _price_column("high", required=False),
        "low": _price_column("low", required=False),
        "volume": pa.Column(
            "float64",
            coerce=True,
            nullable=True,
            required=False,
            name="volume",
            checks=[
                pa.Check.ge(0, ignore_na=True, error="volume must be >= 0"),
                pa.Check(_finite_or_missing, error="volume must be finite"),
            ],
        ),
        "sector": pa.Column(str, coerce=True, nullable=True, required=False, name="sector"),
    }
    for name in extra_numeric:
        # a user factor's +/-inf (a ratio over a zero) is as broken as a price's: named, not
        # turned into a missing value somewhere downstream
        columns[name] = pa.Column(
            "float64", coerce=True, nullable=True, name=name,
            checks=pa.Check(_finite_or_missing,
                            error="value must be finite (leave a missing value empty)"))
    return pa.DataFrameSchema(
        columns,
        checks=[pa.Check(_high_not_below_low, error="high must be >= low")],
        unique=["date", "ticker"],
        report_duplicates="all",
        strict=False,
        name="long price panel",
    )


LINE = "__line__"  # a row's line in its file (core.data.panel), when known


def _where(frame: pd.DataFrame, i: int, position: str) -> str:
    """'line 7 (2020-01-03, BBB)': the row's line in the file (or its row number) and its keys."""
    at = f"{position} {int(frame.at[i, LINE])}" if LINE in frame else f"row {i}"
    if {"date", "ticker"} <= set(frame.columns):
        date = frame.at[i, "date"]
        if isinstance(date, pd.Timestamp) and date == date.normalize():
            date = date.date()
        at += f" ({date}, {frame.at[i, 'ticker']})"
    return at


def _describe_duplicates(frame: pd.DataFrame, rows: list[int], position: str) -> str | None:
    """'40 rows in 20 (date, ticker) pairs, e.g. (1990-03-14, AAPL) on lines 52, 53; ...': a
    repeated line of a wide file repeats every ticker, so lines are named per pair. Rows without
    a date or ticker are left out (their own bullet names them; two missing tickers on one date
    are not a repeated name): None when no pair is left."""
    keys = frame.loc[rows, ["date", "ticker"]].dropna()
    if keys.empty:
        return None
    rows = list(keys.index)
    examples = []
    for (date, ticker), part in keys.groupby(["date", "ticker"], sort=False):
        if isinstance(date, pd.Timestamp) and date == date.normalize():
            date = date.date()
        at = (f" on {position}s " + ", ".join(str(n) for n in sorted(
            {int(frame.at[i, LINE]) for i in part.index})) if LINE in frame else "")
        examples.append(f"({date}, {ticker}){at}")
        if len(examples) == 3:
            break
    pairs = len(keys.drop_duplicates())
    return (f"- duplicate (date, ticker) rows: {len(rows)} rows in {pairs} pair(s), e.g. "
            + "; ".join(examples))


def _describe_failures(errors: pa.errors.SchemaErrors, frame: pd.DataFrame, source: str,
                       position: str = "line", thousands: str | None = None) -> str:
    cases = errors.failure_cases.copy()
    lines = [f"Input data rejected ({source}): it breaks the data contract (README, \"Data\")."]
    frame_level = cases["schema_context"].eq("DataFrameSchema") & ~cases["check"].astype(str).isin(
        ["multiple_fields_uniqueness", "column_in_dataframe"]
    )
    for check, part in cases[frame_level].groupby("check", sort=False):
        rows = sorted({int(i) for i in part["index"].dropna()})
        shown = "; ".join(_where(frame, i, position) for i in rows[:3])
        lines.append(f"- rows: {check}; {len(rows)} failing row(s), e.g. {shown}")
    formats = _NumberFormats(read_thousands=thousands)
    lines += _column_failures(cases[~frame_level], frame, position, formats)
    return "\n".join(lines + formats.hints())


@dataclass
class _NumberFormats:
    """Columns whose unparsable values look like another number format than the file's."""

    decimal_commas: list[str] = field(default_factory=list)
    thousands: list[str] = field(default_factory=list)
    either: list[str] = field(default_factory=list)  # every value 12,345: the file decides
    read_thousands: str | None = None  # data.thousands the file was read with

    def note(self, column, values: pd.Series, frame: pd.DataFrame) -> None:
        if column not in frame:
            return
        if _looks_like_decimal_commas(values):
            self.decimal_commas.append(str(column))
        elif _either_comma_reading(values):
            self.either.append(str(column))
        elif looks_like_thousands_groups(values):
            self.thousands.append(str(column))

    def hints(self) -> list[str]:
        lines = []
        if self.decimal_commas and self.read_thousands == ",":
            # the separators were removed where they group digits in threes: these do not
            lines.append(f"- the values of {', '.join(self.decimal_commas)} hold commas that "
                         "group no thousands (12,48) though data.thousands is ',': if the "
                         "file's decimal mark is the comma, set data.decimal: ',' and "
                         "data.thousands to its grouping mark ('.', ' ' or null); otherwise "
                         "correct these values")
        elif self.decimal_commas:
            lines.append(f"- the values of {', '.join(self.decimal_commas)} look like decimal "
                         "commas (12,48): set data.decimal: ',' (and data.delimiter if it is not "
                         "';'; in conf/local/parameters.yml: `--params` splits at commas)")
        if self.either:
            lines.append(f"- the values of {', '.join(self.either)} read as thousands separators "
                         "or as decimal commas (12,345 or 12.345): for decimal commas set "
                         "data.decimal: ',' (in conf/local/parameters.yml: `--params` splits at "
                         "commas); for thousands separators set data.thousands: ',', or save "
                         "the file without them")
        if self.thousands:
            lines.append(f"- the values of {', '.join(self.thousands)} look like numbers with "
                         "thousands separators (1,234.5): set data.thousands: ',' (in "
                         "conf/local/parameters.yml: `--params` splits at commas), or save the "
                         "file without them (a number format with no grouping)")
        return lines


def _column_failures(cases: pd.DataFrame, frame: pd.DataFrame, position: str,
                     formats: _NumberFormats) -> list[str]:
    """One line per (column, check) that failed, with up to three of its values."""
    # After a failed dtype coercion pandera also reports the value checks it could not run; those
    # follow from the first problem, so keep only the coercion failure for that column.
    coerce_failed = set(
        cases.loc[cases["check"].astype(str).str.startswith("coerce_dtype"), "column"]
    )
    lines: list[str] = []
    duplicates_said = False
    for (column, check), part in cases.groupby(["column", "check"], sort=False, dropna=False):
        check = str(check)
        if column in coerce_failed and not check.startswith("coerce_dtype"):
            continue
        if check == "multiple_fields_uniqueness":
            if not duplicates_said and {"date", "ticker"} <= set(frame.columns):
                rows = sorted({int(i) for i in part["index"].dropna()})
                duplicates = _describe_duplicates(frame, rows, position)
                lines += [duplicates] if duplicates is not None else []
            duplicates_said = True
            continue
        if check == "column_in_dataframe":
            missing = ", ".join(str(c) for c in part["failure_case"])
            lines.append(f"- missing required column(s): {missing} (required: date, ticker, close)")
            continue
        if check.startswith("coerce_dtype"):
            formats.note(column, part["failure_case"], frame)
        lines += _value_failure(column, check, part, frame, position)
    return lines


# cells some exports write for "no value" that the reader does not take as missing
PLACEHOLDER_MARKS = ("-", "--", "---", "\u2013", "\u2014", ".", "?", "x", "n.a.", "k.A.")


def _value_failure(column, check: str, part: pd.DataFrame, frame: pd.DataFrame,
                   position: str) -> list[str]:
    """The line for one column's failing values (and a note on a price of 0)."""
    if check.startswith("coerce_dtype"):
        rule = f"must be {'a date' if column == 'date' else 'numeric'} (could not parse)"
    elif check == "not_nullable" and column == "ticker":
        # a CSV's NaN, None, null, N/A, <NA> cells are read as missing (README "Data")
        rule = ("no ticker (an empty cell, or a missing-value marker such as NaN, None or "
                "#N/A; NA and NULL are read as tickers)")
    else:
        rule = check
    shown = []
    for idx, value in part[["index", "failure_case"]].head(3).itertuples(index=False):
        where = _where(frame, int(idx), position) if pd.notna(idx) else "a row"
        shown.append(f"{where}: {value!r}")
    label = "rows" if column is None or pd.isna(column) else f"column '{column}'"
    lines = [f"- {label}: {rule}; {len(part)} failing value(s), e.g. " + "; ".join(shown)]
    placeholders = part["failure_case"].astype(str).str.strip()
    if check.startswith("coerce_dtype") and column != "date" and placeholders.isin(
            PLACEHOLDER_MARKS).all():
        # a dash for "no value" (many exports and sites): read as missing only when said so
        marks = ", ".join(repr(m) for m in sorted(set(placeholders)))
        lines.append(f"  {marks} is no number: for a missing value leave the cell empty or "
                     "write NA")
    if rule == "price must be > 0" and (part["failure_case"] == 0).any():
        # a vendor's 0 for a dead or untraded name: the row, not the price, is what to drop
        article = "an" if str(column)[:1].lower() in "aeiou" else "a"
        lines.append(f"  {article} {column} of 0 is no price (a name that stopped trading, or a "
                     "day without one): leave the cell empty or drop the row; a name's last "
                     "positive close then stands as its last price")
    return lines


# Excel's serial day numbers for 1927-2118 (1 = 1900-01-01): a date column saved as numbers
EXCEL_SERIAL_DAYS = (10_000, 80_000)
# Unix timestamps of 1980-2100 by unit (seconds since 1970-01-01 UTC, and x1e3, 1e6, 1e9)
EPOCH_SECONDS = (315_532_800, 4_102_444_800)
EPOCH_UNITS = {"seconds": 1, "milliseconds": 10**3, "microseconds": 10**6, "nanoseconds": 10**9}


def _epoch_unit(numbers: pd.Series) -> str | None:
    """The unit in which every number is a Unix timestamp of 1980-2100, or None."""
    if not (len(numbers) and numbers.notna().all()):
        return None
    for unit, scale in EPOCH_UNITS.items():
        if numbers.between(EPOCH_SECONDS[0] * scale, EPOCH_SECONDS[1] * scale).all():
            return unit
    return None


def _numeric_date_rule(numbers: pd.Series) -> str | None:
    """What a date column of numbers is, when it is one we know (Excel serials, Unix time)."""
    if numbers.notna().all() and numbers.between(*EXCEL_SERIAL_DAYS).all():
        return ("must be a date; these look like Excel's serial day numbers (44197 is "
                "2021-01-01): format the column as dates (YYYY-MM-DD) before saving")
    unit = _epoch_unit(numbers)
    if unit is None:
        return None
    example = 1_609_459_200 * EPOCH_UNITS[unit]
    return (f"must be a date; these look like Unix timestamps in {unit} ({example} is "
            "2021-01-01 00:00 UTC): write the dates as YYYY-MM-DD in the exchange's local "
            "time (a UTC instant can fall on the day before or after the trading day)")


def parse_dates(frame: pd.DataFrame, source: str, position: str = "line") -> pd.DataFrame:
    """Parse the date column in one format: the format of the first date (ISO, or what pandas
    infers from it). A date in another format (2020-01-02 next to 01/03/2020, where day and month
    are ambiguous) or no date at all is refused with its line, instead of guessing."""
    if "date" in frame and isinstance(frame["date"].dtype, pd.ArrowDtype):
        frame = frame.assign(date=numpy_timestamps(frame["date"]))
    if "date" not in frame:
        return frame
    if pd.api.types.is_datetime64_any_dtype(frame["date"]):  # a Parquet file's own dates
        _refuse_dates_out_of_range(frame, frame["date"], None, source, position)
        return frame
    text = frame["date"].astype("string").str.strip()
    try:
        parsed = _parse_date_text(local_wall_time(text))
    except AmbiguousDates as error:
        raise DataValidationError(
            f"Input data rejected ({source}): it breaks the data contract (README, \"Data\").\n"
            f"- column 'date': {error}") from None
    bad = parsed.isna() & text.notna() & (text != "")
    if not bad.any():
        _refuse_dates_out_of_range(frame, parsed, text, source, position)
        return frame.assign(date=parsed)
    first = int(text.notna().idxmax())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        any_format = pd.to_datetime(text[bad], errors="coerce", format="mixed")
    mixed = any_format.notna().any()
    numeric = _numeric_date_rule(pd.to_numeric(text[bad], errors="coerce"))
    rule = (numeric if numeric is not None else
            f"must be a date in one format (the first date, {_where(frame, first, position)}, "
            f"is {text[first]!r}; mixed formats are ambiguous: write every date as YYYY-MM-DD)"
            if mixed else "must be a date (could not parse)")
    shown = "; ".join(f"{_where(frame, i, position)}: {text[i]!r}" for i in frame.index[bad][:3])
    raise DataValidationError(
        f"Input data rejected ({source}): it breaks the data contract (README, \"Data\").\n"
        f"- column 'date': {rule}; {int(bad.sum())} failing value(s), e.g. {shown}"
        f"{'' if mixed or numeric is not None else _undated_lines_hint(text, bad)}")


def _undated_lines_hint(text: pd.Series, bad: pd.Series) -> str:
    """What the lines without a date most likely are, and what to do: the header again (files
    joined with their headers) or a footer (a total or a note at the end of an export)."""
    values = text[bad].str.casefold()
    if values.isin(["date", "datum", "fecha", "data", "timestamp", "time"]).any():
        return ("\n  a header line again inside the data (files joined with their headers?): "
                "keep the first file's header line only")
    positions = np.flatnonzero(bad.to_numpy())
    # a malformed date (2024-02-30, 02.01.24x) is data to fix, not a line to delete
    date_like = values.str.contains(r"\d{1,4}\s*[-/.]\s*\d", regex=True).fillna(False).any()
    if not date_like and bad.sum() < text.notna().sum() and positions.min() >= len(text) - 3:
        return ("\n  a line at the end of the file with no date (a total or a note an export "
                "adds?): delete it")
    return ""


def _refuse_dates_out_of_range(frame: pd.DataFrame, parsed: pd.Series, text: pd.Series | None,
                               source: str, position: str) -> None:
    """A date that parses but that the panel's nanosecond timestamps cannot hold (before
    1677-09-22 or after 2262-04-11: a typo in the year, 1600 or 2300) was refused later as
    "could not parse ... e.g. a row: None", naming neither the line nor the value."""
    year = parsed.dt.year  # any unit or time zone; the years nanoseconds hold whole
    outside = parsed.notna() & ((year <= pd.Timestamp.min.year) | (year >= pd.Timestamp.max.year))
    if not outside.any():
        return
    text = parsed.astype(str) if text is None else text  # only for the message (5M rows: 1 s)
    shown = "; ".join(f"{_where(frame, i, position)}: {text[i]!r}"
                      for i in frame.index[outside][:3])
    raise DataValidationError(
        f"Input data rejected ({source}): it breaks the data contract (README, \"Data\").\n"
        f"- column 'date': must be a date from {pd.Timestamp.min.year + 1} to "
        f"{pd.Timestamp.max.year - 1} (a typo in the year?); {int(outside.sum())} failing "
        f"value(s), e.g. {shown}")


# A UTC offset after a time of day ("2020-03-06 16:00-05:00", "...T16:00:00Z"): dropped, keeping
# the local wall time. Offsets that change with daylight saving would otherwise not parse.
UTC_OFFSET = r"^(.*\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|[+-]\d{2}:?\d{2})$"
# 2020-01-02, 02.01.2020, 01/02/2020, 02-01-20: three numeric fields and one separator
NUMERIC_DATE = (r"^(?P<a>\d{1,4})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})"
                r"(?P<time>[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s?[AaPp][Mm])?)?$")


def local_wall_time(text: pd.Series) -> pd.Series:
    """Date strings without their UTC offsets (local wall time kept)."""
    return text.str.replace(UTC_OFFSET, r"\1", regex=True)


class AmbiguousDates(ValueError):
    """The file's dates cannot be read one way only; the message says why (a rule, no source)."""


def _parse_date_text(text: pd.Series) -> pd.Series:
    """Dates from strings. Numeric dates (three fields joined by one of / . -) are read in one
    format decided by the whole file: year first when the first field has four digits; with the
    year last, day first when a first field is above 12, month first when a second one is, and
    otherwise by the separator (01/02/2020 month first, as pandas reads it; 01.02.2020 and
    01-02-2020 day first, the European forms). Two-digit years, or a file where both fields
    exceed 12 somewhere, are refused (AmbiguousDates). Other text: what pandas infers from the
    first date."""
    # a panel repeats each date once per name: each distinct string is parsed once
    codes, distinct = pd.factorize(text)
    values = pd.Series(distinct, dtype="string")
    fields = values.str.extract(NUMERIC_DATE)
    if (len(values) and fields[["a", "sep", "b", "c"]].notna().all(axis=None)
            and fields["sep"].nunique() == 1):
        parsed = _parse_numeric_dates(values, fields)
    else:
        with warnings.catch_warnings():  # "could not infer format": the refusal says more
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(values, errors="coerce")
        _refuse_two_digit_years(values, pd.Series(parsed))
    if not len(values):
        return pd.to_datetime(text, errors="coerce")
    out = pd.Series(parsed).iloc[np.where(codes < 0, 0, codes)].set_axis(text.index)
    return out.mask(codes < 0)


def _refuse_two_digit_years(text: pd.Series, parsed: pd.Series) -> None:
    """A date read by inference whose text lacks its year's four digits ('04-Jan-65', read as
    2065) has a two-digit year: which century is a guess, as for numeric dates."""
    read = parsed.notna().to_numpy()
    if not read.any():
        return
    years = pd.Series(pd.DatetimeIndex(parsed[read]).year.astype(str), dtype="string")
    shown = pd.Series(text[read].to_numpy(), dtype="string")
    lacking = ~pd.Series([y in t for y, t in zip(years, shown, strict=True)])
    if lacking.any():
        example = shown[lacking.to_numpy()].iloc[0]
        raise AmbiguousDates(f"dates with a two-digit year are ambiguous (e.g. {example!r}: "
                             "which century?): write every date with a four-digit year, as "
                             "YYYY-MM-DD")


def _parse_numeric_dates(text: pd.Series, fields: pd.DataFrame) -> pd.Series:
    sep = fields["sep"].iloc[0]
    year_first, year_last = fields["a"].str.len().eq(4), fields["c"].str.len().eq(4)
    if year_first.all():
        order = f"%Y{sep}%m{sep}%d"
    elif year_last.all():
        day_first = fields["a"].astype(int).gt(12).any()
        month_first = fields["b"].astype(int).gt(12).any()
        if day_first and month_first:
            raise AmbiguousDates("some dates read only day first and others only month first: "
                                 "write every date as YYYY-MM-DD")
        if not (day_first or month_first):
            day_first = sep != "/"
        order = f"%d{sep}%m{sep}%Y" if day_first else f"%m{sep}%d{sep}%Y"
    elif (year_first | year_last).all():
        raise AmbiguousDates(
            f"some dates put the year first ({text[year_first].iloc[0]!r}) and others last "
            f"({text[year_last].iloc[0]!r}): mixed formats are ambiguous: write every date as "
            "YYYY-MM-DD")
    else:
        example = text[~(year_first | year_last)].iloc[0]
        raise AmbiguousDates(f"dates without a four-digit year are ambiguous (e.g. {example!r}: "
                             "which century, and which field is the year?): write every date as "
                             "YYYY-MM-DD")
    dates = pd.to_datetime(fields["a"] + sep + fields["b"] + sep + fields["c"], errors="coerce",
                           format=order)
    times = fields["time"].fillna("").str.lstrip(" T")
    if times.ne("").any():  # a time of day rides along (trading_days keeps the day)
        dates = dates + _time_of_day(times)
    return pd.Series(dates.to_numpy(), index=text.index)


def _time_of_day(times: pd.Series) -> pd.Series:
    """'16:00', '16:00:00.5', '4:00:00 PM' -> time since midnight ('' -> 0)."""
    meridiem = times.str.extract(r"([AaPp])[Mm]$")[0].str.upper()
    clock = times.str.replace(r"\s?[AaPp][Mm]$", "", regex=True)
    clock = clock.where(clock.str.count(":") != 1, clock + ":00").replace("", "00:00:00")
    since = pd.to_timedelta(clock, errors="coerce")
    hours = since.dt.components["hours"] if len(since) else since
    twelve = pd.Timedelta(hours=12)
    # no AM / PM is NA in a `string` column: NA & ... stays NA, which `mask` takes as True
    pm = ((meridiem == "P") & (hours < 12)).fillna(False).astype(bool)
    am = ((meridiem == "A") & (hours == 12)).fillna(False).astype(bool)
    return since.mask(pm, since + twelve).mask(am, since - twelve)


def numpy_timestamps(stamps: pd.Series) -> pd.Series:
    """Arrow-backed timestamps (a Parquet file written with pyarrow dtypes) as pandas' own,
    keeping their time zone, so every date rule below sees one kind; other series unchanged."""
    dtype = stamps.dtype
    if not (isinstance(dtype, pd.ArrowDtype) and pyarrow.types.is_timestamp(dtype.pyarrow_dtype)):
        return stamps
    tz = dtype.pyarrow_dtype.tz
    return stamps.astype(pd.DatetimeTZDtype("ns", tz) if tz else "datetime64[ns]")


def local_clock(stamps: pd.Series) -> pd.Series:
    """Timestamps on their local clock: a time zone is dropped keeping the wall time (so the
    calendar day of a Tokyo close stays its Tokyo day); naive timestamps are unchanged."""
    stamps = numpy_timestamps(stamps)
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        return stamps.dt.tz_localize(None)
    return stamps


def _states_local_offset(dates: pd.Series) -> bool:
    """The stamps carry a UTC offset other than zero ("... 15:00+03:00", or a time zone east or
    west of UTC): the file gives the exchange's own clock, so its days are not shifted."""
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        first = dates.dropna()
        return bool(len(first)) and first.iloc[0].utcoffset() != pd.Timedelta(0)
    if not (pd.api.types.is_object_dtype(dates) or pd.api.types.is_string_dtype(dates)):
        return False
    offsets = dates.dropna().astype("string").head(1000).str.extract(
        r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*([+-]\d{2}:?\d{2})$")[0].dropna()
    return bool(len(offsets)) and bool((~offsets.str.fullmatch(r"[+-]00:?00")).all())


def trading_days(frame: pd.DataFrame, source: str, position: str = "line",
                 stated_local: bool = False) -> pd.DataFrame:
    """One calendar day per bar from a parsed date column.

    A time zone is dropped keeping the local calendar (a Tokyo close stamped 2020-01-06
    00:00+09:00 is the bar of 2020-01-06, not of the UTC 2020-01-05), and a time of day is
    dropped (a close stamped 16:00 is its day's bar), so names stamped at different times line up
    on one date. Two rows of a name on one day that differ only by their time (intraday bars) are
    refused: the pipeline takes daily bars."""
    if "date" not in frame or not pd.api.types.is_datetime64_any_dtype(frame["date"]):
        return frame
    if isinstance(frame["date"].dtype, pd.DatetimeTZDtype):
        logger.info("%s: dates carry the time zone %s; their local calendar days are used",
                    source, frame["date"].dt.tz)
    stamps = local_clock(frame["date"])
    days = stamps.dt.normalize()
    timed = (days != stamps) & stamps.notna()
    if timed.any() and "ticker" in frame:
        same_day = frame[["ticker"]].assign(day=days).duplicated(keep=False)
        same_stamp = frame[["ticker"]].assign(stamp=stamps).duplicated(keep=False)
        intraday = np.flatnonzero((same_day & ~same_stamp).to_numpy())
        if intraday.size:
            shown = "; ".join(f"{_where(frame, i, position)}: {stamps.iloc[i]}"
                              for i in intraday[:3])
            raise DataValidationError(
                f"Input data rejected ({source}): it breaks the data contract (README, \"Data\").\n"
                f"- column 'date': one bar per name and day; {intraday.size} rows share a name "
                f"and a day with another row at a different time (intraday bars?), e.g. {shown}. "
                "Aggregate them to daily bars first.")
    if timed.any():
        first = int(np.flatnonzero(timed.to_numpy())[0])
        logger.info("%s: %d rows carry a time of day (e.g. %s at %s); each is taken as its day's "
                    "bar", source, int(timed.sum()), _where(frame, first, position),
                    stamps.iloc[first].time())
        if not stated_local:  # an offset of the exchange's own clock: nothing to suspect
            _warn_shifted_days(days[timed], stamps.iloc[first], source)
    else:
        _warn_shifted_calendar(days, source)
    return frame.assign(date=days)


# Share of timed rows on a Saturday or Sunday beyond which the stamps look shifted by a time zone
# (a market trading on weekends has its own calendar; a shifted one has a fifth of its days there).
SHIFTED_WEEKEND_SHARE = 0.1


def _warn_shifted_calendar(days: pd.Series, source: str) -> None:
    """Dates without a time on a five-day week moved by a day: bars stamped with the midnight
    after the close (a bar-end convention) land every Friday's bar on a Saturday and leave
    Mondays empty. Kept as given (a market may trade on Saturdays), but said."""
    weekday = pd.Series(pd.DatetimeIndex(days.dropna().unique()).day_of_week)
    if weekday.empty:
        return
    share = weekday.value_counts(normalize=True).reindex(range(7), fill_value=0.0)
    weekend = float(share[5] + share[6])
    # a five-day week a day late is Tuesday to Saturday (Sunday and Monday empty), a day early
    # Sunday to Thursday (Friday and Saturday empty); Monday to Saturday is a six-day week
    empty_days = set(share.index[share < 0.25 / 7])
    if weekend > SHIFTED_WEEKEND_SHARE and empty_days in ({6, 0}, {4, 5}):
        later = empty_days == {6, 0}
        empty = pd.Timestamp("2024-01-01") + pd.Timedelta(days=0 if later else 4)  # Mon / Fri
        logger.warning(
            "%s: %.0f%% of the dates fall on a Saturday or Sunday and almost none on a %s. If "
            "the exchange trades Monday to Friday, every bar is stamped a day %s (%s) and "
            "every feature and label sits a day off its trading day: give each bar its trading "
            "day's date%s", source, 100 * weekend, empty.day_name(),
            "late" if later else "early",
            "the midnight after the close, a bar-end convention" if later
            else "a local day converted to another time zone",
            "" if later else
            " (a Sunday-to-Thursday exchange, as in Saudi Arabia, Kuwait or Qatar, is read "
            "right as it is)")


def _warn_shifted_days(days: pd.Series, example, source: str) -> None:
    """Tokyo's midnights converted to UTC are 15:00 the day before: every Monday's bar lands on
    a Sunday. The days are kept as the file gives them, but said to look shifted. A market open
    every day (crypto) has each weekday about as often as the others: a five-day week shifted
    leaves one weekday (nearly) empty."""
    weekday = days.dt.day_of_week
    weekend = weekday >= 5
    share = weekday.value_counts(normalize=True).reindex(range(7), fill_value=0.0)
    empty_days = set(share.index[share < 0.25 / 7])  # Monday to Saturday: Sunday only, no shift
    if weekend.mean() > SHIFTED_WEEKEND_SHARE and empty_days in ({6, 0}, {4, 5}):
        # Sunday to Thursday is a week of its own (Friday empty), as in the dates-only check;
        # Tuesday to Saturday is a week a day late (a close converted to a zone ahead of it)
        early = empty_days == {4, 5}
        logger.warning(
            "%s: %.0f%% of the timed rows fall on a Saturday or Sunday (e.g. %s). If the "
            "exchange trades Monday to Friday, stamps like %s are its local days converted to "
            "another time zone (%s) and every bar sits a day %s: give the dates in the "
            "exchange's time zone (or without one)%s",
            source, 100 * weekend.mean(), days[weekend].iloc[0].date(), example,
            "Tokyo's midnight is 15:00 UTC the day before" if early
            else "New York's 16:00 close is 06:00 the next day in Tokyo",
            "early" if early else "late",
            " (a Sunday-to-Thursday exchange, as in Saudi Arabia, Kuwait or Qatar, is read "
            "right as it is)" if early else "")


DECIMAL_COMMA = r"^\s*[-+]?\d{1,3}(\.\d{3})*,\d+\s*$|^\s*[-+]?\d+,\d+\s*$"
# 12,345 or 1,234.5: grouping (never a leading 0: 0,264 is a decimal comma)
THOUSANDS_COMMA = r"^\s*[-+]?[1-9]\d{0,2}(,\d{3})+(\.\d+)?\s*$"
ONE_GROUP = r"^\s*[-+]?[1-9]\d{0,2},\d{3}\s*$"  # 12,345: thousands, or 12.345 with a decimal comma


def looks_like_thousands_groups(values: pd.Series) -> bool:
    """Most values read as numbers grouped by thousands commas (12,345 or 1,234.5)."""
    text = values.dropna().astype(str).head(1000)
    return len(text) > 0 and bool(text.str.match(THOUSANDS_COMMA).mean() > 0.5)


def _either_comma_reading(values: pd.Series) -> bool:
    """Every value is one comma and three digits (12,345): thousands or a decimal comma."""
    text = values.dropna().astype(str).head(1000)
    return len(text) > 0 and bool(text.str.match(ONE_GROUP).all())


def _looks_like_decimal_commas(values: pd.Series) -> bool:
    """Most values read as decimal commas, and not all could be thousands groups (12,345)."""
    text = values.dropna().astype(str).head(1000)
    return (len(text) > 0 and bool(text.str.match(DECIMAL_COMMA).mean() > 0.5)
            and not bool(text.str.match(THOUSANDS_COMMA).all()))


def _groups_names(frame: pd.DataFrame, column: str) -> bool:
    """A text column that sorts the names into a few groups (an industry, a category): two or
    more values, at most a tenth as many as names, and one per name on nearly every name (a
    constant such as a currency groups nothing)."""
    if "ticker" not in frame.columns:
        return False
    values = frame[[column, "ticker"]].dropna()
    names = values["ticker"].nunique()
    if names < 10:
        return False
    per_name = values.groupby("ticker", sort=False)[column].nunique()
    groups = values[column].nunique()
    return bool(2 <= groups <= names / 10 and (per_name <= 1).mean() >= 0.9)


def non_numeric_columns(frame: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    """Extra columns that are not numbers at all (text such as an exchange or an ISIN, or dates),
    with an example value: descriptive columns a vendor file carries, not factors. A column with
    some numbers and some text, or with decimal commas, is not among them (it is a broken
    factor, refused by the schema)."""
    found = {}
    for name in columns:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        present = values.dropna()
        if pd.api.types.is_datetime64_any_dtype(values):
            found[name] = str(present.iloc[0]) if len(present) else ""
            continue
        text = present.astype(str).str.strip()
        text = text[text != ""]
        if len(text) == 0 or _looks_like_decimal_commas(text):
            continue
        if pd.to_numeric(text, errors="coerce").isna().all():
            found[name] = text.iloc[0]
    return found


def _warn_numeric_tickers(tickers: pd.Series, source: str) -> None:
    """Codes stored as numbers (a Parquet or Excel export of A-share / Tokyo codes) lost their
    leading zeros: 000001 reads as 1. They are still one name each, but a later file storing
    them as text ('000001') names other tickers. Said when the numbers have several widths."""
    if not (pd.api.types.is_integer_dtype(tickers) or pd.api.types.is_float_dtype(tickers)):
        return
    widths = tickers.dropna().abs().astype("int64").astype(str).str.len()
    if widths.nunique() > 1:
        logger.warning("%s: tickers are stored as numbers (%d to %d digits, e.g. %s): codes with "
                       "leading zeros such as 000001 read as 1; store the ticker column as text "
                       "to keep them as the exchange writes them", source, widths.min(),
                       widths.max(), tickers.dropna().iloc[0])


def trimmed_tickers(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Tickers without surrounding spaces (' AAPL ' and 'AAPL' are one name: two rows of it on a
    date are then duplicates, refused by the schema); tickers that differ only by case are kept
    apart but named in a warning."""
    if "ticker" not in frame:
        return frame
    _warn_numeric_tickers(frame["ticker"], source)
    text = frame["ticker"].astype("string")
    trimmed = text.str.strip()
    changed = (trimmed != text).fillna(False)
    if bool(changed.any()):
        example = text[changed].iloc[0]
        logger.warning("%s: spaces around %d ticker value(s) removed (e.g. %r -> %r); rows that "
                       "then share a date and a ticker are duplicates", source,
                       int(changed.sum()), example, example.strip())
        frame = frame.assign(ticker=trimmed)
    names = pd.Series(trimmed.dropna().unique())
    folded = names.str.casefold()
    clashes = names[folded.duplicated(keep=False)].sort_values(key=lambda n: n.str.casefold())
    if len(clashes):
        logger.warning("%s: tickers that differ only by case are kept as different names: %s",
                       source, ", ".join(clashes.head(6)))
    # 'é' as one code point or as 'e' + a combining accent: the same name to a reader (whatever
    # the case); a group is named whole when its names differ by more than case (names of one
    # form that differ only by case have the warning above)
    keys = names.map(lambda n: unicodedata.normalize("NFC", n).casefold())
    groups = pd.DataFrame({"name": names, "key": keys})
    mixed = groups.groupby("key")["name"].transform(
        lambda g: len(g) > 1 and g.str.casefold().nunique() > 1).astype(bool)
    unicode_twins = groups.loc[mixed].sort_values("key")["name"]
    if len(unicode_twins):
        logger.warning("%s: tickers that look alike but are written with different Unicode "
                       "forms (composed / decomposed accents) are kept as different names: %s",
                       source, ", ".join(map(ascii, unicode_twins.head(6))))
    return frame


# Vendor columns of back-adjusted prices ("Adj Close"): their level at t is scaled by the dividends
# and splits after t, so as factors they would carry the future into t.
ADJUSTED_MARKS = ("adjusted", "adj")
ADJUSTABLE_FIELDS = frozenset({"open", "high", "low", "close", "closing", "price", "volume"})


def _is_back_adjusted(name: str) -> bool:
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    for mark in ADJUSTED_MARKS:
        if key.startswith(mark) and key[len(mark):] in ADJUSTABLE_FIELDS:
            return True
        if key.endswith(mark) and key[: -len(mark)] in ADJUSTABLE_FIELDS:
            return True
    return False


def back_adjusted_columns(columns: list[str]) -> list[str]:
    """Extra columns named like back-adjusted prices or volume (Adj Close, adj_close, Adj. Open,
    adjHigh, AdjustedClose, close_adj, Adj Volume...)."""
    return [c for c in columns if _is_back_adjusted(c)]


# whole numbers a float holds exactly: larger codes are left as they read
_EXACT_FLOAT_INTEGERS = 2.0 ** 53


def whole_number_sectors(frame: pd.DataFrame) -> pd.DataFrame:
    """Sector codes stored as floats (a Parquet column of GICS codes with a missing value is
    float64, and a CSV written from it says 45102010.0): the code 45102010, not the label
    '45102010.0'. Other labels are left as they are."""
    if "sector" not in frame:
        return frame
    codes = frame["sector"]
    if pd.api.types.is_float_dtype(codes):
        finite = codes.dropna()
        if not (np.isfinite(finite).all() and (finite == np.round(finite)).all()
                and (finite.abs() < _EXACT_FLOAT_INTEGERS).all()):
            return frame
        return frame.assign(sector=codes.astype("Int64").astype("string").astype(object)
                            .where(codes.notna(), None))
    text = codes.dropna().astype(str).str.strip()
    if len(text) and text.str.fullmatch(r"[-+]?\d+\.0+").all():  # the CSV of such a column
        return frame.assign(sector=codes.astype("string").str.strip()
                            .str.replace(r"\.0+$", "", regex=True).astype(object)
                            .where(codes.notna(), None))
    return frame


def validate_long_panel(frame: pd.DataFrame, source: str = "input",
                        position: str = "line", thousands: str | None = None) -> pd.DataFrame:
    """Validate and coerce a long panel; raise one DataValidationError listing every broken rule.
    Offending rows are named by `position` ("line" in a CSV, "row" in Parquet) when the frame
    carries each row's position in column LINE, else by their row index."""
    local = "date" in frame and _states_local_offset(frame["date"])
    frame = trading_days(parse_dates(frame.reset_index(drop=True), source, position), source,
                         position, stated_local=local)
    frame = trimmed_tickers(frame, source)
    frame = whole_number_sectors(frame)
    extra = [c for c in frame.columns if c not in RESERVED | {LINE}]
    adjusted = back_adjusted_columns(extra)
    if adjusted and "close" not in frame.columns:
        # the file's only close is the adjusted one: one error saying how to use it
        raise DataValidationError(
            f"Input data rejected ({source}): there is no 'close' column, only back-adjusted "
            f"prices ({', '.join(repr(c) for c in adjusted)}). Rename the adjusted close to "
            "'close' (and give open/high/low adjusted alike, or leave them out) to learn total "
            "returns from it")
    if adjusted:
        logger.warning("%s: %s: back-adjusted (its level at t is scaled by dividends "
                       "and splits after t), not used as a factor; returns come from "
                       "'close', with suspected splits repaired. To learn total returns, give "
                       "the adjusted prices as 'close' (with open/high/low adjusted alike)",
                       source, ", ".join(repr(c) for c in adjusted))
        frame = frame.drop(columns=adjusted)
        extra = [c for c in extra if c not in adjusted]
    descriptive = non_numeric_columns(frame, extra)
    if descriptive:
        groups = [c for c in descriptive if _groups_names(frame, c)]
        logger.warning("%s: column(s) %s hold no numbers (e.g. %s) and are not used: extra "
                       "columns are factors and must be numeric%s", source,
                       ", ".join(descriptive), "; ".join(f"{c}={v!r}"
                                                         for c, v in descriptive.items()),
                       f"; {' and '.join(repr(c) for c in groups)} sort(s) the names into a "
                       "few groups (one per name): named 'sector', a column like that is used "
                       "to demean the factors within each group"
                       if groups and "sector" not in frame.columns else "")
        frame = frame.drop(columns=list(descriptive))
        extra = [c for c in extra if c not in descriptive]
    try:
        validated = long_panel_schema(extra).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        raise DataValidationError(_describe_failures(errors, frame, source, position,
                                                     thousands)) from None
    _warn_bars_without_close(validated, source, position)
    return validated


def _warn_bars_without_close(frame: pd.DataFrame, source: str, position: str) -> None:
    """Rows with an open, high, low or volume but no close are missing days (forward-filled up
    to processing.ffill_limit, README "Data"): said once with a count, since a close lost in an
    export otherwise shows only as missing_days in the data quality report."""
    bar = [c for c in ("open", "high", "low", "volume") if c in frame]
    if "close" not in frame or not bar:
        return
    rows = np.flatnonzero(frame["close"].isna().to_numpy() & frame[bar].notna().any(axis=1)
                          .to_numpy())
    if len(rows):
        shown = "; ".join(_where(frame, frame.index[i], position) for i in rows[:3])
        logger.warning("%s: %d row(s) have a bar (%s) but no close, e.g. %s: each is read as a "
                       "missing day of that name (its last close carried forward up to "
                       "processing.ffill_limit dates), not as a price", source, len(rows),
                       "/".join(bar), shown)
