"""CSV and TSV parsing in which every record becomes a row or a reject, on its exact line.

:func:`parse_csv` does not raise on bad content and loses nothing: each record of the file is a
row of :attr:`Batch.data <headrace.connectors.base.Batch.data>` or a row of its ``rejects``
(:data:`~headrace.connectors.base.REJECT_SCHEMA`), and each row carries the physical line its
record starts on (``_hr_line``), even after multi-line quoted values and rejected lines.

Rules, with their reason codes:

* a record with more or fewer fields than the header: ``field_count``;
* a quoted field that never closes (the file, or a field of 128 KiB, ends first), or whose
  closing quote is followed by text on a later line: ``unclosed_quote`` for the *first* physical
  line of the record, and parsing resumes on the next line;
* text after a closing quote on the same line (``"ab"c``): ``malformed``;
* bytes that are not valid in the declared encoding: ``encoding``, for that line only;
* a file of 0 bytes (or of nothing but skipped and blank lines): one ``empty_file`` reject. A
  file that holds only a header gives 0 rows and no rejects;
* with ``columns`` (the contract's columns), a header that lacks some of them: every record is a
  ``header_mismatch`` reject and no row comes from the file.

Blank lines are not records; they are skipped. Values equal to one of ``null_values`` (quoted
or not) are null.

How it stays fast: a clean file is read by one multi-threaded :func:`polars.read_csv`, and
counts that Polars cannot fake prove that no record was mis-split. Polars raises on a record
with too many fields, so ``delimiters == (columns - 1) x records`` (plus the delimiters inside
quoted values) leaves no room for a record with too few; quotes must sit on field boundaries;
newlines must add up to the records. The counting runs in a thread while Polars reads.

A file that fails a check is read again in blocks of :data:`BLOCK_BYTES`: clean blocks by
Polars (with the types it inferred on the first one), the others line by line with :mod:`csv`,
so a bad line costs its block, not the file.
"""

from __future__ import annotations

import codecs
import csv
import mmap
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from headrace.connectors.base import LINE, REJECT_SCHEMA, SOURCE, Batch, empty_rejects
from headrace.core.source import CsvOptions

__all__ = ["BLOCK_BYTES", "Buffer", "Reject", "parse_csv"]

Buffer = bytes | mmap.mmap
"""File content: bytes, or a read-only memory map of a local file."""

BLOCK_BYTES = 4 << 20
"""Size of the blocks a file that is not clean is read in."""

_SCAN_STEP = 1 << 20
_PARALLEL_BYTES = 8 << 20
_NEWLINE = ord("\n")
_RETURN = ord("\r")
_POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)

_Read = TypeVar("_Read")

Reject = tuple[str, int | None, int, str, str, str]
"""One row of :data:`REJECT_SCHEMA`: source, line, offset, raw text, reason, detail."""


def parse_csv(
    buffer: Buffer,
    *,
    source: str,
    options: CsvOptions,
    columns: Mapping[str, pl.DataType | None] | None = None,
    path: Path | None = None,
) -> Batch:
    r"""Parse CSV content into rows and rejects; see the module docstring for the rules.

    Args:
        buffer: the (decompressed) bytes of the file.
        source: what ``_hr_source`` says: the file's path or URL.
        options: the layout (delimiter, quote, header, encoding, nulls, skipped lines).
        columns: the contract's columns (name -> declared dtype or None). When given, they are
            read as String (the contract casts them later) and the header must hold them all;
            other columns are kept, with inferred types. When None, every type is inferred.
        path: the local file ``buffer`` holds, if any: Polars then reads it without a copy.

    Example:
        >>> batch = parse_csv(b"a,b\n1,x\n2\n3,z\n", source="t.csv", options=CsvOptions())
        >>> batch.data.rows()
        [(1, 'x', 't.csv', 2), (3, 'z', 't.csv', 4)]
        >>> batch.rejects.select("_hr_line", "_hr_raw", "_hr_reason", "_hr_detail").rows()
        [(3, '2', 'field_count', '1 field, expected 2')]

    """
    strings = frozenset(columns or ())
    dialect = _Dialect.of(options)
    declared = tuple(columns or ())
    if len(buffer) == 0:
        return _empty_file(source, options, declared, "the file is empty (0 bytes)")
    if not dialect.ascii_compatible:
        transcoded = _transcode(buffer, dialect, source)
        if isinstance(transcoded, Batch):
            return transcoded
        buffer, dialect, path = transcoded, dialect.as_utf8(), None
    layout = _locate(buffer, dialect, options)
    if layout is None:
        detail = f"no header and no records after skipping {options.skip_rows} line(s)"
        return _empty_file(source, options, declared, detail)
    reader = _RecordReader(buffer, dialect, source)
    missing = [name for name in columns or () if name not in layout.names]
    if missing:
        return _header_mismatch(reader, layout, missing)
    if layout.body_start >= layout.body_end:
        return Batch(_with_source(_string_frame(layout.names, [], []), source))
    typed = _natively_typed(columns or {})
    frame = (
        _read_whole(buffer, path, layout, dialect, strings, typed=typed) if dialect.fast else None
    )
    if frame is None:
        return _read_blocks(reader, layout, strings)
    return Batch(_with_source(frame, source))


