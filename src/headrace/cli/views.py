"""Rich renderings for the CLI: progress while running, tables of records."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import polars as pl
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from headrace.core.records import DatasetVersion, NodeRunRecord, NodeStatus, RunRecord
from headrace.core.schema_change import classify, dataset_schema
from headrace.engines.batch.plan import Task

__all__ = [
    "RunProgress",
    "dataset_table",
    "history_table",
    "node_table",
    "print_json",
    "runs_table",
]

_STATUS_STYLE = {
    NodeStatus.SUCCEEDED: "green",
    NodeStatus.CACHED: "cyan",
    NodeStatus.FAILED: "bold red",
    NodeStatus.UPSTREAM_FAILED: "yellow",
    NodeStatus.CANCELLED: "yellow",
}


def print_json(console: Console, data: Any) -> None:
    """Print ``data`` as JSON (no colour, no wrapping) for scripts."""
    console.file.write(json.dumps(data, indent=2, default=str) + "\n")


class RunProgress:
    """A Rich progress display: one overall bar plus a line per running node."""

    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._overall = self._progress.add_task("[bold]nodes", total=total)
        self._rows: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def task_started(self, task: Task) -> None:
        """Show a running line for the task."""
        with self._lock:
            self._rows[task.id] = self._progress.add_task(f"  {task.id}", total=1)

    def task_finished(self, task: Task, record: NodeRunRecord) -> None:
        """Replace the running line by the outcome."""
        with self._lock:
            row = self._rows.pop(task.id, None)
            if row is None:  # skipped without starting
                row = self._progress.add_task("", total=1)
            style = _STATUS_STYLE[record.status]
            self._progress.update(
                row,
                description=f"  [{style}]{record.status.value:<15}[/] {task.id}",
                completed=1,
            )
            self._progress.advance(self._overall)


def _rows(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def node_table(records: Sequence[NodeRunRecord], title: str | None = None) -> Table:
    """Node, status, rows in/out, duration, cache hit and why."""
    table = Table(title=title)
    table.add_column("node", no_wrap=True, overflow="fold")
    table.add_column("status", no_wrap=True, min_width=9)
    for column in ("rows in", "rows out", "duration"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    table.add_column("cache hit", no_wrap=True, min_width=5)
    table.add_column("why", overflow="fold", ratio=1, min_width=12)
    for r in records:
        name = r.node if r.partition is None else f"{r.node}[{r.partition}]"
        table.add_row(
            name,
            f"[{_STATUS_STYLE[r.status]}]{r.status.value}[/]",
            _rows(r.rows_in),
            _rows(r.rows_out),
            f"{r.duration:.3f}s",
            "yes" if r.cache_hit else "no",
            (r.error or "").splitlines()[0] if r.status is NodeStatus.FAILED else r.cache_reason,
        )
    return table


def runs_table(runs: Iterable[RunRecord], counts: dict[str, dict[str, int]]) -> Table:
    """One line per run."""
    table = Table(title="runs")
    for column in ("run id", "pipeline", "status", "started (UTC)", "duration", "nodes"):
        table.add_column(column)
    for run in runs:
        duration = "" if run.duration is None else f"{run.duration:.2f}s"
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.get(run.run_id, {}).items()))
        style = {"succeeded": "green", "failed": "red"}.get(run.status.value, "yellow")
        table.add_row(
            run.run_id,
            run.pipeline,
            f"[{style}]{run.status.value}[/]",
            _when(run.started_at),
            duration,
            summary,
        )
    return table


def dataset_table(versions: Iterable[DatasetVersion]) -> Table:
    """The newest version of each dataset."""
    table = Table(title="datasets")
    for column in ("dataset", "version", "rows", "columns", "size", "written (UTC)", "run"):
        table.add_column(column, justify="right" if column in ("rows", "size") else "left")
    for v in versions:
        table.add_row(
            v.dataset,
            str(v.version),
            _rows(v.total_rows),
            str(len(v.schema)),
            _size(v.bytes),
            _when(v.created_at),
            v.run_id,
        )
    return table


def history_table(name: str, versions: Sequence[DatasetVersion]) -> Table:
    """Every version of one dataset (newest first), with its schema changes."""
    table = Table(title=f"history of {name}")
    columns = ("version", "partition", "rows written", "rows", "written (UTC)", "run", "hash")
    for column in (*columns, "schema changes"):
        table.add_column(column, justify="right" if column.startswith("rows") else "left")
    for i, v in enumerate(versions):
        older = versions[i + 1] if i + 1 < len(versions) else None
        changes = classify(dataset_schema(older.schema), dataset_schema(v.schema)) if older else []
        table.add_row(
            str(v.version),
            v.partition or "(all)",
            _rows(v.rows_written),
            _rows(v.total_rows),
            _when(v.created_at),
            v.run_id,
            v.content_hash[:12],
            "; ".join(str(c) for c in changes),
        )
    return table


def position_text(position: Mapping[str, Any]) -> str:
    """How far an ingest node's source was read, in words.

    >>> position_text({"cursor": {"type": "int", "value": 42}})
    'cursor 42'
    >>> position_text({"files": {"a.csv": {}, "b.csv": {}}})
    '2 file(s), last b.csv'
    """
    if "cursor" in position:
        cursor = position["cursor"]
        return "cursor " + ("(empty)" if cursor is None else str(cursor.get("value")))
    files = sorted(position.get("files", {}))
    return f"{len(files)} file(s)" + (f", last {files[-1]}" if files else "")


def schema_table(schema: dict[str, str]) -> Table:
    """Column name and type."""
    table = Table(title="schema")
    table.add_column("column")
    table.add_column("type")
    for name, dtype in schema.items():
        table.add_row(name, dtype)
    return table


def frame_preview(console: Console, frame: pl.DataFrame, title: str) -> None:
    """Print a preview of rows the way Polars does: wide frames elide middle columns."""
    console.print(title, style="bold")
    with pl.Config(
        tbl_width_chars=console.width, tbl_rows=frame.height, fmt_str_lengths=40, tbl_cols=12
    ):
        console.print(str(frame), markup=False, highlight=False, soft_wrap=True)


def records_table(title: str, records: Sequence[dict[str, Any]]) -> Table:
    """A table of plain records (the keys of the first one are the columns)."""
    table = Table(title=title)
    if not records:
        table.add_column("(none)")
        return table
    for column in records[0]:
        table.add_column(column)
    for record in records:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in record.values()))
    return table


def checks_table(checks: pl.DataFrame, title: str) -> Table:
    """One line per contract check: failed rows, pass rate, verdict."""
    table = Table(title=title)
    for column in ("rule", "level", "severity", "failed rows", "pass rate", "observed", "passed"):
        table.add_column(
            column, justify="right" if column in ("failed rows", "pass rate") else "left"
        )
    for row in checks.iter_rows(named=True):
        style = "green" if row["passed"] else ("yellow" if row["severity"] == "warn" else "red")
        table.add_row(
            row["rule"],
            row["level"],
            row["severity"],
            f"{row['failed_rows']:,}",
            f"{row['pass_rate']:.3%}",
            row["observed"] or "",
            f"[{style}]{'yes' if row['passed'] else 'no'}[/]",
        )
    return table


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover


def vacuum_table(results: list[tuple[Any, Any]], *, dry_run: bool) -> Table:
    """What a vacuum removed (or would remove), per dataset."""
    title = "vacuum (dry run: nothing removed)" if dry_run else "vacuum"
    table = Table(title=title)
    for column in ("dataset", "versions kept", "versions removed", "files", "freed"):
        table.add_column(column)
    for plan, result in results:
        table.add_row(
            plan.dataset,
            ", ".join(str(v) for v in sorted(plan.keep)),
            ", ".join(str(v) for v in result.versions) or "-",
            str(len(result.files)),
            _size(result.bytes),
        )
    return table
