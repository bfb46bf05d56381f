"""A checkpointed position the broker no longer has stops the job instead of being skipped.

Retention deletes old events (Kafka ``retention.ms``, JetStream stream limits, Redis
``XTRIM`` / ``MAXLEN``), and a topic deleted and recreated starts its positions again. A
consumer started at such a position must raise a ``StreamError`` naming the topic, the
partition, the position, what the broker still has and the fix, as the embedded log does.
Partitions without a checkpoint (None) still start at their beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

import nats
import nats.js.errors
import polars as pl
import pytest
import redis
from confluent_kafka.admin import AdminClient
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from headrace.connectors.stream.base import (
    OFFSET,
    PARTITION,
    StreamConsumer,
    pack_redis_id,
    unpack_redis_id,
)
from headrace.connectors.stream.decode import encode_json
from headrace.connectors.stream.factory import open_consumer, open_producer
from headrace.errors import StreamError
from headrace.testing.brokers import SAMPLE_SCHEMA, RecordingRebalance, poll_until, sample_rows

FIX = "run `headrace stream reset <pipeline>`"


def poll_until_error(consumer: StreamConsumer, timeout: float = 20.0) -> str:
    """Poll until the consumer raises StreamError (the test fails if it never does)."""
    deadline = time.monotonic() + timeout
    with pytest.raises(StreamError) as caught:  # noqa: PT012 - the loop is what raises
        while time.monotonic() < deadline:
            consumer.poll(500, 0.5)
    return str(caught.value)


def send(url: str, topic: str, rows: pl.DataFrame, partitions: int) -> None:
    producer = open_producer(url, topic, partitions=partitions)
    try:
        assert producer.send(rows) == rows.height  # no key: round robin from partition 0
    finally:
        producer.close()


# -- Kafka (Tansu) -----------------------------------------------------------------------------

FAST_GROUP = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "300"}


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, topic: str) -> Iterator[str]:
    yield topic
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics([topic], operation_timeout=10).values():
        future.result(timeout=10)


def kafka_consumer(bootstrap: str, topic: str, starts: dict[int, int | None]) -> StreamConsumer:
    return open_consumer(
        f"kafka://{bootstrap}",
        topic,
        schema=SAMPLE_SCHEMA,
        group=f"group-{topic}",
        rebalance=RecordingRebalance(starts),
        options=FAST_GROUP,
    )


def test_kafka_checkpoint_past_the_partition_end_raises(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    send(f"kafka://{kafka_bootstrap}", kafka_topic, sample_rows(100), partitions=1)
    consumer = kafka_consumer(kafka_bootstrap, kafka_topic, {0: 1000})
    try:
        text = poll_until_error(consumer)
    finally:
        consumer.close()

    assert f"topic {kafka_topic!r}" in text
    assert "partition 0" in text
    assert "offset 1000" in text
    assert "low watermark 0, high watermark 100" in text
    assert "deleted and recreated?" in text
    assert FIX in text


def test_kafka_topic_recreated_shorter_than_the_checkpoint_raises(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    url = f"kafka://{kafka_bootstrap}"
    send(url, kafka_topic, sample_rows(100), partitions=2)
    consumer = kafka_consumer(kafka_bootstrap, kafka_topic, {0: None, 1: None})
    try:
        _, _, checkpoint = poll_until(consumer, 100)
    finally:
        consumer.close()
    assert checkpoint == {0: 50, 1: 50}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics([kafka_topic], operation_timeout=10).values():
        future.result(timeout=10)
    send(url, kafka_topic, sample_rows(20), partitions=2)  # the new topic: offsets 0 to 9

    consumer = kafka_consumer(kafka_bootstrap, kafka_topic, dict(checkpoint))
    try:
        text = poll_until_error(consumer)
    finally:
        consumer.close()
    assert "offset 50" in text
    assert "high watermark 10" in text
    assert "the topic is shorter than the checkpoint: was it deleted and recreated?" in text


def test_kafka_checkpoints_in_range_and_none_still_read_on(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    send(f"kafka://{kafka_bootstrap}", kafka_topic, sample_rows(100), partitions=2)
    consumer = kafka_consumer(kafka_bootstrap, kafka_topic, {0: 20, 1: None})  # None: from 0
    try:
        rows, _, following = poll_until(consumer, 80)
        time.sleep(1.0)  # fetch answers with the watermarks come in: still no error
        assert consumer.poll(100, 0.5).messages == 0
    finally:
        consumer.close()
    assert following == {0: 50, 1: 50}
    assert rows.filter(pl.col(PARTITION) == 0)[OFFSET].min() == 20
    assert rows.filter(pl.col(PARTITION) == 1)[OFFSET].min() == 0

    at_end = kafka_consumer(kafka_bootstrap, kafka_topic, {0: 50, 1: 50})  # right at the end
    try:
        deadline = time.monotonic() + 15
        while not (at_end.poll(100, 0.3).messages == 0 and at_end.at_end()):
            assert time.monotonic() < deadline, "never reported the end of both partitions"
    finally:
        at_end.close()


def test_kafka_partition_back_from_another_member_starts_past_what_it_saw(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    """Watermarks a member cached before it lost a partition do not count against it."""
    url = f"kafka://{kafka_bootstrap}"
    send(url, kafka_topic, sample_rows(100), partitions=2)
    mine, other = RecordingRebalance(), RecordingRebalance()
    group = f"group-{kafka_topic}"
    one = open_consumer(
        url, kafka_topic, schema=SAMPLE_SCHEMA, group=group, rebalance=mine, options=FAST_GROUP
    )
    two: StreamConsumer | None = None
    try:
        _, _, seen = poll_until(one, 100)  # both partitions to offset 50: cached as their end
        two = open_consumer(
            url, kafka_topic, schema=SAMPLE_SCHEMA, group=group, rebalance=other, options=FAST_GROUP
        )
        read: dict[int, int] = {}
        deadline = time.monotonic() + 20
        while not (mine.owned and other.owned):
            assert time.monotonic() < deadline, "the second member never got a partition"
            seen.update(one.poll(100, 0.2).next_positions)
            read.update(two.poll(100, 0.2).next_positions)
        (moved,) = other.owned
        send(url, kafka_topic, sample_rows(100), partitions=2)  # both partitions to offset 100
        while read.get(moved) != 100:  # the other member reads it from 0 to 100
            assert time.monotonic() < deadline + 10, "the second member stopped reading"
            read.update(two.poll(100, 0.2).next_positions)
        mine.starts = {**seen, moved: 100}  # the engine's checkpoint, written by the other
        two.close()
        two = None
        while mine.calls[-1] != ("assigned", [0, 1]):  # it gets the partition back
            assert time.monotonic() < deadline + 20, "the partition never came back"
            one.poll(100, 0.0)  # returns right after the assignment, before any fetch
            time.sleep(0.02)
        got: dict[int, int] = {}
        while got.get(1 - moved) != 100:  # its own partition from its checkpoint, no error
            assert time.monotonic() < deadline + 30, "it stopped reading its own partition"
            got.update(one.poll(100, 0.2).next_positions)
        time.sleep(1.0)
        assert one.poll(100, 0.5).messages == 0
        send(url, kafka_topic, sample_rows(4), partitions=2)
        more, _, _ = poll_until(one, 4)
    finally:
        one.close()
        if two is not None:
            two.close()
    assert more.filter(pl.col(PARTITION) == moved)[OFFSET].to_list() == [100, 101]


# -- NATS JetStream ----------------------------------------------------------------------------


async def _nats(url: str, action: Callable[[JetStreamContext], Awaitable[object]]) -> None:
    client = await nats.connect(url)
    try:
        await action(client.jetstream())
    finally:
        await client.close()


def nats_stream(url: str, topic: str, partitions: int, **limits: int) -> None:
    """Create the topic's stream as open_producer would, with the given limits."""
    config = StreamConfig(
        name=topic,
        subjects=[f"{topic}.*"],
        description=f"headrace partitions={partitions}",
        **limits,
    )
    asyncio.run(_nats(url, lambda js: js.add_stream(config)))


