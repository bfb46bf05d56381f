"""The validated DAG of a pipeline: nodes in topological order with their edges.

A :class:`Graph` only exists for a definition that passed plan-time validation, so the engines
never meet an unknown input, a cycle or a missing config value at run time.
"""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from headrace.core.node import BindingKind, Node
from headrace.errors import (
    CycleError,
    FeatureDefinitionError,
    MissingConfigError,
    UnknownInputError,
    UnknownNodeError,
)

__all__ = ["Graph"]


@dataclass(frozen=True)
class Graph:
    """A validated pipeline DAG. Build it with :meth:`Pipeline.validate`."""

    pipeline: str
    nodes: tuple[Node, ...]
    """All nodes, in a deterministic topological order (declaration order breaks ties)."""
    config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, pipeline: str, nodes: tuple[Node, ...], config: Mapping[str, Any]) -> Graph:
        """Validate ``nodes`` and order them; raises the first problem found."""
        by_name = {node.name: node for node in nodes}
        for node in nodes:
            for upstream in node.inputs:
                if upstream not in by_name:
                    raise UnknownInputError(_unknown_input_message(node, upstream, by_name))
            for binding in node.bindings:
                if (
                    binding.kind is BindingKind.CONFIG
                    and binding.source not in config
                    and not binding.has_default
                ):
                    msg = (
                        f"node {node.name!r} needs config value {binding.source!r}, which is not "
                        f"set: add `{binding.source} = ...` under [config] in headrace.toml, or "
                        f"pass config={{{binding.source!r}: ...}} to the run"
                    )
                    raise MissingConfigError(msg)
            if node.source is not None:
                node.source.resolved(config, node=node.name)  # every {key} must be set
            if node.features is not None:
                _check_feature_source(node, by_name[node.features.source])
        order = _topological_order(pipeline, nodes)
        return cls(pipeline, tuple(by_name[name] for name in order), dict(config))

    @cached_property
    def _by_name(self) -> dict[str, Node]:
        return {node.name: node for node in self.nodes}

    @cached_property
    def downstream(self) -> Mapping[str, tuple[str, ...]]:
        """For each node, the nodes that take its output as an input."""
        out: dict[str, list[str]] = {node.name: [] for node in self.nodes}
        for node in self.nodes:
            for upstream in node.inputs:
                out[upstream].append(node.name)
        return {name: tuple(children) for name, children in out.items()}

    @cached_property
    def code_hashes(self) -> Mapping[str, str]:
        """Each node's code hash (see :meth:`Node.code_hash`)."""
        return {node.name: node.code_hash() for node in self.nodes}

    def node(self, name: str) -> Node:
        """The node called ``name``; :class:`UnknownNodeError` with suggestions otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            hint = _suggest(name, self._by_name)
            msg = f"pipeline {self.pipeline!r} has no node {name!r}{hint}"
            raise UnknownNodeError(msg) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def closure(self, names: Iterable[str], *, downstream: bool) -> set[str]:
        """``names`` plus everything downstream (or upstream) of them."""
        todo = [self.node(n).name for n in names]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(self.downstream[name] if downstream else self._by_name[name].inputs)
        return seen


def _topological_order(pipeline: str, nodes: tuple[Node, ...]) -> list[str]:
    position = {node.name: i for i, node in enumerate(nodes)}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for node in nodes:
        sorter.add(node.name, *node.inputs)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        path = " -> ".join(reversed(cycle))
        msg = (
            f"pipeline {pipeline!r} has a cycle: {path}; a node cannot depend on its own "
            "output — break the loop by removing one of these inputs"
        )
        raise CycleError(msg) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order


def _check_feature_source(node: Node, source: Node) -> None:
    """A view's columns must exist in its source when the source's contract fixes them."""
    view = node.features
    contract = source.contract
    if view is None or contract is None or contract.allow_extra_columns:
        return
    declared = {f.name for f in contract.fields}
    missing = [c for c in view.source_columns if c not in declared]
    if missing:
        what = "event-time column" if view.event_time in missing else "column(s)"
        msg = (
            f"feature view {view.name!r}: its source {source.name!r} has no {what} "
            f"{', '.join(repr(m) for m in missing)} (its contract declares: "
            f"{', '.join(sorted(declared))}); fix event_time/keys/columns of the view"
        )
        raise FeatureDefinitionError(msg)


def _unknown_input_message(node: Node, upstream: str, by_name: Mapping[str, Node]) -> str:
    hint = _suggest(upstream, by_name)
    return (
        f"node {node.name!r} takes input {upstream!r}, but there is no node of that name{hint}; "
        f"declare a node {upstream!r}, fix the parameter name, or, if {upstream!r} is a "
        f"setting, list it in config=[...] or give the parameter a default"
    )


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
