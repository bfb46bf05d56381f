"""The headrace exception tree.

Every error headrace raises on purpose is a :class:`HeadraceError`. Its message names the
object that is wrong (a node, a dataset, a setting) and the likely fix. Errors from libraries
(Polars, deltalake, SQLAlchemy, ...) are converted at the boundary with ``raise ... from exc``
so that the original traceback stays available (``headrace --debug``).

::

    HeadraceError
    ├── ConfigError                  headrace.toml / environment settings are wrong
    │   └── ProjectNotFoundError     no headrace.toml where one was expected
    ├── PipelineError                the pipeline definition is wrong (found at plan time)
    │   ├── DuplicateNodeError       two nodes with one name
    │   ├── UnknownInputError        a node names an input that is not a node
    │   ├── CycleError               the dependencies form a cycle
    │   ├── MissingConfigError       a node needs a config value nobody set
    │   ├── PartitionError           a partition key or range that does not fit the node
    │   ├── UnknownNodeError         a node or pipeline name that does not exist
    │   ├── FeatureDefinitionError   an entity, feature view or feature set is declared wrong
    │   └── NotStreamableError       a streaming job needs a batch-only node
    ├── NodeExecutionError           a node's function failed (after its retries)
    │   └── NodeTimeoutError         a node ran longer than its timeout
    ├── RunFailedError               a run ended with failed nodes
    ├── ReproductionError            a run cannot be reproduced (code changed, inputs gone)
    ├── ContractError                a data contract is wrong (unknown column, bad regex, ...)
    ├── QualityGateError             validated data scored below the gate or failed a check
    ├── DriftError                   data or sketches that cannot be compared for drift
    ├── SchemaChangeError            a contract in use changed in a breaking way, unapproved
    ├── DatasetError                 reading or writing a versioned dataset failed
    │   ├── DatasetNotFoundError     no such dataset
    │   └── DatasetVersionNotFoundError  no such version of a dataset
    ├── MetadataError                the metadata database cannot be reached or migrated
    ├── StreamError                  a streaming job cannot start or continue
    │   └── BrokerError              a broker stayed unreachable (also a SourceError)
    ├── FeatureStoreError            a feature store request cannot be served
    │   ├── UnknownFeatureError      no such view, feature, feature set, version or model
    │   ├── EntityRowsError          entity rows/keys lack a join key or the time column
    │   └── OnlineStoreError         the online store cannot be reached, read or written
    └── SourceError                  a source cannot be read (missing file, bad DSN, ...)
        └── SourceUnavailableError   a database stayed unreachable through every retry
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "ConfigError",
    "ContractError",
    "CycleError",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetVersionNotFoundError",
    "DriftError",
    "DuplicateNodeError",
    "EntityRowsError",
    "FeatureDefinitionError",
    "FeatureStoreError",
    "HeadraceError",
    "MetadataError",
    "MissingConfigError",
    "NodeExecutionError",
    "NodeTimeoutError",
    "NotStreamableError",
    "OnlineStoreError",
    "PartitionError",
    "PipelineError",
    "ProjectNotFoundError",
    "QualityGateError",
    "ReproductionError",
    "RunFailedError",
    "SchemaChangeError",
    "SourceError",
    "SourceUnavailableError",
    "StreamError",
    "UnknownFeatureError",
    "UnknownInputError",
    "UnknownNodeError",
]


class HeadraceError(Exception):
    """Root of every error headrace raises on purpose."""


class ConfigError(HeadraceError):
    """A setting in ``headrace.toml`` or a ``HEADRACE_*`` variable is wrong."""


class ProjectNotFoundError(ConfigError):
    """No ``headrace.toml`` was found where a project was expected."""


class PipelineError(HeadraceError):
    """The pipeline definition is wrong; raised before anything runs."""


class DuplicateNodeError(PipelineError):
    """Two nodes share one name."""


class UnknownInputError(PipelineError):
    """A node names an input that is neither a node nor a config value."""


class CycleError(PipelineError):
    """The node dependencies form a cycle."""


class MissingConfigError(PipelineError):
    """A node declares a config key that has no value."""


class PartitionError(PipelineError):
    """A partition key or range does not fit the node's partition scheme."""


class UnknownNodeError(PipelineError):
    """A node or pipeline name that does not exist was asked for."""


class FeatureDefinitionError(PipelineError):
    """An entity, feature view or feature set is declared wrong (found at declaration)."""


class NodeExecutionError(HeadraceError):
    """A node's function raised (after all its retries)."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(message)
        self.node = node


class NodeTimeoutError(NodeExecutionError):
    """A node ran longer than its timeout."""


class RunFailedError(HeadraceError):
    """A run ended with at least one failed node."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class ReproductionError(HeadraceError):
    """A run cannot be reproduced: its code changed, or an input version is gone."""


class ContractError(HeadraceError):
    """A data contract is wrong: unknown column or type, invalid regex, bad bounds."""


class QualityGateError(HeadraceError):
    """Validated data scored below its gate, or an ``error`` dataset-level check failed."""


class DriftError(HeadraceError):
    """Sketches or data that cannot be compared (unknown column, other type, other bins)."""


class SchemaChangeError(HeadraceError):
    """A node's contract changed in a breaking way and the change was not approved."""


class DatasetError(HeadraceError):
    """Reading or writing a versioned dataset failed."""


class DatasetNotFoundError(DatasetError):
    """No dataset with that name exists."""


class DatasetVersionNotFoundError(DatasetError):
    """The dataset exists, but not at that version."""


class MetadataError(HeadraceError):
    """The metadata database cannot be reached, read or migrated."""


class SourceError(HeadraceError):
    """A source cannot be read: a missing file, a wrong DSN, an unknown source type."""


class SourceUnavailableError(SourceError):
    """A database stayed unreachable (or kept dropping the connection) through every retry."""


class FeatureStoreError(HeadraceError):
    """A feature store request (training set, lookup, materialisation) cannot be served."""


class UnknownFeatureError(FeatureStoreError):
    """No such feature view, feature, feature set, feature-set version or model binding."""


class EntityRowsError(FeatureStoreError):
    """Entity rows or lookup keys lack a join key or the timestamp column."""


class OnlineStoreError(FeatureStoreError):
    """The online store cannot be reached, read or written."""


class StreamError(HeadraceError):
    """A streaming job cannot start or continue (see the message for the object and the fix)."""


class BrokerError(StreamError, SourceError):
    """A stream broker (Kafka, NATS, Redis) stayed unreachable or refused a request."""


class NotStreamableError(PipelineError):
    """A node a streaming job needs cannot run on a stream (global sort, dedup, batch code)."""
