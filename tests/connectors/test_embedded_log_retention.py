"""Retention of the embedded log, enforced by the appends that roll segments, and its readers."""

from __future__ import annotations

import os
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.connectors.log import OFFSET_COLUMN, EmbeddedLog, LogError
from headrace.connectors.stream.log import LogConsumer
from headrace.engines.stream.runtime import StreamOptions
from headrace.errors import ConfigError, StreamError
from headrace.project.stream_job import run_stream
from headrace.project.streams import apply_retention, open_topic, topic_path

SEGMENT_BYTES = 2_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events(start: int, count: int) -> pl.DataFrame:
    seq = pl.int_range(start, start + count, eager=True)
    return pl.DataFrame({"seq": seq, "key": (seq % 12).cast(pl.String), "pad": seq * 7})


def segments(log: EmbeddedLog, partition: int) -> list[Path]:
    return sorted((log.path / f"partition-{partition:04d}").glob("*.seg"))


def stored(log: EmbeddedLog, partition: int) -> pl.DataFrame:
    start = log.start_offset(partition)
    return log.read(partition, start, 1_000_000).data


def age(paths: list[Path], by: timedelta) -> None:
    moment = time.time() - by.total_seconds()
    for path in paths:
        os.utime(path, (moment, moment))


def make_project(tmp_path: Path, stream: str, pipeline: str = "") -> hr.Project:
    root = tmp_path / "shop"
    root.mkdir()
    pipelines = '["pipeline.py"]' if pipeline else "[]"
    (root / "headrace.toml").write_text(
        f'[project]\nname = "shop"\npipelines = {pipelines}\n[stream]\n{stream}\n'
    )
    if pipeline:
        (root / "pipeline.py").write_text(pipeline)
    return hr.Project(root)


def test_rolls_keep_each_partition_within_its_byte_limit(tmp_path: Path) -> None:
    limit = 5_000
    with EmbeddedLog(
        tmp_path, partitions=3, segment_bytes=SEGMENT_BYTES, retention_bytes=limit
    ) as log:
        largest_frame = 0
        rolls = 0
        for i in range(60):
            active = {p: segments(log, p)[-1] if segments(log, p) else None for p in range(3)}
            log.append(events(i * 10, 10), key="key")
            for p in range(3):
                files = segments(log, p)
                total = sum(s.stat().st_size for s in files)
                if active[p] is not None and files[-1] != active[p]:  # this append rolled
                    rolls += 1
                    largest_frame = max(largest_frame, files[-1].stat().st_size)
                    assert total <= limit  # right after a roll: within the limit itself
                assert total <= limit + SEGMENT_BYTES + largest_frame  # later: one segment more
        assert rolls > 20
        assert all(log.start_offset(p) > 0 for p in range(3))  # retention did delete
        assert sum(log.end_offset(p) for p in range(3)) == 600


def test_what_remains_keeps_its_offsets(tmp_path: Path) -> None:
    with EmbeddedLog(
        tmp_path, partitions=1, segment_bytes=SEGMENT_BYTES, retention_bytes=4_000
    ) as log:
        appended: dict[int, int] = {}  # offset -> seq
        for i in range(40):
            positions = log.append(events(i * 5, 5))
            appended.update({p.offset: i * 5 + n for n, p in enumerate(positions)})
        data = stored(log, 0)
        first = log.start_offset(0)
        assert 0 < first == int(segments(log, 0)[0].stem)
        assert data[OFFSET_COLUMN].to_list() == list(range(first, 200))
        assert data["seq"].to_list() == [appended[o] for o in range(first, 200)]
        with pytest.raises(LogError, match=f"first available offset is {first}"):
            log.read(0, first - 1)
        assert log.append(events(200, 1))[0].offset == 200


def test_the_active_segment_is_never_deleted(tmp_path: Path) -> None:
    with EmbeddedLog(tmp_path, partitions=1, segment_bytes=SEGMENT_BYTES, retention_bytes=1) as log:
        for i in range(20):
            log.append(events(i * 10, 10))
            assert len(segments(log, 0)) <= 2  # the one appended to, and the one it sealed
            assert log.end_offset(0) == (i + 1) * 10
            assert stored(log, 0)["seq"][-1] == i * 10 + 9  # the newest events stay readable
        age(segments(log, 0), timedelta(days=30))
        log.retain(max_bytes=1, max_age=timedelta(seconds=1))
        assert len(segments(log, 0)) == 1
        assert stored(log, 0)["seq"][-1] == 199


def test_the_age_limit_deletes_old_sealed_segments_at_a_roll(tmp_path: Path) -> None:
    with EmbeddedLog(
        tmp_path, partitions=1, segment_bytes=SEGMENT_BYTES, retention=timedelta(hours=1)
    ) as log:
        for i in range(12):
            log.append(events(i * 10, 10))
        before = segments(log, 0)
        assert len(before) >= 4
        age(before[:2], timedelta(hours=2))  # two old ones; the rest was written just now
        while len(segments(log, 0)) == len(before):  # no roll, no retention
            assert log.start_offset(0) == 0
            log.append(events(log.end_offset(0), 10))
        assert segments(log, 0)[0] == before[2]
        assert log.start_offset(0) == int(before[2].stem)
        assert stored(log, 0)["seq"].to_list() == list(
            range(log.start_offset(0), log.end_offset(0))
        )


