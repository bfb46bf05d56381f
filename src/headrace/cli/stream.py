"""``headrace stream produce`` and ``reset``: events into a topic; a job's checkpoints forgotten."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from headrace.cli import views
from headrace.cli.shared import (
    FormatOption,
    OutputFormat,
    PipelineArgument,
    ProjectOption,
    SourceOption,
    err,
    open_project,
    out,
)
from headrace.connectors.log import LogError
from headrace.core.stream import StreamSource
from headrace.engines.stream.runtime import member_expiry
from headrace.project.project import Project
from headrace.project.stream_job import job_name, job_outputs, stream_of
from headrace.project.streams import NDJSON, ProducedEvents, TopicWriter, read_events
from headrace.storage.checkpoints import CheckpointStore

__all__ = ["CHUNK_ROWS", "stream_app"]

CHUNK_ROWS = 50_000
"""Events appended per call: a file larger than this shows a progress bar."""

stream_app = typer.Typer(
    help="Streams: produce events to a topic, run a pipeline's streaming job or reset it.",
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


@stream_app.command("reset")
def reset(
    pipeline: PipelineArgument = None,
    source: SourceOption = None,
    partition: Annotated[
        list[int] | None,
        typer.Option(
            "--partition", metavar="N", help="Only this partition (repeatable; default: all)."
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Forget PIPELINE's streaming checkpoints: its next run reads from the first stored event.

    Deletes the job's checkpoints, intents and window state, of every partition or of the
    --partition ones; stop the job's workers first. The next `headrace stream run` reads those
    partitions from the first event the broker still holds, and appends the events it reads
    again to the job's offline datasets (<topic>__events, <view>__stream, ...) a second time.
    """
    proj = open_project(project)
    chosen = proj.pipeline(pipeline)
    stream = stream_of(chosen, source)
    job = job_name(chosen.name, stream)
    datasets = _outputs(proj, chosen.name, stream)
    which = "every partition" if partition is None else _partitions(partition)
    if not yes:
        typer.confirm(
            f"Forget the checkpoints of stream job {job} ({which})? Its next run reads them "
            f"from their first stored event and appends what it reads again to "
            f"{_listed(datasets)}",
            abort=True,
            err=True,
        )
    expiry = member_expiry(proj.settings.stream.checkpoint_interval)
    store = CheckpointStore(proj.metadata)
    removed = store.reset(job, None if partition is None else sorted(set(partition)), expiry=expiry)
    if output is OutputFormat.json:
        views.print_json(out, {"job": job, "partitions": removed, "datasets": datasets})
        return
    if not removed:
        out.print(f"stream job {job} had no checkpoint ({which}): nothing to forget")
        return
    out.print(f"forgot the checkpoints of stream job {job}: {_partitions(removed)}")
    out.print(
        f"The next `headrace stream run` reads {'it' if len(removed) == 1 else 'them'} from "
        f"the first event the broker still holds. Events read again are appended again to "
        f"{_listed(datasets)}: their rows from before the reset stay, so those events and "
        f"their results will be there twice."
    )


def _listed(names: list[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _partitions(numbers: list[int]) -> str:
    ordered = sorted(set(numbers))
    return f"partition{'s' if len(ordered) > 1 else ''} {', '.join(map(str, ordered))}"


def _outputs(project: Project, pipeline: str, stream: StreamSource) -> list[str]:
    """The offline datasets the job appends to: its topic's, and its feature views'."""
    graph = project.graph(pipeline)
    below = graph.closure([stream.node], downstream=True) if stream.node in graph else set()
    feature_views = tuple(
        n.features for n in graph.nodes if n.features is not None and n.name in below
    )
    names = job_outputs(stream, feature_views)
    return [names.events, *names.views.values(), names.late, names.quarantine]
