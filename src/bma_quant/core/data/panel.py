"""The price panel: reading files, the wide and long layouts, calendar alignment.

Processing works on date x ticker matrices (one per value column) because every time-series
operation is then a vectorised shift along the date axis; `to_long` turns them back into the long
(date, ticker) table the rest of the project uses.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bma_quant.core.data.move_labels import move_label
from bma_quant.core.data.schema import (
    DECIMAL_COMMA,
    LINE,
    RESERVED,
    DataValidationError,
    local_clock,
    looks_like_thousands_groups,
    parse_dates,
    validate_long_panel,
)
from bma_quant.core.data.universe import ELIGIBLE, LISTED_FROM, TRADABLE

logger = logging.getLogger(__name__)

NUMERIC_OPTIONAL = ("open", "high", "low", "volume")


# Each raw row's position in its file (CSV: the line number, header = line 1; Parquet: the row
# number from 1) travels in column LINE through reshaping, so error messages name the line to fix.
DELIMITERS = (",", ";", "\t", "|")
def _zip_open(path, mode: str = "rb", encoding: str | None = None, errors: str | None = None,
              newline: str | None = None):
    """The one file of a zip archive (`to_csv("x.csv.zip")`, a download), opened like gzip.open."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise DataValidationError(f"{Path(path).name}: not a readable zip archive ({error})"
                                  ) from None
    # macOS Finder adds __MACOSX/._<name> resource forks beside the file
    members = [m for m in archive.infolist() if not m.is_dir()
               and not m.filename.startswith("__MACOSX/")
               and not Path(m.filename).name.startswith("._")]
    if len(members) != 1:
        archive.close()
        raise DataValidationError(
            f"{Path(path).name}: a zip archive must hold exactly one file (the panel), it holds "
            f"{len(members)}: {', '.join(m.filename for m in members[:5])}")
    raw = archive.open(members[0])
    if "b" in mode:
        return raw
    return io.TextIOWrapper(raw, encoding=encoding or "utf-8", errors=errors, newline=newline)


_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zip": _zip_open}
# the first bytes of each compression (a file's name may not say it)
_MAGIC = {b"\x1f\x8b": ".gz", b"BZh": ".bz2", b"\xfd7zXZ\x00": ".xz", b"PK\x03\x04": ".zip",
          b"\x28\xb5\x2f\xfd": ".zst", b"PAR1": ".parquet"}


def _check_compression(path: Path) -> None:
    """Refuse a file whose first bytes are a compression (or Parquet) its name does not say: a
    gzip file named .csv would otherwise fail deep in the reader with a decoding error."""
    with open(path, "rb") as handle:
        start = handle.read(6)
    found = next((kind for magic, kind in _MAGIC.items() if start.startswith(magic)), None)
    suffix = path.suffix.lower()
    if start and found is None and suffix in _OPENERS:  # a plain CSV named .gz fails in gzip
        raise DataValidationError(
            f"{path.name} is named {suffix} but is not {suffix[1:]}-compressed (its first bytes): "
            f"name it {path.stem} if it is a plain CSV, or compress it")
    if found is not None and (found != suffix or found not in _OPENERS):
        readable = found != suffix and (found in _OPENERS or found == ".parquet")
        raise DataValidationError(
            f"{path.name} is {'Parquet' if found == '.parquet' else 'compressed as ' + found[1:]}"
            f" (its first bytes; its name ends {suffix or 'without a suffix'}): "
            + (f"name it {path.stem}{'' if found == '.parquet' else suffix}{found}" if readable
               else "decompress it (gz, bz2, xz and zip are read)"))


def _check_parquet(path: Path) -> None:
    """Refuse a file named .parquet that is not one (a CSV or a compressed file renamed)."""
    with open(path, "rb") as handle:
        start = handle.read(6)
    if start.startswith(b"PAR1"):
        return
    found = next((kind for magic, kind in _MAGIC.items() if start.startswith(magic)), None)
    what = f"compressed as {found[1:]}" if found else "not Parquet (a text file: a CSV?)"
    raise DataValidationError(
        f"{path.name} is {what} (its first bytes; Parquet files start with PAR1): name it for "
        "what it is (.csv, .csv.gz, ...) or save it as Parquet")


def _check_utf16_without_mark(path: Path) -> None:
    """Text with a NUL byte in its first line is UTF-16 without a byte-order mark (pandas would
    read it as one garbled column and report a missing 'date')."""
    with _OPENERS.get(path.suffix.lower(), open)(path, "rb") as handle:
        start = handle.read(256)
    if start.startswith(b"PAR1"):  # compressed Parquet: the name says a compressed CSV
        raise DataValidationError(
            f"{path.name} holds a Parquet file (its first bytes once decompressed): give the "
            ".parquet file itself (Parquet compresses its own columns; gz, bz2, xz and zip are "
            "read for CSV files)")
    if b"\x00" in start.split(b"\n")[0] and not start.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataValidationError(
            f"{path.name} holds NUL bytes in its first line: UTF-16 text without a byte-order "
            "mark? Save it as UTF-8 (or UTF-16 with a byte-order mark)")


# a damaged file fails in a decompressor, a decoder or the Parquet reader: name the file instead
def _unreadable(path: Path, error: Exception) -> DataValidationError:
    """One message naming the file and why it could not be read, instead of a reader's trace."""
    if isinstance(error, EOFError):
        why = "it ends early (a truncated download or copy?)"
    elif isinstance(error, UnicodeDecodeError):
        why = (f"byte 0x{error.object[error.start]:02x} is neither UTF-8 nor Windows-1252 text; "
               "save it as UTF-8")
    else:
        why = f"{type(error).__name__}: {error}"
    return DataValidationError(f"Input file {path} could not be read: {why}")


def _header_line(path: Path) -> str:
    lines = _first_lines(path, 1)
    return lines[0] if lines else ""


def _first_lines(path: Path, n: int) -> list[str]:
    opener = _OPENERS.get(path.suffix.lower(), open)
    with opener(path, "rt", encoding=_utf16_encoding(path), errors="replace") as handle:
        return [line for _, line in zip(range(n), handle, strict=False)]


def _utf16_encoding(path: Path) -> str | None:
    """"utf-16" for a file that starts with a UTF-16 byte-order mark (Excel's "Unicode Text"
    export, tab-separated), else None (UTF-8, or Windows-1252, found later)."""
    with _OPENERS.get(path.suffix.lower(), open)(path, "rb") as handle:
        start = handle.read(2)
    return "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else None


# pandas' default missing-value markers, applied to every column but the ticker: "NA" and "NULL"
# are real tickers (National Bank of Canada, ...), and codes such as 0700 keep their zeros.
_MISSING_MARKERS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
_TICKER_MISSING = [m for m in _MISSING_MARKERS if m not in ("NA", "NULL")]  # #N/A stays missing


def sniff_delimiter(path: Path) -> str:
    """The delimiter of a CSV file: the candidate found most often in its header line (',' when
    none is), so a semicolon-delimited export reads as it is meant."""
    header = _header_line(path)
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def is_csv(path: Path) -> bool:
    suffixes = "".join(path.suffixes).lower()
    return not suffixes.endswith((".parquet", ".pq")) and (
        any(s in suffixes for s in (".csv", ".txt", ".tsv"))
        or path.suffix.lower() == ".zip")  # prices.zip: a download holding one CSV


