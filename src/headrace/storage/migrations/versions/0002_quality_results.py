"""Quality results of validated node outputs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headrace.storage.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create quality_results."""
    op.create_table(
        "quality_results",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("node", sa.String(200), primary_key=True),
        sa.Column("partition", sa.String(200), primary_key=True),
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
    )


def downgrade() -> None:
    """Drop quality_results."""
    op.drop_table("quality_results")
