"""Producing events to a project's topics: embedded log, broker URL, checks, retention, files."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import headrace as hr
from headrace.connectors.log import OFFSET_COLUMN, PARTITION_COLUMN, EmbeddedLog, partition_of
from headrace.connectors.stream.base import StreamProducer
from headrace.errors import ConfigError, SourceError
from headrace.project.streams import (
    JSON,
    NDJSON,
    EventsError,
    TopicNameError,
    TopicWriter,
    apply_retention,
    open_topic,
    produce,
    read_events,
    topic_path,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def make_project(tmp_path: Path, stream: str = "") -> hr.Project:
    root = tmp_path / "shop"
    root.mkdir(exist_ok=True)
    (root / "headrace.toml").write_text(
        f'[project]\nname = "shop"\npipelines = []\n[stream]\n{stream}\n', encoding="utf-8"
    )
    return hr.Project(root)


def read_topic(log: EmbeddedLog) -> pl.DataFrame:
    """Every stored event of ``log`` with its partition and offset."""
    frames = [log.read(p, log.start_offset(p), 1_000_000).data for p in range(log.partitions)]
    return pl.concat(frames)


def payments(count: int = 40) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user": [f"u{i % 7}" for i in range(count)],
            "seq": list(range(count)),
            "ts": [T0 + timedelta(minutes=i) for i in range(count)],
            "amount": [i * 1.5 for i in range(count)],
            "big": [i % 3 == 0 for i in range(count)],
            "tags": [["a"] * (i % 2) for i in range(count)],
        }
    )


def test_produce_appends_every_event_once_in_its_keys_partition(tmp_path: Path) -> None:
    project = make_project(tmp_path, "partitions = 3")
    frame = payments()
    assert produce(project, "payments", frame, key="user") == 40
    with open_topic(project, "payments") as log:
        assert log.partitions == 3
        stored = read_topic(log)
    assert stored.height == 40
    for row in stored.iter_rows(named=True):
        assert row[PARTITION_COLUMN] == partition_of(row["user"], 3)
    events = stored.drop(PARTITION_COLUMN, OFFSET_COLUMN).sort("seq")
    assert_frame_equal(events, frame)  # types too: datetime[us, UTC], f64, bool, list[str]
    per_user = stored.group_by("user").agg(pl.col("seq"), pl.col(OFFSET_COLUMN))
    for row in per_user.iter_rows(named=True):  # a key's events stay in order
        assert row["seq"] == sorted(row["seq"])


def test_without_a_key_events_are_spread_round_robin(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    assert produce(project, "clicks", pl.DataFrame({"n": range(8)}), key=None) == 8
    with open_topic(project, "clicks") as log:
        counts = read_topic(log)[PARTITION_COLUMN].value_counts().sort(PARTITION_COLUMN)
    assert counts["count"].to_list() == [2, 2, 2, 2]


def test_a_topic_keeps_the_partition_count_it_was_created_with(tmp_path: Path) -> None:
    produce(make_project(tmp_path, "partitions = 2"), "t", pl.DataFrame({"n": [1]}), key=None)
    with open_topic(make_project(tmp_path, "partitions = 5"), "t") as log:
        assert log.partitions == 2
    assert topic_path(make_project(tmp_path), "t") == tmp_path / "shop/.headrace/streams/t"


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("a/b", "'/' at position 1"),
        ("../etc", "it starts with '.'"),
        ("", "it is empty"),
        ("pay ments", "' ' at position 3"),
    ],
)
def test_a_bad_topic_name_is_one_clear_error(tmp_path: Path, topic: str, why: str) -> None:
    project = make_project(tmp_path)
    with pytest.raises(TopicNameError) as caught:
        produce(project, topic, pl.DataFrame({"n": [1]}), key=None)
    assert str(caught.value) == (
        f"topic name {topic!r} is not allowed ({why}); use 1 to 200 letters, digits, '.', '_' "
        "or '-', not starting with '.' or '-' (e.g. 'payments' or 'shop.payments')"
    )
    assert not (project.state_dir / "streams").exists()


@pytest.mark.parametrize(
    ("frame", "key", "reason", "field"),
    [
        (pl.DataFrame({"user": ["a"], "seq": ["x"]}), "user", "type_conflict", "seq"),
        (pl.DataFrame({"user": ["a"], "extra": [1]}), "user", "unknown_field", "extra"),
        (pl.DataFrame({"seq": [1]}), "user", "key_field", "user"),
        (pl.DataFrame({"user": ["a"], "_log_offset": [1]}), None, "reserved_field", "_log_offset"),
    ],
)
def test_events_that_do_not_fit_the_topic_append_nothing(
    tmp_path: Path, frame: pl.DataFrame, key: str | None, reason: str, field: str
) -> None:
    project = make_project(tmp_path)
    produce(project, "payments", payments(5), key="user")
    with pytest.raises(EventsError) as caught:
        produce(project, "payments", frame, key=key)
    assert (caught.value.reason, caught.value.field) == (reason, field)
    assert repr(field) in str(caught.value)
    with open_topic(project, "payments") as log:
        assert read_topic(log).height == 5


def test_json_takes_the_topics_types_and_names_the_record_that_does_not_fit(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    produce(project, "payments", payments(2), key="user")
    with TopicWriter(project, "payments") as writer:
        frame = writer.decode(
            b'{"user": "u9", "seq": 2, "ts": "2024-03-02T00:00:00+01:00", "amount": 3}\n\n'
            b'{"user": "u9", "seq": 3, "big": true, "tags": ["x"]}\n',
            NDJSON,
        )
        assert frame.schema == writer.schema
        assert frame["ts"].to_list() == [datetime(2024, 3, 1, 23, tzinfo=UTC), None]
        assert frame["amount"].to_list() == [3.0, None]
        with pytest.raises(EventsError) as caught:
            writer.decode(b'[{"user": "a", "seq": 1}, {"user": "b", "seq": "two"}]', JSON)
    assert (caught.value.record, caught.value.field) == (1, "seq")
    assert str(caught.value) == (
        "record 1 does not fit topic 'payments': field 'seq': 'two' (string) does not fit Int64"
    )


def test_a_new_topic_takes_one_json_type_per_field(tmp_path: Path) -> None:
    with TopicWriter(make_project(tmp_path), "new") as writer:
        frame = writer.decode(b'[{"a": 1, "b": "x"}, {"a": 2.5, "c": [1, 2]}]', JSON)
        assert frame.schema == pl.Schema({"a": pl.Float64, "b": pl.String, "c": pl.List(pl.Int64)})
        with pytest.raises(EventsError, match=r"record 2, field 'a': \"x\" is a string, but"):
            writer.decode(b'[{"a": 1}, {"a": 2}, {"a": "x"}]', JSON)
        with pytest.raises(EventsError, match="field 'b' is null in every record"):
            writer.decode(b'[{"a": 1, "b": null}]', JSON)


class FakeProducer(StreamProducer):
    def __init__(self, url: str, topic: str, partitions: int) -> None:
        self.opened = (url, topic, partitions)
        self.sent: list[tuple[pl.DataFrame, Sequence[str]]] = []
        self.closed = False

    def send(self, frame: pl.DataFrame, *, key: Sequence[str] = ()) -> int:
        self.sent.append((frame, key))
        return frame.height

    def close(self) -> None:
        self.closed = True


def test_a_broker_url_sends_through_its_producer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    producers: list[FakeProducer] = []

    def open_producer(url: str, topic: str, *, partitions: int) -> FakeProducer:
        producers.append(FakeProducer(url, topic, partitions))
        return producers[-1]

    factory = types.ModuleType("headrace.connectors.stream.factory")
    factory.open_producer = open_producer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "headrace.connectors.stream.factory", factory)
    project = make_project(tmp_path, 'broker = "kafka://u:pw@broker:9092"\npartitions = 6')
    assert produce(project, "payments", payments(3), key="user") == 3
    (producer,) = producers
    assert producer.opened == ("kafka://u:pw@broker:9092", "payments", 6)
    assert producer.sent[0][0].height == 3
    assert list(producer.sent[0][1]) == ["user"]
    assert producer.closed
    assert not (project.state_dir / "streams").exists()
    with TopicWriter(project, "payments") as writer:
        assert writer.describe() == "kafka://u:***@broker:9092"
        assert writer.partitions is None


def test_retention_from_settings_drops_old_segments(tmp_path: Path) -> None:
    project = make_project(tmp_path, 'partitions = 1\nretention = "1h"')
    assert apply_retention(project, "clicks") == 0  # no such topic: nothing to do
    with EmbeddedLog(topic_path(project, "clicks"), partitions=1, segment_bytes=1) as log:
        for start in range(0, 30, 10):  # one segment per append
            log.append(pl.DataFrame({"n": range(start, start + 10)}))
    old = (datetime.now(tz=UTC) - timedelta(hours=2)).timestamp()
    segments = sorted((topic_path(project, "clicks") / "partition-0000").glob("*.seg"))
    for segment in segments[:2]:
        os.utime(segment, (old, old))
    assert apply_retention(project, "clicks") == 2
    with open_topic(project, "clicks") as log:
        assert log.start_offset(0) == 20
        assert read_topic(log)["n"].to_list() == list(range(20, 30))


def test_retention_bytes_keeps_the_newest_segments(tmp_path: Path) -> None:
    project = make_project(tmp_path, "partitions = 1\nretention_bytes = 1")
    with EmbeddedLog(topic_path(project, "clicks"), partitions=1, segment_bytes=1) as log:
        for start in range(0, 30, 10):
            log.append(pl.DataFrame({"n": range(start, start + 10)}))
    assert apply_retention(project, "clicks") == 2  # the active segment always stays
    with open_topic(project, "clicks") as log:
        assert log.start_offset(0) == 20


def test_a_bad_retention_setting_names_it(tmp_path: Path) -> None:
    project = make_project(tmp_path, 'retention = "a week"')
    wrong = r"\[stream\] retention: 'a week' is not a duration"
    with pytest.raises(ConfigError, match=wrong):  # not written while ignoring the setting
        produce(project, "clicks", pl.DataFrame({"n": [1]}), key=None)
    with pytest.raises(ConfigError, match=wrong):
        apply_retention(project, "clicks")


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".json", ".csv", ".parquet"])
def test_read_events_reads_each_file_kind(tmp_path: Path, suffix: str) -> None:
    frame = pl.DataFrame({"user": ["a", "b"], "n": [1, 2], "ts": [T0, T0]})
    path = tmp_path / f"events{suffix}"
    writers = {
        ".jsonl": frame.write_ndjson,
        ".ndjson": frame.write_ndjson,
        ".json": frame.write_json,
        ".csv": frame.write_csv,
        ".parquet": frame.write_parquet,
    }
    writers[suffix](path)
    read = read_events(path, schema=frame.schema)
    assert_frame_equal(read, frame)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("missing.jsonl", None, "no events file"),
        ("events.txt", b"x", "use a file ending in .jsonl, .ndjson, .json, .csv, .parquet"),
        ("broken.parquet", b"not parquet", "cannot read events from"),
        ("broken.jsonl", b'{"a": 1}\n{"a": \n', "cannot read events from"),
    ],
)
def test_an_unreadable_events_file_is_a_source_error(
    tmp_path: Path, name: str, content: bytes | None, needle: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=needle) as caught:
        read_events(path)
    assert str(path) in str(caught.value)
