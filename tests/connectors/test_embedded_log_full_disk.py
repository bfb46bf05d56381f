"""The embedded log on a full disk: a clear error, nothing torn, nothing lost, a working retry.

The disk is real: a small tmpfs mounted in the test's folder (root only; the tests skip with the
reason otherwise). A filler file in the same tmpfs is deleted to free space for the retry.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import headrace as hr
from _services import unavailable
from headrace.cli import stream
from headrace.cli.app import main
from headrace.connectors.log import OFFSET_COLUMN, PARTITION_COLUMN, EmbeddedLog, LogError
from headrace.connectors.log import partition_of as partition_of_key
from headrace.project.streams import open_topic

KIB = 1024
_FIX = "run the tests as root (as CI does) to fill a real disk"


@contextmanager
def tmpfs(folder: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` mounted on ``folder`` (created), unmounted on the way out."""
    if os.geteuid() != 0:
        unavailable(f"mounting a small tmpfs needs root, this is uid {os.geteuid()}", _FIX)
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)]
    try:
        mounted = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except OSError as exc:
        unavailable(f"cannot mount a small tmpfs: {exc}", _FIX)
    if mounted.returncode:
        why = mounted.stderr.strip() or f"exit code {mounted.returncode}"
        unavailable(f"cannot mount a small tmpfs: mount failed ({why})", _FIX)
    try:
        yield folder
    finally:
        unmounted = subprocess.run(["umount", str(folder)], capture_output=True, check=False)
        if unmounted.returncode:  # a file is still open (a failing test): detach it anyway
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs."""
    with tmpfs(tmp_path / "disk", 1024) as folder:
        yield folder


def filler(disk: Path, kib: int, name: str = "filler") -> Path:
    """A file taking ``kib`` of ``disk``, to delete when space is to be freed."""
    path = disk / name
    path.write_bytes(b"\0" * (kib * KIB))
    return path


def fill_up(disk: Path, name: str = "filler") -> Path:
    """A file taking every byte left on ``disk``."""
    path = disk / name
    with path.open("wb", buffering=0) as file, pytest.raises(OSError, match="No space") as full:
        write_all(file, b"\0" * (4 << 20))
    assert full.value.errno == errno.ENOSPC
    return path


def write_all(file: BinaryIO, data: bytes) -> None:
    """Write ``data`` through an unbuffered file, however many calls it takes."""
    written = 0
    while written < len(data):
        written += file.write(data[written:]) or 0


def records(start: int, count: int, *, key: str | None = None, pad: int = 250) -> pl.DataFrame:
    """``count`` records numbered from ``start``, each about ``pad`` bytes big."""
    seq = pl.int_range(start, start + count, eager=True, dtype=pl.Int64)
    return pl.DataFrame(
        {
            "seq": seq,
            "key": pl.Series(
                [key or f"k{i}" for i in range(start, start + count)], dtype=pl.String
            ),
            "pad": seq.cast(pl.String).str.pad_start(pad, "x"),
        }
    )


def fill_log(
    log: EmbeddedLog, *, start: int = 0, rows: int = 60
) -> tuple[pl.DataFrame, LogError, pl.DataFrame]:
    """Append round-robin until the disk refuses: what went in, the error, the refused batch."""
    appended: list[pl.DataFrame] = [records(start, 0)]
    for _ in range(1000):
        batch = records(start, rows)
        try:
            log.append(batch)
        except LogError as exc:
            return pl.concat(appended), exc, batch
        appended.append(batch)
        start += rows
    raise AssertionError("the disk never filled up")


def stored(log: EmbeddedLog) -> pl.DataFrame:
    """Every record of ``log``, checking that each partition's offsets have no gap."""
    frames = []
    for partition in range(log.partitions):
        start, end = log.start_offset(partition), log.end_offset(partition)
        data = log.read(partition, start, 10**6).data
        assert data[OFFSET_COLUMN].to_list() == list(range(start, end))
        frames.append(data)
    return pl.concat(frames)


