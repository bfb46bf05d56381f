"""Running one task: bind inputs, decide cache hit or miss, call, retry, persist, record.

Cache key of a task = hash(node code hash, the config values it reads, its partition, and a
key per input). An input's key is the content hash of the data the task reads (for a persisted
upstream) or the upstream's own cache key (for an ephemeral upstream, which is never stored).
Because keys follow content, a node that is recomputed with an identical result does not make
its downstream nodes run again, and it does not commit a new dataset version either.

A persisted task is a cache hit when its last successful run had the same key and its output
version is still the newest write of its partition. Sinks are hits on the key alone. Ephemeral
tasks always run; return a ``LazyFrame`` from them so their cost is paid only by consumers that
actually run.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from headrace.core.context import NodeContext
from headrace.core.fingerprint import content_hash, key_hash
from headrace.core.node import Binding, BindingKind, Node, NodeKind
from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus, QualityRecord
from headrace.core.redaction import redact
from headrace.core.schema_change import classify, contract_schema
from headrace.engines.batch.plan import Plan, Task
from headrace.engines.batch.ports import DatasetWriter, RunLog, Validator, Written
from headrace.errors import (
    NodeExecutionError,
    NodeTimeoutError,
    SchemaChangeError,
)

__all__ = ["Output", "TaskObserver", "TaskRunner", "as_frame", "evaluate_node"]


class TaskObserver(Protocol):
    """Told when tasks start and end (e.g. to draw progress). Called from worker threads."""

    def task_started(self, task: Task) -> None:
        """A task is about to run (or to be checked against the cache)."""

    def task_finished(self, task: Task, record: NodeRunRecord) -> None:
        """A task ended, with its record."""


@dataclass
class Output:
    """A finished task's output as its consumers see it."""

    key: str
    """Content hash (persisted) or cache key (ephemeral): what downstream cache keys use."""
    value: Any = None
    """The value in memory, or None when it must be read from the store (cache hits)."""
    rows: int | None = None
    dataset: str | None = None
    version: int | None = None


