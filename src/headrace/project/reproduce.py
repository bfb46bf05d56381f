"""``headrace reproduce RUN_ID``: re-execute a run's nodes on the exact inputs and compare.

For every node the run *computed* (it wrote a new dataset version), the node is executed
again with the config of the run and, for each input, the very dataset version the run read
(Delta time travel; inputs handed over in memory are recomputed the same way). The output is
compared with the stored version by content hash (rows as a multiset, schema included); the
first difference is reported when they differ. Nothing is written to the project: the
re-computed outputs go to a scratch folder as Parquet files.

Nodes that read the outside world through a connector (ingest nodes) and sinks (side
effects) are not re-executed; function sources are, and report a difference when what they
read has changed since.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from headrace.core.context import NodeContext
from headrace.core.fingerprint import content_hash
from headrace.core.graph import Graph
from headrace.core.node import BindingKind, Node, NodeKind
from headrace.core.records import NodeRunRecord, NodeStatus, RunRecord
from headrace.engines.batch.task import as_frame, evaluate_node
from headrace.engines.compute.features import compute_view, view_input
from headrace.errors import ReproductionError
from headrace.quality.validation import validate

if TYPE_CHECKING:
    from headrace.project.project import Project

__all__ = ["NodeCheck", "Reproduction", "reproduce"]

Outcome = Literal["identical", "different", "skipped"]


@dataclass(frozen=True)
class NodeCheck:
    """One node (partition) of the run, re-executed and compared (or why it was not)."""

    node: str
    partition: str | None
    outcome: Outcome
    detail: str = ""
    dataset: str | None = None
    version: int | None = None
    expected: str | None = None
    """Content hash of the stored version."""
    actual: str | None = None
    """Content hash of the re-computed output."""


@dataclass
class Reproduction:
    """What ``reproduce`` found."""

    run_id: str
    scratch: Path
    checks: list[NodeCheck] = field(default_factory=list)
    code_changed: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when every re-executed node gave exactly the stored output."""
        return all(c.outcome != "different" for c in self.checks) and any(
            c.outcome == "identical" for c in self.checks
        )

    @property
    def first_difference(self) -> NodeCheck | None:
        """The first node (in run order) whose output differs."""
        return next((c for c in self.checks if c.outcome == "different"), None)


