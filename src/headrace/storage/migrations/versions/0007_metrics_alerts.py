"""Monitoring: metrics per run and node, and the alerts that fired (with their evidence).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headrace.storage.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create run_metrics, node_metrics and alerts."""
    op.create_table(
        "run_metrics",
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
    op.create_table(
        "node_metrics",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("node", sa.String(200), primary_key=True),
        sa.Column("partition", sa.String(200), primary_key=True),
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
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(64), primary_key=True),
        sa.Column("rule", sa.String(200), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("fired_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("pipeline", sa.String(200)),
        sa.Column("run_id", sa.String(64), index=True),
        sa.Column("node", sa.String(200)),
        sa.Column("partition", sa.String(200), nullable=False),
        sa.Column("observed", sa.Float()),
        sa.Column("threshold", sa.Float()),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("deliveries", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    for table in ("alerts", "node_metrics", "run_metrics"):
        op.drop_table(table)