def _header_names(path: Path, sep: str, encoding: str) -> list[str]:
    """The header's column names as written (pandas would rename a repeated one to 'X.1')."""
    import csv

    opener = _OPENERS.get(path.suffix.lower(), open)
    with opener(path, "rt", encoding=encoding, errors="replace", newline="") as handle:
        row = next(csv.reader(handle, delimiter=sep), [])
    return [name.lstrip("\ufeff") for name in row]


def _check_header(path: Path, names: list[str], sep: str) -> None:
    """Refuse a header that repeats a column, or that is not the file's first line."""
    seen, repeated = set(), []
    for name in (n.strip() for n in names):
        if name and name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        _refuse_two_line_header(path, names, sep)
        raise DataValidationError(
            f"Input data rejected ({path}): the header repeats column(s) {', '.join(repeated)}: "
            "each ticker (wide layout) or field (long layout) must appear once")
    if any(n.strip().lower() == "date" for n in names):
        return
    # 2010-01-04, 04/01/2010, 20100104: a date's shape (a code such as 0700 is no date)
    dated = pd.Series(names[1:], dtype=object).astype(str).str.strip().str.match(
        r"^(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|(19|20)\d{6})"
        r"([ T].*)?$")
    if len(names) > 3 and dated.mean() > 0.5:
        raise DataValidationError(
            f"Input data rejected ({path}): the header holds dates ({names[1]}, {names[2]}, "
            f"...): the table is transposed, one row per {names[0] or 'ticker'}. Give one row "
            "per date (a 'date' column and a column per ticker) or per (date, ticker)")
    for number, line in enumerate(_first_lines(path, 20)[1:], start=2):
        if any(token.strip().strip('"').lower() == "date" for token in line.split(sep)):
            raise DataValidationError(
                f"Input data rejected ({path}): the header is on line {number}, not line 1 (a "
                "title or note above it?): remove the lines above the header")


def _refuse_two_line_header(path: Path, names: list[str], sep: str) -> None:
    """A multi-ticker download saved with its two header lines (yfinance's `download(...)
    .to_csv()`: `Price,Close,Close,...` over `Ticker,AAPL,MSFT,...`, or the other way round
    with `group_by='ticker'`, then a `Date` line) was refused as a header repeating its fields:
    named as what it is, with the conversion."""
    second = next(iter(_first_lines(path, 2)[1:]), "")
    upper = names[0].strip().lower() if names else ""
    lower = second.split(sep)[0].strip().strip('"').lower()
    if {upper, lower} != {"price", "ticker"}:
        return
    level = 1 if upper == "price" else 0  # the header line that holds the tickers
    raise DataValidationError(
        f"Input data rejected ({path}): it has two header lines (fields and tickers, as a "
        "yfinance multi-ticker download saves them): the pipeline reads one. Convert it to the "
        f"long layout once: w = pd.read_csv({str(path)!r}, header=[0, 1], index_col=0, "
        f"skiprows=[2]); w.stack(level={level}).rename_axis(['date', 'ticker']).reset_index()"
        ".to_csv('prices_long.csv', index=False)")


def _warn_short_lines(path: Path, sep: str, names: list[str], encoding: str) -> None:
    """Data lines with fewer fields than the header: pandas reads their last columns as empty.
    Right when an exporter dropped a line's trailing empty fields (a name listed later than the
    others, last in a wide file); wrong when a value in the middle was left out without its
    delimiter, which shifts every later one into its neighbour's column (a volume read as the
    close, a name's price as the next ticker's). The two cannot be told apart, so such lines
    are warned about by number, not refused. A quoted line is split as CSV (a quoted field may
    hold the delimiter); blank lines, and the empty names a header's trailing delimiter adds,
    do not count; a UTF-16 file is not read here."""
    n_fields = max((i + 1 for i, name in enumerate(names) if name.strip()), default=0)
    if encoding == "utf-16" or n_fields < 2:
        return
    import csv

    mark, quote = sep.encode(), b'"'
    short: list[tuple[int, int]] = []
    count = 0
    with _OPENERS.get(path.suffix.lower(), open)(path, "rb") as handle:
        next(handle, None)  # the header
        for number, line in enumerate(handle, start=2):
            if line.count(mark) >= n_fields - 1 or not line.strip():
                continue
            fields = (len(next(csv.reader([line.decode(encoding, "replace")], delimiter=sep)))
                      if quote in line else line.count(mark) + 1)
            if fields < n_fields:
                count += 1
                if len(short) < 3:
                    short.append((number, fields))
    if count:
        logger.warning(
            "%s: %d line(s) have fewer fields than the header's %d (e.g. %s): their last "
            "columns are read as empty. If a value was left out without its delimiter, every "
            "later value of the line sits in the wrong column: write an empty field for a "
            "missing value (two delimiters in a row, '%s%s')", path.name, count, n_fields,
            "; ".join(f"line {number}: {fields}" for number, fields in short), sep, sep)


def _first_non_utf8_byte(path: Path, chunk: int = 1 << 24) -> tuple[int, int] | None:
    """(byte, position) of the first byte that is not UTF-8, or None; read in chunks, so a large
    file is never held twice in memory."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with _OPENERS.get(path.suffix.lower(), open)(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            pending = len(decoder.getstate()[0])  # bytes of a character split across blocks
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                return error.object[error.start], offset - pending + error.start
            if not block:
                return None
            offset += len(block)


def _csv_source(path: Path):
    """What pandas reads: the path, or a zip's one file (pandas refuses a Finder zip, whose
    resource fork is a second member)."""
    return _zip_open(path) if path.suffix.lower() == ".zip" else path


def _read_csv(path: Path, sep: str, decimal: str, thousands: str | None = None
              ) -> pd.DataFrame:
    """The CSV as pandas reads it, with the ticker column kept as written (text, no missing
    markers), UTF-8 or else Windows-1252 (an Excel export), and its shape problems named."""
    encoding = _utf16_encoding(path) or "utf-8-sig"
    offending = None if encoding == "utf-16" else _first_non_utf8_byte(path)
    if offending is not None:
        encoding = "cp1252"
        logger.warning("%s is not UTF-8 (byte 0x%02x at position %d): read as Windows-1252, as "
                       "Excel saves CSV files; save it as UTF-8 if names look wrong", path.name,
                       *offending)
    names = _header_names(path, sep, encoding)
    _check_header(path, names, sep)
    _warn_short_lines(path, sep, names, encoding)
    ticker = next((n for n in names if n.strip().lower() == "ticker"), None)
    sector = next((n for n in names if n.strip().lower() == "sector"), None)
    options = dict(sep=sep, skip_blank_lines=False, encoding=encoding,
                   index_col=False)  # a delimiter at the end of every line is not an index
    if decimal != "." or thousands is not None:
        options["dtype"] = str  # numbers converted cell by cell (dates stay text)
    elif ticker is not None:  # codes as written: ticker 0700, GICS sector 45102010 (not 4.5e7)
        options["dtype"] = {name: str for name in (ticker, sector) if name is not None}
    if ticker is not None:
        # keyed by the names pandas gives the columns (an empty header cell is 'Unnamed: 3')
        pandas_names = pd.read_csv(_csv_source(path), sep=sep, nrows=0, encoding=encoding,
                                   index_col=False).columns
        options.update(keep_default_na=False, na_values={
            n: _TICKER_MISSING if n == ticker else _MISSING_MARKERS for n in pandas_names})
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(_csv_source(path), **options)
    except pd.errors.ParserError as error:
        reason = str(error).replace("Error tokenizing data. C error: ", "").strip()
        raise DataValidationError(
            f"Input data rejected ({path}): {reason} (a stray delimiter, or an unquoted text "
            "with one in it?)") from None
    for warning in caught:
        if issubclass(warning.category, pd.errors.ParserWarning) and thousands == sep:
            raise DataValidationError(
                f"Input data rejected ({path}): data lines have more fields than the header: "
                f"with data.thousands {thousands!r} equal to the delimiter, a grouped number must "
                'be quoted ("1,234.5"); quote such numbers, or save the file without thousands '
                "separators")
        if issubclass(warning.category, pd.errors.ParserWarning):
            logger.warning("%s: the data lines have more fields than the header (a delimiter at "
                           "the end of every line?): the fields past the header's are ignored",
                           path.name)
        else:  # not ours to hide
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    if ticker is not None and ticker in frame:
        frame[ticker] = frame[ticker].where(frame[ticker].str.strip() != "")  # blank: missing
    if thousands is not None:
        frame = without_thousands_separators(frame, thousands, decimal)
    return decimal_comma_numbers(frame, decimal, str(path)) if decimal != "." else frame


def _is_key_column(column) -> bool:
    """Columns read as text and left so: the keys, the sector and a wide export's dates."""
    return (str(column).strip().lower() in ("date", "ticker", "sector", LINE)
            or str(column).startswith("Unnamed: 0"))


