"""Kafka topics (and Kafka-compatible brokers: Redpanda, Tansu, ...) through confluent-kafka.

The consumer is a member of a Kafka consumer group, so Kafka decides which worker owns which
partition (``group_managed = True``). When partitions are assigned, the engine's
:class:`~headrace.connectors.stream.base.Rebalance` listener says where to start each one (the
engine's checkpoint, not the group's committed offset); when they are revoked it is told first,
so it can checkpoint them. When the group moved on without this member (it missed
``session.timeout.ms`` or ``max.poll.interval.ms``), librdkafka reports its whole assignment
*lost*: the engine is told to forget it without a checkpoint, since another member may own the
partitions already, and the member rejoins the group. These calls happen inside
:meth:`KafkaConsumer.poll`. Offsets are committed to the group only when the engine calls
:meth:`KafkaConsumer.commit` (``enable.auto.commit`` is off), for monitoring tools such as
consumer-lag exporters.

A checkpointed offset the broker no longer has is never skipped: when retention (or
``DeleteRecords``) deleted it, or the topic was deleted and recreated shorter, :meth:`poll`
raises a :class:`~headrace.errors.StreamError` naming the partition, the offset, the
partition's watermarks and the fix. Kafka answers such a fetch with ``OFFSET_OUT_OF_RANGE``,
which ``auto.offset.reset=error`` turns into an error event (``ERR__AUTO_OFFSET_RESET``) instead
of a silent jump to the earliest offset. Tansu answers with an empty fetch instead, so the
consumer also compares each checkpointed offset with the watermarks of the first fetch answer
for the partition since it was assigned, and, when the partition's first message comes after
the checkpointed offset, that offset with the low watermark. A job that falls behind
retention while it runs gets the same error from Kafka.

:meth:`KafkaConsumer.at_end` is True once librdkafka has reported the end of every owned
partition (``enable.partition.eof``) after the last message it handed over: the fetch that
found no more data saw the partition's high watermark. (Not a ``ListOffsets`` query: Tansu
answers it with an offset short of the partition's end.)

A lost connection is librdkafka's to retry (it reconnects by itself, with backoff); a broker
that stays unreachable for ``reconnect_timeout`` seconds, or a fatal client error, raises
:class:`~headrace.errors.BrokerError`.

The producer writes one JSON object per row (:func:`~headrace.connectors.stream.decode.encode_json`)
to the partition :func:`~headrace.connectors.stream.decode.partitions_for` gives its key, and
creates the topic with the requested number of partitions when it does not exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from headrace.connectors.stream.base import (
    Polled,
    Rebalance,
    StreamConsumer,
    StreamProducer,
    restart_fix,
)
from headrace.connectors.stream.decode import (
    MessagePositions,
    decode_json,
    encode_json,
    partitions_for,
)
from headrace.core.redaction import redact
from headrace.errors import BrokerError, StreamError

__all__ = ["KafkaConsumer", "KafkaProducer"]

log = logging.getLogger("headrace.connectors.stream.kafka")

_DOWN = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT})
_NO_TOPIC = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
_RESTART_FROM = "first available offset"
"""Where a job restarted from scratch reads each partition from (see restart_fix)."""
_FIX = "check that the broker is running and reachable from here (and bootstrap host:port)"


def _shown(bootstrap: str) -> str:
    return redact(f"kafka://{bootstrap}")


class KafkaConsumer(StreamConsumer):
    """Reads one topic as a member of Kafka consumer group ``group``.

    ``config`` is passed to librdkafka as is (``security.protocol``, ``sasl.*``,
    ``fetch.max.bytes``, ...); headrace sets ``bootstrap.servers``, ``group.id`` and
    ``enable.auto.commit=false``, and always ``enable.partition.eof=true`` (:meth:`at_end`
    needs it). With a ``rebalance`` listener it always sets ``auto.offset.reset=error``: a
    partition starts where the listener says (its beginning when it has no checkpoint), and
    an offset the broker no longer has raises :class:`~headrace.errors.StreamError` rather
    than jump. Without one, assigned partitions start at the group's committed offsets, and
    ``auto.offset.reset`` (``earliest`` unless ``config`` says otherwise) applies.
    """

    kind = "kafka"
    group_managed = True

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        schema: Mapping[str, pl.DataType],
        group: str,
        rebalance: Rebalance | None = None,
        config: Mapping[str, str] | None = None,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self.topic, self.group, self.schema = topic, group, dict(schema)
        self.rebalance = rebalance
        self.reconnect_timeout = reconnect_timeout
        self._shown = _shown(bootstrap)
        self._owned: set[int] = set()
        self._ended: set[int] = set()
        """Owned partitions whose end librdkafka reported after their last message."""
        self._unchecked: dict[int, tuple[int, tuple[int, int]]] = {}
        """Partitions started at a checkpointed offset not yet seen to be in range: that
        offset, and the partition's cached watermarks when it was assigned."""
        self._down_since: float | None = None
        self._fatal: KafkaError | None = None
        self._warned_no_topic = False
        self._closed = False
        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **dict(config or {}),
            **({"auto.offset.reset": "error"} if rebalance is not None else {}),
            "enable.partition.eof": True,
            "error_cb": self._on_error,
            "on_commit": self._on_commit,
        }
        try:
            self._consumer = Consumer(settings)
        except KafkaException as exc:
            msg = f"cannot create a Kafka consumer for {self._shown}: {exc}; check its options"
            raise StreamError(msg) from exc
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    # -- group protocol (called by librdkafka from inside consume) -------------------------

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        starts: Mapping[int, int | None] = (
            self.rebalance.assigned(numbers) if self.rebalance is not None else {}
        )
        placed = []
        self._unchecked = {}
        for number in numbers:
            if self.rebalance is None:
                offset = OFFSET_STORED
            else:
                start = starts.get(number)
                offset = OFFSET_BEGINNING if start is None else int(start)
                if start is not None:
                    self._unchecked[number] = (offset, self._cached(number))
            placed.append(TopicPartition(self.topic, number, offset))
        consumer.assign(placed)
        self._owned = set(numbers)
        self._ended.clear()
        log.info("%s: assigned partitions %s", self.describe(), numbers)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        if self.rebalance is not None and numbers:
            self.rebalance.revoked(numbers)
        consumer.unassign()
        self._owned.difference_update(numbers)
        self._ended.difference_update(numbers)
        for number in numbers:
            self._unchecked.pop(number, None)
        log.info("%s: revoked partitions %s", self.describe(), numbers)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group moved on without us (session or poll-interval timeout): others may own the
        # partitions already and have checkpointed past us. librdkafka loses the whole
        # assignment (and unassign() drops it), so the engine hears of all of it.
        numbers = sorted(self._owned | {tp.partition for tp in partitions})
        log.warning(
            "%s: lost partitions %s (the group moved on without this member); they are "
            "dropped without a checkpoint and the member rejoins",
            self.describe(),
            numbers,
        )
        self._owned.clear()  # first: no courtesy commit for partitions that are not ours
        self._ended.clear()
        self._unchecked.clear()
        if self.rebalance is not None and numbers:
            self.rebalance.lost(numbers)
        consumer.unassign()

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
        elif error.code() in _DOWN:
            if self._down_since is None:
                self._down_since = time.monotonic()
            log.warning("%s: %s (librdkafka reconnects)", self.describe(), error.str())
        else:
            log.warning("%s: %s", self.describe(), error.str())

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None:
            log.warning("%s: offset commit failed: %s", self.describe(), error.str())

    # -- StreamConsumer ---------------------------------------------------------------------

    def partitions(self) -> list[int]:
        """Every partition of the topic, from the broker's metadata."""
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=self.reconnect_timeout)
        except KafkaException as exc:
            raise self._unreachable(exc) from exc
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            msg = (
                f"topic {self.topic!r} does not exist on {self._shown}; create it (open_producer "
                "creates it with N partitions) or fix the topic name"
            )
            raise StreamError(msg)
        return sorted(int(p) for p in found.partitions)

    def assign(self, positions: Mapping[int, int | None]) -> None:
        """Not for Kafka: the consumer group assigns partitions (see :class:`Rebalance`)."""
        msg = (
            f"{self.describe()}: Kafka assigns partitions through its consumer group; the "
            "engine must use the Rebalance listener instead of assign() (group_managed=True)"
        )
        raise StreamError(msg)

    def poll(self, max_messages: int, timeout: float) -> Polled:
        """Up to ``max_messages`` messages of the owned partitions (rebalances happen here)."""
        try:  # wait for the first message only, then take what is already fetched
            first = self._consumer.poll(max(0.0, timeout))
            messages = [] if first is None else [first]
            if first is not None and max_messages > 1:
                messages += self._consumer.consume(num_messages=max_messages - 1, timeout=0)
        except KafkaException as exc:
            raise self._unreachable(exc) from exc
        values: list[bytes | None] = []
        partitions: list[int] = []
        offsets: list[int] = []
        for message in messages:
            if message.error() is None:
                partition, offset = message.partition() or 0, message.offset() or 0
                if partition in self._unchecked:
                    self._check_first(partition, offset)
                values.append(message.value())
                partitions.append(partition)
                offsets.append(offset)
                self._ended.discard(partition)
            else:
                self._note(message)
        self._check_health(bool(values))
        self._check_starts()
        rows, malformed = decode_json(values, MessagePositions(partitions, offsets), self.schema)
        following: dict[int, int] = {}
        for partition, offset in zip(partitions, offsets, strict=True):
            following[partition] = offset + 1
        return Polled(rows, following, malformed)

    def _note(self, message: Message) -> None:
        """An error event in place of a message: remember a fatal one, log the others."""
        error = message.error()
        assert error is not None
        if error.fatal():
            self._fatal = error
        elif error.code() == KafkaError._PARTITION_EOF:
            partition = message.partition()
            if partition is not None and partition in self._owned:
                self._ended.add(partition)
                self._unchecked.pop(partition, None)  # read to its end: the start was in range
        elif error.code() == KafkaError._AUTO_OFFSET_RESET:
            # The broker answered OFFSET_OUT_OF_RANGE: the offset to read next is gone (or
            # not there yet), and auto.offset.reset=error keeps librdkafka from jumping.
            partition = message.partition() or 0
            offset = message.offset()
            if offset is None or offset < 0:
                unchecked = self._unchecked.get(partition)
                offset = OFFSET_INVALID if unchecked is None else unchecked[0]
            raise self._out_of_range(partition, offset, *self._watermarks(partition), error.str())
        elif error.code() in _NO_TOPIC:
            if not self._warned_no_topic:
                log.warning("%s: %s; waiting for the topic", self.describe(), error.str())
                self._warned_no_topic = True
        else:
            log.warning("%s: %s", self.describe(), error.str())

    # -- checkpointed offsets the broker no longer has --------------------------------------

    def _cached(self, partition: int) -> tuple[int, int]:
        """The partition's watermarks from librdkafka's last fetch answer (or OFFSET_INVALID).

        Tansu answers ``ListOffsets`` for the high watermark short of the partition's end, but
        its fetch answers carry the right watermarks.
        """
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), cached=True
            )
        except KafkaException:
            return OFFSET_INVALID, OFFSET_INVALID
        return int(low), int(high)

    def _watermarks(self, partition: int) -> tuple[int, int]:
        """The partition's watermarks as the broker says now (``ListOffsets``), else cached."""
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=min(5.0, self.reconnect_timeout)
            )
        except KafkaException:
            return self._cached(partition)
        return int(low), max(int(high), self._cached(partition)[1])

    def _check_first(self, partition: int, offset: int) -> None:
        """The first message after a checkpointed start: raise if it skipped deleted ones.

        A later offset alone is no loss (compaction, transaction markers), but a start
        below the low watermark of the fetch that brought the message is.
        """
        start, _ = self._unchecked.pop(partition)
        if offset > start:
            low, high = self._cached(partition)
            if low > start:
                raise self._out_of_range(partition, start, low, high)

    def _check_starts(self) -> None:
        """Raise for a checkpointed start outside the watermarks of a fetch answered since.

        Watermarks librdkafka cached before the assignment may be stale (the partition may
        have grown since this member last read it), so they decide only once they changed.
        """
        for partition, (start, when_assigned) in list(self._unchecked.items()):
            low, high = self._cached(partition)
            if high < 0 or (low, high) == when_assigned:
                continue  # no fetch answered since the assignment
            if start > high or start < low:
                raise self._out_of_range(partition, start, low, high)
            del self._unchecked[partition]

    def _out_of_range(
        self, partition: int, offset: int, low: int, high: int, reason: str | None = None
    ) -> StreamError:
        """The error for a partition whose offset to read next the broker does not have."""
        where = f"topic {self.topic!r} on {self._shown}, partition {partition}"
        marks = (
            f"low watermark {low}, high watermark {high}"
            if low >= 0 and high >= 0
            else "its watermarks are unknown"
        )
        position = f"offset {offset}" if offset >= 0 else "its checkpointed offset"
        if 0 <= offset < low:
            what = (
                f"the job is to read from offset {offset}, but the broker deleted offsets "
                f"{offset} to {low - 1} ({low - offset} offsets) before the job read them "
                f"(retention.ms / retention.bytes, or DeleteRecords); the first available "
                f"offset is {low} ({marks}). The job stops rather than skip them"
            )
            keep = (
                "To keep this from happening again, raise the topic's retention.ms and "
                "retention.bytes above what the job can fall behind by"
            )
        elif offset >= 0 and 0 <= high < offset:
            what = (
                f"the job is to read from offset {offset}, but the partition ends at offset "
                f"{high} ({marks}): the topic is shorter than the checkpoint: was it deleted "
                f"and recreated? The job stops rather than skip what the topic holds below "
                f"offset {offset}"
            )
            fix = restart_fix(self.topic, "If it was recreated on purpose", first=_RESTART_FROM)
            msg = f"{where}: {what}. {fix}. Otherwise point the job at the topic it was reading"
            return StreamError(msg)
        else:
            said = f" ({redact(reason)})" if reason else ""
            what = (
                f"the broker does not have {position} the job is to read from{said}; "
                f"{marks}. The job stops rather than skip to another offset"
            )
            keep = "Check the topic's retention.ms and retention.bytes"
        fix = restart_fix(self.topic, "To go on without them", first=_RESTART_FROM)
        msg = f"{where}: {what}. {fix}. {keep}"
        return StreamError(msg)

    def _check_health(self, received: bool) -> None:
        if self._fatal is not None:
            msg = (
                f"the Kafka client for {self._shown} failed for good: {self._fatal.str()}; "
                f"{_FIX}, then restart the job"
            )
            raise BrokerError(msg)
        if received:
            self._down_since = None
            return
        down_since = self._down_since
        if down_since is None or time.monotonic() - down_since < self.reconnect_timeout:
            return
        try:  # librdkafka does not say when brokers come back: ask for metadata
            self._consumer.list_topics(self.topic, timeout=min(5.0, self.reconnect_timeout))
        except KafkaException as exc:
            raise self._unreachable(exc) from exc
        self._down_since = None

    def _unreachable(self, exc: BaseException) -> BrokerError:
        msg = (
            f"Kafka broker {self._shown} stayed unreachable for {self.reconnect_timeout:.0f} s "
            f"({redact(str(exc))}); {_FIX}, or raise reconnect_timeout"
        )
        return BrokerError(msg)

    def at_end(self) -> bool:
        """Whether every owned partition was read to its end (its high watermark) as of now.

        True when librdkafka reported the end of each one after the last message it handed
        over: the end as of that fetch (a message produced after it is not waited for).
        """
        return self._ended >= self._owned

    def commit(self, positions: Mapping[int, int]) -> None:
        """Commit the engine's checkpointed positions of owned partitions (asynchronously)."""
        offsets = [
            TopicPartition(self.topic, partition, int(position))
            for partition, position in sorted(positions.items())
            if partition in self._owned
        ]
        if not offsets or self._closed:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning("%s: offset commit failed: %s", self.describe(), exc)

    def close(self) -> None:
        """Leave the group (revoking the owned partitions) and release the connections."""
        if self._closed:
            return
        self._closed = True
        self._consumer.close()

    def describe(self) -> str:
        """``kafka://host:port topic 'x' group 'g'`` (no password)."""
        return f"{self._shown} topic {self.topic!r} group {self.group!r}"


