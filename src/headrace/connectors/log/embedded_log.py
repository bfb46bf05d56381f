"""The embedded log: a directory of partitions, appended to from Python, read by offset."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self, overload

import polars as pl
import pyarrow as pa

from headrace.connectors.log.segment import LogError, PartitionFiles, encode_frame, storage_error

PARTITION_COLUMN = "_log_partition"
OFFSET_COLUMN = "_log_offset"
_FORMAT = 1
_DEFAULT_PARTITIONS = 4

log = logging.getLogger("headrace.connectors.log")


class Position(NamedTuple):
    """Where one appended record is: its partition and its offset in that partition."""

    partition: int
    offset: int


class Positions(Sequence[Position]):
    """The positions of the records of one append, in the order they were given."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self._frame = frame
        self._partitions: list[int] | None = None
        self._offsets: list[int] | None = None

    @property
    def frame(self) -> pl.DataFrame:
        """The positions as a frame with ``partition`` and ``offset`` columns."""
        return self._frame

    def __len__(self) -> int:
        return self._frame.height

    @overload
    def __getitem__(self, index: int) -> Position: ...
    @overload
    def __getitem__(self, index: slice) -> list[Position]: ...
    def __getitem__(self, index: int | slice) -> Position | list[Position]:
        if self._partitions is None or self._offsets is None:
            self._partitions = self._frame["partition"].to_list()
            self._offsets = self._frame["offset"].to_list()
        if isinstance(index, slice):
            pairs = zip(self._partitions[index], self._offsets[index], strict=True)
            return [Position(p, o) for p, o in pairs]
        return Position(self._partitions[index], self._offsets[index])

    def __iter__(self) -> Iterator[Position]:
        parts, offsets = self._frame["partition"], self._frame["offset"]
        for partition, offset in zip(parts, offsets, strict=True):
            yield Position(partition, offset)

    def __repr__(self) -> str:
        return f"Positions({len(self)} records)"


@dataclass(frozen=True)
class LogBatch:
    """Records read from one partition and the offset to read from next."""

    data: pl.DataFrame
    next_offset: int


