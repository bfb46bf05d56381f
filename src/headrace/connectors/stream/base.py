"""What every stream broker hands the streaming engine, and what the engine tells it back.

A *topic* is split into numbered *partitions*; every message has a position (offset) in its
partition, an integer that grows with each message: the Kafka offset, the JetStream stream
sequence, the Redis Streams entry id packed as ``ms * 2**20 + seq`` (see
:func:`pack_redis_id`), the embedded log's offset. A position handed to :meth:`seek` /
returned as ``next_position`` means "the next message to read is at or after this one".

The engine, not the broker, owns the truth about how far it got: positions are stored in the
engine's checkpoint store together with the window state they belong to. A consumer therefore
starts each partition where the engine tells it to (:class:`Assignment`), and commits to the
broker (Kafka offsets, Redis ``XACK``, JetStream ack) only as a courtesy for monitoring.

Partition ownership
-------------------
Brokers with a native group protocol (Kafka consumer groups) decide which worker owns which
partition; the consumer reports changes through the :class:`Rebalance` listener given to it,
*inside* ``poll`` (so the engine can checkpoint a partition before losing it and load one's
state before reading it). A partition can also be *lost* rather than revoked: the group moved
on without this worker (it missed its session or poll deadline), another worker may own the
partition already, and the engine must then forget it without writing anything. Brokers
without a group protocol (embedded log, NATS, Redis) are told their partitions by the
engine's own coordinator (``assign``).

End of input
------------
An empty poll does not mean the owned partitions are read to their end: a fetch may still
be under way. :meth:`StreamConsumer.at_end` says whether they are (``until_end`` runs stop
only then).

Messages that cannot be decoded (not JSON, a value that does not fit the declared type) are
never dropped: they come back in :attr:`Polled.malformed` with their position, raw text and a
reason, and the engine quarantines them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

__all__ = [
    "MALFORMED_SCHEMA",
    "OFFSET",
    "PARTITION",
    "Polled",
    "Rebalance",
    "StreamConsumer",
    "StreamProducer",
    "empty_malformed",
    "pack_redis_id",
    "restart_fix",
    "unpack_redis_id",
]

PARTITION = "_stream_partition"
"""Column of a polled frame: the partition a message came from (Int32)."""
OFFSET = "_stream_offset"
"""Column of a polled frame: the message's position in its partition (Int64)."""

MALFORMED_SCHEMA: Mapping[str, pl.DataType] = {
    PARTITION: pl.Int32(),
    OFFSET: pl.Int64(),
    "_hr_raw": pl.String(),
    "_hr_reason": pl.String(),
    "_hr_detail": pl.String(),
}
"""A message that could not be decoded: where it was, its raw text, a reason code and text."""


def empty_malformed() -> pl.DataFrame:
    """A malformed-message frame with no rows."""
    return pl.DataFrame(schema=dict(MALFORMED_SCHEMA))


_REDIS_SEQ_BITS = 20


def pack_redis_id(entry_id: str | bytes) -> int:
    """A Redis Streams entry id (``"<ms>-<seq>"``) as one growing integer position.

    >>> pack_redis_id("1700000000000-3")
    1782579200000000003
    >>> unpack_redis_id(pack_redis_id("1700000000000-3"))
    '1700000000000-3'
    """
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return (int(ms) << _REDIS_SEQ_BITS) | int(seq or 0)


def unpack_redis_id(position: int) -> str:
    """The Redis Streams entry id of a packed position (inverse of :func:`pack_redis_id`)."""
    return f"{position >> _REDIS_SEQ_BITS}-{position & ((1 << _REDIS_SEQ_BITS) - 1)}"


def restart_fix(topic: str, when: str, *, first: str = "first available position") -> str:
    """How to restart the job reading ``topic`` from what it still holds (for a stop message).

    ``when`` opens the sentence; ``first`` names where each partition is then read from, in
    the broker's words.

    >>> "`headrace stream reset <pipeline>`" in restart_fix("clicks", "To go on")
    True
    """
    return (
        f"{when}, restart the job from what topic {topic} still holds: stop its workers, run "
        f"`headrace stream reset <pipeline>` (it forgets the checkpoints of job "
        f"'<pipeline>/{topic}'; add --source NODE when the pipeline has several streams) and "
        f"run the job again; it then reads every partition from its {first}"
    )


