"""Prometheus exposition of the stored metrics, and Pushgateway pushes for batch runs.

The metrics are read from the metadata database at scrape time by a custom collector, so the
service process shows every run — including those run by the CLI, by a scheduler or on other
machines sharing a PostgreSQL metadata database — and nothing is lost on restart. Counters are
totals over the recorded history, histograms are bucketed by the database; gauges are the
newest known values. Labels are ``pipeline``, ``node``, ``status`` (and ``rule``, ``kind``,
``severity`` for alerts): never run ids or partitions.

Runs (labels ``pipeline``, and ``status`` on the counter):

* ``headrace_runs_total`` (counter), ``headrace_run_duration_seconds`` (histogram);
* ``headrace_pipeline_last_run_timestamp_seconds``, ``..._last_run_duration_seconds``,
  ``..._last_run_success`` (1 or 0), ``..._last_success_timestamp_seconds`` (gauges).

Nodes (labels ``pipeline``, ``node``, and ``status`` on ``headrace_node_runs_total``):

* counters: ``headrace_node_runs_total``, ``headrace_node_rows_in_total``,
  ``headrace_node_rows_out_total``, ``headrace_node_output_bytes_total`` (these three exclude
  cache hits), ``headrace_node_cache_hits_total``, ``headrace_node_quarantined_rows_total``;
* ``headrace_node_duration_seconds`` (histogram of the node runs that did work: succeeded or
  failed);
* gauges, newest known value: ``headrace_node_quality_score`` (0..1),
  ``headrace_node_throughput_rows_per_second``, ``headrace_node_newest_event_timestamp_seconds``
  and ``headrace_node_freshness_seconds`` (now minus that time; only where the node names an
  event-time column), ``headrace_node_last_success_timestamp_seconds``.

Alerts: ``headrace_alerts_total`` (counter; ``pipeline``, ``rule``, ``kind``, ``severity``).

Histogram buckets are sized for pipelines, from 0.1 s to one hour (:data:`DURATION_BUCKETS`).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import (
    basic_auth_handler,
    choose_encoder,
    default_handler,
    push_to_gateway,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from headrace.core.redaction import redact
from headrace.storage.monitoring import HistogramSummary, MonitoringStore

__all__ = ["DURATION_BUCKETS", "MetricsCollector", "exposition", "push_metrics"]

log = logging.getLogger("headrace.monitor")

_WORKED = frozenset({"succeeded", "failed"})
"""Node statuses that did work (cache hits, cancelled and upstream-failed nodes did not)."""

DURATION_BUCKETS: tuple[float, ...] = (
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
)  # fmt: skip
"""Upper bounds (seconds) of the duration histograms: pipelines, not web requests."""


def _histogram(family: HistogramMetricFamily, labels: list[str], h: HistogramSummary) -> None:
    buckets = [(_le(bound), float(count)) for bound, count in h.buckets]
    buckets.append(("+Inf", float(h.count)))
    family.add_metric(labels, buckets, h.total)


def _le(bound: float) -> str:
    return repr(float(bound))


def _merge(summaries: Iterable[HistogramSummary]) -> HistogramSummary:
    items = list(summaries)
    bounds = [bound for bound, _ in items[0].buckets]
    return HistogramSummary(
        count=sum(h.count for h in items),
        total=sum(h.total for h in items),
        buckets=tuple(
            (bound, sum(h.buckets[i][1] for h in items)) for i, bound in enumerate(bounds)
        ),
    )


class MetricsCollector:
    """A prometheus-client collector reading headrace's monitoring tables at each scrape.

    ``pipeline`` restricts it to one pipeline (what a Pushgateway push of that pipeline holds).
    """

    def __init__(
        self,
        store: MonitoringStore,
        *,
        pipeline: str | None = None,
        buckets: Sequence[float] = DURATION_BUCKETS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.buckets = tuple(buckets)
        self.clock = clock

    def describe(self) -> list[Metric]:
        """Nothing up front: registering the collector must not query the database."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Every headrace metric, read from the store now."""
        yield from self._runs()
        yield from self._nodes()
        yield from self._latest()
        yield from self._alerts()

    def _runs(self) -> Iterable[Metric]:
        summaries = self.store.run_summaries(self.buckets, pipeline=self.pipeline)
        runs = CounterMetricFamily(
            "headrace_runs",
            "Pipeline runs recorded, by final status.",
            labels=["pipeline", "status"],
        )
        durations = HistogramMetricFamily(
            "headrace_run_duration_seconds",
            "Wall-clock duration of pipeline runs.",
            labels=["pipeline"],
        )
        by_pipeline: defaultdict[str, list[HistogramSummary]] = defaultdict(list)
        for s in summaries:
            runs.add_metric([s.pipeline, s.status], float(s.durations.count))
            by_pipeline[s.pipeline].append(s.durations)
        for name, parts in sorted(by_pipeline.items()):
            _histogram(durations, [name], _merge(parts))
        yield runs
        yield durations

        last_time = GaugeMetricFamily(
            "headrace_pipeline_last_run_timestamp_seconds",
            "When the newest run of the pipeline ended (Unix time).",
            labels=["pipeline"],
        )
        last_duration = GaugeMetricFamily(
            "headrace_pipeline_last_run_duration_seconds",
            "Duration of the newest run of the pipeline.",
            labels=["pipeline"],
        )
        last_ok = GaugeMetricFamily(
            "headrace_pipeline_last_run_success",
            "1 when the newest run of the pipeline succeeded, else 0.",
            labels=["pipeline"],
        )
        last_success = GaugeMetricFamily(
            "headrace_pipeline_last_success_timestamp_seconds",
            "When the newest successful run of the pipeline ended (Unix time).",
            labels=["pipeline"],
        )
        for run, succeeded in self.store.latest_runs(pipeline=self.pipeline):
            last_time.add_metric([run.pipeline], run.ended_at.timestamp())
            last_duration.add_metric([run.pipeline], run.duration_seconds)
            last_ok.add_metric([run.pipeline], 1.0 if run.status == "succeeded" else 0.0)
            if succeeded is not None:
                last_success.add_metric([run.pipeline], succeeded.timestamp())
        yield from (last_time, last_duration, last_ok, last_success)

    def _nodes(self) -> Iterable[Metric]:
        summaries = self.store.node_summaries(self.buckets, pipeline=self.pipeline)
        node_labels = ["pipeline", "node"]
        node_runs = CounterMetricFamily(
            "headrace_node_runs",
            "Node runs recorded (one per node partition and run), by status.",
            labels=["pipeline", "node", "status"],
        )
        durations = HistogramMetricFamily(
            "headrace_node_duration_seconds",
            "Duration of node runs that did work (succeeded or failed; not cache hits).",
            labels=node_labels,
        )
        sums = {
            "rows_in": CounterMetricFamily(
                "headrace_node_rows_in",
                "Rows read by node runs (cache hits excluded).",
                labels=node_labels,
            ),
            "rows_out": CounterMetricFamily(
                "headrace_node_rows_out",
                "Rows written by node runs (cache hits excluded).",
                labels=node_labels,
            ),
            "bytes_out": CounterMetricFamily(
                "headrace_node_output_bytes",
                "In-memory bytes of the outputs node runs produced (cache hits excluded).",
                labels=node_labels,
            ),
            "cache_hits": CounterMetricFamily(
                "headrace_node_cache_hits",
                "Node runs skipped because code, config and inputs were unchanged.",
                labels=node_labels,
            ),
            "quarantined_rows": CounterMetricFamily(
                "headrace_node_quarantined_rows",
                "Rows sent to quarantine by node validation.",
                labels=node_labels,
            ),
        }
        by_node: defaultdict[tuple[str, str], list[Any]] = defaultdict(list)
        for s in summaries:
            node_runs.add_metric([s.pipeline, s.node, s.status], float(s.durations.count))
            by_node[(s.pipeline, s.node)].append(s)
        for (pipeline, node), parts in sorted(by_node.items()):
            labels = [pipeline, node]
            worked = [p.durations for p in parts if p.status in _WORKED]
            _histogram(durations, labels, _merge(worked) if worked else self._empty())
            for attribute, family in sums.items():
                family.add_metric(labels, float(sum(getattr(p, attribute) for p in parts)))
        yield node_runs
        yield durations
        yield from sums.values()

    def _empty(self) -> HistogramSummary:
        return HistogramSummary(0, 0.0, tuple((bound, 0) for bound in self.buckets))

    def _latest(self) -> Iterable[Metric]:
        labels = ["pipeline", "node"]
        quality = GaugeMetricFamily(
            "headrace_node_quality_score",
            "Quality score (0..1) of the node's newest validated output.",
            labels=labels,
        )
        throughput = GaugeMetricFamily(
            "headrace_node_throughput_rows_per_second",
            "Rows processed per second by the node's newest run that did work.",
            labels=labels,
        )
        newest = GaugeMetricFamily(
            "headrace_node_newest_event_timestamp_seconds",
            "Newest event time in the node's output (Unix time), where the node names one.",
            labels=labels,
        )
        freshness = GaugeMetricFamily(
            "headrace_node_freshness_seconds",
            "Age of the newest event time in the node's output at scrape time.",
            labels=labels,
        )
        last_success = GaugeMetricFamily(
            "headrace_node_last_success_timestamp_seconds",
            "When the node last ended usable (succeeded or cached), Unix time.",
            labels=labels,
        )
        now = self.clock()
        for values in self.store.latest_node_values(pipeline=self.pipeline):
            key = [values.pipeline, values.node]
            if values.quality_score is not None:
                quality.add_metric(key, values.quality_score)
            if values.throughput_rows_per_second is not None:
                throughput.add_metric(key, values.throughput_rows_per_second)
            if values.newest_event_time is not None:
                newest.add_metric(key, values.newest_event_time.timestamp())
                freshness.add_metric(key, (now - values.newest_event_time).total_seconds())
            if values.last_success is not None:
                last_success.add_metric(key, values.last_success.timestamp())
        yield from (quality, throughput, newest, freshness, last_success)

    def _alerts(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "headrace_alerts",
            "Alerts fired, by rule.",
            labels=["pipeline", "rule", "kind", "severity"],
        )
        for pipeline, rule, kind, severity, count in self.store.alert_counts(
            pipeline=self.pipeline
        ):
            family.add_metric([pipeline or "", rule, kind, severity], float(count))
        yield family


