"""The embedded durable log: round trips, partitioning, crash recovery, concurrency, retention."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from headrace.connectors import log as log_package
from headrace.connectors.log import (
    OFFSET_COLUMN,
    PARTITION_COLUMN,
    EmbeddedLog,
    LogError,
    Position,
    partition_of,
)
from headrace.errors import SourceError


def read_all(log: EmbeddedLog, partition: int, batch: int = 1000) -> pl.DataFrame:
    frames = []
    offset = log.start_offset(partition)
    while True:
        got = log.read(partition, offset, batch)
        if got.data.height == 0:
            break
        frames.append(got.data)
        offset = got.next_offset
    return pl.concat(frames) if frames else log.read(partition, offset).data


def events(start: int, count: int, writer: int = 0) -> pl.DataFrame:
    seq = pl.int_range(start, start + count, eager=True)
    return pl.DataFrame(
        {
            "writer": pl.repeat(writer, count, eager=True, dtype=pl.Int64),
            "seq": seq,
            "key": seq.cast(pl.String).str.slice(-1),
            "check": seq * 7,
        }
    )


def test_exports_match_all() -> None:
    public = {n for n in vars(log_package) if not n.startswith("_") and n != "annotations"}
    public -= {"embedded_log", "segment"}
    assert public == set(log_package.__all__)


def test_round_trip(tmp_path: Path) -> None:
    data = events(0, 100)
    with EmbeddedLog(tmp_path, partitions=3) as log:
        positions = log.append(data)
        assert len(positions) == 100
        back = pl.concat([read_all(log, p) for p in range(3)])
    assert back.columns == [PARTITION_COLUMN, OFFSET_COLUMN, *data.columns]
    assert_frame_equal(back.drop(PARTITION_COLUMN, OFFSET_COLUMN).sort("seq"), data)
    by_position = {(r[PARTITION_COLUMN], r[OFFSET_COLUMN]): r["seq"] for r in back.to_dicts()}
    assert [by_position[p] for p in positions] == list(range(100))


def test_append_list_of_dicts_and_read_window(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1) as log:
        for i in range(5):
            log.append([{"n": 2 * i, "s": "a"}, {"n": 2 * i + 1, "s": "b"}])
        batch = log.read(0, 3, max_records=4)
        assert batch.data["n"].to_list() == [3, 4, 5, 6]
        assert batch.data[OFFSET_COLUMN].to_list() == [3, 4, 5, 6]
        assert batch.next_offset == 7
        beyond = log.read(0, 50)
        assert beyond.data.height == 0
        assert beyond.next_offset == 50
        assert beyond.data.columns == [PARTITION_COLUMN, OFFSET_COLUMN, "n", "s"]


def test_offsets_are_contiguous_per_partition(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=4, segment_bytes=2000) as log:
        seen: dict[int, list[int]] = {p: [] for p in range(4)}
        for i in range(20):
            for position in log.append(events(i * 13, 13), key="key"):
                seen[position.partition].append(position.offset)
        for partition, offsets in seen.items():
            assert offsets == list(range(len(offsets)))
            assert log.end_offset(partition) == len(offsets)
        assert len(list((tmp_path / "partition-0000").glob("*.seg"))) > 1


def test_key_partitioning_is_stable_across_reopen(tmp_path: Path) -> None:
    keys = [f"user-{i}" for i in range(50)]
    with EmbeddedLog(tmp_path, partitions=4) as log:
        first = log.append(pl.DataFrame({"user": keys, "n": range(50)}), key="user")
    with EmbeddedLog(tmp_path) as log:
        assert log.partitions == 4
        again = log.append(pl.DataFrame({"user": keys[::-1], "n": range(50)}), key="user")
    assert [p.partition for p in first] == [partition_of(k, 4) for k in keys]
    assert [p.partition for p in again] == [partition_of(k, 4) for k in keys[::-1]]
    assert len({p.partition for p in first}) > 1


def test_reopen_with_other_partition_count_is_an_error(tmp_path: Path) -> None:
    EmbeddedLog(tmp_path, partitions=2).close()
    with pytest.raises(LogError, match="has 2 partitions, not 3"):
        EmbeddedLog(tmp_path, partitions=3)


def _segment(tmp_path: Path) -> Path:
    (segment,) = (tmp_path / "partition-0000").glob("*.seg")
    return segment


def test_torn_write_is_truncated_on_open(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1) as log:
        log.append(events(0, 10))
        log.append(events(10, 10))
    segment = _segment(tmp_path)
    os.truncate(segment, segment.stat().st_size - 3)
    with EmbeddedLog(tmp_path) as log:
        assert read_all(log, 0)["seq"].to_list() == list(range(10))
        assert [p.offset for p in log.append(events(20, 2))] == [10, 11]
        assert read_all(log, 0)["seq"].to_list() == [*range(10), 20, 21]


def test_garbage_after_the_last_record_is_truncated(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1) as log:
        log.append(events(0, 10))
    segment = _segment(tmp_path)
    size = segment.stat().st_size
    for garbage in (b"\x00" * 7, b"HRL1" + os.urandom(60)):
        with segment.open("ab") as file:
            file.write(garbage)
        with EmbeddedLog(tmp_path) as log:
            assert segment.stat().st_size == size
            assert read_all(log, 0)["seq"].to_list() == list(range(10))


def test_a_reader_never_sees_a_torn_tail(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1) as log:
        log.append(events(0, 5))
        with _segment(tmp_path).open("ab") as file:
            file.write(b"HRL1\xff\xff")
        assert read_all(log, 0)["seq"].to_list() == list(range(5))
        assert log.end_offset(0) == 5


def test_corrupt_sealed_segment_is_a_clear_error(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1, segment_bytes=100) as log:
        log.append(events(0, 5))
        log.append(events(5, 5))
    first, _second = sorted((tmp_path / "partition-0000").glob("*.seg"))
    data = bytearray(first.read_bytes())
    data[-10] ^= 0xFF  # inside the sealed segment's only frame
    first.write_bytes(bytes(data))
    with EmbeddedLog(tmp_path) as log:
        assert log.read(0, 5).data["seq"].to_list() == list(range(5, 10))
        with pytest.raises(
            LogError, match=r"partition 0: the frame at byte 0 .* fails its checksum"
        ):
            log.read(0, 0)


_APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import polars as pl
    from headrace.connectors.log import EmbeddedLog

    path = Path(sys.argv[1])
    writer, batches, size = (int(a) for a in sys.argv[2:5])
    log = EmbeddedLog(path, partitions=2, segment_bytes=1 << 16)
    seq = 0
    for _ in range(batches):
        s = pl.int_range(seq, seq + size, eager=True)
        frame = pl.DataFrame({"writer": pl.repeat(writer, size, eager=True, dtype=pl.Int64),
                              "seq": s, "key": s.cast(pl.String).str.slice(-1), "check": s * 7})
        log.append(frame, key="key")
        seq += size
        print(seq, flush=True)
    """
)


