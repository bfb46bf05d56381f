"""Version-level lineage graphs as data, and their renderings (tree, Mermaid, DOT, HTML).

A :class:`LineageGraph` is what a lineage query returns: dataset versions (and feature sets
and training sets that read them) as nodes, "was read to make" as edges. Building one is the
storage layer's job (it reads run records); this module only holds and draws it.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["LineageEdge", "LineageGraph", "LineageItem"]

ItemKind = Literal["dataset", "memory", "feature_set", "training_set"]


@dataclass(frozen=True)
class LineageItem:
    """One thing in a lineage graph.

    A dataset version, an in-memory node output, a feature set version or a recorded
    training set.
    """

    kind: ItemKind
    name: str
    version: int | str | None = None
    run_id: str | None = None
    """The run that produced it (datasets, in-memory outputs)."""
    node: str | None = None
    code_hash: str | None = None
    created_at: datetime | None = None
    columns: tuple[str, ...] = ()
    """For a column query: the columns of this item the asked column depends on / feeds."""

    @property
    def key(self) -> str:
        """A unique id within a graph."""
        return f"{self.kind}:{self.name}@{self.version}"

    @property
    def label(self) -> str:
        """A short human label."""
        if self.kind == "dataset":
            text = f"{self.name} v{self.version}"
        elif self.kind == "memory":
            text = f"{self.name} (in memory)"
        elif self.kind == "feature_set":
            text = f"feature set {self.name} v{self.version}"
        else:
            text = f"training set {self.name}"
        if self.columns:
            text += f" [{', '.join(self.columns)}]"
        return text

    @property
    def detail(self) -> str:
        """Who made it: run, node and code hash."""
        parts = []
        if self.run_id:
            parts.append(f"run {self.run_id}")
        if self.node and self.node != self.name:
            parts.append(f"node {self.node}")
        if self.code_hash:
            parts.append(f"code {self.code_hash[:10]}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "node": self.node,
            "code_hash": self.code_hash,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "columns": list(self.columns),
        }


@dataclass(frozen=True)
class LineageEdge:
    """``source`` was read to make ``target``."""

    source: str
    target: str


@dataclass
class LineageGraph:
    """Items and edges around a ``root`` item (upstream, downstream or both)."""

    root: LineageItem
    items: dict[str, LineageItem] = field(default_factory=dict)
    edges: set[LineageEdge] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.items.setdefault(self.root.key, self.root)

    def add(self, item: LineageItem) -> str:
        """Add an item (once) and return its key."""
        self.items.setdefault(item.key, item)
        return item.key

    def link(self, source: LineageItem, target: LineageItem) -> None:
        """Record that ``source`` was read to make ``target``."""
        self.edges.add(LineageEdge(self.add(source), self.add(target)))

    def parents(self, key: str) -> list[str]:
        """Keys of the items read to make ``key``."""
        return sorted(e.source for e in self.edges if e.target == key)

    def children(self, key: str) -> list[str]:
        """Keys of the items made from ``key``."""
        return sorted(e.target for e in self.edges if e.source == key)

    # -- renderings --------------------------------------------------------------------------

    def to_text(self) -> str:
        """Upstream and downstream trees of the root, one item per line.

        >>> a = LineageItem("dataset", "raw", 3, run_id="r1")
        >>> b = LineageItem("dataset", "clean", 5, run_id="r2", code_hash="abcdef0123456")
        >>> g = LineageGraph(b)
        >>> g.link(a, b)
        >>> print(g.to_text())
        clean v5  (run r2, code abcdef0123)
        upstream (what it was made from):
        └── raw v3  (run r1)
        """
        lines = [_line(self.root)]
        for title, step in (
            ("upstream (what it was made from)", self.parents),
            ("downstream (what was made from it)", self.children),
        ):
            first = step(self.root.key)
            if not first:
                continue
            lines.append(f"{title}:")
            self._tree(first, step, "", lines, {self.root.key})
        return "\n".join(lines)

    def _tree(
        self,
        keys: list[str],
        step: Any,
        prefix: str,
        lines: list[str],
        seen: set[str],
    ) -> None:
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            item = self.items[key]
            again = key in seen
            branch = "└── " if last else "├── "
            lines.append(f"{prefix}{branch}{_line(item)}{' (see above)' if again else ''}")
            if not again:
                self._tree(
                    step(key), step, prefix + ("    " if last else "│   "), lines, seen | {key}
                )

    def to_mermaid(self) -> str:
        """A Mermaid ``graph LR`` (paste into Markdown)."""
        ids = self._ids()
        lines = ["graph LR"]
        for key, item in sorted(self.items.items()):
            label = item.label.replace('"', "'")
            style = ":::root" if key == self.root.key else ""
            lines.append(f'  {ids[key]}["{label}"]{style}')
        lines.extend(f"  {ids[e.source]} --> {ids[e.target]}" for e in self._sorted())
        lines.append("  classDef root stroke-width:3px")
        return "\n".join(lines)

    def to_dot(self) -> str:
        """A Graphviz DOT digraph."""
        ids = self._ids()
        lines = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
        for key, item in sorted(self.items.items()):
            extra = ", penwidth=3" if key == self.root.key else ""
            label = f"{item.label}\\n{item.detail}".replace('"', "'")
            lines.append(f'  {ids[key]} [label="{label}"{extra}];')
        lines.extend(f"  {ids[e.source]} -> {ids[e.target]};" for e in self._sorted())
        lines.append("}")
        return "\n".join(lines)

    def to_html(self, title: str = "") -> str:
        """A self-contained HTML page with the graph drawn as SVG (no scripts, no CDN)."""
        layers = self._layers()
        width, height = 260, 64
        gap_x, gap_y = 80, 24
        positions: dict[str, tuple[int, int]] = {}
        for column, keys in enumerate(layers):
            for row, key in enumerate(keys):
                positions[key] = (20 + column * (width + gap_x), 20 + row * (height + gap_y))
        total_w = 40 + len(layers) * (width + gap_x)
        total_h = 40 + max((len(k) for k in layers), default=1) * (height + gap_y)
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
            'font-family="system-ui, sans-serif" font-size="13">',
            '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="10" refY="4" '
            'orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="#667"/></marker></defs>',
        ]
        for edge in self._sorted():
            (x1, y1), (x2, y2) = positions[edge.source], positions[edge.target]
            parts.append(
                f'<line x1="{x1 + width}" y1="{y1 + height // 2}" x2="{x2}" '
                f'y2="{y2 + height // 2}" stroke="#667" marker-end="url(#arrow)"/>'
            )
        colours = {
            "dataset": "#e8f0fe",
            "memory": "#f1f3f4",
            "feature_set": "#e6f4ea",
            "training_set": "#fef7e0",
        }
        for key, (x, y) in positions.items():
            item = self.items[key]
            stroke = 3 if key == self.root.key else 1
            parts.append(
                f'<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="6" '
                f'fill="{colours[item.kind]}" stroke="#334" stroke-width="{stroke}"/>'
                f'<text x="{x + 10}" y="{y + 24}" font-weight="600">'
                f"{html.escape(_clip(item.label, 34))}</text>"
                f'<text x="{x + 10}" y="{y + 46}" fill="#555">'
                f"{html.escape(_clip(item.detail, 38))}</text>"
            )
        parts.append("</svg>")
        heading = html.escape(title or f"Lineage of {self.root.label}")
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{heading}</title></head><body style='font-family: system-ui, sans-serif'>"
            f"<h1>{heading}</h1><p>Each box is a version; an arrow means “was read to make”."
            f"</p>{''.join(parts)}</body></html>"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "root": self.root.key,
            "items": {k: v.to_dict() for k, v in sorted(self.items.items())},
            "edges": [{"source": e.source, "target": e.target} for e in self._sorted()],
        }

    # -- internals -------------------------------------------------------------------------

    def _sorted(self) -> list[LineageEdge]:
        return sorted(self.edges, key=lambda e: (e.source, e.target))

    def _ids(self) -> dict[str, str]:
        return {key: f"n{i}" for i, key in enumerate(sorted(self.items))}

    def _layers(self) -> list[list[str]]:
        """Items by depth: longest path from a source item."""
        depth: dict[str, int] = {}

        def walk(key: str, trail: frozenset[str]) -> int:
            if key in depth:
                return depth[key]
            parents = [p for p in self.parents(key) if p not in trail]
            value = 1 + max((walk(p, trail | {key}) for p in parents), default=-1)
            depth[key] = value
            return value

        for key in self.items:
            walk(key, frozenset())
        layers: defaultdict[int, list[str]] = defaultdict(list)
        for key in sorted(self.items):
            layers[depth[key]].append(key)
        return [layers[i] for i in sorted(layers)]


def _line(item: LineageItem) -> str:
    detail = item.detail
    return f"{item.label}  ({detail})" if detail else item.label


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
