"""Column lineage of a SQL node (DuckDB dialect), with sqlglot.

The query is parsed and qualified against the input datasets' schemas (``SELECT *`` is
expanded, every column gets its table), then each output column is followed down through
CTEs, subqueries and set operations to the input tables' columns with sqlglot's lineage
module. How a column is used decides the transformation: copied (``IDENTITY``), computed
(``TRANSFORMATION``), inside an aggregate (``AGGREGATION``), only in a ``CASE`` / ``IF``
condition (``CONDITIONAL``) or a window's ``PARTITION BY`` / ``ORDER BY`` (``WINDOW``,
``SORT``). Columns in ``WHERE`` / ``HAVING``, ``JOIN ... ON``, ``GROUP BY`` and ``ORDER BY``
shape the whole output (the facet's ``dataset`` list).

Why sqlglot: it is a pure-Python parser with a DuckDB dialect and a scope-aware lineage
module that resolves CTEs, subqueries, unions and stars; DuckDB itself only exposes its parse
tree (``json_serialize_sql``) without name resolution, which would mean writing that
resolver here.

It cannot (and then sends no column lineage): tables that are not datasets of this project
(table functions such as ``read_csv``, ephemeral inputs), stars over an input whose schema is
unknown, and SQL that sqlglot cannot parse.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.lineage import Node as LineageNode
from sqlglot.lineage import lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope

from headrace.lineage.columns.model import (
    ColumnLineage,
    Dependency,
    Deps,
    LineageUnavailable,
    Subtype,
    Transformation,
)

__all__ = ["sql_lineage"]

DIALECT = "duckdb"
_CACHE_SIZE = 256
_cache: dict[tuple[Any, ...], ColumnLineage | str] = {}
_cache_lock = threading.Lock()


def sql_lineage(sql: str, inputs: Mapping[str, Sequence[str]]) -> ColumnLineage:
    """The column lineage of ``sql``; ``inputs`` maps each input table to its columns.

    Table names are the node's input names (the datasets). Raises :class:`LineageUnavailable`
    when the query reads anything else or cannot be resolved exactly. Results are cached per
    query and input columns (parsing costs ~10-100 ms, the first one in a process ~0.25 s
    more to load sqlglot's DuckDB dialect).
    """
    key = (sql, tuple(sorted((table, tuple(columns)) for table, columns in inputs.items())))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is None:
        try:
            cached = _sql_lineage(sql, inputs)
        except LineageUnavailable as exc:
            cached = str(exc)
        with _cache_lock:
            if len(_cache) >= _CACHE_SIZE:
                _cache.pop(next(iter(_cache)))
            _cache[key] = cached
    if isinstance(cached, str):
        raise LineageUnavailable(cached)
    return cached


def _sql_lineage(sql: str, inputs: Mapping[str, Sequence[str]]) -> ColumnLineage:
    schema: dict[str, object] = {
        table: dict.fromkeys(columns, "UNKNOWN") for table, columns in inputs.items()
    }
    try:
        parsed = sqlglot.parse_one(sql, dialect=DIALECT)
        query = qualify(parsed, schema=schema, dialect=DIALECT, validate_qualify_columns=True)
        root = build_scope(query)
    except SqlglotError as exc:
        msg = f"the SQL could not be resolved: {str(exc).splitlines()[0]}"
        raise LineageUnavailable(msg) from None
    if root is None or not isinstance(query, exp.Query):
        msg = "not a query"
        raise LineageUnavailable(msg)
    for table in query.find_all(exp.Table):
        if table.name not in inputs and not _is_cte(table, root):
            msg = f"the SQL reads {table.sql(DIALECT)!r}, which is not an input of the node"
            raise LineageUnavailable(msg)
    if any(isinstance(s.unalias(), exp.Star) or _is_table_star(s) for s in query.selects):
        msg = "a star could not be expanded (an input's schema is unknown)"
        raise LineageUnavailable(msg)
    fields: dict[str, Deps] = {}
    for select in query.selects:
        name = select.alias_or_name
        try:
            node = lineage(name, query, schema=schema, dialect=DIALECT, scope=root)
        except SqlglotError as exc:
            msg = f"column {name!r}: {str(exc).splitlines()[0]}"
            raise LineageUnavailable(msg) from None
        deps: Deps = {}
        _follow(node, [], deps, inputs)
        fields[name] = deps
    dataset: Deps = {}
    for scope in traverse_scope(query):
        _clauses(scope, dataset, inputs)
    return ColumnLineage.build(fields, dataset)


def _is_table_star(select: Any) -> bool:
    column = select.unalias()
    return isinstance(column, exp.Column) and isinstance(column.this, exp.Star)


def _is_cte(table: exp.Table, root: Scope) -> bool:
    return any(table.name in scope.cte_sources for scope in root.traverse())


def _follow(
    node: LineageNode, path: list[Subtype], deps: Deps, inputs: Mapping[str, Sequence[str]]
) -> None:
    """Walk one output column's lineage graph, noting how each step uses the column."""
    if not node.downstream:
        if isinstance(node.source, exp.Table) and isinstance(node.expression, exp.Table):
            table = node.source.name
            if table not in inputs:
                msg = f"column {node.name!r} comes from {table!r}, not an input"
                raise LineageUnavailable(msg)
            column = exp.to_column(node.name, dialect=DIALECT).name
            deps.setdefault(Dependency(table, column), set()).add(_combine(path))
        return  # a literal or COUNT(*): no input column
    if isinstance(node.source, exp.SetOperation) and not isinstance(node.source, exp.Select):
        for child in node.downstream:  # a UNION's branches, by position
            _follow(child, path, deps, inputs)
        return
    projection = node.expression.this if isinstance(node.expression, exp.Alias) else node.expression
    for child in node.downstream:
        if isinstance(child.source, exp.SetOperation) and child.name.isdigit():
            _follow(child, path, deps, inputs)
            continue
        reference: Any = exp.to_column(child.name, dialect=DIALECT)
        uses = [
            _usage(column, projection)
            for column in projection.find_all(exp.Column)
            if column.name == reference.name and column.table == reference.table
        ]
        if not uses:
            msg = f"cannot tell how {child.name!r} is used in {projection.sql(DIALECT)!r}"
            raise LineageUnavailable(msg)
        for use in set(uses):
            _follow(child, [*path, use], deps, inputs)


def _usage(column: exp.Column, projection: Any) -> Subtype:
    """How one column reference inside a projection contributes to it."""
    if column is projection:
        return Subtype.IDENTITY
    kind = Subtype.TRANSFORMATION
    child: Any = column
    parent = column.parent
    while parent is not None:
        if isinstance(parent, exp.Window):
            if child is parent.args.get("partition_by") or child in (
                parent.args.get("partition_by") or []
            ):
                return Subtype.WINDOW
            if child is parent.args.get("order"):
                return Subtype.SORT
        if isinstance(parent, exp.If) and child is parent.args.get("this"):
            return Subtype.CONDITIONAL
        if isinstance(parent, exp.Case) and child is parent.args.get("this"):
            return Subtype.CONDITIONAL  # CASE x WHEN ...: x picks the branch
        if isinstance(parent, exp.AggFunc):
            kind = Subtype.AGGREGATION
        if parent is projection:
            break
        child, parent = parent, parent.parent
    return kind


def _combine(path: list[Subtype]) -> Transformation:
    """One transformation for a chain of uses (outermost first)."""
    for use in path:
        if not use.direct:
            return Transformation(use)
    if Subtype.AGGREGATION in path:
        return Transformation(Subtype.AGGREGATION)
    if any(use is Subtype.TRANSFORMATION for use in path):
        return Transformation(Subtype.TRANSFORMATION)
    return Transformation(Subtype.IDENTITY)


_CLAUSES: tuple[tuple[str, Subtype], ...] = (
    ("where", Subtype.FILTER),
    ("having", Subtype.FILTER),
    ("qualify", Subtype.FILTER),
    ("group", Subtype.GROUP_BY),
    ("order", Subtype.SORT),
)


def _clauses(scope: Scope, dataset: Deps, inputs: Mapping[str, Sequence[str]]) -> None:
    """The columns of one scope's filters, joins, groupings and orderings."""
    select: Any = scope.expression
    if not isinstance(select, exp.Select):
        return
    parts: list[tuple[Any, Subtype]] = [
        (select.args[key], subtype) for key, subtype in _CLAUSES if select.args.get(key)
    ]
    for join in select.args.get("joins") or []:
        for key in ("on", "using"):
            value = join.args.get(key)
            if isinstance(value, list):
                parts.extend((v, Subtype.JOIN) for v in value)
            elif value is not None:
                parts.append((value, Subtype.JOIN))
    for clause, subtype in parts:
        for column in clause.find_all(exp.Column):
            for table, name in _resolve(scope, column, inputs, depth=0):
                dataset.setdefault(Dependency(table, name), set()).add(Transformation(subtype))


def _resolve(
    scope: Scope, column: exp.Column, inputs: Mapping[str, Sequence[str]], *, depth: int
) -> set[tuple[str, str]]:
    """The input-table columns a column reference in ``scope`` stands for."""
    if depth > 32:
        msg = "the SQL nests too deeply to follow"
        raise LineageUnavailable(msg)
    expression: Any = scope.expression
    if not column.table:  # an output alias (ORDER BY month)
        for select in expression.selects:
            if select.alias_or_name == column.name and select is not column:
                found: set[tuple[str, str]] = set()
                for inner in select.find_all(exp.Column):
                    if inner is not column:
                        found |= _resolve(scope, inner, inputs, depth=depth + 1)
                return found
        msg = f"column {column.name!r} cannot be resolved"
        raise LineageUnavailable(msg)
    source: Any = scope.sources.get(column.table)
    if isinstance(source, exp.Table):
        if source.name not in inputs:
            msg = f"{source.name!r} is not an input of the node"
            raise LineageUnavailable(msg)
        return {(source.name, column.name)}
    if isinstance(source, Scope) and isinstance(source.expression, exp.Select):
        for select in source.expression.selects:
            if select.alias_or_name == column.name:
                found = set()
                for inner in select.find_all(exp.Column):
                    found |= _resolve(source, inner, inputs, depth=depth + 1)
                return found
    msg = f"column {column.sql(DIALECT)!r} cannot be resolved"
    raise LineageUnavailable(msg)