def assert_holds(log: EmbeddedLog, expected: pl.DataFrame) -> None:
    got = stored(log).drop(PARTITION_COLUMN, OFFSET_COLUMN).sort("seq")
    assert_frame_equal(got, expected.sort("seq"))


def segment_sizes(path: Path) -> dict[str, int]:
    return {
        str(p.relative_to(path)): p.stat().st_size
        for p in sorted(path.glob("partition-*/*.seg"))
        if p.stat().st_size  # an empty segment left by a refused roll-over holds nothing
    }


def assert_disk_full_error(exc: LogError, log_path: Path) -> None:
    message = str(exc)
    assert isinstance(exc.__cause__, OSError)
    assert exc.__cause__.errno == errno.ENOSPC
    assert re.search(rf"partition \d of the log {re.escape(str(log_path))} failed", message)
    assert "the disk is full (No space left on device)" in message
    assert "nothing of this append was written" in message
    assert f"free space on the disk that holds {log_path}" in message
    assert "[stream] retention or retention_bytes" in message
    assert "then retry" in message
    assert "\n" not in message  # one message


@pytest.mark.parametrize("fsync", [False, True])
def test_a_full_disk_refuses_the_append_whole_and_the_retry_lands_after_the_good_records(
    disk: Path, fsync: bool
) -> None:
    spare = filler(disk, 256)
    with EmbeddedLog(disk / "log", partitions=3, segment_bytes=16 * KIB) as log:
        good, error, refused = fill_log(log)
        assert_disk_full_error(error, disk / "log")
        assert_holds(log, good)
        ends = [log.end_offset(p) for p in range(3)]
        assert sum(ends) == good.height

        with pytest.raises(LogError, match="the disk is full"):  # still full: refused again
            log.append(refused, fsync=fsync)
        assert [log.end_offset(p) for p in range(3)] == ends
        assert_holds(log, good)

        spare.unlink()
        positions = log.append(refused, fsync=fsync)
        for partition in range(3):  # each partition goes on right where it stopped
            offsets = positions.frame.filter(pl.col("partition") == partition)["offset"]
            assert offsets.to_list() == list(
                range(ends[partition], ends[partition] + offsets.len())
            )
        after = pl.concat([good, refused])
        assert_holds(log, after)
        more = records(after.height, 5)
        log.append(more, fsync=fsync)
        assert_holds(log, pl.concat([after, more]))


def test_an_append_refused_in_its_second_partition_keeps_nothing_of_the_first(
    disk: Path,
) -> None:
    """The frame already written to partition 0 is taken back before any reader sees it."""
    small, big = (
        next(f"s{i}" for i in range(100) if partition_of_key(f"s{i}", 2) == 0),
        next(f"b{i}" for i in range(100) if partition_of_key(f"b{i}", 2) == 1),
    )
    spare, room = filler(disk, 256), filler(disk, 8, "room")
    with EmbeddedLog(disk / "log", partitions=2) as log:
        good, _error, _refused = fill_log(log)
        room.unlink()  # room for a small frame, not for a big one
        ends = [log.end_offset(p) for p in range(2)]
        sizes = segment_sizes(disk / "log")
        start = good.height
        mixed = pl.concat(
            [records(start, 1, key=small), records(start + 1, 250, key=big)]
        )  # partition 0 gets 1 record (written first), partition 1 gets 250 (~64 KiB)

        with pytest.raises(LogError) as refused:
            log.append(mixed, key="key")
        assert_disk_full_error(refused.value, disk / "log")
        assert f"partition 1 of the log {disk / 'log'}" in str(refused.value)
        assert [log.end_offset(p) for p in range(2)] == ends
        assert segment_sizes(disk / "log") == sizes  # not a byte of either frame is left
        assert_holds(log, good)

        spare.unlink()
        positions = log.append(mixed, key="key")
        assert positions[0] == (0, ends[0])
        assert [p.offset for p in positions[1:]] == list(range(ends[1], ends[1] + 250))
        assert_holds(log, pl.concat([good, mixed]))


