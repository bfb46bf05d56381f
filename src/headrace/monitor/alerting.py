"""Firing alerts: record each with its evidence, deliver it to its sinks and callbacks.

An alert is written to the metadata database *before* anything is sent (so a crash while
sending still leaves it listed), then updated with one delivery outcome per sink and
callback. Python callbacks are registered explicitly on an :class:`AlertCallbacks` object
owned by the project (``project.on_alert(fn)``), never through a global registry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from headrace.core.redaction import redact
from headrace.monitor.rules import DriftOutcome, RunFacts, evaluate_drift, evaluate_run
from headrace.monitor.settings import RULE_KINDS, AlertRule, AlertSettings
from headrace.monitor.sinks import AlertSink, alert_payload, build_sinks
from headrace.storage.monitoring import AlertDelivery, AlertRecord, MonitoringStore

__all__ = ["AlertCallback", "AlertCallbacks", "Alerting"]

log = logging.getLogger("headrace.alerts")

AlertCallback = Callable[[AlertRecord], object]
"""A function told of an alert after its sinks (its return value is ignored)."""


@dataclass(frozen=True)
class _Registration:
    callback: AlertCallback
    kinds: frozenset[str]
    rules: frozenset[str]

    @property
    def name(self) -> str:
        qualname = getattr(self.callback, "__qualname__", None) or repr(self.callback)
        return f"callback:{qualname}"

    def wants(self, alert: AlertRecord) -> bool:
        return (not self.kinds or alert.kind in self.kinds) and (
            not self.rules or alert.rule in self.rules
        )


class AlertCallbacks:
    """Python functions told of alerts — e.g. to start a retraining job on ``new_data``.

    Example:
        >>> callbacks = AlertCallbacks()
        >>> seen = []
        >>> remove = callbacks.add(seen.append, kinds=["new_data"])
        >>> len(callbacks)
        1
        >>> remove()
        >>> len(callbacks)
        0

    A callback runs in the thread that finished the run, after the alert's sinks; an
    exception it raises is logged and recorded as a failed delivery, never raised further.

    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Registration] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self,
        callback: AlertCallback,
        *,
        kinds: Iterable[str] = (),
        rules: Iterable[str] = (),
    ) -> Callable[[], None]:
        """Call ``callback(alert)`` for each alert (only of these kinds / rules, if given).

        Returns a function that removes the registration.
        """
        if not callable(cast("object", callback)):
            msg = f"on_alert needs a callable, not {callback!r}"
            raise TypeError(msg)
        wanted = frozenset(kinds)
        unknown = sorted(wanted - set(RULE_KINDS))
        if unknown:
            msg = f"unknown alert kind(s) {', '.join(unknown)}; use {', '.join(RULE_KINDS)}"
            raise ValueError(msg)
        entry = _Registration(callback, wanted, frozenset(rules))
        with self._lock:
            self._entries.append(entry)

        def remove() -> None:
            with self._lock:
                if entry in self._entries:
                    self._entries.remove(entry)

        return remove

    def matching(self, alert: AlertRecord) -> list[_Registration]:
        """The registrations that want ``alert``."""
        with self._lock:
            return [entry for entry in self._entries if entry.wants(alert)]


class Alerting:
    """The alert rules of a project, its sinks and callbacks, over its monitoring store."""

    def __init__(
        self,
        store: MonitoringStore,
        settings: AlertSettings,
        *,
        project: str = "",
        base_dir: Path | None = None,
        callbacks: AlertCallbacks | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.rules: tuple[AlertRule, ...] = settings.effective_rules()
        self.sinks: dict[str, AlertSink] = build_sinks(
            settings.sinks, base_dir=base_dir, sleep=sleep
        )
        self.project = project
        self.callbacks = callbacks if callbacks is not None else AlertCallbacks()
        self._by_name = {rule.name: rule for rule in self.rules}

    @property
    def wants_new_versions(self) -> bool:
        """True when a ``new_data`` rule needs the run's new dataset versions."""
        return any(rule.kind == "new_data" for rule in self.rules)

    def evaluate_run(self, facts: RunFacts) -> list[AlertRecord]:
        """Evaluate the rules on a finished run; fire (record, deliver) what matches."""
        return self.fire(evaluate_run(self.rules, facts))

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
        """Evaluate the ``drift`` rules on one drift result of ``dataset``; fire what matches."""
        return self.fire(
            evaluate_drift(
                self.rules,
                drift,
                dataset=dataset,
                reference_version=reference_version,
                current_version=current_version,
                pipeline=pipeline,
                run_id=run_id,
            )
        )

    def fire(self, alerts: Sequence[AlertRecord]) -> list[AlertRecord]:
        """Record each alert, deliver it to its rule's sinks and the callbacks, record how.

        Returns the alerts with their deliveries.
        """
        fired = []
        for alert in alerts:
            self.store.record_alert(alert)
            deliveries = self._deliver(alert)
            deliveries += self._notify(replace(alert, deliveries=tuple(deliveries)))
            self.store.record_deliveries(alert.alert_id, deliveries)
            fired.append(replace(alert, deliveries=tuple(deliveries)))
        return fired

    def _deliver(self, alert: AlertRecord) -> list[AlertDelivery]:
        rule = self._by_name.get(alert.rule)
        names = (rule.sinks if rule is not None else None) or ("log",)
        payload = alert_payload(alert, project=self.project)
        deliveries = []
        for name in names:
            sink = self.sinks.get(name)
            if sink is None:  # settings validation makes this unreachable from headrace.toml
                deliveries.append(
                    AlertDelivery(name, "unknown", ok=False, attempts=0, at=_now(), error="no sink")
                )
                continue
            try:
                deliveries.append(sink.deliver(alert, payload))
            except Exception as exc:  # a sink must not raise; if one does, record it
                log.exception("alert sink %s failed", name)
                error = redact(f"{type(exc).__name__}: {exc}")
                deliveries.append(
                    AlertDelivery(name, sink.kind, ok=False, attempts=1, at=_now(), error=error)
                )
        return deliveries

    def _notify(self, alert: AlertRecord) -> list[AlertDelivery]:
        """Call the registered callbacks; their outcomes are deliveries too."""
        outcomes = []
        for entry in self.callbacks.matching(alert):
            try:
                entry.callback(alert)
            except Exception as exc:
                log.exception("alert callback %s failed", entry.name)
                error = redact(f"{type(exc).__name__}: {exc}")
                outcomes.append(
                    AlertDelivery(
                        entry.name, "callback", ok=False, attempts=1, at=_now(), error=error
                    )
                )
            else:
                outcomes.append(
                    AlertDelivery(entry.name, "callback", ok=True, attempts=1, at=_now())
                )
        return outcomes


def _now() -> datetime:
    return datetime.now(UTC)
