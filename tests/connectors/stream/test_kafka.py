"""Kafka connector against a real Kafka-compatible broker (Tansu, started for the session)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import polars as pl
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from headrace.connectors.stream.base import OFFSET, PARTITION, StreamConsumer
from headrace.connectors.stream.factory import open_consumer, open_producer
from headrace.errors import BrokerError, ConfigError, StreamError
from headrace.testing.brokers import (
    SAMPLE_SCHEMA,
    RecordingRebalance,
    assert_in_partition_order,
    assert_routed_by_key,
    free_port,
    poll_until,
    sample_rows,
)

# Tansu answers a group join after about half the session timeout: keep it short.
FAST_GROUP = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "300"}
COLUMNS = list(SAMPLE_SCHEMA)


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, topic: str) -> Iterator[str]:
    yield topic
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics([topic], operation_timeout=10).values():
        future.result(timeout=10)


def consumer_for(
    bootstrap: str, topic: str, listener: RecordingRebalance, group: str | None = None
) -> StreamConsumer:
    return open_consumer(
        f"kafka://{bootstrap}",
        topic,
        schema=SAMPLE_SCHEMA,
        group=group or f"group-{topic}",
        rebalance=listener,
        options=FAST_GROUP,
    )


def produce(bootstrap: str, topic: str, rows: pl.DataFrame) -> None:
    producer = open_producer(f"kafka://{bootstrap}", topic, partitions=4)
    try:
        assert producer.send(rows, key=["key"]) == rows.height
    finally:
        producer.close()


def test_every_row_comes_back_in_its_key_partition(kafka_bootstrap: str, kafka_topic: str) -> None:
    sent = sample_rows(400)
    produce(kafka_bootstrap, kafka_topic, sent)
    listener = RecordingRebalance()
    consumer = consumer_for(kafka_bootstrap, kafka_topic, listener)
    try:
        assert consumer.partitions() == [0, 1, 2, 3]
        rows, malformed, following = poll_until(consumer, 400)
    finally:
        consumer.close()

    assert malformed.is_empty()
    assert rows.sort("value").select(COLUMNS).equals(sent)
    assert_routed_by_key(rows, 4)
    assert_in_partition_order(rows)
    counts = dict(rows.group_by(PARTITION).len().iter_rows())
    assert following == counts  # Kafka offsets start at 0: next = how many were read
    assert listener.calls[0] == ("assigned", [0, 1, 2, 3])
    assert listener.calls[-1] == ("revoked", [0, 1, 2, 3])  # on close, leaving the group


def test_assigned_partitions_start_where_the_engine_says(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    produce(kafka_bootstrap, kafka_topic, sample_rows(200))
    starts = {0: 5, 1: None, 2: 0, 3: 10}
    consumer = consumer_for(kafka_bootstrap, kafka_topic, RecordingRebalance(starts))
    try:
        rows, _, _ = poll_until(consumer, 200 - 15, timeout=15)
        time.sleep(0.5)
        assert consumer.poll(100, 0.5).messages == 0  # nothing more: no duplicates
    finally:
        consumer.close()

    for partition, start in starts.items():
        offsets = rows.filter(pl.col(PARTITION) == partition)[OFFSET].to_list()
        assert offsets[0] == (start or 0)
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


def test_commit_stores_the_group_offsets(kafka_bootstrap: str, kafka_topic: str) -> None:
    produce(kafka_bootstrap, kafka_topic, sample_rows(40))
    group = f"group-{kafka_topic}"
    consumer = consumer_for(kafka_bootstrap, kafka_topic, RecordingRebalance(), group)
    try:
        _, _, following = poll_until(consumer, 40)
        consumer.commit(following)
        consumer.poll(10, 0.5)  # serves the commit's callback
    finally:
        consumer.close()

    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        committed = reader.committed([TopicPartition(kafka_topic, p) for p in range(4)], 10)
    finally:
        reader.close()
    assert {tp.partition: tp.offset for tp in committed} == following


def test_undecodable_messages_come_back_with_position_and_reason(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    produce(kafka_bootstrap, kafka_topic, sample_rows(4, keys=1))  # creates the topic
    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in (
        b"not json at all",
        b'{"key": "a", "ts": "2024-03-01T00:00:00Z", "value": "high"}',
        b'{"key": "a", "value": 1.0}',
        b'{"key": "b", "ts": "2024-03-01T01:00:00+01:00", "value": 2}',
    ):
        raw.produce(kafka_topic, value, partition=2)
    assert raw.flush(10) == 0
    consumer = consumer_for(kafka_bootstrap, kafka_topic, RecordingRebalance())
    try:
        rows, malformed, _ = poll_until(consumer, 8)
    finally:
        consumer.close()

    assert rows.height + malformed.height == 8
    bad = malformed.filter(pl.col(PARTITION) == 2).sort(OFFSET)
    assert bad["_hr_reason"].to_list() == ["not_json", "wrong_type", "missing_field"]
    assert bad["_hr_raw"][0] == "not json at all"
    assert "'value'" in bad["_hr_detail"][1]
    assert "'ts'" in bad["_hr_detail"][2]
    good = rows.filter(pl.col("key") == "b")
    assert good["ts"].dt.hour().to_list() == [0]  # +01:00 converted to UTC


def test_two_consumers_of_one_group_split_the_partitions(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    producer = open_producer(f"kafka://{kafka_bootstrap}", kafka_topic, partitions=4)
    first, second = RecordingRebalance(), RecordingRebalance()
    one = consumer_for(kafka_bootstrap, kafka_topic, first)
    two: StreamConsumer | None = None
    try:
        deadline = time.monotonic() + 20
        while not first.owned and time.monotonic() < deadline:
            one.poll(100, 0.2)
        two = consumer_for(kafka_bootstrap, kafka_topic, second)
        while time.monotonic() < deadline and not (
            first.owned and second.owned and first.owned | second.owned == {0, 1, 2, 3}
        ):
            one.poll(100, 0.2)
            two.poll(100, 0.2)
        assert first.owned | second.owned == {0, 1, 2, 3}
        assert not first.owned & second.owned
        assert ("revoked", [0, 1, 2, 3]) in first.calls  # told before losing them
        owned = {1: set(first.owned), 2: set(second.owned)}

        producer.send(sample_rows(200), key=["key"])
        seen: dict[int, list[pl.DataFrame]] = {1: [], 2: []}
        while sum(f.height for fs in seen.values() for f in fs) < 200:
            assert time.monotonic() < deadline + 20, "the group stopped delivering"
            seen[1].append(one.poll(200, 0.2).data)
            seen[2].append(two.poll(200, 0.2).data)
    finally:
        producer.close()
        one.close()
        if two is not None:
            two.close()

    for number, frames in seen.items():
        partitions = set(pl.concat(frames)[PARTITION].unique().to_list())
        assert partitions <= owned[number], f"consumer {number} read partitions it did not own"
    values = pl.concat([*seen[1], *seen[2]])["value"].sort().to_list()
    assert values == [float(i) for i in range(200)]  # each message once


def test_an_unreachable_broker_raises_broker_error_naming_it() -> None:
    url = f"kafka://127.0.0.1:{free_port()}"
    consumer = open_consumer(
        url, "nowhere", schema=SAMPLE_SCHEMA, group="g", options={"reconnect_timeout": "1"}
    )
    try:
        with pytest.raises(BrokerError, match=f"{url}.*unreachable"):
            poll_until(consumer, 1, timeout=15)
    finally:
        consumer.close()


def test_assign_is_refused_because_the_group_assigns(kafka_bootstrap: str, topic: str) -> None:
    consumer = consumer_for(kafka_bootstrap, topic, RecordingRebalance())
    try:
        assert consumer.group_managed
        with pytest.raises(StreamError, match="Rebalance listener"):
            consumer.assign({0: None})
    finally:
        consumer.close()


def test_unknown_scheme_names_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"'amqp'.*kafka://.*nats://.*redis://"):
        open_producer("amqp://u:secret@host/x", "t")
    with pytest.raises(ConfigError) as caught:
        open_consumer("amqp://u:secret@host/x", "t", schema=SAMPLE_SCHEMA, group="g")
    assert "secret" not in str(caught.value)


def test_a_missing_client_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "headrace.connectors.stream.kafka", raising=False)
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(ConfigError, match=r"pip install 'headrace\[kafka\]'"):
        open_producer("kafka://127.0.0.1:9092", "t")
