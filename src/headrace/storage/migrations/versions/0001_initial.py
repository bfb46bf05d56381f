"""Runs, node runs and dataset versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headrace.storage.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime()),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("headrace_version", sa.String(32), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_runs_pipeline", "runs", ["pipeline"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "node_runs",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("node", sa.String(200), primary_key=True),
        sa.Column("partition", sa.String(200), primary_key=True),
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
    )
    op.create_index("ix_node_runs_lookup", "node_runs", ["pipeline", "node", "partition", "status"])
    op.create_table(
        "dataset_versions",
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("node", sa.String(200), nullable=False),
        sa.Column("partition", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rows_written", sa.BigInteger(), nullable=False),
        sa.Column("total_rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_dataset_versions_run_id", "dataset_versions", ["run_id"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("dataset_versions")
    op.drop_table("node_runs")
    op.drop_table("runs")
