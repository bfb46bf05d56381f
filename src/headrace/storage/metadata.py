"""The metadata store: runs, node runs and dataset versions in SQLite or PostgreSQL.

The store is opened from a SQLAlchemy URL (``sqlite:///path/metadata.db`` by default,
``postgresql+psycopg://user@host/db`` to share it between machines). Opening it applies any
pending Alembic migration, so a project created by an older headrace keeps working.

Writes are serialised inside one process (a lock), and each write is its own short
transaction, so a crash loses at most the record being written — never a dataset version, which
is committed to Delta Lake before it is recorded here (see :mod:`headrace.storage.datasets`).
"""

from __future__ import annotations

import dataclasses
import enum
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from headrace.core.records import (
    DatasetVersion,
    NodeRunRecord,
    NodeStatus,
    QualityRecord,
    RunRecord,
    RunStatus,
)
from headrace.core.redaction import redact
from headrace.errors import MetadataError
from headrace.storage import migrations
from headrace.storage.schema import dataset_versions, node_runs, quality_results, runs

__all__ = ["MetadataStore"]


def _headrace_version() -> str:
    try:
        return package_version("headrace")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _blank(partition: str | None) -> str:
    return partition or ""


def _none(partition: str) -> str | None:
    return partition or None


_MIGRATE_TRIES = 8
_MIGRATION_LOCK = threading.Lock()


