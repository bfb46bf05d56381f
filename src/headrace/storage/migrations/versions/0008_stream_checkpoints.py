"""Streaming: checkpoints (positions + state per partition), intents, group members.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headrace.storage.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create stream_checkpoints, stream_intents and stream_members."""
    op.create_table(
        "stream_checkpoints",
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger()),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("saved_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "stream_intents",
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "stream_members",
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("member", sa.String(64), primary_key=True),
        sa.Column("heartbeat", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    """Drop the streaming tables."""
    op.drop_table("stream_members")
    op.drop_table("stream_intents")
    op.drop_table("stream_checkpoints")
