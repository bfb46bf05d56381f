"""Feature definitions as data: entities, feature views, windowed aggregations, feature sets.

These are specs: they say *what* a feature is, never how an engine computes it. The batch
engine computes a view over history with Polars; the streaming engine keeps the very same
aggregations current event by event. That is why an aggregation is declared as data
(column, function, window) rather than as code.

Window semantics (the same in batch and streaming):

- ``Aggregate("dep_delay", "mean", "7d")`` evaluated *as of* event time ``t`` for an entity
  covers that entity's rows with event time in the half-open interval ``(t - 7d, t]``: a row
  exactly 7 days old is out, a row at ``t`` itself is in, and so are all rows that share the
  timestamp ``t`` (ties are never split).
- Null values are skipped by every function (``count`` counts non-null values; use
  ``Aggregate(None, "count", w)`` to count rows). ``stddev`` is the sample standard deviation
  (ddof 1; null below two values); ``last`` is the value of the newest row in the window (among
  rows with the newest timestamp, the one with the newest created time, then the last read);
  ``distinct_count`` counts distinct non-null values.
- Late data: a row that arrives after others with a later event time still counts, in every
  window it falls in. The batch engine recomputes the feature rows from the earliest event time
  among the newly arrived source rows on; the streaming engine routes rows later than its
  watermark to a late-data output.

Example:
    >>> import polars as pl
    >>> import headrace as hr
    >>> carrier = hr.Entity("carrier", join_keys=["carrier"])
    >>> view = hr.FeatureView(
    ...     "carrier_delays",
    ...     entity=carrier,
    ...     source="flights",
    ...     event_time="time_hour",
    ...     ttl="7d",
    ...     features=[
    ...         hr.Aggregate("dep_delay", "mean", "7d"),
    ...         hr.Aggregate(None, "count", "1d", name="flights_1d"),
    ...         hr.Feature("delayed", pl.col("dep_delay") > 15),
    ...     ],
    ... )
    >>> view.feature_names
    ('dep_delay_mean_7d', 'flights_1d', 'delayed')
    >>> view.ttl
    datetime.timedelta(days=7)

"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, cast, get_args

import polars as pl

from headrace.core.fingerprint import key_hash
from headrace.core.windows import (
    WINDOW_START,
    Hopping,
    Session,
    Tumbling,
    Window,
    window_from_definition,
)
from headrace.errors import FeatureDefinitionError, UnknownFeatureError

__all__ = [
    "AGGREGATIONS",
    "Aggregate",
    "Entity",
    "Feature",
    "FeatureRef",
    "FeatureSet",
    "FeatureView",
    "parse_duration",
]

AggregationName = Literal["count", "sum", "mean", "min", "max", "last", "stddev", "distinct_count"]
AGGREGATIONS: tuple[str, ...] = get_args(AggregationName)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"(\d+)\s*(w|d|h|m|s|ms)")
_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}


def parse_duration(value: str | timedelta, *, what: str) -> timedelta:
    """A duration from a ``timedelta`` or text such as ``"7d"``, ``"1h30m"``, ``"90s"``.

    >>> parse_duration("1h30m", what="ttl")
    datetime.timedelta(seconds=5400)
    """
    if isinstance(value, timedelta):
        duration = value
    else:
        text = value.strip().lower()
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
            msg = (
                f"{what}: {value!r} is not a duration; write e.g. '30m', '1h', '7d', '2w' "
                "or pass a datetime.timedelta"
            )
            raise FeatureDefinitionError(msg)
        duration = sum((int(n) * _UNITS[u] for n, u in parts), timedelta())
    if duration <= timedelta():
        msg = f"{what}: the duration must be positive, got {value!r}"
        raise FeatureDefinitionError(msg)
    return duration


def duration_text(value: timedelta) -> str:
    """A compact text form of a duration, used in default feature names.

    >>> duration_text(timedelta(days=7)), duration_text(timedelta(minutes=90))
    ('7d', '90m')
    """
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _dtype(text: str) -> pl.DataType:
    """A Polars dtype from its text form (``Int64``, ``String``, ...)."""
    found = getattr(pl, text, None)
    if isinstance(found, type) and issubclass(found, pl.DataType):
        return found()
    msg = f"unknown value type {text!r} in a stored entity definition"
    raise FeatureDefinitionError(msg)


def _check_name(name: str, *, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        msg = (
            f"{what} name {name!r} is not a valid identifier: use letters, digits and "
            "underscores, not starting with a digit"
        )
        raise FeatureDefinitionError(msg)


@dataclass(frozen=True)
class Entity:
    """The thing features describe (a carrier, an airport, a plane), identified by join keys.

    ``value_types`` optionally fixes each key's Polars type (default: taken from the data).
    """

    name: str
    join_keys: Sequence[str]
    value_types: Mapping[str, pl.DataType | type[pl.DataType]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, what="entity")
        keys = tuple(self.join_keys) if not isinstance(self.join_keys, str) else (self.join_keys,)
        if not keys:
            msg = f"entity {self.name!r} has no join keys: pass join_keys=['<column>', ...]"
            raise FeatureDefinitionError(msg)
        for key in keys:
            _check_name(key, what=f"entity {self.name!r} join key")
        unknown = set(self.value_types) - set(keys)
        if unknown:
            msg = f"entity {self.name!r}: value_types names {sorted(unknown)}, not join keys"
            raise FeatureDefinitionError(msg)
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(self, "value_types", dict(self.value_types))

    @property
    def keys(self) -> tuple[str, ...]:
        """The join key columns, in order."""
        return tuple(self.join_keys)

    def definition(self) -> dict[str, Any]:
        """A JSON-able description (part of every view's fingerprint)."""
        return {
            "name": self.name,
            "join_keys": list(self.keys),
            "value_types": {k: str(v) for k, v in sorted(self.value_types.items())},
        }


@dataclass(frozen=True)
class Aggregate:
    """A trailing-window aggregation declared as data: ``function`` of ``column`` over ``window``.

    ``column=None`` is only valid with ``count`` (count rows). The default name is
    ``<column>_<function>_<window>`` (``count_<window>`` for a row count).
    """

    column: str | None
    function: AggregationName
    window: str | timedelta | None = None
    """The trailing window; None inside a view with ``window=`` (the view's window applies)."""
    name: str = ""

    def __post_init__(self) -> None:
        if self.function not in AGGREGATIONS:
            msg = (
                f"aggregation {self.function!r} is not supported; use one of "
                f"{', '.join(AGGREGATIONS)}"
            )
            raise FeatureDefinitionError(msg)
        if self.column is None and self.function != "count":
            msg = f"aggregation {self.function!r} needs a column (only 'count' counts rows)"
            raise FeatureDefinitionError(msg)
        written = self.window
        window = (
            None
            if written is None
            else parse_duration(written, what=f"window of {self.function}({self.column})")
        )
        object.__setattr__(self, "window", window)
        if not self.name:
            stem = self.column if self.column is not None else ""
            label = written.replace(" ", "").lower() if isinstance(written, str) else ""
            if window is not None and not label:
                label = duration_text(window)
            parts = [p for p in (stem, self.function, label) if p]
            object.__setattr__(self, "name", "_".join(parts))
        _check_name(self.name, what="feature")

    @property
    def period(self) -> timedelta:
        """The trailing window length (zero inside a windowed view)."""
        return self.window if isinstance(self.window, timedelta) else timedelta()

    def definition(self) -> dict[str, Any]:
        """A JSON-able description."""
        return {
            "name": self.name,
            "aggregate": self.function,
            "column": self.column,
            "window_seconds": self.period.total_seconds() if self.window is not None else None,
        }


@dataclass(frozen=True)
class Feature:
    """A row-level feature: a Polars expression over one source row (map-only, streamable)."""

    name: str
    expr: pl.Expr

    def __post_init__(self) -> None:
        _check_name(self.name, what="feature")
        if not isinstance(cast("object", self.expr), pl.Expr):
            msg = f"feature {self.name!r}: expr must be a polars expression, not {self.expr!r}"
            raise FeatureDefinitionError(msg)

    def definition(self) -> dict[str, Any]:
        """A JSON-able description (the expression in Polars' JSON form)."""
        return {"name": self.name, "expr": self.expr.meta.serialize(format="json")}


@dataclass(frozen=True)
class FeatureView:
    """Features of one entity computed from one source dataset, as of each event time.

    Attributes:
        name: the view (and its offline dataset) name.
        entity: whose features these are; the source must have its join keys.
        source: the pipeline node (dataset) the rows come from.
        event_time: the column with each row's event time (timezone-aware or UTC).
        ttl: how long a value stays valid: a value older than ``ttl`` at lookup time is
            "expired" online and null in a training set.
        features: :class:`Aggregate` and :class:`Feature` items.
        created_time: optional column with when a row was recorded; breaks ties between rows
            with one event time, and lets training sets exclude values recorded after ``t``.
        window: None for sliding aggregations (each :class:`Aggregate` names its trailing
            window), or a :class:`~headrace.core.windows.Tumbling`,
            :class:`~headrace.core.windows.Hopping` or :class:`~headrace.core.windows.Session`
            window: one row per entity and window, its aggregates without windows of their
            own, ``event_time`` holding the window end and ``window_start`` its start.

    """

    name: str
    entity: Entity
    source: str
    event_time: str
    ttl: str | timedelta
    features: Sequence[Aggregate | Feature]
    created_time: str | None = None
    description: str = ""
    window: Window | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, what="feature view")
        if not isinstance(cast("object", self.entity), Entity):
            msg = f"feature view {self.name!r}: entity must be an hr.Entity, not {self.entity!r}"
            raise FeatureDefinitionError(msg)
        _check_name(self.source, what=f"feature view {self.name!r} source")
        object.__setattr__(
            self, "ttl", parse_duration(self.ttl, what=f"ttl of feature view {self.name!r}")
        )
        features = tuple(self.features)
        if not features:
            msg = f"feature view {self.name!r} declares no features"
            raise FeatureDefinitionError(msg)
        reserved = {*self.entity.keys, self.event_time, self.created_time}
        seen: set[str] = set()
        for feature in features:
            if not isinstance(cast("object", feature), Aggregate | Feature):
                msg = (
                    f"feature view {self.name!r}: {feature!r} is not an hr.Aggregate or hr.Feature"
                )
                raise FeatureDefinitionError(msg)
            if feature.name in seen or feature.name in reserved:
                msg = (
                    f"feature view {self.name!r}: feature name {feature.name!r} is used twice "
                    "(or is a key/time column); give it another name=..."
                )
                raise FeatureDefinitionError(msg)
            seen.add(feature.name)
        object.__setattr__(self, "features", features)
        self._check_windows(features)

    def _check_windows(self, features: tuple[Aggregate | Feature, ...]) -> None:
        if self.window is None:
            for feature in features:
                if isinstance(feature, Aggregate) and feature.window is None:
                    msg = (
                        f"feature view {self.name!r}: aggregate {feature.name!r} has no window; "
                        "give it one (Aggregate(col, fn, '1h')) or give the view window=..."
                    )
                    raise FeatureDefinitionError(msg)
            return
        if not isinstance(cast("object", self.window), Tumbling | Hopping | Session):
            msg = (
                f"feature view {self.name!r}: window must be hr.Tumbling, hr.Hopping or "
                f"hr.Session, not {self.window!r}"
            )
            raise FeatureDefinitionError(msg)
        for feature in features:
            if isinstance(feature, Feature) or feature.window is not None:
                msg = (
                    f"feature view {self.name!r} has window={self.window!r}: its features must "
                    f"be aggregates without a window of their own ({feature.name!r} is not)"
                )
                raise FeatureDefinitionError(msg)
        if WINDOW_START in {*self.entity.keys, self.event_time, *self.feature_names}:
            msg = f"feature view {self.name!r}: {WINDOW_START!r} is reserved in windowed views"
            raise FeatureDefinitionError(msg)

    @property
    def ttl_delta(self) -> timedelta:
        """The TTL as a ``timedelta``."""
        assert isinstance(self.ttl, timedelta)
        return self.ttl

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in declaration order."""
        return tuple(f.name for f in self.features)

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        """The windowed aggregations."""
        return tuple(f for f in self.features if isinstance(f, Aggregate))

    @property
    def row_features(self) -> tuple[Feature, ...]:
        """The row-level expressions."""
        return tuple(f for f in self.features if isinstance(f, Feature))

    @property
    def max_window(self) -> timedelta:
        """The longest trailing window (zero for row-level features or a windowed view)."""
        return max((a.period for a in self.aggregates), default=timedelta())

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Columns the view reads from its source."""
        cols = [*self.entity.keys, self.event_time]
        if self.created_time:
            cols.append(self.created_time)
        cols.extend(a.column for a in self.aggregates if a.column is not None)
        for feature in self.row_features:
            cols.extend(feature.expr.meta.root_names())
        return tuple(dict.fromkeys(cols))

    def definition(self) -> dict[str, Any]:
        """A JSON-able description of the view's logic (what the fingerprint covers)."""
        return {
            "name": self.name,
            "entity": self.entity.definition(),
            "source": self.source,
            "event_time": self.event_time,
            "created_time": self.created_time,
            "ttl_seconds": self.ttl_delta.total_seconds(),
            "features": [f.definition() for f in self.features],
        } | ({"window": self.window.definition()} if self.window is not None else {})

    def fingerprint(self) -> str:
        """A hash of the view's logic: any change to it makes a new view version."""
        return key_hash(json.dumps(self.definition(), sort_keys=True))

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> FeatureView:
        """The view described by :meth:`definition` (how older registered versions come back).

        >>> view = FeatureView("v", entity=Entity("e", ["k"]), source="s", event_time="t",
        ...                    ttl="1d", features=[Aggregate("x", "sum", "1h")])
        >>> FeatureView.from_definition(view.definition()).fingerprint() == view.fingerprint()
        True
        """
        entity = definition["entity"]
        features: list[Aggregate | Feature] = []
        for item in definition["features"]:
            if "aggregate" in item:
                features.append(
                    Aggregate(
                        item["column"],
                        item["aggregate"],
                        None
                        if item["window_seconds"] is None
                        else timedelta(seconds=item["window_seconds"]),
                        name=item["name"],
                    )
                )
            else:
                expr = pl.Expr.deserialize(io.StringIO(item["expr"]), format="json")
                features.append(Feature(item["name"], expr))
        return cls(
            name=definition["name"],
            entity=Entity(
                entity["name"],
                entity["join_keys"],
                {k: _dtype(v) for k, v in entity.get("value_types", {}).items()},
            ),
            source=definition["source"],
            event_time=definition["event_time"],
            ttl=timedelta(seconds=definition["ttl_seconds"]),
            features=features,
            created_time=definition.get("created_time"),
            window=window_from_definition(definition.get("window")),
        )

    def feature(self, name: str) -> Aggregate | Feature:
        """The feature called ``name``; a clear error naming the known ones otherwise."""
        for feature in self.features:
            if feature.name == name:
                return feature
        msg = (
            f"feature view {self.name!r} has no feature {name!r}; it has: "
            f"{', '.join(self.feature_names)}"
        )
        raise UnknownFeatureError(msg)


