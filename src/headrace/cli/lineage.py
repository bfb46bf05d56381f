"""``headrace lineage``: where a dataset version came from and what it fed."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from headrace.cli.shared import (
    FormatOption,
    OutputFormat,
    ProjectOption,
    err,
    open_project,
    out,
)
from headrace.cli.views import print_json
from headrace.errors import ReproductionError

__all__ = ["lineage", "reproduce"]


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
    column: Annotated[
        str | None, typer.Option("--column", help="Only what this column comes from / feeds.")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Show the lineage of a dataset version: runs, code versions, inputs and what it fed."""
    both = upstream == downstream
    graph = open_project(project).lineage(
        dataset, version, upstream=upstream or both, downstream=downstream or both, column=column
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


def reproduce(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    allow_code_change: Annotated[
        bool,
        typer.Option("--allow-code-change", help="Compare even if a node's code changed."),
    ] = False,
    into: Annotated[
        Path | None, typer.Option("--into", help="Scratch folder for the re-computed outputs.")
    ] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Re-execute a run on its exact input versions and prove its outputs identical."""
    proj = open_project(project)
    with err.status(f"re-executing run {run_id}"):
        found = proj.reproduce(run_id, allow_code_change=allow_code_change, into=into)
    if output is OutputFormat.json:
        print_json(
            out,
            {
                "run_id": found.run_id,
                "identical": found.identical,
                "scratch": str(found.scratch),
                "code_changed": found.code_changed,
                "nodes": [c.__dict__ for c in found.checks],
            },
        )
    else:
        table = Table(title=f"reproducing run {found.run_id}")
        for column in ("node", "outcome", "dataset", "detail"):
            table.add_column(column)
        styles = {"identical": "green", "different": "bold red", "skipped": "dim"}
        for check in found.checks:
            where = f"{check.dataset} v{check.version}" if check.dataset else ""
            name = check.node + (f"[{check.partition}]" if check.partition else "")
            table.add_row(name, f"[{styles[check.outcome]}]{check.outcome}[/]", where, check.detail)
        out.print(table)
        out.print(f"re-computed outputs: {found.scratch}")
    if not found.identical:
        first = found.first_difference
        where = f" (first difference: {first.node}: {first.detail})" if first else ""
        msg = f"run {found.run_id} is not reproduced{where}"
        raise ReproductionError(msg)