def without_thousands_separators(frame: pd.DataFrame, thousands: str,
                                 decimal: str = ".") -> pd.DataFrame:
    """Columns read as text, with `thousands` removed where it groups digits in threes
    (1,234,567.8 -> 1234567.8 with thousands ","; 1 234,5 with " " and a decimal comma). A
    separator anywhere else (1,23) is left, and the schema refuses the value as usual."""
    sep, mark = re.escape(thousands), re.escape(decimal)
    grouped = rf"^\s*[-+]?\d{{1,3}}({sep}\d{{3}})+({mark}\d+)?\s*$"
    out = frame.copy()
    for column in out.columns:
        if _is_key_column(column):
            continue
        text = out[column]
        if thousands == " ":  # French exports group with a (narrow) no-break space
            text = text.str.replace("\u00a0", " ", regex=False).str.replace(
                "\u202f", " ", regex=False)
        match = text.str.match(grouped).fillna(False)
        out[column] = text.where(~match, text.str.replace(thousands, "", regex=False))
    return out


def check_thousands(thousands: str | None, decimal: str, delimiter: str | None = None) -> None:
    """data.thousands is one character that is neither a digit nor the decimal mark."""
    if thousands is None:
        return
    if not (isinstance(thousands, str) and len(thousands) == 1 and not thousands.isdigit()):
        raise DataValidationError(
            f"data.thousands must be one character (',' for 1,234.5, '.' or ' ' with a decimal "
            f"comma, \"'\" for 1'234.5) or null, got {thousands!r}")
    if thousands == decimal:
        raise DataValidationError(
            f"data.thousands and data.decimal are both {decimal!r}: a number's mark cannot be "
            "both; set the one the file uses for thousands and the one for decimals")


