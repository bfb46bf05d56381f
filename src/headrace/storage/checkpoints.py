"""Streaming checkpoints in the metadata database (SQLite by default, or PostgreSQL).

A checkpoint of a streaming job is, per source partition, the position to resume from and
the serialised window state that goes with it. :meth:`CheckpointStore.save` writes every
partition of one checkpoint in **one transaction**, so positions and state never disagree.

Before a job appends a checkpoint's outputs to the offline log it records an *intent*: the
positions the checkpoint will end at. A job restarted after a crash between the append and
the checkpoint replays exactly up to those positions, so it produces exactly the rows it
appended before (and skips appending them twice; see the streaming engine).

Window state is a changelog (``stream_state``): each checkpoint stores, per partition and
feature view, the input rows it added, and deletes the earlier ones that no window can reach
any more, in the same transaction as the positions. A checkpoint therefore costs what arrived
since the last one, not the size of the windows; loading concatenates what is left.

Group membership (for brokers without their own consumer groups) is a heartbeat row per
worker; live members share the partitions (see the engine's coordinator).

:meth:`CheckpointStore.reset` forgets a job's checkpoints, intents and state (``headrace
stream reset``): the job then reads those partitions from the first event the broker holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from headrace.errors import StreamError
from headrace.storage.metadata import MetadataStore
from headrace.storage.schema import (
    stream_checkpoints,
    stream_intents,
    stream_members,
    stream_state,
)

__all__ = ["CheckpointStore", "SavedPartition", "StateRows"]

SavedPartition = tuple[int, int | None, bytes]
"""What a partition's checkpoint holds: (checkpoint number, resume position, state)."""

StateRows = tuple[int, str, int, bytes]
"""Rows a checkpoint adds to a view's state: (partition, view, newest time in µs, Arrow IPC)."""


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
        added: Sequence[StateRows] = (),
        expired: Mapping[tuple[int, str], int] | None = None,
    ) -> None:
        """Checkpoint ``seq`` of ``parts`` (partition -> (position, state)), atomically.

        ``added``: the state rows this checkpoint adds; ``expired``: per (partition, view),
        a time in µs: saved rows all older than it are deleted. Also clears the intents of
        those partitions: the checkpoint fulfils them. ``owner`` (a group member) keeps its
        claim on the partitions.
        """
        now = datetime.now(UTC)
        table = stream_checkpoints
        state = stream_state
        with self.metadata.writing() as c:
            for (partition, view), bound in (expired or {}).items():
                c.execute(
                    state.delete().where(
                        state.c.job == job,
                        state.c.partition == partition,
                        state.c.view == view,
                        state.c.newest_us < bound,
                    )
                )
            if added:
                c.execute(
                    state.delete().where(
                        state.c.job == job,
                        state.c.seq == seq,
                        state.c.partition.in_(sorted({a[0] for a in added})),
                    )
                )
                c.execute(
                    state.insert(),
                    [
                        {
                            "job": job,
                            "partition": p,
                            "view": v,
                            "seq": seq,
                            "newest_us": n,
                            "rows": b,
                        }
                        for p, v, n, b in added
                    ],
                )
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

    def state_rows(self, job: str, partitions: Sequence[int]) -> dict[int, dict[str, list[bytes]]]:
        """The saved state rows of ``partitions``.

        Partition -> view -> Arrow IPC pieces, in checkpoint order.
        """
        table = stream_state
        query = (
            sa.select(table.c.partition, table.c.view, table.c.rows)
            .where(table.c.job == job, table.c.partition.in_(list(partitions)))
            .order_by(table.c.partition, table.c.view, table.c.seq)
        )
        saved: dict[int, dict[str, list[bytes]]] = {}
        with self.metadata.reading() as c:
            for row in c.execute(query):
                saved.setdefault(int(row.partition), {}).setdefault(row.view, []).append(
                    bytes(row.rows)
                )
        return saved

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

    def reset(
        self,
        job: str,
        partitions: Sequence[int] | None = None,
        *,
        expiry: timedelta = timedelta(seconds=10),
    ) -> list[int]:
        """Forget ``job``'s checkpoints, intents and state (of ``partitions``, default all).

        One transaction; the partitions whose checkpoint it removed, sorted (a partition that
        had none is not among them). Refused with :class:`~headrace.errors.StreamError` while
        a live member of the job's group (a heartbeat newer than ``expiry``) holds any of its
        partitions: that worker would go on from the positions it holds and checkpoint them
        again.
        """
        checkpoints, members = stream_checkpoints, stream_members
        now = datetime.now(UTC)
        chosen = [checkpoints.c.job == job]
        if partitions is not None:
            chosen.append(checkpoints.c.partition.in_(list(partitions)))
        with self.metadata.writing() as c:
            holders = c.execute(
                sa.select(checkpoints.c.owner, checkpoints.c.partition)
                .join(
                    members,
                    sa.and_(
                        members.c.job == checkpoints.c.job, members.c.member == checkpoints.c.owner
                    ),
                )
                .where(checkpoints.c.job == job, members.c.heartbeat >= now - expiry)
                .order_by(checkpoints.c.partition)
            ).all()
            if holders:
                held = ", ".join(f"{r.partition} ({r.owner})" for r in holders)
                msg = (
                    f"stream job {job!r} is running: live workers hold its partitions {held}; "
                    f"stop its workers first (they checkpoint as they stop), then reset it. A "
                    f"worker that died without stopping counts as live until {expiry} after "
                    f"its last heartbeat"
                )
                raise StreamError(msg)
            removed = c.execute(sa.select(checkpoints.c.partition).where(*chosen)).scalars().all()
            for table in (checkpoints, stream_intents, stream_state):
                where = [table.c.job == job]
                if partitions is not None:
                    where.append(table.c.partition.in_(list(partitions)))
                c.execute(table.delete().where(*where))
        return sorted(int(p) for p in removed)
