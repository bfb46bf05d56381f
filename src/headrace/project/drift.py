"""Drift of a dataset version against a reference version, with sketches stored once.

The reference's statistics are mergeable sketches (see :mod:`headrace.quality.drift`),
computed the first time a version serves as a reference (or when a node with ``drift=``
writes it) and stored beside it: ``<state>/sketches/<dataset>/<version>.sketch``. Each
comparison is stored too: ``<state>/drift/<dataset>/<current>-vs-<reference>.json``, and is
handed to the alert rules (``kind = "drift"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from headrace.core.records import NodeRunRecord, NodeStatus
from headrace.quality.drift import (
    ColumnSketch,
    DriftResult,
    compare,
    dump_sketches,
    load_sketches,
    render_drift_report,
    sketch_frame,
)

if TYPE_CHECKING:
    from datetime import datetime

    from headrace.core.graph import Graph
    from headrace.engines.batch.plan import Plan, Task
    from headrace.engines.batch.run import RunResult
    from headrace.project.project import Project

__all__ = ["DriftCheck", "DriftListener", "drift_columns", "run_drift"]


@dataclass(frozen=True)
class DriftCheck:
    """One comparison: the result, the versions, and where its report was written."""

    dataset: str
    reference: int
    current: int
    result: DriftResult
    report: Path | None = None


def drift_columns(schema: pl.Schema, columns: list[str] | None = None) -> list[str]:
    """The columns drift can compare: numbers, strings, categoricals and booleans.

    >>> drift_columns(pl.Schema({"a": pl.Int64, "t": pl.Datetime(), "s": pl.String}))
    ['a', 's']
    """
    if columns:
        return columns
    return [
        name
        for name, dtype in schema.items()
        if dtype.is_numeric()
        or dtype in (pl.String, pl.Boolean)
        or isinstance(dtype, pl.Categorical | pl.Enum)
    ]


def sketches(project: Project, dataset: str, version: int) -> dict[str, ColumnSketch]:
    """The stored sketches of a version, computing and storing them the first time."""
    path = project.state_dir / "sketches" / dataset / f"{version}.sketch"
    if path.exists():
        return load_sketches(path.read_bytes())
    frame = project.scan(dataset, version)
    computed = sketch_frame(frame, columns=drift_columns(frame.collect_schema()))
    _store(project, dataset, version, computed)
    return computed


def _store(project: Project, dataset: str, version: int, made: dict[str, ColumnSketch]) -> None:
    path = project.state_dir / "sketches" / dataset / f"{version}.sketch"
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(dump_sketches(made))
    partial.replace(path)  # atomic: a crash never leaves half a sketch


def run_drift(
    project: Project,
    dataset: str,
    reference: int,
    current: int | None = None,
    *,
    columns: list[str] | None = None,
    report: Path | None = None,
) -> DriftCheck:
    """Compare ``dataset@current`` (default: newest) with ``dataset@reference``; store it."""
    now = project.dataset_version(dataset, current).version
    base = project.dataset_version(dataset, reference).version
    reference_sketches = sketches(project, dataset, base)
    wanted = columns or list(reference_sketches)
    current_frame = project.scan(dataset, now).select(wanted)
    current_sketches = sketch_frame(current_frame, columns=wanted, like=reference_sketches)
    if columns is None:  # the whole sketch: store it, so this version can be a reference too
        _store(project, dataset, now, current_sketches)
    result = compare(reference_sketches, current_sketches, columns=wanted)
    folder = project.state_dir / "drift" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{now}-vs-{base}.json").write_text(
        json.dumps(
            {"dataset": dataset, "reference": base, "current": now, **result.to_dict()},
            default=str,
        ),
        encoding="utf-8",
    )
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(
            render_drift_report(
                result,
                reference_sketches,
                current_sketches,
                title=f"{dataset}: version {now} vs reference {base}",
            ),
            encoding="utf-8",
        )
    project.monitor.evaluate_drift(
        result, dataset=dataset, reference_version=base, current_version=now
    )
    return DriftCheck(dataset, base, now, result, report)


class DriftListener:
    """Checks the new output versions of nodes declared with ``drift=`` (a run listener)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.graph: Graph | None = None

    def run_started(self, run_id: str, graph: Graph, plan: Plan, started_at: datetime) -> None:
        """Remember the graph (which nodes want drift checks)."""
        self.graph = graph

    def task_started(self, task: Task) -> None:
        """Nothing to do before a task."""

    def task_finished(self, task: Task, record: NodeRunRecord) -> None:
        """After a node with ``drift=`` wrote a new version: compare it with its reference."""
        spec = task.node.drift
        if spec is None or record.status is not NodeStatus.SUCCEEDED or record.cache_hit:
            return
        if record.output_dataset is None or record.output_version is None:
            return
        reference = spec.reference
        if reference is None:
            older = [
                v.version
                for v in self.project.metadata.dataset_history(record.output_dataset)
                if v.version < record.output_version
            ]
            if not older:  # the first version: nothing to compare with; keep its sketch
                sketches(self.project, record.output_dataset, record.output_version)
                return
            reference = older[0]
        run_drift(
            self.project,
            record.output_dataset,
            reference,
            record.output_version,
            columns=list(spec.columns) or None,
        )

    def run_finished(self, result: RunResult) -> None:
        """Nothing to do after the run."""
