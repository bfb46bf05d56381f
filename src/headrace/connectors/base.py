"""What every reader hands the engine: a :class:`Batch` of parsed rows and rejected records.

Rows carry their source position in two columns, ``_hr_source`` (file path or table) and
``_hr_line`` (physical line of a text file, 1-based; row number in other files; null for
databases, whose rows carry their own key). The engine keeps these columns in the quarantine
and drops them from the stored dataset.

Records a reader cannot turn into a row at all (a wrong number of fields, an unclosed quote,
bytes that are not valid in the file's encoding, an empty file, a header that does not match
the contract) are *rejects*: one row each in :data:`REJECT_SCHEMA`, with the raw text and a
reason code from :data:`REJECT_REASONS`. Nothing a reader saw is dropped: rows + rejects
account for every record read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

__all__ = [
    "LINE",
    "POSITION_COLUMNS",
    "REJECT_REASONS",
    "REJECT_SCHEMA",
    "SOURCE",
    "Batch",
    "empty_rejects",
]

SOURCE = "_hr_source"
LINE = "_hr_line"
POSITION_COLUMNS = (SOURCE, LINE)

REJECT_SCHEMA: Mapping[str, pl.DataType] = {
    SOURCE: pl.String(),
    LINE: pl.Int64(),
    "_hr_offset": pl.Int64(),
    "_hr_raw": pl.String(),
    "_hr_reason": pl.String(),
    "_hr_detail": pl.String(),
}
"""Columns of a reject: where (source, line, byte offset), what (raw text), why (code, text)."""

REJECT_REASONS: Mapping[str, str] = {
    "field_count": "the record has more or fewer fields than the header",
    "unclosed_quote": "a quoted field is never closed",
    "encoding": "bytes that are not valid in the file's encoding",
    "empty_file": "the file holds no records at all",
    "header_mismatch": "the header lacks columns the contract requires",
    "malformed": "the record does not parse (e.g. invalid JSON)",
}


def empty_rejects() -> pl.DataFrame:
    """A reject frame with no rows."""
    return pl.DataFrame(schema=dict(REJECT_SCHEMA))


@dataclass(frozen=True)
class Batch:
    """Rows a reader parsed (with position columns) and the records it rejected."""

    data: pl.DataFrame
    rejects: pl.DataFrame = field(default_factory=empty_rejects)

    @property
    def records(self) -> int:
        """Every record read: rows plus rejects."""
        return self.data.height + self.rejects.height
