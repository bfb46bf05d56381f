"""Lineage queries over the run records: what a dataset version was made from, what it made.

Every node run records which version of each input it read (``node_runs.inputs``) and which
version it wrote; training sets record the view dataset versions they read; feature set
versions pin view versions. That is enough to walk version-level lineage both ways:

- **upstream** of ``D@v``: the node run that wrote it, then the versions it read, recursively
  (an input handed over in memory — an ephemeral node — is followed through that node's own
  run in the same run);
- **downstream** of ``D@v``: the node runs that read ``D@v`` and the versions they wrote,
  recursively, plus the training sets that read it and the feature set versions whose views
  it feeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from headrace.core.lineage import LineageGraph, LineageItem
from headrace.errors import DatasetNotFoundError
from headrace.storage.metadata import MetadataStore
from headrace.storage.schema import (
    dataset_versions,
    feature_sets,
    feature_views,
    node_runs,
    training_sets,
)

__all__ = ["LineageIndex"]

_MAX_ITEMS = 5000
"""A query stops growing the graph past this many items (a guard, not a limit in practice)."""


class LineageIndex:
    """Lineage queries over one metadata database."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def item(self, dataset: str, version: int | None = None) -> LineageItem:
        """The lineage item of a dataset version (default: the newest)."""
        query = sa.select(dataset_versions).where(dataset_versions.c.dataset == dataset)
        if version is None:
            query = query.order_by(dataset_versions.c.version.desc()).limit(1)
        else:
            query = query.where(dataset_versions.c.version == version)
        with self.metadata.reading() as c:
            row = c.execute(query).mappings().first()
        if row is None:
            which = "any version" if version is None else f"version {version}"
            msg = (
                f"no recorded {which} of dataset {dataset!r}; see `headrace datasets` "
                f"(and `headrace datasets history {dataset}`)"
            )
            raise DatasetNotFoundError(msg)
        return _dataset_item(row)

    def graph(
        self, dataset: str, version: int | None = None, *, upstream: bool = True,
        downstream: bool = True,
    ) -> LineageGraph:  # fmt: skip
        """The lineage graph around ``dataset@version``."""
        root = self.item(dataset, version)
        graph = LineageGraph(root)
        if upstream:
            self._walk_up(graph, root)
        if downstream:
            self._walk_down(graph, root)
        return graph

    # -- upstream ----------------------------------------------------------------------------

    def _walk_up(self, graph: LineageGraph, start: LineageItem) -> None:
        todo = [start]
        seen: set[str] = set()
        while todo and len(graph.items) < _MAX_ITEMS:
            item = todo.pop()
            if item.key in seen or item.run_id is None or item.node is None:
                continue
            seen.add(item.key)
            for run in self._node_runs(item.run_id, item.node, item):
                for upstream, version in (run["inputs"] or {}).items():
                    parent = (
                        self._dataset(upstream, int(version))
                        if version is not None
                        else self._memory(item.run_id, upstream)
                    )
                    graph.link(parent, item)
                    todo.append(parent)

    def _node_runs(self, run_id: str, node: str, item: LineageItem) -> list[sa.RowMapping]:
        query = sa.select(node_runs).where(node_runs.c.run_id == run_id, node_runs.c.node == node)
        if item.kind == "dataset":
            query = query.where(node_runs.c.output_version == item.version)
        with self.metadata.reading() as c:
            return list(c.execute(query).mappings())

    def _dataset(self, dataset: str, version: int) -> LineageItem:
        query = sa.select(dataset_versions).where(
            dataset_versions.c.dataset == dataset, dataset_versions.c.version == version
        )
        with self.metadata.reading() as c:
            row = c.execute(query).mappings().first()
        if row is None:  # written outside headrace's records (or vacuumed): a bare item
            return LineageItem("dataset", dataset, version)
        return _dataset_item(row)

    def _memory(self, run_id: str, node: str) -> LineageItem:
        query = sa.select(node_runs.c.code_hash).where(
            node_runs.c.run_id == run_id, node_runs.c.node == node
        )
        with self.metadata.reading() as c:
            code = c.execute(query).scalar()
        return LineageItem("memory", node, run_id, run_id=run_id, node=node, code_hash=code)

    # -- downstream --------------------------------------------------------------------------

    def _walk_down(self, graph: LineageGraph, start: LineageItem) -> None:
        todo = [start]
        seen: set[str] = set()
        while todo and len(graph.items) < _MAX_ITEMS:
            item = todo.pop()
            if item.key in seen:
                continue
            seen.add(item.key)
            for child in self._readers(item):
                graph.link(item, child)
                todo.append(child)
            if item.kind == "dataset":
                for reader in self._training_and_feature_sets(item):
                    graph.link(item, reader)

    def _readers(self, item: LineageItem) -> Iterator[LineageItem]:
        """What node runs made from ``item``: written datasets, or in-memory outputs."""
        query = sa.select(node_runs).where(node_runs.c.inputs.is_not(None))
        if item.kind == "memory":
            query = query.where(node_runs.c.run_id == item.run_id)
        with self.metadata.reading() as c:
            rows = list(c.execute(query).mappings())
        for row in rows:
            inputs: dict[str, Any] = row["inputs"] or {}
            if item.name not in inputs:
                continue
            read = inputs[item.name]
            if item.kind == "dataset" and read != item.version:
                continue
            if item.kind == "memory" and read is not None:
                continue
            if row["output_dataset"] is not None and row["output_version"] is not None:
                if row["status"] == "succeeded":
                    yield self._dataset(row["output_dataset"], int(row["output_version"]))
            elif row["status"] == "succeeded":
                yield LineageItem(
                    "memory",
                    row["node"],
                    row["run_id"],
                    run_id=row["run_id"],
                    node=row["node"],
                    code_hash=row["code_hash"],
                )

    def _training_and_feature_sets(self, item: LineageItem) -> Iterator[LineageItem]:
        with self.metadata.reading() as c:
            sets = list(c.execute(sa.select(training_sets)).mappings())
            versions = list(c.execute(sa.select(feature_sets)).mappings())
            # the view versions whose logic computed this dataset version
            computed_by = {
                int(v)
                for (v,) in c.execute(
                    sa.select(feature_views.c.version).where(
                        feature_views.c.name == item.name,
                        feature_views.c.fingerprint == item.code_hash,
                    )
                )
            }
        for row in sets:
            for view, read in (row["inputs"] or {}).items():
                if read.get("dataset") == item.name and read.get("version") == item.version:
                    yield LineageItem(
                        "training_set",
                        str(row["training_set_id"]),
                        f"{row['feature_set']} v{row['feature_set_version']}",
                        created_at=row["created_at"],
                        node=view,
                    )
        for row in versions:
            pinned = {int(v) for view, _feature, v in row["features"] if view == item.name}
            if pinned & computed_by:
                yield LineageItem("feature_set", row["name"], int(row["version"]))


def _dataset_item(row: sa.RowMapping) -> LineageItem:
    return LineageItem(
        "dataset",
        row["dataset"],
        int(row["version"]),
        run_id=row["run_id"],
        node=row["node"],
        code_hash=row["code_hash"],
        created_at=row["created_at"],
    )
