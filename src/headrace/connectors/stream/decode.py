"""The wire format shared by every broker: how rows become messages and messages rows again.

A message holds one JSON object (UTF-8, one row) or an Arrow IPC stream/file holding rows of
the topic's schema; it goes to the partition :func:`partitions_for` gives its key, which is
:func:`headrace.connectors.log.partition_of`, so a key lands in the same partition number on
every broker and in the embedded log.

:func:`decode_json` turns a batch of messages into rows of a declared schema and never drops
one: what cannot be decoded comes back in a frame of
:data:`~headrace.connectors.stream.base.MALFORMED_SCHEMA` with its position, raw text and a
reason code:

=================  ============================================================================
``not_json``       not JSON text (or an empty message); the detail is the parser's message
``not_object``     JSON, but not an object (a list, a number, ...)
``wrong_type``     a field whose value does not fit the declared type; the detail names it
``missing_field``  a declared field is absent (an explicit ``null`` is a value, not absent)
``not_arrow``      starts like Arrow IPC but cannot be read as such
=================  ============================================================================

The fast path joins the batch with newlines and parses it in one ``pl.read_ndjson`` call; when
that fails, the batch is split in halves until each failing message stands alone, so a few bad
messages cost a few extra parses, not one per message. Values follow Polars' JSON reader: a
number where a string is declared is kept as its text, an integer fits a float, a float does
not fit an integer. Datetime fields take ISO-8601 text (``Z`` or an offset, converted to UTC;
text without an offset is read as UTC) or integer epoch milliseconds.

An Arrow message's rows all carry that message's position, so a poll that reads Arrow messages
holding several rows returns more rows than messages.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson
import polars as pl
import pyarrow as pa

from headrace.connectors.log import partition_of
from headrace.connectors.stream.base import MALFORMED_SCHEMA, OFFSET, PARTITION
from headrace.errors import StreamError

__all__ = [
    "MessagePositions",
    "decode_json",
    "encode_json",
    "partitions_for",
]

_INDEX = "_hr_message"
_ARROW_STREAM = b"\xff\xff\xff\xff"
_ARROW_FILE = b"ARROW1"
_NEWLINE = 10
_SMALL = 4
"""A failing chunk this small is checked message by message instead of split again."""

_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")
_PARSE_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)


class MessagePositions(NamedTuple):
    """Where each message of a batch came from, one entry per message, in batch order."""

    partitions: Sequence[int] | pl.Series
    offsets: Sequence[int] | pl.Series


# -- encoding ---------------------------------------------------------------------------------


def encode_json(frame: pl.DataFrame) -> list[bytes]:
    """One compact JSON object per row of ``frame`` (datetimes as ISO-8601 text).

    >>> encode_json(pl.DataFrame({"k": ["a"], "v": [1.5]}))
    [b'{"k":"a","v":1.5}']
    """
    if frame.height == 0:
        return []
    text = frame.write_ndjson().encode()
    return text.rstrip(b"\n").split(b"\n")


def partitions_for(
    frame: pl.DataFrame, key: Sequence[str], partitions: int, start: int = 0
) -> list[int]:
    """The partition of every row: :func:`partition_of` its key, round-robin without one.

    With one key column the key is that column's value (a null goes to partition 0, as in the
    embedded log); with several it is the tuple of their values. Without a key, rows are spread
    round-robin beginning at partition ``start``.

    >>> partitions_for(pl.DataFrame({"user": ["a", "b", "a"]}), ["user"], 4)
    [3, 1, 3]
    """
    if not key:
        return [(start + i) % partitions for i in range(frame.height)]
    missing = [name for name in key if name not in frame.columns]
    if missing:
        msg = f"key column(s) {missing} are not in the rows ({frame.columns}); fix key="
        raise StreamError(msg)
    keys = frame.select(key)
    if len(key) == 1:
        column = keys.to_series()
        unique = column.drop_nulls().unique()
        targets = [partition_of(value, partitions) for value in unique.to_list()]
        routed = column.replace_strict(unique, targets, default=0, return_dtype=pl.Int64)
        return routed.to_list()
    cache: dict[tuple[object, ...], int] = {}
    out: list[int] = []
    for row in keys.iter_rows():
        target = cache.get(row)
        if target is None:
            target = cache[row] = partition_of(row, partitions)
        out.append(target)
    return out


# -- decoding -----------------------------------------------------------------------------------


def decode_json(
    values: Sequence[bytes | None],
    positions: MessagePositions,
    schema: Mapping[str, pl.DataType],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows of ``schema`` (plus :data:`PARTITION`, :data:`OFFSET`) and the malformed messages.

    ``values[i]`` came from ``positions.partitions[i]`` at ``positions.offsets[i]``. Rows keep
    the batch order; every message is either a row (an Arrow message: its rows) or one row of
    the malformed frame.

    >>> from headrace.connectors.stream.base import MALFORMED_SCHEMA
    >>> rows, bad = decode_json(
    ...     [b'{"k": "a", "v": 1}', b"oops", b'{"k": "b"}'],
    ...     MessagePositions([0, 0, 1], [7, 8, 3]),
    ...     {"k": pl.String(), "v": pl.Int64()},
    ... )
    >>> rows.rows()
    [('a', 1, 0, 7)]
    >>> bad.select("_stream_offset", "_hr_reason").rows()
    [(8, 'not_json'), (3, 'missing_field')]
    """
    if len(positions.partitions) != len(values) or len(positions.offsets) != len(values):
        msg = (
            f"{len(values)} messages but {len(positions.partitions)} partitions and "
            f"{len(positions.offsets)} offsets; give one position per message"
        )
        raise ValueError(msg)
    for reserved in (PARTITION, OFFSET, _INDEX):
        if reserved in schema:
            msg = f"column {reserved!r} is reserved by the stream reader; rename it"
            raise StreamError(msg)
    return _Batch(values, positions, _Plan.of(schema)).decode()


