"""Polars frames of a parse: text rows, types, ``_hr_source``/``_hr_line`` and rejects."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import polars as pl

from headrace.connectors.base import LINE, REJECT_SCHEMA, SOURCE, Batch, empty_rejects
from headrace.connectors.csv.dialect import Reject
from headrace.core.source import CsvOptions

Schema = Mapping[str, pl.DataType]
"""The user columns of a read: name -> type."""


def _cast_text(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame | None:
    """Text columns as the types of ``schema``; None when a value does not fit its type."""
    casts = []
    for name, dtype in schema.items():
        if dtype == pl.String:
            continue
        column = frame.get_column(name)
        if dtype == pl.Boolean:
            lowered = column.str.to_lowercase()
            cast = pl.when(lowered == "true").then(True).when(lowered == "false").then(False)
            converted = frame.select(cast.alias(name)).to_series()
        else:
            converted = column.cast(dtype, strict=False)
        if converted.null_count() != column.null_count():
            return None
        casts.append(converted)
    return frame.with_columns(casts) if casts else frame


def _infer_types(frame: pl.DataFrame, keep: Collection[str]) -> pl.DataFrame:
    """String columns (except ``keep``) as Int64, Float64 or Boolean when every value fits.

    The same choices as Polars' CSV inference, made over every row.
    """
    casts = []
    for name, dtype in frame.schema.items():
        if name in keep or name == LINE or dtype != pl.String:
            continue
        column = frame.get_column(name)
        present = column.len() - column.null_count()
        if not present:
            continue
        for target in (pl.Int64, pl.Float64):
            cast = column.cast(target, strict=False)
            if cast.null_count() == column.null_count():
                casts.append(cast)
                break
        else:
            lowered = column.str.to_lowercase()
            if lowered.is_in(["true", "false"]).sum() == present:
                casts.append(lowered == "true")
    return frame.with_columns(casts) if casts else frame


def _string_frame(
    names: tuple[str, ...],
    rows: list[list[str]],
    lines: list[int],
    nulls: frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """Rows of text fields as String columns (``nulls`` made null), with ``_hr_line``."""
    schema = dict.fromkeys(names, pl.String())
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    frame = pl.DataFrame(dict(zip(names, columns, strict=True)), schema=schema)
    if nulls and rows:
        markers = pl.lit(sorted(nulls), dtype=pl.List(pl.String))
        frame = frame.with_columns(
            pl.when(pl.col(name).is_in(markers)).then(None).otherwise(pl.col(name)).alias(name)
            for name in names
        )
    return frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))


def _with_source(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """The user columns, then ``_hr_source`` and ``_hr_line`` (all chunked alike: no copy)."""
    if LINE not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias(LINE))
    columns = [name for name in frame.columns if name not in (SOURCE, LINE)]
    sources = pl.lit(source, dtype=pl.String).alias(SOURCE)
    return frame.with_columns(sources).select(*columns, SOURCE, LINE)


def _rejects(rows: list[Reject]) -> pl.DataFrame:
    if not rows:
        return empty_rejects()
    return pl.DataFrame(rows, schema=dict(REJECT_SCHEMA), orient="row")


def _empty_file(source: str, options: CsvOptions, declared: tuple[str, ...], detail: str) -> Batch:
    """One ``empty_file`` reject, and no rows (in the declared columns, as String)."""
    names = tuple(options.column_names or ()) if not options.has_header else ()
    names = names or declared
    reject: Reject = (source, None, 0, "", "empty_file", detail)
    return Batch(_with_source(_string_frame(names, [], []), source), _rejects([reject]))
