"""How a CSV file is written: its dialect, and the byte and line helpers both readers share."""

from __future__ import annotations

import codecs
import csv
import mmap
from dataclasses import dataclass
from typing import Any

from headrace.core.source import CsvOptions

Buffer = bytes | mmap.mmap
"""File content: bytes, or a read-only memory map of a local file."""

Reject = tuple[str, int | None, int, str, str, str]
"""One row of :data:`REJECT_SCHEMA`: source, line, offset, raw text, reason, detail."""


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


def _line_end(buffer: Buffer, pos: int) -> int:
    newline = buffer.find(b"\n", pos)
    return len(buffer) if newline < 0 else newline + 1


def _chomp(text: str) -> str:
    r"""The line without its ``\n`` or ``\r\n``."""
    if text.endswith("\n"):
        text = text[:-1]
    return text.removesuffix("\r")
