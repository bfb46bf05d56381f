"""The fast path: the whole file through one Polars read, proven clean by byte counts.

How it stays fast: a clean file is read by one multi-threaded :func:`polars.read_csv`, and
counts that Polars cannot fake prove that no record was mis-split. Polars raises on a record
with too many fields, so ``delimiters == (columns - 1) x records`` (plus the delimiters inside
quoted values) leaves no room for a record with too few; quotes must sit on field boundaries;
newlines must add up to the records. The counting runs in a thread while Polars reads.

Polars is given the records only (no header, no trailing blank lines); a value that does not
fit the type Polars inferred is a :data:`_DRIFT`, which the caller answers by reading as text.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from headrace.connectors.base import LINE
from headrace.connectors.csv.dialect import Buffer, _Dialect
from headrace.connectors.csv.frames import Schema, _infer_types
from headrace.connectors.csv.layout import _Layout

_SCAN_STEP = 1 << 20
_PARALLEL_BYTES = 8 << 20
_NEWLINE = ord("\n")
_RETURN = ord("\r")
_POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)

_Read = TypeVar("_Read")


@dataclass(frozen=True)
class _Region:
    """What Polars reads (``source`` from line ``skip + 1``) and the bytes it covers."""

    source: str | bytes
    skip: int
    buffer: Buffer
    start: int
    end: int
    """Records are ``buffer[start:end]``: no final newline, no trailing blank lines."""
    first_line: int
    trailing_blank: int = 0


class _Drift:
    """A value did not parse as the type Polars inferred (or was given) for its column."""


_DRIFT = _Drift()


def _natively_typed(columns: Mapping[str, pl.DataType | None]) -> dict[str, pl.DataType]:
    """Declared numeric and boolean columns, which Polars parses faster than text + cast."""
    return {
        name: dtype
        for name, dtype in columns.items()
        if dtype is not None
        and (dtype.is_integer() or dtype.is_float() or isinstance(dtype, pl.Boolean))
    }


def _read_whole(
    buffer: Buffer,
    path: Path | None,
    layout: _Layout,
    dialect: _Dialect,
    strings: frozenset[str],
    *,
    typed: Mapping[str, pl.DataType] | None = None,
) -> pl.DataFrame | None:
    """The whole file through one Polars read, or None when it is not provably clean.

    ``typed`` columns are first read as their declared type (the contract's numbers and
    booleans); when a value does not parse, the file is read again with them as text, for the
    contract to quarantine the values that do not convert.
    """
    start, end = layout.body_start, layout.body_end
    if not dialect.utf8 and not _is_ascii(buffer, start, end):
        try:
            data = buffer[start:end].decode(dialect.encoding).encode("utf-8")
        except UnicodeDecodeError:
            return None
        region = _Region(data, 0, data, 0, len(data), layout.body_line)
    elif path is not None and (layout.body_line > 1 or buffer[:3] != codecs.BOM_UTF8):
        skip = layout.body_line - 1
        trailing = layout.trailing_blank
        region = _Region(str(path), skip, buffer, start, end, layout.body_line, trailing)
    else:
        data = bytes(buffer[start:end])
        region = _Region(data, 0, data, 0, len(data), layout.body_line)
    frame = _read_clean(region, layout.names, dialect, strings, None, typed=typed)
    if frame is _DRIFT and typed:  # a declared number that is not one: contract columns as text
        frame = _read_clean(region, layout.names, dialect, strings, None)
    if frame is _DRIFT:  # clean, but a value does not fit its inferred type: text, then infer
        text = dict.fromkeys(layout.names, pl.String())
        frame = _read_clean(region, layout.names, dialect, strings, text)
        return _infer_types(frame, strings) if isinstance(frame, pl.DataFrame) else None
    return frame if isinstance(frame, pl.DataFrame) else None


def _read_clean(
    region: _Region,
    names: tuple[str, ...],
    dialect: _Dialect,
    strings: frozenset[str],
    schema: Schema | None,
    *,
    typed: Mapping[str, pl.DataType] | None = None,
) -> pl.DataFrame | _Drift | None:
    """Rows with ``_hr_line`` when the region is provably clean, else None.

    ``schema`` gives every column's type; None lets Polars infer them (``strings`` as String,
    ``typed`` as given).
    """
    width = len(names)
    delimiter, quote = dialect.delimiter_byte, dialect.quote_byte
    probe, frame = _probed(
        region,
        delimiter,
        quote,
        lambda: _polars_read(region, names, dialect, strings, schema, typed=typed),
    )
    quoted = probe.quotes > 0
    if not probe.quotes_well_formed:
        return None
    if not quoted and probe.delimiters != (width - 1) * (probe.newlines + 1):
        return None  # without quotes, every line is a record: some have a wrong field count
    if not isinstance(frame, pl.DataFrame):
        return frame
    if region.trailing_blank:
        tail = frame.tail(region.trailing_blank).drop(LINE)
        if tail.height != region.trailing_blank or tail.null_count().sum_horizontal().item() != (
            tail.height * tail.width
        ):
            return None
        frame = frame.head(frame.height - region.trailing_blank)
    if frame.width != width + 1 or (width == 1 and frame.to_series(1).null_count()):
        return None  # in one column, a blank line would pass for a null
    # Records end at newlines, so newlines beyond the record ends must be inside values.
    spanning = probe.newlines > frame.height - 1
    in_delimiters, in_newlines = (
        _inside_values(frame, dialect.delimiter, newlines=spanning) if quoted else (0, 0)
    )
    if (
        probe.delimiters != (width - 1) * frame.height + in_delimiters
        or probe.newlines != frame.height - 1 + in_newlines
    ):
        return None
    index = pl.col(LINE).cast(pl.Int64)  # the row number from Polars, chunked like the rows
    if in_newlines:
        spans = _newlines_per_row(frame)
        index = index + spans.cum_sum() - spans
    return frame.select(*names, index)


def _polars_read(
    region: _Region,
    names: tuple[str, ...],
    dialect: _Dialect,
    strings: frozenset[str],
    schema: Schema | None,
    *,
    typed: Mapping[str, pl.DataType] | None = None,
) -> pl.DataFrame | _Drift | None:
    nulls = sorted(dialect.nulls)
    options: dict[str, Any] = {
        "has_header": False,
        "skip_lines": region.skip,
        "separator": dialect.delimiter,
        "quote_char": dialect.quote,
        "null_values": nulls or None,
        "empty_string_is_null": "" in dialect.nulls,
        "raise_if_empty": False,
        "truncate_ragged_lines": False,
        "row_index_name": LINE,
        "row_index_offset": region.first_line,
    }
    if schema is None:
        options["new_columns"] = list(names)
        overrides: dict[str, Any] = {name: pl.String for name in names if name in strings}
        overrides.update((name, dtype) for name, dtype in (typed or {}).items() if name in names)
        options["schema_overrides"] = overrides
    else:
        options["schema"] = dict(schema)
    try:
        return pl.read_csv(region.source, **options)
    except _POLARS_ERRORS as exc:
        return _DRIFT if "could not parse" in str(exc) else None


@dataclass(frozen=True)
class _Probe:
    """Byte counts of a region, and whether its quotes sit where quotes may sit."""

    delimiters: int
    newlines: int
    quotes: int
    quotes_well_formed: bool


def _probed(
    region: _Region, delimiter: int, quote: int | None, read: Callable[[], _Read]
) -> tuple[_Probe, _Read]:
    """Probe the region while Polars reads it (in a thread: NumPy frees the GIL)."""
    if region.end - region.start < _PARALLEL_BYTES:
        return _probe(region, delimiter, quote), read()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="headrace-csv") as pool:
        probing = pool.submit(_probe, region, delimiter, quote)
        result = read()
        return probing.result(), result


def _probe(region: _Region, delimiter: int, quote: int | None) -> _Probe:
    r"""Count delimiters, newlines and quotes; check the quotes, chunk by chunk (in cache).

    Quotes alternate open/close. An opening quote must follow a delimiter, a newline, the
    region start or a closing quote (the two halves of ``""``); a closing quote must precede a
    delimiter, ``\r``, ``\n``, the region end or an opening quote. Then every quoted value is
    where Polars and :mod:`csv` both expect it, and the quotes pair up.
    """
    if quote is not None and region.buffer.find(bytes([quote]), region.start, region.end) < 0:
        quote = None  # one memchr pass instead of a comparison per chunk
    data = _view(region)
    size = len(data)
    delimiters = newlines = quotes = 0
    for at in range(0, size, _SCAN_STEP):
        chunk = data[at : at + _SCAN_STEP]
        delimiters += int(np.count_nonzero(chunk == delimiter))
        newlines += int(np.count_nonzero(chunk == _NEWLINE))
        if quote is None:
            continue
        found = np.flatnonzero(chunk == quote)
        if not found.size:
            continue
        found += at
        opens, closes = found[quotes % 2 :: 2], found[1 - quotes % 2 :: 2]
        before = data[np.maximum(opens - 1, 0)]
        fits = (before == delimiter) | (before == _NEWLINE) | (before == quote) | (opens == 0)
        after = data[np.minimum(closes + 1, size - 1)]
        ends = (after == delimiter) | (after == _NEWLINE) | (after == _RETURN) | (after == quote)
        if not fits.all() or not (ends | (closes == size - 1)).all():
            return _Probe(delimiters, newlines, quotes + found.size, quotes_well_formed=False)
        quotes += found.size
    return _Probe(delimiters, newlines, quotes, quotes_well_formed=quotes % 2 == 0)


def _newlines(data: bytes) -> int:
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE))


def _view(region: _Region) -> np.ndarray[Any, np.dtype[np.uint8]]:
    count = region.end - region.start
    return np.frombuffer(region.buffer, dtype=np.uint8, count=count, offset=region.start)


def _is_ascii(buffer: Buffer, start: int, end: int) -> bool:
    data = np.frombuffer(buffer, dtype=np.uint8, count=end - start, offset=start)
    return all(
        int(data[at : at + _SCAN_STEP].max(initial=0)) < 0x80
        for at in range(0, len(data), _SCAN_STEP)
    )


def _inside_values(frame: pl.DataFrame, delimiter: str, *, newlines: bool) -> tuple[int, int]:
    """Delimiters (and newlines, if asked) inside the values of the String columns."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not text:
        return 0, 0
    counts = [pl.sum_horizontal(pl.col(text).str.count_matches(delimiter, literal=True)).sum()]
    if newlines:
        counts.append(pl.sum_horizontal(pl.col(text).str.count_matches("\n", literal=True)).sum())
    row = frame.select(count.alias(f"c{i}") for i, count in enumerate(counts)).row(0)
    return int(row[0] or 0), int(row[1] or 0) if newlines else 0


def _newlines_per_row(frame: pl.DataFrame) -> pl.Expr:
    """Newlines inside each row's values: the lines its record spans, minus one."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return pl.sum_horizontal(pl.col(text).str.count_matches("\n", literal=True)).cast(pl.Int64)
