"""Storage fixtures: a dataset store in a temp folder, a metadata store per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.storage.datasets import DatasetStore
from headrace.storage.metadata import MetadataStore


@pytest.fixture
def datasets(tmp_path: Path) -> DatasetStore:
    """An empty dataset store under a temporary folder."""
    return DatasetStore(tmp_path / "datasets")


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty metadata database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(metadata_url: str) -> Iterator[MetadataStore]:
    """An opened (migrated) metadata store, closed after the test."""
    with MetadataStore(metadata_url) as opened:
        yield opened
