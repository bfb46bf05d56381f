"""``headrace stream run``: wire a pipeline's streamable part to a broker and the stores.

The job reads the topic of the pipeline's stream (``pipeline.stream(...)``) from the broker
in ``[stream] broker`` (the embedded log by default), keeps the online store current, and
appends, once per checkpoint and exactly once, to these offline datasets:

- ``<topic>__events``: the valid events (with their partition and offset);
- ``<view>__stream``: each feature view's final rows, as the batch engine computes them;
- ``<topic>__late``: events older than their partition's watermark, with the reason;
- ``<topic>__quarantine``: malformed events and events breaking a contract, with the reason.

Checkpoints live in the metadata database (``stream_checkpoints``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import polars as pl

from headrace.connectors.stream.base import StreamConsumer
from headrace.connectors.stream.log import LogConsumer
from headrace.core.contract import Contract, Level
from headrace.core.features import FeatureView
from headrace.core.pipeline import Pipeline
from headrace.core.stream import StreamSource
from headrace.engines.stream.planner import plan_stream
from headrace.engines.stream.runtime import JobStats, Outputs, StreamJob, StreamOptions
from headrace.errors import StreamError
from headrace.project.online import newest_rows, write_newest
from headrace.project.project import Project
from headrace.project.streams import open_topic
from headrace.quality.validation import validate
from headrace.storage.checkpoints import CheckpointStore
from headrace.storage.online.base import OnlineStore

__all__ = ["build_job", "job_outputs", "run_stream"]


def _row_contract(contract: Contract) -> Contract:
    """The contract's row-level checks only (dataset checks need the whole dataset)."""
    fields = [
        replace(f, unique=False, checks=[c for c in f.checks if c.level is Level.ROW])
        for f in contract.fields
    ]
    checks = [c for c in contract.checks if c.level is Level.ROW]
    return replace(contract, fields=fields, checks=checks, primary_key=())


class _Validator:
    def __init__(self) -> None:
        self._contracts: dict[int, Contract] = {}

    def __call__(self, data: pl.DataFrame, contract: Contract) -> tuple[pl.DataFrame, pl.DataFrame]:
        rows = self._contracts.setdefault(id(contract), _row_contract(contract))
        result = validate(data, rows)
        return result.valid, result.quarantined


class _Online:
    """Final feature rows to the online store, as the view's registered version."""

    def __init__(self, store: OnlineStore, versions: Mapping[str, int]) -> None:
        self.store = store
        self.versions = versions

    def write(self, view: FeatureView, rows: pl.DataFrame) -> None:
        kinds = tuple(_kind(rows.schema[f]) for f in view.feature_names)
        latest = newest_rows(view, rows)
        write_newest(view, self.versions[view.name], latest, self.store, kinds, chunk_rows=50_000)


class _Offline:
    def __init__(self, project: Project) -> None:
        self.store = project.datasets

    def committed(self, dataset: str, writer: str) -> int | None:
        return self.store.transaction_version(dataset, writer)

    def append(self, dataset: str, frame: pl.DataFrame, writers: Mapping[str, int]) -> None:
        self.store.write(
            dataset,
            frame,
            commit_metadata={"headrace.stream": "append"},
            append=True,
            transactions=list(writers.items()),
            compression="lz4",  # every second, on the latency path
        )


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return "float"
    if dtype.is_integer():
        return "int"
    if dtype == pl.Boolean:
        return "bool"
    return "str"


def stream_of(pipeline: Pipeline, node: str | None) -> StreamSource:
    """The stream of ``pipeline`` fed to ``node`` (None: its only one)."""
    streams = pipeline.streams
    if not streams:
        msg = (
            f"pipeline {pipeline.name!r} declares no stream; add one, e.g. "
            "pipeline.stream('<source node>', event_time='<column>', disorder='5s')"
        )
        raise StreamError(msg)
    if node is None:
        if len(streams) > 1:
            msg = (
                f"pipeline {pipeline.name!r} has several streams ({', '.join(streams)}); "
                "pick one with --source"
            )
            raise StreamError(msg)
        return next(iter(streams.values()))
    if node not in streams:
        known = ", ".join(streams)
        msg = f"pipeline {pipeline.name!r} has no stream on node {node!r} (it has: {known})"
        raise StreamError(msg)
    return streams[node]


