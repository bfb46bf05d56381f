"""Column lineage of a Polars ``LazyFrame``, read from its optimised query plan.

Polars resolves a lazy query into an intermediate representation (IR) in which selectors are
expanded, every node knows its schema and every expression its inputs; alternative engines
(cudf-polars) read it through ``NodeTraverser``. This module walks that IR from the scans of
the node's inputs up to the output and follows each column through ``select`` /
``with_columns`` (expressions), renames, drops, filters, sorts, joins, group-bys, unions and
unique. The IR is versioned: an unknown version, plan node or expression kind raises
:class:`LineageUnavailable` — no lineage rather than a wrong one.

Where it cannot work, and says so:

* Python UDFs (``map_elements``, ``map_batches``, ``LazyFrame.map_batches``, ``pipe_with_schema``):
  Polars cannot show what they read;
* a transform that returns a ``DataFrame`` (there is no plan left), or takes its inputs as
  ``DataFrame`` (annotated ``pl.DataFrame``: they were collected before the call);
* inputs that are not datasets (ephemeral nodes handed over in memory);
* rolling / dynamic group-bys, right joins, as-of joins and plan nodes not listed above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from headrace.lineage.columns.model import (
    ColumnLineage,
    Dependency,
    Deps,
    LineageUnavailable,
    Subtype,
    Transformation,
    merge,
    promote,
)

__all__ = ["IR_VERSIONS", "ScanSource", "trace_lazy_frame"]

IR_VERSIONS = frozenset({16})
"""Major versions of Polars' IR traverser this module was written and tested against."""

_IDENTITY = Transformation(Subtype.IDENTITY)
_JOINS = {"Inner", "Left", "Full", "Cross", "Semi", "Anti"}


@dataclass(frozen=True)
class ScanSource:
    """What a scanned file is: a file of input dataset ``dataset`` with these ``columns``."""

    dataset: str
    columns: frozenset[str]


def trace_lazy_frame(frame: pl.LazyFrame, sources: Mapping[str, ScanSource]) -> ColumnLineage:
    """The column lineage of ``frame``; ``sources`` says which input each scanned file is.

    Raises :class:`LineageUnavailable` when any part of the plan cannot be followed exactly.
    """
    try:
        traverser = frame._ldf.visit()
        major = int(traverser.version()[0])
    except Exception as exc:
        msg = f"this Polars plan cannot be inspected ({type(exc).__name__}: {exc})"
        raise LineageUnavailable(msg) from None
    if major not in IR_VERSIONS:
        msg = f"Polars IR version {major} is not one headrace knows ({sorted(IR_VERSIONS)})"
        raise LineageUnavailable(msg)
    tracer = _Tracer(traverser, sources)
    try:
        columns = tracer.node(traverser.get_node())
    except LineageUnavailable:
        raise
    except Exception as exc:  # e.g. NotImplementedError for a Python UDF in the plan
        msg = f"the plan holds something headrace cannot follow ({type(exc).__name__}: {exc})"
        raise LineageUnavailable(msg) from None
    return ColumnLineage.build(columns, tracer.dataset)


