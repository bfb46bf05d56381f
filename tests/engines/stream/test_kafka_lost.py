"""Partitions *lost* (not revoked) are forgotten without a checkpoint.

Kafka: a worker stops polling for longer than ``max.poll.interval.ms``; librdkafka leaves the
group and, at the next poll, reports the whole assignment lost. Another member may own the
partitions by then and have checkpointed past this one, so the job must write nothing for
them: the checkpoint store and the offline datasets stay as they were, and what the job held
since its last checkpoint is dropped. When the member rejoins, it resumes from the checkpoint
and the outputs end up exactly as the batch engine's, each event stored once.

The embedded log shows the contract for a loss of only some partitions: the job forgets all
of them (held feature rows do not say which partition they came from), and the partitions it
keeps come back through ``assigned()`` from their last checkpoint.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from _clicks import VIEWS, assert_same_rows, batch_clean, batch_view, events, make_project, produce

import headrace as hr
from headrace.connectors.stream.factory import open_producer
from headrace.engines.stream.runtime import StreamJob, StreamOptions
from headrace.project.stream_job import build_job, job_outputs, run_stream
from headrace.storage.schema import stream_checkpoints, stream_intents, stream_state

POLL_INTERVAL_MS = 1500
"""``max.poll.interval.ms`` (and the session timeout): a stall longer than this loses."""
STALL = 3.5
"""Seconds the job stops polling: well past the poll interval (librdkafka checks each second)."""


@pytest.fixture
def kafka_project(tmp_path: Path, kafka_bootstrap: str) -> Iterator[tuple[hr.Project, str]]:
    topic = f"clicks-{secrets.token_hex(3)}"
    url = f"kafka://{kafka_bootstrap}"
    section = (
        f'[stream]\nbroker = "{url}"\n[stream.options]\n'
        f'"session.timeout.ms" = "{POLL_INTERVAL_MS}"\n"heartbeat.interval.ms" = "300"\n'
        f'"max.poll.interval.ms" = "{POLL_INTERVAL_MS}"\n'
    )
    project = make_project(tmp_path / "p", topic=topic, stream=section)
    try:
        yield project, url
    finally:
        project.close()


def _written(project: hr.Project, job: StreamJob) -> dict[str, Any]:
    """Everything a job can have written: checkpoint rows, intents, state, dataset versions."""
    with project.metadata.reading() as c:
        saved = c.execute(
            sa.select(stream_checkpoints).where(stream_checkpoints.c.job == job.name)
        ).all()
        intents = c.execute(sa.select(stream_intents).where(stream_intents.c.job == job.name))
        state = c.execute(
            sa.select(sa.func.count()).where(stream_state.c.job == job.name)
        ).scalar_one()
        intended = sorted(tuple(r) for r in intents.all())
    outputs = job_outputs(job.plan.stream, job.plan.views)
    names = [outputs.events, outputs.late, outputs.quarantine, *outputs.views.values()]
    return {
        "checkpoints": {
            int(r.partition): (r.seq, r.position, r.owner, r.saved_at, bytes(r.state))
            for r in saved
        },
        "intents": intended,
        "state rows": state,
        "datasets": {n: project.datasets.current_version(n) for n in names},
    }


def _saved_positions(project: hr.Project, job: StreamJob) -> dict[int, int | None]:
    table = stream_checkpoints
    query = sa.select(table.c.partition, table.c.position).where(table.c.job == job.name)
    with project.metadata.reading() as c:
        return {int(r.partition): r.position for r in c.execute(query).all()}


def test_a_stalled_kafka_worker_loses_its_partitions_without_writing_for_them(
    kafka_project: tuple[hr.Project, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, url = kafka_project
    topic = project.pipeline().streams["events_raw"].topic
    data = events(3_000, seed=11)
    first, second = data.head(1_500), data.tail(1_500)
    producer = open_producer(url, topic, partitions=4)
    try:
        assert producer.send(first, key=["user"]) == first.height
        # A first run reads what is there and checkpoints it (stopped, not drained).
        run_stream(
            project,
            options=StreamOptions(max_seconds=3.0, checkpoint_interval=0.2, poll_timeout=0.1),
        )
        assert producer.send(second, key=["user"]) == second.height
    finally:
        producer.close()

    stalled: list[bool] = []

    def stall_once(_: object) -> None:
        if not stalled:  # right after the first batch: it is held, not checkpointed
            stalled.append(True)
            time.sleep(STALL)

    options = StreamOptions(
        until_end=True, max_batch=300, checkpoint_interval=30.0, poll_timeout=0.1
    )
    job = build_job(project, options=options, on_batch=stall_once)
    seen: list[dict[str, Any]] = []
    forget = job.lost

    def lost(partitions: Sequence[int]) -> None:
        ahead = {p: job.positions[p] for p in job.owned}
        before = _written(project, job)
        saved = _saved_positions(project, job)
        forget(partitions)
        after = _written(project, job)
        record = {"partitions": list(partitions), "before": before, "after": after}
        seen.append(record | {"ahead": ahead, "saved": saved, "owned after": job.owned})

    monkeypatch.setattr(job, "lost", lost)
    try:
        stats = job.run()
    finally:
        job.consumer.close()

    assert stalled, "the job never processed a batch"
    assert seen, "librdkafka did not report the assignment lost: raise STALL"
    loss = seen[0]
    assert loss["partitions"] == [0, 1, 2, 3]
    assert loss["owned after"] == []
    assert loss["after"] == loss["before"], "the job wrote for partitions it had lost"
    ahead, saved = loss["ahead"], loss["saved"]
    assert any((ahead[p] or 0) > (saved.get(p) or 0) for p in ahead), (
        f"nothing was held when the partitions were lost: {ahead} vs saved {saved}"
    )
    assert stats.events > second.height  # the held batch was read again after the rejoin

    name = topic.replace("-", "_")
    stored = project.datasets.scan(f"{name}__events").collect()
    positions = stored.select("_stream_partition", "_stream_offset")
    dupes = positions.filter(positions.is_duplicated()).unique()
    assert dupes.is_empty(), f"events stored twice: {dupes}"
    assert stored.height == data.height
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for view in VIEWS:
        streamed = project.datasets.scan(f"{view}__stream").collect()
        assert_same_rows(views[view], batch_view(views[view], clean), streamed)


def test_a_partial_loss_sends_the_kept_partitions_back_to_their_checkpoint(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "p")
    data = events(4_000, seed=13)
    produce(project, data.head(2_000))
    run_stream(project, options=StreamOptions(max_seconds=0.5, checkpoint_interval=0.05))
    produce(project, data.tail(2_000))

    job = build_job(project, options=StreamOptions(until_end=True, max_batch=400))
    before = _written(project, job)
    saved = _saved_positions(project, job)
    gone = 1
    kept: list[int] = []

    def lose_one(_: object) -> None:
        if kept:
            return
        assert (job.positions[gone] or 0) > (saved[gone] or 0), "nothing held for it yet"
        kept.extend(p for p in job.owned if p != gone)
        job.lost([gone])
        assert job.owned == []
        assert _written(project, job) == before
        # What a coordinator does next: hand the kept partitions back, read from their starts.
        starts = job.assigned(kept)
        assert starts == {p: saved[p] for p in kept}
        job.consumer.assign(starts)

    job.on_batch = lose_one
    try:
        job.run()
    finally:
        job.consumer.close()

    after = _written(project, job)["checkpoints"]
    assert after[gone] == before["checkpoints"][gone], "the lost partition was checkpointed"
    name = "events_raw"
    stored = project.datasets.scan(f"{name}__events").collect()
    beyond = stored.filter(
        (pl.col("_stream_partition") == gone) & (pl.col("_stream_offset") >= saved[gone])
    )
    assert beyond.is_empty(), f"rows of the lost partition past its checkpoint: {beyond}"
    for partition in kept:  # read to their end and checkpointed there
        assert _saved_positions(project, job)[partition] == job.positions[partition]

    # The partition's next owner (here: a new run over every partition) resumes from there.
    run_stream(project, options=StreamOptions(until_end=True, max_batch=400))
    stored = project.datasets.scan(f"{name}__events").collect()
    positions = stored.select("_stream_partition", "_stream_offset")
    assert positions.n_unique() == stored.height == data.height
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for view in VIEWS:
        streamed = project.datasets.scan(f"{view}__stream").collect()
        assert_same_rows(views[view], batch_view(views[view], clean), streamed)
