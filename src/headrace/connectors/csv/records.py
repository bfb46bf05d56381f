"""The line-exact reader: physical lines into records, one at a time, with Python's :mod:`csv`."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field

from headrace.connectors.csv.dialect import Buffer, Reject, _chomp, _Dialect, _line_end


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
