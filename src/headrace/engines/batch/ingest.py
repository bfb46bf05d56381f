"""Reading an ingest node's source: what is new since the committed position, and the rest.

A *position* is JSON-ready data that says how far a source has been read:

* files: ``{"files": {path: {"size", "mtime", "hash"}}}`` — every file read so far;
* SQL with a cursor: ``{"cursor": {"type": ..., "value": ...}}`` — the high-water mark.

:func:`read_new` reads from one position to the next. Given ``until`` (the position a previous,
interrupted attempt had reached) it reads exactly that range again, so a retried step sees the
same records as the first try. Non-incremental sources have no position: every run reads all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from headrace.connectors.base import REJECT_SCHEMA, Batch, empty_rejects
from headrace.connectors.files import FileInfo, content_hash, list_files, read_file
from headrace.connectors.sql import high_water, read_sql
from headrace.core.contract import Contract
from headrace.core.source import FileSource, SourceSpec, SqlSource
from headrace.errors import SourceError

__all__ = ["Ingested", "Reading", "open_reading", "read_new"]

Position = dict[str, Any]


@dataclass(frozen=True)
class Ingested:
    """What one read of a source produced."""

    data: pl.DataFrame
    """Parsed rows, with the position columns ``_hr_source`` and ``_hr_line``."""
    rejects: pl.DataFrame
    """Records that did not parse (see :data:`headrace.connectors.base.REJECT_SCHEMA`)."""
    position: Position | None
    """The position after this read (None for a non-incremental source)."""
    parts: int
    """Files (or chunks) read."""

    @property
    def records(self) -> int:
        """Everything read: rows plus rejects."""
        return self.data.height + self.rejects.height


@dataclass(frozen=True)
class Reading:
    """A read in progress: where it will end, and its batches (read as they are iterated)."""

    position: Position | None
    parts: int
    batches: Iterator[Batch]


def read_new(
    name: str,
    spec: SourceSpec,
    base_dir: Path,
    *,
    contract: Contract | None,
    since: Position | None,
    until: Position | None = None,
) -> Ingested:
    """Read what ``spec`` holds after ``since`` (all of it when ``since`` is None), in memory.

    ``until`` pins the end of the range to what an earlier try of the same step recorded.
    """
    reading = open_reading(name, spec, base_dir, contract=contract, since=since, until=until)
    return _combined(list(reading.batches), reading.position, reading.parts)


def open_reading(
    name: str,
    spec: SourceSpec,
    base_dir: Path,
    *,
    contract: Contract | None,
    since: Position | None,
    until: Position | None = None,
) -> Reading:
    """Like :func:`read_new`, but the batches come one at a time (bounded memory)."""
    if isinstance(spec, FileSource):
        return _read_files(spec, base_dir, contract, since, until)
    if isinstance(spec, SqlSource):
        return _read_sql(name, spec, base_dir, since, until)
    msg = f"source of node {name!r} has unknown type {type(spec).__name__}: use files or sql"
    raise SourceError(msg)


# -- files -------------------------------------------------------------------------------------


def _read_files(
    spec: FileSource,
    base_dir: Path,
    contract: Contract | None,
    since: Position | None,
    until: Position | None,
) -> Reading:
    found = list_files(spec, base_dir)
    seen: dict[str, Any] = dict((since or {}).get("files", {}))
    if until is not None:
        wanted = set(until.get("files", {})) - set(seen)
        todo = [info for info in found if info.path in wanted]
        missing = wanted - {info.path for info in todo}
        if missing:
            msg = (
                f"files {sorted(missing)} were being ingested by an interrupted run but are "
                "gone now: restore them, or rebuild the dataset with --full-refresh"
            )
            raise SourceError(msg)
    elif spec.incremental:
        todo = [info for info in found if _is_new(info, seen.get(info.path))]
    else:
        todo = found
    columns = _contract_columns(contract)
    position: Position | None = None
    if spec.incremental:
        for info in todo:
            seen[info.path] = {"size": info.size, "mtime": info.mtime, "hash": content_hash(info)}
        position = {"files": seen}
    batches = (read_file(spec, info, columns=columns) for info in todo)
    return Reading(position, len(todo), batches)


def _is_new(info: FileInfo, seen: Mapping[str, Any] | None) -> bool:
    if seen is None:
        return True
    # Stores that report no modification time (mtime 0, e.g. HTTP) are judged by content.
    if info.size == seen.get("size") and info.mtime == seen.get("mtime") and info.mtime:
        return False
    # Touched or rewritten: new only when the bytes changed.
    return bool(content_hash(info) != seen.get("hash"))


def _contract_columns(contract: Contract | None) -> dict[str, pl.DataType | None] | None:
    if contract is None or not contract.fields:
        return None
    return {f.name: f.polars_dtype for f in contract.fields}


# -- SQL ---------------------------------------------------------------------------------------


def _read_sql(
    name: str,
    spec: SqlSource,
    base_dir: Path,
    since: Position | None,
    until: Position | None,
) -> Reading:
    if not spec.incremental:
        return Reading(None, 1, read_sql(spec, base_dir, name=name))
    low = decode_value((since or {}).get("cursor"))
    high = decode_value(until.get("cursor")) if until is not None else high_water(spec, base_dir)
    if high is None or (low is not None and high <= low):
        return Reading({"cursor": encode_value(low)}, 0, iter(()))
    batches = read_sql(spec, base_dir, since=low, until=high, name=name)
    return Reading({"cursor": encode_value(high)}, 1, batches)


def encode_value(value: Any) -> dict[str, Any] | None:
    """A cursor value as JSON-ready data that :func:`decode_value` turns back, type and all."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, bool | int | float | str):
        return {"type": type(value).__name__, "value": value}
    msg = f"cannot keep a cursor value of type {type(value).__name__}: use a number, date or text"
    raise SourceError(msg)


def decode_value(data: Mapping[str, Any] | None) -> Any:
    """The cursor value that :func:`encode_value` encoded."""
    if data is None:
        return None
    kind, value = data["type"], data["value"]
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


def _combined(batches: list[Batch], position: Position | None, parts: int) -> Ingested:
    frames = [b.data for b in batches if b.data.width]
    data = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    schema = pl.Schema(REJECT_SCHEMA)
    rejects = [b.rejects.cast(schema) for b in batches if b.rejects.height]
    return Ingested(
        data=data,
        rejects=pl.concat(rejects) if rejects else empty_rejects(),
        position=position,
        parts=parts,
    )
