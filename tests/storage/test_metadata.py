"""MetadataStore on SQLite and on the real PostgreSQL: migrations, runs, node runs, versions."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headrace.core.records import (
    DatasetVersion,
    NodeRunRecord,
    NodeStatus,
    RunRecord,
    RunStatus,
)
from headrace.errors import MetadataError
from headrace.storage import migrations
from headrace.storage.metadata import MetadataStore

T0 = datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=UTC)
PARIS = timezone(timedelta(hours=1))


def start(
    store: MetadataStore, run_id: str, *, pipeline: str = "flights", at: datetime = T0
) -> None:
    store.start_run(
        run_id=run_id, pipeline=pipeline, started_at=at, params={}, config={}, code_hash="c"
    )


def node_run(
    run_id: str,
    node: str,
    status: NodeStatus = NodeStatus.SUCCEEDED,
    *,
    partition: str | None = None,
    at: datetime = T0,
    **fields: object,
) -> NodeRunRecord:
    return NodeRunRecord(
        run_id=run_id,
        node=node,
        partition=partition,
        status=status,
        started_at=at,
        ended_at=at + timedelta(seconds=1),
        **fields,  # type: ignore[arg-type]
    )


def version(dataset: str, number: int, partition: str | None = None) -> DatasetVersion:
    return DatasetVersion(
        dataset=dataset,
        version=number,
        run_id=f"run-{number}",
        node=dataset,
        created_at=T0 + timedelta(minutes=number),
        partition=partition,
        rows_written=10 + number,
        total_rows=100 + number,
        bytes=1000 + number,
        content_hash=f"hash-{number}",
        schema={"time_hour": "Datetime(time_unit='us', time_zone='UTC')", "value": "Int64"},
        cache_key=f"key-{number}",
        code_hash="code",
    )


# -- opening and migrations -----------------------------------------------------------------


def alembic_head() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return ScriptDirectory.from_config(config).get_current_head()


def test_opening_migrates_to_the_alembic_head(metadata_url: str) -> None:
    MetadataStore(metadata_url).close()
    MetadataStore(metadata_url).close()  # the second open finds nothing to do

    engine = sa.create_engine(metadata_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        with engine.connect() as connection:
            revisions = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert revisions.scalars().all() == [alembic_head()]
    finally:
        engine.dispose()
    assert {"runs", "node_runs", "dataset_versions", "alembic_version"} <= tables


def test_reopening_keeps_the_records(metadata_url: str) -> None:
    with MetadataStore(metadata_url) as store:
        start(store, "run-1")

    with MetadataStore(metadata_url) as store:
        run = store.get_run("run-1")
    assert run is not None
    assert run.status is RunStatus.RUNNING


OPEN_AT = """
import sys, time
from headrace.storage.metadata import MetadataStore
url, at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, at - time.time()))
MetadataStore(url).close()
"""


def test_processes_opening_a_new_database_at_once_all_succeed(metadata_url: str) -> None:
    """Several workers started together against one fresh database: each one opens it."""
    at = time.time() + 4.0  # after every interpreter has imported headrace
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, metadata_url, str(at)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    stderrs = [worker.communicate(timeout=60)[1] for worker in workers]
    failures = [err for worker, err in zip(workers, stderrs, strict=True) if worker.returncode]

    assert failures == []
    MetadataStore(metadata_url).close()


def test_threads_opening_a_new_database_at_once_all_succeed(metadata_url: str) -> None:
    """Alembic's ``context``/``op`` are process-wide, so migrations in threads must not mix."""
    errors: list[Exception] = []
    barrier = threading.Barrier(2)

    def open_store() -> None:
        barrier.wait()
        try:
            MetadataStore(metadata_url).close()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    assert errors == []


# -- runs and node runs ---------------------------------------------------------------------


def test_run_round_trips_every_field(store: MetadataStore) -> None:
    started = T0.astimezone(PARIS)  # any zone in, UTC out
    store.start_run(
        run_id="run-1",
        pipeline="flights",
        started_at=started,
        params={"partitions": ["2013-01-01"], "fail_fast": True},
        config={"threshold": 0.5, "source": {"url": "s3://bucket"}},
        code_hash="code-1",
    )
    store.finish_run(
        "run-1", status=RunStatus.FAILED, ended_at=started + timedelta(seconds=90), error="boom"
    )

    run = store.get_run("run-1")

    assert run == RunRecord(
        run_id="run-1",
        pipeline="flights",
        status=RunStatus.FAILED,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=90),
        params={"partitions": ["2013-01-01"], "fail_fast": True},
        config={"threshold": 0.5, "source": {"url": "s3://bucket"}},
        code_hash="code-1",
        error="boom",
    )
    assert run.started_at.utcoffset() == timedelta(0)
    assert run.ended_at is not None
    assert run.ended_at.utcoffset() == timedelta(0)