@dataclass(frozen=True)
class Polled:
    """What one poll returned: decoded rows of any owned partitions, and undecodable ones.

    ``data`` has the topic's declared columns plus :data:`PARTITION` and :data:`OFFSET`, in
    position order within each partition. ``next_positions`` gives, for every partition that
    returned something (rows or malformed), where to read next. ``data.height +
    malformed.height`` is the number of messages consumed.
    """

    data: pl.DataFrame
    next_positions: Mapping[int, int]
    malformed: pl.DataFrame = field(default_factory=empty_malformed)

    @property
    def messages(self) -> int:
        """Messages consumed by this poll (rows and malformed)."""
        return self.data.height + self.malformed.height


class Rebalance(Protocol):
    """The engine's side of a partition hand-over (called from inside ``poll``)."""

    def assigned(self, partitions: Sequence[int]) -> Mapping[int, int | None]:
        """The worker now owns ``partitions``: their start positions (None: the beginning)."""
        ...

    def revoked(self, partitions: Sequence[int]) -> None:
        """The worker is about to lose ``partitions``: checkpoint them now."""
        ...

    def lost(self, partitions: Sequence[int]) -> None:
        """The worker has lost ``partitions`` already: forget them, and write nothing for them.

        Another worker may own them and have checkpointed newer state, so a checkpoint now
        could overwrite it. Partitions the worker keeps may be forgotten too; the consumer
        hands them back through :meth:`assigned`.
        """
        ...


class StreamConsumer(ABC):
    """Reads decoded rows from the partitions of one topic that this worker owns."""

    kind: str = "abstract"
    """Short broker name for messages (``log``, ``kafka``, ``nats``, ``redis``)."""

    group_managed: bool = False
    """True when the broker assigns partitions (Kafka groups): the engine must not call
    :meth:`assign`; assignment changes arrive through the :class:`Rebalance` listener."""

    @abstractmethod
    def partitions(self) -> list[int]:
        """Every partition of the topic (also those other workers own)."""

    @abstractmethod
    def assign(self, positions: Mapping[int, int | None]) -> None:
        """Own exactly these partitions from now on, reading each from its position.

        Partitions not in ``positions`` are released. Only for ``group_managed = False``.
        """

    @abstractmethod
    def poll(self, max_messages: int, timeout: float) -> Polled:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first.

        Returns an empty :class:`Polled` on timeout. Connection failures are retried with
        backoff inside; a broker that stays unreachable raises
        :class:`~headrace.errors.BrokerError` naming the broker (no password) and the fix.
        """

    def at_end(self) -> bool:
        """Whether every owned partition has been read up to its end as of now.

        "Its end" is where the partition ended when the broker was last asked (Kafka: its high
        watermark), not a promise that nothing more will come. Called after an empty poll when
        the engine runs ``until_end``. The default, True, is right for consumers whose empty
        poll already means that (they read synchronously: the embedded log, Redis); a consumer
        whose messages arrive in the background must answer from what the broker says.
        """
        return True

    def commit(self, positions: Mapping[int, int]) -> None:  # noqa: B027 - optional hook
        """Tell the broker how far the engine checkpointed (a courtesy; default: nothing)."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group and release connections."""

    def describe(self) -> str:
        """Where the consumer reads from, for messages (never with a password)."""
        return self.kind


class StreamProducer(ABC):
    """Appends rows to a topic, routing each by the text of its key columns."""

    @abstractmethod
    def send(self, frame: pl.DataFrame, *, key: Sequence[str] = ()) -> int:
        """Append ``frame``'s rows (routed by ``key``, round-robin without); rows sent."""

    @abstractmethod
    def close(self) -> None:
        """Flush outstanding messages and release connections."""
