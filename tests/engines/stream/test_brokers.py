"""The streaming job over real brokers: Kafka (tansu), NATS JetStream and Redis Streams.

The same clicks events, as JSON messages, give the same feature rows as the batch engine;
malformed messages are quarantined with their position; a restart resumes without duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from _clicks import VIEWS, assert_same_rows, batch_clean, batch_view, events, make_project

from headrace.connectors.stream.factory import open_producer
from headrace.engines.stream.runtime import StreamOptions
from headrace.project.stream_job import run_stream

BROKERS = ("kafka", "nats", "redis")


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(URL, [stream] section, topic) of one real broker; the topic is removed afterwards."""
    kind = request.param
    topic = f"clicks-{secrets.token_hex(3)}"
    if kind == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        url = f"kafka://{bootstrap}"
        section = (
            f'[stream]\nbroker = "{url}"\n[stream.options]\n"session.timeout.ms" = "2000"\n'
            '"heartbeat.interval.ms" = "500"\n'  # below the session timeout: no member churn
        )
    elif kind == "nats":
        url = request.getfixturevalue("nats_url")
        section = f'[stream]\nbroker = "{url}"\n'
    else:
        base = request.getfixturevalue("redis_url")
        url = base.rsplit("/", 1)[0] + "/14"
        section = f'[stream]\nbroker = "{url}"\n'
    yield url, section, topic
    if kind == "nats":
        import nats

        async def drop() -> None:
            client = await nats.connect(url)
            try:
                with contextlib.suppress(Exception):
                    await client.jetstream().delete_stream(topic)
            finally:
                await client.close()

        asyncio.run(drop())
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{topic}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _run(project: object, **options: object) -> object:
    settings = {
        "until_end": True,
        "max_batch": 2_000,
        "checkpoint_interval": 0.2,
        "poll_timeout": 1.0,
    }
    return run_stream(project, options=StreamOptions(**(settings | options)))  # type: ignore[arg-type]


def test_a_broker_fed_job_equals_the_batch_engine(
    tmp_path: Path, broker: tuple[str, str, str]
) -> None:
    url, section, topic = broker
    project = make_project(tmp_path / "p", topic=topic, stream=section)
    data = events(3_000, seed=3)
    producer = open_producer(url, topic, partitions=4)
    try:
        first, second = data.head(2_000), data.tail(1_000)
        assert producer.send(first, key=["user"]) == first.height
        _run(project, until_end=False, max_seconds=4.0)  # stopped, not drained: no flush
        assert producer.send(second, key=["user"]) == second.height
    finally:
        producer.close()
    _run(project)  # a second worker run: resumes at the checkpoint
    name = topic.replace("-", "_")
    stored = project.datasets.scan(f"{name}__events").collect()
    assert stored.height == data.height
    assert stored.select("_stream_partition", "_stream_offset").n_unique() == data.height
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for view in VIEWS:
        streamed = project.datasets.scan(f"{view}__stream").collect()
        assert_same_rows(views[view], batch_view(views[view], clean), streamed)