def keys_from_index(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A panel saved with (date, ticker) or date as its index keeps them as columns; other index
    levels (a row id) are dropped, never taken for factors. Columns with several header levels
    (a yfinance download: field over ticker) are refused, naming the levels."""
    if frame.columns.nlevels > 1:
        example = ", ".join(repr(c) for c in list(frame.columns)[:3])
        raise DataValidationError(
            f"Input data rejected ({path}): its columns have {frame.columns.nlevels} header "
            f"levels (e.g. {example}), a table needs one. A download of fields over tickers "
            "(Close / AAPL, ...) becomes the long layout with "
            "`frame.stack(level=1).rename_axis(['date', 'ticker']).reset_index()`, or the wide "
            "layout of closes with `frame['Close']`")
    if (frame.index.nlevels == 1 and frame.index.name is None
            and isinstance(frame.index, pd.DatetimeIndex)
            and not any(str(c).strip().lower() == "date" for c in frame.columns)):
        return frame.rename_axis("date").reset_index()  # a wide table indexed by its dates
    names = [str(n) if n is not None else None for n in frame.index.names]
    keys = [n for n in names if n is not None and n.strip().lower() in ("date", "ticker")]
    other = [n for n in names if n is not None and n not in keys]
    if other:
        logger.warning("%s: index level(s) %s are not date or ticker and are not used",
                       path.name, ", ".join(other))
    if not keys:
        return frame.reset_index(drop=True)
    drop = [n for n in frame.index.names if n not in keys]
    return frame.reset_index(level=drop, drop=True).reset_index() if drop else frame.reset_index()


# In a decimal-comma file a dot can only group thousands, and only as 1.234 or 1.234.567(,8):
# never after a leading 0 (0.264 is a decimal dot, not 0264)
_GROUPED = r"^\s*[-+]?[1-9]\d{0,2}(\.\d{3})+(,\d+)?\s*$"
# a number written with a decimal dot (4.0, .5, 1e-3 aside): impossible with a decimal comma
# unless it is such a thousands group
_DOT_NUMBER = r"^\s*[-+]?\d*\.\d+\s*$"


class DecimalDotError(DataValidationError):
    """A file read with a decimal comma holds numbers written with a decimal dot."""


def decimal_comma_numbers(frame: pd.DataFrame, decimal: str,
                          source: str = "input") -> pd.DataFrame:
    """Columns read as text, with `decimal` as the decimal mark: 12,48 -> 12.48 and 1.234,5 ->
    1234.5 (dots removed only where they group thousands). The date, ticker and sector columns
    stay text; a value that still does not parse is refused by the schema as usual. `source`
    names the file in a refusal; rows are the file's lines from 2 (read with the header on
    line 1 and blank lines kept)."""
    out = frame.copy()
    dotted = {}  # column -> (line, first value whose dot cannot group thousands: a decimal dot)
    grouped_example: tuple[str, str] | None = None  # a value read as a thousands group
    has_decimal_mark = False
    for column in out.columns:
        if _is_key_column(column):
            continue
        text = out[column]
        grouped = text.str.match(_GROUPED).fillna(False)
        # numbers only: text ("ASML Holding N.V."), dates and FRED's "." are not numbers
        decimal_dot = text.str.match(_DOT_NUMBER).fillna(False) & ~grouped
        if decimal != "." and decimal_dot.any():
            first = text[decimal_dot]
            dotted[str(column)] = (int(first.index[0]) + 2, first.iloc[0])
        if grouped_example is None and grouped.any():
            grouped_example = (str(column), text[grouped].iloc[0])
        has_decimal_mark = has_decimal_mark or bool(
            text.str.contains(decimal, regex=False).fillna(False).any())
        text = text.where(~grouped, text.str.replace(".", "", regex=False))
        out[column] = text.str.replace(decimal, ".", regex=False)
    if dotted:
        # with a decimal comma a dot only groups thousands (1.234,5): "4.0" or "0.5" is a decimal
        # dot, and reading "0.264" as 264 would scale prices a thousandfold without a word
        examples = ", ".join(f"{c} {v!r} on line {line}"
                             for c, (line, v) in list(dotted.items())[:5])
        raise DecimalDotError(
            f"Input data rejected ({source}): data.decimal is {decimal!r} but {len(dotted)} "
            f"column(s) hold numbers with a decimal dot ({examples}): this file's decimal mark "
            "is '.', so set data.decimal: '.' (the default) for it")
    if grouped_example is not None and not has_decimal_mark and decimal != ".":
        # every dot could group thousands (a file of prices under 1000 written with three
        # decimals, 6.496) and no number has the decimal mark: the file gives no proof either way
        column, value = grouped_example
        logger.warning(
            "data.decimal is %r but no number in the file has it, and numbers such as %s %r are "
            "read with the dot grouping thousands (%s): if the dot is this file's decimal mark, "
            "set data.decimal: '.' (the default), or every price is a thousandfold too large",
            decimal, column, value, value.replace(".", "").strip())
    return out


def read_table(path: str | Path, delimiter: str | None = None, decimal: str = ".",
               tickers_as_written: bool = False, thousands: str | None = None) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file.

    Names of the contract's columns are matched case-insensitively (`Date` -> `date`); every other
    column (a ticker in the wide layout, a user factor) keeps its name. Every row carries its
    position in the file in column LINE. `delimiter` None = detected from the header line;
    `decimal`: a CSV's decimal mark ("," in many European exports); `thousands`: its thousands
    separator (None: none, or the dot beside a decimal comma). `tickers_as_written`: a
    price file without a ticker column is the wide layout, whose other columns keep their names
    (a ticker LOW is not the field low)."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"Input file not found: {path}")
    try:
        frame = _read_rows(path, delimiter, decimal, thousands)
    except DataValidationError:
        raise
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, pa.ArrowException) as error:
        raise _unreadable(path, error) from None
    known = RESERVED | {"level", LINE}
    original = [str(c) for c in frame.columns]
    frame.columns = [
        str(c).strip().lower() if str(c).strip().lower() in known else str(c).strip()
        for c in frame.columns
    ]
    # a wide file's tickers are its column names: LOW (Lowe's) or OPEN (Opendoor) must keep
    # them as written once the layout is known (wide_to_long)
    if tickers_as_written and "ticker" not in frame.columns:  # wide: the others are tickers
        frame.columns = [c if c in ("date", LINE) else o.strip()
                         for c, o in zip(frame.columns, original, strict=True)]
    if frame.columns.duplicated().any():
        # "Close" and "close" in a long file: which one is the price?
        twins = {name: [o for o, n in zip(original, frame.columns, strict=True) if n == name]
                 for name in frame.columns[frame.columns.duplicated()].unique()}
        raise DataValidationError(
            f"Input data rejected ({path}): columns that differ only by case or spaces name one "
            "field twice: " + "; ".join(f"{' and '.join(map(repr, cols))} are both {name!r}"
                                        for name, cols in twins.items())
            + ". Keep one of each (column names are read without case).")
    if frame.empty:
        raise DataValidationError(
            f"Input file {path} has a header ({', '.join(c for c in frame.columns if c != LINE)}) "
            "but no data rows")
    return frame


def _read_rows(path: Path, delimiter: str | None, decimal: str,
               thousands: str | None = None) -> pd.DataFrame:
    """The file's rows as read, each with its position in the file in column LINE."""
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        _check_parquet(path)
        frame = keys_from_index(pd.read_parquet(path), path)
        frame[LINE] = frame.index + 1
        return frame
    if not is_csv(path):
        raise DataValidationError(f"Unsupported input format {path.name}: use CSV or Parquet")
    _check_compression(path)
    _check_utf16_without_mark(path)
    sep = delimiter or sniff_delimiter(path)
    if sep != ",":
        logger.info("%s: reading with delimiter %r", path.name, sep)
    try:
        # blank lines are kept while reading so that the line numbers stay the file's own
        frame = _read_csv(path, sep, decimal, thousands)
    except pd.errors.EmptyDataError:
        raise DataValidationError(
            f"Input file {path} is empty: expected a header line (date, ticker, close, ... or "
            "date plus one column per ticker) and data rows") from None
    frame[LINE] = frame.index + 2
    blank = frame.drop(columns=LINE).isna().all(axis=1)
    return frame.loc[~blank].reset_index(drop=True)


def detect_layout(frame: pd.DataFrame, layout: str = "auto") -> str:
    """'long' when a ticker column exists, else 'wide' (date + one close column per ticker)."""
    if layout not in {"auto", "long", "wide"}:
        raise DataValidationError(f"data.layout must be auto, long or wide, got {layout!r}")
    if layout != "auto":
        return layout
    return "long" if "ticker" in frame.columns else "wide"


def wide_to_long(frame: pd.DataFrame) -> pd.DataFrame:
    """Wide close table -> long (date, ticker, close); empty cells are missing days, not rows.

    A ticker column without a single price keeps its rows (all missing), so the name is reported
    in the data-quality report (`no_prices`, never eligible) instead of vanishing."""
    first = str(frame.columns[0]) if len(frame.columns) else ""
    if "date" not in frame.columns and (not first.strip() or first.startswith("Unnamed: 0")):
        # a spreadsheet or `to_csv(index=True)` export: the dates without a header
        logger.info("wide layout: the first column has no header; read as the dates")
        frame = frame.rename(columns={frame.columns[0]: "date"})
    if "date" not in frame.columns:
        raise DataValidationError(
            "Input data rejected: missing required column 'date' (wide layout: a date column plus "
            "one close-price column per ticker)"
        )
    frame = _drop_wide_columns_without_header(frame)
    tickers = [c for c in frame.columns if c not in {"date", LINE}]
    if not tickers:
        raise DataValidationError("Input data rejected: wide layout with no ticker columns")
    _refuse_price_fields_as_tickers(frame, tickers)
    _refuse_text_columns(frame, tickers)
    _refuse_long_rows_without_ticker(frame, tickers)
    id_vars = ["date", *([LINE] if LINE in frame.columns else [])]
    # a ticker named "close" or "ticker" must not clash with the melted columns' names
    long = frame.melt(id_vars=id_vars, value_vars=tickers, var_name="\0ticker",
                      value_name="\0close").rename(columns={"\0ticker": "ticker",
                                                            "\0close": "close"})
    present = long["close"].notna() & (long["close"].astype(str).str.strip() != "")
    empty = [t for t in tickers if not present[long["ticker"] == t].any()]
    if empty:
        logger.warning("wide layout: ticker column(s) %s hold no price on any line; the name(s) "
                       "are kept without prices and reported as never eligible", ", ".join(empty))
    return long.loc[present | long["ticker"].isin(empty)]


def _without_header(column) -> bool:
    return not str(column).strip() or str(column).startswith("Unnamed: ")


def _drop_wide_columns_without_header(frame: pd.DataFrame) -> pd.DataFrame:
    """In the wide layout a column's header is its ticker: a column without one (a saved row
    index beside the dates, `to_csv()`'s default) would become a name called 'Unnamed: 0'. Left
    out with a warning; a file whose every price column lacks a header (ticker names on another
    line, as yfinance writes them) is refused."""
    unnamed = [c for c in frame.columns if c not in {"date", LINE} and _without_header(c)]
    if not unnamed:
        return frame
    if len(unnamed) == len([c for c in frame.columns if c not in {"date", LINE}]):
        raise DataValidationError(
            f"Input data rejected: wide layout (a date column plus one close column per ticker), "
            f"but none of the {len(unnamed)} price column(s) has a header, so no column names a "
            "ticker: put the ticker names on the header line (a download with several header "
            "lines, field and ticker, needs them merged into one), or give the long layout "
            "(date, ticker, close, ...)")
    _say_unnamed_left_out(frame, unnamed, "wide",
                          "A wide file's headers are its tickers: name the column to use it")
    return frame.drop(columns=unnamed)


