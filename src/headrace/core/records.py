"""Typed records of what happened: runs, node runs and dataset versions.

These are the public, frozen views of the metadata store's rows. Times are UTC-aware.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "DatasetVersion",
    "NodeRunRecord",
    "NodeStatus",
    "QualityRecord",
    "RunRecord",
    "RunStatus",
]


class RunStatus(enum.StrEnum):
    """Where a run stands."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class NodeStatus(enum.StrEnum):
    """How one node (or one partition of it) ended in a run."""

    SUCCEEDED = "succeeded"
    CACHED = "cached"
    """Skipped: the same code, config and inputs already produced the stored output."""
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    """Not run because an input failed."""
    CANCELLED = "cancelled"
    """Not run because the run stopped at the first failure (fail-fast)."""

    @property
    def ok(self) -> bool:
        """True for the statuses that leave the node's output usable."""
        return self in (NodeStatus.SUCCEEDED, NodeStatus.CACHED)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class NodeRunRecord:
    """One node (one partition of it, when partitioned) in one run."""

    run_id: str
    node: str
    partition: str | None
    status: NodeStatus
    started_at: datetime
    ended_at: datetime
    attempts: int = 0
    rows_in: int | None = None
    rows_out: int | None = None
    bytes_out: int | None = None
    cache_hit: bool = False
    cache_reason: str = ""
    """Why the node ran or was skipped, e.g. ``code changed`` or ``inputs unchanged``."""
    cache_key: str = ""
    code_hash: str = ""
    output_dataset: str | None = None
    output_version: int | None = None
    error: str | None = None
    inputs: Mapping[str, int | None] = field(default_factory=dict)
    """Upstream node -> the version of its dataset this node read (None: handed over in
    memory, e.g. an ephemeral node). What lineage and ``headrace reproduce`` rely on."""

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return (self.ended_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = _jsonable(asdict(self))
        data["duration_s"] = round(self.duration, 6)
        return dict(data)


@dataclass(frozen=True)
class RunRecord:
    """One run of a pipeline."""

    run_id: str
    pipeline: str
    status: RunStatus
    started_at: datetime
    ended_at: datetime | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    """How it was started: partitions, full refresh, fail-fast, ..."""
    config: Mapping[str, Any] = field(default_factory=dict)
    """The pipeline config values, credentials redacted."""
    code_hash: str = ""
    error: str | None = None
    nodes: tuple[NodeRunRecord, ...] = ()

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, None while running."""
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (node runs included)."""
        data: dict[str, Any] = _jsonable({k: v for k, v in asdict(self).items() if k != "nodes"})
        data["duration_s"] = self.duration
        data["nodes"] = [node.to_dict() for node in self.nodes]
        return data


@dataclass(frozen=True)
class DatasetVersion:
    """One committed version of a versioned dataset (one Delta Lake commit)."""

    dataset: str
    version: int
    run_id: str
    node: str
    created_at: datetime
    partition: str | None
    """The partition this commit replaced, or None when it replaced the whole dataset."""
    rows_written: int
    total_rows: int
    bytes: int
    content_hash: str
    schema: Mapping[str, str]
    cache_key: str = ""
    code_hash: str = ""
    position: Mapping[str, Any] | None = None
    """For an ingest node: how far its source has been read (files seen, cursor high-water
    mark), as committed with this version."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(_jsonable(asdict(self)))


@dataclass(frozen=True)
class QualityRecord:
    """The quality result of one validated node output."""

    run_id: str
    pipeline: str
    node: str
    partition: str | None
    contract: str
    created_at: datetime
    rows: int
    valid_rows: int
    quarantined_rows: int
    score: float
    gate: float | None
    passed: bool
    checks: Sequence[Mapping[str, Any]]
    quarantine_dataset: str | None
    quarantine_version: int | None
    contract_schema: Mapping[str, Any] = field(default_factory=dict)
    """The contract's fields as column -> [type, nullable] (for schema-evolution checks)."""
    approved_changes: Sequence[str] = ()
    """Breaking contract changes this run was explicitly allowed to make."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(_jsonable(asdict(self)))
