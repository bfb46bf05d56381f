"""Text, Mermaid and Graphviz DOT renderings of a validated pipeline graph."""

from __future__ import annotations

from headrace.core.graph import Graph
from headrace.core.node import Node, NodeKind

__all__ = ["to_dot", "to_mermaid", "to_text"]


def _label(node: Node) -> str:
    traits = [node.kind.value]
    if node.sql is not None:
        traits.append("sql")
    if node.ephemeral:
        traits.append("ephemeral")
    if node.partitions is not None:
        traits.append(node.partitions.describe())
    return f"{node.name} [{', '.join(traits)}]"


def to_text(graph: Graph) -> str:
    """One line per node in run order, with its inputs.

    >>> import headrace as hr
    >>> p = hr.Pipeline("t")
    >>> _ = p.source(lambda: None, name="a")
    >>> _ = p.transform(lambda a: a, name="b")
    >>> print(to_text(p.validate()))
    pipeline t (2 nodes)
      a [source]
      b [transform] <- a
    """
    lines = [f"pipeline {graph.pipeline} ({len(graph.nodes)} nodes)"]
    for node in graph.nodes:
        arrow = f" <- {', '.join(node.inputs)}" if node.inputs else ""
        lines.append(f"  {_label(node)}{arrow}")
    return "\n".join(lines)


_MERMAID_SHAPES = {
    NodeKind.SOURCE: ("[(", ")]"),
    NodeKind.TRANSFORM: ("[", "]"),
    NodeKind.SINK: ("[/", "/]"),
}


def to_mermaid(graph: Graph) -> str:
    """A Mermaid ``graph LR`` diagram (paste it into Markdown)."""
    lines = ["graph LR"]
    for node in graph.nodes:
        left, right = _MERMAID_SHAPES[node.kind]
        lines.append(f'  {node.name}{left}"{_label(node)}"{right}')
    lines.extend(
        f"  {upstream} --> {node.name}" for node in graph.nodes for upstream in node.inputs
    )
    return "\n".join(lines)


_DOT_SHAPES = {NodeKind.SOURCE: "cylinder", NodeKind.TRANSFORM: "box", NodeKind.SINK: "folder"}


def to_dot(graph: Graph) -> str:
    """A Graphviz DOT digraph (render with ``dot -Tsvg``)."""
    lines = [f'digraph "{graph.pipeline}" {{', "  rankdir=LR;"]
    for node in graph.nodes:
        style = ', style="dashed"' if node.ephemeral else ""
        lines.append(
            f'  "{node.name}" [label="{_label(node)}", shape={_DOT_SHAPES[node.kind]}{style}];'
        )
    lines.extend(
        f'  "{upstream}" -> "{node.name}";' for node in graph.nodes for upstream in node.inputs
    )
    lines.append("}")
    return "\n".join(lines)
