"""The metadata database's tables (SQLAlchemy Core). Changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "alerts",
    "dataset_versions",
    "feature_sets",
    "feature_views",
    "materialisations",
    "metadata",
    "model_bindings",
    "node_metrics",
    "node_runs",
    "quality_results",
    "run_metrics",
    "runs",
    "training_sets",
]


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops zones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetime given to the metadata store; use a UTC-aware one"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("pipeline", sa.String(200), nullable=False, index=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("ended_at", UTCDateTime()),
    sa.Column("params", sa.JSON(), nullable=False),
    sa.Column("config", sa.JSON(), nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("headrace_version", sa.String(32), nullable=False),
    sa.Column("error", sa.Text()),
)

node_runs = sa.Table(
    "node_runs",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
    sa.Column("node", sa.String(200), primary_key=True),
    sa.Column("partition", sa.String(200), primary_key=True),  # '' when unpartitioned
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("rows_in", sa.BigInteger()),
    sa.Column("rows_out", sa.BigInteger()),
    sa.Column("bytes_out", sa.BigInteger()),
    sa.Column("cache_hit", sa.Boolean(), nullable=False),
    sa.Column("cache_reason", sa.String(200), nullable=False),
    sa.Column("cache_key", sa.String(64), nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("output_dataset", sa.String(200)),
    sa.Column("output_version", sa.BigInteger()),
    sa.Column("error", sa.Text()),
    sa.Column("inputs", sa.JSON()),
    sa.Index("ix_node_runs_lookup", "pipeline", "node", "partition", "status"),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("partition", sa.String(200), nullable=False),  # '' when the whole dataset
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("rows_written", sa.BigInteger(), nullable=False),
    sa.Column("total_rows", sa.BigInteger(), nullable=False),
    sa.Column("bytes", sa.BigInteger(), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("schema", sa.JSON(), nullable=False),
    sa.Column("cache_key", sa.String(64), nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("position", sa.JSON()),
)

quality_results = sa.Table(
    "quality_results",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("node", sa.String(200), primary_key=True),
    sa.Column("partition", sa.String(200), primary_key=True),  # '' when unpartitioned
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("contract", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("rows", sa.BigInteger(), nullable=False),
    sa.Column("valid_rows", sa.BigInteger(), nullable=False),
    sa.Column("quarantined_rows", sa.BigInteger(), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("gate", sa.Float()),
    sa.Column("passed", sa.Boolean(), nullable=False),
    sa.Column("checks", sa.JSON(), nullable=False),
    sa.Column("quarantine_dataset", sa.String(200)),
    sa.Column("quarantine_version", sa.BigInteger()),
    sa.Column("contract_schema", sa.JSON()),
    sa.Column("approved_changes", sa.JSON()),
)

feature_views = sa.Table(
    "feature_views",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("definition", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("name", "fingerprint", name="uq_feature_views_fingerprint"),
)

feature_sets = sa.Table(
    "feature_sets",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("features", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("name", "fingerprint", name="uq_feature_sets_fingerprint"),
)

model_bindings = sa.Table(
    "model_bindings",
    metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("model_version", sa.String(100), primary_key=True),
    sa.Column("feature_set", sa.String(200), nullable=False),
    sa.Column("feature_set_version", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

materialisations = sa.Table(
    "materialisations",
    metadata,
    sa.Column("store", sa.String(300), primary_key=True),
    sa.Column("view", sa.String(200), primary_key=True),
    sa.Column("view_version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("dataset_version", sa.BigInteger(), nullable=False),
    sa.Column("as_of", UTCDateTime()),
    sa.Column("rows", sa.BigInteger(), nullable=False),
    sa.Column("materialised_at", UTCDateTime(), nullable=False),
)

training_sets = sa.Table(
    "training_sets",
    metadata,
    sa.Column("training_set_id", sa.String(64), primary_key=True),
    sa.Column("feature_set", sa.String(200), nullable=False, index=True),
    sa.Column("feature_set_version", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("rows", sa.BigInteger(), nullable=False),
    sa.Column("inputs", sa.JSON(), nullable=False),
    sa.Column("options", sa.JSON(), nullable=False),
)

# -- monitoring (headrace.storage.monitoring) -------------------------------------------------

run_metrics = sa.Table(
    "run_metrics",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=False),
    sa.Column("duration_seconds", sa.Float(), nullable=False),
    sa.Column("nodes", sa.Integer(), nullable=False),
    sa.Column("nodes_failed", sa.Integer(), nullable=False),
    sa.Column("cache_hits", sa.Integer(), nullable=False),
    sa.Column("rows_in", sa.BigInteger()),
    sa.Column("rows_out", sa.BigInteger()),
    sa.Column("bytes_out", sa.BigInteger()),
    sa.Column("quarantined_rows", sa.BigInteger()),
    sa.Column("quality_score", sa.Float()),
    sa.Index("ix_run_metrics_pipeline_started", "pipeline", "started_at"),
)

node_metrics = sa.Table(
    "node_metrics",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("node", sa.String(200), primary_key=True),
    sa.Column("partition", sa.String(200), primary_key=True),  # '' when unpartitioned
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=False),
    sa.Column("duration_seconds", sa.Float(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("rows_in", sa.BigInteger()),
    sa.Column("rows_out", sa.BigInteger()),
    sa.Column("bytes_out", sa.BigInteger()),
    sa.Column("throughput_rows_per_second", sa.Float()),
    sa.Column("quality_score", sa.Float()),
    sa.Column("quarantined_rows", sa.BigInteger()),
    sa.Column("newest_event_time", UTCDateTime()),
    sa.Column("freshness_seconds", sa.Float()),
    sa.Column("cache_hit", sa.Boolean(), nullable=False),
    sa.Column("output_dataset", sa.String(200)),
    sa.Column("output_version", sa.BigInteger()),
    sa.Index("ix_node_metrics_node_started", "pipeline", "node", "started_at"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("alert_id", sa.String(64), primary_key=True),
    sa.Column("rule", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("fired_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("pipeline", sa.String(200)),
    sa.Column("run_id", sa.String(64), index=True),
    sa.Column("node", sa.String(200)),
    sa.Column("partition", sa.String(200), nullable=False),  # '' when none
    sa.Column("observed", sa.Float()),
    sa.Column("threshold", sa.Float()),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("evidence", sa.JSON(), nullable=False),
    sa.Column("deliveries", sa.JSON(), nullable=False),
)

stream_checkpoints = sa.Table(
    "stream_checkpoints",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("partition", sa.Integer(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("position", sa.BigInteger()),
    sa.Column("state", sa.LargeBinary(), nullable=False),
    sa.Column("owner", sa.String(64)),
    sa.Column("saved_at", UTCDateTime(), nullable=False),
)

stream_intents = sa.Table(
    "stream_intents",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("partition", sa.Integer(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
)

stream_state = sa.Table(
    "stream_state",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("partition", sa.Integer(), primary_key=True),
    sa.Column("view", sa.String(200), primary_key=True),
    sa.Column("seq", sa.BigInteger(), primary_key=True),
    sa.Column("newest_us", sa.BigInteger(), nullable=False),
    sa.Column("rows", sa.LargeBinary(), nullable=False),
)
"""A streaming job's window state: per checkpoint, partition and view, the input rows the
checkpoint added (Arrow IPC) and their newest event time; rows all older than what the view
still needs are deleted by the checkpoint that makes them useless."""

stream_members = sa.Table(
    "stream_members",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("member", sa.String(64), primary_key=True),
    sa.Column("heartbeat", UTCDateTime(), nullable=False),
)
