import itertools
import time
from datetime import UTC, datetime

import polars as pl
import pytest

import headrace as hr
from headrace.core.records import NodeStatus
from headrace.errors import PartitionError


def _numbers() -> pl.DataFrame:
    return pl.DataFrame({"n": [1, 2, 3]})


def test_retries_with_backoff_until_success(project: hr.Project) -> None:
    calls: list[float] = []
    pipeline = hr.Pipeline("p")

    def flaky() -> pl.DataFrame:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("server busy")
        return _numbers()

    pipeline.source(flaky, name="flaky", retries=3, retry_delay=0.05)
    result = project.run(pipeline)
    assert result.ok
    assert result.record("flaky").attempts == 3
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1  # the delay doubles


def test_retries_exhausted_fail_with_the_last_error(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")

    def always() -> None:
        raise ConnectionError("server down")

    pipeline.source(always, name="down", retries=2, retry_delay=0.01, ephemeral=True)
    record = project.run(pipeline).record("down")
    assert record.status is NodeStatus.FAILED
    assert record.attempts == 3
    assert (record.error or "").startswith("ConnectionError: server down")


def test_timeout_fails_the_node_without_waiting_for_it(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda: time.sleep(3), name="slow", timeout=0.2, ephemeral=True)
    started = time.monotonic()
    result = project.run(pipeline)
    assert time.monotonic() - started < 2
    assert result.record("slow").status is NodeStatus.FAILED
    assert "timed out after 0.2s" in (result.record("slow").error or "")


def test_rerun_is_all_cache_hits_and_resumes_after_failure(project: hr.Project) -> None:
    fail = {"now": True}
    pipeline = hr.Pipeline("p")
    pipeline.source(_numbers, name="numbers", cache=True)
    pipeline.transform(lambda numbers: numbers.with_columns(m=pl.col("n") * 2), name="doubled")

    def fragile(doubled: pl.LazyFrame) -> pl.LazyFrame:
        if fail["now"]:
            raise RuntimeError("transient")
        return doubled

    pipeline.transform(fragile, name="fragile")
    first = project.run(pipeline)
    assert first.statuses() == {
        "numbers": NodeStatus.SUCCEEDED,
        "doubled": NodeStatus.SUCCEEDED,
        "fragile": NodeStatus.FAILED,
    }
    fail["now"] = False
    second = project.run(pipeline)
    assert second.statuses() == {
        "numbers": NodeStatus.CACHED,
        "doubled": NodeStatus.CACHED,
        "fragile": NodeStatus.SUCCEEDED,
    }
    assert project.run(pipeline).statuses() == dict.fromkeys(second.statuses(), NodeStatus.CACHED)


def _chain(middle_factor: int) -> hr.Pipeline:
    pipeline = hr.Pipeline("p")
    pipeline.source(_numbers, name="numbers", cache=True)
    pipeline.transform(lambda numbers: numbers, name="side")
    if middle_factor == 2:
        pipeline.transform(lambda numbers: numbers.with_columns(pl.col("n") * 2), name="middle")
    else:
        pipeline.transform(lambda numbers: numbers.with_columns(pl.col("n") * 3), name="middle")
    pipeline.transform(lambda middle: middle.select(total=pl.col("n").sum()), name="total")
    return pipeline


def test_changing_one_transform_reruns_it_and_its_downstream_only(project: hr.Project) -> None:
    project.run(_chain(2)).raise_for_status()
    result = project.run(_chain(3))
    assert result.statuses() == {
        "numbers": NodeStatus.CACHED,
        "side": NodeStatus.CACHED,
        "middle": NodeStatus.SUCCEEDED,
        "total": NodeStatus.SUCCEEDED,
    }
    assert result.record("middle").cache_reason == "code changed"
    assert result.record("total").cache_reason == "inputs/config changed"
    assert project.read("total")["total"].to_list() == [18]
    assert project.read("total", version=0)["total"].to_list() == [12]  # time travel


def test_config_change_invalidates_and_full_refresh_forces(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(_numbers, name="numbers", cache=True)
    pipeline.transform(
        lambda numbers, limit: numbers.filter(pl.col("n") <= limit), name="small", config=["limit"]
    )
    project.run(pipeline, config={"limit": 2}).raise_for_status()
    assert project.run(pipeline, config={"limit": 2}).record("small").cache_hit
    changed = project.run(pipeline, config={"limit": 1}).record("small")
    assert (changed.status, changed.cache_reason) == (NodeStatus.SUCCEEDED, "inputs/config changed")
    forced = project.run(pipeline, config={"limit": 1}, full_refresh=True)
    assert all(r.cache_reason.startswith("full refresh") for r in forced.records)
    assert {r.status for r in forced.records} == {NodeStatus.SUCCEEDED}


def test_identical_recompute_makes_no_new_version_and_downstream_stays_cached(
    project: hr.Project,
) -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(_numbers, name="numbers")  # sources re-read every run
    pipeline.transform(lambda numbers: numbers, name="copy")
    project.run(pipeline).raise_for_status()
    second = project.run(pipeline)
    assert second.record("numbers").status is NodeStatus.SUCCEEDED
    assert second.record("numbers").output_version == 0
    assert second.record("copy").status is NodeStatus.CACHED
    assert len(project.dataset_history("numbers")) == 1


def test_ephemeral_outputs_are_never_stored(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda: pl.LazyFrame({"n": [1, 2]}), name="raw", ephemeral=True)
    pipeline.transform(lambda raw: raw.select(pl.col("n").sum()), name="summed")
    pipeline.transform(lambda summed: summed.collect().item(), name="answer", ephemeral=True)
    result = project.run(pipeline)
    assert result.outputs == {"answer": 3}
    assert [d.dataset for d in project.list_datasets()] == ["summed"]
    assert not project.datasets.exists("raw")


def test_sql_node_runs_duckdb_over_its_inputs(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda: pl.DataFrame({"k": ["a", "a", "b"], "v": [1, 2, 3]}), name="facts")
    pipeline.sql("sums", "SELECT k, sum(v)::BIGINT AS total FROM facts GROUP BY k ORDER BY k")
    project.run(pipeline).raise_for_status()
    assert project.read("sums").to_dict(as_series=False) == {"k": ["a", "b"], "total": [3, 3]}


def test_persisted_node_must_return_a_frame(project: hr.Project) -> None:
    pipeline = hr.Pipeline("p")
    pipeline.source(lambda: 42, name="answer")
    error = project.run(pipeline).record("answer").error or ""
    assert "returned int" in error
    assert "ephemeral=True" in error


def _events() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "t": [datetime(2013, 1, d, 12, tzinfo=UTC) for d in (1, 2, 2, 3, 4)],
            "v": [1, 2, 3, 4, 5],
        }
    )