# -- dialect and layout ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dialect:
    delimiter: str
    quote: str | None
    encoding: str
    nulls: frozenset[str]
    utf8: bool
    """The encoding is UTF-8: Polars can read the bytes as they are."""
    ascii_compatible: bool
    """Delimiter, quote and newline are the same single bytes as in ASCII."""

    @classmethod
    def of(cls, options: CsvOptions) -> _Dialect:
        name = codecs.lookup(options.encoding).name
        probe = '\n\r,;|\t"abc'
        try:
            compatible = probe.encode(name) == probe.encode("ascii")
        except UnicodeError:
            compatible = False
        return cls(
            delimiter=options.delimiter,
            quote=options.quote_char,
            encoding=name,
            nulls=frozenset(options.null_values),
            utf8=name in {"utf-8", "utf-8-sig"},
            ascii_compatible=compatible,
        )

    def as_utf8(self) -> _Dialect:
        return _Dialect(self.delimiter, self.quote, "utf-8", self.nulls, True, True)

    @property
    def fast(self) -> bool:
        """Polars can read it: delimiter and quote are single ASCII bytes."""
        return self.delimiter.isascii() and (self.quote is None or self.quote.isascii())

    @property
    def delimiter_byte(self) -> int:
        return self.delimiter.encode(self.encoding)[0]

    @property
    def quote_byte(self) -> int | None:
        return None if self.quote is None else self.quote.encode(self.encoding)[0]

    def csv_options(self) -> dict[str, Any]:
        return {
            "delimiter": self.delimiter,
            "quotechar": self.quote,
            "doublequote": True,
            "strict": True,
            "quoting": csv.QUOTE_MINIMAL if self.quote is not None else csv.QUOTE_NONE,
        }


@dataclass(frozen=True)
class _Layout:
    names: tuple[str, ...]
    body_start: int
    """Byte offset of the first record after the header."""
    body_line: int
    """Physical line of that record."""
    body_end: int
    """Offset just after the last non-blank byte: no final newline, no trailing blank lines."""
    trailing_blank: int
    """Blank lines after the last record (Polars turns each into a row of nulls)."""


def _locate(buffer: Buffer, dialect: _Dialect, options: CsvOptions) -> _Layout | None:
    """Find the header (or the first record) after the skipped lines; None when there is none."""
    end = len(buffer)
    pos = len(codecs.BOM_UTF8) if dialect.utf8 and buffer[:3] == codecs.BOM_UTF8 else 0
    line = 1
    for _ in range(options.skip_rows):
        newline = buffer.find(b"\n", pos)
        pos, line = (end, line) if newline < 0 else (newline + 1, line + 1)
    while pos < end:  # blank lines before the header are not the header
        stop = _line_end(buffer, pos)
        if buffer[pos:stop].strip(b"\r\n"):
            break
        pos, line = stop, line + 1
    if pos >= end:
        return None
    fields, stop, count = _RecordReader(buffer, dialect, "").header_at(pos)
    if options.has_header:
        names, body_start, body_line = _unique_names(fields), stop, line + count
    else:
        given = options.column_names
        names = tuple(given) if given else tuple(f"column_{i}" for i in range(1, len(fields) + 1))
        body_start, body_line = pos, line
    body_end = end
    while body_end > body_start and buffer[body_end - 1] in b"\r\n":
        body_end -= 1
    tail = buffer[body_end:end].split(b"\n")
    trailing = len(tail) - 1 - (tail[-1] == b"") if len(tail) > 1 else 0
    return _Layout(names, body_start, body_line, max(body_end, body_start), trailing)


def _unique_names(fields: list[str]) -> tuple[str, ...]:
    """Header names, duplicates renamed as Polars does (``a``, ``a_duplicated_0``, ...)."""
    seen: dict[str, int] = {}
    names = []
    for name in fields:
        if name in seen:
            names.append(f"{name}_duplicated_{seen[name]}")
            seen[name] += 1
        else:
            seen[name] = 0
            names.append(name)
    return tuple(names)