class MetadataStore:
    """Records of runs, node runs and dataset versions, behind one SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        try:
            self._engine = _create_engine(url)
            self._migrate()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            reason = _reason(exc) if isinstance(exc, sa.exc.SQLAlchemyError) else str(exc)
            msg = (
                f"cannot open the metadata database {_redact_url(url)}: {redact(reason)}; check "
                "[metadata] url in headrace.toml (or HEADRACE_METADATA_URL) and that the "
                "server is running"
            )
            raise MetadataError(msg) from exc

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(Path(migrations.__file__).parent))
        head = ScriptDirectory.from_config(config).get_current_head()
        with self._engine.connect() as connection:  # an unreachable server fails here, once
            if MigrationContext.configure(connection).get_current_revision() == head:
                return
        # Alembic's op/context are process-wide: one migration at a time in this process.
        with _MIGRATION_LOCK:
            for attempt in range(_MIGRATE_TRIES):
                try:
                    with self._engine.begin() as connection:
                        current = MigrationContext.configure(connection).get_current_revision()
                        if current == head:
                            return
                        config.attributes["connection"] = connection
                        command.upgrade(config, "head")
                except sa.exc.DBAPIError:
                    # Another process may be migrating the same new database right now: its
                    # transaction wins, ours fails; look again (it is then usually at head).
                    if attempt == _MIGRATE_TRIES - 1:
                        raise
                    time.sleep(0.05 * (attempt + 1))
                else:
                    return

    def writing(self) -> AbstractContextManager[sa.Connection]:
        """A write transaction (serialised in this process); for the other stores on this DB."""
        return self._write()

    def reading(self) -> AbstractContextManager[sa.Connection]:
        """A read connection; for the other stores on this database."""
        return self._read()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._lock, self._translate(), self._engine.begin() as connection:
            yield connection

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._translate(), self._engine.connect() as connection:
            yield connection

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            msg = f"metadata database {_redact_url(self.url)} failed: {_reason(exc)}"
            raise MetadataError(msg) from exc

    # -- runs --------------------------------------------------------------------------------

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
        with self._write() as c:
            c.execute(
                runs.insert().values(
                    run_id=run_id,
                    pipeline=pipeline,
                    status=RunStatus.RUNNING.value,
                    started_at=started_at,
                    params=dict(params),
                    config=dict(config),
                    code_hash=code_hash,
                    headrace_version=_headrace_version(),
                )
            )

    def finish_run(
        self, run_id: str, *, status: RunStatus, ended_at: datetime, error: str | None = None
    ) -> None:
        """Close a run with its final status."""
        with self._write() as c:
            c.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(status=status.value, ended_at=ended_at, error=error)
            )

    def close_abandoned_runs(
        self, host: str, alive: Callable[[int], bool], ended_at: datetime
    ) -> int:
        """Mark ``running`` runs of ``host`` whose process is gone as failed; returns how many.

        A run killed with ``kill -9`` cannot close its own record; the next run on the same
        host does it, so listings do not show it running forever.
        """
        query = sa.select(runs.c.run_id, runs.c.params).where(
            runs.c.status == RunStatus.RUNNING.value
        )
        with self._read() as c:
            candidates = c.execute(query).all()
        dead = [
            (run_id, params["pid"])
            for run_id, params in candidates
            if params.get("host") == host
            and isinstance(params.get("pid"), int)
            and not alive(params["pid"])
        ]
        for run_id, pid in dead:
            self.finish_run(
                run_id,
                status=RunStatus.FAILED,
                ended_at=ended_at,
                error=f"abandoned: its process (pid {pid}) ended without closing the run",
            )
        return len(dead)

    def record_node_runs(self, pipeline: str, records: list[NodeRunRecord]) -> None:
        """Store finished node runs (one transaction for the batch)."""
        if not records:
            return
        rows = [_to_row(r, pipeline=pipeline) for r in records]
        with self._write() as c:
            c.execute(node_runs.insert(), rows)

    def get_run(self, run_id: str) -> RunRecord | None:
        """A run with its node runs, or None. A unique prefix of the id is enough."""
        with self._read() as c:
            row = c.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
            if row is None:
                matches = (
                    c.execute(
                        sa.select(runs)
                        .where(runs.c.run_id.startswith(run_id, autoescape=True))
                        .limit(2)
                    )
                    .mappings()
                    .all()
                )
                if len(matches) != 1:
                    return None
                row = matches[0]
            nodes = c.execute(
                sa.select(node_runs)
                .where(node_runs.c.run_id == row["run_id"])
                .order_by(node_runs.c.started_at, node_runs.c.node, node_runs.c.partition)
            ).mappings()
            return _run_record(row, tuple(_node_record(n) for n in nodes))

    def list_runs(self, *, pipeline: str | None = None, limit: int = 20) -> list[RunRecord]:
        """The newest runs first (without node runs)."""
        query = sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)
        if pipeline is not None:
            query = query.where(runs.c.pipeline == pipeline)
        with self._read() as c:
            return [_run_record(row, ()) for row in c.execute(query).mappings()]

    def node_run_counts(self, run_ids: list[str]) -> dict[str, dict[str, int]]:
        """For each run id, how many node runs ended in each status."""
        query = (
            sa.select(node_runs.c.run_id, node_runs.c.status, sa.func.count())
            .where(node_runs.c.run_id.in_(run_ids))
            .group_by(node_runs.c.run_id, node_runs.c.status)
        )
        out: dict[str, dict[str, int]] = {run_id: {} for run_id in run_ids}
        with self._read() as c:
            for run_id, status, count in c.execute(query):
                out[run_id][status] = count
        return out

    def last_successful_node_run(
        self, pipeline: str, node: str, partition: str | None
    ) -> NodeRunRecord | None:
        """The newest succeeded (not cached) run of a node partition — used to cache sinks."""
        query = (
            sa.select(node_runs)
            .where(
                node_runs.c.pipeline == pipeline,
                node_runs.c.node == node,
                node_runs.c.partition == _blank(partition),
                node_runs.c.status == NodeStatus.SUCCEEDED.value,
            )
            .order_by(node_runs.c.ended_at.desc())
            .limit(1)
        )
        with self._read() as c:
            row = c.execute(query).mappings().first()
        return None if row is None else _node_record(row)

    # -- quality -----------------------------------------------------------------------------

    def record_quality(self, record: QualityRecord) -> None:
        """Store the quality result of one validated node output."""
        with self._write() as c:
            c.execute(quality_results.insert().values(_to_row(record)))

    def last_contract_schema(
        self, pipeline: str, node: str
    ) -> dict[str, tuple[str | None, bool]] | None:
        """The contract schema of a node's newest quality record, or None."""
        query = (
            sa.select(quality_results.c.contract_schema)
            .where(
                quality_results.c.pipeline == pipeline,
                quality_results.c.node == node,
                quality_results.c.contract_schema.is_not(None),
            )
            .order_by(quality_results.c.created_at.desc())
            .limit(1)
        )
        with self._read() as c:
            found = c.execute(query).scalar_one_or_none()
        if not found:
            return None
        return {str(k): (v[0], bool(v[1])) for k, v in dict(found).items()}

    def quality(self, *, run_id: str | None = None, node: str | None = None) -> list[QualityRecord]:
        """Quality results, newest first, optionally of one run and/or one node."""
        query = sa.select(quality_results).order_by(quality_results.c.created_at.desc())
        if run_id is not None:
            query = query.where(quality_results.c.run_id == run_id)
        if node is not None:
            query = query.where(quality_results.c.node == node)
        with self._read() as c:
            return [_from_row(QualityRecord, row) for row in c.execute(query).mappings()]

    # -- dataset versions --------------------------------------------------------------------

    def record_dataset_version(self, version: DatasetVersion) -> None:
        """Record a committed dataset version."""
        with self._write() as c:
            c.execute(dataset_versions.insert().values(_to_row(version)))

    def latest_version(self, dataset: str) -> DatasetVersion | None:
        """The newest recorded version of a dataset."""
        query = (
            sa.select(dataset_versions)
            .where(dataset_versions.c.dataset == dataset)
            .order_by(dataset_versions.c.version.desc())
            .limit(1)
        )
        with self._read() as c:
            row = c.execute(query).mappings().first()
        return None if row is None else _version_record(row)

    def latest_write(self, dataset: str, partition: str | None) -> DatasetVersion | None:
        """The newest version that wrote ``partition`` (a whole-dataset write counts too)."""
        query = (
            sa.select(dataset_versions)
            .where(dataset_versions.c.dataset == dataset)
            .order_by(dataset_versions.c.version.desc())
            .limit(1)
        )
        if partition is not None:
            query = query.where(dataset_versions.c.partition.in_(("", partition)))
        with self._read() as c:
            row = c.execute(query).mappings().first()
        return None if row is None else _version_record(row)

    def get_version(self, dataset: str, version: int) -> DatasetVersion | None:
        """One recorded version, or None."""
        query = sa.select(dataset_versions).where(
            dataset_versions.c.dataset == dataset, dataset_versions.c.version == version
        )
        with self._read() as c:
            row = c.execute(query).mappings().first()
        return None if row is None else _version_record(row)

    def dataset_history(self, dataset: str) -> list[DatasetVersion]:
        """Every recorded version of a dataset, newest first."""
        query = (
            sa.select(dataset_versions)
            .where(dataset_versions.c.dataset == dataset)
            .order_by(dataset_versions.c.version.desc())
        )
        with self._read() as c:
            return [_version_record(row) for row in c.execute(query).mappings()]

    def list_datasets(self) -> list[DatasetVersion]:
        """The newest version of every dataset, by name."""
        newest = (
            sa.select(
                dataset_versions.c.dataset, sa.func.max(dataset_versions.c.version).label("v")
            )
            .group_by(dataset_versions.c.dataset)
            .subquery()
        )
        query = (
            sa.select(dataset_versions)
            .join(
                newest,
                sa.and_(
                    dataset_versions.c.dataset == newest.c.dataset,
                    dataset_versions.c.version == newest.c.v,
                ),
            )
            .order_by(dataset_versions.c.dataset)
        )
        with self._read() as c:
            return [_version_record(row) for row in c.execute(query).mappings()]