def reproduce(
    project: Project, run_id: str, *, allow_code_change: bool = False, into: Path | None = None
) -> Reproduction:
    """Re-execute run ``run_id`` on its exact inputs and compare every output it wrote."""
    record = project.get_run(run_id)
    graph = project.graph(record.pipeline, _config(project, record))
    changed = _code_changes(graph, record)
    if changed and not allow_code_change:
        msg = (
            f"the code of node(s) {', '.join(changed)} changed since run {record.run_id}: its "
            "outputs cannot be reproduced from today's code. Restore that code (the run "
            "recorded each node's code hash), or pass --allow-code-change to compare anyway"
        )
        raise ReproductionError(msg)
    scratch = into or Path(tempfile.mkdtemp(prefix=f"headrace-reproduce-{record.run_id}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    result = Reproduction(record.run_id, scratch, code_changed=changed)
    session = _Session(project, graph, record)
    for node_record in record.nodes:
        result.checks.append(session.check(node_record, scratch))
    return result


def _config(project: Project, record: RunRecord) -> dict[str, Any]:
    """The run's config; masked secrets come from today's settings (they were never stored)."""
    current = dict(project.settings.config)
    return {
        key: current.get(key, value) if value == "***" else value
        for key, value in record.config.items()
    }


def _code_changes(graph: Graph, record: RunRecord) -> list[str]:
    changed = []
    for node_record in record.nodes:
        if node_record.status is not NodeStatus.SUCCEEDED or node_record.node not in graph:
            continue
        if graph.code_hashes[node_record.node] != node_record.code_hash:
            changed.append(node_record.node)
    return sorted(set(changed))


class _Session:
    """Re-executes nodes of one run, memoising in-memory (ephemeral) outputs."""

    def __init__(self, project: Project, graph: Graph, record: RunRecord) -> None:
        self.project = project
        self.graph = graph
        self.record = record
        self._memory: dict[tuple[str, str | None], Any] = {}
        self._records = {(n.node, n.partition): n for n in record.nodes}

    def check(self, node_record: NodeRunRecord, scratch: Path) -> NodeCheck:
        name, partition = node_record.node, node_record.partition

        def found(outcome: Outcome, detail: str = "", **extra: Any) -> NodeCheck:
            return NodeCheck(name, partition, outcome, detail, **extra)

        if node_record.status is not NodeStatus.SUCCEEDED:
            why = node_record.status.value + (
                ": nothing was computed" if node_record.cache_hit else ""
            )
            return found("skipped", why)
        if name not in self.graph:
            return found("skipped", "node no longer in the pipeline")
        node = self.graph.node(name)
        if node.kind is NodeKind.SINK:
            return found("skipped", "sink: side effects are not repeated")
        if node.source is not None:
            return found("skipped", "ingest node: reads the outside world incrementally")
        if node_record.output_dataset is None or node_record.output_version is None:
            return found("skipped", "no stored output")
        dataset, version = node_record.output_dataset, node_record.output_version
        try:
            actual = self._output(node, node_record)
        except Exception as exc:
            failure = f"re-execution failed: {type(exc).__name__}: {exc}"
            return found("different", failure, dataset=dataset, version=version)
        stored = self.project.datasets.scan(dataset, version)
        if partition is not None and node.partitions is not None:
            stored = stored.filter(node.partitions.filter(partition))
        expected_frame = stored.collect()
        expected, got = content_hash(expected_frame), content_hash(actual)
        suffix = f"@{partition}" if partition else ""
        actual.write_parquet(scratch / f"{name}{suffix}.parquet")
        if expected == got:
            return found(
                "identical", dataset=dataset, version=version, expected=expected, actual=got
            )
        return found(
            "different",
            first_difference(expected_frame, actual),
            dataset=dataset,
            version=version,
            expected=expected,
            actual=got,
        )

    def _output(self, node: Node, node_record: NodeRunRecord) -> pl.DataFrame:
        value = self._value(node, node_record)
        frame = as_frame(node, value)
        if node.contract is not None:
            frame = validate(frame, node.contract).valid
        return frame

    def _value(self, node: Node, node_record: NodeRunRecord) -> Any:
        inputs = {
            upstream: self._input(upstream, version, node, node_record.partition)
            for upstream, version in node_record.inputs.items()
        }
        if node.features is not None:
            view = node.features
            source = inputs[view.source]
            lazy = source.lazy() if isinstance(source, pl.DataFrame) else source
            return compute_view(view, view_input(view, lazy, what=f"source {view.source!r}")).frame
        config = {
            b.parameter: self.graph.config.get(b.source, b.default)
            for b in node.bindings
            if b.kind is BindingKind.CONFIG
        }
        context = NodeContext(
            run_id=self.record.run_id,
            node=node.name,
            attempt=1,
            partition=node_record.partition,
            scheme=node.partitions,
            config=self.graph.config,
        )
        return evaluate_node(node, inputs, config, context, node_record.partition)

    def _input(self, upstream: str, version: int | None, node: Node, partition: str | None) -> Any:
        upstream_node = self.graph.node(upstream)
        same_scheme = partition is not None and upstream_node.partitions == node.partitions
        where = (
            node.partitions.filter(partition)
            if same_scheme and node.partitions is not None and partition is not None
            else None
        )
        if version is not None:
            return self.project.datasets.scan(upstream, version, where=where)
        key = (upstream, partition if same_scheme else None)
        if key not in self._memory:
            parent = self._records.get(key) or self._records.get((upstream, None))
            if parent is None:
                msg = (
                    f"run {self.record.run_id} handed {upstream!r} to {node.name!r} in memory "
                    "but has no record of computing it"
                )
                raise ReproductionError(msg)
            self._memory[key] = self._value(upstream_node, parent)
        return self._memory[key]


def first_difference(expected: pl.DataFrame, actual: pl.DataFrame) -> str:
    """A one-line description of how two outputs differ (schema, size, or the first row).

    >>> first_difference(pl.DataFrame({"a": [1, 2]}), pl.DataFrame({"a": [1, 3]}))
    'first differing row (in sorted order): stored {"a":2} vs re-computed {"a":3}'
    """
    if expected.schema != actual.schema:
        stored = dict(expected.schema)
        now = dict(actual.schema)
        diffs = [
            f"{c}: {stored.get(c)} -> {now.get(c)}"
            for c in dict.fromkeys([*stored, *now])
            if stored.get(c) != now.get(c)
        ]
        return "schema differs: " + "; ".join(diffs)
    if expected.height != actual.height:
        return f"row count differs: stored {expected.height:,}, re-computed {actual.height:,}"
    columns = expected.columns
    left = expected.sort(columns, nulls_last=True)
    right = actual.sort(columns, nulls_last=True)
    for i in range(left.height):
        a, b = left.row(i, named=True), right.row(i, named=True)
        if a != b:
            return (
                f"first differing row (in sorted order): stored {_row(a)} vs re-computed {_row(b)}"
            )
    return "same rows, different hash (float rounding or ordering inside a value)"


def _row(row: dict[str, Any]) -> str:
    import json

    return json.dumps(row, default=str, separators=(",", ":"))