class _AttemptsFailed(Exception):
    """Every try of a node failed; carries the last error and how many tries were made."""

    def __init__(self, error: Exception, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


@dataclass
class _Attempted:
    value: Any
    frame: pl.DataFrame | None
    attempts: int


QUARANTINE_SUFFIX = "__quarantine"
"""A validated node's bad rows are stored as the dataset ``<node>__quarantine``."""

_BATCH = 200
"""Buffered node-run records are written at least every this many records."""


def _now() -> datetime:
    return datetime.now(UTC)


class TaskRunner:
    """Runs single tasks of one run. Thread-safe: an executor may call it from many threads."""

    def __init__(
        self,
        *,
        run_id: str,
        plan: Plan,
        store: DatasetWriter,
        log: RunLog,
        code_hash_of: Mapping[str, str],
        full_refresh: bool = False,
        observer: TaskObserver | None = None,
        validator: Validator | None = None,
        approve_breaking: frozenset[str] = frozenset(),
        base_dir: Path | None = None,
    ) -> None:
        self.run_id = run_id
        self.base_dir = base_dir or Path.cwd()
        self.validator = validator
        self.approve_breaking = approve_breaking
        self.plan = plan
        self.graph = plan.graph
        self.store = store
        self.log = log
        self.code_hash_of = code_hash_of
        self.full_refresh = full_refresh
        self.observer = observer
        self.outputs: dict[str, Output] = {}
        self._consumers = {tid: len(children) for tid, children in plan.downstream().items()}
        self._lock = threading.Lock()
        self._pending: list[NodeRunRecord] = []

    # -- executor entry points -----------------------------------------------------------------

    def __call__(self, task: Task) -> NodeRunRecord:
        """Run ``task`` and return its record; a node failure is a ``failed`` record."""
        if self.observer is not None:
            self.observer.task_started(task)
        started = _now()
        try:
            record = self._run(task, started)
        except Exception as exc:
            record = self._record(
                task, NodeStatus.FAILED, started, attempts=1, error=_describe(exc)
            )
        self._finish(task, record)
        return record

    def skipped(self, task: Task, status: NodeStatus) -> NodeRunRecord:
        """The record of a task that did not run (upstream failed, or run cancelled)."""
        now = _now()
        reason = "upstream failed" if status is NodeStatus.UPSTREAM_FAILED else "fail-fast stop"
        record = self._record(task, status, now, attempts=0, cache_reason=reason)
        self._finish(task, record)
        return record

    # -- internals -------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the buffered node-run records (the run calls this when it ends)."""
        with self._lock:
            pending, self._pending = self._pending, []
        self.log.record_node_runs(self.graph.pipeline, pending)

    def _finish(self, task: Task, record: NodeRunRecord) -> None:
        # Records of nodes that wrote something (a dataset version, a sink's effect) are the
        # cache's memory: they are written at once. The others are buffered and written in
        # batches, which keeps the per-node overhead low; a crash loses at most those.
        with self._lock:
            self._pending.append(record)
            urgent = (record.status is NodeStatus.SUCCEEDED and not task.node.ephemeral) or len(
                self._pending
            ) >= _BATCH
        if urgent:
            self.flush()
        if record.status.ok:
            self._release_inputs(task)
        if self.observer is not None:
            self.observer.task_finished(task, record)

    def _run(self, task: Task, started: datetime) -> NodeRunRecord:
        node = task.node
        code_hash = self.code_hash_of[node.name]
        inputs, input_keys, rows_in = self._resolve_inputs(task)
        config = self._config_for(node)
        cache_key = key_hash(
            code_hash,
            node.kind.value,
            config,
            task.partition,
            [f"{k}={v}" for k, v in sorted(input_keys.items())],
        )
        if node.ephemeral:
            reason = "ephemeral"
        elif not node.cache:
            reason = "source re-read" if node.kind is NodeKind.SOURCE else "cache off"
        else:
            hit, reason = self._cached(task, cache_key, code_hash)
            if hit is not None:
                self.outputs[task.id] = hit
                return self._record(
                    task,
                    NodeStatus.CACHED,
                    started,
                    attempts=0,
                    cache_hit=True,
                    cache_reason=reason,
                    cache_key=cache_key,
                    rows_in=rows_in,
                    rows_out=hit.rows,
                    dataset=hit.dataset,
                    version=hit.version,
                )
        if node.source is not None:
            from headrace.engines.batch.ingest_step import IngestStep  # it builds on this module

            return IngestStep(self).run(task, started, cache_key, code_hash, reason)
        if node.features is not None:
            from headrace.engines.batch.feature_step import FeatureStep  # it builds on this too

            return FeatureStep(self).run(task, started, cache_key, code_hash, reason)
        try:
            attempted = self._attempt(task, {k: load() for k, load in inputs.items()}, config)
        except _AttemptsFailed as failed:
            return self._record(
                task,
                NodeStatus.FAILED,
                started,
                attempts=failed.attempts,
                error=_describe(failed.error),
                cache_reason=reason,
                cache_key=cache_key,
                rows_in=rows_in,
            )
        if node.kind is NodeKind.SINK:
            self.outputs[task.id] = Output(key=cache_key)
            return self._record(
                task,
                NodeStatus.SUCCEEDED,
                started,
                attempts=attempted.attempts,
                cache_reason=reason,
                cache_key=cache_key,
                rows_in=rows_in,
            )
        if node.ephemeral:
            value = attempted.value
            rows = value.height if isinstance(value, pl.DataFrame) else None
            self.outputs[task.id] = Output(key=cache_key, value=value, rows=rows)
            return self._record(
                task,
                NodeStatus.SUCCEEDED,
                started,
                attempts=attempted.attempts,
                cache_reason=reason,
                cache_key=cache_key,
                rows_in=rows_in,
                rows_out=rows,
            )
        frame = attempted.frame
        assert frame is not None
        rows_read = frame.height
        if node.contract is not None:
            frame = self._validated(task, frame, cache_key, code_hash)
            quarantined = rows_read - frame.height
            if quarantined:
                reason += f", {quarantined:,} row(s) quarantined"
        output, unchanged = self._persist(task, frame, cache_key, code_hash)
        self.outputs[task.id] = output
        return self._record(
            task,
            NodeStatus.SUCCEEDED,
            started,
            attempts=attempted.attempts,
            cache_reason=reason + (", same output: no new version" if unchanged else ""),
            cache_key=cache_key,
            rows_in=rows_in,
            rows_out=frame.height,
            bytes_out=int(frame.estimated_size()),
            dataset=output.dataset,
            version=output.version,
        )

    def _lookups(self, node: Node) -> dict[str, pl.LazyFrame]:
        """The datasets the ``references`` checks of the node's contract name."""
        assert node.contract is not None
        lookups = {}
        for check in node.contract.all_checks():
            if check.kind == "references":
                name = check.params["dataset"]
                newest = self.log.latest_write(name, None)
                if newest is not None:
                    lookups[name] = self.store.scan(name, newest.version)
        return lookups

    def _commit_metadata(self, task: Task, cache_key: str, code_hash: str) -> dict[str, str]:
        return {
            "headrace.run_id": self.run_id,
            "headrace.pipeline": self.graph.pipeline,
            "headrace.node": task.node.name,
            "headrace.code_hash": code_hash,
            "headrace.cache_key": cache_key,
            "headrace.partition": task.partition or "",
        }

    def _config_for(self, node: Node) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for binding in node.bindings:
            if binding.kind is BindingKind.CONFIG:
                values[binding.parameter] = self.graph.config.get(binding.source, binding.default)
        return values

    def _resolve_inputs(
        self, task: Task
    ) -> tuple[dict[str, Callable[[], Any]], dict[str, str], int | None]:
        """Per input: a loader of its value (only called when the node runs), its key, rows."""
        values: dict[str, Callable[[], Any]] = {}
        keys: dict[str, str] = {}
        rows_total: int | None = None
        needed = set(task.upstream)
        for name in task.node.inputs:
            upstream_ids = [tid for tid in self.plan.tasks_by_node[name] if tid in needed]
            outputs = [self.outputs[tid] for tid in upstream_ids]
            upstream = self.graph.node(name)
            same_scheme = task.partition is not None and upstream.partitions == task.node.partitions
            where = (
                task.node.partitions.filter(task.partition)
                if same_scheme and task.node.partitions is not None and task.partition
                else None
            )
            if len(outputs) == 1:
                output = outputs[0]
                keys[name] = output.key
                values[name] = partial(self._materialise, output, where)
                rows = output.rows
            elif upstream.ephemeral:
                keys[name] = key_hash(*(o.key for o in outputs))
                values[name] = partial(_concat, [o.value for o in outputs])
                rows = None
            else:
                # Several partitions of a persisted upstream: read its newest recorded version.
                newest = self.log.latest_write(name, None)
                assert newest is not None
                keys[name] = f"{name}@{newest.version}:{newest.content_hash}"
                values[name] = partial(self.store.scan, name, newest.version, where=where)
                rows = newest.total_rows
            if rows is not None:
                rows_total = (rows_total or 0) + rows
        return values, keys, rows_total

    def _materialise(self, output: Output, where: pl.Expr | None) -> Any:
        if output.value is None and output.dataset is not None:
            return self.store.scan(output.dataset, output.version, where=where)
        value = output.value
        if isinstance(value, pl.DataFrame):
            value = value.lazy()
        if where is not None and isinstance(value, pl.LazyFrame):
            value = value.filter(where)
        return value

    def _cached(self, task: Task, cache_key: str, code_hash: str) -> tuple[Output | None, str]:
        if self.full_refresh:
            return None, "full refresh"
        node = task.node
        previous = self.log.last_successful_node_run(self.graph.pipeline, node.name, task.partition)
        if previous is None:
            return None, "first run"
        if previous.cache_key != cache_key:
            if previous.code_hash != code_hash:
                return None, "code changed"
            return None, "inputs/config changed"
        if node.kind is NodeKind.SINK:
            return Output(key=cache_key), "unchanged"
        newest = self.log.latest_write(node.name, task.partition)
        if newest is None or newest.version != previous.output_version:
            return None, "output overwritten"
        if not self.store.exists(node.name):
            return None, "output missing"
        output = Output(
            key=newest.content_hash,
            rows=newest.rows_written,
            dataset=node.name,
            version=newest.version,
        )
        return output, "unchanged"

    def _attempt(
        self,
        task: Task,
        inputs: dict[str, Any],
        config: dict[str, Any],
        call: Callable[[], tuple[Any, pl.DataFrame | None]] | None = None,
    ) -> _Attempted:
        node = task.node
        policy = node.retry
        attempts = policy.retries + 1
        for attempt in range(1, attempts + 1):
            wait = policy.wait_before(attempt)
            if wait > 0:
                time.sleep(wait)
            context = NodeContext(
                run_id=self.run_id,
                node=node.name,
                attempt=attempt,
                partition=task.partition,
                scheme=node.partitions,
                config=self.graph.config,
            )
            try:
                value, frame = _with_timeout(
                    node, call or partial(self._call, task, inputs, config, context)
                )
                return _Attempted(value, frame, attempt)
            except Exception as exc:
                if attempt == attempts:
                    raise _AttemptsFailed(exc, attempt) from exc
                context.logger.warning(
                    "node %s attempt %d/%d failed: %s", node.name, attempt, attempts, exc
                )
        msg = "unreachable"
        raise AssertionError(msg)  # pragma: no cover

    def _call(
        self, task: Task, inputs: dict[str, Any], config: dict[str, Any], context: NodeContext
    ) -> tuple[Any, pl.DataFrame | None]:
        node = task.node
        value = evaluate_node(node, inputs, config, context, task.partition)
        if node.kind is NodeKind.SINK or node.ephemeral:
            return value, None
        frame = _as_frame(node, value)
        return frame, frame

    def _persist(
        self,
        task: Task,
        frame: pl.DataFrame,
        cache_key: str,
        code_hash: str,
        dataset: str | None = None,
    ) -> tuple[Output, bool]:
        node = task.node
        name = dataset or node.name
        digest = content_hash(frame)
        previous = self.log.latest_write(name, task.partition)
        if (
            previous is not None
            and previous.content_hash == digest
            and previous.partition == task.partition
            and self.store.exists(name)
        ):
            return Output(
                key=digest,
                value=frame,
                rows=frame.height,
                dataset=name,
                version=previous.version,
            ), True
        partition = (
            (node.partitions, task.partition)
            if node.partitions is not None and task.partition is not None
            else None
        )
        written = self.store.write(
            name,
            frame,
            commit_metadata=self._commit_metadata(task, cache_key, code_hash),
            partition=partition,
        )
        self._record_version(task, name, written, digest, (cache_key, code_hash))
        return Output(
            key=digest,
            value=frame,
            rows=frame.height,
            dataset=name,
            version=written.version,
        ), False

    def _record_version(
        self,
        task: Task,
        name: str,
        written: Written,
        digest: str,
        keys: tuple[str, str],
        *,
        position: dict[str, Any] | None = None,
    ) -> None:
        """Record a committed version of ``name`` (``keys``: the task's cache key and code hash)."""
        self.log.record_dataset_version(
            DatasetVersion(
                dataset=name,
                version=written.version,
                run_id=self.run_id,
                node=task.node.name,
                created_at=_now(),
                partition=task.partition,
                rows_written=written.rows_written,
                total_rows=written.total_rows,
                bytes=written.bytes,
                content_hash=digest,
                schema=dict(written.schema),
                cache_key=keys[0],
                code_hash=keys[1],
                position=position,
            )
        )

    def _validated(
        self, task: Task, frame: pl.DataFrame, cache_key: str, code_hash: str
    ) -> pl.DataFrame:
        """Split ``frame`` by the node's contract: store the quarantine, record, gate."""
        node = task.node
        assert node.contract is not None
        if self.validator is None:
            msg = f"node {node.name!r} has a contract, but this run has no validator"
            raise NodeExecutionError(node.name, msg)
        approved = self._check_contract_change(node)
        outcome = self.validator(
            frame, node.contract, lookups=self._lookups(node), report=_report_of(task)
        )
        quarantine_name = f"{node.name}{QUARANTINE_SUFFIX}"
        quarantine: Output | None = None
        if outcome.quarantined.height or self.store.exists(quarantine_name):
            quarantine, _ = self._persist(
                task, outcome.quarantined, cache_key, code_hash, dataset=quarantine_name
            )
        passed = True
        error: Exception | None = None
        try:
            outcome.gate(
                node.gate if node.gate is not None else 0.0,
                what=f"output of node {node.name!r}",
            )
        except Exception as exc:  # the gate's QualityGateError, raised below after recording
            passed, error = False, exc
        self.log.record_quality(
            QualityRecord(
                run_id=self.run_id,
                pipeline=self.graph.pipeline,
                node=node.name,
                partition=task.partition,
                contract=node.contract.name,
                created_at=_now(),
                rows=frame.height,
                valid_rows=outcome.valid.height,
                quarantined_rows=outcome.quarantined.height,
                score=outcome.score,
                gate=node.gate,
                passed=passed,
                checks=outcome.checks.to_dicts(),
                quarantine_dataset=quarantine.dataset if quarantine else None,
                quarantine_version=quarantine.version if quarantine else None,
                contract_schema=contract_schema(node.contract),
                approved_changes=approved,
            )
        )
        if error is not None:
            raise error
        return outcome.valid

    def _check_contract_change(self, node: Node) -> list[str]:
        """Refuse an unapproved breaking change to the node's contract; list approved ones."""
        assert node.contract is not None
        previous = self.log.last_contract_schema(self.graph.pipeline, node.name)
        if previous is None:
            return []
        breaking = [c for c in classify(previous, contract_schema(node.contract)) if c.breaking]
        if not breaking:
            return []
        if node.name in self.approve_breaking or "*" in self.approve_breaking:
            return [str(change) for change in breaking]
        listing = "; ".join(str(change) for change in breaking)
        msg = (
            f"the contract of node {node.name!r} changed in a breaking way: {listing}. If this "
            f"is intended, run again with --approve-breaking {node.name} (recorded with the run)"
        )
        raise SchemaChangeError(msg)

    def _release_inputs(self, task: Task) -> None:
        with self._lock:
            for upstream in task.upstream:
                self._consumers[upstream] -= 1
                output = self.outputs.get(upstream)
                if self._consumers[upstream] == 0 and output is not None:
                    output.value = None  # persisted outputs can still be read from the store

    def _record(
        self,
        task: Task,
        status: NodeStatus,
        started: datetime,
        *,
        attempts: int,
        cache_hit: bool = False,
        cache_reason: str = "",
        cache_key: str = "",
        rows_in: int | None = None,
        rows_out: int | None = None,
        bytes_out: int | None = None,
        dataset: str | None = None,
        version: int | None = None,
        error: str | None = None,
    ) -> NodeRunRecord:
        return NodeRunRecord(
            run_id=self.run_id,
            node=task.node.name,
            partition=task.partition,
            status=status,
            started_at=started,
            ended_at=_now(),
            attempts=attempts,
            rows_in=rows_in,
            rows_out=rows_out,
            bytes_out=bytes_out,
            cache_hit=cache_hit,
            cache_reason=cache_reason,
            cache_key=cache_key,
            code_hash=self.code_hash_of[task.node.name],
            output_dataset=dataset,
            output_version=version,
            error=error,
            inputs=self._input_versions(task),
        )

    def _input_versions(self, task: Task) -> dict[str, int | None]:
        """Per upstream node, the version of its dataset this task read (None: in memory)."""
        versions: dict[str, int | None] = {}
        needed = set(task.upstream)
        for name in task.node.inputs:
            outputs = [
                self.outputs.get(tid) for tid in self.plan.tasks_by_node[name] if tid in needed
            ]
            if len(outputs) == 1:
                versions[name] = outputs[0].version if outputs[0] is not None else None
            elif self.graph.node(name).ephemeral:
                versions[name] = None
            else:  # several partitions: the task read the newest version (see _resolve_inputs)
                newest = self.log.latest_write(name, None)
                versions[name] = newest.version if newest is not None else None
        return versions


def evaluate_node(
    node: Node,
    inputs: dict[str, Any],
    config: dict[str, Any],
    context: NodeContext,
    partition: str | None = None,
) -> Any:
    """Call a node's function (or run its SQL) on ``inputs``; its output, partition-filtered.

    No caching, validation or storing: what ``headrace reproduce`` re-executes.
    """
    if node.sql is not None:
        value: Any = _run_sql(node, inputs)
    else:
        assert node.fn is not None
        value = node.fn(**_arguments(node.bindings, inputs, config, context))
    if node.kind is NodeKind.SINK:
        return None
    if partition is not None and node.partitions is not None:
        value = _filtered(node, value, node.partitions.filter(partition))
    return value


def as_frame(node: Node, value: Any) -> pl.DataFrame:
    """A node's output as a DataFrame (what is stored); a clear error for anything else."""
    return _as_frame(node, value)


def _report_of(task: Task) -> tuple[str, float]:
    """The quality report's name (node, and partition when there is one) and gate."""
    name = task.node.name + (f"@{task.partition}" if task.partition else "")
    return name, task.node.gate if task.node.gate is not None else 0.0


def _arguments(
    bindings: tuple[Binding, ...],
    inputs: dict[str, Any],
    config: dict[str, Any],
    context: NodeContext,
) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for binding in bindings:
        if binding.kind is BindingKind.CONTEXT:
            arguments[binding.parameter] = context
        elif binding.kind is BindingKind.CONFIG:
            arguments[binding.parameter] = config[binding.parameter]
        else:
            value = inputs[binding.source]
            if binding.wants_dataframe and isinstance(value, pl.LazyFrame):
                value = value.collect()
            arguments[binding.parameter] = value
    return arguments


def _run_sql(node: Node, inputs: dict[str, Any]) -> pl.DataFrame:
    import duckdb

    assert node.sql is not None
    connection = duckdb.connect()
    try:
        for name, value in inputs.items():
            connection.register(name, value)
        result: pl.DataFrame = connection.sql(node.sql).pl()
    except duckdb.Error as exc:
        msg = f"SQL of node {node.name!r} failed: {exc}"
        raise NodeExecutionError(node.name, msg) from exc
    finally:
        connection.close()
    return result


def _concat(values: list[Any]) -> pl.LazyFrame:
    return pl.concat([_lazy(value) for value in values], how="diagonal_relaxed")


def _lazy(value: Any) -> pl.LazyFrame:
    if isinstance(value, pl.LazyFrame):
        return value
    if isinstance(value, pl.DataFrame):
        return value.lazy()
    msg = f"expected a frame, got {type(value).__name__}"
    raise TypeError(msg)


def _filtered(node: Node, value: Any, where: pl.Expr) -> Any:
    if isinstance(value, pl.LazyFrame | pl.DataFrame):
        assert node.partitions is not None
        if node.partitions.column not in value.collect_schema().names():
            msg = (
                f"partitioned node {node.name!r} returned no column "
                f"{node.partitions.column!r}; its partitions are {node.partitions.describe()}"
            )
            raise NodeExecutionError(node.name, msg)
        return value.filter(where)
    return value


def _as_frame(node: Node, value: Any) -> pl.DataFrame:
    if isinstance(value, pl.LazyFrame):
        return value.collect()
    if isinstance(value, pl.DataFrame):
        return value
    if hasattr(value, "__arrow_c_stream__") or hasattr(value, "__arrow_c_array__"):
        frame: pl.DataFrame = pl.DataFrame(value)
        return frame
    msg = (
        f"node {node.name!r} returned {type(value).__name__}, but its output is stored as a "
        "dataset: return a polars DataFrame or LazyFrame, or declare it ephemeral=True to hand "
        "other values to its consumers in memory"
    )
    raise NodeExecutionError(node.name, msg)


def _with_timeout(
    node: Node, call: Callable[[], tuple[Any, pl.DataFrame | None]]
) -> tuple[Any, pl.DataFrame | None]:
    if node.timeout is None:
        return call()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"headrace-{node.name}", daemon=True)
    worker.start()
    worker.join(node.timeout)
    if worker.is_alive():
        msg = (
            f"node {node.name!r} timed out after {node.timeout:g}s; raise its timeout= or make "
            "it faster (the abandoned attempt's result is discarded)"
        )
        raise NodeTimeoutError(node.name, msg)
    if "error" in box:
        raise box["error"]
    result: tuple[Any, pl.DataFrame | None] = box["result"]
    return result


def _describe(exc: BaseException) -> str:
    summary = str(exc) if isinstance(exc, NodeExecutionError) else f"{type(exc).__name__}: {exc}"
    detail = "".join(traceback.format_exception(exc))
    return redact(f"{summary}\n\n{detail}")
