"""The fallback: a file that is not provably clean, read again in blocks.

A file that fails a check is read again in blocks of :data:`BLOCK_BYTES`: clean blocks by
Polars (with the types it inferred on the first one), the others line by line with :mod:`csv`,
so a bad line costs its block, not the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from headrace.connectors.base import Batch
from headrace.connectors.csv.dialect import Reject, _Dialect, _line_end
from headrace.connectors.csv.frames import (
    Schema,
    _cast_text,
    _infer_types,
    _rejects,
    _string_frame,
    _with_source,
)
from headrace.connectors.csv.layout import _Layout
from headrace.connectors.csv.proof import _DRIFT, _Drift, _is_ascii, _newlines, _read_clean, _Region
from headrace.connectors.csv.records import _RecordReader

BLOCK_BYTES = 4 << 20
"""Size of the blocks a file that is not clean is read in."""


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
