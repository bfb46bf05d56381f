"""The embedded log as a stream source: typed rows, positions = log offsets, no server."""

from __future__ import annotations

import time
from collections.abc import Mapping

import polars as pl

from headrace.connectors.log import OFFSET_COLUMN, PARTITION_COLUMN, EmbeddedLog
from headrace.connectors.stream.base import OFFSET, PARTITION, Polled, StreamConsumer

__all__ = ["LogConsumer"]

_IDLE_SLEEP = 0.005


class LogConsumer(StreamConsumer):
    """Reads the partitions of an :class:`EmbeddedLog` this worker owns, by offset.

    The log stores typed Arrow rows, so nothing is malformed here: appends that do not fit the
    log's schema were refused when they were made.
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
        self._next = {
            p: (self.log.start_offset(p) if pos is None else pos) for p, pos in positions.items()
        }

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
            batch = self.log.read(partition, self._next[partition], share)
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

    def close(self) -> None:
        """Nothing to release (the log stays open for its owner)."""

    def describe(self) -> str:
        """The log's folder."""
        return f"embedded log {self.log.path}"