def _line_end(buffer: Buffer, pos: int) -> int:
    newline = buffer.find(b"\n", pos)
    return len(buffer) if newline < 0 else newline + 1


def _chomp(text: str) -> str:
    r"""The line without its ``\n`` or ``\r\n``."""
    if text.endswith("\n"):
        text = text[:-1]
    return text.removesuffix("\r")


def _transcode(buffer: Buffer, dialect: _Dialect, source: str) -> bytes | Batch:
    """UTF-8 bytes of a file in an encoding that is not ASCII-compatible (e.g. UTF-16).

    Lines cannot be found in such bytes before decoding, so the whole file must decode: when it
    does not, the file is one ``encoding`` reject. Offsets of rejects in a transcoded file are
    offsets in its UTF-8 form.
    """
    data = bytes(buffer)
    try:
        return data.decode(dialect.encoding).encode("utf-8")
    except UnicodeDecodeError as exc:
        detail = (
            f"bytes {exc.start}-{exc.end} are not valid {dialect.encoding}, and in this "
            "encoding lines cannot be told apart without decoding all of it; fix the file or "
            "declare its encoding"
        )
        raw = data.decode(dialect.encoding, errors="backslashreplace")
        reject: Reject = (source, None, exc.start, raw, "encoding", detail)
        return Batch(_with_source(_string_frame((), [], []), source), _rejects([reject]))


# -- the line-exact reader ---------------------------------------------------------------------


@dataclass
class _Parsed:
    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    pos: int = 0
    line: int = 0


@dataclass(frozen=True)
class _Failure:
    reason: str
    detail: str


class _RecordReader:
    """Walks physical lines and turns them into records, one at a time, with Python's csv."""

    def __init__(self, buffer: Buffer, dialect: _Dialect, source: str) -> None:
        self._buffer = buffer
        self._dialect = dialect
        self._source = source
        self._csv = dialect.csv_options()

    @property
    def buffer(self) -> Buffer:
        """The content being read."""
        return self._buffer

    @property
    def dialect(self) -> _Dialect:
        """How it is laid out."""
        return self._dialect

    @property
    def source(self) -> str:
        """What ``_hr_source`` says."""
        return self._source

    def parse(
        self, pos: int, line: int, until: int, width: int, *, mismatch: str | None = None
    ) -> _Parsed:
        """Records that start before ``until`` (a line start); the last may end after it.

        With ``mismatch`` (a detail text) every record is a ``header_mismatch`` reject.
        """
        encoding = self._dialect.encoding
        delimiter, quote = self._dialect.delimiter, self._dialect.quote
        out = _Parsed()
        lines = self._buffer[pos:until].split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        index = 0
        while index < len(lines):
            raw = lines[index]
            nxt = pos + len(raw) + 1
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                detail = (
                    f"byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line is not "
                    f"valid {encoding}"
                )
                out.rejects.append(self._reject(line, pos, raw, "encoding", detail))
                index, pos, line = index + 1, nxt, line + 1
                continue
            body = text.removesuffix("\r")
            if not body:
                index, pos, line = index + 1, nxt, line + 1
                continue
            if quote is None or quote not in body:
                fields, stop, count, record = body.split(delimiter), nxt, 1, body
            else:
                found = self._quoted(text + "\n", min(nxt, len(self._buffer)))
                if isinstance(found, _Failure):
                    out.rejects.append((self._source, line, pos, body, found.reason, found.detail))
                    index, pos, line = index + 1, nxt, line + 1
                    continue
                fields, stop, count, record = found
            if mismatch is not None:
                out.rejects.append((self._source, line, pos, record, "header_mismatch", mismatch))
            elif len(fields) != width:
                detail = f"{len(fields)} field{'s' * (len(fields) != 1)}, expected {width}"
                out.rejects.append((self._source, line, pos, record, "field_count", detail))
            else:
                out.rows.append(fields)
                out.lines.append(line)
            index, pos, line = index + count, stop, line + count
        out.pos, out.line = max(pos, until), line
        return out

    def header_at(self, pos: int) -> tuple[list[str], int, int]:
        """Fields, end offset and line count of the record at ``pos``, read leniently.

        A header that does not parse (an unclosed quote, bad bytes) is read as its first line
        alone, undecodable bytes replaced, so that the records below it can still be read.
        """
        nxt = _line_end(self._buffer, pos)
        text = self._buffer[pos:nxt].decode(self._dialect.encoding, errors="replace")
        if self._dialect.quote is None or self._dialect.quote not in text:
            return _chomp(text).split(self._dialect.delimiter), nxt, 1
        found = self._quoted(text, nxt)
        if isinstance(found, _Failure):
            lenient = {**self._csv, "strict": False}
            return next(csv.reader([_chomp(text)], **lenient), []), nxt, 1
        fields, stop, count, _ = found
        return fields, stop, count

    def _quoted(self, first: str, pos: int) -> tuple[list[str], int, int, str] | _Failure:
        """The record that starts with line ``first`` (and may go on after ``pos``)."""
        buffer, encoding = self._buffer, self._dialect.encoding
        ends, texts = [pos], [first]

        def lines() -> Iterator[str]:
            yield first
            start = pos
            while start < len(buffer):
                stop = _line_end(buffer, start)
                try:
                    text = buffer[start:stop].decode(encoding)
                except UnicodeDecodeError:
                    return  # the record cannot run on through a line that does not decode
                ends.append(stop)
                texts.append(text)
                start = stop
                yield text

        reader = csv.reader(lines(), **self._csv)
        try:
            fields = next(reader)
        except csv.Error as exc:
            message = str(exc)
            if reader.line_num > 1 or "end of data" in message or "field limit" in message:
                detail = "a quoted field that starts on this line is never closed"
                return _Failure("unclosed_quote", f"{detail} ({message})")
            return _Failure("malformed", f"text after a closing quote ({message})")
        except StopIteration:  # pragma: no cover - the first line is never blank
            return _Failure("malformed", "no record on this line")
        count = reader.line_num
        return fields, ends[count - 1], count, _chomp("".join(texts[:count]))

    def _reject(self, line: int, pos: int, raw: bytes, reason: str, detail: str) -> Reject:
        text = _chomp(raw.decode(self._dialect.encoding, errors="backslashreplace"))
        return (self._source, line, pos, text, reason, detail)


