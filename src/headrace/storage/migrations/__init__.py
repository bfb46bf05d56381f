"""Alembic migrations of the metadata database (applied automatically on open)."""
