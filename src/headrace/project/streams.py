"""The project's topics: events in, through the embedded log or the configured broker.

``[stream] broker = "log"`` (the default) keeps every topic as an
:class:`~headrace.connectors.log.EmbeddedLog` under ``<state_dir>/streams/<topic>``, created
with ``[stream] partitions``; a broker URL (``kafka://...``, ``nats://...``, ``redis://...``)
sends the events through that broker's producer instead.

:class:`TopicWriter` is the one way in, shared by :func:`produce`, ``headrace stream produce``
and ``POST /streams/{topic}/events``. It checks a whole batch before anything is written:
a batch whose records do not fit the topic's schema (fixed by the topic's first append) is
refused with an :class:`EventsError` naming the record and the field, and nothing of it is
appended.

Example::

    >>> import tempfile, polars as pl, headrace as hr
    >>> with tempfile.TemporaryDirectory() as folder, hr.Project.create(folder) as project:
    ...     produce(project, "clicks", pl.DataFrame({"user": ["a", "b"], "n": [1, 2]}), key="user")
    2
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import polars as pl
import pyarrow as pa

from headrace.connectors.log import OFFSET_COLUMN, PARTITION_COLUMN, EmbeddedLog, Positions
from headrace.connectors.stream.base import StreamProducer
from headrace.core.features import parse_duration
from headrace.core.redaction import redact
from headrace.errors import ConfigError, FeatureDefinitionError, SourceError, StreamError

if TYPE_CHECKING:
    from headrace.project.project import Project

__all__ = [
    "ARROW_STREAM",
    "JSON",
    "NDJSON",
    "EventsError",
    "ProducedEvents",
    "TopicNameError",
    "TopicWriter",
    "apply_retention",
    "check_topic",
    "open_topic",
    "produce",
    "read_events",
    "topic_path",
]

JSON = "application/json"
"""A JSON object (one event) or an array of objects."""
NDJSON = "application/x-ndjson"
"""One JSON object per line (blank lines are skipped)."""
ARROW_STREAM = "application/vnd.apache.arrow.stream"
"""An Arrow IPC stream: the schema, then record batches."""
_MEDIA_TYPES = {
    JSON: JSON,
    NDJSON: NDJSON,
    "application/ndjson": NDJSON,
    "application/jsonl": NDJSON,
    ARROW_STREAM: ARROW_STREAM,
}
_TOPIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_TOPIC_RULE = (
    "use 1 to 200 letters, digits, '.', '_' or '-', not starting with '.' or '-' "
    "(e.g. 'payments' or 'shop.payments')"
)
_READERS = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
_RESERVED = (PARTITION_COLUMN, OFFSET_COLUMN)


class TopicNameError(StreamError):
    """A topic name that is not allowed (it becomes a folder and a broker topic name)."""


class EventsError(SourceError):
    """Events that cannot be produced to a topic; nothing of the batch was written.

    ``reason`` says what was wrong: ``media_type`` (not JSON, NDJSON or Arrow), ``not_json``
    and ``not_arrow`` (the body does not parse), ``not_object`` and ``empty_record`` (a JSON
    record that is not a non-empty object), ``unknown_field``, ``type_conflict``,
    ``untyped_field``, ``reserved_field`` and ``key_field`` (records that do not fit the topic).
    ``record`` (0-based) and ``field`` say where, when one record or field is to blame.
    """

    def __init__(
        self, message: str, *, reason: str, record: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.record = record
        self.field = field


@dataclass(frozen=True)
class ProducedEvents:
    """What was sent to a topic: how many events, and where they went.

    ``first_offsets`` maps each partition that received events to the offset of the first of
    them. The embedded log reports it; a broker producer does not, and leaves it empty.
    """

    topic: str
    events: int
    first_offsets: Mapping[int, int] = field(default_factory=dict)

    @property
    def partitions(self) -> list[int]:
        """The partitions that received events, in order (empty for a broker)."""
        return sorted(self.first_offsets)

    def __add__(self, other: ProducedEvents) -> ProducedEvents:
        """Both sends together (chunks of one file, say): counts add, the first offset wins."""
        offsets = dict(self.first_offsets)
        for partition, offset in other.first_offsets.items():
            offsets[partition] = min(offset, offsets.get(partition, offset))
        return ProducedEvents(self.topic, self.events + other.events, offsets)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: topic, events, partitions and first offsets (string keys)."""
        return {
            "topic": self.topic,
            "events": self.events,
            "partitions": self.partitions,
            "first_offsets": {str(p): o for p, o in sorted(self.first_offsets.items())},
        }


