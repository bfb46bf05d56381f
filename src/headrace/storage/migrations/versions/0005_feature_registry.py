"""The feature registry: view and feature-set versions, model bindings, materialisations.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headrace.storage.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the registry tables."""
    op.create_table(
        "feature_views",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("name", "fingerprint", name="uq_feature_views_fingerprint"),
    )
    op.create_table(
        "feature_sets",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("name", "fingerprint", name="uq_feature_sets_fingerprint"),
    )
    op.create_table(
        "model_bindings",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("model_version", sa.String(100), primary_key=True),
        sa.Column("feature_set", sa.String(200), nullable=False),
        sa.Column("feature_set_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "materialisations",
        sa.Column("store", sa.String(300), primary_key=True),
        sa.Column("view", sa.String(200), primary_key=True),
        sa.Column("view_version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("dataset_version", sa.BigInteger(), nullable=False),
        sa.Column("as_of", UTCDateTime()),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("materialised_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "training_sets",
        sa.Column("training_set_id", sa.String(64), primary_key=True),
        sa.Column("feature_set", sa.String(200), nullable=False, index=True),
        sa.Column("feature_set_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    """Drop the registry tables."""
    for table in (
        "training_sets",
        "materialisations",
        "model_bindings",
        "feature_sets",
        "feature_views",
    ):
        op.drop_table(table)
