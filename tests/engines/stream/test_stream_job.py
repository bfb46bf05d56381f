"""The streaming job end to end on the embedded log: parity with batch, side outputs, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _clicks import (
    VIEWS,
    assert_same_rows,
    batch_clean,
    batch_view,
    events,
    make_project,
    produce,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.engines.stream.runtime import JobStats, StreamOptions
from headrace.project.stream_job import run_stream
from headrace.storage.online.base import OnlineTable, encode_key


def _run(project: hr.Project, **options: Any) -> JobStats:
    defaults: dict[str, Any] = {"until_end": True, "max_batch": 3_000, "checkpoint_interval": 0.05}
    return run_stream(project, options=StreamOptions(**(defaults | options)))


def test_every_view_equals_the_batch_engine(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    data = events(12_000)
    produce(project, data)
    stats = _run(project)
    assert stats.late == 0
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for name in VIEWS:
        streamed = project.datasets.scan(f"{name}__stream").collect()
        assert_same_rows(views[name], batch_view(views[name], clean), streamed)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    max_batch=st.integers(min_value=50, max_value=5_000),
    chunk=st.integers(min_value=100, max_value=4_000),
)
def test_outputs_do_not_depend_on_batch_boundaries(
    tmp_path_factory: pytest.TempPathFactory, max_batch: int, chunk: int
) -> None:
    project = make_project(tmp_path_factory.mktemp("p"))
    data = events(4_000, seed=max_batch)
    produce(project, data, chunk=chunk)
    _run(project, max_batch=max_batch)
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for name in VIEWS:
        streamed = project.datasets.scan(f"{name}__stream").collect()
        assert_same_rows(views[name], batch_view(views[name], clean), streamed)


def test_late_events_go_to_the_side_output_with_the_reason(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", disorder="1s")
    data = events(6_000, jitter_ms=2_500)  # more disorder than declared: some are late
    produce(project, data)
    stats = _run(project)
    late = project.datasets.scan("events_raw__late").collect()
    valid = project.datasets.scan("events_raw__events").collect()
    assert stats.late == late.height > 0
    assert valid.height + late.height == data.height  # nothing lost, nothing twice
    assert set(late["_hr_reason"]) == {"late"}
    assert late["_hr_detail"][0].startswith("event time ")
    keyed = pl.concat([valid, late], how="diagonal").select("_stream_partition", "_stream_offset")
    assert keyed.n_unique() == data.height
    # the views saw exactly the on-time events
    clean = batch_clean(valid.drop("_stream_partition", "_stream_offset"))
    views = project.pipeline().feature_views
    for name in VIEWS:
        streamed = project.datasets.scan(f"{name}__stream").collect()
        assert_same_rows(views[name], batch_view(views[name], clean), streamed)


def test_contract_failures_are_quarantined_with_their_position(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    data = events(3_000).with_columns(
        value=pl.when(pl.int_range(pl.len()) % 500 == 7).then(1_000.0).otherwise(pl.col("value"))
    )
    produce(project, data)
    stats = _run(project)
    bad = project.datasets.scan("events_raw__quarantine").collect()
    wrong = data.filter((pl.col("value") == 1_000.0) & (pl.col("kind") != "x")).height
    assert stats.quarantined == bad.height == wrong > 0
    assert bad["_hr_node"].unique().to_list() == ["events_clean"]
    assert bad["_stream_partition"].null_count() == 0
    assert bad["_stream_offset"].null_count() == 0
    assert (bad["value"] == 1_000.0).all()


def test_a_restart_resumes_from_the_checkpoint_without_duplicates(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    first, second = events(8_000).head(5_000), events(8_000).tail(3_000)
    produce(project, first)
    _run(project, until_end=False, max_seconds=0.5)
    produce(project, second)
    _run(project)
    data = pl.concat([first, second])
    stored = project.datasets.scan("events_raw__events").collect()
    assert stored.height == data.height
    assert stored.select("_stream_partition", "_stream_offset").n_unique() == data.height
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for name in VIEWS:
        streamed = project.datasets.scan(f"{name}__stream").collect()
        assert_same_rows(views[name], batch_view(views[name], clean), streamed)


def test_the_online_store_holds_each_users_newest_final_value(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    data = events(4_000)
    produce(project, data)
    _run(project)
    pipeline = project.pipeline()
    view = pipeline.feature_views["user_sliding"]
    expected = (
        batch_view(view, batch_clean(data))
        .sort("ts", maintain_order=True)
        .unique("user", keep="last")
        .sort("user")
    )
    features = project.features
    version = features.registry.register_view(view).version
    kinds = ("float",) * len(view.feature_names)
    table = OnlineTable(view.name, version, view.feature_names, kinds)
    entries = features.online_store.read(table, [encode_key([u]) for u in expected["user"]])
    assert all(e is not None for e in entries)
    got = [e.values[view.feature_names.index("n_1m")] for e in entries if e is not None]
    assert got == expected["n_1m"].to_list()


def _emitted(project: hr.Project) -> int:
    if not project.datasets.exists("user_recent__stream"):
        return 0
    return project.datasets.scan("user_recent__stream").collect().height


def test_an_idle_partition_holds_outputs_back_until_its_idle_timeout(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    one_user = events(400).with_columns(user=pl.lit("u001"))  # one key: one partition of 4
    produce(project, one_user)
    _run(project, until_end=False, max_seconds=1.5)
    assert _emitted(project) == 0  # three partitions never delivered: nothing is final
    _run(project, until_end=False, max_seconds=2.0, idle_timeout=0.3)
    assert _emitted(project) > 0  # the idle partitions no longer count
    # events arriving later on the idle partitions, older than the watermark, are late
    old = events(300, seed=11)  # from the same start: older than the watermark
    produce(project, old.filter(pl.col("user") != "u001"))
    stats = _run(project, until_end=False, max_seconds=2.0, idle_timeout=0.3)
    late = project.datasets.scan("events_raw__late").collect()
    valid = project.datasets.scan("events_raw__events").collect()
    sent = one_user.height + old.filter(pl.col("user") != "u001").height
    assert valid.height + late.height == sent  # nothing lost, nothing twice
    assert late.height > 0
    assert stats.late == late.height
