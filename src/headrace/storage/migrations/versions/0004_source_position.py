"""Dataset versions remember how far an ingest node's source was read.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add dataset_versions.position."""
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("position", sa.JSON()))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("position")
