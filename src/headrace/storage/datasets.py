"""Versioned datasets: one Delta Lake table per dataset, one atomic commit per write.

Delta Lake writes the Parquet files first and then publishes them with a single commit file in
``_delta_log``; a process killed before that commit leaves only unreferenced files that no
reader sees, and the next write simply commits a new version. So a dataset version is either
entirely there or not there at all.

Each commit carries headrace's run id, node and code hash in its commit metadata, so the table
explains itself even without the metadata database.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from headrace.core.fingerprint import schema_of
from headrace.core.partitions import PartitionScheme
from headrace.errors import DatasetError, DatasetNotFoundError, DatasetVersionNotFoundError

__all__ = ["DatasetStore", "WriteResult"]


@dataclass(frozen=True)
class WriteResult:
    """What one committed write produced."""

    version: int
    rows_written: int
    total_rows: int
    bytes: int
    schema: Mapping[str, str]


# Delta Lake has no unsigned integers and no Null-typed columns; widen them before writing.
_WIDEN: dict[type[pl.DataType], pl.DataType] = {
    pl.UInt8: pl.Int16(),
    pl.UInt16: pl.Int32(),
    pl.UInt32: pl.Int64(),
    pl.UInt64: pl.Int64(),
    pl.Null: pl.String(),
    pl.Categorical: pl.String(),
    pl.Enum: pl.String(),
    pl.Object: pl.String(),
}


def _storable(frame: pl.DataFrame) -> pl.DataFrame:
    casts = {
        name: _WIDEN[dtype.base_type()]
        for name, dtype in frame.schema.items()
        if dtype.base_type() in _WIDEN
    }
    return frame.cast(casts) if casts else frame  # type: ignore[arg-type]


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
    ) -> WriteResult:
        """Commit ``frame`` as the next version of ``name``, atomically.

        Without ``partition`` the new version replaces the whole dataset (schema changes
        allowed). With ``(scheme, key)`` it replaces only that partition's rows; every row of
        ``frame`` must belong to the partition.
        """
        frame = _storable(frame)
        properties = CommitProperties(custom_metadata=dict(commit_metadata))
        path = self.path(name)
        with self._locks[name]:
            try:
                if partition is None or not self.exists(name):
                    path.mkdir(parents=True, exist_ok=True)
                    write_deltalake(
                        path,
                        frame,
                        mode="overwrite",
                        schema_mode="overwrite",
                        commit_properties=properties,
                    )
                else:
                    scheme, key = partition
                    write_deltalake(
                        path,
                        frame,
                        mode="overwrite",
                        predicate=scheme.sql_predicate(key),
                        commit_properties=properties,
                    )
                table = DeltaTable(path)
            except (DeltaError, OSError, ValueError) as exc:
                where = f" partition {partition[1]}" if partition else ""
                msg = f"writing dataset {name!r}{where} failed: {_first_line(exc)}"
                raise DatasetError(msg) from exc
            version = int(table.version())
            actions = table.get_add_actions(flatten=True)
            columns = actions.column_names
            total_rows = _column_sum(actions, "num_records") if "num_records" in columns else -1
            size = _column_sum(actions, "size_bytes") if "size_bytes" in columns else 0
        return WriteResult(
            version=version,
            rows_written=frame.height,
            total_rows=total_rows,
            bytes=size,
            schema=schema_of(frame),
        )

    def scan(
        self, name: str, version: int | None = None, *, where: pl.Expr | None = None
    ) -> pl.LazyFrame:
        """A lazy scan of ``name`` at ``version`` (default: newest), optionally filtered."""
        if not self.exists(name):
            msg = f"dataset {name!r} has no data under {self.path(name)}; run its pipeline first"
            raise DatasetNotFoundError(msg)
        try:
            frame = pl.scan_delta(str(self.path(name)), version=version)
            if version is not None:
                frame.collect_schema()  # resolves the version now, so a bad one fails here
        except Exception as exc:
            if version is not None:
                msg = (
                    f"dataset {name!r} has no version {version}; "
                    f"see `headrace datasets history {name}`"
                )
                raise DatasetVersionNotFoundError(msg) from exc
            msg = f"reading dataset {name!r} failed: {_first_line(exc)}"
            raise DatasetError(msg) from exc
        return frame if where is None else frame.filter(where)

    def commit_metadata(self, name: str, version: int) -> dict[str, str]:
        """The custom commit metadata stored with one version."""
        for entry in DeltaTable(self.path(name)).history():
            if int(entry.get("version", -1)) == version:
                return {str(k): str(v) for k, v in entry.items() if str(k).startswith("headrace.")}
        msg = f"dataset {name!r} has no version {version}"
        raise DatasetVersionNotFoundError(msg)


def _column_sum(table: object, column: str) -> int:
    values = table.column(column).to_pylist()  # type: ignore[attr-defined]
    return int(sum(v or 0 for v in values))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
