"""``until_end`` stops at the end of the input, not at the first poll that came back empty.

An empty poll can come while messages are still on their way: librdkafka pauses fetching
once its local queue is full (``fetch.queue.backoff.ms``, a second by default; here the
queue is made small so that 2,000 events show it), a NATS pull request may not be answered
within a very short poll timeout. So the job asks the consumer whether every owned partition
is read to its end (``at_end``) before it flushes and stops. Redis is read synchronously: its
empty poll is the end already.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import headrace as hr
from headrace.connectors.stream.factory import open_consumer, open_producer
from headrace.engines.stream.runtime import StreamOptions
from headrace.project.stream_job import run_stream
from headrace.testing.brokers import SAMPLE_SCHEMA, RecordingRebalance, sample_rows

EVENTS = 2_000
PIPELINE = textwrap.dedent(
    """
    import polars as pl
    import headrace as hr

    pipeline = hr.Pipeline("ticks")

    @pipeline.source
    def ticks() -> pl.LazyFrame:
        return pl.scan_parquet("ticks.parquet")

    SCHEMA = {"key": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64}
    pipeline.stream("ticks", event_time="ts", disorder="1s", key="key", topic="{topic}",
                    schema=SCHEMA)
    pipeline.features(hr.FeatureView(
        "key_totals", entity=hr.Entity("key", ["key"]), source="ticks", event_time="ts",
        ttl="1d", features=[hr.Aggregate("value", "sum", "1m"),
                            hr.Aggregate(None, "count", "1m", name="n")],
    ))
    """
)


KAFKA_SMALL_FETCHES = {
    "session.timeout.ms": "2000",
    "heartbeat.interval.ms": "300",
    "max.partition.fetch.bytes": "1024",  # a few producer batches per fetch
    "queued.min.messages": "50",  # then pause fetching ...
    "fetch.queue.backoff.ms": "300",  # ... for this long
}


@pytest.fixture(params=["kafka", "nats", "redis"])
def broker(request: pytest.FixtureRequest, topic: str) -> Iterator[tuple[str, str, float]]:
    """(URL, [stream] section, poll timeout) of one real broker; the topic is removed after."""
    kind = request.param
    if kind == "kafka":
        url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
        options = "".join(f'"{k}" = "{v}"\n' for k, v in KAFKA_SMALL_FETCHES.items())
        section, timeout = f'[stream]\nbroker = "{url}"\n[stream.options]\n{options}', 0.05
    elif kind == "nats":
        url = request.getfixturevalue("nats_url")
        section, timeout = f'[stream]\nbroker = "{url}"\n', 0.001
    else:
        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/14"
        section, timeout = f'[stream]\nbroker = "{url}"\n', 0.001
    yield url, section, timeout
    if kind == "kafka":
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": url.removeprefix("kafka://")})
        for future in admin.delete_topics([topic], operation_timeout=10).values():
            future.result(timeout=10)
    elif kind == "nats":
        import nats

        async def drop() -> None:
            client = await nats.connect(url)
            try:
                with contextlib.suppress(Exception):
                    await client.jetstream().delete_stream(topic)
            finally:
                await client.close()

        asyncio.run(drop())
    else:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{topic}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _project(root: Path, topic: str, section: str) -> hr.Project:
    root.mkdir(parents=True)
    (root / "headrace.toml").write_text(f'[project]\nname = "ticks"\n\n{section}')
    (root / "pipeline.py").write_text(PIPELINE.replace("{topic}", topic))
    return hr.Project.open(root)


def test_until_end_reads_every_event_despite_a_short_poll_timeout(
    tmp_path: Path, topic: str, broker: tuple[str, str, float]
) -> None:
    url, section, timeout = broker
    sent = sample_rows(EVENTS, keys=37)
    producer = open_producer(url, topic, partitions=4)
    try:
        for chunk in sent.iter_slices(100):  # many small producer batches
            assert producer.send(chunk, key=["key"]) == chunk.height
    finally:
        producer.close()
    project = _project(tmp_path / "p", topic, section)
    try:
        options = StreamOptions(
            until_end=True, poll_timeout=timeout, max_batch=200, checkpoint_interval=0.2
        )
        stats = run_stream(project, options=options)
        stored = project.datasets.scan(f"{topic.replace('-', '_')}__events").collect()
        totals = project.datasets.scan("key_totals__stream").collect()
    finally:
        project.close()
    assert stats.events == EVENTS
    assert stored.height == EVENTS
    assert stored.select("_stream_partition", "_stream_offset").n_unique() == EVENTS
    assert totals.height == EVENTS  # a sliding view: one row per event, all flushed
    assert stored.sort("value").select(sent.columns).equals(sent)


def test_kafka_is_at_its_end_only_once_every_partition_is_read(
    kafka_bootstrap: str, topic: str
) -> None:
    url = f"kafka://{kafka_bootstrap}"
    producer = open_producer(url, topic, partitions=4)
    try:
        assert producer.send(sample_rows(3), key=["key"]) == 3  # some partitions stay empty
    finally:
        producer.close()
    listener = RecordingRebalance()
    consumer = open_consumer(
        url,
        topic,
        schema=SAMPLE_SCHEMA,
        group=f"group-{topic}",
        rebalance=listener,
        options={"session.timeout.ms": "2000", "heartbeat.interval.ms": "300"},
    )
    read = 0
    answers: list[tuple[int, bool]] = []  # (rows read so far, at_end) after each empty poll
    try:
        for _ in range(400):  # 20 s at most
            polled = consumer.poll(100, 0.05)
            read += polled.data.height
            if listener.owned and not polled.messages:
                answers.append((read, consumer.at_end()))
                if answers[-1][1]:
                    break
    finally:
        consumer.close()

    assert listener.calls[0] == ("assigned", [0, 1, 2, 3])
    assert answers, "Kafka never assigned the partitions"
    assert answers[-1] == (3, True), answers
    assert all(not end for rows, end in answers if rows < 3), answers
