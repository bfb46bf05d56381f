"""The embedded log as a stream source: typed rows, positions = log offsets, no server."""

from __future__ import annotations

import time
from collections.abc import Mapping

import polars as pl

from headrace.connectors.log import OFFSET_COLUMN, PARTITION_COLUMN, EmbeddedLog, LogError
from headrace.connectors.stream.base import (
    OFFSET,
    PARTITION,
    Polled,
    StreamConsumer,
    restart_fix,
)
from headrace.errors import StreamError

__all__ = ["LogConsumer"]

_IDLE_SLEEP = 0.005


class LogConsumer(StreamConsumer):
    """Reads the partitions of an :class:`EmbeddedLog` this worker owns, by offset.

    The log stores typed Arrow rows, so nothing is malformed here: appends that do not fit the
    log's schema were refused when they were made.

    A position that retention deleted (the job was stopped, or fell behind, longer than the
    topic keeps events) is never skipped: :meth:`assign` and :meth:`poll` raise a
    :class:`~headrace.errors.StreamError` naming the topic, the partition, the lost offsets
    and the fix.
    """

    kind = "log"

    def __init__(self, log: EmbeddedLog) -> None:
        self.log = log
        self._next: dict[int, int] = {}
        self._turn = 0

    def partitions(self) -> list[int]:
        """Every partition of the log."""
        return list(range(self.log.partitions))

    def assign(self, positions: Mapping[int, int | None]) -> None:
        """Own ``positions``' partitions, reading each from its position (None: the start)."""
        self._next = {}
        for partition, position in positions.items():
            first = self.log.start_offset(partition)
            if position is not None and position < first:
                raise self._deleted(partition, position, first)
            self._next[partition] = first if position is None else position

    def poll(self, max_messages: int, timeout: float) -> Polled:
        """Up to ``max_messages`` rows across owned partitions (fairly, in turn)."""
        deadline = time.monotonic() + timeout
        while True:
            polled = self._read(max_messages)
            if polled.messages or time.monotonic() >= deadline:
                return polled
            time.sleep(_IDLE_SLEEP)

    def _read(self, max_messages: int) -> Polled:
        owned = sorted(self._next)
        if not owned:
            return Polled(pl.DataFrame(), {})
        share = max(1, max_messages // len(owned))
        frames: list[pl.DataFrame] = []
        moved: dict[int, int] = {}
        self._turn = (self._turn + 1) % len(owned)
        for partition in owned[self._turn :] + owned[: self._turn]:
            try:
                batch = self.log.read(partition, self._next[partition], share)
            except LogError as exc:
                first = self.log.start_offset(partition)
                if self._next[partition] < first:  # retention ran while the job was behind
                    raise self._deleted(partition, self._next[partition], first) from exc
                raise
            if batch.data.height:
                frames.append(batch.data)
                self._next[partition] = batch.next_offset
                moved[partition] = batch.next_offset
        if not frames:
            return Polled(pl.DataFrame(), {})
        data = pl.concat(frames, how="vertical").rename(
            {PARTITION_COLUMN: PARTITION, OFFSET_COLUMN: OFFSET}
        )
        return Polled(data, moved)

    def _deleted(self, partition: int, position: int, first: int) -> StreamError:
        """The error for a position below the partition's ``first`` offset left by retention."""
        topic = self.log.path.name  # a project's topic is the folder <state>/streams/<topic>
        fix = restart_fix(topic, "To go on without them", first="first available offset")
        msg = (
            f"topic {topic!r} (embedded log {self.log.path}), partition {partition}: the job "
            f"is to read from offset {position}, but retention deleted offsets {position} to "
            f"{first - 1} ({first - position} events) before it read them; the first "
            f"available offset is {first}. The job stops rather than skip them. {fix}. To "
            f"keep this from happening again, raise [stream] retention or retention_bytes in "
            f"headrace.toml above what the job can fall behind by"
        )
        return StreamError(msg)

    def close(self) -> None:
        """Nothing to release (the log stays open for its owner)."""

    def describe(self) -> str:
        """The log's folder."""
        return f"embedded log {self.log.path}"