# -- topics ----------------------------------------------------------------------------------


def check_topic(topic: str) -> str:
    """``topic`` if it is an allowed topic name, else a :class:`TopicNameError` saying why.

    >>> check_topic("shop.payments")
    'shop.payments'
    >>> check_topic("a/b")
    Traceback (most recent call last):
    ...
    headrace.project.streams.TopicNameError: topic name 'a/b' is not allowed ('/' at position 1); use 1 to 200 letters, digits, '.', '_' or '-', not starting with '.' or '-' (e.g. 'payments' or 'shop.payments')
    """  # noqa: E501 - a doctest shows the message whole
    if _TOPIC.fullmatch(topic):
        return topic
    if not topic:
        why = "it is empty"
    elif len(topic) > 200:
        why = f"{len(topic)} characters"
    elif topic[0] in ".-":
        why = f"it starts with {topic[0]!r}"
    else:
        position, char = next((i, c) for i, c in enumerate(topic) if not _allowed(c))
        why = f"{char!r} at position {position}"
    msg = f"topic name {topic!r} is not allowed ({why}); {_TOPIC_RULE}"
    raise TopicNameError(msg)


def _allowed(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in "._-")


def topic_path(project: Project, topic: str) -> Path:
    """The folder of ``topic``'s embedded log: ``<state_dir>/streams/<topic>``."""
    return project.state_dir / "streams" / check_topic(topic)


def open_topic(project: Project, topic: str) -> EmbeddedLog:
    """The embedded log of ``topic``, created with ``[stream] partitions`` if it is new.

    A topic keeps the partition count it was created with, whatever the setting says later.
    The log enforces ``[stream] retention`` and ``retention_bytes`` as its appends roll
    segments (see :class:`~headrace.connectors.log.EmbeddedLog`), so every way in that opens
    it here keeps them. Close the log when done (it is a context manager).

    A ``[stream] retention`` that is not a duration is a :class:`~headrace.errors.ConfigError`.
    """
    path = topic_path(project, topic)
    exists = (path / "log.json").exists()
    settings = project.settings.stream
    return EmbeddedLog(
        path,
        partitions=None if exists else settings.partitions,
        retention_bytes=settings.retention_bytes,
        retention=_retention(project),
    )


def apply_retention(project: Project, topic: str) -> int:
    """Apply ``[stream] retention`` and ``retention_bytes`` to ``topic``'s embedded log now.

    Appends already enforce them each time a partition rolls to a new segment
    (:func:`open_topic`); this applies them at once, e.g. to a topic nobody appends to.
    Whole old segments are deleted (never the one being appended to); returns how many. Does
    nothing (0) when neither setting is given, when the topic does not exist, or when the
    project streams through a broker, which keeps its own retention.
    """
    settings = project.settings.stream
    if settings.broker != "log":
        return 0
    max_age = _retention(project)  # a bad setting is named even before the topic exists
    exists = (topic_path(project, topic) / "log.json").exists()
    if not exists or (max_age is None and settings.retention_bytes is None):
        return 0
    with open_topic(project, topic) as log:
        return log.retain(max_bytes=settings.retention_bytes, max_age=max_age)


def _retention(project: Project) -> timedelta | None:
    """``[stream] retention`` as a duration (None: not set)."""
    text = project.settings.stream.retention
    if text is None:
        return None
    try:
        return parse_duration(text, what="[stream] retention")
    except FeatureDefinitionError as exc:
        raise ConfigError(str(exc)) from exc


# -- writing ---------------------------------------------------------------------------------