def _appender(path: Path, writer: int, batches: int, size: int) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", _APPENDER, str(path), str(writer), str(batches), str(size)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def _check_whole(log: EmbeddedLog) -> pl.DataFrame:
    frames = []
    for partition in range(log.partitions):
        data = read_all(log, partition)
        assert data[OFFSET_COLUMN].to_list() == list(range(data.height))
        frames.append(data)
    everything = pl.concat(frames)
    assert (everything["check"] == everything["seq"] * 7).all()
    assert everything.select("writer", "seq").is_unique().all()
    return everything


@pytest.mark.slow
def test_kill_9_while_appending_leaves_only_whole_records(tmp_path: Path) -> None:
    for round_ in range(3):
        EmbeddedLog(tmp_path, partitions=2).close()
        child = _appender(tmp_path, round_, 100_000, 20_000)
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(0.05 * (round_ + 1))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        with EmbeddedLog(tmp_path) as log:
            everything = _check_whole(log)
        # Each call writes one frame per partition: per partition, whole calls are kept.
        for partition in range(2):
            seqs = everything.filter(
                (pl.col("writer") == round_) & (pl.col(PARTITION_COLUMN) == partition)
            )["seq"].to_list()
            digits = [d for d in "0123456789" if partition_of(d, 2) == partition]
            calls, rest = divmod(len(seqs), 2_000 * len(digits))
            assert rest == 0
            assert seqs == [s for s in range(calls * 20_000) if str(s)[-1] in digits]


@pytest.mark.slow
def test_two_processes_append_concurrently(tmp_path: Path) -> None:
    EmbeddedLog(tmp_path, partitions=2).close()
    children = [_appender(tmp_path, writer, 60, 50) for writer in (1, 2)]
    for child in children:
        child.communicate(timeout=120)
        assert child.returncode == 0
    with EmbeddedLog(tmp_path) as log:
        everything = _check_whole(log)
    assert everything.height == 2 * 60 * 50
    for writer in (1, 2):
        seqs = everything.filter(pl.col("writer") == writer)["seq"].sort()
        assert seqs.to_list() == list(range(3000))