def test_reopening_after_a_refused_append_sees_exactly_the_good_records(disk: Path) -> None:
    spare = filler(disk, 256)
    path = disk / "log"
    with EmbeddedLog(path, partitions=3, segment_bytes=16 * KIB) as log:
        good, _error, refused = fill_log(log)
        sizes = segment_sizes(path)
        with EmbeddedLog(path) as reopened:  # as after a crash: recovery runs on open
            assert segment_sizes(path) == sizes  # it found no torn tail to cut
            assert_holds(reopened, good)
            spare.unlink()
            reopened.append(refused)
        assert_holds(log, pl.concat([good, refused]))  # the first handle sees the new records


def test_a_torn_frame_left_by_a_crash_on_a_full_disk_is_never_read(disk: Path) -> None:
    """A writer that dies between the refused write and its clean-up leaves half a frame."""
    path = disk / "log"
    with EmbeddedLog(path, partitions=1) as log:
        log.append(records(0, 10))
        segment = next(path.glob("partition-0000/*.seg"))
        good_size = segment.stat().st_size
        fill_up(disk, "spare")
        with segment.open("ab", buffering=0) as file:  # a real frame, cut short by the disk
            frame = _frame_of(records(10, 2000))
            with pytest.raises(OSError, match="No space left"):
                write_all(file, frame)
        assert segment.stat().st_size > good_size  # half a frame is on disk
        assert_holds(log, records(0, 10))  # a reader stops before it
        assert log.end_offset(0) == 10
        with EmbeddedLog(path) as reopened:
            assert segment.stat().st_size == good_size  # recovery cut it off
            assert_holds(reopened, records(0, 10))
            (disk / "spare").unlink()
            assert reopened.append(records(10, 5))[0] == (0, 10)
            assert_holds(reopened, records(0, 15))


def _frame_of(frame: pl.DataFrame) -> bytes:
    from headrace.connectors.log.segment import encode_frame

    return encode_frame(frame.to_arrow().combine_chunks().to_batches()[0])