def _header_mismatch(reader: _RecordReader, layout: _Layout, missing: list[str]) -> Batch:
    detail = (
        f"the header lacks {', '.join(missing)} (it has {', '.join(layout.names)}): rename "
        "the columns in the file or in the contract, or set column_names="
    )
    parsed = reader.parse(
        layout.body_start, layout.body_line, layout.body_end, len(layout.names), mismatch=detail
    )
    frame = _string_frame(layout.names, [], [])
    return Batch(_with_source(frame, reader.source), _rejects(parsed.rejects))


# -- the fast path: Polars, then proof ---------------------------------------------------------


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

Schema = Mapping[str, pl.DataType]
"""The user columns of a read: name -> type."""


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


# -- blocks: clean ones through Polars, the rest line by line ----------------------------------


def _read_blocks(reader: _RecordReader, layout: _Layout, strings: frozenset[str]) -> Batch:
    """Blocks of about :data:`BLOCK_BYTES`; Polars reads the clean ones, :mod:`csv` the rest.

    Polars infers the types on the first clean block and reads the others with them; the rows
    :mod:`csv` parsed are cast to them too. Should a value not fit, every block is read again
    as text, and the types are inferred over all rows.
    """
    blocks = _blocks(reader, layout, strings, None)
    if blocks is None:
        blocks = _blocks(reader, layout, strings, dict.fromkeys(layout.names, pl.String()))
    assert blocks is not None, "text always fits"
    data = pl.concat(blocks.frames) if blocks.frames else _string_frame(layout.names, [], [])
    if not blocks.typed:
        data = _infer_types(data, strings)
    return Batch(_with_source(data, reader.source), _rejects(blocks.rejects))


@dataclass(frozen=True)
class _Blocks:
    frames: list[pl.DataFrame]
    rejects: list[Reject]
    typed: bool
    """The frames have their final types (else they are text, for :func:`_infer_types`)."""


def _blocks(
    reader: _RecordReader, layout: _Layout, strings: frozenset[str], schema: Schema | None
) -> _Blocks | None:
    """Frames and rejects of every block; None when a value does not fit the types."""
    buffer, dialect = reader.buffer, reader.dialect
    names, width = layout.names, len(layout.names)
    text = schema is not None and all(dtype == pl.String for dtype in schema.values())
    frames: list[pl.DataFrame] = []
    rejects: list[Reject] = []
    parsed_by_csv: list[int] = []  # frames of text, to cast once the types are known
    pos, line, end = layout.body_start, layout.body_line, layout.body_end
    while pos < end:
        stop = pos + BLOCK_BYTES
        stop = end if stop >= end else min(_line_end(buffer, stop), end)
        block = bytes(buffer[pos:stop])
        frame = _clean_block(block, line, names, dialect, strings=strings, schema=schema)
        if frame is _DRIFT:
            return None
        if isinstance(frame, pl.DataFrame):
            if schema is None:
                schema = {name: frame.schema[name] for name in names}
            frames.append(frame)
            pos, line = stop, line + _newlines(block)
            continue
        parsed = reader.parse(pos, line, stop, width)
        parsed_by_csv.append(len(frames))
        frames.append(_string_frame(names, parsed.rows, parsed.lines, dialect.nulls))
        rejects.extend(parsed.rejects)
        pos, line = parsed.pos, parsed.line
    if schema is None or text:
        return _Blocks(frames, rejects, typed=False)
    for index in parsed_by_csv:
        cast = _cast_text(frames[index], schema)
        if cast is None:
            return None
        frames[index] = cast
    return _Blocks(frames, rejects, typed=True)


