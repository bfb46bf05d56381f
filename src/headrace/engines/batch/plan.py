"""Planning: turn a validated graph and a run request into tasks with dependencies.

A task is one node, or one partition of a partitioned node when partitions were selected.
The plan is plain data, so any executor (threads here, a Ray cluster later) can run it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from headrace.core.graph import Graph
from headrace.core.node import Node
from headrace.core.partitions import parse_partition_range
from headrace.errors import PartitionError

__all__ = ["Plan", "Task", "build_plan", "task_id"]


def task_id(node: str, partition: str | None) -> str:
    """``node`` or ``node[partition]``."""
    return node if partition is None else f"{node}[{partition}]"


@dataclass(frozen=True)
class Task:
    """One unit of work: a node, or one partition of it."""

    node: Node
    partition: str | None
    upstream: tuple[str, ...]
    """Ids of the tasks that must finish first."""

    @property
    def id(self) -> str:
        """``node`` or ``node[partition]``."""
        return task_id(self.node.name, self.partition)


@dataclass(frozen=True)
class Plan:
    """Tasks in a valid execution order, with their dependencies."""

    graph: Graph
    tasks: tuple[Task, ...]
    partitions: tuple[str, ...] = ()
    tasks_by_node: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def task(self, task_id: str) -> Task:
        """The task with that id."""
        return self._index[task_id]

    @cached_property
    def _index(self) -> dict[str, Task]:
        return {task.id: task for task in self.tasks}

    def downstream(self) -> dict[str, list[str]]:
        """For each task id, the ids of tasks that wait for it."""
        out: dict[str, list[str]] = {task.id: [] for task in self.tasks}
        for task in self.tasks:
            for upstream in task.upstream:
                out[upstream].append(task.id)
        return out


def build_plan(graph: Graph, *, partitions: Sequence[str] = ()) -> Plan:
    """Plan every node of ``graph``; partitioned nodes get one task per selected partition.

    ``partitions`` holds keys (``2013-01-05``) and ranges (``2013-01-01..2013-01-31``); each is
    checked against every partitioned node's scheme. With no selection, each partitioned node
    is one task over all of its data.
    """
    partitioned = [node for node in graph.nodes if node.partitions is not None]
    if partitions and not partitioned:
        msg = (
            f"partitions {list(partitions)} were given, but no node of pipeline "
            f"{graph.pipeline!r} is partitioned; run without --partition"
        )
        raise PartitionError(msg)
    keys_by_node: dict[str, tuple[str, ...]] = {}
    for node in partitioned:
        keys_by_node[node.name] = _expand(node, partitions) if partitions else (None,)  # type: ignore[assignment]
    tasks: list[Task] = []
    ids_by_node: dict[str, tuple[str, ...]] = {}
    for node in graph.nodes:
        keys: Iterable[str | None] = keys_by_node.get(node.name, (None,))
        node_tasks = []
        for key in keys:
            upstream: list[str] = []
            for name in node.inputs:
                upstream_node = graph.node(name)
                upstream_ids = ids_by_node[name]
                if (
                    key is not None
                    and upstream_node.partitions == node.partitions
                    and task_id(name, key) in upstream_ids
                ):
                    upstream.append(task_id(name, key))
                else:
                    upstream.extend(upstream_ids)
            node_tasks.append(Task(node, key, tuple(dict.fromkeys(upstream))))
        ids_by_node[node.name] = tuple(t.id for t in node_tasks)
        tasks.extend(node_tasks)
    selected = sorted({k for keys in keys_by_node.values() for k in keys if k is not None})
    return Plan(graph, tuple(tasks), tuple(selected), ids_by_node)


def _expand(node: Node, selection: Sequence[str]) -> tuple[str, ...]:
    assert node.partitions is not None
    keys: dict[str, None] = {}
    for item in selection:
        if ".." in item:
            first, last = parse_partition_range(item)
            keys.update(dict.fromkeys(node.partitions.expand_range(first, last, node=node.name)))
        else:
            keys[node.partitions.validate_key(item, node=node.name)] = None
    return tuple(keys)
