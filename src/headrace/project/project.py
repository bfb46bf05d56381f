"""A headrace project: a folder with ``headrace.toml``, pipeline modules and a state folder.

Example:
    >>> import tempfile, polars as pl, headrace as hr
    >>> pipeline = hr.Pipeline("hello")
    >>> @pipeline.source
    ... def greetings() -> pl.DataFrame:
    ...     return pl.DataFrame({"word": ["hello", "world"]})
    >>> with tempfile.TemporaryDirectory() as folder, hr.Project.create(folder) as project:
    ...     result = project.run(pipeline)
    ...     print(result.status.value, project.read("greetings").height)
    succeeded 2

"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

from headrace.core.contract_yaml import contract_from_yaml
from headrace.core.graph import Graph
from headrace.core.lineage import LineageGraph
from headrace.core.pipeline import Pipeline
from headrace.core.records import DatasetVersion, QualityRecord, RunRecord
from headrace.core.redaction import redact
from headrace.core.schema_change import SchemaChange, classify, dataset_schema
from headrace.core.source import source_from_mapping
from headrace.engines.batch.executor import Executor, LocalExecutor
from headrace.engines.batch.run import BatchRun, RunListener, RunResult, new_run_id
from headrace.engines.batch.task import TaskObserver
from headrace.engines.stream.runtime import JobStats, StreamOptions
from headrace.errors import (
    ConfigError,
    DatasetNotFoundError,
    FeatureDefinitionError,
    PipelineError,
    ProjectNotFoundError,
    UnknownNodeError,
)
from headrace.monitor import AlertCallback, AlertCallbacks, AlertRecord, Monitor, NodeMetrics
from headrace.project.drift import DriftCheck, DriftListener, run_drift
from headrace.project.features import FeatureStore
from headrace.project.reproduce import Reproduction, reproduce
from headrace.project.retention import VacuumPlan, vacuum
from headrace.project.settings import SETTINGS_FILE, Settings, load_settings
from headrace.quality.report import ReportingValidator
from headrace.quality.validation import DEFAULT_GATE
from headrace.storage.datasets import DatasetStore, VacuumResult
from headrace.storage.lineage import LineageIndex
from headrace.storage.metadata import MetadataStore

__all__ = ["Project"]


class Project:
    """Settings, pipelines and state of one project folder."""

    def __init__(self, root: Path | str, settings: Settings | None = None) -> None:
        self.root = Path(root).resolve()
        self.settings = settings if settings is not None else load_settings(self.root)

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r})"

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str | None = None) -> Project:
        """The project whose ``headrace.toml`` is in ``path`` (default: here) or above it."""
        start = Path(path or Path.cwd()).resolve()
        for folder in (start, *start.parents):
            if (folder / SETTINGS_FILE).is_file():
                return cls(folder)
        msg = (
            f"no {SETTINGS_FILE} in {start} or any folder above it; run `headrace init` to "
            "create a project, or pass --project DIR"
        )
        raise ProjectNotFoundError(msg)

    @classmethod
    def create(cls, path: Path | str, *, name: str | None = None) -> Project:
        """A project in ``path`` (created if missing) with default settings.

        Writes a minimal ``headrace.toml`` when there is none; for programmatic use, tests and
        notebooks, where pipelines are passed to :meth:`run` directly.
        """
        root = Path(path).resolve()
        root.mkdir(parents=True, exist_ok=True)
        settings_file = root / SETTINGS_FILE
        if not settings_file.exists():
            settings_file.write_text(
                f'[project]\nname = "{name or root.name}"\npipelines = []\n', encoding="utf-8"
            )
        return cls(root)

    # -- state -------------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        """The state folder (``.headrace`` unless configured)."""
        root = self.settings.storage.root
        return root if root.is_absolute() else self.root / root

    @property
    def metadata_url(self) -> str:
        """The metadata database URL (SQLite in the state folder unless configured)."""
        return self.settings.metadata.url or f"sqlite:///{self.state_dir / 'metadata.db'}"

    @cached_property
    def metadata(self) -> MetadataStore:
        """The metadata store (opened and migrated on first use)."""
        return MetadataStore(self.metadata_url)

    @cached_property
    def datasets(self) -> DatasetStore:
        """The versioned dataset store."""
        return DatasetStore(self.state_dir / "data")

    @cached_property
    def features(self) -> FeatureStore:
        """The feature store: training sets, materialisation, online lookups, model bindings."""
        return FeatureStore(self)

    def close(self) -> None:
        """Release database connections."""
        if "features" in self.__dict__:
            self.features.close()
            del self.__dict__["features"]
        if "metadata" in self.__dict__:
            self.metadata.close()
            del self.__dict__["metadata"]

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pipelines ---------------------------------------------------------------------------

    @cached_property
    def pipelines(self) -> dict[str, Pipeline]:
        """The pipelines defined in the modules listed under ``[project] pipelines``."""
        found: dict[str, Pipeline] = {}
        for entry in self.settings.project.pipelines:
            module = _load_module(self.root, entry)
            for value in vars(module).values():
                if isinstance(value, Pipeline):
                    if value.name in found and found[value.name] is not value:
                        msg = f"two pipelines are named {value.name!r}; rename one"
                        raise PipelineError(msg)
                    found[value.name] = value
        self._add_declared_sources(found)
        return found

    def _add_declared_sources(self, pipelines: dict[str, Pipeline]) -> None:
        """Add the ``[sources.NAME]`` of headrace.toml as ingest nodes of their pipeline."""
        for name, values in self.settings.sources.items():
            where = f"[sources.{name}] in {self.root / SETTINGS_FILE}"
            target = values.get("pipeline")
            if target is None and len(pipelines) == 1:
                target = next(iter(pipelines))
            if target not in pipelines:
                known = ", ".join(sorted(pipelines)) or "none"
                msg = f"{where}: set pipeline = one of {known}"
                raise ConfigError(msg)
            pipeline = pipelines[str(target)]
            if name in pipeline.nodes:
                if pipeline.nodes[name].source is not None:
                    continue  # added by an earlier load of the same settings
                msg = f"{where}: pipeline {target!r} already defines a node {name!r}"
                raise ConfigError(msg)
            contract = None
            if values.get("contract"):
                path = self.root / str(values["contract"])
                if not path.exists():
                    msg = f"{where}: contract file {path} does not exist"
                    raise ConfigError(msg)
                contract = contract_from_yaml(path.read_text(encoding="utf-8"), source=str(path))
            pipeline.ingest(
                name,
                source_from_mapping(name, values),
                contract=contract,
                gate=values.get("gate", DEFAULT_GATE),
                description=str(values.get("description", "")),
            )

    def pipeline(self, name: str | None = None) -> Pipeline:
        """A pipeline by name; without a name, the only one."""
        pipelines = self.pipelines
        if name is not None:
            if name not in pipelines:
                known = ", ".join(sorted(pipelines)) or "none"
                msg = f"project {self.root} has no pipeline {name!r} (it has: {known})"
                raise UnknownNodeError(msg)
            return pipelines[name]
        if len(pipelines) == 1:
            return next(iter(pipelines.values()))
        if not pipelines:
            msg = (
                f"project {self.root} defines no pipeline: list the modules that do under "
                f"[project] pipelines in {SETTINGS_FILE}"
            )
            raise ConfigError(msg)
        msg = f"project has several pipelines ({', '.join(sorted(pipelines))}): name one"
        raise ConfigError(msg)

    def graph(
        self, pipeline: Pipeline | str | None = None, config: Mapping[str, Any] | None = None
    ) -> Graph:
        """The validated graph of a pipeline with the project's config (plus ``config``)."""
        chosen = pipeline if isinstance(pipeline, Pipeline) else self.pipeline(pipeline)
        return chosen.validate({**self.settings.config, **(config or {})})

    # -- streaming ---------------------------------------------------------------------------

    def produce(self, topic: str, events: pl.DataFrame, *, key: str | None = None) -> int:
        """Append ``events`` to ``topic`` (of the ``[stream] broker``), routed by ``key``."""
        from headrace.project.streams import produce

        return produce(self, topic, events, key=key)

    def run_stream(
        self,
        pipeline: Pipeline | str | None = None,
        *,
        until_end: bool = False,
        seconds: float | None = None,
        group: bool = False,
        views: Sequence[str] = (),
    ) -> JobStats:
        """Run the pipeline's streaming job (see :mod:`headrace.project.stream_job`).

        ``until_end`` stops (flushing every window) when the topic has nothing new;
        ``seconds`` stops after that long; without either it runs until interrupted.
        """
        from headrace.project.stream_job import run_stream

        stream = self.settings.stream
        options = StreamOptions(
            checkpoint_interval=stream.checkpoint_interval,
            max_batch=stream.max_batch,
            until_end=until_end,
            max_seconds=seconds,
            group=group,
        )
        return run_stream(self, pipeline, views=tuple(views), options=options)

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        pipeline: Pipeline | str | None = None,
        *,
        partitions: Sequence[str] = (),
        full_refresh: bool = False,
        fail_fast: bool | None = None,
        config: Mapping[str, Any] | None = None,
        executor: Executor | None = None,
        observer: TaskObserver | None = None,
        trigger: str = "api",
        approve_breaking: Sequence[str] = (),
    ) -> RunResult:
        """Run a pipeline. Node failures are in the result (see ``RunResult.raise_for_status``)."""
        return self.prepare_run(
            pipeline,
            partitions=partitions,
            full_refresh=full_refresh,
            fail_fast=fail_fast,
            config=config,
            executor=executor,
            observer=observer,
            trigger=trigger,
            approve_breaking=approve_breaking,
        ).execute()

    def prepare_run(
        self,
        pipeline: Pipeline | str | None = None,
        *,
        partitions: Sequence[str] = (),
        full_refresh: bool = False,
        fail_fast: bool | None = None,
        config: Mapping[str, Any] | None = None,
        executor: Executor | None = None,
        observer: TaskObserver | None = None,
        trigger: str = "api",
        approve_breaking: Sequence[str] = (),
    ) -> BatchRun:
        """A validated, planned run ready to :meth:`~BatchRun.execute` (plan errors raise here)."""
        chosen = pipeline if isinstance(pipeline, Pipeline) else self.pipeline(pipeline)
        graph = self.graph(chosen, config)
        self._check_feature_sources(graph)
        if chosen.feature_views:
            self.features.register(chosen)
        run_id = new_run_id()
        run = BatchRun(
            graph=graph,
            store=self.datasets,
            log=self.metadata,
            executor=executor or self._executor(),
            partitions=tuple(partitions),
            full_refresh=full_refresh,
            fail_fast=self.settings.executor.fail_fast if fail_fast is None else fail_fast,
            observer=observer,
            trigger=trigger,
            validator=ReportingValidator(
                self.reports_dir(run_id) if self.settings.quality.reports else None
            ),
            approve_breaking=frozenset(approve_breaking),
            base_dir=self.root,
            run_id=run_id,
            listeners=self.run_listeners(),
        )
        run.plan()  # plan-time errors (partitions) surface before anything runs
        return run

    def run_listeners(self) -> list[RunListener]:
        """What watches every run of this project: lineage emission, metrics, alerts.

        Each comes from its settings section ([lineage], [metrics], [alerts]).
        """
        listeners: list[RunListener] = [DriftListener(self)]
        if self.settings.lineage.transport != "none":
            from headrace.lineage.emitter import OpenLineageEmitter

            listeners.append(
                OpenLineageEmitter.from_settings(
                    self.settings.lineage,
                    project_name=self.settings.project.name,
                    state_dir=self.state_dir,
                    metadata=self.metadata,
                    datasets=self.datasets,
                    base_dir=self.root,
                )
            )
        listeners.append(self.monitor.listener())
        return listeners

    def _check_feature_sources(self, graph: Graph) -> None:
        """Plan time: a feature view's columns must exist in its source's stored schema."""
        for node in graph.nodes:
            view = node.features
            if view is None:
                continue
            stored = self.metadata.latest_version(view.source)
            if stored is None:
                continue  # computed in this run: checked when the view runs
            missing = [c for c in view.source_columns if c not in stored.schema]
            if missing:
                what = "event-time column" if view.event_time in missing else "column(s)"
                msg = (
                    f"feature view {view.name!r}: its source dataset {view.source!r} has no "
                    f"{what} {', '.join(repr(m) for m in missing)} (it has: "
                    f"{', '.join(stored.schema)}); fix the view's event_time / keys / columns"
                )
                raise FeatureDefinitionError(msg)

    def _executor(self) -> Executor:
        kind = self.settings.executor.kind
        if kind != "local":
            msg = f'[executor] kind = {kind!r} is not available; use "local"'
            raise ConfigError(msg)
        return LocalExecutor(self.settings.executor.max_workers)

    # -- inspecting --------------------------------------------------------------------------

    def runs(self, *, pipeline: str | None = None, limit: int = 20) -> list[RunRecord]:
        """Newest runs first."""
        return self.metadata.list_runs(pipeline=pipeline, limit=limit)

    def get_run(self, run_id: str) -> RunRecord:
        """One run with its node runs (a unique prefix of the id is enough)."""
        record = self.metadata.get_run(run_id)
        if record is None:
            msg = f"no run {run_id!r} here (or the prefix is ambiguous); see `headrace runs`"
            raise UnknownNodeError(msg)
        return record

    def list_datasets(self) -> list[DatasetVersion]:
        """The newest version of every dataset."""
        return self.metadata.list_datasets()

    def dataset_history(self, name: str) -> list[DatasetVersion]:
        """Every version of a dataset, newest first."""
        history = self.metadata.dataset_history(name)
        if not history:
            raise DatasetNotFoundError(_no_dataset(name, self.list_datasets()))
        return history

    def dataset_version(self, name: str, version: int | None = None) -> DatasetVersion:
        """The record of one version (default: the newest)."""
        history = self.dataset_history(name)
        if version is None:
            return history[0]
        for entry in history:
            if entry.version == version:
                return entry
        known = ", ".join(str(v.version) for v in history)
        msg = f"dataset {name!r} has no version {version} (it has: {known})"
        raise DatasetNotFoundError(msg)

    def reports_dir(self, run_id: str) -> Path:
        """Where the quality reports of a run are written."""
        return self.state_dir / "reports" / run_id

    def schema_changes(self, name: str, version: int | None = None) -> list[SchemaChange]:
        """How ``version`` (default: newest) of a dataset changed the schema of the one before.

        Each change is classified as compatible or breaking (see
        :mod:`headrace.core.schema_change`); the first version has no changes.
        """
        current = self.dataset_version(name, version)
        older = [v for v in self.dataset_history(name) if v.version < current.version]
        if not older:
            return []
        return classify(dataset_schema(older[0].schema), dataset_schema(current.schema))

    def quality(self, *, run_id: str | None = None, node: str | None = None) -> list[QualityRecord]:
        """Quality results of validated node outputs, newest first."""
        return self.metadata.quality(run_id=run_id, node=node)

    def scan(self, name: str, version: int | None = None) -> pl.LazyFrame:
        """A dataset at a version (default: the newest recorded), lazily — time travel."""
        record = self.dataset_version(name, version)
        return self.datasets.scan(name, record.version)

    def lineage(
        self,
        dataset: str,
        version: int | None = None,
        *,
        upstream: bool = True,
        downstream: bool = True,
        column: str | None = None,
    ) -> LineageGraph:
        """Version-level lineage of ``dataset@version`` (default: newest) from the run records.

        Upstream: the runs, nodes and code versions that made it, and what they read;
        downstream: the datasets, feature sets and training sets made from it. With
        ``column``: only what that column comes from and feeds, from the column lineage in
        the OpenLineage events of the file transport (``<state>/lineage/events.jsonl``).
        """
        graph = LineageIndex(self.metadata).graph(
            dataset, version, upstream=upstream, downstream=downstream
        )
        if column is None:
            return graph
        from headrace.lineage.column_query import narrow_to_column, read_column_lineage

        events = self.state_dir / "lineage" / "events.jsonl"
        if self.settings.lineage.transport == "file" and self.settings.lineage.url:
            events = Path(self.settings.lineage.url)
        return narrow_to_column(graph, column, read_column_lineage(events))

    def reproduce(
        self, run_id: str, *, allow_code_change: bool = False, into: Path | None = None
    ) -> Reproduction:
        """Re-execute a run's nodes on the exact input versions and compare their outputs.

        See :mod:`headrace.project.reproduce`. Raises ReproductionError when the code of a
        node the run computed changed (unless ``allow_code_change``).
        """
        return reproduce(self, run_id, allow_code_change=allow_code_change, into=into)

    def vacuum(
        self, datasets: list[str] | None = None, *, dry_run: bool = False
    ) -> list[tuple[VacuumPlan, VacuumResult]]:
        """Apply ``[retention]``: remove the data only unkept dataset versions reference.

        Never removes the newest version, nor one a feature set or a recorded training set
        references (see :mod:`headrace.project.retention`).
        """
        return vacuum(self, datasets, dry_run=dry_run)

    def drift(
        self,
        dataset: str,
        reference: int,
        current: int | None = None,
        *,
        columns: list[str] | None = None,
        report: Path | None = None,
    ) -> DriftCheck:
        """Drift of ``dataset@current`` (default: newest) against ``dataset@reference``.

        The reference's sketches are computed once and stored with it; the result is stored
        under the state folder and evaluated by the ``drift`` alert rules. ``report`` writes
        an HTML page with per-column histograms of reference vs current.
        """
        return run_drift(self, dataset, reference, current, columns=columns, report=report)

    def read(self, name: str, version: int | None = None) -> pl.DataFrame:
        """A dataset at a version (default: the newest recorded)."""
        return self.scan(name, version).collect()

    # -- monitoring --------------------------------------------------------------------------

    @cached_property
    def alert_callbacks(self) -> AlertCallbacks:
        """The Python callbacks told of this project's alerts (see :meth:`on_alert`)."""
        return AlertCallbacks()

    @property
    def monitor(self) -> Monitor:
        """Metrics, alerts, drift alerting and Prometheus exposition ([metrics], [alerts])."""
        return Monitor(
            self.metadata,
            self.datasets,
            metrics=self.settings.metrics,
            alerts=self.settings.alerts,
            project=self.settings.project.name,
            base_dir=self.root,
            callbacks=self.alert_callbacks,
        )

    def metrics(
        self,
        *,
        node: str | None = None,
        pipeline: str | None = None,
        run_id: str | None = None,
        since: datetime | timedelta | None = None,
        limit: int | None = None,
    ) -> list[NodeMetrics]:
        """Metrics of node runs, newest first, with history (see :mod:`headrace.monitor`).

        Rows in/out, bytes, seconds, throughput, quality score, quarantined rows, freshness
        and cache hits; ``since`` is a UTC time or a span back from now.
        """
        return self.monitor.metrics(
            node=node, pipeline=pipeline, run_id=run_id, since=since, limit=limit
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
        """Alerts that fired, newest first, with their evidence and sink deliveries."""
        return self.monitor.alerts(
            rule=rule,
            kind=kind,
            pipeline=pipeline,
            run_id=run_id,
            node=node,
            since=since,
            limit=limit,
        )

    def on_alert(
        self, callback: AlertCallback, *, kinds: Sequence[str] = (), rules: Sequence[str] = ()
    ) -> Callable[[], None]:
        """Call ``callback(alert)`` for each alert of this project (e.g. retrain on new data).

        ``kinds`` / ``rules`` narrow which alerts it gets. Returns a function that unregisters
        it. The callback runs after the alert's sinks; its outcome is recorded as a delivery.
        """
        return self.alert_callbacks.add(callback, kinds=kinds, rules=rules)


def _no_dataset(name: str, known: list[DatasetVersion]) -> str:
    names = ", ".join(v.dataset for v in known) or "none yet"
    return f"no dataset {name!r} in this project (datasets: {names}); see `headrace datasets`"


def _load_module(root: Path, entry: str) -> ModuleType:
    path = (root / entry).resolve()
    if not path.is_file():
        msg = f"pipeline module {entry!r} listed in {SETTINGS_FILE} does not exist at {path}"
        raise ConfigError(msg)
    digest = hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
    # Executed afresh for each Project, so an edited pipeline file is picked up.
    module_name = f"_headrace_project_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so a pipeline module can import its sibling modules
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        if isinstance(exc, PipelineError):
            raise
        msg = (
            f"importing pipeline module {entry!r} failed: {type(exc).__name__}: {redact(str(exc))}"
        )
        raise ConfigError(msg) from exc
    return module
