from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _monitor_helpers import T0, shop_pipeline

import headrace as hr


def test_node_metrics_are_stored_with_history(project: hr.Project) -> None:
    first = project.run(shop_pipeline(bad_rows=1))
    second = project.run(shop_pipeline(bad_rows=1))  # same data: clean is a cache hit

    clean = project.metrics(node="clean")
    assert [m.run_id for m in clean] == [second.run_id, first.run_id]
    cached, ran = clean
    assert ran.status == "succeeded"
    assert (ran.rows_in, ran.rows_out, ran.quarantined_rows) == (5, 4, 1)
    assert ran.quality_score == pytest.approx(0.8)
    assert ran.bytes_out is not None
    assert ran.bytes_out > 0
    assert ran.duration_seconds == pytest.approx(first.record("clean").duration)
    assert ran.throughput_rows_per_second == pytest.approx(5 / ran.duration_seconds)
    assert not ran.cache_hit
    assert (ran.output_dataset, ran.output_version) == ("clean", 0)
    assert cached.status == "cached"
    assert cached.cache_hit
    assert cached.throughput_rows_per_second is None
    assert cached.quality_score is None  # nothing was validated in that run

    runs = project.monitor.run_metrics()
    assert [r.run_id for r in runs] == [second.run_id, first.run_id]
    assert (runs[1].nodes, runs[1].nodes_failed, runs[1].cache_hits) == (2, 0, 0)
    assert runs[1].quality_score == pytest.approx(0.8)
    assert runs[1].quarantined_rows == 1
    assert runs[0].cache_hits == 1
    assert runs[1].duration_seconds == pytest.approx(first.duration)


def test_freshness_is_the_age_of_the_newest_event_time(project: hr.Project) -> None:
    result = project.run(shop_pipeline(bad_rows=0))
    (orders,) = project.metrics(node="orders")
    newest = T0 + timedelta(hours=3)
    assert orders.newest_event_time == newest
    assert orders.freshness_seconds == pytest.approx((result.ended_at - newest).total_seconds())
    (clean,) = project.metrics(node="clean")  # no event-time column named: unknown
    assert clean.freshness_seconds is None
    assert clean.newest_event_time is None


def test_a_feature_view_reports_freshness_from_its_event_time(feature_project: Path) -> None:
    with hr.Project(feature_project) as project:
        project.run().raise_for_status()
        (spend,) = project.metrics(node="spend")
    assert spend.newest_event_time == datetime(2024, 3, 2, 2, tzinfo=UTC)
    assert spend.freshness_seconds is not None


def test_metrics_filter_by_time_pipeline_and_run(project: hr.Project) -> None:
    first = project.run(shop_pipeline())
    middle = datetime.now(UTC)
    second = project.run(shop_pipeline(name="other"))
    assert {m.run_id for m in project.metrics(since=middle)} == {second.run_id}
    assert {m.run_id for m in project.metrics(since=timedelta(hours=1))} == {
        first.run_id,
        second.run_id,
    }
    assert {m.pipeline for m in project.metrics(pipeline="other")} == {"other"}
    assert [m.node for m in project.metrics(run_id=first.run_id, node="orders")] == ["orders"]
    assert len(project.metrics(limit=1)) == 1
    with pytest.raises(ValueError, match="naive datetime"):
        project.metrics(since=datetime(2024, 1, 1))


def test_a_failed_node_is_measured_too(project: hr.Project) -> None:
    pipeline = shop_pipeline()

    @pipeline.transform(retries=1, retry_delay=0)
    def broken(clean: object) -> None:
        raise RuntimeError("no")

    result = project.run(pipeline)
    (metrics,) = project.metrics(node="broken")
    assert metrics.status == "failed"
    assert metrics.attempts == 2
    assert metrics.throughput_rows_per_second is None
    (run,) = project.monitor.run_metrics(run_id=result.run_id)
    assert (run.status, run.nodes_failed) == ("failed", 1)


def test_newest_event_time_reads_dates_and_naive_times_as_utc(tmp_path: Path) -> None:
    from datetime import date

    import polars as pl

    from headrace.monitor.metrics import newest_event_time
    from headrace.storage.datasets import DatasetStore

    store = DatasetStore(tmp_path)
    frame = pl.DataFrame(
        {
            "day": [date(2024, 1, 1), date(2024, 1, 3)],
            "naive": [datetime(2024, 1, 1, 5), datetime(2024, 1, 2, 6)],
            "n": [1, 2],
        }
    )
    version = store.write("d", frame, commit_metadata={}).version
    assert newest_event_time(store, "d", version, "day") == datetime(2024, 1, 3, tzinfo=UTC)
    assert newest_event_time(store, "d", version, "naive") == datetime(2024, 1, 2, 6, tzinfo=UTC)
    assert newest_event_time(store, "d", version, "n") is None  # not a time
    assert newest_event_time(store, "d", version, "missing") is None
    assert newest_event_time(store, "nope", 0, "day") is None