def _registry(store: MonitoringStore, pipeline: str | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(store, pipeline=pipeline))
    return registry


def exposition(
    store: MonitoringStore, accept: str | None = None, *, pipeline: str | None = None
) -> tuple[bytes, str]:
    """The metrics in Prometheus text format (or OpenMetrics, if ``accept`` asks for it).

    Returns ``(body, content_type)`` for an HTTP answer, e.g. in FastAPI::

        body, content_type = exposition(store, request.headers.get("accept"))
        return Response(content=body, media_type=content_type)
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_registry(store, pipeline)), content_type


def push_metrics(
    gateway: str,
    store: MonitoringStore,
    pipeline: str,
    *,
    job: str = "headrace",
    timeout: float = 10.0,
) -> bool:
    """Push one pipeline's metrics to a Prometheus Pushgateway; False (logged) on failure.

    The push replaces the group ``job=<job>, pipeline=<pipeline>`` (HTTP PUT), so the
    gateway always holds the pipeline's current totals and its newest run. Credentials in
    the gateway URL (``http://user:password@host:9091``) are sent as basic auth.
    """
    url, handler = _gateway(gateway)
    try:
        push_to_gateway(
            url,
            job=job,
            registry=_registry(store, pipeline),
            grouping_key={"pipeline": pipeline},
            timeout=timeout,
            handler=handler,
        )
    except Exception as exc:  # a push never fails a run
        log.warning(
            "pushing metrics of pipeline %r to the Pushgateway %s failed: %s",
            pipeline,
            redact(url),
            redact(f"{type(exc).__name__}: {exc}"),
        )
        return False
    return True


def _gateway(gateway: str) -> tuple[str, Callable[..., Callable[[], None]]]:
    """The gateway URL without credentials, and the handler that sends them."""
    if "://" not in gateway:
        gateway = "http://" + gateway
    parts = urllib.parse.urlsplit(gateway)
    if parts.username is None:
        return gateway, default_handler
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    bare = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    username = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return bare, handler
