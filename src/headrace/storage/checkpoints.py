"""Streaming checkpoints in the metadata database (SQLite by default, or PostgreSQL).

A checkpoint of a streaming job is, per source partition, the position to resume from and
the serialised window state that goes with it. :meth:`CheckpointStore.save` writes every
partition of one checkpoint in **one transaction**, so positions and state never disagree.

Before a job appends a checkpoint's outputs to the offline log it records an *intent*: the
positions the checkpoint will end at. A job restarted after a crash between the append and
the checkpoint replays exactly up to those positions, so it produces exactly the rows it
appended before (and skips appending them twice; see the streaming engine).

Group membership (for brokers without their own consumer groups) is a heartbeat row per
worker; live members share the partitions (see the engine's coordinator).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from headrace.storage.metadata import MetadataStore
from headrace.storage.schema import stream_checkpoints, stream_intents, stream_members

__all__ = ["CheckpointStore", "SavedPartition"]

SavedPartition = tuple[int, int | None, bytes]
"""What a partition's checkpoint holds: (checkpoint number, resume position, state)."""


class CheckpointStore:
    """Checkpoints, intents and group members of streaming jobs."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def load(self, job: str, partitions: Sequence[int]) -> dict[int, SavedPartition]:
        """The last checkpoint of each of ``partitions`` that has one."""
        table = stream_checkpoints
        query = sa.select(table.c.partition, table.c.seq, table.c.position, table.c.state).where(
            table.c.job == job, table.c.partition.in_(list(partitions))
        )
        with self.metadata.reading() as c:
            rows = c.execute(query).all()
        return {int(r.partition): (int(r.seq), r.position, bytes(r.state)) for r in rows}

    def save(
        self,
        job: str,
        seq: int,
        parts: Mapping[int, tuple[int | None, bytes]],
        *,
        owner: str | None = None,
    ) -> None:
        """Checkpoint ``seq`` of ``parts`` (partition -> (position, state)), atomically.

        Also clears the intents of those partitions: the checkpoint fulfils them. ``owner``
        (a group member) keeps its claim on the partitions.
        """
        now = datetime.now(UTC)
        table = stream_checkpoints
        with self.metadata.writing() as c:
            c.execute(table.delete().where(table.c.job == job, table.c.partition.in_(list(parts))))
            if parts:
                c.execute(
                    table.insert(),
                    [
                        {
                            "job": job,
                            "partition": p,
                            "seq": seq,
                            "position": position,
                            "state": state,
                            "saved_at": now,
                            "owner": owner,
                        }
                        for p, (position, state) in parts.items()
                    ],
                )
            c.execute(
                stream_intents.delete().where(
                    stream_intents.c.job == job, stream_intents.c.partition.in_(list(parts))
                )
            )

    def intend(self, job: str, seq: int, positions: Mapping[int, int]) -> None:
        """Record that checkpoint ``seq`` will end at ``positions`` (before its effects)."""
        table = stream_intents
        with self.metadata.writing() as c:
            c.execute(
                table.delete().where(table.c.job == job, table.c.partition.in_(list(positions)))
            )
            if positions:
                c.execute(
                    table.insert(),
                    [
                        {"job": job, "partition": p, "seq": seq, "position": pos}
                        for p, pos in positions.items()
                    ],
                )

    def intents(self, job: str, partitions: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Unfulfilled intents of ``partitions``: partition -> (checkpoint number, position)."""
        table = stream_intents
        query = sa.select(table.c.partition, table.c.seq, table.c.position).where(
            table.c.job == job, table.c.partition.in_(list(partitions))
        )
        with self.metadata.reading() as c:
            return {int(r.partition): (int(r.seq), int(r.position)) for r in c.execute(query)}

    def heartbeat(self, job: str, member: str, *, expiry: timedelta) -> list[str]:
        """Mark ``member`` alive; the live members of ``job`` (sorted), stale ones removed."""
        now = datetime.now(UTC)
        table = stream_members
        with self.metadata.writing() as c:
            c.execute(table.delete().where(table.c.job == job, table.c.member == member))
            c.execute(table.insert().values(job=job, member=member, heartbeat=now))
            c.execute(table.delete().where(table.c.job == job, table.c.heartbeat < now - expiry))
            rows = c.execute(sa.select(table.c.member).where(table.c.job == job)).all()
        return sorted(str(r.member) for r in rows)

    def claim(
        self, job: str, member: str, partitions: Sequence[int], live: Sequence[str]
    ) -> list[int]:
        """Take the ``partitions`` nobody live owns; the ones ``member`` now owns.

        A partition is free when it has no checkpoint yet, was released, or its owner is not
        among the ``live`` members (it died); claiming one without a checkpoint creates an
        empty one, so that two members cannot both take it.
        """
        table = stream_checkpoints
        now = datetime.now(UTC)
        taken: list[int] = []
        with self.metadata.writing() as c:
            rows = c.execute(
                sa.select(table.c.partition, table.c.owner).where(
                    table.c.job == job, table.c.partition.in_(list(partitions))
                )
            ).all()
            owners = {int(r.partition): r.owner for r in rows}
            for partition in partitions:
                if partition not in owners:
                    c.execute(
                        table.insert().values(
                            job=job,
                            partition=partition,
                            seq=0,
                            position=None,
                            state=b"",
                            saved_at=now,
                            owner=member,
                        )
                    )
                    taken.append(partition)
                    continue
                owner = owners[partition]
                if owner is None or owner == member or owner not in live:
                    c.execute(
                        table.update()
                        .where(table.c.job == job, table.c.partition == partition)
                        .values(owner=member)
                    )
                    taken.append(partition)
        return taken

    def release(self, job: str, member: str, partitions: Sequence[int]) -> None:
        """Give up ``member``'s claim on ``partitions`` (after checkpointing them)."""
        table = stream_checkpoints
        with self.metadata.writing() as c:
            c.execute(
                table.update()
                .where(
                    table.c.job == job,
                    table.c.owner == member,
                    table.c.partition.in_(list(partitions)),
                )
                .values(owner=None)
            )

    def leave(self, job: str, member: str) -> None:
        """Remove ``member`` from the group (its partitions go to the others)."""
        table = stream_members
        with self.metadata.writing() as c:
            c.execute(table.delete().where(table.c.job == job, table.c.member == member))