def nats_publish(url: str, topic: str, partitions: Sequence[int]) -> None:
    """One message to each partition in ``partitions``, in that order (stream sequences)."""
    payloads = encode_json(sample_rows(len(partitions)))

    async def publish(js: JetStreamContext) -> None:
        for partition, payload in zip(partitions, payloads, strict=True):
            await js.publish(f"{topic}.{partition}", payload)

    asyncio.run(_nats(url, publish))


@pytest.fixture
def nats_topic(nats_url: str, topic: str) -> Iterator[str]:
    """A topic name whose JetStream stream is deleted after the test."""
    yield topic
    with contextlib.suppress(nats.js.errors.NotFoundError):
        asyncio.run(_nats(nats_url, lambda js: js.delete_stream(topic)))


def nats_consumer(url: str, topic: str, positions: dict[int, int | None]) -> StreamConsumer:
    consumer = open_consumer(url, topic, schema=SAMPLE_SCHEMA, group="g")
    try:
        consumer.assign(positions)
    except BaseException:
        consumer.close()
        raise
    return consumer


def test_nats_position_deleted_by_the_stream_limits_raises(nats_url: str, nats_topic: str) -> None:
    nats_stream(nats_url, nats_topic, 2, max_msgs=50)
    nats_publish(nats_url, nats_topic, [0, 1] * 50)  # sequences 1 to 100; 51 to 100 are kept
    # The job read partition 0 up to sequence 19: sequences 20 to 50 went unread.
    with pytest.raises(StreamError) as caught:
        nats_consumer(nats_url, nats_topic, {0: 20, 1: None})
    text = str(caught.value)
    assert f"JetStream stream {nats_topic!r}" in text
    assert "partition 0" in text
    assert "stream sequence 20" in text
    assert "sequences 20 to 50 (31 messages, of any partition)" in text
    assert "it holds sequences 51 to 100 now" in text
    assert FIX in text


