"""The monitoring tables and their aggregates on SQLite and PostgreSQL."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from headrace.monitor import DURATION_BUCKETS
from headrace.storage.metadata import MetadataStore
from headrace.storage.monitoring import (
    AlertDelivery,
    AlertRecord,
    MonitoringStore,
    NodeMetrics,
    RunMetrics,
)

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MonitoringStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with MetadataStore(url) as metadata:
        yield MonitoringStore(metadata)


def _run(run_id: str, start: datetime, seconds: float, status: str = "succeeded") -> RunMetrics:
    return RunMetrics(
        run_id=run_id,
        pipeline="p",
        status=status,
        started_at=start,
        ended_at=start + timedelta(seconds=seconds),
        duration_seconds=seconds,
        nodes=1,
        nodes_failed=int(status == "failed"),
        cache_hits=0,
    )


def _node(run: RunMetrics, **values: object) -> NodeMetrics:
    defaults: dict[str, object] = {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "node": "n",
        "partition": None,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_seconds": run.duration_seconds,
        "attempts": 1,
    }
    return NodeMetrics(**{**defaults, **values})  # type: ignore[arg-type]


def test_aggregates_for_prometheus(store: MonitoringStore) -> None:
    runs = [
        _run("a", T, 0.05),
        _run("b", T + timedelta(hours=1), 20.0),
        _run("c", T + timedelta(hours=2), 4000.0, "failed"),
    ]
    event = T - timedelta(days=1)
    store.record_metrics(
        runs[0],
        [_node(runs[0], rows_in=10, rows_out=8, bytes_out=100, quality_score=0.8,
               quarantined_rows=2, throughput_rows_per_second=200.0, newest_event_time=event)],
    )  # fmt: skip
    store.record_metrics(runs[1], [_node(runs[1], status="cached", cache_hit=True, rows_out=8)])
    store.record_metrics(runs[2], [_node(runs[2], partition="2026-01-01")])

    summaries = {s.status: s.durations for s in store.run_summaries(DURATION_BUCKETS)}
    assert summaries["succeeded"].count == 2
    assert summaries["succeeded"].total == pytest.approx(20.05)
    assert dict(summaries["succeeded"].buckets)[0.1] == 1
    assert dict(summaries["succeeded"].buckets)[30.0] == 2
    assert dict(summaries["failed"].buckets)[3600.0] == 0  # above the last bucket: +Inf only

    nodes = {s.status: s for s in store.node_summaries(DURATION_BUCKETS)}
    assert (nodes["succeeded"].rows_in, nodes["succeeded"].rows_out) == (10, 8)
    assert (nodes["cached"].rows_out, nodes["cached"].cache_hits) == (0, 1)  # hits excluded
    assert nodes["succeeded"].quarantined_rows == 2

    (latest,) = store.latest_node_values()
    assert latest.quality_score == pytest.approx(0.8)
    assert latest.throughput_rows_per_second == pytest.approx(200.0)
    assert latest.newest_event_time == event
    assert latest.last_success == runs[1].ended_at

    ((newest, succeeded),) = store.latest_runs()
    assert newest.run_id == "c"
    assert succeeded == runs[1].ended_at

    (failed,) = store.node_metrics(run_id="c")
    assert failed.partition == "2026-01-01"
    assert [m.run_id for m in store.node_metrics(since=T + timedelta(minutes=30))] == ["c", "b"]


def test_alerts_round_trip_with_evidence_and_deliveries(store: MonitoringStore) -> None:
    alert = AlertRecord(
        alert_id="x1",
        rule="r",
        kind="quality",
        severity="warning",
        fired_at=T,
        message="m",
        pipeline="p",
        run_id="a",
        node="n",
        observed=0.5,
        threshold=0.9,
        evidence={"rows": 3, "at": T},
    )
    store.record_alert(alert)
    delivery = AlertDelivery("log", "log", ok=True, attempts=1, at=T)
    store.record_deliveries("x1", [delivery])
    (got,) = store.alerts(rule="r")
    assert got.deliveries == (delivery,)
    assert got.evidence == {"rows": 3, "at": T.isoformat()}
    assert got.partition is None
    assert store.alerts(kind="drift") == []
    assert store.alert_counts() == [("p", "r", "quality", "warning", 1)]
    assert store.alert_counts(pipeline="q") == []


def test_recording_a_run_twice_replaces_it(store: MonitoringStore) -> None:
    run = _run("a", T, 1.0)
    store.record_metrics(run, [_node(run)])
    store.record_metrics(run, [_node(run, rows_out=5)])
    (node,) = store.node_metrics()
    assert node.rows_out == 5
    assert len(store.run_metrics()) == 1
