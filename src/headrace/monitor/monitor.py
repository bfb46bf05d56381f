"""One project's monitoring: metrics history, alerts, callbacks, Prometheus; the run listener.

:class:`Monitor` is what the project hands out (``project.monitor``); its
:meth:`~Monitor.listener` watches each batch run and, when the run ends:

1. computes and stores the run's and nodes' metrics (:mod:`headrace.monitor.metrics`);
2. evaluates the alert rules and fires what matches (:mod:`headrace.monitor.alerting`);
3. pushes the pipeline's metrics to the Pushgateway when ``[metrics] pushgateway`` is set.

Each step is guarded on its own: a failing step is logged and the next still runs, and
nothing here can fail the run (see :class:`~headrace.engines.batch.run.RunListener`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from headrace.core.graph import Graph
from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus
from headrace.engines.batch.plan import Plan, Task
from headrace.engines.batch.run import RunResult
from headrace.monitor.alerting import AlertCallback, AlertCallbacks, Alerting
from headrace.monitor.metrics import run_metrics
from headrace.monitor.prometheus import exposition, push_metrics
from headrace.monitor.rules import DriftOutcome, RunFacts
from headrace.monitor.settings import AlertSettings, MetricsSettings
from headrace.storage.datasets import DatasetStore
from headrace.storage.metadata import MetadataStore
from headrace.storage.monitoring import AlertRecord, MonitoringStore, NodeMetrics, RunMetrics

__all__ = ["Monitor", "MonitorListener"]

log = logging.getLogger("headrace.monitor")


def _since(value: datetime | timedelta | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return datetime.now(UTC) - value
    if value.tzinfo is None:
        msg = f"since={value!r} is a naive datetime; pass a timezone-aware one (UTC)"
        raise ValueError(msg)
    return value


class Monitor:
    """Metrics and alerts of one project, over its metadata database.

    Cheap to build (it opens nothing); the project builds one per use so that it always
    works on the project's current metadata store.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        datasets: DatasetStore | None = None,
        *,
        metrics: MetricsSettings | None = None,
        alerts: AlertSettings | None = None,
        project: str = "",
        base_dir: Path | None = None,
        callbacks: AlertCallbacks | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.metadata = metadata
        self.datasets = datasets
        self.store = MonitoringStore(metadata)
        self.settings = metrics or MetricsSettings()
        self.callbacks = callbacks if callbacks is not None else AlertCallbacks()
        self.alerting = Alerting(
            self.store,
            alerts or AlertSettings(),
            project=project,
            base_dir=base_dir,
            callbacks=self.callbacks,
            sleep=sleep,
        )

    # -- querying ----------------------------------------------------------------------------

    def metrics(
        self,
        *,
        node: str | None = None,
        pipeline: str | None = None,
        run_id: str | None = None,
        since: datetime | timedelta | None = None,
        limit: int | None = None,
    ) -> list[NodeMetrics]:
        """Node metrics with history, newest first (``since``: a time, or a time span back)."""
        return self.store.node_metrics(
            pipeline=pipeline, node=node, run_id=run_id, since=_since(since), limit=limit
        )

    def run_metrics(
        self,
        *,
        pipeline: str | None = None,
        run_id: str | None = None,
        since: datetime | timedelta | None = None,
        limit: int | None = None,
    ) -> list[RunMetrics]:
        """Run metrics with history, newest first."""
        return self.store.run_metrics(
            pipeline=pipeline, run_id=run_id, since=_since(since), limit=limit
        )

    def alerts(
        self,
        *,
        rule: str | None = None,
        kind: str | None = None,
        pipeline: str | None = None,
        run_id: str | None = None,
        node: str | None = None,
        since: datetime | timedelta | None = None,
        limit: int | None = None,
    ) -> list[AlertRecord]:
        """Recorded alerts with their evidence and deliveries, newest first."""
        return self.store.alerts(
            rule=rule,
            kind=kind,
            pipeline=pipeline,
            run_id=run_id,
            node=node,
            since=_since(since),
            limit=limit,
        )

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """``(body, content_type)`` of the Prometheus exposition (for a ``/metrics`` route)."""
        return exposition(self.store, accept)

    # -- alerting ----------------------------------------------------------------------------

    def on_alert(
        self, callback: AlertCallback, *, kinds: Iterable[str] = (), rules: Iterable[str] = ()
    ) -> Callable[[], None]:
        """Call ``callback(alert)`` for each alert fired; returns the function that stops it."""
        return self.callbacks.add(callback, kinds=kinds, rules=rules)

    def evaluate_drift(
        self,
        drift: DriftOutcome,
        *,
        dataset: str,
        reference_version: int | None = None,
        current_version: int | None = None,
        pipeline: str | None = None,
        run_id: str | None = None,
    ) -> list[AlertRecord]:
        """Fire the ``drift`` rules that a drift result of ``dataset`` crosses.

        ``drift`` is a :class:`headrace.quality.drift.DriftResult` or any object with
        ``drifted_columns`` and ``share`` (:class:`~headrace.monitor.rules.DriftOutcome`).
        The alert's evidence names the dataset, both versions and the drifted columns, so a
        ``drift`` rule's webhook or command can start a retraining on the current version.
        Returns the alerts fired (recorded and delivered).
        """
        return self.alerting.evaluate_drift(
            drift,
            dataset=dataset,
            reference_version=reference_version,
            current_version=current_version,
            pipeline=pipeline,
            run_id=run_id,
        )

    def listener(self) -> MonitorListener:
        """A run listener that records metrics, fires alerts and pushes after each run."""
        return MonitorListener(self)


