"""Frames and segment files of one partition of the embedded log.

A segment file holds frames back to back. A frame is one append to one partition::

    magic  b"HRL1"      4 bytes
    length  u64 LE      8 bytes   payload size
    count   u32 LE      4 bytes   records in the payload
    crc     u32 LE      4 bytes   CRC32 of length, count and payload
    payload            length     an Arrow IPC stream (schema + one record batch)

A frame that is cut short or whose checksum does not match ends the valid data of the active
(last) segment: it is a torn write and is truncated by the next writer, never returned.

A write the operating system refuses (a full disk: ``ENOSPC``, ``EDQUOT``, ``EFBIG``) is
truncated away at once by :meth:`PartitionFiles.write`, which then raises the ``OSError``;
:func:`storage_error` turns it into a :class:`LogError` that names the folder and the fix.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from headrace.errors import SourceError

MAGIC = b"HRL1"
_HEADER = struct.Struct("<4sQII")
HEADER_BYTES = _HEADER.size
SUFFIX = ".seg"


class LogError(SourceError):
    """The embedded log cannot be read or written as asked (offset gone, schema, corruption).

    When the file system refused a write (a full disk, say), ``__cause__`` is its ``OSError``.
    """


_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up"}


def storage_error(exc: OSError, doing: str, folder: Path, outcome: str) -> LogError:
    """A :class:`LogError` for ``exc``, met while ``doing`` (e.g. "appending 5 records to ...").

    ``folder`` is where the disk space is needed; ``outcome`` says what the log kept (e.g.
    "nothing of this append was written"). A full disk or quota names the two fixes, freeing
    space or deleting old segments by retention; a file too large names ``segment_bytes``.
    Raise it ``from exc``.
    """
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL:
        why = f"{_FULL[exc.errno]} ({reason})"
        fix = (
            f"free space on the disk that holds {folder}, or delete old segments by retention "
            f"(for a project's topic set [stream] retention or retention_bytes in headrace.toml, "
            f"enforced as segments roll, and apply them now with "
            f"headrace.project.streams.apply_retention; otherwise open the log with retention "
            f"or retention_bytes, or call EmbeddedLog.retain), then retry"
        )
    elif exc.errno == errno.EFBIG:
        why = f"a segment file reached the file size limit ({reason})"
        fix = (
            "open the log with a smaller segment_bytes so that segments roll over sooner, or "
            "raise the limit (ulimit -f), then retry"
        )
    else:
        why = f"the file system refused it ({reason})"
        fix = f"check that {folder} exists and is writable, then retry"
    return LogError(f"{doing} failed: {why}; {outcome}. To fix it, {fix}")


def encode_frame(batch: pa.RecordBatch) -> bytes:
    """One frame holding ``batch``: header, then the batch as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    payload: bytes = sink.getvalue().to_pybytes()
    fields = struct.pack("<QI", len(payload), batch.num_rows)
    crc = zlib.crc32(payload, zlib.crc32(fields))
    return _HEADER.pack(MAGIC, len(payload), batch.num_rows, crc) + payload


def decode_payload(payload: bytes) -> pa.Table:
    """The records of a frame's payload."""
    return pa.ipc.open_stream(payload).read_all()


@dataclass
class Segment:
    """The index of one segment file: where each frame starts and its first offset."""

    path: Path
    base: int
    starts: list[int] = field(default_factory=list)  # first offset of each frame
    positions: list[int] = field(default_factory=list)  # byte position of each frame
    end: int = 0  # offset after the last indexed record
    size: int = 0  # bytes indexed (valid data)
    sealed: bool = False  # a later segment exists: nothing is ever written here again

    def __post_init__(self) -> None:
        self.end = self.base


def segment_name(base: int) -> str:
    """The file name of the segment whose first record has offset ``base``."""
    return f"{base:020d}{SUFFIX}"


