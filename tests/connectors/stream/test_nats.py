"""NATS JetStream connector against the real server (127.0.0.1:4222 with -js)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import nats
import polars as pl
import pytest

from headrace.connectors.stream.base import OFFSET, PARTITION, StreamConsumer
from headrace.connectors.stream.factory import open_consumer, open_producer
from headrace.errors import BrokerError, ConfigError, StreamError
from headrace.testing.brokers import (
    SAMPLE_SCHEMA,
    TcpProxy,
    assert_in_partition_order,
    assert_routed_by_key,
    free_port,
    poll_until,
    sample_rows,
)

COLUMNS = list(SAMPLE_SCHEMA)


async def _js_call(url: str, action: str, *args: object) -> None:
    client = await nats.connect(url)
    try:
        await getattr(client.jetstream(), action)(*args)
    finally:
        await client.close()


@pytest.fixture
def stream(nats_url: str, topic: str) -> Iterator[str]:
    """A topic name whose JetStream stream is deleted after the test."""
    yield topic
    with contextlib.suppress(nats.js.errors.NotFoundError):
        asyncio.run(_js_call(nats_url, "delete_stream", topic))


def consumer_for(url: str, topic: str, **options: str) -> StreamConsumer:
    return open_consumer(url, topic, schema=SAMPLE_SCHEMA, group="g", options=options)


def produce(url: str, topic: str, rows: pl.DataFrame, partitions: int = 4) -> None:
    producer = open_producer(url, topic, partitions=partitions)
    try:
        assert producer.send(rows, key=["key"]) == rows.height
    finally:
        producer.close()


def test_every_row_comes_back_in_its_key_partition(nats_url: str, stream: str) -> None:
    sent = sample_rows(400)
    produce(nats_url, stream, sent)
    consumer = consumer_for(nats_url, stream)
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
    assert sorted(rows[OFFSET].to_list()) == list(range(1, 401))  # stream sequences
    last = rows.group_by(PARTITION).agg(pl.col(OFFSET).max())
    assert following == {p: offset + 1 for p, offset in last.iter_rows()}


def test_reading_resumes_at_the_given_positions(nats_url: str, stream: str) -> None:
    produce(nats_url, stream, sample_rows(200))
    consumer = consumer_for(nats_url, stream)
    try:
        consumer.assign({0: None, 1: None})
        first, _, following = poll_until(consumer, 1, max_messages=30)
        consumer.assign({0: following.get(0), 1: following.get(1), 2: None, 3: None})
        rest, _, _ = poll_until(consumer, 200 - first.height)
        assert consumer.poll(100, 0.3).messages == 0
    finally:
        consumer.close()

    both = pl.concat([first, rest])
    assert sorted(both["value"].to_list()) == [float(i) for i in range(200)]  # once each
    assert_in_partition_order(both)


def test_a_partition_left_out_of_assign_is_released(nats_url: str, stream: str) -> None:
    produce(nats_url, stream, sample_rows(100))
    consumer = consumer_for(nats_url, stream)
    try:
        consumer.assign({1: None, 3: None})
        rows, _, _ = poll_until(consumer, 100, timeout=2)
    finally:
        consumer.close()
    assert set(rows[PARTITION].unique().to_list()) == {1, 3}


def test_undecodable_messages_come_back_with_position_and_reason(
    nats_url: str, stream: str
) -> None:
    produce(nats_url, stream, sample_rows(4, keys=1))  # creates the stream
    bad = [
        b"not json at all",
        b'{"key": "a", "ts": "2024-03-01T00:00:00Z", "value": "high"}',
        b'{"key": "a", "value": 1.0}',
        b'{"key": "b", "ts": 1709251200000, "value": 2}',
    ]

    async def publish() -> None:
        client = await nats.connect(nats_url)
        try:
            for value in bad:
                await client.jetstream().publish(f"{stream}.2", value)
        finally:
            await client.close()

    asyncio.run(publish())
    consumer = consumer_for(nats_url, stream)
    try:
        consumer.assign(dict.fromkeys(range(4)))
        rows, malformed, _ = poll_until(consumer, 8)
    finally:
        consumer.close()

    assert rows.height + malformed.height == 8
    assert malformed[OFFSET].to_list() == [5, 6, 7]
    assert malformed["_hr_reason"].to_list() == ["not_json", "wrong_type", "missing_field"]
    assert set(malformed[PARTITION].to_list()) == {2}
    epoch = rows.filter(pl.col("key") == "b")
    assert epoch["ts"].to_list()[0].isoformat() == "2024-03-01T00:00:00+00:00"


def test_a_dropped_connection_is_restored_without_loss(nats_url: str, stream: str) -> None:
    produce(nats_url, stream, sample_rows(300))
    parts = urlsplit(nats_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 4222)
    consumer = consumer_for(f"nats://127.0.0.1:{proxy.port}", stream)
    drops = 0

    def drop_three_times() -> None:
        nonlocal drops
        if drops < 3:
            proxy.drop()
            drops += 1

    try:
        consumer.assign(dict.fromkeys(range(4)))
        rows, _, _ = poll_until(consumer, 300, max_messages=40, between=drop_three_times)
    finally:
        consumer.close()
        proxy.close()

    assert drops == 3
    assert sorted(rows["value"].to_list()) == [
        float(i) for i in range(300)
    ]  # none lost, none twice
    assert_in_partition_order(rows)


def test_an_unreachable_server_raises_broker_error_naming_it(nats_url: str, stream: str) -> None:
    produce(nats_url, stream, sample_rows(10))
    parts = urlsplit(nats_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 4222)
    url = f"nats://app:s3cret@127.0.0.1:{proxy.port}"
    consumer = consumer_for(url, stream, reconnect_timeout="1.5")
    try:
        consumer.assign(dict.fromkeys(range(4)))
        poll_until(consumer, 10)
        proxy.close()
        started = time.monotonic()
        with pytest.raises(BrokerError) as caught:
            consumer.poll(10, 0.5)
        assert time.monotonic() - started >= 1.0  # it retried before giving up
    finally:
        consumer.close()
    message = str(caught.value)
    assert f"nats://app:***@127.0.0.1:{proxy.port}" in message
    assert "s3cret" not in message


def test_no_server_at_all_fails_at_open() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(BrokerError, match=f"{url} stayed unreachable"):
        consumer_for(url, "anything", reconnect_timeout="0.5")


def test_a_stream_without_a_partition_count_is_explained(nats_url: str, stream: str) -> None:
    asyncio.run(
        _js_call(
            nats_url, "add_stream", nats.js.api.StreamConfig(name=stream, subjects=[f"{stream}.*"])
        )
    )
    with pytest.raises(StreamError, match="no partition count"):
        consumer_for(nats_url, stream)


def test_a_missing_stream_is_explained(nats_url: str, topic: str) -> None:
    with pytest.raises(StreamError, match=f"stream '{topic}' does not exist"):
        consumer_for(nats_url, topic)


def test_a_topic_that_cannot_name_a_stream_is_refused(nats_url: str) -> None:
    with pytest.raises(ConfigError, match="letters, digits"):
        open_producer(nats_url, "orders.eu")
