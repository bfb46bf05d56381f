"""Redis Streams topics: one stream per partition, read through consumer groups.

Layout of topic ``T`` with ``N`` partitions::

    T:meta        hash   partitions -> N (written by the producer that creates the topic)
    T:0 ... T:N-1 streams, one entry per row, with one field ``d``: the JSON (or Arrow) bytes

A message's position is its entry id packed into one integer
(:func:`~headrace.connectors.stream.base.pack_redis_id`). The consumer reads its partitions with
``XREADGROUP ... >`` in consumer group ``group``; before reading (and after every reconnect) it
moves the group to the engine's position with ``XGROUP SETID``, so reading resumes at the
engine's checkpoint, and entries the server handed to a connection that then dropped are read
again rather than lost. :meth:`RedisStreamConsumer.commit` acknowledges (``XACK``) the pending
entries before the engine's positions, so ``XPENDING`` shows how far the engine got.

Entries trimmed before the job read them are never skipped (``XREADGROUP`` itself would go on
at the next entry still there): before placing the group, and before every read, the consumer
compares each partition's position with the stream's first entry and last generated id
(``XINFO STREAM``), and raises :class:`~headrace.errors.StreamError` when the stream was
trimmed past the position (``XTRIM``, ``XADD MAXLEN`` / ``MINID``) or ends before it (its key
was deleted and the stream made again). Redis does not keep how many entries a trim removed,
so when the last entry the job read was trimmed too and the stream's first entry is further
on, the entries in between (if there were any) are counted as lost.

A dropped connection is retried with backoff (0.1 s doubling to 2 s); a server unreachable
for ``reconnect_timeout`` seconds raises :class:`~headrace.errors.BrokerError`. Entry ids
with more than 2**20 entries in one millisecond of one stream cannot be packed; Redis would
need a million ``XADD`` per millisecond to one partition to make them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import polars as pl
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from headrace.connectors.stream.base import (
    Polled,
    StreamConsumer,
    StreamProducer,
    pack_redis_id,
    restart_fix,
    unpack_redis_id,
)
from headrace.connectors.stream.decode import (
    MessagePositions,
    decode_json,
    encode_json,
    partitions_for,
)
from headrace.core.redaction import redact
from headrace.errors import BrokerError, ConfigError, StreamError

__all__ = ["RedisStreamConsumer", "RedisStreamProducer"]

log = logging.getLogger("headrace.connectors.stream.redis")

T = TypeVar("T")

FIELD = b"d"
"""The one field of every entry: the message bytes."""
_FIRST_DELAY, _MAX_DELAY = 0.1, 2.0
_MAX_BLOCK = 10.0
"""Longest single XREADGROUP BLOCK; the socket timeout is longer."""
_SOCKET_TIMEOUT = 30.0
_CHUNK = 10_000
_DOWN = (redis.ConnectionError, redis.TimeoutError)
_RESTART_FROM = "first entry"
"""Where a job restarted from scratch reads each partition from (see restart_fix)."""
_FIX = "check that the Redis server is running and reachable (redis-cli -u <url> ping)"


def stream_key(topic: str, partition: int) -> str:
    """The Redis key of one partition's stream."""
    return f"{topic}:{partition}"


def meta_key(topic: str) -> str:
    """The Redis key of the topic's hash (``partitions`` -> count)."""
    return f"{topic}:meta"


def _client(url: str, name: str | None = None) -> redis.Redis:
    # No retries inside redis-py: a silently repeated XREADGROUP could lose what the dropped
    # connection was handed. Retrying is ours, with backoff and the group reset first.
    try:
        return redis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=5,
            socket_keepalive=True,
            client_name=name,
        )
    except ValueError as exc:
        msg = f"{redact(url)} is not a Redis URL ({exc}); use redis://host:port/db"
        raise ConfigError(msg) from exc


class _Backoff:
    """Waits between attempts against one server; BrokerError after ``timeout`` seconds down."""

    def __init__(self, shown: str, timeout: float) -> None:
        self.shown, self.timeout = shown, timeout
        self._since: float | None = None
        self._delay = _FIRST_DELAY

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if now - self._since >= self.timeout:
            msg = (
                f"Redis server {self.shown} stayed unreachable for {self.timeout:.0f} s "
                f"({redact(str(exc))}); {_FIX}, or raise reconnect_timeout"
            )
            raise BrokerError(msg) from exc
        log.warning("Redis %s: %s; retrying in %.1f s", self.shown, redact(str(exc)), self._delay)
        time.sleep(min(self._delay, max(0.0, self._since + self.timeout - now)))
        self._delay = min(self._delay * 2, _MAX_DELAY)

    def succeeded(self) -> None:
        self._since, self._delay = None, _FIRST_DELAY

    def call(self, action: Callable[[], T]) -> T:
        while True:
            try:
                result = action()
            except _DOWN as exc:
                self.failed(exc)
            else:
                self.succeeded()
                return result