class TopicWriter:
    """Sends events to one topic of the project's broker until closed (a context manager).

    With ``[stream] broker = "log"`` the events are appended to the topic's embedded log
    (:func:`open_topic`) and each :meth:`send` reports the partitions and first offsets it
    wrote; with a broker URL they go through that broker's producer. One writer may be shared
    by threads: the embedded log locks each partition for an append.

    Example::

        >>> import tempfile, polars as pl, headrace as hr
        >>> with tempfile.TemporaryDirectory() as folder, hr.Project.create(folder) as project:
        ...     with TopicWriter(project, "clicks") as writer:
        ...         frame = writer.decode(b'{"user": "a", "n": 1}', JSON)
        ...         print(writer.send(frame, key="user").to_dict())
        {'topic': 'clicks', 'events': 1, 'partitions': [3], 'first_offsets': {'3': 0}}
    """

    def __init__(self, project: Project, topic: str) -> None:
        """Open ``topic`` (creating the embedded log's topic if it is new)."""
        self.topic = check_topic(topic)
        settings = project.settings.stream
        self.broker = settings.broker
        self._log: EmbeddedLog | None = None
        self._producer: StreamProducer | None = None
        if settings.broker == "log":
            self._log = open_topic(project, topic)
        else:
            self._producer = _open_producer(settings.broker, topic, settings.partitions)
        self.partitions = None if self._log is None else self._log.partitions
        """The topic's partition count in the embedded log (None for a broker)."""

    def describe(self) -> str:
        """Where the events go, for messages (never with a password)."""
        if self._log is not None:
            return f"the embedded log ({self._log.partitions} partitions)"
        return redact(self.broker)

    @property
    def schema(self) -> pl.Schema | None:
        """The topic's schema, fixed by its first append (None before it, or for a broker)."""
        if self._log is None:
            return None
        empty = self._log.read(0, self._log.end_offset(0), 0).data.drop(_RESERVED)
        return empty.schema if empty.columns else None

    def decode(self, data: bytes, media_type: str) -> pl.DataFrame:
        """A frame of the events in ``data``: JSON, NDJSON or an Arrow IPC stream.

        JSON values take the topic's types by the rules brokers' JSON messages are read with
        (:func:`~headrace.connectors.stream.decode.decode_json`: datetimes from ISO 8601 text or
        epoch milliseconds, integers widen to floats); a left-out field is null. A record that
        does not fit is an :class:`EventsError` naming its index (0-based) and field. A new
        topic takes the JSON types: integers, floats, booleans, strings, lists and objects.
        """
        kind = _MEDIA_TYPES.get(media_type.split(";", 1)[0].strip().lower())
        if kind is None:
            msg = (
                f"cannot read events sent as {media_type or 'no content type'!r}; send "
                f"{JSON} (an object or an array of objects), {NDJSON} (one object per line) "
                f"or {ARROW_STREAM} (an Arrow IPC stream)"
            )
            raise EventsError(msg, reason="media_type")
        if kind == ARROW_STREAM:
            return _arrow_frame(data)
        records = _json_records(data) if kind == JSON else _ndjson_records(data)
        return _records_frame(records, self.schema, self.topic)

    def conform(self, frame: pl.DataFrame, *, key: str | None = None) -> pl.DataFrame:
        """``frame`` in the topic's types, or an :class:`EventsError` saying what does not fit.

        The rules are the embedded log's: a column the topic does not have, or of another type,
        is refused; a left-out column is null; integers widen to floats.
        """
        if key is not None and key not in frame.columns:
            msg = (
                f"the key column {key!r} is not in the events sent to topic {self.topic!r} "
                f"(columns: {', '.join(frame.columns) or 'none'}); name one of them as the key"
            )
            raise EventsError(msg, reason="key_field", field=key)
        if self._log is None or frame.height == 0:
            return frame
        for name in _RESERVED:
            if name in frame.columns:
                msg = f"field {name!r} is reserved by the embedded log; rename it"
                raise EventsError(msg, reason="reserved_field", field=name)
        schema = self.schema
        if schema is None:
            return _check_first(frame, self.topic)
        columns: list[pl.Expr] = []
        for name, given in frame.schema.items():
            stored = schema.get(name)
            if stored is None:
                msg = (
                    f"field {name!r} is not in topic {self.topic!r} (fields: "
                    f"{', '.join(schema)}); its first append fixed them"
                )
                raise EventsError(msg, reason="unknown_field", field=name)
            if given == stored:
                columns.append(pl.col(name))
            elif given == pl.Null or _widens(given, stored):
                columns.append(pl.col(name).cast(stored))
            else:
                msg = (
                    f"field {name!r} is {given} but topic {self.topic!r} stores it as {stored}; "
                    f"send {stored} values"
                )
                raise EventsError(msg, reason="type_conflict", field=name)
        try:
            return frame.select(columns)
        except pl.exceptions.PolarsError as exc:
            msg = f"events do not fit the schema of topic {self.topic!r}: {exc}"
            raise EventsError(msg, reason="type_conflict") from exc

    def send(self, frame: pl.DataFrame, *, key: str | None = None) -> ProducedEvents:
        """Append ``frame`` (routed by its ``key`` column, round-robin without one).

        The whole frame is checked (:meth:`conform`) before anything is written. Rows with equal
        keys go to one partition, in order.
        """
        frame = self.conform(frame, key=key)
        if frame.height == 0:
            return ProducedEvents(self.topic, 0)
        if self._log is not None:
            return _produced(self.topic, self._log.append(frame, key=key))
        assert self._producer is not None
        sent = self._producer.send(frame, key=() if key is None else (key,))
        return ProducedEvents(self.topic, sent)

    def close(self) -> None:
        """Release the log's files or flush and close the broker producer."""
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def produce(project: Project, topic: str, frame: pl.DataFrame, *, key: str | None) -> int:
    """Send ``frame``'s rows to ``topic`` (routed by the ``key`` column); return how many.

    Appends to the topic's embedded log with ``[stream] broker = "log"``, else sends through
    the producer of the configured broker URL. Nothing is written when the frame does not fit
    the topic (:class:`EventsError`).
    """
    with TopicWriter(project, topic) as writer:
        return writer.send(frame, key=key).events


