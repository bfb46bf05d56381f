"""``headrace stream run``: the streaming job of a pipeline, with live progress.

Registered on the ``stream`` sub-app in :mod:`headrace.cli.app`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

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
from headrace.engines.stream.runtime import JobStats, StreamOptions
from headrace.project.stream_job import build_job

__all__ = ["run"]


def _table(stats: JobStats, describe: str) -> Table:
    table = Table(title=f"stream from {describe}", show_header=True)
    for column in ("events", "valid", "quarantined", "late", "emitted", "checkpoints", "ev/s"):
        table.add_column(column, justify="right")
    rate = stats.events / stats.seconds if stats.seconds else 0.0
    table.add_row(
        *(f"{v:,}" for v in (stats.events, stats.valid, stats.quarantined, stats.late)),
        f"{stats.emitted:,}",
        f"{stats.checkpoints:,}",
        f"{rate:,.0f}",
    )
    return table


def run(
    pipeline: PipelineArgument = None,
    source: SourceOption = None,
    view: Annotated[
        list[str] | None, typer.Option("--view", help="Only these feature views (repeatable).")
    ] = None,
    until_end: Annotated[
        bool,
        typer.Option(
            "--until-end", help="Stop when the topic has nothing new (flushing every window)."
        ),
    ] = False,
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="Stop after this many seconds.")
    ] = None,
    group: Annotated[
        bool,
        typer.Option(
            "--group", help="Share the partitions with other workers running the same job."
        ),
    ] = False,
    checkpoint_interval: Annotated[
        float | None, typer.Option("--checkpoint-interval", help="Seconds between checkpoints.")
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option("--max-batch", help="Most events per micro-batch.")
    ] = None,
    project: ProjectOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Run PIPELINE's streaming job: its stream through contracts, transforms and views.

    Keeps the online store and the offline log current. Checkpoints positions and window
    state every --checkpoint-interval seconds; a restart resumes from the last checkpoint
    without duplicating anything.
    """
    proj = open_project(project)
    settings = proj.settings.stream
    options = StreamOptions(
        checkpoint_interval=checkpoint_interval or settings.checkpoint_interval,
        max_batch=max_batch or settings.max_batch,
        idle_timeout=settings.idle_timeout,
        until_end=until_end,
        max_seconds=seconds,
        group=group,
    )
    live = Live(console=err, transient=True, refresh_per_second=4)
    job = build_job(
        proj,
        pipeline,
        source=source,
        views=tuple(view or ()),
        options=options,
    )
    describe = job.consumer.describe()

    def show(stats: JobStats) -> None:
        live.update(_table(stats, describe))

    if output is not OutputFormat.json:
        job.on_batch = show
        live.start()
    try:
        stats = job.run()
    finally:
        live.stop()
        job.consumer.close()
    result = {
        "job": job.name,
        "events": stats.events,
        "valid": stats.valid,
        "quarantined": stats.quarantined,
        "late": stats.late,
        "emitted": stats.emitted,
        "per_view": stats.per_view,
        "checkpoints": stats.checkpoints,
        "seconds": round(stats.seconds, 3),
        "events_per_second": round(stats.events / stats.seconds, 1) if stats.seconds else None,
        "not_streamed": dict(job.plan.batch_only),
    }
    if output is OutputFormat.json:
        views.print_json(out, result)
        return
    out.print(_table(stats, describe))
    if job.plan.batch_only:
        out.print(f"left to batch runs: {', '.join(job.plan.batch_only)}")