@dataclass(frozen=True)
class _Plan:
    """How each declared column is read from JSON (``wire``) and then converted to its type."""

    schema: dict[str, pl.DataType]
    wire: dict[str, pl.DataType]
    converts: dict[str, Callable[[pl.Series], pl.Series]]

    @classmethod
    def of(cls, schema: Mapping[str, pl.DataType]) -> _Plan:
        wire: dict[str, pl.DataType] = {}
        converts: dict[str, Callable[[pl.Series], pl.Series]] = {}
        for name, dtype in schema.items():
            wire[name], convert = _wire_type(dtype)
            if convert is not None:
                converts[name] = convert
        return cls(dict(schema), wire, converts)


def _wire_type(
    dtype: pl.DataType,
) -> tuple[pl.DataType, Callable[[pl.Series], pl.Series] | None]:
    """The type Polars reads a field as, and the conversion to ``dtype`` (None: none needed).

    Types the JSON reader cannot take directly (or would panic on when a value overflows) are
    read as text or 64-bit numbers and converted after, so a bad value becomes a null that is
    reported as ``wrong_type`` rather than an error for the whole batch.
    """
    if isinstance(dtype, pl.Datetime):
        return pl.String(), lambda text: _datetime_from_text(text, dtype)
    if isinstance(dtype, pl.Int8 | pl.Int16 | pl.Int32 | pl.UInt8 | pl.UInt16 | pl.UInt32):
        return pl.Int64(), lambda s: s.cast(dtype, strict=False)
    if isinstance(dtype, pl.Float32):
        return pl.Float64(), lambda s: s.cast(dtype, strict=False)
    if isinstance(dtype, pl.Duration):
        return pl.Int64(), lambda s: s.cast(dtype, strict=False)
    if isinstance(dtype, pl.Time):
        return pl.String(), lambda s: s.str.to_time("%H:%M:%S%.f", strict=False)
    if isinstance(dtype, pl.Decimal | pl.Categorical | pl.Enum | pl.Binary):
        return pl.String(), lambda s: s.cast(dtype, strict=False)
    return dtype, None