class KafkaProducer(StreamProducer):
    """Writes rows to one topic as JSON messages, creating the topic when it is missing.

    ``send`` returns when the broker acknowledged every row (``acks=all``), so a sink can
    count what it sent as durable. ``config`` goes to librdkafka (and the admin client).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        partitions: int = 4,
        config: Mapping[str, str] | None = None,
        reconnect_timeout: float = 30.0,
    ) -> None:
        if partitions < 1:
            msg = f"partitions={partitions} for topic {topic!r}; give 1 or more"
            raise StreamError(msg)
        self.topic = topic
        self.reconnect_timeout = reconnect_timeout
        self._shown = _shown(bootstrap)
        self._errors: list[str] = []
        self._round_robin = 0
        self._closed = False
        base: dict[str, Any] = {"bootstrap.servers": bootstrap, **dict(config or {})}
        self.partitions = self._ensure_topic(AdminClient(base), partitions)
        self._producer = Producer(
            {
                "linger.ms": 5,
                "acks": "all",
                **base,
                "delivery.report.only.error": True,
                "on_delivery": self._delivered,
            }
        )

    def _ensure_topic(self, admin: AdminClient, partitions: int) -> int:
        """The topic's partition count, creating it with ``partitions`` when missing."""
        for _ in range(2):
            existing = self._partition_count(admin)
            if existing is not None:
                if existing != partitions:
                    log.info(
                        "topic %r on %s has %d partitions (not %d): routing over %d",
                        self.topic,
                        self._shown,
                        existing,
                        partitions,
                        existing,
                    )
                return existing
            future = admin.create_topics([NewTopic(self.topic, partitions, -1)])[self.topic]
            try:
                future.result(timeout=self.reconnect_timeout)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if not (
                    isinstance(error, KafkaError) and error.code() == error.TOPIC_ALREADY_EXISTS
                ):
                    msg = (
                        f"cannot create topic {self.topic!r} with {partitions} partitions on "
                        f"{self._shown}: {redact(str(exc))}; create it yourself or fix the "
                        "broker settings"
                    )
                    raise BrokerError(msg) from exc
        return partitions

    def _partition_count(self, admin: AdminClient) -> int | None:
        try:  # all topics: asking for one may auto-create it with the broker's default count
            metadata = admin.list_topics(timeout=self.reconnect_timeout)
        except KafkaException as exc:
            msg = (
                f"Kafka broker {self._shown} stayed unreachable for "
                f"{self.reconnect_timeout:.0f} s ({redact(str(exc))}); {_FIX}"
            )
            raise BrokerError(msg) from exc
        found = metadata.topics.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return len(found.partitions)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(error.str())

    def send(self, frame: pl.DataFrame, *, key: Sequence[str] = ()) -> int:
        """Append ``frame``'s rows, routed by ``key``; returns once all are acknowledged."""
        payloads = encode_json(frame)
        targets = partitions_for(frame, key, self.partitions, self._round_robin)
        self._round_robin = (self._round_robin + frame.height) % self.partitions
        produce, poll = self._producer.produce, self._producer.poll
        for count, (payload, partition) in enumerate(zip(payloads, targets, strict=True)):
            while True:
                try:
                    produce(self.topic, payload, partition=partition)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    poll(0.05)
            if count % 10_000 == 0:
                poll(0)
        self._flush()
        return frame.height

    def _flush(self) -> None:
        left = self._producer.flush(self.reconnect_timeout)
        if left or self._errors:
            errors, self._errors = self._errors, []
            first = f": {errors[0]}" if errors else ""
            msg = (
                f"{left + len(errors)} message(s) to topic {self.topic!r} on {self._shown} were "
                f"not acknowledged within {self.reconnect_timeout:.0f} s{first}; {_FIX}"
            )
            raise BrokerError(msg)

    def close(self) -> None:
        """Wait for outstanding messages (``reconnect_timeout`` at most), then close the client.

        Its connections close now, not when the garbage collector finds the client. Closing
        again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._flush()
        finally:
            self._producer.close()