def _produced(topic: str, positions: Positions) -> ProducedEvents:
    firsts = positions.frame.group_by("partition").agg(pl.col("offset").min())
    offsets = dict(zip(firsts["partition"].to_list(), firsts["offset"].to_list(), strict=True))
    return ProducedEvents(topic, len(positions), offsets)


def _open_producer(url: str, topic: str, partitions: int) -> StreamProducer:
    """The broker's producer (its connector is imported only when a broker is configured)."""
    import importlib

    factory = importlib.import_module("headrace.connectors.stream.factory")
    open_producer: Callable[..., StreamProducer] = factory.open_producer
    return open_producer(url, topic, partitions=partitions)


def _widens(given: pl.DataType, stored: pl.DataType) -> bool:
    if given.is_integer():
        return stored.is_integer() or stored.is_float()
    return given == pl.Float32 and stored == pl.Float64


def _check_first(frame: pl.DataFrame, topic: str) -> pl.DataFrame:
    """The first append fixes the topic's schema: every column needs a type."""
    for name, dtype in frame.schema.items():
        if dtype == pl.Null:
            msg = (
                f"field {name!r} is null in every event of the first append to topic "
                f"{topic!r}, so its type is unknown; send a value for it (or leave it out)"
            )
            raise EventsError(msg, reason="untyped_field", field=name)
    return frame


# -- reading files ---------------------------------------------------------------------------


