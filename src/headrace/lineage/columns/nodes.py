"""Column lineage per kind of node: Python transforms, feature views and ingest nodes.

SQL nodes go to :func:`headrace.lineage.columns.sql.sql_lineage` directly.

A Python transform's lineage is read from the plan of the ``LazyFrame`` it returns. The
emitter does not see that frame (the engine collects it), so it *traces* the function: it is
called once more, on a background thread, with an empty Parquet file of each input's schema,
and the plan of what it returns is inspected (:mod:`headrace.lineage.columns.plan`); nothing
is collected. Transforms are plain functions of frames, so this second call costs
milliseconds; a function with side effects outside its return value (which a transform
should not have: that is what sinks are for) would repeat them — turn tracing off with
``[lineage] column_lineage = false``. Results are cached per code hash and input schemas.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from headrace.core.context import NodeContext
from headrace.core.features import Aggregate, FeatureView, duration_text
from headrace.core.node import BindingKind, Node
from headrace.lineage.columns.model import (
    ColumnLineage,
    Dependency,
    Deps,
    LineageUnavailable,
    Subtype,
    Transformation,
)
from headrace.lineage.columns.plan import ScanSource, trace_lazy_frame

__all__ = ["InputFrame", "feature_view_lineage", "ingest_lineage", "python_lineage"]

_CACHE_SIZE = 256
_cache: dict[tuple[Any, ...], ColumnLineage | str] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class InputFrame:
    """One persisted input of a node as the lineage tracer sees it."""

    dataset: str
    schema: pl.Schema


def python_lineage(
    node: Node,
    inputs: Mapping[str, InputFrame],
    *,
    config: Mapping[str, Any],
    run_id: str,
    partition: str | None = None,
    output_columns: Sequence[str] | None = None,
) -> ColumnLineage:
    """The column lineage of a Python transform, by tracing it on empty inputs.

    ``inputs`` maps each upstream node to its dataset and schema; an upstream that is not
    there (an ephemeral node handed over in memory) makes the lineage unavailable.
    ``output_columns``: the columns the node really produced; a traced frame with other
    columns (the function behaves differently on empty inputs) gives no lineage.
    Raises :class:`LineageUnavailable` with the reason when it cannot be derived exactly.
    """
    if node.fn is None:
        msg = "the node has no function"
        raise LineageUnavailable(msg)
    missing = [name for name in node.inputs if name not in inputs]
    if missing:
        msg = f"input(s) {missing} are handed over in memory, not read from a dataset"
        raise LineageUnavailable(msg)
    if any(b.kind is BindingKind.INPUT and b.wants_dataframe for b in node.bindings):
        msg = "the function takes an input as a DataFrame (collected before the call)"
        raise LineageUnavailable(msg)
    values = {
        b.parameter: config.get(b.source, b.default)
        for b in node.bindings
        if b.kind is BindingKind.CONFIG
    }
    key = (
        node.name,
        node.code_hash(),
        tuple((n, i.dataset, tuple(i.schema.items())) for n, i in sorted(inputs.items())),
        repr(sorted(values.items())),
        tuple(output_columns or ()),
    )
    with _cache_lock:
        cached = _cache.get(key)
    if isinstance(cached, ColumnLineage):
        return cached
    if isinstance(cached, str):
        raise LineageUnavailable(cached)
    try:
        result = _trace(
            node,
            inputs,
            values,
            config=config,
            run_id=run_id,
            partition=partition,
            expected=output_columns,
        )
    except LineageUnavailable as exc:
        _remember(key, str(exc))
        raise
    _remember(key, result)
    return result


def _remember(key: tuple[Any, ...], value: ColumnLineage | str) -> None:
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = value


def _trace(
    node: Node,
    inputs: Mapping[str, InputFrame],
    values: Mapping[str, Any],
    *,
    config: Mapping[str, Any],
    run_id: str,
    partition: str | None,
    expected: Sequence[str] | None,
) -> ColumnLineage:
    assert node.fn is not None
    with tempfile.TemporaryDirectory(prefix="headrace-lineage-") as folder:
        sources: dict[str, ScanSource] = {}
        frames: dict[str, pl.LazyFrame] = {}
        for name in node.inputs:
            given = inputs[name]
            path = Path(folder) / f"{len(frames)}.parquet"
            # pyarrow writes the empty file at once; Polars would queue it behind the run's
            # work in its thread pool
            pq.write_table(pl.DataFrame(schema=given.schema).to_arrow(), path)
            sources[str(path)] = ScanSource(given.dataset, frozenset(given.schema.names()))
            frames[name] = pl.scan_parquet(path)
        arguments: dict[str, Any] = {}
        for binding in node.bindings:
            if binding.kind is BindingKind.CONTEXT:
                arguments[binding.parameter] = NodeContext(
                    run_id=run_id,
                    node=node.name,
                    partition=partition,
                    scheme=node.partitions,
                    config=config,
                )
            elif binding.kind is BindingKind.CONFIG:
                arguments[binding.parameter] = values[binding.source]
            else:
                arguments[binding.parameter] = frames[binding.source]
        try:
            value = node.fn(**arguments)
        except Exception as exc:
            msg = f"the function failed on empty inputs ({type(exc).__name__}: {exc})"
            raise LineageUnavailable(msg) from None
        if not isinstance(value, pl.LazyFrame):
            msg = f"the function returns {type(value).__name__}, not a LazyFrame (no plan)"
            raise LineageUnavailable(msg)
        if expected is not None:
            try:
                names = value.collect_schema().names()
            except Exception as exc:
                msg = f"the returned plan has no schema ({type(exc).__name__}: {exc})"
                raise LineageUnavailable(msg) from None
            if set(names) != set(expected):
                msg = f"traced on empty inputs, the function returns other columns ({names})"
                raise LineageUnavailable(msg)
        return trace_lazy_frame(value, sources)


def feature_view_lineage(view: FeatureView) -> ColumnLineage:
    """The lineage of a feature view's offline dataset, from its declaration.

    Keys and times are copied; an aggregate summarises its column over a window per entity
    (the keys group, the event time orders and bounds the window); a row feature computes
    from the columns its expression names.
    """
    source = view.source
    identity = {Transformation(Subtype.IDENTITY)}
    fields: dict[str, Deps] = {
        key: {Dependency(source, key): set(identity)} for key in view.entity.keys
    }
    fields[view.event_time] = {Dependency(source, view.event_time): set(identity)}
    if view.created_time:
        fields[view.created_time] = {Dependency(source, view.created_time): set(identity)}
    for feature in view.features:
        if isinstance(feature, Aggregate):
            if feature.column is None:
                continue  # a row count reads no column
            how = Transformation(Subtype.AGGREGATION, f"{feature.function} over {_window(feature)}")
            fields[feature.name] = {Dependency(source, feature.column): {how}}
        else:
            expr = feature.expr
            subtype = Subtype.IDENTITY if expr.meta.is_column() else Subtype.TRANSFORMATION
            fields[feature.name] = {
                Dependency(source, column): {Transformation(subtype)}
                for column in expr.meta.root_names()
            }
    dataset: Deps = {
        Dependency(source, key): {Transformation(Subtype.GROUP_BY)} for key in view.entity.keys
    }
    if view.aggregates:
        dataset[Dependency(source, view.event_time)] = {Transformation(Subtype.WINDOW)}
    return ColumnLineage.build(fields, dataset)


def _window(aggregate: Aggregate) -> str:
    return duration_text(aggregate.period)


def ingest_lineage(source_dataset: str, columns: list[str], *, typed: bool) -> ColumnLineage:
    """An ingest node's dataset: each column read from the source column of the same name.

    ``typed``: the node's contract casts the columns (``TRANSFORMATION``), else they are
    copied (``IDENTITY``). Position columns headrace adds (``_hr_*``) read no source column.
    """
    subtype = Subtype.TRANSFORMATION if typed else Subtype.IDENTITY
    description = "typed by the contract" if typed else ""
    return ColumnLineage.build(
        {
            column: {Dependency(source_dataset, column): {Transformation(subtype, description)}}
            for column in columns
            if not column.startswith("_hr_")
        }
    )
