"""Column-level lineage queries: narrow a version-level graph to what one column touches.

The column lineage of each node run is in the OpenLineage events headrace emitted (the
``columnLineage`` facet of each output, see :mod:`headrace.lineage.events`); with the
default file transport they are in ``<state>/lineage/events.jsonl``. Upstream, a column of
``D@v`` depends on the input fields its facet names, recursively; downstream, an output
field depends on ``D.column`` when its facet lists it. Where a node has no column lineage
(see the ``columns`` package for where it cannot be derived), the walk keeps the whole
parent or child and marks its columns as unknown (``?``) rather than guessing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from headrace.core.lineage import LineageGraph, LineageItem

__all__ = ["narrow_to_column", "read_column_lineage"]

FieldMap = dict[str, set[tuple[str, str]]]
"""Output field -> the (input dataset, field) pairs it comes from."""


def read_column_lineage(events: Path) -> dict[tuple[str, str], FieldMap]:
    """(dataset, version) -> its fields' sources, from an OpenLineage JSON-lines file."""
    found: dict[tuple[str, str], FieldMap] = {}
    if not events.exists():
        return found
    for line in _lines(events):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("eventType") != "COMPLETE":
            continue
        for output in event.get("outputs") or []:
            facets = output.get("facets") or {}
            fields = (facets.get("columnLineage") or {}).get("fields")
            version = (facets.get("version") or {}).get("datasetVersion")
            if not fields or version is None:
                continue
            mapping: FieldMap = defaultdict(set)
            for name, spec in fields.items():
                for source in spec.get("inputFields") or []:
                    mapping[name].add((str(source["name"]), str(source["field"])))
            found[(str(output["name"]), str(version))] = dict(mapping)
    return found


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        yield from (line for line in handle if line.strip())


def narrow_to_column(
    graph: LineageGraph, column: str, lineage: dict[tuple[str, str], FieldMap]
) -> LineageGraph:
    """The part of ``graph`` that ``root.column`` comes from or feeds, columns named."""
    root = graph.root
    out = LineageGraph(replace(root, columns=(column,)))
    tracked: dict[str, set[str]] = {root.key: {column}}
    # upstream: from a child's tracked fields to the parent fields they come from
    todo = [root.key]
    while todo:
        key = todo.pop()
        child = graph.items[key]
        fields = lineage.get((child.name, str(child.version)))
        for parent_key in graph.parents(key):
            parent = graph.items[parent_key]
            if fields is None or "?" in tracked[key]:
                wanted = {"?"}
            else:
                wanted = {
                    f
                    for name in tracked[key]
                    for (src, f) in fields.get(name, ())
                    if src == parent.name
                }
            if not wanted:
                continue
            _link(out, tracked, parent, child, wanted, upstream=True)
            todo.append(parent_key)
    # downstream: a child's fields that list a tracked field of the parent
    todo = [root.key]
    while todo:
        key = todo.pop()
        parent = graph.items[key]
        for child_key in graph.children(key):
            child = graph.items[child_key]
            fields = lineage.get((child.name, str(child.version)))
            if child.kind != "dataset":
                wanted = set(tracked[key])
            elif fields is None or "?" in tracked[key]:
                wanted = {"?"}
            else:
                wanted = {
                    name
                    for name, sources in fields.items()
                    if any(src == parent.name and f in tracked[key] for src, f in sources)
                }
            if not wanted:
                continue
            _link(out, tracked, parent, child, wanted, upstream=False)
            todo.append(child_key)
    return out


def _link(
    out: LineageGraph,
    tracked: dict[str, set[str]],
    parent: LineageItem,
    child: LineageItem,
    wanted: set[str],
    *,
    upstream: bool,
) -> None:
    other = parent if upstream else child
    tracked.setdefault(other.key, set()).update(wanted)
    columns = tuple(sorted(tracked[other.key]))
    labelled = replace(other, columns=columns)
    out.items[other.key] = labelled
    keep = out.items.get((child if upstream else parent).key)
    source = labelled if upstream else (keep or parent)
    target = (keep or child) if upstream else labelled
    out.link(source, target)