def _say_unnamed_left_out(frame: pd.DataFrame, unnamed: list, layout: str, use: str) -> None:
    """Columns without a header, left out: empty ones (an export's blank trailing columns, a
    delimiter at the end of the header too) said in info.log only; ones with values warned
    about, as a saved row index only when first (where `to_csv()` writes it)."""
    def blank(column) -> bool:
        values = frame[column]
        return bool((values.isna() | (values.astype(str).str.strip() == "")).all())

    empty = [c for c in unnamed if blank(c)]
    filled = [c for c in unnamed if c not in empty]
    if empty:
        logger.info("%s layout: %d empty column(s) without a header left out (%s)", layout,
                    len(empty), ", ".join(map(str, empty)))
    if filled:
        first = [c for c in frame.columns if c != LINE][0] in filled
        guess = ("a saved row index (`to_csv()` writes one unless index=False)?" if first else
                 "values under an empty header cell?")
        logger.warning("%s layout: %d column(s) without a header left out (%s): %s %s", layout,
                       len(filled), ", ".join(map(str, filled)), guess, use)


# Column names of one name's price fields (a vendor download of a single ticker): in the wide
# layout each would become a ticker.
CLOSE_FIELD_NAMES = frozenset({"close", "adj close", "adj_close", "adjclose", "adjusted close"})


def _field_name(column) -> str:
    return " ".join(str(column).strip().lower().replace(".", " ").split())


def _refuse_price_fields_as_tickers(frame: pd.DataFrame, tickers: list) -> None:
    """Columns that are all price fields, among them high, low and a close, with high at or
    above low on its rows, are one name's bars (a single-ticker download without a ticker
    column), not tickers. Tickers that happen to be field names (LOW, OPEN, HIGH) beside other
    tickers stay tickers."""
    by_field = {_field_name(c): c for c in tickers}
    fields = {*CLOSE_FIELD_NAMES, *NUMERIC_OPTIONAL}
    if not ({"high", "low"} <= set(by_field) and CLOSE_FIELD_NAMES & set(by_field)
            and set(by_field) <= fields):
        return
    high, low = (pd.to_numeric(frame[by_field[f]], errors="coerce") for f in ("high", "low"))
    both = high.notna() & low.notna()
    if not both.any() or (high[both] >= low[both]).mean() < 0.99:
        return
    fields = [str(c) for c in tickers]
    raise DataValidationError(
        f"Input data rejected: there is no 'ticker' column, so the file reads as the wide layout "
        f"(one close column per ticker), but column(s) {', '.join(fields)} are one name's price "
        "fields, not tickers (a single-ticker download?): add a 'ticker' column holding the "
        "name (date, ticker, open, high, low, close, volume), or give one close column per "
        "ticker")


def _drop_unnamed_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A long file's columns without a header ('Unnamed: 0': `to_csv()` with its row index) are
    left out, named in a warning: read as a user factor, a row number would reach the models."""
    unnamed = [c for c in frame.columns
               if c != LINE and (not str(c).strip() or str(c).startswith("Unnamed: "))]
    if unnamed:
        _say_unnamed_left_out(frame, unnamed, "long",
                              "Give a column a name to use it as a factor")
    return frame.drop(columns=unnamed)


def _refuse_long_rows_without_ticker(frame: pd.DataFrame, tickers: list[str]) -> None:
    """A wide file has one row per date; dates repeated under a column named like a price field
    (date, close, volume ...) are a long file that lacks its ticker column."""
    fields = [str(c) for c in tickers if str(c).strip().lower() in NUMERIC_OPTIONAL + ("close",)]
    repeated = frame["date"].astype(str).duplicated().sum()
    if fields and repeated:
        raise DataValidationError(
            f"Input data rejected: no 'ticker' column, so the file was read as the wide layout "
            f"(one close column per ticker, one row per date), but {repeated} date(s) repeat and "
            f"column(s) {', '.join(fields)} look like price fields: a long file needs a ticker "
            "column (date, ticker, close, ...)")


def _refuse_text_columns(frame: pd.DataFrame, tickers: list[str]) -> None:
    """A file without a 'ticker' column is read as wide (one close column per ticker); a column of
    mostly text there is a long file whose columns have other names (Symbol, Close Price, ...)."""
    text, samples = [], []
    for column in tickers:
        values = frame[column].dropna()
        if len(values) and values.dtype == object or pd.api.types.is_string_dtype(values):
            stripped = values.astype(str).str.strip()
            parsed = pd.to_numeric(stripped, errors="coerce")
            if parsed.notna().mean() < 0.5:
                text.append(str(column))
                samples.extend(stripped[parsed.isna() & (stripped != "")].head(2).tolist())
    if text:
        shown = ", ".join(repr(v) for v in dict.fromkeys(samples[:6]))
        raise DataValidationError(
            "Input data rejected: there is no 'ticker' column, so the file reads as the wide layout "
            f"(a date column plus one close column per ticker), but column(s) {', '.join(text[:5])} "
            f"hold text, not prices (e.g. {shown}). " + _wide_text_hint(samples))


def _wide_text_hint(samples: list[str]) -> str:
    """What the text in a wide file's price columns most likely is, and what to do about it."""
    values = pd.Series(samples, dtype=object).astype(str)
    if len(values) and values.str.match(DECIMAL_COMMA).mean() > 0.5:
        return ("They read as numbers with a decimal comma: set data.decimal: ',' (in "
                "conf/local/parameters.yml; `--params` splits its value at commas)")
    if len(values) and values.str.match(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d+)?\s*$").mean() > 0.5:
        return ("They read as numbers with thousands separators (1,234.56): set "
                "data.thousands: ',' (in conf/local/parameters.yml: `--params` splits at commas), "
                "or write the numbers without them")
    return ("A cell without a price must be empty (a placeholder such as those is text, not a "
            "missing price); a long file needs columns named date, ticker and close (and optionally "
            "open, high, low, volume, sector): rename yours (e.g. Symbol -> ticker, "
            "'Close Price' -> close), or set data.layout")