def _scan(segment: Segment, *, verify: bool) -> None:
    """Index the frames of ``segment`` after ``segment.size``; stop at the first bad one."""
    with segment.path.open("rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        file.seek(segment.size)
        while True:
            header = file.read(HEADER_BYTES)
            if len(header) < HEADER_BYTES:
                return
            magic, length, count, crc = _HEADER.unpack(header)
            if magic != MAGIC or segment.size + HEADER_BYTES + length > file_size:
                return
            if verify:
                payload = file.read(length)
                if zlib.crc32(payload, zlib.crc32(header[4:16])) != crc:
                    return
            else:
                file.seek(length, os.SEEK_CUR)
            segment.starts.append(segment.end)
            segment.positions.append(segment.size)
            segment.end += count
            segment.size += HEADER_BYTES + length


class PartitionFiles:
    """The segment files of one partition, with a thread lock and a file lock around them.

    Every method takes the locks itself; the index is refreshed from disk under the file lock
    so that appends by other processes (and their retention) are seen.
    """

    def __init__(self, directory: Path, number: int) -> None:
        self.directory = directory
        self.number = number
        directory.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()
        self._lock_fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        self.segments: list[Segment] = []

    def close(self) -> None:
        """Release the lock file."""
        os.close(self._lock_fd)

    @contextmanager
    def locked(self, *, exclusive: bool) -> Iterator[None]:
        """Hold this partition (thread lock + ``flock``) with an index fresh from disk."""
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                self._refresh(repair=exclusive)
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _refresh(self, *, repair: bool) -> None:
        names = sorted(p.name for p in self.directory.iterdir() if p.name.endswith(SUFFIX))
        present = set(names)
        self.segments = [s for s in self.segments if s.path.name in present]
        known = {s.path.name for s in self.segments}
        for name in names:
            if name not in known:
                self.segments.append(Segment(self.directory / name, int(name[: -len(SUFFIX)])))
        self.segments.sort(key=lambda s: s.base)
        for index, segment in enumerate(self.segments):
            last = index == len(self.segments) - 1
            if segment.sealed:
                continue
            _scan(segment, verify=last)
            segment.sealed = not last
            if index and self.segments[index - 1].end != segment.base:
                msg = (
                    f"partition {self.number}: segment {segment.path.name} starts at offset "
                    f"{segment.base} but the one before ends at {self.segments[index - 1].end}; "
                    f"the log directory {self.directory} is damaged"
                )
                raise LogError(msg)
            if last and repair and segment.path.stat().st_size > segment.size:
                os.truncate(segment.path, segment.size)  # a torn write: drop it

    @property
    def start(self) -> int:
        """The first offset still stored."""
        return self.segments[0].base if self.segments else 0

    @property
    def end(self) -> int:
        """The offset the next record will get."""
        return self.segments[-1].end if self.segments else 0

    def write(self, frame: bytes, count: int, *, segment_bytes: int, fsync: bool) -> int:
        """Append one frame (call under the exclusive lock); return its first offset.

        The frame is written at the end of the indexed data, whatever the file holds after it.
        When the file system refuses (a full disk, say), what was written of the frame is
        truncated away and the ``OSError`` is raised: the partition is as it was before.
        """
        if not self.segments or (
            self.segments[-1].size >= segment_bytes and self.segments[-1].starts
        ):
            path = self.directory / segment_name(self.end)
            path.touch()
            if fsync:
                _fsync_directory(self.directory)
            if self.segments:
                self.segments[-1].sealed = True
            self.segments.append(Segment(path, self.end))
        segment = self.segments[-1]
        _write_at(segment.path, frame, segment.size, fsync=fsync)
        first = segment.end
        segment.starts.append(first)
        segment.positions.append(segment.size)
        segment.end += count
        segment.size += len(frame)
        return first

    def undo(self, first: int, *, fsync: bool) -> None:
        """Take back the last frame, which :meth:`write` gave ``first``, under the same lock.

        Used when a later partition of one append fails, so that the append keeps nothing. An
        ``OSError`` of the truncation is raised and the frame stays (whole and readable).
        """
        segment = self.segments[-1]
        if not segment.starts or segment.starts[-1] != first:
            msg = f"partition {self.number}: offset {first} does not start the last frame"
            raise LogError(msg)
        position = segment.positions[-1]
        _truncate(segment.path, position, fsync=fsync)
        segment.starts.pop()
        segment.positions.pop()
        segment.end = first
        segment.size = position

    def read(self, offset: int, max_records: int) -> list[pa.Table]:
        """The tables of frames holding ``[offset, offset + max_records)`` (sliced), in order."""
        tables: list[pa.Table] = []
        wanted = max_records
        index = bisect.bisect_right([s.base for s in self.segments], offset) - 1
        while wanted > 0 and 0 <= index < len(self.segments):
            segment = self.segments[index]
            tables.extend(_read_segment(segment, offset, wanted, self.number))
            taken = min(segment.end - offset, wanted)
            if taken > 0:
                offset += taken
                wanted -= taken
            index += 1
        return tables

    def rolled(self, first: int) -> bool:
        """Whether the frame :meth:`write` gave ``first`` began a segment, sealing the one before.

        True once per roll (the moment a segment becomes deletable by retention).
        """
        return len(self.segments) > 1 and self.segments[-1].starts[:1] == [first]

    def retain(self, max_bytes: int | None, max_age: float | None) -> int:
        """Delete the oldest sealed segments (call under the exclusive lock); return how many.

        Oldest first, a segment goes while the partition holds more than ``max_bytes`` (the
        active segment counted) or while it was last written more than ``max_age`` seconds
        ago. The active (last) segment always stays. An ``OSError`` of a deletion is raised;
        the segments deleted before it stay deleted.
        """
        now = time.time()
        total = sum(s.size for s in self.segments)
        deleted = 0
        while len(self.segments) > 1:
            oldest = self.segments[0]
            too_big = max_bytes is not None and total > max_bytes
            too_old = max_age is not None and now - oldest.path.stat().st_mtime > max_age
            if not (too_big or too_old):
                break
            oldest.path.unlink()
            total -= oldest.size
            self.segments.pop(0)
            deleted += 1
        return deleted


def _read_segment(segment: Segment, offset: int, wanted: int, partition: int) -> list[pa.Table]:
    first = bisect.bisect_right(segment.starts, offset) - 1
    if first < 0 or offset >= segment.end:
        return []
    last = first
    while last + 1 < len(segment.starts) and segment.starts[last + 1] < offset + wanted:
        last += 1
    begin = segment.positions[first]
    stop = segment.positions[last + 1] if last + 1 < len(segment.positions) else segment.size
    with segment.path.open("rb") as file:
        file.seek(begin)
        data = file.read(stop - begin)
    tables: list[pa.Table] = []
    position = 0
    for frame in range(first, last + 1):
        _magic, length, _count, crc = _HEADER.unpack_from(data, position)
        payload = data[position + HEADER_BYTES : position + HEADER_BYTES + length]
        fields = data[position + 4 : position + 16]
        if len(payload) < length or zlib.crc32(payload, zlib.crc32(fields)) != crc:
            msg = (
                f"partition {partition}: the frame at byte {begin + position} of "
                f"{segment.path} fails its checksum; the segment is corrupt"
            )
            raise LogError(msg)
        table = decode_payload(payload)
        skip = max(offset - segment.starts[frame], 0)
        take = min(table.num_rows - skip, wanted)
        tables.append(table.slice(skip, take))
        offset += take
        wanted -= take
        position += HEADER_BYTES + length
    return tables


def _write_at(path: Path, data: bytes, position: int, *, fsync: bool) -> None:
    """Write ``data`` at ``position`` of ``path``; on an ``OSError`` cut the file back there."""
    fd = os.open(path, os.O_WRONLY)
    try:
        written = 0
        while written < len(data):
            written += os.pwrite(fd, memoryview(data)[written:], position + written)
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, position)
        except OSError as cleanup:  # readers and the next writer ignore a torn frame anyway
            exc.add_note(f"truncating {path} back to byte {position} failed too: {cleanup}")
        raise
    finally:
        os.close(fd)


def _truncate(path: Path, size: int, *, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