def _datetime_from_text(text: pl.Series, dtype: pl.Datetime) -> pl.Series:
    """ISO-8601 text (to UTC) or integer epoch milliseconds as ``dtype``; nulls where neither."""
    unit = dtype.time_unit
    millis = text.cast(pl.Int64, strict=False)
    has_millis = millis.null_count() < len(text)
    iso_text = pl.select(pl.when(millis.is_null()).then(text)).to_series() if has_millis else text
    try:  # Arrow's ISO-8601 parser is ~10x faster, but all-or-nothing and needs offsets
        iso = pl.Series(text.name, iso_text.to_arrow().cast(pa.timestamp(unit, "UTC")))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        aware = [
            iso_text.str.to_datetime(f, strict=False, time_zone="UTC", time_unit=unit)
            for f in _AWARE_FORMATS
        ]
        naive = [
            iso_text.str.to_datetime(f, strict=False, time_unit=unit).dt.replace_time_zone("UTC")
            for f in _NAIVE_FORMATS
        ]
        iso = pl.select(pl.coalesce([pl.lit(s) for s in (*aware, *naive)])).to_series()
    if has_millis:
        epoch = pl.from_epoch(millis, time_unit="ms").dt.cast_time_unit(unit)
        iso = pl.select(
            pl.coalesce(pl.lit(iso), pl.lit(epoch.dt.replace_time_zone("UTC")))
        ).to_series()
    utc = iso.alias(text.name)
    if dtype.time_zone is None:
        return utc.dt.replace_time_zone(None)
    return utc.dt.convert_time_zone(dtype.time_zone)


@dataclass
class _Bad:
    index: int
    reason: str
    detail: str


