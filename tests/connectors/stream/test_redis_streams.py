"""Redis Streams connector against the real server (127.0.0.1:6379 by default)."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest
import redis

from headrace.connectors.stream.base import OFFSET, PARTITION, StreamConsumer, pack_redis_id
from headrace.connectors.stream.factory import open_consumer, open_producer
from headrace.connectors.stream.redis_streams import RedisStreamConsumer
from headrace.errors import BrokerError, ConfigError, StreamError
from headrace.testing.brokers import (
    SAMPLE_SCHEMA,
    assert_in_partition_order,
    assert_routed_by_key,
    free_port,
    poll_until,
    sample_rows,
)

COLUMNS = list(SAMPLE_SCHEMA)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def stream(client: redis.Redis, topic: str) -> Iterator[str]:
    """A topic name whose keys (``<topic>:*``) are deleted after the test."""
    yield topic
    keys = list(client.scan_iter(match=f"{topic}:*"))
    if keys:
        client.delete(*keys)


def consumer_for(url: str, topic: str, **options: str) -> StreamConsumer:
    return open_consumer(url, topic, schema=SAMPLE_SCHEMA, group="workers", options=options)


def produce(url: str, topic: str, rows: pl.DataFrame, partitions: int = 4) -> None:
    producer = open_producer(url, topic, partitions=partitions)
    try:
        assert producer.send(rows, key=["key"]) == rows.height
    finally:
        producer.close()


def test_every_row_comes_back_in_its_key_partition(redis_url: str, stream: str) -> None:
    sent = sample_rows(400)
    produce(redis_url, stream, sent)
    consumer = consumer_for(redis_url, stream)
    try:
        assert consumer.partitions() == [0, 1, 2, 3]
        consumer.assign(dict.fromkeys(consumer.partitions()))
        rows, malformed, following = poll_until(consumer, 400)
    finally:
        consumer.close()

    assert malformed.is_empty()
    assert rows.sort("value").select(COLUMNS).equals(sent)
    assert_routed_by_key(rows, 4)
    assert_in_partition_order(rows)
    last = rows.group_by(PARTITION).agg(pl.col(OFFSET).max())
    assert following == {p: offset + 1 for p, offset in last.iter_rows()}


def test_reading_resumes_at_the_given_positions(redis_url: str, stream: str) -> None:
    produce(redis_url, stream, sample_rows(200))
    consumer = consumer_for(redis_url, stream)
    try:
        consumer.assign(dict.fromkeys(range(4)))
        first, _, following = poll_until(consumer, 1, max_messages=40)
        consumer.close()
        consumer = consumer_for(redis_url, stream)  # a new worker, from the checkpoint
        consumer.assign({p: following.get(p) for p in range(4)})
        rest, _, _ = poll_until(consumer, 200 - first.height)
        assert consumer.poll(100, 0.2).messages == 0
    finally:
        consumer.close()

    both = pl.concat([first, rest])
    assert sorted(both["value"].to_list()) == [float(i) for i in range(200)]  # once each
    assert_in_partition_order(both)


def test_commit_acknowledges_entries_before_the_position(
    redis_url: str, stream: str, client: redis.Redis
) -> None:
    produce(redis_url, stream, sample_rows(50, keys=1))  # one key: one partition
    (partition,) = [p for p in range(4) if client.xlen(f"{stream}:{p}")]
    consumer = consumer_for(redis_url, stream)
    try:
        consumer.assign({partition: None})
        rows, _, following = poll_until(consumer, 50)
        assert client.xpending(f"{stream}:{partition}", "workers")["pending"] == 50
        middle = int(rows[OFFSET][20])
        consumer.commit({partition: middle})
        assert client.xpending(f"{stream}:{partition}", "workers")["pending"] == 30
        consumer.commit(following)
        assert client.xpending(f"{stream}:{partition}", "workers")["pending"] == 0
    finally:
        consumer.close()


def test_undecodable_messages_come_back_with_position_and_reason(
    redis_url: str, stream: str, client: redis.Redis
) -> None:
    produce(redis_url, stream, sample_rows(4, keys=1))  # creates the topic
    ids = [
        client.xadd(f"{stream}:2", {"d": value})
        for value in (
            b"not json at all",
            b'{"key": "a", "ts": "2024-03-01T00:00:00Z", "value": "high"}',
            b'{"key": "a", "value": 1.0}',
            b'{"key": "b", "ts": "2024-03-01T00:00:00.250Z", "value": 2}',
        )
    ]
    client.xadd(f"{stream}:2", {"other": b"x"})  # an entry without the d field
    consumer = consumer_for(redis_url, stream)
    try:
        consumer.assign(dict.fromkeys(range(4)))
        rows, malformed, _ = poll_until(consumer, 9)
    finally:
        consumer.close()

    assert rows.height + malformed.height == 9
    reasons = ["not_json", "wrong_type", "missing_field", "not_json"]
    assert malformed["_hr_reason"].to_list() == reasons
    assert malformed[OFFSET].to_list()[:3] == [pack_redis_id(i) for i in ids[:3]]
    assert "'value'" in malformed["_hr_detail"][1]
    assert rows.filter(pl.col("key") == "b")["ts"].dt.millisecond().to_list() == [250]


def test_a_killed_connection_is_survived_without_loss(
    redis_url: str, stream: str, client: redis.Redis
) -> None:
    produce(redis_url, stream, sample_rows(300))
    consumer = consumer_for(redis_url, stream)
    assert isinstance(consumer, RedisStreamConsumer)
    kills = 0

    def kill_ours() -> None:
        nonlocal kills
        if kills < 3:
            for entry in client.client_list():
                if entry["name"] == consumer.client_name:
                    client.client_kill_filter(_id=entry["id"])
                    kills += 1

    try:
        consumer.assign(dict.fromkeys(range(4)))
        rows, _, _ = poll_until(consumer, 300, max_messages=40, between=kill_ours)
    finally:
        consumer.close()

    assert kills == 3
    assert sorted(rows["value"].to_list()) == [
        float(i) for i in range(300)
    ]  # none lost, none twice
    assert_in_partition_order(rows)


def test_an_unreachable_server_raises_broker_error_naming_it() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(BrokerError) as caught:
        consumer_for(url, "anything", reconnect_timeout="0.5")
    message = str(caught.value)
    assert "redis://:***@127.0.0.1:" in message
    assert "s3cret" not in message
    assert "stayed unreachable" in message


def test_a_topic_without_meta_is_explained(redis_url: str, topic: str) -> None:
    consumer = consumer_for(redis_url, topic)
    try:
        with pytest.raises(StreamError, match=f"{topic}:meta"):
            consumer.partitions()
    finally:
        consumer.close()


def test_unknown_options_are_refused(redis_url: str) -> None:
    with pytest.raises(ConfigError, match=r"\['linger'\].*reconnect_timeout"):
        consumer_for(redis_url, "t", linger="5")
