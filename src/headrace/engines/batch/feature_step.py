"""Running a feature-view node: compute the view's offline dataset, incrementally when it can.

A run is *incremental* when the dataset's newest version was computed by the same view logic
(its fingerprint is in the commit metadata) from an older version of the same source dataset,
and Delta can tell which data files changed in between. Then:

1. ``start`` = the earliest event time among the rows in the added and the removed files
   (appended rows, late rows, rewritten partitions all count);
2. source rows from ``start - longest window`` on are read, the features computed, and the
   rows with event time >= ``start`` kept;
3. they replace exactly the dataset's rows with event time >= ``start`` in one Delta commit
   (delete + add are atomic: a crash leaves the previous version).

Rows before ``start`` cannot change (windows only look back), so the result equals a full
recompute. Anything else (first run, changed view logic, a vacuumed or replaced source, an
in-memory source, ``--full-refresh``) recomputes everything.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from headrace.core.fingerprint import content_hash, key_hash
from headrace.core.records import NodeRunRecord, NodeStatus
from headrace.engines.batch.plan import Task
from headrace.engines.batch.task import Output, _AttemptsFailed, _describe
from headrace.engines.compute.features import compute_view, event_time_utc, view_input

if TYPE_CHECKING:
    from headrace.core.features import FeatureView
    from headrace.engines.batch.task import TaskRunner

__all__ = ["FeatureStep"]

FINGERPRINT = "headrace.features.fingerprint"
SOURCE_VERSION = "headrace.features.source_version"
RECOMPUTED_FROM = "headrace.features.from"
"""Commit metadata: the earliest event time rewritten by this version ('' = all)."""


class FeatureStep:
    """Computes one feature-view task for a :class:`TaskRunner`."""

    def __init__(self, runner: TaskRunner) -> None:
        self.runner = runner

    def run(
        self, task: Task, started: datetime, cache_key: str, code_hash: str, reason: str
    ) -> NodeRunRecord:
        """Compute, commit and record the view; a failed record on error."""
        runner = self.runner
        node = task.node
        view = node.features
        assert view is not None
        upstream = self._upstream(task, view.source)
        try:
            attempted = runner._attempt(
                task, {}, {}, call=lambda: (self._compute(task, view, upstream), None)
            )
        except _AttemptsFailed as failed:
            return runner._record(
                task,
                NodeStatus.FAILED,
                started,
                attempts=failed.attempts,
                error=_describe(failed.error),
                cache_reason=reason,
                cache_key=cache_key,
            )
        slice_, start, dropped = attempted.value
        note = reason
        if start is not None:
            note += f", incremental from {start.isoformat()}"
        if dropped:
            note += f", {dropped:,} source row(s) without key or event time skipped"
        if slice_ is None:  # nothing changed in the source
            output = self._current(node.name)
            runner.outputs[task.id] = output
            return runner._record(
                task,
                NodeStatus.SUCCEEDED,
                started,
                attempts=attempted.attempts,
                cache_reason=note + ", no source change",
                cache_key=cache_key,
                rows_out=output.rows,
                dataset=output.dataset,
                version=output.version,
            )
        output = self._commit(task, view, upstream, slice_, start, cache_key, code_hash)
        runner.outputs[task.id] = output
        return runner._record(
            task,
            NodeStatus.SUCCEEDED,
            started,
            attempts=attempted.attempts,
            cache_reason=note,
            cache_key=cache_key,
            rows_in=slice_.height,
            rows_out=slice_.height,
            bytes_out=int(slice_.estimated_size()),
            dataset=output.dataset,
            version=output.version,
        )

    # -- internals -------------------------------------------------------------------------

    def _upstream(self, task: Task, source: str) -> Output:
        runner = self.runner
        needed = set(task.upstream)
        ids = [tid for tid in runner.plan.tasks_by_node[source] if tid in needed]
        if len(ids) == 1 and runner.graph.node(source).partitions is None:
            return runner.outputs[ids[0]]
        # A partitioned source: the view reads the whole dataset, as of its newest version
        # (a task's own output is one partition only).
        version = runner.store.current_version(source)
        assert version is not None
        return Output(key="", dataset=source, version=version)

    def _source(self, upstream: Output) -> pl.LazyFrame:
        runner = self.runner
        if upstream.value is not None:
            value = upstream.value
            return value.lazy() if isinstance(value, pl.DataFrame) else value
        assert upstream.dataset is not None
        return runner.store.scan(upstream.dataset, upstream.version)

    def _compute(
        self, task: Task, view: FeatureView, upstream: Output
    ) -> tuple[pl.DataFrame | None, datetime | None, int]:
        source = view_input(view, self._source(upstream), what=f"source {view.source!r}")
        start = self._changed_since(task, view, upstream)
        if start is not None and start is not _UNCHANGED and view.window is not None:
            start = None  # a window (a session above all) can reach back anywhere: recompute
        if start is None:
            computed = compute_view(view, source)
            return computed.frame, None, computed.dropped
        if start is _UNCHANGED:
            return None, None, 0
        assert isinstance(start, datetime)
        history = source.filter(pl.col(view.event_time) >= start - view.max_window)
        computed = compute_view(view, history, emit_from=start)
        return computed.frame, start, computed.dropped

    def _changed_since(
        self, task: Task, view: FeatureView, upstream: Output
    ) -> datetime | object | None:
        """The earliest changed event time; ``_UNCHANGED``; or None for a full recompute."""
        runner = self.runner
        store = runner.store
        name = task.node.name
        if runner.full_refresh or upstream.dataset is None or upstream.version is None:
            return None
        if not store.exists(name):
            return None
        meta = store.latest_commit_metadata(name)
        previous = meta.get(SOURCE_VERSION, "")
        if meta.get(FINGERPRINT) != view.fingerprint() or not previous.isdigit():
            return None
        if int(previous) == upstream.version:
            return _UNCHANGED
        changed = store.changed_files(upstream.dataset, int(previous), upstream.version)
        if changed is None:
            return None
        added, removed = changed
        if not added and not removed:
            return _UNCHANGED
        earliest = _earliest_change(view, added, removed)
        if earliest is None:  # no row the view reads changed (or only rows without a time)
            return _UNCHANGED
        return earliest

    def _commit(  # noqa: PLR0917 - one private call site
        self,
        task: Task,
        view: FeatureView,
        upstream: Output,
        frame: pl.DataFrame,
        start: datetime | None,
        cache_key: str,
        code_hash: str,
    ) -> Output:
        runner = self.runner
        name = task.node.name
        metadata = runner._commit_metadata(task, cache_key, code_hash)
        metadata[FINGERPRINT] = view.fingerprint()
        metadata[SOURCE_VERSION] = "" if upstream.version is None else str(upstream.version)
        metadata[RECOMPUTED_FROM] = "" if start is None else start.isoformat()
        digest = content_hash(frame)
        if start is None:
            written = runner.store.write(name, frame, commit_metadata=metadata)
        else:
            previous = runner.log.latest_write(name, None)
            digest = key_hash(previous.content_hash if previous else "", digest, start.isoformat())
            column = view.event_time.replace('"', '""')
            written = runner.store.write(
                name,
                frame,
                commit_metadata=metadata,
                replace_where=f"\"{column}\" >= '{start.isoformat()}'",
            )
        runner._record_version(task, name, written, digest, (cache_key, code_hash))
        return Output(
            key=f"{name}@{written.version}:{digest}",
            rows=written.total_rows,
            dataset=name,
            version=written.version,
        )

    def _current(self, name: str) -> Output:
        newest = self.runner.log.latest_write(name, None)
        version = self.runner.store.current_version(name)
        if newest is None or newest.version != version:
            return Output(key=f"{name}@{version}", dataset=name, version=version)
        return Output(
            key=f"{name}@{newest.version}:{newest.content_hash}",
            rows=newest.total_rows,
            dataset=name,
            version=newest.version,
        )


_UNCHANGED = object()


def _earliest_change(view: FeatureView, added: list[str], removed: list[str]) -> datetime | None:
    """The earliest event time among rows that really changed between two file sets.

    A rewrite (a replaced partition, a compaction) removes files and adds others that may hold
    many of the same rows: only rows whose count differs between the removed and the added
    files count, compared on the columns the view reads.
    """
    columns = list(view.source_columns)

    def counts(files: list[str]) -> pl.LazyFrame:
        if not files:
            return pl.LazyFrame(
                schema={"_h": pl.UInt64, "_t": pl.Datetime("us", "UTC"), "_n": pl.UInt32}
            )
        scan = pl.scan_parquet(files).select(columns)
        dtype = scan.collect_schema()[view.event_time]
        return (
            scan.select(
                pl.struct(columns).hash(seed=11).alias("_h"),
                event_time_utc(view.event_time, dtype, view=view.name).alias("_t"),
            )
            .group_by("_h", "_t")
            .len(name="_n")
        )

    differing = (
        counts(added)
        .join(counts(removed), on=["_h", "_t"], how="full", coalesce=True)
        .filter(pl.col("_n").fill_null(0) != pl.col("_n_right").fill_null(0))
        .select(pl.col("_t").min())
        .collect()
        .item()
    )
    assert differing is None or isinstance(differing, datetime)
    return differing