@dataclass
class _Batch:
    """One call of :func:`decode_json`: the messages, and what became of each."""

    values: Sequence[bytes | None]
    positions: MessagePositions
    plan: _Plan
    texts: dict[int, bytes] = field(default_factory=dict)
    """Messages whose JSON text was rewritten onto one line (index -> compact JSON)."""
    frames: list[pl.DataFrame] = field(default_factory=list)
    arrow: list[pl.DataFrame] = field(default_factory=list)
    bad: list[_Bad] = field(default_factory=list)

    def decode(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        n = len(self.values)
        blob = self._whole_blob()
        frame = None if blob is None else self._read(blob, n)
        if frame is not None:
            index = pl.int_range(0, n, dtype=pl.Int64, eager=True).alias(_INDEX)
            self.frames.append(frame.with_columns(index))
        else:
            self._parse(self._screen())
        rows = self._rows()
        return rows, self._malformed()

    # -- parsing ---------------------------------------------------------------------------

    def _whole_blob(self) -> bytes | None:
        """All messages as NDJSON, when they are all one-line non-empty JSON-looking text."""
        try:
            blob = b"\n".join(self.values)  # type: ignore[arg-type]  # TypeError on None
        except TypeError:
            return None
        n = len(self.values)
        if n == 0 or blob.count(b"\n") != n - 1:
            return None
        return blob

    def _screen(self) -> list[int]:
        """Set aside what is surely malformed (checked with orjson); the rest is for Polars.

        Only runs when the batch as a whole did not parse, so a systematic error (a producer
        sending text where a number is declared) costs one orjson parse per message rather
        than a Polars call per message.
        """
        todo: list[int] = []
        for i, value in enumerate(self.values):
            if value is None or not value.strip():
                self.bad.append(_Bad(i, "not_json", "empty message"))
            elif value.startswith((_ARROW_STREAM, _ARROW_FILE)):
                self._decode_arrow(i, value)
            else:
                try:
                    parsed = orjson.loads(value)
                except orjson.JSONDecodeError as exc:
                    self.bad.append(_Bad(i, "not_json", str(exc)))
                    continue
                if not isinstance(parsed, dict):
                    kind = _json_kind(parsed)
                    self.bad.append(_Bad(i, "not_object", f"a JSON {kind}, not an object"))
                    continue
                misfit = self._misfit(parsed)
                if misfit is not None:
                    self.bad.append(_Bad(i, "wrong_type", misfit))
                    continue
                if _NEWLINE in value:
                    self.texts[i] = orjson.dumps(parsed)
                todo.append(i)
        return todo

    def _misfit(self, message: dict[str, object]) -> str | None:
        """Why a field surely does not fit its type (None: fits, or let Polars judge)."""
        for name, dtype in self.plan.wire.items():
            value = message.get(name)
            if value is not None and _fits(value, dtype) is False:
                shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
                return f"field {name!r}: {shown} ({_json_kind(value)}) does not fit {dtype}"
        return None

    def _text(self, index: int) -> bytes:
        text = self.texts.get(index)
        if text is not None:
            return text
        value = self.values[index]
        assert value is not None
        return value

    def _parse(self, indexes: list[int]) -> None:
        if not indexes:
            return
        blob = b"\n".join(self._text(i) for i in indexes)
        frame = self._read(blob, len(indexes))
        if frame is not None:
            self.frames.append(frame.with_columns(pl.Series(_INDEX, indexes, dtype=pl.Int64)))
        elif len(indexes) <= _SMALL:
            for i in indexes:
                self._parse_one(i)
        else:
            half = len(indexes) // 2
            self._parse(indexes[:half])
            self._parse(indexes[half:])

    def _read(self, blob: bytes, expected: int) -> pl.DataFrame | None:
        try:
            frame = pl.read_ndjson(blob, schema=self.plan.wire)
        except _PARSE_ERRORS:
            return None
        return frame if frame.height == expected else None

    def _parse_one(self, index: int) -> None:
        text = self._text(index)
        if not text.strip():
            self.bad.append(_Bad(index, "not_json", "empty message"))
            return
        if text.startswith((_ARROW_STREAM, _ARROW_FILE)):
            self._decode_arrow(index, text)
            return
        frame = self._read(text, 1)
        if frame is not None:
            self.frames.append(frame.with_columns(pl.lit(index, pl.Int64).alias(_INDEX)))
            return
        reason, detail = self._classify(text)
        self.bad.append(_Bad(index, reason, detail))

    def _classify(self, text: bytes) -> tuple[str, str]:
        """Why one message the JSON reader refused is malformed."""
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return "not_json", str(exc)
        if not isinstance(value, dict):
            return "not_object", f"a JSON {_json_kind(value)}, not an object"
        for name, dtype in self.plan.wire.items():
            if name not in value:
                continue
            try:
                pl.read_ndjson(orjson.dumps({name: value[name]}), schema={name: dtype})
            except _PARSE_ERRORS as exc:
                return "wrong_type", f"field {name!r}: {_first_line(exc)}"
        try:
            pl.read_ndjson(text, schema=self.plan.wire)
        except _PARSE_ERRORS as exc:
            return "not_json", _first_line(exc)
        return "not_json", "the JSON reader returned no row for it"

    # -- Arrow messages -------------------------------------------------------------------

    def _decode_arrow(self, index: int, value: bytes) -> None:
        try:
            if value.startswith(_ARROW_FILE):
                frame = pl.read_ipc(io.BytesIO(value))
            else:
                frame = pl.read_ipc_stream(io.BytesIO(value))
        except (*_PARSE_ERRORS, OSError) as exc:
            self.bad.append(_Bad(index, "not_arrow", _first_line(exc)))
            return
        missing = [name for name in self.plan.schema if name not in frame.columns]
        if missing:
            self.bad.append(_Bad(index, "missing_field", _missing_text(missing)))
            return
        columns: list[pl.Series] = []
        for name, dtype in self.plan.schema.items():
            try:
                columns.append(_arrow_column(frame[name], dtype))
            except _PARSE_ERRORS as exc:
                self.bad.append(_Bad(index, "wrong_type", f"field {name!r}: {_first_line(exc)}"))
                return
        index_column = pl.repeat(index, frame.height, dtype=pl.Int64, eager=True).alias(_INDEX)
        self.arrow.append(pl.DataFrame([*columns, index_column]))

    # -- results ----------------------------------------------------------------------------

    def _rows(self) -> pl.DataFrame:
        empty = pl.DataFrame(schema={**self.plan.wire, _INDEX: pl.Int64()})
        frame = pl.concat(self.frames, how="vertical") if self.frames else empty
        frame = self._convert(frame)
        frame = self._drop_missing(frame)
        if self.arrow:
            frame = pl.concat([frame, *self.arrow], how="vertical").sort(
                _INDEX, maintain_order=True
            )
        index = frame[_INDEX]
        partitions = _position_series(self.positions.partitions, PARTITION, pl.Int32())
        offsets = _position_series(self.positions.offsets, OFFSET, pl.Int64())
        if len(index) != len(self.values) or self.bad or self.arrow or len(self.frames) > 1:
            partitions, offsets = partitions.gather(index), offsets.gather(index)
        return frame.drop(_INDEX).with_columns(partitions, offsets)

    def _convert(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Apply the column conversions; report and drop rows where a value did not fit."""
        if not self.plan.converts or frame.height == 0:
            return frame.cast(dict(self.plan.schema))  # type: ignore[arg-type]
        failed: pl.Series | None = None
        first: dict[int, str] = {}
        converted: list[pl.Series] = []
        for name, convert in self.plan.converts.items():
            raw = frame[name]
            out = convert(raw)
            converted.append(out.alias(name))
            bad = raw.is_not_null() & out.is_null()
            if bad.any():
                for i in frame.filter(bad)[_INDEX].to_list():
                    first.setdefault(i, name)
                failed = bad if failed is None else failed | bad
        frame = frame.with_columns(converted)
        if failed is None:
            return frame
        for i, name in sorted(first.items()):
            text = self._text(i).decode("utf-8", "backslashreplace")
            value = orjson.loads(text).get(name)
            detail = f"field {name!r}: {value!r} does not fit {self.plan.schema[name]}"
            if isinstance(self.plan.schema[name], pl.Datetime):
                detail += " (give ISO-8601 text or integer epoch milliseconds)"
            self.bad.append(_Bad(i, "wrong_type", detail))
        return frame.filter(~failed)

    def _drop_missing(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows with a null in a declared column whose message lacked that field."""
        nullable = [name for name in self.plan.schema if frame[name].null_count()]
        if not nullable:
            return frame
        suspects = frame.filter(pl.any_horizontal(pl.col(nullable).is_null()))
        dropped: list[int] = []
        for i in suspects[_INDEX].to_list():
            value = orjson.loads(self._text(i))
            missing = [name for name in self.plan.schema if name not in value]
            if missing:
                self.bad.append(_Bad(i, "missing_field", _missing_text(missing)))
                dropped.append(i)
        if not dropped:
            return frame
        return frame.filter(~pl.col(_INDEX).is_in(dropped))

    def _malformed(self) -> pl.DataFrame:
        bad = sorted(self.bad, key=lambda b: b.index)
        partitions, offsets = self.positions.partitions, self.positions.offsets
        raw = [_raw_text(self.values[b.index]) for b in bad]
        return pl.DataFrame(
            {
                PARTITION: [int(partitions[b.index]) for b in bad],
                OFFSET: [int(offsets[b.index]) for b in bad],
                "_hr_raw": raw,
                "_hr_reason": [b.reason for b in bad],
                "_hr_detail": [b.detail for b in bad],
            },
            schema=dict(MALFORMED_SCHEMA),
        )


def _fits(value: object, dtype: pl.DataType) -> bool | None:
    """Whether Polars' JSON reader takes ``value`` as ``dtype`` (None: not decided here)."""
    if isinstance(dtype, pl.String):
        return True
    if isinstance(value, bool):
        return isinstance(dtype, pl.Boolean)
    if isinstance(dtype, pl.Boolean):
        return False
    if isinstance(dtype, pl.Int64):
        return isinstance(value, int) and -(2**63) <= value < 2**63
    if isinstance(dtype, pl.UInt64):
        return isinstance(value, int) and 0 <= value < 2**64
    if isinstance(dtype, pl.Float64):
        return isinstance(value, int | float)
    return None


def _arrow_column(column: pl.Series, dtype: pl.DataType) -> pl.Series:
    """An Arrow message's column as ``dtype`` (datetimes to UTC); raises if it does not fit."""
    if isinstance(dtype, pl.Datetime):
        if column.dtype == pl.String():
            out = _datetime_from_text(column, dtype)
            if (column.is_not_null() & out.is_null()).any():
                msg = f"text that is not an ISO-8601 datetime in {column.name!r}"
                raise pl.exceptions.InvalidOperationError(msg)
            return out
        if isinstance(column.dtype, pl.Datetime):
            if column.dtype.time_zone is None:
                column = column.dt.replace_time_zone("UTC")
            column = column.dt.convert_time_zone("UTC").dt.cast_time_unit(dtype.time_unit)
            if dtype.time_zone is None:
                return column.dt.replace_time_zone(None)
            return column.dt.convert_time_zone(dtype.time_zone)
    return column.cast(dtype, strict=True)


def _position_series(values: Sequence[int] | pl.Series, name: str, dtype: pl.DataType) -> pl.Series:
    if isinstance(values, pl.Series):
        return values.cast(dtype).alias(name)
    return pl.Series(name, values, dtype=dtype)


def _missing_text(names: Sequence[str]) -> str:
    listed = ", ".join(repr(name) for name in names)
    return f"missing field{'s' if len(names) > 1 else ''} {listed}"


def _raw_text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "backslashreplace")


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _first_line(exc: BaseException) -> str:
    return next(itertools.chain(str(exc).strip().splitlines(), [type(exc).__name__]))
