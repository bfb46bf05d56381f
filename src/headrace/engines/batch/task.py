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

import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from headrace.connectors.base import POSITION_COLUMNS, Batch
from headrace.core.context import NodeContext
from headrace.core.fingerprint import content_hash, key_hash
from headrace.core.node import Binding, BindingKind, Node, NodeKind
from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus, QualityRecord
from headrace.core.redaction import redact
from headrace.core.schema_change import classify, contract_schema
from headrace.core.source import SourceSpec
from headrace.engines.batch.ingest import Ingested, open_reading, read_new
from headrace.engines.batch.plan import Plan, Task
from headrace.engines.batch.ports import DatasetWriter, RunLog, Validator, Written
from headrace.errors import (
    NodeExecutionError,
    NodeTimeoutError,
    QualityGateError,
    SchemaChangeError,
)

__all__ = ["Output", "TaskObserver", "TaskRunner"]


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
            return self._run_ingest(task, started, cache_key, code_hash, reason)
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

    # -- ingest nodes ----------------------------------------------------------------------------

    def _run_ingest(
        self, task: Task, started: datetime, cache_key: str, code_hash: str, reason: str
    ) -> NodeRunRecord:
        """Read an ingest node's source, validate, and commit rows, quarantine and position.

        Incremental sources append what is new. Each read is step ``n`` of the writer
        ``headrace:<node>`` (a Delta application transaction): the quarantine is committed
        first, then the rows with the new position, both tagged with step ``n``. A crash
        between the two commits is found at the next run (the quarantine is one step ahead)
        and the same range is read again, without appending its quarantine a second time.
        """
        node = task.node
        assert node.source is not None
        name, quarantine = node.name, f"{node.name}{QUARANTINE_SUFFIX}"
        app = f"headrace:{name}"
        incremental = node.source.incremental
        since: dict[str, Any] | None = None
        until: dict[str, Any] | None = None
        step, quarantine_done = 1, False
        if incremental:
            step = (self.store.transaction_version(name, app) or 0) + 1
            if step > 1 and not self.full_refresh:
                since = _position(self.store.latest_commit_metadata(name))
            if self.store.transaction_version(quarantine, app) == step:
                until = _position(self.store.latest_commit_metadata(quarantine))
                quarantine_done = True
        spec = node.source.resolved(self.graph.config, node=name)
        try:
            attempted = self._attempt(
                task,
                {},
                {},
                call=lambda: (self._load(task, spec, since, until), None),
            )
        except _AttemptsFailed as failed:
            return self._record(
                task,
                NodeStatus.FAILED,
                started,
                attempts=failed.attempts,
                error=_describe(failed.error),
                cache_reason=reason,
                cache_key=cache_key,
            )
        got: _Loaded = attempted.value
        bad, quality = got.bad, got.quality
        append = incremental and not self.full_refresh
        extra = {"headrace.position": json.dumps(got.position)} if got.position is not None else {}
        txn = (app, step) if incremental else None
        keys = (cache_key, code_hash)
        nothing_new = since is not None and got.records == 0 and got.position == since
        if bad.height and not quarantine_done:
            quality["quarantine"] = self._commit(
                task, bad, keys, quarantine, append=append, transaction=txn, extra=extra
            )
        elif not append and not nothing_new and self.store.exists(quarantine):
            quality["quarantine"] = self._commit(
                task, bad, keys, quarantine, append=False, transaction=txn, extra=extra
            )
        # The gate is judged before the rows are committed: a failing read commits only its
        # quarantine (to look at), and the next run reads the same range again.
        error = self._record_ingest_quality(task, got)
        if error is not None:
            self._discard(got.valid)
            output = Output(key=cache_key)
        elif nothing_new and self.store.exists(name):
            self._discard(got.valid)
            output = self._current_output(name)
            reason += ", nothing new"
        else:
            output = self._commit(
                task, got.valid, keys, name, append=append, transaction=txn, extra=extra
            )
            reason += f", {got.records:,} record(s) from {got.parts} part(s)"
        if bad.height:
            reason += f", {bad.height:,} quarantined"
        self.outputs[task.id] = output
        return self._record(
            task,
            NodeStatus.FAILED if error else NodeStatus.SUCCEEDED,
            started,
            attempts=attempted.attempts,
            cache_reason=reason,
            cache_key=cache_key,
            rows_in=got.records,
            rows_out=got.valid_rows,
            dataset=output.dataset,
            version=output.version,
            error=error,
        )

    def _load(
        self,
        task: Task,
        spec: SourceSpec,
        since: dict[str, Any] | None,
        until: dict[str, Any] | None,
    ) -> _Loaded:
        """Read the source: validated in memory (with a contract) or staged batch by batch.

        Without a contract, rows are written as uncommitted files one batch at a time, so
        memory holds one batch, not the dataset.
        """
        node = task.node
        if node.contract is not None:
            got = read_new(
                node.name, spec, self.base_dir, contract=node.contract, since=since, until=until
            )
            valid, bad, quality = self._split_ingested(task, got)
            return _Loaded(
                records=got.records,
                parsed=got.data.height,
                valid=valid,
                valid_rows=valid.height,
                bad=bad,
                position=got.position,
                parts=got.parts,
                quality=quality,
            )
        reading = open_reading(
            node.name, spec, self.base_dir, contract=None, since=since, until=until
        )
        tally = _Tally()
        staged = self.store.stage(node.name, tally.frames(reading.batches))
        rejects = (
            pl.concat(tally.rejects, how="diagonal_relaxed") if tally.rejects else pl.DataFrame()
        )
        return _Loaded(
            records=tally.records,
            parsed=tally.parsed,
            valid=_StagedRows(staged, key_hash(*tally.hashes)),
            valid_rows=tally.parsed,
            bad=_as_quarantine(rejects) if rejects.height else pl.DataFrame(),
            position=reading.position,
            parts=reading.parts,
            quality={},
        )

    def _discard(self, valid: pl.DataFrame | _StagedRows) -> None:
        if isinstance(valid, _StagedRows):
            self.store.discard(valid.files)

    def _split_ingested(
        self, task: Task, got: Ingested
    ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
        """Valid rows (position columns dropped) and the quarantine: rejects + failed rows."""
        node = task.node
        data = got.data
        quality: dict[str, Any] = {}
        parts = [_as_quarantine(got.rejects)] if got.rejects.height else []
        if node.contract is not None:
            if data.width == 0:
                data = pl.DataFrame(
                    schema={f.name: f.polars_dtype or pl.String() for f in node.contract.fields}
                )
            approved = self._check_contract_change(node)
            assert self.validator is not None
            outcome = self.validator(
                data, node.contract, lookups=self._lookups(node), report=_report_of(task)
            )
            quality.update(outcome=outcome, approved=approved)
            data = outcome.valid
            if outcome.quarantined.height:
                parts.insert(0, outcome.quarantined)
        valid = data.drop(POSITION_COLUMNS, strict=False)
        bad = pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()
        return valid, bad, quality

    def _commit(
        self,
        task: Task,
        frame: pl.DataFrame | _StagedRows,
        keys: tuple[str, str],
        name: str,
        *,
        append: bool,
        transaction: tuple[str, int] | None,
        extra: Mapping[str, str],
    ) -> Output:
        """Commit ``frame`` to ``name`` (appended or replacing), recorded with its position.

        ``keys`` is (cache key, code hash) of the task.
        """
        cache_key, code_hash = keys
        if isinstance(frame, pl.DataFrame) and not append and transaction is None:
            return self._persist(task, frame, cache_key, code_hash, dataset=name)[0]
        previous = self.log.latest_write(name, None)
        digest = frame.digest if isinstance(frame, _StagedRows) else content_hash(frame)
        if append and previous is not None:
            digest = key_hash(previous.content_hash, digest)
        metadata = {**self._commit_metadata(task, cache_key, code_hash), **extra}
        written: Written
        if isinstance(frame, _StagedRows):
            written = self.store.commit_staged(
                frame.files, commit_metadata=metadata, append=append, transaction=transaction
            )
        else:
            written = self.store.write(
                name, frame, commit_metadata=metadata, append=append, transaction=transaction
            )
        position = extra.get("headrace.position")
        self.log.record_dataset_version(
            DatasetVersion(
                dataset=name,
                version=written.version,
                run_id=self.run_id,
                node=task.node.name,
                created_at=_now(),
                partition=None,
                rows_written=written.rows_written,
                total_rows=written.total_rows,
                bytes=written.bytes,
                content_hash=digest,
                schema=dict(written.schema),
                cache_key=cache_key,
                code_hash=code_hash,
                position=json.loads(position) if position else None,
            )
        )
        return Output(key=digest, rows=written.total_rows, dataset=name, version=written.version)

    def _current_output(self, name: str) -> Output:
        """The dataset as it stands (an incremental read found nothing new)."""
        newest = self.log.latest_write(name, None)
        current = self.store.current_version(name)
        if newest is None or newest.version != current:
            return Output(key=f"{name}@{current}", dataset=name, version=current)
        return Output(
            key=newest.content_hash, rows=newest.total_rows, dataset=name, version=newest.version
        )

    def _record_ingest_quality(self, task: Task, got: _Loaded) -> str | None:
        """Store the quality record of an ingest step; the gate's failure text, if it fails.

        Records that did not parse count as failing rows: the score is the contract's score
        times the share of records that parsed (just that share without a contract).
        """
        node = task.node
        quality = got.quality
        outcome = quality.get("outcome")
        unparsed = got.records - got.parsed
        if outcome is None and not unparsed:
            return None
        share = got.parsed / got.records if got.records else 1.0
        score = (outcome.score if outcome is not None else 1.0) * share
        failed_checks = list(outcome.failed_error_checks) if outcome is not None else []
        threshold = node.gate if node.gate is not None else 0.0
        problems = []
        if score < threshold:
            problems.append(f"quality score {score:.3f} is below the gate {threshold:g}")
        if failed_checks:
            problems.append(f"error checks failed: {', '.join(failed_checks)}")
        if unparsed:
            problems.append(f"{unparsed:,} record(s) did not parse")
        q_output: Output | None = quality.get("quarantine")
        checks = outcome.checks.to_dicts() if outcome is not None else []
        self.log.record_quality(
            QualityRecord(
                run_id=self.run_id,
                pipeline=self.graph.pipeline,
                node=node.name,
                partition=task.partition,
                contract=node.contract.name if node.contract is not None else "(parse)",
                created_at=_now(),
                rows=got.records,
                valid_rows=got.valid_rows,
                quarantined_rows=got.bad.height,
                score=score,
                gate=node.gate,
                passed=not (score < threshold or failed_checks),
                checks=checks,
                quarantine_dataset=q_output.dataset if q_output else None,
                quarantine_version=q_output.version if q_output else None,
                contract_schema=contract_schema(node.contract) if node.contract else {},
                approved_changes=quality.get("approved", []),
            )
        )
        if score < threshold or failed_checks:
            error = QualityGateError(
                f"output of node {node.name!r} fails its quality gate: {'; '.join(problems)} "
                f"(see `headrace quarantine {node.name}`)"
            )
            return _describe(error)
        return None

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
        if node.sql is not None:
            value: Any = _run_sql(node, inputs)
        else:
            assert node.fn is not None
            value = node.fn(**_arguments(node.bindings, inputs, config, context))
        if node.kind is NodeKind.SINK:
            return None, None
        if task.partition is not None and node.partitions is not None:
            value = _filtered(node, value, node.partitions.filter(task.partition))
        if node.ephemeral:
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
        self.log.record_dataset_version(
            DatasetVersion(
                dataset=name,
                version=written.version,
                run_id=self.run_id,
                node=node.name,
                created_at=_now(),
                partition=task.partition,
                rows_written=written.rows_written,
                total_rows=written.total_rows,
                bytes=written.bytes,
                content_hash=digest,
                schema=dict(written.schema),
                cache_key=cache_key,
                code_hash=code_hash,
            )
        )
        return Output(
            key=digest,
            value=frame,
            rows=frame.height,
            dataset=name,
            version=written.version,
        ), False

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
        )