def test_a_full_disk_at_open_or_first_append_is_a_log_error(disk: Path) -> None:
    with EmbeddedLog(disk / "log", partitions=2) as log:
        space = fill_up(disk)
        with pytest.raises(LogError) as first:  # the first append writes the schema
            log.append(records(0, 5))
        message = str(first.value)
        assert f"saving the schema of the log {disk / 'log'}" in message
        assert "the disk is full" in message
        assert "free space on the disk" in message
        assert not list((disk / "log").glob("*.tmp"))
        with pytest.raises(LogError, match=r"opening the log .*the disk is full"):
            EmbeddedLog(disk / "other")
        space.unlink()
        log.append(records(0, 5))
        assert_holds(log, records(0, 5))


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """``ulimit -f``: the kernel refuses (``EFBIG``) writes past ``limit`` bytes of a file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_segment_past_the_file_size_limit_names_segment_bytes(tmp_path: Path) -> None:
    """Python ignores ``SIGXFSZ``, so the limit shows as ``EFBIG`` from the write."""
    with EmbeddedLog(tmp_path / "log", partitions=1) as log:
        log.append(records(0, 1))  # the schema file is written before the limit
        with file_size_limit(64 * KIB):
            good, refused, batch = fill_log(log, start=1)
        assert isinstance(refused.__cause__, OSError)
        assert refused.__cause__.errno == errno.EFBIG
        message = str(refused)
        assert "a segment file reached the file size limit" in message
        assert "smaller segment_bytes" in message
        good = pl.concat([records(0, 1), good])
        assert_holds(log, good)
        assert next((tmp_path / "log").glob("partition-*/*.seg")).stat().st_size <= 64 * KIB
    with (
        EmbeddedLog(tmp_path / "log", segment_bytes=16 * KIB) as smaller,
        file_size_limit(64 * KIB),
    ):
        smaller.append(batch)  # a new segment, under the limit
        assert_holds(smaller, pl.concat([good, batch]))


# -- the ways in: `headrace stream produce` and POST /streams/{topic}/events ------------------


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Path]:
    """A project whose topics live on a 1 MiB tmpfs (``.headrace/streams``)."""
    root = tmp_path / "shop"
    root.mkdir()
    (root / "headrace.toml").write_text(
        '[project]\nname = "shop"\npipelines = []\n[stream]\npartitions = 2\n', encoding="utf-8"
    )
    with tmpfs(root / ".headrace" / "streams", 1024):
        yield root


def run(capsys: pytest.CaptureFixture[str], *args: str, code: int) -> str:
    capsys.readouterr()
    assert main(list(args)) == code
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def test_produce_on_a_full_disk_says_which_events_are_in_and_the_rest_can_follow(
    shop: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream, "CHUNK_ROWS", 100)
    spare = filler(shop / ".headrace" / "streams", 512, ".filler")
    sent = records(0, 2400)
    sent.write_parquet(tmp_path / "events.parquet")
    err = run(capsys, "stream", "produce", "clicks", str(tmp_path / "events.parquet"),
              "--project", str(shop), code=1)  # fmt: skip
    assert err.startswith("error: appending 100 records to partition")
    assert "the disk is full" in err
    assert "Traceback" not in err
    found = re.search(r"([\d,]+) of the 2,400 events \(rows 0 to ([\d,]+) of the input\)", err)
    assert found, err
    done = int(found[1].replace(",", ""))
    assert int(found[2].replace(",", "")) == done - 1
    assert f"send only the rest, from row {done:,}, so that none is appended twice" in err
    with open_topic(hr.Project(shop), "clicks") as log:
        assert_holds(log, sent.head(done))

    spare.unlink()
    sent.slice(done).write_parquet(tmp_path / "rest.parquet")
    run(capsys, "stream", "produce", "clicks", str(tmp_path / "rest.parquet"),
        "--project", str(shop), code=0)  # fmt: skip
    with open_topic(hr.Project(shop), "clicks") as log:
        assert_holds(log, sent)


@pytest.fixture
def server(feature_project: Path) -> Iterator[tuple[str, Path]]:
    """The app on a real Uvicorn server, with the project's topics on a 1 MiB tmpfs."""
    import uvicorn

    from headrace.serving.app import create_app

    with (
        tmpfs(feature_project / ".headrace" / "streams", 1024) as streams,
        hr.Project(feature_project) as project,
    ):
        port = free_port()
        config = uvicorn.Config(create_app(project), host="127.0.0.1", port=port, log_level="error")
        app_server = uvicorn.Server(config)
        thread = threading.Thread(target=app_server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not app_server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}", streams
        finally:
            app_server.should_exit = True
            thread.join(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def push(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_push_on_a_full_disk_is_a_503_with_the_message_and_the_retry_works(
    server: tuple[str, Path], feature_project: Path
) -> None:
    url, streams = server
    spare = filler(streams, 256, ".filler")
    accepted: list[pl.DataFrame] = []
    for start in range(0, 10**6, 60):
        batch = records(start, 60)
        status, body = push(f"{url}/streams/clicks/events", batch.write_json().encode())
        if status != 200:
            break
        accepted.append(batch)
    else:
        raise AssertionError("the disk never filled up")
    assert status == 503, body
    assert body["error"]["type"] == "LogError"
    message = body["error"]["message"]
    assert f"of the log {streams / 'clicks'} failed: the disk is full" in message
    assert "nothing of this append was written" in message
    assert "[stream] retention or retention_bytes" in message
    with open_topic(hr.Project(feature_project), "clicks") as log:
        assert_holds(log, pl.concat(accepted))

    spare.unlink()
    status, body = push(f"{url}/streams/clicks/events", batch.write_json().encode())
    assert (status, body["events"]) == (200, 60)
    with open_topic(hr.Project(feature_project), "clicks") as log:
        assert_holds(log, pl.concat([*accepted, batch]))
