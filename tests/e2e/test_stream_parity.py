"""The product's central promise: the flights, replayed in event-time order through the
streaming job, give every feature value the batch pipeline gives, at the same timestamps."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import polars as pl
import pytest

import headrace as hr
from headrace.core.context import NodeContext
from headrace.engines.compute.features import compute_view, view_input
from headrace.engines.stream.runtime import StreamOptions
from headrace.project.stream_job import run_stream
from headrace.project.streams import open_topic

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flights"
DAYS = ("2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04")
FLIGHT_VIEWS = ("carrier_delays", "origin_delays", "plane_history")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> hr.Project:
    folder = tmp_path / "flights"
    shutil.copytree(
        EXAMPLE, folder, ignore=shutil.ignore_patterns(".headrace", "data", "out", "__pycache__")
    )
    raw = tmp_path / "raw"
    sys.path.insert(0, str(EXAMPLE))
    try:
        from nycdata import csv_path

        csv_path(raw, "flights")
    finally:
        sys.path.remove(str(EXAMPLE))
    monkeypatch.setenv("HEADRACE_CONFIG_DATA_DIR", str(raw))
    monkeypatch.setenv("FLIGHTS_WEATHER_DSN", "none")
    return hr.Project(folder)


def _close(x: pl.Series, y: pl.Series) -> bool:
    pair = pl.DataFrame({"x": x, "y": y})
    scale = pl.max_horizontal(pl.col("x").abs(), pl.col("y").abs())
    ok = ((pl.col("x") - pl.col("y")).abs() <= 1e-9 * scale + 1e-12) | (
        pl.col("x").is_null() & pl.col("y").is_null()
    )
    return bool(pair.select(ok.all()).item())


def test_streamed_flight_features_equal_the_batch_ones(project: hr.Project) -> None:
    pipeline = project.pipeline()
    graph = project.graph()
    source, clean = graph.node("flights_raw"), graph.node("flights_clean")
    assert source.fn is not None
    assert clean.fn is not None
    data_dir = str(project.settings.config["data_dir"])
    frames = []
    for day in DAYS:
        context = NodeContext(
            run_id="t", node="flights_raw", partition=day, scheme=source.partitions
        )
        frames.append(source.fn(data_dir, context).collect())
    # the events in event-time order, as a live feed would carry them
    events = pl.concat(frames).sort("time_hour", maintain_order=True)
    open_topic(project, "flights_raw").append(events, key="carrier")

    stats = run_stream(project, options=StreamOptions(until_end=True, max_batch=2_000))
    assert stats.events == events.height
    assert stats.late == 0

    batch_clean = clean.fn(events.lazy()).collect()
    for name in FLIGHT_VIEWS:
        view = pipeline.feature_views[name]
        expected = compute_view(view, view_input(view, batch_clean.lazy(), what="t")).frame
        actual = project.datasets.scan(f"{name}__stream").collect()
        keys = [*view.entity.keys, view.event_time]
        order = [*keys, *view.feature_names]
        left = expected.sort(order, nulls_last=True)
        right = actual.sort(order, nulls_last=True)
        assert left.height == right.height > 0, name
        assert left.select(keys).equals(right.select(keys)), name
        for feature in view.feature_names:
            if left[feature].dtype.is_float():
                assert _close(left[feature], right[feature]), f"{name}.{feature}"
            else:
                assert left[feature].equals(right[feature]), f"{name}.{feature}"
    # the views of other sources are left to batch runs, and said so
    assert "origin_weather" not in stats.per_view
