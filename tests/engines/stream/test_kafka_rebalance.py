"""Two worker processes share a Kafka topic; Kafka's consumer group moves the partitions.

Worker A reads alone, B joins (the group takes partitions from A, which checkpoints them
before it lets go, and B loads their window state from the checkpoint store), more events
arrive, A leaves (its partitions go to B with their state), and a last run drains the rest.
The offline outputs equal one uninterrupted batch computation.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from _clicks import VIEWS, assert_same_rows, batch_clean, batch_view, events, make_project

import headrace as hr
from headrace.connectors.stream.factory import open_producer
from headrace.engines.stream.runtime import StreamOptions
from headrace.project.stream_job import run_stream
from headrace.storage.schema import stream_checkpoints

# The CLI, with the engine's and the Kafka consumer's INFO logs (assigned/revoked) on stderr.
WORKER = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(name)s %(message)s')\n"
    "logging.getLogger('headrace').setLevel(logging.INFO)\n"
    "from headrace.cli.app import main\n"
    "sys.argv[0] = 'headrace'\n"
    "main()\n"
)
FIRST_SECONDS = 14.0  # A's run (--seconds: it checkpoints and leaves without flushing)
SECOND_SECONDS = 24.0  # B's run: it outlives A and takes A's partitions
PARTITIONS = 4


@pytest.fixture
def kafka_project(tmp_path: Path, kafka_bootstrap: str) -> Iterator[tuple[hr.Project, str]]:
    topic = f"clicks-{secrets.token_hex(3)}"
    url = f"kafka://{kafka_bootstrap}"
    # Heartbeats well inside the session (librdkafka's default interval is 3 s: with a 3 s
    # session, Tansu would expire members between heartbeats and they would lose partitions).
    section = (
        f'[stream]\nbroker = "{url}"\n[stream.options]\n"session.timeout.ms" = "3000"\n'
        '"heartbeat.interval.ms" = "500"\n'
    )
    project = make_project(tmp_path / "p", topic=topic, stream=section)
    try:
        yield project, url
    finally:
        project.close()


def _worker(root: Path, seconds: float, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-c",
        WORKER,
        "--project",
        str(root),
        "stream",
        "run",
        "--seconds",
        str(seconds),
        "--checkpoint-interval",
        "0.2",
        "--max-batch",
        "200",
        "--format",
        "json",
    ]
    with log.open("wb") as err:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)


def _owners(project: hr.Project, job: str) -> dict[int, tuple[str, int]]:
    """Partition -> (owner, position) of the last checkpoint of each partition."""
    table = stream_checkpoints
    query = sa.select(table.c.partition, table.c.owner, table.c.position).where(table.c.job == job)
    with project.metadata.reading() as c:
        rows = c.execute(query).all()
    return {int(r.partition): (str(r.owner), int(r.position or 0)) for r in rows}


def _wait(what: str, ready: Callable[[], bool], timeout: float, workers: dict[str, Path]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}:\n{p.read_text()[-3000:]}" for n, p in workers.items())
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.2)


def _pid(owner: str) -> int:
    return int(owner.split("-", 1)[0])


def test_kafka_moves_partitions_and_their_state_between_worker_processes(
    tmp_path: Path, kafka_project: tuple[hr.Project, str]
) -> None:
    project, url = kafka_project
    topic = project.pipeline().streams["events_raw"].topic
    job = f"clicks/{topic}"
    data = events(4_000, seed=9)
    first_half, second_half = data.head(2_000), data.tail(2_000)
    logs = {"A": tmp_path / "a.log", "B": tmp_path / "b.log"}
    workers: dict[str, subprocess.Popen[bytes]] = {}
    seen: list[dict[int, int]] = []  # partition -> owner pid, at each change

    def note() -> dict[int, tuple[str, int]]:
        owners = _owners(project, job)
        now = {p: _pid(o) for p, (o, _) in owners.items()}
        if not seen or seen[-1] != now:
            seen.append(now)
        return owners

    producer = open_producer(url, topic, partitions=PARTITIONS)
    done: dict[str, int] = {}  # events each worker processed
    try:
        assert producer.send(first_half, key=["user"]) == first_half.height
        workers["A"] = a = _worker(project.root, FIRST_SECONDS, logs["A"])

        def a_owns_all() -> bool:
            owners = note()
            return len(owners) == PARTITIONS and {_pid(o) for o, _ in owners.values()} == {a.pid}

        _wait("A to checkpoint all partitions alone", a_owns_all, 40, logs)
        assert a.poll() is None, logs["A"].read_text()[-3000:]

        workers["B"] = b = _worker(project.root, SECOND_SECONDS, logs["B"])

        def b_took_some() -> bool:
            return any(_pid(o) == b.pid for o, _ in note().values())

        _wait("the group to give B partitions of A", b_took_some, 40, logs)
        assert a.poll() is None, "A left before B joined: raise FIRST_SECONDS"
        assert producer.send(second_half, key=["user"]) == second_half.height
        producer.close()
        for name in ("A", "B"):  # A leaves first (its --seconds end), then B
            worker = workers[name]
            while worker.poll() is None:
                note()
                time.sleep(0.2)
            stdout, _ = worker.communicate()
            assert worker.returncode == 0, logs[name].read_text()[-3000:]
            done[name] = int(json.loads(stdout)["events"])
    finally:
        for worker in workers.values():  # only the processes this test started, by pid
            if worker.poll() is None:
                worker.kill()
            worker.communicate(timeout=10)  # reaps it and closes its stdout
        producer.close()

    a_pid, b_pid = workers["A"].pid, workers["B"].pid
    shared = [s for s in seen if set(s.values()) == {a_pid, b_pid}]
    assert shared, f"A and B never shared the partitions: {seen}"
    assert seen[-1] == dict.fromkeys(range(PARTITIONS), b_pid), f"A's partitions stayed: {seen}"
    assert done["A"] > 0
    assert done["B"] > 0, "B never got a partition"

    # A third member drains what is left and flushes every window (end of input).
    run_stream(
        project,
        options=StreamOptions(
            until_end=True, max_batch=2_000, checkpoint_interval=0.2, poll_timeout=2.0
        ),
    )
    name = topic.replace("-", "_")
    stored = project.datasets.scan(f"{name}__events").collect()
    positions = stored.select("_stream_partition", "_stream_offset")
    dupes = positions.filter(positions.is_duplicated()).unique()
    assert dupes.is_empty(), f"events stored twice: {dupes}\nowners: {seen}"
    assert stored.height == data.height, f"{stored.height} events stored, not {data.height}"
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for view in VIEWS:
        streamed = project.datasets.scan(f"{view}__stream").collect()
        assert_same_rows(views[view], batch_view(views[view], clean), streamed)