def test_nats_position_still_stored_reads_on(nats_url: str, nats_topic: str) -> None:
    nats_stream(nats_url, nats_topic, 2, max_msgs=50)
    nats_publish(nats_url, nats_topic, [0, 1] * 50)
    # Partition 0 was read up to sequence 59 (kept); partition 1 has no checkpoint.
    consumer = nats_consumer(nats_url, nats_topic, {0: 60, 1: None})
    try:
        rows, _, following = poll_until(consumer, 45)
    finally:
        consumer.close()
    assert rows.filter(pl.col(PARTITION) == 0)[OFFSET].to_list() == list(range(61, 100, 2))
    assert rows.filter(pl.col(PARTITION) == 1)[OFFSET].to_list() == list(range(52, 101, 2))
    assert following == {0: 100, 1: 101}


def test_nats_messages_deleted_by_a_per_subject_limit_raise(nats_url: str, nats_topic: str) -> None:
    nats_stream(nats_url, nats_topic, 2, max_msgs_per_subject=50)
    # Sequences 1-10: partition 1 (all kept); 11-110: partition 0, of which 61-110 are kept.
    nats_publish(nats_url, nats_topic, [1] * 10 + [0] * 100)
    with pytest.raises(StreamError) as caught:
        nats_consumer(nats_url, nats_topic, {0: 21, 1: 11})  # read up to 20: 21-60 are gone
    text = str(caught.value)
    assert "stream sequence 21" in text
    assert "sequence 20, the partition's last message the job read, was deleted" in text
    assert "the partition's messages among sequences 21 to 60" in text

    # Read up to 60: deleted too, but the partition's next message, 61, is still there.
    consumer = nats_consumer(nats_url, nats_topic, {0: 61, 1: 11})
    try:
        rows, _, _ = poll_until(consumer, 50)
    finally:
        consumer.close()
    assert rows[OFFSET].to_list() == list(range(61, 111))


def test_nats_stream_recreated_shorter_than_the_checkpoint_raises(
    nats_url: str, nats_topic: str
) -> None:
    nats_stream(nats_url, nats_topic, 2)
    nats_publish(nats_url, nats_topic, [0, 1] * 50)
    asyncio.run(_nats(nats_url, lambda js: js.delete_stream(nats_topic)))
    nats_stream(nats_url, nats_topic, 2)
    nats_publish(nats_url, nats_topic, [0, 1] * 10)  # the new stream: sequences 1 to 20
    with pytest.raises(StreamError) as caught:
        nats_consumer(nats_url, nats_topic, {0: 100, 1: 101})
    text = str(caught.value)
    assert "stream sequence 100" in text
    assert "ends at sequence 20" in text
    assert "the stream is shorter than the checkpoint: was it deleted and recreated?" in text


# -- Redis Streams -----------------------------------------------------------------------------


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def redis_topic(redis_client: redis.Redis, topic: str) -> Iterator[str]:
    """A topic name whose keys (``<topic>:*``) are deleted after the test."""
    yield topic
    keys = list(redis_client.scan_iter(match=f"{topic}:*"))
    if keys:
        redis_client.delete(*keys)


def redis_ids(client: redis.Redis, topic: str, partition: int) -> list[str]:
    return [entry_id.decode() for entry_id, _ in client.xrange(f"{topic}:{partition}")]


def redis_consumer(url: str, topic: str, positions: dict[int, int | None]) -> StreamConsumer:
    consumer = open_consumer(url, topic, schema=SAMPLE_SCHEMA, group="workers")
    try:
        consumer.assign(positions)
    except BaseException:
        consumer.close()
        raise
    return consumer


def test_redis_position_trimmed_before_the_job_started_raises(
    redis_url: str, redis_client: redis.Redis, redis_topic: str
) -> None:
    send(redis_url, redis_topic, sample_rows(100), partitions=2)
    ids = redis_ids(redis_client, redis_topic, 0)
    read = pack_redis_id(ids[9]) + 1  # the job read partition 0's first 10 entries
    redis_client.xtrim(f"{redis_topic}:0", maxlen=30, approximate=False)  # ids[20:] are left
    with pytest.raises(StreamError) as caught:
        redis_consumer(redis_url, redis_topic, {0: read, 1: None})
    text = str(caught.value)
    assert f"topic {redis_topic!r}" in text
    assert f"partition 0 (stream {redis_topic}:0)" in text
    assert f"entry id {unpack_redis_id(read)}" in text
    assert f"its first entry is now {ids[20]}: entry {ids[9]}, the last one the job read" in text
    assert FIX in text