def load_raw_panel(path: str | Path, layout: str = "auto", delimiter: str | None = None,
                   decimal: str = ".", thousands: str | None = None) -> pd.DataFrame:
    """Read, reshape and validate a raw panel into the long layout, sorted by (date, ticker)."""
    check_thousands(thousands, decimal)
    frame = read_table(path, delimiter, decimal, tickers_as_written=layout != "long",
                       thousands=thousands)
    columns = [str(c) for c in frame.columns if c != LINE]
    if len(columns) == 1 and any(d in columns[0] for d in DELIMITERS):
        raise DataValidationError(
            f"Input data rejected ({path}): the header reads as one column {columns[0]!r}, so the "
            f"delimiter {delimiter!r} is not the file's: set data.delimiter to it, or to null to "
            "detect it")
    if layout == "wide" and "ticker" in frame.columns:
        raise DataValidationError(
            f"Input data rejected ({path}): the layout is set to wide (data.layout, or "
            "inference.data.layout), but the file has a 'ticker' column: it is a long file "
            "(one row per date and ticker); set the layout to auto or long")
    if detect_layout(frame, layout) == "wide":
        try:
            frame = wide_to_long(frame)
        except DataValidationError as error:  # name the file, as the long layout's errors do
            raise DataValidationError(
                str(error).replace("Input data rejected:", f"Input data rejected ({path}):", 1)
            ) from None
    else:
        frame = _drop_unnamed_columns(frame)
    position = "line" if is_csv(Path(path)) else "row"
    long = validate_long_panel(frame, source=str(path), position=position,
                               thousands=thousands).drop(columns=LINE)
    long["ticker"] = long["ticker"].astype(str)
    long = _without_empty_columns(long, path)
    _refuse_factor_names_learners_refuse(long, path)
    computed = [c for c in COMPUTED_COLUMNS if c in long.columns]
    if computed:
        # the project writes these itself (eligible) or never learns from them (ret_1d, label):
        # the file's values would be replaced or left out without a word
        logger.warning("%s: column(s) %s carry names the project computes; the file's values "
                       "are not used (not as factors either): rename them to use them as "
                       "factors", Path(path).name, ", ".join(computed))
        long = long.drop(columns=computed)
    return long.sort_values(["date", "ticker"], kind="stable").reset_index(drop=True)


def _without_empty_columns(long: pd.DataFrame, path) -> pd.DataFrame:
    """A file's extra column without a value on any row (a header an export fills for other
    securities) is no factor: left out with a warning, like a column of text. (A request to the
    serving chain keeps such a column: a factor missing on the one date scored is named there.)"""
    empty = [c for c in long.columns if c not in RESERVED and not long[c].notna().any()]
    if empty:
        logger.warning("%s: column(s) %s hold no value on any row and are not used",
                       Path(path).name, ", ".join(map(str, empty)))
    return long.drop(columns=empty)


# Characters LightGBM (JSON: " , : [ ] { }) and XGBoost ([ ] <) refuse in a feature's name: a
# user factor named with one fails those learners mid-run (the others train on without them).
LEARNER_REFUSED_CHARACTERS = '",:[]{}<'


def _refuse_factor_names_learners_refuse(long: pd.DataFrame, path) -> None:
    """A numeric column of the file with a value is a user factor under its own name (an empty
    one is left out): one whose name the tree learners cannot take is refused at load, naming
    it, rather than failing them mid-run."""
    named = {str(c): "".join(dict.fromkeys(ch for ch in str(c) if ch in LEARNER_REFUSED_CHARACTERS))
             for c in long.columns
             if c not in RESERVED and pd.api.types.is_numeric_dtype(long[c])
             and not pd.api.types.is_bool_dtype(long[c]) and long[c].notna().any()}
    named = {c: chars for c, chars in named.items() if chars}
    if named:
        shown = "; ".join(f"{c!r} ({' '.join(chars)})" for c, chars in list(named.items())[:5])
        raise DataValidationError(
            f"Input data rejected ({path}): {len(named)} factor column name(s) hold characters "
            f"LightGBM and XGBoost refuse in a feature's name ({' '.join(LEARNER_REFUSED_CHARACTERS)}"
            f"): {shown}. Rename the column(s), e.g. 'Signal [FY1]' -> 'Signal (FY1)', or leave "
            "them out of the file")


# columns data_processing computes (the point-in-time universe, whether a close is a trade,
# the daily return, the label)
COMPUTED_COLUMNS = ("eligible", "tradable", "ret_1d", "label", "listed_from")


# The `data` parameters that say how a panel file is read: stored with a trained chain, so that
# inference and the registry's reproduction check read the file as training did.
READ_KEYS = ("raw_path", "index_path", "layout", "delimiter", "decimal", "thousands")


def load_configured_panel(data: dict) -> pd.DataFrame:
    """`load_raw_panel` with the reading options of a `data` parameter block (READ_KEYS)."""
    return load_raw_panel(Path(data["raw_path"]), layout=data.get("layout") or "auto",
                          delimiter=data.get("delimiter"), decimal=data.get("decimal") or ".",
                          thousands=data.get("thousands") or None)


def load_configured_index(data: dict) -> pd.DataFrame:
    """`load_index_series` of a `data` parameter block's index_path (empty without one)."""
    decimal, thousands = data.get("decimal") or ".", data.get("thousands") or None
    try:
        return load_index_series(data.get("index_path"), decimal=decimal, thousands=thousands)
    except DecimalDotError:
        # a European price file beside a US or FRED index (3257.85): the index has its own mark
        logger.info("index file %s: read with a decimal dot (its numbers have one; data.decimal "
                    "%r is the price file's)", data.get("index_path"), decimal)
        return load_index_series(data.get("index_path"), decimal=".",
                                 thousands=None if thousands == "." else thousands)


# The level of an index file with several value columns (a vendor's OHLCV download), first match.
INDEX_LEVEL_COLUMNS = ("level", "close", "adj close", "adj_close", "adjclose", "price", "value")


def load_index_series(path: str | Path | None, decimal: str = ".",
                      thousands: str | None = None) -> pd.DataFrame:
    """Optional market index file (date + one level column, or several with one named as in
    INDEX_LEVEL_COLUMNS) -> (date, level); empty when no file. Dates are read like the panel's
    (one format, local calendar days)."""
    if not path:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"),
                             "level": pd.Series(dtype="float64")})
    frame = read_table(path, decimal=decimal, thousands=thousands)
    position = "line" if is_csv(Path(path)) else "row"
    if "date" in frame.columns:
        frame = parse_dates(frame, f"index file {path}", position)
    if "date" not in frame.columns:
        raise DataValidationError(f"Index file {path}: missing required column 'date'")
    values = [c for c in frame.columns if c not in ("date", LINE)]
    if len(values) != 1:
        named = [c for c in INDEX_LEVEL_COLUMNS if c in values]
        if not named:
            raise DataValidationError(
                f"Index file {path}: expected one level column, got {values}; name the index "
                f"level column one of {', '.join(INDEX_LEVEL_COLUMNS)} (or drop the others)")
        logger.info("index file %s: level from column %r (of %s)", path, named[0], values)
        values = named[:1]
    raw_level = frame[values[0]]
    # a day without a level ('.' in FRED's downloads, or an empty cell) is a missing day: the
    # level is carried forward over it (check_index_coverage warns about long gaps)
    missing = raw_level.isna() | raw_level.astype(str).str.strip().isin(["", "."])
    frame, raw_level = frame.loc[~missing], raw_level.loc[~missing]
    out = pd.DataFrame(
        {
            # the panel's days: local calendar day, no time of day (schema.trading_days)
            "date": local_clock(pd.to_datetime(frame["date"], errors="coerce")).dt.normalize(),
            "level": pd.to_numeric(raw_level, errors="coerce"),
        }
    )
    bad = out["date"].isna() | ~(out["level"] > 0) | ~np.isfinite(out["level"])
    if bad.any():
        # text as written ('3,700.65'), numbers as numbers (0.0, not np.float64(0.0))
        shown = "; ".join(f"{position} {frame.at[i, LINE]}: "
                          + (repr(v) if isinstance(v := raw_level.at[i], str) else str(v))
                          for i in out.index[bad][:3])
        hint = (" (thousands separators? save the file without them)"
                if looks_like_thousands_groups(raw_level[bad]) else "")
        raise DataValidationError(
            f"Index file {path}: column '{values[0]}' must hold finite positive numbers with "
            f"parseable "
            f"dates; {int(bad.sum())} bad value(s), e.g. {shown}{hint}"
        )
    if out["date"].duplicated().any():
        day = out.loc[out["date"].duplicated(), "date"].iloc[0]
        raise DataValidationError(
            f"Index file {path}: more than one level on a day (e.g. {day.date()}): one level per "
            "day (intraday levels? aggregate them to the daily close)")
    return out.sort_values("date").reset_index(drop=True)