def _partition_count(client: redis.Redis, topic: str, shown: str) -> int | None:
    raw = client.hget(meta_key(topic), "partitions")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        msg = f"{meta_key(topic)} on {shown} holds partitions={raw!r}; set it to a whole number"
        raise StreamError(msg) from exc


class RedisStreamConsumer(StreamConsumer):
    """Reads the partitions of one topic that the engine assigns, in consumer group ``group``."""

    kind = "redis"
    group_managed = False

    def __init__(
        self,
        url: str,
        topic: str,
        *,
        schema: Mapping[str, pl.DataType],
        group: str,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self.topic, self.group, self.schema = topic, group, dict(schema)
        self._shown = redact(url)
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        """This worker's consumer name in the group."""
        self.client_name = f"headrace:{topic}:{group}:{self.name}"
        """The name of this consumer's connections (``CLIENT LIST``)."""
        self._client = _client(url, self.client_name)
        self._backoff = _Backoff(self._shown, reconnect_timeout)
        self._next: dict[int, int | None] = {}
        self._placed = False
        self._keys: dict[bytes, int] = {}
        self._backoff.call(self._client.ping)

    # -- StreamConsumer ---------------------------------------------------------------------

    def partitions(self) -> list[int]:
        """Every partition of the topic (``<topic>:meta`` holds the count)."""
        count = self._backoff.call(lambda: _partition_count(self._client, self.topic, self._shown))
        if count is None:
            msg = (
                f"topic {self.topic!r} has no {meta_key(self.topic)} hash on {self._shown}; "
                "create the topic with open_producer(...) or HSET it with partitions=N"
            )
            raise StreamError(msg)
        return list(range(count))

    def assign(self, positions: Mapping[int, int | None]) -> None:
        """Own exactly these partitions, reading each from its (packed entry id) position."""
        self._next = dict(sorted(positions.items()))
        self._keys = {stream_key(self.topic, p).encode(): p for p in self._next}
        self._placed = False
        self._backoff.call(self._place)

    def _place(self) -> None:
        """Move the group of every owned stream to just before the position to read next."""
        if self._placed:
            return
        self._check_positions()
        for partition, position in self._next.items():
            key = stream_key(self.topic, partition)
            last = "0-0" if not position else unpack_redis_id(position - 1)
            try:
                self._client.xgroup_create(key, self.group, id=last, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise self._refused(exc, f"XGROUP CREATE {key}") from exc
                self._client.xgroup_setid(key, self.group, id=last)
        self._placed = True

    def poll(self, max_messages: int, timeout: float) -> Polled:
        """Up to ``max_messages`` entries of the owned streams (reconnecting if needed)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                self._check_positions()
                self._place()
                reply = self._read(max(1, max_messages), deadline)
            except _DOWN as exc:
                self._placed = False  # the server may have handed entries to the dead socket
                self._backoff.failed(exc)
                continue
            self._backoff.succeeded()
            if reply or time.monotonic() >= deadline:
                return self._polled(reply)

    def _check_positions(self) -> None:
        """Raise StreamError for an owned stream that lost entries at or after its position.

        One ``XINFO STREAM`` per owned stream, pipelined. Trimming deletes the oldest entries,
        so while the stream's first entry is at or before the last entry the job read,
        nothing after it is gone.
        """
        owned = [(p, position) for p, position in self._next.items() if position]
        if not owned:
            return
        pipe = self._client.pipeline(transaction=False)
        for partition, _ in owned:
            pipe.xinfo_stream(stream_key(self.topic, partition))
        replies = pipe.execute(raise_on_error=False)
        for (partition, position), reply in zip(owned, replies, strict=True):
            info: dict[str, Any] = {}  # no key (deleted, or never made): nothing generated
            if not isinstance(reply, redis.ResponseError):
                info = reply
            elif "no such key" not in str(reply):
                key = stream_key(self.topic, partition)
                raise self._refused(reply, f"XINFO STREAM {key}") from reply
            last = pack_redis_id(info.get("last-generated-id") or b"0-0")
            entry = info.get("first-entry")
            first = pack_redis_id(entry[0]) if entry else None
            if position - 1 > last:
                raise self._shorter(partition, position, first, last)
            if first is None and last >= position:  # all trimmed, ours included
                raise self._trimmed(partition, position, last + 1, first, last)
            if first is not None and first > position:
                raise self._trimmed(partition, position, first, first, last)

    def _trimmed(
        self, partition: int, position: int, following: int, first: int | None, last: int
    ) -> StreamError:
        """The error for a position whose entries before ``following`` were trimmed."""
        key = stream_key(self.topic, partition)
        read, gone = unpack_redis_id(position - 1), unpack_redis_id(following - 1)
        if first is None:
            what = (
                f"the stream is empty: its entries up to {unpack_redis_id(last)}, the last "
                f"one added, were deleted, and with them those after {read}, the last one the "
                f"job read, before the job read them"
            )
        else:
            what = (
                f"its first entry is now {unpack_redis_id(first)}: entry {read}, the last "
                f"one the job read, was deleted, and so were the entries after it up to "
                f"{gone} before the job read them (if there were any: Redis does not keep "
                f"how many a trim removed)"
            )
        fix = restart_fix(self.topic, "To go on without them", first=_RESTART_FROM)
        msg = (
            f"topic {self.topic!r} on {self._shown}, partition {partition} (stream {key}): "
            f"the job is to read from entry id {unpack_redis_id(position)}, but {what}; the "
            f"stream was trimmed (XTRIM, XADD MAXLEN or MINID) or its entries or key deleted. "
            f"The job stops rather than skip them. "
            f"{fix}. To keep this from "
            f"happening again, trim the stream less (a larger MAXLEN: maxlen= of the "
            f"producer, or an older MINID) than what the job can fall behind by"
        )
        return StreamError(msg)

    def _shorter(self, partition: int, position: int, first: int | None, last: int) -> StreamError:
        key = stream_key(self.topic, partition)
        held = (
            "it has no entries"
            if first is None
            else f"it holds entries {unpack_redis_id(first)} to {unpack_redis_id(last)}"
        )
        fix = restart_fix(self.topic, "If the stream was emptied on purpose", first=_RESTART_FROM)
        msg = (
            f"topic {self.topic!r} on {self._shown}, partition {partition} (stream {key}): "
            f"the job is to read from entry id {unpack_redis_id(position)}, but the stream's "
            f"last generated id is {unpack_redis_id(last)} ({held}): the stream is shorter "
            f"than the checkpoint: was its key deleted (or the server restarted without its "
            f"data)? The job stops rather than skip what the stream will hold before the "
            f"checkpoint's id. {fix}. "
            f"Otherwise point the job at the Redis database it was reading"
        )
        return StreamError(msg)

    def _read(self, max_messages: int, deadline: float) -> list[Any]:
        if not self._next:
            time.sleep(max(0.0, deadline - time.monotonic()))
            return []
        streams: dict[Any, Any] = dict.fromkeys(self._keys, ">")
        remaining = deadline - time.monotonic()
        block = int(min(remaining, _MAX_BLOCK) * 1000)
        reply = self._client.xreadgroup(
            self.group,
            self.name,
            streams,
            count=max(1, max_messages // len(streams)),
            block=block if block > 0 else None,  # BLOCK 0 would wait forever
        )
        return list(reply or [])

    def _polled(self, reply: list[Any]) -> Polled:
        values: list[bytes | None] = []
        partitions: list[int] = []
        ids: list[bytes] = []
        following: dict[int, int] = {}
        for key, entries in reply:
            partition = self._keys[key]
            for entry_id, fields in entries:
                values.append(fields.get(FIELD) if fields else None)
                ids.append(entry_id)
                partitions.append(partition)
            if entries:
                last = pack_redis_id(entries[-1][0])
                following[partition] = last + 1
                self._next[partition] = last + 1
        offsets = _pack_all(ids)
        rows, malformed = decode_json(values, MessagePositions(partitions, offsets), self.schema)
        return Polled(rows, following, malformed)

    def commit(self, positions: Mapping[int, int]) -> None:
        """``XACK`` the group's pending entries before each position (best effort)."""
        for partition, position in sorted(positions.items()):
            if partition not in self._next or position <= 0:
                continue
            key = stream_key(self.topic, partition)
            try:
                self._ack_before(key, unpack_redis_id(position - 1))
            except (*_DOWN, redis.ResponseError) as exc:
                log.warning("%s: XACK on %s failed: %s", self.describe(), key, redact(str(exc)))

    def _ack_before(self, key: str, last: str) -> None:
        while True:
            pending = self._client.xpending_range(key, self.group, "-", last, _CHUNK)
            ids = [entry["message_id"] for entry in pending]
            if ids:
                self._client.xack(key, self.group, *ids)
            if len(ids) < _CHUNK:
                return

    def close(self) -> None:
        """Remove this worker's consumer name from the groups and close the connection."""
        try:
            pipe = self._client.pipeline(transaction=False)
            for partition in self._next:
                pipe.xgroup_delconsumer(stream_key(self.topic, partition), self.group, self.name)
            pipe.execute(raise_on_error=False)
        except _DOWN as exc:
            log.debug("%s: leaving the group failed: %s", self.describe(), exc)
        finally:
            self._client.close()

    def describe(self) -> str:
        """``redis://host:port/db topic 'x' group 'g'`` (no password)."""
        return f"{self._shown} topic {self.topic!r} group {self.group!r}"

    def _refused(self, exc: BaseException, what: str) -> StreamError:
        text = redact(str(exc))
        if "WRONGTYPE" in text:
            return StreamError(
                f"{what} on {self._shown}: the key is not a stream ({text}); another program "
                "uses that key: pick another topic name"
            )
        return StreamError(f"{what} on {self._shown} failed: {text}")


class RedisStreamProducer(StreamProducer):
    """Appends rows of one topic to its partition streams (``XADD``, pipelined).

    Creates ``<topic>:meta`` with ``partitions`` when the topic is new; an existing topic
    keeps its count. ``maxlen`` trims each stream to about that many entries
    (``XADD MAXLEN ~``). A send that fails part-way is resent whole after reconnecting, so
    rows may be stored twice (at least once).
    """

    def __init__(
        self,
        url: str,
        topic: str,
        *,
        partitions: int = 4,
        maxlen: int | None = None,
        reconnect_timeout: float = 30.0,
    ) -> None:
        if partitions < 1:
            msg = f"partitions={partitions} for topic {topic!r}; give 1 or more"
            raise ConfigError(msg)
        self.topic, self.maxlen = topic, maxlen
        self._shown = redact(url)
        self._client = _client(url)
        self._backoff = _Backoff(self._shown, reconnect_timeout)
        self._round_robin = 0
        self.partitions = self._backoff.call(lambda: self._ensure_topic(partitions))

    def _ensure_topic(self, partitions: int) -> int:
        self._client.hsetnx(meta_key(self.topic), "partitions", partitions)
        count = _partition_count(self._client, self.topic, self._shown)
        return partitions if count is None else count

    def send(self, frame: pl.DataFrame, *, key: Sequence[str] = ()) -> int:
        """Append ``frame``'s rows, routed by ``key``; returns when Redis stored them all."""
        payloads = encode_json(frame)
        targets = partitions_for(frame, key, self.partitions, self._round_robin)
        self._round_robin = (self._round_robin + frame.height) % self.partitions
        keys = [stream_key(self.topic, p) for p in range(self.partitions)]
        for start in range(0, len(payloads), _CHUNK):
            stop = start + _CHUNK

            def append(start: int = start, stop: int = stop) -> None:
                pipe = self._client.pipeline(transaction=False)
                for payload, target in zip(payloads[start:stop], targets[start:stop], strict=True):
                    pipe.xadd(keys[target], {FIELD: payload}, maxlen=self.maxlen, approximate=True)
                pipe.execute()

            self._backoff.call(append)
        return frame.height

    def close(self) -> None:
        """Close the connection (every send already waited for Redis)."""
        self._client.close()


def _pack_all(ids: list[bytes]) -> pl.Series:
    """:func:`pack_redis_id` of many entry ids at once (vectorised)."""
    if not ids:
        return pl.Series("offset", [], dtype=pl.Int64)
    parts = pl.Series("id", ids, dtype=pl.Binary).cast(pl.String).str.split_exact("-", 1)
    ms = parts.struct.field("field_0").cast(pl.Int64)
    seq = parts.struct.field("field_1").cast(pl.Int64)
    return (ms * (1 << 20) + seq).alias("offset")
