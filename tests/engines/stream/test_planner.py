"""The planner runs row-level transforms on a stream and refuses the rest by name and reason."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest

import headrace as hr
from headrace.engines.stream.planner import plan_stream
from headrace.errors import NotStreamableError

SCHEMA = {"user": pl.String(), "ts": pl.Datetime("us", "UTC"), "value": pl.Float64()}
USER = hr.Entity("user", ["user"])


def _pipeline(transform: Callable[[pl.LazyFrame], object]) -> hr.Pipeline:
    pipeline = hr.Pipeline("p")

    @pipeline.source
    def raw() -> pl.LazyFrame:
        return pl.LazyFrame(schema=SCHEMA)

    pipeline.transform(transform)
    pipeline.stream("raw", event_time="ts")
    pipeline.features(
        hr.FeatureView(
            "user_stats",
            entity=USER,
            source=transform.__name__,
            event_time="ts",
            ttl="1d",
            features=[hr.Aggregate("value", "sum", "1h")],
        )
    )
    return pipeline


def _plan(pipeline: hr.Pipeline) -> object:
    return plan_stream(pipeline.validate(), pipeline.streams["raw"], SCHEMA)


def clean(raw: pl.LazyFrame) -> pl.LazyFrame:
    """Maps and filters only."""
    return (
        raw.filter(pl.col("value") > 0)
        .with_columns(double=pl.col("value") * 2, day=pl.col("ts").dt.truncate("1d"))
        .drop("day")
    )


def test_a_row_level_transform_streams() -> None:
    plan = _plan(_pipeline(clean))
    assert [s.node.name for s in plan.steps] == ["clean"]  # type: ignore[attr-defined]
    assert [v.name for v in plan.views] == ["user_stats"]  # type: ignore[attr-defined]


def sorted_rows(raw: pl.LazyFrame) -> pl.LazyFrame:
    """A global sort."""
    return raw.sort("ts")


def deduplicated(raw: pl.LazyFrame) -> pl.LazyFrame:
    """A global dedup."""
    return raw.unique(["user", "ts"])


def centred(raw: pl.LazyFrame) -> pl.LazyFrame:
    """Needs the mean of the whole dataset."""
    return raw.with_columns(value=pl.col("value") - pl.col("value").mean())


def python_udf(raw: pl.LazyFrame) -> pl.LazyFrame:
    """Opaque Python."""
    return raw.with_columns(pl.col("value").map_batches(lambda s: s * 2))


def eager(raw: pl.LazyFrame) -> pl.DataFrame:
    """Returns an eager frame: its logic cannot be inspected."""
    return raw.collect()


def ranked(raw: pl.LazyFrame) -> pl.LazyFrame:
    """A window over the whole dataset."""
    return raw.with_columns(n=pl.col("value").cum_sum().over("user"))


@pytest.mark.parametrize(
    ("transform", "why"),
    [
        (sorted_rows, "global sort"),
        (deduplicated, "global dedup"),
        (centred, "aggregates over the whole dataset"),
        (python_udf, "opaque Python"),
        (eager, "not a polars LazyFrame"),
        (ranked, "window over the whole dataset"),
    ],
)
def test_batch_only_nodes_are_refused_by_name_and_reason(
    transform: Callable[[pl.LazyFrame], object], why: str
) -> None:
    with pytest.raises(NotStreamableError) as caught:
        _plan(_pipeline(transform))
    message = str(caught.value)
    assert f"node {transform.__name__!r} cannot run in a streaming job" in message
    assert why in message
    assert "headrace run" in message  # the fix


def test_a_join_with_another_dataset_is_refused() -> None:
    pipeline = hr.Pipeline("p")

    @pipeline.source
    def raw() -> pl.LazyFrame:
        return pl.LazyFrame(schema=SCHEMA)

    @pipeline.source
    def users() -> pl.LazyFrame:
        return pl.LazyFrame(schema={"user": pl.String, "age": pl.Int64})

    @pipeline.transform
    def joined(raw: pl.LazyFrame, users: pl.LazyFrame) -> pl.LazyFrame:
        return raw.join(users, on="user")

    pipeline.stream("raw", event_time="ts")
    pipeline.features(
        hr.FeatureView(
            "v",
            entity=USER,
            source="joined",
            event_time="ts",
            ttl="1d",
            features=[hr.Aggregate("age", "max", "1h")],
        )
    )
    with pytest.raises(NotStreamableError, match=r"node 'joined'.*reads 2 datasets"):
        _plan(pipeline)


def test_nodes_only_batch_runs_need_are_listed_not_refused() -> None:
    pipeline = _pipeline(clean)

    @pipeline.transform
    def report(clean: pl.LazyFrame) -> pl.LazyFrame:
        return clean.group_by("user").agg(pl.len())

    plan = _plan(pipeline)
    assert "report" in plan.batch_only  # type: ignore[attr-defined]


def test_a_view_that_does_not_read_the_stream_is_named() -> None:
    with pytest.raises(NotStreamableError, match="nope"):
        plan_stream(
            _pipeline(clean).validate(), _pipeline(clean).streams["raw"], SCHEMA, views=("nope",)
        )
