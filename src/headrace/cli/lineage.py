"""``headrace lineage``: where a dataset version came from and what it fed."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from headrace.cli.shared import ProjectOption, err, open_project, out
from headrace.cli.views import print_json

__all__ = ["lineage"]


class LineageFormat(enum.StrEnum):
    """How ``headrace lineage`` prints."""

    tree = "tree"
    mermaid = "mermaid"
    dot = "dot"
    html = "html"
    json = "json"


def lineage(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Dataset version (default: newest).")
    ] = None,
    upstream: Annotated[
        bool, typer.Option("--upstream", help="Only what it was made from.")
    ] = False,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="Only what was made from it.")
    ] = False,
    output: Annotated[
        LineageFormat, typer.Option("--format", "-f", help="tree, mermaid, dot, html or json.")
    ] = LineageFormat.tree,
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file (html: a page).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Show the lineage of a dataset version: runs, code versions, inputs and what it fed."""
    both = upstream == downstream
    graph = open_project(project).lineage(
        dataset, version, upstream=upstream or both, downstream=downstream or both
    )
    if output is LineageFormat.json:
        if out_file is None:
            print_json(out, graph.to_dict())
            return
        import json

        text = json.dumps(graph.to_dict(), indent=2)
    else:
        text = {
            LineageFormat.tree: graph.to_text,
            LineageFormat.mermaid: graph.to_mermaid,
            LineageFormat.dot: graph.to_dot,
            LineageFormat.html: graph.to_html,
        }[output]()
    if out_file is not None:
        out_file.write_text(text + "\n", encoding="utf-8")
        err.print(f"wrote {out_file}")
    else:
        out.file.write(text + "\n")