def test_threads_append_concurrently(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=3, segment_bytes=4096) as log:
        positions: list[list[Position]] = []

        def work(writer: int) -> None:
            mine = []
            for i in range(30):
                mine.extend(log.append(events(i * 7, 7, writer), key="key"))
            positions.append(mine)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        everything = _check_whole(log)
    assert everything.height == 4 * 30 * 7
    flat = [p for mine in positions for p in mine]
    assert len(set(flat)) == len(flat)


def test_retention_deletes_old_segments_but_not_the_active_one(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1, segment_bytes=1500) as log:
        for i in range(30):
            log.append(events(i * 5, 5))
        segments = len(list((tmp_path / "partition-0000").glob("*.seg")))
        assert segments > 3
        assert log.retain(max_bytes=4000) > 0
        start = log.start_offset(0)
        assert 0 < start < 150
        assert read_all(log, 0)["seq"].to_list() == list(range(start, 150))
        with pytest.raises(LogError) as caught:
            log.read(0, start - 1)
        assert isinstance(caught.value, SourceError)
        message = str(caught.value)
        assert "partition 0" in message
        assert f"offset {start - 1}" in message
        assert f"first available offset is {start}" in message
        log.retain(max_age=timedelta(0))
        remaining = list((tmp_path / "partition-0000").glob("*.seg"))
        assert len(remaining) == 1
        assert log.read(0, log.start_offset(0)).data.height > 0
        assert log.end_offset(0) == 150
        assert log.append(events(150, 1))[0].offset == 150
    with EmbeddedLog(tmp_path) as log:
        assert log.start_offset(0) == int(remaining[0].stem)


def test_retention_keeps_young_segments(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1, segment_bytes=1500) as log:
        for i in range(10):
            log.append(events(i * 5, 5))
        assert log.retain(max_age=timedelta(hours=1)) == 0
        assert log.retain() == 0
        assert log.start_offset(0) == 0


def test_schema_is_fixed_by_the_first_append(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1) as log:
        log.append(pl.DataFrame({"id": [1], "score": [0.5], "name": ["a"]}))
        with pytest.raises(LogError, match=r"column 'name' is Int64 but .* stores it as String"):
            log.append(pl.DataFrame({"id": [2], "score": [1.5], "name": [3]}))
        with pytest.raises(LogError, match="column 'extra' is not in the log's schema"):
            log.append(pl.DataFrame({"id": [2], "extra": [1]}))
        log.append([{"id": 3, "score": 2}])  # missing column is null, int fits a float
    with EmbeddedLog(tmp_path) as log:
        with pytest.raises(LogError, match="column 'id'"):
            log.append(pl.DataFrame({"id": ["x"]}))
        data = read_all(log, 0)
    assert data["name"].to_list() == ["a", None]
    assert data["score"].to_list() == [0.5, 2.0]
    assert data.schema["id"] == pl.Int64


def test_reserved_columns_and_unknown_partition(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=2) as log:
        with pytest.raises(LogError, match="reserved"):
            log.append(pl.DataFrame({OFFSET_COLUMN: [1]}))
        with pytest.raises(LogError, match="key column 'k'"):
            log.append(pl.DataFrame({"a": [1]}), key="k")
        with pytest.raises(LogError, match="partition 5 does not exist"):
            log.read(5, 0)


@settings(max_examples=40, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.lists(st.sampled_from(["a", "b", "c", "d", "e", None]), max_size=30),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    ),
    partitions=st.integers(1, 4),
)
def test_any_appends_read_back_in_partition_order(
    calls: list[tuple[list[str | None], bool]], partitions: int
) -> None:
    expected: dict[int, list[tuple[int, str | None]]] = {p: [] for p in range(partitions)}
    with tempfile.TemporaryDirectory() as directory:
        with EmbeddedLog(Path(directory), partitions=partitions, segment_bytes=3000) as log:
            seq = 0
            for keys, keyed in calls:
                frame = pl.DataFrame(
                    {"seq": range(seq, seq + len(keys)), "key": keys},
                    schema={"seq": pl.Int64, "key": pl.String},
                )
                positions = log.append(frame, key="key" if keyed else None)
                for position, row in zip(positions, frame.iter_rows(), strict=True):
                    expected[position.partition].append(row)
                    if keyed:
                        key = row[1]
                        want = 0 if key is None else partition_of(key, partitions)
                        assert position.partition == want
                seq += len(keys)
        with EmbeddedLog(Path(directory)) as log:
            for partition, rows in expected.items():
                data = read_all(log, partition, batch=7)
                assert list(data.select("seq", "key").iter_rows()) == rows
                assert data[OFFSET_COLUMN].to_list() == list(range(len(rows)))
