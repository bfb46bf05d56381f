"""The embedded durable log: partitioned, append-only, in a local directory, with no server.

:class:`EmbeddedLog` appends Polars frames (or lists of dicts) and reads them back by
partition and offset (:class:`LogBatch`). It survives a crash of the appending process: every
append is a checksummed frame, and a frame cut short is truncated when the log is next opened
or appended to, never returned as data. An append the disk refuses (full, over quota, a file
too large) is a :class:`LogError` that names the log and the fix, and keeps none of its
records: retry it once there is room.

Retention works as Kafka's, per partition: a log opened with ``retention_bytes`` or
``retention`` (an age) deletes a partition's oldest sealed segments each time an append rolls
it to a new segment; the segment being appended to is never deleted and offsets never change
(:meth:`EmbeddedLog.retain` applies limits at once). A project's topics take them from
``[stream] retention`` and ``retention_bytes`` in headrace.toml.

On disk::

    <path>/log.json                      {"format": 1, "partitions": N}
    <path>/schema.arrow                  the log's schema (Arrow IPC file, no rows)
    <path>/.lock                         flock for log.json and schema.arrow
    <path>/partition-0000/.lock          flock for the partition (shared to read, exclusive
                                         to append, recover and delete)
    <path>/partition-0000/<base>.seg     segments; <base> is the first offset, 20 digits

A segment is a run of frames, one per append to the partition: ``b"HRL1"``, the payload
length (u64), the record count (u32) and a CRC32 (u32) of both and of the payload, then the
payload, an Arrow IPC stream of one record batch. See :mod:`~headrace.connectors.log.segment`.
"""

from __future__ import annotations

from headrace.connectors.log.embedded_log import (
    OFFSET_COLUMN,
    PARTITION_COLUMN,
    EmbeddedLog,
    LogBatch,
    Position,
    Positions,
    partition_of,
)
from headrace.connectors.log.segment import LogError

__all__ = [
    "OFFSET_COLUMN",
    "PARTITION_COLUMN",
    "EmbeddedLog",
    "LogBatch",
    "LogError",
    "Position",
    "Positions",
    "partition_of",
]
