"""The :class:`Pipeline`: a named set of nodes declared with decorators on plain functions.

Example:
    >>> import polars as pl
    >>> import headrace as hr
    >>> pipeline = hr.Pipeline("demo")
    >>> @pipeline.source
    ... def numbers() -> pl.LazyFrame:
    ...     return pl.LazyFrame({"n": [1, 2, 3]})
    >>> @pipeline.transform
    ... def doubled(numbers: pl.LazyFrame) -> pl.LazyFrame:
    ...     return numbers.with_columns(pl.col("n") * 2)
    >>> [node.name for node in pipeline.validate().nodes]
    ['numbers', 'doubled']

The decorators return the function unchanged, so it stays an ordinary, testable function.

"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar, cast, overload

import polars as pl

from headrace.core.contract import Contract
from headrace.core.features import FeatureSet, FeatureView, check_views
from headrace.core.graph import Graph
from headrace.core.node import (
    CONTEXT_PARAMETER,
    Binding,
    BindingKind,
    Node,
    NodeKind,
    RetryPolicy,
)
from headrace.core.partitions import PartitionScheme
from headrace.core.source import SourceSpec
from headrace.core.stream import StreamSource
from headrace.errors import DuplicateNodeError, PipelineError

__all__ = ["Pipeline"]

F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Pipeline:
    """A named DAG of nodes. Declaring a node runs nothing; running is the engines' job."""

    def __init__(self, name: str, *, description: str = "") -> None:
        _check_name(name, what="pipeline")
        self.name = name
        self.description = description
        self._nodes: dict[str, Node] = {}
        self._feature_sets: dict[str, FeatureSet] = {}
        self._streams: dict[str, StreamSource] = {}

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, nodes={len(self._nodes)})"

    @property
    def nodes(self) -> Mapping[str, Node]:
        """The declared nodes by name, in declaration order."""
        return dict(self._nodes)

    @property
    def feature_views(self) -> Mapping[str, FeatureView]:
        """The declared feature views by name."""
        return {n.name: n.features for n in self._nodes.values() if n.features is not None}

    @property
    def feature_sets(self) -> Mapping[str, FeatureSet]:
        """The declared feature sets by name."""
        return dict(self._feature_sets)

    # -- declaration -------------------------------------------------------------------------

    @overload
    def source(self, fn: F, /, **options: Any) -> F: ...
    @overload
    def source(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...
    def source(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Declare a source node: reads the outside world, takes no upstream inputs.

        Options are those of :meth:`transform`. A source runs every time (``cache=False``)
        unless declared ``cache=True``: an unchanged read commits no new version and re-runs
        nothing downstream.
        """
        return self._declare(NodeKind.SOURCE, fn, options)

    @overload
    def transform(self, fn: F, /, **options: Any) -> F: ...
    @overload
    def transform(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...
    def transform(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Declare a transform node from a function of its inputs.

        Use bare (``@pipeline.transform``), with options (``@pipeline.transform(ephemeral=True)``)
        or as a call (``pipeline.transform(fn, name="n1", inputs={"x": "n0"})``).

        Options:
            name: node name (default: the function's name).
            inputs: explicit ``{parameter: upstream node}`` references.
            config: names of parameters that are config values, not inputs.
            ephemeral: hand the output to downstream nodes in memory, never store it.
            partitions: a :class:`~headrace.core.partitions.PartitionScheme`.
            retries: extra tries after a failure (exponential backoff from ``retry_delay``).
            retry_delay: seconds before the first retry (doubling after each).
            timeout: seconds a single try may take.
            version: explicit logic version (replaces the code hash in cache keys).
            description: text shown by ``headrace dag`` (default: the docstring's first line).
            cache: skip the node when code, config and inputs are unchanged (default True;
                False for sources, which re-read the outside world every run).
            contract: a :class:`~headrace.core.contract.Contract` the output must meet: rows
                failing an ``error`` check go to the ``<name>__quarantine`` dataset.
            gate: fail the node when the quality score is below this (default 0.9; None:
                never on the score; a failed ``error`` dataset check fails it either way).
            drift: an :class:`~headrace.core.drift.Drift`: compare each new output version
                with a reference version (stored per version; feeds ``drift`` alert rules).
        """
        return self._declare(NodeKind.TRANSFORM, fn, options)

    @overload
    def sink(self, fn: F, /, **options: Any) -> F: ...
    @overload
    def sink(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...
    def sink(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Declare a sink node: writes its inputs to the outside world and returns nothing.

        A sink is skipped as a cache hit when its code, config and inputs are unchanged since
        its last successful run.
        """
        return self._declare(NodeKind.SINK, fn, options)

    def sql(
        self,
        name: str,
        query: str,
        *,
        inputs: Iterable[str] | None = None,
        ephemeral: bool = False,
        partitions: PartitionScheme | None = None,
        retries: int = 0,
        retry_delay: float = 0.5,
        timeout: float | None = None,
        version: str | None = None,
        description: str = "",
        contract: Contract | None = None,
        gate: float | None = 0.9,
    ) -> None:
        """Declare a transform written as DuckDB SQL over its inputs (referenced as tables).

        The inputs are the tables the query names (found with DuckDB's parser) unless given.
        """
        _check_name(name, what="node")
        if inputs is None:
            inputs = _sql_tables(name, query)
        bindings = tuple(Binding(t, BindingKind.INPUT, t) for t in dict.fromkeys(inputs))
        self._add(
            Node(
                name=name,
                kind=NodeKind.TRANSFORM,
                fn=None,
                bindings=bindings,
                sql=query,
                ephemeral=ephemeral,
                partitions=partitions,
                retry=RetryPolicy(retries=retries, delay=retry_delay),
                timeout=timeout,
                description=description,
                version=version,
                contract=contract,
                gate=gate,
            )
        )

    def ingest(
        self,
        name: str,
        source: SourceSpec,
        *,
        contract: Contract | None = None,
        gate: float | None = 0.9,
        retries: int = 0,
        retry_delay: float = 0.5,
        timeout: float | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Declare a source node that a connector reads: files or a database table/query.

        With a ``contract``, typed fields are coerced from what the source delivers (text in a
        CSV), and records that do not parse or fail a check go to ``<name>__quarantine`` with
        their position (file and line, or table). An incremental source (new files only, or
        a cursor column) appends what is new to the dataset at each run; the read position is
        committed in the same Delta commit as the rows, so a crash can neither skip nor
        duplicate anything.

        Example:
            >>> import headrace as hr
            >>> p = hr.Pipeline("ingest_demo")
            >>> p.ingest("trips", hr.files("data/trips/*.csv", incremental=True))
            >>> p.nodes["trips"].source.describe()
            'files data/trips/*.csv (new files only)'

        """
        _check_name(name, what="node")
        _check_source(name, source)
        if contract is not None:
            contract = contract.coercing()
        self._add(
            Node(
                name=name,
                kind=NodeKind.SOURCE,
                fn=None,
                bindings=(),
                retry=RetryPolicy(retries=retries, delay=retry_delay),
                timeout=timeout,
                description=description or source.describe(),
                tags=dict(tags or {}),
                contract=contract,
                gate=gate,
                cache=False,
                source=source,
            )
        )

    def features(self, view: FeatureView, *, description: str = "") -> FeatureView:
        """Declare a feature view: a node computing the view over its source's history.

        The node's output dataset (named like the view) holds one row per source row: the
        entity keys, the event time (UTC), the created time when declared, and each feature
        as of that event time. Runs are incremental: when the source only changed after some
        event time, only the rows from that time on are recomputed (see
        :mod:`headrace.core.features` for the window semantics).

        Example:
            >>> import headrace as hr
            >>> p = hr.Pipeline("features_demo")
            >>> p.ingest("trips", hr.files("data/trips.csv"))
            >>> view = p.features(hr.FeatureView(
            ...     "rider_stats", entity=hr.Entity("rider", ["rider_id"]), source="trips",
            ...     event_time="ts", ttl="30d", features=[hr.Aggregate("fare", "mean", "7d")]))
            >>> p.nodes["rider_stats"].inputs
            ('trips',)

        """
        if not isinstance(cast("object", view), FeatureView):
            msg = f"pipeline {self.name!r}: features() takes an hr.FeatureView, not {view!r}"
            raise PipelineError(msg)
        self._add(
            Node(
                name=view.name,
                kind=NodeKind.TRANSFORM,
                fn=None,
                bindings=(Binding(view.source, BindingKind.INPUT, view.source),),
                description=description
                or view.description
                or f"features of {view.entity.name} from {view.source}",
                features=view,
            )
        )
        return view

    def feature_set(self, feature_set: FeatureSet) -> FeatureSet:
        """Declare a feature set (the features one model uses); its views must be declared.

        Example:
            >>> import headrace as hr
            >>> p = hr.Pipeline("fs_demo")
            >>> p.feature_set(hr.FeatureSet("m", ["nowhere:x"]))
            Traceback (most recent call last):
              ...
            headrace.errors.UnknownFeatureError: feature set 'm' uses view 'nowhere', ...

        """
        if feature_set.name in self._feature_sets:
            msg = f"pipeline {self.name!r} already has a feature set {feature_set.name!r}"
            raise PipelineError(msg)
        check_views(self.feature_views.values(), [feature_set])
        self._feature_sets[feature_set.name] = feature_set
        return feature_set

    @property
    def streams(self) -> Mapping[str, StreamSource]:
        """Source nodes fed by a topic in streaming jobs, by node name."""
        return dict(self._streams)

    def stream(
        self,
        node: str,
        *,
        event_time: str,
        disorder: str | timedelta = timedelta(),
        topic: str = "",
        key: str | None = None,
        schema: Mapping[str, pl.DataType | type[pl.DataType]] | None = None,
    ) -> StreamSource:
        """Feed source node ``node`` from a topic in streaming jobs (``headrace stream run``).

        See :class:`~headrace.core.stream.StreamSource` for the options. The node keeps its
        batch function for ``headrace run``; a streaming job reads the topic instead.
        """
        if node in self._streams:
            msg = f"pipeline {self.name!r}: node {node!r} already has a stream; declare it once"
            raise DuplicateNodeError(msg)
        spec = StreamSource(
            node, event_time=event_time, disorder=disorder, topic=topic, key=key, schema=schema
        )
        self._streams[node] = spec
        return spec

    def validate(self, config: Mapping[str, Any] | None = None) -> Graph:
        """Check the definition and return its :class:`~headrace.core.graph.Graph`.

        Raises the first problem found (duplicate names are caught at declaration): an unknown
        input, a cycle, or a config key without a value — each naming the node.
        """
        return Graph.build(self.name, tuple(self._nodes.values()), config or {})

    # -- internals -------------------------------------------------------------------------

    def _declare(
        self, kind: NodeKind, fn: F | None, options: dict[str, Any]
    ) -> F | Callable[[F], F]:
        if fn is None:

            def decorator(func: F) -> F:
                self._add(_node_from_function(kind, func, options))
                return func

            return decorator
        self._add(_node_from_function(kind, fn, options))
        return fn

    def _add(self, node: Node) -> None:
        if node.name in self._nodes:
            msg = (
                f"pipeline {self.name!r} already has a node named {node.name!r}: "
                "rename one of them (name=...)"
            )
            raise DuplicateNodeError(msg)
        if node.kind is NodeKind.SOURCE and node.inputs:
            msg = (
                f"source node {node.name!r} takes inputs {list(node.inputs)}: sources read the "
                "outside world; declare it with @pipeline.transform, or make those parameters "
                "config (config=[...])"
            )
            raise PipelineError(msg)
        self._nodes[node.name] = node


_OPTIONS = {
    "name",
    "inputs",
    "config",
    "ephemeral",
    "partitions",
    "retries",
    "retry_delay",
    "timeout",
    "version",
    "description",
    "tags",
    "cache",
    "contract",
    "gate",
    "drift",
}


def _node_from_function(kind: NodeKind, fn: Callable[..., Any], options: dict[str, Any]) -> Node:
    unknown = set(options) - _OPTIONS
    if unknown:
        msg = f"unknown node option(s) {sorted(unknown)} on {fn!r}; known: {sorted(_OPTIONS)}"
        raise PipelineError(msg)
    name = options.get("name") or getattr(fn, "__name__", None)
    if not isinstance(name, str):
        msg = f"cannot name node for {fn!r}: pass name=..."
        raise PipelineError(msg)
    _check_name(name, what="node")
    explicit: Mapping[str, str] = options.get("inputs") or {}
    config_keys = set(options.get("config") or ())
    bindings = _bind_parameters(name, fn, explicit, config_keys)
    if options.get("contract") is not None and (options.get("ephemeral") or kind is NodeKind.SINK):
        msg = (
            f"node {name!r} has a contract but stores no output (ephemeral or sink): "
            "validate a stored node, whose quarantine can be stored too"
        )
        raise PipelineError(msg)
    if kind is NodeKind.SINK and options.get("ephemeral"):
        msg = f"sink node {name!r} cannot be ephemeral: a sink stores nothing already"
        raise PipelineError(msg)
    doc = inspect.getdoc(fn) or ""
    return Node(
        name=name,
        kind=kind,
        fn=fn,
        bindings=bindings,
        ephemeral=bool(options.get("ephemeral", False)),
        partitions=options.get("partitions"),
        retry=RetryPolicy(
            retries=int(options.get("retries", 0)), delay=float(options.get("retry_delay", 0.5))
        ),
        timeout=options.get("timeout"),
        description=options.get("description") or (doc.splitlines()[0] if doc else ""),
        version=options.get("version"),
        tags=dict(options.get("tags") or {}),
        cache=bool(options.get("cache", kind is not NodeKind.SOURCE)),
        contract=options.get("contract"),
        gate=options.get("gate", 0.9),
        drift=options.get("drift"),
    )


def _bind_parameters(
    node: str, fn: Callable[..., Any], explicit: Mapping[str, str], config_keys: set[str]
) -> tuple[Binding, ...]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        msg = f"cannot read the parameters of node {node!r}: {exc}"
        raise PipelineError(msg) from exc
    parameters = signature.parameters
    for parameter in (*explicit, *config_keys):
        if parameter not in parameters:
            msg = (
                f"node {node!r} maps parameter {parameter!r}, but its function has no such "
                f"parameter (it has: {', '.join(parameters) or 'none'})"
            )
            raise PipelineError(msg)
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception:
        hints = {}
    bindings = []
    for param in parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            msg = f"node {node!r} has *args/**kwargs; give each input its own parameter"
            raise PipelineError(msg)
        has_default = param.default is not param.empty
        default = param.default if has_default else None
        if param.name == CONTEXT_PARAMETER and param.name not in explicit:
            bindings.append(Binding(param.name, BindingKind.CONTEXT, CONTEXT_PARAMETER))
        elif param.name in explicit:
            wants_df = hints.get(param.name) is pl.DataFrame
            bindings.append(
                Binding(param.name, BindingKind.INPUT, explicit[param.name], False, None, wants_df)
            )
        elif param.name in config_keys or has_default:
            bindings.append(
                Binding(param.name, BindingKind.CONFIG, param.name, has_default, default)
            )
        else:
            wants_df = hints.get(param.name) is pl.DataFrame
            bindings.append(
                Binding(param.name, BindingKind.INPUT, param.name, False, None, wants_df)
            )
    return tuple(bindings)


def _sql_tables(node: str, query: str) -> list[str]:
    import duckdb

    try:
        return sorted(duckdb.get_table_names(query, qualified=False))
    except duckdb.Error as exc:
        msg = f"SQL of node {node!r} does not parse: {exc}"
        raise PipelineError(msg) from exc


def _check_source(name: str, source: object) -> None:
    if not isinstance(source, SourceSpec):
        msg = (
            f"ingest node {name!r}: source must be hr.files(...) or hr.sql(...), "
            f"not {type(source).__name__}"
        )
        raise PipelineError(msg)


def _check_name(name: str, *, what: str) -> None:
    if not _NAME.match(name):
        msg = (
            f"{what} name {name!r} is not a valid identifier: use letters, digits and "
            "underscores, not starting with a digit"
        )
        raise PipelineError(msg)
