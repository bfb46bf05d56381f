"""Versioned datasets: one Delta Lake table per dataset, one atomic commit per write.

Delta Lake writes the Parquet files first and then publishes them with a single commit file in
``_delta_log``; a process killed before that commit leaves only unreferenced files that no
reader sees, and the next write simply commits a new version. So a dataset version is either
entirely there or not there at all.

Each commit carries headrace's run id, node and code hash in its commit metadata, so the table
explains itself even without the metadata database.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions

from headrace.core.fingerprint import schema_of
from headrace.core.partitions import PartitionScheme
from headrace.errors import DatasetError, DatasetNotFoundError, DatasetVersionNotFoundError

__all__ = ["Compression", "DatasetStore", "Staged", "VacuumResult", "WriteResult"]

Compression = Literal["zstd", "lz4"]
"""Parquet compression of written files."""


@dataclass(frozen=True)
class WriteResult:
    """What one committed write produced."""

    version: int
    rows_written: int
    total_rows: int
    bytes: int
    schema: Mapping[str, str]


@dataclass
class Staged:
    """Parquet files written into a dataset's folder but not committed (invisible to readers)."""

    name: str
    actions: list[AddAction]
    rows: int
    schema: pl.Schema | None
    """The common schema of the files (None while no file was written)."""


# Delta Lake has no unsigned integers, no Null, Categorical or Enum types: widen them losslessly
# before writing (recursively inside lists, arrays and structs). Types it cannot hold at all are
# refused with the column's name.
_WIDEN: dict[type[pl.DataType], pl.DataType] = {
    pl.UInt8: pl.Int16(),
    pl.UInt16: pl.Int32(),
    pl.UInt32: pl.Int64(),
    pl.UInt64: pl.Int64(),  # values above the Int64 range are refused, see _storable
    pl.Null: pl.String(),
    pl.Categorical: pl.String(),
    pl.Enum: pl.String(),
}
_REFUSED = (pl.Object, pl.Time, pl.Duration)


def _storable_dtype(column: str, dtype: Any) -> pl.DataType:
    if isinstance(dtype, pl.List):
        return pl.List(_storable_dtype(column, dtype.inner))
    if isinstance(dtype, pl.Array):
        return pl.List(_storable_dtype(column, dtype.inner))
    if isinstance(dtype, pl.Struct):
        return pl.Struct([pl.Field(f.name, _storable_dtype(column, f.dtype)) for f in dtype.fields])
    if isinstance(dtype, pl.Datetime) and (dtype.time_zone or dtype.time_unit != "us"):
        # Delta timestamps are microseconds, and zoned ones are UTC: same instants.
        return pl.Datetime("us", "UTC" if dtype.time_zone else None)
    if isinstance(dtype, _REFUSED):
        msg = (
            f"column {column!r} has type {dtype}, which Delta Lake cannot store: cast it "
            "in the node (e.g. to String, Int64 or a Datetime)"
        )
        raise DatasetError(msg)
    widened = _WIDEN.get(dtype.base_type())
    if widened is not None:
        return widened
    result: pl.DataType = dtype() if isinstance(dtype, type) else dtype
    return result


def _storable(frame: pl.DataFrame) -> pl.DataFrame:
    casts: dict[str, pl.DataType] = {}
    for name, dtype in frame.schema.items():
        target = _storable_dtype(name, dtype)
        if dtype == pl.UInt64 and (frame[name].max() or 0) > 2**63 - 1:  # type: ignore[operator]
            msg = (
                f"column {name!r} holds UInt64 values above the Int64 range, and Delta Lake has "
                "no unsigned type: cast it in the node (e.g. to Decimal(20, 0) or String)"
            )
            raise DatasetError(msg)
        if target != dtype:
            casts[name] = target
    return frame.cast(casts) if casts else frame  # type: ignore[arg-type]


@dataclass(frozen=True)
class VacuumResult:
    """What vacuuming one dataset removed (or would remove, in a dry run)."""

    dataset: str
    versions: list[int]
    """Versions no longer readable afterwards."""
    files: list[str]
    bytes: int