# What to do about an index that does not fit the panel, in training (data.*)
TRAINING_INDEX_FIX = ("set data.index_path: null for the equal-weighted market of the panel's own "
                      "names")


def check_index_coverage(raw: pd.DataFrame, index: pd.DataFrame, path: str | Path | None,
                         fix: str = TRAINING_INDEX_FIX) -> None:
    """Refuse a market index that does not span the panel's dates: before its first level the
    market series would be missing (market-context factors unusable), after its last one flat
    (a zero market return on every later date, the test period's included). ``fix``: the way
    out that the run's parameters offer (inference's differ from training's)."""
    if index is None or not len(index) or not len(raw):
        return
    dates = pd.DatetimeIndex(raw["date"].unique())
    first, last = index["date"].min(), index["date"].max()
    before, after = int((dates < first).sum()), int((dates > last).sum())
    if before or after:
        raise DataValidationError(
            f"Index file {path} covers {first.date()}..{last.date()}, but the panel's dates run "
            f"{dates.min().date()}..{dates.max().date()}: {before} panel date(s) before its first "
            f"level and {after} after its last one would get no market return. Give an index "
            f"that spans the panel, cut the panel to the index's dates, or {fix}.")
    check_index_gaps(raw, index, f"index file {path}", fix)


def check_index_gaps(raw: pd.DataFrame, index: pd.DataFrame, source: str,
                     fix: str = TRAINING_INDEX_FIX) -> None:
    """Inside its span the index's level is carried forward over the panel's trading days it
    lacks (a market return of 0 there): refused when it lacks most of them (a weekly or monthly
    index for a daily panel), warned about when it lacks a run of a week or more. `source`
    names where the levels came from ("index file x.csv", "the panel's 'market_level' column")."""
    names = raw.loc[raw["close"].notna()].groupby("date")["ticker"].nunique()
    trading = pd.DatetimeIndex(names.index[names >= 0.5 * names.max()]).sort_values()
    if not len(trading):
        return
    missing = ~trading.isin(pd.DatetimeIndex(index.dropna(subset=["level"])["date"]))
    share = float(missing.mean())
    if share > 0.5:
        raise DataValidationError(
            f"{source[0].upper()}{source[1:]} has a level on only {1 - share:.0%} of the panel's "
            f"{len(trading)} trading days (a weekly or monthly series?): the market return would "
            f"be 0 on the other days. Give a daily index, or {fix}.")
    runs = pd.Series(missing).groupby((~pd.Series(missing)).cumsum()).sum()
    longest = int(runs.max()) if len(runs) else 0
    sparse = _sparse_index_span(missing, trading)
    if sparse is not None:  # turned weekly: no 5 days in a row, and no holidays
        first, last, kept = sparse
        logger.warning(
            "%s has a level on only %d of the panel's %d trading days from %s to %s (a weekly "
            "or monthly series there?): its last level is carried forward over the others (a "
            "market return of 0 on those days, the week's move on one). Give a daily index, "
            "or %s", source, kept, int(((trading >= first) & (trading <= last)).sum()),
            first.date(), last.date(), fix)
    elif longest >= 5:
        end = int(runs.idxmax())  # the group key counts the present days before the run
        start_at = int(np.flatnonzero(~missing)[end - 1]) + 1 if end else 0
        logger.warning(
            "%s has no level on %d of the panel's %d trading days, %d in a row from "
            "%s: its last level is carried forward there (a market return of 0 on those days)",
            source, int(missing.sum()), len(trading), longest, trading[start_at].date())
    elif share >= SCATTERED_INDEX_GAPS:
        logger.warning(
            "%s has no level on %d of the panel's %d trading days (%.1f%%, e.g. %s): "
            "another exchange's holidays? Its last level is carried forward there (a market "
            "return of 0 on those days, two days' move the day after)", source,
            int(missing.sum()), len(trading), 100 * share,
            ", ".join(str(d.date()) for d in trading[missing][:3]))


def warn_index_jumps(index: pd.DataFrame, source: str, max_abs_return: float | None,
                     setting: str = "processing.index_jump_warning") -> None:
    """Warn about the index's one-day moves (level to next level) beyond `max_abs_return`
    (the parameter named `setting`; None: off): a bad print (x100 and back) or a
    unit change (/1000 from a date on) would feed every market-context feature and the regime
    detector a move no market makes. Kept as given, as a price's unexplained move is."""
    if max_abs_return is None or index is None or len(index) < 2:
        return
    levels = index.dropna(subset=["level"]).sort_values("date")
    moves = levels["level"].pct_change().to_numpy()
    far = np.flatnonzero(np.abs(moves) > float(max_abs_return))
    if not len(far):
        return
    largest = far[np.argsort(-np.abs(moves[far]), kind="stable")][:3]
    logger.warning(
        "%s moves more than %s (%.0f%%) in a day %d "
        "time(s), the largest: %s. A market index does not: a bad print or a change of units? "
        "Every market feature and the regime detector read it as given: fix the level(s)",
        source, setting, 100 * float(max_abs_return), len(far),
        ", ".join(f"{levels['date'].iloc[i].date()} {move_label(moves[i])}"
                  for i in largest))


# a month of trading days: a stretch this long in which the index lacks most days is a weekly or
# monthly series there (a vendor's history switched frequency), not holidays
SPARSE_INDEX_WINDOW = 21


def _sparse_index_span(missing: np.ndarray, trading: pd.DatetimeIndex
                       ) -> tuple[pd.Timestamp, pd.Timestamp, int] | None:
    """The stretch where the index turned weekly or monthly: consecutive windows of
    SPARSE_INDEX_WINDOW trading days each lacking more than half, whose missing days fall in
    three or more separate runs (one outage is one run, said as a run); its first and last day
    without a level and the days with a level between them, for the stretch lacking the most
    days. None when there is none."""
    if len(trading) < SPARSE_INDEX_WINDOW:
        return None
    share = pd.Series(missing, dtype=float).rolling(SPARSE_INDEX_WINDOW).mean().to_numpy()
    ends = np.flatnonzero(share > 0.5)
    best = None
    for segment in np.split(ends, np.flatnonzero(np.diff(ends) > 1) + 1) if len(ends) else []:
        start, stop = segment[0] - SPARSE_INDEX_WINDOW + 1, segment[-1]
        lacking = np.flatnonzero(missing[start:stop + 1]) + start
        start, stop = int(lacking[0]), int(lacking[-1])
        runs = int((np.diff(lacking) > 1).sum()) + 1
        if runs >= 3 and (best is None or len(lacking) > best[3]):
            best = (start, stop, int((~missing[start:stop + 1]).sum()), len(lacking))
    if best is None:
        return None
    return trading[best[0]], trading[best[1]], best[2]