@dataclass(frozen=True)
class _StagedRows:
    """Rows written as uncommitted files (see DatasetWriter.stage), with their content key."""

    files: Any
    digest: str


@dataclass
class _Loaded:
    """What an ingest step read: counts, valid rows (in memory or staged), the quarantine."""

    records: int
    parsed: int
    valid: pl.DataFrame | _StagedRows
    valid_rows: int
    bad: pl.DataFrame
    position: dict[str, Any] | None
    parts: int
    quality: dict[str, Any]


class _Tally:
    """Counts records, parsed rows and rejects of batches passing through; hashes the rows."""

    def __init__(self) -> None:
        self.records = 0
        self.parsed = 0
        self.rejects: list[pl.DataFrame] = []
        self.hashes: list[str] = []

    def frames(self, batches: Iterator[Batch]) -> Iterator[pl.DataFrame]:
        for batch in batches:
            self.records += batch.records
            self.parsed += batch.data.height
            if batch.rejects.height:
                self.rejects.append(batch.rejects)
            data = batch.data.drop(POSITION_COLUMNS, strict=False)
            if data.height:
                self.hashes.append(content_hash(data))
                yield data


def _as_quarantine(rejects: pl.DataFrame) -> pl.DataFrame:
    """Reader rejects in the quarantine's terms: rule ``parse.<reason>``, reason ``<reason>``."""
    return rejects.with_columns(
        pl.concat_list(pl.lit("parse") + "." + pl.col("_hr_reason")).alias("_hr_rules"),
        pl.concat_list(pl.col("_hr_reason")).alias("_hr_reasons"),
    ).drop("_hr_reason")


def _report_of(task: Task) -> tuple[str, float]:
    """The quality report's name (node, and partition when there is one) and gate."""
    name = task.node.name + (f"@{task.partition}" if task.partition else "")
    return name, task.node.gate if task.node.gate is not None else 0.0


def _position(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    text = metadata.get("headrace.position")
    return None if not text else dict(json.loads(text))


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
