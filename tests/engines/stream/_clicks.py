"""A small streaming project for the engine tests: click events of users, three views."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

import headrace as hr
from headrace.core.features import FeatureView
from headrace.engines.compute.features import compute_view, view_input
from headrace.project.streams import open_topic

PIPELINE = textwrap.dedent(
    """
    import polars as pl
    import headrace as hr

    pipeline = hr.Pipeline("clicks")

    @pipeline.source
    def events_raw() -> pl.LazyFrame:
        return pl.scan_parquet("events.parquet")

    @pipeline.transform(contract=hr.Contract("events_clean", fields=[
        hr.Field("value", "Float64", checks=[hr.checks.between(-100, 100)]),
    ]))
    def events_clean(events_raw: pl.LazyFrame) -> pl.LazyFrame:
        return events_raw.filter(pl.col("kind") != "x").with_columns(double=pl.col("value") * 2)

    SCHEMA = {"user": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64,
              "kind": pl.String}
    pipeline.stream("events_raw", event_time="ts", disorder="{disorder}", key="user",
                    topic="{topic}", schema=SCHEMA)
    USER = hr.Entity("user", ["user"])
    pipeline.features(hr.FeatureView(
        "user_sliding", entity=USER, source="events_clean", event_time="ts", ttl="1d",
        features=[
            hr.Aggregate("value", "mean", "10s"),
            hr.Aggregate(None, "count", "1m", name="n_1m"),
            hr.Aggregate("double", "max", "30s"),
            hr.Aggregate("value", "stddev", "1m"),
            hr.Aggregate("kind", "last", "1m"),
            hr.Aggregate("kind", "distinct_count", "1m"),
            hr.Feature("positive", pl.col("value") > 0),
        ],
    ))
    pipeline.features(hr.FeatureView(
        "user_recent", entity=USER, source="events_clean", event_time="ts", ttl="1d",
        features=[
            hr.Aggregate("value", "mean", "10s"),
            hr.Aggregate("value", "sum", "1m"),
            hr.Aggregate(None, "count", "30s", name="n_30s"),
            hr.Aggregate("value", "count", "1m", name="valued_1m"),
            hr.Aggregate("double", "max", "30s"),
            hr.Aggregate("value", "min", "1m"),
            hr.Aggregate("kind", "last", "10s"),
            hr.Feature("big", pl.col("value").abs() > 1),
        ],
    ))
    pipeline.features(hr.FeatureView(
        "user_tumbling", entity=USER, source="events_clean", event_time="ts", ttl="1d",
        window=hr.Tumbling("1m"),
        features=[hr.Aggregate("value", "mean"), hr.Aggregate(None, "count", name="n"),
                  hr.Aggregate("value", "max")],
    ))
    pipeline.features(hr.FeatureView(
        "user_hopping", entity=USER, source="events_clean", event_time="ts", ttl="1d",
        window=hr.Hopping("2m", every="30s"),
        features=[hr.Aggregate("value", "sum"), hr.Aggregate(None, "count", name="n")],
    ))
    pipeline.features(hr.FeatureView(
        "user_sessions", entity=USER, source="events_clean", event_time="ts", ttl="1d",
        window=hr.Session("20s"),
        features=[hr.Aggregate(None, "count", name="n"), hr.Aggregate("value", "sum")],
    ))
    """
)
VIEWS = ("user_sliding", "user_recent", "user_tumbling", "user_hopping", "user_sessions")
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def events(n: int, *, seed: int = 7, jitter_ms: int = 900, users: int = 200) -> pl.DataFrame:
    """``n`` click events ~7 ms apart, each off by up to ``jitter_ms`` (out of order)."""
    rng = np.random.default_rng(seed)
    ms = np.arange(n) * 7 + rng.integers(-jitter_ms, jitter_ms + 1, n)
    return pl.DataFrame(
        {
            "user": [f"u{i:03d}" for i in rng.integers(0, users, n)],
            "ts": [BASE + timedelta(milliseconds=int(x)) for x in ms],
            "value": rng.normal(size=n).round(3),
            "kind": rng.choice(["a", "b", "c", "x"], n, p=[0.4, 0.3, 0.25, 0.05]),
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))


def make_project(
    root: Path, *, disorder: str = "2s", topic: str = "events_raw", stream: str = ""
) -> hr.Project:
    """A project with the clicks pipeline (no events yet); ``stream``: a [stream] section."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "headrace.toml").write_text(f'[project]\nname = "clicks"\n\n{stream}')
    text = PIPELINE.replace("{disorder}", disorder).replace("{topic}", topic)
    (root / "pipeline.py").write_text(text)
    return hr.Project.open(root)


def produce(project: hr.Project, frame: pl.DataFrame, *, chunk: int = 5_000) -> None:
    """Append ``frame`` to the clicks topic in chunks, routed by user."""
    log = open_topic(project, "events_raw")
    for part in frame.iter_slices(chunk):
        log.append(part, key="user")


def batch_clean(frame: pl.DataFrame) -> pl.DataFrame:
    """What events_clean gives in a batch run: its rows that pass its contract."""
    clean = frame.filter(pl.col("kind") != "x").with_columns(double=pl.col("value") * 2)
    return clean.filter(pl.col("value").is_between(-100, 100) | pl.col("value").is_null())


def batch_view(view: FeatureView, clean: pl.DataFrame) -> pl.DataFrame:
    """The batch engine's rows of ``view`` over ``clean``."""
    return compute_view(view, view_input(view, clean.lazy(), what="test")).frame


def sort_keys(view: FeatureView) -> list[str]:
    """Columns that identify one output row of ``view``."""
    return [*view.entity.keys, view.event_time] + (["window_start"] if view.window else [])


def assert_same_rows(view: FeatureView, expected: pl.DataFrame, actual: pl.DataFrame) -> None:
    """Equal rows, floats within 1e-9 relative (the issue's tolerance).

    Plus an absolute 1e-12: a mean of values that cancel out is float noise around zero
    (-4.8e-17 in one summation order, 1.6e-17 in another), where "relative" means nothing.
    """
    keys = sort_keys(view)
    order = [*keys, *view.feature_names]  # tied times: rows differ only in row features
    left, right = expected.sort(order, nulls_last=True), actual.sort(order, nulls_last=True)
    assert left.height == right.height, f"{view.name}: {left.height} rows vs {right.height}"
    for column in keys:
        assert left[column].equals(right[column]), f"{view.name}.{column} differs"
    for name in view.feature_names:
        x, y = left[name], right[name]
        if x.dtype.is_float():
            pair = pl.DataFrame({"x": x, "y": y})
            close = pair.select(
                (
                    (pl.col("x") - pl.col("y")).abs()
                    <= 1e-9 * pl.max_horizontal(pl.col("x").abs(), pl.col("y").abs()) + 1e-12
                )
                | (pl.col("x").is_null() & pl.col("y").is_null())
            ).to_series()
            diff = pl.DataFrame({"expected": x, "actual": y}).filter(~close.fill_null(value=False))
            assert close.all(), f"{view.name}.{name} differs beyond 1e-9 relative:\n{diff}"
        else:
            assert x.equals(y), f"{view.name}.{name} differs"