class _Tracer:
    """One walk over a plan: per IR node, output column -> its input dependencies."""

    def __init__(self, traverser: Any, sources: Mapping[str, ScanSource]) -> None:
        self.nt = traverser
        self.sources = sources
        self.dataset: Deps = {}
        self.memo: dict[int, dict[str, Deps]] = {}

    # -- plan nodes ------------------------------------------------------------------------

    def node(self, index: int) -> dict[str, Deps]:
        if index in self.memo:
            return self.memo[index]
        self.nt.set_node(index)
        view = self.nt.view_current_node()
        schema = list(self.nt.get_schema())
        inputs = list(self.nt.get_inputs())
        kind = type(view).__name__
        handler = getattr(self, f"_{kind}", None)
        if handler is None:
            msg = f"Polars plan node {kind} is not followed"
            raise LineageUnavailable(msg)
        result: dict[str, Deps] = handler(view, schema, inputs)
        missing = [name for name in schema if name not in result]
        if missing:
            msg = f"plan node {kind}: no lineage for column(s) {missing}"
            raise LineageUnavailable(msg)
        self.memo[index] = result
        return result

    def _Scan(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        paths = [str(p) for p in (view.paths or [])]
        found = {self.sources.get(p) for p in paths}
        if not paths or None in found or len(found) != 1:
            msg = f"a scan of files that are not the node's inputs: {paths[:3]}"
            raise LineageUnavailable(msg)
        source = next(iter(s for s in found if s is not None))
        env: dict[str, Deps] = {
            # a column the file does not have was made by the scan (a row index): no input
            name: {Dependency(source.dataset, name): {_IDENTITY}} if name in source.columns else {}
            for name in schema
        }
        if view.predicate is not None:
            self._indirect(self.expr(view.predicate.node, env), Subtype.FILTER)
        return env

    def _DataFrameScan(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        frame = pl.DataFrame._from_pydf(view.df)
        if frame.height == 0:
            # The node's inputs are given to it as empty scans: an empty in-memory frame is an
            # input that was collected inside the function, whose origin is lost.
            msg = "an input was collected to a DataFrame inside the function"
            raise LineageUnavailable(msg)
        return {name: {} for name in schema}  # a literal table made in the function

    def _SimpleProjection(
        self, _view: Any, schema: list[str], inputs: list[int]
    ) -> dict[str, Deps]:
        env = self.node(inputs[0])
        return {name: env[name] for name in schema}

    def _Cache(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        env = self.node(view.input)
        return {name: env[name] for name in schema}

    def _Select(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        env = self.node(view.input)
        return {e.output_name: self.expr(e.node, env) for e in view.expr}

    def _HStack(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        env = self.node(view.input)
        out = {name: env[name] for name in env}
        for e in view.exprs:
            out[e.output_name] = self.expr(e.node, env)
        return {name: out[name] for name in schema}

    def _Filter(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        env = self.node(view.input)
        self._indirect(self.expr(view.predicate.node, env), Subtype.FILTER)
        return {name: env[name] for name in schema}

    def _Sort(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        env = self.node(view.input)
        for e in view.by_column:
            self._indirect(self.expr(e.node, env), Subtype.SORT)
        return {name: env[name] for name in schema}

    def _Slice(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        env = self.node(view.input)
        return {name: env[name] for name in schema}

    def _Distinct(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        env = self.node(view.input)
        subset = view.options[1] if isinstance(view.options, tuple) else None
        for name in subset if subset else schema:
            self._indirect(env[name], Subtype.FILTER, "distinct")
        return {name: env[name] for name in schema}

    def _GroupBy(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        options = view.options
        if view.apply or getattr(options, "dynamic", None) or getattr(options, "rolling", None):
            msg = "rolling, dynamic or UDF group-bys are not followed"
            raise LineageUnavailable(msg)
        env = self.node(view.input)
        out: dict[str, Deps] = {}
        for key in view.keys:
            deps = self.expr(key.node, env)
            self._indirect(deps, Subtype.GROUP_BY)
            out[key.output_name] = deps
        for agg in view.aggs:
            out[agg.output_name] = promote(self.expr(agg.node, env), Subtype.AGGREGATION)
        return {name: out[name] for name in schema}

    def _Join(self, view: Any, schema: list[str], inputs: list[int]) -> dict[str, Deps]:
        options = view.options
        if not isinstance(options, tuple) or len(options) < 5 or options[0] not in _JOINS:
            msg = f"join {options[0] if isinstance(options, tuple) else options!r} not followed"
            raise LineageUnavailable(msg)
        how, suffix, coalesce = str(options[0]), str(options[3]), bool(options[4])
        if view.predicate is not None:
            msg = "joins with an extra predicate (join_where) are not followed"
            raise LineageUnavailable(msg)
        left, right = self.node(view.input_left), self.node(view.input_right)
        left_keys = [self.expr(e.node, left) for e in view.left_on]
        right_keys = [self.expr(e.node, right) for e in view.right_on]
        for deps in (*left_keys, *right_keys):
            self._indirect(deps, Subtype.JOIN)
        paired = {
            le.output_name: merge(lk, rk)
            for le, re_, lk, rk in zip(
                view.left_on, view.right_on, left_keys, right_keys, strict=True
            )
            if le.output_name == re_.output_name
        }
        out: dict[str, Deps] = {}
        for name in schema:
            if name in left:
                both = paired.get(name)
                # an inner join's key holds equal values from both sides, a coalesced full
                # join's key takes either side's value; otherwise the column is the left one
                if both is not None and (how == "Inner" or (how == "Full" and coalesce)):
                    out[name] = both
                else:
                    out[name] = left[name]
            elif name in right:
                out[name] = right[name]
            elif suffix and name.endswith(suffix) and name[: -len(suffix)] in right:
                out[name] = right[name[: -len(suffix)]]
            else:
                msg = f"join output column {name!r} cannot be traced to a side"
                raise LineageUnavailable(msg)
        return out

    def _Union(self, view: Any, schema: list[str], inputs: list[int]) -> dict[str, Deps]:
        envs = [self.node(i) for i in view.inputs]
        return {name: merge(*(env[name] for env in envs if name in env)) for name in schema}

    def _HConcat(self, view: Any, schema: list[str], inputs: list[int]) -> dict[str, Deps]:
        combined: dict[str, Deps] = {}
        for index in view.inputs:
            for name, deps in self.node(index).items():
                if name in combined:
                    msg = f"horizontal concat with a repeated column {name!r}"
                    raise LineageUnavailable(msg)
                combined[name] = deps
        return {name: combined[name] for name in schema}

    def _MapFunction(self, view: Any, schema: list[str], _inputs: list[int]) -> dict[str, Deps]:
        env = self.node(view.input)
        function = view.function
        name = function[0] if isinstance(function, tuple) and function else str(function)
        if name == "rename":
            existing, new = list(function[1]), list(function[2])
            renamed = dict(zip(new, existing, strict=True))
            return {c: env.get(renamed.get(c, c), {}) for c in schema}
        if name == "explode":
            return {c: env[c] for c in schema}
        if name == "row_index":  # the new index column reads no input
            return {c: env.get(c, {}) for c in schema}
        if name == "unpivot":
            index, on, variable, value = (
                list(function[1]),
                list(function[2]),
                function[3],
                function[4],
            )
            values = merge(*(promote(env[c], Subtype.TRANSFORMATION) for c in on))
            out = {c: env[c] for c in index}
            out[str(variable)] = {}
            out[str(value)] = values
            return {c: out[c] for c in schema}
        msg = f"plan function {name!r} is not followed"
        raise LineageUnavailable(msg)

    # -- expressions -------------------------------------------------------------------------

    def expr(self, index: int, env: Mapping[str, Deps]) -> Deps:
        """Dependencies of one expression evaluated over a node with columns ``env``."""
        view = self.nt.view_expression(index)
        kind = type(view).__name__
        if kind == "Column":
            if view.name not in env:
                msg = f"column {view.name!r} is not in its input"
                raise LineageUnavailable(msg)
            return {dep: set(how) for dep, how in env[view.name].items()}
        if kind == "Alias":
            return self.expr(view.expr, env)
        if kind in {"Literal", "Len"}:
            return {}
        if kind == "Cast":
            return promote(self.expr(view.expr, env), Subtype.TRANSFORMATION)
        if kind == "BinaryExpr":
            return promote(
                merge(self.expr(view.left, env), self.expr(view.right, env)),
                Subtype.TRANSFORMATION,
            )
        if kind == "Function":
            return promote(merge(*(self.expr(i, env) for i in view.input)), Subtype.TRANSFORMATION)
        if kind == "Agg":
            return promote(merge(*(self.expr(i, env) for i in view.arguments)), Subtype.AGGREGATION)
        if kind == "Ternary":
            condition = _as_indirect(self.expr(view.predicate, env), Subtype.CONDITIONAL)
            values = merge(self.expr(view.truthy, env), self.expr(view.falsy, env))
            return merge(promote(values, Subtype.TRANSFORMATION), condition)
        if kind == "Window":
            if view.order_by is not None:
                ordered = _as_indirect(self.expr(view.order_by, env), Subtype.SORT)
            else:
                ordered = {}
            partitions = merge(*(self.expr(i, env) for i in view.partition_by))
            return merge(
                self.expr(view.function, env),
                _as_indirect(partitions, Subtype.WINDOW),
                ordered,
            )
        if kind == "Sort":
            return self.expr(view.expr, env)
        if kind == "SortBy":
            keys = merge(*(self.expr(i, env) for i in view.by))
            return merge(self.expr(view.expr, env), _as_indirect(keys, Subtype.SORT))
        if kind == "Filter":
            return merge(
                self.expr(view.input, env),
                _as_indirect(self.expr(view.by, env), Subtype.FILTER),
            )
        if kind == "Gather":
            return merge(
                self.expr(view.expr, env), _as_indirect(self.expr(view.idx, env), Subtype.FILTER)
            )
        if kind == "Slice":
            return self.expr(view.input, env)
        msg = f"Polars expression {kind} is not followed"
        raise LineageUnavailable(msg)

    def _indirect(self, deps: Deps, subtype: Subtype, description: str = "") -> None:
        for dependency in deps:
            self.dataset.setdefault(dependency, set()).add(Transformation(subtype, description))


def _as_indirect(deps: Deps, subtype: Subtype) -> Deps:
    return {dependency: {Transformation(subtype)} for dependency in deps}