def read_events(path: Path, *, schema: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
    """The events of a ``.jsonl``/``.ndjson``, ``.json`` (array), ``.csv`` or ``.parquet`` file.

    With ``schema`` (a topic's), text columns of JSON and CSV files are read in its types
    (ISO 8601 strings as datetimes, say). A missing or unreadable file is a
    :class:`~headrace.errors.SourceError` naming it.
    """
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        msg = f"cannot read events from {path}: use a file ending in {', '.join(_READERS)}"
        raise SourceError(msg)
    if not path.is_file():
        msg = f"no events file {path}"
        raise SourceError(msg)
    wanted = dict(schema or {})
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix == ".csv":
            header = pl.read_csv(path, n_rows=0).columns
            overrides = {name: wanted[name] for name in header if name in wanted}
            return pl.read_csv(path, schema_overrides=overrides or None, try_parse_dates=True)
        frame = pl.read_ndjson(path) if suffix != ".json" else pl.read_json(path)
        return _parse_text(frame, wanted)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"cannot read events from {path}: {first}; fix the file or convert it"
        raise SourceError(msg) from exc


def _parse_text(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """String columns of ``frame`` whose ``schema`` type is temporal, parsed to that type."""
    parsed = [
        _parse_strings(frame[name], dtype)
        for name, dtype in schema.items()
        if name in frame.columns and frame.schema[name] == pl.String and dtype.is_temporal()
    ]
    return frame.with_columns(parsed) if parsed else frame


def _parse_strings(series: pl.Series, dtype: pl.DataType) -> pl.Series:
    if isinstance(dtype, pl.Datetime):
        return series.str.to_datetime(time_unit=dtype.time_unit, time_zone=dtype.time_zone)
    if dtype == pl.Date:
        return series.str.to_date()
    if dtype == pl.Time:
        return series.str.to_time()
    return series.cast(dtype)


# -- decoding bodies -------------------------------------------------------------------------


def _arrow_frame(data: bytes) -> pl.DataFrame:
    try:
        with pa.ipc.open_stream(pa.BufferReader(data)) as reader:
            table = reader.read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        msg = f"the body is not an Arrow IPC stream: {exc}; write it with pyarrow.ipc.new_stream"
        raise EventsError(msg, reason="not_arrow") from exc
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _json_records(data: bytes) -> list[dict[str, Any]]:
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except ValueError as exc:
        msg = f"the body is not valid JSON: {exc}; send an object or an array of objects"
        raise EventsError(msg, reason="not_json") from exc
    values = value if isinstance(value, list) else [value]
    return [_record(item, index, "") for index, item in enumerate(values)]


def _ndjson_records(data: bytes) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        where = f" (line {number})"
        try:
            value = json.loads(line, parse_constant=_no_constant)
        except ValueError as exc:
            msg = f"record {len(records)}{where} is not valid JSON: {exc}; send one object per line"
            raise EventsError(msg, reason="not_json", record=len(records)) from exc
        records.append(_record(value, len(records), where))
    return records


def _no_constant(name: str) -> None:
    msg = f"{name} is not a JSON value (use null)"
    raise ValueError(msg)


def _record(value: object, index: int, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"record {index}{where} is {_kind(value)}, not a JSON object; each event is an object"
        raise EventsError(msg, reason="not_object", record=index)
    if not value:
        msg = f"record {index}{where} is an empty object; an event needs at least one field"
        raise EventsError(msg, reason="empty_record", record=index)
    return value


_KINDS: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}
_NUMBERS = ("an integer", "a number")
_INFERRED: dict[str, pl.DataType] = {
    "a boolean": pl.Boolean(),
    "an integer": pl.Int64(),
    "a number": pl.Float64(),
    "a string": pl.String(),
}


def _kind(value: object) -> str:
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def _records_frame(
    records: list[dict[str, Any]], schema: Mapping[str, pl.DataType] | None, topic: str
) -> pl.DataFrame:
    """The records as a frame: in the topic's types, or the JSON types for a new topic."""
    names: dict[str, int] = {}
    for index, record in enumerate(records):
        for name in record:
            names.setdefault(name, index)
    if schema is None:
        columns = [_inferred_column(n, [r.get(n) for r in records], topic) for n in names]
        return pl.DataFrame(columns, height=len(records))
    for name, first in names.items():
        if name not in schema:
            msg = (
                f"record {first}, field {name!r}: topic {topic!r} has no such field (fields: "
                f"{', '.join(schema)}); its first append fixed them"
            )
            raise EventsError(msg, reason="unknown_field", record=first, field=name)
    return _decoded(records, {name: schema[name] for name in names}, topic)


def _decoded(
    records: list[dict[str, Any]], declared: dict[str, pl.DataType], topic: str
) -> pl.DataFrame:
    """The records in the topic's types, read by the rules every broker's JSON messages follow."""
    # decode needs orjson (an extra of the broker connectors): import it only on this path
    from headrace.connectors.stream.base import OFFSET, PARTITION
    from headrace.connectors.stream.decode import MessagePositions, decode_json

    blank = dict.fromkeys(declared)  # an explicit null: a left-out field is null, not malformed
    messages = [json.dumps({**blank, **record}).encode() for record in records]
    count = len(messages)
    positions = MessagePositions([0] * count, list(range(count)))
    rows, malformed = decode_json(messages, positions, declared)
    if malformed.height:
        index = int(malformed[OFFSET][0])
        detail = str(malformed["_hr_detail"][0])
        named = re.match(r"field '([^']+)'", detail)
        msg = f"record {index} does not fit topic {topic!r}: {detail}"
        raise EventsError(
            msg, reason="type_conflict", record=index, field=named[1] if named else None
        )
    return rows.drop(PARTITION, OFFSET)


def _inferred_column(name: str, values: list[Any], topic: str) -> pl.Series:
    """A column of a new topic: every record gives the field one JSON type (ints widen)."""
    first = next((i for i, v in enumerate(values) if v is not None), None)
    if first is None:
        msg = (
            f"field {name!r} is null in every record of the first append to topic {topic!r}, "
            f"so its type is unknown; send a value for it (or leave it out)"
        )
        raise EventsError(msg, reason="untyped_field", field=name)
    kind = _kind(values[first])
    family = _NUMBERS if kind in _NUMBERS else (kind,)
    for index in range(first + 1, len(values)):
        value = values[index]
        if value is not None and _kind(value) not in family:
            msg = (
                f"record {index}, field {name!r}: {_shown(value)} is {_kind(value)}, but "
                f"record {first} gave {kind}; a field has one type in every record"
            )
            raise EventsError(msg, reason="type_conflict", record=index, field=name)
    if kind in _NUMBERS:
        kind = "a number" if any(isinstance(v, float) for v in values) else "an integer"
    dtype = _INFERRED.get(kind)
    try:
        return pl.Series(name, values, dtype=dtype, strict=True)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError) as exc:
        reason = str(exc).strip().splitlines()[0]
        msg = f"field {name!r}: the records' values do not make one column ({reason})"
        raise EventsError(msg, reason="type_conflict", field=name) from exc


def _shown(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
