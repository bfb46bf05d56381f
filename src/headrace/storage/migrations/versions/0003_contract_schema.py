"""Quality results remember the contract's schema and approved breaking changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add contract_schema and approved_changes."""
    with op.batch_alter_table("quality_results") as batch:
        batch.add_column(sa.Column("contract_schema", sa.JSON()))
        batch.add_column(sa.Column("approved_changes", sa.JSON()))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("quality_results") as batch:
        batch.drop_column("approved_changes")
        batch.drop_column("contract_schema")
