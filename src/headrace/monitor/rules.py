"""Alert rule evaluation: what a finished run (or a drift result) fires, with its evidence.

Evaluation is pure: it turns facts (:class:`RunFacts`, a :class:`DriftOutcome`) into
:class:`~headrace.storage.monitoring.AlertRecord` values; recording and delivering them is
:mod:`headrace.monitor.alerting`'s job. Each kind compares one observed value with the
rule's threshold (see :data:`~headrace.monitor.settings.RULE_KINDS`):

=================  ===========  =====================================================
kind               fires when   observed value
=================  ===========  =====================================================
quality            ``<``        a node's quality score (0..1)
duration           ``>``        the run's seconds (with ``nodes``: each node's seconds)
failure            —            a node failed (one alert per failed node)
freshness          ``>``        age in seconds of the newest event time of a node's output
quarantine_share   ``>``        quarantined rows / validated rows of a node
new_data           ``>=``       rows written to the datasets that got a version in the run
drift              ``>``        share of a dataset's columns that drifted
=================  ===========  =====================================================
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus, QualityRecord
from headrace.core.redaction import redact
from headrace.monitor.metrics import describe
from headrace.monitor.settings import AlertRule
from headrace.storage.monitoring import AlertRecord, NodeMetrics, RunMetrics

__all__ = ["DriftOutcome", "DriftSignal", "RunFacts", "evaluate_drift", "evaluate_run"]


@dataclass(frozen=True)
class RunFacts:
    """Everything the rules look at after a run."""

    run: RunMetrics
    nodes: Sequence[NodeMetrics]
    records: Sequence[NodeRunRecord]
    quality: Sequence[QualityRecord] = ()
    new_versions: Sequence[DatasetVersion] = ()
    """Dataset versions committed by this run (for ``new_data`` rules)."""


class DriftOutcome(Protocol):
    """What a drift rule reads from a drift result: any object with these two attributes.

    :class:`headrace.quality.drift.DriftResult` has them; so does :class:`DriftSignal`, for
    results from elsewhere. Which dataset and versions were compared is passed alongside
    (see :meth:`headrace.monitor.Monitor.evaluate_drift`).
    """

    @property
    def drifted_columns(self) -> Sequence[str]:
        """Columns judged drifted."""
        ...

    @property
    def share(self) -> float:
        """Drifted columns / compared columns (0..1)."""
        ...


@dataclass(frozen=True)
class DriftSignal:
    """A drift result from anywhere, in the shape drift rules read (a :class:`DriftOutcome`).

    >>> DriftSignal(("dep_delay",), columns=4).share
    0.25
    """

    drifted_columns: Sequence[str] = ()
    columns: int = 0
    """How many columns were compared (0: unknown; the share is then 1 when any drifted)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Per-column statistics to keep as evidence (JSON-ready)."""

    @property
    def share(self) -> float:
        """Drifted columns / compared columns."""
        if self.columns <= 0:
            return 1.0 if self.drifted_columns else 0.0
        return len(self.drifted_columns) / self.columns


def _new_id(at: datetime) -> str:
    return f"{at:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


_CHECK_EVIDENCE = ("rule", "kind", "columns", "severity", "failed_rows", "pass_rate")


def _where(node: str, partition: str | None) -> str:
    return f"{node}[{partition}]" if partition else node


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return redact(lines[0]) if lines else "unknown error"


class _Builder:
    """Makes the alerts of one rule, stamped with one time."""

    def __init__(self, rule: AlertRule, at: datetime, run: RunMetrics | None) -> None:
        self.rule = rule
        self.at = at
        self.run = run
        self.threshold = rule.effective_threshold

    def alert(
        self,
        message: str,
        *,
        observed: float | None,
        node: str | None = None,
        partition: str | None = None,
        evidence: Mapping[str, Any] | None = None,
        pipeline: str | None = None,
        run_id: str | None = None,
    ) -> AlertRecord:
        run = self.run
        return AlertRecord(
            alert_id=_new_id(self.at),
            rule=self.rule.name,
            kind=self.rule.kind,
            severity=self.rule.effective_severity,
            fired_at=self.at,
            message=f"{message} (rule {self.rule.name!r})",
            pipeline=pipeline if run is None else run.pipeline,
            run_id=run_id if run is None else run.run_id,
            node=node,
            partition=partition,
            observed=observed,
            threshold=self.threshold,
            evidence=dict(evidence or {}),
        )


def _node_wanted(rule: AlertRule, node: str) -> bool:
    return not rule.nodes or node in rule.nodes


def _applies(rule: AlertRule, pipeline: str | None) -> bool:
    return not rule.pipelines or pipeline in rule.pipelines


def evaluate_run(
    rules: Iterable[AlertRule], facts: RunFacts, *, now: datetime | None = None
) -> list[AlertRecord]:
    """The alerts ``rules`` fire on a finished run (drift rules fire elsewhere)."""
    at = now or datetime.now(UTC)
    out: list[AlertRecord] = []
    for rule in rules:
        if rule.kind == "drift" or not _applies(rule, facts.run.pipeline):
            continue
        make = _Builder(rule, at, facts.run)
        out.extend(_RUN_KINDS[rule.kind](rule, make, facts))
    return out


def _quality(rule: AlertRule, make: _Builder, facts: RunFacts) -> Iterable[AlertRecord]:
    threshold = make.threshold
    assert threshold is not None
    for q in facts.quality:
        if _node_wanted(rule, q.node) and q.score < threshold:
            yield make.alert(
                f"quality score of node {_where(q.node, q.partition)} is {q.score:.4g}, below "
                f"{threshold:g} ({q.quarantined_rows:,} of {q.rows:,} rows quarantined)",
                observed=q.score,
                node=q.node,
                partition=q.partition,
                evidence={
                    "contract": q.contract,
                    "rows": q.rows,
                    "valid_rows": q.valid_rows,
                    "quarantined_rows": q.quarantined_rows,
                    "gate": q.gate,
                    "passed": q.passed,
                    "quarantine_dataset": q.quarantine_dataset,
                    "quarantine_version": q.quarantine_version,
                    "failed_checks": [
                        {k: c.get(k) for k in _CHECK_EVIDENCE}
                        for c in q.checks
                        if c.get("passed") is False
                    ],
                },
            )


def _quarantine_share(rule: AlertRule, make: _Builder, facts: RunFacts) -> Iterable[AlertRecord]:
    threshold = make.threshold
    assert threshold is not None
    for q in facts.quality:
        if not _node_wanted(rule, q.node) or q.rows <= 0:
            continue
        share = q.quarantined_rows / q.rows
        if share > threshold:
            yield make.alert(
                f"{share:.2%} of the rows of node {_where(q.node, q.partition)} were quarantined "
                f"({q.quarantined_rows:,} of {q.rows:,}), more than {threshold:.2%}",
                observed=share,
                node=q.node,
                partition=q.partition,
                evidence={
                    "rows": q.rows,
                    "quarantined_rows": q.quarantined_rows,
                    "quarantine_dataset": q.quarantine_dataset,
                    "quarantine_version": q.quarantine_version,
                },
            )


def _duration(rule: AlertRule, make: _Builder, facts: RunFacts) -> Iterable[AlertRecord]:
    threshold = make.threshold
    assert threshold is not None
    run = facts.run
    if not rule.nodes:
        if run.duration_seconds > threshold:
            slowest = sorted(facts.nodes, key=lambda n: -n.duration_seconds)[:3]
            yield make.alert(
                f"run {run.run_id} of pipeline {run.pipeline!r} took "
                f"{run.duration_seconds:,.1f} s, more than {threshold:g} s",
                observed=run.duration_seconds,
                evidence={
                    "status": run.status,
                    "started_at": run.started_at.isoformat(),
                    "ended_at": run.ended_at.isoformat(),
                    "slowest_nodes": {
                        _where(n.node, n.partition): n.duration_seconds for n in slowest
                    },
                },
            )
        return
    for n in facts.nodes:
        if n.node in rule.nodes and n.duration_seconds > threshold:
            yield make.alert(
                f"node {_where(n.node, n.partition)} took {n.duration_seconds:,.1f} s in run "
                f"{run.run_id}, more than {threshold:g} s",
                observed=n.duration_seconds,
                node=n.node,
                partition=n.partition,
                evidence=describe(n),
            )


def _failure(rule: AlertRule, make: _Builder, facts: RunFacts) -> Iterable[AlertRecord]:
    run = facts.run
    for record in facts.records:
        if record.status is not NodeStatus.FAILED or not _node_wanted(rule, record.node):
            continue
        error = _first_line(record.error)
        yield make.alert(
            f"node {_where(record.node, record.partition)} failed in run {run.run_id} of "
            f"pipeline {run.pipeline!r}: {error}",
            observed=float(record.attempts),
            node=record.node,
            partition=record.partition,
            evidence={
                "error": error,
                "attempts": record.attempts,
                "run_status": run.status,
                "failed_nodes": sorted(
                    {r.node for r in facts.records if r.status is NodeStatus.FAILED}
                ),
            },
        )


def _freshness(rule: AlertRule, make: _Builder, facts: RunFacts) -> Iterable[AlertRecord]:
    threshold = make.threshold
    assert threshold is not None
    for n in facts.nodes:
        if (
            n.freshness_seconds is None
            or n.newest_event_time is None
            or not _node_wanted(rule, n.node)
            or n.freshness_seconds <= threshold
        ):
            continue
        yield make.alert(
            f"the newest event in the output of node {_where(n.node, n.partition)} is "
            f"{n.freshness_seconds:,.0f} s old ({n.newest_event_time.isoformat()}), more than "
            f"{threshold:g} s",
            observed=n.freshness_seconds,
            node=n.node,
            partition=n.partition,
            evidence=describe(n) | {"newest_event_time": n.newest_event_time.isoformat()},
        )


def _new_data(rule: AlertRule, make: _Builder, facts: RunFacts) -> Iterable[AlertRecord]:
    threshold = make.threshold
    assert threshold is not None
    fresh = [
        v
        for v in facts.new_versions
        if (not rule.datasets or v.dataset in rule.datasets)
        and (not rule.nodes or v.node in rule.nodes)
    ]
    rows = sum(v.rows_written for v in fresh)
    if not fresh or rows < threshold:
        return
    listing = ", ".join(f"{v.dataset} v{v.version} ({v.rows_written:,} rows)" for v in fresh)
    yield make.alert(
        f"new data in run {facts.run.run_id}: {listing}",
        observed=float(rows),
        evidence={
            "datasets": [
                {
                    "dataset": v.dataset,
                    "version": v.version,
                    "node": v.node,
                    "partition": v.partition,
                    "rows_written": v.rows_written,
                    "total_rows": v.total_rows,
                    "content_hash": v.content_hash,
                    "created_at": v.created_at.isoformat(),
                }
                for v in fresh
            ]
        },
    )


_RUN_KINDS = {
    "quality": _quality,
    "quarantine_share": _quarantine_share,
    "duration": _duration,
    "failure": _failure,
    "freshness": _freshness,
    "new_data": _new_data,
}


def evaluate_drift(
    rules: Iterable[AlertRule],
    drift: DriftOutcome,
    *,
    dataset: str,
    reference_version: int | None = None,
    current_version: int | None = None,
    pipeline: str | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
) -> list[AlertRecord]:
    """The alerts the ``drift`` rules among ``rules`` fire on one drift result of ``dataset``."""
    at = now or datetime.now(UTC)
    out: list[AlertRecord] = []
    share = float(drift.share)
    columns = [str(c) for c in drift.drifted_columns]
    for rule in rules:
        if rule.kind != "drift" or (pipeline is not None and not _applies(rule, pipeline)):
            continue
        if rule.datasets and dataset not in rule.datasets:
            continue
        threshold = rule.effective_threshold
        assert threshold is not None
        if share <= threshold:
            continue
        evidence: dict[str, Any] = {
            "dataset": dataset,
            "reference_version": reference_version,
            "current_version": current_version,
            "drifted_columns": columns,
            "share": share,
        }
        details = getattr(drift, "details", None)
        if isinstance(details, Mapping) and details:
            evidence["details"] = dict(details)
        shown = ", ".join(columns[:10]) + (", ..." if len(columns) > 10 else "")
        versions = (
            f" (v{current_version} against reference v{reference_version})"
            if current_version is not None and reference_version is not None
            else ""
        )
        out.append(
            _Builder(rule, at, None).alert(
                f"{share:.0%} of the columns of dataset {dataset!r} drifted{versions}: "
                f"{shown or 'none named'}",
                observed=share,
                evidence=evidence,
                pipeline=pipeline,
                run_id=run_id,
            )
        )
    return out
