"""Monitoring records in the metadata database: metrics per run and node, and fired alerts.

Metrics are written once per run (one transaction for the run and all its nodes) and kept
with their history; alerts are written when they fire, then updated with how each sink took
them. Aggregates for Prometheus (counts, sums, histogram buckets, latest values) are computed
by the database, so a scrape costs a few grouped queries whatever the history length.

Tables live in the metadata database (see :mod:`headrace.storage.schema`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from headrace.storage.metadata import MetadataStore
from headrace.storage.schema import alerts, node_metrics, run_metrics

__all__ = [
    "AlertDelivery",
    "AlertRecord",
    "HistogramSummary",
    "LatestNodeValues",
    "MonitoringStore",
    "NodeMetrics",
    "NodeSummary",
    "RunMetrics",
    "RunSummary",
]


def _iso(value: Any) -> Any:
    """JSON-ready: datetimes as ISO text, NaN and infinities as None (JSON has neither)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_iso(v) for v in value]
    return value


@dataclass(frozen=True)
class RunMetrics:
    """What one run measured, summed over its nodes."""

    run_id: str
    pipeline: str
    status: str
    started_at: datetime
    ended_at: datetime
    duration_seconds: float
    nodes: int
    nodes_failed: int
    cache_hits: int
    rows_in: int | None = None
    """Rows read by the nodes that ran (cache hits excluded)."""
    rows_out: int | None = None
    bytes_out: int | None = None
    quarantined_rows: int | None = None
    quality_score: float | None = None
    """The lowest quality score among the run's validated nodes."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(_iso(asdict(self)))


@dataclass(frozen=True)
class NodeMetrics:
    """What one node (one partition of it) measured in one run. Units: seconds, rows, bytes."""

    run_id: str
    pipeline: str
    node: str
    partition: str | None
    status: str
    started_at: datetime
    ended_at: datetime
    duration_seconds: float
    attempts: int
    rows_in: int | None = None
    rows_out: int | None = None
    bytes_out: int | None = None
    """In-memory size of the output the node produced (None for a cache hit)."""
    throughput_rows_per_second: float | None = None
    """Rows processed (read, or written by a source) per second; None for a cache hit."""
    quality_score: float | None = None
    quarantined_rows: int | None = None
    newest_event_time: datetime | None = None
    """The newest event time in the node's output, where the node names an event-time column
    (a feature view's ``event_time``, an ingest cursor, a ``tags={"event_time": col}``)."""
    freshness_seconds: float | None = None
    """Age of :attr:`newest_event_time` when the run ended; None where unknown."""
    cache_hit: bool = False
    output_dataset: str | None = None
    output_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(_iso(asdict(self)))


@dataclass(frozen=True)
class AlertDelivery:
    """How one sink (or callback) took one alert."""

    sink: str
    kind: str
    ok: bool
    attempts: int
    at: datetime
    error: str | None = None
    """Why the last attempt failed (credentials redacted)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(_iso(asdict(self)))


@dataclass(frozen=True)
class AlertRecord:
    """An alert that fired, with its evidence and how each sink took it."""

    alert_id: str
    rule: str
    kind: str
    severity: str
    fired_at: datetime
    message: str
    pipeline: str | None = None
    run_id: str | None = None
    node: str | None = None
    partition: str | None = None
    observed: float | None = None
    threshold: float | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    """Kind-specific facts: the quality record, the failed node's error, the fresh dataset
    versions (``datasets``), the drifted columns, ..."""
    deliveries: tuple[AlertDelivery, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what webhooks and commands receive, plus deliveries)."""
        data: dict[str, Any] = _iso({k: v for k, v in asdict(self).items() if k != "deliveries"})
        data["deliveries"] = [d.to_dict() for d in self.deliveries]
        return data


@dataclass(frozen=True)
class HistogramSummary:
    """Count, sum and cumulative bucket counts of durations (``le`` upper bounds)."""

    count: int
    total: float
    buckets: tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class RunSummary:
    """Run history of one pipeline in one status."""

    pipeline: str
    status: str
    durations: HistogramSummary


@dataclass(frozen=True)
class NodeSummary:
    """Node-run history of one node in one status; row and byte sums exclude cache hits."""

    pipeline: str
    node: str
    status: str
    durations: HistogramSummary
    rows_in: int
    rows_out: int
    bytes_out: int
    cache_hits: int
    quarantined_rows: int


@dataclass(frozen=True)
class LatestNodeValues:
    """The newest known value of each gauge-like metric of one node."""

    pipeline: str
    node: str
    quality_score: float | None = None
    throughput_rows_per_second: float | None = None
    newest_event_time: datetime | None = None
    last_success: datetime | None = None


def _blank(partition: str | None) -> str:
    return partition or ""


class MonitoringStore:
    """Metrics and alerts over the project's metadata database."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    # -- metrics -----------------------------------------------------------------------------

    def record_metrics(self, run: RunMetrics, nodes: Sequence[NodeMetrics]) -> None:
        """Store a run's metrics and its nodes' (one transaction; a re-record replaces)."""
        names = [f.name for f in fields(NodeMetrics)]  # shallow: asdict deep-copies (slow)
        node_rows = [
            {**{k: getattr(n, k) for k in names}, "partition": _blank(n.partition)} for n in nodes
        ]
        with self.metadata.writing() as c:
            c.execute(node_metrics.delete().where(node_metrics.c.run_id == run.run_id))
            c.execute(run_metrics.delete().where(run_metrics.c.run_id == run.run_id))
            c.execute(run_metrics.insert().values(asdict(run)))
            if node_rows:
                c.execute(node_metrics.insert(), node_rows)

    def node_metrics(
        self,
        *,
        pipeline: str | None = None,
        node: str | None = None,
        run_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[NodeMetrics]:
        """Node metrics, newest first, filtered by pipeline, node, run and start time."""
        t = node_metrics
        query = sa.select(t).order_by(t.c.started_at.desc(), t.c.node, t.c.partition)
        for column, value in ((t.c.pipeline, pipeline), (t.c.node, node), (t.c.run_id, run_id)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(t.c.started_at >= since)
        if until is not None:
            query = query.where(t.c.started_at < until)
        if limit is not None:
            query = query.limit(limit)
        with self.metadata.reading() as c:
            return [
                NodeMetrics(**{**row, "partition": row["partition"] or None})
                for row in c.execute(query).mappings()
            ]

    def run_metrics(
        self,
        *,
        pipeline: str | None = None,
        run_id: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[RunMetrics]:
        """Run metrics, newest first."""
        t = run_metrics
        query = sa.select(t).order_by(t.c.started_at.desc())
        if pipeline is not None:
            query = query.where(t.c.pipeline == pipeline)
        if run_id is not None:
            query = query.where(t.c.run_id == run_id)
        if since is not None:
            query = query.where(t.c.started_at >= since)
        if limit is not None:
            query = query.limit(limit)
        with self.metadata.reading() as c:
            return [RunMetrics(**row) for row in c.execute(query).mappings()]

    # -- aggregates (Prometheus) ---------------------------------------------------------------

    def run_summaries(
        self, buckets: Sequence[float], *, pipeline: str | None = None
    ) -> list[RunSummary]:
        """Per pipeline and status: run count, duration sum and histogram buckets."""
        t = run_metrics
        query = sa.select(
            t.c.pipeline, t.c.status, *_histogram_columns(t.c.duration_seconds, buckets)
        ).group_by(t.c.pipeline, t.c.status)
        if pipeline is not None:
            query = query.where(t.c.pipeline == pipeline)
        with self.metadata.reading() as c:
            return [
                RunSummary(row[0], row[1], _histogram(row[2:], buckets)) for row in c.execute(query)
            ]

    def node_summaries(
        self, buckets: Sequence[float], *, pipeline: str | None = None
    ) -> list[NodeSummary]:
        """Per pipeline, node and status: counts, duration histogram, row/byte sums."""
        t = node_metrics
        ran = sa.not_(t.c.cache_hit)

        def executed(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
            return sa.func.coalesce(sa.func.sum(sa.case((ran, column), else_=0)), 0)

        query = sa.select(
            t.c.pipeline,
            t.c.node,
            t.c.status,
            executed(t.c.rows_in),
            executed(t.c.rows_out),
            executed(t.c.bytes_out),
            sa.func.sum(sa.case((t.c.cache_hit, 1), else_=0)),
            sa.func.coalesce(sa.func.sum(t.c.quarantined_rows), 0),
            *_histogram_columns(t.c.duration_seconds, buckets),
        ).group_by(t.c.pipeline, t.c.node, t.c.status)
        if pipeline is not None:
            query = query.where(t.c.pipeline == pipeline)
        with self.metadata.reading() as c:
            return [
                NodeSummary(
                    pipeline=row[0],
                    node=row[1],
                    status=row[2],
                    rows_in=int(row[3]),
                    rows_out=int(row[4]),
                    bytes_out=int(row[5]),
                    cache_hits=int(row[6] or 0),
                    quarantined_rows=int(row[7]),
                    durations=_histogram(row[8:], buckets),
                )
                for row in c.execute(query)
            ]

    def latest_runs(
        self, *, pipeline: str | None = None
    ) -> list[tuple[RunMetrics, datetime | None]]:
        """Per pipeline: its newest run, and when its newest successful run ended."""
        t = run_metrics
        newest = sa.select(t.c.pipeline, sa.func.max(t.c.started_at).label("at")).group_by(
            t.c.pipeline
        )
        success = (
            sa.select(t.c.pipeline, sa.func.max(t.c.ended_at).label("at"))
            .where(t.c.status == "succeeded")
            .group_by(t.c.pipeline)
        )
        if pipeline is not None:
            newest = newest.where(t.c.pipeline == pipeline)
            success = success.where(t.c.pipeline == pipeline)
        latest = newest.subquery()
        query = sa.select(t).join(
            latest, sa.and_(t.c.pipeline == latest.c.pipeline, t.c.started_at == latest.c.at)
        )
        with self.metadata.reading() as c:
            succeeded = {row[0]: row[1] for row in c.execute(success)}
            runs = {row["pipeline"]: RunMetrics(**row) for row in c.execute(query).mappings()}
        return [(run, succeeded.get(name)) for name, run in sorted(runs.items())]

    def latest_node_values(self, *, pipeline: str | None = None) -> list[LatestNodeValues]:
        """Per node: the newest quality score, throughput, event time and success time."""
        t = node_metrics
        ok = t.c.status.in_(("succeeded", "cached"))
        values: dict[tuple[str, str], dict[str, Any]] = {}
        with self.metadata.reading() as c:
            for column, condition in (
                (t.c.quality_score, t.c.quality_score.is_not(None)),
                (t.c.throughput_rows_per_second, t.c.throughput_rows_per_second.is_not(None)),
                (t.c.newest_event_time, t.c.newest_event_time.is_not(None)),
                (t.c.ended_at, ok),
            ):
                for key, value in _latest(c, column, condition, pipeline):
                    values.setdefault(key, {})[column.name] = value
        return [
            LatestNodeValues(
                pipeline=key[0],
                node=key[1],
                quality_score=found.get("quality_score"),
                throughput_rows_per_second=found.get("throughput_rows_per_second"),
                newest_event_time=found.get("newest_event_time"),
                last_success=found.get("ended_at"),
            )
            for key, found in sorted(values.items())
        ]

    # -- alerts ------------------------------------------------------------------------------

    def record_alert(self, alert: AlertRecord) -> None:
        """Store an alert that fired (its deliveries, if any, with it)."""
        row = alert.to_dict()
        row["fired_at"] = alert.fired_at
        row["partition"] = _blank(alert.partition)
        with self.metadata.writing() as c:
            c.execute(alerts.insert().values(row))

    def record_deliveries(self, alert_id: str, deliveries: Sequence[AlertDelivery]) -> None:
        """Set how the sinks took an alert."""
        with self.metadata.writing() as c:
            c.execute(
                alerts.update()
                .where(alerts.c.alert_id == alert_id)
                .values(deliveries=[d.to_dict() for d in deliveries])
            )

    def alerts(
        self,
        *,
        rule: str | None = None,
        kind: str | None = None,
        pipeline: str | None = None,
        run_id: str | None = None,
        node: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AlertRecord]:
        """Alerts, newest first, filtered by rule, kind, pipeline, run, node and time."""
        t = alerts
        query = sa.select(t).order_by(t.c.fired_at.desc(), t.c.alert_id.desc())
        for column, value in (
            (t.c.rule, rule),
            (t.c.kind, kind),
            (t.c.pipeline, pipeline),
            (t.c.run_id, run_id),
            (t.c.node, node),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(t.c.fired_at >= since)
        if limit is not None:
            query = query.limit(limit)
        with self.metadata.reading() as c:
            return [_alert(row) for row in c.execute(query).mappings()]

    def alert_counts(
        self, *, pipeline: str | None = None
    ) -> list[tuple[str | None, str, str, str, int]]:
        """(pipeline, rule, kind, severity, how many fired) for every rule that ever fired."""
        t = alerts
        query = (
            sa.select(t.c.pipeline, t.c.rule, t.c.kind, t.c.severity, sa.func.count())
            .group_by(t.c.pipeline, t.c.rule, t.c.kind, t.c.severity)
            .order_by(t.c.pipeline, t.c.rule)
        )
        if pipeline is not None:
            query = query.where(t.c.pipeline == pipeline)
        with self.metadata.reading() as c:
            return [(p, r, k, s, int(n)) for p, r, k, s, n in c.execute(query)]


def _histogram_columns(
    column: sa.ColumnElement[Any], buckets: Sequence[float]
) -> list[sa.ColumnElement[Any]]:
    counts = [sa.func.sum(sa.case((column <= bound, 1), else_=0)) for bound in buckets]
    return [sa.func.count(), sa.func.coalesce(sa.func.sum(column), 0.0), *counts]


def _histogram(values: Sequence[Any], buckets: Sequence[float]) -> HistogramSummary:
    count, total, *counts = values
    return HistogramSummary(
        count=int(count),
        total=float(total),
        buckets=tuple((bound, int(n or 0)) for bound, n in zip(buckets, counts, strict=True)),
    )


def _latest(
    c: sa.Connection,
    column: sa.ColumnElement[Any],
    condition: sa.ColumnElement[bool],
    pipeline: str | None,
) -> list[tuple[tuple[str, str], Any]]:
    """Per (pipeline, node): ``column`` of the newest row that meets ``condition``."""
    t = node_metrics
    newest = (
        sa.select(t.c.pipeline, t.c.node, sa.func.max(t.c.started_at).label("at"))
        .where(condition)
        .group_by(t.c.pipeline, t.c.node)
    )
    if pipeline is not None:
        newest = newest.where(t.c.pipeline == pipeline)
    latest = newest.subquery()
    query = (
        sa.select(t.c.pipeline, t.c.node, column)
        .join(
            latest,
            sa.and_(
                t.c.pipeline == latest.c.pipeline,
                t.c.node == latest.c.node,
                t.c.started_at == latest.c.at,
            ),
        )
        .where(condition)
        .order_by(t.c.partition)
    )
    found: dict[tuple[str, str], Any] = {}
    for name, node, value in c.execute(query):
        found.setdefault((name, node), value)  # several partitions: the first one
    return list(found.items())


def _alert(row: sa.RowMapping) -> AlertRecord:
    deliveries = tuple(
        AlertDelivery(
            sink=d["sink"],
            kind=d["kind"],
            ok=bool(d["ok"]),
            attempts=int(d["attempts"]),
            at=datetime.fromisoformat(d["at"]),
            error=d.get("error"),
        )
        for d in row["deliveries"] or ()
    )
    return AlertRecord(
        alert_id=row["alert_id"],
        rule=row["rule"],
        kind=row["kind"],
        severity=row["severity"],
        fired_at=row["fired_at"],
        message=row["message"],
        pipeline=row["pipeline"],
        run_id=row["run_id"],
        node=row["node"],
        partition=row["partition"] or None,
        observed=row["observed"],
        threshold=row["threshold"],
        evidence=dict(row["evidence"] or {}),
        deliveries=deliveries,
    )
