"""One batch run: plan, record the run, execute the tasks, close the run."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from headrace.core.fingerprint import key_hash
from headrace.core.graph import Graph
from headrace.core.records import NodeRunRecord, NodeStatus, RunStatus
from headrace.core.redaction import redact_mapping
from headrace.engines.batch.executor import Executor, LocalExecutor
from headrace.engines.batch.plan import Plan, Task, build_plan
from headrace.engines.batch.ports import DatasetWriter, RunLog, Validator
from headrace.engines.batch.task import TaskObserver, TaskRunner
from headrace.errors import RunFailedError

__all__ = ["BatchRun", "RunListener", "RunLogWithRuns", "RunResult", "new_run_id"]

log = logging.getLogger("headrace.run")


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus random bits, e.g. ``20261126T101500-3f9a1c``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


class RunLogWithRuns(RunLog, Protocol):
    """A :class:`RunLog` that also opens and closes runs."""

    def start_run(
        self,
        *,
        run_id: str,
        pipeline: str,
        started_at: datetime,
        params: Mapping[str, Any],
        config: Mapping[str, Any],
        code_hash: str,
    ) -> None:
        """Record a new running run."""
        ...

    def finish_run(
        self, run_id: str, *, status: RunStatus, ended_at: datetime, error: str | None = None
    ) -> None:
        """Close a run."""
        ...

    def close_abandoned_runs(
        self, host: str, alive: Callable[[int], bool], ended_at: datetime
    ) -> int:
        """Fail the running runs of ``host`` whose process is gone."""
        ...


@dataclass(frozen=True)
class RunResult:
    """What a run did. ``records`` follow the plan's order."""

    run_id: str
    pipeline: str
    status: RunStatus
    started_at: datetime
    ended_at: datetime
    records: tuple[NodeRunRecord, ...]
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """In-memory values of ephemeral nodes that have no consumers (handy in tests)."""

    @property
    def ok(self) -> bool:
        """True when every node succeeded or was a cache hit."""
        return self.status is RunStatus.SUCCEEDED

    @property
    def duration(self) -> float:
        """Seconds the run took."""
        return (self.ended_at - self.started_at).total_seconds()

    def record(self, node: str, partition: str | None = None) -> NodeRunRecord:
        """The record of one node (one partition of it)."""
        for record in self.records:
            if record.node == node and record.partition == partition:
                return record
        msg = f"run {self.run_id} has no record of node {node!r} partition {partition!r}"
        raise KeyError(msg)

    def statuses(self) -> dict[str, NodeStatus]:
        """Task id -> status."""
        return {
            (r.node if r.partition is None else f"{r.node}[{r.partition}]"): r.status
            for r in self.records
        }

    def raise_for_status(self) -> RunResult:
        """Raise :class:`RunFailedError` naming the failed nodes unless the run succeeded."""
        if self.ok:
            return self
        failed = [r for r in self.records if r.status is NodeStatus.FAILED]
        lines = [f"run {self.run_id} of pipeline {self.pipeline!r} failed:"]
        for record in failed:
            first = (record.error or "").splitlines()[0] if record.error else "unknown error"
            where = f"[{record.partition}]" if record.partition else ""
            lines.append(f"  node {record.node}{where}: {first}")
        lines.append(f"see `headrace runs show {self.run_id}` for details")
        raise RunFailedError(self.run_id, "\n".join(lines))


class RunListener(Protocol):
    """Told what a run does, as it happens: lineage emitters, metrics, alerting.

    Methods are called from the executor's worker threads (task events) and from the thread
    that runs :meth:`BatchRun.execute` (run events); they must be thread-safe and quick. An
    exception raised by a listener is logged and swallowed: a listener never fails a run.
    """

    def run_started(self, run_id: str, graph: Graph, plan: Plan, started_at: datetime) -> None:
        """The run was recorded and its tasks are about to start."""

    def task_started(self, task: Task) -> None:
        """A task is about to run (or to be checked against the cache)."""

    def task_finished(self, task: Task, record: NodeRunRecord) -> None:
        """A task ended, with its record."""

    def run_finished(self, result: RunResult) -> None:
        """The run ended (succeeded or failed) and was recorded."""


