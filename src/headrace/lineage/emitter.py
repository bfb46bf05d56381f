"""The OpenLineage emitter: a run listener that sends an event for every run and node.

What a run sends (see :mod:`headrace.lineage.events` for names and ids):

* the pipeline run: ``START`` when the run starts, ``COMPLETE`` or ``FAIL`` (with an
  ``errorMessage`` facet naming the failed nodes) when it ends;
* each task (a node, or one partition of it): ``START`` when it starts, then ``COMPLETE``,
  ``FAIL`` (``errorMessage`` with the traceback) or, for a task that never ran because an
  upstream failed or the run stopped at the first failure, ``START`` + ``ABORT``. Each
  carries a ``parent`` facet naming the pipeline run, and ``tags`` with headrace's status,
  cache decision, partition and attempts.

A **cache hit** is a ``COMPLETE`` whose output is the dataset version already stored (the
same ``version`` facet as the run that wrote it) with ``tags`` ``cache=hit``: no
``outputStatistics``, metrics or column lineage are sent again, since nothing was written.
A node that ran but produced the same content (no new version) looks the same, with
``cache=miss``.

The listener methods only put a small job on a bounded queue (they run on the executor's
threads); a background thread builds and sends the events, reading dataset versions and
quality results from the metadata store. :meth:`OpenLineageEmitter.run_finished` waits until
everything is sent (at most ``flush_timeout`` seconds), so the lineage of a finished run is
complete when ``Project.run`` returns. Nothing here can fail a run: errors are logged.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from headrace.core.graph import Graph
from headrace.core.node import Node, NodeKind, function_source
from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus, QualityRecord
from headrace.core.redaction import redact
from headrace.core.source import FileSource, SqlSource
from headrace.engines.batch.plan import Plan, Task
from headrace.engines.batch.run import RunResult
from headrace.lineage.columns.model import ColumnLineage, LineageUnavailable
from headrace.lineage.events import (
    dataset,
    facet,
    headrace_version,
    run_event,
    run_uuid,
    source_dataset,
)
from headrace.lineage.metrics import dataset_metrics
from headrace.lineage.settings import LineageSettings
from headrace.lineage.transports import FileTransport, HttpTransport, KafkaTransport, Transport

if TYPE_CHECKING:
    from headrace.storage.datasets import DatasetStore
    from headrace.storage.metadata import MetadataStore

__all__ = ["OpenLineageEmitter"]

log = logging.getLogger("headrace.lineage")

_STOP = object()
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PUT_TIMEOUT_S = 5.0


class OpenLineageEmitter:
    """A :class:`~headrace.engines.batch.run.RunListener` that emits OpenLineage events.

    One emitter serves one run (``Project`` makes a new one per run). Build it with
    :meth:`from_settings`, or directly with any :class:`Transport` (tests, custom sinks).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        namespace: str,
        metadata: MetadataStore,
        datasets: DatasetStore,
        column_metrics: bool = False,
        column_lineage: bool = True,
        flush_timeout: float = 30.0,
        queue_size: int = 10_000,
        base_dir: Path | None = None,
    ) -> None:
        self.transport = transport
        self.base_dir = base_dir or Path.cwd()
        """Where relative source paths start (the project folder)."""
        self.namespace = namespace
        self.metadata = metadata
        self.datasets = datasets
        self.column_metrics = column_metrics
        self.column_lineage = column_lineage
        self.flush_timeout = flush_timeout
        self.dropped = 0
        """Events not sent because the queue stayed full (the run was not held up longer)."""
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._worker: threading.Thread | None = None
        self._done = threading.Event()
        self._graph: Graph | None = None
        self._run_id = ""
        self._parent_uuid = ""
        self._started: set[str] = set()
        self._job_facets: dict[str, dict[str, Any]] = {}
        self._locations: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls,
        settings: LineageSettings,
        *,
        project_name: str,
        state_dir: Path,
        metadata: MetadataStore,
        datasets: DatasetStore,
        base_dir: Path | None = None,
    ) -> OpenLineageEmitter:
        """The emitter ``[lineage]`` describes (``transport`` must not be ``none``)."""
        transport: Transport
        if settings.transport == "file":
            path = Path(settings.url) if settings.url else state_dir / "lineage" / "events.jsonl"
            transport = FileTransport(path)
        elif settings.transport == "http":
            assert settings.url is not None  # checked by the settings
            transport = HttpTransport(
                settings.url,
                timeout=settings.timeout,
                retries=settings.retries,
                api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            )
        elif settings.transport == "kafka":
            assert settings.url is not None
            transport = KafkaTransport(settings.url, settings.topic, timeout=settings.timeout)
        else:
            msg = f"[lineage] transport = {settings.transport!r} emits nothing"
            raise ValueError(msg)
        return cls(
            transport,
            namespace=settings.namespace or f"headrace://{project_name}",
            metadata=metadata,
            datasets=datasets,
            column_metrics=settings.column_metrics,
            column_lineage=settings.column_lineage,
            flush_timeout=settings.flush_timeout,
            base_dir=base_dir,
        )

    # -- RunListener -----------------------------------------------------------------------

    def run_started(self, run_id: str, graph: Graph, plan: Plan, started_at: datetime) -> None:
        """Start the background sender and queue the pipeline run's START."""
        self._graph = graph
        self._run_id = run_id
        self._parent_uuid = run_uuid(self.namespace, run_id)
        self._done.clear()
        self._worker = threading.Thread(
            target=self._work, name=f"headrace-lineage-{run_id}", daemon=True
        )
        self._worker.start()
        self._put(self._run_start, started_at)

    def task_started(self, task: Task) -> None:
        """Queue a task's START."""
        self._put(self._task_start, task, datetime.now(UTC))

    def task_finished(self, task: Task, record: NodeRunRecord) -> None:
        """Queue a task's COMPLETE / FAIL / ABORT."""
        self._put(self._task_end, task, record)

    def run_finished(self, result: RunResult) -> None:
        """Queue the pipeline run's end, then wait until every event is sent."""
        self._put(self._run_end, result)
        self.flush()

    def flush(self) -> None:
        """Send what is queued (at most ``flush_timeout`` s), stop the sender, close."""
        worker = self._worker
        if worker is None:
            return
        self._put(_STOP)
        if not self._done.wait(self.flush_timeout):
            log.warning(
                "OpenLineage events of run %s still unsent after %.0fs; giving up on them",
                self._run_id,
                self.flush_timeout,
            )
        self._worker = None
        self.transport.close()
        if self.dropped:
            log.warning(
                "%d OpenLineage event(s) of run %s were dropped (queue full)",
                self.dropped,
                self._run_id,
            )

    # -- the background thread -------------------------------------------------------------

    def _put(self, job: Any, *args: Any) -> None:
        if self._worker is None:
            return
        try:
            self._queue.put((job, args), timeout=_PUT_TIMEOUT_S)
        except queue.Full:
            self.dropped += 1

    def _work(self) -> None:
        try:
            while True:
                job, args = self._queue.get()
                if job is _STOP:
                    return
                try:
                    job(*args)
                except Exception:
                    log.exception("building an OpenLineage event failed (the run goes on)")
        finally:
            self._done.set()

    def _send(self, event: dict[str, Any]) -> None:
        self.transport.emit(event)

    # -- the pipeline run ------------------------------------------------------------------

    @property
    def graph(self) -> Graph:
        """The graph of the run being emitted."""
        assert self._graph is not None
        return self._graph

    def _run_start(self, started_at: datetime) -> None:
        self._send(
            run_event(
                "START",
                started_at,
                run_id=self._parent_uuid,
                namespace=self.namespace,
                job=self.graph.pipeline,
                run_facets=self._engine_facets()
                | {
                    "nominalTime": facet(
                        "nominalTime", {"nominalStartTime": started_at.isoformat()}
                    )
                },
                job_facets=self._pipeline_job_facets(),
            )
        )

    def _run_end(self, result: RunResult) -> None:
        run_facets = self._engine_facets() | {
            "tags": facet(
                "tags",
                {"tags": [{"key": "status", "value": str(result.status), "source": "headrace"}]},
            )
        }
        if not result.ok:
            failed = [r for r in result.records if r.status is NodeStatus.FAILED]
            lines = [
                f"{r.node}{f'[{r.partition}]' if r.partition else ''}: "
                + ((r.error or "").splitlines() or ["failed"])[0]
                for r in failed
            ]
            run_facets["errorMessage"] = facet(
                "errorMessage",
                {
                    "message": f"{len(failed)} node(s) failed: " + "; ".join(lines),
                    "programmingLanguage": "python",
                },
            )
        self._send(
            run_event(
                "COMPLETE" if result.ok else "FAIL",
                result.ended_at,
                run_id=self._parent_uuid,
                namespace=self.namespace,
                job=self.graph.pipeline,
                run_facets=run_facets,
                job_facets=self._pipeline_job_facets(),
            )
        )

    def _pipeline_job_facets(self) -> dict[str, Any]:
        return {
            "jobType": facet(
                "jobType", {"processingType": "BATCH", "integration": "HEADRACE", "jobType": "DAG"}
            )
        }

    def _engine_facets(self) -> dict[str, Any]:
        return {
            "processing_engine": facet(
                "processing_engine",
                {"name": "headrace", "version": headrace_version()},
            )
        }

    # -- tasks -----------------------------------------------------------------------------

    def _task_start(self, task: Task, at: datetime) -> None:
        self._started.add(task.id)
        node = task.node
        self._send(
            run_event(
                "START",
                at,
                run_id=run_uuid(self.namespace, self._run_id, task.id),
                namespace=self.namespace,
                job=self._job_name(node),
                run_facets=self._task_run_facets(task),
                job_facets=self._node_job_facets(node),
                inputs=[dataset(ns, name) for ns, name in self._input_names(node)],
                outputs=[dataset(self.namespace, node.name)] if node.persisted else [],
            )
        )

    def _task_end(self, task: Task, record: NodeRunRecord) -> None:
        node = task.node
        status = record.status
        run_id = run_uuid(self.namespace, self._run_id, task.id)
        if task.id not in self._started:  # skipped: it never started, say so first
            self._task_start(task, record.started_at)
        run_facets = self._task_run_facets(task, record)
        if status is NodeStatus.FAILED:
            error = record.error or "failed"
            message, _, trace = error.partition("\n\n")
            body = {"message": message, "programmingLanguage": "python"}
            if trace:
                body["stackTrace"] = trace
            run_facets["errorMessage"] = facet("errorMessage", body)
        event_type = {
            NodeStatus.SUCCEEDED: "COMPLETE",
            NodeStatus.CACHED: "COMPLETE",
            NodeStatus.FAILED: "FAIL",
        }.get(status, "ABORT")
        inputs, namespaces = self._inputs(node, record)
        outputs = self._outputs(task, record, namespaces) if status.ok else []
        if not status.ok and node.persisted:
            outputs = [dataset(self.namespace, node.name)]
        self._send(
            run_event(
                event_type,
                record.ended_at,
                run_id=run_id,
                namespace=self.namespace,
                job=self._job_name(node),
                run_facets=run_facets,
                job_facets=self._node_job_facets(node),
                inputs=inputs,
                outputs=outputs,
            )
        )

    def _job_name(self, node: Node) -> str:
        return f"{self.graph.pipeline}.{node.name}"

    def _task_run_facets(self, task: Task, record: NodeRunRecord | None = None) -> dict[str, Any]:
        parent = {
            "run": {"runId": self._parent_uuid},
            "job": {"namespace": self.namespace, "name": self.graph.pipeline},
        }
        tags = []
        if task.partition is not None:
            tags.append(("partition", task.partition))
        if record is not None:
            tags.extend(
                [
                    ("status", str(record.status)),
                    ("cache", "hit" if record.cache_hit else "miss"),
                    ("attempts", str(record.attempts)),
                    ("code_hash", record.code_hash),
                ]
            )
            if record.cache_reason:
                tags.append(("cache_reason", record.cache_reason))
        facets = self._engine_facets() | {"parent": facet("parent", parent | {"root": parent})}
        if tags:
            facets["tags"] = facet(
                "tags",
                {"tags": [{"key": k, "value": v, "source": "headrace"} for k, v in tags]},
            )
        return facets

    def _node_job_facets(self, node: Node) -> dict[str, Any]:
        cached = self._job_facets.get(node.name)
        if cached is None:
            cached = self._job_facets[node.name] = self._build_job_facets(node)
        return cached

    def _build_job_facets(self, node: Node) -> dict[str, Any]:
        kind = (
            "ingest"
            if node.source is not None
            else "feature_view"
            if node.features is not None
            else "sql"
            if node.sql is not None
            else node.kind.value
        )
        facets: dict[str, Any] = {
            "jobType": facet(
                "jobType",
                {"processingType": "BATCH", "integration": "HEADRACE", "jobType": "TASK"},
            ),
            "tags": facet(
                "jobTags",
                {
                    "tags": [
                        {"key": "kind", "value": kind, "source": "headrace"},
                        {"key": "pipeline", "value": self.graph.pipeline, "source": "headrace"},
                        *(
                            {"key": k, "value": v, "source": "user"}
                            for k, v in sorted(node.tags.items())
                        ),
                    ]
                },
            ),
        }
        if node.description:
            facets["documentation"] = facet("documentation", {"description": node.description})
        if node.sql is not None:
            facets["sql"] = facet("sql", {"query": node.sql.strip(), "dialect": "duckdb"})
        elif isinstance(node.source, SqlSource) and node.source.query:
            facets["sql"] = facet("sql", {"query": node.source.query.strip()})
        elif node.features is not None:
            code = json.dumps(node.features.definition(), indent=2, sort_keys=True, default=str)
            facets["sourceCode"] = facet("sourceCode", {"language": "json", "sourceCode": code})
        elif node.fn is not None and node.source is None:
            python = function_source(node.fn)
            if python is not None:
                facets["sourceCode"] = facet(
                    "sourceCode", {"language": "python", "sourceCode": python}
                )
        return facets

    # -- datasets --------------------------------------------------------------------------

    def _input_names(self, node: Node) -> list[tuple[str, str]]:
        """(namespace, name) of the inputs a task reads, as known before it runs."""
        names = []
        for upstream in node.inputs:
            if self.graph.node(upstream).persisted:
                names.append((self.namespace, upstream))
        external = self._external_source(node)
        if external is not None:
            names.append(external)
        return names

    def _external_source(self, node: Node) -> tuple[str, str] | None:
        source = node.source
        if source is None:
            return None
        resolved = source.resolved(self.graph.config, node=node.name)
        if isinstance(resolved, FileSource):
            path = resolved.path
            if "://" not in path and not Path(path).is_absolute():
                path = str(self.base_dir / path)
            return source_dataset("files", path)
        if isinstance(resolved, SqlSource) and resolved.table:
            # ${VAR} parts come from the environment (only host, port and database are kept)
            dsn = _ENV_VAR.sub(lambda m: os.environ.get(m.group(1), ""), resolved.dsn)
            return source_dataset("sql", dsn, resolved.table)
        return None

    def _inputs(
        self, node: Node, record: NodeRunRecord
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The task's inputs with their versions; and dataset name -> namespace."""
        inputs: list[dict[str, Any]] = []
        namespaces: dict[str, str] = {}
        for upstream, version in record.inputs.items():
            if version is None:
                continue  # handed over in memory: not a dataset
            facets = self._dataset_facets(upstream, self._version(upstream, version))
            inputs.append(dataset(self.namespace, upstream, facets))
            namespaces[upstream] = self.namespace
        external = self._external_source(node)
        if external is not None:
            ns, name = external
            facets = {"dataSource": facet("dataSource", {"name": ns, "uri": _uri(ns, name)})}
            inputs.append(dataset(ns, name, facets))
            namespaces[name] = ns
        return inputs, namespaces

    def _version(self, name: str, version: int) -> DatasetVersion | None:
        try:
            return self.metadata.get_version(name, version)
        except Exception:
            log.debug("no record of %s@%s", name, version, exc_info=True)
            return None

    def _dataset_facets(self, name: str, version: DatasetVersion | None) -> dict[str, Any]:
        location = self._locations.get(name)
        if location is None:
            location = self._locations[name] = self.datasets.path(name).resolve().as_uri()
        facets: dict[str, Any] = {
            "dataSource": facet("dataSource", {"name": self.namespace, "uri": location}),
            "storage": facet("storage", {"storageLayer": "delta", "fileFormat": "parquet"}),
        }
        if version is not None:
            facets["version"] = facet("version", {"datasetVersion": str(version.version)})
            facets["schema"] = facet(
                "schema",
                {
                    "fields": [
                        {"name": column, "type": dtype, "ordinal_position": position}
                        for position, (column, dtype) in enumerate(version.schema.items(), 1)
                    ]
                },
            )
        return facets

    def _outputs(
        self, task: Task, record: NodeRunRecord, namespaces: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        node = task.node
        if record.output_dataset is None or record.output_version is None:
            return []
        name = record.output_dataset
        version = self._version(name, record.output_version)
        facets = self._dataset_facets(name, version)
        output_facets: dict[str, Any] = {}
        if node.description:
            facets["documentation"] = facet(
                "datasetDocumentation", {"description": node.description}
            )
        written = (
            version is not None
            and version.run_id == self._run_id
            and record.status is NodeStatus.SUCCEEDED
        )
        quality = self._quality(task) if record.status is NodeStatus.SUCCEEDED else None
        if quality is not None:
            facets["dataQualityAssertions"] = facet(
                "dataQualityAssertions", {"assertions": _assertions(quality)}
            )
        if written and version is not None:
            output_facets["outputStatistics"] = facet(
                "outputStatistics",
                {"rowCount": version.rows_written, "size": version.bytes},
            )
            metrics = self._timed(
                "metrics",
                lambda: dataset_metrics(
                    self.datasets,
                    name,
                    version.version,
                    rows=version.total_rows,
                    size=version.bytes,
                    full=self.column_metrics,
                ),
            )
            if metrics is not None:
                facets["dataQualityMetrics"] = facet("dataQualityMetrics", metrics)
            if self.column_lineage:
                lineage = self._column_lineage(task, record, version)
                if lineage:
                    names = {
                        **namespaces,
                        **dict.fromkeys(lineage.datasets() - namespaces.keys(), self.namespace),
                    }
                    facets["columnLineage"] = facet("columnLineage", lineage.to_facet_body(names))
        outputs = [dataset(self.namespace, name, facets, output_facets=output_facets)]
        if (
            quality is not None
            and quality.quarantine_dataset
            and quality.quarantine_version is not None
        ):
            q_version = self._version(quality.quarantine_dataset, quality.quarantine_version)
            q_facets = self._dataset_facets(quality.quarantine_dataset, q_version)
            q_output: dict[str, Any] = {}
            if q_version is not None and q_version.run_id == self._run_id:
                q_output["outputStatistics"] = facet(
                    "outputStatistics",
                    {"rowCount": q_version.rows_written, "size": q_version.bytes},
                )
            outputs.append(
                dataset(
                    self.namespace, quality.quarantine_dataset, q_facets, output_facets=q_output
                )
            )
        return outputs

    def _quality(self, task: Task) -> QualityRecord | None:
        if task.node.contract is None:
            return None
        try:
            records = self.metadata.quality(run_id=self._run_id, node=task.node.name)
        except Exception:
            log.debug("quality of %s not readable", task.id, exc_info=True)
            return None
        for quality in records:
            if quality.partition == task.partition:
                return quality
        return None

    def _timed(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            log.debug("OpenLineage %s not computed: %s", what, redact(str(exc)), exc_info=True)
            return None

    def _column_lineage(
        self, task: Task, record: NodeRunRecord, version: DatasetVersion
    ) -> ColumnLineage | None:
        from headrace.lineage.columns.nodes import (
            InputFrame,
            feature_view_lineage,
            ingest_lineage,
            python_lineage,
        )
        from headrace.lineage.columns.sql import sql_lineage

        node = task.node
        columns = list(version.schema)
        try:
            if node.features is not None:
                lineage = feature_view_lineage(node.features)
            elif node.source is not None:
                external = self._external_source(node)
                if external is None:
                    return None
                lineage = ingest_lineage(external[1], columns, typed=node.contract is not None)
            elif node.sql is not None:
                tables = {}
                for upstream, number in record.inputs.items():
                    stored = None if number is None else self._version(upstream, number)
                    if stored is not None:
                        tables[upstream] = tuple(stored.schema)
                lineage = sql_lineage(node.sql, tables)
            elif node.fn is not None and node.kind is NodeKind.TRANSFORM:
                schemas = self._read_inputs(record)
                lineage = python_lineage(
                    node,
                    {name: InputFrame(name, schema) for name, schema in schemas.items()},
                    config=self.graph.config,
                    run_id=self._run_id,
                    partition=task.partition,
                    output_columns=columns,
                )
            else:
                return None
        except LineageUnavailable as exc:
            log.debug("no column lineage for node %s: %s", node.name, exc)
            return None
        return lineage.restricted(columns)

    def _read_inputs(self, record: NodeRunRecord) -> dict[str, pl.Schema]:
        """The schema of each input version the task read (ephemeral inputs left out)."""
        return {
            upstream: self.datasets.scan(upstream, version).collect_schema()
            for upstream, version in record.inputs.items()
            if version is not None
        }


def _assertions(quality: QualityRecord) -> list[dict[str, Any]]:
    """Our contract checks as ``dataQualityAssertions``, plus the score against the gate."""
    out: list[dict[str, Any]] = []
    for check in quality.checks:
        columns = [c for c in str(check.get("columns") or "").split(",") if c]
        item: dict[str, Any] = {
            "assertion": str(check.get("kind", "")),
            "success": bool(check.get("passed")),
            "name": str(check.get("rule", "")),
        }
        if len(columns) == 1:
            item["column"] = columns[0]
        if check.get("severity"):
            item["severity"] = str(check["severity"])
        if check.get("description"):
            item["description"] = str(check["description"])
        if check.get("mostly") is not None:
            item["expected"] = f"pass rate >= {check['mostly']}"
        actual = check.get("observed")
        if actual is None and check.get("pass_rate") is not None:
            actual = f"pass rate {float(check['pass_rate']):.6g}"
        if actual is not None:
            item["actual"] = str(actual)
        params = {
            k: check[k]
            for k in ("level", "failed_rows", "rows", "columns")
            if check.get(k) not in (None, "")
        }
        if params:
            item["params"] = params
        out.append(item)
    gate = quality.gate
    out.append(
        {
            "assertion": "quality_score",
            "success": bool(quality.passed),
            "name": f"{quality.contract} quality gate",
            "description": "the share of rows and checks that passed (headrace quality score)",
            "expected": f">= {gate}" if gate is not None else "(no gate)",
            "actual": f"{quality.score:.6g}",
            "params": {
                "rows": quality.rows,
                "valid_rows": quality.valid_rows,
                "quarantined_rows": quality.quarantined_rows,
            },
        }
    )
    return out


def _uri(namespace: str, name: str) -> str:
    if namespace == "file":
        path = Path(name)
        return path.as_uri() if path.is_absolute() else f"file:{name}"
    return f"{namespace}/{name}"
