"""What the streaming engine needs from the layers around it (wired by headrace.project)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Protocol

import polars as pl

from headrace.core.contract import Contract
from headrace.core.features import FeatureView

__all__ = ["Checkpoints", "OfflineLog", "OnlineSink", "RowValidator"]


class RowValidator(Protocol):
    """Runs a contract's row-level checks: (valid rows, quarantined rows with reasons)."""

    def __call__(self, data: pl.DataFrame, contract: Contract) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Split ``data``; extra columns (positions) are kept on both sides."""
        ...


class OnlineSink(Protocol):
    """The online store, written with final feature rows (ordered, idempotent upserts)."""

    def write(self, view: FeatureView, rows: pl.DataFrame) -> None:
        """Upsert the newest row per entity of ``rows``."""
        ...


class OfflineLog(Protocol):
    """Append-only datasets written once per checkpoint, exactly once."""

    def committed(self, dataset: str, writer: str) -> int | None:
        """The last checkpoint number ``writer`` appended to ``dataset`` (None: none)."""
        ...

    def append(self, dataset: str, frame: pl.DataFrame, writers: Mapping[str, int]) -> None:
        """Append ``frame`` in one commit recording checkpoint numbers of ``writers``."""
        ...


class Checkpoints(Protocol):
    """Positions and state per partition, saved atomically (see headrace.storage)."""

    def load(self, job: str, partitions: Sequence[int]) -> dict[int, tuple[int, int | None, bytes]]:
        """Partition -> (checkpoint number, position, state)."""
        ...

    def save(
        self,
        job: str,
        seq: int,
        parts: Mapping[int, tuple[int | None, bytes]],
        *,
        owner: str | None = None,
        added: Sequence[tuple[int, str, int, bytes]] = (),
        expired: Mapping[tuple[int, str], int] | None = None,
    ) -> None:
        """Checkpoint ``seq``: partition -> (position, state), in one transaction.

        With it: the views' state rows it ``added`` (partition, view, newest µs, Arrow IPC)
        and the deletion of saved rows older than ``expired`` (per (partition, view), µs).
        """
        ...

    def state_rows(self, job: str, partitions: Sequence[int]) -> dict[int, dict[str, list[bytes]]]:
        """Saved state rows: partition -> view -> Arrow IPC pieces."""
        ...

    def intend(self, job: str, seq: int, positions: Mapping[int, int]) -> None:
        """Record where checkpoint ``seq`` will end, before its effects."""
        ...

    def intents(self, job: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Unfulfilled intents: partition -> (checkpoint number, position)."""
        ...

    def heartbeat(self, job: str, member: str, *, expiry: timedelta) -> list[str]:
        """Mark ``member`` alive; the live members, sorted."""
        ...

    def claim(
        self, job: str, member: str, partitions: Sequence[int], live: Sequence[str]
    ) -> list[int]:
        """Take the partitions no live member owns; those ``member`` got."""
        ...

    def release(self, job: str, member: str, partitions: Sequence[int]) -> None:
        """Give up ``member``'s claim on ``partitions``."""
        ...

    def leave(self, job: str, member: str) -> None:
        """Remove ``member`` from the group."""
        ...
