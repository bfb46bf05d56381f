"""Streaming: window state saved as the input rows each checkpoint added (a changelog).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create stream_state."""
    op.create_table(
        "stream_state",
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True),
        sa.Column("view", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("newest_us", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    """Drop stream_state."""
    op.drop_table("stream_state")
