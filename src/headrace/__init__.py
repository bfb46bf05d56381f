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
from headrace.core.drift import Drift
from headrace.core.features import Aggregate, Entity, Feature, FeatureSet, FeatureView
from headrace.core.graph import Graph
from headrace.core.node import Node, NodeKind, RetryPolicy
from headrace.core.partitions import DailyPartitions, PartitionScheme, StaticPartitions
from headrace.core.pipeline import Pipeline
from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus, RunRecord, RunStatus
from headrace.core.source import CsvOptions, FileSource, SqlSource, files, sql
from headrace.core.stream import StreamSource
from headrace.core.windows import Hopping, Session, Tumbling
from headrace.engines.batch.executor import Executor, LocalExecutor
from headrace.engines.batch.run import RunResult
from headrace.errors import HeadraceError
from headrace.project.features import FeatureStore, TrainingSet
from headrace.project.online import OnlineFeatures
from headrace.project.project import Project
from headrace.project.settings import Settings
from headrace.quality.validation import ValidationResult, validate, validate_stream

__all__ = [
    "Aggregate",
    "Check",
    "Contract",
    "CsvOptions",
    "DailyPartitions",
    "DatasetVersion",
    "Drift",
    "Entity",
    "Executor",
    "Feature",
    "FeatureSet",
    "FeatureStore",
    "FeatureView",
    "Field",
    "FileSource",
    "Graph",
    "HeadraceError",
    "Hopping",
    "LocalExecutor",
    "Node",
    "NodeContext",
    "NodeKind",
    "NodeRunRecord",
    "NodeStatus",
    "OnlineFeatures",
    "PartitionScheme",
    "Pipeline",
    "Project",
    "RetryPolicy",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "Session",
    "Settings",
    "Severity",
    "SqlSource",
    "StaticPartitions",
    "StreamSource",
    "TrainingSet",
    "Tumbling",
    "ValidationResult",
    "checks",
    "errors",
    "files",
    "sql",
    "validate",
    "validate_stream",
]