def test_node_runs_round_trip_every_field_in_start_order(store: MetadataStore) -> None:
    start(store, "run-1")
    full = node_run(
        "run-1",
        "clean",
        partition="2013-01-02",
        at=(T0 + timedelta(minutes=5)).astimezone(PARIS),
        attempts=2,
        rows_in=100,
        rows_out=90,
        bytes_out=4096,
        cache_hit=False,
        cache_reason="code changed",
        cache_key="key",
        code_hash="code",
        output_dataset="clean",
        output_version=3,
    )
    bare = node_run("run-1", "load", NodeStatus.FAILED, error="Traceback ...")

    store.record_node_runs("flights", [full, bare])

    run = store.get_run("run-1")
    assert run is not None
    assert run.nodes == (bare, full)
    assert all(n.started_at.utcoffset() == timedelta(0) for n in run.nodes)


def test_naive_timestamps_are_refused(store: MetadataStore) -> None:
    with pytest.raises(MetadataError, match="naive datetime"):
        start(store, "run-1", at=datetime(2026, 11, 26, 9, 30))


def test_get_run_by_unique_prefix(store: MetadataStore) -> None:
    for run_id in ("20261126-aaaa", "20261126-aabb", "20261125-cccc"):
        start(store, run_id)

    found = store.get_run("20261125")
    assert found is not None
    assert found.run_id == "20261125-cccc"
    assert store.get_run("20261126-aa") is None  # ambiguous
    assert store.get_run("nope") is None


def test_get_run_prefix_is_literal_text(store: MetadataStore) -> None:
    """``_`` and ``%`` in a prefix are characters, not SQL LIKE wildcards."""
    start(store, "20261126-abcd")

    assert store.get_run("2026_126") is None
    assert store.get_run("%abcd") is None


