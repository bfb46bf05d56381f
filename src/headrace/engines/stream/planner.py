"""Which nodes a streaming job runs, and a clear refusal for those that cannot stream.

A transform can run on a stream when it maps or filters rows one at a time: its output for a
micro-batch is then the same as the matching rows of its output over all of history. The
planner calls the transform on an empty frame of the stream's schema and reads the Polars
plan: a global sort, dedup, aggregation, join, slice, a window over the whole frame, cumulative
or shifting functions, or opaque Python (``map_batches``/``map_elements``) are batch-only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from headrace.core.context import NodeContext
from headrace.core.contract import Contract
from headrace.core.features import FeatureView
from headrace.core.graph import Graph
from headrace.core.node import BindingKind, Node, NodeKind
from headrace.core.stream import StreamSource
from headrace.errors import NotStreamableError

__all__ = ["Step", "StreamPlan", "plan_stream"]

_PLAN_OPERATORS: tuple[tuple[str, str], ...] = (
    ("SORT BY", "it sorts the whole dataset (a global sort)"),
    ("UNIQUE", "it removes duplicates across the whole dataset (a global dedup)"),
    ("AGGREGATE", "it groups and aggregates the whole dataset"),
    ("JOIN", "it joins datasets"),
    ("SLICE", "it takes a slice (head/tail) of the whole dataset"),
)
_EXPRESSIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), why)
    for pattern, why in (
        (r"\.python_udf\(", "it runs opaque Python over columns (map_batches / map_elements)"),
        (r"\.over\(", "it computes a window over the whole dataset (.over)"),
        (r"\.cum_\w+\(", "it uses a cumulative function over the whole dataset"),
        (r"\.(shift|diff|rank|forward_fill|backward_fill)\(", "it depends on other rows"),
        (
            r"\.(sum|mean|min|max|std|var|median|quantile|count|n_unique|first|last|len)\(\)",
            "it aggregates over the whole dataset",
        ),
        (r"(^|[\[ (])len\(\)", "it counts the whole dataset"),
        (r"\.(sort|sort_by|unique|reverse|head|tail|slice)\(", "it reorders or slices a column"),
    )
)


@dataclass(frozen=True)
class Step:
    """A row-level transform the job applies to each micro-batch."""

    node: Node
    input: str
    """The one upstream node it reads (the stream or an earlier step)."""
    call: Callable[[pl.LazyFrame], pl.LazyFrame]


@dataclass(frozen=True)
class StreamPlan:
    """What a streaming job runs, in order."""

    stream: StreamSource
    steps: tuple[Step, ...]
    contracts: Mapping[str, Contract]
    """Node name -> its contract (row-level checks run on each micro-batch)."""
    views: tuple[FeatureView, ...]
    batch_only: Mapping[str, str]
    """Downstream nodes left to batch runs, with why."""


def plan_stream(
    graph: Graph,
    stream: StreamSource,
    schema: Mapping[str, pl.DataType],
    *,
    views: tuple[str, ...] = (),
) -> StreamPlan:
    """The plan of a job fed by ``stream``; ``views`` picks feature views (default: all).

    Raises :class:`NotStreamableError` naming the node and why when a picked view's source
    chain has a node that cannot run on a stream.
    """
    if stream.node not in graph:
        msg = (
            f"stream {stream.topic!r} feeds node {stream.node!r}, which pipeline "
            f"{graph.pipeline!r} does not have; fix pipeline.stream(...)"
        )
        raise NotStreamableError(msg)
    reachable = graph.closure([stream.node], downstream=True)
    candidates = [
        n.features
        for n in graph.nodes
        if n.features is not None and n.name in reachable and (not views or n.name in views)
    ]
    unknown = set(views) - {v.name for v in candidates}
    if unknown:
        msg = (
            f"feature view(s) {', '.join(sorted(unknown))} do not read from stream "
            f"{stream.topic!r} (node {stream.node!r}); pick views downstream of it"
        )
        raise NotStreamableError(msg)
    steps: dict[str, Step] = {}
    schemas: dict[str, pl.Schema] = {stream.node: pl.Schema(dict(schema))}
    for view in candidates:
        for name in _chain(graph, stream.node, view.source):
            if name not in steps:
                steps[name] = _step(graph.node(name), schemas, config=graph.config)
    contracts = {
        name: node.contract
        for name in [stream.node, *steps]
        if (node := graph.node(name)).contract is not None
    }
    used = {stream.node, *steps, *(v.name for v in candidates)}
    batch_only = dict.fromkeys(
        sorted(reachable - used), "reads data the stream does not carry, or is a sink/report"
    )
    order = [s for s in _topological(graph) if s in steps]
    return StreamPlan(
        stream, tuple(steps[s] for s in order), contracts, tuple(candidates), batch_only
    )


def _topological(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes]


def _chain(graph: Graph, start: str, end: str) -> list[str]:
    """The transforms from ``start`` (exclusive) to ``end`` (inclusive), upstream first."""
    chain: list[str] = []
    name = end
    while name != start:
        node = graph.node(name)
        inputs = node.inputs
        if len(inputs) != 1:
            why = (
                f"it reads {len(inputs)} datasets ({', '.join(inputs) or 'none'}); "
                "a streaming step reads exactly one stream"
            )
            raise _refuse(node, why)
        chain.append(name)
        name = inputs[0]
    return chain[::-1]


def _refuse(node: Node, why: str) -> NotStreamableError:
    return NotStreamableError(
        f"node {node.name!r} cannot run in a streaming job: {why}; compute it in a batch run "
        "(headrace run) or rewrite it as a row-level transform (maps and filters only)"
    )


def _step(node: Node, schemas: dict[str, pl.Schema], *, config: Mapping[str, Any]) -> Step:
    if node.kind is not NodeKind.TRANSFORM or node.fn is None:
        kind = "SQL" if node.sql is not None else node.kind.value
        raise _refuse(node, f"it is a {kind} node, not a Python row-level transform")
    if node.partitions is not None and any(b.kind is BindingKind.CONTEXT for b in node.bindings):
        raise _refuse(node, "it reads its partition from the context")
    upstream = node.inputs[0]
    fn = node.fn
    arguments: dict[str, Any] = {}
    for binding in node.bindings:
        if binding.kind is BindingKind.CONFIG:
            arguments[binding.parameter] = config[binding.source]
        elif binding.kind is BindingKind.CONTEXT:
            arguments[binding.parameter] = NodeContext(run_id="stream", node=node.name)
    parameter = next(b.parameter for b in node.bindings if b.kind is BindingKind.INPUT)

    def call(frame: pl.LazyFrame) -> pl.LazyFrame:
        out = fn(**arguments, **{parameter: frame})
        return out.lazy() if isinstance(out, pl.DataFrame) else out

    probe = fn(**arguments, **{parameter: pl.LazyFrame(schema=schemas[upstream])})
    if not isinstance(probe, pl.LazyFrame):
        why = (
            f"it returns {type(probe).__name__}, not a polars LazyFrame, so its logic cannot "
            "be checked to be row-level"
        )
        raise _refuse(node, why)
    plan = probe.explain(optimized=False)
    for marker, why in _PLAN_OPERATORS:
        if marker in plan:
            raise _refuse(node, why)
    for pattern, why in _EXPRESSIONS:
        if pattern.search(plan):
            raise _refuse(node, why)
    schemas[node.name] = probe.collect_schema()
    return Step(node, upstream, call)