class EmbeddedLog:
    """A durable, partitioned, append-only log in a local directory; no server.

    Records are appended as Polars frames (or lists of dicts) and read back by partition and
    offset. Each row goes to a partition chosen by a stable hash (CRC32) of its ``key`` column,
    or round-robin without a key; offsets in a partition start at 0 and have no gaps.

    Appends are safe from several threads and processes (a lock and an ``flock`` per
    partition). An append that is cut short by a crash is never read: its frame fails its
    checksum and is truncated when the log is opened or next appended to. One call writes one
    frame per partition, so a crash may keep the records of some partitions of a call and
    not the others.

    An append the disk refuses (full: ``ENOSPC``, quota: ``EDQUOT``, file size: ``EFBIG``) is a
    :class:`LogError` naming the log, the partition and the fix, and keeps nothing: the frames
    it wrote to other partitions are taken back before any reader can see them. The records
    appended before stay readable, and once there is room again the same append can simply
    be retried: offsets go on from where they were, with no gap.

    The first append fixes the schema: a later append may leave columns out (they are null)
    or give integers for a float column, but not add a column or change a type.

    Retention, as Kafka's: with ``retention_bytes`` (per partition) or ``retention`` (an age),
    an append that rolls a partition to a new segment then deletes that partition's oldest
    *sealed* segments, while the partition holds more than ``retention_bytes`` (the new
    segment counted) or while they were last written longer than ``retention`` ago. The
    segment being appended to is never deleted, so right after a roll a partition holds at
    most ``retention_bytes`` and never more than that plus one segment (``segment_bytes`` and
    the last append). Age is checked at rolls only: a partition that rolls rarely keeps an
    old segment until its next roll; :meth:`retain` applies limits now. Offsets never
    change; reading a deleted offset is a :class:`LogError` naming the first one left.

    Example::

        >>> import tempfile
        >>> with EmbeddedLog(Path(tempfile.mkdtemp()), partitions=2) as log:
        ...     positions = log.append([{"user": "a", "n": 1}, {"user": "b", "n": 2}], key="user")
        ...     log.read(positions[0].partition, 0).data.columns
        ['_log_partition', '_log_offset', 'user', 'n']
    """

    def __init__(
        self,
        path: Path,
        *,
        partitions: int | None = None,
        segment_bytes: int = 64 << 20,
        retention_bytes: int | None = None,
        retention: timedelta | None = None,
    ) -> None:
        """Open the log in ``path``, creating it (with 4 partitions unless told) if needed.

        Opening recovers from a crash: an incomplete last record is truncated.
        ``retention_bytes`` (per partition) and ``retention`` (an age) are enforced by every
        append that rolls a partition to a new segment (see the class docs); None: no limit.
        They belong to this handle, not to the log on disk: open the log with them wherever
        it is appended to.
        """
        if partitions is not None and partitions < 1:
            msg = f"a log needs at least 1 partition, not {partitions}"
            raise LogError(msg)
        if retention_bytes is not None and retention_bytes < 1:
            msg = f"retention_bytes must be at least 1 (or None: no limit), not {retention_bytes}"
            raise LogError(msg)
        if retention is not None and retention <= timedelta():
            msg = f"retention must be a positive duration (or None: no limit), not {retention}"
            raise LogError(msg)
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self.retention_bytes = retention_bytes
        """Most bytes a partition keeps after a roll (None: no limit)."""
        self.retention = retention
        """Sealed segments last written longer ago are deleted at a roll (None: no limit)."""
        self._files: list[PartitionFiles] = []
        self._root_lock = -1
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._root_lock = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            self._root = _RootLock(self._root_lock)
            self._round_robin_lock = threading.Lock()
            with self._root_locked():
                self.partitions = self._open_meta(partitions)
                self._schema = self._load_schema()
            for n in range(self.partitions):
                self._files.append(PartitionFiles(self.path / f"partition-{n:04d}", n))
            for files in self._files:
                with files.locked(exclusive=True):
                    pass  # recovery: the refresh truncates a torn last frame
        except OSError as exc:
            self.close()
            doing = f"opening the log {self.path}"
            raise storage_error(exc, doing, self.path, "the log was not opened") from exc
        except BaseException:
            self.close()
            raise
        self._round_robin = 0

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the log's file handles."""
        for files in self._files:
            files.close()
        self._files = []
        if self._root_lock >= 0:
            os.close(self._root_lock)
            self._root_lock = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        records: pl.DataFrame | Sequence[Mapping[str, Any]],
        *,
        key: str | None = None,
        fsync: bool = False,
    ) -> Positions:
        """Append ``records``; return where each one went, in the order given.

        With ``key``, rows with equal values of that column go to one partition, in order.
        ``fsync=True`` waits until the data is on disk (slower); otherwise it is flushed to the
        operating system, which survives a crash of the process but not of the machine.

        A write the file system refuses (a full disk, say) raises :class:`LogError` and keeps
        none of ``records``; retry the same call once there is room.
        """
        frame = records if isinstance(records, pl.DataFrame) else _frame_of(records)
        for name in (PARTITION_COLUMN, OFFSET_COLUMN):
            if name in frame.columns:
                msg = f"column {name!r} is reserved by the log; rename it"
                raise LogError(msg)
        if key is not None and key not in frame.columns:
            msg = f"the key column {key!r} is not in the records ({frame.columns})"
            raise LogError(msg)
        frame = self._conform(frame)
        if frame.height == 0:
            return Positions(pl.DataFrame(schema={"partition": pl.Int64, "offset": pl.Int64}))
        route = self._route(frame, key)
        firsts: dict[int, int] = {}
        parts = frame.with_columns(route.alias("__part")).partition_by(
            "__part", as_dict=True, maintain_order=True, include_key=False
        )
        frames: list[tuple[PartitionFiles, bytes, int]] = []
        for (partition, *_), part in sorted(parts.items()):  # the lock order: by partition
            batch = part.to_arrow().combine_chunks().to_batches()[0]
            frames.append((self._files[int(partition)], encode_frame(batch), part.height))
        with ExitStack() as locks:
            for files, _data, _count in frames:
                locks.enter_context(files.locked(exclusive=True))
            for files, data, count in frames:
                try:
                    firsts[files.number] = files.write(
                        data, count, segment_bytes=self.segment_bytes, fsync=fsync
                    )
                except OSError as exc:
                    raise self._append_failed(exc, files, frame.height, firsts, fsync) from exc
            for files, _data, _count in frames:  # the append is whole: retention may run
                if files.rolled(firsts[files.number]):
                    self._retain_rolled(files)
        positions = pl.DataFrame({"partition": route.cast(pl.Int64)}).with_columns(
            offset=pl.int_range(pl.len(), dtype=pl.Int64).over("partition")
            + pl.col("partition").replace_strict(firsts, return_dtype=pl.Int64)
        )
        return Positions(positions)

    def _append_failed(
        self,
        exc: OSError,
        files: PartitionFiles,
        records: int,
        firsts: Mapping[int, int],
        fsync: bool,
    ) -> LogError:
        """Take back the frames this append wrote (``firsts``); the error that says so."""
        kept: list[str] = []
        for partition, first in firsts.items():
            try:
                self._files[partition].undo(first, fsync=fsync)
            except OSError as undo_exc:
                kept.append(f"partition {partition} from offset {first} ({undo_exc})")
        outcome = "nothing of this append was written, the log is as it was"
        if kept:
            outcome = (
                f"the records this append wrote to other partitions could not all be taken "
                f"back, these stay: {'; '.join(kept)}"
            )
        doing = f"appending {records} records to partition {files.number} of the log {self.path}"
        return storage_error(exc, doing, self.path, outcome)

    def _retain_rolled(self, files: PartitionFiles) -> None:
        """Apply the retention limits to ``files``, which just rolled (under its lock).

        The append is written whole by now, so a deletion the file system refuses must not
        fail it (a retry would append the records twice): it is logged, and the next roll or
        :meth:`retain` tries again.
        """
        if self.retention_bytes is None and self.retention is None:
            return
        max_age = None if self.retention is None else self.retention.total_seconds()
        try:
            files.retain(self.retention_bytes, max_age)
        except OSError as exc:
            log.warning(
                "partition %d of the log %s: deleting old segments by retention failed (%s); "
                "the append was written, and the next roll or EmbeddedLog.retain tries again",
                files.number,
                self.path,
                exc,
            )

    def _route(self, frame: pl.DataFrame, key: str | None) -> pl.Series:
        if key is None:
            with self._round_robin_lock:
                start = self._round_robin
                self._round_robin = (start + frame.height) % self.partitions
            return (pl.int_range(start, start + frame.height, eager=True) % self.partitions).cast(
                pl.UInt32
            )
        keys = frame[key]
        unique = keys.drop_nulls().unique()
        targets = [partition_of(value, self.partitions) for value in unique.to_list()]
        return keys.replace_strict(unique, targets, default=0, return_dtype=pl.UInt32)

    def _conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self._schema is None:
            with self._root_locked():
                self._schema = self._load_schema()
                if self._schema is None:
                    self._schema = self._fix_schema(frame)
        schema = self._schema
        for name in frame.columns:
            if name not in schema:
                msg = (
                    f"column {name!r} is not in the log's schema ({', '.join(schema)}); "
                    f"the first append fixed the columns of {self.path}"
                )
                raise LogError(msg)
        columns: list[pl.Expr] = []
        for name, dtype in schema.items():
            given = frame.schema.get(name)
            if given is None:
                columns.append(pl.lit(None, dtype).alias(name))
            elif given == dtype:
                columns.append(pl.col(name))
            elif given == pl.Null or _widens(given, dtype):
                columns.append(pl.col(name).cast(dtype, strict=True))
            else:
                msg = (
                    f"column {name!r} is {given} but the log {self.path} stores it as {dtype}; "
                    f"cast it before appending"
                )
                raise LogError(msg)
        try:
            return frame.select(columns)
        except pl.exceptions.PolarsError as exc:
            msg = f"records do not fit the log's schema of {self.path}: {exc}"
            raise LogError(msg) from exc

    # -- reading ---------------------------------------------------------------------------

    def read(self, partition: int, offset: int, max_records: int = 10_000) -> LogBatch:
        """Up to ``max_records`` records of ``partition`` from ``offset`` on.

        The frame has ``_log_partition`` and ``_log_offset`` columns before the data. Reading
        at or after the end gives no rows; reading below :meth:`start_offset` raises
        :class:`LogError` (retention deleted those records).
        """
        files = self._partition(partition)
        with files.locked(exclusive=False):
            if offset < files.start:
                msg = (
                    f"partition {partition}: offset {offset} was deleted by retention; the "
                    f"first available offset is {files.start}"
                )
                raise LogError(msg)
            tables = files.read(offset, max_records) if max_records > 0 else []
        if self._schema is None:
            with self._root_locked():
                self._schema = self._load_schema()
        rows = sum(t.num_rows for t in tables)
        if rows:
            data = pl.from_arrow(pa.concat_tables(tables))
            assert isinstance(data, pl.DataFrame)
        else:
            data = pl.DataFrame(schema=self._schema or {})
        data = data.select(
            pl.lit(partition, pl.Int32).alias(PARTITION_COLUMN),
            pl.int_range(offset, offset + rows, dtype=pl.Int64).alias(OFFSET_COLUMN),
            pl.all(),
        )
        return LogBatch(data=data, next_offset=offset + rows)

    def start_offset(self, partition: int) -> int:
        """The first offset of ``partition`` still stored (0 until retention deletes any)."""
        files = self._partition(partition)
        with files.locked(exclusive=False):
            return files.start

    def end_offset(self, partition: int) -> int:
        """The offset the next record appended to ``partition`` will get."""
        files = self._partition(partition)
        with files.locked(exclusive=False):
            return files.end

    def _partition(self, partition: int) -> PartitionFiles:
        if not 0 <= partition < self.partitions:
            msg = (
                f"partition {partition} does not exist; {self.path} has partitions "
                f"0..{self.partitions - 1}"
            )
            raise LogError(msg)
        return self._files[partition]

    # -- retention -------------------------------------------------------------------------

    def retain(self, *, max_bytes: int | None = None, max_age: timedelta | None = None) -> int:
        """Delete whole old segments of every partition now; return how many were deleted.

        Oldest first, a sealed segment goes while its partition holds more than ``max_bytes``
        (the active segment counted) or while it was last written longer than ``max_age``
        ago. The segment being appended to is never deleted, so a partition may keep more
        than ``max_bytes``. The limits given here are used, not the log's own
        (``retention_bytes`` and ``retention``, which appends enforce as they roll).
        """
        seconds = max_age.total_seconds() if max_age is not None else None
        deleted = 0
        for files in self._files:
            with files.locked(exclusive=True):
                deleted += files.retain(max_bytes, seconds)
        return deleted

    # -- metadata --------------------------------------------------------------------------

    def _root_locked(self) -> _RootLock:
        return self._root

    def _open_meta(self, partitions: int | None) -> int:
        meta = self.path / "log.json"
        if meta.exists():
            stored = json.loads(meta.read_text())
            if stored.get("format") != _FORMAT:
                msg = f"{self.path} is a log of format {stored.get('format')}, not 1"
                raise LogError(msg)
            count = int(stored["partitions"])
            if partitions is not None and partitions != count:
                msg = (
                    f"{self.path} has {count} partitions, not {partitions}; open it with "
                    f"partitions={count} (or None)"
                )
                raise LogError(msg)
            return count
        count = partitions or _DEFAULT_PARTITIONS
        _write_atomically(meta, json.dumps({"format": _FORMAT, "partitions": count}).encode())
        return count  # an OSError is turned into a LogError by __init__

    def _load_schema(self) -> pl.Schema | None:
        path = self.path / "schema.arrow"
        if not path.exists():
            return None
        with pa.ipc.open_file(path) as reader:
            frame = pl.from_arrow(reader.read_all())
        assert isinstance(frame, pl.DataFrame)
        return frame.schema

    def _fix_schema(self, frame: pl.DataFrame) -> pl.Schema:
        for name, dtype in frame.schema.items():
            if dtype == pl.Null:
                msg = (
                    f"column {name!r} has only nulls in the first append to {self.path}, so "
                    f"its type is unknown; give it a type (pl.Series(..., dtype=...))"
                )
                raise LogError(msg)
        if not frame.columns:
            msg = f"the first append to {self.path} has no columns"
            raise LogError(msg)
        table = frame.clear().to_arrow()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        try:
            _write_atomically(self.path / "schema.arrow", sink.getvalue().to_pybytes())
        except OSError as exc:
            doing = f"saving the schema of the log {self.path} (its first append)"
            outcome = "nothing of this append was written"
            raise storage_error(exc, doing, self.path, outcome) from exc
        return frame.schema


class _RootLock:
    """A thread lock and an exclusive ``flock`` on the log's root lock file (meta, schema)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._thread_lock = threading.Lock()

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()


def partition_of(value: object, partitions: int) -> int:
    """The partition of a key value: CRC32 of its text, so stable across runs and versions."""
    text = value if isinstance(value, str) else repr(value)
    return zlib.crc32(text.encode()) % partitions


def _frame_of(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    try:
        return pl.DataFrame(list(records), infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        msg = f"records cannot be made into a frame: {exc}"
        raise LogError(msg) from exc


def _widens(given: pl.DataType, stored: pl.DataType) -> bool:
    if given.is_integer():
        return stored.is_integer() or stored.is_float()
    return given == pl.Float32 and stored == pl.Float64


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all; an ``OSError`` leaves no temporary file behind."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    try:
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except OSError:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