def test_list_runs_newest_first_with_limit_and_pipeline(store: MetadataStore) -> None:
    for i in range(5):
        start(
            store,
            f"run-{i}",
            pipeline="flights" if i % 2 else "weather",
            at=T0 + timedelta(hours=i),
        )

    assert [r.run_id for r in store.list_runs()] == ["run-4", "run-3", "run-2", "run-1", "run-0"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["run-4", "run-3"]
    assert [r.run_id for r in store.list_runs(pipeline="flights")] == ["run-3", "run-1"]
    assert [r.run_id for r in store.list_runs(pipeline="weather", limit=1)] == ["run-4"]
    assert store.list_runs(pipeline="nope") == []


def test_node_run_counts_by_status(store: MetadataStore) -> None:
    for run_id in ("run-1", "run-2", "run-3"):
        start(store, run_id)
    store.record_node_runs(
        "flights",
        [
            node_run("run-1", "load"),
            node_run("run-1", "clean", NodeStatus.CACHED),
            node_run("run-1", "train", NodeStatus.CACHED),
            node_run("run-2", "load", NodeStatus.FAILED),
            node_run("run-2", "clean", NodeStatus.UPSTREAM_FAILED),
        ],
    )

    assert store.node_run_counts(["run-1", "run-2", "run-3"]) == {
        "run-1": {"succeeded": 1, "cached": 2},
        "run-2": {"failed": 1, "upstream_failed": 1},
        "run-3": {},
    }


def test_last_successful_node_run_ignores_failed_and_cached(store: MetadataStore) -> None:
    statuses = [NodeStatus.SUCCEEDED, NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.CACHED]
    for i, status in enumerate(statuses):
        start(store, f"run-{i}", at=T0 + timedelta(hours=i))
        record = node_run(f"run-{i}", "clean", status, at=T0 + timedelta(hours=i), output_version=i)
        store.record_node_runs("flights", [record])

    last = store.last_successful_node_run("flights", "clean", None)

    assert last is not None
    assert (last.run_id, last.output_version) == ("run-1", 1)
    assert store.last_successful_node_run("flights", "clean", "2013-01-01") is None
    assert store.last_successful_node_run("weather", "clean", None) is None


def test_last_successful_node_run_is_per_partition(store: MetadataStore) -> None:
    start(store, "run-1")
    store.record_node_runs(
        "flights",
        [
            node_run("run-1", "clean", partition="2013-01-01", output_version=1),
            node_run("run-1", "clean", NodeStatus.FAILED, partition="2013-01-02"),
        ],
    )

    first_day = store.last_successful_node_run("flights", "clean", "2013-01-01")
    assert first_day is not None
    assert first_day.partition == "2013-01-01"
    assert store.last_successful_node_run("flights", "clean", "2013-01-02") is None


def test_concurrent_writers_all_land(store: MetadataStore) -> None:
    threads_count, per_thread = 8, 10
    errors: list[Exception] = []
    barrier = threading.Barrier(threads_count)

    def work(t: int) -> None:
        try:
            start(store, f"run-{t}")
            barrier.wait()
            for i in range(per_thread):
                store.record_node_runs("flights", [node_run(f"run-{t}", f"node-{i}")])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    run_ids = [f"run-{t}" for t in range(threads_count)]
    assert store.node_run_counts(run_ids) == {r: {"succeeded": per_thread} for r in run_ids}


def test_two_stores_on_one_database_write_concurrently(metadata_url: str) -> None:
    """Like two worker processes: separate engines, one database, no 'database is locked'."""
    stores = [MetadataStore(metadata_url) for _ in range(4)]
    errors: list[Exception] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                start(stores[t], f"run-{t}-{i}")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(stores[0].list_runs(limit=100)) == 40
    for opened in stores:
        opened.close()


# -- dataset versions -----------------------------------------------------------------------


def test_dataset_version_round_trips_every_field(store: MetadataStore) -> None:
    recorded = version("flights", 0, partition="2013-01-02")
    store.record_dataset_version(recorded)

    assert store.get_version("flights", 0) == recorded
    assert store.latest_version("flights") == recorded
    assert store.get_version("flights", 1) is None
    assert store.latest_version("weather") is None


def test_history_is_newest_first_and_list_datasets_shows_each_newest(store: MetadataStore) -> None:
    for number in range(3):
        store.record_dataset_version(version("flights", number))
    store.record_dataset_version(version("airports", 0))

    assert [v.version for v in store.dataset_history("flights")] == [2, 1, 0]
    assert store.dataset_history("weather") == []
    assert [(v.dataset, v.version) for v in store.list_datasets()] == [
        ("airports", 0),
        ("flights", 2),
    ]


def test_latest_write_of_a_partition(store: MetadataStore) -> None:
    store.record_dataset_version(version("flights", 0))  # whole dataset
    store.record_dataset_version(version("flights", 1, partition="2013-01-01"))
    store.record_dataset_version(version("flights", 2, partition="2013-01-02"))

    def latest(partition: str | None) -> int | None:
        found = store.latest_write("flights", partition)
        return None if found is None else found.version

    assert latest("2013-01-01") == 1
    assert latest("2013-01-02") == 2
    assert latest("2013-01-03") == 0  # only the whole-dataset write touched it
    assert latest(None) == 2
    assert store.latest_write("weather", None) is None


PARTITIONS = ["2013-01-01", "2013-01-02", "2013-01-03"]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(writes=st.lists(st.sampled_from([None, *PARTITIONS]), max_size=8))
def test_latest_write_matches_a_reference_model(
    store: MetadataStore, writes: list[str | None]
) -> None:
    dataset = f"d-{uuid.uuid4().hex}"  # one store serves every example
    for number, partition in enumerate(writes):
        store.record_dataset_version(version(dataset, number, partition))

    def expected(partition: str | None) -> int | None:
        touching = [
            number
            for number, written in enumerate(writes)
            if partition is None or written in (None, partition)
        ]
        return max(touching, default=None)

    for partition in [None, *PARTITIONS]:
        found = store.latest_write(dataset, partition)
        assert (None if found is None else found.version) == expected(partition)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql+psycopg://u:s3cret@127.0.0.1:1/x", "s3cret"),
        ("postgresql://u:s3cret@127.0.0.1:1/x", "s3cret"),
        ("postgresql+psycopg://u:ab/cd@127.0.0.1:1/x", "ab/cd"),
    ],
    ids=["psycopg", "bare-postgresql", "slash-in-password"],
)
def test_unreachable_server_error_redacts_the_password(url: str, secret: str) -> None:
    with pytest.raises(MetadataError) as caught:
        MetadataStore(url)

    message = str(caught.value)
    assert secret not in message
    assert "u:***@127.0.0.1:1/x" in message
    assert "headrace.toml" in message
    assert "server is running" in message


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    path.write_bytes(b"this is not a SQLite database, just some text" * 10)

    with pytest.raises(MetadataError, match=r"sqlite:///.*metadata\.db.*headrace\.toml"):
        MetadataStore(f"sqlite:///{path}")


def test_sqlite_path_under_a_file_raises_metadata_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    url = f"sqlite:///{tmp_path / 'file' / 'sub' / 'metadata.db'}"

    with pytest.raises(MetadataError, match=r"metadata\.db.*headrace\.toml"):
        MetadataStore(url)


def test_an_interrupted_first_migration_leaves_no_half_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from alembic import command

    real_upgrade = command.upgrade

    def upgrade_then_die(config: object, revision: str) -> None:
        real_upgrade(config, revision)  # type: ignore[arg-type]
        raise KeyboardInterrupt  # killed before the transaction commits

    url = f"sqlite:///{tmp_path / 'meta.db'}"
    monkeypatch.setattr(command, "upgrade", upgrade_then_die)
    with pytest.raises(KeyboardInterrupt):
        MetadataStore(url)
    with sqlite3.connect(tmp_path / "meta.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "runs" not in tables  # the DDL was rolled back with the transaction
    monkeypatch.undo()
    MetadataStore(url).close()  # and the next open migrates from scratch