def job_name(pipeline: str, stream: StreamSource) -> str:
    """The name a job's checkpoints are kept under: ``<pipeline>/<topic>``."""
    return f"{pipeline}/{stream.topic}"


def job_outputs(stream: StreamSource, views: Sequence[FeatureView]) -> Outputs:
    """The offline datasets a job over ``stream`` computing ``views`` appends to."""
    topic = stream.topic.replace(".", "_").replace("-", "_")
    return Outputs(
        events=f"{topic}__events",
        late=f"{topic}__late",
        quarantine=f"{topic}__quarantine",
        views={v.name: f"{v.name}__stream" for v in views},
    )


def _consumer(project: Project, stream: StreamSource, job: StreamJob) -> StreamConsumer:
    broker = project.settings.stream.broker
    if broker == "log":
        return LogConsumer(open_topic(project, stream.topic))
    from headrace.connectors.stream.factory import open_consumer

    if not stream.schema:
        msg = (
            f"stream {stream.topic!r} on broker {broker.split('://')[0]}: declare the event "
            "schema (pipeline.stream(..., schema={...})) so messages can be decoded"
        )
        raise StreamError(msg)
    return open_consumer(
        broker,
        stream.topic,
        schema=stream.schema,
        group=f"headrace-{project.settings.project.name}-{stream.topic}",
        rebalance=job,
        options=project.settings.stream.options,
    )


def build_job(
    project: Project,
    pipeline: Pipeline | str | None = None,
    *,
    source: str | None = None,
    views: tuple[str, ...] = (),
    options: StreamOptions | None = None,
    on_batch: Callable[[JobStats], None] | None = None,
) -> StreamJob:
    """A ready-to-run streaming job for ``pipeline``'s stream (see the module docs)."""
    chosen = pipeline if isinstance(pipeline, Pipeline) else project.pipeline(pipeline)
    graph = project.graph(chosen)
    stream = stream_of(chosen, source)
    schema = dict(stream.schema) or _log_schema(project, stream)
    plan = plan_stream(graph, stream, schema, views=views)
    features = project.features
    features.register(chosen)
    versions = {v.name: features.registry.register_view(v).version for v in plan.views}
    settings = project.settings.stream
    return StreamJob(
        job_name(chosen.name, stream),
        plan,
        lambda job: _consumer(project, stream, job),
        validator=_Validator(),
        online=_Online(features.online_store, versions) if plan.views else None,
        offline=_Offline(project),
        checkpoints=CheckpointStore(project.metadata),
        outputs=job_outputs(plan.stream, plan.views),
        options=options
        or StreamOptions(
            checkpoint_interval=settings.checkpoint_interval,
            max_batch=settings.max_batch,
            idle_timeout=settings.idle_timeout,
        ),
        on_batch=on_batch,
    )


def _log_schema(project: Project, stream: StreamSource) -> dict[str, pl.DataType]:
    log = open_topic(project, stream.topic)
    data = log.read(0, log.start_offset(0), 0).data
    schema = {c: t for c, t in data.schema.items() if not c.startswith("_log_")}
    if not schema:
        msg = (
            f"topic {stream.topic!r} is empty and its stream declares no schema: produce "
            "events first (headrace stream produce) or declare pipeline.stream(..., schema=...)"
        )
        raise StreamError(msg)
    return schema


def run_stream(
    project: Project,
    pipeline: Pipeline | str | None = None,
    *,
    source: str | None = None,
    views: tuple[str, ...] = (),
    options: StreamOptions | None = None,
    on_batch: Callable[[JobStats], None] | None = None,
) -> JobStats:
    """Build and run the job; close the consumer afterwards."""
    job = build_job(
        project, pipeline, source=source, views=views, options=options, on_batch=on_batch
    )
    try:
        return job.run()
    finally:
        job.consumer.close()