def test_redis_trimmed_while_the_job_reads_raises(
    redis_url: str, redis_client: redis.Redis, redis_topic: str
) -> None:
    send(redis_url, redis_topic, sample_rows(100), partitions=1)
    consumer = redis_consumer(redis_url, redis_topic, {0: None})
    try:
        assert consumer.poll(10, 5.0).messages == 10
        redis_client.xtrim(f"{redis_topic}:0", maxlen=50, approximate=False)  # 10 to 49 go
        text = poll_until_error(consumer, timeout=5)
    finally:
        consumer.close()
    ids = redis_ids(redis_client, redis_topic, 0)
    assert f"its first entry is now {ids[0]}" in text


def test_redis_stream_trimmed_empty_raises(
    redis_url: str, redis_client: redis.Redis, redis_topic: str
) -> None:
    send(redis_url, redis_topic, sample_rows(20), partitions=1)
    ids = redis_ids(redis_client, redis_topic, 0)
    redis_client.xtrim(f"{redis_topic}:0", maxlen=0, approximate=False)
    with pytest.raises(StreamError, match=f"the stream is empty: its entries up to {ids[-1]}"):
        redis_consumer(redis_url, redis_topic, {0: pack_redis_id(ids[4]) + 1})
    # Read to its last entry before the trim: nothing was lost.
    redis_consumer(redis_url, redis_topic, {0: pack_redis_id(ids[-1]) + 1}).close()


def test_redis_stream_deleted_raises(
    redis_url: str, redis_client: redis.Redis, redis_topic: str
) -> None:
    send(redis_url, redis_topic, sample_rows(20), partitions=1)
    read = pack_redis_id(redis_ids(redis_client, redis_topic, 0)[-1]) + 1
    redis_client.delete(f"{redis_topic}:0")
    with pytest.raises(StreamError) as caught:
        redis_consumer(redis_url, redis_topic, {0: read})
    text = str(caught.value)
    assert "the stream's last generated id is 0-0 (it has no entries)" in text
    assert "the stream is shorter than the checkpoint" in text
    assert not redis_client.exists(f"{redis_topic}:0")  # not made again by the consumer


def test_redis_position_still_stored_reads_on(
    redis_url: str, redis_client: redis.Redis, redis_topic: str
) -> None:
    send(redis_url, redis_topic, sample_rows(100), partitions=2)
    ids = redis_ids(redis_client, redis_topic, 0)
    redis_client.xtrim(f"{redis_topic}:0", maxlen=30, approximate=False)  # ids[20:] are left
    redis_client.xtrim(f"{redis_topic}:1", maxlen=30, approximate=False)
    consumer = redis_consumer(redis_url, redis_topic, {0: pack_redis_id(ids[24]) + 1, 1: None})
    try:
        rows, _, _ = poll_until(consumer, 55)
        assert consumer.poll(10, 0.2).messages == 0
    finally:
        consumer.close()
    assert rows.filter(pl.col(PARTITION) == 0).height == 25  # ids[25:]
    assert rows.filter(pl.col(PARTITION) == 1).height == 30  # no checkpoint: its first entry on


def test_nats_a_quiet_partition_moves_past_the_others_messages(
    nats_url: str, nats_topic: str
) -> None:
    """Other partitions' messages expiring is no loss for a partition that had none."""
    nats_stream(nats_url, nats_topic, 2, max_msgs=50)
    nats_publish(nats_url, nats_topic, [0, 0] + [1] * 10)  # 1-2: partition 0; 3-12: 1
    consumer = nats_consumer(nats_url, nats_topic, {0: None, 1: None})
    try:
        rows, _, following = poll_until(consumer, 12)
        assert rows.height == 12
        deadline = time.monotonic() + 10
        while following.get(0, 0) < 13 and time.monotonic() < deadline:
            following.update(consumer.poll(500, 0.3).next_positions)  # empty: quiet check
    finally:
        consumer.close()
    assert following == {0: 13, 1: 13}  # partition 0 moved past partition 1's messages
    nats_publish(nats_url, nats_topic, [1] * 45)  # 13-57: the stream keeps 8 to 57
    with pytest.raises(StreamError, match="stream sequence 3"):  # where it stood unmoved
        nats_consumer(nats_url, nats_topic, {0: 3, 1: 13})
    consumer = nats_consumer(nats_url, nats_topic, {0: 13, 1: 13})
    try:
        rows, _, _ = poll_until(consumer, 45)
    finally:
        consumer.close()
    assert rows.filter(pl.col(PARTITION) == 1)[OFFSET].to_list() == list(range(13, 58))
    assert rows.filter(pl.col(PARTITION) == 0).height == 0
