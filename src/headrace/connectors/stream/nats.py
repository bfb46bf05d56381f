"""NATS JetStream topics, through nats-py driven from a private event-loop thread.

Layout: a topic is one JetStream stream named after it, with one subject per partition,
``<topic>.<partition>``, so a partition can be owned (and read) on its own. A message's
position is its stream sequence number: it grows within a partition, with gaps where other
partitions' messages sit. The partition count is written into the stream's description
(``headrace partitions=N``) by the producer that creates the stream; NATS servers before 2.10
have no stream metadata.

The consumer reads each owned partition through its own ephemeral pull consumer
(``AckPolicy.NONE``, ``deliver_policy=by_start_sequence`` from the engine's position,
filtered on the partition's subject). Pull requests stay outstanding between polls, so new
messages stream in while the engine works; :meth:`NatsConsumer.poll` hands over what arrived.
The engine's checkpoint is the only record of progress, so :meth:`NatsConsumer.commit` does
nothing and nothing is ever redelivered behind the engine's back. Since messages arrive in
the background, an empty poll does not mean a partition is read to its end;
:meth:`NatsConsumer.at_end` compares the position with the partition's last stream sequence.

A position the stream no longer has is never skipped (JetStream itself would start a consumer
at the first sequence it still has, or past its last one): before reading a partition from a
position the engine gave, the consumer checks it against the stream's state and raises
:class:`~headrace.errors.StreamError` when the stream's limits (``max_age``, ``max_msgs``,
``max_bytes``, ``max_msgs_per_subject``) or a purge deleted sequences at or after it, or when
the stream ends before it (deleted and recreated). JetStream does not say which subject a
deleted message was on, so when the deleted sequences lie between the partition's last read
message (deleted too) and its next one, the consumer cannot tell whether any were the
partition's: it stops rather than guess. To keep that for real gaps, a quiet partition's
position moves up, on empty polls (once a second), to the stream sequence its consumer has
scanned past with nothing of its own pending: other partitions' messages expiring later is
then no alarm.

Connections are headrace's to restore: when one drops, the next poll reconnects with backoff
(0.1 s doubling to 2 s) and re-creates each partition's consumer at the position after the
last message handed over; a server unreachable for ``reconnect_timeout`` seconds raises
:class:`~headrace.errors.BrokerError`. The producer publishes asynchronously (pipelined, then
waits for every acknowledgement) and resends what was not acknowledged, so a row may be stored
twice (at least once) if an acknowledgement, not the message, was lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import orjson
import polars as pl
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from headrace.connectors.stream.base import Polled, StreamConsumer, StreamProducer, restart_fix
from headrace.connectors.stream.decode import (
    MessagePositions,
    decode_json,
    encode_json,
    partitions_for,
)
from headrace.core.redaction import redact
from headrace.errors import BrokerError, ConfigError, StreamError

__all__ = ["NatsConsumer", "NatsProducer"]

log = logging.getLogger("headrace.connectors.stream.nats")

T = TypeVar("T")

_TOPIC = re.compile(r"^[A-Za-z0-9_-]+$")
_PARTITIONS = re.compile(r"\bpartitions=(\d+)\b")
_FIRST_DELAY, _MAX_DELAY = 0.1, 2.0
_PULL_EXPIRES = 5.0
"""Seconds a pull request waits on the server for messages before it answers 408."""
_GRACE = 2.0
_QUIET_EVERY = 1.0
"""Seconds between checks that move quiet partitions' positions forward (on empty polls)."""
"""Seconds past a pull request's expiry without any answer before its consumer is re-made."""
_INACTIVE = 300.0
"""Seconds the server keeps an ephemeral consumer nobody pulls from."""
_WINDOW = 20_000
"""Messages the producer sends before waiting for their acknowledgements."""
_ACK_WAIT = 10.0
_RESTART_FROM = "first available sequence"
"""Where a job restarted from scratch reads each partition from (see restart_fix)."""
_NO_MESSAGE = 10037
"""JetStream's error code for "no message found" (the subject has none)."""
_CONNECTION_ERRORS = (
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.FlushTimeoutError,
    nats.errors.NoRespondersError,
    asyncio.TimeoutError,
    OSError,
)
_FIX = "check that nats-server (with -js) is running and reachable from here"


