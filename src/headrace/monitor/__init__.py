"""Monitoring: run and node metrics, Prometheus exposition, alert rules and notifications.

* :class:`Monitor` — one project's metrics history, alerts, callbacks and exposition
  (``project.monitor``); its :meth:`~Monitor.listener` watches every batch run.
* Metrics per run and node (:class:`RunMetrics`, :class:`NodeMetrics`) are stored with
  history in the metadata database; :func:`exposition` renders them for Prometheus and
  :func:`push_metrics` pushes them to a Pushgateway.
* Alert rules (``[[alerts.rules]]``, :class:`AlertRule`) fire :class:`AlertRecord` values,
  recorded with their evidence and delivered to sinks (log, webhook, command) and to Python
  callbacks (:class:`AlertCallbacks`). Drift results reach the ``drift`` rules through
  :meth:`Monitor.evaluate_drift` (any :class:`DriftOutcome`, e.g. a :class:`DriftSignal`).
"""

from __future__ import annotations

from headrace.monitor.alerting import AlertCallback, AlertCallbacks, Alerting
from headrace.monitor.monitor import Monitor, MonitorListener
from headrace.monitor.prometheus import (
    DURATION_BUCKETS,
    MetricsCollector,
    exposition,
    push_metrics,
)
from headrace.monitor.rules import DriftOutcome, DriftSignal, RunFacts
from headrace.monitor.settings import (
    RULE_KINDS,
    AlertRule,
    AlertSettings,
    MetricsSettings,
    SinkSettings,
    default_rules,
)
from headrace.monitor.sinks import AlertSink, CommandSink, LogSink, WebhookSink
from headrace.storage.monitoring import AlertDelivery, AlertRecord, NodeMetrics, RunMetrics

__all__ = [
    "DURATION_BUCKETS",
    "RULE_KINDS",
    "AlertCallback",
    "AlertCallbacks",
    "AlertDelivery",
    "AlertRecord",
    "AlertRule",
    "AlertSettings",
    "AlertSink",
    "Alerting",
    "CommandSink",
    "DriftOutcome",
    "DriftSignal",
    "LogSink",
    "MetricsCollector",
    "MetricsSettings",
    "Monitor",
    "MonitorListener",
    "NodeMetrics",
    "RunFacts",
    "RunMetrics",
    "SinkSettings",
    "WebhookSink",
    "default_rules",
    "exposition",
    "push_metrics",
]
