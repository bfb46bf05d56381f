"""What the CLI's command modules share: consoles, common options, opening the project."""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from headrace.project.project import Project

__all__ = ["FormatOption", "OutputFormat", "ProjectOption", "err", "open_project", "out", "state"]


class OutputFormat(enum.StrEnum):
    """How listings print."""

    table = "table"
    json = "json"


@dataclass
class _State:
    project_dir: Path | None = None
    debug: bool = False


state = _State()
# Piped output is not cut to 80 columns: tables stay one line per row in logs and files.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)

ProjectOption = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project folder (default: here or the nearest above)."),
]
PipelineArgument = Annotated[str | None, typer.Argument(help="Pipeline (default: the only one).")]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="The stream-fed node (when there are several).")
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")
]


def open_project(project: Path | None) -> Project:
    """The project in ``--project`` (of the command, else of the root), here, or above."""
    return Project.open(project or state.project_dir)
