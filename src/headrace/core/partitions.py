"""Partition schemes: how a node's output is cut into independent slices.

A partitioned node runs once per selected partition key, shared-nothing: it sees only its
slice of each input that is partitioned the same way, and it writes only its slice of its
output dataset. Without a selection, a partitioned node runs once over all of its data.

Two schemes ship: :class:`DailyPartitions` (one partition per UTC day of a timestamp or date
column) and :class:`StaticPartitions` (one partition per value of a key column from a fixed
list). Both are plain frozen data: the engines turn them into filters.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import polars as pl
from typing_extensions import override

from headrace.errors import PartitionError

__all__ = ["DailyPartitions", "PartitionScheme", "StaticPartitions", "parse_partition_range"]


class PartitionScheme(abc.ABC):
    """A way to cut a dataset into independent partitions by the value of one column.

    Implementations must be immutable and cheap to compare: two nodes with equal schemes are
    partitioned alike, so a partitioned consumer reads only its own slice of such an input.
    """

    column: str

    @abc.abstractmethod
    def keys(self) -> tuple[str, ...]:
        """Every partition key of the scheme, in order."""

    @abc.abstractmethod
    def validate_key(self, key: str, *, node: str) -> str:
        """Return ``key`` in canonical form, or raise :class:`PartitionError` naming ``node``."""

    @abc.abstractmethod
    def expand_range(self, first: str, last: str, *, node: str) -> tuple[str, ...]:
        """Every key from ``first`` to ``last`` inclusive."""

    @abc.abstractmethod
    def filter(self, key: str) -> pl.Expr:
        """A Polars predicate that is true exactly for the rows of partition ``key``."""

    @abc.abstractmethod
    def sql_predicate(self, key: str) -> str:
        """The same predicate as SQL text (used for Delta Lake ``replaceWhere`` overwrites)."""

    def describe(self) -> str:
        """A short human description, e.g. ``daily on time_hour``."""
        return f"{type(self).__name__} on {self.column}"


def _parse_day(text: str, *, node: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        msg = (
            f"partition key {text!r} is not a day for node {node!r}: "
            "use the form YYYY-MM-DD, e.g. 2013-01-05"
        )
        raise PartitionError(msg) from None


@dataclass(frozen=True)
class DailyPartitions(PartitionScheme):
    """One partition per UTC calendar day of ``column`` (a Datetime or Date column).

    Example:
        >>> scheme = DailyPartitions("time_hour", start="2013-01-01", end="2013-01-03")
        >>> scheme.keys()
        ('2013-01-01', '2013-01-02', '2013-01-03')

    """

    column: str
    start: date | str
    end: date | str

    def __post_init__(self) -> None:
        start = self.start if isinstance(self.start, date) else _parse_day(self.start, node="?")
        end = self.end if isinstance(self.end, date) else _parse_day(self.end, node="?")
        if end < start:
            msg = f"DailyPartitions on {self.column!r}: end {end} is before start {start}"
            raise PartitionError(msg)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @property
    def _start(self) -> date:
        assert isinstance(self.start, date)
        return self.start

    @property
    def _end(self) -> date:
        assert isinstance(self.end, date)
        return self.end

    @override
    def keys(self) -> tuple[str, ...]:
        days = (self._end - self._start).days + 1
        return tuple((self._start + timedelta(days=i)).isoformat() for i in range(days))

    @override
    def validate_key(self, key: str, *, node: str) -> str:
        day = _parse_day(key, node=node)
        if not self._start <= day <= self._end:
            msg = (
                f"partition {key} is outside node {node!r}'s daily partitions "
                f"{self._start}..{self._end}; pick a day in that range"
            )
            raise PartitionError(msg)
        return day.isoformat()

    @override
    def expand_range(self, first: str, last: str, *, node: str) -> tuple[str, ...]:
        lo = date.fromisoformat(self.validate_key(first, node=node))
        hi = date.fromisoformat(self.validate_key(last, node=node))
        if hi < lo:
            msg = f"partition range {first}..{last} for node {node!r} is empty: swap its ends"
            raise PartitionError(msg)
        return tuple((lo + timedelta(days=i)).isoformat() for i in range((hi - lo).days + 1))

    def _bounds(self, key: str) -> tuple[datetime, datetime]:
        lo = datetime.combine(date.fromisoformat(key), time(0), tzinfo=UTC)
        return lo, lo + timedelta(days=1)

    @override
    def filter(self, key: str) -> pl.Expr:
        lo, hi = self._bounds(key)
        col = pl.col(self.column)
        # Works for tz-aware datetimes (compared in UTC) and for Date columns.
        return (col >= pl.lit(lo)) & (col < pl.lit(hi))

    @override
    def sql_predicate(self, key: str) -> str:
        lo, hi = self._bounds(key)
        return (
            f"\"{self.column}\" >= '{lo.strftime('%Y-%m-%dT%H:%M:%SZ')}' AND "
            f"\"{self.column}\" < '{hi.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
        )

    @override
    def describe(self) -> str:
        return f"daily on {self.column} ({self._start}..{self._end})"


@dataclass(frozen=True)
class StaticPartitions(PartitionScheme):
    """One partition per value of ``column`` from a fixed list of string keys.

    Example:
        >>> StaticPartitions("origin", ["EWR", "JFK", "LGA"]).keys()
        ('EWR', 'JFK', 'LGA')

    """

    column: str
    values: tuple[str, ...] | list[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        values = tuple(self.values)
        if not values:
            msg = f"StaticPartitions on {self.column!r} has no keys: give at least one"
            raise PartitionError(msg)
        if len(set(values)) != len(values):
            msg = f"StaticPartitions on {self.column!r} lists a key twice"
            raise PartitionError(msg)
        object.__setattr__(self, "values", values)

    @override
    def keys(self) -> tuple[str, ...]:
        return tuple(self.values)

    @override
    def validate_key(self, key: str, *, node: str) -> str:
        if key not in self.values:
            known = ", ".join(self.values)
            msg = f"partition {key!r} is not one of node {node!r}'s partitions ({known})"
            raise PartitionError(msg)
        return key

    @override
    def expand_range(self, first: str, last: str, *, node: str) -> tuple[str, ...]:
        keys = self.keys()
        lo = keys.index(self.validate_key(first, node=node))
        hi = keys.index(self.validate_key(last, node=node))
        if hi < lo:
            msg = f"partition range {first}..{last} for node {node!r} is empty: swap its ends"
            raise PartitionError(msg)
        return keys[lo : hi + 1]

    @override
    def filter(self, key: str) -> pl.Expr:
        return pl.col(self.column) == pl.lit(key)

    @override
    def sql_predicate(self, key: str) -> str:
        escaped = key.replace("'", "''")
        return f"\"{self.column}\" = '{escaped}'"

    @override
    def describe(self) -> str:
        return f"static on {self.column} ({len(self.values)} keys)"


def parse_partition_range(text: str) -> tuple[str, str]:
    """Split ``FIRST..LAST`` into its two ends.

    >>> parse_partition_range("2013-01-01..2013-01-31")
    ('2013-01-01', '2013-01-31')
    """
    first, sep, last = text.partition("..")
    if not sep or not first or not last:
        msg = f"partition range {text!r} must read FIRST..LAST, e.g. 2013-01-01..2013-01-31"
        raise PartitionError(msg)
    return first.strip(), last.strip()