def test_retention_limits_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="retention_bytes must be at least 1"):
        EmbeddedLog(tmp_path, retention_bytes=0)
    with pytest.raises(LogError, match="retention must be a positive duration"):
        EmbeddedLog(tmp_path, retention=timedelta(0))


def test_produce_enforces_the_projects_retention_bytes(tmp_path: Path) -> None:
    project = make_project(tmp_path, 'partitions = 1\nretention_bytes = 1\nretention = "7d"')
    with open_topic(project, "clicks") as log:  # every way into a topic opens it here
        assert (log.retention_bytes, log.retention) == (1, timedelta(days=7))
        big = log.segment_bytes  # one event that fills a whole segment: the next one rolls
    assert project.produce("clicks", pl.DataFrame({"n": [0], "blob": [bytes(big)]})) == 1
    with open_topic(project, "clicks") as log:
        full = segments(log, 0)
    assert project.produce("clicks", pl.DataFrame({"n": [1]})) == 1
    with open_topic(project, "clicks") as log:
        assert log.start_offset(0) == 1  # the full segment went, by the append alone
        assert full[0] not in segments(log, 0)
        assert stored(log, 0)["n"].to_list() == [1]
    assert apply_retention(project, "clicks") == 0  # nothing left to apply


def test_a_bad_retention_setting_fails_the_append_that_would_ignore_it(tmp_path: Path) -> None:
    project = make_project(tmp_path, 'retention = "a week"')
    with pytest.raises(ConfigError, match=r"\[stream\] retention: 'a week' is not a duration"):
        project.produce("clicks", pl.DataFrame({"n": [1]}))
    assert not topic_path(project, "clicks").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match=r"\[stream\] retention: 'a week'"):
        apply_retention(project, "clicks")


def test_a_consumer_behind_retention_stops_with_the_lost_range(tmp_path: Path) -> None:
    path = tmp_path / "streams" / "clicks"
    with EmbeddedLog(path, partitions=1, segment_bytes=SEGMENT_BYTES, retention_bytes=1) as log:
        for i in range(10):
            log.append(events(i * 10, 10))
        first = log.start_offset(0)
        consumer = LogConsumer(log)
        with pytest.raises(StreamError) as caught:
            consumer.assign({0: 5})
        message = str(caught.value)
        assert "topic 'clicks'" in message
        assert "partition 0" in message
        assert f"retention deleted offsets 5 to {first - 1} ({first - 5} events)" in message
        assert f"first available offset is {first}" in message
        assert "run `headrace stream reset <pipeline>`" in message
        assert "job '<pipeline>/clicks'" in message
        assert "raise [stream] retention or retention_bytes" in message

        consumer.assign({0: first})  # in time: reads on; then falls behind while polling
        assert consumer.poll(5, 0).data.height == 5
        for i in range(10, 20):
            log.append(events(i * 10, 10))
        with pytest.raises(StreamError, match=f"deleted offsets {first + 5} to ") as behind:
            consumer.poll(5, 0)
        assert isinstance(behind.value.__cause__, LogError)


PIPELINE = textwrap.dedent(
    """
    import polars as pl
    import headrace as hr

    pipeline = hr.Pipeline("clicks")

    @pipeline.source
    def clicks_raw() -> pl.DataFrame:
        return pl.DataFrame(schema={"user": pl.String, "ts": pl.Datetime("us", "UTC")})

    pipeline.stream("clicks_raw", event_time="ts", disorder="1s", key="user", topic="clicks")
    """
)


def test_a_streaming_job_whose_checkpoint_was_deleted_fails_naming_it(tmp_path: Path) -> None:
    project = make_project(tmp_path, "partitions = 1", PIPELINE)

    def clicks(start: int, count: int) -> pl.DataFrame:
        moments = [T0 + timedelta(seconds=n) for n in range(start, start + count)]
        return pl.DataFrame({"user": ["u"] * count, "ts": moments})

    project.produce("clicks", clicks(0, 10), key="user")
    options = StreamOptions(until_end=True, checkpoint_interval=0.05)
    assert run_stream(project, options=options).events == 10  # checkpointed at offset 10
    path = topic_path(project, "clicks")  # the topic, appended to with small segments
    with EmbeddedLog(path, segment_bytes=SEGMENT_BYTES, retention_bytes=1) as log:
        for start in range(10, 300, 10):
            log.append(clicks(start, 10), key="user")
        first = log.start_offset(0)
    assert first > 10
    with pytest.raises(StreamError, match=f"deleted offsets 10 to {first - 1} "):
        run_stream(project, options=options)