def _create_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        # Python's sqlite3 commits DDL on its own (it opens transactions only before DML):
        # a process killed while creating the tables would leave half a schema. So the
        # driver is put in autocommit and SQLAlchemy issues BEGIN itself: DDL is atomic too.
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql("BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True)


def _use_wal(cursor: Any) -> None:
    """Switch a SQLite database to WAL (persistent, so usually already done).

    Changing the journal mode needs a moment alone with the file: when several connections
    open a new database at once, the switch can report "locked" without waiting; try again.
    """
    for attempt in range(50):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.02)
        else:
            return


def _redact_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return redact(url)


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)


def _to_row(record: Any, **extra: Any) -> dict[str, Any]:
    """A record dataclass as a table row: enums by value, partition '' for none, JSON-ready."""
    row: dict[str, Any] = {}
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if item.name == "partition":
            value = _blank(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, Mapping) and item.name != "position":
            value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        elif isinstance(value, tuple | list):
            value = [dict(v) if isinstance(v, Mapping) else v for v in value]
        row[item.name] = value
    return {**row, **extra}


R = TypeVar("R")


def _from_row(cls: type[R], row: sa.RowMapping, **extra: Any) -> R:
    """The record dataclass ``cls`` from a table row (columns it lacks are ignored)."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        if item.name not in row:
            continue
        value = row[item.name]
        if item.name == "partition":
            value = _none(value)
        elif item.name == "status":
            value = (RunStatus if cls is RunRecord else NodeStatus)(value)
        elif value is None and item.name == "inputs":
            value = {}
        elif value is None and item.name in ("contract_schema", "approved_changes"):
            continue  # older rows: keep the dataclass default
        values[item.name] = value
    return cls(**values, **extra)


def _run_record(row: sa.RowMapping, nodes: tuple[NodeRunRecord, ...]) -> RunRecord:
    return _from_row(RunRecord, row, nodes=nodes)


def _node_record(row: sa.RowMapping) -> NodeRunRecord:
    return _from_row(NodeRunRecord, row)


def _version_record(row: sa.RowMapping) -> DatasetVersion:
    return _from_row(DatasetVersion, row)
