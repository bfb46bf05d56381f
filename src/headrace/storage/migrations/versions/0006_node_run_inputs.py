"""Node runs remember which version of each input dataset they read.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add node_runs.inputs: {upstream node: dataset version read, or null (in memory)}."""
    with op.batch_alter_table("node_runs") as batch:
        batch.add_column(sa.Column("inputs", sa.JSON()))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("node_runs") as batch:
        batch.drop_column("inputs")