@dataclass(frozen=True)
class FeatureRef:
    """One feature of one view, written ``"view:feature"``."""

    view: str
    feature: str

    @classmethod
    def parse(cls, text: str, *, feature_set: str = "") -> FeatureRef:
        """``"view:feature"`` -> FeatureRef.

        >>> FeatureRef.parse("carrier_delays:dep_delay_mean_7d")
        FeatureRef(view='carrier_delays', feature='dep_delay_mean_7d')
        """
        view, sep, feature = text.partition(":")
        if not sep or not view or not feature:
            where = f"feature set {feature_set!r}: " if feature_set else ""
            msg = f"{where}{text!r} is not a feature reference; write 'view:feature'"
            raise FeatureDefinitionError(msg)
        return cls(view, feature)

    @property
    def column(self) -> str:
        """The output column name in training sets and lookups: ``view__feature``."""
        return f"{self.view}__{self.feature}"

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


@dataclass(frozen=True)
class FeatureSet:
    """A named list of features for one model (``"view:feature"`` references).

    A feature set's *version* is assigned by the registry: it changes whenever the list or the
    logic of a view it uses changes, so a model bound to version 3 keeps getting exactly the
    features it was trained on.
    """

    name: str
    features: Sequence[str | FeatureRef]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, what="feature set")
        refs = tuple(
            f if isinstance(f, FeatureRef) else FeatureRef.parse(f, feature_set=self.name)
            for f in self.features
        )
        if not refs:
            msg = f"feature set {self.name!r} lists no features"
            raise FeatureDefinitionError(msg)
        if len(set(refs)) != len(refs):
            msg = f"feature set {self.name!r} lists a feature twice"
            raise FeatureDefinitionError(msg)
        object.__setattr__(self, "features", refs)

    @property
    def refs(self) -> tuple[FeatureRef, ...]:
        """The feature references, in order."""
        return tuple(f for f in self.features if isinstance(f, FeatureRef))

    @property
    def views(self) -> tuple[str, ...]:
        """The views the set reads, in first-use order."""
        return tuple(dict.fromkeys(ref.view for ref in self.refs))


def check_views(views: Iterable[FeatureView], feature_sets: Iterable[FeatureSet]) -> None:
    """Every feature set names existing views and features (raised at declaration time)."""
    by_name = {view.name: view for view in views}
    for feature_set in feature_sets:
        for ref in feature_set.refs:
            view = by_name.get(ref.view)
            if view is None:
                msg = (
                    f"feature set {feature_set.name!r} uses view {ref.view!r}, which is not "
                    f"declared; known views: {', '.join(sorted(by_name)) or 'none'}"
                )
                raise UnknownFeatureError(msg)
            view.feature(ref.feature)
