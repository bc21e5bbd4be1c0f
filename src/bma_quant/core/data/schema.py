"""Input validation of a raw price panel (DESIGN §2) with pandera.

Every rule failure is collected (lazy validation) and turned into one `DataValidationError` whose
message names the column, the rule and a few offending rows, so a user can fix the file at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

REQUIRED_LONG = ("date", "ticker", "close")
PRICE_COLUMNS = ("open", "high", "low", "close")
RESERVED = {"date", "ticker", "close", "open", "high", "low", "volume", "sector"}


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
    high, low = frame["high"], frame["low"]
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
        columns[name] = pa.Column("float64", coerce=True, nullable=True, name=name)
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


def _describe_failures(errors: pa.errors.SchemaErrors, frame: pd.DataFrame, source: str,
                       position: str = "line") -> str:
    cases = errors.failure_cases.copy()
    lines = [f"Input data rejected ({source}): it breaks the data contract of DESIGN §2."]
    # After a failed dtype coercion pandera also reports the value checks it could not run; those
    # follow from the first problem, so keep only the coercion failure for that column.
    coerce_failed = set(
        cases.loc[cases["check"].astype(str).str.startswith("coerce_dtype"), "column"]
    )
    seen = set()
    frame_level = cases["schema_context"].eq("DataFrameSchema") & ~cases["check"].astype(str).isin(
        ["multiple_fields_uniqueness", "column_in_dataframe"]
    )
    for check, part in cases[frame_level].groupby("check", sort=False):
        rows = sorted({int(i) for i in part["index"].dropna()})
        shown = "; ".join(_where(frame, i, position) for i in rows[:3])
        lines.append(f"- rows: {check}; {len(rows)} failing row(s), e.g. {shown}")
    cases = cases[~frame_level]
    for (column, check), part in cases.groupby(["column", "check"], sort=False, dropna=False):
        check = str(check)
        if column in coerce_failed and not check.startswith("coerce_dtype"):
            continue
        if check == "multiple_fields_uniqueness":
            if "dup" in seen:
                continue
            seen.add("dup")
            rows = sorted({int(i) for i in part["index"].dropna()})
            if not {"date", "ticker"} <= set(frame.columns):
                continue
            sample = frame.loc[rows[:6], ["date", "ticker"]].drop_duplicates().head(3)
            pairs = ", ".join(f"({d}, {t})" for d, t in sample.itertuples(index=False))
            at = (f" on {position}s " + ", ".join(str(int(frame.at[i, LINE])) for i in rows[:6])
                  if LINE in frame else "")
            lines.append(f"- duplicate (date, ticker) rows: {len(rows)} rows, e.g. {pairs}{at}")
            continue
        if check == "column_in_dataframe":
            missing = ", ".join(str(c) for c in part["failure_case"])
            lines.append(f"- missing required column(s): {missing} (required: date, ticker, close)")
            continue
        if check.startswith("coerce_dtype"):
            rule = f"must be {'a date' if column == 'date' else 'numeric'} (could not parse)"
        else:
            rule = check
        shown = []
        for idx, value in part[["index", "failure_case"]].head(3).itertuples(index=False):
            where = _where(frame, int(idx), position) if pd.notna(idx) else "a row"
            shown.append(f"{where}: {value!r}")
        label = "rows" if column is None or pd.isna(column) else f"column '{column}'"
        lines.append(f"- {label}: {rule}; {len(part)} failing value(s), e.g. " + "; ".join(shown))
    return "\n".join(lines)


def parse_dates(frame: pd.DataFrame, source: str, position: str = "line") -> pd.DataFrame:
    """Parse the date column in one format: the format of the first date (ISO, or what pandas
    infers from it). A date in another format (2020-01-02 next to 01/03/2020, where day and month
    are ambiguous) or no date at all is refused with its line, instead of guessing."""
    if "date" not in frame or pd.api.types.is_datetime64_any_dtype(frame["date"]):
        return frame
    text = frame["date"].astype("string").str.strip()
    parsed = pd.to_datetime(text, errors="coerce")
    bad = parsed.isna() & text.notna() & (text != "")
    if not bad.any():
        return frame.assign(date=parsed)
    first = int(text.notna().idxmax())
    any_format = pd.to_datetime(text[bad], errors="coerce", format="mixed")
    mixed = any_format.notna().any()
    rule = (f"must be a date in one format (the first date, {_where(frame, first, position)}, "
            f"is {text[first]!r}; mixed formats are ambiguous: write every date as YYYY-MM-DD)"
            if mixed else "must be a date (could not parse)")
    shown = "; ".join(f"{_where(frame, i, position)}: {text[i]!r}" for i in frame.index[bad][:3])
    raise DataValidationError(
        f"Input data rejected ({source}): it breaks the data contract of DESIGN §2.\n"
        f"- column 'date': {rule}; {int(bad.sum())} failing value(s), e.g. {shown}")


def validate_long_panel(frame: pd.DataFrame, source: str = "input",
                        position: str = "line") -> pd.DataFrame:
    """Validate and coerce a long panel; raise one DataValidationError listing every broken rule.
    Offending rows are named by `position` ("line" in a CSV, "row" in Parquet) when the frame
    carries each row's position in column LINE, else by their row index."""
    frame = parse_dates(frame.reset_index(drop=True), source, position)
    extra = [c for c in frame.columns if c not in RESERVED | {LINE}]
    try:
        return long_panel_schema(extra).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        raise DataValidationError(_describe_failures(errors, frame, source, position)) from None
