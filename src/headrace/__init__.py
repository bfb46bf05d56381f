"""headrace: ML data pipelines that are versioned, validated and fast.

The public API. Everything else is internal and may change.

>>> import headrace as hr
>>> pipeline = hr.Pipeline("example")
"""

from __future__ import annotations

from headrace import errors
from headrace.core import checks
from headrace.core.context import NodeContext
from headrace.core.contract import Check, Contract, Field, Severity
from headrace.core.graph import Graph
from headrace.core.node import Node, NodeKind, RetryPolicy
from headrace.core.partitions import DailyPartitions, PartitionScheme, StaticPartitions
from headrace.core.pipeline import Pipeline
from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus, RunRecord, RunStatus
from headrace.core.source import CsvOptions, FileSource, SqlSource, files, sql
from headrace.engines.batch.executor import Executor, LocalExecutor
from headrace.engines.batch.run import RunResult
from headrace.errors import HeadraceError
from headrace.project.project import Project
from headrace.project.settings import Settings
from headrace.quality.validation import ValidationResult, validate, validate_stream

__all__ = [
    "Check",
    "Contract",
    "CsvOptions",
    "DailyPartitions",
    "DatasetVersion",
    "Executor",
    "Field",
    "FileSource",
    "Graph",
    "HeadraceError",
    "LocalExecutor",
    "Node",
    "NodeContext",
    "NodeKind",
    "NodeRunRecord",
    "NodeStatus",
    "PartitionScheme",
    "Pipeline",
    "Project",
    "RetryPolicy",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "Settings",
    "Severity",
    "SqlSource",
    "StaticPartitions",
    "ValidationResult",
    "checks",
    "errors",
    "files",
    "sql",
    "validate",
    "validate_stream",
]
