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

How it reads: a clean file is one multi-threaded :func:`polars.read_csv`, proven clean by byte
counts (:mod:`~headrace.connectors.csv.proof`); a file that fails a check is read again in
blocks of :data:`BLOCK_BYTES`, clean blocks by Polars and the others line by line
(:mod:`~headrace.connectors.csv.blocks`, :mod:`~headrace.connectors.csv.records`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from headrace.connectors.base import Batch
from headrace.connectors.csv.blocks import BLOCK_BYTES, _read_blocks
from headrace.connectors.csv.dialect import Buffer, Reject, _Dialect
from headrace.connectors.csv.frames import _empty_file, _string_frame, _with_source
from headrace.connectors.csv.layout import _header_mismatch, _locate, _transcode
from headrace.connectors.csv.proof import _natively_typed, _read_whole
from headrace.connectors.csv.records import _RecordReader
from headrace.core.source import CsvOptions

__all__ = ["BLOCK_BYTES", "Buffer", "Reject", "parse_csv"]


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