# share of the panel's trading days an index may lack, scattered, before it is warned about (a
# stray day or two a year; 2 % is five a year, another exchange's holidays are about 3-4 %)
SCATTERED_INDEX_GAPS = 0.02


def load_true_regimes(path: str | Path | None, regimes: tuple[str, ...]) -> pd.DataFrame:
    """Optional known-answer file of a synthetic market (date + `regime` in `regimes`) -> (date,
    regime), sorted; empty when no file. Only scored against, never a feature."""
    if not path:
        return pd.DataFrame({"date": pd.Series(dtype="datetime64[ns]"),
                             "regime": pd.Series(dtype=str)})
    frame = read_table(path)
    missing = [c for c in ("date", "regime") if c not in frame.columns]
    if missing:
        raise DataValidationError(f"True regimes file {path}: missing required column(s) {missing}")
    position = "line" if is_csv(Path(path)) else "row"
    out = pd.DataFrame({"date": pd.to_datetime(frame["date"], errors="coerce"),
                        "regime": frame["regime"].astype(str)})
    bad = out["date"].isna() | ~out["regime"].isin(regimes)
    if bad.any():
        shown = "; ".join(f"{position} {frame.at[i, LINE]}: {frame.at[i, 'date']!s}, "
                          f"{frame.at[i, 'regime']!r}" for i in out.index[bad][:3])
        raise DataValidationError(
            f"True regimes file {path}: need parseable dates and regimes in {list(regimes)}; "
            f"{int(bad.sum())} bad row(s), e.g. {shown}")
    repeated = out["date"].duplicated(keep=False)
    if repeated.any():
        first = out.loc[repeated, "date"].iloc[0]
        lines = ", ".join(str(v) for v in frame.loc[repeated & (out["date"] == first), LINE])
        raise DataValidationError(
            f"True regimes file {path}: {int(out.loc[repeated, 'date'].nunique())} date(s) "
            f"more than once, e.g. {first.date()} ({position}s {lines}): one regime per date")
    return out.sort_values("date").reset_index(drop=True)


@dataclass
class PanelMatrices:
    """A panel as date x ticker matrices sharing one calendar and ticker order."""

    values: dict[str, pd.DataFrame]
    sector: pd.DataFrame | None = None  # date x ticker, point in time (forward-filled only)
    extra_columns: list[str] = field(default_factory=list)
    # date x ticker bool: in the point-in-time cross-section (core.data.universe); None = not decided
    eligible: pd.DataFrame | None = None
    # date x ticker bool: prices withheld while a suspected split awaited its confirmation
    # (core.data.cleaning.split_repair); the next daily return spans them. None = none.
    withheld: pd.DataFrame | None = None
    # date x ticker bool: the close is a trade (given by the file, not forward-filled, masked,
    # withheld or marked untraded); a backtest cannot trade at the others. None = not decided.
    tradable: pd.DataFrame | None = None
    # date x ticker datetime: the first date of a relisted name's current listing (NaT on its
    # first one; core.data.universe.listed_from_dates). None = no name was relisted.
    listed_from: pd.DataFrame | None = None

    @property
    def close(self) -> pd.DataFrame:
        return self.values["close"]

    @property
    def dates(self) -> pd.DatetimeIndex:
        return self.close.index

    @property
    def tickers(self) -> pd.Index:
        return self.close.columns

    def select(self, dates=None, tickers=None) -> PanelMatrices:
        rows = self.dates if dates is None else dates
        cols = self.tickers if tickers is None else tickers
        return PanelMatrices(
            {k: v.loc[rows, cols] for k, v in self.values.items()},
            None if self.sector is None else self.sector.loc[rows, cols],
            list(self.extra_columns),
            None if self.eligible is None else self.eligible.loc[rows, cols],
            None if self.withheld is None else self.withheld.loc[rows, cols],
            None if self.tradable is None else self.tradable.loc[rows, cols],
            None if self.listed_from is None else self.listed_from.loc[rows, cols],
        )


def to_matrices(long: pd.DataFrame) -> PanelMatrices:
    """Long panel -> matrices on the union calendar (missing (date, ticker) cells are NaN)."""
    numeric = [c for c in long.columns if c not in {"date", "ticker", "sector"}]
    values = {
        c: long.pivot(index="date", columns="ticker", values=c).astype("float64") for c in numeric
    }
    calendar = values["close"].index
    tickers = values["close"].columns
    values = {c: m.reindex(index=calendar, columns=tickers) for c, m in values.items()}
    sector = None
    if "sector" in long.columns:
        # Point in time: a reclassification applies from its date on, never to earlier history.
        sector = (
            long.pivot(index="date", columns="ticker", values="sector")
            .reindex(index=calendar, columns=tickers)
            .astype(object)
            .ffill()
        )
    extra = [c for c in numeric if c not in RESERVED]
    return PanelMatrices(values, sector, extra)


def cells_with_values(panel: PanelMatrices, listed: np.ndarray) -> np.ndarray:
    """The (date, ticker) cells a long panel needs: a listed name on a date it has any value.

    A delisted or long-suspended name's empty cells carry nothing (every later step reads an
    absent row as NaN), and on a survivorship-free panel they are most of the grid: 2,000 names
    listed a few years each over 29 years fill a sixth of it. A date on which no name has a
    value keeps its listed cells, so the calendar stays the same."""
    has_value = np.zeros(panel.close.shape, dtype=bool)
    for matrix in panel.values.values():
        has_value |= matrix.notna().to_numpy()
    has_value |= ~has_value.any(axis=1, keepdims=True)
    return np.asarray(listed, dtype=bool) & has_value


def to_long(panel: PanelMatrices, extra: dict[str, pd.DataFrame] | None = None,
            cells: np.ndarray | None = None) -> pd.DataFrame:
    """Matrices -> long (date, ticker, ...) sorted by date then ticker: one row per grid cell, or
    per True cell of `cells` (a date x ticker bool matrix; the other cells are never built)."""
    columns = {**panel.values, **(extra or {})}
    n_tickers = len(panel.tickers)
    if cells is None:
        take = np.arange(len(panel.dates) * n_tickers)
    else:
        take = np.flatnonzero(np.asarray(cells, dtype=bool).ravel())

    def flat(matrix: np.ndarray) -> np.ndarray:
        return matrix.ravel()[take]

    out = pd.DataFrame({"date": panel.dates[take // n_tickers],
                        "ticker": panel.tickers[take % n_tickers]})
    for name, matrix in columns.items():
        out[name] = flat(matrix.to_numpy())
    if panel.sector is not None:
        sector = panel.sector.reindex(index=panel.dates, columns=panel.tickers)
        out["sector"] = flat(sector.to_numpy(dtype=object))
    if panel.eligible is not None:
        eligible = panel.eligible.reindex(index=panel.dates, columns=panel.tickers, fill_value=False)
        out[ELIGIBLE] = flat(eligible.to_numpy(dtype=bool))
    if panel.tradable is not None:
        tradable = panel.tradable.reindex(index=panel.dates, columns=panel.tickers,
                                          fill_value=False)
        out[TRADABLE] = flat(tradable.to_numpy(dtype=bool))
    if panel.listed_from is not None:
        listed_from = panel.listed_from.reindex(index=panel.dates, columns=panel.tickers)
        out[LISTED_FROM] = flat(listed_from.to_numpy(dtype="datetime64[ns]"))
    out["ticker"] = out["ticker"].astype(str)
    return out