class DatasetStore:
    """Delta Lake tables under one root folder, one folder per dataset."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)

    def path(self, name: str) -> Path:
        """Folder of dataset ``name``."""
        return self.root / name

    def exists(self, name: str) -> bool:
        """True when the dataset has at least one committed version (a commit file exists)."""
        log = self.path(name) / "_delta_log"
        return log.is_dir() and any(log.glob("*.json"))

    def current_version(self, name: str) -> int | None:
        """The newest committed Delta version, or None when the dataset has none."""
        if not self.exists(name):
            return None
        try:
            return int(DeltaTable(self.path(name)).version())
        except TableNotFoundError:
            return None

    def write(
        self,
        name: str,
        frame: pl.DataFrame,
        *,
        commit_metadata: Mapping[str, str],
        partition: tuple[PartitionScheme, str] | None = None,
        append: bool = False,
        transaction: tuple[str, int] | None = None,
        replace_where: str | None = None,
        transactions: Sequence[tuple[str, int]] = (),
        compression: Compression = "zstd",
    ) -> WriteResult:
        """Commit ``frame`` as the next version of ``name``, atomically.

        ``replace_where`` (a SQL predicate) replaces exactly the rows matching it by
        ``frame``, whose rows must all match it (used to recompute a time range).

        Without ``partition`` the new version replaces the whole dataset (schema changes
        allowed). With ``(scheme, key)`` it replaces only that partition's rows; every row of
        ``frame`` must belong to the partition. With ``append=True`` the rows are added to the
        dataset (cast to its schema; a new column or a lossy cast is refused).

        ``transaction=(app_id, n)`` records that the commit is step ``n`` of writer
        ``app_id`` (a Delta Lake application transaction): readers of
        :meth:`transaction_version` learn, from the table itself, how far the writer got;
        ``transactions`` records several writers' steps in the same commit.

        ``compression`` of the written file: zstd (smallest), or lz4 where the write is on a
        latency path (a streaming checkpoint every second: about a third of the CPU).
        """
        try:
            frame = _storable(frame)
        except DatasetError as exc:
            msg = f"writing dataset {name!r} failed: {exc}"
            raise DatasetError(msg) from None
        properties = CommitProperties(
            custom_metadata=dict(commit_metadata),
            app_transactions=[
                Transaction(*t) for t in [*([transaction] if transaction else []), *transactions]
            ]
            or None,
        )
        path = self.path(name)
        with self._locks[name]:
            whole = (partition is None and not append and replace_where is None) or not (
                self.exists(name)
            )
            try:
                if replace_where is not None and not whole:
                    table_schema = DeltaTable(path).schema().to_arrow().empty_table()
                    frame = _aligned(name, frame, pl.DataFrame(table_schema).schema)
                    write_deltalake(
                        path,
                        frame,
                        mode="overwrite",
                        predicate=replace_where,
                        commit_properties=properties,
                    )
                elif append and not whole:
                    table_schema = DeltaTable(path).schema().to_arrow().empty_table()
                    frame = _aligned(name, frame, pl.DataFrame(table_schema).schema)
                    _add_file(path, frame, properties, mode="append", compression=compression)
                elif whole:
                    _replace_table(path, frame, properties, compression)
                else:
                    assert partition is not None
                    scheme, key = partition
                    write_deltalake(
                        path,
                        frame,
                        mode="overwrite",
                        predicate=scheme.sql_predicate(key),
                        commit_properties=properties,
                    )
                version, total_rows, size = self._committed(path, frame.height, whole=whole)
            except BaseException as exc:
                # deltalake raises several unrelated types, and Rust panics arrive as
                # PanicException (a BaseException); interrupts pass through untouched.
                if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                    raise
                where = f" partition {partition[1]}" if partition else ""
                msg = f"writing dataset {name!r}{where} failed: {_first_line(exc)}"
                raise DatasetError(msg) from exc
        return WriteResult(
            version=version,
            rows_written=frame.height,
            total_rows=total_rows,
            bytes=size,
            schema=schema_of(frame),
        )

    @staticmethod
    def _committed(path: Path, rows: int, *, whole: bool) -> tuple[int, int, int]:
        """Version, total rows and total bytes of the table right after our commit.

        A whole-table write replaced everything, so its commit file alone tells (cheap); a
        partition write needs the table's file list.
        """
        if whole:
            commits = sorted((path / "_delta_log").glob("[0-9]*.json"))
            if commits:
                added = 0
                with commits[-1].open(encoding="utf-8") as log:
                    for line in log:
                        action = json.loads(line)
                        if "add" in action:
                            added += int(action["add"].get("size", 0))
                return int(commits[-1].stem), rows, added
        table = DeltaTable(path)
        actions = table.get_add_actions(flatten=True)
        columns = actions.column_names
        total_rows = _column_sum(actions, "num_records") if "num_records" in columns else -1
        size = _column_sum(actions, "size_bytes") if "size_bytes" in columns else 0
        return int(table.version()), total_rows, size

    def scan(
        self, name: str, version: int | None = None, *, where: pl.Expr | None = None
    ) -> pl.LazyFrame:
        """A lazy scan of ``name`` at ``version`` (default: newest), optionally filtered."""
        if not self.exists(name):
            msg = f"dataset {name!r} has no data under {self.path(name)}; run its pipeline first"
            raise DatasetNotFoundError(msg)
        if version is not None and not self._has_version(name, version):
            msg = (
                f"dataset {name!r} has no version {version}; see `headrace datasets history {name}`"
            )
            raise DatasetVersionNotFoundError(msg)
        try:
            frame = self._scan_files(name, version)
        except DatasetVersionNotFoundError:
            raise
        except Exception as exc:
            msg = f"reading dataset {name!r} failed: {_first_line(exc)}"
            raise DatasetError(msg) from exc
        return frame if where is None else frame.filter(where)

    def _scan_files(self, name: str, version: int | None) -> pl.LazyFrame:
        """Polars' Delta scan; or, for a plain table, a Parquet scan of its files.

        A table without partition columns and without reader features (deletion vectors,
        column mapping) is exactly the union of its data files, and headrace writes all of
        them with one schema (appends and replaced ranges are cast to it): scanning them as
        Parquet skips the Delta scan's per-call planning (about 40 % of a 1 M-row read).
        """
        path = str(self.path(name))
        table = DeltaTable(path, version=version)
        protocol = table.protocol()
        if table.metadata().partition_columns or protocol.reader_features:
            return pl.scan_delta(path, version=version)
        files = table.file_uris()
        if not files:
            return pl.scan_delta(path, version=version)
        if version is not None and not all(Path(f.removeprefix("file://")).exists() for f in files):
            msg = (
                f"version {version} of dataset {name!r} was removed by its retention policy "
                "(`headrace datasets vacuum`); read a newer version, or keep this one by "
                "referencing it (a training set or feature set)"
            )
            raise DatasetVersionNotFoundError(msg)
        return pl.scan_parquet(files, hive_partitioning=False)

    def _has_version(self, name: str, version: int) -> bool:
        if version < 0:
            return False
        log = self.path(name) / "_delta_log"
        if (log / f"{version:020d}.json").exists():
            return True
        # Old commit files may have been cleaned up behind a checkpoint: ask Delta.
        try:
            DeltaTable(self.path(name), version=version)
        except (DeltaError, TableNotFoundError, OSError, ValueError):
            return False
        return True

    def stage(self, name: str, frames: Iterable[pl.DataFrame]) -> Staged:
        """Write ``frames`` one by one as Parquet files of ``name``, without committing.

        Memory holds one frame at a time. The files share one schema: the dataset's, when it
        exists, else the first frame's; a frame that does not fit is refused (DatasetError).
        Nothing is visible until :meth:`commit_staged`; a crash leaves unreferenced files.
        """
        path = self.path(name)
        target: pl.Schema | None = None
        if self.exists(name):
            target = pl.DataFrame(DeltaTable(path).schema().to_arrow().empty_table()).schema
        staged = Staged(name, [], 0, target)
        try:
            self._stage_into(staged, frames)
        except BaseException:
            self.discard(staged)
            raise
        return staged

    def _stage_into(self, staged: Staged, frames: Iterable[pl.DataFrame]) -> None:
        name, path = staged.name, self.path(staged.name)
        for frame in frames:
            try:
                storable = _storable(frame)
            except DatasetError as exc:
                msg = f"writing dataset {name!r} failed: {exc}"
                raise DatasetError(msg) from None
            if staged.schema is None:
                staged.schema = storable.schema
            elif storable.schema != staged.schema:
                storable = _aligned(name, storable, staged.schema)
            if storable.height:
                staged.actions.append(_write_file(path, storable))
                staged.rows += storable.height

    def commit_staged(
        self,
        staged: Staged,
        *,
        commit_metadata: Mapping[str, str],
        append: bool,
        transaction: tuple[str, int] | None = None,
    ) -> WriteResult:
        """Publish staged files as one new version (appended, or replacing the dataset)."""
        name, path = staged.name, self.path(staged.name)
        schema = staged.schema if staged.schema is not None else pl.Schema()
        properties = CommitProperties(
            custom_metadata=dict(commit_metadata),
            app_transactions=[Transaction(*transaction)] if transaction else None,
        )
        delta_schema = DeltaSchema.from_arrow(pl.DataFrame(schema=schema).to_arrow().schema)
        with self._locks[name]:
            try:
                actions: list[Any] = list(staged.actions)
                if self.exists(name):
                    DeltaTable(path).create_write_transaction(
                        actions,
                        mode="append" if append else "overwrite",
                        schema=delta_schema,
                        commit_properties=properties,
                    )
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    create_table_with_add_actions(
                        str(path),
                        delta_schema,
                        actions,
                        mode="overwrite",
                        commit_properties=properties,
                    )
                version, total_rows, size = self._committed(path, staged.rows, whole=False)
            except Exception as exc:
                msg = f"writing dataset {name!r} failed: {_first_line(exc)}"
                raise DatasetError(msg) from exc
        return WriteResult(
            version=version,
            rows_written=staged.rows,
            total_rows=total_rows,
            bytes=size,
            schema={column: str(dtype) for column, dtype in schema.items()},
        )

    def discard(self, staged: Staged) -> None:
        """Delete staged files that will not be committed."""
        for action in staged.actions:
            (self.path(staged.name) / action.path).unlink(missing_ok=True)
        staged.actions.clear()

    def changed_files(
        self, name: str, old_version: int, new_version: int
    ) -> tuple[list[str], list[str]] | None:
        """Data files added and removed between two versions (URIs), for incremental reads.

        None when that cannot be told exactly: a version is gone, or a removed file was
        already vacuumed (its rows can no longer be read).
        """
        if not (self._has_version(name, old_version) and self._has_version(name, new_version)):
            return None
        try:
            old = set(DeltaTable(self.path(name), version=old_version).file_uris())
            new = set(DeltaTable(self.path(name), version=new_version).file_uris())
        except (DeltaError, TableNotFoundError, OSError, ValueError):
            return None
        removed = sorted(old - new)
        if any(not Path(uri.removeprefix("file://")).exists() for uri in removed):
            return None
        return sorted(new - old), removed

    def versions(self, name: str) -> list[int]:
        """Every committed Delta version of ``name`` (oldest first)."""
        current = self.current_version(name)
        return [] if current is None else list(range(current + 1))

    def vacuum(self, name: str, keep: set[int], *, dry_run: bool = False) -> VacuumResult:
        """Delete the data files that only versions outside ``keep`` reference.

        The newest version is always kept. The commit log stays (history remains listed);
        reading a removed version then fails with a message naming the retention policy.
        Files that a kept version references are never touched, so a kept old version stays
        readable even when newer versions replaced its rows.
        """
        versions = self.versions(name)
        if not versions:
            return VacuumResult(name, [], [], 0)
        keep = {v for v in keep if v in versions} | {versions[-1]}
        kept_files: set[str] = set()
        others: dict[int, set[str]] = {}
        for version in versions:
            try:
                files = set(DeltaTable(self.path(name), version=version).file_uris())
            except (DeltaError, TableNotFoundError, OSError, ValueError):
                continue  # an already-vacuumed version
            if version in keep:
                kept_files |= files
            else:
                others[version] = files
        present = {
            f
            for files in others.values()
            for f in files - kept_files
            if Path(f.removeprefix("file://")).exists()
        }
        doomed = sorted(present)
        # a version goes only if a file of it goes (others share all their files with kept ones)
        removed = [v for v, files in sorted(others.items()) if files & present]
        freed = sum(Path(f.removeprefix("file://")).stat().st_size for f in doomed)
        if not dry_run:
            for uri in doomed:
                Path(uri.removeprefix("file://")).unlink(missing_ok=True)
        return VacuumResult(name, removed, doomed, freed)

    def transaction_version(self, name: str, app_id: str) -> int | None:
        """The last step that writer ``app_id`` committed to ``name`` (None: none yet)."""
        if not self.exists(name):
            return None
        found = DeltaTable(self.path(name)).transaction_version(app_id)
        return None if found is None else int(found)

    def latest_commit_metadata(self, name: str) -> dict[str, str]:
        """The headrace commit metadata of the newest version ({} when there is none)."""
        version = self.current_version(name)
        return {} if version is None else self.commit_metadata(name, version)

    def commit_metadata(self, name: str, version: int) -> dict[str, str]:
        """The custom commit metadata stored with one version."""
        for entry in DeltaTable(self.path(name)).history():
            if int(entry.get("version", -1)) == version:
                return {str(k): str(v) for k, v in entry.items() if str(k).startswith("headrace.")}
        msg = f"dataset {name!r} has no version {version}"
        raise DatasetVersionNotFoundError(msg)


def _replace_table(
    path: Path, frame: pl.DataFrame, properties: CommitProperties, compression: Compression
) -> None:
    """Replace the whole table by ``frame`` in one commit (creating it if needed).

    Polars writes the Parquet file (multi-threaded, faster than deltalake's writer here), and
    deltalake commits it: the commit file is what makes the new version visible, so a crash
    before it leaves only an unreferenced file. Statistics hold the row and null counts; no
    min/max (a whole-table write is one file, so there is nothing to skip, and wrong bounds
    would be worse than none).
    """
    _add_file(path, frame, properties, mode="overwrite", compression=compression)


def _aligned(name: str, frame: pl.DataFrame, target: pl.Schema) -> pl.DataFrame:
    """``frame`` in the column order and types of ``target`` (for an append)."""
    extra = [c for c in frame.columns if c not in target]
    if extra:
        msg = (
            f"appending to dataset {name!r}: new column(s) {extra} that the dataset does not "
            "have; declare them in the node's contract, or rebuild it with --full-refresh"
        )
        raise DatasetError(msg)
    columns = []
    for column, dtype in target.items():
        if column not in frame.columns:
            columns.append(pl.lit(None, dtype=dtype).alias(column))
        else:
            columns.append(pl.col(column).cast(dtype, strict=True))
    try:
        return frame.select(columns)
    except pl.exceptions.PolarsError as exc:
        msg = (
            f"appending to dataset {name!r}: the new rows do not fit its column types "
            f"({str(exc).splitlines()[0]}); declare the types in a contract, or rebuild it "
            "with --full-refresh"
        )
        raise DatasetError(msg) from None


def _add_file(
    path: Path,
    frame: pl.DataFrame,
    properties: CommitProperties,
    *,
    mode: str,
    compression: Compression = "zstd",
) -> None:
    """Write ``frame`` as one Parquet file and commit it (``overwrite`` or ``append``)."""
    add = _write_file(path, frame, compression)
    schema = DeltaSchema.from_arrow(frame.head(0).to_arrow().schema)
    if any((path / "_delta_log").glob("[0-9]*.json")):
        DeltaTable(path).create_write_transaction(
            [add], mode=mode, schema=schema, commit_properties=properties
        )
    else:
        create_table_with_add_actions(
            str(path), schema, [add], mode="overwrite", commit_properties=properties
        )


def _write_file(path: Path, frame: pl.DataFrame, compression: Compression = "zstd") -> AddAction:
    """Write ``frame`` as one Parquet file in the table folder; its add action (uncommitted)."""
    path.mkdir(parents=True, exist_ok=True)
    file_name = f"part-00000-{uuid.uuid4()}-c000.{compression}.parquet"
    frame.write_parquet(path / file_name, compression=compression)
    info = (path / file_name).stat()
    stats = {
        "numRecords": frame.height,
        "nullCount": {
            name: count
            for name, count in zip(frame.columns, frame.null_count().row(0), strict=True)
            if not frame.schema[name].is_nested()
        },
    }
    return AddAction(
        path=file_name,
        size=info.st_size,
        partition_values={},
        modification_time=int(info.st_mtime * 1000),
        data_change=True,
        stats=json.dumps(stats),
    )


def _column_sum(table: object, column: str) -> int:
    values = table.column(column).to_pylist()  # type: ignore[attr-defined]
    return int(sum(v or 0 for v in values))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
