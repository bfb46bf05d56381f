"""``headrace stream produce``: events from a file or stdin into a topic of the project."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from headrace.cli import views
from headrace.cli.shared import FormatOption, OutputFormat, ProjectOption, err, open_project, out
from headrace.connectors.log import LogError
from headrace.project.streams import NDJSON, ProducedEvents, TopicWriter, read_events

__all__ = ["CHUNK_ROWS", "stream_app"]

CHUNK_ROWS = 50_000
"""Events appended per call: a file larger than this shows a progress bar."""

stream_app = typer.Typer(
    help="Streams: produce events to a topic, run a pipeline's streaming job.",
    no_args_is_help=True,
)

# Room for more `headrace stream ...` commands: `stream run` (the streaming job runner) lives
# in its own module, cli/stream_run.py, and app.py registers it on this sub-app with
# `stream_app.command("run")(stream_run)`; keep one module per command group of this size.


@stream_app.command("produce")
def produce(
    topic: Annotated[str, typer.Argument(help="Topic name, e.g. payments.")],
    file: Annotated[
        str,
        typer.Argument(
            help="Events file (.jsonl, .ndjson, .json array, .csv, .parquet), or - for JSON "
            "lines on stdin.",
        ),
    ] = "-",
    key: Annotated[
        str | None,
        typer.Option(
            "--key", "-k", help="Route by this column: equal keys go to one partition, in order."
        ),
    ] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Append events from a file or stdin to a topic, routed by their --key column.

    The whole input is checked against the topic's schema (fixed by its first append) before
    anything is written.
    """
    proj = open_project(project)
    with TopicWriter(proj, topic) as writer:
        if file == "-":
            frame = writer.decode(sys.stdin.buffer.read(), NDJSON)
        else:
            frame = read_events(Path(file), schema=writer.schema)
        frame = writer.conform(frame, key=key)
        produced = ProducedEvents(writer.topic, 0)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} events"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=output is OutputFormat.json or frame.height <= CHUNK_ROWS,
        ) as progress:
            task = progress.add_task(f"producing to {writer.topic}", total=frame.height)
            for chunk in frame.iter_slices(CHUNK_ROWS):
                try:
                    produced += writer.send(chunk, key=key)
                except LogError as exc:  # a full disk, say: earlier chunks are in the log
                    if produced.events:
                        raise _partly_produced(exc, produced, frame.height) from exc
                    raise
                progress.update(task, completed=produced.events)
    if output is OutputFormat.json:
        views.print_json(out, produced.to_dict())
    elif writer.partitions is None:
        out.print(
            f"sent {produced.events:,} events to topic {produced.topic} through {writer.describe()}"
        )
    else:
        spread = ", ".join(map(str, produced.partitions)) or "none"
        out.print(
            f"appended {produced.events:,} events to topic {produced.topic} "
            f"(partitions {spread} of {writer.partitions})"
        )


def _partly_produced(exc: LogError, produced: ProducedEvents, total: int) -> LogError:
    """``exc``, saying which events of the input are in the topic already (earlier chunks)."""
    msg = (
        f"{exc}\n{produced.events:,} of the {total:,} events (rows 0 to "
        f"{produced.events - 1:,} of the input) were appended to topic {produced.topic} "
        f"before this; send only the rest, from row {produced.events:,}, so that none is "
        f"appended twice"
    )
    return LogError(msg)