class _Fanout:
    """One :class:`TaskObserver` that tells the progress observer and every listener."""

    def __init__(self, observer: TaskObserver | None, listeners: Sequence[RunListener]) -> None:
        self.observer = observer
        self.listeners = tuple(listeners)

    def task_started(self, task: Task) -> None:
        if self.observer is not None:
            self.observer.task_started(task)
        for listener in self.listeners:
            _quietly(listener.task_started, task)

    def task_finished(self, task: Task, record: NodeRunRecord) -> None:
        if self.observer is not None:
            self.observer.task_finished(task, record)
        for listener in self.listeners:
            _quietly(listener.task_finished, task, record)


def _quietly(call: Callable[..., None], *args: Any) -> None:
    try:
        call(*args)
    except Exception:
        log.exception("run listener %r failed (the run goes on)", call)


@dataclass
class BatchRun:
    """Everything one batch run needs. Call :meth:`execute` once."""

    graph: Graph
    store: DatasetWriter
    log: RunLogWithRuns
    executor: Executor = field(default_factory=LocalExecutor)
    partitions: Sequence[str] = ()
    full_refresh: bool = False
    fail_fast: bool = True
    observer: TaskObserver | None = None
    run_id: str = field(default_factory=new_run_id)
    trigger: str = "api"
    validator: Validator | None = None
    """Runs nodes' contracts (the project passes headrace.quality's Polars backend)."""
    approve_breaking: frozenset[str] = frozenset()
    """Nodes whose contract may change in a breaking way in this run (``*``: any)."""
    base_dir: Path | None = None
    """Where relative source paths start (the project folder; default: the working one)."""
    listeners: Sequence[RunListener] = ()
    """Told about the run and each task as they happen (lineage, metrics, alerts)."""

    def plan(self) -> Plan:
        """The tasks this run will execute."""
        return build_plan(self.graph, partitions=self.partitions)

    def execute(self, plan: Plan | None = None) -> RunResult:
        """Run every task; node failures come back in the result (see ``raise_for_status``)."""
        plan = plan or self.plan()
        code_hashes = self.graph.code_hashes
        started = datetime.now(UTC)
        host = socket.gethostname()
        self.log.close_abandoned_runs(host, _process_alive, started)
        self.log.start_run(
            run_id=self.run_id,
            pipeline=self.graph.pipeline,
            started_at=started,
            params={
                "partitions": list(plan.partitions),
                "full_refresh": self.full_refresh,
                "fail_fast": self.fail_fast,
                "trigger": self.trigger,
                "executor": type(self.executor).__name__,
                "approve_breaking": sorted(self.approve_breaking),
                "host": host,
                "pid": os.getpid(),
            },
            config=redact_mapping(self.graph.config),
            code_hash=key_hash(*sorted(code_hashes.items())),
        )
        runner = TaskRunner(
            run_id=self.run_id,
            plan=plan,
            store=self.store,
            log=self.log,
            code_hash_of=code_hashes,
            full_refresh=self.full_refresh,
            observer=_Fanout(self.observer, self.listeners) if self.listeners else self.observer,
            validator=self.validator,
            approve_breaking=self.approve_breaking,
            base_dir=self.base_dir,
        )
        for listener in self.listeners:
            _quietly(listener.run_started, self.run_id, self.graph, plan, started)
        error: str | None = None
        try:
            records = self.executor.execute(plan, runner, runner.skipped, fail_fast=self.fail_fast)
        except BaseException as exc:
            runner.flush()
            error = f"interrupted: {type(exc).__name__}: {exc}"
            self.log.finish_run(
                self.run_id, status=RunStatus.FAILED, ended_at=datetime.now(UTC), error=error
            )
            raise
        runner.flush()
        ordered = tuple(records[task.id] for task in plan.tasks)
        failed = [r for r in ordered if r.status is NodeStatus.FAILED]
        status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        if failed:
            error = f"{len(failed)} node(s) failed: " + ", ".join(r.node for r in failed)
        ended = datetime.now(UTC)
        self.log.finish_run(self.run_id, status=status, ended_at=ended, error=error)
        leaves = {
            task.node.name: runner.outputs[task.id].value
            for task in plan.tasks
            if task.node.ephemeral
            and not self.graph.downstream[task.node.name]
            and task.id in runner.outputs
        }
        result = RunResult(
            run_id=self.run_id,
            pipeline=self.graph.pipeline,
            status=status,
            started_at=started,
            ended_at=ended,
            records=ordered,
            outputs=leaves,
        )
        for listener in self.listeners:
            _quietly(listener.run_finished, result)
        return result


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
