"""What the batch engine needs from storage, as protocols.

The engine does not import :mod:`headrace.storage`; the project layer hands it objects that
fit these protocols (the Delta dataset store and the metadata store do), so the engine can be
tested, and later distributed, with other implementations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import polars as pl

from headrace.core.contract import Contract
from headrace.core.partitions import PartitionScheme
from headrace.core.records import DatasetVersion, NodeRunRecord, QualityRecord

__all__ = ["DatasetWriter", "RunLog", "Validated", "Validator", "Written"]


class Written(Protocol):
    """The result of one committed dataset write."""

    @property
    def version(self) -> int:
        """The committed version number."""
        ...

    @property
    def rows_written(self) -> int:
        """Rows in this write."""
        ...

    @property
    def total_rows(self) -> int:
        """Rows in the dataset at this version."""
        ...

    @property
    def bytes(self) -> int:
        """Size of the dataset at this version, in bytes."""
        ...

    @property
    def schema(self) -> Mapping[str, str]:
        """Column name -> dtype text."""
        ...


class Validated(Protocol):
    """What validating a frame against a contract produced (see headrace.quality)."""

    @property
    def valid(self) -> pl.DataFrame:
        """Rows passing every error check."""
        ...

    @property
    def quarantined(self) -> pl.DataFrame:
        """The other rows, with their failed rules and reasons."""
        ...

    @property
    def score(self) -> float:
        """Quality score in [0, 1]."""
        ...

    @property
    def checks(self) -> pl.DataFrame:
        """One row per check."""
        ...

    @property
    def failed_error_checks(self) -> list[str]:
        """Rule ids of the ``error`` checks that failed."""
        ...

    def gate(self, threshold: float, *, what: str = "") -> None:
        """Raise a QualityGateError when the gate is not met."""
        ...


class Validator(Protocol):
    """Runs a contract over a frame."""

    def __call__(
        self,
        data: pl.DataFrame,
        contract: Contract,
        *,
        lookups: Mapping[str, pl.DataFrame | pl.LazyFrame] | None = None,
        report: tuple[str, float] | None = None,
    ) -> Validated:
        """Validate ``data`` (``lookups``: the datasets its ``references`` checks name).

        ``report=(name, gate)`` asks for a quality report of this validation under ``name``
        (an implementation may write one, e.g. as HTML, or ignore it).
        """
        ...


class DatasetWriter(Protocol):
    """Versioned datasets: atomic writes and time-travel reads."""

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
    ) -> Written:
        """Commit ``frame`` as a new version (whole dataset, one partition, or appended).

        ``transaction=(app_id, n)`` tags the commit as step ``n`` of writer ``app_id``;
        ``replace_where`` (SQL) replaces only the rows matching it.
        """
        ...

    def changed_files(
        self, name: str, old_version: int, new_version: int
    ) -> tuple[list[str], list[str]] | None:
        """Data files (added, removed) between two versions; None when it cannot be told."""
        ...

    def commit_metadata(self, name: str, version: int) -> dict[str, str]:
        """The headrace commit metadata of one version."""
        ...

    def stage(self, name: str, frames: Iterable[pl.DataFrame]) -> Any:
        """Write ``frames`` as uncommitted files of ``name``; a handle for commit or discard."""
        ...

    def commit_staged(
        self,
        staged: Any,
        *,
        commit_metadata: Mapping[str, str],
        append: bool,
        transaction: tuple[str, int] | None = None,
    ) -> Written:
        """Publish staged files as one version."""
        ...

    def discard(self, staged: Any) -> None:
        """Delete staged files."""
        ...

    def transaction_version(self, name: str, app_id: str) -> int | None:
        """The last step writer ``app_id`` committed to ``name``."""
        ...

    def latest_commit_metadata(self, name: str) -> dict[str, str]:
        """The headrace commit metadata of the newest version."""
        ...

    def current_version(self, name: str) -> int | None:
        """The newest committed version."""
        ...

    def scan(
        self, name: str, version: int | None = None, *, where: pl.Expr | None = None
    ) -> pl.LazyFrame:
        """Read a version lazily."""
        ...

    def exists(self, name: str) -> bool:
        """True when the dataset has a committed version."""
        ...


class RunLog(Protocol):
    """Where runs, node runs and dataset versions are recorded and looked up."""

    def record_node_runs(self, pipeline: str, records: list[NodeRunRecord]) -> None:
        """Store finished node runs."""
        ...

    def record_dataset_version(self, version: DatasetVersion) -> None:
        """Store a committed dataset version."""
        ...

    def record_quality(self, record: QualityRecord) -> None:
        """Store a validation result."""
        ...

    def last_contract_schema(
        self, pipeline: str, node: str
    ) -> dict[str, tuple[str | None, bool]] | None:
        """The contract schema recorded with a node's newest validation, or None."""
        ...

    def last_successful_node_run(
        self, pipeline: str, node: str, partition: str | None
    ) -> NodeRunRecord | None:
        """The newest succeeded run of a node partition."""
        ...

    def latest_write(self, dataset: str, partition: str | None) -> DatasetVersion | None:
        """The newest version that wrote ``partition`` (or the whole dataset)."""
        ...

    def get_version(self, dataset: str, version: int) -> DatasetVersion | None:
        """One recorded version."""
        ...
