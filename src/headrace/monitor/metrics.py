"""Metrics of one run and its nodes, computed from the run's records once it ended.

What is measured per node (one partition of it): rows in and out, bytes produced, duration,
throughput, quality score and quarantined rows (for validated nodes), cache hits, and
freshness — the age of the newest event time in the node's output, where the node names an
event-time column:

* a feature view node: the view's ``event_time``;
* a node tagged ``tags={"event_time": "column"}`` (any node that persists its output);
* an ingest node with an SQL ``cursor`` column, when that column holds datetimes or dates.

Elsewhere freshness is unknown (None), never guessed. The newest event time is read from the
output dataset version with a one-column max (Parquet pages of that column only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from headrace.core.graph import Graph
from headrace.core.node import Node
from headrace.core.records import NodeRunRecord, NodeStatus, QualityRecord
from headrace.core.source import SqlSource
from headrace.engines.batch.run import RunResult
from headrace.storage.datasets import DatasetStore
from headrace.storage.monitoring import NodeMetrics, RunMetrics

__all__ = ["EVENT_TIME_TAG", "describe", "event_time_column", "newest_event_time", "run_metrics"]

log = logging.getLogger("headrace.monitor")

EVENT_TIME_TAG = "event_time"
"""The node tag that names an output column holding event times (for freshness)."""


def event_time_column(node: Node) -> str | None:
    """The column of ``node``'s output that holds event times, or None when it has none known.

    >>> import headrace as hr
    >>> p = hr.Pipeline("demo")
    >>> p.ingest("trips", hr.sql("sqlite:///x.db", table="t", cursor="updated_at"))
    >>> event_time_column(p.nodes["trips"])
    'updated_at'
    """
    if node.features is not None:
        return node.features.event_time
    tagged = node.tags.get(EVENT_TIME_TAG)
    if tagged:
        return tagged
    if isinstance(node.source, SqlSource) and node.source.cursor:
        return node.source.cursor
    return None


def newest_event_time(
    datasets: DatasetStore, dataset: str, version: int, column: str
) -> datetime | None:
    """The largest value of ``column`` in a dataset version, as UTC; None if not a time.

    Naive datetimes are taken as UTC and dates as their midnight (the feature store does the
    same). A column that is missing or holds something else gives None.
    """
    try:
        scan = datasets.scan(dataset, version)
        dtype = scan.collect_schema().get(column)
        if not isinstance(dtype, pl.Datetime) and dtype != pl.Date:
            return None
        value = scan.select(pl.col(column).max()).collect().item()
    except Exception:  # freshness is best effort: a metric never fails a run
        log.debug("newest event time of %s v%s unknown", dataset, version, exc_info=True)
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if value is None:
        return None
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _processed(record: NodeRunRecord) -> int | None:
    """Rows a node processed: the larger of rows read and rows written."""
    counts = [n for n in (record.rows_in, record.rows_out) if n is not None]
    return max(counts) if counts else None


def _sum(values: Sequence[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def run_metrics(
    result: RunResult,
    *,
    graph: Graph | None,
    quality: Sequence[QualityRecord],
    datasets: DatasetStore | None,
) -> tuple[RunMetrics, list[NodeMetrics]]:
    """The metrics of a finished run and of each of its node runs.

    ``quality`` are the run's quality records; ``graph`` and ``datasets`` are needed for
    freshness (without them it stays unknown).
    """
    by_task: Mapping[tuple[str, str | None], QualityRecord] = {
        (q.node, q.partition): q for q in quality
    }
    seen: dict[tuple[str, int, str], datetime | None] = {}
    nodes: list[NodeMetrics] = []
    for record in result.records:
        check = by_task.get((record.node, record.partition))
        newest = None
        if (
            graph is not None
            and datasets is not None
            and record.status.ok
            and record.output_dataset is not None
            and record.output_version is not None
            and record.node in graph
        ):
            column = event_time_column(graph.node(record.node))
            if column is not None:
                key = (record.output_dataset, record.output_version, column)
                if key not in seen:
                    seen[key] = newest_event_time(datasets, *key)
                newest = seen[key]
        duration = max(record.duration, 0.0)
        rows = _processed(record)
        ran = record.status is NodeStatus.SUCCEEDED and not record.cache_hit
        nodes.append(
            NodeMetrics(
                run_id=record.run_id,
                pipeline=result.pipeline,
                node=record.node,
                partition=record.partition,
                status=record.status.value,
                started_at=record.started_at,
                ended_at=record.ended_at,
                duration_seconds=duration,
                attempts=record.attempts,
                rows_in=record.rows_in,
                rows_out=record.rows_out,
                bytes_out=record.bytes_out,
                throughput_rows_per_second=(
                    rows / duration if ran and rows is not None and duration > 0 else None
                ),
                quality_score=None if check is None else check.score,
                quarantined_rows=None if check is None else check.quarantined_rows,
                newest_event_time=newest,
                freshness_seconds=(
                    None if newest is None else (result.ended_at - newest).total_seconds()
                ),
                cache_hit=record.cache_hit,
                output_dataset=record.output_dataset,
                output_version=record.output_version,
            )
        )
    executed = [n for n in nodes if not n.cache_hit]
    scores = [n.quality_score for n in nodes if n.quality_score is not None]
    run = RunMetrics(
        run_id=result.run_id,
        pipeline=result.pipeline,
        status=result.status.value,
        started_at=result.started_at,
        ended_at=result.ended_at,
        duration_seconds=max(result.duration, 0.0),
        nodes=len(nodes),
        nodes_failed=sum(1 for n in nodes if n.status == NodeStatus.FAILED.value),
        cache_hits=sum(1 for n in nodes if n.cache_hit),
        rows_in=_sum([n.rows_in for n in executed]),
        rows_out=_sum([n.rows_out for n in executed]),
        bytes_out=_sum([n.bytes_out for n in executed]),
        quarantined_rows=_sum([n.quarantined_rows for n in nodes]),
        quality_score=min(scores) if scores else None,
    )
    return run, nodes


def describe(metrics: NodeMetrics) -> dict[str, Any]:
    """A short, JSON-ready view of one node's metrics (for alert evidence)."""
    keep = (
        "rows_in",
        "rows_out",
        "bytes_out",
        "duration_seconds",
        "throughput_rows_per_second",
        "quality_score",
        "quarantined_rows",
        "freshness_seconds",
        "cache_hit",
        "output_dataset",
        "output_version",
    )
    data = metrics.to_dict()
    return {key: data[key] for key in keep}