def _check_topic(topic: str) -> None:
    if not _TOPIC.match(topic):
        msg = (
            f"topic {topic!r} cannot name a JetStream stream; use letters, digits, '-' and '_' only"
        )
        raise ConfigError(msg)


class _LoopThread:
    """An asyncio event loop in a private daemon thread, fed coroutines from other threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError as exc:
            msg = "the NATS client's event loop stopped"
            raise StreamError(msg) from exc

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class _Connection:
    """One NATS connection that comes back after a drop: backoff, then BrokerError."""

    def __init__(self, url: str, reconnect_timeout: float) -> None:
        self.url = url
        self.shown = redact(url)
        self.reconnect_timeout = reconnect_timeout
        self.client: Client | None = None
        self.lost = asyncio.Event()
        self._down_since: float | None = None

    @property
    def alive(self) -> bool:
        return self.client is not None and self.client.is_connected

    async def ensure(self) -> bool:
        """Connected (True: a new connection, whose subscriptions must be made again)."""
        if self.alive:
            return False
        await self.drop()
        if self._down_since is None:
            self._down_since = time.monotonic()
        delay = _FIRST_DELAY
        while True:
            try:
                self.client = await nats.connect(
                    self.url,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.05,
                    connect_timeout=2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_lost,
                    closed_cb=self._on_lost,
                )
            except nats.errors.AuthorizationError as exc:
                msg = (
                    f"NATS server {self.shown} refused the credentials; fix the URL's user:password"
                )
                raise BrokerError(msg) from exc
            except (*_CONNECTION_ERRORS, nats.errors.Error) as exc:
                self.failed(exc)
                log.warning("NATS %s: %s; retrying in %.1f s", self.shown, _text(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            self._down_since = None
            self.lost.clear()
            return True

    def recovered(self) -> None:
        """A request succeeded: the next failure starts a new reconnect_timeout."""
        self._down_since = None

    def failed(self, exc: BaseException) -> None:
        """Raise BrokerError when the server has been unreachable for too long."""
        if self._down_since is None:
            self._down_since = time.monotonic()
        if time.monotonic() - self._down_since >= self.reconnect_timeout:
            msg = (
                f"NATS server {self.shown} stayed unreachable for "
                f"{self.reconnect_timeout:.0f} s ({_text(exc)}); {_FIX}, or raise "
                "reconnect_timeout"
            )
            raise BrokerError(msg) from exc

    async def drop(self) -> None:
        client, self.client = self.client, None
        if client is not None and not client.is_closed:
            try:
                await client.close()
            except (*_CONNECTION_ERRORS, nats.errors.Error):
                log.debug("NATS %s: closing a broken connection failed", self.shown)

    async def _on_error(self, exc: Exception) -> None:
        # Connection trouble is handled (and logged) where it surfaces; anything else here
        # comes from a subscription callback and would otherwise go unseen.
        level = logging.DEBUG if isinstance(exc, _CONNECTION_ERRORS) else logging.WARNING
        log.log(level, "NATS %s: %s", self.shown, _text(exc))

    async def _on_lost(self) -> None:
        self.lost.set()


async def _partition_count(js: JetStreamContext, topic: str, shown: str) -> int:
    try:
        info = await js.stream_info(topic)
    except nats.js.errors.NotFoundError as exc:
        msg = (
            f"JetStream stream {topic!r} does not exist on {shown}; create it with "
            "open_producer(...) (it writes the partition count) or fix the topic name"
        )
        raise StreamError(msg) from exc
    found = _PARTITIONS.search(info.config.description or "")
    if found is None:
        msg = (
            f"JetStream stream {topic!r} on {shown} has no partition count in its description; "
            "set it to 'headrace partitions=N' (nats stream edit) or create the stream with "
            "open_producer(...)"
        )
        raise StreamError(msg)
    return int(found.group(1))


@dataclass
class _Pull:
    """An owned partition: its server-side consumer, pull request and arrived messages."""

    partition: int
    next: int | None
    """Position of the next message to hand to the engine (None: the stream's beginning)."""
    checked: bool = True
    """False while ``next`` is a position from the engine not yet checked against the stream."""
    generation: int = 0
    consumer: str | None = None
    waiting: int = 0
    """Messages the outstanding pull request may still deliver (0: none outstanding)."""
    expires_at: float = 0.0
    answered: bool = True
    subscription: Subscription | None = None
    buffer: deque[tuple[int, bytes]] = field(default_factory=deque)
    received: int = 0
    """Messages the current consumer delivered that arrived here."""


class NatsConsumer(StreamConsumer):
    """Reads the partitions of one JetStream topic that the engine assigns to this worker."""

    kind = "nats"
    group_managed = False

    def __init__(
        self,
        url: str,
        topic: str,
        *,
        schema: Mapping[str, pl.DataType],
        reconnect_timeout: float = 30.0,
    ) -> None:
        _check_topic(topic)
        self.topic, self.schema = topic, dict(schema)
        self._loop = _LoopThread(f"headrace-nats-{topic}")
        self._conn = _Connection(url, reconnect_timeout)
        self._pulls: dict[int, _Pull] = {}
        self._generation = 0
        self._inbox = ""
        self._wake: asyncio.Event | None = None
        self._quiet_at = 0.0
        try:
            self._loop.run(self._start())
        except BaseException:
            self._loop.run(self._conn.drop())
            self._loop.stop()
            raise

    # -- sync API -------------------------------------------------------------------------

    def partitions(self) -> list[int]:
        """Every partition of the topic (the count in the stream's description)."""
        count = self._loop.run(self._with_connection(self._count))
        return list(range(count))

    def assign(self, positions: Mapping[int, int | None]) -> None:
        """Own exactly these partitions, reading each from its position (a stream sequence)."""
        self._loop.run(self._assign(dict(positions)))

    def poll(self, max_messages: int, timeout: float) -> Polled:
        """Up to ``max_messages`` messages of the owned partitions (reconnecting if needed)."""
        values, partitions, offsets = self._loop.run(self._poll(max(1, max_messages), timeout))
        rows, malformed = decode_json(values, MessagePositions(partitions, offsets), self.schema)
        if not values and time.monotonic() - self._quiet_at >= _QUIET_EVERY:
            self._quiet_at = time.monotonic()
            moved = self._loop.run(self._with_connection(self._quiet_moves))
            return Polled(rows, moved, malformed)
        following: dict[int, int] = {}
        for partition, offset in zip(partitions, offsets, strict=True):
            following[partition] = offset + 1
        return Polled(rows, following, malformed)

    def at_end(self) -> bool:
        """Whether every owned partition was handed over up to its last message as of now.

        Asks the server for the last message of each partition's subject (an empty
        partition is at its end).
        """
        return self._loop.run(self._with_connection(self._at_end))

    def commit(self, positions: Mapping[int, int]) -> None:
        """Nothing to do: the consumers do not ack (``AckPolicy.NONE``); the checkpoint rules."""

    def close(self) -> None:
        """Delete this worker's consumers and close the connection."""
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.run(self._close())
        finally:
            self._loop.stop()

    def describe(self) -> str:
        """``nats://host:port stream 'x'`` (no password)."""
        return f"{self._conn.shown} stream {self.topic!r}"

    # -- inside the loop --------------------------------------------------------------------

    async def _start(self) -> None:
        self._wake = asyncio.Event()
        await self._with_connection(self._count)

    async def _count(self) -> int:
        assert self._conn.client is not None
        return await _partition_count(self._conn.client.jetstream(), self.topic, self._conn.shown)

    async def _with_connection(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` on a live connection, reconnecting (and re-subscribing) as needed."""
        while True:
            try:
                if await self._conn.ensure():
                    await self._subscribe()
                await self._refresh()
                result = await action()
            except _CONNECTION_ERRORS as exc:
                self._conn.failed(exc)
                log.warning("%s: %s; reconnecting", self.describe(), _text(exc))
                await self._conn.drop()
            else:
                self._conn.recovered()
                return result

    async def _subscribe(self) -> None:
        client = self._conn.client
        assert client is not None
        self._inbox = client.new_inbox()
        for pull in self._pulls.values():
            # The old connection took its subscriptions along, and its consumers may be gone.
            pull.consumer, pull.subscription = None, None

    async def _refresh(self) -> None:
        """Make a consumer for every owned partition that has none (or a silent one)."""
        now = time.monotonic()
        for pull in self._pulls.values():
            silent = pull.waiting > 0 and not pull.answered and now > pull.expires_at + _GRACE
            if pull.consumer is None or silent:
                await self._make_consumer(pull)

    async def _make_consumer(self, pull: _Pull) -> None:
        client = self._conn.client
        assert client is not None
        js = client.jetstream()
        await self._release(pull)
        if not pull.checked:
            await self._check_start(js, pull)
            pull.checked = True
        self._generation += 1
        pull.generation = self._generation
        pull.buffer.clear()
        pull.waiting, pull.answered, pull.received = 0, True, 0
        # JetStream delivers messages under their own subject (the partition's), so the
        # reply inbox is told apart by its subscription: one per partition and generation.
        pull.subscription = await client.subscribe(
            f"{self._inbox}.{pull.partition}.{pull.generation}",
            cb=functools.partial(self._on_message, pull, pull.generation),
        )
        start = pull.next or 0
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start > 1 else DeliverPolicy.ALL,
            opt_start_seq=start if start > 1 else None,
            ack_policy=AckPolicy.NONE,
            filter_subject=f"{self.topic}.{pull.partition}",
            inactive_threshold=_INACTIVE,
            mem_storage=True,
        )
        try:
            info = await js.add_consumer(self.topic, config)
        except nats.js.errors.NotFoundError as exc:
            raise self._no_stream() from exc
        pull.consumer = info.name

    async def _check_start(self, js: JetStreamContext, pull: _Pull) -> None:
        """Raise StreamError when the stream lost messages at or after ``pull.next``.

        ``pull.next - 1`` is the partition's last message the job read. While that message is
        still stored, nothing after it was deleted by the stream's limits (they delete the
        oldest messages first, per stream or per subject).
        """
        start = max(1, pull.next or 1)
        subject = f"{self.topic}.{pull.partition}"
        try:
            state = (await js.stream_info(self.topic)).state
        except nats.js.errors.NotFoundError as exc:
            raise self._no_stream() from exc
        first, last = state.first_seq, state.last_seq
        if start > last + 1:
            raise self._shorter(pull.partition, start, first, last)
        if first > start:  # the stream's oldest messages, up to first - 1, are gone
            raise self._deleted(pull.partition, start, first, first, last)
        if start == first or await self._stored(js, start - 1, None):
            return
        # The last message the job read went on its own (a per-subject limit, or deleted by
        # hand): so may have the partition's following ones, up to its next stored message.
        following = await self._stored(js, start, subject) or last + 1
        if following > start:
            raise self._deleted(pull.partition, start, following, first, last, alone=True)

    async def _stored(self, js: JetStreamContext, seq: int, subject: str | None) -> int | None:
        """Message ``seq`` if stored (or, with ``subject``, that subject's first from ``seq``)."""
        try:
            found = await js.get_msg(self.topic, seq=seq, subject=subject, next=bool(subject))
        except nats.js.errors.NotFoundError as exc:
            if exc.err_code == _NO_MESSAGE:
                return None
            raise self._no_stream() from exc
        return found.seq

    def _no_stream(self) -> StreamError:
        msg = (
            f"JetStream stream {self.topic!r} does not exist on {self._conn.shown}; create it "
            "with open_producer(...) or fix the topic name"
        )
        return StreamError(msg)

    def _deleted(
        self,
        partition: int,
        start: int,
        following: int,
        first: int,
        last: int,
        *,
        alone: bool = False,
    ) -> StreamError:
        """The error for a position whose messages up to ``following - 1`` may be deleted.

        ``alone``: the stream still has messages before ``start``, but not the partition's
        last one the job read (``start - 1``).
        """
        held = f"it holds sequences {first} to {last}" if last >= first else "it is empty"
        span = f"sequences {start} to {following - 1}"
        if alone:
            what = (
                f"sequence {start - 1}, the partition's last message the job read, was "
                f"deleted (max_msgs_per_subject, or by hand; {held}), and so may have been "
                f"the partition's messages among {span}, before the job read them"
            )
        else:
            read = (
                f", and sequence {start - 1}, the partition's last message the job read,"
                if start > 1
                else ""
            )
            what = (
                f"{span} ({following - start} messages, of any partition){read} were "
                f"deleted before the job read them, by the stream's limits (max_age, "
                f"max_msgs, max_bytes, max_msgs_per_subject) or a purge; {held} now"
            )
        fix = restart_fix(self.topic, "To go on without them", first=_RESTART_FROM)
        msg = (
            f"JetStream stream {self.topic!r} on {self._conn.shown}, partition {partition} "
            f"(subject {self.topic}.{partition}): the job is to read from stream sequence "
            f"{start}, but {what}. JetStream does not say which partition a deleted message "
            f"was on, so events of this one may be among them (none are if it had none in "
            f"{span}); the job stops rather than skip them. "
            f"{fix}. To keep this from "
            f"happening again, raise the stream's limits (nats stream edit {self.topic}) "
            f"above what the job can fall behind by"
        )
        return StreamError(msg)

    def _shorter(self, partition: int, start: int, first: int, last: int) -> StreamError:
        held = f"sequences {first} to {last}" if last >= first else "no messages"
        fix = restart_fix(self.topic, "If it was recreated on purpose", first=_RESTART_FROM)
        msg = (
            f"JetStream stream {self.topic!r} on {self._conn.shown}, partition {partition}: "
            f"the job is to read from stream sequence {start}, but the stream ends at "
            f"sequence {last} (it holds {held}): the stream is shorter than the checkpoint: "
            f"was it deleted and recreated? The job stops rather than skip what the stream "
            f"holds below sequence {start}. "
            f"{fix}. Otherwise point "
            f"the job at the stream it was reading"
        )
        return StreamError(msg)

    async def _release(self, pull: _Pull) -> None:
        """Unsubscribe and delete a partition's consumer (best effort: it may be gone)."""
        subscription, consumer = pull.subscription, pull.consumer
        pull.subscription, pull.consumer = None, None
        client = self._conn.client
        if client is None or not client.is_connected:
            return
        if subscription is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS, nats.errors.Error):
                await subscription.unsubscribe()
        if consumer is not None:
            await _delete_consumer(client.jetstream(), self.topic, consumer)

    async def _assign(self, positions: dict[int, int | None]) -> None:
        for number in list(self._pulls):
            if number not in positions:
                await self._release(self._pulls.pop(number))
        for number, position in sorted(positions.items()):
            pull = self._pulls.get(number)
            if pull is None:
                self._pulls[number] = _Pull(number, position, checked=position is None)
            elif pull.next != position:
                await self._release(pull)
                pull.next, pull.checked = position, position is None
                pull.buffer.clear()
        await self._with_connection(_nothing)

    async def _poll(
        self, max_messages: int, timeout: float
    ) -> tuple[list[bytes | None], list[int], list[int]]:
        deadline = time.monotonic() + timeout
        assert self._wake is not None
        while True:
            await self._with_connection(lambda: self._request(max_messages))
            taken = self._take(max_messages)
            if taken[0]:
                return taken
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return taken
            self._wake.clear()
            lost = asyncio.ensure_future(self._conn.lost.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({lost, woken}, timeout=remaining, return_when="FIRST_COMPLETED")
            lost.cancel()
            woken.cancel()

    async def _request(self, max_messages: int) -> None:
        """Send a pull request for every partition that has none outstanding."""
        client = self._conn.client
        assert client is not None
        share = max(1, max_messages // max(1, len(self._pulls)))
        now = time.monotonic()
        for pull in self._pulls.values():
            if pull.consumer is None or len(pull.buffer) >= share:
                continue
            if pull.waiting > 0 and now < pull.expires_at + _GRACE:
                continue  # outstanding (a silent one is re-made by _refresh after the grace)
            request = {"batch": share, "expires": int(_PULL_EXPIRES * 1e9)}
            await client.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.topic}.{pull.consumer}",
                orjson.dumps(request),
                reply=f"{self._inbox}.{pull.partition}.{pull.generation}",
            )
            pull.waiting, pull.answered, pull.expires_at = share, False, now + _PULL_EXPIRES

    async def _quiet_moves(self) -> dict[int, int]:
        """Move each quiet partition's position up to where its consumer has looked.

        Sequences are stream-wide, so a partition without new messages would otherwise keep
        a position below other partitions' messages, and the stream's limits deleting those
        would look, at the next start, like deleted messages of its own. A partition's
        consumer reports the stream sequence it has scanned up to (skipping the others'
        messages); with nothing of the partition pending and every message it delivered
        arrived and handed over, nothing of the partition at or below it is unread.
        """
        client = self._conn.client
        assert client is not None
        js = client.jetstream()
        moved: dict[int, int] = {}
        for pull in self._pulls.values():
            if pull.buffer or pull.consumer is None or not pull.checked:
                continue
            info = await js.consumer_info(self.topic, pull.consumer)
            seen = info.delivered
            if seen is None or info.num_pending or pull.buffer:
                continue
            if seen.consumer_seq != pull.received or not seen.stream_seq:
                continue  # delivered messages still on their way
            if seen.stream_seq + 1 > (pull.next or 1):
                pull.next = moved[pull.partition] = seen.stream_seq + 1
        return moved

    async def _at_end(self) -> bool:
        client = self._conn.client
        assert client is not None
        js = client.jetstream()
        for pull in self._pulls.values():
            if pull.buffer:
                return False
            subject = f"{self.topic}.{pull.partition}"
            try:
                last = await js.get_last_msg(self.topic, subject)
            except nats.js.errors.NotFoundError as exc:
                if exc.err_code == _NO_MESSAGE:
                    continue  # nothing in the partition yet
                msg = (
                    f"JetStream stream {self.topic!r} does not exist on {self._conn.shown}; "
                    "create it with open_producer(...) or fix the topic name"
                )
                raise StreamError(msg) from exc
            if last.seq is not None and (pull.next or 0) <= last.seq:
                return False
        return True

    def _take(self, max_messages: int) -> tuple[list[bytes | None], list[int], list[int]]:
        values: list[bytes | None] = []
        partitions: list[int] = []
        offsets: list[int] = []
        for pull in self._pulls.values():
            while pull.buffer and len(values) < max_messages:
                sequence, data = pull.buffer.popleft()
                values.append(data)
                partitions.append(pull.partition)
                offsets.append(sequence)
                pull.next = sequence + 1
        return values, partitions, offsets

    async def _on_message(self, pull: _Pull, generation: int, message: Msg) -> None:
        if self._pulls.get(pull.partition) is not pull or pull.generation != generation:
            return  # an answer to a consumer we replaced or released
        pull.answered = True
        status = message.headers.get("Status") if message.headers else None
        if status is None:
            pull.buffer.append((_stream_sequence(message.reply), message.data))
            pull.waiting -= 1
            pull.received += 1
        elif status == "503":  # no responders: the consumer is gone (server restart, expiry)
            pull.consumer, pull.waiting = None, 0
        elif status != "100":  # 404/408: no (more) messages; 409: request limits
            pull.waiting = 0
        assert self._wake is not None
        self._wake.set()

    async def _close(self) -> None:
        for pull in self._pulls.values():
            await self._release(pull)
        await self._conn.drop()


class NatsProducer(StreamProducer):
    """Publishes rows of one topic to ``<topic>.<partition>``, creating the stream if missing.

    A new stream gets ``partitions`` subjects and file storage; an existing one keeps its
    partition count. ``send`` returns when JetStream acknowledged every row.
    """

    def __init__(
        self,
        url: str,
        topic: str,
        *,
        partitions: int = 4,
        reconnect_timeout: float = 30.0,
    ) -> None:
        _check_topic(topic)
        if partitions < 1:
            msg = f"partitions={partitions} for topic {topic!r}; give 1 or more"
            raise ConfigError(msg)
        self.topic = topic
        self._loop = _LoopThread(f"headrace-nats-producer-{topic}")
        self._conn = _Connection(url, reconnect_timeout)
        self._round_robin = 0
        try:
            self.partitions = self._loop.run(self._ensure_stream(partitions))
        except BaseException:
            self._loop.run(self._conn.drop())
            self._loop.stop()
            raise

    async def _live(self) -> Client:
        while True:
            try:
                await self._conn.ensure()
            except _CONNECTION_ERRORS as exc:
                self._conn.failed(exc)
                continue
            assert self._conn.client is not None
            return self._conn.client

    async def _ensure_stream(self, partitions: int) -> int:
        while True:
            client = await self._live()
            js = client.jetstream()
            try:
                try:
                    return await _partition_count(js, self.topic, self._conn.shown)
                except StreamError as exc:
                    if not isinstance(exc.__cause__, nats.js.errors.NotFoundError):
                        raise
                await js.add_stream(
                    StreamConfig(
                        name=self.topic,
                        subjects=[f"{self.topic}.*"],
                        description=f"headrace partitions={partitions}",
                    )
                )
            except nats.js.errors.BadRequestError:
                continue  # created meanwhile by another producer: read its count
            except _CONNECTION_ERRORS as exc:
                self._conn.failed(exc)
                await self._conn.drop()
            else:
                return partitions

    def send(self, frame: pl.DataFrame, *, key: Sequence[str] = ()) -> int:
        """Append ``frame``'s rows, routed by ``key``; returns once JetStream acked all."""
        payloads = encode_json(frame)
        targets = partitions_for(frame, key, self.partitions, self._round_robin)
        self._round_robin = (self._round_robin + frame.height) % self.partitions
        subjects = [f"{self.topic}.{target}" for target in range(self.partitions)]
        self._loop.run(self._publish([subjects[t] for t in targets], payloads))
        return frame.height

    async def _publish(self, subjects: list[str], payloads: list[bytes]) -> None:
        for start in range(0, len(payloads), _WINDOW):
            todo = list(range(start, min(start + _WINDOW, len(payloads))))
            while todo:
                todo = await self._publish_window(subjects, payloads, todo)

    async def _publish_window(
        self, subjects: list[str], payloads: list[bytes], todo: list[int]
    ) -> list[int]:
        """Publish ``todo`` and wait for their acks; returns those to send again."""
        client = await self._live()
        inbox = client.new_inbox()
        acked: set[int] = set()
        errors: list[str] = []
        done = asyncio.Event()

        async def on_ack(message: Msg) -> None:
            index = int(message.subject.rpartition(".")[2])
            status = message.headers.get("Status") if message.headers else None
            if status is None and b'"error"' not in message.data:
                acked.add(index)
            else:
                errors.append(status or message.data.decode(errors="replace"))
            if len(acked) + len(errors) >= len(todo):
                done.set()

        try:
            subscription = await client.subscribe(f"{inbox}.*", cb=on_ack)
            for index in todo:
                await client.publish(subjects[index], payloads[index], reply=f"{inbox}.{index}")
            await client.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), _ACK_WAIT)
            await subscription.unsubscribe()
        except _CONNECTION_ERRORS as exc:
            self._conn.failed(exc)
            log.warning("NATS %s: %s; reconnecting", self._conn.shown, _text(exc))
            await self._conn.drop()
        left = [index for index in todo if index not in acked]
        if not left:
            self._conn.recovered()
        else:
            self._conn.failed(StreamError(errors[0] if errors else "no acknowledgement"))
            await asyncio.sleep(_FIRST_DELAY)
        return left

    def close(self) -> None:
        """Close the connection (every send already waited for its acknowledgements)."""
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.run(self._conn.drop())
        finally:
            self._loop.stop()


async def _nothing() -> None:
    return None


async def _delete_consumer(js: JetStreamContext, stream: str, consumer: str) -> None:
    try:
        await js.delete_consumer(stream, consumer)
    except (*_CONNECTION_ERRORS, nats.errors.Error):
        log.debug("NATS consumer %s of %s was already gone", consumer, stream)


def _stream_sequence(reply: str) -> int:
    """The stream sequence in a JetStream ack subject (``$JS.ACK.<stream>.<consumer>.<n>...``)."""
    tokens = reply.split(".")
    # v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (9 tokens);
    # v2 adds <domain>.<account hash> after ACK and a random token at the end.
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


def _text(exc: BaseException) -> str:
    return redact(str(exc).strip() or type(exc).__name__)