def _partitioned(factor: int) -> hr.Pipeline:
    days = hr.DailyPartitions("t", start="2013-01-01", end="2013-01-04")
    pipeline = hr.Pipeline("p")
    pipeline.source(
        lambda context: _events().filter(context.partition_filter()), name="events", partitions=days
    )
    if factor == 10:
        pipeline.transform(
            lambda events: events.with_columns(pl.col("v") * 10), name="scaled", partitions=days
        )
    else:
        pipeline.transform(
            lambda events: events.with_columns(pl.col("v") * 100), name="scaled", partitions=days
        )
    return pipeline


def test_partitions_run_and_write_only_the_selected_days(project: hr.Project) -> None:
    project.run(_partitioned(10)).raise_for_status()
    result = project.run(_partitioned(100), partitions=["2013-01-02"])
    assert [r.partition for r in result.records] == ["2013-01-02", "2013-01-02"]
    scaled = project.read("scaled").sort("t")
    assert scaled["v"].to_list() == [10, 200, 300, 40, 50]
    newest = project.dataset_version("scaled")
    assert (newest.partition, newest.rows_written, newest.total_rows) == ("2013-01-02", 2, 5)


def test_backfill_range_runs_one_task_per_day(project: hr.Project) -> None:
    project.run(_partitioned(10)).raise_for_status()
    result = project.run(_partitioned(100), partitions=["2013-01-02..2013-01-03"])
    assert {r.partition for r in result.records} == {"2013-01-02", "2013-01-03"}
    assert project.read("scaled").sort("t")["v"].to_list() == [10, 200, 300, 400, 50]
    again = project.run(_partitioned(100), partitions=["2013-01-02..2013-01-03"])
    assert all(r.status is NodeStatus.CACHED for r in again.records if r.node == "scaled")


def test_partition_outside_the_scheme_fails_before_running(project: hr.Project) -> None:
    with pytest.raises(PartitionError, match="outside node 'events'"):
        project.run(_partitioned(10), partitions=["2014-01-01"])
    assert project.runs() == []


def test_context_tells_the_node_its_run_and_partition(project: hr.Project) -> None:
    seen: list[tuple[str, str | None, int]] = []
    pipeline = hr.Pipeline("p")

    def probe(context: hr.NodeContext) -> None:
        seen.append((context.run_id, context.partition, context.attempt))

    pipeline.source(probe, name="probe", ephemeral=True)
    result = project.run(pipeline)
    assert seen == [(result.run_id, None, 1)]