class MonitorListener:
    """A :class:`~headrace.engines.batch.run.RunListener` for metrics, alerts and pushes."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._graphs: dict[str, Graph] = {}
        self._lock = threading.Lock()

    def run_started(self, run_id: str, graph: Graph, plan: Plan, started_at: datetime) -> None:
        """Remember the graph (freshness needs the nodes' event-time columns)."""
        with self._lock:
            self._graphs[run_id] = graph

    def task_started(self, task: Task) -> None:
        """Nothing: metrics are computed once the run ended."""

    def task_finished(self, task: Task, record: NodeRunRecord) -> None:
        """Nothing: the run's result carries every record."""

    def run_finished(self, result: RunResult) -> None:
        """Store metrics, evaluate alert rules, push to the Pushgateway."""
        with self._lock:
            graph = self._graphs.pop(result.run_id, None)
        monitor = self.monitor
        facts: RunFacts | None = None
        try:
            quality = monitor.metadata.quality(run_id=result.run_id)
            run, nodes = run_metrics(
                result, graph=graph, quality=quality, datasets=monitor.datasets
            )
            monitor.store.record_metrics(run, nodes)
            facts = RunFacts(run=run, nodes=nodes, records=result.records, quality=quality)
        except Exception:
            log.exception("recording the metrics of run %s failed", result.run_id)
        if facts is not None:
            try:
                if monitor.alerting.wants_new_versions:
                    facts = RunFacts(
                        run=facts.run,
                        nodes=facts.nodes,
                        records=facts.records,
                        quality=facts.quality,
                        new_versions=self._new_versions(result),
                    )
                monitor.alerting.evaluate_run(facts)
            except Exception:
                log.exception("evaluating the alert rules on run %s failed", result.run_id)
        gateway = monitor.settings.pushgateway
        if gateway:
            push_metrics(
                gateway,
                monitor.store,
                result.pipeline,
                job=monitor.settings.job,
                timeout=monitor.settings.push_timeout,
            )

    def _new_versions(self, result: RunResult) -> list[DatasetVersion]:
        """The dataset versions this run committed (not those a cache hit reused)."""
        found: dict[tuple[str, int], DatasetVersion] = {}
        for record in result.records:
            if (
                record.status is not NodeStatus.SUCCEEDED
                or record.output_dataset is None
                or record.output_version is None
            ):
                continue
            key = (record.output_dataset, record.output_version)
            if key in found:
                continue
            version = self.monitor.metadata.get_version(*key)
            if version is not None and version.run_id == result.run_id:
                found[key] = version
        return list(found.values())