def _clean_block(
    block: bytes,
    line: int,
    names: tuple[str, ...],
    dialect: _Dialect,
    *,
    strings: frozenset[str],
    schema: Schema | None,
) -> pl.DataFrame | _Drift | None:
    if not dialect.fast:
        return None
    if not dialect.utf8 and not _is_ascii(block, 0, len(block)):
        try:
            block = block.decode(dialect.encoding).encode("utf-8")
        except UnicodeDecodeError:
            return None
    size = len(block) - block.endswith(b"\n")
    return _read_clean(_Region(block, 0, block, 0, size, line), names, dialect, strings, schema)


# -- frames ------------------------------------------------------------------------------------


def _cast_text(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame | None:
    """Text columns as the types of ``schema``; None when a value does not fit its type."""
    casts = []
    for name, dtype in schema.items():
        if dtype == pl.String:
            continue
        column = frame.get_column(name)
        if dtype == pl.Boolean:
            lowered = column.str.to_lowercase()
            cast = pl.when(lowered == "true").then(True).when(lowered == "false").then(False)
            converted = frame.select(cast.alias(name)).to_series()
        else:
            converted = column.cast(dtype, strict=False)
        if converted.null_count() != column.null_count():
            return None
        casts.append(converted)
    return frame.with_columns(casts) if casts else frame


def _infer_types(frame: pl.DataFrame, keep: Collection[str]) -> pl.DataFrame:
    """String columns (except ``keep``) as Int64, Float64 or Boolean when every value fits.

    The same choices as Polars' CSV inference, made over every row.
    """
    casts = []
    for name, dtype in frame.schema.items():
        if name in keep or name == LINE or dtype != pl.String:
            continue
        column = frame.get_column(name)
        present = column.len() - column.null_count()
        if not present:
            continue
        for target in (pl.Int64, pl.Float64):
            cast = column.cast(target, strict=False)
            if cast.null_count() == column.null_count():
                casts.append(cast)
                break
        else:
            lowered = column.str.to_lowercase()
            if lowered.is_in(["true", "false"]).sum() == present:
                casts.append(lowered == "true")
    return frame.with_columns(casts) if casts else frame


def _string_frame(
    names: tuple[str, ...],
    rows: list[list[str]],
    lines: list[int],
    nulls: frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """Rows of text fields as String columns (``nulls`` made null), with ``_hr_line``."""
    schema = dict.fromkeys(names, pl.String())
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pl.DataFrame(dict(zip(names, columns, strict=True)), schema=schema)
    if nulls and rows:
        markers = pl.lit(sorted(nulls), dtype=pl.List(pl.String))
        frame = frame.with_columns(
            pl.when(pl.col(name).is_in(markers)).then(None).otherwise(pl.col(name)).alias(name)
            for name in names
        )
    return frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))


def _with_source(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """The user columns, then ``_hr_source`` and ``_hr_line`` (all chunked alike: no copy)."""
    if LINE not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias(LINE))
    columns = [name for name in frame.columns if name not in (SOURCE, LINE)]
    sources = pl.lit(source, dtype=pl.String).alias(SOURCE)
    return frame.with_columns(sources).select(*columns, SOURCE, LINE)


def _rejects(rows: list[Reject]) -> pl.DataFrame:
    if not rows:
        return empty_rejects()
    return pl.DataFrame(rows, schema=dict(REJECT_SCHEMA), orient="row")


def _empty_file(source: str, options: CsvOptions, declared: tuple[str, ...], detail: str) -> Batch:
    """One ``empty_file`` reject, and no rows (in the declared columns, as String)."""
    names = tuple(options.column_names or ()) if not options.has_header else ()
    names = names or declared
    reject: Reject = (source, None, 0, "", "empty_file", detail)
    return Batch(_with_source(_string_frame(names, [], []), source), _rejects([reject]))
