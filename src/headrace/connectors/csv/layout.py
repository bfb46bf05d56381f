"""Where the header and the records of a file are, and the verdicts that need only the header."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from headrace.connectors.base import Batch
from headrace.connectors.csv.dialect import Buffer, Reject, _Dialect, _line_end
from headrace.connectors.csv.frames import _rejects, _string_frame, _with_source
from headrace.connectors.csv.records import _RecordReader
from headrace.core.source import CsvOptions


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
